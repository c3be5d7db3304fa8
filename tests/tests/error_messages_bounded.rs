//! Error messages name their cause without quoting what a record or a variable holds: a stored
//! response that does not read back, a record with attributes of the wrong type, a table or
//! attribute name, a certificate path. Each quoted the value whole (a card number, hundreds of
//! kilobytes, in Lambda's `errorMessage`); found by an audit of the errors from the docs.
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use powertools::Powertools;
use powertools::core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{DynamoDbStore, Idempotency};
use powertools_tests::{create_idempotency_table, dynamodb_client};
use serde_json::json;

const CARD: &str = "4111111111111111";

/// The error and its sources, as a report prints them.
fn show(_label: &str, error: &(dyn std::error::Error + 'static)) -> String {
    powertools::error_report(error)
}

/// A certificate path from a variable is cut as every variable's value is.
#[test]
fn a_certificate_path_is_quoted_by_its_start() {
    let path = format!("/nonexistent/{CARD}{}", "x".repeat(100_000));
    let Err(error) = Powertools::builder()
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Audit"),
            ("POWERTOOLS_SERVICE_NAME", "audit"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4318",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", path.as_str()),
        ]))
        .logger(|logger| logger.writer(powertools::logging::MemoryLogs::new()))
        .metrics(|metrics| metrics.sink(powertools::metrics::MemorySink::new()))
        .build()
    else {
        panic!("built with a certificate file that does not exist");
    };
    let report = show("certificate", &error);
    assert!(
        report.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{report}"
    );
    assert!(report.len() < 2000, "{} bytes", report.len());
}

fn in_an_hour() -> String {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string()
}

/// A record whose stored response does not read as the response type: the serde message must
/// not quote the stored response (it may be a card number, or hundreds of KB).
#[tokio::test]
async fn an_unreadable_stored_response_is_not_quoted() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let idempotency = Idempotency::builder(DynamoDbStore::new(client.clone(), &table).unwrap())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let mut failures = Vec::new();
    for (label, stored) in [
        ("card", json!({"card": CARD}).to_string()),
        ("big", json!({"card": "y".repeat(300_000)}).to_string()),
    ] {
        let key = idempotency.key_for(&context, label, &json!("k"));
        client
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(key))
            .item("expiration", AttributeValue::N(in_an_hour()))
            .item("status", AttributeValue::S("COMPLETED".into()))
            .item("data", AttributeValue::S(stored))
            .send()
            .await
            .unwrap();
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        struct Receipt {
            #[allow(dead_code)]
            card: u64,
        }
        let error = idempotency
            .run(&context, label, "k", |_| async {
                Ok::<Receipt, std::io::Error>(Receipt { card: 1 })
            })
            .await
            .unwrap_err();
        let report = show(label, &error);
        let diagnostic = error.diagnostic_with(|_| unreachable!());
        if diagnostic.error_message.contains(CARD) {
            failures.push(format!("{label}: quotes the card"));
        }
        if diagnostic.error_message.len() > 4000 {
            failures.push(format!("{label}: {} bytes", report.len()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A hand-written record with attributes of the wrong type, or a megabyte status: the message
/// names the attribute and its type, and cuts the status (it quoted the attribute whole).
#[tokio::test]
async fn an_invalid_record_s_attributes_are_not_quoted() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let idempotency = Idempotency::builder(DynamoDbStore::new(client.clone(), &table).unwrap())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let cases: Vec<(&str, &str, AttributeValue)> = vec![
        (
            "data-as-map",
            "data",
            AttributeValue::M(
                [
                    ("card".to_owned(), AttributeValue::S(CARD.into())),
                    ("pad".to_owned(), AttributeValue::S("z".repeat(300_000))),
                ]
                .into(),
            ),
        ),
        (
            "status-huge",
            "status",
            AttributeValue::S(format!("{CARD}{}", "s".repeat(300_000))),
        ),
        (
            "expiry-not-number",
            "in_progress_expiration",
            AttributeValue::Ss(vec![CARD.into(), "q".repeat(300_000)]),
        ),
    ];
    let mut failures = Vec::new();
    for (label, attribute, value) in cases {
        let key = idempotency.key_for(&context, label, &json!("k"));
        let mut put = client
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(key))
            .item("expiration", AttributeValue::N(in_an_hour()))
            .item(attribute, value);
        if attribute != "status" {
            put = put.item("status", AttributeValue::S("COMPLETED".into()));
        }
        put.send().await.unwrap();
        let error = idempotency
            .run(&context, label, "k", |_| async {
                Ok::<String, std::io::Error>("ran".into())
            })
            .await
            .unwrap_err();
        let report = show(label, &error);
        // An unknown status is shown by its start, as a variable's value is (what it says is
        // the diagnosis); an attribute of the wrong type by its type only.
        if label != "status-huge" && report.contains(CARD) {
            failures.push(format!("{label}: quotes the card"));
        }
        if report.len() > 4000 {
            failures.push(format!("{label}: {} bytes", report.len()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A table name read from a variable with a megabyte value, or with a card number pasted in.
#[test]
fn a_table_or_attribute_name_is_quoted_by_its_start() {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    for name in [
        "t a b l e".to_owned(),
        format!("{CARD} {}", "n".repeat(200_000)),
    ] {
        let error = DynamoDbStore::new(client.clone(), &name).unwrap_err();
        let report = show("table", &error);
        assert_eq!(error.error_type(), "IdempotencyConfigurationError");
        assert!(report.len() < 2000, "{} bytes", report.len());
    }
    // A static pk value / attribute names from code.
    let error = DynamoDbStore::builder(client.clone(), "table")
        .key_attr("a".repeat(100_000))
        .status_attr("a".repeat(100_000))
        .build()
        .unwrap_err();
    let report = show("attrs", &error);
    assert!(report.len() < 2000, "{} bytes", report.len());
}
