//! An invocation whose metrics the exit step wrote, which then completes before the process
//! exits (the tracer's export after the step may take its whole budget): it is not an invocation
//! without metrics (it failed with `EmptyMetrics` under `raise_on_empty_metrics`, and warned
//! without it; found by a review). A binary of its own: the exit step runs once per process.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_that_completes_after_the_exit_hook_does_not_fail_as_empty() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).raise_on_empty_metrics(true).build().unwrap();
    let added = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (added, release) = (Arc::clone(&added), Arc::clone(&release));
        layer.layer(service_fn(move |_: LambdaEvent<Value>| {
            let (added, release) = (Arc::clone(&added), Arc::clone(&release));
            async move {
                powertools_metrics::add_metric("OrdersAccepted", 1.0, Unit::Count)?;
                added.notify_one();
                release.notified().await;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }))
    };
    let running = tokio::spawn(service.oneshot(TestContext::new().event(json!({}))));
    tokio::time::timeout(Duration::from_secs(10), added.notified())
        .await
        .unwrap();

    powertools_core::exit::before_exit();
    assert_eq!(
        valid_documents(&sink).len(),
        1,
        "the exit hook wrote its metric"
    );

    // The invocation completes before the process exits: it added a metric, which was written.
    release.notify_one();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
    assert!(
        outcome.is_ok(),
        "an invocation that added a metric fails as empty: {:?}",
        outcome.err().map(|error| error.to_string())
    );
}
