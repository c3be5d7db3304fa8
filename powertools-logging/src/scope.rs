//! Log-key scopes: the keys (and correlation id) a line carries, for an invocation and for each
//! unit of work inside it that runs alongside others (a batch record, an idempotent call).

use std::collections::HashMap;
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
    pub(crate) keys: OrderedKeys,
    pub(crate) correlation_id: Option<String>,
}

/// Keys and their values in the order they were first set (the order lines write them): a
/// scope's appended keys, and the logger's persistent keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct OrderedKeys {
    /// `None` where a key was removed while the keys were indexed, until they are compacted.
    keys: Vec<Option<(String, Value)>>,
    /// Past [`INDEXED_KEYS`] keys, where each is in `keys`: setting thousands (from a caller's
    /// map) looked each up among all the others, time growing with the square of their number
    /// (found by an attack from the docs: 7.7 s for 40,000 appended keys in a debug build;
    /// then by a review, for persistent keys).
    index: Option<HashMap<String, usize>>,
    /// The `None`s in `keys`: removing a key moved every key after it, in `keys` and in the
    /// index, time growing with the square of their number for many removals (the review of
    /// the index: 20,000 took 7.4 s in a debug build, under the lock every line takes for
    /// persistent keys). Compacted when they are half of `keys`.
    removed: usize,
}

/// How many keys are looked through one by one before they are indexed: mostly a handful.
const INDEXED_KEYS: usize = 64;

#[cfg(test)]
thread_local! {
    /// How many keys the crate's key lookups (a line's duplicate check, [`OrderedKeys`], the
    /// keys appended as `None`) compared or moved, on this thread: what the tests of their
    /// indexes count.
    pub(crate) static KEYS_COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl OrderedKeys {
    /// The keys, in the order they were first appended.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &(String, Value)> {
        self.keys.iter().flatten()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.len() == self.removed
    }

    /// Sets `key`, in its place if it was set already, else after the others.
    pub(crate) fn append(&mut self, key: &str, value: Value) {
        let position = match &self.index {
            Some(index) => index.get(key).copied(),
            // Not indexed: no `None`s.
            None => self.keys.iter().position(|entry| {
                #[cfg(test)]
                KEYS_COMPARED.with(|compared| compared.set(compared.get() + 1));
                entry.as_ref().is_some_and(|(existing, _)| existing == key)
            }),
        };
        if let Some((_, existing)) = position.and_then(|position| self.keys[position].as_mut()) {
            *existing = value;
            return;
        }
        self.keys.push(Some((key.to_owned(), value)));
        match &mut self.index {
            Some(index) => {
                index.insert(key.to_owned(), self.keys.len() - 1);
            }
            None if self.keys.len() > INDEXED_KEYS => self.reindex(),
            None => {}
        }
    }

    /// Indexes the keys, without the `None`s.
    fn reindex(&mut self) {
        self.keys.retain(Option::is_some);
        self.removed = 0;
        #[cfg(test)]
        KEYS_COMPARED.with(|compared| compared.set(compared.get() + self.keys.len()));
        self.index = Some(
            self.keys
                .iter()
                .enumerate()
                .filter_map(|(position, entry)| {
                    entry.as_ref().map(|(key, _)| (key.clone(), position))
                })
                .collect(),
        );
    }

    /// Removes `key`; `false` if it was not set.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        match &mut self.index {
            Some(index) => {
                let Some(position) = index.remove(key) else {
                    return false;
                };
                self.keys[position] = None;
                self.removed += 1;
                if self.removed * 2 > self.keys.len() {
                    self.reindex();
                }
            }
            None => {
                let Some(position) = self
                    .keys
                    .iter()
                    .position(|entry| entry.as_ref().is_some_and(|(existing, _)| existing == key))
                else {
                    return false;
                };
                self.keys.remove(position);
            }
        }
        true
    }
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
                correlation_id,
                ..ScopeKeys::default()
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Appending thousands of keys looks each up in an index past a few, not among all the
    /// others (found by an attack from the docs: 40,000 keys took 7.7 s in a debug build, time
    /// growing with the square of their number); order, replacement and removal are kept.
    #[test]
    fn many_appended_keys_are_looked_up_without_comparing_each_with_all() {
        let mut keys = OrderedKeys::default();
        let count = 5_000;
        for index in 0..count {
            keys.append(&format!("key_{index}"), json!(index));
        }
        for index in 0..count {
            keys.append(&format!("key_{index}"), json!(format!("second {index}")));
        }
        assert!(keys.remove("key_10"));
        assert!(!keys.remove("key_10"));
        keys.append("key_4999", json!("replaced"));
        keys.append("key_10", json!("again"));
        keys.append("key_11", json!("replaced too"));
        let compared = KEYS_COMPARED.with(std::cell::Cell::take);
        assert!(compared < 8 * count, "{compared} keys compared");

        let written: Vec<&(String, Value)> = keys.keys().collect();
        assert_eq!(written.len(), count);
        assert_eq!(*written[0], ("key_0".to_owned(), json!("second 0")));
        assert_eq!(*written[10], ("key_11".to_owned(), json!("replaced too")));
        assert_eq!(written[count - 2].1, json!("replaced"));
        assert_eq!(*written[count - 1], ("key_10".to_owned(), json!("again")));
    }

    /// Removing thousands of keys does not move each remaining one at every removal (the
    /// review of the index: 20,000 removals took 7.4 s in a debug build, under the lock every
    /// line of the logger takes for persistent keys); the order of the others is kept.
    #[test]
    fn many_removed_keys_do_not_move_the_others_each_time() {
        let mut keys = OrderedKeys::default();
        let count = 5_000;
        for index in 0..count {
            keys.append(&format!("key_{index}"), json!(index));
        }
        let _ = KEYS_COMPARED.with(std::cell::Cell::take);
        // Every other key, then most of the rest, with appends between.
        for index in (0..count).step_by(2) {
            assert!(keys.remove(&format!("key_{index}")));
        }
        keys.append("late", json!("after the removals"));
        for index in (1..count - 10).step_by(2) {
            assert!(keys.remove(&format!("key_{index}")));
        }
        assert!(!keys.remove("key_0"));
        let moved = KEYS_COMPARED.with(std::cell::Cell::take);
        assert!(moved < 8 * count, "{moved} keys moved or compared");

        let left: Vec<&str> = keys.keys().map(|(key, _)| key.as_str()).collect();
        let expected: Vec<String> = (count - 9..count)
            .step_by(2)
            .map(|index| format!("key_{index}"))
            .chain(["late".to_owned()])
            .collect();
        assert_eq!(left, expected);
        keys.append("key_4999", json!("replaced"));
        assert_eq!(
            keys.keys()
                .find(|(key, _)| key == "key_4999")
                .map(|(_, value)| value),
            Some(&json!("replaced"))
        );
        assert!(!keys.is_empty());
    }
}
