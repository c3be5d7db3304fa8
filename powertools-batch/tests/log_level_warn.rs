//! At `POWERTOOLS_LOG_LEVEL=WARN`, work a record hands to a blocking thread with its span, as the
//! README's "Parallel records" says to, keeps the record's keys and the invocation's (found by an
//! attack from the docs: the level took away every `INFO` span, so `Span::current()` was empty
//! and the line had no `function_request_id`, `message_id` or key). In a test binary of its own:
//! the blocking thread logs through the global subscriber.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::tower::ServiceExt;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools_batch::{BatchProcessor, SqsRecord};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
use serde_json::{Value, json};
use tower::Layer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_work_with_the_record_s_span_keeps_its_keys_at_log_level_warn() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("ovens")
        .env(Env::from_pairs([("POWERTOOLS_LOG_LEVEL", "WARN")]))
        .writer(logs.clone())
        .build()
        .expect("valid settings");
    tracing::subscriber::set_global_default(logger.subscriber()).expect("the only subscriber");
    let service =
        LoggingLayer::new(logger).layer(service_fn(|event: LambdaEvent<SqsEvent>| async move {
            let response: SqsBatchResponse = BatchProcessor::new()
                .process_sqs(&event.payload, |record: SqsRecord<Value>| async move {
                    powertools_logging::append_key("order_id", record.body["order"].clone())
                        .map_err(|error| error.to_string())?;
                    let span = tracing::Span::current();
                    tokio::task::spawn_blocking(move || {
                        span.in_scope(|| tracing::warn!("the oven is slow"));
                    })
                    .await
                    .map_err(|error| error.to_string())?;
                    Ok::<_, String>(())
                })
                .await?;
            Ok::<_, Diagnostic>(response)
        }));
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{\"order\": \"o-1\"}", "eventSource": "aws:sqs"},
    ]}))
    .expect("an SQS event");
    let response = service
        .oneshot(TestContext::new().with_request_id("req-1").event(event))
        .await
        .expect("the batch's response");
    assert!(response.batch_item_failures.is_empty());
    let lines = logs.json();
    let line = lines
        .iter()
        .find(|line| line["message"] == "the oven is slow")
        .unwrap_or_else(|| panic!("no line: {lines:#?}"));
    assert_eq!(line["function_request_id"], "req-1", "{line}");
    assert_eq!(line["message_id"], "m-1", "{line}");
    assert_eq!(line["order_id"], "o-1", "{line}");
}
