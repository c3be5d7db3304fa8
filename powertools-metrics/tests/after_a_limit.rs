//! A metric keeps its unit and resolution for the whole invocation, across the documents the
//! 100-metric limit splits it into (found by an attack from the docs: after the write at 100
//! metrics, `Latency` was taken in Milliseconds after Seconds, and the invocation published
//! both).
#![allow(clippy::unwrap_used, missing_docs)]

use powertools_metrics::{Error, MetricsLayer, Resolution, Unit};
use powertools_tests::emf::CheckedSink;

fn metrics_with_latency(resolution: Resolution) -> (CheckedSink, powertools_metrics::Metrics) {
    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .unwrap();
    let metrics = layer.new_metrics();
    metrics
        .add_metric_with_resolution("Latency", 1.0, Unit::Seconds, resolution)
        .unwrap();
    for index in 0..100 {
        metrics
            .add_metric(&format!("m{index}"), 1.0, Unit::Count)
            .unwrap();
    }
    assert_eq!(sink.documents().len(), 1, "written at the 101st metric");
    (sink, metrics)
}

#[test]
fn a_unit_or_resolution_conflict_is_refused_after_the_write_at_100_metrics() {
    let (_, metrics) = metrics_with_latency(Resolution::Standard);
    let again = metrics.add_metric("Latency", 1.0, Unit::Milliseconds);
    assert!(
        matches!(again, Err(Error::UnitConflict { .. })),
        "{again:?}"
    );
    let (_, metrics) = metrics_with_latency(Resolution::High);
    let again = metrics.add_metric("Latency", 1.0, Unit::Seconds);
    assert!(
        matches!(again, Err(Error::ResolutionConflict { .. })),
        "{again:?}"
    );
}

/// The same unit goes on in the next document; after a flush, the name is free again.
#[test]
fn the_same_unit_goes_on_and_a_flush_frees_the_name() {
    let (sink, metrics) = metrics_with_latency(Resolution::Standard);
    metrics.add_metric("Latency", 2.0, Unit::Seconds).unwrap();
    metrics.flush().unwrap();
    metrics
        .add_metric("Latency", 3.0, Unit::Milliseconds)
        .unwrap();
    metrics.flush().unwrap();
    let units: Vec<String> = sink
        .documents()
        .iter()
        .flat_map(|document| {
            document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|metric| metric["Name"] == "Latency")
                .map(|metric| metric["Unit"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(units, ["Seconds", "Seconds", "Milliseconds"]);
}
