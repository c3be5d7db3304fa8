#![allow(clippy::unwrap_used, missing_docs)]
//! Review of the deferred calls (a call made on a thread that holds the invocation's lock is
//! run once the lock is let go).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use powertools_metrics::{EmfRecorder, MetricsLayer, Unit};
use powertools_tests::emf::CheckedSink;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts warnings with the `metrics` facade (the pattern the deferral is for), and keeps their
/// messages.
#[derive(Clone, Default)]
struct CountWarnings(Arc<Mutex<Vec<String>>>);
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            let mut message = String::new();
            struct Visit<'a>(&'a mut String);
            impl tracing::field::Visit for Visit<'_> {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            event.record(&mut Visit(&mut message));
            self.0.lock().unwrap().push(message);
            metrics::counter!("Warnings").increment(1);
        }
    }
}

/// A sink that records, through the `metrics` facade, the number of the last document it wrote
/// (a gauge: the last value set is the metric's value).
#[derive(Clone, Default, Debug)]
struct NumberingSink {
    inner: CheckedSink,
    written: Arc<AtomicUsize>,
}
impl powertools_metrics::Sink for NumberingSink {
    fn write_document(&self, line: &str) {
        let n = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("LastDocumentNumber").set(n as f64);
        self.inner.write_document(line);
    }
}

/// Review: `AfterUnlock` drains `DEFERRED` with `Vec::pop`, so the calls deferred under one lock
/// run last-first. A gauge set twice while the lock is held ends with the *first* value; two
/// `add_dimension` of one name keep the first; `add_metric` then `flush` flushes first.
#[test]
fn review_deferred_calls_run_in_the_order_they_were_made() {
    let _ = EmfRecorder::new().install();
    let sink = NumberingSink::default();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let m = layer.new_metrics();
    m.in_scope(|| {
        m.add_metric("Orders", 1.0, Unit::Count).unwrap();
        // A labelled facade metric: the flush writes two documents under one lock.
        metrics::counter!("Refunds", "reason" => "late").increment(1);
        m.flush().unwrap();
        // The sink set LastDocumentNumber to 1, then 2 (deferred, added after the flush).
        m.add_metric("Orders", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
    });
    let documents = sink.inner.documents();
    let last = documents
        .iter()
        .find(|document| document.get("LastDocumentNumber").is_some())
        .expect("a document with LastDocumentNumber");
    assert_eq!(
        last["LastDocumentNumber"], 2.0,
        "the gauge was set to 1 then 2: its value is 2; document: {last}"
    );
}

/// Review: a manual unit of work flushed as documented, whose flush logged a warning under the
/// lock (here the crate's own "metadata in no document"), loses the value the counting
/// subscriber added for that warning: it is deferred to after the flush's reset, so it waits for
/// a flush that never comes, and the handle's drop then warns that metrics were dropped without
/// being written, for a handle its caller did flush.
#[test]
fn review_a_flushed_handle_loses_the_value_counted_from_its_flush_warning() {
    let _ = EmfRecorder::new().install();
    let warnings = CountWarnings::default();
    let seen = warnings.clone();
    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(warnings);
    tracing::subscriber::with_default(subscriber, || {
        let m = layer.new_metrics();
        m.in_scope(|| {
            m.add_metadata("k", 1).unwrap();
            metrics::counter!("c", "k" => "v").increment(1);
            m.flush().unwrap();
        });
        drop(m);
    });
    let messages = seen.0.lock().unwrap().clone();
    let dropped: Vec<&String> = messages
        .iter()
        .filter(|message| message.contains("dropped without being written"))
        .collect();
    let written_warnings = sink
        .documents()
        .iter()
        .any(|document| document.get("Warnings").is_some());
    assert!(
        dropped.is_empty() && written_warnings,
        "the handle was flushed, yet the Warnings value counted from that flush's own warning was \
         never written ({written_warnings}) and its drop warned: {dropped:?}"
    );
}
