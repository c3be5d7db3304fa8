use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::LambdaEvent;
use powertools_core::{Invocation, is_cold_start};
use serde::Serialize;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::correlation::{
    CorrelationIdFn, CorrelationIdPath, CorrelationIdSource, NoCorrelationId,
};
use crate::invocation::InvocationState;
use crate::logger::Logger;
use crate::subscriber::flush_buffer;

/// Scopes each invocation: every line it writes, from any function it awaits, carries the
/// Lambda context keys (`function_request_id`, `cold_start`, `xray_trace_id`, …), its
/// correlation id and the keys the handler appends; the debug sampling decision and the log
/// buffer are its own. Concurrent invocations in one process never share any of it.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_logging::{Logger, LoggingLayer, MemoryLogs, correlation_paths};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder().service("orders").writer(logs.clone()).build()?;
/// let _guard = tracing::subscriber::set_default(logger.subscriber());
///
/// let handler = ServiceBuilder::new()
///     .layer(LoggingLayer::new(logger).correlation_id_path(correlation_paths::API_GATEWAY_REST)?)
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
}

impl LoggingLayer {
    /// A layer without a correlation id.
    pub fn new(logger: Logger) -> Self {
        LoggingLayer {
            logger,
            correlation: NoCorrelationId,
        }
    }
}

impl<C> LoggingLayer<C> {
    /// Takes the correlation id from `source`.
    pub fn correlation_id<C2>(self, source: C2) -> LoggingLayer<C2> {
        LoggingLayer {
            logger: self.logger,
            correlation: source,
        }
    }

    /// Takes the correlation id at a JMESPath expression in the event (see
    /// [`correlation_paths`](crate::correlation_paths)).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `expression` is not valid JMESPath.
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
    S::Error: Send + 'static,
    C: CorrelationIdSource<T>,
    T: Serialize,
{
    type Response = S::Response;
    type Error = S::Error;
    // One allocation per invocation, for the work after the handler (the log buffer).
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<T>) -> Self::Future {
        let shared = self.layer.logger.shared.clone();
        let invocation = Invocation::new(&event.context);
        let sampled = draw(shared.sample_rate, invocation.request_id());
        let logged_event = if shared.log_event {
            serde_json::to_value(&event.payload).ok()
        } else {
            None
        };
        let state = Arc::new(InvocationState::new(
            &invocation,
            is_cold_start(&event.context),
            sampled,
            shared.buffer.map(|buffer| buffer.max_bytes),
            logged_event,
        ));
        *state.correlation_id() = self.layer.correlation.correlation_id(&event.payload);

        let span = state
            .in_scope(|| tracing::info_span!(target: "powertools_logging", "lambda_invocation"));
        let inner = &mut self.inner;
        let called = state.in_scope(|| {
            span.in_scope(|| {
                if sampled {
                    tracing::debug!("Setting log level to DEBUG due to sampling rate");
                }
                if shared.log_event {
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
                end_invocation(&shared, &state, true);
                std::panic::resume_unwind(panic)
            }
        };
        Box::pin(async move {
            let outcome = AssertUnwindSafe(state.clone().scope(future.instrument(span)))
                .catch_unwind()
                .await;
            end_invocation(&shared, &state, !matches!(outcome, Ok(Ok(_))));
            match outcome {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Writes the buffer if the handler failed (and the settings say so), else drops it.
fn end_invocation(shared: &crate::logger::Shared, state: &InvocationState, failed: bool) {
    let flush = failed
        && shared
            .buffer
            .is_some_and(|buffer| buffer.flush_on_handler_error);
    if flush {
        flush_buffer(shared, state);
    } else if let Some(mut buffer) = state.buffer() {
        buffer.clear();
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
