//! One dependency is enough: the facade re-exports what a function needs (the runtime, the event
//! types, batch processing, the DynamoDB store and its SDK crates), with lean default features.

use powertools::batch::{BatchProcessor, SqsRecord};
use powertools::events::sqs::SqsEvent;
use powertools::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn bake(event: LambdaEvent<SqsEvent>) -> Result<Value, lambda_runtime::Error> {
    let response = BatchProcessor::new()
        .process_sqs(&event.payload, |record: SqsRecord<Value>| async move {
            match record.body["loaves"].as_u64() {
                Some(_) => Ok(()),
                None => Err("no loaves"),
            }
        })
        .await
        .map_err(powertools::Error::from)?;
    Ok(serde_json::to_value(response)?)
}

fn sqs_event(bodies: &[&str]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            json!({
                "messageId": format!("m-{index}"),
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bake"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

#[tokio::test]
async fn a_batch_function_needs_only_the_facade() {
    use powertools::core::testing::TestContext;
    let partial = bake(TestContext::new().event(sqs_event(&[r#"{"loaves":2}"#, "{}"])))
        .await
        .expect("one record failed, not all");
    assert_eq!(
        partial["batchItemFailures"],
        json!([{"itemIdentifier": "m-1"}])
    );

    let error = bake(TestContext::new().event(sqs_event(&["{}"])))
        .await
        .expect_err("every record failed");
    assert_eq!(
        error
            .downcast_ref::<powertools::Error>()
            .map(powertools::Error::error_type),
        Some("BatchProcessingError")
    );
}

/// Type-checks a function started with the re-exported runtime; never called (it needs Lambda).
#[allow(dead_code)]
async fn the_runtime_is_re_exported() -> Result<(), lambda_runtime::Error> {
    powertools::lambda_runtime::run(service_fn(bake)).await
}

#[tokio::test]
async fn the_dynamodb_store_needs_no_sdk_crate_of_its_own() {
    let error = powertools::idempotency::dynamodb_store("")
        .await
        .expect_err("an empty table name");
    assert_eq!(error.error_type(), "IdempotencyConfigurationError");
    // Built with the environment's region (the test servers' scripts set `AWS_REGION`), or
    // refused naming the variable without one.
    if let Err(no_region) = powertools::idempotency::dynamodb_store("idempotency").await {
        assert!(no_region.to_string().contains("AWS_REGION"), "{no_region}");
    }

    // And a client of one's own, from the re-exported SDK crates.
    let config =
        powertools::aws_config::defaults(powertools::aws_config::BehaviorVersion::latest())
            .region(powertools::aws_config::Region::new("eu-west-1"))
            .load()
            .await;
    let client = powertools::aws_sdk_dynamodb::Client::new(&config);
    assert!(powertools::idempotency::DynamoDbStore::new(client, "idempotency").is_ok());
}
