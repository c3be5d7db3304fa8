//! `powertools-tracing` against a real OTLP/HTTP receiver (oteltap): span trees, the X-Ray
//! parent, cold start, X-Ray annotations, the resource id of an alias, errors, HTTP server
//! attributes, sampling, concurrency, a dead receiver, and AWS SDK child spans of the idempotency
//! store's DynamoDB calls (moto).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lambda_runtime::tower::{Layer, ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer};
use powertools_tracing::{AwsSdkSpans, Tracer, TracingLayer};
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber;

const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const SPANS_FILE_VAR: &str = "POWERTOOLS_TEST_SPANS_FILE";

/// A fresh X-Ray trace: (the `X-Amzn-Trace-Id` header, the OTel trace id, the parent span id).
fn xray_trace(sampled: bool) -> (String, String, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let epoch = format!(
        "{:08x}",
        0x6b00_0000 + COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let rest = &unique[..24];
    let parent = &unique[16..32];
    let header = format!(
        "Root=1-{epoch}-{rest};Parent={parent};Sampled={}",
        u8::from(sampled)
    );
    (header, format!("{epoch}{rest}"), parent.to_owned())
}

fn tracer(endpoint: &str) -> Tracer {
    Tracer::builder()
        .service("orders")
        .endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .expect("valid tracer settings")
}

/// [`tracer`] for the receiver, and its subscriber as this thread's default; `None` without the
/// receiver (outside CI the test is then skipped).
fn traced() -> Option<(Tracer, tracing::subscriber::DefaultGuard)> {
    let endpoint = powertools_tests::required_service(OTLP_ENDPOINT_VAR)?;
    let tracer = tracer(&endpoint);
    let guard = tracing::subscriber::set_default(tracer.subscriber());
    Some((tracer, guard))
}

/// The spans the receiver has for `trace_id`, waiting up to two seconds for `count` of them
/// (the receiver writes its file after acknowledging the export). Every whole line of the file
/// is a span: the READMEs send readers to it with `jq` (its first line was oteltap's banner,
/// found by a review from the docs); a last line without its line break is still being written.
fn spans_of(trace_id: &str, count: usize) -> Vec<Value> {
    let file = std::env::var(SPANS_FILE_VAR).expect("the test services export the spans file");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let spans: Vec<Value> = text
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line:?}"))
            })
            .filter(|span| span["traceId"] == trace_id)
            .collect();
        if spans.len() >= count || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|attributes| attributes.iter().find(|a| a["key"] == key))
        .map_or(&Value::Null, |a| &a["value"])
}

/// An attribute's value as text, whatever its OTLP type (`intValue` is a string in OTLP JSON).
fn attribute_text(span: &Value, key: &str) -> String {
    let value = attribute(span, key);
    ["stringValue", "intValue", "boolValue", "doubleValue"]
        .iter()
        .find_map(|kind| value.get(kind))
        .map(|inner| match inner {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|span| span["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no span {name} in {:?}",
                spans
                    .iter()
                    .map(|s| (s["name"].clone(), s["kind"].clone()))
                    .collect::<Vec<_>>()
            )
        })
}

#[tracing::instrument(skip_all, fields(loaves = loaves))]
async fn bake(loaves: u64) {
    tokio::task::yield_now().await;
    tracing::info_span!("oven", temperature = 230).in_scope(|| {});
}

#[tokio::test]
async fn an_invocation_span_joins_the_x_ray_trace_with_its_children_when_it_returns() {
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        bake(3).await;
        // A crate of the user's named like the HTTP stack's `h2` is traced.
        tracing::info_span!(target: "h2_probe::client", "probe").in_scope(|| {});
        powertools_tracing::annotate("order_id", "o-42");
        // What a call to another service would carry.
        let mut headers = http::HeaderMap::new();
        powertools_tracing::inject_trace_headers(&mut headers);
        let text = |name: &str| headers[name].to_str().unwrap().to_owned();
        Ok::<_, lambda_runtime::Error>(json!({
            "accepted": true,
            "traceparent": text("traceparent"),
            "x-amzn-trace-id": text("x-amzn-trace-id"),
        }))
    }));
    let (header, trace_id, parent) = xray_trace(true);
    let invoked_arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live";
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_function_arn(invoked_arn)
        .with_function_version("7")
        .with_request_id("req-span-tree")
        .with_trace_id(header)
        // Whichever test of this process invokes first, this invocation is the cold start.
        .with_cold_start(true);
    let response = service
        .clone()
        .oneshot(context.event(json!({})))
        .await
        .unwrap();

    let spans = spans_of(&trace_id, 4);
    assert_eq!(
        spans.len(),
        4,
        "exported by the time the invocation returned: {spans:#?}"
    );
    let invocation = named(&spans, "orders-api");
    assert_eq!(
        invocation["parentSpanId"], parent,
        "the X-Ray Parent is the parent"
    );
    assert_eq!(invocation["kind"], 2, "server");
    for (key, expected) in [
        (
            "faas.invocation_id",
            json!({"stringValue": "req-span-tree"}),
        ),
        ("faas.trigger", json!({"stringValue": "other"})),
        ("Service", json!({"stringValue": "orders"})),
        ("cloud.account.id", json!({"stringValue": "123456789012"})),
        // The alias replaced by the version it runs; the ARN invoked as it was.
        (
            "cloud.resource_id",
            json!({"stringValue": "arn:aws:lambda:eu-west-1:123456789012:function:orders-api:7"}),
        ),
        (
            "aws.lambda.invoked_arn",
            json!({"stringValue": invoked_arn}),
        ),
        // X-Ray indexes these attributes as annotations.
        ("order_id", json!({"stringValue": "o-42"})),
        (
            "aws.xray.annotations",
            json!({"arrayValue": {"values": [
                {"stringValue": "ColdStart"},
                {"stringValue": "Service"},
                {"stringValue": "order_id"},
            ]}}),
        ),
    ] {
        assert_eq!(attribute(invocation, key), &expected, "{key}");
    }
    assert_eq!(
        attribute(invocation, "faas.coldstart"),
        &json!({"boolValue": true})
    );
    assert_eq!(
        attribute(invocation, "ColdStart"),
        &json!({"boolValue": true})
    );
    assert_eq!(
        named(&spans, "probe")["parentSpanId"],
        invocation["spanId"],
        "the h2_probe crate's span is traced"
    );
    assert!(attribute_text(invocation, "powertools.response").contains("\"accepted\":true"));
    let span_id = invocation["spanId"].as_str().unwrap();
    assert_eq!(
        response["traceparent"],
        format!("00-{trace_id}-{span_id}-01"),
        "outgoing calls carry the invocation span as their parent"
    );
    let xray = response["x-amzn-trace-id"].as_str().unwrap();
    assert!(
        xray.starts_with(&format!("Root=1-{}-{}", &trace_id[..8], &trace_id[8..])),
        "{xray}"
    );
    assert!(xray.contains(&format!("Parent={span_id}")), "{xray}");
    let baking = named(&spans, "bake");
    assert_eq!(baking["parentSpanId"], invocation["spanId"]);
    assert_eq!(attribute_text(baking, "loaves"), "3");
    let oven = named(&spans, "oven");
    assert_eq!(oven["parentSpanId"], baking["spanId"]);

    // The second invocation of the process is warm.
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_trace_id(header)
        .with_cold_start(false);
    service.oneshot(context.event(json!({}))).await.unwrap();
    // All four (the invocation's and its three children): waiting for three, the file could be
    // read before the invocation's line was written (found failing once in CI).
    let warm = spans_of(&trace_id, 4);
    assert_eq!(
        attribute(named(&warm, "orders-api"), "faas.coldstart"),
        &json!({"boolValue": false})
    );
}

#[tokio::test]
async fn a_handler_error_marks_the_span_and_an_unsampled_trace_exports_nothing() {
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        Err::<Value, lambda_runtime::Error>("card declined".into())
    }));

    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("payments")
        .with_trace_id(header);
    let error = service
        .clone()
        .oneshot(context.event(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "card declined",
        "the error is the handler's"
    );
    let spans = spans_of(&trace_id, 1);
    let invocation = named(&spans, "payments");
    assert_eq!(invocation["status"]["code"], 2, "error status");
    assert!(
        invocation["status"]["message"]
            .as_str()
            .unwrap()
            .contains("card declined")
    );
    let event = &invocation["events"][0];
    assert_eq!(event["name"], "exception");
    // The message as the handler wrote it, and no `alloc::boxed::Box<dyn …>` for a type.
    assert_eq!(
        attribute(event, "exception.message"),
        &json!({"stringValue": "card declined"})
    );
    assert_eq!(
        attribute(event, "exception.type"),
        &json!({"stringValue": "Error"})
    );
    assert_eq!(invocation["status"]["message"], "card declined");

    let (header, trace_id, _) = xray_trace(false);
    let context = TestContext::new()
        .with_function_name("payments")
        .with_trace_id(header);
    service.oneshot(context.event(json!({}))).await.unwrap_err();
    assert!(
        spans_of(&trace_id, 1).is_empty(),
        "Lambda's sampling decision is respected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_keep_their_own_span_trees() {
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let tracer = tracer(&endpoint);
    // This thread's default, carried into the spawned invocations: a global default would reach
    // the other tests of the process under plain `cargo test`.
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer).layer(service_fn(|event: LambdaEvent<Value>| async move {
            let order = event.payload["order"].as_u64().unwrap();
            tokio::time::sleep(Duration::from_millis(order % 5)).await;
            bake(order).await;
            // Annotated from the worker thread the invocation happens to run on.
            powertools_tracing::annotate("order", order as i64);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    let traces: Vec<(String, String, String)> = (0..20).map(|_| xray_trace(true)).collect();
    let calls = traces.iter().enumerate().map(|(order, (header, _, _))| {
        let context = TestContext::new()
            .with_function_name("orders-api")
            .with_request_id(format!("req-{order}"))
            .with_trace_id(header.clone());
        tokio::spawn(
            service
                .clone()
                .oneshot(context.event(json!({"order": order})))
                .with_current_subscriber(),
        )
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    for (order, (_, trace_id, parent)) in traces.iter().enumerate() {
        let spans = spans_of(trace_id, 3);
        assert_eq!(spans.len(), 3, "trace of order {order}");
        let invocation = named(&spans, "orders-api");
        assert_eq!(invocation["parentSpanId"], *parent);
        assert_eq!(
            attribute(invocation, "faas.invocation_id"),
            &json!({"stringValue": format!("req-{order}")})
        );
        assert_eq!(attribute_text(invocation, "order"), order.to_string());
        assert_eq!(
            attribute(invocation, "aws.xray.annotations")["arrayValue"]["values"][2],
            json!({"stringValue": "order"})
        );
        let baking = named(&spans, "bake");
        assert_eq!(baking["parentSpanId"], invocation["spanId"]);
        assert_eq!(attribute_text(baking, "loaves"), order.to_string());
    }
    // Exporting never traces itself: with the subscriber global, the exporter's thread is traced
    // too, yet no span of the OTel SDK or the HTTP stack reached the receiver, in any trace.
    let file = std::env::var(SPANS_FILE_VAR).unwrap();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        // The receiver's banner line is not a span.
        let Ok(span) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let target = attribute_text(&span, "target");
        assert!(
            !["opentelemetry", "reqwest", "hyper", "h2", "tower"]
                .iter()
                .any(|internal| target.starts_with(internal)),
            "an internal span was exported: {line}"
        );
    }
}

#[tokio::test]
async fn an_http_api_invocation_carries_the_http_server_attributes() {
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, lambda_runtime::Error>(json!({"statusCode": 503, "body": "busy"}))
    }));
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_trace_id(header);
    let event = json!({
        "version": "2.0",
        "routeKey": "GET /orders/{id}",
        "rawPath": "/orders/42",
        "headers": {"host": "api.example.com"},
        "requestContext": {
            "routeKey": "GET /orders/{id}",
            "http": {"method": "GET", "path": "/orders/42", "protocol": "HTTP/1.1"},
        },
        "isBase64Encoded": false,
    });
    service.oneshot(context.event(event)).await.unwrap();

    let spans = spans_of(&trace_id, 1);
    let invocation = named(&spans, "orders-api");
    for (key, expected) in [
        ("faas.trigger", json!({"stringValue": "http"})),
        ("http.request.method", json!({"stringValue": "GET"})),
        ("url.path", json!({"stringValue": "/orders/42"})),
        ("http.route", json!({"stringValue": "/orders/{id}"})),
        ("http.response.status_code", json!({"intValue": "503"})),
    ] {
        assert_eq!(attribute(invocation, key), &expected, "{key}");
    }
    assert_eq!(
        invocation["status"]["code"], 2,
        "a 5xx is the server's error"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_or_hangs_never_fails_or_holds_the_invocation() {
    // A closed port: the export is refused at once.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // A port that accepts connections and never answers: only the flush bound ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    for port in [closed, silent_port] {
        let tracer = Tracer::builder()
            .service("orders")
            .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
            .flush_timeout(Duration::from_millis(300))
            .export_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(tracer.subscriber());
        let service =
            TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
                bake(1).await;
                Ok::<_, lambda_runtime::Error>(json!("ok"))
            }));
        // Not a performance assertion: without the bound this call would wait for the 60 s
        // export timeout.
        let response = tokio::time::timeout(
            Duration::from_secs(20),
            service.oneshot(TestContext::new().event(json!({}))),
        )
        .await
        .expect("the flush is bounded")
        .expect("the invocation succeeds");
        assert_eq!(response, "ok");
    }
}

#[tokio::test]
async fn the_idempotency_stores_dynamodb_calls_are_child_spans() {
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let Some(plain) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let table = powertools_tests::create_idempotency_table(&plain).await;
    let config = plain.config().to_builder().interceptor(AwsSdkSpans).build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let store = DynamoDbStore::new(client, &table).unwrap();
    store_calls_are_child_spans(&endpoint, store).await;
}

/// The facade's layer order: "the idempotency store's DynamoDB calls become its children", with
/// the store `powertools::idempotency::dynamodb_store` gives (a function written from the docs
/// saw none: its client had no `AwsSdkSpans`).
#[tokio::test]
async fn the_facade_s_dynamodb_store_calls_are_child_spans() {
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let Some(plain) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let table = powertools_tests::create_idempotency_table(&plain).await;
    let store = powertools::idempotency::dynamodb_store(&table)
        .await
        .unwrap();
    store_calls_are_child_spans(&endpoint, store).await;
}

async fn store_calls_are_child_spans(endpoint: &str, store: DynamoDbStore) {
    let idempotency = Idempotency::builder(store)
        .key_prefix("payments")
        .build()
        .expect("valid settings");

    let tracer = tracer(endpoint);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = ServiceBuilder::new()
        .layer(TracingLayer::new(tracer))
        .layer(IdempotencyLayer::new(idempotency))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(json!({"charged": event.payload["amount"]}))
        }));
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("payments")
        .with_trace_id(header);
    service
        .oneshot(
            context.event(json!({"payment_id": uuid::Uuid::new_v4().to_string(), "amount": 5})),
        )
        .await
        .expect("the invocation succeeds");

    let spans = spans_of(&trace_id, 3);
    let invocation = named(&spans, "payments");
    for operation in ["PutItem", "UpdateItem"] {
        let call = named(&spans, &format!("DynamoDB.{operation}"));
        assert_eq!(call["parentSpanId"], invocation["spanId"], "{operation}");
        assert_eq!(call["kind"], 3, "client");
        assert_eq!(
            attribute(call, "rpc.system"),
            &json!({"stringValue": "aws-api"})
        );
        assert_eq!(
            attribute(call, "rpc.service"),
            &json!({"stringValue": "DynamoDB"})
        );
        assert_eq!(
            attribute(call, "rpc.method"),
            &json!({"stringValue": operation})
        );
        assert_eq!(
            attribute(call, "http.response.status_code"),
            &json!({"intValue": "200"})
        );
    }
}

#[tokio::test]
async fn a_failed_sdk_call_names_the_service_error_in_its_span_status() {
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let Some(plain) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let config = plain.config().to_builder().interceptor(AwsSdkSpans).build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let missing_table = powertools_tests::unique_table_name("missing");

    let tracer = tracer(&endpoint);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(move |_: LambdaEvent<Value>| {
        let (client, table) = (client.clone(), missing_table.clone());
        async move {
            let lookup = client
                .get_item()
                .table_name(table)
                .key("id", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
                .send()
                .await;
            Ok::<_, lambda_runtime::Error>(json!({"found": lookup.is_ok()}))
        }
    }));
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("lookups")
        .with_trace_id(header);
    let response = service.oneshot(context.event(json!({}))).await.unwrap();
    assert_eq!(response, json!({"found": false}));

    let spans = spans_of(&trace_id, 2);
    let call = named(&spans, "DynamoDB.GetItem");
    assert_eq!(call["status"]["code"], 2, "error status: {call}");
    let message = call["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ResourceNotFoundException"),
        "the status names the service's error code: {message}"
    );
    assert!(
        !message.contains("OrchestratorError") && !message.contains(" { "),
        "a message, not a Debug dump of the SDK error: {message}"
    );
}

/// The handler's own typed error, then the release of its claim failing: the exported
/// invocation span names the error as Lambda reports it (`IdempotencyPersistenceLayerError`),
/// the handler's error first, with the store's error code and not the SDK's raw response
/// (unit-tested in `exception::tests` only until now; noticed in session 31).
#[tokio::test]
async fn a_failed_release_after_a_handler_error_is_named_on_the_exported_span() {
    use powertools_tests::PaymentError;
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let Some((_proxy, idempotency)) =
        powertools_tests::idempotency_whose_release_is_refused().await
    else {
        return;
    };

    let tracer = tracer(&endpoint);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = ServiceBuilder::new()
        .layer(TracingLayer::new(tracer))
        .layer(
            IdempotencyLayer::new(idempotency)
                .key_from(|event: &Value| Some(event["order_id"].clone())),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async {
            Err::<Value, PaymentError>(PaymentError::Declined { code: 51 })
        }));
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("payments")
        .with_trace_id(header);
    let error = service
        .oneshot(context.event(json!({"order_id": "o-1"})))
        .await
        .unwrap_err();
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "IdempotencyPersistenceLayerError"
    );

    let spans = spans_of(&trace_id, 1);
    let invocation = named(&spans, "payments");
    assert_eq!(
        invocation["status"]["code"], 2,
        "error status: {invocation}"
    );
    let event = invocation["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["name"] == "exception")
        .unwrap_or_else(|| panic!("no exception event: {invocation}"));
    assert_eq!(
        attribute_text(event, "exception.type"),
        "IdempotencyPersistenceLayerError"
    );
    let message = attribute_text(event, "exception.message");
    assert!(
        message.starts_with("Declined { code: 51 }; releasing the in-progress record")
            && message.contains("AccessDeniedException")
            && !message.contains("SdkBody"),
        "{message}"
    );
}

/// A failed batch record's span names the failure's type as `error.type` (OpenTelemetry's
/// attribute for the class of error an operation ended with), beside its error status: the
/// status alone did not say a poison message from a refused one. The reason stays off the span
/// (it may quote the record), on the record's failure line.
#[tokio::test]
async fn a_failed_batch_record_s_span_names_its_error_type() {
    use powertools::batch::{BatchProcessor, SqsRecord};
    use powertools::events::sqs::{SqsBatchResponse, SqsEvent};
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service =
        TracingLayer::new(tracer).layer(service_fn(|event: LambdaEvent<SqsEvent>| async move {
            let response = BatchProcessor::new()
                .process_sqs(&event.payload, |record: SqsRecord<Value>| async move {
                    match record.body["loaves"].as_u64() {
                        Some(0) => Err("card 4111111111111111 declined".to_owned()),
                        _ => Ok(()),
                    }
                })
                .await?;
            Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
        }));
    let arn = "arn:aws:sqs:eu-west-1:123456789012:bake";
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{\"loaves\": 2}", "eventSource": "aws:sqs", "eventSourceARN": arn},
        {"messageId": "m-2", "body": "{\"loaves\": 0}", "eventSource": "aws:sqs", "eventSourceARN": arn},
        {"messageId": "m-3", "body": "not JSON", "eventSource": "aws:sqs", "eventSourceARN": arn}
    ]}))
    .unwrap();
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("bakery")
        .with_trace_id(header);
    let response = service.oneshot(context.event(event)).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 2);

    let spans = spans_of(&trace_id, 4);
    let record = |message_id: &str| {
        spans
            .iter()
            .find(|span| {
                span["name"] == "batch_record" && attribute_text(span, "message_id") == message_id
            })
            .unwrap_or_else(|| panic!("no span of record {message_id} in {spans:?}"))
    };
    for (message_id, error_type) in [("m-2", "Error"), ("m-3", "serde_json::Error")] {
        let span = record(message_id);
        assert_eq!(span["status"]["code"], 2, "{span}");
        assert_eq!(attribute_text(span, "error.type"), error_type, "{span}");
        assert!(
            !span.to_string().contains("4111"),
            "the reason is off the span: {span}"
        );
    }
    let done = record("m-1");
    assert_ne!(done["status"]["code"], 2, "{done}");
    assert_eq!(attribute(done, "error.type"), &Value::Null, "{done}");
}

/// A task the handler spawns with `.in_current_span()`, as the logging docs say to, traces under
/// the invocation span, in its trace, and follows Lambda's sampling decision; `annotate` in it
/// reaches the invocation span. The task carries the logging layer's invocation span (or the
/// runtime's), which OpenTelemetry does not export: its spans started traces of their own, also
/// for `Sampled=0` invocations, and `annotate` found no invocation (found by a new user writing
/// a function from the docs). Both orders of the two layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_spawned_in_the_current_span_traces_under_the_invocation() {
    use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let tracer = tracer(&endpoint);
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("orders")
        .writer(logs.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(logger.json_layer())
        .with(tracer.otel_layer());
    let _guard = tracing::subscriber::set_default(subscriber);
    let handler = service_fn(|event: LambdaEvent<Value>| async move {
        let marker = event.payload["marker"].as_str().unwrap().to_owned();
        let annotated = tokio::spawn(
            async move {
                let _span = tracing::info_span!("spawned", marker = marker.as_str()).entered();
                powertools_tracing::annotate("spawned", true)
            }
            .in_current_span()
            // This thread's subscriber, as a function's global one would be on every thread.
            .with_current_subscriber(),
        )
        .await
        .unwrap();
        Ok::<_, lambda_runtime::Error>(json!({ "annotated": annotated }))
    });
    let logging_outside = ServiceBuilder::new()
        .layer(LoggingLayer::new(logger.clone()))
        .layer(TracingLayer::new(tracer.clone()))
        .service(handler);
    let tracing_outside = ServiceBuilder::new()
        .layer(TracingLayer::new(tracer.clone()))
        .layer(LoggingLayer::new(logger.clone()))
        .service(handler);
    let services = [
        ("logging outside", logging_outside.boxed_clone()),
        ("tracing outside", tracing_outside.boxed_clone()),
    ];
    for (order, service) in services {
        for sampled in [true, false] {
            let (header, trace_id, _) = xray_trace(sampled);
            let marker = uuid::Uuid::new_v4().to_string();
            let context = TestContext::new()
                .with_function_name("orders-api")
                .with_trace_id(header);
            let response = service
                .clone()
                .oneshot(context.event(json!({ "marker": marker })))
                .with_current_subscriber()
                .await
                .unwrap();
            // Traced either way: an unsampled invocation is traced, and exports nothing.
            assert_eq!(response["annotated"], true, "{order}: {response}");
            tracer.flush().await;
            let marked = |span: &Value| attribute_text(span, "marker") == marker;
            if sampled {
                let spans = spans_of(&trace_id, 2);
                let invocation = named(&spans, "orders-api");
                let spawned = named(&spans, "spawned");
                assert_eq!(
                    spawned["parentSpanId"], invocation["spanId"],
                    "{order}: {spawned}"
                );
                assert!(marked(spawned), "{order}: {spawned}");
                let annotations = attribute(invocation, "aws.xray.annotations").to_string();
                assert!(annotations.contains("spawned"), "{order}: {invocation}");
            } else {
                // In no trace at all: the receiver's whole file.
                std::thread::sleep(Duration::from_millis(200));
                let file = std::env::var(SPANS_FILE_VAR).unwrap();
                let text = std::fs::read_to_string(file).unwrap();
                let stray = text
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .find(|span| marked(span));
                assert!(
                    stray.is_none(),
                    "{order}: an unsampled span exported: {stray:?}"
                );
            }
        }
    }
}

/// A server that answers every DynamoDB request with an empty `ListTables` and keeps each
/// request's `X-Amzn-Trace-Id` (`None` for a request without one); its endpoint URL.
fn trace_header_recorder() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            // The headers, then as many body bytes as they say.
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let headers = &text[..end];
                let length = headers
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if request.len() < end + 4 + length {
                    continue;
                }
                let trace = headers.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("x-amzn-trace-id")
                        .then(|| value.trim().to_owned())
                });
                recorded.lock().expect("not poisoned").push(trace);
                let body = r#"{"TableNames":[]}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                request.clear();
            }
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// An AWS SDK call made with `AwsSdkSpans` carries the trace on to the service it calls, as
/// Powertools for Python's patched botocore does: `X-Amzn-Trace-Id` with the invocation's trace,
/// the SDK call's own span as the parent, Lambda's sampling decision and `Lineage` (which
/// Lambda's recursive-loop detection reads). Without the runtime's `_X_AMZN_TRACE_ID` (as under
/// `run_concurrent`, and in this test) calls carried no trace header at all; with it (`run`),
/// the SDK copied Lambda's header, whose parent is the caller's segment, not the call's span
/// (found by a new user writing a function from the docs).
#[tokio::test]
async fn an_sdk_call_carries_the_trace_on_with_its_own_span_as_the_parent() {
    const NAME: &str = "an_sdk_call_carries_the_trace_on_with_its_own_span_as_the_parent";
    const CHILD: &str = "POWERTOOLS_TRACING_OTLP_TEST_CHILD";
    // As under `lambda_runtime::run`, which sets the variable the SDK's recursion detection
    // copies: in a child process (the workspace forbids the `unsafe` of `set_var`).
    const CALLER: &str = "53995c3f42cd8ad8";
    if std::env::var_os(CHILD).is_none() {
        powertools_core::testing::rerun_in_child(NAME, CHILD, |command| {
            command.env("AWS_LAMBDA_FUNCTION_NAME", "orders-api").env(
                "_X_AMZN_TRACE_ID",
                format!(
                    "Root=1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a;Parent={CALLER};Sampled=0;\
                     Lineage=b0b0b0b0:1"
                ),
            )
        });
    }
    let Some(endpoint) = powertools_tests::required_service(OTLP_ENDPOINT_VAR) else {
        return;
    };
    let (server, seen) = trace_header_recorder();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url(server)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .interceptor(AwsSdkSpans)
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let tracer = tracer(&endpoint);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(move |_event: LambdaEvent<Value>| {
            let client = client.clone();
            async move {
                client.list_tables().send().await?;
                // A task spawned without the invocation's context: its call is no span of the
                // invocation's trace, and keeps the SDK's own header (Lambda's, under `run`).
                let outside = client.clone();
                tokio::spawn(async move { outside.list_tables().send().await }).await??;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }));
    for sampled in [true, false] {
        let (header, trace_id, _) = xray_trace(sampled);
        let context = TestContext::new()
            .with_function_name("orders-api")
            .with_trace_id(format!("{header};Lineage=a87bd80c:0"));
        service
            .clone()
            .oneshot(context.event(json!({})))
            .await
            .unwrap();
        let (sent, outside) = {
            let mut seen = seen.lock().unwrap();
            let outside = seen.pop().expect("the spawned task's request");
            (seen.pop().expect("the handler's request"), outside)
        };
        assert_eq!(
            outside,
            std::env::var("_X_AMZN_TRACE_ID").ok(),
            "outside the invocation's context: the SDK's own header, Lambda's or none"
        );
        let sent = sent.unwrap_or_else(|| panic!("sampled {sampled}: no X-Amzn-Trace-Id"));
        let root = format!("Root=1-{}-{}", &trace_id[..8], &trace_id[8..]);
        assert!(sent.starts_with(&root), "{sent}");
        assert!(
            sent.contains(&format!("Sampled={}", u8::from(sampled))),
            "{sent}"
        );
        assert!(sent.contains("Lineage=a87bd80c:0"), "{sent}");
        assert!(!sent.contains(CALLER), "{sent}");
        if sampled {
            let spans = spans_of(&trace_id, 2);
            let call = named(&spans, "DynamoDB.ListTables");
            let parent = format!("Parent={}", call["spanId"].as_str().unwrap());
            assert!(sent.contains(&parent), "{sent}: not the call's span {call}");
        }
    }
}

/// Invocations run one after another inside one long-lived span of the runtime's (its
/// `worker` span under `run_concurrent`, entered around every invocation of its worker) each
/// have their own invocation span and trace: that span is not one invocation's, and does not
/// keep the first one's context (found by a review: later invocations joined the first's trace,
/// without spans of their own).
#[tokio::test]
async fn invocations_inside_one_long_lived_runtime_span_each_trace_their_own() {
    use tracing::Instrument;
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(
        |_event: LambdaEvent<Value>| async move {
            tracing::info_span!("handler_work").in_scope(|| {});
            Ok::<_, lambda_runtime::Error>(json!(powertools_tracing::annotate("n", 1)))
        },
    ));
    let worker = tracing::info_span!(target: "lambda_runtime::runtime", "worker", task_id = 1);
    let traces: Vec<_> = (0..3).map(|_| xray_trace(true)).collect();
    for (header, _, _) in &traces {
        let context = TestContext::new()
            .with_function_name("orders-api")
            .with_trace_id(header.clone());
        let annotated = service
            .clone()
            .oneshot(context.event(json!({})))
            .instrument(worker.clone())
            .await
            .unwrap();
        assert_eq!(annotated, json!(true));
    }
    for (_, trace_id, parent) in &traces {
        let spans = spans_of(trace_id, 2);
        let invocation = named(&spans, "orders-api");
        assert_eq!(invocation["parentSpanId"], *parent);
        assert_eq!(
            named(&spans, "handler_work")["parentSpanId"],
            invocation["spanId"]
        );
    }
}

/// Metadata on the invocation span, as the README's compatibility table says to put it
/// (Python's `put_metadata`): an attribute of the handler's active OpenTelemetry span.
/// `tracing::Span::current()` there is the logging layer's span, not exported (found by a new
/// user writing a function from the docs: the README said `set_attribute`).
#[tokio::test]
async fn metadata_set_on_the_active_span_reaches_the_invocation_span() {
    use powertools_tracing::opentelemetry;
    use powertools_tracing::opentelemetry::KeyValue;
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        opentelemetry::trace::get_active_span(|span| {
            span.set_attribute(KeyValue::new("order_total", 42_i64));
        });
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let (header, trace_id, _) = xray_trace(true);
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_trace_id(header);
    service.oneshot(context.event(json!({}))).await.unwrap();
    let spans = spans_of(&trace_id, 1);
    let invocation = named(&spans, "orders-api");
    assert_eq!(
        attribute_text(invocation, "order_total"),
        "42",
        "{invocation}"
    );
}

/// Under the spans `lambda_runtime`'s own layers make per invocation (its trace layer's
/// `Lambda runtime invoke`, its `OpenTelemetryLayer`'s `Lambda function invocation`), without a
/// logging layer, a task spawned with `.in_current_span()` reaches the invocation (found by a
/// review: the second was left out).
#[tokio::test]
async fn a_task_spawned_under_the_runtime_s_invocation_spans_reaches_the_invocation() {
    use tracing::Instrument;
    let Some((tracer, _guard)) = traced() else {
        return;
    };
    let service = TracingLayer::new(tracer.clone()).layer(service_fn(
        |_event: LambdaEvent<Value>| async move {
            let annotated = tokio::spawn(
                async { powertools_tracing::annotate("spawned", true) }
                    .in_current_span()
                    .with_current_subscriber(),
            )
            .await?;
            Ok::<_, lambda_runtime::Error>(json!(annotated))
        },
    ));
    for span in [
        tracing::info_span!(target: "lambda_runtime::layers::trace", "Lambda runtime invoke"),
        tracing::info_span!(target: "lambda_runtime::layers::otel", "Lambda function invocation"),
    ] {
        let (header, _, _) = xray_trace(true);
        let context = TestContext::new()
            .with_function_name("orders-api")
            .with_trace_id(header);
        let annotated = service
            .clone()
            .oneshot(context.event(json!({})))
            .instrument(span.clone())
            .await
            .unwrap();
        assert_eq!(annotated, json!(true), "{span:?}");
    }
}
