//! The `orders-api` example as a deployed function: the real binary polling the Lambda Runtime
//! API of the `cargo lambda` emulator, invoked with its sample API Gateway events, against moto
//! (orders and idempotency tables) and oteltap (spans).

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use powertools_tests::{EmulatedFunction, InvokeResult};
use serde_json::{Value, json};

fn orders_api_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders-api")
}

fn sample(name: &str) -> Value {
    let path = orders_api_dir().join("events").join(name);
    let text = std::fs::read_to_string(&path).expect("the sample event exists");
    serde_json::from_str(&text).expect("the sample event is JSON")
}

/// The HTTP status and the JSON body of an API Gateway response.
fn http(result: &InvokeResult) -> (i64, Value) {
    assert_eq!(
        result.status, 200,
        "the invocation itself succeeded: {}",
        result.body
    );
    let body = result.body["body"].as_str().unwrap_or("null");
    (
        result.body["statusCode"].as_i64().expect("a status code"),
        serde_json::from_str(body).expect("a JSON body"),
    )
}

async fn orders_in(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let scan = client.scan().table_name(table).send().await.expect("scan");
    let mut ids: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|item| match item.get("order_id") {
            Some(AttributeValue::S(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids
}

/// A new orders table and idempotency table.
async fn tables(client: &aws_sdk_dynamodb::Client) -> (String, String) {
    (
        powertools_tests::create_orders_table(client).await,
        powertools_tests::create_idempotency_table(client).await,
    )
}

/// The function under the emulator, with its tables and the template's settings, plus `extra`.
fn start(orders: &str, idempotency: &str, extra: &[(&str, &str)]) -> Option<EmulatedFunction> {
    start_with_watch_args(orders, idempotency, extra, &[])
}

/// The function with its DynamoDB calls through a fault proxy, tracing off.
struct BehindAProxy {
    client: aws_sdk_dynamodb::Client,
    proxy: powertools_tests::FaultProxy,
    orders_table: String,
    idempotency_table: String,
    function: EmulatedFunction,
}

/// [`BehindAProxy`] on new tables, with `watch_args` for `cargo lambda watch`; `None` without
/// the test servers.
async fn behind_a_proxy(watch_args: &[String]) -> Option<BehindAProxy> {
    let client = powertools_tests::dynamodb_client().await?;
    let proxy = powertools_tests::FaultProxy::start().await?;
    let (orders_table, idempotency_table) = tables(&client).await;
    let endpoint = proxy.endpoint();
    let function = start_with_watch_args(
        &orders_table,
        &idempotency_table,
        &[
            ("POWERTOOLS_TRACE_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ],
        watch_args,
    )?;
    Some(BehindAProxy {
        client,
        proxy,
        orders_table,
        idempotency_table,
        function,
    })
}

/// [`start`], with arguments for `cargo lambda watch` (`runner_env`).
fn start_with_watch_args(
    orders: &str,
    idempotency: &str,
    extra: &[(&str, &str)],
    watch_args: &[String],
) -> Option<EmulatedFunction> {
    let mut env = vec![
        ("ORDERS_TABLE", orders),
        ("IDEMPOTENCY_TABLE", idempotency),
        ("POWERTOOLS_SERVICE_NAME", "orders"),
        ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
    ];
    env.extend_from_slice(extra);
    EmulatedFunction::start_with_watch_args(&orders_api_dir(), "orders-api", &env, watch_args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_function_places_each_order_once_and_reports_it_in_logs_metrics_and_traces() {
    let Some(otlp) = powertools_tests::required_service("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return;
    };
    let Some(client) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let (orders_table, idempotency_table) = tables(&client).await;
    let Some(function) = start(
        &orders_table,
        &idempotency_table,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str())],
    ) else {
        return;
    };

    // A first order, then the same request again: the same answer, one order, one charge.
    let (status, first) = http(&function.invoke(&sample("first-order.json")));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["total_cents"], 2550);
    let (status, retried) = http(&function.invoke(&sample("first-order.json")));
    assert_eq!(status, 201);
    assert_eq!(retried, first, "the retry gets the stored response");

    // The same key with another basket is a conflict, not a second order.
    let (status, conflict) = http(&function.invoke(&sample("same-key-other-basket.json")));
    assert_eq!(
        (status, conflict["error"].clone()),
        (422, json!("IdempotencyKeyReused"))
    );

    // A payment that fails leaves nothing behind; the retry places the order.
    let (status, failed) = http(&function.invoke(&sample("flaky-payment.json")));
    assert_eq!(
        (status, failed["error"].clone()),
        (502, json!("PaymentFailed"))
    );
    let (status, placed) = http(&function.invoke(&sample("flaky-payment.json")));
    assert_eq!(status, 201, "{placed}");

    // Refused before anything is charged.
    let (status, refused) = http(&function.invoke(&sample("empty-basket.json")));
    assert_eq!(
        (status, refused["error"].clone()),
        (400, json!("EmptyBasket"))
    );
    let (status, missing) = http(&function.invoke(&sample("missing-key.json")));
    assert_eq!(
        (status, missing["error"].clone()),
        (400, json!("MissingIdempotencyKey"))
    );

    // Refused before the idempotency claim, so nothing is recorded: the corrected order is
    // placed under the same key.
    let (status, refused) = http(&function.invoke(&sample("refused-order.json")));
    assert_eq!(
        (status, refused["error"].clone()),
        (400, json!("InvalidOrder"))
    );
    let (status, corrected) = http(&function.invoke(&sample("refused-order-corrected.json")));
    assert_eq!(status, 201, "the same key, corrected: {corrected}");

    // A body that is not JSON: a 400, and a log line that carries the invocation's context.
    let (status, malformed) = http(&function.invoke(&sample("malformed-body.json")));
    assert_eq!(
        (status, malformed["error"].clone()),
        (400, json!("InvalidBody"))
    );

    // The same order id under a new key, with a bigger basket: not charged again, not saved.
    let (status, conflict) = http(&function.invoke(&sample("same-order-new-key.json")));
    assert_eq!(
        (status, conflict["error"].clone()),
        (409, json!("PaymentConflict")),
        "{conflict}"
    );
    // The same total for other goods: the charge matches, but DynamoDB's conditional write
    // keeps the saved order.
    let mut swapped = sample("first-order.json");
    swapped["headers"]["idempotency-key"] = json!("k-swap-1001");
    swapped["body"] = json!(
        json!({"order_id": "ord-1001", "customer_id": "cust-77", "location": "camden",
               "items": [{"sku": "rye-loaf", "quantity": 1, "unit_price_cents": 2550}]})
        .to_string()
    );
    let (status, conflict) = http(&function.invoke(&swapped));
    assert_eq!(
        (status, conflict["error"].clone()),
        (409, json!("OrderConflict")),
        "{conflict}"
    );
    let saved = client
        .get_item()
        .table_name(&orders_table)
        .key("order_id", AttributeValue::S("ord-1001".into()))
        .send()
        .await
        .expect("get the first order");
    let saved = saved.item().expect("the first order is saved");
    assert_eq!(saved["total_cents"], AttributeValue::N("2550".into()));
    assert!(
        matches!(&saved["items"], AttributeValue::S(items) if items.contains("sourdough-loaf")),
        "not overwritten: {saved:?}"
    );

    // Duplicates at once: still one order.
    let mut duplicate = sample("first-order.json");
    duplicate["headers"]["idempotency-key"] = json!("k-dup-2001");
    duplicate["body"] = json!(
        json!({"order_id": "ord-2001", "customer_id": "cust-5", "location": "camden",
               "items": [{"sku": "baguette", "quantity": 1, "unit_price_cents": 180}]})
        .to_string()
    );
    let responses: Vec<(i64, Value)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| http(&function.invoke(&duplicate))))
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    for (status, body) in &responses {
        assert!(
            *status == 201 || (*status == 409 && body["error"] == "OrderInProgress"),
            "{status} {body}"
        );
    }
    assert!(responses.iter().any(|(status, _)| *status == 201));

    assert_eq!(
        orders_in(&client, &orders_table).await,
        ["ord-1001", "ord-1002", "ord-1004", "ord-2001"],
        "each order written once"
    );

    // Every JSON line the function wrote is a Powertools log line or a valid EMF document.
    let lines = function.json_lines();
    let logs: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("level").is_some())
        .collect();
    // Every document checked against the EMF specification and CloudWatch's rules.
    let documents = function.emf_documents();
    for line in &logs {
        for key in ["message", "timestamp", "service"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        // Lines of an invocation (the runtime's own start-up lines have no context).
        if line.get("order_id").is_some() {
            for key in [
                "function_request_id",
                "cold_start",
                "function_arn",
                "xray_trace_id",
            ] {
                assert!(line.get(key).is_some(), "{key} missing in {line}");
            }
        }
        assert!(
            line.get("faas.name").is_none(),
            "tracing fields stay out of logs: {line}"
        );
    }
    let placed_lines: Vec<&&Value> = logs
        .iter()
        .filter(|line| line["message"] == "order placed")
        .collect();
    assert_eq!(placed_lines.len(), 4, "one per order placed");
    // The refusals were logged inside their invocations.
    let refusals: Vec<&&Value> = logs
        .iter()
        .filter(|line| line["message"] == "request refused before its idempotency claim")
        .collect();
    assert_eq!(
        refusals.len(),
        4,
        "negative price, empty basket, no key, not JSON"
    );
    for line in &refusals {
        assert_eq!(line["level"], "WARN");
        assert!(line["function_request_id"].is_string(), "{line}");
        assert!(line["correlation_id"].is_string(), "{line}");
    }
    assert!(
        !function
            .output()
            .contains("concurrency-tokio feature is not enabled"),
        "concurrency-ready: no warning from the runtime"
    );
    assert_eq!(placed_lines[0]["order_id"], "ord-1001");
    assert_eq!(placed_lines[0]["shop"], "camden");
    assert!(
        placed_lines[0]["location"]
            .as_str()
            .is_some_and(|location| location.starts_with("orders_api::")),
        "Powertools' location, the code's place: {}",
        placed_lines[0]
    );
    assert_eq!(placed_lines[0]["customer_id"], "cust-77");
    assert_eq!(placed_lines[0]["correlation_id"], "api-req-1");
    let cold_starts = documents
        .iter()
        .filter(|document| document.get("ColdStart").is_some())
        .count();
    assert_eq!(cold_starts, 1, "one document for the cold start");
    let orders: Vec<&Value> = documents
        .iter()
        .filter(|document| document.get("ColdStart").is_none())
        .collect();
    assert_eq!(orders.len(), 4, "one EMF document per order placed");
    for document in orders {
        assert_eq!(document["OrdersPlaced"], 1.0);
        assert!(
            document["order_id"].is_string(),
            "metadata, not a dimension"
        );
    }

    // The spans reached the receiver: the invocation, the charge and the DynamoDB calls.
    let spans_file = std::env::var("POWERTOOLS_TEST_SPANS_FILE").expect("spans file");
    let spans: Vec<Value> = std::fs::read_to_string(spans_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let named = |name: &str| spans.iter().filter(|span| span["name"] == name).count();
    assert!(named("orders-api") >= 8, "an invocation span per request");
    assert!(named("charge") >= 4);
    assert!(named("DynamoDB.PutItem") >= 4);
}

/// The function's own calls to its orders table, faulted through the fault proxy: a read refused
/// (a missing permission) or stalled fails the invocation naming the call, the table and the
/// cause, in a few seconds and with its failure line, not with a dump of the raw HTTP response
/// nor by hanging until Lambda kills it with nothing logged (found by an attack: the SDK client
/// had no timeout, and a refused read was reported as `OrderNotSaved`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_table_s_faults_fail_the_invocation_naming_the_call_and_its_cause() {
    let Some(BehindAProxy {
        client,
        proxy,
        orders_table,
        idempotency_table,
        function,
    }) = behind_a_proxy(&[]).await
    else {
        return;
    };
    let (status, _) = http(&function.invoke(&sample("missing-key.json")));
    assert_eq!(status, 400, "warmed up without the table");

    let failed = |result: &InvokeResult| -> (String, String) {
        assert_ne!(result.status, 200, "the invocation failed: {}", result.body);
        (
            result.body["errorType"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            result.body["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    proxy.set(json!({"action": "error", "status": 400, "code": "AccessDeniedException", "target": "GetItem"}));
    let (error_type, message) = failed(&function.invoke(&sample("first-order.json")));
    assert_eq!(error_type, "OrderNotRead", "{message}");
    assert!(
        message.contains(&format!(
            "DynamoDB GetItem on table {orders_table} failed: AccessDeniedException"
        )),
        "{message}"
    );
    assert!(
        message.len() < 600 && !message.contains("raw") && !message.contains("SdkBody"),
        "no dump of the HTTP response: {message}"
    );

    proxy.set(json!({"action": "hang", "target": "GetItem"}));
    let mut event = sample("first-order.json");
    event["headers"]["idempotency-key"] = json!("k-stalled-read");
    let result = std::thread::scope(|scope| {
        let call = scope.spawn(|| function.invoke(&event));
        let started = std::time::Instant::now();
        // A bound on hanging, not a timing: the client gives up within seconds.
        while !call.is_finished() && started.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let finished = call.is_finished();
        proxy.set(json!({"action": "pass"}));
        let result = call.join().expect("the invocation");
        assert!(finished, "the stalled read hung the invocation: {result:?}");
        result
    });
    let (error_type, message) = failed(&result);
    assert_eq!(error_type, "OrderNotRead", "{message}");
    assert!(
        message.contains(&format!("DynamoDB GetItem on table {orders_table} failed")),
        "{message}"
    );
    assert!(message.contains("timed out"), "{message}");

    let lines = function.json_lines();
    let failure_lines: Vec<&Value> = lines
        .iter()
        .filter(|line| line["exception_name"] == "OrderNotRead")
        .collect();
    assert_eq!(failure_lines.len(), 2, "a failure line each: {lines:?}");
    assert!(failure_lines.iter().all(|line| line["level"] == "ERROR"));

    // The save stalls after the charge (the fourth PutItem of this placement: the order's claim,
    // refused by the fence the failed read above left, then the order's claim over that fence,
    // the charge's claim, the save): the invocation fails, and the retry replays the charge and
    // saves the order, charged once.
    proxy.set(json!({"action": "hang", "target": "PutItem", "skip": 3}));
    let (error_type, message) = failed(&function.invoke(&sample("first-order.json")));
    assert_eq!(error_type, "OrderNotSaved", "{message}");
    assert!(
        message.contains(&format!("DynamoDB PutItem on table {orders_table} failed")),
        "{message}"
    );
    assert!(orders_in(&client, &orders_table).await.is_empty());
    proxy.set(json!({"action": "pass"}));
    let (status, placed) = http(&function.invoke(&sample("first-order.json")));
    assert_eq!(status, 201, "{placed}");
    assert_eq!(orders_in(&client, &orders_table).await, vec!["ord-1001"]);
    let charges = client
        .scan()
        .table_name(&idempotency_table)
        .send()
        .await
        .expect("scan")
        .items()
        .iter()
        .filter(
            |item| matches!(item.get("id"), Some(AttributeValue::S(id)) if id.contains(".charge#")),
        )
        .count();
    assert_eq!(charges, 1, "one charge record, replayed by the retry");
    // The simulated provider numbers its charges: the first and only one of this process, and
    // never a repeated charge answered with its first receipt.
    assert_eq!(placed["payment"], "ch_0001", "{placed}");
    assert!(
        !function
            .output()
            .contains("the provider answered a repeated charge"),
        "the charge ran once"
    );

    // A saved order the function cannot read (no `location`, written by hand or by an older
    // version) is a read failure, found before the charge: `OrderNotRead` (it was
    // `OrderNotSaved`, which says a save failed: found by an attack).
    client
        .put_item()
        .table_name(&orders_table)
        .item("order_id", AttributeValue::S("ord-unreadable".into()))
        .item("customer_id", AttributeValue::S("cust-5".into()))
        .item("total_cents", AttributeValue::N("180".into()))
        .item(
            "items",
            AttributeValue::S(r#"[{"sku":"baguette","quantity":1,"unit_price_cents":180}]"#.into()),
        )
        .send()
        .await
        .expect("put an unreadable order");
    let mut unreadable = sample("first-order.json");
    unreadable["headers"]["idempotency-key"] = json!("k-unreadable");
    unreadable["body"] = json!(
        json!({"order_id": "ord-unreadable", "customer_id": "cust-5", "location": "camden",
               "items": [{"sku": "baguette", "quantity": 1, "unit_price_cents": 180}]})
        .to_string()
    );
    let (error_type, message) = failed(&function.invoke(&unreadable));
    assert_eq!(error_type, "OrderNotRead", "{message}");
    assert!(
        message.contains("ord-unreadable") && message.contains("`location`"),
        "{message}"
    );
    assert!(!function.output().contains("ch_0002"), "nothing charged");

    // The charge goes through, then the idempotency table refuses to complete the charge's
    // record (once: the order's claim is then released): `PaymentIdempotencyError`, as the
    // README names it. When the release of the order's claim fails too (every UpdateItem
    // refused), the invocation is `IdempotencyPersistenceLayerError` (as Powertools for Python
    // names a failed release), its message naming both, and the README's row for it says what
    // follows (a new key was said to get the order at once; found by an attack through the
    // emulator).
    let order = |key: &str, order_id: &str| {
        let mut event = sample("first-order.json");
        event["headers"]["idempotency-key"] = json!(key);
        event["body"] = json!(
            json!({"order_id": order_id, "customer_id": "cust-6", "location": "camden",
                   "items": [{"sku": "baguette", "quantity": 1, "unit_price_cents": 180}]})
            .to_string()
        );
        event
    };
    proxy.set(
        json!({"action": "error", "status": 400, "code": "ValidationException",
                     "target": "UpdateItem", "times": 1}),
    );
    let (error_type, message) =
        failed(&function.invoke(&order("k-charge-kept", "ord-charge-kept")));
    proxy.set(json!({"action": "pass"}));
    assert_eq!(error_type, "PaymentIdempotencyError", "{message}");
    assert!(message.contains("ValidationException"), "{message}");
    proxy.set(
        json!({"action": "error", "status": 400, "code": "ValidationException",
                     "target": "UpdateItem"}),
    );
    let (error_type, message) = failed(&function.invoke(&order("k-both-kept", "ord-both-kept")));
    proxy.set(json!({"action": "pass"}));
    assert_eq!(error_type, "IdempotencyPersistenceLayerError", "{message}");
    assert!(
        message.starts_with("the payment could not be made idempotent")
            && message.contains("releasing the in-progress record then failed too"),
        "{message}"
    );
    let lines = function.json_lines();
    for name in [
        "PaymentIdempotencyError",
        "IdempotencyPersistenceLayerError",
    ] {
        assert!(
            lines.iter().any(|line| line["exception_name"] == name),
            "a failure line names {name}: {lines:?}"
        );
    }
}

/// The same order under two keys at once (a client that mints a key per attempt, two tabs):
/// the second request read the orders table before the first's save landed, replayed the
/// charge and saved the very same order; both counted it, so `OrdersPlaced` and the "order
/// placed" line came twice for one order, charged once (found by an attack through the
/// emulator). Only the invocation whose write saved the order counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_under_two_keys_at_once_is_counted_once() {
    let Some(BehindAProxy {
        client,
        proxy,
        orders_table,
        function,
        ..
    }) = behind_a_proxy(&powertools_tests::runner_env(
        "AWS_LAMBDA_MAX_CONCURRENCY",
        "2",
    ))
    .await
    else {
        return;
    };
    let (status, _) = http(&function.invoke(&sample("missing-key.json")));
    assert_eq!(status, 400, "warmed up");

    // The first request's save (its third PutItem: the order's claim, the charge's claim, the
    // save) reaches moto 800 ms late, within the SDK's 1 s attempt; the second request, under
    // another key, runs meanwhile.
    proxy.set(json!({"action": "delay", "ms": 800, "target": "PutItem", "skip": 2, "times": 1}));
    let first = sample("first-order.json");
    let mut second = first.clone();
    second["headers"]["idempotency-key"] = json!("k-second-tab");
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| function.invoke(&first));
        std::thread::sleep(std::time::Duration::from_millis(250));
        let second = function.invoke(&second);
        (first.join().expect("the first request"), second)
    });
    let (first, second) = (http(&first), http(&second));
    assert_eq!((first.0, second.0), (201, 201), "{first:?} {second:?}");
    assert_eq!(first.1["payment"], second.1["payment"], "one charge");
    assert_eq!(orders_in(&client, &orders_table).await, vec!["ord-1001"]);

    let lines = function.json_lines();
    let placed = lines
        .iter()
        .filter(|line| line["message"] == "order placed" && line["order_id"] == "ord-1001")
        .count();
    let counted: f64 = lines
        .iter()
        .filter(|line| line.get("_aws").is_some() && line["order_id"] == "ord-1001")
        .filter_map(|line| line["OrdersPlaced"].as_f64())
        .sum();
    assert_eq!((placed, counted), (1, 1.0), "{lines:#?}");
}

/// A function that cannot start (a setting it reads itself missing) ends the test's invocation
/// at once, naming the variable: with the init error, when the emulator takes the report, or
/// with the process's output once it exits. The harness waited for the emulator's answer first,
/// which for a process whose report it did not take came after ten minutes (found by a user
/// writing a function from the docs).
#[test]
fn a_function_that_cannot_start_fails_the_invocation_at_once_naming_the_variable() {
    let Some(function) = EmulatedFunction::start(
        &orders_api_dir(),
        "orders-api",
        &[
            ("ORDERS_TABLE", ""),
            ("IDEMPOTENCY_TABLE", "idempotency"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
        ],
    ) else {
        return;
    };
    let function = std::sync::Arc::new(function);
    let (sender, receiver) = std::sync::mpsc::channel();
    let invoking = function.clone();
    std::thread::spawn(move || {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            invoking.invoke(&sample("first-order.json"))
        }));
        let answer = answer.map(|answer| answer.body).map_err(|panic| {
            powertools::core::error_chain::panic_text(panic.as_ref())
                .unwrap_or_default()
                .to_owned()
        });
        let _ = sender.send(answer);
    });
    // A bound on the wait, not a timing: the old harness left it to the emulator's ten minutes.
    let answer = receiver
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the invocation ends without waiting for the emulator's timeout");
    match answer {
        // `cargo lambda watch` answers with the init error when it takes the report in time
        // (as Lambda does)...
        Ok(body) => assert!(
            body["errorMessage"]
                .as_str()
                .is_some_and(|message| message.contains("ORDERS_TABLE is not set")),
            "{body}"
        ),
        // ... and otherwise the process's exit ends the invocation, with its output.
        Err(panic) => {
            assert!(panic.contains("exited while invoked"), "{panic}");
            assert!(panic.contains("ORDERS_TABLE is not set"), "{panic}");
        }
    }
}
