//! Shutdown with invocations still running (`SIGTERM` under `run_concurrent`): the tracer's
//! shutdown, which its extension's `SIGTERM` handler runs before exiting the process, writes the
//! metrics those invocations had added, with a warning, as it counts their spans. The metrics
//! were neither written nor mentioned (found by an audit from the docs). A binary of its own:
//! the exit hooks run once per process.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::logging::MemoryLogs;
use powertools::metrics::{MemorySink, Unit};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_writes_the_metrics_of_invocations_still_running() {
    let (logs, sink) = (MemoryLogs::new(), MemorySink::new());
    let powertools = Powertools::builder()
        .env(Env::empty())
        .service("orders")
        .logger({
            let logs = logs.clone();
            move |logger| logger.writer(logs)
        })
        .metrics({
            let sink = sink.clone();
            move |metrics| metrics.namespace("Shop").sink(sink)
        })
        .tracer(|tracer| {
            tracer
                .endpoint("http://127.0.0.1:9")
                .flush_timeout(Duration::from_millis(50))
        })
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let added = Arc::new(AtomicUsize::new(0));
    let service = powertools.layer().layer(service_fn({
        let added = Arc::clone(&added);
        move |_: LambdaEvent<Value>| {
            let added = Arc::clone(&added);
            async move {
                powertools::metrics::add_metric("OrdersAccepted", 1.0, Unit::Count)?;
                added.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok::<_, lambda_runtime::Error>(json!({}))
            }
        }
    }));
    let mut running = Vec::new();
    for index in 0..3 {
        let event = TestContext::new()
            .with_request_id(format!("req-{index}"))
            .event(json!({}));
        running.push(tokio::spawn(
            tracing::instrument::WithSubscriber::with_current_subscriber(
                service.clone().oneshot(event),
            ),
        ));
    }
    for _ in 0..3_000 {
        if added.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(added.load(Ordering::SeqCst), 3);
    assert!(sink.documents().is_empty());

    powertools.tracer().shutdown().await;

    let documents = sink.documents();
    assert_eq!(documents.len(), 3, "{documents:#?}");
    assert!(
        documents
            .iter()
            .all(|document| document["OrdersAccepted"] == 1.0)
    );
    let warning = logs
        .json()
        .into_iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.contains("still running when the process exited"))
        })
        .unwrap_or_else(|| panic!("{}", logs.contents()));
    assert_eq!(warning["invocations"], 3, "{warning}");
    for invocation in running {
        invocation.abort();
    }
}
