//! Exporting over OTLP/HTTP with the tracer's own HTTP stack (hyper 1 and rustls, as the AWS SDK
//! links them): to an `https://` collector, and to one that hangs. The receivers run in the test
//! process (support/receiver.rs).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{Tracer, TracingLayer};
use serde_json::{Value, json};
use support::receiver::{Behaviour, Receiver};
use support::timeline::Timeline;
use support::warnings::Warnings;
use tracing_subscriber::layer::SubscriberExt;

/// One traced invocation with a child span; the call itself is bounded, never the test's point.
async fn invoke(tracer: &Tracer, request_id: &str) -> Value {
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            tracing::info_span!("bake").in_scope(|| {});
            Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
        }));
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_request_id(request_id);
    tokio::time::timeout(
        Duration::from_secs(60),
        service.oneshot(context.event(json!({}))),
    )
    .await
    .expect("the invocation is bounded")
    .expect("the invocation succeeds")
}

/// [`invoke`] for `tokio::spawn`: the service's call made before the future is (the future of
/// an `async fn` borrowing the tracer is not `Send` for every lifetime, as spawning needs).
fn invoke_owned(
    tracer: Tracer,
    request_id: &str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    let mut service =
        TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
            tracing::info_span!("bake").in_scope(|| {});
            Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
        }));
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_request_id(request_id);
    let call = lambda_runtime::tower::Service::call(&mut service, context.event(json!({})));
    Box::pin(async move {
        call.await.expect("the invocation succeeds");
    })
}

/// Sets a subscriber for `tracer` that also keeps the warnings, for as long as the guard lives.
fn with_warnings(tracer: &Tracer) -> (Warnings, tracing::subscriber::DefaultGuard) {
    let warnings = Warnings::default();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(tracer.otel_layer())
            .with(warnings.clone()),
    );
    (warnings, guard)
}

fn invocation_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .spans()
        .iter()
        .filter(|span| span.name == "orders-api")
        .filter_map(|span| span.attributes.get("faas.invocation_id").cloned())
        .collect()
}

#[tokio::test]
async fn spans_reach_an_https_collector_whose_certificate_the_configured_authority_signed() {
    // Given a collector behind TLS, whose certificate an authority made for this test signed,
    // and a tracer told to trust that authority (OTEL_EXPORTER_OTLP_CERTIFICATE)
    let timeline = Timeline::default();
    let receiver = Receiver::start_tls(Behaviour::Answer, &timeline).await;
    let ca_file = receiver.ca_file.clone().unwrap();
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(20))
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ca_file.to_str().unwrap(),
        )]))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());

    // When an invocation is traced
    invoke(&tracer, "req-over-tls").await;

    // Then its spans went over TLS, and had arrived when it returned
    assert!(receiver.endpoint.starts_with("https://"));
    assert_eq!(
        invocation_ids(&receiver),
        ["req-over-tls"],
        "{:?}",
        timeline.events()
    );
    assert!(receiver.spans().iter().any(|span| span.name == "bake"));
    let _ = std::fs::remove_file(ca_file);
}

#[tokio::test]
async fn an_https_collector_whose_certificate_is_not_trusted_gets_nothing() {
    // Given a collector behind TLS with a certificate no trusted authority signed
    let timeline = Timeline::default();
    let receiver = Receiver::start_tls(Behaviour::Answer, &timeline).await;
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(20))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);

    // When an invocation is traced, it still succeeds
    invoke(&tracer, "req-untrusted").await;

    // Then the handshake was refused: nothing was received, and the spans count as dropped
    assert!(receiver.connections() >= 1, "the exporter did connect");
    assert_eq!(receiver.requests(), 0);
    assert_eq!(tracer.dropped_spans(), 2);
    // And the warning says why: the certificate, not a bare "network error"
    let warnings = warnings.all();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("could not be exported")
                && warning.contains("certificate")),
        "{warnings:#?}"
    );
    let _ = std::fs::remove_file(receiver.ca_file.unwrap());
}

#[tokio::test]
async fn a_collector_that_hangs_costs_one_flush_timeout_not_one_per_invocation() {
    // Given a collector that accepts exports and never answers
    const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Hang, &timeline).await;
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(&receiver.endpoint)
        .flush_timeout(FLUSH_TIMEOUT)
        .export_timeout(Duration::from_secs(60))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);

    // When ten invocations are traced, one after the other
    let mut waits = Vec::new();
    for n in 1..=10 {
        let start = Instant::now();
        invoke(&tracer, &format!("req-{n}")).await;
        waits.push(start.elapsed());
    }

    // Then the first waited for the flush timeout, and none after it did. Not a benchmark: the
    // bound is half the timeout, which each of them waited in full before export was suspended.
    assert!(waits[0] >= FLUSH_TIMEOUT, "{waits:?}");
    for (n, wait) in waits.iter().enumerate().skip(1) {
        assert!(
            *wait < FLUSH_TIMEOUT / 2,
            "invocation {} waited {wait:?}: {waits:?}",
            n + 1
        );
    }
    // And their spans were dropped, counted, not queued: all but the last invocation's, which
    // are kept for the probe (two spans per invocation)
    assert_eq!(tracer.dropped_spans(), 18);

    // When the collector answers again
    receiver.set(Behaviour::Answer);

    // Then a probe finds it and spans are exported again
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 11.. {
        let request_id = format!("req-{n}");
        invoke(&tracer, &request_id).await;
        if invocation_ids(&receiver).contains(&request_id) {
            break;
        }
        assert!(Instant::now() < deadline, "export never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And every warning named the endpoint: the timeout's and the resumption's did not (found
    // by an attack), only causes that quoted it (a refused connection, a collector's answer).
    let warnings = warnings.all();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("within the flush timeout")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("answers again")),
        "{warnings:#?}"
    );
    for warning in &warnings {
        assert!(warning.contains(&receiver.endpoint), "{warning}");
    }
}

#[tokio::test]
async fn the_warning_of_a_refused_connection_names_the_endpoint_and_the_cause() {
    // Given a tracer whose endpoint nothing listens on (a port bound, then closed)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");

    // When an invocation is traced (it still succeeds), the warning names where it sent the
    // spans and why they did not arrive
    let warning = export_warning(&endpoint, "req-refused").await;
    assert!(warning.contains(&endpoint), "{warning}");
    assert!(
        warning.to_lowercase().contains("connection refused"),
        "{warning}"
    );
}

#[test]
fn an_export_timeout_of_zero_is_a_build_error_naming_the_variable() {
    // Zero would time every export out before it starts: every span dropped, forever.
    for variable in [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        let error = Tracer::builder()
            .env(Env::from_pairs([(variable, "0")]))
            .build()
            .err()
            .unwrap_or_else(|| panic!("{variable}=0 was accepted"));
        assert!(error.to_string().contains(variable), "{error}");
    }
}

/// The general timeout is not read when the traces' own is set, as the endpoint, certificate and
/// protocol variables are not (`OTEL_EXPORTER_OTLP_TIMEOUT=10s` beside a valid traces timeout
/// failed the build); a number too large for milliseconds says so (it said "above zero"; both
/// found by an attack).
#[test]
fn the_general_timeout_is_not_read_when_the_traces_one_is_set() {
    Tracer::builder()
        .env(Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ]))
        .build()
        .expect("the traces' timeout is the one read");
    let error = Tracer::builder()
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "99999999999999999999",
        )]))
        .build()
        .expect_err("a timeout past u64")
        .to_string();
    assert!(
        error.contains("OTEL_EXPORTER_OTLP_TIMEOUT") && error.contains("18446744073709551615"),
        "{error}"
    );
}

/// Headers that frame the body are the exporter's: `content-length=5` in
/// `OTEL_EXPORTER_OTLP_HEADERS` was sent in place of the body's length, and every export failed;
/// `content-type` replaced protobuf's. Each is a build error naming the variable and the header
/// (found by an attack); a `content-type` that says protobuf, a `host` (an address behind a
/// virtual host) and a `connection` are taken, as before (a first version refused them; found
/// by a review).
#[test]
fn headers_that_frame_the_request_are_build_errors_naming_the_variable_and_the_header() {
    for variable in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        for header in [
            "content-length",
            "Content-Type",
            "content-encoding",
            "transfer-encoding",
        ] {
            let entry = format!("x-team=a,{header}=5");
            let error = Tracer::builder()
                .env(Env::from_pairs([(variable, entry.as_str())]))
                .build()
                .expect_err(&entry)
                .to_string();
            assert!(
                error.contains(variable)
                    && error.contains(&header.to_ascii_lowercase())
                    && error.contains("entry 2"),
                "{error}"
            );
        }
    }
    Tracer::builder()
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "content-type= Application/X-Protobuf ,host=collector.internal,connection=keep-alive",
        )]))
        .build()
        .expect("headers that say what the exporter sends, or that it leaves to the caller");
}

#[test]
fn zero_timeouts_and_an_empty_queue_are_build_errors_naming_the_setting() {
    let cases = [
        (
            "flush_timeout",
            Tracer::builder().flush_timeout(Duration::ZERO),
        ),
        (
            "export_timeout",
            Tracer::builder().export_timeout(Duration::ZERO),
        ),
        ("max_queued_spans", Tracer::builder().max_queued_spans(0)),
        (
            "export_interval",
            Tracer::builder().export_interval(Duration::ZERO),
        ),
    ];
    for (setting, builder) in cases {
        let error = builder
            .env(Env::empty())
            .build()
            .err()
            .unwrap_or_else(|| panic!("{setting} of zero was accepted"));
        assert!(error.to_string().contains(setting), "{error}");
    }
}

/// Keeps what it is given.
#[derive(Debug, Clone, Default)]
struct Kept(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Kept {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().expect("not poisoned").extend(batch);
        Ok(())
    }
}

#[tokio::test]
async fn when_the_queue_overflows_the_invocation_span_is_kept_and_a_child_dropped() {
    // Given a queue of ten spans, and a handler that ends twenty spans of its own
    let kept = Kept::default();
    let tracer = Tracer::builder()
        .queued_exporter(kept.clone())
        .max_queued_spans(10)
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            for step in 0..20 {
                tracing::info_span!("step", step).in_scope(|| {});
            }
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When it is invoked
    service
        .oneshot(
            TestContext::new()
                .with_function_name("orders-api")
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then the invocation span, which ends last (with the cold start, the service and the
    // outcome), went out with nine of its children; eleven spans were dropped, counted
    let spans = kept.0.lock().expect("not poisoned");
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_ref()).collect();
    assert!(names.contains(&"orders-api"), "{names:?}");
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(tracer.dropped_spans(), 11);
}

/// Never answers.
#[derive(Debug)]
struct Hangs;

impl opentelemetry_sdk::trace::SpanExporter for Hangs {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_flush_before_returning_gives_up_before_the_invocation_s_deadline() {
    // Given a collector that hangs, a flush timeout of 2 s, no extension (the layer flushes
    // before returning), and an invocation with 300 ms left
    let tracer = Tracer::builder()
        .queued_exporter(Hangs)
        .flush_timeout(Duration::from_secs(2))
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When it is invoked (on tokio's paused clock: the wait is exact, not measured)
    let start = tokio::time::Instant::now();
    service
        .oneshot(
            TestContext::new()
                .with_remaining_time(Duration::from_millis(300))
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then it returned before its deadline, not after the whole flush timeout (past the
    // deadline Lambda would have failed the invocation for its traces), its span dropped
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(tracer.dropped_spans(), 1);
}

#[tokio::test]
async fn the_annotations_survive_a_span_full_of_the_handler_s_attributes() {
    use opentelemetry::trace::TraceContextExt;
    // Given a handler that sets more attributes on the invocation span than a span holds (128),
    // and annotates it
    let kept = Kept::default();
    let tracer = Tracer::builder()
        .queued_exporter(kept.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            let context = opentelemetry::Context::current();
            for step in 0..130 {
                context
                    .span()
                    .set_attribute(opentelemetry::KeyValue::new(format!("step.{step}"), step));
            }
            assert!(powertools_tracing::annotate("order_id", "o-42"));
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When it is invoked
    service
        .oneshot(
            TestContext::new()
                .with_function_name("orders-api")
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then the span still lists its annotations for X-Ray (ColdStart and Service indexed), with
    // the handler's annotation and its value: the handler's extra attributes are what the span
    // limit dropped
    let spans = kept.0.lock().expect("not poisoned");
    let span = spans
        .iter()
        .find(|span| span.name == "orders-api")
        .expect("the invocation span");
    let value = |key: &str| {
        span.attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == key)
            .map(|attribute| attribute.value.to_string())
    };
    assert_eq!(
        value("aws.xray.annotations").as_deref(),
        Some(r#"["ColdStart","Service","order_id"]"#),
        "{} attributes, {} dropped",
        span.attributes.len(),
        span.dropped_attributes_count
    );
    assert_eq!(value("order_id").as_deref(), Some("o-42"));
    assert!(span.dropped_attributes_count > 0);
}

/// The export warning of an invocation traced to `endpoint` (which does not take its spans).
async fn export_warning(endpoint: &str, request_id: &str) -> String {
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(endpoint)
        .env(Env::empty())
        .build()
        .expect("a tracer");
    let (warnings, _guard) = with_warnings(&tracer);
    invoke(&tracer, request_id).await;
    let warnings = warnings.all();
    warnings
        .iter()
        .find(|warning| warning.contains("could not be exported"))
        .unwrap_or_else(|| panic!("no export warning: {warnings:#?}"))
        .clone()
}

/// A collector on a local port that answers every request with `answer`.
async fn collector_answering(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 65536];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}/v1/traces")
}

/// A collector that refuses an export (4xx, 5xx) is named in the warning with its status and
/// its own words: an OTLP `Status` message (protobuf, as OTLP/HTTP answers) or a text body. The
/// warning said only `HTTP export failed with status code: 400`, without the endpoint the README
/// promises (found by an attack).
#[tokio::test]
async fn a_collector_s_refusal_is_warned_with_the_endpoint_its_status_and_its_message() {
    let message = "bad span batch: attribute too long";
    // google.rpc.Status { code: 3, message }
    let mut status = vec![0x08, 0x03, 0x12, message.len() as u8];
    status.extend_from_slice(message.as_bytes());
    let mut protobuf = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        status.len()
    )
    .into_bytes();
    protobuf.extend_from_slice(&status);
    let text = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\nupstream unavailable";
    for (answer, expected) in [
        (&*Box::leak(protobuf.into_boxed_slice()), ["400", message]),
        (&text[..], ["503", "upstream unavailable"]),
    ] {
        let endpoint = collector_answering(answer).await;
        let warning = export_warning(&endpoint, "req-refused-export").await;
        assert!(warning.contains(&endpoint), "{warning}");
        for part in expected {
            assert!(warning.contains(part), "{part} is missing from {warning}");
        }
    }
}

/// An HTTP answer `status` with `body` (its type `content_type`), leaked for a collector that
/// gives it to every request.
fn answer(status: &str, content_type: &str, body: &[u8]) -> &'static [u8] {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body);
    Box::leak(answer.into_boxed_slice())
}

/// One invocation traced to a collector that answers every export 200 with `body` (an OTLP
/// `ExportTraceServiceResponse`): its endpoint, the spans the tracer counted as dropped, and the
/// warnings.
async fn traced_to_a_collector_taking_exports_with(body: &[u8]) -> (String, u64, Vec<String>) {
    invocations_traced_to_a_collector_taking_exports_with(body, 1).await
}

/// [`traced_to_a_collector_taking_exports_with`], `invocations` times with one tracer.
async fn invocations_traced_to_a_collector_taking_exports_with(
    body: &[u8],
    invocations: usize,
) -> (String, u64, Vec<String>) {
    let endpoint = collector_answering(answer("200 OK", "application/x-protobuf", body)).await;
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(&endpoint)
        .env(Env::empty())
        .build()
        .expect("a tracer");
    let (warnings, _guard) = with_warnings(&tracer);
    for invocation in 0..invocations {
        invoke(&tracer, &format!("req-partial-{invocation}")).await;
    }
    (endpoint, tracer.dropped_spans(), warnings.all())
}

/// A partial success is OTLP's way for a collector to warn: one that warns of the same thing on
/// every export (a collector truncating an attribute every function sets) is warned about once,
/// not once per invocation; spans it rejects are warned about every time, since they are lost.
/// The same warning was logged after every invocation (found by a review).
#[tokio::test]
async fn a_collector_s_repeated_warning_is_logged_once_and_each_rejection_every_time() {
    let message = b"attribute values truncated";
    let mut partial = vec![0x12, message.len() as u8];
    partial.extend_from_slice(message);
    let (_, dropped, warnings) =
        invocations_traced_to_a_collector_taking_exports_with(&partial_success(&partial), 3).await;
    assert_eq!(dropped, 0);
    let repeated = warnings
        .iter()
        .filter(|warning| warning.contains("attribute values truncated"))
        .count();
    assert_eq!(repeated, 1, "{warnings:#?}");

    let message = b"span too big";
    let mut partial = vec![0x08, 0x01, 0x12, message.len() as u8];
    partial.extend_from_slice(message);
    let (_, dropped, warnings) =
        invocations_traced_to_a_collector_taking_exports_with(&partial_success(&partial), 3).await;
    assert_eq!(dropped, 3);
    let rejections = warnings
        .iter()
        .filter(|warning| warning.contains("span too big"))
        .count();
    assert_eq!(rejections, 3, "{warnings:#?}");
}

/// A collector's count of rejected spans is no more than the spans the request carried: one that
/// claimed a million for one span made `dropped_spans` a million, and a few such claims wrapped
/// the counter (found by an attack from the docs).
#[tokio::test]
async fn a_collector_never_counts_more_rejected_spans_than_it_was_sent() {
    let mut partial = vec![0x08];
    partial.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let (_, dropped, warnings) =
        invocations_traced_to_a_collector_taking_exports_with(&partial_success(&partial), 3).await;
    // Two spans per invocation: its own and `bake`
    assert_eq!(dropped, 6, "{warnings:#?}");
}

/// An endpoint that takes exports with a web page (a wrong path, a proxy's page) answers `200`
/// but is no collector: taken as a success, as OpenTelemetry's Go and Python exporters take it,
/// and warned about once, since the spans may have gone nowhere (found by an attack from the
/// docs: nothing was said). An OTLP answer, or an empty one, is not warned about.
#[tokio::test]
async fn an_answer_that_is_not_otlp_is_warned_about_once() {
    let endpoint = collector_answering(answer(
        "200 OK",
        "text/html; charset=utf-8",
        b"<html></html>",
    ))
    .await;
    let tracer = Tracer::builder()
        .service("orders")
        .endpoint(&endpoint)
        .env(Env::empty())
        .build()
        .expect("a tracer");
    let (warnings, _guard) = with_warnings(&tracer);
    for invocation in 0..3 {
        invoke(&tracer, &format!("req-html-{invocation}")).await;
    }
    let warnings = warnings.all();
    let not_otlp: Vec<&String> = warnings
        .iter()
        .filter(|warning| warning.contains("not an OTLP answer"))
        .collect();
    assert_eq!(not_otlp.len(), 1, "{warnings:#?}");
    assert!(not_otlp[0].contains("text/html"), "{}", not_otlp[0]);
    assert!(not_otlp[0].contains("/v1/traces"), "{}", not_otlp[0]);
    assert_eq!(tracer.dropped_spans(), 0);

    let (_, dropped, warnings) = traced_to_a_collector_taking_exports_with(b"").await;
    assert_eq!(dropped, 0);
    assert!(
        !warnings
            .iter()
            .any(|warning| warning.contains("not an OTLP answer")),
        "{warnings:#?}"
    );
}

/// An endpoint's query string may carry a key (`?api_key=…`, as some vendors take it): export
/// warnings name the endpoint without it, as they name it without the credentials of its
/// user-info. The warnings logged it whole (found by a review).
#[tokio::test]
async fn export_warnings_leave_out_the_endpoint_s_query_string() {
    let collector =
        collector_answering(answer("400 Bad Request", "text/plain", b"no such tenant")).await;
    let endpoint = format!("{collector}?api_key=s3cr3t-value&tenant=a");
    let warning = export_warning(&endpoint, "req-query").await;
    assert!(!warning.contains("s3cr3t"), "{warning}");
    assert!(warning.contains(&format!("{collector}?…")), "{warning}");
    assert!(warning.contains("no such tenant"), "{warning}");
}

/// An `ExportTraceServiceResponse` whose `partial_success` holds `partial` (its fields, encoded).
fn partial_success(partial: &[u8]) -> Vec<u8> {
    let mut body = vec![0x0a, partial.len() as u8];
    body.extend_from_slice(partial);
    body
}

/// A collector that takes an export but rejects some of its spans says so in the answer's
/// `partial_success` (OTLP/HTTP answers 200 then): the rejected spans are reported in a warning
/// with the endpoint, the count and the collector's message, and counted in `dropped_spans`.
/// They were lost without a word (found by an attack).
#[tokio::test]
async fn a_partial_success_s_rejected_spans_are_warned_with_the_collector_s_message_and_counted() {
    // partial_success: { rejected_spans: 2, error_message: "span too big" }
    let message = b"span too big";
    let mut partial = vec![0x08, 0x02, 0x12, message.len() as u8];
    partial.extend_from_slice(message);
    let (endpoint, dropped, warnings) =
        traced_to_a_collector_taking_exports_with(&partial_success(&partial)).await;
    assert_eq!(dropped, 2);
    let warning = warnings
        .iter()
        .find(|warning| warning.contains("rejected"))
        .unwrap_or_else(|| panic!("no warning of the rejected spans: {warnings:#?}"));
    for part in [endpoint.as_str(), "span too big", "dropped_spans=2"] {
        assert!(warning.contains(part), "{part} is missing from {warning}");
    }

    // A partial success that rejects nothing but has a message is the collector's warning.
    let message = b"attribute values truncated";
    let mut partial = vec![0x12, message.len() as u8];
    partial.extend_from_slice(message);
    let (_, dropped, warnings) =
        traced_to_a_collector_taking_exports_with(&partial_success(&partial)).await;
    assert_eq!(dropped, 0);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("attribute values truncated")),
        "{warnings:#?}"
    );

    // An empty answer, or an empty partial success, says nothing.
    for body in [Vec::new(), partial_success(&[])] {
        let (_, dropped, warnings) = traced_to_a_collector_taking_exports_with(&body).await;
        assert_eq!(dropped, 0);
        assert_eq!(warnings, Vec::<String>::new());
    }
}

/// A collector's words reach the warning with their control characters escaped: a newline or a
/// terminal escape in its answer split the warning over two log lines, or cleared a terminal
/// (found by an attack).
#[tokio::test]
async fn a_collector_s_control_characters_are_escaped_in_the_warning() {
    let endpoint = collector_answering(answer(
        "500 Internal Server Error",
        "text/plain",
        b"internal\nerror \x1b[31m red",
    ))
    .await;
    let warning = export_warning(&endpoint, "req-escaped").await;
    assert!(
        !warning.contains('\n') && !warning.contains('\u{1b}'),
        "{warning:?}"
    );
    assert!(
        warning.contains(r"internal\nerror \u{1b}[31m red"),
        "{warning}"
    );
}

#[tokio::test]
async fn a_throttling_collector_does_not_hold_the_invocation_past_its_deadline() {
    // Given a collector that answers 429 with Retry-After: 3 s, and an invocation with 600 ms
    // left (the OTLP exporter's own retries would sleep the thread through the deadline)
    let endpoint = collector_answering(
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let tracer = Tracer::builder()
        .endpoint(endpoint)
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When it is invoked, it returns before its deadline: one attempt, refused, counted
    let start = Instant::now();
    service
        .oneshot(
            TestContext::new()
                .with_remaining_time(Duration::from_millis(600))
                .event(json!({})),
        )
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(tracer.dropped_spans(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_collector_costs_one_wait_when_deadlines_are_nearer_than_the_flush_timeout() {
    // Given a collector that hangs, and invocations with 600 ms left (less than the 2 s flush
    // timeout: each flush is cut at the deadline, not by the flush timeout)
    let tracer = Tracer::builder()
        .queued_exporter(Hangs)
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When five are invoked (on tokio's paused clock: the waits are exact, not measured)
    let mut waits = Vec::new();
    for _ in 0..5 {
        let event = TestContext::new()
            .with_remaining_time(Duration::from_millis(600))
            .event(json!({}));
        let start = tokio::time::Instant::now();
        service.clone().oneshot(event).await.unwrap();
        waits.push(start.elapsed());
    }

    // Then only the first waited: its flush, cut at the deadline, suspended export
    assert!(waits[0] > Duration::from_millis(300), "{waits:?}");
    assert!(waits[1..].iter().all(Duration::is_zero), "{waits:?}");
}

/// Spans dropped as the warnings report them: the sum of their `dropped_spans`.
fn reported_drops(warnings: &[String]) -> u64 {
    warnings
        .iter()
        .filter_map(|warning| warning.split("dropped_spans=").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn every_span_of_an_outage_is_exported_or_counted_and_reported_by_the_final_flush() {
    // Given a collector that refuses connections, a 300 ms flush timeout
    let tracer = Tracer::builder()
        .endpoint("http://127.0.0.1:1/v1/traces")
        .flush_timeout(Duration::from_millis(300))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);

    // When six invocations (two spans each) run 400 ms apart, through the outage's probes,
    // and the tracer is flushed at the end (as SIGTERM does)
    for n in 0..6 {
        invoke(&tracer, &format!("req-{n}")).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tracer.flush().await;

    // Then every span was dropped, counted, and the warnings report each drop with the cause
    let warnings = warnings.all();
    assert_eq!(tracer.dropped_spans(), 12, "{warnings:#?}");
    assert_eq!(reported_drops(&warnings), 12, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .all(|warning| !warning.contains("dropped_spans=") || warning.contains("refused")),
        "{warnings:#?}"
    );
}

#[tokio::test]
async fn a_flush_while_export_is_suspended_exports_or_counts_every_span() {
    // Given a collector that fails, and three invocations (two spans each) that suspended
    // export
    let kept = Kept::default();
    let failing = Arc::new(AtomicBool::new(true));
    let tracer = Tracer::builder()
        .queued_exporter(Failing {
            kept: kept.clone(),
            failing: Arc::clone(&failing),
        })
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    for n in 0..3 {
        invoke(&tracer, &format!("req-{n}")).await;
    }

    // When the collector is back and the tracer is flushed (SIGTERM), the spans kept for the
    // probe go out: every span is exported or counted, none both
    failing.store(false, Ordering::SeqCst);
    tracer.flush().await;
    let exported = kept.0.lock().expect("not poisoned").len();
    assert_eq!(exported, 2, "the last invocation's spans");
    assert_eq!(exported as u64 + tracer.dropped_spans(), 6);
}

/// Fails while `failing`, else keeps what it is given.
#[derive(Debug, Clone)]
struct Failing {
    kept: Kept,
    failing: Arc<AtomicBool>,
}

impl opentelemetry_sdk::trace::SpanExporter for Failing {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        if self.failing.load(Ordering::SeqCst) {
            return Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "collector down".to_owned(),
            ));
        }
        self.kept.0.lock().expect("not poisoned").extend(batch);
        Ok(())
    }
}

#[tokio::test]
async fn a_caller_s_span_exporter_keeps_the_annotations_past_the_attribute_limit() {
    use opentelemetry::trace::TraceContextExt;
    // Given a tracer exporting span by span to a caller's exporter (unit tests, demos), and a
    // handler that annotates its span and then sets more attributes than a span holds
    let kept = Kept::default();
    let tracer = Tracer::builder()
        .span_exporter(kept.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            assert!(powertools_tracing::annotate("order_id", "o-42"));
            let context = opentelemetry::Context::current();
            for step in 0..130 {
                context
                    .span()
                    .set_attribute(opentelemetry::KeyValue::new(format!("step.{step}"), step));
            }
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When it is invoked
    service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    // Then the annotation and the list are on the span, as through the queue
    let spans = kept.0.lock().expect("not poisoned");
    let keys: Vec<&str> = spans[0]
        .attributes
        .iter()
        .map(|attribute| attribute.key.as_str())
        .collect();
    assert!(keys.contains(&"aws.xray.annotations"), "{keys:?}");
    assert!(keys.contains(&"order_id"), "{keys:?}");
}

#[tokio::test]
async fn a_deadline_lambda_could_not_have_sent_does_not_stop_the_flush() {
    // Given deadlines an emulator or a test sends: missing, relative (3 s after 1970), and
    // hours ahead
    for deadline_ms in [0, 3_000, u64::MAX / 2] {
        let kept = Kept::default();
        let tracer = Tracer::builder()
            .queued_exporter(kept.clone())
            .env(Env::empty())
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(tracer.subscriber());
        let service = TracingLayer::new(tracer.clone()).layer(service_fn(
            |_event: LambdaEvent<Value>| async { Ok::<_, lambda_runtime::Error>(json!({})) },
        ));

        // When an invocation with that deadline returns
        service
            .oneshot(
                TestContext::new()
                    .with_deadline_ms(deadline_ms)
                    .event(json!({})),
            )
            .await
            .unwrap();

        // Then its span was exported before it returned, as with no deadline
        assert_eq!(
            kept.0.lock().expect("not poisoned").len(),
            1,
            "deadline {deadline_ms}"
        );
    }
}

#[tokio::test]
async fn drops_of_a_full_queue_before_a_failed_export_are_reported_too() {
    // Given a queue of two spans and a collector that fails
    let failing = Failing {
        kept: Kept::default(),
        failing: Arc::new(AtomicBool::new(true)),
    };
    let tracer = Tracer::builder()
        .queued_exporter(failing)
        .max_queued_spans(2)
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            for step in 0..5 {
                tracing::info_span!("step", step).in_scope(|| {});
            }
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));

    // When an invocation ends six spans (four dropped by the queue, two by the export)
    service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    tracer.flush().await;

    // Then the warnings report all six, each under its own cause: the queue's four with
    // `max_queued_spans` (they were the collector's, which told users to fix the collector
    // when the queue was too small), the export's two with the collector's failure
    assert_eq!(tracer.dropped_spans(), 6);
    let all = warnings.all();
    assert_eq!(reported_drops(&all), 6, "{all:#?}");
    let (queue_full, failed): (Vec<String>, Vec<String>) = all
        .iter()
        .filter(|warning| warning.contains("dropped_spans="))
        .cloned()
        .partition(|warning| warning.contains("max_queued_spans=2"));
    assert_eq!(reported_drops(&queue_full), 4, "{all:#?}");
    assert_eq!(reported_drops(&failed), 2, "{all:#?}");
    assert!(
        failed.iter().all(|warning| warning.contains("error=")),
        "{all:#?}"
    );
}

#[test]
fn a_certificate_file_whose_certificate_is_corrupt_is_a_build_error_naming_the_file() {
    // Given a CA file whose PEM armour and base64 are sound but whose certificate is cut short
    // (a truncated bundle): the HTTPS client would fail to load it on the first export, in every
    // invocation, so the tracer must refuse it when it is built.
    let directory = std::env::temp_dir().join(format!("corrupt-ca-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("ca.pem");
    std::fs::write(
        &file,
        b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for through_the_environment in [false, true] {
        let builder = Tracer::builder().endpoint("https://127.0.0.1:4318/v1/traces");
        let builder = if through_the_environment {
            builder.env(Env::from_pairs([(
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                file.to_string_lossy().into_owned(),
            )]))
        } else {
            builder.env(Env::empty()).certificate(&file)
        };
        let error = builder
            .build()
            .expect_err("a corrupt certificate is refused");
        let message = error.to_string();
        assert!(message.contains(&*file.to_string_lossy()), "{message}");
        assert!(message.contains("certificate"), "{message}");
        // And where the path came from, so that the right setting is fixed (found by an attack).
        let from = if through_the_environment {
            "OTEL_EXPORTER_OTLP_CERTIFICATE"
        } else {
            "TracerBuilder::certificate"
        };
        assert!(message.contains(from), "{message}");
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

/// Reads one request from `stream` (its head, then as many bytes as its `content-length` says),
/// keeping what follows it in `pending` for the next; its head, or `None` once the connection
/// ends.
async fn next_request(stream: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        if let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
            let length = head
                .to_lowercase()
                .lines()
                .find_map(|line| line.strip_prefix("content-length:").map(str::to_owned))
                .and_then(|length| length.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if pending.len() >= head_end + 4 + length {
                pending.drain(..head_end + 4 + length);
                return Some(head);
            }
        }
        match stream.read(&mut buffer).await {
            Ok(read) if read > 0 => pending.extend_from_slice(&buffer[..read]),
            _ => return None,
        }
    }
}

/// A collector on a local port that answers each request with a `200 OK` whose body has
/// `length` bytes, written by `write_body`; returns the endpoint and how many body bytes it
/// managed to write (the client stops it by closing the connection).
async fn collector_with_body<F, Fut>(length: usize, write_body: F) -> (String, Arc<AtomicU64>)
where
    F: Fn(tokio::net::TcpStream, Arc<AtomicU64>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("its address");
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (write_body, counter) = (write_body.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                if next_request(&mut stream, &mut Vec::new()).await.is_none() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {length}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    write_body(stream, counter).await;
                }
            });
        }
    });
    (format!("http://{address}/v1/traces"), written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_s_huge_answer_is_not_read_into_memory() {
    use tokio::io::AsyncWriteExt;
    // Given a collector that answers every export with a body of 256 MiB
    const LENGTH: usize = 256 << 20;
    let (endpoint, written) =
        collector_with_body(LENGTH, |mut stream, written: Arc<AtomicU64>| async move {
            let chunk = vec![0_u8; 1 << 20];
            for _ in 0..LENGTH >> 20 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        })
        .await;
    let tracer = Tracer::builder()
        .endpoint(&endpoint)
        .env(Env::empty())
        .flush_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);

    // When an invocation's spans are exported
    invoke(&tracer, "req-huge-answer").await;

    // Then the client stopped reading early (what the collector wrote is what the socket
    // buffers took, far from the whole body), and the export is counted as failed, with the
    // cause in the warning: such an answer is not an OTLP collector's
    let written = written.load(Ordering::SeqCst);
    assert!(written < 64 << 20, "the collector wrote {written} bytes");
    assert_eq!(tracer.dropped_spans(), 2);
    let warnings = warnings.all();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&endpoint) && warning.contains("answer")),
        "{warnings:#?}"
    );
}

#[tokio::test]
async fn the_export_timeout_bounds_the_answer_s_body_too() {
    use tokio::io::AsyncWriteExt;
    // Given a collector that sends its answer's head at once, then one byte of its body every
    // 50 ms, and an export timeout of 300 ms within a flush timeout of 20 s
    let (endpoint, _) = collector_with_body(100_000, |mut stream, _| async move {
        while stream.write_all(b"\0").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for tracer in [
        Tracer::builder()
            .endpoint(&endpoint)
            .env(Env::empty())
            .export_timeout(Duration::from_millis(300))
            .flush_timeout(Duration::from_secs(20)),
        Tracer::builder()
            .env(Env::from_pairs([
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300"),
            ]))
            .flush_timeout(Duration::from_secs(20)),
    ] {
        let tracer = tracer.build().unwrap();
        let _guard = tracing::subscriber::set_default(tracer.subscriber());

        // When an invocation's spans are exported, the request (its answer's body included)
        // gives up at the export timeout, not at the flush timeout
        let start = Instant::now();
        invoke(&tracer, "req-dripping-answer").await;
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert_eq!(tracer.dropped_spans(), 2);
    }
}

/// A collector on a local port that answers every export `200 OK` and keeps each request's head
/// (request line and headers); returns its address and the heads.
async fn collector_keeping_heads() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&heads);
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = next_request(&mut stream, &mut pending).await {
                    kept.lock().expect("the heads").push(head);
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (address, heads)
}

/// `OTEL_EXPORTER_OTLP_HEADERS` (and `…_TRACES_HEADERS`, which wins per key) are read from the
/// tracer's `Env` and sent, values percent-decoded; an entry that is not `key=value` or a name
/// that is no header fails `build` naming the variable and the entry's place, never its value
/// (a header is often an API key). They were read by the exporter from the process environment
/// alone, and a malformed entry was dropped without a word; `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`
/// was accepted though export is OTLP/HTTP with protobuf only (found by an attack).
#[tokio::test]
async fn otlp_headers_are_sent_and_a_malformed_one_fails_naming_its_variable() {
    let (address, heads) = collector_keeping_heads().await;
    let tracer = Tracer::builder()
        .endpoint(format!("http://{address}/v1/traces"))
        .env(Env::from_pairs([
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                " x-honeycomb-team = k%201 ,x-tenant=general,x-encoded=a%2541b,x-empty=",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=traces"),
        ]))
        .build()
        .expect("valid headers");
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    invoke(&tracer, "req-headers").await;
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:#?}");
    let header = |wanted: &str| {
        heads[0].lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    assert_eq!(
        header("x-honeycomb-team").as_deref(),
        Some("k 1"),
        "{}",
        heads[0]
    );
    assert_eq!(
        header("x-tenant").as_deref(),
        Some("traces"),
        "{}",
        heads[0]
    );
    // Decoded once (`%25` is `%`; it was decoded twice, `a%2541b` sent as `aAb`; found by a
    // review), and an empty value sends no header, as opentelemetry-otlp skips it.
    assert_eq!(
        header("x-encoded").as_deref(),
        Some("a%41b"),
        "{}",
        heads[0]
    );
    assert_eq!(header("x-empty"), None, "{}", heads[0]);

    for (variable, value, place) in [
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team", "entry 1"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "a=S3CR3T,bad header=S3CR3T",
            "entry 2",
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=S3CR3T", "entry 1"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-key=S3CR3T%0Amore",
            "entry 1",
        ),
    ] {
        let error = Tracer::builder()
            .endpoint(format!("http://{address}/v1/traces"))
            .env(Env::from_pairs([(variable, value)]))
            .build()
            .expect_err(value);
        let message = error.to_string();
        assert!(
            message.contains(variable) && message.contains(place),
            "{message}"
        );
        assert!(
            !message.contains("S3CR3T") && !format!("{error:?}").contains("S3CR3T"),
            "{message}"
        );
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        for protocol in ["grpc", "http/json"] {
            let message = Tracer::builder()
                .endpoint(format!("http://{address}/v1/traces"))
                .env(Env::from_pairs([(variable, protocol)]))
                .build()
                .expect_err(protocol)
                .to_string();
            assert!(
                message.contains(variable) && message.contains("http/protobuf"),
                "{message}"
            );
        }
        Tracer::builder()
            .endpoint(format!("http://{address}/v1/traces"))
            .env(Env::from_pairs([(variable, " http/protobuf ")]))
            .build()
            .expect("the protocol it speaks");
    }
    // The traces' own variable wins over the general one, as the OTel specification says:
    // gRPC for the other signals, OTLP/HTTP for traces, is a valid set-up.
    Tracer::builder()
        .endpoint(format!("http://{address}/v1/traces"))
        .env(Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]))
        .build()
        .expect("traces over http/protobuf");
}

#[tokio::test]
async fn credentials_in_the_endpoint_are_sent_as_basic_authentication_and_never_shown() {
    // Given an endpoint with a user and a percent-encoded password, as in a URL
    let (address, heads) = collector_keeping_heads().await;
    let endpoint = format!("http://otlp-user:s3cr%3At%40x@{address}/v1/traces");
    let builder = Tracer::builder().endpoint(&endpoint).env(Env::empty());
    assert!(
        !format!("{builder:?}").contains("s3cr"),
        "{builder:?} shows the password"
    );
    let tracer = builder.build().unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());

    // When an invocation's spans are exported
    invoke(&tracer, "req-credentials").await;

    // Then the collector got them with the credentials decoded, in an Authorization header, and
    // a request line without them, as HTTP clients send a URL's credentials
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:#?}");
    let head = &heads[0];
    assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
    let authorization = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim())
    });
    // base64("otlp-user:s3cr:t@x")
    assert_eq!(
        authorization,
        Some("Basic b3RscC11c2VyOnMzY3I6dEB4"),
        "{head}"
    );
    assert_eq!(tracer.dropped_spans(), 0);

    // And when the collector is gone, the warning names it without the password
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tracer = Tracer::builder()
        .endpoint(format!(
            "http://otlp-user:s3cr3t@127.0.0.1:{port}/v1/traces"
        ))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);
    invoke(&tracer, "req-credentials-refused").await;
    tracer.flush().await;
    let warnings = warnings.all();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&format!("127.0.0.1:{port}"))),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().all(|warning| !warning.contains("s3cr3t")),
        "{warnings:#?}"
    );
    let error = Tracer::builder()
        .endpoint("http://otlp-user:s3cr3t@:4318")
        .env(Env::empty())
        .build()
        .expect_err("no host");
    assert!(!error.to_string().contains("s3cr3t"), "{error}");
}

#[test]
fn export_resumes_when_the_runtime_that_suspended_it_has_ended() {
    // Given a tracer shared by two runtimes one after the other (a global subscriber across a
    // program's runtimes, or across tests), and a collector that is down while the first runs
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tracer = Tracer::builder()
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .env(Env::empty())
        .flush_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(invoke(&tracer, "req-collector-down"));
    assert_eq!(
        tracer.dropped_spans(),
        2,
        "the failed export suspended export"
    );
    // Its probe, a task of the first runtime, ends with it.
    drop(first);

    // When the collector is back and the second runtime's invocations are traced
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let heads = second.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the collector's port again");
        let heads = Arc::new(std::sync::Mutex::new(0_usize));
        let counted = Arc::clone(&heads);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    while next_request(&mut stream, &mut pending).await.is_some() {
                        *counted.lock().expect("the count") += 1;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        for n in 0..3 {
            invoke(&tracer, &format!("req-collector-back-{n}")).await;
        }
        *heads.lock().unwrap()
    });

    // Then export has resumed: each invocation's spans reached the collector, none dropped
    assert_eq!(heads, 3, "export stayed suspended");
    assert_eq!(tracer.dropped_spans(), 2);
}

/// A receiver that answers, and a tracer exporting to it with a flush timeout large spans fit.
async fn answering_receiver_and_tracer() -> (Receiver, Tracer) {
    let receiver = Receiver::start(Behaviour::Answer, &Timeline::default()).await;
    let tracer = Tracer::builder()
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(60))
        .env(Env::empty())
        .build()
        .expect("a tracer exporting to the receiver");
    (receiver, tracer)
}

/// An invocation whose handler ends `count` spans, each with a `bytes`-byte field.
async fn invoke_with_large_spans(tracer: &Tracer, count: usize, bytes: usize) {
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(
        move |_event: LambdaEvent<Value>| async move {
            let blob = "x".repeat(bytes);
            for _ in 0..count {
                tracing::info_span!("chunk", body = %blob).in_scope(|| {});
            }
            Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
        },
    ));
    let context = TestContext::new().with_function_name("orders-api");
    tokio::time::timeout(
        Duration::from_secs(120),
        service.oneshot(context.event(json!({}))),
    )
    .await
    .expect("the invocation is bounded")
    .expect("the invocation succeeds");
}

#[tokio::test]
async fn spans_too_large_for_one_request_go_in_several_and_the_invocation_span_arrives() {
    // Given a handler whose spans are 68 MiB in all, over the OTLP exporter's 64 MiB request
    // limit: the whole batch failed to encode and was dropped, the invocation span with it, and
    // export was suspended "until the collector answers again" though it was never asked (found
    // by a reviewer)
    let (receiver, tracer) = answering_receiver_and_tracer().await;
    let (warnings, _guard) = with_warnings(&tracer);

    // When it is invoked
    invoke_with_large_spans(&tracer, 34, 2 * 1024 * 1024).await;

    // Then every span arrived, in several requests, and nothing was dropped
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|span| span.name == "orders-api"),
        "no invocation span; warnings: {:?}",
        warnings.all()
    );
    assert_eq!(spans.iter().filter(|span| span.name == "chunk").count(), 34);
    assert!(receiver.requests() >= 2, "{} requests", receiver.requests());
    assert_eq!(tracer.dropped_spans(), 0, "{:?}", warnings.all());
}

#[tokio::test]
async fn a_span_too_large_for_any_request_is_dropped_counted_and_reported_and_the_rest_arrive() {
    // Given a handler that ends one span of 66 MiB, more than one request may carry
    let (receiver, tracer) = answering_receiver_and_tracer().await;
    let (warnings, _guard) = with_warnings(&tracer);

    // When it is invoked, then another invocation after it
    invoke_with_large_spans(&tracer, 1, 66 * 1024 * 1024).await;
    invoke(&tracer, "after-the-large-one").await;

    // Then the large span was dropped, counted and reported with why
    assert_eq!(tracer.dropped_spans(), 1, "{:?}", warnings.all());
    let all = warnings.all();
    assert_eq!(reported_drops(&all), 1, "{all:?}");
    assert!(
        all.iter().any(|warning| warning.contains("too large")),
        "{all:?}"
    );
    // And the rest arrived, both invocation spans among them: export was not suspended
    let spans = receiver.spans();
    assert_eq!(
        spans
            .iter()
            .filter(|span| span.name == "orders-api")
            .count(),
        2,
        "{all:?}"
    );
    assert!(spans.iter().any(|span| span.name == "bake"));
    assert!(!spans.iter().any(|span| span.name == "chunk"));
}

/// Exports at once that fail in two ways (a `500`, a connection closed without an answer): each
/// warning names its own export's cause. The cause was kept in one slot for every export, and
/// 20 of 497 warnings named another export's cause or none (found by an attack from the docs).
#[test]
fn exports_failing_at_once_each_name_their_own_cause() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .enable_all()
        .build()
        .unwrap();
    let timeline = Timeline::default();
    let receiver = runtime.block_on(Receiver::start(Behaviour::RefuseOrClose, &timeline));
    let tracer = Tracer::builder()
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(20))
        .env(Env::empty())
        .build()
        .unwrap();
    let warnings = Warnings::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(tracer.otel_layer())
            .with(warnings.clone()),
    );
    // Flushing before returning, hundreds at once: the first wave's exports are under way
    // together, until the first failure suspends export.
    runtime.block_on(async {
        let tasks: Vec<_> = (0..300)
            .map(|n| {
                let tracer = tracer.clone();
                let dispatch = dispatch.clone();
                tokio::spawn(async move {
                    use tracing::instrument::WithSubscriber as _;
                    invoke_owned(tracer, &format!("req-{n}"))
                        .with_subscriber(dispatch)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let failures: Vec<String> = warnings
        .all()
        .into_iter()
        .filter(|warning| warning.contains("status code: 500") || warning.contains("network"))
        .collect();
    assert!(!failures.is_empty());
    for warning in &failures {
        let refused = warning.contains("status code: 500");
        let names_refusal = warning.contains("answered 500 Internal Server Error");
        assert_eq!(refused, names_refusal, "another export's cause: {warning}");
        assert!(
            refused || warning.contains("connection closed"),
            "no cause named: {warning}"
        );
    }
}

/// A shutdown hook that calls `Tracer::shutdown` (as the README says) counts the invocations
/// still running, whose spans leave with the process; `flush` in a hook that then exited left
/// them without a word (found by an attack from the docs).
#[tokio::test]
async fn shutdown_counts_the_invocations_still_running() {
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let tracer = Tracer::builder()
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(20))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);
    let started = Arc::new(tokio::sync::Notify::new());
    let told = Arc::clone(&started);
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(move |_event: LambdaEvent<Value>| {
            let told = Arc::clone(&told);
            async move {
                told.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, lambda_runtime::Error>(json!({}))
            }
        }));
    let running = service.clone().oneshot(TestContext::new().event(json!({})));
    tokio::pin!(running);
    tokio::select! {
        _ = &mut running => unreachable!("the handler never returns"),
        () = started.notified() => {}
    }
    // An unsampled invocation running too records no span, so loses none (it was counted).
    let unsampled = service.oneshot(
        TestContext::new()
            .with_trace_id("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0")
            .event(json!({})),
    );
    tokio::pin!(unsampled);
    tokio::select! {
        _ = &mut unsampled => unreachable!("the handler never returns"),
        () = started.notified() => {}
    }
    tracer.shutdown().await;
    assert_eq!(tracer.dropped_spans(), 1, "{:?}", warnings.all());
    assert!(
        warnings
            .all()
            .iter()
            .any(|warning| warning.contains("invocations still running")
                && warning.contains("1 invocation was still running")),
        "{:?}",
        warnings.all()
    );
}

/// Invocations still running when the exit flush begins, that end within its 400 ms, have their
/// spans exported and are not counted as dropped: counted as running the moment the flush had
/// nothing left to send, those that then ended in the time before the exit had their spans
/// neither exported nor counted (found by an attack under `run_concurrent`: 7 of 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_invocations_that_end_within_its_time() {
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let tracer = Tracer::builder()
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_secs(20))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let service = {
        let (release, started) = (Arc::clone(&release), Arc::clone(&started));
        TracingLayer::new(tracer.clone()).layer(service_fn(move |_event: LambdaEvent<Value>| {
            let (release, started) = (Arc::clone(&release), Arc::clone(&started));
            async move {
                started.add_permits(1);
                release.acquire_owned().await.unwrap().forget();
                Ok::<_, lambda_runtime::Error>(json!({}))
            }
        }))
    };
    let invoke = || service.clone().oneshot(TestContext::new().event(json!({})));
    let shutdown = async {
        started.acquire_many(3).await.unwrap().forget();
        tracer.shutdown().await;
    };
    // They end one after the other, 30 ms apart, while the exit flush runs.
    let ending = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        for _ in 0..3 {
            release.add_permits(1);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    let (first, second, third, (), ()) =
        tokio::join!(invoke(), invoke(), invoke(), shutdown, ending);
    for answer in [first, second, third] {
        answer.unwrap();
    }
    assert_eq!(tracer.dropped_spans(), 0, "{:?}", warnings.all());
    assert_eq!(
        receiver.spans().len(),
        3,
        "every ended invocation's span exported: {:?}",
        warnings.all()
    );
    assert!(
        !warnings
            .all()
            .iter()
            .any(|warning| warning.contains("still running")),
        "{:?}",
        warnings.all()
    );
}

/// Invocations flushing at once into a collector that hangs: a warning or two for the outage,
/// not one per invocation, and every span counted and reported at once (found by an attack: 50
/// at once wrote 50 identical warnings, where the docs promise one per pause).
#[tokio::test(flavor = "current_thread")]
async fn invocations_flushing_at_once_into_a_hung_collector_warn_once() {
    const INVOCATIONS: usize = 12;
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Hang, &timeline).await;
    let tracer = Tracer::builder()
        .endpoint(&receiver.endpoint)
        .flush_timeout(Duration::from_millis(300))
        .env(Env::empty())
        .build()
        .unwrap();
    let (warnings, _guard) = with_warnings(&tracer);
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..INVOCATIONS {
        calls.spawn(invoke_owned(tracer.clone(), &format!("req-{n}")));
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
    let timed_out = |warnings: &[String]| {
        warnings
            .iter()
            .filter(|warning| warning.contains("within the flush timeout"))
            .count()
    };
    // The export that suspended says it, and the last one to end says the rest (nothing may
    // come after it: no flush, no exit; found by a review, when the others' drops waited for a
    // probe that waited for spans).
    assert!(
        (1..=2).contains(&timed_out(&warnings.all())),
        "{:?}",
        warnings.all()
    );
    // Every span counted (an invocation span and its child each) and said, with no flush or
    // exit after them: the collector never answered, so none was exported.
    let said = || -> u64 {
        warnings
            .all()
            .iter()
            .filter_map(|warning| {
                let count = warning.split("dropped_spans=").nth(1)?;
                count
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(tracer.dropped_spans(), 2 * INVOCATIONS as u64);
    assert_eq!(said(), tracer.dropped_spans(), "{:?}", warnings.all());
    tracer.shutdown().await;
    assert_eq!(said(), tracer.dropped_spans(), "{:?}", warnings.all());
}
