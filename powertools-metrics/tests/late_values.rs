//! Values added by threads racing the end of their invocation: none is lost. In a test binary of
//! its own: its thousands of threads log warnings with no subscriber of theirs, which, in one
//! process with `layer.rs`'s test that counts warnings through a scoped subscriber, made that
//! count flaky under plain `cargo test` (tracing's callsite interest is process-wide).

mod support;

use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::{Metrics, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

type HandlerResult = Result<Value, lambda_runtime::Error>;

/// Hands the invocation's handle to a thread that adds one value (`i`) after spinning `spin`
/// times, racing the end of the invocation.
async fn add_from_a_thread_as_the_invocation_ends(event: LambdaEvent<Value>) -> HandlerResult {
    let index = event.payload["i"].as_u64().expect("i");
    let spin = event.payload["spin"].as_u64().expect("spin");
    let metrics = Metrics::current().expect("inside the invocation");
    let (start, started) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = started.recv();
        for _ in 0..spin {
            std::hint::spin_loop();
        }
        metrics
            .add_metric("Late", index as f64, Unit::Count)
            .expect("a valid metric");
    });
    start.send(()).expect("the thread waits");
    Ok(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_added_while_the_invocation_ends_is_never_lost() {
    // Between the layer's last flush and the moment it marks the invocation ended, a value was
    // neither in the flush nor written at once: lost, a few in 20,000 (found by a reviewer).
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let trials = 20_000_u64;
    for index in 0..trials {
        let _ = layer
            .layer(service_fn(add_from_a_thread_as_the_invocation_ends))
            .oneshot(
                TestContext::new()
                    .with_cold_start(false)
                    .event(json!({"i": index, "spin": index % 400})),
            )
            .await;
    }
    // Every thread adds within microseconds of its invocation, each value after the end in a
    // document of its own: wait until no document comes for a while, bounded.
    let (mut written, mut quiet) = (0, 0);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now_written = sink.lines().len();
        quiet = if now_written == written { quiet + 1 } else { 0 };
        written = now_written;
        if quiet == 5 {
            break;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for document in valid_documents(&sink) {
        match &document["Late"] {
            Value::Array(values) => seen.extend(values.iter().map(|v| v.as_f64().unwrap() as u64)),
            Value::Null => {}
            value => {
                seen.insert(value.as_f64().unwrap() as u64);
            }
        }
    }
    let lost: Vec<u64> = (0..trials).filter(|index| !seen.contains(index)).collect();
    assert!(
        lost.is_empty(),
        "{} of {trials} values lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[tokio::test]
async fn a_cancelled_invocation_writes_its_metrics_and_then_what_its_tasks_add() {
    // Given a handler that adds a metric, hands its handle to a task that adds another later,
    // and then runs past an outer timeout (a `tokio::time::timeout` or a `select!` around the
    // service, which drops the invocation's future)
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
        let metrics = Metrics::current().expect("inside the invocation");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            metrics
                .add_metric("LateWork", 1.0, Unit::Count)
                .expect("a valid metric");
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    // When the invocation is cancelled before the handler ends
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        handler.oneshot(TestContext::new().with_cold_start(false).event(json!({}))),
    )
    .await;
    assert!(cancelled.is_err(), "the invocation was cancelled");

    // Then its metric is written as it is dropped, and the task's later value on its own
    tokio::time::sleep(Duration::from_millis(300)).await;
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 2, "{documents:#?}");
    assert_eq!(documents[0]["OrdersPlaced"], 1.0);
    assert_eq!(documents[1]["LateWork"], 1.0);

    // And an invocation whose future is dropped before it is ever polled writes what its
    // handler's synchronous part added
    let mut handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| {
        let added = powertools_metrics::add_metric("Accepted", 1.0, Unit::Count);
        async move {
            added?;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }
    }));
    let never_polled = lambda_runtime::tower::Service::call(
        &mut handler,
        TestContext::new().with_cold_start(false).event(json!({})),
    );
    drop(never_polled);
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 3, "{documents:#?}");
    assert_eq!(documents[2]["Accepted"], 1.0);
}
