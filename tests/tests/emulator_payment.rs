//! The `payment` example as a deployed function under the `cargo lambda` emulator, against
//! moto: a failed charge is retried and charged once, a duplicate is replayed from DynamoDB, a
//! changed amount is refused.

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use powertools_tests::EmulatedFunction;
use serde_json::Value;

fn payment_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/payment")
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(payment_dir().join("events").join(name))
        .expect("the sample event exists");
    serde_json::from_str(&text).expect("the sample event is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_charged_once_through_failures_retries_and_duplicates() {
    let Some(otlp) = powertools_tests::required_service("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return;
    };
    let Some(client) = powertools_tests::dynamodb_client().await else {
        return;
    };
    let table = powertools_tests::create_idempotency_table(&client).await;
    let Some(function) = EmulatedFunction::start(
        &payment_dir(),
        "payment",
        &[
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "payments"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ],
    ) else {
        return;
    };

    // The provider times out: Lambda reports the typed error and no record blocks the retry.
    let failed = function.invoke(&sample("flaky-payment.json"));
    assert_ne!(failed.status, 200);
    assert_eq!(failed.body["errorType"], "PaymentFailed", "{}", failed.body);
    let scan = client.scan().table_name(&table).send().await.unwrap();
    let fenced = scan.items().iter().all(|item| {
        matches!(item.get("claim_id"), Some(AttributeValue::S(id)) if id.starts_with("fence-"))
    });
    assert!(
        scan.count() == 1 && fenced,
        "the in-progress record was released (a fence any retry takes): {:?}",
        scan.items()
    );

    let retried = function.invoke(&sample("flaky-payment.json"));
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["charged_cents"], 880);

    // A duplicate is answered from the COMPLETED record.
    let first = function.invoke(&sample("payment.json"));
    let duplicate = function.invoke(&sample("payment.json"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        duplicate.body, first.body,
        "the same receipt, not a second charge"
    );

    let changed = function.invoke(&sample("changed-amount.json"));
    assert_eq!(
        changed.body["errorType"], "IdempotencyValidationError",
        "{}",
        changed.body
    );

    // A payment without an id is refused before its idempotency claim, twice: never charged.
    for _ in 0..2 {
        let mut no_id = sample("payment.json");
        no_id["payment_id"] = serde_json::json!("");
        let refused = function.invoke(&no_id);
        assert_eq!(
            refused.body["errorType"], "InvalidPaymentRequest",
            "{}",
            refused.body
        );
    }
    // An id of 300 kB is refused with a message that does not repeat it.
    let mut huge = sample("payment.json");
    huge["payment_id"] = serde_json::json!("p".repeat(300_000));
    let refused = function.invoke(&huge);
    assert_eq!(refused.body["errorType"], "InvalidPaymentRequest");
    assert!(refused.body.to_string().len() < 500, "{}", refused.body);

    // A field given twice, sent as text (a `Value` cannot hold it): refused, never charged at
    // either amount, whichever a validator in front kept.
    let mut twice = sample("payment.json");
    twice["payment_id"] = serde_json::json!("pay-twice");
    let text = twice.to_string();
    let text = format!("{},\"amount_cents\":1}}", &text[..text.len() - 1]);
    let refused = function.invoke_text(&text);
    assert_eq!(
        refused.body["errorType"], "InvalidPaymentRequest",
        "{}",
        refused.body
    );
    assert!(
        refused.body["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("amount_cents")),
        "{}",
        refused.body
    );

    let records = client.scan().table_name(&table).send().await.unwrap();
    assert_eq!(records.count(), 2, "one record per payment");
    for item in records.items() {
        assert_eq!(item["status"], AttributeValue::S("COMPLETED".into()));
    }
    let charged: Vec<Value> = function
        .json_lines()
        .into_iter()
        .filter(|line| line["message"] == "charged")
        .collect();
    assert_eq!(
        charged.len(),
        2,
        "two charges for two payments, whatever the retries"
    );
    assert!(charged.iter().all(|line| line["payment_id"].is_string()));
    // Every document checked against the EMF specification and CloudWatch's rules.
    let documents = function.emf_documents();
    let (cold_starts, charges): (Vec<&Value>, Vec<&Value>) = documents
        .iter()
        .partition(|document| document.get("ColdStart").is_some());
    assert_eq!(cold_starts.len(), 1, "one document for the cold start");
    assert_eq!(charges.len(), 2, "one EMF document per charge");
    assert!(
        charges
            .iter()
            .all(|d| d["PaymentsCharged"] == 1.0 && d["currency"] == "GBP")
    );
    assert!(
        !function
            .output()
            .contains("concurrency-tokio feature is not enabled"),
        "concurrency-ready: no warning from the runtime"
    );

    // Each charge attempt is a span under its invocation's span.
    let spans: Vec<Value> =
        std::fs::read_to_string(std::env::var("POWERTOOLS_TEST_SPANS_FILE").expect("spans file"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
    // The receiver is shared with the other tests, some of which run this function too: keep
    // the charges under the invocation spans of this process's invocations (those it logged).
    let ours: std::collections::HashSet<String> = function
        .json_lines()
        .iter()
        .filter_map(|line| line["function_request_id"].as_str().map(str::to_owned))
        .collect();
    let invocations: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "payment")
        .filter(|s| {
            s["attributes"].as_array().is_some_and(|attributes| {
                attributes.iter().any(|attribute| {
                    attribute["key"] == "faas.invocation_id"
                        && attribute["value"]["stringValue"]
                            .as_str()
                            .is_some_and(|id| ours.contains(id))
                })
            })
        })
        .collect();
    assert!(
        invocations.len() >= 5,
        "an invocation span per call: {}",
        function.output()
    );
    let charges = spans
        .iter()
        .filter(|s| s["name"] == "charge")
        .filter(|charge| {
            invocations
                .iter()
                .any(|invocation| invocation["spanId"] == charge["parentSpanId"])
        })
        .count();
    assert_eq!(charges, 3, "two charges and the failed attempt");
}
