use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::{Diagnostic, LambdaEvent};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, SpanRef, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context as OtelContext, KeyValue, StringValue};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use powertools_core::{Invocation, is_cold_start, thread_buffer};
use serde::Serialize;
use tower::{Layer, Service};

use crate::annotations::{self, Annotations};
use crate::exception;
use crate::extension::DEADLINE_MARGIN;
use crate::http_request::{self, HttpHook, HttpRequest};
use crate::tracer::Tracer;
use crate::trigger;
use powertools_core::failure::ErrorDescriptions;

/// The most bytes of a response, or of an error message, recorded on a span (X-Ray's segment
/// limit is 64 KB).
const MAX_CAPTURED_BYTES: usize = 16 * 1024;
/// The most bytes of an `exception.type` a span records.
const MAX_EXCEPTION_TYPE_BYTES: usize = 1024;

/// One OpenTelemetry span per invocation, joined to the X-Ray trace Lambda started, with the
/// FaaS semantic conventions and the Powertools `ColdStart` and `Service` X-Ray annotations; the
/// handler's own `tracing` spans become its children. The spans are exported after the response
/// by the tracer's internal extension ([`Tracer::register_extension`]), or, without it, before
/// the invocation returns, within the flush timeout, so that Lambda's freeze does not lose them.
///
/// An invocation triggered over HTTP (API Gateway, a function URL, an ALB) also gets the HTTP
/// server attributes (`http.request.method`, `url.path`, `http.route`,
/// `http.response.status_code`), read from the event when it is a `serde_json::Value` or an
/// `aws_lambda_events` request, or through [`http_request`](Self::http_request).
///
/// The layer is `Clone` and keeps nothing per invocation outside the invocation's future and
/// span, so it is correct when `lambda_runtime` runs invocations concurrently.
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
///     // Export after the response (registered during init, before the runtime starts).
///     tracer.register_extension().await?;
///     let handler = ServiceBuilder::new()
///         .layer(TracingLayer::new(tracer))
///         .service(service_fn(|_event: LambdaEvent<Value>| async {
///             bake().await;
///             Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
///         }));
///     lambda_runtime::run(handler).await
/// }
/// ```
#[derive(Clone)]
pub struct TracingLayer {
    tracer: Tracer,
    arn: Arc<ArnCache>,
    trigger: Option<&'static str>,
    http: Option<HttpHook>,
    error: Option<ErrorDescriptions>,
}

impl fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingLayer")
            .field("tracer", &self.tracer)
            .field("arn", &self.arn)
            .field("trigger", &self.trigger)
            .field("http_request_hook", &self.http.is_some())
            .field("error_diagnostic_hook", &self.error.is_some())
            .finish()
    }
}

impl TracingLayer {
    /// A layer that records the invocations of `tracer`'s function.
    pub fn new(tracer: Tracer) -> Self {
        TracingLayer {
            tracer,
            arn: Arc::default(),
            trigger: None,
            http: None,
            error: None,
        }
    }

    /// The `faas.trigger` of the function: `http`, `pubsub`, `datasource`, `timer` or `other`
    /// (default: read from the event, see the crate's "Other triggers"; `other` for an event type
    /// of your own).
    pub fn trigger(mut self, trigger: &'static str) -> Self {
        self.trigger = Some(trigger);
        self
    }

    /// Reads the HTTP request from events of type `E`, an event type of your own (the layer knows
    /// `serde_json::Value` and the `aws_lambda_events` request types by itself). `None` means the
    /// event is not an HTTP request. The response's `statusCode` field, if it serializes with
    /// one, gives `http.response.status_code`.
    ///
    /// ```
    /// use powertools_tracing::{HttpRequest, Tracer, TracingLayer};
    ///
    /// struct Order {
    ///     verb: String,
    ///     path: String,
    /// }
    ///
    /// # fn main() -> Result<(), powertools_tracing::Error> {
    /// let layer = TracingLayer::new(Tracer::builder().disabled(true).build()?)
    ///     .http_request(|order: &Order| {
    ///         Some(HttpRequest::new(&order.verb).with_path(&order.path).with_route("/orders/{id}"))
    ///     });
    /// # drop(layer);
    /// # Ok(())
    /// # }
    /// ```
    pub fn http_request<E, F>(mut self, read: F) -> Self
    where
        E: 'static,
        F: Fn(&E) -> Option<HttpRequest> + Send + Sync + 'static,
    {
        self.http = Some(Arc::new(move |event: &dyn Any| {
            event.downcast_ref::<E>().map(&read)
        }));
        self
    }

    /// Describes handler errors of type `E` as Lambda reports them, for `exception.type` and
    /// `exception.message`. Lambda's `Into<Diagnostic>` consumes the error, which the layer hands
    /// back unchanged, so the layer cannot call it: give it this view of your error by reference
    /// (for a `Clone` error, `|error: &MyError| error.clone().into()`).
    ///
    /// Without it the layer records a `Diagnostic`'s own `error_type`, a boxed error's type name
    /// (or a powertools-rs error's `error_type`), and any other error's type path.
    ///
    /// `E` must be exactly the inner service's error type. Call it once per type; a later call's
    /// type is tried first. A description that panics is not used.
    ///
    /// ```
    /// use lambda_runtime::Diagnostic;
    /// use powertools_tracing::{Tracer, TracingLayer};
    ///
    /// #[derive(Debug)]
    /// enum OrderError {
    ///     OutOfStock(u32),
    /// }
    ///
    /// # fn main() -> Result<(), powertools_tracing::Error> {
    /// let layer = TracingLayer::new(Tracer::builder().disabled(true).build()?)
    ///     .error_diagnostic(|error: &OrderError| match error {
    ///         OrderError::OutOfStock(item) => Diagnostic {
    ///             error_type: "OutOfStock".to_owned(),
    ///             error_message: format!("item {item} is out of stock"),
    ///         },
    ///     });
    /// # drop(layer);
    /// # Ok(())
    /// # }
    /// ```
    pub fn error_diagnostic<E, F>(mut self, describe: F) -> Self
    where
        E: 'static,
        F: Fn(&E) -> Diagnostic + Send + Sync + 'static,
    {
        // Chained as the logging layer's are (the stack sets both).
        self.error = Some(ErrorDescriptions::then(self.error.as_ref(), describe));
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

/// Where the invocation span starts, from the X-Ray trace header of the invocation's own
/// `Context` (never the process-wide `_X_AMZN_TRACE_ID`, which concurrent invocations overwrite).
#[derive(Debug)]
enum Start {
    /// Under the header's parent segment, with its sampling decision. An undecided one
    /// (`Sampled=?`, or none) is taken here: sampled, as the tracer samples a trace it begins.
    Child(OtelContext),
    /// Beginning the header's trace: a `Root` without a `Parent` (`Sampled=1`, `?` or none).
    Begin(TraceId, TraceState),
    /// In the header's trace, not sampled, with no parent segment (`Root=…;Sampled=0`): nothing
    /// is recorded, and the handler's calls propagate the trace and the decision.
    Unsampled(SpanContext),
    /// A trace of its own: no header, or one that names no trace.
    New,
}

fn start_of(trace_header: Option<&str>) -> Start {
    let Some(header) = trace_header.and_then(crate::propagation::parse_xray_header) else {
        return Start::New;
    };
    let flags = header.trace_flags();
    if header.span_id() == SpanId::INVALID {
        return if flags == TraceFlags::NOT_SAMPLED {
            Start::Unsampled(SpanContext::new(
                header.trace_id(),
                RandomIdGenerator::default().new_span_id(),
                TraceFlags::NOT_SAMPLED,
                false,
                header.trace_state().clone(),
            ))
        } else {
            Start::Begin(header.trace_id(), header.trace_state().clone())
        };
    }
    let parent = if flags == crate::propagation::DEFERRED {
        SpanContext::new(
            header.trace_id(),
            header.span_id(),
            TraceFlags::SAMPLED,
            true,
            header.trace_state().clone(),
        )
    } else {
        header
    };
    Start::Child(OtelContext::new().with_remote_span_context(parent))
}

/// The function's ARN for `cloud.resource_id`: the invoked ARN with an alias replaced by the
/// version it runs, as the FaaS conventions ask (one process serves every alias of a version). An
/// unqualified ARN, one qualified with `$LATEST` or a version, and an unknown version leave it as
/// it is.
fn resource_id<'a>(invoked_arn: &'a str, version: &str) -> Cow<'a, str> {
    let mut parts = invoked_arn.split(':');
    let parts: [Option<&str>; 9] = std::array::from_fn(|_| parts.next());
    match parts {
        [
            Some("arn"),
            Some(_),
            Some("lambda"),
            Some(_),
            Some(_),
            Some("function"),
            Some(_),
            Some(qualifier),
            None,
        ] if !version.is_empty() && qualifier != "$LATEST" && qualifier != version => {
            let unqualified = &invoked_arn[..invoked_arn.len() - qualifier.len()];
            Cow::Owned(format!("{unqualified}{version}"))
        }
        _ => Cow::Borrowed(invoked_arn),
    }
}

/// The span attributes read from the invoked ARN and the version, which every invocation of an
/// alias shares: computed once, their strings shared (reference counted) by the spans.
#[derive(Debug)]
struct ArnAttributes {
    arn: Box<str>,
    version: Box<str>,
    /// `None` unless the ARN holds an account id (twelve digits): an empty or garbled ARN sets no
    /// attribute rather than an empty or wrong one.
    account: Option<StringValue>,
    /// `None` for an empty ARN.
    resource: Option<StringValue>,
    invoked: Option<StringValue>,
}

/// The last [`ArnAttributes`] of a layer, recomputed when the ARN or the version changes.
#[derive(Debug, Default)]
struct ArnCache(Mutex<Option<Arc<ArnAttributes>>>);

impl ArnCache {
    fn get(&self, invocation: &Invocation<'_>) -> Arc<ArnAttributes> {
        let (arn, version) = (invocation.function_arn(), invocation.function_version());
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(attributes) = cached
            .as_ref()
            .filter(|cached| *cached.arn == *arn && *cached.version == *version)
        {
            return Arc::clone(attributes);
        }
        let shared = |text: &str| StringValue::from(Arc::<str>::from(text));
        let attributes = Arc::new(ArnAttributes {
            arn: arn.into(),
            version: version.into(),
            account: invocation
                .account_id()
                .filter(|id| id.len() == 12 && id.bytes().all(|byte| byte.is_ascii_digit()))
                .map(shared),
            resource: (!arn.is_empty()).then(|| shared(&resource_id(arn, version))),
            invoked: (!arn.is_empty()).then(|| shared(arn)),
        });
        *cached = Some(Arc::clone(&attributes));
        attributes
    }
}

/// The invocation span, built with the OpenTelemetry SDK directly (no `tracing` span, no
/// registry slot, no field visitor), and the context the handler runs in: the span, and the
/// invocation's annotations. `tracing` spans the handler makes find it as the current
/// OpenTelemetry context, so they nest under it.
fn invocation_context(
    layer: &TracingLayer,
    invocation: &Invocation<'_>,
    cold_start: bool,
    source: trigger::Source,
    request: Option<HttpRequest>,
) -> Option<OtelContext> {
    let inner = &layer.tracer.inner;
    let tracer = inner.sdk_tracer.as_ref()?;
    let arn = layer.arn.get(invocation);
    let mut attributes = Vec::with_capacity(15);
    attributes.extend([
        KeyValue::new("faas.invocation_id", invocation.request_id().to_owned()),
        KeyValue::new(
            "faas.trigger",
            layer.trigger.unwrap_or(source.faas_trigger()),
        ),
        KeyValue::new("faas.coldstart", cold_start),
        // faas.name, faas.version, cloud.provider and cloud.region are the same for every
        // invocation: they are on the resource (`Tracer`), as the conventions place them.
        // X-Ray annotations (listed in aws.xray.annotations when the invocation ends).
        KeyValue::new(annotations::COLD_START, cold_start),
        KeyValue::new(annotations::SERVICE, inner.service_value.clone()),
    ]);
    for (key, value) in [
        ("cloud.account.id", &arn.account),
        ("cloud.resource_id", &arn.resource),
        ("aws.lambda.invoked_arn", &arn.invoked),
    ] {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, value.clone()));
        }
    }
    if source == trigger::Source::Sqs {
        // Required by the semantic conventions for an SQS event, whatever `trigger` says.
        attributes.push(KeyValue::new("messaging.system", "aws_sqs"));
        attributes.push(KeyValue::new("messaging.operation.type", "process"));
    }
    if let Some(tenant) = invocation.tenant_id() {
        attributes.push(KeyValue::new("faas.tenant_id", tenant.to_owned()));
    }
    if let Some(request) = request {
        match known_method(&request.method) {
            Some(method) => attributes.push(KeyValue::new("http.request.method", method)),
            None => {
                attributes.push(KeyValue::new("http.request.method", "_OTHER"));
                attributes.push(KeyValue::new(
                    "http.request.method_original",
                    bounded_request_text(request.method),
                ));
            }
        }
        if let Some(path) = request.path {
            attributes.push(KeyValue::new("url.path", bounded_request_text(path)));
        }
        if let Some(route) = request.route {
            attributes.push(KeyValue::new("http.route", bounded_request_text(route)));
        }
    }
    let layer_attributes = attributes.len();
    let builder = SpanBuilder::from_name(span_name(invocation.function_name()))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes);
    let context = match start_of(invocation.xray_trace_header()) {
        Start::Child(parent) => {
            let span = tracer.build_with_context(builder, &parent);
            parent.with_span(span)
        }
        Start::Begin(trace, state) => {
            let root = OtelContext::new();
            let span = crate::propagation::beginning_trace(trace, state, || {
                tracer.build_with_context(builder, &root)
            });
            root.with_span(span)
        }
        Start::Unsampled(span_context) => OtelContext::new().with_remote_span_context(span_context),
        Start::New => {
            let root = OtelContext::new();
            let span = tracer.build_with_context(builder, &root);
            root.with_span(span)
        }
    };
    Some(context.with_value(Annotations::new(layer_attributes)))
}

/// The most bytes of the request's path, route or unknown method a span records: a direct
/// invoke can send megabytes, and a span past X-Ray's 64 KB segment is lost whole.
const MAX_REQUEST_TEXT_BYTES: usize = 1024;

/// The HTTP methods the OpenTelemetry HTTP conventions know (case-sensitive); any other is
/// recorded as `_OTHER`, with the client's in `http.request.method_original`.
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// `method` as the conventions spell it, if they know it.
fn known_method(method: &str) -> Option<&'static str> {
    KNOWN_METHODS.into_iter().find(|known| *known == method)
}

/// `text` cut to [`MAX_REQUEST_TEXT_BYTES`], on a character boundary.
fn bounded_request_text(mut text: String) -> String {
    text.truncate(text.floor_char_boundary(MAX_REQUEST_TEXT_BYTES));
    text
}

/// The first function name [`span_name`] saw in this process.
static FIRST_SPAN_NAME: OnceLock<&'static str> = OnceLock::new();

/// The invocation span's name: the function's name, the same for every invocation a process
/// serves. The first one is kept for the life of the process (one string, once) so that spans
/// borrow it instead of copying it, one allocation per invocation less; another name (only tests
/// change it) is copied.
fn span_name(function_name: &str) -> Cow<'static, str> {
    let first: &'static str = FIRST_SPAN_NAME.get_or_init(|| Box::leak(function_name.into()));
    if first == function_name {
        Cow::Borrowed(first)
    } else {
        Cow::Owned(function_name.to_owned())
    }
}

/// How long a flush before returning may take: until shortly before the invocation's deadline
/// (past it, Lambda fails the invocation, for its traces), or without bound (but the flush
/// timeout) when the deadline is not one Lambda could have sent (`Context::default()` in a test,
/// an emulator's relative deadline).
fn time_to_deadline(deadline_ms: u64) -> Duration {
    powertools_core::trusted_time_left(deadline_ms, SystemTime::now())
        .map_or(Duration::MAX, |left| left.saturating_sub(DEADLINE_MARGIN))
}

/// The invocation span. Dropping it, when the invocation ends or its future is dropped, writes
/// the X-Ray annotations and ends the span.
struct InvocationSpan(OtelContext);

impl Drop for InvocationSpan {
    fn drop(&mut self) {
        // The tracer's span processor adds the annotations as the span ends, past its
        // attribute limit.
        annotations::write(&self.0);
        self.0.span().end();
        annotations::forget_ending();
    }
}

/// The end of an invocation as the tracer sees it: the span ends, then the extension is told
/// (when it exports after the response). Also when the invocation's future is dropped before it
/// completes (a timeout layer outside this one, say): the extension would otherwise hold the
/// environment until the invocation's deadline.
struct InvocationEnd {
    span: Option<InvocationSpan>,
    tracer: Tracer,
    handed_over: Option<String>,
    /// Whether the exporter counts this invocation as running (its span will be exported).
    counted_running: bool,
}

impl InvocationEnd {
    /// Ends the span and hands it over; `true` when the extension or the background exporter
    /// exports it, `false` when the layer must flush.
    fn end(&mut self) -> bool {
        drop(self.span.take());
        if let Some(exporter) = &self.tracer.inner.exporter
            && self.counted_running
        {
            exporter.invocation_ended();
        }
        let handed_over = self.handed_over.take();
        self.tracer.inner.handoff.finish(handed_over.as_deref())
    }
}

impl Drop for InvocationEnd {
    fn drop(&mut self) {
        if let Some(span) = &self.span {
            // Dropped mid-flight: in error, said so (it ended `Unset`, read as a success; found
            // by an attack from the docs). Nothing can be awaited here, so without the
            // extension the span leaves with the next flush.
            span.0.span().set_status(Status::error(CANCELLED));
            self.end();
        }
    }
}

/// The status description of an invocation whose future was dropped before it completed.
const CANCELLED: &str = "the invocation was cancelled: its future was dropped before it \
                         completed (a timeout outside the layer, say), so its outcome is unknown";

/// What the outcome is recorded with.
struct Recording<'a> {
    tracer: &'a Tracer,
    error_hook: Option<&'a ErrorDescriptions>,
    http: bool,
}

/// How much of `text` is recorded: at most [`MAX_CAPTURED_BYTES`], cut on a character boundary.
fn captured_len(text: &str) -> usize {
    text.floor_char_boundary(MAX_CAPTURED_BYTES)
}

/// Cuts `text` to at most [`MAX_CAPTURED_BYTES`], on a character boundary.
fn truncate_to_captured(text: &mut String) {
    text.truncate(captured_len(text));
}

/// The longest scratch buffer a thread keeps for serializing responses (a larger one is freed).
const KEPT_SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// The buffer the last response this thread captured was serialized into, for the next one.
    static RESPONSE_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// `response` as JSON, cut to [`MAX_CAPTURED_BYTES`], in a string of its own size: serialized into
/// the thread's scratch buffer and copied once, rather than into a string that grows from 128
/// bytes and is then shrunk to fit the attribute (an allocation and a reallocation or more per
/// invocation).
fn captured_json<R: Serialize>(response: &R) -> Result<Option<StringValue>, serde_json::Error> {
    let mut scratch = thread_buffer::take(&RESPONSE_SCRATCH, 0);
    let captured = serde_json::to_writer(&mut scratch, response).map(|()| {
        std::str::from_utf8(&scratch)
            .ok()
            .map(|json| StringValue::from(json[..captured_len(json)].to_owned()))
    });
    thread_buffer::keep(&RESPONSE_SCRATCH, scratch, KEPT_SCRATCH_BYTES);
    captured
}

/// Records the handler's outcome on the span.
fn record_outcome<R: Serialize + 'static, E: fmt::Debug + 'static>(
    span: &SpanRef<'_>,
    recording: &Recording<'_>,
    outcome: &Result<R, E>,
) {
    let inner = &recording.tracer.inner;
    match outcome {
        Ok(response) => {
            if recording.http
                && let Some(status) = http_request::status_code_of(response)
            {
                span.set_attribute(KeyValue::new("http.response.status_code", status));
                // A server span is in error for a 5xx only: a 4xx is the client's.
                if status >= 500 {
                    span.set_status(Status::error(""));
                }
            }
            if inner.capture_response {
                match captured_json(response) {
                    Ok(Some(json)) => {
                        span.set_attribute(KeyValue::new("powertools.response", json));
                    }
                    Ok(None) => {}
                    // The runtime cannot send it either: Lambda reports the invocation failed.
                    // serde_json's own reason is kept; a `Serialize` implementation's own
                    // message, which may quote the response (a card number), is left out.
                    Err(error) => {
                        let message = format!(
                            "the response does not serialize: {}",
                            powertools_core::serde_message::serialize_reason(&error.to_string())
                        );
                        span.set_status(Status::error(message.clone()));
                        span.add_event(
                            "exception",
                            vec![KeyValue::new("exception.message", message)],
                        );
                    }
                }
            } else if !(response as &dyn std::any::Any).is::<serde_json::Value>()
                && serde_json::to_writer(std::io::sink(), response).is_err()
            {
                // Not captured, but the span must still say that the runtime cannot send it, as
                // a handler's error is in error whatever error capture says: serialized to
                // nothing (a JSON value always serializes), and only the status is set, without
                // serde's words, which may quote the response.
                span.set_status(Status::error("the response does not serialize"));
            }
        }
        Err(error) => {
            // The error's own `Display` and `Debug` run here: one that panics is described as
            // such, not a panic of the layer's.
            let mut exception = powertools_core::failure::catch_quiet_panic(|| {
                exception::describe(error, recording.error_hook)
            })
            .unwrap_or_else(|_| exception::undescribable::<E>());
            // A `Diagnostic`'s `error_type` is any text, a megabyte too: a span past X-Ray's
            // 64 KB segment limit is lost whole (found by a review).
            exception.bound_kind(MAX_EXCEPTION_TYPE_BYTES);
            if inner.capture_error {
                // A huge error message would push the segment past X-Ray's 64 KB limit, as a
                // huge response would.
                truncate_to_captured(&mut exception.message);
                span.set_status(Status::error(exception.message.clone()));
                span.add_event(
                    "exception",
                    vec![
                        KeyValue::new("exception.type", exception.kind),
                        KeyValue::new("exception.message", exception.message),
                    ],
                );
            } else {
                // Capture off keeps what the error says (it may quote data) out of the trace,
                // and still names it: X-Ray's view of the exception, as Python's X-Ray SDK
                // records the exception whatever `capture_error` says (with its message, which
                // is what turning capture off is for).
                span.set_status(Status::error("handler error"));
                span.add_event(
                    "exception",
                    vec![KeyValue::new("exception.type", exception.kind)],
                );
            }
        }
    }
}

impl<S, T> Service<LambdaEvent<T>> for TracingService<S>
where
    S: Service<LambdaEvent<T>>,
    T: 'static,
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
        // Off, or inside another TracingLayer's invocation (the facade's stack around a layer
        // of the caller's, or applied twice): one invocation span, the outer one's. A second
        // counted the cold start twice in X-Ray, and `annotate` reached the inner one only
        // (found by an attack from the docs).
        if !self.layer.tracer.is_enabled()
            || OtelContext::map_current(|context| context.get::<Annotations>().is_some())
        {
            return Box::pin(self.inner.call(event));
        }
        self.layer.tracer.warn_unapplied_once();
        let invocation = Invocation::new(&event.context);
        let request = http_request::request_of(&event.payload, self.layer.http.as_ref());
        let http = request.is_some();
        let source = if http {
            trigger::Source::Http
        } else {
            trigger::source_of(&event.payload)
        };
        let Some(context) = invocation_context(
            &self.layer,
            &invocation,
            is_cold_start(&event.context),
            source,
            request,
        ) else {
            return Box::pin(self.inner.call(event));
        };
        // On the logging layer's (or the runtime's) span around this one, for the tasks the
        // handler spawns in it.
        crate::carry::into_current_span(&context);
        let tracer = self.layer.tracer.clone();
        let deadline_ms = event.context.deadline;
        // Tracked only when the extension exports after the response.
        let handed_over = tracer.inner.handoff.start(&event.context.request_id);
        // Built before the inner call, so that even a panic there ends the span and tells the
        // extension.
        let span_context = context.clone();
        // Counted only for a span that will be exported: an unsampled invocation still running
        // at exit loses no span (it was counted as a dropped one).
        let counted_running = {
            let span = context.span();
            span.is_recording() && span.span_context().is_sampled()
        };
        if let Some(exporter) = &tracer.inner.exporter
            && counted_running
        {
            exporter.invocation_started();
        }
        let mut end = InvocationEnd {
            span: Some(InvocationSpan(context.clone())),
            tracer: tracer.clone(),
            handed_over,
            counted_running,
        };
        let error_hook = self.layer.error.clone();
        let future = {
            let _attached = context.clone().attach();
            self.inner.call(event)
        };
        // In the scope where a powertools-rs layer inside says what Lambda reports for its own
        // errors, for the span's exception.
        Box::pin(powertools_core::failure::scope(async move {
            let outcome = AssertUnwindSafe(future.with_context(context))
                .catch_unwind()
                .await;
            let invocation_span = span_context.span();
            // Named as the failure line and Lambda name a panic (`Panic`), with its message when
            // errors are captured and it has one.
            let capture_error = tracer.inner.capture_error;
            let mark_panicked = |status: &'static str, panic: &(dyn Any + Send)| {
                invocation_span.set_status(Status::error(status));
                let mut message = powertools_core::error_chain::panic_description(panic)
                    .filter(|_| capture_error)
                    .unwrap_or_else(|| status.to_owned());
                truncate_to_captured(&mut message);
                invocation_span.add_event(
                    "exception",
                    vec![
                        KeyValue::new("exception.type", "Panic"),
                        KeyValue::new("exception.message", message),
                    ],
                );
            };
            // Recording the outcome serializes the response (for `powertools.response` and the
            // HTTP status): a `Serialize` that panics fails the invocation (the runtime cannot
            // send the response either), so the span says so and the panic goes on after it.
            let mut recording_panic = None;
            match &outcome {
                Ok(result) => {
                    let recording = Recording {
                        tracer: &tracer,
                        error_hook: error_hook.as_ref(),
                        http,
                    };
                    let recorded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        record_outcome(&invocation_span, &recording, result);
                    }));
                    if let Err(panic) = recorded {
                        mark_panicked("serializing the response panicked", &*panic);
                        recording_panic = Some(panic);
                    }
                }
                Err(panic) => mark_panicked("the handler panicked", &**panic),
            }
            // End the span (with its annotations) before exporting. The extension exports after
            // the response (or, with concurrent invocations, the background exporter does);
            // without it, export before returning.
            if !end.end() {
                tracer.flush_within(time_to_deadline(deadline_ms)).await;
            }
            if let Some(panic) = recording_panic {
                std::panic::resume_unwind(panic);
            }
            match outcome {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    /// Polls `future` to its end on this thread, without a Tokio runtime.
    fn poll_outside_tokio<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = TaskContext::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::yield_now();
        }
    }

    /// A service polled outside a Tokio runtime (another executor) cannot export: its spans are
    /// dropped, counted and said, and registering the extension is an error, where both
    /// panicked (`there is no reactor running`; found by an attack from the docs).
    #[test]
    fn outside_a_tokio_runtime_spans_are_dropped_counted_and_nothing_panics() {
        use tower::ServiceExt as _;
        let tracer = Tracer::builder()
            .service("orders")
            .endpoint("http://127.0.0.1:9")
            .env(powertools_core::env::Env::from_pairs([(
                "AWS_LAMBDA_RUNTIME_API",
                "127.0.0.1:9",
            )]))
            .build()
            .unwrap();
        let service = TracingLayer::new(tracer.clone()).layer(tower::service_fn(
            |_: LambdaEvent<serde_json::Value>| async {
                Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
            },
        ));
        let event = powertools_core::testing::TestContext::new().event(serde_json::json!({}));
        let answered = poll_outside_tokio(service.oneshot(event));
        assert!(answered.is_ok());
        assert_eq!(tracer.dropped_spans(), 1);
        let error = poll_outside_tokio(tracer.register_extension()).unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }

    /// (Found by a review.) `Tracer::flush` (the flush the README told users to call in their
    /// graceful-shutdown hook, before `Tracer::shutdown`) outside a Tokio runtime still panics: `flush_all_within` builds a
    /// `tokio::time::timeout` before the guard in `flush_bounded` is reached. The changelog says
    /// a flush outside a runtime drops its spans, counted, where it panicked.
    #[test]
    fn review_tracer_flush_outside_a_tokio_runtime_does_not_panic() {
        let tracer = Tracer::builder()
            .service("orders")
            .endpoint("http://127.0.0.1:9")
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_outside_tokio(tracer.flush());
        }));
        assert!(
            flushed.is_ok(),
            "Tracer::flush panicked outside a Tokio runtime"
        );
    }

    /// (Found by a review.) a Tokio runtime built without its time driver (`Builder::new_current_thread()`
    /// without `enable_all`) passes the `Handle::try_current` guard, and the layer's flush then
    /// panics in `tokio::time::timeout` ("timers are disabled"): the invocation fails for its
    /// traces, where the guard's warning says such spans are dropped.
    #[test]
    fn review_a_runtime_without_timers_does_not_fail_the_invocation() {
        use tower::ServiceExt as _;
        let tracer = Tracer::builder()
            .service("orders")
            .endpoint("http://127.0.0.1:9")
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let service = TracingLayer::new(tracer.clone()).layer(tower::service_fn(
            |_: LambdaEvent<serde_json::Value>| async {
                Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
            },
        ));
        let event = powertools_core::testing::TestContext::new().event(serde_json::json!({}));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(service.oneshot(event))
        }));
        let answered = answered.expect("the invocation panicked in a runtime without timers");
        assert!(answered.is_ok());
    }

    /// An invocation still running when the process exits (`SIGTERM` under `run_concurrent`)
    /// has its spans in no queue: the flush before exit counts its invocation span as dropped,
    /// with a warning, rather than lose it without a word (found by an attack from the docs).
    /// One that ended, or whose future was dropped, is not counted.
    #[tokio::test]
    async fn an_invocation_still_running_at_exit_is_counted_as_dropped() {
        use tower::ServiceExt as _;
        let tracer = Tracer::builder()
            .service("orders")
            .endpoint("http://127.0.0.1:9")
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let service = TracingLayer::new(tracer.clone()).layer(tower::service_fn(
            |event: LambdaEvent<serde_json::Value>| async move {
                if event.payload["wait"] == true {
                    std::future::pending::<()>().await;
                }
                Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
            },
        ));
        let event = |wait: bool| {
            powertools_core::testing::TestContext::new().event(serde_json::json!({"wait": wait}))
        };
        let running = tokio::spawn(service.clone().oneshot(event(true)));
        let dropped = tokio::spawn(service.clone().oneshot(event(true)));
        service.clone().oneshot(event(false)).await.unwrap();
        tokio::task::yield_now().await;
        dropped.abort();
        let _ = dropped.await;
        let before = tracer.dropped_spans();
        tracer.flush_before_exit(Duration::from_millis(50)).await;
        // The invocation that ended was queued, and is dropped with the queue (no collector);
        // the one still running is counted too: two more than before.
        assert_eq!(tracer.dropped_spans() - before, 2);
        running.abort();
    }

    #[test]
    fn the_resource_id_resolves_an_alias_to_the_version() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders";
        for (invoked, version, expected) in [
            (format!("{arn}:live"), "7", format!("{arn}:7")),
            (format!("{arn}:live"), "$LATEST", format!("{arn}:$LATEST")),
            (format!("{arn}:7"), "7", format!("{arn}:7")),
            (
                format!("{arn}:$LATEST"),
                "$LATEST",
                format!("{arn}:$LATEST"),
            ),
            (arn.to_owned(), "7", arn.to_owned()),
            (format!("{arn}:live"), "", format!("{arn}:live")),
            ("not an arn".to_owned(), "7", "not an arn".to_owned()),
            (
                "arn:aws:s3:::bucket:live:x".to_owned(),
                "7",
                "arn:aws:s3:::bucket:live:x".to_owned(),
            ),
        ] {
            assert_eq!(
                resource_id(&invoked, version),
                expected,
                "{invoked} {version}"
            );
        }
        assert!(matches!(resource_id(arn, "7"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_captured_response_is_its_json_cut_on_a_character_boundary() {
        #[derive(Serialize)]
        struct Receipt<'a> {
            order: &'a str,
        }
        for order in [
            "o-1",
            "",
            "é",
            &"é".repeat(MAX_CAPTURED_BYTES),
            &"x".repeat(100_000),
        ] {
            let mut expected = serde_json::to_string(&Receipt { order }).unwrap();
            truncate_to_captured(&mut expected);
            // Twice: the second serializes into the scratch buffer the first left.
            for _ in 0..2 {
                let captured = captured_json(&Receipt { order }).unwrap().unwrap();
                assert_eq!(captured.as_str(), expected);
                assert!(captured.as_str().len() <= MAX_CAPTURED_BYTES);
            }
        }
        let scratch = RESPONSE_SCRATCH.with(Cell::take);
        assert!(
            scratch.capacity() <= KEPT_SCRATCH_BYTES,
            "a large buffer is not kept"
        );
    }

    #[test]
    fn the_span_name_is_the_function_name_borrowed_after_the_first() {
        // Whichever name this process saw first (another test's invocation may come first).
        span_name("orders");
        let first: &str = FIRST_SPAN_NAME.get().expect("a name was seen");
        let again = span_name(first);
        assert_eq!(again, *first);
        // Whichever name this process saw first is borrowed from then on, never copied.
        assert!(matches!(again, Cow::Borrowed(_)), "{again:?}");
        let other = format!("{first}-other");
        assert_eq!(span_name(&other), other);
        assert!(matches!(span_name(&other), Cow::Owned(_)));
        assert_eq!(span_name(""), "");
    }

    fn parent_context(header: Option<&str>) -> Option<OtelContext> {
        match start_of(header) {
            Start::Child(parent) => Some(parent),
            _ => None,
        }
    }

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
