#![allow(clippy::unwrap_used, missing_docs)]
//! (Found by an attack from the docs.) A handle of a manual unit of work (`MetricsLayer::new_metrics`) dropped with metrics
//! that were never flushed lost them without a document and without a warning, where the
//! crate says "never a metric lost" and "no document is dropped silently".
use std::sync::{Arc, Mutex};

use powertools_metrics::{MetricsLayer, Unit};
use powertools_tests::emf::CheckedSink;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_dropped_handle_with_unflushed_metrics_is_not_silent() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let metrics = layer.new_metrics();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    drop(metrics);
    drop(layer);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        !sink.lines().is_empty() || logs.contains("WARN"),
        "OrdersPlaced was lost without a document or a warning; logs: {logs:?}"
    );
}
