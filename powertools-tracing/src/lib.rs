//! OpenTelemetry tracing for Rust Lambda functions: one span per invocation, joined to the X-Ray
//! trace Lambda started, with the handler's `tracing` spans as its children, exported over
//! OTLP/HTTP (TLS included) after the response is sent.
//!
//! Powertools traces with the X-Ray SDK, which AWS retires in 2027; this crate does the same job
//! with OpenTelemetry, exporting in-process (to a collector layer such as ADOT's in the
//! function's environment, or any OTLP endpoint).
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
//! // In Lambda, the internal extension that exports after the response; here, outside Lambda,
//! // nothing: the layer exports before it returns.
//! tracer.register_extension().await?;
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
//! The invocation span is built with the OpenTelemetry SDK directly (not as a `tracing` span:
//! cheaper, and it needs no subscriber), named for the function, of kind server, with the OTel
//! FaaS conventions: `faas.invocation_id`, `faas.trigger`, `faas.coldstart`, `cloud.account.id`
//! from the ARN, `cloud.resource_id` (the function's ARN, an alias in the invoked ARN replaced by
//! the version it runs: `…:function:orders:live` gives `…:function:orders:7`) and
//! `aws.lambda.invoked_arn` (the ARN as invoked). Its parent is the X-Ray trace header of the
//! invocation's own `Context` (`Root`, `Parent`, `Sampled`), so it joins the trace Lambda began
//! and follows its sampling decision. A `Root` without a `Parent` is joined too (the span begins
//! that trace, with no parent; with `Sampled=0` nothing is recorded, and the handler's calls
//! carry the trace and the decision on); a decision left open (`Sampled=?`, or none) is taken
//! here: sampled, as a trace the tracer begins. Other fields travel on as trace state in every
//! one of these forms (`Lineage`, which Lambda's recursive-loop detection reads, reaches the
//! services [`inject_trace_headers`] calls, and the AWS services an SDK client with
//! [`AwsSdkSpans`] calls), and one that W3C trace state cannot hold (a `,` in its value) is left out, never the whole header
//! (`XrayPropagator` would ignore it and begin another trace). Trace ids are X-Ray compatible.
//! The handler runs in the
//! span's OpenTelemetry context: its `tracing` spans nest under it, and
//! `opentelemetry::Context::current()` in the handler is the invocation's. A task the handler
//! spawns with `.in_current_span()` (`tracing::Instrument`, as powertools-logging's docs say for
//! its log keys) is in it too, under the logging layer (or under `lambda_runtime`'s own span):
//! those spans keep the invocation's context, and entering them attaches it, so the task's spans
//! nest under the invocation span, follow its sampling decision, and `annotate` reaches it.
//! Where the task's current span is none of those (no span, or one of yours made outside the
//! invocation), carry the context with `opentelemetry::context::FutureExt::with_current_context`.
//!
//! What every invocation shares (`service.name`, `faas.name`, `faas.version`, `cloud.provider`,
//! `cloud.region`) is on the resource, once per export, as the conventions place it. Spans carry
//! no `code.*`, `thread.*`, `target` or busy/idle-time attributes, and log lines are not copied
//! into them as span events: X-Ray shows none of these, and each costs allocations per span. The
//! log lines carry the trace id instead: the `Root` of Lambda's trace header, which Lambda sends
//! with every invocation. Without one, or with one the span cannot join (a malformed `Root`,
//! only in local tests), the span begins a trace of its own that the lines do not name, as
//! with Powertools for Python. Both read the header the same way
//! (`powertools_core::Invocation::xray_root_trace_id`), so the lines never name another trace
//! than the span's: a repeated `Root` is read as the X-Ray SDKs read it (the last one wins, for
//! the span and the lines alike), and on a header in another form than Lambda's (spaces around
//! its fields, an id not in Lambda's form) they name none.
//!
//! A handler error sets the span status to error and adds an `exception` event whose
//! `exception.type` is the error's own type (a `Diagnostic`'s `error_type`; the type inside a
//! boxed error; see [`TracingLayer::error_diagnostic`] for Lambda's own `errorType` of a type of
//! yours) and whose `exception.message` is its message. The response is recorded as
//! `powertools.response` (up to 16 KB); a response that does not serialize (which the runtime
//! cannot send, so Lambda reports the invocation failed) sets the span status to error with
//! serde_json's reason (`key must be a string`; a `Serialize` implementation's own message is
//! left out, as it may quote the response). `POWERTOOLS_TRACER_CAPTURE_RESPONSE=false` turns the
//! attribute off and `POWERTOOLS_TRACER_CAPTURE_ERROR=false` the error's message (the event
//! keeps `exception.type` alone, the status says `handler error`); the status stays either way
//! (a response that is not captured is still serialized, to nothing, to see whether it can be
//! sent, unless it is a `serde_json::Value`: turning capture off saves the copy, not the
//! serialization). An `exception.type` is cut to 1 KB (a `Diagnostic`'s `error_type` is any
//! text); `POWERTOOLS_TRACE_DISABLED=true` (or OpenTelemetry's `OTEL_SDK_DISABLED=true`, or
//! `POWERTOOLS_DEV=true`) turns tracing off: the layer then passes the call straight through.
//!
//! # HTTP invocations
//!
//! When the event is an API Gateway (REST or HTTP API), function URL or ALB request, the span also
//! gets the OTel HTTP server attributes `http.request.method`, `url.path`, `http.route` (the
//! route template, for API Gateway) and `http.response.status_code` (the response's
//! `statusCode`), `faas.trigger` becomes `http`, and a 5xx response sets the span status to
//! error. The layer recognises `serde_json::Value` events by their shape and the
//! `aws_lambda_events` request types (feature `aws-lambda-events`), and `lambda_http`'s event,
//! what a `lambda_http::Adapter` (an axum `Router` under `lambda_http`) receives (feature
//! `lambda-http`); for an event type of your own, see [`TracingLayer::http_request`]. Other events cost a type comparison or a map lookup.
//! A method the conventions do not know (`PURGE`, `get`) is `_OTHER`, with the client's in
//! `http.request.method_original`; the path, the route and such a method are cut at 1 KiB, as a
//! direct invoke can send megabytes and a span past X-Ray's 64 KB segment is lost whole.
//!
//! # Other triggers
//!
//! `faas.trigger` is read from the event too: `pubsub` for SQS, SNS, Kinesis, Kafka (MSK or
//! self-managed) and Amazon MQ (ActiveMQ, RabbitMQ) events, `datasource` for DynamoDB Streams,
//! S3 notifications and DocumentDB change streams, `timer` for an EventBridge schedule (`source`
//! `aws.events`, `detail-type` `Scheduled Event`), `other` for anything else (a custom
//! EventBridge event, a Step Functions or direct invocation). `serde_json::Value` events are read
//! by their first record's `eventSource` (`EventSource` for SNS) or their own (Kafka, MQ,
//! DocumentDB); with the `aws-lambda-events` feature, the `aws_lambda_events` types of those
//! triggers are read by their type (`SqsEvent`, `SqsEventObj<T>`, `SnsEvent`, `SnsEventObj<T>`,
//! `KinesisEvent`, `KafkaEvent`, `ActiveMqEvent`, `RabbitMqEvent`, `dynamodb::Event`, `S3Event`,
//! `DocumentDbEvent`, and `EventBridgeEvent` and `CloudWatchEvent` with their default `Value`
//! detail). For an event type of your own, set it with [`TracingLayer::trigger`].
//!
//! An SQS event also gets `messaging.system = aws_sqs` and `messaging.operation.type = process`,
//! the attributes the semantic conventions for AWS Lambda give an SQS event's span. The span
//! stays the invocation's: of kind server, named for the function, one per invocation whatever
//! the trigger (the conventions' SQS section would have a consumer span named `<queue> process`;
//! X-Ray and the dashboards built on the FaaS conventions read one kind of span per function).
//!
//! # X-Ray annotations
//!
//! X-Ray indexes as annotations only the span attributes listed in the span's
//! `aws.xray.annotations` attribute; the others become metadata. The invocation span lists
//! `ColdStart` and `Service`, so that `annotation.ColdStart = true` and `annotation.Service =
//! "orders"` filter traces as they do for Powertools for Python; [`annotate`] adds keys of your
//! own (`annotation.order_id = "o-42"`) to the current invocation's span.
//!
//! # Exported after the response
//!
//! Lambda freezes the process once an invocation is over; spans not exported by then are late or
//! lost. With [`Tracer::register_extension`] called in `main`, before `lambda_runtime::run`, the
//! tracer runs a Lambda *internal extension* in the function's own process: the layer hands each
//! invocation's spans to it and returns, the runtime sends the response, and the extension
//! exports the spans before it lets Lambda freeze the environment. The caller never waits for the
//! collector; the next invocation starts once the spans are out. With concurrent invocations
//! (`run_concurrent` on Lambda Managed Instances, which do not freeze per invocation) the spans
//! are exported in the background instead, every [`TracerBuilder::export_interval`], and what is
//! left on `SIGTERM` at shutdown.
//!
//! Without the extension (outside Lambda, not registered, or [`FlushMode::BeforeReturn`]) the
//! layer exports before it returns, waiting at most the flush timeout (2 s by default).
//!
//! # A collector that fails or hangs
//!
//! A slow, failing or dead collector never fails an invocation and costs one flush timeout, not
//! one per invocation: the flush that fails or times out suspends export, later flushes return at
//! once and hand their spans to a background probe, which keeps the latest batch only (the others
//! are counted in [`Tracer::dropped_spans`] and reported in a warning) and sends it, with growing
//! pauses, until one gets through; then export resumes. A collector that answers an empty
//! request but hangs on spans stays suspended. Ended spans wait in a
//! bounded queue ([`TracerBuilder::max_queued_spans`], 2048 by default), never an unbounded one;
//! on a full queue an invocation span takes the place of the child span queued last, so that a
//! trace keeps its root.
//!
//! # HTTPS
//!
//! Spans go through the AWS SDK's own HTTP connector (`aws-smithy-http-client`: hyper 1 with
//! hyper-util's pooled client, hyper-rustls, rustls on AWS-LC), from the async runtime: no second
//! HTTP client, no exporter thread. `https://` endpoints are verified against the system's trust
//! store (loaded once per process, for the SDK's clients and the exporter), or only against the
//! certificates of `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` / `OTEL_EXPORTER_OTLP_CERTIFICATE`
//! ([`TracerBuilder::certificate`]). A plain `http://` endpoint (a collector layer on
//! `localhost:4318`) loads no trust store at all. The
//! first TLS handshake of a process pays AWS-LC's one-time entropy seeding; the crate's README
//! says when to build with `AWS_LC_SYS_NO_JITTER_ENTROPY=1`.
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
//! - `lambda-http`: the same for `lambda_http`'s `LambdaRequest` (API Gateway REST and HTTP APIs,
//!   ALB), the event of a `lambda_http::Adapter`.

#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to items of every feature; with some off (`cargo doc
// --no-default-features`) those links have nothing to point to. Checked with every feature on
// (`scripts/test`'s workspace build, docs.rs).
#![cfg_attr(
    not(all(
        feature = "aws-sdk",
        feature = "aws-lambda-events",
        feature = "lambda-http"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod annotations;
mod carry;
mod error;
mod exception;
mod export;
mod extension;
mod http_request;
mod layer;
mod propagation;
mod tracer;
mod trigger;

#[cfg(feature = "aws-sdk")]
mod aws_sdk;

/// The OpenTelemetry API and SDK at the versions this crate is built with, so that a
/// [`span_exporter`](TracerBuilder::span_exporter), an [`annotate`] key or a propagated
/// `Context` matches them without a version to keep in step (both are 0.x: a release of ours
/// that moves to a new one is a breaking release, said in the CHANGELOG).
pub use opentelemetry;
#[doc(no_inline)]
pub use opentelemetry_sdk;

pub use annotations::{AnnotationValue, annotate};
#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub use aws_sdk::AwsSdkSpans;
pub use error::Error;
pub use export::DEFAULT_MAX_QUEUED_SPANS;
pub use extension::EXTENSION_NAME;
pub use http_request::HttpRequest;
pub use layer::{TracingLayer, TracingService};
pub use propagation::inject_trace_headers;
pub use tracer::{
    DEFAULT_EXPORT_INTERVAL, DEFAULT_EXPORT_TIMEOUT, DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_TRACES_ENDPOINT, FlushMode, OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, POWERTOOLS_TRACE_DISABLED,
    POWERTOOLS_TRACER_CAPTURE_ERROR, POWERTOOLS_TRACER_CAPTURE_RESPONSE, Tracer, TracerBuilder,
};
