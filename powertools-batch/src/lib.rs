//! Partial batch failures for Lambda functions that read SQS queues, Kinesis streams and
//! DynamoDB Streams: one bad record no longer makes the whole batch retry. The processor calls
//! your handler per record and answers Lambda with only the failed records' identifiers
//! (`batchItemFailures`), which needs `ReportBatchItemFailures` on the event source mapping.
//!
//! # Example
//!
//! ```
//! use aws_lambda_events::sqs::SqsEvent;
//! use powertools_batch::{BatchProcessor, SqsRecord};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct BakeOrder { order_id: String, loaves: u32 }
//!
//! async fn bake(record: SqsRecord<BakeOrder>) -> Result<(), String> {
//!     if record.body.loaves == 0 {
//!         return Err(format!("order {} has nothing to bake", record.body.order_id));
//!     }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
//!     {"messageId": "m-1", "body": "{\"order_id\": \"o-1\", \"loaves\": 2}", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bake"},
//!     {"messageId": "m-2", "body": "{\"order_id\": \"o-2\", \"loaves\": 0}", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bake"},
//!     {"messageId": "m-3", "body": "not JSON", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bake"}
//! ]}))?;
//! let response = BatchProcessor::new().concurrency(10).process_sqs(&event, bake).await?;
//! let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
//! assert_eq!(failed, ["m-2", "m-3"]); // m-1 is done and deleted from the queue
//! # Ok(())
//! # }
//! ```
//!
//! # Idempotent records
//!
//! A queue delivers at least once. Make a record's side effects run once with the function-level
//! API of `powertools-idempotency`, keyed on the message id or a field of the body:
//! `idempotency.run(&context, "bake", record.message_id.clone(), |_| bake(order)).await`. The
//! record handler gets no Lambda `Context`: clone the invocation's (`event.context`) into the
//! closure you give the processor (`let context = &event.context;` before `process_sqs`), as the
//! `bake-queue` example does.
//!
//! # The event source mapping
//!
//! ```yaml
//! BakeQueue:
//!   Type: AWS::SQS::Queue
//!   Properties:
//!     VisibilityTimeout: 60          # 6 × the function timeout, as AWS recommends
//!     RedrivePolicy:
//!       deadLetterTargetArn: !GetAtt BakeDeadLetterQueue.Arn
//!       maxReceiveCount: 5           # a poison message ends in the dead-letter queue
//! BakeFunction:
//!   Type: AWS::Serverless::Function
//!   Properties:
//!     Timeout: 10
//!     Events:
//!       Orders:
//!         Type: SQS
//!         Properties:
//!           Queue: !GetAtt BakeQueue.Arn
//!           BatchSize: 10
//!           FunctionResponseTypes: [ReportBatchItemFailures]
//! ```
//!
//! # Differences from Powertools
//!
//! - Streams stop at the first failure and report it: Lambda resumes from the lowest failed
//!   sequence number anyway, so the records after it would run twice.
//! - SQS standard records can run in parallel ([`BatchProcessor::concurrency`]).
//!
//! # Feature flags
//!
//! - `logging` (default): each record runs in a `powertools-logging` key scope of its own, so
//!   that keys appended while handling a record are on that record's lines only.
//! - `metrics` (default): processed and failed record counts in the invocation's EMF document of
//!   `powertools-metrics`.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod error;
mod image;
mod processor;
mod raw;

pub use error::Error;
pub use image::read_image;
pub use processor::{BatchProcessor, KinesisRecord, SqsRecord};
pub use raw::{Raw, RecordBody};
/// The `serde_dynamo` of the DynamoDB Streams records' keys and images
/// (`record.change.new_image`). [`read_image`] reads one into your own type with an error fit
/// for a failure line; `serde_dynamo::from_item`'s quotes a number it cannot read.
pub use serde_dynamo;
