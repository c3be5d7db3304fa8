//! The logging utility where serde_json's `arbitrary_precision` is on: its values hold integers
//! beyond 64 bits, so an appended `u128` is written as the number, as a field is, where the
//! workspace's build (without it) writes its digits as text (found by a review: the text was
//! written here too).

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Layer, ServiceExt, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
use serde_json::Value;

#[tokio::test]
async fn a_128_bit_key_is_the_number_where_values_hold_it() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("orders")
        .writer(logs.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let _subscriber = tracing::subscriber::set_default(logger.subscriber());
    LoggingLayer::new(logger.clone())
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            powertools_logging::append_key("big", u128::MAX)?;
            powertools_logging::append_key("small", -1_i128)?;
            tracing::info!("appended");
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(Value::Null))
        .await
        .unwrap();
    let contents = logs.contents();
    let line = contents
        .lines()
        .find(|line| line.contains("appended"))
        .unwrap_or_else(|| panic!("{contents}"));
    assert!(
        line.contains(&format!("\"big\":{}", u128::MAX)),
        "the number, not its text: {line}"
    );
    assert!(line.contains("\"small\":-1"), "{line}");
}
