//! The `http-axum` example (an axum router under `lambda_http` with the whole stack) as a
//! deployed function under the `cargo lambda` emulator, against moto and the OTLP receiver, with
//! eight invocations at once (`AWS_LAMBDA_MAX_CONCURRENCY=8`, as Lambda Managed Instances run
//! it): a retried POST is replayed from DynamoDB, the same key with another order is refused,
//! a request without a key records nothing, the correlation id comes from the request, twenty
//! concurrent duplicates place one order, and hostile bodies get a 400.

use std::path::PathBuf;

use powertools_tests::{EmulatedFunction, InvokeResult, runner_env};
use serde_json::{Value, json};

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/http-axum")
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(example_dir().join("events").join(name))
        .expect("the sample event exists");
    serde_json::from_str(&text).expect("the sample event is JSON")
}

/// The sample POST with `key` as its Idempotency-Key and `request_id` as API Gateway's id.
fn order_with_key(key: &str, request_id: &str) -> Value {
    let mut event = sample("place-order.json");
    event["headers"]["idempotency-key"] = json!(key);
    event["requestContext"]["requestId"] = json!(request_id);
    event
}

/// The HTTP answer inside an Invoke result: (status code, headers, JSON body).
fn http(result: &InvokeResult) -> (u64, Value, Value) {
    assert_eq!(
        result.status, 200,
        "the invocation succeeds: {}",
        result.body
    );
    let body = result.body["body"].as_str().unwrap_or("null");
    (
        result.body["statusCode"].as_u64().expect("a status code"),
        result.body["headers"].clone(),
        serde_json::from_str(body).expect("a JSON body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_function_places_each_order_once_under_the_emulator() {
    let Some(otlp) = powertools_tests::required_service("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return;
    };
    let Some(client) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let table = powertools_tests::create_idempotency_table(&client).await;
    let Some(function) = EmulatedFunction::start_with_watch_args(
        &example_dir(),
        "http-axum",
        &[
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "orders-http"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("POWERTOOLS_LOGGER_LOG_EVENT", "true"),
        ],
        &runner_env("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    ) else {
        return;
    };

    // A POST and its retry: one order, the same answer.
    let (status, headers, first) = http(&function.invoke(&sample("place-order.json")));
    assert_eq!(status, 201, "{first}");
    assert_eq!(headers["x-correlation-id"], "corr-2001");
    let (status, _, retry) = http(&function.invoke(&sample("place-order.json")));
    assert_eq!(status, 201);
    assert_eq!(retry, first, "replayed from DynamoDB, not placed again");

    // The same key with another order, and a request without a key.
    let (status, _, other) = http(&function.invoke(&sample("same-key-other-order.json")));
    assert_eq!(
        (status, &other["error"]),
        (422, &json!("IdempotencyKeyReused"))
    );
    let (status, headers, no_key) = http(&function.invoke(&sample("no-key.json")));
    assert_eq!(
        (status, &no_key["error"]),
        (400, &json!("MissingIdempotencyKey"))
    );
    assert_eq!(
        headers["x-correlation-id"], "api-req-2003",
        "API Gateway's id"
    );
    let (status, _, health) = http(&function.invoke(&sample("health.json")));
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    // Hostile bodies: a 400 each, never a 500 or a failed invocation.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (index, body) in [
        "",
        "{",
        deep.as_str(),
        r#"{"customer_id":"\ud800","items":[]}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = order_with_key(&format!("k-hostile-{index}"), "api-hostile");
        event["body"] = json!(body);
        let (status, _, answer) = http(&function.invoke(&event));
        assert_eq!(status, 400, "{body:.40}: {answer}");
    }

    // Twenty identical POSTs at once, beside twenty orders of their own.
    let payloads: Vec<Value> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                order_with_key("k-same", &format!("api-same-{i}"))
            } else {
                order_with_key(&format!("k-own-{i}"), &format!("api-own-{i}"))
            }
        })
        .collect();
    let answers: Vec<(u64, Value, Value)> =
        function.invoke_all(&payloads).iter().map(http).collect();
    let mut same_orders = Vec::new();
    for (i, (status, _, body)) in answers.iter().enumerate() {
        match (i % 2, status) {
            (1, 201) => {}
            (0, 201) => same_orders.push(body["order_id"].clone()),
            (0, 409) => assert_eq!(body["error"], "RequestInProgress"),
            _ => panic!("request {i}: {status} {body}"),
        }
    }
    assert!(!same_orders.is_empty());
    assert!(
        same_orders.iter().all(|id| *id == same_orders[0]),
        "one order for twenty duplicates: {same_orders:?}"
    );

    // Logs: the correlation id and customer on the order's line; one order placed per key.
    let lines = function.json_lines();
    let placed: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "order placed")
        .collect();
    assert_eq!(placed.len(), 1 + 1 + 20, "sample, k-same, twenty own keys");
    let sample_line = placed
        .iter()
        .find(|line| line["correlation_id"] == "corr-2001")
        .expect("the sample order's line carries the caller's correlation id");
    assert_eq!(sample_line["customer_id"], "c-42");
    assert!(sample_line["function_request_id"].is_string());
    for line in &placed {
        assert!(line["correlation_id"].is_string(), "{line}");
    }

    // The event as Lambda sent it (lambda_http's type cannot be written back): logged through
    // powertools::run_concurrent's runtime layer, with the invocation's context.
    let logged_event = lines
        .iter()
        .find(|line| line["message"]["requestContext"]["requestId"] == "api-req-2001")
        .expect("the first POST's event is logged as received");
    assert_eq!(logged_event["message"]["rawPath"], "/orders");
    assert_eq!(
        logged_event["message"]["headers"]["idempotency-key"],
        "k-3f1c-2001"
    );
    assert!(logged_event["function_request_id"].is_string());

    // Metrics: one ColdStart, one OrdersPlaced per order.
    let documents = function.emf_documents();
    let count = |name: &str| -> f64 {
        documents
            .iter()
            .filter_map(|document| document[name].as_f64())
            .sum()
    };
    assert_eq!(count("ColdStart"), 1.0);
    assert_eq!(count("OrdersPlaced"), 22.0);

    // DynamoDB: one record per key that was placed.
    let scan = client.scan().table_name(&table).send().await.unwrap();
    assert_eq!(scan.count(), 22, "no record for a refused request");
}
