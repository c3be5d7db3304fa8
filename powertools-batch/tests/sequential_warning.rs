//! `concurrency` above 1 on a batch whose records must run one at a time (a stream, an SQS FIFO
//! queue) is said once, in a warning, instead of being ignored without a word (found by a user
//! writing a function from the docs: 20 stream records of 50 ms took a second, with
//! `concurrency(10)`). In a test binary of its own: the warning is once per process.

use std::sync::{Arc, Mutex};

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::sqs::SqsEvent;
use powertools_batch::BatchProcessor;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn concurrency_on_records_that_run_one_at_a_time_is_warned_about_once() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
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
    let warnings = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
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
