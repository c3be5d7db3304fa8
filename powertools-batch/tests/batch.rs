//! The batch processor over realistic SQS, Kinesis and DynamoDB Streams events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use powertools_batch::{BatchProcessor, Error, KinesisRecord, SqsRecord};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct BakeOrder {
    order_id: String,
    loaves: u32,
}

#[derive(Debug, Deserialize)]
struct OvenReading {
    celsius: u32,
}

fn sqs(name: &str) -> SqsEvent {
    let text = match name {
        "mixed" => include_str!("events/sqs-mixed.json"),
        "fifo" => include_str!("events/sqs-fifo.json"),
        other => panic!("no event {other}"),
    };
    serde_json::from_str(text).expect("the sample event parses")
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}

/// Bakes an order: no loaves is an error, 99 loaves makes the oven panic.
async fn bake(record: SqsRecord<BakeOrder>) -> Result<(), String> {
    match record.body.loaves {
        0 => Err(format!(
            "order {} has nothing to bake",
            record.body.order_id
        )),
        99 => panic!("the oven caught fire"),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn only_the_failed_records_are_reported_whatever_made_them_fail() {
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), bake)
        .await
        .unwrap();
    // m-2: handler error; m-3: poison body; m-5: panic. m-1 and m-4 are done.
    assert_eq!(failed_ids(&response), ["m-2", "m-3", "m-5"]);
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "m-2");
}

#[tokio::test]
async fn a_fifo_failure_fails_every_later_record_or_only_its_group() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = |record: SqsRecord<BakeOrder>| {
        calls.fetch_add(1, Ordering::SeqCst);
        bake(record)
    };
    let response = BatchProcessor::new()
        .process_sqs(&sqs("fifo"), counting)
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["f-2", "f-3", "f-4"], "order holds");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "nothing after the failure ran"
    );

    let by_group = BatchProcessor::new()
        .skip_group_on_error(true)
        .process_sqs(&sqs("fifo"), bake)
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&by_group),
        ["f-2", "f-4"],
        "the soho group goes on; camden stops"
    );
}

#[tokio::test]
async fn a_batch_that_fails_entirely_is_an_error_unless_configured() {
    let always_fails = |_: SqsRecord<BakeOrder>| async { Err::<(), _>("oven offline") };
    let mut event = sqs("mixed");
    event.records.truncate(2);
    let error = BatchProcessor::new()
        .process_sqs(&event, always_fails)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AllRecordsFailed { count: 2, .. }));
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "BatchProcessingError"
    );

    let reported = BatchProcessor::new()
        .raise_on_all_failed(false)
        .process_sqs(&event, always_fails)
        .await
        .unwrap();
    assert_eq!(failed_ids(&reported), ["m-1", "m-2"]);

    let empty = SqsEvent::default();
    let nothing = BatchProcessor::new()
        .process_sqs(&empty, bake)
        .await
        .unwrap();
    assert!(
        nothing.batch_item_failures.is_empty(),
        "an empty batch is not a failure"
    );
}

#[tokio::test]
async fn standard_queue_records_run_in_parallel_up_to_the_bound() {
    for (bound, expected) in [(1, 1), (3, 3), (10, 5)] {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let handler = |_: SqsRecord<serde_json::Value>| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        };
        let mut event = sqs("mixed");
        for message in &mut event.records {
            message.body = Some("{}".into());
        }
        let response = BatchProcessor::new()
            .concurrency(bound)
            .process_sqs(&event, handler)
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(most.load(Ordering::SeqCst), expected, "concurrency {bound}");
    }
}

#[tokio::test]
async fn a_stream_stops_at_its_first_failure() {
    let kinesis: KinesisEvent = serde_json::from_str(include_str!("events/kinesis.json")).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let response = BatchProcessor::new()
        .process_kinesis(&kinesis, |record: KinesisRecord<OvenReading>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if record.data.celsius > 300 {
                    return Err(format!("implausible reading {}", record.data.celsius));
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["49590338271490256608559692538361571095921575989136588802"]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the record after the failure waits for the retry"
    );

    let dynamodb: DynamoDbEvent =
        serde_json::from_str(include_str!("events/dynamodb.json")).unwrap();
    let response = BatchProcessor::new()
        .process_dynamodb(&dynamodb, |record| async move {
            let status = record.change.new_image.get("status").cloned();
            match status {
                Some(serde_dynamo::AttributeValue::S(status)) if status == "burnt" => {
                    Err("a burnt order needs a human".to_owned())
                }
                _ => Ok(()),
            }
        })
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["222"]);
}

#[tokio::test]
async fn each_record_logs_with_its_message_id_and_the_counts_are_metrics() {
    use lambda_runtime::tower::ServiceExt;
    use lambda_runtime::{LambdaEvent, service_fn};
    use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
    use powertools_metrics::{MemorySink, MetricsLayer};
    use tower::Layer;

    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("bakery")
        .writer(logs.clone())
        .env(powertools_core::env::Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let sink = MemorySink::new();
    let metrics = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(sink.clone())
        .env(powertools_core::env::Env::empty())
        .build()
        .unwrap();
    let function = LoggingLayer::new(logger).layer(metrics.layer(service_fn(
        |event: LambdaEvent<SqsEvent>| async move {
            BatchProcessor::new()
                .process_sqs(&event.payload, |record: SqsRecord<BakeOrder>| async move {
                    tracing::info!(loaves = record.body.loaves, "baking");
                    bake(record).await
                })
                .await
        },
    )));
    let response = function
        .oneshot(TestContext::new().event(sqs("mixed")))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["m-2", "m-3", "m-5"]);

    let baking: Vec<_> = logs
        .json()
        .into_iter()
        .filter(|line| line["message"] == "baking")
        .collect();
    let ids: Vec<&str> = baking
        .iter()
        .map(|line| line["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["m-1", "m-2", "m-4", "m-5"],
        "the poison body never reached the handler"
    );
    let document = &powertools_tests::emf::valid_lines(&sink.lines())[0];
    assert_eq!(document["BatchRecordsProcessed"], 2.0);
    assert_eq!(document["BatchRecordsFailed"], 3.0);
}

#[tokio::test]
async fn a_redelivered_record_is_not_processed_twice() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("bake")
        .build()
        .unwrap();
    let baked = Arc::new(AtomicUsize::new(0));
    let context = TestContext::new().build();
    let mut event = sqs("mixed");
    event.records.truncate(2); // m-1 bakes, m-2 fails
    for delivery in 0..3 {
        let response = BatchProcessor::new()
            .process_sqs(&event, |record: SqsRecord<BakeOrder>| {
                let (idempotency, baked, context) = (&idempotency, baked.clone(), &context);
                async move {
                    idempotency
                        .run(
                            context,
                            "record",
                            record.message_id.clone(),
                            |_| async move {
                                baked.fetch_add(1, Ordering::SeqCst);
                                bake(record).await
                            },
                        )
                        .await
                        .map_err(|error| error.to_string())
                }
            })
            .await
            .unwrap();
        assert_eq!(failed_ids(&response), ["m-2"], "delivery {delivery}");
    }
    // m-1 once; m-2 on every delivery (a failure leaves no record).
    assert_eq!(baked.load(Ordering::SeqCst), 1 + 3);
}
