//! Attacks on the documented promises of `powertools-tracing`, written from its README and rustdoc
//! only. Each test is named after the promise it checks.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lambda_runtime::tower::{Layer, Service, ServiceExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{
    AnnotationValue, FlushMode, HttpRequest, Tracer, TracingLayer, annotate, inject_trace_headers,
};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const FUNCTION: &str = "orders-api";
const ACCOUNT: &str = "123456789012";
const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:orders-api";
const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const TRACE_HEX: &str = "5759e988bd862e3fe1be46a994272793";
const PARENT: &str = "53995c3f42cd8ad8";

/// An in-memory exporter (the docs: "an in-memory exporter for tests").
#[derive(Debug, Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<SpanData>>>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl SpanExporter for Capture {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.spans.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap() = Some(resource.clone());
    }
}

impl Capture {
    fn spans(&self) -> Vec<SpanData> {
        self.spans.lock().unwrap().clone()
    }
    fn invocations(&self) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .collect()
    }
    fn one_invocation(&self) -> SpanData {
        let mut spans = self.invocations();
        assert_eq!(
            spans.len(),
            1,
            "exactly one invocation span expected: {spans:#?}"
        );
        spans.remove(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Answer,
    Fail,
    Hang,
    Slow(Duration),
}

/// A queued exporter that answers, fails, hangs or is slow, and records what it got.
#[derive(Debug, Clone)]
struct Controlled {
    mode: Arc<Mutex<Mode>>,
    spans: Arc<Mutex<Vec<SpanData>>>,
    calls: Arc<AtomicUsize>,
}

impl Controlled {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(Mutex::new(mode)),
            spans: Arc::default(),
            calls: Arc::default(),
        }
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    fn count(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
}

impl SpanExporter for Controlled {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let mode = *self.mode.lock().unwrap();
        let spans = self.spans.clone();
        self.calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match mode {
                Mode::Answer => {
                    spans.lock().unwrap().extend(batch);
                    Ok(())
                }
                Mode::Fail => Err(OTelSdkError::InternalFailure("collector says no".into())),
                Mode::Hang => std::future::pending().await,
                Mode::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    spans.lock().unwrap().extend(batch);
                    Ok(())
                }
            }
        }
    }
}

fn lambda_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "7".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
    ]
}

fn env_with(extra: &[(&'static str, &str)]) -> Env {
    let mut pairs = lambda_env();
    for (k, v) in extra {
        pairs.push((k, (*v).to_owned()));
    }
    Env::from_pairs(pairs)
}

fn capture_tracer(capture: &Capture) -> Tracer {
    Tracer::builder()
        .env(env_with(&[]))
        .service("orders")
        .span_exporter(capture.clone())
        .build()
        .expect("tracer")
}

/// The tracer's subscriber as this thread's default, for as long as the guard lives: tests run
/// as plain `cargo test` runs them too, many on threads of one process. Tests that need the
/// subscriber on spawned tasks run on a current-thread runtime.
#[must_use]
fn install(tracer: &Tracer) -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(tracer.subscriber())
}

fn ctx() -> TestContext {
    TestContext::new()
        .with_function_name(FUNCTION)
        .with_function_arn(ARN)
        .with_function_version("7")
}

fn header(sampled: &str) -> String {
    format!("Root={ROOT};Parent={PARENT};Sampled={sampled}")
}

/// An HTTP API (v2) request for `GET /x`.
fn get_x_event() -> Json {
    json!({"version": "2.0", "routeKey": "GET /x", "rawPath": "/x",
           "requestContext": {"http": {"method": "GET", "path": "/x"}}})
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

fn attr_count(span: &SpanData, key: &str) -> usize {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == key)
        .count()
}

fn annotation_keys(span: &SpanData) -> Vec<String> {
    match attr(span, "aws.xray.annotations") {
        Some(Value::Array(Array::String(keys))) => {
            keys.iter().map(|k| k.as_str().to_owned()).collect()
        }
        Some(Value::String(s)) => s.as_str().split(',').map(|k| k.trim().to_owned()).collect(),
        other => panic!("aws.xray.annotations missing or of an odd type: {other:?}"),
    }
}

fn exception(span: &SpanData) -> Option<(String, String)> {
    let event = span.events.iter().find(|e| e.name == "exception")?;
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
            .unwrap_or_default()
    };
    Some((get("exception.type"), get("exception.message")))
}

/// The span's `exception` event, which it must have.
fn exception_event(span: &SpanData) -> &opentelemetry::trace::Event {
    span.events
        .iter()
        .find(|event| event.name == "exception")
        .expect("an exception event")
}

/// The span's events, names and attributes, without their timestamps: a timestamp's digits
/// may hold any number (`4111` was found in one, and a test of the error's words failed).
fn events_text(span: &SpanData) -> String {
    span.events
        .iter()
        .map(|event| format!("{} {:?}", event.name, event.attributes))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

type Handler =
    fn(
        LambdaEvent<Json>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Json, lambda_runtime::Error>> + Send>>;

fn ok_handler(
    _event: LambdaEvent<Json>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Json, lambda_runtime::Error>> + Send>> {
    Box::pin(async { Ok(json!({"ok": true})) })
}

/// One invocation of `handler` through the layer, payload `payload`, context `context`.
fn invoke_with(
    tracer: &Tracer,
    context: TestContext,
    payload: Json,
    handler: Handler,
) -> impl Future<Output = Result<Json, lambda_runtime::Error>> + Send + 'static {
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(handler));
    call(&service, context.event(payload))
}

/// Calls a clone of `service` (always ready: `service_fn`) and returns its `'static` future.
fn call<S, R>(service: &S, request: R) -> S::Future
where
    S: Service<R> + Clone,
{
    let mut service = service.clone();
    service.call(request)
}

// ---------------------------------------------------------------------------------------------
// The invocation span
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invocation_span_is_named_for_the_function_kind_server_with_faas_attributes() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let response = invoke_with(
        &tracer,
        ctx().with_request_id("req-1").with_trace_id(header("1")),
        json!({}),
        ok_handler,
    )
    .await
    .unwrap();
    assert_eq!(response, json!({"ok": true}));
    let span = capture.one_invocation();
    assert_eq!(span.name, FUNCTION);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        attr_str(&span, "faas.invocation_id").as_deref(),
        Some("req-1")
    );
    assert_eq!(attr_str(&span, "faas.trigger").as_deref(), Some("other"));
    assert!(matches!(
        attr(&span, "faas.coldstart"),
        Some(Value::Bool(_))
    ));
    assert!(matches!(attr(&span, "ColdStart"), Some(Value::Bool(_))));
    assert_eq!(attr_str(&span, "Service").as_deref(), Some("orders"));
    assert_eq!(
        attr_str(&span, "cloud.account.id").as_deref(),
        Some(ACCOUNT)
    );
    assert_eq!(attr_str(&span, "cloud.resource_id").as_deref(), Some(ARN));
    assert_eq!(
        attr_str(&span, "aws.lambda.invoked_arn").as_deref(),
        Some(ARN)
    );
    let keys = annotation_keys(&span);
    assert!(keys.contains(&"ColdStart".to_owned()) && keys.contains(&"Service".to_owned()));
    assert_eq!(
        attr_str(&span, "powertools.response").as_deref(),
        Some(r#"{"ok":true}"#)
    );
    assert!(!is_error(&span));
}

#[tokio::test]
async fn shared_attributes_are_on_the_resource_not_on_each_span() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    let span = capture.one_invocation();
    for key in [
        "service.name",
        "faas.name",
        "faas.version",
        "cloud.provider",
        "cloud.region",
    ] {
        assert!(
            attr(&span, key).is_none(),
            "{key} should be on the resource, not the span"
        );
    }
    let resource = capture
        .resource
        .lock()
        .unwrap()
        .clone()
        .expect("resource given");
    let get = |k: &str| {
        resource
            .iter()
            .find(|(key, _)| key.as_str() == k)
            .map(|(_, v)| v.as_str().into_owned())
    };
    assert_eq!(get("service.name").as_deref(), Some("orders"));
    assert_eq!(get("faas.name").as_deref(), Some(FUNCTION));
    assert_eq!(get("faas.version").as_deref(), Some("7"));
    assert_eq!(get("cloud.provider").as_deref(), Some("aws"));
    assert_eq!(get("cloud.region").as_deref(), Some("eu-west-1"));
}

#[tokio::test]
async fn service_defaults_to_powertools_service_name_then_service_undefined() {
    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[("POWERTOOLS_SERVICE_NAME", "billing")]))
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(
        attr_str(&capture.one_invocation(), "Service").as_deref(),
        Some("billing")
    );

    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(
        attr_str(&capture.one_invocation(), "Service").as_deref(),
        Some("service_undefined")
    );
}

#[tokio::test]
async fn alias_arn_resource_id_is_the_version_it_runs() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let alias = format!("{ARN}:live");
    invoke_with(
        &tracer,
        ctx().with_function_arn(&alias).with_function_version("7"),
        json!({}),
        ok_handler,
    )
    .await
    .unwrap();
    let span = capture.one_invocation();
    assert_eq!(
        attr_str(&span, "cloud.resource_id"),
        Some(format!("{ARN}:7"))
    );
    assert_eq!(attr_str(&span, "aws.lambda.invoked_arn"), Some(alias));
    assert_eq!(
        attr_str(&span, "cloud.account.id").as_deref(),
        Some(ACCOUNT)
    );
}

#[tokio::test]
async fn latest_version_and_unknown_version_arns_are_left_as_they_are() {
    for (invoked, version) in [
        (format!("{ARN}:$LATEST"), "$LATEST"),
        (format!("{ARN}:7"), "7"),
        (ARN.to_owned(), "7"),
        (format!("{ARN}:live"), ""),
    ] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        invoke_with(
            &tracer,
            ctx()
                .with_function_arn(&invoked)
                .with_function_version(version),
            json!({}),
            ok_handler,
        )
        .await
        .unwrap();
        let span = capture.one_invocation();
        assert_eq!(
            attr_str(&span, "cloud.resource_id"),
            Some(invoked.clone()),
            "version {version:?}"
        );
    }
}

#[tokio::test]
async fn the_resource_id_follows_the_arn_when_one_layer_serves_two_aliases() {
    // The layer caches the ARN attributes: a change of ARN must not reuse the last ones.
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(ok_handler));
    for (alias, version) in [("live", "7"), ("canary", "8"), ("live", "7")] {
        service
            .clone()
            .oneshot(
                ctx()
                    .with_function_arn(format!("{ARN}:{alias}"))
                    .with_function_version(version)
                    .with_request_id(format!("{alias}-{version}"))
                    .event(json!({})),
            )
            .await
            .unwrap();
    }
    let spans = capture.invocations();
    assert_eq!(spans.len(), 3);
    for span in spans {
        let id = attr_str(&span, "faas.invocation_id").unwrap();
        let (alias, version) = id.split_once('-').unwrap();
        assert_eq!(
            attr_str(&span, "cloud.resource_id"),
            Some(format!("{ARN}:{version}"))
        );
        assert_eq!(
            attr_str(&span, "aws.lambda.invoked_arn"),
            Some(format!("{ARN}:{alias}"))
        );
    }
}

#[tokio::test]
async fn odd_contexts_never_fail_the_invocation_and_set_no_empty_cloud_account_id() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let odd = [
        ctx().with_function_arn(""),
        ctx().with_function_arn("not-an-arn"),
        ctx().with_function_arn("arn:aws:lambda:eu-west-1::function:orders-api"),
        ctx().with_function_arn(
            "arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live:extra:::",
        ),
        ctx()
            .with_function_arn("arn:aws:lambda:ü:€:function:名前:別名")
            .with_function_version("ß"),
        ctx().with_deadline_ms(0),
        ctx().with_deadline_ms(u64::MAX),
        ctx().with_remaining_time(Duration::ZERO),
        ctx().without_trace_id().with_request_id(""),
    ];
    let n = odd.len();
    for context in odd {
        let response = invoke_with(&tracer, context, json!({}), ok_handler)
            .await
            .unwrap();
        assert_eq!(response, json!({"ok": true}));
    }
    let spans = capture.invocations();
    assert_eq!(spans.len(), n, "every odd invocation still gets its span");
    let mut bad = Vec::new();
    for span in &spans {
        // An account id is twelve digits; anything else is no attribute at all.
        if let Some(account) = attr_str(span, "cloud.account.id")
            && !(account.len() == 12 && account.bytes().all(|byte| byte.is_ascii_digit()))
        {
            bad.push(format!(
                "cloud.account.id {account:?} from arn {:?}",
                attr_str(span, "aws.lambda.invoked_arn")
            ));
        }
    }
    assert!(bad.is_empty(), "not account ids:\n{}", bad.join("\n"));
}

#[tokio::test]
async fn cold_start_annotation_follows_the_declared_cold_start() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    invoke_with(
        &tracer,
        ctx().with_cold_start(true).with_request_id("a"),
        json!({}),
        ok_handler,
    )
    .await
    .unwrap();
    invoke_with(
        &tracer,
        ctx().with_cold_start(false).with_request_id("b"),
        json!({}),
        ok_handler,
    )
    .await
    .unwrap();
    for span in capture.invocations() {
        let cold = attr_str(&span, "faas.invocation_id").unwrap() == "a";
        assert_eq!(attr(&span, "ColdStart"), Some(&Value::Bool(cold)));
        assert_eq!(attr(&span, "faas.coldstart"), Some(&Value::Bool(cold)));
    }
}

// ---------------------------------------------------------------------------------------------
// X-Ray trace header
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn x_ray_header_root_and_parent_become_the_span_parent() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    invoke_with(
        &tracer,
        ctx().with_trace_id(header("1")),
        json!({}),
        ok_handler,
    )
    .await
    .unwrap();
    let span = capture.one_invocation();
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_HEX).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(span.span_context.is_sampled());
}

#[tokio::test]
async fn sampled_zero_follows_lambdas_decision_and_exports_nothing() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let _child = tracing::info_span!("child").entered();
            Ok::<_, lambda_runtime::Error>(json!(1))
        }))
        .oneshot(ctx().with_trace_id(header("0")).event(json!({})))
        .await
        .unwrap();
    assert_eq!(response, json!(1));
    tracer.flush().await;
    assert!(
        capture.spans().is_empty(),
        "Sampled=0 exported {:#?}",
        capture.spans()
    );
}

#[tokio::test]
async fn lineage_and_reordered_headers_still_join_the_trace() {
    for raw in [
        format!("Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5"),
        format!("Sampled=1;Parent={PARENT};Root={ROOT}"),
        format!(
            "Root={};Parent={};Sampled=1",
            ROOT.to_uppercase().replacen("ROOT", "Root", 1),
            PARENT.to_uppercase()
        ),
        format!("Root={ROOT};Parent={PARENT};Sampled=1;Self=1-67891234-12456789abcdef012345678"),
    ] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        invoke_with(
            &tracer,
            ctx().with_trace_id(raw.clone()),
            json!({}),
            ok_handler,
        )
        .await
        .unwrap();
        let span = capture.one_invocation();
        assert_eq!(
            span.span_context.trace_id(),
            TraceId::from_hex(TRACE_HEX).unwrap(),
            "header {raw}"
        );
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex(PARENT).unwrap(),
            "header {raw}"
        );
    }
}

/// The headers a handler invoked with the X-Ray header `raw` sends on (`inject_trace_headers`),
/// by name.
async fn propagated(tracer: &Tracer, raw: &str) -> HashMap<String, String> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let seen_in_handler = seen.clone();
    TracingLayer::new(tracer.clone())
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let seen = seen_in_handler.clone();
            async move {
                let mut headers = http::HeaderMap::new();
                inject_trace_headers(&mut headers);
                *seen.lock().unwrap() = headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                    .collect();
                Ok::<_, lambda_runtime::Error>(json!(1))
            }
        }))
        .oneshot(ctx().with_trace_id(raw.to_owned()).event(json!({})))
        .await
        .unwrap();
    seen.lock().unwrap().clone()
}

/// Header forms that name a trace but were not joined: a `Root` without a `Parent` (X-Ray's
/// documented form for a trace begun upstream without a segment) started a new trace, its
/// `Sampled=0` ignored; an undecided `Sampled=?` (or none) exported nothing; an unknown field
/// whose value W3C trace state cannot hold (`Foo=a,b`) made the whole header ignored. (Found by
/// an attack from the docs: the logs' `xray_trace_id` then named another trace than the span.)
#[tokio::test]
async fn every_header_that_names_a_trace_joins_it_and_follows_its_decision() {
    let trace = TraceId::from_hex(TRACE_HEX).unwrap();
    let parent = SpanId::from_hex(PARENT).unwrap();
    // (header, the parent expected, whether the span is exported)
    let cases = [
        (format!("Root={ROOT};Sampled=1"), SpanId::INVALID, true),
        (format!("Root={ROOT}"), SpanId::INVALID, true),
        (format!("Root={ROOT};Sampled=0"), SpanId::INVALID, false),
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=?"),
            parent,
            true,
        ),
        (format!("Root={ROOT};Parent={PARENT}"), parent, true),
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=1;Foo=a,b"),
            parent,
            true,
        ),
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=1;Foo=a=b;Lineage=a87bd80c:1"),
            parent,
            true,
        ),
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=0;Foo=a,b"),
            parent,
            false,
        ),
    ];
    for (raw, expected_parent, exported) in cases {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let _guard = install(&tracer);
        // What the handler propagates to the services it calls
        let propagated = propagated(&tracer, &raw).await["x-amzn-trace-id"].clone();
        tracer.flush().await;
        assert!(
            propagated.starts_with(&format!("Root={ROOT};")),
            "header {raw}: the handler propagates {propagated:?}"
        );
        assert_eq!(
            propagated.contains(";Sampled=1"),
            exported,
            "header {raw}: {propagated:?}"
        );
        if !exported {
            assert!(
                capture.spans().is_empty(),
                "header {raw}: {:#?}",
                capture.spans()
            );
            continue;
        }
        let span = capture.one_invocation();
        assert_eq!(span.span_context.trace_id(), trace, "header {raw}");
        assert_eq!(span.parent_span_id, expected_parent, "header {raw}");
        assert!(span.span_context.is_sampled(), "header {raw}");
    }
}

/// The header's other fields (`Lineage`, which Lambda's recursive-loop detection reads) travel
/// on with the trace whatever its form: they were dropped when the invocation began the header's
/// trace (a `Root` without a `Parent`, sampled or undecided), so the services the handler called
/// saw no `Lineage` and the exported span no trace state. (Found by an attack from the docs.)
#[tokio::test]
async fn the_header_s_lineage_travels_on_in_every_form_that_joins_its_trace() {
    let lineage = "Lineage=1:a9bc3c2f:0";
    for (raw, exported) in [
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=1;{lineage}"),
            true,
        ),
        (
            format!("Root={ROOT};Parent={PARENT};Sampled=0;{lineage}"),
            false,
        ),
        (format!("Root={ROOT};Parent={PARENT};{lineage}"), true),
        (format!("Root={ROOT};Sampled=0;{lineage}"), false),
        (format!("Root={ROOT};Sampled=1;{lineage}"), true),
        (format!("Root={ROOT};Sampled=?;{lineage}"), true),
        (format!("Root={ROOT};{lineage}"), true),
    ] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let _guard = install(&tracer);
        let headers = propagated(&tracer, &raw).await;
        let (xray, trace_state) = (
            headers["x-amzn-trace-id"].clone(),
            headers.get("tracestate").cloned().unwrap_or_default(),
        );
        tracer.flush().await;
        assert!(
            xray.starts_with(&format!("Root={ROOT};")) && xray.ends_with(&format!(";{lineage}")),
            "header {raw}: the handler propagates {xray:?}"
        );
        assert_eq!(trace_state, "lineage=1:a9bc3c2f:0", "header {raw}");
        if exported {
            let span = capture.one_invocation();
            assert_eq!(
                span.span_context.trace_state().get("lineage"),
                Some("1:a9bc3c2f:0"),
                "header {raw}: the exported span's trace state"
            );
        } else {
            assert!(capture.spans().is_empty(), "header {raw}");
        }
    }
}

/// Fields named like X-Ray's own in another case (`root`, `parent`, `sampled`) are not carried
/// on as trace state: the propagator writes trace state's keys back capitalised, so the header
/// sent on held a second `Root`, `Parent` and `Sampled=0`, and a downstream function, which
/// reads the last `Root`, joined another trace unsampled (found by a review). `Lineage` stays.
#[tokio::test]
async fn fields_named_like_x_ray_s_own_are_not_sent_on_as_a_second_root() {
    for raw in [
        format!(
            "Root={ROOT};root=1-5759e988-00000000000000000000dead;parent=1111111111111111;sampled=0;Lineage=1:a9bc3c2f:0"
        ),
        format!(
            "Root={ROOT};Parent={PARENT};Sampled=1;ROOT=1-5759e988-00000000000000000000dead;PARENT=1111111111111111;SAMPLED=0;Lineage=1:a9bc3c2f:0"
        ),
    ] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let _guard = install(&tracer);
        let sent = propagated(&tracer, &raw).await["x-amzn-trace-id"].clone();
        let fields: Vec<&str> = sent.split(';').collect();
        for name in ["root", "parent", "sampled"] {
            assert_eq!(
                fields
                    .iter()
                    .filter(|field| field
                        .split('=')
                        .next()
                        .is_some_and(|key| key.eq_ignore_ascii_case(name)))
                    .count(),
                1,
                "{raw}: one {name} in {sent}"
            );
        }
        assert!(sent.starts_with(&format!("Root={ROOT};")), "{sent}");
        assert!(sent.contains(";Sampled=1"), "{sent}");
        assert!(sent.ends_with(";Lineage=1:a9bc3c2f:0"), "{sent}");
    }
}

/// Trace state from elsewhere (a handler continuing an upstream W3C trace, whose `tracestate`
/// holds `root`, `parent`, `sampled`) is not written into the X-Ray header as a second `Root`
/// either (found by a review of the test above's fix, which only covered the X-Ray header).
#[test]
fn trace_state_from_a_w3c_parent_is_not_sent_on_as_a_second_root() {
    use opentelemetry::propagation::TextMapPropagator;
    // A key repeated in `tracestate` too: each entry is left out, not the first only (found by
    // the next review).
    for trace_state in [
        "root=1-66666666-666666666666666666666666,parent=6666666666666666,sampled=0,lineage=1:a:0",
        "root=1-66666666-666666666666666666666666,root=1-66666666-666666666666666666666666,lineage=1:a:0",
        "sampled=0,sampled=0,parent=6666666666666666,parent=6666666666666666,lineage=1:a:0",
    ] {
        let carrier = HashMap::from([
            (
                "traceparent".to_owned(),
                format!("00-{TRACE_HEX}-{PARENT}-01"),
            ),
            ("tracestate".to_owned(), trace_state.to_owned()),
        ]);
        let context =
            opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        let _attached = context.attach();
        let mut headers = http::HeaderMap::new();
        inject_trace_headers(&mut headers);
        let sent = headers["x-amzn-trace-id"].to_str().unwrap();
        assert_eq!(
            sent,
            format!("Root={ROOT};Parent={PARENT};Sampled=1;Lineage=1:a:0"),
            "{trace_state}: {headers:?}"
        );
    }
}

#[tokio::test]
async fn malformed_or_oversized_trace_headers_never_fail_and_never_give_an_invalid_trace() {
    let huge = format!(
        "Root={ROOT};Parent={PARENT};Sampled=1;{}",
        "X=y;".repeat(250_000)
    );
    let headers = vec![
        String::new(),
        ";;;;".to_owned(),
        "Root=".to_owned(),
        "Root=;Parent=;Sampled=".to_owned(),
        format!("Root={ROOT}"),
        format!("Root={ROOT};Sampled=1"),
        format!("Parent={PARENT};Sampled=1"),
        "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=1".to_owned(),
        format!("Root=1-zzzzzzzz-bd862e3fe1be46a994272793;Parent={PARENT};Sampled=1"),
        format!("Root=2-5759e988-bd862e3fe1be46a994272793;Parent={PARENT};Sampled=1"),
        format!("Root=1-5759e988-bd862e3fe1be46a9942727931234;Parent={PARENT};Sampled=1"),
        format!("Root={ROOT};Parent=53995c3f42cd8ad8ff;Sampled=1"),
        format!("Root={ROOT};Parent={PARENT};Sampled=maybe"),
        format!("Root={ROOT};Parent={PARENT};Sampled=?"),
        format!("Root={ROOT};Parent={PARENT};Sampled=1\u{0}\u{7f}"),
        format!("Root=1-5759e988-bd862e3fe1be46a99427279é;Parent={PARENT};Sampled=1"),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1🎉".to_owned(),
        huge,
    ];
    for raw in headers {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let shown: String = raw.chars().take(120).collect();
        let response = invoke_with(
            &tracer,
            ctx().with_trace_id(raw.clone()),
            json!({}),
            ok_handler,
        )
        .await
        .unwrap_or_else(|e| panic!("header {shown:?} failed the invocation: {e}"));
        assert_eq!(response, json!({"ok": true}));
        for span in capture.invocations() {
            assert_ne!(
                span.span_context.trace_id(),
                TraceId::INVALID,
                "header {shown:?}"
            );
            assert!(span.span_context.is_valid(), "header {shown:?}");
        }
    }
}

#[tokio::test]
async fn multibyte_characters_at_the_fixed_offsets_of_the_header_never_panic() {
    // "read at fixed offsets": a header of the canonical length whose bytes at those offsets are
    // the middle of a UTF-8 character must not panic on a char boundary.
    let canonical = header("1");
    let mut panics = Vec::new();
    for i in 0..canonical.len() - 1 {
        let raw = format!("{}é{}", &canonical[..i], &canonical[i + 2..]);
        assert_eq!(raw.len(), canonical.len());
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let task = tokio::spawn(invoke_with(
            &tracer,
            ctx().with_trace_id(raw),
            json!({}),
            ok_handler,
        ));
        match task.await {
            Ok(result) => {
                result.unwrap();
            }
            Err(error) if error.is_panic() => panics.push(i),
            Err(error) => panic!("{error}"),
        }
    }
    assert!(
        panics.is_empty(),
        "the layer panicked with 'é' at byte offsets {panics:?}"
    );
}

#[tokio::test]
async fn without_a_header_trace_ids_are_x_ray_compatible() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    invoke_with(&tracer, ctx().without_trace_id(), json!({}), ok_handler)
        .await
        .unwrap();
    let span = capture.one_invocation();
    let hex = span.span_context.trace_id().to_string();
    let epoch = u64::from_str_radix(&hex[..8], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(epoch) < 600,
        "trace id {hex} does not start with the epoch"
    );
}

// ---------------------------------------------------------------------------------------------
// Handler spans, context, propagation
// ---------------------------------------------------------------------------------------------

#[tracing::instrument(skip_all, fields(loaves = 3))]
async fn bake() {
    tracing::info!(temperature = 220, "baking");
    tokio::task::yield_now().await;
}

#[tokio::test]
async fn handler_tracing_spans_nest_under_the_invocation_without_noise_attributes() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            bake().await;
            Ok::<_, lambda_runtime::Error>(json!(null))
        }))
        .oneshot(ctx().with_trace_id(header("1")).event(json!({})))
        .await
        .unwrap();
    let invocation = capture.one_invocation();
    let bake = capture
        .spans()
        .into_iter()
        .find(|s| s.name == "bake")
        .expect("the #[instrument] span is exported");
    assert_eq!(
        bake.span_context.trace_id(),
        invocation.span_context.trace_id()
    );
    assert_eq!(bake.parent_span_id, invocation.span_context.span_id());
    assert_eq!(attr(&bake, "loaves"), Some(&Value::I64(3)));
    for span in [&bake, &invocation] {
        for kv in &span.attributes {
            let key = kv.key.as_str();
            assert!(
                !key.starts_with("code.")
                    && !key.starts_with("thread.")
                    && key != "target"
                    && key != "busy_ns"
                    && key != "idle_ns",
                "span {} carries {key}",
                span.name
            );
        }
    }
    assert!(
        bake.events.is_empty(),
        "log lines copied as events: {:?}",
        bake.events
    );
}

#[tokio::test]
async fn current_otel_context_in_the_handler_is_the_invocations_and_spawned_tasks_can_carry_it() {
    use opentelemetry::context::FutureExt as _;
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let current = opentelemetry::Context::current()
                .span()
                .span_context()
                .trace_id();
            let spawned = tokio::spawn(
                async {
                    let _s = tracing::info_span!("in_task").entered();
                    (
                        annotate("from_task", true),
                        opentelemetry::Context::current()
                            .span()
                            .span_context()
                            .trace_id(),
                    )
                }
                .with_current_context(),
            )
            .await
            .unwrap();
            let bare = tokio::spawn(async { annotate("bare_task", true) })
                .await
                .unwrap();
            Ok::<_, lambda_runtime::Error>(json!({
                "current": current.to_string(),
                "task_annotated": spawned.0,
                "task_trace": spawned.1.to_string(),
                "bare_annotated": bare,
            }))
        }))
        .oneshot(ctx().with_trace_id(header("1")).event(json!({})))
        .await
        .unwrap();
    assert_eq!(response["current"], TRACE_HEX);
    assert_eq!(response["task_trace"], TRACE_HEX);
    assert_eq!(response["task_annotated"], true);
    assert_eq!(
        response["bare_annotated"], false,
        "a task without the context annotates nothing"
    );
    let invocation = capture.one_invocation();
    assert_eq!(attr(&invocation, "from_task"), Some(&Value::Bool(true)));
    assert!(attr(&invocation, "bare_task").is_none());
    let task = capture
        .spans()
        .into_iter()
        .find(|s| s.name == "in_task")
        .expect("in_task span");
    assert_eq!(task.parent_span_id, invocation.span_context.span_id());
}

#[tokio::test]
async fn user_crates_named_like_internal_ones_are_traced_and_the_internal_ones_are_not() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            macro_rules! span_at {
                ($($target:literal),*) => {$({
                    let _s = tracing::info_span!(target: $target, "probe", origin = $target).entered();
                })*};
            }
            span_at!(
                "h2_probe", "towers_bakery", "towers_bakery::oven", "hyperdrive", "hyper_orders",
                "tokio_orders", "lambda_runtime_ext", "opentelemetry_demo", "aws_sdkx",
                "aws_smithyish", "rustls_lab", "tower_bakery", "orders::h2", "h2s",
                // internal ones, filtered:
                "h2", "h2::proto", "hyper", "hyper::client::conn", "opentelemetry_sdk",
                "opentelemetry_sdk::trace", "aws_sdk_dynamodb", "aws_sdk_s3::operation",
                "aws_smithy_runtime", "aws_smithy_runtime::client", "lambda_runtime",
                "lambda_runtime::layers"
            );
            Ok::<_, lambda_runtime::Error>(json!(null))
        }))
        .oneshot(ctx().event(json!({})))
        .await
        .unwrap();
    let traced: HashSet<String> = capture
        .spans()
        .iter()
        .filter_map(|s| attr_str(s, "origin"))
        .collect();
    for user in [
        "h2_probe",
        "towers_bakery",
        "towers_bakery::oven",
        "hyperdrive",
        "hyper_orders",
        "tokio_orders",
        "lambda_runtime_ext",
        "opentelemetry_demo",
        "aws_sdkx",
        "aws_smithyish",
        "rustls_lab",
        "tower_bakery",
        "orders::h2",
        "h2s",
    ] {
        assert!(
            traced.contains(user),
            "user crate {user} was filtered out; traced: {traced:?}"
        );
    }
    for internal in [
        "h2",
        "h2::proto",
        "hyper",
        "hyper::client::conn",
        "opentelemetry_sdk",
        "opentelemetry_sdk::trace",
        "aws_sdk_dynamodb",
        "aws_sdk_s3::operation",
        "aws_smithy_runtime",
        "aws_smithy_runtime::client",
        "lambda_runtime",
        "lambda_runtime::layers",
    ] {
        assert!(
            !traced.contains(internal),
            "internal crate {internal} was traced"
        );
    }
}

#[tokio::test]
async fn inject_trace_headers_propagates_the_invocation_and_replaces_stale_headers() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "traceparent",
                "00-00000000000000000000000000000001-0000000000000001-01"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "x-amzn-trace-id",
                "Root=1-00000000-000000000000000000000001;Parent=0000000000000001;Sampled=0"
                    .parse()
                    .unwrap(),
            );
            inject_trace_headers(&mut headers);
            let top = headers.clone();
            let child = {
                let _s = tracing::info_span!("call_downstream").entered();
                let mut headers = http::HeaderMap::new();
                inject_trace_headers(&mut headers);
                headers
            };
            let show = |h: &http::HeaderMap, k: &str| {
                h.get_all(k)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            };
            Ok::<_, lambda_runtime::Error>(json!({
                "tp": show(&top, "traceparent"),
                "xray": show(&top, "x-amzn-trace-id"),
                "child_tp": show(&child, "traceparent"),
            }))
        }))
        .oneshot(ctx().with_trace_id(header("1")).event(json!({})))
        .await
        .unwrap();
    let invocation = capture.one_invocation();
    let span_id = invocation.span_context.span_id().to_string();
    assert_eq!(
        response["tp"],
        json!([format!("00-{TRACE_HEX}-{span_id}-01")])
    );
    let xray = response["xray"][0].as_str().unwrap();
    assert_eq!(response["xray"].as_array().unwrap().len(), 1);
    assert!(xray.contains(&format!("Root={ROOT}")), "{xray}");
    assert!(xray.contains(&format!("Parent={span_id}")), "{xray}");
    assert!(xray.contains("Sampled=1"), "{xray}");
    let child = capture
        .spans()
        .into_iter()
        .find(|s| s.name == "call_downstream")
        .unwrap();
    assert_eq!(
        response["child_tp"],
        json!([format!(
            "00-{TRACE_HEX}-{}-01",
            child.span_context.span_id()
        )])
    );
    let mut outside = http::HeaderMap::new();
    inject_trace_headers(&mut outside);
    assert!(outside.is_empty());
}

#[tokio::test]
async fn inject_trace_headers_carries_an_unsampled_decision() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let mut headers = http::HeaderMap::new();
            inject_trace_headers(&mut headers);
            let get = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, lambda_runtime::Error>(
                json!({"tp": get("traceparent"), "xray": get("x-amzn-trace-id")}),
            )
        }))
        .oneshot(ctx().with_trace_id(header("0")).event(json!({})))
        .await
        .unwrap();
    let tp = response["tp"].as_str().expect("traceparent injected");
    assert!(
        tp.starts_with(&format!("00-{TRACE_HEX}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    let xray = response["xray"].as_str().expect("x-amzn-trace-id injected");
    assert!(xray.contains("Sampled=0"), "{xray}");
}

// ---------------------------------------------------------------------------------------------
// Annotations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn annotate_records_replaces_and_refuses_reserved_keys() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let a = annotate("order_id", "o-1");
            let b = annotate("order_id", "o-2");
            let c = {
                let _s = tracing::info_span!("nested").entered();
                annotate("items", 3_u32)
            };
            let d = annotate("price", 9.5);
            let e = annotate("express", true);
            let reserved = [
                annotate("ColdStart", "nope"),
                annotate("Service", "nope"),
                annotate("aws.xray.annotations", "nope"),
            ];
            Ok::<_, lambda_runtime::Error>(json!({"ok": [a, b, c, d, e], "reserved": reserved}))
        }))
        .oneshot(ctx().event(json!({})))
        .await
        .unwrap();
    assert_eq!(response["ok"], json!([true, true, true, true, true]));
    assert_eq!(response["reserved"], json!([false, false, false]));
    let span = capture.one_invocation();
    assert_eq!(attr_str(&span, "order_id").as_deref(), Some("o-2"));
    assert_eq!(attr_count(&span, "order_id"), 1);
    assert_eq!(attr(&span, "items"), Some(&Value::I64(3)));
    assert_eq!(attr(&span, "price"), Some(&Value::F64(9.5)));
    assert_eq!(attr(&span, "express"), Some(&Value::Bool(true)));
    assert_eq!(attr_str(&span, "Service").as_deref(), Some("orders"));
    assert!(matches!(attr(&span, "ColdStart"), Some(Value::Bool(_))));
    let keys = annotation_keys(&span);
    for key in [
        "ColdStart",
        "Service",
        "order_id",
        "items",
        "price",
        "express",
    ] {
        assert_eq!(
            keys.iter().filter(|k| *k == key).count(),
            1,
            "{key} in {keys:?}"
        );
    }
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(!annotate("order_id", "outside"));
}

#[tokio::test]
async fn annotation_values_of_every_documented_kind_convert() {
    let values: Vec<AnnotationValue> = vec![
        "s".into(),
        String::from("s").into(),
        1_u8.into(),
        (-1_i64).into(),
        u32::MAX.into(),
        1.5_f64.into(),
        false.into(),
    ];
    assert_eq!(values.len(), 7);
    assert!(!annotate("k", values.into_iter().next().unwrap()));
}

#[tokio::test]
async fn tracing_off_passes_straight_through_and_annotate_returns_false() {
    for env in [
        env_with(&[("POWERTOOLS_TRACE_DISABLED", "true")]),
        env_with(&[("POWERTOOLS_DEV", "true")]),
        env_with(&[
            ("POWERTOOLS_TRACE_DISABLED", "1"),
            ("POWERTOOLS_DEV", "false"),
        ]),
    ] {
        let capture = Capture::default();
        let tracer = Tracer::builder()
            .env(env)
            .span_exporter(capture.clone())
            .build()
            .unwrap();
        assert!(!tracer.is_enabled());
        assert!(
            tracer
                .otel_layer::<tracing_subscriber::Registry>()
                .is_none()
        );
        let response = TracingLayer::new(tracer.clone())
            .layer(service_fn(|_e: LambdaEvent<Json>| async {
                Ok::<_, lambda_runtime::Error>(json!({"annotated": annotate("k", "v")}))
            }))
            .oneshot(ctx().event(json!({})))
            .await
            .unwrap();
        assert_eq!(response["annotated"], false);
        tracer.flush().await;
        assert!(capture.spans().is_empty());
    }
}

#[tokio::test]
async fn explicit_trace_disabled_false_wins_over_powertools_dev_and_builder_wins_over_env() {
    let tracer = Tracer::builder()
        .env(env_with(&[
            ("POWERTOOLS_TRACE_DISABLED", "false"),
            ("POWERTOOLS_DEV", "true"),
        ]))
        .span_exporter(Capture::default())
        .build()
        .unwrap();
    assert!(
        tracer.is_enabled(),
        "POWERTOOLS_TRACE_DISABLED=false comes before POWERTOOLS_DEV"
    );
    let tracer = Tracer::builder()
        .env(env_with(&[("POWERTOOLS_TRACE_DISABLED", "true")]))
        .disabled(false)
        .span_exporter(Capture::default())
        .build()
        .unwrap();
    assert!(
        tracer.is_enabled(),
        "options set in the builder win over the environment"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and panics
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct OrderRejected {
    #[allow(dead_code)]
    order: u32,
}
impl fmt::Display for OrderRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {} rejected", self.order)
    }
}
impl std::error::Error for OrderRejected {}

#[derive(Debug)]
enum PayError {
    #[allow(dead_code)]
    Declined(String),
}
impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayError::Declined(why) => write!(f, "payment declined: {why}"),
        }
    }
}
impl std::error::Error for PayError {}

#[derive(Debug)]
struct Wrapper<T>(#[allow(dead_code)] T);

struct BrokenDisplay;
impl fmt::Debug for BrokenDisplay {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}
impl fmt::Display for BrokenDisplay {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}
impl std::error::Error for BrokenDisplay {}

async fn failing<E>(error: E, capture_error: bool) -> (SpanData, Result<Json, E>)
where
    E: fmt::Debug + Send + Sync + 'static,
{
    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .service("orders")
        .capture_error(capture_error)
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    let slot = Arc::new(Mutex::new(Some(error)));
    let result = TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let error = slot.lock().unwrap().take().unwrap();
            async move { Err::<Json, E>(error) }
        }))
        .oneshot(ctx().event(json!({})))
        .await;
    (capture.one_invocation(), result)
}

#[tokio::test]
async fn boxed_error_records_its_own_type_and_display_message() {
    let (span, result) =
        failing::<lambda_runtime::Error>(OrderRejected { order: 7 }.into(), true).await;
    assert_eq!(result.unwrap_err().to_string(), "order 7 rejected");
    assert!(is_error(&span));
    assert_eq!(
        exception(&span),
        Some(("OrderRejected".to_owned(), "order 7 rejected".to_owned()))
    );
    let (span, _) =
        failing::<lambda_runtime::Error>(PayError::Declined("card".into()).into(), true).await;
    assert_eq!(
        exception(&span),
        Some(("Declined".to_owned(), "payment declined: card".to_owned()))
    );
}

#[tokio::test]
async fn message_only_errors_are_type_error_without_debug_quotes() {
    let (span, _) = failing::<lambda_runtime::Error>("card declined".into(), true).await;
    assert!(is_error(&span));
    assert_eq!(
        exception(&span),
        Some(("Error".to_owned(), "card declined".to_owned()))
    );
    let (span, _) = failing::<String>("card \"declined\" ünïcode".to_owned(), true).await;
    assert_eq!(
        exception(&span),
        Some(("Error".to_owned(), "card \"declined\" ünïcode".to_owned()))
    );
    let (span, _) = failing::<&'static str>("card declined", true).await;
    assert_eq!(
        exception(&span),
        Some(("Error".to_owned(), "card declined".to_owned()))
    );
}

#[tokio::test]
async fn diagnostic_errors_record_lambdas_error_type_and_message() {
    let (span, _) = failing(
        Diagnostic {
            error_type: "OutOfStock".into(),
            error_message: "item 3 is out of stock".into(),
        },
        true,
    )
    .await;
    assert!(is_error(&span));
    assert_eq!(
        exception(&span),
        Some(("OutOfStock".to_owned(), "item 3 is out of stock".to_owned()))
    );
}

#[tokio::test]
async fn powertools_errors_inside_a_box_record_their_error_type() {
    let error = powertools_core::Error::InvalidEnvVar {
        name: "X".into(),
        value: "y".into(),
        expected: "z",
    };
    let message = error.to_string();
    let (span, _) = failing::<lambda_runtime::Error>(error.into(), true).await;
    assert_eq!(
        exception(&span),
        Some(("InvalidEnvironmentVariable".to_owned(), message))
    );
}

#[tokio::test]
async fn other_error_types_record_their_path_without_generic_arguments() {
    let (span, _) = failing(Wrapper(5_u8), true).await;
    assert!(is_error(&span));
    let (kind, message) = exception(&span).expect("exception event");
    assert_eq!(kind, "attack::Wrapper");
    assert_eq!(message, "Wrapper(5)");
}

#[tokio::test]
async fn error_diagnostic_hook_names_the_callers_error() {
    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    let _ = TracingLayer::new(tracer)
        .error_diagnostic(|e: &Wrapper<u8>| Diagnostic {
            error_type: "Wrapped".into(),
            error_message: format!("wrapped {:?}", e.0),
        })
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            Err::<Json, _>(Wrapper(9_u8))
        }))
        .oneshot(ctx().event(json!({})))
        .await;
    assert_eq!(
        exception(&capture.one_invocation()),
        Some(("Wrapped".to_owned(), "wrapped 9".to_owned()))
    );
}

#[tokio::test]
async fn an_error_whose_display_fails_never_panics_the_layer() {
    let task = tokio::spawn(failing::<lambda_runtime::Error>(BrokenDisplay.into(), true));
    let (span, result) = task
        .await
        .expect("the layer must not panic on a failing Display");
    assert!(result.is_err());
    assert!(is_error(&span));
    let task = tokio::spawn(failing(BrokenDisplay, true));
    let (span, _) = task
        .await
        .expect("the layer must not panic on a failing Debug");
    assert!(is_error(&span));
}

/// An error whose `Display` and `Debug` panic (not merely fail): the span is still an error,
/// its exception names the error's type and says the description panicked, and the layer
/// hands the error on rather than panicking itself (found in a review).
#[tokio::test]
async fn an_error_whose_display_panics_never_panics_the_layer() {
    struct Exploding;
    impl fmt::Debug for Exploding {
        fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("Debug exploded")
        }
    }
    let task = tokio::spawn(failing(Exploding, true));
    let (span, result) = task
        .await
        .expect("the layer must not panic on a panicking Debug");
    assert!(result.is_err());
    assert!(is_error(&span));
    let (kind, message) = exception(&span).expect("exception event");
    assert!(kind.ends_with("::Exploding"), "{kind}");
    assert!(message.contains("panicked"), "{message}");
}

/// Capture off keeps the error's words out of the span and still names its type on an
/// `exception` event (X-Ray's view of the exception: Python's X-Ray SDK records it whatever
/// `capture_error` says; the span had no event at all, found by an attack side by side with
/// Python).
#[tokio::test]
async fn capture_error_false_keeps_the_error_status_and_type_but_not_its_words() {
    let (span, _) = failing::<lambda_runtime::Error>("secret card 4111".into(), false).await;
    assert!(
        is_error(&span),
        "the span status is set to error either way"
    );
    let event = exception_event(&span);
    assert_eq!(
        event
            .attributes
            .iter()
            .map(|attribute| (attribute.key.as_str(), attribute.value.to_string()))
            .collect::<Vec<_>>(),
        vec![("exception.type", "Error".to_owned())],
        "the type only"
    );
    let dump =
        format!("{:?}", span.attributes) + &format!("{:?}", span.status) + &events_text(&span);
    assert!(
        !dump.contains("4111"),
        "the error leaked into the span: {dump}"
    );
    #[derive(Debug)]
    struct CardDeclined(#[allow(dead_code)] &'static str);
    let (span, _) = failing(CardDeclined("4111"), false).await;
    let event = exception_event(&span);
    assert!(
        event.attributes[0]
            .value
            .to_string()
            .ends_with("CardDeclined"),
        "{:?}",
        event.attributes
    );
    assert!(!events_text(&span).contains("4111"));

    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[("POWERTOOLS_TRACER_CAPTURE_ERROR", "false")]))
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    let _ = TracingLayer::new(tracer)
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            Err::<Json, lambda_runtime::Error>("secret".into())
        }))
        .oneshot(ctx().event(json!({})))
        .await;
    let span = capture.one_invocation();
    assert!(is_error(&span));
    assert_eq!(
        exception(&span),
        Some(("Error".to_owned(), String::new())),
        "the type, no message"
    );
}

#[tokio::test]
async fn a_panicking_handler_still_ends_and_exports_its_span_and_the_tracer_keeps_working() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|e: LambdaEvent<Json>| async move {
            annotate("before_panic", true);
            if e.payload["panic"] == true {
                panic!("handler exploded");
            }
            Ok::<_, lambda_runtime::Error>(json!("fine"))
        }));
    let panicked = tokio::spawn(
        call(
            &service,
            ctx().with_request_id("boom").event(json!({"panic": true})),
        )
        .with_current_subscriber(),
    )
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let ok = service
        .clone()
        .oneshot(ctx().with_request_id("fine").event(json!({"panic": false})))
        .await
        .unwrap();
    assert_eq!(ok, json!("fine"));
    tracer.flush().await;
    let spans = capture.invocations();
    let boom = spans
        .iter()
        .find(|s| attr_str(s, "faas.invocation_id").as_deref() == Some("boom"))
        .expect("the panicked invocation's span is ended and exported");
    assert_eq!(attr(boom, "before_panic"), Some(&Value::Bool(true)));
    assert!(annotation_keys(boom).contains(&"before_panic".to_owned()));
    assert!(
        spans
            .iter()
            .any(|s| attr_str(s, "faas.invocation_id").as_deref() == Some("fine"))
    );
}

#[tokio::test]
async fn a_panicking_handler_span_is_marked_as_an_error() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_e: LambdaEvent<Json>| async move {
            if true {
                panic!("handler exploded");
            }
            Ok::<_, lambda_runtime::Error>(json!("fine"))
        }));
    let _ = tokio::spawn(call(&service, ctx().event(json!({})))).await;
    tracer.flush().await;
    let span = capture.one_invocation();
    assert!(
        is_error(&span),
        "a panic left the span status {:?}",
        span.status
    );
    // Its exception is named as the failure line and Lambda name it (`Panic`), with the panic's
    // message: it had no type and said only "the handler panicked" (found by a review).
    let exception = span
        .events
        .iter()
        .find(|event| event.name == "exception")
        .expect("an exception event");
    let value = |key: &str| {
        exception
            .attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == key)
            .map(|attribute| attribute.value.to_string())
    };
    assert_eq!(value("exception.type").as_deref(), Some("Panic"));
    assert_eq!(
        value("exception.message").as_deref(),
        Some("handler exploded")
    );
}

/// A response whose `Serialize` panics: the handler returned, but the invocation fails (the
/// runtime cannot send the response), so its span must say so, not end as a success.
#[derive(Debug)]
struct PanicsWhenSerialized;

impl serde::Serialize for PanicsWhenSerialized {
    fn serialize<S: serde::Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        panic!("the response cannot be serialized");
    }
}

#[tokio::test]
async fn a_response_whose_serialize_panics_marks_the_span_as_an_error() {
    // Found by a reviewer: the outcome was recorded outside the panic guard, so the span ended
    // through the guard's drop with no status at all.
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_e: LambdaEvent<Json>| async move {
            Ok::<_, lambda_runtime::Error>(PanicsWhenSerialized)
        }));
    let outcome = tokio::spawn(
        service
            .clone()
            .oneshot(ctx().with_request_id("unserializable").event(json!({}))),
    )
    .await;
    assert!(
        outcome.unwrap_err().is_panic(),
        "the panic goes on to the runtime"
    );
    tracer.flush().await;
    let span = capture.one_invocation();
    assert!(
        is_error(&span),
        "the span ended with status {:?}",
        span.status
    );
    assert!(exception(&span).is_some(), "with an exception event");
}

/// A response whose `Serialize` fails (returns an error): the runtime cannot send it, and Lambda
/// reports the invocation as failed, so its span must say so, with serde's reason. It ended as
/// a success, with no response and no word. (Found by an attack from the docs.)
#[tokio::test]
async fn a_response_whose_serialize_fails_marks_the_span_as_an_error_with_the_reason() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    // serde_json's own reason is named; a `Serialize` implementation's own message is not
    // (`a_response_s_own_serialize_refusal_is_not_quoted_on_the_span`).
    TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async move {
            Ok::<_, lambda_runtime::Error>(HashMap::from([((1_u8, 2_u8), 3_u8)]))
        }))
        .oneshot(ctx().event(json!({})))
        .await
        .unwrap();
    tracer.flush().await;
    let span = capture.one_invocation();
    assert!(
        is_error(&span),
        "the span ended with status {:?}",
        span.status
    );
    let Status::Error { description } = &span.status else {
        unreachable!()
    };
    assert_eq!(
        description.as_ref(),
        "the response does not serialize: key must be a string"
    );
    assert!(exception(&span).is_some(), "with an exception event");
}

// ---------------------------------------------------------------------------------------------
// Response capture
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn response_is_capped_at_16_kb_even_when_the_cut_falls_inside_a_character() {
    for ch in ["é", "€", "🎉", "a"] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let body = ch.repeat(40_000);
        let expected = body.clone();
        let service = TracingLayer::new(tracer).layer(service_fn(move |_e: LambdaEvent<Json>| {
            let body = body.clone();
            async move { Ok::<_, lambda_runtime::Error>(json!(body)) }
        }));
        let task = tokio::spawn(call(&service, ctx().event(json!({}))));
        let response = task
            .await
            .unwrap_or_else(|_| panic!("the layer panicked truncating {ch:?}"));
        assert_eq!(
            response.unwrap(),
            json!(expected),
            "the response itself is untouched"
        );
        let recorded = attr_str(&capture.one_invocation(), "powertools.response")
            .expect("powertools.response recorded");
        assert!(
            recorded.len() <= 16 * 1024,
            "{} bytes recorded for {ch:?}",
            recorded.len()
        );
        assert!(
            recorded.len() >= 16 * 1024 - 8,
            "only {} bytes recorded",
            recorded.len()
        );
    }
}

#[tokio::test]
async fn capture_response_false_records_no_response() {
    for builder in [
        Tracer::builder().env(env_with(&[])).capture_response(false),
        Tracer::builder().env(env_with(&[("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "false")])),
        Tracer::builder().env(env_with(&[("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "No")])),
    ] {
        let capture = Capture::default();
        let tracer = builder.span_exporter(capture.clone()).build().unwrap();
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        assert!(attr(&capture.one_invocation(), "powertools.response").is_none());
    }
}

#[tokio::test]
async fn deeply_nested_and_unicode_events_and_responses_are_fine() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let mut nested = json!("leaf \u{0} \u{202e} 名前 🎉");
    for i in 0..120 {
        nested = if i % 2 == 0 {
            json!([nested])
        } else {
            json!({"requestContext": nested, "httpMethod": i})
        };
    }
    let response = TracingLayer::new(tracer)
        .layer(service_fn(|e: LambdaEvent<Json>| async move {
            Ok::<_, lambda_runtime::Error>(e.payload)
        }))
        .oneshot(ctx().event(nested.clone()))
        .await
        .unwrap();
    assert_eq!(response, nested);
    let span = capture.one_invocation();
    assert_eq!(attr_str(&span, "faas.trigger").as_deref(), Some("other"));
    let recorded = attr_str(&span, "powertools.response").unwrap();
    assert_eq!(serde_json::from_str::<Json>(&recorded).unwrap(), nested);
}

/// The documented groups (`faas.*`, `cloud.*`, `http.*`, and the resource's `service.*` and
/// `telemetry.*`) are refused whole, not only the keys this layer sets on this span:
/// `faas.name`, `cloud.region` and `service.name` are on the resource, and a handler's
/// annotation with their key would shadow them on its span (they were taken; found by an attack
/// from the docs, `service.*` by its review).
#[tokio::test]
async fn annotate_refuses_every_key_of_the_groups_the_layer_writes() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let accepted_in_handler = accepted.clone();
    TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let accepted = accepted_in_handler.clone();
            async move {
                let mut accepted = accepted.lock().unwrap();
                for key in [
                    "faas.name",
                    "faas.x",
                    "cloud.region",
                    "cloud.x",
                    "http.x",
                    "faas.",
                    "service.name",
                    "service.version",
                    "telemetry.sdk.name",
                ] {
                    if annotate(key, "forged") {
                        accepted.push(key);
                    }
                }
                // Keys that only look alike are the handler's.
                for key in [
                    "faasx",
                    "cloud_region",
                    "httpx",
                    "my.faas.name",
                    "service_tier",
                ] {
                    assert!(annotate(key, "own"), "{key}");
                }
                Ok::<_, lambda_runtime::Error>(json!({}))
            }
        }))
        .oneshot(ctx().with_request_id("groups").event(json!({})))
        .await
        .unwrap();
    assert_eq!(*accepted.lock().unwrap(), Vec::<&str>::new());
    let span = capture.one_invocation();
    assert_eq!(attr_str(&span, "faas.x"), None);
    assert_eq!(attr_str(&span, "cloud_region").as_deref(), Some("own"));
}

/// `annotate` with the key of an attribute the layer sets (`faas.invocation_id`,
/// `powertools.response`, …) added a second value beside the layer's, and listed the key as an
/// annotation: it is refused, as `ColdStart` is, and the span keeps one value per key. Every
/// key an invocation span of each kind carries is checked, so a new one cannot be missed. And
/// the layer's two annotations count towards X-Ray's 50 per trace. (Found by an attack from the
/// docs.)
#[tokio::test]
async fn annotate_refuses_every_key_the_layer_sets_and_keeps_within_fifty_annotations() {
    let event = json!({
        "resource": "/orders/{id}", "path": "/orders/42", "httpMethod": "GET",
        "requestContext": {"resourcePath": "/orders/{id}", "httpMethod": "GET", "stage": "prod"}
    });
    let response = json!({"statusCode": 200, "body": "{}"});
    let layer_keys: Vec<String> = http_span(event.clone(), response.clone())
        .await
        .attributes
        .iter()
        .map(|kv| kv.key.as_str().to_owned())
        .collect();
    for key in [
        "faas.invocation_id",
        "powertools.response",
        "http.route",
        "ColdStart",
    ] {
        assert!(layer_keys.iter().any(|k| k == key), "{key}: {layer_keys:?}");
    }
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let keys = layer_keys.clone();
    let response_for_handler = response.clone();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let accepted_in_handler = accepted.clone();
    TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let (keys, response, accepted) = (
                keys.clone(),
                response_for_handler.clone(),
                accepted_in_handler.clone(),
            );
            async move {
                let mut accepted = accepted.lock().unwrap();
                for key in &keys {
                    if annotate(key.clone(), "forged") {
                        accepted.push(key.clone());
                    }
                }
                // As many of the user's own as X-Ray indexes beside the layer's two
                let own = (0..60)
                    .filter(|n| annotate(format!("own_{n}"), *n as i64))
                    .count();
                assert_eq!(
                    own, 48,
                    "the layer's ColdStart and Service count towards 50"
                );
                Ok::<_, lambda_runtime::Error>(response)
            }
        }))
        .oneshot(ctx().with_request_id("real-id").event(event))
        .await
        .unwrap();
    assert_eq!(
        *accepted.lock().unwrap(),
        Vec::<String>::new(),
        "keys the layer sets"
    );
    let span = capture.one_invocation();
    let mut seen = HashSet::new();
    for kv in &span.attributes {
        assert!(
            seen.insert(kv.key.as_str()),
            "{} twice: {:?}",
            kv.key,
            span.attributes
        );
    }
    assert_eq!(
        attr_str(&span, "faas.invocation_id").as_deref(),
        Some("real-id")
    );
    let Some(Value::Array(Array::String(listed))) = attr(&span, "aws.xray.annotations") else {
        panic!("no annotation list: {:?}", span.attributes);
    };
    assert_eq!(listed.len(), 50, "{listed:?}");
}

// ---------------------------------------------------------------------------------------------
// HTTP invocations
// ---------------------------------------------------------------------------------------------

async fn http_span(event: Json, response: Json) -> SpanData {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let response = Arc::new(response);
    TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let response = response.clone();
            async move { Ok::<_, lambda_runtime::Error>((*response).clone()) }
        }))
        .oneshot(ctx().event(event))
        .await
        .unwrap();
    capture.one_invocation()
}

fn http_attrs(
    span: &SpanData,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Value>,
    Option<String>,
) {
    (
        attr_str(span, "http.request.method"),
        attr_str(span, "url.path"),
        attr_str(span, "http.route"),
        attr(span, "http.response.status_code").cloned(),
        attr_str(span, "faas.trigger"),
    )
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[tokio::test]
async fn api_gateway_rest_event_gets_http_server_attributes() {
    let span = http_span(
        json!({
            "resource": "/orders/{id}", "path": "/orders/42", "httpMethod": "GET",
            "requestContext": {"resourcePath": "/orders/{id}", "httpMethod": "GET", "stage": "prod"}
        }),
        json!({"statusCode": 200, "body": "{}"}),
    )
    .await;
    assert_eq!(
        http_attrs(&span),
        (
            s("GET"),
            s("/orders/42"),
            s("/orders/{id}"),
            Some(Value::I64(200)),
            s("http")
        )
    );
    assert!(!is_error(&span));
}

#[tokio::test]
async fn http_api_and_function_url_events_get_http_server_attributes() {
    let span = http_span(
        json!({
            "version": "2.0", "routeKey": "POST /orders/{id}", "rawPath": "/orders/42",
            "requestContext": {"http": {"method": "POST", "path": "/orders/42"}}
        }),
        json!({"statusCode": 201}),
    )
    .await;
    assert_eq!(
        http_attrs(&span),
        (
            s("POST"),
            s("/orders/42"),
            s("/orders/{id}"),
            Some(Value::I64(201)),
            s("http")
        )
    );
    let span = http_span(
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/any/thing",
            "requestContext": {"http": {"method": "PUT", "path": "/any/thing"}}
        }),
        json!({"statusCode": 204}),
    )
    .await;
    assert_eq!(
        http_attrs(&span),
        (
            s("PUT"),
            s("/any/thing"),
            None,
            Some(Value::I64(204)),
            s("http")
        )
    );
}

#[tokio::test]
async fn alb_event_gets_http_server_attributes_and_5xx_is_an_error() {
    let span = http_span(
        json!({
            "httpMethod": "DELETE", "path": "/orders/42",
            "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:..."}}
        }),
        json!({"statusCode": 503, "statusDescription": "503 Service Unavailable"}),
    )
    .await;
    assert_eq!(
        http_attrs(&span),
        (
            s("DELETE"),
            s("/orders/42"),
            None,
            Some(Value::I64(503)),
            s("http")
        )
    );
    assert!(
        is_error(&span),
        "a 5xx response sets the span status to error"
    );
}

#[tokio::test]
async fn a_4xx_response_is_not_a_server_error() {
    let span = http_span(get_x_event(), json!({"statusCode": 404})).await;
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(&Value::I64(404))
    );
    assert!(!is_error(&span));
}

#[tokio::test]
async fn non_http_events_with_http_like_fields_are_not_http() {
    for event in [
        // No requestContext: "an event without a requestContext is told apart".
        json!({"httpMethod": "GET", "path": "/orders"}),
        // WebSocket API: not one of the documented triggers.
        json!({"requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "abc"}}),
        json!({"Records": [{"eventSource": "aws:sqs", "body": "{\"httpMethod\":\"GET\"}"}]}),
        json!({"requestContext": "not an object", "httpMethod": 5}),
        json!({"requestContext": {"http": {"method": 5}}, "rawPath": []}),
        json!(null),
        json!([1, 2, 3]),
        json!("GET /orders"),
    ] {
        let span = http_span(event.clone(), json!({"statusCode": 500})).await;
        // An SQS event is `pubsub`, whatever its body says.
        let sqs = event.get("Records").is_some();
        assert_eq!(
            attr_str(&span, "faas.trigger").as_deref(),
            Some(if sqs { "pubsub" } else { "other" }),
            "event {event}"
        );
        assert!(
            attr(&span, "http.request.method").is_none(),
            "event {event}"
        );
    }
}

#[tokio::test]
async fn hostile_http_fields_never_fail_the_invocation() {
    let huge_path = format!("/{}", "é".repeat(500_000));
    let span = http_span(
        json!({"version": "2.0", "routeKey": "GET", "rawPath": huge_path,
               "requestContext": {"http": {"method": "GËT\u{0}", "path": huge_path}}}),
        json!({"statusCode": "503"}),
    )
    .await;
    assert_eq!(attr_str(&span, "faas.trigger").as_deref(), Some("http"));
    let span = http_span(get_x_event(), json!({"statusCode": 99_999_999_999_i64})).await;
    assert_eq!(attr_str(&span, "faas.trigger").as_deref(), Some("http"));
    let span = http_span(get_x_event(), json!({"statusCode": -1})).await;
    assert!(!is_error(&span), "statusCode -1 is not a 5xx");
}

#[test]
fn http_request_from_json_reads_the_documented_shapes() {
    let v2 = HttpRequest::from_json(&json!({
        "version": "2.0", "routeKey": "ANY /{proxy+}", "rawPath": "/a/b",
        "requestContext": {"http": {"method": "PATCH", "path": "/a/b"}}
    }))
    .unwrap();
    assert_eq!(
        (v2.method.as_str(), v2.path.as_deref(), v2.route.as_deref()),
        ("PATCH", Some("/a/b"), Some("/{proxy+}"))
    );
    let v1 = HttpRequest::from_json(&json!({
        "resource": "/{proxy+}", "path": "/a", "httpMethod": "OPTIONS", "requestContext": {"stage": "x"}
    }))
    .unwrap();
    assert_eq!(
        (v1.method.as_str(), v1.path.as_deref(), v1.route.as_deref()),
        ("OPTIONS", Some("/a"), Some("/{proxy+}"))
    );
    let alb = HttpRequest::from_json(&json!({
        "httpMethod": "HEAD", "path": "/h", "requestContext": {"elb": {}}
    }))
    .unwrap();
    assert_eq!(
        (
            alb.method.as_str(),
            alb.path.as_deref(),
            alb.route.as_deref()
        ),
        ("HEAD", Some("/h"), None)
    );
    assert_eq!(HttpRequest::from_json(&json!({"requestContext": {}})), None);
    assert_eq!(
        HttpRequest::from_json(&json!({"httpMethod": "GET", "path": "/"})),
        None
    );
}

#[tokio::test]
async fn typed_aws_lambda_events_get_http_server_attributes() {
    use aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
    use aws_lambda_events::apigw::{
        ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
        ApiGatewayV2httpResponse,
    };
    use aws_lambda_events::lambda_function_urls::{
        LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
    };

    async fn run<Req, Resp>(req: Req, resp: Resp) -> SpanData
    where
        Req: Send + 'static,
        Resp: serde::Serialize + Clone + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        TracingLayer::new(tracer)
            .layer(service_fn(move |_e: LambdaEvent<Req>| {
                let resp = resp.clone();
                async move { Ok::<_, lambda_runtime::Error>(resp) }
            }))
            .oneshot(ctx().event(req))
            .await
            .unwrap();
        capture.one_invocation()
    }

    let mut v1 = ApiGatewayProxyRequest::default();
    v1.http_method = http::Method::GET;
    v1.path = Some("/orders/42".into());
    v1.resource = Some("/orders/{id}".into());
    let mut r1 = ApiGatewayProxyResponse::default();
    r1.status_code = 502;
    let span = run(v1, r1).await;
    assert_eq!(
        http_attrs(&span),
        (
            s("GET"),
            s("/orders/42"),
            s("/orders/{id}"),
            Some(Value::I64(502)),
            s("http")
        )
    );
    assert!(is_error(&span));

    let mut v2 = ApiGatewayV2httpRequest::default();
    v2.route_key = Some("POST /orders".into());
    v2.raw_path = Some("/orders".into());
    v2.request_context.http.method = http::Method::POST;
    v2.request_context.http.path = Some("/orders".into());
    let mut r2 = ApiGatewayV2httpResponse::default();
    r2.status_code = 201;
    let span = run(v2, r2).await;
    assert_eq!(
        http_attrs(&span),
        (
            s("POST"),
            s("/orders"),
            s("/orders"),
            Some(Value::I64(201)),
            s("http")
        )
    );

    let mut url = LambdaFunctionUrlRequest::default();
    url.raw_path = Some("/u".into());
    url.request_context.http.method = Some("PUT".into());
    url.request_context.http.path = Some("/u".into());
    let mut ru = LambdaFunctionUrlResponse::default();
    ru.status_code = 200;
    let span = run(url, ru).await;
    assert_eq!(
        http_attrs(&span),
        (s("PUT"), s("/u"), None, Some(Value::I64(200)), s("http"))
    );

    let mut alb = AlbTargetGroupRequest::default();
    alb.http_method = http::Method::DELETE;
    alb.path = Some("/a".into());
    let mut ra = AlbTargetGroupResponse::default();
    ra.status_code = 500;
    let span = run(alb, ra).await;
    assert_eq!(
        http_attrs(&span),
        (s("DELETE"), s("/a"), None, Some(Value::I64(500)), s("http"))
    );
    assert!(is_error(&span));
}

#[tokio::test]
async fn http_request_hook_reads_the_callers_event_type_and_trigger_is_settable() {
    #[derive(Debug, Clone)]
    struct Order {
        verb: String,
        path: String,
    }
    #[derive(Debug, Clone, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Reply {
        status_code: u16,
    }
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    TracingLayer::new(tracer)
        .http_request(|o: &Order| {
            Some(
                HttpRequest::new(&o.verb)
                    .with_path(&o.path)
                    .with_route("/orders/{id}"),
            )
        })
        .layer(service_fn(|_e: LambdaEvent<Order>| async {
            Ok::<_, lambda_runtime::Error>(Reply { status_code: 500 })
        }))
        .oneshot(ctx().event(Order {
            verb: "PATCH".into(),
            path: "/orders/9".into(),
        }))
        .await
        .unwrap();
    let span = capture.one_invocation();
    assert_eq!(
        http_attrs(&span),
        (
            s("PATCH"),
            s("/orders/9"),
            s("/orders/{id}"),
            Some(Value::I64(500)),
            s("http")
        )
    );
    assert!(is_error(&span));

    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    invoke_with_layer(
        TracingLayer::new(tracer).trigger("pubsub"),
        json!({"Records": []}),
    )
    .await;
    assert_eq!(
        attr_str(&capture.one_invocation(), "faas.trigger").as_deref(),
        Some("pubsub")
    );
}

async fn invoke_with_layer(layer: TracingLayer, payload: Json) {
    layer
        .layer(service_fn(ok_handler))
        .oneshot(ctx().event(payload))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tracing::instrument(skip_all, fields(step = step, req = req))]
async fn step_span(req: usize, step: usize) {
    tokio::time::sleep(Duration::from_millis(((req * 7 + step * 3) % 5) as u64)).await;
    if step == 0 {
        let _inner = tracing::info_span!("inner", req = req as i64).entered();
    }
}

fn trace_header_for(i: usize) -> (String, String) {
    let trace = format!("{:08x}{:024x}", 0x5759_e988_u32, i + 1);
    let header = format!(
        "Root=1-{}-{};Parent={:016x};Sampled=1",
        &trace[..8],
        &trace[8..],
        i + 1
    );
    (trace, header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_on_clones_keep_their_own_span_trees_and_annotations() {
    const N: usize = 64;
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|e: LambdaEvent<Json>| async move {
            let req = e.payload["req"].as_u64().unwrap() as usize;
            for step in 0..3 {
                step_span(req, step).await;
                assert!(annotate("req", req as i64));
                tokio::task::yield_now().await;
            }
            assert!(annotate(format!("only_{req}"), true));
            Ok::<_, lambda_runtime::Error>(json!({"req": req}))
        }));
    let mut tasks = Vec::new();
    for i in 0..N {
        let service = service.clone();
        let (_, header) = trace_header_for(i);
        tasks.push(tokio::spawn(
            call(
                &service,
                ctx()
                    .with_request_id(format!("r{i}"))
                    .with_trace_id(header)
                    .event(json!({"req": i})),
            )
            .with_current_subscriber(),
        ));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), json!({"req": i}));
    }
    tracer.flush().await;
    let spans = capture.spans();
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let invocations = capture.invocations();
    assert_eq!(invocations.len(), N);
    for i in 0..N {
        let (trace, _) = trace_header_for(i);
        let trace = TraceId::from_hex(&trace).unwrap();
        let inv = invocations
            .iter()
            .find(|s| s.span_context.trace_id() == trace)
            .unwrap_or_else(|| panic!("no invocation span in trace {i}"));
        assert_eq!(attr_str(inv, "faas.invocation_id"), Some(format!("r{i}")));
        assert_eq!(
            attr(inv, "req"),
            Some(&Value::I64(i as i64)),
            "invocation {i}"
        );
        let only: Vec<String> = inv
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str().starts_with("only_"))
            .map(|kv| kv.key.as_str().to_owned())
            .collect();
        assert_eq!(
            only,
            vec![format!("only_{i}")],
            "cross-talk into invocation {i}"
        );
        let children: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_kind != SpanKind::Server && s.span_context.trace_id() == trace)
            .collect();
        assert_eq!(
            children.len(),
            4,
            "invocation {i} has {} child spans",
            children.len()
        );
        for child in children {
            let want = child.name.clone();
            let req = attr_str(child, "req");
            assert_eq!(req, Some(i.to_string()), "{want} of {i} in the wrong trace");
            // walk up to the invocation span
            let mut parent = child.parent_span_id;
            let mut hops = 0;
            while parent != inv.span_context.span_id() {
                let p = by_id
                    .get(&parent)
                    .unwrap_or_else(|| panic!("{want} of {i}: parent missing"));
                assert_eq!(p.span_context.trace_id(), trace);
                parent = p.parent_span_id;
                hops += 1;
                assert!(hops < 4);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_before_return_flushes_lose_no_spans() {
    const N: usize = 48;
    let exporter = Controlled::new(Mode::Slow(Duration::from_millis(5)));
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .flush_mode(FlushMode::BeforeReturn)
        .flush_timeout(Duration::from_secs(10))
        .queued_exporter(exporter.clone())
        .build()
        .unwrap();
    let _guard = install(&tracer);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_e: LambdaEvent<Json>| async {
            step_span(1, 1).await;
            step_span(2, 2).await;
            Ok::<_, lambda_runtime::Error>(json!(null))
        }));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(
                call(
                    &service,
                    ctx().with_request_id(format!("c{i}")).event(json!({})),
                )
                .with_current_subscriber(),
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    tracer.flush().await;
    assert_eq!(tracer.dropped_spans(), 0);
    assert_eq!(
        exporter.count(),
        N * 3,
        "spans lost across concurrent flushes"
    );
}

// ---------------------------------------------------------------------------------------------
// A collector that fails or hangs
// ---------------------------------------------------------------------------------------------

fn queued(exporter: &Controlled, flush: Duration) -> Tracer {
    Tracer::builder()
        .env(env_with(&[]))
        .flush_timeout(flush)
        .queued_exporter(exporter.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn without_the_extension_spans_are_exported_before_the_layer_returns() {
    let exporter = Controlled::new(Mode::Answer);
    let tracer = queued(&exporter, Duration::from_secs(2));
    tracer.register_extension().await.unwrap(); // outside Lambda: does nothing
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(exporter.count(), 1, "exported before the layer returned");
}

#[tokio::test]
async fn a_hanging_exporter_costs_one_flush_timeout_then_drops_at_once_and_resumes() {
    let exporter = Controlled::new(Mode::Hang);
    let timeout = Duration::from_millis(300);
    let tracer = queued(&exporter, timeout);
    let started = Instant::now();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    let first = started.elapsed();
    assert!(
        first >= timeout / 2 && first < timeout + Duration::from_millis(700),
        "first took {first:?}"
    );
    for _ in 0..5 {
        let started = Instant::now();
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a later invocation waited {:?}",
            started.elapsed()
        );
    }
    assert!(
        tracer.dropped_spans() >= 5,
        "dropped {}",
        tracer.dropped_spans()
    );
    let started = Instant::now();
    tracer.flush().await;
    assert!(started.elapsed() < timeout + Duration::from_millis(500));
    // The collector answers again: a background probe resumes export.
    exporter.set(Mode::Answer);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        if exporter.count() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "export never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_failing_exporter_never_fails_the_invocation_and_counts_dropped_spans() {
    let exporter = Controlled::new(Mode::Fail);
    let tracer = queued(&exporter, Duration::from_millis(500));
    for _ in 0..3 {
        let started = Instant::now();
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(600));
    }
    // The last invocation's span is kept for the probe, which drops it when the export fails
    // again (half a second after the first failure).
    let deadline = Instant::now() + Duration::from_secs(20);
    while tracer.dropped_spans() < 3 {
        assert!(
            Instant::now() < deadline,
            "dropped {}",
            tracer.dropped_spans()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tracer.dropped_spans(), 3);
}

#[tokio::test]
async fn max_queued_spans_bounds_the_queue_and_counts_the_rest() {
    let exporter = Controlled::new(Mode::Answer);
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .max_queued_spans(3)
        .queued_exporter(exporter.clone())
        .build()
        .unwrap();
    let _guard = install(&tracer);
    TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            for i in 0..10 {
                let _s = tracing::info_span!("many", i).entered();
            }
            Ok::<_, lambda_runtime::Error>(json!(null))
        }))
        .oneshot(ctx().event(json!({})))
        .await
        .unwrap();
    assert!(
        exporter.count() <= 3,
        "{} exported with a queue of 3",
        exporter.count()
    );
    assert_eq!(exporter.count() as u64 + tracer.dropped_spans(), 11);
}

// --- a real OTLP/HTTP receiver, in process ---------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rx {
    Answer,
    Hang,
    Status(u16),
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    mode: Arc<Mutex<Rx>>,
    requests: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Receiver {
    async fn start(mode: Rx) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rx = Receiver {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            requests: Arc::default(),
        };
        let server = rx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let server = server.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let mode = *server.mode.lock().unwrap();
                                match mode {
                                    Rx::Hang => std::future::pending::<()>().await,
                                    Rx::Status(code) => {
                                        return Ok::<_, Infallible>(
                                            Response::builder()
                                                .status(code)
                                                .body(Full::new(Bytes::new()))
                                                .unwrap(),
                                        );
                                    }
                                    Rx::Answer => {}
                                }
                                server.requests.lock().unwrap().push((path, body));
                                Ok(Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap())
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        rx
    }
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        use prost::Message;
        let mut spans = Vec::new();
        for (_, body) in self.requests.lock().unwrap().iter() {
            let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        spans
    }
    fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

fn otlp_tracer(env: Env, flush: Duration) -> Tracer {
    Tracer::builder()
        .env(env)
        .service("orders")
        .flush_timeout(flush)
        .build()
        .unwrap()
}

#[tokio::test]
async fn otlp_endpoint_gets_v1_traces_appended_and_traces_endpoint_is_used_as_is() {
    let rx = Receiver::start(Rx::Answer).await;
    for (env, want) in [
        (
            env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base())]),
            "/v1/traces",
        ),
        (
            env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("{}/", rx.base()))]),
            "/v1/traces",
        ),
        (
            env_with(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("{}/collector", rx.base()),
            )]),
            "/collector/v1/traces",
        ),
        (
            env_with(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    &format!("{}/custom/path", rx.base()),
                ),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ]),
            "/custom/path",
        ),
    ] {
        rx.requests.lock().unwrap().clear();
        let tracer = otlp_tracer(env, Duration::from_secs(5));
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        assert_eq!(rx.paths(), vec![want.to_owned()]);
    }
    let spans = rx.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, FUNCTION);
}

#[tokio::test]
async fn builder_endpoint_wins_over_the_environment() {
    let rx = Receiver::start(Rx::Answer).await;
    let tracer = Tracer::builder()
        .env(env_with(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:9/v1/traces",
        )]))
        .endpoint(format!("{}/mine", rx.base()))
        .build()
        .unwrap();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(rx.paths(), vec!["/mine".to_owned()]);
}

#[tokio::test]
async fn a_collector_that_is_down_costs_at_most_one_flush_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let timeout = Duration::from_millis(400);
    let tracer = otlp_tracer(
        env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{dead}"))]),
        timeout,
    );
    let started = Instant::now();
    for _ in 0..5 {
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < timeout + Duration::from_millis(600),
        "5 invocations took {:?}",
        started.elapsed()
    );
    assert!(tracer.dropped_spans() >= 4);
}

#[tokio::test]
async fn a_hanging_collector_costs_one_flush_timeout_and_export_resumes_when_it_answers() {
    let rx = Receiver::start(Rx::Hang).await;
    let timeout = Duration::from_millis(400);
    let tracer = Tracer::builder()
        .env(env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base())]))
        .flush_timeout(timeout)
        .export_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    let first = started.elapsed();
    assert!(
        first < timeout + Duration::from_millis(600),
        "first invocation took {first:?}"
    );
    let started = Instant::now();
    for _ in 0..5 {
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "later invocations waited {:?}",
        started.elapsed()
    );
    assert!(tracer.dropped_spans() >= 5);
    *rx.mode.lock().unwrap() = Rx::Answer;
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        invoke_with(
            &tracer,
            ctx().with_request_id("after"),
            json!({}),
            ok_handler,
        )
        .await
        .unwrap();
        if rx.spans().iter().any(|s| s.name == FUNCTION) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "export never resumed after the collector answered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_collector_answering_500_never_fails_the_invocation() {
    let rx = Receiver::start(Rx::Status(500)).await;
    let tracer = otlp_tracer(
        env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base())]),
        Duration::from_secs(1),
    );
    let started = Instant::now();
    for _ in 0..3 {
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(tracer.dropped_spans() >= 1);
}

// ---------------------------------------------------------------------------------------------
// Builder validation
// ---------------------------------------------------------------------------------------------

fn build_err(env: Env) -> powertools_tracing::Error {
    match Tracer::builder().env(env).build() {
        Ok(_) => panic!("build accepted a malformed environment"),
        Err(e) => e,
    }
}

#[test]
fn malformed_boolean_variables_are_typed_errors_naming_the_variable() {
    for var in [
        "POWERTOOLS_TRACE_DISABLED",
        "POWERTOOLS_DEV",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
        "POWERTOOLS_TRACER_CAPTURE_ERROR",
    ] {
        let err = build_err(env_with(&[(var, "maybe")]));
        assert!(
            matches!(err, powertools_tracing::Error::Config(_)),
            "{var}: {err:?}"
        );
        assert_eq!(err.error_type(), "InvalidEnvironmentVariable", "{var}");
        assert!(err.to_string().contains(var), "{var}: {err}");
    }
}

#[test]
fn malformed_timeouts_are_typed_errors_naming_the_variable() {
    for var in [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        for value in ["abc", "-5", "1.5", "10s", "99999999999999999999999"] {
            let err = build_err(env_with(&[(var, value)]));
            assert_eq!(
                err.error_type(),
                "InvalidEnvironmentVariable",
                "{var}={value}: {err}"
            );
            assert!(err.to_string().contains(var), "{var}={value}: {err}");
        }
    }
}

#[test]
fn empty_values_count_as_unset() {
    let tracer = Tracer::builder()
        .env(env_with(&[
            ("POWERTOOLS_TRACE_DISABLED", ""),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ]))
        .build()
        .unwrap();
    assert!(tracer.is_enabled());
}

#[test]
fn malformed_endpoint_variables_are_errors_naming_the_variable() {
    let mut problems = Vec::new();
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        for value in [
            "not a url",
            "localhost:4318",
            "ftp://collector:21",
            "http://",
            "http://[::1",
            "http://collector:99999",
        ] {
            match Tracer::builder().env(env_with(&[(var, value)])).build() {
                Ok(_) => problems.push(format!("{var}={value:?} accepted")),
                Err(err) if !err.to_string().contains(var) => {
                    problems.push(format!("{var}={value:?}: [{}] {err}", err.error_type()));
                }
                Err(_) => {}
            }
        }
    }
    // The base endpoint gets `/v1/traces` appended: after a query or a fragment it would be
    // part of them.
    for value in ["http://collector:4318?tenant=a", "http://collector:4318/#x"] {
        let var = "OTEL_EXPORTER_OTLP_ENDPOINT";
        match Tracer::builder().env(env_with(&[(var, value)])).build() {
            Ok(_) => problems.push(format!("{var}={value:?} accepted")),
            Err(err) if !err.to_string().contains(var) => {
                problems.push(format!("{var}={value:?}: {err}"));
            }
            Err(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_malformed_builder_endpoint_is_an_error() {
    let mut accepted = Vec::new();
    for endpoint in [
        "not a url",
        "",
        "ftp://collector/v1/traces",
        "http://[::1",
        "http://",
        "localhost:4318",
        "http://collector:99999/v1/traces",
    ] {
        match Tracer::builder()
            .env(env_with(&[]))
            .endpoint(endpoint)
            .build()
        {
            Ok(_) => accepted.push(endpoint),
            Err(err) => assert_eq!(
                err.error_type(),
                "TracingExporterError",
                "{endpoint:?}: {err}"
            ),
        }
    }
    assert!(
        accepted.is_empty(),
        "malformed endpoints accepted by build(): {accepted:?}"
    );
}

#[test]
fn a_missing_certificate_file_is_an_error_naming_it() {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ] {
        let result = Tracer::builder()
            .env(env_with(&[(var, "/nonexistent/ca.pem")]))
            .endpoint("https://collector.example:4318/v1/traces")
            .build();
        let err = match result {
            Ok(_) => panic!("{var}=/nonexistent/ca.pem was accepted"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.contains(var) || text.contains("/nonexistent/ca.pem"),
            "{var}: {text}"
        );
        // With a plain `http://` endpoint nothing would use it: not read, as the README says
        // (and as the OpenTelemetry SDKs do), so a platform-wide variable does not stop a
        // function exporting to a local collector.
        Tracer::builder()
            .env(env_with(&[(var, "/nonexistent/ca.pem")]))
            .endpoint("http://127.0.0.1:4318/v1/traces")
            .build()
            .unwrap_or_else(|error| panic!("{var} with http://: {error}"));
    }
}

#[tokio::test]
async fn a_non_utf8_or_garbage_certificate_never_fails_an_invocation() {
    let dir = std::env::temp_dir().join(format!("attack-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("garbage.pem");
    std::fs::write(
        &pem,
        b"\xff\xfe-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let built = Tracer::builder()
        .env(env_with(&[]))
        .endpoint("https://127.0.0.1:9/v1/traces")
        .certificate(&pem)
        .flush_timeout(Duration::from_millis(300))
        .build();
    if let Ok(tracer) = built {
        let started = Instant::now();
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// The extension, against an emulated Runtime + Extensions API
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct ExtensionsApi {
    addr: SocketAddr,
    refuse: bool,
    registrations: Arc<Mutex<Vec<(Option<String>, Json)>>>,
    nexts: Arc<Mutex<Vec<Instant>>>,
    events: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Json>>>,
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

impl ExtensionsApi {
    async fn start(refuse: bool) -> (Self, tokio::sync::mpsc::UnboundedSender<Json>) {
        Self::start_at("127.0.0.1:0".parse().unwrap(), refuse).await
    }

    async fn start_at(
        addr: SocketAddr,
        refuse: bool,
    ) -> (Self, tokio::sync::mpsc::UnboundedSender<Json>) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let api = ExtensionsApi {
            addr: listener.local_addr().unwrap(),
            refuse,
            registrations: Arc::default(),
            nexts: Arc::default(),
            events: Arc::new(tokio::sync::Mutex::new(rx)),
            fail_next: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: Request<hyper::body::Incoming>| {
                            let server = server.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let name = req
                                    .headers()
                                    .get("lambda-extension-name")
                                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                if path.ends_with("/extension/register") {
                                    let body: Json =
                                        serde_json::from_slice(&body).unwrap_or(Json::Null);
                                    server.registrations.lock().unwrap().push((name, body));
                                    if server.refuse {
                                        return Ok::<_, Infallible>(Response::builder().status(403)
                                        .body(Full::new(Bytes::from_static(br#"{"errorMessage":"no","errorType":"Extension.Forbidden"}"#))).unwrap());
                                    }
                                    return Ok(Response::builder()
                                    .header("lambda-extension-identifier", "ext-1")
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(br#"{"functionName":"orders-api","functionVersion":"7","handler":"bootstrap"}"#)))
                                    .unwrap());
                                }
                                if path.ends_with("/extension/event/next") {
                                    server.nexts.lock().unwrap().push(Instant::now());
                                    if server.fail_next.load(Ordering::SeqCst) {
                                        return Ok(Response::builder()
                                            .status(500)
                                            .body(Full::new(Bytes::from_static(
                                                br#"{"errorMessage":"boom","errorType":"Extension.Crash"}"#,
                                            )))
                                            .unwrap());
                                    }
                                    let event = server.events.lock().await.recv().await;
                                    let Some(event) = event else {
                                        std::future::pending::<()>().await;
                                        unreachable!()
                                    };
                                    return Ok(Response::builder()
                                        .header("lambda-extension-event-identifier", "ev")
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(event.to_string())))
                                        .unwrap());
                                }
                                Ok(Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap())
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (api, tx)
    }
}

/// `lambda_runtime_api_client` reads `AWS_LAMBDA_RUNTIME_API` from the process environment, which
/// a test cannot set (`unsafe_code` is forbidden): run the test again in a child process that has
/// it, pointing at an emulated API the child starts.
fn in_lambda_process<F, Fut>(name: &str, body: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Ok(addr) = std::env::var("ATTACK_RUNTIME_API") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(body(addr.parse().unwrap()));
        return;
    }
    let (output, _) = run_child(name, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child run failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// Runs test `name` again in a child process with `AWS_LAMBDA_RUNTIME_API` set.
fn run_child(name: &str, extra: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("ATTACK_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn invoke_event(request_id: &str) -> Json {
    invoke_event_within(request_id, Duration::from_secs(30))
}

fn invoke_event_within(request_id: &str, left: Duration) -> Json {
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + left.as_millis() as u64;
    json!({
        "eventType": "INVOKE",
        "deadlineMs": deadline,
        "requestId": request_id,
        "invokedFunctionArn": ARN,
        "tracing": {"type": "X-Amzn-Trace-Id", "value": header("1")}
    })
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[test]
fn with_the_extension_the_caller_never_waits_and_spans_are_out_before_the_next_event() {
    in_lambda_process(
        "with_the_extension_the_caller_never_waits_and_spans_are_out_before_the_next_event",
        |runtime_api| async move {
            let (api, events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Slow(Duration::from_millis(800)));
            let tracer = Tracer::builder()
                .env(env_with(&[(
                    "AWS_LAMBDA_RUNTIME_API",
                    &api.addr.to_string(),
                )]))
                .flush_timeout(Duration::from_secs(5))
                .queued_exporter(exporter.clone())
                .build()
                .unwrap();
            tracer
                .register_extension()
                .await
                .expect("registers with the emulated API");
            tracer
                .register_extension()
                .await
                .expect("calling it again does nothing");
            {
                let regs = api.registrations.lock().unwrap();
                assert_eq!(regs.len(), 1, "registered twice: {:?}", regs.len());
                assert_eq!(
                    regs[0].0.as_deref(),
                    Some(powertools_tracing::EXTENSION_NAME)
                );
                assert_eq!(regs[0].1["events"], json!(["INVOKE"]));
            }
            wait_for("the first event/next", Duration::from_secs(5), || {
                api.nexts.lock().unwrap().len() == 1
            })
            .await;
            events.send(invoke_event("inv-1")).unwrap();
            let started = Instant::now();
            invoke_with(
                &tracer,
                ctx().with_request_id("inv-1").with_trace_id(header("1")),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(400),
                "the caller waited {took:?} for an 800 ms exporter"
            );
            assert_eq!(exporter.count(), 0, "exported before the layer returned");
            wait_for(
                "the export after the response",
                Duration::from_secs(5),
                || exporter.count() == 1,
            )
            .await;
            wait_for("the next event/next", Duration::from_secs(5), || {
                api.nexts.lock().unwrap().len() == 2
            })
            .await;
            let second_next = api.nexts.lock().unwrap()[1];
            assert!(
                second_next >= started + Duration::from_millis(700),
                "the extension asked for the next event before the spans were out"
            );
        },
    );
}

#[test]
fn an_invocation_that_runs_into_its_deadline_still_exports_the_spans_that_ended() {
    // The extension waited for the layer until the deadline itself, then had no time left to
    // export: the spans of an invocation that times out (the ones people need most) were lost
    // with the environment Lambda resets (found by a reviewer).
    in_lambda_process(
        "an_invocation_that_runs_into_its_deadline_still_exports_the_spans_that_ended",
        |runtime_api| async move {
            let exporter = Controlled::new(Mode::Answer);
            let (_api, events, tracer) =
                registered(runtime_api, &exporter, Duration::from_secs(2)).await;
            tracing::subscriber::set_global_default(tracer.subscriber()).unwrap();
            fn runs_into_its_deadline(
                _: LambdaEvent<Json>,
            ) -> std::pin::Pin<Box<dyn Future<Output = Result<Json, lambda_runtime::Error>> + Send>>
            {
                Box::pin(async {
                    // Work that ended early, then a call that hangs past the deadline
                    for step in ["load_order", "charge_card"] {
                        tracing::info_span!("step", step).in_scope(|| {});
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok(json!({"ok": true}))
                })
            }
            let left = Duration::from_millis(1000);
            let deadline_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + left.as_millis() as u64;
            events.send(invoke_event_within("late-1", left)).unwrap();
            let started = Instant::now();
            tokio::spawn(invoke_with(
                &tracer,
                ctx()
                    .with_request_id("late-1")
                    .with_deadline_ms(deadline_ms),
                json!({}),
                runs_into_its_deadline,
            ));
            // Then the two spans that ended are exported before the deadline
            let exported = wait_for("the ended spans exported", Duration::from_secs(3), || {
                exporter.count() == 2
            })
            .await;
            assert!(
                started.elapsed() < left,
                "exported {exported:?} after the invoke, past its {left:?} deadline"
            );
        },
    );
}

#[test]
fn invocations_that_never_reach_the_layer_are_warned_about_once() {
    // A function that registers the extension but whose handler is not behind `TracingLayer`
    // (forgotten, or a `lambda_http::run` service) had each invocation held 200 ms, billed, with
    // no word (found by a reviewer)
    const NAME: &str = "invocations_that_never_reach_the_layer_are_warned_about_once";
    if std::env::var("ATTACK_CHILD").is_ok() {
        in_lambda_process(NAME, |runtime_api| async move {
            let (api, events) = ExtensionsApi::start_at(runtime_api, false).await;
            let tracer = extension_tracer(
                api.addr,
                &Controlled::new(Mode::Answer),
                Duration::from_secs(2),
            );
            use tracing_subscriber::layer::SubscriberExt;
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry()
                    .with(tracer.otel_layer())
                    .with(PrintWarnings),
            )
            .unwrap();
            tracer.register_extension().await.unwrap();
            for (index, request_id) in ["no-layer-1", "no-layer-2", "no-layer-3"]
                .iter()
                .enumerate()
            {
                events.send(invoke_event(request_id)).unwrap();
                wait_for(
                    "the extension letting it go",
                    Duration::from_secs(3),
                    || api.nexts.lock().unwrap().len() == index + 2,
                )
                .await;
            }
        });
        return;
    }
    let (output, _) = run_child(NAME, &[("ATTACK_CHILD", "1")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // (A warning may follow the test harness's own `test … ` on its line.)
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("WARNING message="))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(warnings[0].contains("TracingLayer"), "{stdout}");
}

#[test]
fn an_invoke_that_never_reaches_the_layer_is_let_go_after_200_ms() {
    in_lambda_process(
        "an_invoke_that_never_reaches_the_layer_is_let_go_after_200_ms",
        |runtime_api| async move {
            let (api, events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Answer);
            let tracer = extension_tracer(api.addr, &exporter, Duration::from_secs(2));
            tracer.register_extension().await.unwrap();
            wait_for("the first event/next", Duration::from_secs(5), || {
                api.nexts.lock().unwrap().len() == 1
            })
            .await;
            let sent = Instant::now();
            events.send(invoke_event("ghost")).unwrap();
            wait_for("letting the ghost go", Duration::from_secs(3), || {
                api.nexts.lock().unwrap().len() == 2
            })
            .await;
            let waited = api.nexts.lock().unwrap()[1] - sent;
            assert!(
                waited < Duration::from_millis(1000),
                "held the environment {waited:?}"
            );
            // It reaches the layer later (a slow layer before it): the layer returns without
            // exporting, so that its caller does not wait for the collector either...
            invoke_with(
                &tracer,
                ctx().with_request_id("ghost"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            assert_eq!(exporter.count(), 0, "the late invocation's caller waited");
            // ...and its span goes out with the next invocation's, after that one's response
            events.send(invoke_event("next")).unwrap();
            invoke_with(
                &tracer,
                ctx().with_request_id("next"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            wait_for(
                "the export after the next response",
                Duration::from_secs(5),
                || exporter.count() == 2,
            )
            .await;
        },
    );
}

#[test]
fn a_refused_registration_is_an_extension_error_and_the_layer_flushes_before_returning() {
    in_lambda_process(
        "a_refused_registration_is_an_extension_error_and_the_layer_flushes_before_returning",
        |runtime_api| async move {
            let (api, _events) = ExtensionsApi::start_at(runtime_api, true).await;
            let exporter = Controlled::new(Mode::Answer);
            let tracer = extension_tracer(api.addr, &exporter, Duration::from_secs(2));
            let err = tracer
                .register_extension()
                .await
                .expect_err("Lambda refused it");
            assert!(
                matches!(err, powertools_tracing::Error::Extension(_)),
                "{err:?}"
            );
            assert_eq!(err.error_type(), "TracingExtensionError");
            invoke_with(&tracer, ctx(), json!({}), ok_handler)
                .await
                .unwrap();
            assert_eq!(exporter.count(), 1);
        },
    );
}

#[tokio::test]
async fn before_return_mode_exports_before_returning_even_with_lambda_around() {
    let (api, _events) = ExtensionsApi::start(false).await;
    let exporter = Controlled::new(Mode::Answer);
    let tracer = Tracer::builder()
        .env(env_with(&[(
            "AWS_LAMBDA_RUNTIME_API",
            &api.addr.to_string(),
        )]))
        .flush_mode(FlushMode::BeforeReturn)
        .queued_exporter(exporter.clone())
        .build()
        .unwrap();
    tracer.register_extension().await.unwrap();
    assert!(
        api.registrations.lock().unwrap().is_empty(),
        "BeforeReturn: register_extension does nothing"
    );
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(exporter.count(), 1);
}

#[test]
fn with_concurrent_invocations_the_extension_subscribes_to_nothing_and_exports_in_the_background() {
    in_lambda_process(
        "with_concurrent_invocations_the_extension_subscribes_to_nothing_and_exports_in_the_background",
        |runtime_api| async move {
            let (api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Slow(Duration::from_millis(500)));
            let tracer = Tracer::builder()
                .env(env_with(&[
                    ("AWS_LAMBDA_RUNTIME_API", &api.addr.to_string()),
                    ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
                ]))
                .export_interval(Duration::from_millis(200))
                .queued_exporter(exporter.clone())
                .build()
                .unwrap();
            tracer.register_extension().await.unwrap();
            assert_eq!(api.registrations.lock().unwrap()[0].1["events"], json!([]));
            let started = Instant::now();
            invoke_with(&tracer, ctx(), json!({}), ok_handler)
                .await
                .unwrap();
            assert!(
                started.elapsed() < Duration::from_millis(300),
                "the caller waited {:?}",
                started.elapsed()
            );
            wait_for("the background export", Duration::from_secs(5), || {
                exporter.count() == 1
            })
            .await;
        },
    );
}

#[tokio::test]
async fn register_extension_with_the_runtime_api_in_the_builders_env_returns_instead_of_panicking()
{
    // TracerBuilder::env: "Reads unset options from `env` instead of the process environment";
    // register_extension: "# Errors: [`Error::Extension`] when Lambda refuses the registration".
    let (api, _events) = ExtensionsApi::start(false).await;
    let tracer = Tracer::builder()
        .env(env_with(&[(
            "AWS_LAMBDA_RUNTIME_API",
            &api.addr.to_string(),
        )]))
        .queued_exporter(Controlled::new(Mode::Answer))
        .build()
        .unwrap();
    let outcome = tokio::spawn(async move { tracer.register_extension().await.is_ok() }).await;
    assert!(
        !matches!(&outcome, Err(e) if e.is_panic()),
        "register_extension panicked (the Runtime API client reads the process environment, \
         not the builder's Env)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_runtime_api_that_never_answers_the_registration_fails_it_within_the_init_phase() {
    // A Runtime API that accepts the connection and never answers: the registration must not
    // hold the function's init (10 s on Lambda) forever. It fails with the address named, and
    // the layer flushes before returning, as without the extension.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let tracer = Tracer::builder()
        .env(env_with(&[("AWS_LAMBDA_RUNTIME_API", &addr.to_string())]))
        .queued_exporter(Controlled::new(Mode::Answer))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), tracer.register_extension()).await;
    let error = outcome
        .expect("register_extension waited a minute for a Runtime API that never answers")
        .expect_err("a registration that was never answered succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it took {:?}, Lambda's whole init phase",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(
        message.contains(&addr.to_string()) && message.contains("did not answer"),
        "{message}"
    );
    silent.abort();
}

#[tokio::test]
async fn a_runtime_api_that_refuses_the_connection_is_named_with_the_cause() {
    // Nothing listens: the error named neither the address nor why (`client error (Connect)`),
    // where the runtime's own says `tcp connect error: Connection refused` (found by an attack).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap();
    let tracer = Tracer::builder()
        .env(env_with(&[("AWS_LAMBDA_RUNTIME_API", &addr.to_string())]))
        .queued_exporter(Controlled::new(Mode::Answer))
        .build()
        .unwrap();
    let message = tracer
        .register_extension()
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn a_span_exporter_or_tracing_off_makes_register_extension_do_nothing() {
    let (api, _events) = ExtensionsApi::start(false).await;
    let env = || env_with(&[("AWS_LAMBDA_RUNTIME_API", &api.addr.to_string())]);
    let tracer = Tracer::builder()
        .env(env())
        .span_exporter(Capture::default())
        .build()
        .unwrap();
    tracer.register_extension().await.unwrap();
    let tracer = Tracer::builder().env(env()).disabled(true).build().unwrap();
    tracer.register_extension().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(api.registrations.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Against the repository's OTLP receiver (scripts/with-test-services)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spans_reach_the_test_services_receiver_with_the_x_ray_trace_id() {
    let (Ok(endpoint), Ok(file)) = (
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        std::env::var("POWERTOOLS_TEST_SPANS_FILE"),
    ) else {
        eprintln!("skipped: run under scripts/with-test-services");
        return;
    };
    let tracer = Tracer::builder()
        .env(env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]))
        .service("attack-receiver")
        .build()
        .unwrap();
    let (trace, raw) = trace_header_for(987_654);
    let trace = format!(
        "{:08x}{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32,
        &trace[8..]
    );
    let raw = raw.replacen("5759e988", &trace[..8], 1);
    TracingLayer::new(tracer.clone())
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            annotate("attack_key", "ünïcode");
            Ok::<_, lambda_runtime::Error>(json!({"statusCode": 200}))
        }))
        .oneshot(ctx().with_trace_id(raw).event(json!({
            "version": "2.0", "routeKey": "GET /r/{id}", "rawPath": "/r/1",
            "requestContext": {"http": {"method": "GET", "path": "/r/1"}}
        })))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let found: Vec<Json> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|s| s["traceId"] == trace)
            .collect();
        if let Some(span) = found.first() {
            assert_eq!(span["name"], FUNCTION);
            assert_eq!(span["kind"], 2, "server kind");
            let attrs = span["attributes"].as_array().unwrap();
            let get = |k: &str| {
                attrs
                    .iter()
                    .find(|a| a["key"] == k)
                    .map(|a| a["value"].clone())
            };
            assert_eq!(get("attack_key"), Some(json!({"stringValue": "ünïcode"})));
            assert_eq!(get("http.route"), Some(json!({"stringValue": "/r/{id}"})));
            assert_eq!(get("faas.trigger"), Some(json!({"stringValue": "http"})));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "span of trace {trace} never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn extension_tracer(runtime_api: SocketAddr, exporter: &Controlled, flush: Duration) -> Tracer {
    Tracer::builder()
        .env(env_with(&[(
            "AWS_LAMBDA_RUNTIME_API",
            &runtime_api.to_string(),
        )]))
        .flush_timeout(flush)
        .queued_exporter(exporter.clone())
        .build()
        .unwrap()
}

async fn registered(
    runtime_api: SocketAddr,
    exporter: &Controlled,
    flush: Duration,
) -> (
    ExtensionsApi,
    tokio::sync::mpsc::UnboundedSender<Json>,
    Tracer,
) {
    let (api, events) = ExtensionsApi::start_at(runtime_api, false).await;
    let tracer = extension_tracer(runtime_api, exporter, flush);
    tracer.register_extension().await.unwrap();
    wait_for("the first event/next", Duration::from_secs(5), || {
        api.nexts.lock().unwrap().len() == 1
    })
    .await;
    (api, events, tracer)
}

#[test]
fn an_invocation_dropped_mid_flight_does_not_hold_the_extension_until_its_deadline() {
    in_lambda_process(
        "an_invocation_dropped_mid_flight_does_not_hold_the_extension_until_its_deadline",
        |runtime_api| async move {
            let exporter = Controlled::new(Mode::Answer);
            let (api, events, tracer) =
                registered(runtime_api, &exporter, Duration::from_secs(2)).await;
            events
                .send(invoke_event_within("dropped", Duration::from_secs(6)))
                .unwrap();
            let service = TracingLayer::new(tracer.clone()).layer(service_fn(
                |_e: LambdaEvent<Json>| async {
                    annotate("started", true);
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    Ok::<_, lambda_runtime::Error>(json!(null))
                },
            ));
            // A tower timeout outside the layer drops the invocation's future.
            let dropped = Instant::now();
            let outcome = tokio::time::timeout(
                Duration::from_millis(100),
                call(&service, ctx().with_request_id("dropped").event(json!({}))),
            )
            .await;
            assert!(outcome.is_err());
            let waited = wait_for(
                "the extension to let the dropped invocation go",
                Duration::from_secs(10),
                || api.nexts.lock().unwrap().len() == 2,
            )
            .await;
            // The invocation's deadline is 6 s away: letting it go only then holds the
            // environment (and bills) until the deadline.
            assert!(
                dropped.elapsed() < Duration::from_secs(3),
                "held the environment {waited:?} after the invocation's future was dropped"
            );
            wait_for(
                "the dropped invocation's span",
                Duration::from_secs(3),
                || exporter.count() == 1,
            )
            .await;
        },
    );
}

#[test]
fn a_panicking_handler_does_not_hold_the_extension_until_its_deadline() {
    in_lambda_process(
        "a_panicking_handler_does_not_hold_the_extension_until_its_deadline",
        |runtime_api| async move {
            let exporter = Controlled::new(Mode::Answer);
            let (api, events, tracer) =
                registered(runtime_api, &exporter, Duration::from_secs(2)).await;
            events.send(invoke_event("boom")).unwrap();
            let service = TracingLayer::new(tracer.clone()).layer(service_fn(
                |_e: LambdaEvent<Json>| async {
                    if true {
                        panic!("handler exploded");
                    }
                    Ok::<_, lambda_runtime::Error>(json!(null))
                },
            ));
            let started = Instant::now();
            let joined = tokio::spawn(
                call(&service, ctx().with_request_id("boom").event(json!({})))
                    .with_current_subscriber(),
            )
            .await;
            assert!(joined.unwrap_err().is_panic());
            wait_for(
                "the extension to move on after the panic",
                Duration::from_secs(10),
                || api.nexts.lock().unwrap().len() == 2,
            )
            .await;
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "held {:?}",
                started.elapsed()
            );
            assert_eq!(
                exporter.count(),
                1,
                "the panicked invocation's span is exported"
            );
        },
    );
}

#[test]
fn an_invocation_that_ends_before_the_extension_hears_of_it_is_exported_promptly() {
    in_lambda_process(
        "an_invocation_that_ends_before_the_extension_hears_of_it_is_exported_promptly",
        |runtime_api| async move {
            let exporter = Controlled::new(Mode::Answer);
            let (api, events, tracer) =
                registered(runtime_api, &exporter, Duration::from_secs(2)).await;
            let started = Instant::now();
            invoke_with(
                &tracer,
                ctx().with_request_id("early"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            assert!(started.elapsed() < Duration::from_millis(300));
            events.send(invoke_event("early")).unwrap();
            wait_for("the export", Duration::from_secs(3), || {
                exporter.count() == 1
            })
            .await;
            wait_for("the next event", Duration::from_secs(3), || {
                api.nexts.lock().unwrap().len() == 2
            })
            .await;
            // And the sequence goes on: a second invocation, announced first this time.
            events.send(invoke_event("second")).unwrap();
            invoke_with(
                &tracer,
                ctx().with_request_id("second"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            wait_for("the second export", Duration::from_secs(3), || {
                exporter.count() == 2
            })
            .await;
            wait_for("the third event/next", Duration::from_secs(3), || {
                api.nexts.lock().unwrap().len() == 3
            })
            .await;
        },
    );
}

#[test]
fn with_the_extension_a_hanging_exporter_holds_the_environment_at_most_one_flush_timeout() {
    in_lambda_process(
        "with_the_extension_a_hanging_exporter_holds_the_environment_at_most_one_flush_timeout",
        |runtime_api| async move {
            let exporter = Controlled::new(Mode::Hang);
            let flush = Duration::from_millis(300);
            let (api, events, tracer) = registered(runtime_api, &exporter, flush).await;
            for (i, id) in ["h1", "h2", "h3"].into_iter().enumerate() {
                events.send(invoke_event(id)).unwrap();
                let started = Instant::now();
                invoke_with(&tracer, ctx().with_request_id(id), json!({}), ok_handler)
                    .await
                    .unwrap();
                assert!(
                    started.elapsed() < Duration::from_millis(200),
                    "{id}: the caller waited"
                );
                let held = wait_for("the next event/next", Duration::from_secs(10), || {
                    api.nexts.lock().unwrap().len() == i + 2
                })
                .await;
                let bound = if i == 0 {
                    flush + Duration::from_millis(500)
                } else {
                    Duration::from_millis(250)
                };
                assert!(held < bound, "{id}: held the environment {held:?}");
            }
            assert!(tracer.dropped_spans() >= 2);
        },
    );
}

/// Writes the names of the spans it exports to a file (they must outlive the process).
#[derive(Debug, Clone)]
struct FileExporter(std::path::PathBuf);

impl SpanExporter for FileExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .unwrap();
        for span in batch {
            writeln!(file, "{}", span.name).unwrap();
        }
        std::future::ready(Ok(()))
    }
}

/// A tracer in a child process under managed instances (`AWS_LAMBDA_MAX_CONCURRENCY`: export in
/// the background, here never before SIGTERM) whose runtime API is `runtime_api`.
fn concurrent_process_tracer(runtime_api: SocketAddr) -> powertools_tracing::TracerBuilder {
    Tracer::builder()
        .env(env_with(&[
            ("AWS_LAMBDA_RUNTIME_API", &runtime_api.to_string()),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
        ]))
        .export_interval(Duration::from_secs(600))
}

/// The emulated Extensions API at `runtime_api`, and a tracer under managed instances that
/// writes the names of the spans it exports to `path`, its extension registered.
async fn registered_file_tracer(
    runtime_api: SocketAddr,
    path: std::path::PathBuf,
) -> (
    ExtensionsApi,
    tokio::sync::mpsc::UnboundedSender<Json>,
    Tracer,
) {
    let (api, events) = ExtensionsApi::start_at(runtime_api, false).await;
    let tracer = concurrent_process_tracer(runtime_api)
        .queued_exporter(FileExporter(path))
        .build()
        .unwrap();
    tracer.register_extension().await.unwrap();
    (api, events, tracer)
}

/// Sends this process SIGTERM, as Lambda does at shutdown, and waits to be ended by it.
async fn terminate_self() {
    std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    panic!("still running 8 s after SIGTERM");
}

#[test]
fn register_extension_called_twice_at_once_registers_once() {
    // "Calling it again does nothing": two calls at once both passed the check before either
    // stored its mode, and registered two extensions (found by a reviewer).
    in_lambda_process(
        "register_extension_called_twice_at_once_registers_once",
        |runtime_api| async move {
            let (api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let tracer = extension_tracer(
                api.addr,
                &Controlled::new(Mode::Answer),
                Duration::from_secs(2),
            );
            let (first, second) =
                tokio::join!(tracer.register_extension(), tracer.register_extension());
            first.unwrap();
            second.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let registrations = api.registrations.lock().unwrap().len();
            assert_eq!(registrations, 1, "registered {registrations} times");
        },
    );
}

#[test]
fn sigterm_exports_what_is_left_and_exits_the_process() {
    const NAME: &str = "sigterm_exports_what_is_left_and_exits_the_process";
    if let Ok(out) = std::env::var("ATTACK_OUT") {
        in_lambda_process(NAME, |runtime_api| async move {
            let (_api, _events, tracer) = registered_file_tracer(runtime_api, out.into()).await;
            invoke_with(&tracer, ctx(), json!({}), ok_handler)
                .await
                .unwrap();
            terminate_self().await;
        });
        return;
    }
    let out = std::env::temp_dir().join(format!("attack-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let (output, took) = run_child(NAME, &[("ATTACK_OUT", out.to_str().unwrap())]);
    let exported = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!(
        "child {:?} after {took:?}, exported {exported:?}",
        output.status
    );
    assert!(
        exported.lines().any(|l| l == FUNCTION),
        "nothing exported at SIGTERM ({:?}, {took:?}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        took < Duration::from_secs(6),
        "the process did not exit on SIGTERM ({took:?})"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("still running"));
}

#[test]
fn sigterm_leaves_the_function_s_own_shutdown_hook_time_to_finish() {
    // The README's way to combine the tracer with `lambda_runtime`'s graceful shutdown: the
    // function's hook (registered as `spawn_graceful_shutdown_handler` does) shuts the tracer down,
    // does its own cleanup, then exits. The tracer's own SIGTERM handler exited the process as
    // soon as its flush was done, cutting the hook short (found by a reviewer: 5 runs of 5).
    const NAME: &str = "sigterm_leaves_the_function_s_own_shutdown_hook_time_to_finish";
    if let Ok(out) = std::env::var("ATTACK_OUT") {
        in_lambda_process(NAME, |runtime_api| async move {
            let (_api, _events, tracer) =
                registered_file_tracer(runtime_api, format!("{out}.spans").into()).await;
            let hook_tracer = tracer.clone();
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            tokio::spawn(async move {
                terminate.recv().await;
                std::fs::write(&out, "hook started\n").unwrap();
                hook_tracer.shutdown().await;
                // The function's own cleanup (closing connections, say)
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::fs::write(&out, "hook started\nhook finished\n").unwrap();
                std::process::exit(0);
            });
            invoke_with(&tracer, ctx(), json!({}), ok_handler)
                .await
                .unwrap();
            terminate_self().await;
        });
        return;
    }
    let out = std::env::temp_dir().join(format!("attack-sigterm-hook-{}", std::process::id()));
    let spans = format!("{}.spans", out.display());
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&spans);
    let (output, took) = run_child(NAME, &[("ATTACK_OUT", out.to_str().unwrap())]);
    let hook = std::fs::read_to_string(&out).unwrap_or_default();
    let exported = std::fs::read_to_string(&spans).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("still running"), "{stdout}");
    // Then the hook ran to its end, and the spans were exported
    assert!(
        hook.contains("hook finished"),
        "the function's shutdown hook was cut short ({took:?}): {hook:?}"
    );
    assert!(exported.lines().any(|l| l == FUNCTION), "{exported:?}");
}

/// The README's function installs `tracer.subscriber()` alone: the tracer's own warnings (a dead
/// collector, dropped spans) must reach the function's output through it. They went nowhere: it
/// had only the OpenTelemetry layer, which takes spans. (Found by an attack from the docs.)
#[test]
fn the_tracers_own_subscriber_writes_its_warnings() {
    const NAME: &str = "the_tracers_own_subscriber_writes_its_warnings";
    if std::env::var("ATTACK_SUBSCRIBER_WARNINGS").is_ok() {
        let tracer = Tracer::builder()
            .env(Env::from_pairs([("POWERTOOLS_SERVICE_NAME", "orders")]))
            .endpoint("http://127.0.0.1:9/v1/traces")
            .flush_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        tracing::subscriber::set_global_default(tracer.subscriber()).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                invoke_with(&tracer, ctx(), json!({}), ok_handler)
                    .await
                    .unwrap();
                tracer.flush().await;
            });
        assert!(tracer.dropped_spans() > 0);
        return;
    }
    let (output, _) = run_child(NAME, &[("ATTACK_SUBSCRIBER_WARNINGS", "1")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\n{stderr}", output.status);
    let warning = stderr
        .lines()
        .find(|line| line.contains("WARN") && line.contains("powertools_tracing"))
        .unwrap_or_else(|| panic!("no warning of the tracer's: {stderr}"));
    assert!(
        warning.contains("127.0.0.1:9"),
        "names the endpoint: {warning}"
    );
}

/// Prints each warning's fields on a line of its own (for a child process's output).
struct PrintWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PrintWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::from("WARNING"));
            event.record(&mut fields);
            println!("{}", fields.0);
        }
    }
}

#[test]
fn sigterm_with_a_hung_collector_exits_before_lambda_kills_the_process_and_counts_the_drops() {
    // Lambda gives the runtime 500 ms after SIGTERM when an internal extension is registered,
    // then kills it: a flush that waited its whole flush timeout (2 s) would die with its spans,
    // and without the warning that counts them.
    const NAME: &str =
        "sigterm_with_a_hung_collector_exits_before_lambda_kills_the_process_and_counts_the_drops";
    if let Ok(out) = std::env::var("ATTACK_OUT") {
        in_lambda_process(NAME, |runtime_api| async move {
            let (_api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let tracer = concurrent_process_tracer(runtime_api)
                .flush_timeout(Duration::from_secs(2))
                .queued_exporter(Controlled::new(Mode::Hang))
                .build()
                .unwrap();
            use tracing_subscriber::layer::SubscriberExt;
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry()
                    .with(tracer.otel_layer())
                    .with(PrintWarnings),
            )
            .unwrap();
            tracer.register_extension().await.unwrap();
            invoke_with(&tracer, ctx(), json!({}), ok_handler)
                .await
                .unwrap();
            let sent = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            std::fs::write(&out, sent.as_millis().to_string()).unwrap();
            terminate_self().await;
        });
        return;
    }
    let out = std::env::temp_dir().join(format!("attack-sigterm-hung-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let (output, _) = run_child(NAME, &[("ATTACK_OUT", out.to_str().unwrap())]);
    let exited = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let sent: u128 = std::fs::read_to_string(&out)
        .expect("the child wrote when it sent SIGTERM")
        .parse()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{:?}\n{stdout}", output.status);
    assert!(!stdout.contains("still running"), "{stdout}");
    // Then it gave up on the collector and exited by itself, well before the flush timeout
    // (the bound is loose for a busy machine: the flush's own is 400 ms)
    let took = exited.as_millis() - sent;
    assert!(took < 1500, "exited {took} ms after SIGTERM");
    // And the span it could not export is counted in a warning
    assert!(
        stdout.lines().any(|line| line.contains("WARNING")
            && line.contains("dropped_spans=1")
            && line.contains("exit")),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&out);
}

// ---------------------------------------------------------------------------------------------
// More response and HTTP edge cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_response_that_cannot_serialize_never_fails_or_panics_the_layer() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service = TracingLayer::new(tracer).layer(service_fn(|_e: LambdaEvent<Json>| async {
        let mut map = HashMap::new();
        map.insert(vec![1_u8, 2], 3_u8); // serde_json: "key must be a string"
        Ok::<_, lambda_runtime::Error>(map)
    }));
    let result = tokio::spawn(call(&service, ctx().event(json!({})))).await;
    let response = result.expect("the layer must not panic");
    assert_eq!(response.unwrap().len(), 1);
    // The handler's response is passed on unchanged; the span says the runtime cannot send it
    // (Lambda reports the invocation as failed).
    let span = capture.one_invocation();
    assert!(is_error(&span), "{:?}", span.status);
}

/// A handler's `set_attribute` with a key the span already has replaces its value, as the
/// OpenTelemetry specification says, instead of adding a second one: the SDK appends, and the
/// invocation span went out with two `ColdStart`, two `aws.xray.annotations`, two
/// `faas.invocation_id` (OTLP requires unique keys; which one X-Ray indexes is undefined; found
/// by an attack). The last value wins: the handler's over the layer's first attributes, the
/// layer's response and annotation list over the handler's, an annotation over an attribute.
#[tokio::test]
async fn a_handler_s_attribute_with_a_key_the_span_has_replaces_it_instead_of_repeating_it() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service = TracingLayer::new(tracer).layer(service_fn(|_e: LambdaEvent<Json>| async {
        let context = opentelemetry::Context::current();
        let span = context.span();
        for (key, value) in [
            ("ColdStart", "hacked"),
            ("faas.invocation_id", "not-the-id"),
            ("aws.xray.annotations", "[]"),
            ("powertools.response", "forged"),
            ("order_id", "attribute"),
            ("order_id", "attribute again"),
            ("region", "eu"),
        ] {
            span.set_attribute(opentelemetry::KeyValue::new(key, value));
        }
        assert!(annotate("order_id", "o-42"));
        Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
    }));
    service.oneshot(ctx().event(json!({}))).await.unwrap();
    let span = capture.one_invocation();
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), count, "a key twice: {:#?}", span.attributes);
    assert_eq!(attr_str(&span, "ColdStart").as_deref(), Some("hacked"));
    assert_eq!(
        attr_str(&span, "faas.invocation_id").as_deref(),
        Some("not-the-id")
    );
    assert_eq!(
        attr_str(&span, "powertools.response").as_deref(),
        Some(r#"{"accepted":true}"#)
    );
    assert_eq!(attr_str(&span, "order_id").as_deref(), Some("o-42"));
    assert_eq!(attr_str(&span, "region").as_deref(), Some("eu"));
    match attr(&span, "aws.xray.annotations") {
        Some(Value::Array(Array::String(listed))) => {
            assert!(
                listed.iter().any(|key| key.as_str() == "order_id"),
                "{listed:?}"
            );
        }
        other => panic!("the layer's list of annotations, not {other:?}"),
    }
}

/// A handler that sets only a key the layer sets as the invocation ends (the status code, the
/// captured response) still gets it once: a first version took every such key past the layer's
/// first attributes for the layer's, and left the two values (found by a review).
#[tokio::test]
async fn a_handler_s_attribute_with_a_key_the_layer_sets_at_the_end_is_kept_once() {
    for key in ["http.response.status_code", "powertools.response"] {
        let capture = Capture::default();
        let tracer = capture_tracer(&capture);
        let service =
            TracingLayer::new(tracer).layer(service_fn(move |_e: LambdaEvent<Json>| async move {
                let context = opentelemetry::Context::current();
                context
                    .span()
                    .set_attribute(opentelemetry::KeyValue::new(key, 418_i64));
                Ok::<_, lambda_runtime::Error>(json!({"statusCode": 200}))
            }));
        service.oneshot(ctx().event(get_x_event())).await.unwrap();
        let span = capture.one_invocation();
        let values: Vec<&Value> = span
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
            .collect();
        assert_eq!(values.len(), 1, "{key}: {:#?}", span.attributes);
        // The layer's, set after the handler's: the last value.
        assert_ne!(values[0], &Value::I64(418), "{key}");
    }
}

/// With response capture off, a response the runtime cannot send still puts the span in error,
/// as a handler's error does whatever error capture says: the span said success for an
/// invocation Lambda reports as failed (found by an attack).
#[tokio::test]
async fn a_response_that_cannot_serialize_is_an_error_with_response_capture_off() {
    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .capture_response(false)
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    let service = TracingLayer::new(tracer).layer(service_fn(|_e: LambdaEvent<Json>| async {
        let mut map = HashMap::new();
        map.insert(vec![1_u8, 2], 3_u8); // serde_json: "key must be a string"
        Ok::<_, lambda_runtime::Error>(map)
    }));
    let response = service.oneshot(ctx().event(json!({}))).await.unwrap();
    assert_eq!(response.len(), 1);
    let span = capture.one_invocation();
    assert_eq!(
        span.status,
        Status::error("the response does not serialize"),
        "the status, without serde's words (they may quote the response)"
    );
    assert!(attr(&span, "powertools.response").is_none());
    assert!(span.events.is_empty(), "{:?}", span.events);
}

/// With response capture on, a response whose own `Serialize` refuses it puts the span in error
/// naming serde_json's reason, but not the implementation's own message, which may quote the
/// response (found by an attack from the docs: a card number went to the span's status).
#[tokio::test]
async fn a_response_s_own_serialize_refusal_is_not_quoted_on_the_span() {
    struct Card;
    impl serde::Serialize for Card {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "cannot serialize 4111111111111111",
            ))
        }
    }
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service = TracingLayer::new(tracer).layer(service_fn(|_e: LambdaEvent<Json>| async {
        Ok::<_, lambda_runtime::Error>(Card)
    }));
    let _ = service.oneshot(ctx().event(json!({}))).await;
    let span = capture.one_invocation();
    let shown = format!("{:?} {:?}", span.status, span.events);
    assert!(is_error(&span), "{shown}");
    // The whole number: a timestamp's digits may hold `4111`.
    assert!(!shown.contains("4111111111111111"), "{shown}");
    assert!(
        shown.contains("the response does not serialize: its Serialize implementation"),
        "{shown}"
    );
}

#[tokio::test]
async fn status_code_is_read_from_a_response_larger_than_the_capture_and_without_capture() {
    let big = json!({"body": "x".repeat(100_000), "statusCode": 503});
    let span = http_span(get_x_event(), big.clone()).await;
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(&Value::I64(503))
    );
    assert!(is_error(&span));

    let capture = Capture::default();
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .capture_response(false)
        .span_exporter(capture.clone())
        .build()
        .unwrap();
    let response = Arc::new(big);
    TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let response = response.clone();
            async move { Ok::<_, lambda_runtime::Error>((*response).clone()) }
        }))
        .oneshot(ctx().event(get_x_event()))
        .await
        .unwrap();
    let span = capture.one_invocation();
    assert!(attr(&span, "powertools.response").is_none());
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(&Value::I64(503))
    );
    assert!(is_error(&span));
}

#[tokio::test]
async fn a_cancelled_invocation_still_ends_its_span_with_its_annotations() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let service = TracingLayer::new(tracer).layer(service_fn(|_e: LambdaEvent<Json>| async {
        annotate("got_this_far", true);
        tokio::time::sleep(Duration::from_secs(20)).await;
        Ok::<_, lambda_runtime::Error>(json!(null))
    }));
    let outcome = tokio::time::timeout(
        Duration::from_millis(50),
        call(&service, ctx().event(json!({}))),
    )
    .await;
    assert!(outcome.is_err());
    let span = capture.one_invocation();
    assert_eq!(attr(&span, "got_this_far"), Some(&Value::Bool(true)));
}

#[tokio::test]
async fn export_timeout_bounds_one_request_below_the_flush_timeout() {
    let rx = Receiver::start(Rx::Hang).await;
    for builder in [
        Tracer::builder()
            .env(env_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base())]))
            .export_timeout(Duration::from_millis(200)),
        Tracer::builder().env(env_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200"),
        ])),
        Tracer::builder().env(env_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base()),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "200"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ])),
    ] {
        let tracer = builder
            .flush_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        invoke_with(&tracer, ctx(), json!({}), ok_handler)
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "one export request took {took:?} (bound 200 ms)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent invocations (Lambda Managed Instances): background export
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_mode_exports_every_span_in_the_background_without_losing_any() {
    in_lambda_process(
        "concurrent_mode_exports_every_span_in_the_background_without_losing_any",
        |runtime_api| async move {
            const N: usize = 100;
            let (_api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Slow(Duration::from_millis(20)));
            let tracer = Tracer::builder()
                .env(env_with(&[
                    ("AWS_LAMBDA_RUNTIME_API", &runtime_api.to_string()),
                    ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
                ]))
                .export_interval(Duration::from_millis(100))
                .queued_exporter(exporter.clone())
                .build()
                .unwrap();
            let _guard = install(&tracer);
            tracer.register_extension().await.unwrap();
            let service = TracingLayer::new(tracer.clone()).layer(service_fn(
                |e: LambdaEvent<Json>| async move {
                    let req = e.payload["req"].as_u64().unwrap() as usize;
                    step_span(req, 0).await;
                    step_span(req, 1).await;
                    Ok::<_, lambda_runtime::Error>(json!(req))
                },
            ));
            let started = Instant::now();
            let tasks: Vec<_> = (0..N)
                .map(|i| {
                    tokio::spawn(
                        call(
                            &service,
                            ctx()
                                .with_request_id(format!("m{i}"))
                                .event(json!({"req": i})),
                        )
                        .with_current_subscriber(),
                    )
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "invocations waited {:?}",
                started.elapsed()
            );
            // 1 invocation + 2 step spans + 1 inner span each.
            wait_for(
                "every span exported in the background",
                Duration::from_secs(10),
                || exporter.count() == N * 4,
            )
            .await;
            assert_eq!(tracer.dropped_spans(), 0);
        },
    );
}

#[test]
fn concurrent_mode_exports_a_full_batch_of_512_without_waiting_for_the_interval() {
    in_lambda_process(
        "concurrent_mode_exports_a_full_batch_of_512_without_waiting_for_the_interval",
        |runtime_api| async move {
            let (_api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Answer);
            let tracer = Tracer::builder()
                .env(env_with(&[
                    ("AWS_LAMBDA_RUNTIME_API", &runtime_api.to_string()),
                    ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
                ]))
                .export_interval(Duration::from_secs(120))
                .queued_exporter(exporter.clone())
                .build()
                .unwrap();
            let _guard = install(&tracer);
            tracer.register_extension().await.unwrap();
            let service = TracingLayer::new(tracer.clone()).layer(service_fn(
                |_e: LambdaEvent<Json>| async {
                    for i in 0..99 {
                        let _s = tracing::info_span!("burst", i).entered();
                    }
                    Ok::<_, lambda_runtime::Error>(json!(null))
                },
            ));
            for i in 0..6 {
                call(
                    &service,
                    ctx().with_request_id(format!("b{i}")).event(json!({})),
                )
                .await
                .unwrap();
            }
            // 600 spans ended, the interval is 2 minutes away: a full batch must already go.
            wait_for(
                "a full batch of 512 exported early",
                Duration::from_secs(5),
                || exporter.count() >= 512,
            )
            .await;
        },
    );
}

#[test]
fn concurrent_mode_with_a_hanging_exporter_never_makes_invocations_wait() {
    in_lambda_process(
        "concurrent_mode_with_a_hanging_exporter_never_makes_invocations_wait",
        |runtime_api| async move {
            let (_api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            let exporter = Controlled::new(Mode::Hang);
            let tracer = Tracer::builder()
                .env(env_with(&[
                    ("AWS_LAMBDA_RUNTIME_API", &runtime_api.to_string()),
                    ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
                ]))
                .export_interval(Duration::from_millis(50))
                .flush_timeout(Duration::from_millis(200))
                .queued_exporter(exporter.clone())
                .build()
                .unwrap();
            tracer.register_extension().await.unwrap();
            let started = Instant::now();
            for i in 0..30 {
                let one = Instant::now();
                invoke_with(
                    &tracer,
                    ctx().with_request_id(format!("h{i}")),
                    json!({}),
                    ok_handler,
                )
                .await
                .unwrap();
                assert!(
                    one.elapsed() < Duration::from_millis(100),
                    "invocation {i} waited {:?}",
                    one.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(started.elapsed() < Duration::from_secs(3));
            wait_for("drops to be counted", Duration::from_secs(3), || {
                tracer.dropped_spans() > 0
            })
            .await;
        },
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS endpoints and certificates
// ---------------------------------------------------------------------------------------------

struct TlsReceiver {
    addr: SocketAddr,
    pem: std::path::PathBuf,
    requests: Arc<AtomicUsize>,
}

async fn tls_receiver(tag: &str) -> TlsReceiver {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = std::env::temp_dir().join(format!("attack-{tag}-{}.pem", std::process::id()));
    std::fs::write(&pem, certified.cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(certified.cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        )),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            counter.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsReceiver {
        addr,
        pem,
        requests,
    }
}

#[tokio::test]
async fn https_endpoint_trusts_the_given_certificate_only() {
    let rx = tls_receiver("trusted").await;
    let other = tls_receiver("other").await;
    let endpoint = format!("https://localhost:{}/v1/traces", rx.addr.port());
    // Builder certificate.
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .endpoint(&endpoint)
        .certificate(&rx.pem)
        .flush_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        1,
        "exported over TLS with the given certificate"
    );
    // The traces variable wins over the generic one.
    let tracer = Tracer::builder()
        .env(env_with(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                rx.pem.to_str().unwrap(),
            ),
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                other.pem.to_str().unwrap(),
            ),
        ]))
        .flush_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        2,
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE wins"
    );
    // Another certificate: the handshake fails, the invocation does not, within the flush bound.
    let tracer = Tracer::builder()
        .env(env_with(&[]))
        .endpoint(&endpoint)
        .certificate(&other.pem)
        .flush_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    invoke_with(&tracer, ctx(), json!({}), ok_handler)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(1200));
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        2,
        "an untrusted server got the spans"
    );
    assert!(tracer.dropped_spans() >= 1);
}

// ---------------------------------------------------------------------------------------------
// More: concurrent flushes against a hung collector, annotations after the end
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_against_a_hung_collector_cost_one_flush_timeout_in_all() {
    let exporter = Controlled::new(Mode::Hang);
    let timeout = Duration::from_millis(400);
    let tracer = queued(&exporter, timeout);
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(ok_handler as Handler));
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(
                call(
                    &service,
                    ctx().with_request_id(format!("x{i}")).event(json!({})),
                )
                .with_current_subscriber(),
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < timeout * 2 + Duration::from_millis(300),
        "20 concurrent invocations took {took:?}"
    );
    let started = Instant::now();
    let flushes: Vec<_> = (0..10)
        .map(|_| {
            let tracer = tracer.clone();
            tokio::spawn(async move { tracer.flush().await })
        })
        .collect();
    for flush in flushes {
        flush.await.unwrap();
    }
    assert!(
        started.elapsed() < timeout + Duration::from_millis(300),
        "10 flushes took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn annotate_after_the_invocation_ended_returns_false() {
    use opentelemetry::context::FutureExt as _;
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let service = TracingLayer::new(tracer).layer(service_fn(move |_e: LambdaEvent<Json>| {
        let tx = tx.lock().unwrap().take().unwrap();
        async move {
            tokio::spawn(
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(annotate("too_late", true));
                }
                .with_current_context(),
            );
            Ok::<_, lambda_runtime::Error>(json!(null))
        }
    }));
    call(&service, ctx().event(json!({}))).await.unwrap();
    let span = capture.one_invocation();
    let late = rx.await.unwrap();
    assert!(attr(&span, "too_late").is_none());
    assert!(
        !late,
        "annotate returned true but recorded nothing: the invocation had ended"
    );
}

#[tokio::test]
async fn exception_message_is_bounded_like_the_response_under_x_rays_64_kb_segment_limit() {
    // The response is capped at 16 KB because "X-Ray's segment limit is 64 KB"; an error message
    // of a megabyte on the same span would make X-Ray reject the whole segment.
    let (span, _) = failing::<lambda_runtime::Error>("m".repeat(1_000_000).into(), true).await;
    let (_, message) = exception(&span).unwrap();
    assert!(is_error(&span));
    assert!(
        message.len() <= 64 * 1024,
        "exception.message is {} bytes",
        message.len()
    );
}

#[tokio::test]
async fn undecided_sampling_never_fails_the_invocation() {
    // Sampled=? or no Sampled: what is exported is not documented; the invocation must succeed
    // and any span must join the header's trace.
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    for raw in [header("?"), format!("Root={ROOT};Parent={PARENT}")] {
        let response = invoke_with(&tracer, ctx().with_trace_id(raw), json!({}), ok_handler)
            .await
            .unwrap();
        assert_eq!(response, json!({"ok": true}));
    }
    for span in capture.invocations() {
        assert_eq!(
            span.span_context.trace_id(),
            TraceId::from_hex(TRACE_HEX).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// AWS SDK calls as client spans, propagation inside filtered spans, _X_AMZN_TRACE_ID
// ---------------------------------------------------------------------------------------------

/// A fake DynamoDB that answers every call with `status` and `body`.
async fn fake_dynamodb(status: u16, body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/x-amz-json-1.0")
                                .header("x-amzn-requestid", "FAKE")
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn dynamodb(endpoint: String) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .interceptor(powertools_tracing::AwsSdkSpans)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn sdk_call_span(endpoint: String) -> (SpanData, SpanData) {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let client = dynamodb(endpoint);
    TracingLayer::new(tracer)
        .layer(service_fn(move |_e: LambdaEvent<Json>| {
            let client = client.clone();
            async move {
                let _ = client.describe_table().table_name("orders").send().await;
                Ok::<_, lambda_runtime::Error>(json!(null))
            }
        }))
        .oneshot(ctx().with_trace_id(header("1")).event(json!({})))
        .await
        .unwrap();
    let invocation = capture.one_invocation();
    let client: Vec<SpanData> = capture
        .spans()
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(
        client.len(),
        1,
        "one client span per SDK call: {:#?}",
        capture
            .spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    (invocation, client.into_iter().next().unwrap())
}

#[tokio::test]
async fn aws_sdk_calls_become_client_spans_under_the_invocation() {
    let addr = fake_dynamodb(200, r#"{"Table":{"TableName":"orders"}}"#).await;
    let (invocation, call) = sdk_call_span(format!("http://{addr}")).await;
    assert_eq!(call.parent_span_id, invocation.span_context.span_id());
    assert_eq!(
        call.span_context.trace_id(),
        invocation.span_context.trace_id()
    );
    assert_eq!(attr_str(&call, "rpc.system").as_deref(), Some("aws-api"));
    assert_eq!(attr_str(&call, "rpc.service").as_deref(), Some("DynamoDB"));
    assert_eq!(
        attr_str(&call, "rpc.method").as_deref(),
        Some("DescribeTable")
    );
    assert_eq!(
        attr(&call, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert!(!is_error(&call));
}

#[tokio::test]
async fn a_failed_aws_sdk_call_reports_the_service_error_not_a_debug_dump() {
    let addr = fake_dynamodb(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"Requested resource not found"}"#,
    )
    .await;
    let (_, call) = sdk_call_span(format!("http://{addr}")).await;
    let Status::Error { description } = &call.status else {
        panic!("status {:?}", call.status)
    };
    assert!(
        description.contains("ResourceNotFoundException"),
        "{description}"
    );
    assert!(
        description.contains("Requested resource not found"),
        "{description}"
    );
    assert!(
        !description.contains("ServiceError {") && !description.contains("raw:"),
        "{description}"
    );
    assert_eq!(
        attr(&call, "http.response.status_code"),
        Some(&Value::I64(400))
    );
}

#[tokio::test]
async fn an_aws_sdk_call_that_never_got_an_answer_reports_the_error_and_its_sources() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, call) = sdk_call_span(format!("http://{dead}")).await;
    let Status::Error { description } = &call.status else {
        panic!("status {:?}", call.status)
    };
    assert!(
        description.to_lowercase().contains("refused"),
        "{description}"
    );
    assert!(
        !description.contains("DispatchFailure("),
        "Debug dump: {description}"
    );
}

#[tokio::test]
async fn inject_trace_headers_inside_a_filtered_span_still_propagates_the_invocation() {
    let capture = Capture::default();
    let tracer = capture_tracer(&capture);
    let _guard = install(&tracer);
    let response = TracingLayer::new(tracer)
        .layer(service_fn(|_e: LambdaEvent<Json>| async {
            let _conn = tracing::info_span!(target: "hyper", "connection").entered();
            let mut headers = http::HeaderMap::new();
            inject_trace_headers(&mut headers);
            let tp = headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, lambda_runtime::Error>(json!(tp))
        }))
        .oneshot(ctx().with_trace_id(header("1")).event(json!({})))
        .await
        .unwrap();
    let tp = response
        .as_str()
        .expect("traceparent injected inside a filtered span");
    assert!(tp.starts_with(&format!("00-{TRACE_HEX}-")), "{tp}");
    let span_id = &tp[36..52];
    assert_ne!(span_id, "0000000000000000", "{tp}");
    let known: HashSet<String> = capture
        .spans()
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    assert!(
        known.contains(span_id),
        "traceparent names a span that is never exported: {tp}"
    );
}

#[test]
fn the_process_wide_x_amzn_trace_id_is_never_the_parent() {
    const NAME: &str = "the_process_wide_x_amzn_trace_id_is_never_the_parent";
    const OTHER: &str = "1-11111111-222222222222222222222222";
    if std::env::var("ATTACK_RUNTIME_API").is_ok() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let capture = Capture::default();
            let tracer = capture_tracer(&capture);
            invoke_with(
                &tracer,
                ctx().with_trace_id(header("1")).with_request_id("own"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            invoke_with(
                &tracer,
                ctx().without_trace_id().with_request_id("none"),
                json!({}),
                ok_handler,
            )
            .await
            .unwrap();
            let other = TraceId::from_hex("11111111222222222222222222222222").unwrap();
            for span in capture.invocations() {
                assert_ne!(
                    span.span_context.trace_id(),
                    other,
                    "joined _X_AMZN_TRACE_ID"
                );
                if attr_str(&span, "faas.invocation_id").as_deref() == Some("own") {
                    assert_eq!(
                        span.span_context.trace_id(),
                        TraceId::from_hex(TRACE_HEX).unwrap()
                    );
                }
            }
        });
        return;
    }
    let (output, _) = run_child(
        NAME,
        &[(
            "_X_AMZN_TRACE_ID",
            &format!("Root={OTHER};Parent=3333333333333333;Sampled=1"),
        )],
    );
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn malformed_max_concurrency_is_an_error_naming_the_variable() {
    match Tracer::builder()
        .env(env_with(&[("AWS_LAMBDA_MAX_CONCURRENCY", "lots")]))
        .build()
    {
        Ok(_) => panic!("AWS_LAMBDA_MAX_CONCURRENCY=lots accepted"),
        Err(err) => assert!(
            err.to_string().contains("AWS_LAMBDA_MAX_CONCURRENCY"),
            "{err}"
        ),
    }
}

#[test]
fn when_the_extensions_api_fails_after_registration_spans_are_still_exported() {
    in_lambda_process(
        "when_the_extensions_api_fails_after_registration_spans_are_still_exported",
        |runtime_api| async move {
            let (api, _events) = ExtensionsApi::start_at(runtime_api, false).await;
            api.fail_next.store(true, Ordering::SeqCst);
            let exporter = Controlled::new(Mode::Answer);
            let tracer = extension_tracer(runtime_api, &exporter, Duration::from_secs(1));
            tracer.register_extension().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let nexts = api.nexts.lock().unwrap().len();
            assert!(
                nexts < 50,
                "the extension hot-loops on a failing Extensions API: {nexts} requests in 300 ms"
            );
            for i in 0..3 {
                let started = Instant::now();
                invoke_with(
                    &tracer,
                    ctx().with_request_id(format!("f{i}")),
                    json!({}),
                    ok_handler,
                )
                .await
                .unwrap();
                assert!(
                    started.elapsed() < Duration::from_millis(1500),
                    "invocation {i} took {:?}",
                    started.elapsed()
                );
            }
            wait_for(
                "the spans of a tracer whose extension died",
                Duration::from_secs(5),
                || exporter.count() == 3,
            )
            .await;
        },
    );
}

#[test]
fn the_extension_works_on_a_current_thread_runtime() {
    const NAME: &str = "the_extension_works_on_a_current_thread_runtime";
    let Ok(addr) = std::env::var("ATTACK_RUNTIME_API") else {
        let (output, _) = run_child(NAME, &[]);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    };
    let runtime_api: SocketAddr = addr.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let exporter = Controlled::new(Mode::Slow(Duration::from_millis(300)));
        let (api, events, tracer) =
            registered(runtime_api, &exporter, Duration::from_secs(2)).await;
        for (i, id) in ["c1", "c2", "c3"].into_iter().enumerate() {
            events.send(invoke_event(id)).unwrap();
            let started = Instant::now();
            invoke_with(&tracer, ctx().with_request_id(id), json!({}), ok_handler)
                .await
                .unwrap();
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "{id}: the caller waited {:?}",
                started.elapsed()
            );
            wait_for("the next event/next", Duration::from_secs(5), || {
                api.nexts.lock().unwrap().len() == i + 2
            })
            .await;
            assert_eq!(
                exporter.count(),
                i + 1,
                "{id}: asked for the next event before its spans were out"
            );
        }
    });
}

/// A `Diagnostic` whose `error_type` is a megabyte: the span's `exception.type` is cut to 1 KB on
/// a character boundary, with error capture on and off (it was recorded whole: a span past
/// X-Ray's 64 KB segment limit is lost; found by a review).
#[tokio::test]
async fn an_exception_type_is_cut_to_a_kilobyte() {
    for capture_error in [true, false] {
        let error_type = format!("é{}", "T".repeat(1024 * 1024));
        let (span, _) = failing(
            Diagnostic {
                error_type: error_type.clone(),
                error_message: "declined".to_owned(),
            },
            capture_error,
        )
        .await;
        let (kind, _) = exception(&span).expect("an exception event");
        assert!(
            kind.len() <= 1024 && error_type.starts_with(&kind) && kind.len() > 1000,
            "capture {capture_error}: {} bytes",
            kind.len()
        );
    }
}
