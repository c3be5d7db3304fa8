#![allow(clippy::unwrap_used, missing_docs)]
//! Review of the deferred calls (a call made on a thread that holds the invocation's lock is
//! run once the lock is let go).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use powertools_metrics::{EmfRecorder, MetricsLayer, Unit};
use powertools_tests::emf::CheckedSink;

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

/// (Found by a review.) `AfterUnlock` drained `DEFERRED` with `Vec::pop`, so the calls deferred
/// under one lock ran last-first. A gauge set twice while the lock is held ends with the *first* value; two
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
