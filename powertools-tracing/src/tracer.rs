//! Tracer setup: the OTLP exporter, the resource, X-Ray trace ids, and the `tracing` bridge.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanExporter, SpanLimits,
    TracerProviderBuilder,
};
use powertools_core::PowertoolsConfig;
use powertools_core::env::Env;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::Error;
use crate::export::{
    Annotating, DEFAULT_MAX_QUEUED_SPANS, Exporter, OtlpExporter, OtlpHttpClient, QueueProcessor,
    Roots,
};
use crate::extension::Handoff;
use crate::propagation::{HeaderSampler, HeaderTraceIds};

/// `true` turns tracing off: no span, no export, no flush.
pub const POWERTOOLS_TRACE_DISABLED: &str = "POWERTOOLS_TRACE_DISABLED";
/// OpenTelemetry's switch for its SDK: `true` (any case) turns tracing off as
/// [`POWERTOOLS_TRACE_DISABLED`] does, which wins when both are set; `false` leaves the decision
/// to `POWERTOOLS_DEV`; any other value fails the build.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `false` stops the handler's response being recorded on the invocation span (default `true`).
pub const POWERTOOLS_TRACER_CAPTURE_RESPONSE: &str = "POWERTOOLS_TRACER_CAPTURE_RESPONSE";
/// `false` stops the handler's error being recorded on the invocation span (default `true`).
pub const POWERTOOLS_TRACER_CAPTURE_ERROR: &str = "POWERTOOLS_TRACER_CAPTURE_ERROR";
/// The OTLP/HTTP endpoint for traces, used as is (`…/v1/traces`).
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The OTLP/HTTP base endpoint; `/v1/traces` is appended.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// A PEM file of the certificates to trust for an `https://` traces endpoint, instead of the
/// system's trust store.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// As [`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`], for every signal.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// The bound on one export request, in milliseconds (default 10 s).
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// As [`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`], for every signal.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Headers sent with every export, `key=value` pairs separated by commas, values
/// percent-decoded (an API key: `x-honeycomb-team=…`); a key here wins over
/// [`OTEL_EXPORTER_OTLP_HEADERS`].
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// As [`OTEL_EXPORTER_OTLP_TRACES_HEADERS`], for every signal.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// The OTLP transport: only `http/protobuf` (the default) is spoken; another value fails
/// [`TracerBuilder::build`] rather than export nothing.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// As [`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`], for every signal.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Resource attributes to add (`deployment.environment=prod,team=orders`): `key=value` pairs
/// separated by commas, values percent-encoded. Read and checked by the builder; the keys the
/// tracer sets itself (`service.name`, `cloud.*`, `faas.*`) win.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Where spans go when no endpoint is configured: a collector layer in the function's
/// environment (ADOT's, OpenTelemetry's) listens here.
pub const DEFAULT_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// How long a flush may take before it gives up with a warning (and suspends export until the
/// collector answers again).
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound on one export request when neither the builder nor the environment sets one.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often spans are exported in the background with concurrent invocations.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// When an invocation's spans are exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushMode {
    /// After the response is sent, by the tracer's internal Lambda extension
    /// ([`Tracer::register_extension`]): the caller never waits for the collector. Without the
    /// extension registered (outside Lambda, or not called), the same as
    /// [`BeforeReturn`](Self::BeforeReturn).
    #[default]
    AfterResponse,
    /// Before the invocation returns, within the flush timeout: the response waits for the
    /// collector's answer.
    BeforeReturn,
}

/// What the tracer needs to know of the Lambda environment it runs in.
#[derive(Debug, Clone, Default)]
pub(crate) struct LambdaEnv {
    /// `AWS_LAMBDA_RUNTIME_API` (from the builder's `Env`): where extensions register, when set.
    pub(crate) runtime_api: Option<String>,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances), 1 when unset.
    pub(crate) max_concurrency: u32,
}

/// Crates whose spans and events never become OTel spans, matched by whole crate name (the
/// target is the name, or starts with the name and `::`), so that a crate of the user's named
/// `h2_probe` or `towers_bakery` is traced. The exporter's own HTTP stack and the OTel SDK would
/// otherwise trace their own exports (a feedback loop), and the AWS SDK's own spans would
/// duplicate the ones [`AwsSdkSpans`](crate::AwsSdkSpans) makes; the runtime's and the logging
/// layer's own spans would start traces of their own.
const INTERNAL_CRATES: &[&str] = &[
    // The logging layer's invocation scope: a span for logs, not a unit of work.
    "powertools_logging",
    // The runtime's own invoke span: the invocation span replaces it, joined to the X-Ray trace
    // (the runtime's would start a trace of its own).
    "lambda_runtime",
    "lambda_runtime_api_client",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "opentelemetry_proto",
    "opentelemetry_aws",
    "reqwest",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "hyper_tls",
    "h2",
    "h3",
    "tonic",
    "tower",
    "tower_http",
    "rustls",
    "tokio_rustls",
    // The AWS SDK's support crates: configuration, credentials, signing.
    "aws_config",
    "aws_runtime",
    "aws_types",
    "aws_credential_types",
    "aws_sigv4",
];

/// Families of crates that AWS publishes under one prefix, too many to list: the service clients
/// (`aws_sdk_dynamodb`, `aws_sdk_s3`, …) and the Smithy runtime (`aws_smithy_runtime`, …).
const INTERNAL_CRATE_FAMILIES: &[&str] = &["aws_sdk_", "aws_smithy_"];

/// Whether an event's target is this crate or one of its modules (not another crate whose
/// name begins with this one's, `powertools_tracing_extras`).
fn is_own_target(target: &str) -> bool {
    let own = env!("CARGO_CRATE_NAME");
    target
        .strip_prefix(own)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The target of this crate's spans that only carry an invocation's id to the log lines
/// written in them, from a task of the crate's own (the extension's): not units of work, never
/// exported (found by a review: the extension's line about an invocation became a trace of its
/// own).
pub(crate) const LOG_SCOPE_TARGET: &str = "powertools_tracing::log_scope";

/// Whether a span of `target` is exported: not a dependency's internals, nor a log scope of
/// this crate's ([`LOG_SCOPE_TARGET`]).
fn is_exported_span_target(target: &str) -> bool {
    !is_internal(target) && target != LOG_SCOPE_TARGET
}

fn is_internal(target: &str) -> bool {
    // Up to the first `:`, which no crate name has: a character search, where
    // `split_once("::")` set up a substring searcher for every span the layer is asked about
    // (about 380 instructions, counted in the logging layer's same check).
    let krate = target.split(':').next().unwrap_or(target);
    INTERNAL_CRATES.contains(&krate)
        || INTERNAL_CRATE_FAMILIES
            .iter()
            .any(|family| krate.len() > family.len() && krate.starts_with(family))
}

/// The OpenTelemetry tracer of a function: an OTLP/HTTP-protobuf exporter, X-Ray-compatible
/// trace ids, a resource from the Lambda environment, and the settings of
/// [`TracingLayer`](crate::TracingLayer). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracer {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) provider: Option<SdkTracerProvider>,
    /// The provider's tracer: the invocation span is built with it directly.
    pub(crate) sdk_tracer: Option<SdkTracer>,
    /// The service name, as the `Service` attribute value shared by every invocation span.
    pub(crate) service_value: StringValue,
    pub(crate) capture_response: bool,
    pub(crate) capture_error: bool,
    /// The OTLP exporter and its queue; `None` with tracing off or a caller's exporter, which
    /// exports each span as it ends (nothing to flush).
    pub(crate) exporter: Option<Arc<Exporter>>,
    pub(crate) flush_mode: FlushMode,
    pub(crate) export_interval: Duration,
    pub(crate) lambda: LambdaEnv,
    /// Hands each invocation's spans to the extension, once it is registered.
    pub(crate) handoff: Handoff,
    /// The OpenTelemetry variables set that the tracer does not apply, with what it does
    /// instead: said once, at the first invocation ([`Tracer::warn_unapplied_once`]).
    pub(crate) unapplied: Vec<(&'static str, &'static str)>,
    pub(crate) unapplied_warned: std::sync::Once,
}

impl Tracer {
    /// A builder reading unset options from the process environment.
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }

    /// A tracer configured from the environment only.
    ///
    /// # Errors
    /// As [`TracerBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// Whether tracing is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.provider.is_some()
    }

    /// Names each OpenTelemetry variable set that the tracer does not apply, once per tracer,
    /// at its first invocation: at build no subscriber would hear it (an operator who set
    /// `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` read it as compression on; found by a new user).
    pub(crate) fn warn_unapplied_once(&self) {
        let inner = &self.inner;
        if inner.unapplied.is_empty() {
            return;
        }
        // After the first, a load: later invocations do not write its cache line.
        inner.unapplied_warned.call_once(|| {
            for (variable, instead) in &inner.unapplied {
                tracing::warn!(
                    variable,
                    "{variable} is set, but not applied by powertools-tracing: {instead} (see \
                     its README)"
                );
            }
        });
    }

    /// The `tracing-subscriber` layer that turns `tracing` spans into OTel spans, with the
    /// exporter's and the HTTP stack's own targets filtered out. `None` when tracing is off.
    pub fn otel_layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.inner.sdk_tracer.clone()?;
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Attributes that X-Ray does not show and that each cost allocations per span.
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                // Log lines are not span events: they are in the logs, with the trace id, as
                // Powertools' Tracer leaves them; copying each into its span costs per line.
                .with_filter(FilterFn::new(|metadata| {
                    metadata.is_span() && is_exported_span_target(metadata.target())
                }))
                // The invocation's context on the logging layer's and the runtime's spans, for
                // tasks spawned with `.in_current_span()` (see `carry`).
                .and_then(crate::carry::ContextCarrier.with_filter(crate::carry::CarriedSpans)),
        )
    }

    /// A subscriber with the OTel layer, and the tracer's own warnings (a collector that fails
    /// or hangs, spans dropped) written to stderr as text lines, which Lambda sends to CloudWatch
    /// Logs: for tests, or functions that log another way. Other events go nowhere: to log
    /// through `tracing` as well, compose [`otel_layer`](Self::otel_layer) with a log layer
    /// (`powertools::Powertools` does, with powertools-logging's JSON lines).
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + use<> {
        let own_warnings = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(FilterFn::new(|metadata| {
                metadata.is_event()
                    && *metadata.level() <= tracing::Level::WARN
                    && is_own_target(metadata.target())
            }));
        tracing_subscriber::registry()
            .with(self.otel_layer())
            .with(own_warnings)
    }

    /// Exports every ended span now, from this task: it first waits for exports already under
    /// way (a background export's batch), then exports the queue, each within the flush timeout.
    /// A slow, failing or dead collector gives a warning, never an error: the invocation must
    /// not fail for its traces. After a flush fails or times out, flushes return at once: their
    /// spans go to a background probe, which sends the latest batch until one gets through and
    /// then resumes export (earlier batches, and those it could not send, are counted in
    /// [`dropped_spans`](Self::dropped_spans)). In a shutdown hook, call
    /// [`shutdown`](Self::shutdown) instead.
    pub async fn flush(&self) {
        if let Some(exporter) = &self.inner.exporter {
            exporter.flush_all().await;
        }
    }

    /// For a shutdown hook (`lambda_runtime::spawn_graceful_shutdown_handler`'s, which exits
    /// the process when it returns): [`flush`](Self::flush) within 400 ms, as the extension
    /// flushes on `SIGTERM`, waiting in that time for the invocations still running and
    /// exporting the spans they end, then counts and reports what the process leaves with:
    /// spans not exported in time, and the invocations still running (their spans never end).
    /// [`flush`](Self::flush) does not count those (an attack from the docs found a hook that
    /// flushed and exited leaving running invocations without a word). When the extension's
    /// `SIGTERM` handler flushes too, the two run one after the other, within the same 400 ms,
    /// and count each span once; the exit is counted once per process (a second call counts
    /// only what ended since). With tracing off or a caller's own exporter
    /// ([`span_exporter`](TracerBuilder::span_exporter), which exports each span as it ends)
    /// there is no queue, and it exports nothing, as [`flush`](Self::flush). Either way it first
    /// runs the other utilities' steps before an exit, once per process: powertools-metrics
    /// writes the metrics the invocations still running had added, with a warning.
    ///
    /// ```no_run
    /// # async fn hook(tracer: powertools_tracing::Tracer) {
    /// // In `lambda_runtime::spawn_graceful_shutdown_handler(move || async move { ... })`:
    /// tracer.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.flush_before_exit(crate::extension::EXIT_BUDGET).await;
    }

    /// [`flush`](Self::flush) within `limit` in all, before the process exits: what cannot be
    /// exported in time is counted as dropped and reported, instead of leaving with the process.
    pub(crate) async fn flush_before_exit(&self, limit: Duration) {
        // What the other utilities do before the exit (the metrics of invocations still
        // running are written), first: the export may take the whole budget.
        powertools_core::exit::before_exit();
        if let Some(exporter) = &self.inner.exporter {
            exporter.flush_all_within(limit, true).await;
        }
    }

    /// Exports the queued spans, giving up after `limit` if that comes before the flush
    /// timeout (the invocation's deadline).
    pub(crate) async fn flush_within(&self, limit: Duration) {
        if let Some(exporter) = &self.inner.exporter {
            exporter.flush_within(limit).await;
        }
    }

    /// How many spans were dropped since the process started: while export was suspended after a
    /// failed or timed-out flush, by a failed export, or because more ended between two flushes
    /// than [`max_queued_spans`](TracerBuilder::max_queued_spans), or rejected by a collector that
    /// took their export (an OTLP partial success). Each drop is also reported in a warning with
    /// its count.
    pub fn dropped_spans(&self) -> u64 {
        self.inner.exporter.as_ref().map_or(0, |exporter| {
            exporter.dropped().saturating_add(exporter.rejected())
        })
    }
}

/// Puts a span exporter of the caller's on the provider.
type ExporterHook = Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send>;
/// Builds the queue in front of a span exporter of the caller's: (queue length, flush timeout,
/// resource).
type QueuedExporterHook = Box<dyn FnOnce(usize, Duration, &Resource) -> Exporter + Send>;

/// Builds a [`Tracer`]. Options set here win over the environment.
#[derive(Default)]
#[must_use]
pub struct TracerBuilder {
    exporter: Option<ExporterHook>,
    queued_exporter: Option<QueuedExporterHook>,
    service: Option<String>,
    endpoint: Option<String>,
    disabled: Option<bool>,
    capture_response: Option<bool>,
    capture_error: Option<bool>,
    flush_timeout: Option<Duration>,
    export_timeout: Option<Duration>,
    flush_mode: Option<FlushMode>,
    certificate: Option<PathBuf>,
    max_queued_spans: Option<usize>,
    export_interval: Option<Duration>,
    env: Option<Env>,
}

impl std::fmt::Debug for TracerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracerBuilder")
            .field("service", &self.service)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(without_credentials),
            )
            .field("disabled", &self.disabled)
            .field("custom_exporter", &self.exporter.is_some())
            .field("custom_queued_exporter", &self.queued_exporter.is_some())
            .finish_non_exhaustive()
    }
}

impl TracerBuilder {
    /// The `service.name` resource attribute and `Service` span attribute (default:
    /// `POWERTOOLS_SERVICE_NAME`, else `service_undefined`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The OTLP/HTTP traces endpoint, used as is (default: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else [`DEFAULT_TRACES_ENDPOINT`]).
    /// Credentials in it (`https://user:password@…`) are sent as HTTP Basic authentication,
    /// never shown (warnings name the endpoint without them; errors and `Debug` show `***`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Turns tracing off (default: `POWERTOOLS_TRACE_DISABLED`, else off when
    /// `OTEL_SDK_DISABLED` is `true` or `POWERTOOLS_DEV` is, else on).
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// Records the handler's response as the `powertools.response` span attribute (default:
    /// `POWERTOOLS_TRACER_CAPTURE_RESPONSE`, else on). Turn it off for sensitive responses. Off, a
    /// response that does not serialize (which the runtime cannot send) still sets the span status
    /// to error (without serde's message, which may quote it): the response is serialized to
    /// nothing to find out, unless it is a `serde_json::Value`, so turning capture off saves the
    /// copy into the attribute, not the serialization.
    pub fn capture_response(mut self, capture: bool) -> Self {
        self.capture_response = Some(capture);
        self
    }

    /// Records the handler's error on the span (default: `POWERTOOLS_TRACER_CAPTURE_ERROR`, else
    /// on): its type and message on an `exception` event and its message as the span status's.
    /// Off, the error's words stay out of the trace (they may quote data): the status is an
    /// error described as `handler error`, and the `exception` event names the error's type
    /// only (for a `Diagnostic`, its `error_type`, recorded as it is given, cut to 1 KB: keep
    /// data out of it). (Python's X-Ray SDK records the exception's message whatever `capture_error` says;
    /// the option exists to keep it out.)
    pub fn capture_error(mut self, capture: bool) -> Self {
        self.capture_error = Some(capture);
        self
    }

    /// The bound on a flush (default 2 s). A flush that times out suspends export: later
    /// flushes return at once until a batch of spans gets through again.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = Some(timeout);
        self
    }

    /// The bound on one export request, from connecting to the last byte of the collector's
    /// answer (default: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`,
    /// in milliseconds, else 10 s). An answer over 64 KiB is not read: the export fails.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    /// When spans are exported (default: [`FlushMode::AfterResponse`], once
    /// [`Tracer::register_extension`] has registered the extension).
    pub fn flush_mode(mut self, mode: FlushMode) -> Self {
        self.flush_mode = Some(mode);
        self
    }

    /// A PEM file of the certificates to trust for an `https://` endpoint, instead of the
    /// system's trust store (default: `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, else
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`, else the system's). [`build`](Self::build) fails,
    /// naming the file, when it cannot be read or a certificate in it is not valid. With a
    /// plain `http://` endpoint it is not used, nor read.
    pub fn certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.certificate = Some(pem_file.into());
        self
    }

    /// How many ended spans may wait for a flush (default 2048); more are dropped, counted.
    pub fn max_queued_spans(mut self, spans: usize) -> Self {
        self.max_queued_spans = Some(spans);
        self
    }

    /// How often spans are exported in the background with concurrent invocations (default 1 s;
    /// 512 queued spans go at once, or half the queue when
    /// [`max_queued_spans`](Self::max_queued_spans) is under 1024).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = Some(interval);
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

    /// Exports to `exporter` instead of OTLP, each span as it ends (a local printer for a demo,
    /// an in-memory exporter for tests). The endpoint, queue and flush settings are then
    /// ignored.
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(move |provider: TracerProviderBuilder| {
            provider.with_span_processor(Annotating(SimpleSpanProcessor::new(exporter)))
        }));
        self
    }

    /// Exports to `exporter` instead of OTLP/HTTP, the way the OTLP exporter is driven: ended
    /// spans wait in the bounded queue and go at the flush, after the response with the
    /// extension, with export suspended while the exporter fails or hangs (an X-Ray or stdout
    /// exporter of your own, or a benchmark's). The endpoint settings are then ignored.
    pub fn queued_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.queued_exporter = Some(Box::new(
            move |capacity: usize, timeout: Duration, resource: &Resource| {
                let mut exporter = exporter;
                exporter.set_resource(resource);
                Exporter::new(exporter, capacity, timeout)
            },
        ));
        self
    }

    /// Builds the exporter and the tracer provider.
    ///
    /// # Errors
    /// A malformed environment variable (an export timeout of `0` included), a zero
    /// `flush_timeout`, `export_timeout`, `export_interval` or `max_queued_spans`
    /// ([`Error::InvalidSetting`]), or an exporter that cannot be built.
    pub fn build(self) -> Result<Tracer, Error> {
        let env = self.env.unwrap_or_else(Env::process);
        let config = PowertoolsConfig::from_env_source(&env)?;
        let service = self
            .service
            .unwrap_or_else(|| config.service_name().to_owned());
        let disabled = match self.disabled {
            Some(disabled) => disabled,
            None => match env.bool(POWERTOOLS_TRACE_DISABLED)? {
                Some(disabled) => disabled,
                None => otel_sdk_disabled(&env)? || config.dev_mode(),
            },
        };
        let capture_response = match self.capture_response {
            Some(capture) => capture,
            None => env
                .bool(POWERTOOLS_TRACER_CAPTURE_RESPONSE)?
                .unwrap_or(true),
        };
        let capture_error = match self.capture_error {
            Some(capture) => capture,
            None => env.bool(POWERTOOLS_TRACER_CAPTURE_ERROR)?.unwrap_or(true),
        };
        // Zero would give up on every flush (or export) before it starts, or drop every span:
        // spans lost for good, with nothing pointing at the setting.
        let above_zero = |setting: &'static str, zero: bool| {
            if zero {
                Err(Error::InvalidSetting {
                    setting,
                    reason: "must be above zero (leave it unset for the default)",
                })
            } else {
                Ok(())
            }
        };
        above_zero("flush_timeout", self.flush_timeout == Some(Duration::ZERO))?;
        above_zero(
            "export_timeout",
            self.export_timeout == Some(Duration::ZERO),
        )?;
        above_zero("max_queued_spans", self.max_queued_spans == Some(0))?;
        above_zero(
            "export_interval",
            self.export_interval == Some(Duration::ZERO),
        )?;
        let flush_timeout = self.flush_timeout.unwrap_or(DEFAULT_FLUSH_TIMEOUT);
        let lambda = LambdaEnv {
            runtime_api: env.string("AWS_LAMBDA_RUNTIME_API")?,
            // Read once, as the runtime reads it (`PowertoolsConfig`).
            max_concurrency: config.max_concurrency().unwrap_or(1),
        };
        let span_limits = span_limits(&env)?;
        // Told only for a tracer that exports: turned off, none of them matters.
        let unapplied = if disabled {
            Vec::new()
        } else {
            unapplied_variables(&env)
        };
        // Read only for a tracer that exports: turned off, a function starts whatever it holds.
        let resource_attributes = if disabled {
            Vec::new()
        } else {
            resource_attributes(&env)?
        };
        let mut exporter = None;
        let provider = if disabled {
            None
        } else if let Some(hook) = self.exporter {
            Some(
                hook(SdkTracerProvider::builder().with_span_limits(span_limits))
                    .with_id_generator(HeaderTraceIds::default())
                    .with_sampler(HeaderSampler)
                    .with_resource(resource(&service, &config, &resource_attributes))
                    .build(),
            )
        } else if let Some(hook) = self.queued_exporter {
            let resource = resource(&service, &config, &resource_attributes);
            let queue = Arc::new(hook(
                self.max_queued_spans.unwrap_or(DEFAULT_MAX_QUEUED_SPANS),
                flush_timeout,
                &resource,
            ));
            exporter = Some(Arc::clone(&queue));
            Some(
                SdkTracerProvider::builder()
                    .with_span_limits(span_limits)
                    .with_span_processor(QueueProcessor(queue))
                    .with_id_generator(HeaderTraceIds::default())
                    .with_sampler(HeaderSampler)
                    .with_resource(resource)
                    .build(),
            )
        } else {
            let endpoint = match self.endpoint {
                Some(endpoint) => http_url(&endpoint).ok_or_else(|| {
                    Error::Exporter(format!(
                        "the endpoint {:?} given to TracerBuilder::endpoint is not an http:// or \
                         https:// URL with a host",
                        shown_in_errors(&endpoint)
                    ))
                })?,
                None => match endpoint_variable(
                    &env,
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                    ENDPOINT_EXPECTED,
                    http_url,
                )? {
                    Some(endpoint) => endpoint,
                    None => match endpoint_variable(
                        &env,
                        OTEL_EXPORTER_OTLP_ENDPOINT,
                        BASE_EXPECTED,
                        base_url,
                    )? {
                        Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
                        None => DEFAULT_TRACES_ENDPOINT.to_owned(),
                    },
                },
            };
            let export_timeout = match self.export_timeout {
                Some(timeout) => timeout,
                // The general variable is read only when the traces' own is unset, as the
                // endpoint's, the certificate's and the protocol's are.
                None => match env.parse_with(
                    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                    MILLISECONDS,
                    milliseconds,
                )? {
                    Some(timeout) => timeout,
                    None => env
                        .parse_with(OTEL_EXPORTER_OTLP_TIMEOUT, MILLISECONDS, milliseconds)?
                        .unwrap_or(DEFAULT_EXPORT_TIMEOUT),
                },
            };
            // With where it came from, for the error of a file that does not load.
            let certificate = match self.certificate {
                Some(path) => Some((path, "TracerBuilder::certificate")),
                None => match env.string(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE)? {
                    Some(path) => {
                        Some((PathBuf::from(path), OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE))
                    }
                    None => env
                        .string(OTEL_EXPORTER_OTLP_CERTIFICATE)?
                        .map(|path| (PathBuf::from(path), OTEL_EXPORTER_OTLP_CERTIFICATE)),
                },
            };
            let roots = roots(&endpoint, certificate)?;
            check_protocol(&env)?;
            let mut headers = otlp_headers(&env)?;
            // Credentials in the URL go in a header, as HTTP clients send them (Python's
            // `requests`, Go's `net/http`): the URL the exporter requests, and names in its
            // warnings, has none.
            let (endpoint, authorization) = split_credentials(&endpoint);
            // Nor its query string (a key, for some vendors).
            let endpoint_for_warnings = crate::export::shown_endpoint(&endpoint);
            if let Some(value) = authorization {
                headers.retain(|(name, _)| name != "authorization");
                headers.push(("authorization".to_owned(), value));
            }
            let headers = headers
                .into_iter()
                .filter_map(|(name, value)| {
                    Some((
                        http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                        http::HeaderValue::from_str(&value).ok()?,
                    ))
                })
                .collect();
            let resource = resource(&service, &config, &resource_attributes);
            let max_queued_spans = self.max_queued_spans.unwrap_or(DEFAULT_MAX_QUEUED_SPANS);
            let client = OtlpHttpClient::new(roots, export_timeout, headers, max_queued_spans);
            let rejections = client.rejections();
            let mut otlp = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(endpoint)
                .with_timeout(export_timeout)
                // One attempt per export: the exporter's retries sleep the thread (its `tokio`
                // feature is off) past the flush timeout and the deadline; a failed export
                // suspends export and the probe tries again, in the background.
                .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                .build()
                .map_err(|error| Error::Exporter(error.to_string()))?;
            otlp.set_resource(&resource);
            let queue = Arc::new(
                Exporter::new(OtlpExporter::new(otlp), max_queued_spans, flush_timeout)
                    .counting_rejections(rejections)
                    .naming(endpoint_for_warnings),
            );
            exporter = Some(Arc::clone(&queue));
            Some(
                SdkTracerProvider::builder()
                    .with_span_limits(span_limits)
                    .with_span_processor(QueueProcessor(queue))
                    .with_id_generator(HeaderTraceIds::default())
                    .with_sampler(HeaderSampler)
                    .with_resource(resource)
                    .build(),
            )
        };
        let sdk_tracer = provider
            .as_ref()
            .map(|provider| provider.tracer("powertools-tracing"));
        Ok(Tracer {
            inner: Arc::new(Inner {
                provider,
                sdk_tracer,
                // Reference counted: each span's `Service` attribute shares it, never copies it.
                service_value: StringValue::from(Arc::<str>::from(service)),
                capture_response,
                capture_error,
                exporter,
                flush_mode: self.flush_mode.unwrap_or_default(),
                export_interval: self.export_interval.unwrap_or(DEFAULT_EXPORT_INTERVAL),
                lambda,
                handoff: Handoff::default(),
                unapplied,
                unapplied_warned: std::sync::Once::new(),
            }),
        })
    }
}

/// The OpenTelemetry variables the tracer does not apply, and what it does instead (the
/// README's "Not applied").
const UNAPPLIED_VARIABLES: [(&str, &str); 7] = [
    (
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "spans are exported uncompressed",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "spans are exported uncompressed",
    ),
    (
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "the SDK has no such limit; the tracing layer bounds what it records itself",
    ),
    (
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "the SDK has no such limit; the tracing layer bounds what it records itself",
    ),
    (
        "OTEL_TRACES_SAMPLER",
        "the sampling decision is Lambda's, from the trace header",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "the sampling decision is Lambda's, from the trace header",
    ),
    (
        "OTEL_SERVICE_NAME",
        "the service name is POWERTOOLS_SERVICE_NAME's, or the builder's",
    ),
];

/// The variables of [`UNAPPLIED_VARIABLES`] that `env` sets to something other than blanks.
fn unapplied_variables(env: &Env) -> Vec<(&'static str, &'static str)> {
    UNAPPLIED_VARIABLES
        .into_iter()
        .filter(|(name, _)| env.is_set(name))
        .collect()
}

/// The certificates an exporter to `endpoint` trusts: none for plain HTTP, the PEM file's if one
/// is given, else the system's.
fn roots(endpoint: &str, certificate: Option<(PathBuf, &str)>) -> Result<Roots, Error> {
    let https = endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if !https {
        return Ok(Roots::None);
    }
    let Some((path, from)) = certificate else {
        return Ok(Roots::Native);
    };
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let unreadable = |error: &dyn std::fmt::Display| {
        // Cut as a variable's value is: a path can be as long as a mistake makes it (found by
        // an audit of the errors from the docs: 100 KB in Lambda's `errorMessage`).
        Error::Exporter(format!(
            "the certificate file {} (from {from}) could not be read: {error}",
            powertools_core::env::shown(&path.display().to_string())
        ))
    };
    let pem = std::fs::read(&path).map_err(|error| unreadable(&error))?;
    // Checked now, so that a bad file fails the build of the tracer, not every export.
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(&error))?;
    if certificates.is_empty() {
        return Err(unreadable(&"it holds no PEM certificate"));
    }
    // Each one as the SDK's connector will add it to its trust store, which it does with an
    // `expect`: a certificate whose PEM is sound but whose content is not (a truncated bundle)
    // would otherwise panic in the first export, and again in each one after it.
    let mut trusted = rustls::RootCertStore::empty();
    for (number, certificate) in certificates.into_iter().enumerate() {
        trusted.add(certificate).map_err(|error| {
            unreadable(&format_args!(
                "its certificate number {} is not a valid certificate: {error}",
                number + 1
            ))
        })?;
    }
    Ok(Roots::Pem(pem))
}

/// The attributes of [`OTEL_RESOURCE_ATTRIBUTES`] in `env`, percent-decoded. The SDK reads the
/// variable itself, from the process's environment, and dropped a value that is not UTF-8, an
/// entry that is not `key=value`, and sent an empty key or an escape that is not one (`%zz`)
/// as it was, each without a word (found by an attack from the docs): such a value fails the
/// build here, naming the variable and the entry's place; the decoded attributes replace the
/// SDK's undecoded ones.
fn resource_attributes(env: &Env) -> Result<Vec<KeyValue>, Error> {
    let Some(text) = env.string(OTEL_RESOURCE_ATTRIBUTES)? else {
        return Ok(Vec::new());
    };
    let mut attributes = Vec::new();
    for entry in text.split(',').filter(|entry| !entry.trim().is_empty()) {
        let refused = || {
            Error::Config(powertools_core::Error::InvalidEnvVar {
                name: OTEL_RESOURCE_ATTRIBUTES.to_owned(),
                value: entry.trim().to_owned(),
                expected: "key=value pairs separated by commas (this entry is not one), each key \
                           non-empty, each value percent-encoded: a % begins an escape (%20, \
                           a % itself as %25) and the decoded value is UTF-8",
            })
        };
        let (key, value) = entry.split_once('=').ok_or_else(refused)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(refused());
        }
        let value = value.trim();
        let mut escapes = value.split('%').skip(1);
        if escapes.any(|after| {
            after.len() < 2 || !after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
        }) {
            return Err(refused());
        }
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| refused())?;
        attributes.push(KeyValue::new(key.to_owned(), value.into_owned()));
    }
    Ok(attributes)
}

/// The resource attributes Lambda's environment gives (OTel semantic conventions for FaaS),
/// over those of [`OTEL_RESOURCE_ATTRIBUTES`] (`from_variable`).
fn resource(service: &str, config: &PowertoolsConfig, from_variable: &[KeyValue]) -> Resource {
    let mut attributes = from_variable.to_vec();
    attributes.push(KeyValue::new("cloud.provider", "aws"));
    attributes.push(KeyValue::new("cloud.platform", "aws_lambda"));
    if let Some(region) = config.region() {
        attributes.push(KeyValue::new("cloud.region", region.to_owned()));
    }
    if let Some(name) = config.function_name() {
        attributes.push(KeyValue::new("faas.name", name.to_owned()));
    }
    if let Some(version) = config.function_version() {
        attributes.push(KeyValue::new("faas.version", version.to_owned()));
    }
    if let Some(memory) = config.function_memory_size() {
        attributes.push(KeyValue::new(
            "faas.max_memory",
            i64::from(memory) * 1024 * 1024,
        ));
    }
    // The SDK's telemetry attributes, but not its reading of the process's environment
    // (`OTEL_RESOURCE_ATTRIBUTES` undecoded and unchecked, whatever `env` the builder was
    // given; found by a review). The service last: `service.name` in the variable would
    // replace it (found by an attack).
    Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(attributes)
        .with_service_name(service.to_owned())
        .build()
}

/// Whether `OTEL_SDK_DISABLED` is `true`: only that (any case, trimmed) is true, as OpenTelemetry
/// reads it, and `false` (its default, which templates set) is only not turning tracing off.
/// Another value is refused where the specification reads it as `false` with a warning: `1` or
/// `yes` meant to turn tracing off would leave it on, and a warning at build time reaches no
/// subscriber yet.
fn otel_sdk_disabled(env: &Env) -> Result<bool, Error> {
    let disabled = env.parse_with(
        OTEL_SDK_DISABLED,
        "true or false (OpenTelemetry reads no other value as true)",
        |value| match value.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
    )?;
    Ok(disabled.unwrap_or(false))
}

/// OpenTelemetry's span limits, with the limit variables of `env` over the SDK's defaults.
///
/// Read here, as every other variable is: the SDK reads them from the process, untrimmed,
/// and drops a value it cannot parse without a word (its default of 128 then applies), so a
/// limit of `1k` or ` 2` was lost silently.
fn span_limits(env: &Env) -> Result<SpanLimits, Error> {
    const COUNT: &str = "a whole number from 0 to 4294967295";
    let mut limits = SpanLimits::default();
    for (name, limit) in [
        (
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            &mut limits.max_attributes_per_span,
        ),
        (
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            &mut limits.max_events_per_span,
        ),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", &mut limits.max_links_per_span),
    ] {
        if let Some(count) = env.parse::<u32>(name, COUNT)? {
            *limit = count;
        }
    }
    Ok(limits)
}

/// What an export timeout variable holds.
const MILLISECONDS: &str = "a whole number of milliseconds from 1 to 18446744073709551615";

/// An export timeout variable's value: zero would time every export out before it starts.
fn milliseconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&milliseconds| milliseconds > 0)
        .map(Duration::from_millis)
}

/// What an OTLP endpoint variable must hold, for its error message.
const ENDPOINT_EXPECTED: &str =
    "an http:// or https:// URL with a host, such as http://localhost:4318";
const BASE_EXPECTED: &str = "an http:// or https:// URL with a host and no query, such as \
     http://localhost:4318 (/v1/traces is appended)";

/// `value` (trimmed) when it is an `http://` or `https://` URL with a host: OTLP/HTTP has no
/// other scheme, and a URL without one (`localhost:4318`) would only fail at the first export,
/// as spans dropped with a warning.
fn http_url(value: &str) -> Option<String> {
    let value = value.trim();
    let uri: http::Uri = value.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|host| !host.is_empty());
    // `http::Uri` takes any digits after the host (and then reports no port); a connection
    // cannot.
    let authority = uri.authority().map_or("", http::uri::Authority::as_str);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let after_host = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, rest)| rest);
    let port_ok = !after_host.contains(':') || uri.port_u16().is_some_and(|port| port > 0);
    (scheme_ok && host_ok && port_ok).then(|| value.to_owned())
}

/// Headers that frame an export request's body: the exporter's, never the configuration's
/// (`content-type` too, unless it says what the exporter sends). `host` and `connection` are
/// left to the configuration: an endpoint given as an address behind a virtual host needs
/// `host`, and neither breaks the request.
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// The body's type the exporter sends.
pub(crate) const PROTOBUF: &str = "application/x-protobuf";

/// The headers of [`OTEL_EXPORTER_OTLP_HEADERS`] then [`OTEL_EXPORTER_OTLP_TRACES_HEADERS`] (whose
/// keys win), read from `env`. An entry that is not `key=value`, a name that is not a header's,
/// a value that is not one, or a header that frames the body ([`FRAMING_HEADERS`], a
/// `content-type` other than protobuf's) fails,
/// naming the variable and the entry's place but never its value: a header is often an API key.
fn otlp_headers(env: &Env) -> Result<Vec<(String, String)>, Error> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for variable in [
        OTEL_EXPORTER_OTLP_HEADERS,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ] {
        // A value that is not UTF-8 is not shown either: it may hold an API key.
        let text = env.string(variable).map_err(|error| match error {
            powertools_core::Error::NonUnicodeEnvVar { name, .. } => {
                powertools_core::Error::NonUnicodeEnvVar {
                    name,
                    value: "(its value is left out: it may hold a secret)".to_owned(),
                }
            }
            other => other,
        })?;
        let Some(text) = text else {
            continue;
        };
        let entries = text.split(',').filter(|entry| !entry.trim().is_empty());
        for (place, entry) in entries.enumerate() {
            let refused = |what: &str| {
                Error::Exporter(format!(
                    "{variable}: entry {} {what} (values are left out here: they may be \
                     secrets); expected key=value pairs separated by commas",
                    place + 1
                ))
            };
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| refused("is not a key=value pair"))?;
            let name = name.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(refused("has a key that is not a header name"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| refused("has a value that is not UTF-8 once percent-decoded"))?
                .into_owned();
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(refused("has a value that is not a header value"));
            }
            // The headers that frame the body are the exporter's: `content-length=5` was sent in
            // place of the body's length, and every export failed.
            if FRAMING_HEADERS.contains(&name.as_str()) {
                return Err(Error::Exporter(format!(
                    "{variable}: entry {} sets {name}, which the exporter writes for each request \
                     (it would break every export); remove it",
                    place + 1
                )));
            }
            if name == "content-type" && !value.trim().eq_ignore_ascii_case(PROTOBUF) {
                return Err(Error::Exporter(format!(
                    "{variable}: entry {} sets content-type to another type than {PROTOBUF}, \
                     the only one the exporter sends (the collector would not read the body); \
                     remove it",
                    place + 1
                )));
            }
            headers.retain(|(kept, _)| *kept != name);
            // An empty value sends no header, as opentelemetry-otlp skips it.
            if !value.is_empty() {
                headers.push((name, value));
            }
        }
    }
    Ok(headers)
}

/// Fails for an OTLP protocol other than the one spoken (`http/protobuf`): a function
/// configured for gRPC or JSON would otherwise export nothing, with only a warning per flush.
/// The traces' own variable wins over the general one, as the OTel specification says (gRPC for
/// the other signals and OTLP/HTTP for traces is a valid set-up).
fn check_protocol(env: &Env) -> Result<(), Error> {
    for variable in [
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        let Some(protocol) = env.string(variable)? else {
            continue;
        };
        if protocol.trim().is_empty() {
            continue;
        }
        if protocol.trim() == "http/protobuf" {
            return Ok(());
        }
        return Err(Error::Exporter(format!(
            "{variable}={}: powertools-tracing exports over OTLP/HTTP with protobuf \
             only; set it to http/protobuf (or leave it unset) and point the endpoint at the \
             collector's HTTP port (4318)",
            powertools_core::env::shown(&protocol)
        )));
    }
    Ok(())
}

/// An endpoint variable's value, parsed by `parse`; its error shows the value without
/// credentials.
fn endpoint_variable(
    env: &Env,
    name: &str,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<String>,
) -> Result<Option<String>, Error> {
    env.parse_with(name, expected, parse).map_err(|error| {
        Error::from(match error {
            powertools_core::Error::InvalidEnvVar {
                name,
                value,
                expected,
            } => powertools_core::Error::InvalidEnvVar {
                name,
                value: shown_in_errors(&value),
                expected,
            },
            // Shown, escaped, to see which bytes are wrong: without its credentials too. A value
            // cut (at 64 characters) may have lost the `@` that ends them, or kept another one
            // (a user name that is an e-mail address): all of it after the scheme is left out.
            powertools_core::Error::NonUnicodeEnvVar { name, value } => {
                let value = if value.ends_with('…') {
                    match value.find("://") {
                        Some(scheme_end) => format!("{}***\"…", &value[..scheme_end + 3]),
                        None => "(left out: it may hold credentials)".to_owned(),
                    }
                } else {
                    shown_in_errors(&value)
                };
                powertools_core::Error::NonUnicodeEnvVar { name, value }
            }
            other => other,
        })
    })
}

/// Where `url`'s credentials (`user:password@`) end in its authority, if it has any: the
/// authority ends at the first `/`, `?` or `#` after the scheme.
fn credentials_end(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |end| start + end);
    let at = url[start..authority_end].rfind('@')?;
    Some((start, start + at + 1))
}

/// `url` with its credentials replaced by `***`, for messages and `Debug`. Any value, valid URL
/// or not: everything after the scheme up to the last `@` is hidden, since a password may hold
/// the characters that end an authority (`#`, `/`, `?`) unencoded, or the scheme may be missing.
/// It hides more than the credentials when the path or query holds an `@`, never less.
fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url
        .find("://")
        .filter(|&scheme_end| !url[..scheme_end].contains('@'))
        .map_or(0, |scheme_end| scheme_end + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

/// `url` as errors show it: without its credentials ([`without_credentials`]) nor its query
/// string, which may carry a vendor's key (as warnings show it).
fn shown_in_errors(url: &str) -> String {
    // Which `@` ends the credentials and which `?` starts the query cannot be told apart when
    // a `?` comes before the last `@` (a password with a `?`, or a query with an `@`): nothing
    // after the scheme is shown then (a review found the query's key shown after an `@` in it).
    let start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let last_at = url[start..].rfind('@').map(|at| start + at);
    match (url.find('?'), last_at) {
        (Some(query), Some(at)) if query < at => format!("{}***…", &url[..start]),
        _ => crate::export::shown_endpoint(&without_credentials(url)),
    }
}

/// `url` without its credentials, and the `Authorization` header value (HTTP Basic) they stand
/// for, percent-decoded as URLs carry them.
fn split_credentials(url: &str) -> (String, Option<String>) {
    use base64::Engine as _;
    let Some((start, end)) = credentials_end(url) else {
        return (url.to_owned(), None);
    };
    let decoded = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let userinfo = &url[start..end - 1];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials = decoded(user);
    credentials.push(b':');
    credentials.extend(decoded(password));
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    (format!("{}{}", &url[..start], &url[end..]), Some(header))
}

/// `value` as [`http_url`] takes it, without a query or a fragment: it is the base that
/// `/v1/traces` is appended to (`http://collector:4318?tenant=a` would become
/// `…?tenant=a/v1/traces`).
fn base_url(value: &str) -> Option<String> {
    http_url(value).filter(|url| !url.contains(['?', '#']))
}

#[cfg(test)]
mod tests {
    /// The OTel layer exports the function's spans and the AWS SDK client spans, not a
    /// dependency's internals, nor the extension's span that carries an invocation's id to its
    /// log line (a review found it exported as a trace of its own).
    #[test]
    fn the_spans_exported_are_units_of_work() {
        assert!(!super::is_exported_span_target(super::LOG_SCOPE_TARGET));
        assert!(super::is_exported_span_target(
            "powertools_tracing::aws_sdk"
        ));
        assert!(super::is_exported_span_target("orders"));
        assert!(!super::is_exported_span_target("lambda_runtime::layers"));
    }

    /// `Tracer::subscriber` writes this crate's warnings only: another crate whose name begins
    /// with this one's is not this crate.
    #[test]
    fn the_subscriber_s_own_targets_are_this_crate_and_its_modules() {
        assert!(super::is_own_target("powertools_tracing"));
        assert!(super::is_own_target("powertools_tracing::export"));
        assert!(!super::is_own_target("powertools_tracing_extras::orders"));
        assert!(!super::is_own_target("powertools_logging"));
    }

    use super::*;

    #[test]
    fn credentials_are_taken_from_the_authority_only() {
        for (url, without, header) in [
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
                None,
            ),
            (
                "http://user:pass@collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
                Some("Basic dXNlcjpwYXNz"),
            ),
            // No password; an `@` in the path or the query is not a credential's.
            (
                "https://user@[::1]:4318",
                "https://[::1]:4318",
                Some("Basic dXNlcjo="),
            ),
            (
                "http://collector/a@b?c=d@e",
                "http://collector/a@b?c=d@e",
                None,
            ),
            ("http://collector?u=x@y", "http://collector?u=x@y", None),
            // Percent-encoded, and an `@` in the password.
            (
                "http://us%65r:p%40ss@collector",
                "http://collector",
                Some("Basic dXNlcjpwQHNz"),
            ),
            (
                "http://user:p@ss@collector",
                "http://collector",
                Some("Basic dXNlcjpwQHNz"),
            ),
        ] {
            let (endpoint, authorization) = split_credentials(url);
            assert_eq!(endpoint, without, "{url}");
            assert_eq!(authorization.as_deref(), header, "{url}");
            let shown = without_credentials(url);
            assert!(
                !shown.contains("pass") && !shown.contains("p@ss"),
                "{shown}"
            );
            if header.is_some() {
                assert!(shown.contains("***@"), "{shown}");
            }
        }
        // Invalid URLs and values without a scheme are shown without their credentials too,
        // whatever the password holds.
        for (value, shown) in [
            (
                "https://user:pa#ss@collector/v1/traces",
                "https://***@collector/v1/traces",
            ),
            ("https://user:pa/ss@collector", "https://***@collector"),
            ("https://user:pa?ss@collector", "https://***@collector"),
            (
                "user:pass@collector:4318/v1/traces",
                "***@collector:4318/v1/traces",
            ),
            (
                "http://user:pass@collector:43l8",
                "http://***@collector:43l8",
            ),
            ("ftp://user:pass@collector", "ftp://***@collector"),
            ("http://collector:4318", "http://collector:4318"),
        ] {
            assert_eq!(without_credentials(value), shown);
        }
    }

    /// A value that is not UTF-8 is shown in its error (to see which bytes are wrong), but an
    /// OTLP header's value never (it may be an API key) and an endpoint's without its
    /// credentials: one byte that is not UTF-8 put the secret in the start-up error, which goes
    /// to the function's log (found by a review).
    #[test]
    fn a_secret_in_a_value_that_is_not_utf8_is_left_out_of_its_error() {
        use std::os::unix::ffi::OsStringExt;
        for (variable, bytes) in [
            (
                OTEL_EXPORTER_OTLP_HEADERS,
                &b"authorization=Bearer sk-SECRET\xff"[..],
            ),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, &b"x-key=SECRET\xff"[..]),
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                &b"http://user:SECRET@collector:4318\xff"[..],
            ),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                &b"http://user:SECRET@collector:4318/v1/traces\xff"[..],
            ),
            // The `@` past the 64 characters the error shows: the start of the password was
            // shown; then with another `@` before the cut (found by reviews).
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                &b"https://user:SECRETSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS@collector:4318\xff"[..],
            ),
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                &b"https://alice@corp.example:SECRETSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS@collector:4318\xff"[..],
            ),
        ] {
            let error = Tracer::builder()
                .env(Env::from_pairs([(
                    variable,
                    std::ffi::OsString::from_vec(bytes.to_vec()),
                )]))
                .build()
                .expect_err(variable);
            assert!(error.to_string().contains("UTF-8"), "{error}");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(shown.contains(variable), "{shown}");
                assert!(!shown.contains("SECRET"), "{shown}");
            }
        }
    }

    #[test]
    fn an_endpoint_variable_s_error_shows_no_credentials() {
        for (variable, value) in [
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "http://user:pass@collector:4318?tenant=a",
            ),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://user:pass@collector:43l8",
            ),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "user:pass@collector:4318",
            ),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://user:pa#ss@collector"),
        ] {
            let error = Tracer::builder()
                .env(Env::from_pairs([(variable, value)]))
                .build()
                .expect_err(value);
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(shown.contains(variable), "{shown}");
                assert!(shown.contains("***@collector"), "{shown}");
                assert!(
                    !shown.contains("pass") && !shown.contains("pa#ss"),
                    "{shown}"
                );
            }
        }
    }

    /// An endpoint's query string may carry a vendor's key (`?api-key=…`): a refused endpoint's
    /// error, which `powertools::init_failed` logs and posts to Lambda, leaves it out as the
    /// export warnings do (found by an attack from the docs: the error quoted it whole).
    #[test]
    fn a_refused_endpoint_s_error_leaves_out_its_query_string() {
        use std::os::unix::ffi::OsStringExt;
        for (variable, value) in [
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "https://otlp.vendor.example?api-key=s3cret",
            ),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://host:4318?key=s3cret x"),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://host/v1/traces?key=s3cret x",
            ),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://u:p@host:99999/v1/traces?key=s3cret",
            ),
            // A `?` in the password: which `@` ends it cannot be told from a query's `@`.
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://u:s3c?ret@host:99999/v1/traces",
            ),
        ] {
            let error = Tracer::builder()
                .env(Env::from_pairs([(variable, value)]))
                .build()
                .expect_err(value);
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(shown.contains(variable), "{shown}");
                assert!(!shown.contains("s3c"), "{shown}");
                assert!(shown.contains("?…") || shown.contains("***…"), "{shown}");
            }
        }
        let not_utf8 = std::ffi::OsString::from_vec(b"http://host/\xff?key=s3cret".to_vec());
        let error = Tracer::builder()
            .env(Env::from_pairs([(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                not_utf8,
            )]))
            .build()
            .expect_err("not UTF-8");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = Tracer::builder()
            .endpoint("ftp://host/v1/traces?key=s3cret")
            .env(Env::empty())
            .build()
            .expect_err("not http");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    /// (Found by a review.) `shown_in_errors` removes the credentials first, with `without_credentials`,
    /// which takes the last `@` of the whole URL for the end of the userinfo, even in the query
    /// string: the `?` is then cut away with the host, and the rest of the query (a vendor's key
    /// after an e-mail address) is quoted whole in the refused endpoint's error.
    #[test]
    fn review_a_refused_endpoint_s_error_leaves_out_a_query_string_with_an_at_sign() {
        for (variable, value) in [
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://host:99999/v1/traces?user=me@corp.example&api-key=s3cret",
            ),
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "https://otlp.vendor.example?user=me@corp.example&api-key=s3cret x",
            ),
        ] {
            let error = Tracer::builder()
                .env(Env::from_pairs([(variable, value)]))
                .build()
                .expect_err(value);
            let shown = error.to_string();
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        let error = Tracer::builder()
            .endpoint("ftp://host/v1/traces?user=me@corp.example&api-key=s3cret")
            .env(Env::empty())
            .build()
            .expect_err("not http");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn an_endpoint_s_port_is_checked_wherever_the_host_and_user_are() {
        for good in [
            "http://collector",
            "http://collector:4318",
            "http://user:secret@collector",
            "http://user:secret@collector:4318/v1/traces",
            "http://[::1]",
            "http://[::1]:4318",
        ] {
            assert!(http_url(good).is_some(), "{good}");
        }
        for bad in [
            "http://collector:99999",
            "http://[::1]:65536",
            "http://u:p@c:70000",
            "http://collector:0",
        ] {
            assert!(http_url(bad).is_none(), "{bad}");
        }
    }

    fn tracer(vars: &[(&str, &str)]) -> Tracer {
        Tracer::builder()
            .env(Env::from_pairs(vars.iter().copied()))
            .build()
            .unwrap()
    }

    #[test]
    fn the_environment_switches_tracing_and_capture_off() {
        assert!(tracer(&[]).is_enabled());
        assert!(!tracer(&[(POWERTOOLS_TRACE_DISABLED, "true")]).is_enabled());
        assert!(!tracer(&[("POWERTOOLS_DEV", "true")]).is_enabled());
        assert!(
            tracer(&[
                ("POWERTOOLS_DEV", "true"),
                (POWERTOOLS_TRACE_DISABLED, "false")
            ])
            .is_enabled(),
            "an explicit setting wins over development mode"
        );
        let quiet = tracer(&[
            (POWERTOOLS_TRACER_CAPTURE_RESPONSE, "false"),
            (POWERTOOLS_TRACER_CAPTURE_ERROR, "false"),
        ]);
        assert!(!quiet.inner.capture_response && !quiet.inner.capture_error);
        let default = tracer(&[]);
        assert!(default.inner.capture_response && default.inner.capture_error);
        let malformed = Tracer::builder()
            .env(Env::from_pairs([(POWERTOOLS_TRACE_DISABLED, "perhaps")]))
            .build()
            .unwrap_err();
        assert!(malformed.to_string().contains(POWERTOOLS_TRACE_DISABLED));
    }

    /// `OTEL_SDK_DISABLED=true`, OpenTelemetry's switch for its SDK, turns tracing off as
    /// `POWERTOOLS_TRACE_DISABLED` does (it was not read: tracing stayed on and exported, found
    /// by an attack from the docs); Powertools' own variable wins. As OpenTelemetry reads it,
    /// only `true` (any case) is true: `false`, its default, which templates set, does not turn
    /// development mode's tracing back on, and `1` or `yes` are refused naming the variable
    /// rather than read as `false` as the specification says (its review).
    #[test]
    fn otel_sdk_disabled_turns_tracing_off() {
        assert!(!tracer(&[(OTEL_SDK_DISABLED, "true")]).is_enabled());
        assert!(!tracer(&[(OTEL_SDK_DISABLED, " TRUE ")]).is_enabled());
        assert!(tracer(&[(OTEL_SDK_DISABLED, "false")]).is_enabled());
        assert!(tracer(&[(OTEL_SDK_DISABLED, "")]).is_enabled());
        assert!(
            tracer(&[
                (OTEL_SDK_DISABLED, "true"),
                (POWERTOOLS_TRACE_DISABLED, "false")
            ])
            .is_enabled(),
            "Powertools' own setting wins"
        );
        assert!(!tracer(&[(OTEL_SDK_DISABLED, "true"), ("POWERTOOLS_DEV", "false")]).is_enabled());
        assert!(
            !tracer(&[(OTEL_SDK_DISABLED, "false"), ("POWERTOOLS_DEV", "true")]).is_enabled(),
            "OpenTelemetry's default does not keep tracing on in development mode"
        );
        for malformed in ["perhaps", "1", "yes", "on"] {
            let error = Tracer::builder()
                .env(Env::from_pairs([(OTEL_SDK_DISABLED, malformed)]))
                .build()
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(OTEL_SDK_DISABLED) && error.contains("true or false"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_exporter_stack_and_the_sdks_own_spans_are_not_traced() {
        for internal in [
            "opentelemetry_sdk::trace::span_processor",
            "opentelemetry_otlp::exporter::http",
            "reqwest::blocking::wait",
            "hyper_util::client::legacy::pool",
            "h2::codec",
            "tonic::transport",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_dynamodb::operation::put_item",
            // The AWS SDK's support crates (found by a user: `load_config_file` from
            // `aws_runtime` was exported as a trace of its own under `DEBUG`).
            "aws_runtime::env_config::source",
            "aws_types::sdk_config",
            "aws_credential_types::provider",
            "aws_sigv4::http_request::sign",
            "aws_config::default_provider",
        ] {
            assert!(is_internal(internal), "{internal}");
        }
        for own in [
            "orders_api::handler",
            "powertools_tracing",
            "powertools_tracing::aws_sdk",
        ] {
            assert!(!is_internal(own), "{own}");
        }
    }

    #[test]
    fn internal_crates_are_matched_by_whole_name_never_by_prefix() {
        // Crates of users whose names begin like an internal crate's
        for own in [
            "h2_probe",
            "h2_probe::client",
            "towers_bakery",
            "towers_bakery::oven",
            "hyperlocal_shop",
            "hyperlocal_shop::api",
            "tonic_water",
            "reqwestor",
            "rustlsx::config",
            "opentelemetry_fans",
            "lambda_runtime_helpers",
            "powertools_logging_extras",
        ] {
            assert!(!is_internal(own), "{own}");
        }
        // The crates themselves and their modules
        for internal in [
            "h2",
            "h2::proto::streams",
            "hyper",
            "hyper::proto::h1::conn",
            "hyper_util",
            "hyper_rustls::connector",
            "tower",
            "tower::buffer::worker",
            "tower_http::trace",
            "tonic",
            "reqwest",
            "reqwest::connect",
            "rustls",
            "rustls::client::hs",
            "opentelemetry",
            "opentelemetry_sdk",
            "opentelemetry_otlp::exporter",
            "opentelemetry_http",
            "lambda_runtime",
            "lambda_runtime::layers::trace",
            "lambda_runtime_api_client",
            "powertools_logging",
            "powertools_logging::layer",
            "aws_config::imds",
            "aws_smithy_runtime",
            "aws_smithy_http_client::hyper",
            "aws_sdk_s3::operation",
        ] {
            assert!(is_internal(internal), "{internal}");
        }
    }

    #[test]
    fn the_resource_describes_the_function() {
        let config = PowertoolsConfig::from_env_source(&Env::from_pairs([
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ]))
        .unwrap();
        let from_variable = resource_attributes(&Env::from_pairs([(
            OTEL_RESOURCE_ATTRIBUTES,
            "team=orders%20and%20payments, cloud.region=us-east-1,service.name=other,",
        )]))
        .unwrap();
        let resource = resource("orders", &config, &from_variable);
        let get = |key: &'static str| {
            resource
                .get(&opentelemetry::Key::from_static_str(key))
                .map(|value| value.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("orders"));
        assert_eq!(get("cloud.provider").as_deref(), Some("aws"));
        assert_eq!(get("cloud.region").as_deref(), Some("eu-west-1"));
        assert_eq!(get("faas.name").as_deref(), Some("orders-api"));
        assert_eq!(get("faas.version").as_deref(), Some("7"));
        assert_eq!(get("faas.max_memory").as_deref(), Some("268435456"));
        // The variable's attributes, percent-decoded; the tracer's own keys win.
        assert_eq!(get("team").as_deref(), Some("orders and payments"));
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` that the SDK would drop or send wrong without a word (an entry
    /// that is not `key=value`, an empty key, an escape that is not one, a value not UTF-8 once
    /// decoded, the variable not UTF-8) fails the build naming the variable and the entry
    /// (found by an attack from the docs).
    #[test]
    fn resource_attributes_the_sdk_would_drop_fail_the_build() {
        for (value, entry) in [
            ("a", "a"),
            ("team=orders,=b", "=b"),
            ("a=%zz", "a=%zz"),
            ("a=50%", "a=50%"),
            ("a=%ff", "a=%ff"),
        ] {
            let error = Tracer::builder()
                .service("orders")
                .env(Env::from_pairs([(OTEL_RESOURCE_ATTRIBUTES, value)]))
                .build()
                .expect_err(value)
                .to_string();
            assert!(
                error.contains(OTEL_RESOURCE_ATTRIBUTES)
                    && error.contains(&format!("{entry:?}"))
                    && !error.contains("exporter"),
                "{value}: {error}"
            );
            // Turned off, the tracer does not read it: the function starts.
            Tracer::builder()
                .service("orders")
                .disabled(true)
                .env(Env::from_pairs([(OTEL_RESOURCE_ATTRIBUTES, value)]))
                .build()
                .expect(value);
        }
        for fine in ["", " ", "a=", "k=v%2C%20w", "deployment.environment=prod,"] {
            assert!(
                resource_attributes(&Env::from_pairs([(OTEL_RESOURCE_ATTRIBUTES, fine)])).is_ok(),
                "{fine:?}"
            );
        }
    }

    #[test]
    fn every_span_shares_the_service_value_instead_of_copying_it() {
        let tracer = Tracer::builder()
            .service("orders")
            .disabled(true)
            .build()
            .unwrap();
        let value = &tracer.inner.service_value;
        assert_eq!(value.as_str(), "orders");
        assert_eq!(value.clone().as_str().as_ptr(), value.as_str().as_ptr());
    }
}
