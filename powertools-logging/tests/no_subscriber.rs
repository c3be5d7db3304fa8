//! A function that builds the logging layer but never installs a subscriber (`init()`
//! forgotten) loses every log line, failure lines included: the layer says so once, in the
//! logger's own output. A binary of its own, so that no other test's global subscriber is set.

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Layer, ServiceExt, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
use serde_json::{Value, json};

#[tokio::test]
async fn without_a_subscriber_the_layer_warns_once_that_lines_are_dropped() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("orders")
        .writer(logs.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let layer = LoggingLayer::new(logger);
    for request in ["req-1", "req-2"] {
        layer
            .layer(service_fn(|_: LambdaEvent<Value>| async {
                tracing::info!("order placed");
                Ok::<_, lambda_runtime::Error>(json!({}))
            }))
            .oneshot(TestContext::new().with_request_id(request).event(json!({})))
            .await
            .unwrap();
    }
    let lines = logs.json();
    assert_eq!(
        lines.len(),
        1,
        "one warning, and the handler's lines are lost: {lines:?}"
    );
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["service"], "orders");
    let message = lines[0]["message"].as_str().unwrap();
    assert!(message.contains("init()"), "names the fix: {message}");
}

/// At `POWERTOOLS_LOG_LEVEL=ERROR`, a common production setting, the line is written too.
#[tokio::test]
async fn the_line_is_written_at_the_error_level_too() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .writer(logs.clone())
        .env(Env::from_pairs([("POWERTOOLS_LOG_LEVEL", "ERROR")]))
        .build()
        .unwrap();
    LoggingLayer::new(logger)
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!({}))
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let lines = logs.json();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0]["message"].as_str().unwrap().contains("init()"));
}
