#![allow(clippy::unwrap_used, missing_docs)]
//! (Found by an attack from the docs.) The metrics crate called tracing (its own warnings) and the Sink while it
//! holds an invocation's lock, so a subscriber layer or a sink that records through the
//! `metrics` facade deadlocks the invocation.
//! A tracing layer that counts warnings with the `metrics` facade (a common pattern) must not
//! deadlock when the metrics crate itself warns.
use powertools_metrics::{EmfRecorder, MetricsLayer};
use powertools_tests::emf::CheckedSink;
use tracing_subscriber::layer::{Context, SubscriberExt};

struct CountWarnings;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            metrics::counter!("Warnings").increment(1);
        }
    }
}

fn with_timeout(name: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let subscriber = tracing_subscriber::registry().with(CountWarnings);
        tracing::subscriber::with_default(subscriber, f);
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok(),
        "{name}: deadlocked"
    );
}

fn fresh() -> (CheckedSink, powertools_metrics::Metrics) {
    let _ = EmfRecorder::new().install();
    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let m = layer.new_metrics();
    (sink, m)
}

#[test]
fn overwritten_dimension_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("overwrite dimension", move || {
        m.in_scope(|| {
            m.add_dimension("city", "Lyon").unwrap();
            m.add_dimension("city", "Paris").unwrap();
        })
    });
}

#[test]
fn refused_dimension_value_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("refused dimension value", move || {
        m.in_scope(|| {
            m.add_dimension("town", "Zürich").unwrap();
        })
    });
}

#[test]
fn empty_dimension_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("empty dimension", move || {
        m.in_scope(|| {
            m.add_dimension("e", "").unwrap();
        })
    });
}

#[test]
fn refused_facade_value_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("facade refused", move || {
        m.in_scope(|| {
            metrics::gauge!("g").set(f64::NAN);
        })
    });
}

#[test]
fn empty_flush_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("empty flush", move || {
        m.in_scope(|| {
            let _ = m.flush();
        })
    });
}

#[test]
fn service_replaced_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("service replaced", move || {
        m.in_scope(|| {
            m.add_dimension("service", "billing").unwrap();
        })
    });
}

/// A sink of one's own that warns (for example when its write fails), under the same subscriber.
#[derive(Clone, Default, Debug)]
struct WarningSink(CheckedSink);
impl powertools_metrics::Sink for WarningSink {
    fn write_document(&self, line: &str) {
        tracing::warn!("slow write");
        self.0.write_document(line);
    }
}

#[test]
fn a_sink_that_warns_under_a_counting_subscriber() {
    let _ = EmfRecorder::new().install();
    let sink = WarningSink::default();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let m = layer.new_metrics();
    with_timeout("sink warns", move || {
        m.in_scope(|| {
            m.add_metric("x", 1.0, powertools_metrics::Unit::Count)
                .unwrap();
            m.flush().unwrap();
        })
    });
}

#[test]
fn automatic_write_at_100_values_with_a_sink_that_warns() {
    let _ = EmfRecorder::new().install();
    let sink = WarningSink::default();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let m = layer.new_metrics();
    with_timeout("sink warns at the 101st value", move || {
        m.in_scope(|| {
            for _ in 0..101 {
                m.add_metric("x", 1.0, powertools_metrics::Unit::Count)
                    .unwrap();
            }
        })
    });
}

#[test]
fn late_value_warning_counted_by_the_facade() {
    // Control (passes): the late-value warning is logged outside the lock.
    use lambda_runtime::{
        LambdaEvent, service_fn,
        tower::{Layer, ServiceExt},
    };
    let _ = EmfRecorder::new().install();
    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let service = layer.layer(service_fn(move |_e: LambdaEvent<serde_json::Value>| {
        let tx = tx.clone();
        async move {
            powertools_metrics::add_metric("own", 1.0, powertools_metrics::Unit::Count)?;
            tx.send(powertools_metrics::Metrics::current().unwrap())
                .unwrap();
            Ok::<_, lambda_runtime::Error>(())
        }
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(
            service
                .oneshot(powertools_core::testing::TestContext::new().event(serde_json::json!({}))),
        )
        .unwrap();
    let late = rx.recv().unwrap();
    with_timeout("late value warning", move || {
        late.in_scope(|| {
            late.add_metric("late", 1.0, powertools_metrics::Unit::Count)
                .unwrap();
        })
    });
}

#[test]
fn metadata_in_no_document_warning_counted_by_the_facade() {
    let (_sink, m) = fresh();
    with_timeout("metadata in no document", move || {
        m.in_scope(|| {
            m.add_metadata("k", 1).unwrap();
            metrics::counter!("c", "k" => "v").increment(1);
            let _ = m.flush();
        })
    });
}

/// The value a subscriber adds while the crate warns under the invocation's lock is not lost:
/// it is added once the lock is let go, and written with the invocation's document.
#[test]
fn a_value_added_from_a_warning_is_written_with_the_invocation() {
    let (sink, m) = fresh();
    let flushed = m.clone();
    with_timeout("counted warning", move || {
        m.in_scope(|| {
            m.add_dimension("city", "Lyon").unwrap();
            m.add_dimension("city", "Paris").unwrap();
            m.add_metric("Orders", 1.0, powertools_metrics::Unit::Count)
                .unwrap();
        });
    });
    flushed.flush().unwrap();
    let documents = sink.documents();
    let document = documents
        .iter()
        .find(|document| document.get("Orders").is_some())
        .expect("the invocation's document");
    assert_eq!(document["Warnings"], 1.0, "{document}");
    assert_eq!(document["city"], "Paris", "{document}");
}
