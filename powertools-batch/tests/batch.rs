//! The batch processor over realistic SQS, Kinesis and DynamoDB Streams events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::tower::ServiceExt;
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_batch::{BatchProcessor, Error, KinesisRecord, Raw, SqsRecord};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};
use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::Layer;

/// The logger of every test of this binary, installed once as the global subscriber, and the
/// lines it wrote. Tests find their own lines by request id (or record id).
///
/// One global subscriber, rather than one per test with `set_default`: `tracing` caches whether
/// a callsite is enabled for the whole process, and while only one test's subscriber exists it
/// asks the thread that reaches the callsite first. A test without a subscriber reaching the
/// processor's `batch_record` span first disabled it for the test that logs, which then had
/// lines without `message_id` (now and then, under plain `cargo test`). Every test calls this
/// first, so the subscriber exists before any callsite is reached.
fn logging() -> &'static (Logger, MemoryLogs) {
    static LOGGING: OnceLock<(Logger, MemoryLogs)> = OnceLock::new();
    LOGGING.get_or_init(|| {
        let logs = MemoryLogs::new();
        let logger = Logger::builder()
            .service("bakery")
            .writer(logs.clone())
            .env(powertools_core::env::Env::empty())
            .build()
            .expect("valid settings");
        logger
            .init()
            .expect("no other global subscriber in this binary");
        (logger, logs)
    })
}

/// The message of a failed record's line (Powertools for Python's).
const FAILURE_LINE: &str = "Record processing exception; skipping this record";

/// The lines of the invocation `request_id`.
fn lines_of(request_id: &str) -> Vec<Value> {
    logging()
        .1
        .json()
        .into_iter()
        .filter(|line| line["function_request_id"] == request_id)
        .collect()
}

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
    logging();
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), bake)
        .await
        .unwrap();
    // m-2: handler error; m-3: poison body; m-5: panic. m-1 and m-4 are done.
    assert_eq!(failed_ids(&response), ["m-2", "m-3", "m-5"]);
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "m-2");
}

/// A record handler's error whose `Display` returns `Err` (the formatting machinery's own error,
/// as a buggy `Display` would).
#[derive(Debug)]
struct UnprintableError;

impl std::error::Error for UnprintableError {}

impl std::fmt::Display for UnprintableError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

#[tokio::test]
async fn an_error_that_cannot_be_displayed_fails_its_record_only() {
    logging();
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), |record: SqsRecord<BakeOrder>| async move {
            match record.body.loaves {
                0 => Err(UnprintableError),
                _ => Ok(()),
            }
        })
        .await
        .expect("a partial failure, not an error");
    // m-2 (no loaves) fails by its error, m-3 by its body; the others are done.
    assert_eq!(failed_ids(&response), ["m-2", "m-3"]);
}

/// An error with a cause, as the AWS SDK's are (`service error`, caused by
/// `ResourceNotFoundException: …`).
#[derive(Debug)]
struct OvenFailed(std::io::Error);

impl std::fmt::Display for OvenFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oven failed")
    }
}

impl std::error::Error for OvenFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A record that failed with a boxed error (`lambda_runtime::Error`, what `?` on an SDK call
/// gives) is logged and reported with the error's causes, as the logging layer describes a
/// failed invocation: its reason was the outer `Display` only (`service error`, without
/// DynamoDB's code), found by an attack.
#[tokio::test]
async fn a_failed_record_s_reason_names_its_error_s_causes() {
    logging();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "chain-1", "body": "{\"order_id\": \"o-1\", \"loaves\": 1}"},
        {"messageId": "chain-2", "body": "{\"order_id\": \"o-2\", \"loaves\": 2}"},
    ]}))
    .unwrap();
    let jammed = || OvenFailed(std::io::Error::other("the door is jammed"));
    let error = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<BakeOrder>| async move {
            Err::<(), lambda_runtime::Error>(jammed().into())
        })
        .await
        .expect_err("every record failed");
    assert!(
        error
            .to_string()
            .contains("oven failed: the door is jammed"),
        "{error}"
    );
    let reason = logging()
        .1
        .json()
        .into_iter()
        .find(|line| line["message_id"] == "chain-1" && line["message"] == FAILURE_LINE)
        .expect("chain-1's failure line")["exception"]
        .clone();
    assert_eq!(reason, "oven failed: the door is jammed");
}

/// A failed record's reason is cut at 16 KiB (on a character boundary, saying how much was
/// left out): with its error's causes, a chain of large messages made a reason of megabytes in
/// each record's log line and in `AllRecordsFailed` (found by a review).
#[tokio::test]
async fn a_failed_record_s_reason_is_cut_at_16_kib() {
    logging();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "huge-1", "body": "{\"order_id\": \"o-1\", \"loaves\": 1}"},
    ]}))
    .unwrap();
    let huge = "é".repeat(300_000);
    let error = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<BakeOrder>| {
            let huge = huge.clone();
            async move {
                let chain = OvenFailed(std::io::Error::other(huge));
                Err::<(), lambda_runtime::Error>(chain.into())
            }
        })
        .await
        .expect_err("the only record failed");
    let reason = logging()
        .1
        .json()
        .into_iter()
        .find(|line| line["message_id"] == "huge-1" && line["message"] == FAILURE_LINE)
        .expect("huge-1's failure line")["exception"]
        .as_str()
        .expect("a reason")
        .to_owned();
    assert!(reason.len() <= 16 * 1024 + 64, "{}", reason.len());
    assert!(reason.starts_with("oven failed: éé"), "{}", &reason[..40]);
    assert!(
        reason.ends_with(" bytes more)"),
        "{}",
        &reason[reason.len() - 40..]
    );
    assert!(
        error.to_string().len() <= 16 * 1024 + 128,
        "{}",
        error.to_string().len()
    );
}

/// A record handler's error whose `Display` panics.
#[derive(Debug)]
struct PanickingDisplay;

impl std::error::Error for PanickingDisplay {}

impl std::fmt::Display for PanickingDisplay {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("the error cannot be written")
    }
}

#[tokio::test]
async fn an_error_whose_display_panics_fails_its_record_only() {
    logging();
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), |record: SqsRecord<BakeOrder>| async move {
            match record.body.loaves {
                0 => Err(PanickingDisplay),
                _ => Ok(()),
            }
        })
        .await
        .expect("a partial failure, not an error");
    assert_eq!(failed_ids(&response), ["m-2", "m-3"]);
}

/// Panics when called for an order with no loaves, before it returns a future.
fn checks_before_its_future(
    record: SqsRecord<BakeOrder>,
) -> impl std::future::Future<Output = Result<(), String>> {
    assert!(record.body.loaves != 0, "nothing to bake");
    async { Ok(()) }
}

#[tokio::test]
async fn a_handler_that_panics_before_returning_its_future_fails_its_record_only() {
    logging();
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), checks_before_its_future)
        .await
        .expect("a partial failure, not an error");
    assert_eq!(failed_ids(&response), ["m-2", "m-3"]);
}

/// An order whose deserialization panics on an order with no loaves (a `Deserialize` of the
/// user's, with an assertion in it).
#[derive(Debug)]
struct Picky;

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let order = BakeOrder::deserialize(deserializer)?;
        assert!(order.loaves != 0, "an order must bake something");
        Ok(Picky)
    }
}

#[tokio::test]
async fn a_body_whose_deserialization_panics_fails_its_record_only() {
    logging();
    let response = BatchProcessor::new()
        .process_sqs(&sqs("mixed"), |_record: SqsRecord<Picky>| async {
            Ok::<(), String>(())
        })
        .await
        .expect("a partial failure, not an error");
    assert_eq!(failed_ids(&response), ["m-2", "m-3"]);
}

#[tokio::test]
async fn a_fifo_batch_is_one_whose_any_record_comes_from_a_fifo_queue() {
    // Lambda gives every record its queue's ARN, but a hand-written or transformed event may
    // leave it off the first: one record from a `.fifo` queue makes the whole batch FIFO (in
    // order, stopping at the first failure), never concurrent.
    logging();
    let mut event = sqs("fifo");
    event.records[0].event_source_arn = None;
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = |record: SqsRecord<BakeOrder>| {
        calls.fetch_add(1, Ordering::SeqCst);
        bake(record)
    };
    let response = BatchProcessor::new()
        .concurrency(8)
        .process_sqs(&event, counting)
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["f-2", "f-3", "f-4"], "order holds");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "nothing after the failure ran"
    );
}

/// Without any ARN (an event built by a transformation), a FIFO batch is known by the
/// `SequenceNumber` attribute only FIFO queues set, or by `fifo(true)`, as Python's user picks
/// `SqsFifoPartialProcessor`: its records ran at once and past a failure (found by an attack
/// from the docs). A `MessageGroupId` alone tells nothing: a standard queue's fair queues set it.
#[tokio::test]
async fn a_fifo_batch_without_arns_is_known_by_its_sequence_numbers_or_by_being_told() {
    logging();
    let without_arns = || {
        let mut event = sqs("fifo");
        for record in &mut event.records {
            record.event_source_arn = None;
        }
        event
    };
    let run = |processor: BatchProcessor, event: SqsEvent| async move {
        let calls = Arc::new(AtomicUsize::new(0));
        let counting = |record: SqsRecord<BakeOrder>| {
            calls.fetch_add(1, Ordering::SeqCst);
            bake(record)
        };
        let response = processor
            .concurrency(8)
            .process_sqs(&event, counting)
            .await
            .unwrap();
        (failed_ids(&response), calls.load(Ordering::SeqCst))
    };
    let fifo = (
        vec!["f-2".to_owned(), "f-3".to_owned(), "f-4".to_owned()],
        2,
    );
    assert_eq!(run(BatchProcessor::new(), without_arns()).await, fifo);

    let mut bare = without_arns();
    for record in &mut bare.records {
        record.attributes.remove("SequenceNumber");
        record.attributes.remove("MessageDeduplicationId");
    }
    // Only group ids (a fair standard queue): independent records.
    assert_eq!(
        run(BatchProcessor::new(), bare.clone()).await,
        (vec!["f-2".to_owned()], 4)
    );
    assert_eq!(run(BatchProcessor::new().fifo(true), bare).await, fifo);
}

/// A failed record's error, or its panic's payload, whose `Drop` panics fails that record only:
/// the panic unwound out of the batch, and Lambda would have retried every record (found by an
/// attack from the docs).
#[tokio::test]
async fn an_error_or_a_panic_payload_that_panics_when_dropped_fails_its_record_only() {
    // The global subscriber first: the batch's once-per-process warnings would otherwise go to
    // none, and `counts_without_a_metrics_layer_are_said_to_be_lost_once` would miss its own.
    logging();
    #[derive(Debug)]
    struct Bomb;
    impl std::error::Error for Bomb {}
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }
    impl std::fmt::Display for Bomb {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a bomb")
        }
    }
    let event = sqs("mixed");
    let first = event.records[0].message_id.clone().unwrap_or_default();
    for panics in [false, true] {
        let wanted = first.clone();
        let first = first.clone();
        let response = BatchProcessor::new()
            .raise_on_entire_batch_failure(false)
            .process_sqs(&event, move |record: SqsRecord<Raw>| {
                let first = first.clone();
                async move {
                    if record.message_id != first {
                        return Ok(());
                    }
                    if panics {
                        std::panic::panic_any(Bomb);
                    }
                    Err(Bomb)
                }
            })
            .await
            .unwrap();
        assert_eq!(failed_ids(&response), [wanted], "panics: {panics}");
    }
}

#[tokio::test]
async fn a_fifo_failure_fails_every_later_record_or_only_its_group() {
    logging();
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
    // Each record failed without running is logged too, with why: none is reported to Lambda
    // as failed without a line saying so.
    let lines = logging().1.json();
    for skipped in ["f-3", "f-4"] {
        assert!(
            lines.iter().any(|line| line["message"] == FAILURE_LINE
                && line["message_id"] == skipped
                && line["exception"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("earlier record"))),
            "{skipped} is not logged: {lines:#?}"
        );
    }

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
    logging();
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
        .raise_on_entire_batch_failure(false)
        .process_sqs(&event, always_fails)
        .await
        .unwrap();
    assert_eq!(failed_ids(&reported), ["m-1", "m-2"]);
}

/// An event without records (`{"Records": []}`), which Lambda never sends, is refused as
/// Powertools for Python refuses it (`UnexpectedBatchTypeError`), naming the source: reported
/// processed, it hid an event written by hand or meant for another function (found by an
/// attack from the docs; this test said "an empty batch is not a failure" before).
#[tokio::test]
async fn an_event_without_records_is_refused_as_python_refuses_it() {
    logging();
    let ran = AtomicUsize::new(0);
    let records: Value = json!({"Records": []});
    let outcomes = [
        BatchProcessor::new()
            .process_sqs(
                &serde_json::from_value::<SqsEvent>(records.clone()).unwrap(),
                |_: SqsRecord<Raw>| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<(), String>(()) }
                },
            )
            .await
            .map(|_| ()),
        BatchProcessor::new()
            .process_kinesis(
                &serde_json::from_value::<KinesisEvent>(records.clone()).unwrap(),
                |_: KinesisRecord<Raw>| async { Ok::<(), String>(()) },
            )
            .await
            .map(|_| ()),
        BatchProcessor::new()
            .raise_on_entire_batch_failure(false)
            .process_dynamodb(
                &serde_json::from_value::<DynamoDbEvent>(records).unwrap(),
                |_| async { Ok::<(), String>(()) },
            )
            .await
            .map(|_| ()),
    ];
    for (outcome, source) in outcomes
        .into_iter()
        .zip(["SQS", "Kinesis", "DynamoDB Streams"])
    {
        let error = outcome.expect_err(source);
        assert!(matches!(error, Error::EmptyBatch { .. }), "{error:?}");
        assert_eq!(error.error_type(), "UnexpectedBatchTypeError");
        let message = error.to_string();
        assert!(
            message.contains(&format!("the {source} event has no records")),
            "{message}"
        );
        let diagnostic = lambda_runtime::Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "UnexpectedBatchTypeError");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn standard_queue_records_run_in_parallel_up_to_the_bound() {
    logging();
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

/// A stream batch whose *first* record fails stops there and reports it: a partial response
/// (Lambda resumes from that record), not `AllRecordsFailed`, which is for a batch whose every
/// record failed. It used to count the records run (one), not the batch's.
#[tokio::test]
async fn a_stream_whose_first_record_fails_reports_it_and_is_not_all_failed() {
    logging();
    let kinesis: KinesisEvent = serde_json::from_str(include_str!("events/kinesis.json")).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let response = BatchProcessor::new()
        .process_kinesis(&kinesis, |_: KinesisRecord<OvenReading>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("the oven is off") }
        })
        .await
        .expect("a partial response, not AllRecordsFailed");
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["49590338271490256608559692538361571095921575989136588801"]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "stopped at the first");

    // A one-record batch whose record fails has every record failed.
    let mut single = kinesis.clone();
    single.records.truncate(1);
    let error = BatchProcessor::new()
        .process_kinesis(&single, |_: KinesisRecord<OvenReading>| async {
            Err::<(), _>("the oven is off")
        })
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("the batch's only record failed: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_stream_stops_at_its_first_failure() {
    logging();
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
    let failure_line = logging()
        .1
        .json()
        .into_iter()
        .find(|line| {
            line["message"] == FAILURE_LINE
                && line["sequence_number"]
                    == "49590338271490256608559692538361571095921575989136588802"
        })
        .expect("the failure is logged with the record's sequence number");
    assert_eq!(failure_line["exception"], "implausible reading 999");
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
    use powertools_metrics::MetricsLayer;
    use powertools_tests::emf::CheckedSink;

    let (logger, _) = logging();
    let sink = CheckedSink::new();
    let metrics = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(sink.clone())
        .env(powertools_core::env::Env::empty())
        .build()
        .unwrap();
    let function = LoggingLayer::new(logger.clone()).layer(metrics.layer(service_fn(
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
        .oneshot(
            TestContext::new()
                .with_request_id("req-mixed")
                .event(sqs("mixed")),
        )
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["m-2", "m-3", "m-5"]);

    let baking: Vec<_> = lines_of("req-mixed")
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

/// A handler's own metric named like one of the processor's counts (with another unit) is
/// refused to the processor: the other count is still recorded, and the warning names the count
/// it lost. The two were recorded as one chain: a clash on `BatchRecordsProcessed` lost
/// `BatchRecordsFailed` too, and the warning said "batch counts" (found by an attack on the
/// batch crate from the docs).
#[tokio::test]
async fn a_handler_metric_named_like_one_count_loses_that_count_only_and_says_which() {
    use powertools_metrics::MetricsLayer;
    use powertools_tests::emf::CheckedSink;

    logging();
    let sink = CheckedSink::new();
    let metrics = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(sink.clone())
        .env(powertools_core::env::Env::empty())
        .build()
        .unwrap();
    let function = LoggingLayer::new(logging().0.clone()).layer(metrics.layer(service_fn(
        |event: LambdaEvent<SqsEvent>| async move {
            BatchProcessor::new()
                .process_sqs(&event.payload, |record: SqsRecord<BakeOrder>| async move {
                    if let Some(metrics) = powertools_metrics::Metrics::current() {
                        metrics
                            .add_metric(
                                "BatchRecordsProcessed",
                                250.0,
                                powertools_metrics::Unit::Milliseconds,
                            )
                            .unwrap();
                    }
                    bake(record).await
                })
                .await
        },
    )));
    let response = function
        .oneshot(
            TestContext::new()
                .with_request_id("req-clash")
                .event(sqs("mixed")),
        )
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["m-2", "m-3", "m-5"]);
    let document = &powertools_tests::emf::valid_lines(&sink.lines())[0];
    assert_eq!(document["BatchRecordsFailed"], 3.0, "{document}");
    let warnings: Vec<Value> = lines_of("req-clash")
        .into_iter()
        .filter(|line| line["level"] == "WARN" && line["message"] != FAILURE_LINE)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].to_string().contains("BatchRecordsProcessed"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_redelivered_record_is_not_processed_twice() {
    logging();
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

/// The failure lines of the records `message_ids`, by message id.
fn failure_lines_of(message_ids: &[&str]) -> Vec<(String, String, String)> {
    let mut lines: Vec<(String, String, String)> = logging()
        .1
        .json()
        .into_iter()
        .filter(|line| line["message"] == FAILURE_LINE)
        .filter_map(|line| {
            let id = line["message_id"].as_str()?;
            message_ids.contains(&id).then(|| {
                (
                    id.to_owned(),
                    line["exception_name"].as_str().unwrap_or("").to_owned(),
                    line["exception"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    lines.sort();
    lines
}

/// A record handler that returns `Idempotency::run`'s result as it is (the README's "Idempotent
/// records"): its failure line names the handler's error inside (`std::io::Error`, `Error` for a
/// message only), a panic `Panic`, and the idempotency crate's own refusals by Powertools' names
/// (`IdempotencyAlreadyInProgressError`). They were the wrapper's variants (`Handler`,
/// `HandlerPanicked`, `AlreadyInProgress`), which queries counting Python's names miss (found by
/// an attack from the docs). Under the logging layer and without any layer alike.
#[tokio::test]
async fn an_idempotent_record_s_failure_is_named_as_the_error_inside_or_as_powertools_names_it() {
    #[derive(Deserialize)]
    struct Job {
        key: String,
        outcome: String,
    }
    let (logger, _) = logging();
    for under_the_layer in [false, true] {
        let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
        let prefix = if under_the_layer { "layer" } else { "bare" };
        let mut event = SqsEvent::default();
        event.records = [
            ("io", "io"),
            ("text", "text"),
            ("panic", "panic"),
            ("busy", "slow"),
            ("busy", "ok"),
        ]
        .iter()
        .enumerate()
        .map(|(index, (key, outcome))| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("{prefix}-{index}"));
            message.body = Some(json!({"key": key, "outcome": outcome}).to_string());
            message
        })
        .collect();
        let process = move |event: SqsEvent, context: lambda_runtime::Context| {
            let idempotency = idempotency.clone();
            async move {
                BatchProcessor::new()
                    .concurrency(5)
                    .process_sqs(&event, |record: SqsRecord<Job>| {
                        let (idempotency, context) = (&idempotency, &context);
                        async move {
                            let Job { key, outcome } = record.body;
                            idempotency
                                .run(context, "job", key, |_| async move {
                                    match outcome.as_str() {
                                        "io" => Err(std::io::Error::other("disk full").into()),
                                        "text" => Err("card declined".into()),
                                        "panic" => panic!("the oven caught fire"),
                                        "slow" => {
                                            tokio::time::sleep(Duration::from_millis(200)).await;
                                            Ok(())
                                        }
                                        _ => Ok::<(), lambda_runtime::Error>(()),
                                    }
                                })
                                .await
                        }
                    })
                    .await
            }
        };
        let response = if under_the_layer {
            let function = LoggingLayer::new(logger.clone()).layer(service_fn(
                move |event: LambdaEvent<SqsEvent>| {
                    let process = process.clone();
                    async move { process(event.payload, event.context).await }
                },
            ));
            function
                .oneshot(TestContext::new().event(event))
                .await
                .unwrap()
        } else {
            process(event, TestContext::new().build()).await.unwrap()
        };
        let ids: Vec<String> = (0..5).map(|index| format!("{prefix}-{index}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // The second "busy" finds the first still running.
        assert_eq!(
            failed_ids(&response),
            [ids[0], ids[1], ids[2], ids[4]],
            "{prefix}"
        );
        let lines = failure_lines_of(&ids);
        let named: Vec<(&str, &str)> = lines
            .iter()
            .map(|(id, name, _)| (id.as_str(), name.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (ids[0], "std::io::Error"),
                (ids[1], "Error"),
                (ids[2], "Panic"),
                (ids[4], "IdempotencyAlreadyInProgressError"),
            ],
            "{prefix}: {lines:?}"
        );
        assert_eq!(lines[0].2, "disk full", "{prefix}");
        assert_eq!(lines[1].2, "card declined", "{prefix}");
        assert!(lines[2].2.contains("the oven caught fire"), "{lines:?}");
        assert!(lines[3].2.contains("already in progress"), "{lines:?}");
    }
}

/// Whether record `index` of the refund batch fails, and how.
fn refund_outcome(index: usize) -> Result<(), String> {
    match index % 7 {
        3 => Err(format!("refund {index} refused by the bank")),
        5 => panic!("the refund {index} ledger is locked"),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_records_ten_at_a_time_each_log_only_their_own_keys() {
    // Given a queue batch of 50 refunds, processed 10 at a time, whose handler appends the
    // refund's id, waits a little (so that records interleave), logs, and fails for some
    let (logger, _) = logging();
    let mut event = SqsEvent::default();
    event.records = (0..50)
        .map(|index| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m-{index}"));
            message.body =
                Some(json!({"index": index, "refund_id": format!("rf-{index}")}).to_string());
            message.event_source_arn = Some("arn:aws:sqs:eu-west-1:123456789012:refunds".into());
            message
        })
        .collect();
    #[derive(Deserialize)]
    struct Refund {
        index: usize,
        refund_id: String,
    }
    let function = LoggingLayer::new(logger.clone()).layer(service_fn(
        |event: LambdaEvent<SqsEvent>| async move {
            powertools_logging::append_key("queue", "refunds")?;
            let response = BatchProcessor::new()
                .concurrency(10)
                .raise_on_entire_batch_failure(false)
                .process_sqs(&event.payload, |record: SqsRecord<Refund>| async move {
                    powertools_logging::append_key("refund_id", &record.body.refund_id)
                        .map_err(|error| error.to_string())?;
                    let pause = (record.body.index * 7) % 11;
                    tokio::time::sleep(Duration::from_millis(pause as u64)).await;
                    tracing::info!("refund issued");
                    tokio::task::yield_now().await;
                    refund_outcome(record.body.index)
                })
                .await?;
            tracing::info!("batch done");
            Ok::<_, lambda_runtime::Error>(response)
        },
    ));

    // When the batch is processed
    let response = function
        .oneshot(
            TestContext::new()
                .with_request_id("req-refunds")
                .event(event),
        )
        .await
        .unwrap();

    // Then every line of a record carries that record's refund id and id, and the queue key
    let expected_failures: Vec<String> = (0..50)
        .filter(|index| matches!(index % 7, 3 | 5))
        .map(|index| format!("m-{index}"))
        .collect();
    assert_eq!(failed_ids(&response), expected_failures);
    let lines = lines_of("req-refunds");
    let mut issued = 0;
    let mut failed = Vec::new();
    for line in &lines {
        let message = line["message"].as_str().unwrap();
        if message == "refund issued" || message == FAILURE_LINE {
            let message_id = line["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{line}"));
            let index = message_id.strip_prefix("m-").unwrap();
            assert_eq!(line["refund_id"], format!("rf-{index}"), "{line}");
            assert_eq!(
                line["queue"], "refunds",
                "inherited from the invocation: {line}"
            );
            if message == "refund issued" {
                issued += 1;
            } else {
                assert_eq!(line["level"], "WARN");
                failed.push(message_id.to_owned());
            }
        }
    }
    assert_eq!(issued, 50);
    failed.sort_by_key(|id| id[2..].parse::<usize>().unwrap());
    assert_eq!(
        failed, expected_failures,
        "one failure line per failed record"
    );
    // And the records' keys end with them
    let done = lines
        .iter()
        .find(|line| line["message"] == "batch done")
        .unwrap();
    assert!(done.get("refund_id").is_none(), "{done}");
    assert_eq!(done["queue"], "refunds");
}

#[tokio::test]
async fn a_poison_body_s_values_are_not_copied_into_the_failure() {
    // Given bodies whose values do not fit the record type (a card number where a count goes)
    let (logger, _) = logging();
    let card = "4111111111111111";
    let bodies = [
        format!(r#"{{"order_id": "o-1", "loaves": "{card}"}}"#),
        format!(r#"{{"order_id": "o-1", "loaves": -{card}}}"#),
        format!(r#"{{"order_id": {card}, "loaves": 1}}"#),
        format!(r#""{card}""#),
        format!(r#"{{"order_id": "o-1", "loaves": 1.{card}}}"#),
    ];
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| json!({"messageId": format!("p-{index}"), "body": body}))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    let function = LoggingLayer::new(logger.clone()).layer(service_fn(
        |event: LambdaEvent<SqsEvent>| async move {
            BatchProcessor::new()
                .process_sqs(&event.payload, bake)
                .await
        },
    ));

    // When the batch is processed
    let error = function
        .oneshot(
            TestContext::new()
                .with_request_id("req-poison-values")
                .event(event),
        )
        .await
        .unwrap_err();

    // Then every record failed, saying what was expected, and neither the error Lambda reports
    // nor a log line repeats the value
    let message = error.to_string();
    assert!(!message.contains(card), "{message}");
    assert!(message.contains("expected u32"), "{message}");
    let failures: Vec<String> = lines_of("req-poison-values")
        .iter()
        .filter(|line| line["message"] == FAILURE_LINE)
        .map(Value::to_string)
        .collect();
    assert_eq!(failures.len(), bodies.len(), "{failures:?}");
    for failure in &failures {
        assert!(!failure.contains(card), "{failure}");
        assert!(failure.contains("expected"), "{failure}");
    }
}

/// A hand-written event whose failed record has no `messageId` is answered with an empty
/// `itemIdentifier`, which Lambda reads as the whole batch failed (every record retried, the
/// ones that succeeded too): never silently, a warning says so.
#[tokio::test]
async fn a_failed_record_without_an_id_is_reported_with_a_warning_that_the_whole_batch_is_retried()
{
    logging();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"body": "{not json", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:no-id-queue"},
        {"messageId": "no-id-ok", "body": "{\"order_id\": \"o-1\", \"loaves\": 1}",
         "eventSourceARN": "arn:aws:sqs:eu-west-1:1:no-id-queue"},
    ]}))
    .unwrap();
    let response = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<BakeOrder>| async {
            Ok::<(), String>(())
        })
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), [""]);
    let warned = logging().1.json().into_iter().any(|line| {
        line["level"] == "WARN"
            && line["message"]
                .as_str()
                .is_some_and(|message| message.contains("whole batch"))
    });
    assert!(warned, "no warning that the whole batch is retried");
}

/// A blank id (spaces) is no id Lambda knows either: the same warning.
#[tokio::test]
async fn a_failed_record_with_a_blank_id_is_warned_about_as_one_without_an_id() {
    logging();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": " \t", "body": "{not json", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:blank-id-queue"},
        {"messageId": "blank-id-ok", "body": "{\"order_id\": \"o-1\", \"loaves\": 1}",
         "eventSourceARN": "arn:aws:sqs:eu-west-1:1:blank-id-queue"},
    ]}))
    .unwrap();
    let response = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<BakeOrder>| async {
            Ok::<(), String>(())
        })
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), [" \t"]);
    let warned = logging().1.json().into_iter().any(|line| {
        line["level"] == "WARN"
            && line["message"]
                .as_str()
                .is_some_and(|message| message.contains("whole batch"))
            && line["item_identifier"] == " \t"
    });
    assert!(warned, "no warning that the whole batch is retried");
}

/// FIFO with `skip_group_on_error`: a record without a `MessageGroupId`, or with an empty one
/// (hand-written events), belongs to no group: its failure skips no other record, and no failure
/// skips it. Powertools for Python 3.37 (`SqsFifoPartialProcessor`) does the same: it remembers a
/// failed group only when its id is truthy (`{'batchItemFailures': [{'itemIdentifier': 'ng-1'}]}`
/// for these events, with or without an empty id). They were one group here, which failed `ng-2`.
#[tokio::test]
async fn fifo_records_without_a_group_belong_to_none_as_in_python() {
    logging();
    let record = |id: &str, body: &str, group: Option<&str>| {
        let mut record = json!({"messageId": id, "body": body,
               "eventSourceARN": "arn:aws:sqs:eu-west-1:1:orders.fifo"});
        if let Some(group) = group {
            record["attributes"] = json!({"MessageGroupId": group});
        }
        record
    };
    for group in [None, Some("")] {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            record("ng-1", "{not json", group),
            record("ng-2", "{\"order_id\": \"o-2\", \"loaves\": 1}", group),
            record("g-3", "{\"order_id\": \"o-3\", \"loaves\": 1}", Some("camden")),
            record("ng-4", "{not json either", group),
            record("ng-5", "{\"order_id\": \"o-5\", \"loaves\": 1}", group),
        ]}))
        .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let response = BatchProcessor::new()
            .skip_group_on_error(true)
            .process_sqs(&event, |_: SqsRecord<BakeOrder>| {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            })
            .await
            .unwrap();
        assert_eq!(failed_ids(&response), ["ng-1", "ng-4"], "group {group:?}");
        assert_eq!(ran.load(Ordering::SeqCst), 3, "group {group:?}");
    }
}

/// A queue of CSV, text or XML, and a stream of gzip (CloudWatch Logs subscriptions) or protobuf,
/// are read with `Raw`: the handler gets the body or data as Lambda sent it (Powertools for
/// Python hands over `record.body` and the decoded data the same way), where any `T` that
/// deserializes failed every record that is not JSON ("expected value", or "trailing
/// characters" for a `Deserialize` that reads nothing).
#[tokio::test]
async fn records_that_are_not_json_reach_a_raw_handler_as_sent() {
    use powertools_batch::Raw;
    logging();
    let mut event = sqs("mixed");
    event.records.truncate(3);
    let bodies = ["order,42,3", "", "{\"valid\": \"json too\"}"];
    for (message, body) in event.records.iter_mut().zip(bodies) {
        message.body = Some(body.into());
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let response = BatchProcessor::new()
        .process_sqs(&event, |record: SqsRecord<Raw>| {
            let seen = seen.clone();
            async move {
                let text = record
                    .body
                    .as_str()
                    .expect("an SQS body is text")
                    .to_owned();
                seen.lock().unwrap().push(text.clone());
                if text.is_empty() {
                    return Err("an empty body");
                }
                Ok(())
            }
        })
        .await
        .expect("only one record failed");
    assert_eq!(*seen.lock().unwrap(), bodies);
    assert_eq!(
        failed_ids(&response),
        [event.records[1].message_id.clone().unwrap()]
    );

    let mut kinesis: KinesisEvent =
        serde_json::from_str(include_str!("events/kinesis.json")).unwrap();
    // gzip's magic bytes and an invalid UTF-8 byte: not text, not JSON.
    let data = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe];
    kinesis.records[0].kinesis.data.0 = data.clone();
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let response = BatchProcessor::new()
        .process_kinesis(&kinesis, |record: KinesisRecord<Raw>| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push(record.data);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let received = received.lock().unwrap();
    assert_eq!(received[0].as_bytes(), data);
    assert_eq!(received[0].as_str(), None, "not UTF-8");
    assert_eq!(
        received[1].as_str(),
        std::str::from_utf8(&kinesis.records[1].kinesis.data.0).ok()
    );
    assert_eq!(received.len(), kinesis.records.len());
}

/// Records of a standard queue run `concurrency` at a time, and a record that finished frees its
/// place for the next one even while a record before it is still running. It used to keep it
/// until every earlier record had finished, so one slow record held up the batch: here the first
/// record waits for the third, which never started (two places, the second record done).
#[tokio::test]
async fn a_finished_record_frees_its_place_while_an_earlier_one_still_runs() {
    logging();
    let mut event = sqs("mixed");
    event.records.truncate(3);
    for (index, message) in event.records.iter_mut().enumerate() {
        message.body = Some(index.to_string());
    }
    let third_started = Arc::new(tokio::sync::Notify::new());
    let processor = BatchProcessor::new().concurrency(2);
    let processed = processor.process_sqs(&event, |record: SqsRecord<usize>| {
        let third_started = third_started.clone();
        async move {
            match record.body {
                0 => third_started.notified().await,
                2 => third_started.notify_one(),
                _ => {}
            }
            Ok::<(), String>(())
        }
    });
    // Not a timing assertion: without the fix the batch never ends; the bound only turns that
    // into a failure.
    let response = tokio::time::timeout(Duration::from_secs(30), processed)
        .await
        .expect("the third record started while the first waited for it")
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
}

/// The failed records of a standard queue are reported in batch order, whichever finished first.
#[tokio::test]
async fn failures_are_reported_in_batch_order_whichever_finished_first() {
    logging();
    let mut event = sqs("mixed");
    for (index, message) in event.records.iter_mut().enumerate() {
        message.body = Some(index.to_string());
    }
    let count = event.records.len();
    assert!(count >= 3, "the sample has {count} records");
    let response = BatchProcessor::new()
        .concurrency(count)
        .raise_on_entire_batch_failure(false)
        .process_sqs(&event, |record: SqsRecord<usize>| async move {
            // The earlier records finish last.
            for _ in 0..(count - record.body) * 3 {
                tokio::task::yield_now().await;
            }
            Err::<(), _>("failed")
        })
        .await
        .unwrap();
    let expected: Vec<String> = event
        .records
        .iter()
        .map(|message| message.message_id.clone().unwrap())
        .collect();
    assert_eq!(failed_ids(&response), expected);
}

/// Every field of an SQS record is optional, so an event from another source given to the SQS
/// processor (a function wired to a stream or a topic by mistake) reads as SQS messages without
/// ids or bodies: its records ran as empty bodies, and a handler that accepts any body reported
/// them processed, losing every one. The batch fails instead, naming what was sent, and no
/// record runs.
#[tokio::test]
async fn another_source_s_event_given_to_the_sqs_processor_fails_naming_the_source() {
    logging();
    let sns = r#"{"Records": [{"EventSource": "aws:sns", "EventSubscriptionArn": "arn:aws:sns:eu-west-1:123456789012:bake:1",
        "Sns": {"MessageId": "n-1", "Message": "{\"order_id\": \"o-1\", \"loaves\": 2}", "Type": "Notification"}}]}"#;
    for (text, expected) in [
        (include_str!("events/kinesis.json"), "\"aws:kinesis\""),
        (include_str!("events/dynamodb.json"), "\"aws:dynamodb\""),
        (sns, "neither a messageId nor a body"),
    ] {
        let event: SqsEvent = serde_json::from_str(text).expect("reads as an SQS event");
        let calls = AtomicUsize::new(0);
        let error = BatchProcessor::new()
            .process_sqs(&event, |_: SqsRecord<Raw>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            })
            .await
            .expect_err("not an SQS event");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no record runs");
        assert!(
            matches!(error, Error::NotAnSqsEvent { index: 0, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("record 0"), "{message}");
        assert_eq!(error.error_type(), "UnexpectedBatchTypeError");
    }

    // An SQS record as Lambda sends it, and one written by hand without `eventSource`, still run.
    let mut event = sqs("mixed");
    event.records.truncate(2);
    event.records[1].event_source = None;
    let response = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<Raw>| async { Ok::<(), String>(()) })
        .await
        .expect("an SQS event");
    assert!(response.batch_item_failures.is_empty());
}

/// A body that does not read as the record's type names where it went wrong, as the facade's
/// `InvalidEvent` does (found by a user writing a function from the docs: line and column only),
/// never the value, nor a map key that does not read as a field's name (`<key>`).
#[tokio::test]
async fn a_body_that_does_not_read_names_the_path_where_it_went_wrong() {
    // The global subscriber first: the batch's once-per-process warnings would otherwise go to
    // none, and `counts_without_a_metrics_layer_are_said_to_be_lost_once` would miss its own.
    logging();
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        qty: u8,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Order {
        order_id: String,
        lines: Vec<Line>,
        notes: std::collections::HashMap<String, u8>,
    }
    let long_key = "k".repeat(100);
    let bodies = [
        r#"{"order_id":"o-1","lines":[{"sku":"a","qty":1},{"sku":"b","qty":300}],"notes":{}}"#
            .to_owned(),
        format!(r#"{{"order_id":"o-1","lines":[],"notes":{{"{long_key}":"4111111111111111"}}}}"#),
        // A map keyed by a card number (a review found it written whole in the path)
        r#"{"order_id":"o-1","lines":[],"notes":{"4111111111111111":"x"}}"#.to_owned(),
    ];
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            serde_json::json!({"messageId": format!("m-{index}"), "body": body, "eventSource": "aws:sqs"})
        })
        .collect();
    let event: SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let error = BatchProcessor::new()
        .process_sqs(&event, |_: SqsRecord<Order>| async { Ok::<(), String>(()) })
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("at lines[1].qty: invalid value (the value is left out), expected u8"),
        "{message}"
    );
    let (logger, logs) = logging();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let _ = BatchProcessor::new()
        .raise_on_entire_batch_failure(false)
        .process_sqs(&event, |_: SqsRecord<Order>| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    let reasons: Vec<String> = logs
        .json()
        .into_iter()
        .filter(|line| line["message"] == FAILURE_LINE)
        .filter_map(|line| line["exception"].as_str().map(str::to_owned))
        .filter(|reason| reason.contains("expected u8"))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("at notes.<key>:")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|reason| !reason.contains("4111") && !reason.contains(&long_key)),
        "{reasons:?}"
    );
}

/// Without a `MetricsLayer` the batch's counts have no document to go to: a warning says so,
/// once per process, not once per batch (found by an attack: they went without a word).
#[cfg(feature = "metrics")]
#[tokio::test]
async fn counts_without_a_metrics_layer_are_said_to_be_lost_once() {
    logging();
    let (logger, _) = logging();
    for n in 0..3 {
        let function = LoggingLayer::new(logger.clone()).layer(service_fn(
            |event: LambdaEvent<SqsEvent>| async move {
                BatchProcessor::new()
                    .process_sqs(&event.payload, |record: SqsRecord<BakeOrder>| async move {
                        bake(record).await
                    })
                    .await
            },
        ));
        function
            .oneshot(
                TestContext::new()
                    .with_request_id(format!("req-no-metrics-{n}"))
                    .event(sqs("mixed")),
            )
            .await
            .unwrap();
    }
    let warnings: Vec<Value> = logging()
        .1
        .json()
        .into_iter()
        .filter(|line| {
            // Not the warning of a count refused to the processor (another test's).
            line["function_request_id"] != "req-clash"
                && line["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("BatchRecordsProcessed"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("no MetricsLayer"),
        "{}",
        warnings[0]
    );
}

/// What the README says of JSON that Python's `json.loads` reads and serde_json does not: `NaN`
/// and `Infinity` fail their record, whatever the type; a field given twice fails a record type
/// with named fields (`duplicate field`) and reads as its last value in a `serde_json::Value`.
#[tokio::test]
async fn json_python_reads_and_serde_json_does_not_fails_as_the_readme_says() {
    let event = |bodies: &[&str]| -> SqsEvent {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(index, body)| json!({"messageId": format!("j-{index}"), "body": body}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    };
    let bodies = [
        r#"{"order_id": "o-1", "loaves": 2, "weight": NaN}"#,
        r#"{"order_id": "o-1", "loaves": 2, "weight": -Infinity}"#,
        r#"{"order_id": "o-1", "loaves": 2, "loaves": 3}"#,
        r#"{"order_id": "o-1", "loaves": 2}"#,
    ];
    let typed = BatchProcessor::new()
        .process_sqs(&event(&bodies), bake)
        .await
        .unwrap();
    assert_eq!(failed_ids(&typed), ["j-0", "j-1", "j-2"]);
    let seen = std::sync::Mutex::new(Vec::new());
    let untyped = BatchProcessor::new()
        .process_sqs(&event(&bodies), |record: SqsRecord<Value>| {
            seen.lock().unwrap().push(record.body["loaves"].clone());
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(failed_ids(&untyped), ["j-0", "j-1"]);
    assert_eq!(*seen.lock().unwrap(), [json!(3), json!(2)]);
}

/// A failed record's line reads as Powertools for Python's (`BatchProcessor(logger=…)`): a
/// `WARN` "Record processing exception; skipping this record" with `exception_name` and
/// `exception`, which Logs Insights queries written for Python filter and group by. It was "a
/// batch record failed" with the error in `reason` (found by comparing the two side by side).
/// The name is the error's type or variant (`Error` for a message only), `Panic`, the serde
/// error of a body that did not read, and Python's circuit breakers for the FIFO records that
/// did not run.
#[tokio::test]
async fn a_failed_record_s_line_has_python_s_message_exception_name_and_exception() {
    #[derive(Debug)]
    enum Refused {
        Declined(&'static str),
    }
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let Refused::Declined(why) = self;
            write!(f, "declined: {why}")
        }
    }
    impl std::error::Error for Refused {}

    logging();
    let record = |id: &str, order: &str, group: &str| {
        json!({
            "messageId": id,
            "body": format!("{{\"order_id\": \"{order}\", \"loaves\": 1}}"),
            "attributes": {"MessageGroupId": group},
        })
    };
    let mut not_json = record("py-not-json", "-", "g-1");
    not_json["body"] = json!("not json");
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("py-ok", "ok", "g-1"),
        record("py-typed", "typed", "g-1"),
        record("py-text", "text", "g-2"),
        record("py-panic", "panic", "g-3"),
        not_json,
    ]}))
    .unwrap();
    let handler = |record: SqsRecord<BakeOrder>| async move {
        match record.body.order_id.as_str() {
            "typed" => Err(lambda_runtime::Error::from(Refused::Declined("card"))),
            "text" => Err("out of flour".into()),
            "panic" => panic!("oven on fire"),
            _ => Ok(()),
        }
    };
    let response = BatchProcessor::new()
        .process_sqs(&event, handler)
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        ["py-typed", "py-text", "py-panic", "py-not-json"]
    );
    // The same records as one FIFO group after another: `py-typed` fails and stops the batch,
    // or, skipping its group only, the rest of `g-1`.
    let fifo = |id: &str| {
        let mut renamed = event.clone();
        for message in &mut renamed.records {
            message.message_id = message.message_id.take().map(|own| format!("{id}-{own}"));
        }
        renamed
    };
    let stopped = BatchProcessor::new()
        .fifo(true)
        .process_sqs(&fifo("stop"), handler)
        .await
        .unwrap();
    assert_eq!(failed_ids(&stopped).len(), 4);
    let skipped = BatchProcessor::new()
        .fifo(true)
        .skip_group_on_error(true)
        .process_sqs(&fifo("group"), handler)
        .await
        .unwrap();
    assert_eq!(failed_ids(&skipped).len(), 4);

    let lines = logging().1.json();
    let line_of = |id: &str| {
        let mut of_record = lines
            .iter()
            .filter(|line| line["message_id"] == id && line["level"] == "WARN");
        let line = of_record
            .next()
            .unwrap_or_else(|| panic!("no line for {id}"));
        assert!(of_record.next().is_none(), "{id}: one failure line");
        assert_eq!(line["message"], FAILURE_LINE, "{line}");
        assert!(line.get("reason").is_none(), "{line}");
        (
            line["exception_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            line["exception"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        line_of("py-typed"),
        ("Declined".to_owned(), "declined: card".to_owned())
    );
    assert_eq!(
        line_of("py-text"),
        ("Error".to_owned(), "out of flour".to_owned())
    );
    assert_eq!(
        line_of("py-panic"),
        (
            "Panic".to_owned(),
            "the record's handler panicked: oven on fire".to_owned()
        )
    );
    let (name, message) = line_of("py-not-json");
    assert_eq!(name, "serde_json::Error");
    assert!(message.contains("not the expected JSON"), "{message}");
    assert_eq!(line_of("stop-py-typed").0, "Declined");
    for id in ["stop-py-text", "stop-py-panic", "stop-py-not-json"] {
        assert_eq!(
            line_of(id),
            (
                "SQSFifoCircuitBreakerError".to_owned(),
                "an earlier record of the FIFO batch failed".to_owned()
            ),
            "{id}"
        );
    }
    assert_eq!(
        line_of("group-py-not-json"),
        (
            "SQSFifoMessageGroupCircuitBreakerError".to_owned(),
            "an earlier record of its message group failed".to_owned()
        )
    );
    assert!(
        lines
            .iter()
            .all(|line| line["message_id"] != "py-ok" || line["level"] != "WARN"),
        "the record that succeeded has no failure line"
    );
}

/// Twenty records refused at once under the logging layer, each awaiting a little after the
/// call before it returns the refusal: every line names it as Powertools does. The records
/// shared the invocation's failure scope, which kept 8 reports: the first ones' were gone and
/// they were named `AlreadyInProgress` (found by a review).
#[tokio::test]
async fn twenty_refusals_at_once_are_each_named_as_powertools_names_them() {
    #[derive(Deserialize)]
    struct Job {
        key: String,
        hold: bool,
    }
    let (logger, _) = logging();
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    let mut event = SqsEvent::default();
    event.records = (0..40)
        .map(|index| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("storm-{index}"));
            // Each key twice: the first copy holds it, the second is refused.
            message.body =
                Some(json!({"key": format!("k-{}", index % 20), "hold": index < 20}).to_string());
            message
        })
        .collect();
    let function =
        LoggingLayer::new(logger.clone()).layer(service_fn(move |event: LambdaEvent<SqsEvent>| {
            let idempotency = idempotency.clone();
            async move {
                BatchProcessor::new()
                    .concurrency(40)
                    .process_sqs(&event.payload, |record: SqsRecord<Job>| {
                        let (idempotency, context) = (&idempotency, &event.context);
                        async move {
                            let Job { key, hold } = record.body;
                            let outcome = idempotency
                                .run(context, "storm", key, |_| async move {
                                    if hold {
                                        tokio::time::sleep(Duration::from_millis(300)).await;
                                    }
                                    Ok::<(), lambda_runtime::Error>(())
                                })
                                .await;
                            // Other records report meanwhile.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            outcome
                        }
                    })
                    .await
            }
        }));
    let response = function
        .oneshot(TestContext::new().with_request_id("req-storm").event(event))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response).len(), 20);
    let ids: Vec<String> = (20..40).map(|index| format!("storm-{index}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let lines = failure_lines_of(&ids);
    assert_eq!(lines.len(), 20, "{lines:?}");
    for (id, name, _) in &lines {
        assert_eq!(name, "IdempotencyAlreadyInProgressError", "{id}: {lines:?}");
    }
}
