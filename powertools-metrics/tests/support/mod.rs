//! Test support: every EMF document the tests produce is checked against the specification.

#![allow(dead_code, clippy::unwrap_used)] // test support: a failed check is a test failure

use powertools_core::env::Env;
use powertools_metrics::{Error, Metrics, MetricsLayer, MetricsLayerBuilder, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::Value;

/// Parses `line` and checks it is a valid EMF document (the checker shared by every crate's
/// tests, `powertools_tests::emf`).
pub(crate) fn assert_valid_emf(line: &str) -> Value {
    powertools_tests::emf::assert_valid_emf(line)
}

/// Every document `sink` holds, each checked.
pub(crate) fn valid_documents(sink: &CheckedSink) -> Vec<Value> {
    sink.lines()
        .iter()
        .map(|line| assert_valid_emf(line))
        .collect()
}

/// A builder with the namespace `Bakery`, the service `orders`, writing to `sink`, reading an
/// empty environment (so the machine's variables do not leak in).
pub(crate) fn builder(sink: &CheckedSink) -> MetricsLayerBuilder {
    MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .env(Env::empty())
}

/// The names of the metrics a document defines.
pub(crate) fn metric_names(document: &Value) -> Vec<String> {
    document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|metric| metric["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// The dimension sets of a document.
pub(crate) fn dimension_sets(document: &Value) -> Value {
    document["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()
}

/// A layer writing to `sink`, and one invocation's metrics.
pub(crate) fn metrics_of(sink: &CheckedSink) -> (MetricsLayer, Metrics) {
    let layer = builder(sink).build().expect("valid settings");
    let metrics = layer.new_metrics();
    (layer, metrics)
}

/// Writes one metric and flushes: the invocation's document.
pub(crate) fn flushed(metrics: &Metrics, sink: &CheckedSink) -> Value {
    metrics
        .add_metric("Orders", 1.0, Unit::Count)
        .expect("a metric");
    metrics.flush().expect("a flush");
    valid_documents(sink)
        .pop()
        .expect("the invocation's document")
}

/// Fills the repeated context to its 192 KB bound exactly, with metadata.
pub(crate) fn fill_to_the_bound(metrics: &Metrics) {
    let probe = 192 * 1024;
    let Err(Error::DocumentTooLarge { size, limit, .. }) =
        metrics.add_metadata("blob", "x".repeat(probe))
    else {
        panic!("the probe fits")
    };
    metrics
        .add_metadata("blob", "x".repeat(probe - (size - limit)))
        .expect("the rest fits");
}
