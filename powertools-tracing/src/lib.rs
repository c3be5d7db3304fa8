//! OpenTelemetry tracing for Rust Lambda functions: one span per invocation, joined to the X-Ray
//! trace Lambda started, with the handler's `tracing` spans as its children, exported over
//! OTLP/HTTP and flushed before the invocation returns.
//!
//! Powertools traces with the X-Ray SDK, which AWS retires in 2027; this crate does the same job
//! with OpenTelemetry, exporting in-process (to the ADOT / Application Signals Lambda layer, a
//! collector, or any OTLP endpoint).
//!
//! # Example
//!
//! ```
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
//! use powertools_core::testing::TestContext;
//! use powertools_tracing::{Tracer, TracingLayer};
//! use serde_json::{Value, json};
//!
//! #[tracing::instrument(skip_all, fields(loaves = 3))]
//! async fn bake() {}
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! // Exports to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318), with a bounded flush.
//! let tracer = Tracer::builder()
//!     .service("orders")
//!     .endpoint("http://127.0.0.1:9/v1/traces") // nothing listens here: the flush gives up
//!     .flush_timeout(std::time::Duration::from_millis(200))
//!     .build()?;
//! let _guard = tracing::subscriber::set_default(tracer.subscriber());
//!
//! let handler = ServiceBuilder::new()
//!     .layer(TracingLayer::new(tracer))
//!     .service(service_fn(|_event: LambdaEvent<Value>| async {
//!         bake().await;
//!         Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
//!     }));
//! // A receiver that is down never fails the invocation.
//! let response = handler.oneshot(TestContext::new().event(json!({}))).await?;
//! assert_eq!(response["accepted"], true);
//! # Ok(())
//! # }
//! ```
//!
//! # What a span carries
//!
//! The invocation span is named for the function (`otel.name`), of kind server, with the OTel
//! FaaS conventions: `faas.invocation_id`, `faas.trigger`, `faas.coldstart`, `cloud.account.id`
//! from the ARN, `cloud.resource_id` (the function's ARN, an alias in the invoked ARN replaced by
//! the version it runs: `…:function:orders:live` gives `…:function:orders:7`) and
//! `aws.lambda.invoked_arn` (the ARN as invoked). Its parent is the X-Ray trace header of the
//! invocation's own `Context` (`Root`, `Parent`, `Sampled`), so it joins the trace Lambda began
//! and follows its sampling decision. Trace ids are X-Ray compatible.
//!
//! What every invocation shares (`service.name`, `faas.name`, `faas.version`, `cloud.provider`,
//! `cloud.region`) is on the resource, once per export, as the conventions place it. Spans carry
//! no `code.*`, `thread.*`, `target` or busy/idle-time attributes, and log lines are not copied
//! into them as span events: X-Ray shows none of these, and each costs allocations per span. The
//! log lines carry the trace id instead.
//!
//! A handler error sets the span status to error and adds an `exception` event whose
//! `exception.type` is the error's own type (a `Diagnostic`'s `error_type`; the type inside a
//! boxed error; see [`TracingLayer::error_diagnostic`] for Lambda's own `errorType` of a type of
//! yours) and whose `exception.message` is its message. The response is recorded as
//! `powertools.response` (up to 16 KB). `POWERTOOLS_TRACER_CAPTURE_RESPONSE=false` and
//! `POWERTOOLS_TRACER_CAPTURE_ERROR=false` turn those off; `POWERTOOLS_TRACE_DISABLED=true` (or
//! `POWERTOOLS_DEV=true`) turns tracing off: the layer then passes the call straight through.
//!
//! # HTTP invocations
//!
//! When the event is an API Gateway (REST or HTTP API), function URL or ALB request, the span also
//! gets the OTel HTTP server attributes `http.request.method`, `url.path`, `http.route` (the
//! route template, for API Gateway) and `http.response.status_code` (the response's
//! `statusCode`), `faas.trigger` becomes `http`, and a 5xx response sets the span status to
//! error. The layer recognises `serde_json::Value` events by their shape and the
//! `aws_lambda_events` request types (feature `aws-lambda-events`); for an event type of your own,
//! see [`TracingLayer::http_request`]. Other events cost a type comparison or a map lookup.
//!
//! # X-Ray annotations
//!
//! X-Ray indexes as annotations only the span attributes listed in the span's
//! `aws.xray.annotations` attribute; the others become metadata. The invocation span lists
//! `ColdStart` and `Service`, so that `annotation.ColdStart = true` and `annotation.Service =
//! "orders"` filter traces as they do for Powertools for Python; [`annotate`] adds keys of your
//! own (`annotation.order_id = "o-42"`) to the current invocation's span.
//!
//! # Flushed before the freeze
//!
//! Lambda freezes the process once the response is sent; spans not exported by then are late or
//! lost. The layer ends the invocation span and flushes the exporter before it returns, waiting
//! at most the flush timeout (2 s by default). A slow or dead collector logs a warning; it never
//! fails or hangs the invocation.
//!
//! # Propagation and AWS SDK calls
//!
//! [`inject_trace_headers`] adds `traceparent` and `X-Amzn-Trace-Id` to outgoing requests.
//! [`AwsSdkSpans`] (feature `aws-sdk`, default) is an SDK interceptor that makes each AWS call a
//! child span (`rpc.system = aws-api`, `rpc.service`, `rpc.method`).
//!
//! # Composing with logging
//!
//! [`Tracer::otel_layer`] is a `tracing-subscriber` layer: put it on the same registry as the
//! JSON log layer of `powertools-logging`. It filters out the spans of the OTel SDK, the HTTP
//! stack, the AWS SDK and the Lambda runtime, so exporting never traces itself, matching whole
//! crate names: a crate of yours named `h2_probe` or `towers_bakery` is traced.
//!
//! # Feature flags
//!
//! - `aws-sdk` (default): [`AwsSdkSpans`].
//! - `aws-lambda-events` (default): HTTP server attributes from the `aws_lambda_events` API
//!   Gateway, function URL and ALB request and response types.

mod annotations;
mod error;
mod exception;
mod http_request;
mod layer;
mod propagation;
mod tracer;

#[cfg(feature = "aws-sdk")]
mod aws_sdk;

pub use annotations::{AnnotationValue, annotate};
#[cfg(feature = "aws-sdk")]
pub use aws_sdk::AwsSdkSpans;
pub use error::Error;
pub use http_request::HttpRequest;
pub use layer::{TracingLayer, TracingService};
pub use propagation::inject_trace_headers;
pub use tracer::{
    DEFAULT_FLUSH_TIMEOUT, DEFAULT_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, POWERTOOLS_TRACE_DISABLED, POWERTOOLS_TRACER_CAPTURE_ERROR,
    POWERTOOLS_TRACER_CAPTURE_RESPONSE, Tracer, TracerBuilder,
};
