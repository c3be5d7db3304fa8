//! A `Drop` that panics in what a record leaves behind (its handler's future here; its error and
//! its panic's payload in `batch.rs`) fails that record only, on every kind of batch (found by a
//! review).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::SqsEvent;
use powertools_batch::{BatchProcessor, KinesisRecord, Raw, SqsRecord};
use serde_json::json;

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("dropped");
    }
}

/// A handler's future that is not an `async` block: it holds a `Bomb`, and answers at once.
struct Answer {
    _held: Bomb,
    fail: bool,
}
impl Future for Answer {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(if self.fail {
            Err("failed".into())
        } else {
            Ok(())
        })
    }
}

fn sqs() -> SqsEvent {
    serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{}", "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-2", "body": "{}", "attributes": {}, "messageAttributes": {}},
    ]}))
    .expect("an SQS event")
}

/// The record's future whose Drop panics must fail that record only (as its error's does):
/// it is dropped after the catch_unwind, and the panic unwinds out of process_sqs.
#[tokio::test]
async fn a_failed_records_future_that_panics_when_dropped_fails_its_record_only() {
    let event = sqs();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        BatchProcessor::new()
            .raise_on_all_failed(false)
            .process_sqs(&event, |record: SqsRecord<Raw>| Answer {
                _held: Bomb,
                fail: record.message_id == "m-1",
            }),
    ))
    .await;
    let response = outcome
        .expect("a Drop panic unwound out of the batch: Lambda retries every record")
        .unwrap();
    assert!(
        response
            .batch_item_failures
            .iter()
            .any(|failure| failure.item_identifier == "m-1")
    );
}

/// Same on Kinesis.
#[tokio::test]
async fn kinesis_a_records_future_that_panics_when_dropped_fails_its_record_only() {
    let event: KinesisEvent = serde_json::from_value(json!({"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "p", "sequenceNumber": "1",
            "data": "e30=", "approximateArrivalTimestamp": 1.0},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": "x",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "a", "awsRegion": "eu-west-1",
        "eventSourceARN": "arn:aws:kinesis:eu-west-1:1:stream/s"}]}))
    .unwrap();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        BatchProcessor::new()
            .raise_on_all_failed(false)
            .process_kinesis(&event, |_: KinesisRecord<Raw>| Answer {
                _held: Bomb,
                fail: true,
            }),
    ))
    .await;
    let response = outcome
        .expect("a Drop panic unwound out of the batch")
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
}

/// Same on DynamoDB Streams.
#[tokio::test]
async fn dynamodb_a_records_future_that_panics_when_dropped_fails_its_record_only() {
    let event: DynamoDbEvent = serde_json::from_value(json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {"Keys": {"id": {"S": "a"}}, "SequenceNumber": "111", "SizeBytes": 1,
            "StreamViewType": "KEYS_ONLY", "ApproximateCreationDateTime": 1.0},
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x"}]}))
    .unwrap();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        BatchProcessor::new()
            .raise_on_all_failed(false)
            .process_dynamodb(&event, |_| Answer {
                _held: Bomb,
                fail: true,
            }),
    ))
    .await;
    let response = outcome
        .expect("a Drop panic unwound out of the batch")
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
}
