//! `concurrency` above 1 on a batch whose records must run one at a time (a stream, an SQS FIFO
//! queue) is said once, in a warning, instead of being ignored without a word (found by a user
//! writing a function from the docs: 20 stream records of 50 ms took a second, with
//! `concurrency(10)`). In a test binary of its own: the warning is once per process.

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::sqs::SqsEvent;
use powertools_batch::BatchProcessor;

#[tokio::test(flavor = "current_thread")]
async fn concurrency_on_records_that_run_one_at_a_time_is_warned_about_once() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(warnings.subscriber());
    let stream: DynamoDbEvent =
        serde_json::from_str(include_str!("events/dynamodb.json")).expect("a stream event");
    let fifo: SqsEvent =
        serde_json::from_str(include_str!("events/sqs-fifo.json")).expect("an SQS event");
    let processor = BatchProcessor::new().concurrency(10);
    for _ in 0..3 {
        processor
            .process_dynamodb(&stream, |_record| async { Ok::<(), String>(()) })
            .await
            .expect("processed");
        processor
            .process_sqs(
                &fifo,
                |_record: powertools_batch::SqsRecord<serde_json::Value>| async {
                    Ok::<(), String>(())
                },
            )
            .await
            .expect("processed");
    }
    // One at a time without the setting: no warning.
    BatchProcessor::new()
        .process_dynamodb(&stream, |_record| async { Ok::<(), String>(()) })
        .await
        .expect("processed");
    let warnings = warnings.text();
    assert_eq!(
        warnings.matches("does not apply").count(),
        1,
        "one warning for the process: {warnings}"
    );
    assert!(
        warnings.contains("one at a time") && warnings.contains("concurrency(10)"),
        "{warnings}"
    );
}

/// `skip_group_on_error(true)` on a batch that is not a FIFO queue's (no source ARN ending in
/// `.fifo`, no `SequenceNumber`: an event built by hand) is said once, in a warning naming
/// `fifo(true)`, instead of being ignored without a word: Python's option belongs to the FIFO
/// processor the user chose, and applies (found by a new function written from the docs).
#[tokio::test(flavor = "current_thread")]
async fn skipping_groups_on_a_batch_that_is_not_fifo_is_warned_about_once() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(warnings.subscriber());
    let fifo: SqsEvent =
        serde_json::from_str(include_str!("events/sqs-fifo.json")).expect("an SQS event");
    let standard: SqsEvent =
        serde_json::from_str(include_str!("events/sqs-mixed.json")).expect("an SQS event");
    let processor = BatchProcessor::new().skip_group_on_error(true);
    let handler =
        |_record: powertools_batch::SqsRecord<serde_json::Value>| async { Ok::<(), String>(()) };
    processor
        .process_sqs(&fifo, handler)
        .await
        .expect("processed");
    assert!(
        !warnings.text().contains("skip_group_on_error"),
        "{}",
        warnings.text()
    );
    for _ in 0..3 {
        processor
            .process_sqs(&standard, handler)
            .await
            .expect("processed");
    }
    let warnings = warnings.text();
    assert_eq!(
        warnings.matches("skip_group_on_error").count(),
        1,
        "one warning for the process: {warnings}"
    );
    assert!(warnings.contains("fifo(true)"), "{warnings}");
}
