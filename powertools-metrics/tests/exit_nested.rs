//! One invocation under two nested `MetricsLayer`s (the facade's stack around a caller's own) is
//! one running invocation at exit, and its outer layer knows the inner one wrote (it was counted
//! twice, and the outer layer said it had no metrics; found by a review). A binary of its own:
//! the exit step runs once per process.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::CapturedWarnings;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::builder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_under_nested_layers_is_one_running_invocation() {
    let captured = CapturedWarnings::default();
    let _guard = powertools_tests::set_test_default(captured.subscriber());
    let sink = CheckedSink::new();
    let outer = builder(&sink).build().unwrap();
    let inner = builder(&sink).build().unwrap();
    let added = Arc::new(tokio::sync::Notify::new());
    let service = {
        let added = Arc::clone(&added);
        outer.layer(inner.layer(service_fn(move |_: LambdaEvent<Value>| {
            let added = Arc::clone(&added);
            async move {
                powertools_metrics::add_metric("OrdersAccepted", 1.0, Unit::Count)?;
                added.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        })))
    };
    let running = tokio::spawn(service.oneshot(TestContext::new().event(json!({}))));
    tokio::time::timeout(Duration::from_secs(10), added.notified())
        .await
        .unwrap();
    powertools_core::exit::before_exit();
    let warnings = captured.text();
    assert!(
        warnings.contains("invocations=1") && warnings.contains("with_metrics=1"),
        "{warnings}"
    );
    assert!(!warnings.contains("No application metrics"), "{warnings}");
    running.abort();
}
