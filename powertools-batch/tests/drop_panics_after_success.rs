//! A record whose handler's future panics when it is dropped, after it answered Ok, fails as
//! it does when an `async` block drops the same value (found by a review).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lambda_events::sqs::SqsEvent;
use powertools_batch::{BatchProcessor, Raw, SqsRecord};
use serde_json::json;

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("dropped");
    }
}

/// A future that is not an `async` block, holding a `Bomb`, that answers Ok at once.
struct Answer {
    _held: Bomb,
}
impl Future for Answer {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(()))
    }
}

fn sqs() -> SqsEvent {
    serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{}", "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-2", "body": "{}", "attributes": {}, "messageAttributes": {}},
    ]}))
    .expect("an SQS event")
}

fn failed(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}

/// The same panic in the same Drop fails m-1 when the future is an async block (the Bomb is
/// dropped when the block completes, within its poll), and is swallowed, m-1 reported as
/// processed, when the future is a struct (dropped by `dropped_within_the_record`).
#[tokio::test]
async fn a_drop_panic_of_a_succeeded_records_future_fails_it_as_an_async_block_s_does() {
    let event = sqs();
    let as_async_block = BatchProcessor::new()
        .raise_on_all_failed(false)
        .process_sqs(&event, |record: SqsRecord<Raw>| {
            let held = (record.message_id == "m-1").then(|| Bomb);
            async move {
                let _held = held;
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(failed(&as_async_block), ["m-1"], "async block");

    let as_struct = BatchProcessor::new()
        .raise_on_all_failed(false)
        .process_sqs(&event, |record: SqsRecord<Raw>| {
            // Only m-1 holds a live bomb: m-2's is forgotten up front.
            let bomb = Bomb;
            if record.message_id != "m-1" {
                std::mem::forget(bomb);
                return futures_util::future::Either::Left(async { Ok::<(), String>(()) });
            }
            futures_util::future::Either::Right(Answer { _held: bomb })
        })
        .await
        .unwrap();
    assert_eq!(
        failed(&as_struct),
        ["m-1"],
        "the record whose future panicked when dropped was reported as processed"
    );
}
