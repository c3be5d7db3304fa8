//! Log-key scopes: the keys (and correlation id) a line carries, for an invocation and for each
//! unit of work inside it that runs alongside others (a batch record, an idempotent call).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;

use crate::invocation::InvocationState;

tokio::task_local! {
    static CURRENT: Scope;
}

/// What [`append_key`](crate::append_key) and
/// [`set_correlation_id`](crate::set_correlation_id) change: one per scope.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScopeKeys {
    pub(crate) keys: Vec<(String, Value)>,
    pub(crate) correlation_id: Option<String>,
}

/// The scope a line is written in: its invocation (none in a [`key_scope`] outside one) and its
/// keys.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) invocation: Option<Arc<InvocationState>>,
    keys: Arc<Mutex<ScopeKeys>>,
}

impl Scope {
    /// The outermost scope of an invocation.
    pub(crate) fn root(invocation: Arc<InvocationState>, correlation_id: Option<String>) -> Self {
        Scope {
            invocation: Some(invocation),
            keys: Arc::new(Mutex::new(ScopeKeys {
                keys: Vec::new(),
                correlation_id,
            })),
        }
    }

    /// A scope inside this one: the same invocation, a copy of the keys as they are now.
    fn child(&self) -> Self {
        Scope {
            invocation: self.invocation.clone(),
            keys: Arc::new(Mutex::new(self.keys().clone())),
        }
    }

    /// A scope outside any invocation, with no keys yet.
    fn detached() -> Self {
        Scope {
            invocation: None,
            keys: Arc::default(),
        }
    }

    pub(crate) fn keys(&self) -> MutexGuard<'_, ScopeKeys> {
        // Each critical section is one map operation or one line: a panic cannot leave it half
        // done.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether both are the same scope.
    pub(crate) fn is(&self, other: &Scope) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys)
    }

    pub(crate) fn current() -> Option<Scope> {
        CURRENT.try_with(Scope::clone).ok()
    }

    pub(crate) fn with_current<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
        CURRENT.try_with(f).ok()
    }

    pub(crate) async fn run<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}

/// Runs `future` in a log-key scope of its own, for work that runs alongside other work of the
/// same invocation: a batch record, a function-level idempotent call, a task of a `join!`.
///
/// The scope starts with the keys and correlation id of the scope it is created in (the
/// invocation's, usually). [`append_key`](crate::append_key), [`remove_key`](crate::remove_key)
/// and [`set_correlation_id`](crate::set_correlation_id) inside it change its own lines only, so
/// two records processed at once never write each other's keys. Outside an invocation it starts
/// empty, and keys appended inside it still reach its lines.
///
/// A task spawned inside it (`tokio::spawn`) is outside it: the scope is a task-local, and
/// `.in_current_span()` gives the task the current span's context, which has the scope's keys
/// only when that span was opened inside the scope (a batch record's span, an
/// `#[instrument]`ed function's), and the invocation's otherwise. To be sure, give the task a
/// scope of its own, appending what it needs in it, and the span:
/// `tokio::spawn(key_scope(async move { append_key("order_id", id)?; … }).in_current_span())`.
///
/// `powertools-batch` runs every record in one; wrap anything else that runs concurrently
/// within an invocation yourself:
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{Layer, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_logging::{Logger, LoggingLayer, MemoryLogs, key_scope};
/// use serde_json::{Value, json};
///
/// async fn refund(order: &str) -> Result<(), powertools_logging::Error> {
///     powertools_logging::append_key("refund_id", format!("rf-{order}"))?;
///     tokio::task::yield_now().await; // the other refund runs here
///     tracing::info!("refund issued");
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder().service("payments").writer(logs.clone()).build()?;
/// let _guard = tracing::subscriber::set_default(logger.subscriber());
/// let handler = LoggingLayer::new(logger).layer(service_fn(|_: LambdaEvent<Value>| async {
///     powertools_logging::append_key("customer_id", "c-7")?;
///     let (first, second) = tokio::join!(key_scope(refund("o-1")), key_scope(refund("o-2")));
///     first?;
///     second?;
///     Ok::<_, lambda_runtime::Error>(())
/// }));
/// handler.oneshot(TestContext::new().event(json!({}))).await?;
///
/// // Each "refund issued" line has its own refund's id, and the invocation's key.
/// let mut refunds: Vec<String> = logs.json().iter().map(|line| {
///     assert_eq!(line["customer_id"], "c-7");
///     line["refund_id"].as_str().unwrap().to_owned()
/// }).collect();
/// refunds.sort();
/// assert_eq!(refunds, ["rf-o-1", "rf-o-2"]);
/// # Ok(())
/// # }
/// ```
pub fn key_scope<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let scope = Scope::current().map_or_else(Scope::detached, |current| current.child());
    CURRENT.scope(scope, future)
}
