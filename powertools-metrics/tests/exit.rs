//! Invocations still running when the process exits (Lambda's `SIGTERM` at shutdown, under
//! `run_concurrent`; the tracer's extension exits without running destructors): the metrics
//! they had added are written, with a warning. They were lost without a word (found by an audit
//! from the docs). A binary of its own: the exit hooks run once per process.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::CapturedWarnings;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_invocations_running_at_exit_are_written_and_said() {
    let captured = CapturedWarnings::default();
    let _guard = powertools_tests::set_test_default(captured.subscriber());
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    // One invocation that ends before the exit (written by its own flush), and three still
    // running: each added its metric, then waits forever.
    layer
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("OrdersAccepted", 1.0, Unit::Count)?;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let added = Arc::new(AtomicUsize::new(0));
    let mut running = Vec::new();
    for _ in 0..3 {
        let added = Arc::clone(&added);
        let service = layer.layer(service_fn(move |_: LambdaEvent<Value>| {
            let added = Arc::clone(&added);
            async move {
                powertools_metrics::add_metric("OrdersAccepted", 1.0, Unit::Count)?;
                added.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }));
        running.push(tokio::spawn(
            service.oneshot(TestContext::new().event(json!({}))),
        ));
    }
    // Until each has added its metric (a bound, not a timing: a stuck test fails).
    for _ in 0..3_000 {
        if added.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(added.load(Ordering::SeqCst), 3);
    assert_eq!(valid_documents(&sink).len(), 1);

    powertools_core::exit::before_exit();

    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 4, "{documents:#?}");
    assert!(
        documents
            .iter()
            .all(|document| document["OrdersAccepted"] == 1.0)
    );
    let warnings = captured.text();
    assert!(
        warnings.contains("still running when the process exited")
            && warnings.contains("invocations=3")
            && warnings.contains("with_metrics=3"),
        "{warnings}"
    );
    // Once per process: the extension's handler and a shutdown hook may both run it.
    powertools_core::exit::before_exit();
    assert_eq!(valid_documents(&sink).len(), 4);
    for invocation in running {
        invocation.abort();
    }
}
