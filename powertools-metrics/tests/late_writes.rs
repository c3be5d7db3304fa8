//! Values a task adds after its invocation ended, written at once: a gauge goes on from its
//! level, and a sink that records a metric for each document it writes does not make each late
//! write add another without end. In a test binary of its own: the `metrics` facade recorder is
//! installed process-wide.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::{EmfRecorder, Metrics, MetricsLayer, Sink, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{assert_valid_emf, builder, valid_documents};

fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| EmfRecorder::new().install().unwrap());
}

/// Every value of `name` in `documents`, in order.
fn values_of(documents: &[Value], name: &str) -> Vec<f64> {
    documents
        .iter()
        .flat_map(|document| match &document[name] {
            Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
            Value::Null => Vec::new(),
            value => vec![value.as_f64().unwrap()],
        })
        .collect()
}

/// Runs one invocation through `layer` that runs `during`, then hands the invocation to a task
/// that outlives it and runs `late` 20 ms later; returns once `late` ran.
async fn with_a_late_task(layer: &MetricsLayer, during: fn(), late: fn()) {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done)));
    layer
        .layer(service_fn(move |_: LambdaEvent<Value>| {
            let done = done.lock().unwrap().take().unwrap();
            async move {
                during();
                let invocation = Metrics::current().unwrap();
                tokio::spawn(invocation.scope(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    late();
                    let _ = done.send(());
                }));
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), finished)
        .await
        .unwrap()
        .unwrap();
}

/// A gauge set during the invocation and changed by a task after its end goes on from its last
/// level, as the recorder's docs say of a gauge after a document written at the 100-metric limit:
/// it started again from 0 (`G` was 1 and 2 where it should be 6 and 7; found by an attack from
/// the docs).
#[tokio::test]
async fn a_gauge_changed_after_its_invocation_ended_goes_on_from_its_level() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    with_a_late_task(
        &layer,
        || {
            metrics::gauge!("Oven").set(5.0);
            metrics::gauge!("Proofer", "room" => "north").set(5.0);
        },
        || {
            metrics::gauge!("Oven").increment(1.0);
            metrics::gauge!("Proofer", "room" => "north").increment(1.0);
            metrics::gauge!("Oven").increment(1.0);
        },
    )
    .await;
    let documents = valid_documents(&sink);
    assert_eq!(
        values_of(&documents, "Oven"),
        [5.0, 6.0, 7.0],
        "{documents:#?}"
    );
    assert_eq!(
        values_of(&documents, "Proofer"),
        [5.0, 6.0],
        "{documents:#?}"
    );
}

/// Writes each document it is given, and records a metric for each.
#[derive(Debug, Clone, Default)]
struct RecordingSink(Arc<Mutex<Vec<String>>>);

impl Sink for RecordingSink {
    fn write_document(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
        let _ = powertools_metrics::add_metric("DocumentsWritten", 1.0, Unit::Count);
    }
}

/// A sink that records a metric for each document it writes, with a value added after the
/// invocation ended: each late value is written at once, and the sink's metric for that
/// document was a late value too, written at once, and so on, until the stack overflowed and
/// the process aborted (found by an attack from the docs). The sink's value for the late
/// document is written after it; the one it adds for that document waits, with a warning.
#[tokio::test]
async fn a_sink_that_records_a_metric_for_each_late_document_does_not_write_without_end() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = powertools_tests::set_test_default(warnings.subscriber());
    let sink = RecordingSink::default();
    with_a_late_task(
        &recording_layer(&sink),
        || powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count).unwrap(),
        || powertools_metrics::add_metric("LateOrders", 1.0, Unit::Count).unwrap(),
    )
    .await;
    let documents: Vec<Value> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|line| assert_valid_emf(line))
        .collect();
    assert!(documents.len() <= 4, "{documents:#?}");
    assert_eq!(values_of(&documents, "LateOrders"), [1.0]);
    assert_eq!(values_of(&documents, "OrdersPlaced"), [1.0]);
    let warned = warnings.text();
    assert!(
        warned.contains("written with the next value added after the invocation ended"),
        "{warned}"
    );
}

/// Runs one invocation through `layer` that adds a metric, and returns its handle, kept after
/// the invocation ended.
async fn ended_handle(layer: &MetricsLayer) -> Metrics {
    let slot: Arc<Mutex<Option<Metrics>>> = Arc::default();
    let kept = slot.clone();
    layer
        .layer(service_fn(move |_: LambdaEvent<Value>| {
            let kept = kept.clone();
            async move {
                powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
                *kept.lock().unwrap() = Metrics::current();
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .unwrap();
    slot.lock().unwrap().take().unwrap()
}

fn recording_layer(sink: &RecordingSink) -> MetricsLayer {
    MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .env(powertools_core::env::Env::empty())
        .build()
        .unwrap()
}

/// The mark of a late write is the invocation's, not the thread's: a late value of invocation B
/// whose document the sink records in invocation A (ended too) is written for A as any late
/// value of A is (the thread's mark left it in A, unwritten and unsaid; found by a review).
/// A flush of an ended handle writes what waits, and what is left when its last handle goes is
/// named for what it is, not as a flush forgotten.
#[tokio::test(flavor = "current_thread")]
async fn a_late_write_of_one_invocation_does_not_hold_back_another_s() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = powertools_tests::set_test_default(warnings.subscriber());
    let sink = RecordingSink::default();
    let layer = recording_layer(&sink);
    let a = ended_handle(&layer).await;
    let b = ended_handle(&layer).await;
    let before = sink.0.lock().unwrap().len();
    a.in_scope(|| b.add_metric("LateB", 1.0, Unit::Count).unwrap());
    let documents: Vec<Value> = sink.0.lock().unwrap()[before..]
        .iter()
        .map(|line| assert_valid_emf(line))
        .collect();
    assert_eq!(values_of(&documents, "LateB"), [1.0], "{documents:#?}");
    // B's document recorded in A, written at once for A, whose documents the sink recorded in
    // A again: written, a bounded number of times (the rounds of the writes of A that these
    // nest in), with one left waiting.
    let recorded = values_of(&documents, "DocumentsWritten").len();
    assert!((1..=4).contains(&recorded), "{documents:#?}");
    // A flush of A's ended handle writes what waits (and leaves one the sink adds for it).
    let before = sink.0.lock().unwrap().len();
    a.in_scope(|| a.flush().unwrap());
    let flushed = sink.0.lock().unwrap().len() - before;
    assert!((1..=2).contains(&flushed), "{flushed}");
    drop(a);
    let warned = warnings.text();
    assert!(!warned.contains("before Metrics::flush"), "{warned}");
    assert!(
        warned.contains("was never written: the sink added it while it wrote"),
        "{warned}"
    );
}

/// An invocation with more than 128 label sets still gives its state back for reuse: the kept
/// groups were collected into the same list, whose capacity then made the state too large to
/// keep (found by a review; the layer's `Debug` shows how many states its pool keeps).
#[tokio::test]
async fn many_label_sets_do_not_stop_the_state_from_being_recycled() {
    install();
    for labels in [100_u64, 200] {
        let sink = CheckedSink::new();
        let layer = builder(&sink).build().unwrap();
        layer
            .layer(service_fn(move |_: LambdaEvent<Value>| async move {
                for label in 0..labels {
                    metrics::counter!("Loaves", "shelf" => label.to_string()).increment(1);
                }
                powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }))
            .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
            .await
            .unwrap();
        let shown = format!("{layer:?}");
        let pool = &shown[shown.rfind("recycled").unwrap()..];
        assert!(pool.contains("kept: 1"), "{labels} label sets: {pool}");
    }
}
