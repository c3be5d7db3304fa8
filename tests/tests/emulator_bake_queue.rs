//! The `bake-queue` example as a deployed SQS consumer under the `cargo lambda` emulator, with
//! its idempotency records in moto: partial batch failures, and a redelivered batch that bakes
//! nothing twice.

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use powertools_tests::EmulatedFunction;
use serde_json::Value;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/bake-queue")
}

/// The function under the emulator with a fresh table in moto; `None` (skipped) outside CI
/// without the servers.
async fn start() -> Option<(aws_sdk_dynamodb::Client, String, EmulatedFunction)> {
    let client = powertools_tests::dynamodb_client().await?;
    let table = powertools_tests::create_idempotency_table(&client).await;
    let function = EmulatedFunction::start(
        &example_dir(),
        "bake-queue",
        &[
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "ovens"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
        ],
    )?;
    Some((client, table, function))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_only_its_failed_messages_and_a_redelivery_bakes_nothing_twice() {
    let Some((client, table, function)) = start().await else {
        return;
    };
    let text = std::fs::read_to_string(example_dir().join("events/bake-orders.json"))
        .expect("the sample event exists");
    let batch: Value = serde_json::from_str(&text).expect("the sample event is JSON");

    for delivery in 0..2 {
        let result = function.invoke(&batch);
        assert_eq!(result.status, 200, "{}", result.body);
        let failed: Vec<&str> = result.body["batchItemFailures"]
            .as_array()
            .expect("a batch response")
            .iter()
            .map(|failure| failure["itemIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(
            failed,
            ["7b1c0f2e-0003", "7b1c0f2e-0004"],
            "delivery {delivery}"
        );
    }

    let lines = function.json_lines();
    let baked: Vec<&Value> = lines.iter().filter(|l| l["message"] == "baked").collect();
    assert_eq!(
        baked.len(),
        3,
        "three good orders, baked once each over two deliveries"
    );
    for line in &baked {
        assert!(
            line["message_id"]
                .as_str()
                .unwrap()
                .starts_with("7b1c0f2e-"),
            "each line carries its message id: {line}"
        );
    }
    // Every document checked against the EMF specification and CloudWatch's rules.
    let documents = function.emf_documents();
    assert_eq!(
        documents
            .iter()
            .filter(|document| document.get("ColdStart").is_some())
            .count(),
        1,
        "one document for the cold start"
    );
    let first_batch = documents
        .iter()
        .find(|document| document.get("BatchRecordsProcessed").is_some())
        .expect("the first batch's document");
    assert_eq!(first_batch["BatchRecordsProcessed"], 3.0);
    assert_eq!(first_batch["BatchRecordsFailed"], 2.0);
    // Records run in parallel: the values arrive in any order.
    let mut loaves: Vec<f64> = first_batch["LoavesBaked"]
        .as_array()
        .expect("three values")
        .iter()
        .map(|value| value.as_f64().unwrap())
        .collect();
    loaves.sort_by(f64::total_cmp);
    assert_eq!(loaves, [1.0, 2.0, 6.0]);
    let records = client.scan().table_name(&table).send().await.unwrap();
    let status = |item: &std::collections::HashMap<String, AttributeValue>| match item.get("status")
    {
        Some(AttributeValue::S(status)) => status.clone(),
        _ => String::new(),
    };
    let completed = records
        .items()
        .iter()
        .filter(|item| status(item) == "COMPLETED")
        .count();
    assert_eq!(completed, 3, "one COMPLETED record per good message");
    // A failed message's claim was released: a fence any redelivery takes, never a held key.
    let held = records.items().iter().filter(|item| {
        status(item) != "COMPLETED"
            && !matches!(item.get("claim_id"), Some(AttributeValue::S(id)) if id.starts_with("fence-"))
    });
    assert_eq!(held.count(), 0, "{:?}", records.items());
    assert!(
        !function
            .output()
            .contains("concurrency-tokio feature is not enabled"),
        "concurrency-ready: no warning from the runtime"
    );
}

/// An event that does not read as the function's event type (a direct invoke can send anything)
/// fails the invocation with `InvalidEvent`, naming where and what was expected but never the
/// value: `lambda_runtime` alone answers and logs serde's message, which quotes it (a card number,
/// or megabytes of it). The function goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_is_not_an_sqs_event_fails_naming_where_never_quoting_the_value() {
    let Some((_, _, function)) = start().await else {
        return;
    };
    let card = 4_929_000_000_006_u64;
    let long_text = format!("ZZLONG{}", "x".repeat(1 << 20));
    let long_key = format!("{}ZZKEY", "k".repeat(100));
    let hostile = [
        (
            serde_json::json!({"Records": [{"messageId": "m-1", "body": card}]}),
            "Records[0].body",
            "expected a string",
        ),
        (
            serde_json::json!({"Records": [{"messageId": "m-2", "body": "{}"}, {"attributes": long_text}]}),
            "Records[1].attributes",
            "invalid type",
        ),
        (
            serde_json::json!({"Records": [{"messageAttributes": {long_key.as_str(): 5}}]}),
            "Records[0].messageAttributes",
            "invalid type",
        ),
        // A path that names a masked key: the log line's exception is masked from there.
        (
            serde_json::json!({"Records": [{"messageAttributes": {"password": 5}}]}),
            "Records[0].messageAttributes.password",
            "invalid type",
        ),
    ];
    for (event, path, what) in &hostile {
        let result = function.invoke(event);
        assert_ne!(result.status, 200, "{}", result.body);
        assert_eq!(result.body["errorType"], "InvalidEvent", "{}", result.body);
        let message = result.body["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains(path) && message.contains(what),
            "names where and what was expected: {message}"
        );
        assert!(
            message.len() < 1_000,
            "a short message: {} bytes",
            message.len()
        );
        for value in [card.to_string().as_str(), "ZZLONG", "ZZKEY"] {
            assert!(!message.contains(value), "quotes {value}: {message}");
        }
    }

    let text = std::fs::read_to_string(example_dir().join("events/bake-orders.json"))
        .expect("the sample event exists");
    let batch: Value = serde_json::from_str(&text).expect("the sample event is JSON");
    let result = function.invoke(&batch);
    assert_eq!(result.status, 200, "the function goes on: {}", result.body);

    let output = function.output();
    for value in [card.to_string().as_str(), "ZZLONG", "ZZKEY"] {
        assert!(!output.contains(value), "the log quotes {value}");
    }
    let failures: Vec<Value> = function
        .json_lines()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(failures.len(), hostile.len(), "one line each: {failures:?}");
    for line in &failures {
        assert!(
            line["function_request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "the line carries the invocation's request id: {line}"
        );
        // And the function's name, as every line of the function: a query on it found every
        // failure but these.
        assert_eq!(line["function_name"], "bake-queue", "{line}");
        assert_eq!(line["message"], "Invocation failed", "{line}");
        assert_eq!(line["exception_name"], "InvalidEvent", "{line}");
        assert!(
            line["exception"]
                .as_str()
                .is_some_and(|exception| exception.contains(" at Records[")),
            "the line names where: {line}"
        );
        assert!(line.get("error").is_none(), "said once: {line}");
    }
    assert_eq!(
        failures
            .iter()
            .filter(|line| line["exception"]
                .as_str()
                .is_some_and(|exception| exception
                    .ends_with(" at Records[0].messageAttributes.password*****")))
            .count(),
        1,
        "the line whose path names a masked key is masked from there: {failures:?}"
    );
}
