use std::any::Any;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::{Diagnostic, LambdaEvent};
use powertools_core::{Invocation, is_cold_start};
use serde_json::Value;
use tower::{Layer, Service};
use tracing::Instrument;

#[cfg(feature = "jmespath")]
use crate::correlation::CorrelationIdPath;
use crate::correlation::{CorrelationIdFn, CorrelationIdSource, NoCorrelationId};
use crate::failure::{self, Failure};
use crate::finite::{MAX_VALUE_DEPTH, nests_deeper_than};
use crate::invocation::InvocationState;
use crate::json::masked_event_text;
use crate::level::Level;
use crate::logger::{Logger, Shared};
use crate::scope::Scope;
use crate::subscriber::{JsonLayer, flush_buffer_then, with_stack_trace};
use powertools_core::failure::ErrorDescriptions;

/// Scopes each invocation: every line it writes, from any function it awaits, carries the
/// Lambda context keys (`function_request_id`, `cold_start`, `xray_trace_id`, …), its
/// correlation id and the keys the handler appends; the debug sampling decision and the log
/// buffer are its own. Concurrent invocations in one process never share any of it.
///
/// When the handler returns an error or panics, the layer writes one `ERROR` line for it, with
/// the invocation's context and keys and Powertools' exception keys:
///
/// ```json
/// {"level":"ERROR","message":"Invocation failed","timestamp":"2026-11-27T09:15:02.131Z",
///  "service":"payments","cold_start":false,"function_name":"payment",…,
///  "function_request_id":"req-9","xray_trace_id":"1-67a8f0e1-…","correlation_id":"api-1",
///  "exception_name":"PaymentFailed","exception":"payment of o-1 failed: card declined",
///  "order_id":"o-1","location":"powertools_logging::layer:214"}
/// ```
///
/// A panic is `"message":"Invocation panicked"`, `"exception_name":"Panic"`, the panic's message
/// as `exception`, its `location` (the `panic!`'s `file:line`, unless a business `location`
/// replaces it as it replaces the code location), and a `stack_trace` in the shape Powertools for Python writes
/// (`{"type","value","frames":[{"file","line","function"}]}`, the panicking function last; the
/// frames have names only in a binary that keeps its symbols). See
/// [`error_diagnostic`](Self::error_diagnostic) for how an error is named, and
/// [`LoggerBuilder::runtime_failure_lines`](crate::LoggerBuilder::runtime_failure_lines) to keep
/// `lambda_runtime`'s own line for the same failure out.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder().service("orders").writer(logs.clone()).build()?;
/// let _guard = tracing::subscriber::set_default(logger.subscriber());
///
/// let handler = ServiceBuilder::new()
///     .layer(LoggingLayer::new(logger).correlation_id_from(|event: &Value| {
///         event["requestContext"]["requestId"].as_str().map(str::to_owned)
///     }))
///     .service(service_fn(|event: LambdaEvent<Value>| async move {
///         powertools_logging::append_key("order_id", "o-1001")?;
///         tracing::info!("order accepted");
///         Ok::<_, lambda_runtime::Error>(json!({"statusCode": 201}))
///     }));
/// let event = TestContext::new().with_request_id("req-1").event(json!({"requestContext": {"requestId": "api-1"}}));
/// handler.oneshot(event).await?;
///
/// let line = &logs.json()[0];
/// assert_eq!(line["function_request_id"], "req-1");
/// assert_eq!(line["correlation_id"], "api-1");
/// assert_eq!(line["order_id"], "o-1001");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoggingLayer<C = NoCorrelationId> {
    logger: Logger,
    correlation: C,
    error_hook: Option<ErrorDescriptions>,
}

impl LoggingLayer {
    /// A layer without a correlation id.
    pub fn new(logger: Logger) -> Self {
        LoggingLayer {
            logger,
            correlation: NoCorrelationId,
            error_hook: None,
        }
    }
}

impl<C> LoggingLayer<C> {
    /// Takes the correlation id from `source`.
    pub fn correlation_id<C2>(self, source: C2) -> LoggingLayer<C2> {
        LoggingLayer {
            logger: self.logger,
            correlation: source,
            error_hook: self.error_hook,
        }
    }

    /// Describes errors of type `E` (the error type this layer's inner service returns) as
    /// Lambda reports them, for the failure line's `exception_name` and `exception`. Lambda's
    /// `Into<Diagnostic>` consumes the error, which the layer hands back unchanged, so the layer
    /// cannot call it: give it this view of your error by reference (for a `Clone` error,
    /// `|error: &MyError| error.clone().into()`).
    ///
    /// Without it the line names a `Diagnostic` by its `error_type`; a boxed error
    /// (`lambda_runtime::Error`) by the type or variant its `Debug` begins with, with its
    /// message chain; a `String` or `&str` as `Error`; an error that a powertools-rs layer
    /// passes on (`Handler(…)`) by what it wraps; any other error by its type path, with its
    /// `Debug` text.
    ///
    /// `E` must be exactly the inner service's error type: a description of another type is
    /// never used. Call it once per type; a later call's type is tried first. A description that
    /// panics is not used (the error is named as without it, and the line is still written).
    ///
    /// ```
    /// use lambda_runtime::Diagnostic;
    /// use powertools_logging::{Logger, LoggingLayer};
    ///
    /// #[derive(Debug)]
    /// enum OrderError {
    ///     OutOfStock(u32),
    /// }
    ///
    /// let layer = LoggingLayer::new(Logger::builder().build()?).error_diagnostic(|error: &OrderError| {
    ///     match error {
    ///         OrderError::OutOfStock(item) => Diagnostic {
    ///             error_type: "OutOfStock".to_owned(),
    ///             error_message: format!("item {item} is out of stock"),
    ///         },
    ///     }
    /// });
    /// # drop(layer);
    /// # Ok::<(), powertools_logging::Error>(())
    /// ```
    pub fn error_diagnostic<E, F>(mut self, describe: F) -> Self
    where
        E: 'static,
        F: Fn(&E) -> Diagnostic + Send + Sync + 'static,
    {
        self.error_hook = Some(ErrorDescriptions::then(self.error_hook.as_ref(), describe));
        self
    }

    /// Takes the correlation id at a JMESPath expression in the event (see
    /// [`correlation_paths`](crate::correlation_paths)). Name headers in lowercase
    /// (`headers."x-correlation-id"`): typed API Gateway and ALB events hold them so, and a
    /// path that names one with capitals finds nothing there (a warning says so, once, when the
    /// lowercase path would have found the id). An expression that fails on an event
    /// (`powertools_json(body).id` on a body that is not JSON) is warned about, and the
    /// invocation runs without a correlation id, where Python fails the invocation.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `expression` is not valid JMESPath.
    #[cfg(feature = "jmespath")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
    pub fn correlation_id_path(
        self,
        expression: &str,
    ) -> Result<LoggingLayer<CorrelationIdPath>, crate::Error> {
        Ok(self.correlation_id(CorrelationIdPath::new(expression)?))
    }

    /// Takes the correlation id a typed closure returns for the event.
    pub fn correlation_id_from<F>(self, extract: F) -> LoggingLayer<CorrelationIdFn<F>> {
        self.correlation_id(CorrelationIdFn(extract))
    }
}

impl<S, C: Clone> Layer<S> for LoggingLayer<C> {
    type Service = LoggingService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        failure::install_panic_hook();
        LoggingService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`LoggingLayer`].
#[derive(Debug, Clone)]
pub struct LoggingService<S, C = NoCorrelationId> {
    inner: S,
    layer: LoggingLayer<C>,
}

impl<S, C> LoggingService<S, C> {
    powertools_core::inner_service_accessors!(S);
}

/// Whether this invocation logs at `DEBUG`: a fresh draw per invocation, so that a rate of 0.1
/// samples a tenth of the invocations, not a tenth of the execution environments.
fn draw(rate: f64, request_id: &str) -> bool {
    if rate <= 0.0 {
        return false;
    }
    // `RandomState` is seeded randomly, once per thread and differently per instance.
    let bits = RandomState::new().hash_one(request_id) >> 11;
    (bits as f64 / (1u64 << 53) as f64) < rate
}

impl<S, C, T> Service<LambdaEvent<T>> for LoggingService<S, C>
where
    S: Service<LambdaEvent<T>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: fmt::Debug + Send + 'static,
    C: CorrelationIdSource<T>,
    T: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    // One allocation per invocation, for the work after the handler (the log buffer).
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<T>) -> Self::Future {
        // Inside another logging layer's invocation of this request (the facade's stack around
        // a function's own layer): that layer writes its lines and its failure line; this one
        // adds the correlation id it finds. A second invocation here would drop the outer one's
        // keys and correlation id and write a second failure line.
        let outer = Scope::current().filter(|scope| {
            scope
                .invocation
                .as_ref()
                .is_some_and(|invocation| invocation.is_for(&event.context.request_id))
        });
        if let Some(outer) = outer {
            if let Some(id) = self.layer.correlation.correlation_id(&event.payload) {
                outer.keys().correlation_id = Some(id);
            }
            // In the outer one's scope and span wherever it is polled (a task of its own, say).
            let future = self.inner.call(event).instrument(tracing::Span::current());
            return Box::pin(outer.run(future));
        }
        let own = &self.layer.logger;
        if !own.shared.checked_subscriber.load(Ordering::Relaxed)
            && !own.shared.checked_subscriber.swap(true, Ordering::Relaxed)
        {
            check_subscriber_installed(own);
        }
        // The logger installed where the invocation starts writes its lines and decides which
        // reach it (its level, sample rate and buffer): the layer draws sampling, logs the event
        // and buffers by its settings too. Looked up at each invocation, not once: a thread may
        // have a subscriber of its own (`set_default`; a first version decided once, for every
        // thread, by the first invocation's: found by a review).
        let other = tracing::dispatcher::get_default(|dispatch| {
            match dispatch.downcast_ref::<JsonLayer>() {
                Some(json) if !Arc::ptr_eq(&json.logger().shared, &own.shared) => {
                    Some(json.logger().shared.clone())
                }
                _ => None,
            }
        });
        let shared = match other {
            Some(other) => {
                // Said the first time, at whichever invocation (a review found it said only
                // when the first invocation's was another logger).
                if !own.shared.warned_other_logger.load(Ordering::Relaxed)
                    && !own.shared.warned_other_logger.swap(true, Ordering::Relaxed)
                {
                    warn_other_logger(own, &other);
                }
                other
            }
            None => own.shared.clone(),
        };
        let invocation = Invocation::new(&event.context);
        let sampled = draw(shared.sample_rate.unwrap_or(0.0), invocation.request_id());
        let logged_event = if shared.log_event {
            received_event(&shared, invocation.request_id(), &event.payload)
        } else {
            None
        };
        let has_event = logged_event.is_some();
        let state = Arc::new(InvocationState::new(
            &invocation,
            is_cold_start(&event.context),
            sampled,
            shared.buffer.map(|buffer| buffer.max_bytes),
            logged_event,
        ));
        let scope = Scope::root(
            state.clone(),
            self.layer.correlation.correlation_id(&event.payload),
        );

        let span = scope
            .in_scope(|| tracing::info_span!(target: "powertools_logging", "lambda_invocation"));
        let inner = &mut self.inner;
        let called = scope.in_scope(|| {
            span.in_scope(|| {
                if sampled {
                    tracing::debug!("Setting log level to DEBUG due to sampling rate");
                }
                if has_event {
                    tracing::info!(
                        powertools_logging.invocation_event = true,
                        "Lambda invocation event"
                    );
                }
                std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(event)))
            })
        });
        let future = match called {
            Ok(future) => future,
            Err(panic) => {
                scope.in_scope(|| end_invocation(&shared, &state, true));
                scope.in_scope(|| span.in_scope(|| log_panic(&*panic)));
                std::panic::resume_unwind(panic)
            }
        };
        let error_hook = self.layer.error_hook.clone();
        // In the scope where a powertools-rs layer inside says what Lambda reports for its own
        // errors, for the failure line.
        Box::pin(powertools_core::failure::scope(async move {
            // Inside the idempotency layer (entered before this layer), a replay never reaches this
            // layer: said once, at the first invocation (the order is the function's, fixed;
            // found by an attack from the docs: the wrong order was accepted without a word).
            if !shared.checked_layer_order.load(Ordering::Relaxed)
                && !shared.checked_layer_order.swap(true, Ordering::Relaxed)
                && powertools_core::failure::idempotency_layer_entered()
            {
                shared.notice(Level::Warn, INSIDE_IDEMPOTENCY_WARNING);
            }
            // Dropped before it completes (a timeout outside the layer): said so, in the
            // invocation's scope and span, and its buffer written as a failure's is (it wrote
            // nothing, as a success does; found by an attack from the docs).
            let mut cancelled = OnDrop(Some(|| {
                scope.in_scope(|| {
                    end_invocation(&shared, &state, true);
                    span.in_scope(log_cancelled);
                });
            }));
            let outcome = AssertUnwindSafe(scope.clone().run(future.instrument(span.clone())))
                .catch_unwind()
                .await;
            cancelled.0 = None;
            // A failure's, in the invocation's scope, where the buffer's notice finds its keys;
            // a success writes nothing, and does not enter it.
            if matches!(outcome, Ok(Ok(_))) {
                end_invocation(&shared, &state, false);
            } else {
                scope.in_scope(|| end_invocation(&shared, &state, true));
            }
            // The failure line is written in the invocation's scope and span; a success writes
            // nothing, and enters neither (about 400 instructions per invocation).
            match &outcome {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => scope.in_scope(|| {
                    span.in_scope(|| {
                        // The error's own `Display` and `Debug` run here: one that panics is
                        // described as such, not a panic of the layer's.
                        let described = powertools_core::failure::catch_quiet_panic(|| {
                            failure::describe_error(error, error_hook.as_ref())
                        })
                        .unwrap_or_else(|_| failure::undescribable::<S::Error>());
                        match failure::caught_panic(described) {
                            Err(failure) => log_error(&failure),
                            // A panic a layer inside caught: with its location and stack
                            // trace, and said to be a panic as one this layer caught is, so
                            // that one query finds every panic.
                            Ok(report) => log_failure_report(report, "Invocation panicked"),
                        }
                    });
                }),
                Err(panic) => scope.in_scope(|| span.in_scope(|| log_panic(&**panic))),
            }
            match outcome {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }))
    }
}

/// The event to log for this invocation: as Lambda sent it, when a
/// [`RawEventLayer`](crate::RawEventLayer) kept it, else the event itself when it is a
/// `serde_json::Value` (which holds every field it was sent with). Otherwise `None`, with a
/// warning the first time.
///
/// An event nested deeper than a line can hold ([`MAX_VALUE_DEPTH`]) is its JSON text: under
/// `message` it made a line that serde_json, and the tools built on it, could not read (found by
/// an attack from the docs; Lambda sends events nested up to 127 levels).
fn received_event<T: 'static>(shared: &Shared, request_id: &str, payload: &T) -> Option<Value> {
    // Its text, masked as the event would be.
    let too_deep = |event: &Value| Value::String(masked_event_text(event, &shared.redactor));
    if let Some(body) = crate::raw_event::take(request_id) {
        return Some(match serde_json::from_slice(&body) {
            Ok(value) if nests_deeper_than(&value, MAX_VALUE_DEPTH) => too_deep(&value),
            Ok(value) => value,
            // Lambda sends JSON; keep whatever it was as text rather than nothing.
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        });
    }
    if let Some(value) = (payload as &dyn Any).downcast_ref::<Value>() {
        if nests_deeper_than(value, MAX_VALUE_DEPTH) {
            return Some(too_deep(value));
        }
        return Some(value.clone());
    }
    if !shared.warned_no_raw_event.swap(true, Ordering::Relaxed) {
        shared.notice(
            Level::Warn,
            "POWERTOOLS_LOGGER_LOG_EVENT is on, but the event as Lambda sent it is not available: \
             add powertools_logging::RawEventLayer to the runtime (powertools::run does), or take \
             the event as serde_json::Value. The event is not logged.",
        );
    }
    None
}

/// What the layer says, once, when it runs inside the idempotency layer.
const INSIDE_IDEMPOTENCY_WARNING: &str = "LoggingLayer runs inside IdempotencyLayer: a replayed \
     invocation writes no log line (nor metrics or a span, from layers inside it too), and the \
     idempotency layer's refusals no failure line. Put IdempotencyLayer innermost, inside the \
     logging layer (inside powertools.layer() with the facade).";

/// Runs its function when dropped, unless taken out first.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(function) = self.0.take() {
            // Quiet, and caught: a drop may run while a panic unwinds, where a second one
            // aborts the process. The payload is leaked, not dropped: its own `Drop` may panic.
            if let Err(payload) = powertools_core::failure::catch_quiet_panic(function) {
                std::mem::forget(payload);
            }
        }
    }
}

/// Writes the line of an invocation whose future was dropped before it completed.
fn log_cancelled() {
    tracing::warn!(
        target: "powertools_logging",
        "Invocation cancelled: its future was dropped before it completed (a timeout outside the \
         layer, say), so its outcome is unknown"
    );
}

/// Writes the failure line of an invocation whose handler returned an error.
fn log_error(failure: &Failure) {
    tracing::error!(
        target: "powertools_logging",
        exception_name = failure.name.as_str(),
        exception = %failure.message,
        powertools_logging.failure = true,
        "Invocation failed"
    );
}

/// Says, once, that no `tracing` subscriber is installed (every line of the function, its
/// failure lines included, would be lost without a word: `init()` forgotten), in the layer's
/// logger's own output.
fn check_subscriber_installed(logger: &Logger) {
    let nothing = tracing::dispatcher::get_default(|dispatch| {
        dispatch.is::<tracing::subscriber::NoSubscriber>()
    });
    if nothing {
        report_missing_subscriber(logger);
    }
}

/// Says that the installed subscriber is another logger's, whose settings the lines then follow
/// (a second `Logger` built for the layer: its service, keys, redaction and writer were not
/// used, and a key it was told to redact was written in clear, without a word; found by an
/// attack from the docs), in that logger's output, where the lines go.
fn warn_other_logger(logger: &Logger, installed: &Shared) {
    /// The most of a service name the warning quotes.
    const SERVICE_BYTES: usize = 64;
    let service = |shared: &Shared| {
        let name = &shared.service;
        name[..powertools_core::text::floor_char_boundary(name, SERVICE_BYTES)].to_owned()
    };
    installed.notice(
        Level::Warn,
        &format!(
            "this LoggingLayer was given a Logger other than the one installed as the \
                     tracing subscriber: its lines are written by the installed one (service \
                     {:?}), with all of that logger's settings (its service, keys, redaction, \
                     level, sample rate, event logging, log buffer and writer); this layer's \
                     logger (service {:?}) is not used. Give the layer the Logger you installed \
                     (a clone of it), or install the layer's",
            service(installed),
            service(&logger.shared),
        ),
    );
}

/// Says, in the logger's own output, that no `tracing` subscriber is installed.
fn report_missing_subscriber(logger: &Logger) {
    // At ERROR: every line is lost, and a logger at `POWERTOOLS_LOG_LEVEL=ERROR` must say so.
    tracing::subscriber::with_default(logger.subscriber(), || {
        tracing::error!(
            target: "powertools_logging",
            "no tracing subscriber is installed, so this function's log lines are dropped: \
             call init() on the Logger (or on Powertools) in main, before the runtime starts"
        );
    });
}

/// Writes the failure line of an invocation whose handler panicked.
fn log_panic(payload: &(dyn Any + Send)) {
    log_failure_report(failure::describe_panic(payload), "Invocation panicked");
}

/// Writes the failure line of a panic, with its location and stack trace when known.
fn log_failure_report(report: failure::PanicReport, message: &str) {
    let failure = &report.failure;
    with_stack_trace(report.stack_trace, || match &report.location {
        Some(location) => tracing::error!(
            target: "powertools_logging",
            exception_name = failure.name.as_str(),
            exception = %failure.message,
            location = location.as_str(),
            powertools_logging.failure = true,
            "{message}"
        ),
        None => tracing::error!(
            target: "powertools_logging",
            exception_name = failure.name.as_str(),
            exception = %failure.message,
            powertools_logging.failure = true,
            "{message}"
        ),
    });
}

/// Writes the buffer if the handler failed (and the settings say so), else drops it.
fn end_invocation(shared: &Shared, state: &InvocationState, failed: bool) {
    let flush = failed
        && shared
            .buffer
            .is_some_and(|buffer| buffer.flush_on_handler_error);
    if flush {
        flush_buffer_then(state, true);
    } else if let Some(mut buffer) = state.buffer() {
        buffer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_draws_about_the_rate_and_never_or_always_at_the_ends() {
        let ids: Vec<String> = (0..4000).map(|i| format!("req-{i}")).collect();
        let sampled = ids.iter().filter(|id| draw(0.25, id)).count();
        assert!((800..1200).contains(&sampled), "{sampled} of 4000 at 0.25");
        assert!(ids.iter().all(|id| !draw(0.0, id)));
        assert!(ids.iter().all(|id| draw(1.0, id)));
    }
}
