use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::LambdaEvent;
use powertools_core::env::Env;
use powertools_core::{Invocation, PowertoolsConfig, is_cold_start};
use tower::{Layer, Service};

use crate::Error;
use crate::metrics::{Metrics, Recycled, Settings};
use crate::sink::{Sink, Stdout};
use crate::validate::{self, DimensionCheck, MAX_DIMENSIONS};

/// The namespace of every metric (`Namespace` in the document).
pub const POWERTOOLS_METRICS_NAMESPACE: &str = "POWERTOOLS_METRICS_NAMESPACE";
/// The `function_name` dimension of the cold-start metric, instead of the function's own name
/// (stable across deployments that add random suffixes).
pub const POWERTOOLS_METRICS_FUNCTION_NAME: &str = "POWERTOOLS_METRICS_FUNCTION_NAME";
/// `true` writes no document. When unset, `POWERTOOLS_DEV=true` disables metrics too.
pub const POWERTOOLS_METRICS_DISABLED: &str = "POWERTOOLS_METRICS_DISABLED";

/// Collects each invocation's metrics in its own EMF document and writes it when the invocation
/// ends: on success, on a handler error and on a panic.
///
/// Built with [`MetricsLayer::builder`]; everything not set in code comes from the Powertools
/// environment variables. Inside the handler, [`add_metric`](crate::add_metric) and friends add
/// to the current invocation's document, from any function it awaits.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_metrics::{MemorySink, MetricsLayer, Unit};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let sink = MemorySink::new();
/// let metrics = MetricsLayer::builder()
///     .namespace("Bakery")
///     .service("orders")
///     .default_dimension("environment", "prod")
///     .capture_cold_start_metric(true)
///     .sink(sink.clone()) // stdout by default
///     .build()?;
///
/// let handler = ServiceBuilder::new().layer(metrics).service(service_fn(|event: LambdaEvent<Value>| async move {
///     powertools_metrics::add_dimension("location", "Lyon")?;
///     powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
///     powertools_metrics::add_metadata("order_id", event.payload["order_id"].clone())?;
///     Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
/// }));
/// handler.oneshot(TestContext::new().event(json!({"order_id": "o-1001"}))).await?;
/// # powertools_tests::emf::valid_lines(&sink.lines()); // every document checked against the EMF schema
///
/// let documents = sink.documents();
/// assert_eq!(documents.len(), 2, "the cold start, then the invocation's metrics");
/// assert_eq!(documents[0]["ColdStart"], 1.0);
/// assert_eq!(documents[1]["OrdersPlaced"], 1.0);
/// assert_eq!(documents[1]["order_id"], "o-1001");
/// assert_eq!(
///     documents[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
///     json!([["environment", "location", "service"]])
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    settings: Arc<Settings>,
    recycled: Arc<Recycled>,
}

impl MetricsLayer {
    /// A builder reading unset options from the process environment.
    pub fn builder() -> MetricsLayerBuilder {
        MetricsLayerBuilder::default()
    }

    /// A layer configured only from the environment (`POWERTOOLS_METRICS_NAMESPACE`,
    /// `POWERTOOLS_SERVICE_NAME`, …), writing to stdout.
    ///
    /// # Errors
    /// As [`MetricsLayerBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().build()
    }

    #[cfg(test)]
    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings)
    }

    /// A new, empty document with this layer's settings, for work outside an invocation of the
    /// layer (call [`Metrics::flush`] yourself).
    pub fn new_metrics(&self) -> Metrics {
        Metrics::new(self.settings.clone())
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            settings: self.settings.clone(),
            recycled: self.recycled.clone(),
        }
    }
}

/// Builds a [`MetricsLayer`]. Options set here win over the environment.
#[derive(Debug, Default)]
#[must_use]
pub struct MetricsLayerBuilder {
    namespace: Option<String>,
    service: Option<String>,
    default_dimensions: Vec<(String, String)>,
    function_name: Option<String>,
    capture_cold_start_metric: bool,
    raise_on_empty_metrics: bool,
    disabled: Option<bool>,
    sink: Option<Arc<dyn Sink>>,
    env: Option<Env>,
}

impl MetricsLayerBuilder {
    /// The namespace (default: `POWERTOOLS_METRICS_NAMESPACE`; one of them is required).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The `service` dimension (default: `POWERTOOLS_SERVICE_NAME`; with neither, or empty,
    /// documents have no `service` dimension, as in Powertools for Python). A blank one (only
    /// whitespace) is refused when building, as CloudWatch refuses it.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// A dimension on every document of every invocation. One CloudWatch would refuse (an
    /// empty or blank name or value, a value that is not printable ASCII) fails
    /// [`build`](Self::build).
    pub fn default_dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.default_dimensions.push((name.into(), value.into()));
        self
    }

    /// Writes a `ColdStart` metric (1, Count) in a document of its own on the process's cold
    /// start, with the dimensions `function_name` and `service` only, as Powertools for Python
    /// writes it (default: off).
    pub fn capture_cold_start_metric(mut self, capture: bool) -> Self {
        self.capture_cold_start_metric = capture;
        self
    }

    /// The `function_name` dimension of the cold-start metric (default:
    /// `POWERTOOLS_METRICS_FUNCTION_NAME`, else, or when empty, the invocation's function
    /// name). A blank one (only whitespace) or one CloudWatch refuses is refused when building.
    pub fn function_name(mut self, function_name: impl Into<String>) -> Self {
        self.function_name = Some(function_name.into());
        self
    }

    /// Makes an invocation that added no metric fail with [`Error::EmptyMetrics`] instead of
    /// logging a warning (default: off). The warning is logged for the first such invocation
    /// only, as Python's `warnings` module shows it once per process: a function that replays
    /// idempotent responses would otherwise log it on every replay.
    ///
    /// An invocation whose handler published its metrics with its own
    /// [`Metrics::flush`](crate::Metrics::flush) added metrics: its end, finding nothing more,
    /// neither fails nor warns (Python's `log_metrics` raises there). The handler's own flush
    /// that finds nothing since the one before still returns [`Error::EmptyMetrics`].
    ///
    /// An invocation whose idempotent call replayed a stored response (the idempotency layer, or
    /// `Idempotency::run` and `run_keyed`) is never failed for it, only warned about as above:
    /// its handler did not run again, so it added nothing, and failing it would fail every
    /// retry of a call that succeeded. Powertools for Python's `log_metrics` raises
    /// `SchemaValidationError` there.
    pub fn raise_on_empty_metrics(mut self, raise: bool) -> Self {
        self.raise_on_empty_metrics = raise;
        self
    }

    /// Writes no document (default: `POWERTOOLS_METRICS_DISABLED`, else `POWERTOOLS_DEV`).
    /// Values are still checked, so a bad metric fails in development too.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// Where documents go (default: [`Stdout`]).
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Reads unset options from `env` instead of the process environment (for tests). The cold
    /// start is the process's, not an option: it follows `AWS_LAMBDA_INITIALIZATION_TYPE` in the
    /// process environment whatever `env` says (decide it per invocation with
    /// `TestContext::with_cold_start`).
    pub fn env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// With metrics disabled nothing is written, so a namespace, service or function name
    /// CloudWatch would refuse does not stop the build: the layer logs a warning naming it at
    /// its first invocation (once), when the function's subscriber is installed.
    ///
    /// # Errors
    /// [`Error::MissingNamespace`] or [`Error::InvalidNamespace`] (unless metrics are disabled),
    /// an invalid default dimension or one too many (29 besides `service`, 30 without it), a
    /// service or function name CloudWatch would refuse as a dimension value (blank, not
    /// printable ASCII, over 1024 characters; unless metrics are disabled), or a malformed
    /// environment variable (the error names it).
    pub fn build(self) -> Result<MetricsLayer, Error> {
        let env = self.env.unwrap_or_else(Env::process);
        let config = PowertoolsConfig::from_env_source(&env)?;
        let disabled = match self.disabled {
            Some(disabled) => disabled,
            None => env
                .bool(POWERTOOLS_METRICS_DISABLED)?
                .unwrap_or(config.dev_mode()),
        };
        // A value from the environment is refused with its variable's name: that is what the
        // operator has to fix.
        let from_env = |variable: &'static str| {
            move |error: Error| Error::FromEnv {
                variable,
                source: Box::new(error),
            }
        };
        let namespace_from_env = self.namespace.is_none();
        let namespace = match self.namespace {
            Some(namespace) => Some(namespace),
            None => env.string(POWERTOOLS_METRICS_NAMESPACE)?,
        };
        // Disabled, nothing is written: a namespace, service or function name CloudWatch would
        // refuse does not stop the function (Python runs), and is warned about at the first
        // invocation instead, when a subscriber is installed (`main` builds the layer before).
        let mut refused_while_disabled = Vec::new();
        let mut unless_disabled = |checked: Result<(), Error>| match checked {
            Err(error) if disabled => {
                refused_while_disabled.push(error);
                Ok(false)
            }
            checked => checked.map(|()| true),
        };
        let namespace = match namespace {
            Some(namespace) => {
                unless_disabled(validate::namespace(&namespace).map_err(|error| {
                    if namespace_from_env {
                        from_env(POWERTOOLS_METRICS_NAMESPACE)(error)
                    } else {
                        error
                    }
                }))?;
                namespace
            }
            None if disabled => String::new(),
            None => return Err(Error::MissingNamespace),
        };
        let service_from_env = self.service.is_none();
        let service = match self.service {
            Some(service) => Some(service),
            None => env.string(powertools_core::env::vars::POWERTOOLS_SERVICE_NAME)?,
        };
        let service = own_dimension(
            "service",
            service,
            service_from_env.then_some(powertools_core::env::vars::POWERTOOLS_SERVICE_NAME),
        );
        let service = match service {
            Ok(service) => service,
            // Nothing is written: no service dimension.
            Err(error) => unless_disabled(Err(error)).map(|_| None)?,
        };
        let log_level = match log_level_filter(&env) {
            Ok(filter) => filter,
            // Disabled, nothing is written: the value is warned about, not refused.
            Err(error) => unless_disabled(Err(error)).map(|_| None)?,
        };
        // Lambda's filter reads `level` (and `timestamp`) at any level it is set to; documents
        // carry them above INFO only.
        let log_level_keys_read = log_level.is_some();
        let log_level_filter = log_level.flatten();
        let mut default_dimensions: Vec<(String, String)> =
            Vec::with_capacity(self.default_dimensions.len());
        for (name, value) in self.default_dimensions {
            let reason = match validate::dimension(&name, &value)? {
                DimensionCheck::Valid => None,
                // Fixed at build time, as a blank `service` is: a warning written here would
                // be lost (no subscriber yet, in the order the docs show).
                DimensionCheck::Skip => Some("its name or value is empty (or only whitespace)"),
                DimensionCheck::RefusedValue(reason) => Some(reason),
            };
            if let Some(reason) = reason {
                // Fixed at build time: refuse it now rather than on every document.
                return Err(Error::InvalidDimension {
                    name,
                    value,
                    reason,
                });
            }
            if name == "service" {
                return Err(Error::NameCollision {
                    name,
                    used_as: "the service dimension (set it with `service`)",
                });
            }
            if log_level_keys_read && ["level", "timestamp"].contains(&name.as_str()) {
                return Err(Error::NameCollision {
                    name,
                    used_as: "a key Lambda's log-level filter reads",
                });
            }
            match default_dimensions
                .iter_mut()
                .find(|(existing, _)| *existing == name)
            {
                Some((_, existing)) => *existing = value,
                None => default_dimensions.push((name, value)),
            }
        }
        if default_dimensions.len() + usize::from(service.is_some()) > MAX_DIMENSIONS + 1 {
            return Err(Error::TooManyDimensions {
                name: default_dimensions
                    .last()
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default(),
                limit: MAX_DIMENSIONS,
            });
        }
        let function_name_from_env = self.function_name.is_none();
        let function_name = match self.function_name {
            Some(name) => Some(name),
            None => env.string(POWERTOOLS_METRICS_FUNCTION_NAME)?,
        };
        // Empty: the function's own name, from the invocation's context.
        let function_name = match own_dimension(
            "function_name",
            function_name,
            function_name_from_env.then_some(POWERTOOLS_METRICS_FUNCTION_NAME),
        ) {
            Ok(function_name) => function_name,
            Err(error) => unless_disabled(Err(error)).map(|_| None)?,
        };
        Ok(MetricsLayer {
            settings: Arc::new(Settings {
                namespace,
                default_dimensions,
                service,
                log_level_filter,
                log_level_keys_read,
                function_name,
                capture_cold_start_metric: self.capture_cold_start_metric,
                raise_on_empty_metrics: self.raise_on_empty_metrics,
                disabled,
                sink: self.sink.unwrap_or_else(|| Arc::new(Stdout)),
                warned_empty: AtomicBool::new(false),
                refused_while_disabled,
                warned_refused: AtomicBool::new(false),
            }),
            recycled: Arc::default(),
        })
    }
}

/// The value of a dimension the layer itself writes (`service`, `function_name`): `None` when
/// empty (not set), refused when CloudWatch would refuse it, blank (whitespace only) included:
/// skipped on every document instead, it would leave the dimension out of all of them, and an
/// alarm on it would never see a metric. The error names `variable` when the value came from it.
fn own_dimension(
    name: &str,
    value: Option<String>,
    variable: Option<&'static str>,
) -> Result<Option<String>, Error> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    let reason = match validate::dimension(name, &value)? {
        DimensionCheck::Valid => return Ok(Some(value)),
        DimensionCheck::Skip => "the value is blank (whitespace only), which CloudWatch refuses",
        DimensionCheck::RefusedValue(reason) => reason,
    };
    let error = Error::InvalidDimension {
        name: name.to_owned(),
        value,
        reason,
    };
    Err(match variable {
        Some(variable) => Error::FromEnv {
            variable,
            source: Box::new(error),
        },
        None => error,
    })
}

/// Lambda's application log level (`AWS_LAMBDA_LOG_LEVEL`, set by Advanced Logging Controls):
/// `None` when it is not set, `Some(None)` at INFO and below, `Some(level)` when it drops INFO
/// lines. Lambda reads a line without a valid `level` as INFO, so documents must then carry a
/// level that passes the filter.
///
/// A value that is not a level is refused, as the logger refuses it: ignored, it would let
/// Lambda's filter drop every document without a word, and Lambda itself only sets levels.
fn log_level_filter(env: &Env) -> Result<Option<Option<&'static str>>, Error> {
    let filter = env.parse_with(
        "AWS_LAMBDA_LOG_LEVEL",
        powertools_core::env::LOG_LEVEL_NAMES,
        // Trimmed, as the logger reads it.
        |level| match level.trim().to_ascii_uppercase().as_str() {
            "TRACE" | "DEBUG" | "INFO" => Some(None),
            "WARN" | "WARNING" => Some(Some("WARN")),
            "ERROR" => Some(Some("ERROR")),
            "FATAL" | "CRITICAL" => Some(Some("FATAL")),
            _ => None,
        },
    )?;
    Ok(filter)
}

/// The service built by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    settings: Arc<Settings>,
    recycled: Arc<Recycled>,
}

impl<S> MetricsService<S> {
    powertools_core::inner_service_accessors!(S);
}

/// Why an invocation through [`MetricsService`] failed: the handler's own error, unchanged, or
/// the flush refusing an empty document (only with
/// [`raise_on_empty_metrics`](MetricsLayerBuilder::raise_on_empty_metrics)).
///
/// Its [`Diagnostic`](lambda_runtime::Diagnostic) is the handler error's own, so error types
/// reported to Lambda do not change when the layer is added.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceError<E> {
    /// The handler's error.
    Handler(E),
    /// The metrics flush failed.
    Metrics(Error),
}

impl<E> ServiceError<E> {
    /// The handler's error, if that is what this is.
    pub fn handler_error(&self) -> Option<&E> {
        match self {
            ServiceError::Handler(error) => Some(error),
            ServiceError::Metrics(_) => None,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Handler(error) => error.fmt(f),
            ServiceError::Metrics(error) => error.fmt(f),
        }
    }
}

// Bounded on `Display`, not `Error`, so that handlers returning `lambda_runtime::Error` (a boxed
// error, which is not itself `Error`) are covered.
impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ServiceError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Handler(_) => None,
            ServiceError::Metrics(error) => Some(error),
        }
    }
}

impl<E: Into<lambda_runtime::Diagnostic> + 'static> From<ServiceError<E>>
    for lambda_runtime::Diagnostic
{
    fn from(error: ServiceError<E>) -> Self {
        match error {
            // A string as `Error`, a box by the error inside, as the layers name them
            // (`lambda_runtime` names a `String` `&alloc::string::String`).
            ServiceError::Handler(error) => powertools_core::failure::handler_diagnostic(error),
            ServiceError::Metrics(error) => error.into(),
        }
    }
}

impl<S, T> Service<LambdaEvent<T>> for MetricsService<S>
where
    S: Service<LambdaEvent<T>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = ServiceError<S::Error>;
    // One allocation per invocation, for the flush that follows the handler.
    type Future = BoxFuture<'static, Result<S::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ServiceError::Handler)
    }

    fn call(&mut self, event: LambdaEvent<T>) -> Self::Future {
        self.settings.warn_refused_while_disabled();
        let metrics = Metrics::for_invocation(&self.settings, &self.recycled);
        if self.settings.capture_cold_start_metric
            // Or the cold start's invocation ended before any layer saw it (an event its
            // handler's type cannot hold): this one writes its metric, once.
            && (is_cold_start(&event.context)
                || powertools_core::cold_start::writes_unseen_cold_start(&event.context))
            // A MetricsLayer outside this one (the facade's stack around a user's own layer)
            // already wrote this invocation's ColdStart to the same metric: a second would make
            // a ColdStart alarm count the cold start twice.
            && !Metrics::with_current(|outer| outer.writes_cold_start_like(&self.settings))
                .unwrap_or(false)
        {
            metrics.write_cold_start(Invocation::new(&event.context).function_name());
        }
        // A MetricsLayer outside this one (the facade's stack around a user's own layer): the
        // documents written here are the invocation's, and it must not report the invocation
        // as one without metrics (it raised `EmptyMetrics` for a handler that added some; found
        // by an attack from the docs).
        let outer = Metrics::current();
        let inner = &mut self.inner;
        // The handler's synchronous part runs in the invocation's scope too.
        let called =
            std::panic::catch_unwind(AssertUnwindSafe(|| metrics.in_scope(|| inner.call(event))));
        let future = match called {
            Ok(future) => future,
            Err(panic) => {
                // Without let-chains: this crate builds with Rust 1.85.
                if flush_after_failure(&metrics) {
                    if let Some(outer) = &outer {
                        outer.note_nested_documents();
                    }
                }
                std::panic::resume_unwind(panic)
            }
        };
        let recycled = Arc::clone(&self.recycled);
        // Armed from here, not from the future's first poll: a future dropped before it runs
        // holds the metrics its handler's synchronous part added.
        let mut cancelled = FlushIfCancelled::new(&metrics, outer.clone());
        let invocation = async move {
            let outcome = AssertUnwindSafe(metrics.clone().scope(future))
                .catch_unwind()
                .await;
            cancelled.disarm();
            let tell_outer = |wrote: bool| {
                if let Some(outer) = outer.as_ref().filter(|_| wrote) {
                    outer.note_nested_documents();
                }
            };
            match outcome {
                Ok(Ok(response)) => {
                    let flushed = metrics.flush_and_end();
                    metrics.recycle(&recycled);
                    tell_outer(flushed.as_ref().is_ok_and(|wrote| *wrote));
                    flushed.map_err(ServiceError::Metrics)?;
                    Ok(response)
                }
                Ok(Err(error)) => {
                    tell_outer(flush_after_failure(&metrics));
                    metrics.recycle(&recycled);
                    Err(ServiceError::Handler(error))
                }
                Err(panic) => {
                    tell_outer(flush_after_failure(&metrics));
                    std::panic::resume_unwind(panic)
                }
            }
        };
        // With `raise_on_empty_metrics` only, in the invocation's scope (the logging or tracing
        // layer's, else one of its own), where an idempotency layer inside notes a replayed
        // response, which is never failed for adding no metric. Without it, nothing asks, and
        // the scope's lookup on every poll is saved.
        if self.settings.raise_on_empty_metrics {
            Box::pin(powertools_core::failure::scope(invocation))
        } else {
            Box::pin(invocation)
        }
    }
}

/// Flushes after the handler failed: its error is what the invocation reports, so an empty
/// document is only logged. `true` when the invocation wrote a document.
fn flush_after_failure(metrics: &Metrics) -> bool {
    match metrics.flush_and_end() {
        Ok(wrote) => wrote,
        Err(error) => {
            tracing::warn!(%error, "metrics were not flushed after the handler failed");
            false
        }
    }
}

/// Ends the invocation's metrics when its future is dropped before the handler ends (a timeout
/// or a `select!` around the service): its document is written then, and values its tasks add
/// later are written at once, as after any invocation, instead of waiting for a flush that
/// would never come.
struct FlushIfCancelled {
    metrics: Option<Metrics>,
    /// The invocation's handle in a `MetricsLayer` outside this one, told of the documents
    /// written here (as the completed paths tell it; found by a review).
    outer: Option<Metrics>,
    /// Its place among the invocations running ([`running`]).
    running: u64,
}

impl FlushIfCancelled {
    fn new(metrics: &Metrics, outer: Option<Metrics>) -> Self {
        let running = running::started(metrics, outer.as_ref());
        FlushIfCancelled {
            metrics: Some(metrics.clone()),
            outer,
            running,
        }
    }

    /// The invocation ended: its own paths flush it.
    fn disarm(&mut self) {
        if self.metrics.take().is_some() {
            running::ended(self.running);
        }
    }
}

impl Drop for FlushIfCancelled {
    fn drop(&mut self) {
        let Some(metrics) = self.metrics.take() else {
            return;
        };
        running::ended(self.running);
        match metrics.flush_and_end_cancelled() {
            Ok(true) => {
                if let Some(outer) = &self.outer {
                    outer.note_nested_documents();
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "metrics were not flushed after the invocation was cancelled");
            }
        }
    }
}

/// The invocations running in this process, for the exit: Lambda's `SIGTERM` at shutdown (the
/// tracer's extension handles it) exits the process with invocations still running under
/// `run_concurrent`, and no destructor runs then, so the metrics they had added were lost
/// without a word (found by an audit from the docs). Before the exit their documents are
/// written, with a warning.
mod running {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, Once, PoisonError};

    use crate::Metrics;

    /// Each running invocation's number, handle, and the handle of a `MetricsLayer` outside
    /// this one in the same invocation (the facade's stack around a caller's own layer).
    static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

    type Running = (u64, Metrics, Option<Metrics>);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static ON_EXIT: Once = Once::new();

    fn running() -> std::sync::MutexGuard<'static, Vec<Running>> {
        RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `metrics`' invocation started; its number, for [`ended`].
    pub(super) fn started(metrics: &Metrics, outer: Option<&Metrics>) -> u64 {
        ON_EXIT.call_once(|| powertools_core::exit::on_exit(write_running));
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        running().push((number, metrics.clone(), outer.cloned()));
        number
    }

    /// The invocation `number` ended (its own paths write its metrics).
    pub(super) fn ended(number: u64) {
        let mut running = running();
        if let Some(at) = running.iter().position(|(each, _, _)| *each == number) {
            running.swap_remove(at);
        }
    }

    /// Writes what the invocations still running added, and says so. A layer inside another
    /// in the same invocation is written first and tells the outer one, which is what counts
    /// (one invocation was counted twice, and its outer layer said it had no metrics; found by
    /// a review).
    fn write_running() {
        let mut running = std::mem::take(&mut *running());
        if running.is_empty() {
            return;
        }
        // The inner layers first (they join before their outer ones return, but a layer's
        // place in the list is not what says it is inner: its outer handle is).
        running.sort_by_key(|(_, _, outer)| outer.is_none());
        let (mut invocations, mut written) = (0, 0);
        for (_, metrics, outer) in &running {
            let wrote = matches!(metrics.flush_and_end(), Ok(true));
            match outer {
                Some(outer) if wrote => outer.note_nested_documents(),
                Some(_) => {}
                None => {
                    invocations += 1;
                    written += usize::from(wrote);
                }
            }
        }
        tracing::warn!(
            invocations,
            with_metrics = written,
            "invocations were still running when the process exited: the metrics they had \
             added are written now, and what they would have added after is lost"
        );
    }
}
