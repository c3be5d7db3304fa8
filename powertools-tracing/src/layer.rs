use std::fmt;
use std::panic::AssertUnwindSafe;
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::LambdaEvent;
use opentelemetry::trace::Status;
use opentelemetry::{KeyValue, trace::TraceContextExt};
use powertools_core::{Invocation, is_cold_start};
use serde::Serialize;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::tracer::Tracer;

/// The most bytes of a response recorded on a span (X-Ray's segment limit is 64 KB).
const MAX_CAPTURED_BYTES: usize = 16 * 1024;

/// One OpenTelemetry span per invocation, joined to the X-Ray trace Lambda started, with the
/// FaaS semantic conventions and the Powertools `ColdStart` and `Service` attributes; the
/// handler's own `tracing` spans become its children. The spans are exported before the
/// invocation returns, within the flush timeout, so that Lambda's freeze does not lose them.
///
/// The layer is `Clone` and keeps nothing per invocation outside the invocation's future, so it
/// is correct when `lambda_runtime` runs invocations concurrently.
///
/// ```no_run
/// use lambda_runtime::{LambdaEvent, service_fn, tower::ServiceBuilder};
/// use powertools_tracing::{Tracer, TracingLayer};
/// use serde_json::{Value, json};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// #[tracing::instrument(skip_all)]
/// async fn bake() {}
///
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     let tracer = Tracer::from_env()?;
///     tracing::subscriber::set_global_default(
///         tracing_subscriber::registry().with(tracer.otel_layer()),
///     )?;
///     let handler = ServiceBuilder::new()
///         .layer(TracingLayer::new(tracer))
///         .service(service_fn(|_event: LambdaEvent<Value>| async {
///             bake().await;
///             Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
///         }));
///     lambda_runtime::run(handler).await
/// }
/// ```
#[derive(Debug, Clone)]
pub struct TracingLayer {
    tracer: Tracer,
    trigger: &'static str,
}

impl TracingLayer {
    /// A layer for invocations whose trigger is not set (`faas.trigger = other`).
    pub fn new(tracer: Tracer) -> Self {
        TracingLayer {
            tracer,
            trigger: "other",
        }
    }

    /// The `faas.trigger` of the function: `http`, `pubsub`, `datasource`, `timer` or `other`.
    pub fn trigger(mut self, trigger: &'static str) -> Self {
        self.trigger = trigger;
        self
    }
}

impl<S> Layer<S> for TracingLayer {
    type Service = TracingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracingService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`TracingLayer`].
#[derive(Debug, Clone)]
pub struct TracingService<S> {
    inner: S,
    layer: TracingLayer,
}

impl<S> TracingService<S> {
    powertools_core::inner_service_accessors!(S);
}

/// The invocation's parent: the X-Ray trace header of its own `Context` (never the process-wide
/// `_X_AMZN_TRACE_ID`, which concurrent invocations overwrite).
fn parent_context(trace_header: Option<&str>) -> Option<opentelemetry::Context> {
    let span_context = crate::propagation::parse_xray_header(trace_header?)?;
    span_context
        .is_valid()
        .then(|| opentelemetry::Context::current().with_remote_span_context(span_context))
}

fn invocation_span(
    layer: &TracingLayer,
    invocation: &Invocation<'_>,
    cold_start: bool,
) -> tracing::Span {
    let inner = &layer.tracer.inner;
    let span = tracing::info_span!(
        target: "powertools_tracing",
        "lambda_invocation",
        otel.name = invocation.function_name(),
        otel.kind = "server",
        faas.invocation_id = invocation.request_id(),
        faas.trigger = layer.trigger,
        faas.coldstart = cold_start,
        // faas.name, faas.version, cloud.provider and cloud.region are the same for every
        // invocation: they are on the resource (`Tracer`), as the conventions place them.
        cloud.account.id = invocation.account_id().unwrap_or_default(),
        cloud.resource_id = invocation.function_arn(),
        ColdStart = cold_start,
        Service = inner.service.as_str(),
    );
    if let Some(tenant) = invocation.tenant_id() {
        span.set_attribute("faas.tenant_id", tenant.to_owned());
    }
    if let Some(parent) = parent_context(invocation.xray_trace_header()) {
        // Fails only when the span is disabled (no OTel layer): nothing to join then.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the handler's outcome on the span.
fn record_outcome<R: Serialize, E: fmt::Debug>(
    span: &tracing::Span,
    tracer: &Tracer,
    outcome: &Result<R, E>,
) {
    let inner = &tracer.inner;
    match outcome {
        Ok(response) if inner.capture_response => {
            if let Ok(mut json) = serde_json::to_string(response) {
                if json.len() > MAX_CAPTURED_BYTES {
                    let mut end = MAX_CAPTURED_BYTES;
                    while !json.is_char_boundary(end) {
                        end -= 1;
                    }
                    json.truncate(end);
                }
                span.set_attribute("powertools.response", json);
            }
        }
        Ok(_) => {}
        Err(error) => {
            let description = if inner.capture_error {
                format!("{error:?}")
            } else {
                "handler error".to_owned()
            };
            span.set_status(Status::error(description.clone()));
            if inner.capture_error {
                span.add_event(
                    "exception",
                    vec![
                        KeyValue::new("exception.type", std::any::type_name::<E>()),
                        KeyValue::new("exception.message", description),
                    ],
                );
            }
        }
    }
}

impl<S, T> Service<LambdaEvent<T>> for TracingService<S>
where
    S: Service<LambdaEvent<T>>,
    S::Future: Send + 'static,
    S::Response: Serialize + Send + 'static,
    S::Error: fmt::Debug + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    // One allocation per invocation, for the flush that follows the handler.
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<T>) -> Self::Future {
        if !self.layer.tracer.is_enabled() {
            return Box::pin(self.inner.call(event));
        }
        let invocation = Invocation::new(&event.context);
        let span = invocation_span(&self.layer, &invocation, is_cold_start(&event.context));
        let tracer = self.layer.tracer.clone();
        let future = span.in_scope(|| self.inner.call(event));
        Box::pin(async move {
            let outcome = AssertUnwindSafe(future.instrument(span.clone()))
                .catch_unwind()
                .await;
            match &outcome {
                Ok(result) => record_outcome(&span, &tracer, result),
                Err(_) => {
                    span.set_status(Status::error("the handler panicked"));
                    span.add_event(
                        "exception",
                        vec![KeyValue::new("exception.message", "the handler panicked")],
                    );
                }
            }
            // The span ends when its last handle is dropped: end it before exporting.
            drop(span);
            tracer.flush().await;
            match outcome {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn the_parent_comes_from_the_x_ray_header_with_its_sampled_flag() {
        let sampled = parent_context(Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ))
        .unwrap();
        let span_context = sampled.span().span_context().clone();
        assert_eq!(
            span_context.trace_id().to_string(),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(span_context.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(span_context.is_sampled());
        assert!(span_context.is_remote());

        let unsampled = parent_context(Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        ))
        .unwrap();
        assert!(!unsampled.span().span_context().is_sampled());
        assert!(parent_context(None).is_none());
        assert!(parent_context(Some("garbage")).is_none());
    }
}
