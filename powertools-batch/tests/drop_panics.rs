//! A `Drop` that panics in what a record leaves behind (its handler's future here; its error and
//! its panic's payload in `batch.rs`) fails that record, and that record only, on every kind of
//! batch, whether the record had failed or succeeded (found by reviews).

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

/// A failed record's future whose `Drop` panics fails that record only, as its error's does (it
/// was dropped outside the `catch_unwind`, and the panic unwound out of `process_sqs`).
#[tokio::test]
async fn a_failed_records_future_that_panics_when_dropped_fails_its_record_only() {
    let event = sqs();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        BatchProcessor::new()
            .raise_on_entire_batch_failure(false)
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
            .raise_on_entire_batch_failure(false)
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
            .raise_on_entire_batch_failure(false)
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

/// The SQS records of `response` reported as failed.
fn failed(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}

/// A record that answered `Ok` and whose future panics as it is dropped fails, as it does when
/// an `async` block drops the same value within its poll (it was reported processed).
#[tokio::test]
async fn a_succeeded_records_future_that_panics_when_dropped_fails_it_as_an_async_block_s_does() {
    let event = sqs();
    let as_async_block = BatchProcessor::new()
        .raise_on_entire_batch_failure(false)
        .process_sqs(&event, |record: SqsRecord<Raw>| {
            // Only m-1's future holds a bomb (built for it alone: a bomb built and dropped here
            // would fail m-2 too).
            let held = if record.message_id == "m-1" {
                Some(Bomb)
            } else {
                None
            };
            async move {
                let _held = held;
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(failed(&as_async_block), ["m-1"], "async block");

    let as_struct = BatchProcessor::new()
        .raise_on_entire_batch_failure(false)
        .process_sqs(&event, |record: SqsRecord<Raw>| {
            // Only m-1 holds a live bomb: m-2's is forgotten up front.
            let bomb = Bomb;
            if record.message_id != "m-1" {
                std::mem::forget(bomb);
                return futures_util::future::Either::Left(async { Ok::<(), String>(()) });
            }
            futures_util::future::Either::Right(Answer {
                _held: bomb,
                fail: false,
            })
        })
        .await
        .unwrap();
    assert_eq!(failed(&as_struct), ["m-1"]);
}
