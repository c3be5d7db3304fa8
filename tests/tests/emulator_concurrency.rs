//! The examples under Lambda Managed Instances' concurrency: one process, eight invocations at
//! once (`AWS_LAMBDA_MAX_CONCURRENCY=8`), through the `cargo lambda` emulator, against moto.
//!
//! cargo-lambda 1.9.2's emulator serves several `/next` long-polls of one process at once (each
//! gets the next queued invocation), but `cargo lambda watch` sets `AWS_LAMBDA_MAX_CONCURRENCY=1`
//! for the function it starts; [`runner_env`] sets it to 8 after that. The tests check that the
//! invocations really overlapped, eight at most (their spans' times), that each answer is its own, that
//! every log line carries its own invocation's request id and business keys, that the process
//! wrote one `ColdStart` metric, and that 50 identical payments at once charge once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use powertools_tests::{EmulatedFunction, runner_env};
use serde_json::{Value, json};

fn example_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The function's log lines (not its EMF documents), in the order it wrote them.
fn log_lines(function: &EmulatedFunction) -> Vec<Value> {
    function
        .json_lines()
        .into_iter()
        .filter(|line| line.get("level").is_some() && line.get("_aws").is_none())
        .collect()
}

/// The start and end (ns) of the invocation spans named `name` of the given invocations, as the
/// OTLP receiver got them (it is shared with other tests); waits up to 20 s for all of them.
fn invocation_spans(name: &str, request_ids: &HashSet<&str>) -> Vec<(u128, u128)> {
    let path = std::env::var("POWERTOOLS_TEST_SPANS_FILE").expect("the spans file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let spans: Vec<(u128, u128)> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|span| span["name"] == name)
            .filter(|span| {
                span["attributes"].as_array().is_some_and(|attributes| {
                    attributes.iter().any(|attribute| {
                        attribute["key"] == "faas.invocation_id"
                            && attribute["value"]["stringValue"]
                                .as_str()
                                .is_some_and(|id| request_ids.contains(id))
                    })
                })
            })
            .filter_map(|span| {
                let time = |key: &str| span[key].as_str()?.parse::<u128>().ok();
                Some((time("startTimeUnixNano")?, time("endTimeUnixNano")?))
            })
            .collect();
        if spans.len() >= request_ids.len() || std::time::Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The most invocations running at the same moment.
fn max_overlap(spans: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // At the same instant, an end before a start: touching is not overlapping.
    edges.sort_unstable();
    let (mut running, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    usize::try_from(most).unwrap_or_default()
}

/// Checks from the invocations' spans that they ran at once, at most eight at a time.
fn assert_ran_eight_at_a_time(name: &str, request_ids: &HashSet<&str>) {
    let spans = invocation_spans(name, request_ids);
    assert_eq!(spans.len(), request_ids.len(), "a span per invocation");
    let most = max_overlap(&spans);
    assert!(
        (2..=8).contains(&most),
        "{most} invocations at once: more than one, at most AWS_LAMBDA_MAX_CONCURRENCY"
    );
}

/// The documents with a `ColdStart` metric.
fn cold_starts(documents: &[Value]) -> usize {
    documents
        .iter()
        .filter(|document| document.get("ColdStart").is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_orders_at_once_each_get_their_own_answer_logs_and_metrics() {
    let Some(otlp) = powertools_tests::required_service("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return;
    };
    let Some(client) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let orders_table = powertools_tests::create_orders_table(&client).await;
    let idempotency_table = powertools_tests::create_idempotency_table(&client).await;
    let Some(function) = EmulatedFunction::start_with_watch_args(
        &example_dir("orders-api"),
        "orders-api",
        &[
            ("ORDERS_TABLE", orders_table.as_str()),
            ("IDEMPOTENCY_TABLE", idempotency_table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "orders"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ],
        &runner_env("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    ) else {
        return;
    };
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(example_dir("orders-api").join("events/first-order.json"))
            .expect("the sample event"),
    )
    .expect("JSON");
    // Order i: its own key, API request id, order, customer, location and total.
    let requests: Vec<Value> = (0..100)
        .map(|i| {
            let mut request = sample.clone();
            request["headers"]["idempotency-key"] = json!(format!("k-conc-{i}"));
            request["requestContext"]["requestId"] = json!(format!("api-conc-{i}"));
            request["body"] = json!(
                json!({
                    "order_id": format!("ord-conc-{i}"),
                    "customer_id": format!("cust-conc-{i}"),
                    "location": format!("shop-{i}"),
                    "items": [{"sku": "bun", "quantity": i + 1, "unit_price_cents": 100}],
                })
                .to_string()
            );
            request
        })
        .collect();

    let results = function.invoke_all(&requests);

    // Each answer is its own.
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.status, 200, "order {i}: {}", result.body);
        let body: Value =
            serde_json::from_str(result.body["body"].as_str().expect("a body")).expect("JSON");
        assert_eq!(result.body["statusCode"], 201, "order {i}: {body}");
        assert_eq!(body["order_id"], format!("ord-conc-{i}"));
        assert_eq!(body["total_cents"], (i + 1) * 100);
    }

    let lines = log_lines(&function);
    assert!(
        !function
            .output()
            .contains("concurrency-tokio feature is not enabled"),
        "the runtime runs them concurrently"
    );
    // Every line with business keys carries its own invocation's context: the API request id
    // (the correlation id, from the event) and the order's keys (appended by the handler) are
    // of the same order, and one Lambda request id never mixes two orders.
    let mut order_of_request: HashMap<String, String> = HashMap::new();
    for line in lines.iter().filter(|line| line.get("order_id").is_some()) {
        let order_id = line["order_id"].as_str().expect("a string order id");
        let i = order_id.strip_prefix("ord-conc-").expect("one of ours");
        assert_eq!(line["correlation_id"], format!("api-conc-{i}"), "{line}");
        assert_eq!(line["customer_id"], format!("cust-conc-{i}"), "{line}");
        assert_eq!(line["shop"], format!("shop-{i}"), "{line}");
        let request_id = line["function_request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the invocation's request id in {line}"));
        let first = order_of_request
            .entry(request_id.to_owned())
            .or_insert_with(|| order_id.to_owned());
        assert_eq!(first, order_id, "request {request_id} mixes two orders");
    }
    let placed: HashSet<&str> = lines
        .iter()
        .filter(|line| line["message"] == "order placed")
        .map(|line| line["function_request_id"].as_str().expect("a request id"))
        .collect();
    assert_eq!(placed.len(), 100, "one 'order placed' per invocation");
    assert_ran_eight_at_a_time("orders-api", &placed);

    // One cold start for the process; each document's dimension and metadata are its order's.
    let documents = function.emf_documents();
    assert_eq!(cold_starts(&documents), 1, "one ColdStart metric");
    let orders: Vec<&Value> = documents
        .iter()
        .filter(|document| document.get("OrdersPlaced").is_some())
        .collect();
    assert_eq!(orders.len(), 100);
    for document in orders {
        let i = document["order_id"]
            .as_str()
            .and_then(|id| id.strip_prefix("ord-conc-"))
            .expect("the order id as metadata");
        assert_eq!(document["location"], format!("shop-{i}"), "{document}");
        assert_eq!(document["OrderValue"], (i.parse::<f64>().unwrap() + 1.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_payments_at_once_charge_once_beside_fifty_others() {
    let Some(otlp) = powertools_tests::required_service("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return;
    };
    let Some(client) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let table = powertools_tests::create_idempotency_table(&client).await;
    let Some(function) = EmulatedFunction::start_with_watch_args(
        &example_dir("payment"),
        "payment",
        &[
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "payments"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ],
        &runner_env("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    ) else {
        return;
    };
    let payment = |id: &str, order: &str, amount: u64| {
        json!({"payment_id": id, "order_id": order, "customer_id": "cust-12",
               "amount_cents": amount, "currency": "GBP"})
    };
    // Even positions: the same payment, fifty times; odd positions: fifty payments of their own.
    let requests: Vec<Value> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                payment("pay-same", "ord-same", 4200)
            } else {
                payment(&format!("pay-own-{i}"), &format!("ord-own-{i}"), 100 + i)
            }
        })
        .collect();

    let results = function.invoke_all(&requests);

    let mut receipts = Vec::new();
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(result.status, 200, "payment {i}: {}", result.body);
            assert_eq!(result.body["payment_id"], format!("pay-own-{i}"));
            assert_eq!(result.body["charged_cents"], 100 + i);
        } else if result.status == 200 {
            receipts.push(result.body.clone());
        } else {
            // A duplicate that arrived while the first was charging.
            assert_eq!(
                result.body["errorType"], "IdempotencyAlreadyInProgressError",
                "{}",
                result.body
            );
        }
    }
    assert!(!receipts.is_empty(), "the first of the fifty is charged");
    assert!(
        receipts.iter().all(|receipt| *receipt == receipts[0]),
        "every duplicate that got an answer got the first receipt: {receipts:?}"
    );

    let lines = log_lines(&function);
    let charged: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "charged")
        .collect();
    assert_eq!(
        charged
            .iter()
            .filter(|line| line["payment_id"] == "pay-same")
            .count(),
        1,
        "fifty identical payments, one charge"
    );
    assert_eq!(charged.len(), 51, "and one charge for each other payment");
    let charging: HashSet<&str> = charged
        .iter()
        .map(|line| line["function_request_id"].as_str().expect("a request id"))
        .collect();
    assert_ran_eight_at_a_time("payment", &charging);
    let mut payment_of_request: HashMap<String, String> = HashMap::new();
    for line in lines.iter().filter(|line| line.get("payment_id").is_some()) {
        let payment_id = line["payment_id"].as_str().expect("a string payment id");
        let order_id = line["order_id"].as_str().expect("the order id beside it");
        assert_eq!(
            order_id,
            payment_id.replace("pay-", "ord-"),
            "one payment's keys: {line}"
        );
        let request_id = line["function_request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the invocation's request id in {line}"));
        let first = payment_of_request
            .entry(request_id.to_owned())
            .or_insert_with(|| payment_id.to_owned());
        assert_eq!(first, payment_id, "request {request_id} mixes two payments");
    }
    let documents = function.emf_documents();
    assert_eq!(cold_starts(&documents), 1, "one ColdStart metric");
    assert_eq!(
        documents
            .iter()
            .filter(|document| document.get("PaymentsCharged").is_some())
            .count(),
        51
    );
}
