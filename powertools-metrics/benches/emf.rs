//! The cost of adding metrics and flushing an EMF document, ours against
//! `metrics_cloudwatch_embedded` on the same workload, and the layer against the bare handler.
//! `cargo bench -p powertools-metrics --bench emf`; results in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_metrics::{EmfRecorder, Metrics, MetricsLayer, Sink, Unit};
use serde_json::{Value, json};

/// Serializes every document and throws it away, so that the benchmark measures our work, not
/// the terminal.
#[derive(Debug)]
struct Discard;

impl Sink for Discard {
    fn write_document(&self, line: &str) {
        black_box(line);
    }
}

fn layer() -> MetricsLayer {
    MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(Discard)
        .env(Env::empty())
        .build()
        .expect("valid settings")
}

/// One order's metrics through our API: a dimension, three metrics, one metadata key.
fn record_order(metrics: &Metrics) {
    metrics.add_dimension("location", "Lyon").expect("valid");
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .expect("valid");
    metrics
        .add_metric("OrderValue", 18.5, Unit::None)
        .expect("valid");
    metrics
        .add_metric("Latency", 12.0, Unit::Milliseconds)
        .expect("valid");
    metrics.add_metadata("order_id", "o-1001").expect("valid");
}

/// The same order through the `metrics` facade; the location is a label, as that crate has no
/// per-invocation dimension.
fn record_order_with_facade() {
    metrics::counter!("OrdersPlaced", "location" => "Lyon").increment(1);
    metrics::histogram!("OrderValue", "location" => "Lyon").record(18.5);
    metrics::histogram!("Latency", "location" => "Lyon").record(12.0);
}

fn emf(criterion: &mut Criterion) {
    let ours = layer();
    let theirs = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("Bakery")
        .with_dimension("service", "orders")
        .init()
        .expect("the only global recorder of this process");
    let our_recorder = EmfRecorder::new();
    metrics::with_local_recorder(&our_recorder, || {
        metrics::describe_histogram!("Latency", metrics::Unit::Milliseconds, "");
    });

    let mut group = criterion.benchmark_group("add_metric");
    group.bench_function("powertools", |bencher| {
        bencher.iter_batched(
            || ours.new_metrics(),
            |metrics| {
                metrics
                    .add_metric("OrdersPlaced", 1.0, Unit::Count)
                    .expect("valid");
                metrics
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("powertools_facade", |bencher| {
        bencher.iter_batched(
            || ours.new_metrics(),
            |metrics| {
                metrics.in_scope(|| {
                    metrics::with_local_recorder(&our_recorder, || {
                        metrics::counter!("OrdersPlaced").increment(1);
                    });
                });
                metrics
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("metrics_cloudwatch_embedded", |bencher| {
        bencher.iter(|| metrics::counter!("OrdersPlaced").increment(1));
    });
    group.finish();
    theirs
        .flush(std::io::sink())
        .expect("writing to io::sink cannot fail");

    let mut group = criterion.benchmark_group("order_and_flush");
    group.bench_function("powertools", |bencher| {
        bencher.iter(|| {
            let metrics = ours.new_metrics();
            record_order(&metrics);
            metrics.flush().expect("has metrics");
        });
    });
    group.bench_function("powertools_facade", |bencher| {
        bencher.iter(|| {
            let metrics = ours.new_metrics();
            metrics.in_scope(|| {
                metrics::with_local_recorder(&our_recorder, record_order_with_facade);
            });
            metrics.add_metadata("order_id", "o-1001").expect("valid");
            metrics.flush().expect("has metrics");
        });
    });
    group.bench_function("metrics_cloudwatch_embedded", |bencher| {
        bencher.iter(|| {
            record_order_with_facade();
            theirs.set_property("order_id", "o-1001");
            theirs
                .flush(std::io::sink())
                .expect("writing to io::sink cannot fail");
        });
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut group = criterion.benchmark_group("invocation");
    let handler = |_event: LambdaEvent<Value>| async {
        Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
    };
    group.bench_function("bare_handler", |bencher| {
        bencher.to_async(&runtime).iter_batched(
            || TestContext::new().event(json!({"order_id": "o-1001"})),
            |event| service_fn(handler).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("metrics_layer_one_order", |bencher| {
        let recording = move |event: LambdaEvent<Value>| async move {
            powertools_metrics::add_dimension("location", "Lyon")?;
            powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
            powertools_metrics::add_metric("OrderValue", 18.5, Unit::None)?;
            powertools_metrics::add_metric("Latency", 12.0, Unit::Milliseconds)?;
            powertools_metrics::add_metadata("order_id", event.payload["order_id"].clone())?;
            Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
        };
        bencher.to_async(&runtime).iter_batched(
            || TestContext::new().event(json!({"order_id": "o-1001"})),
            |event| ours.layer(service_fn(recording)).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // Thousands of sets in one invocation: a label per customer of a batch, or `add_dimensions`
    // per record. The time grew with the square of their number (10,000 label sets: 0.86 s,
    // 40,000: 26 s, before 2026-12-07); it grows with their number now.
    let mut group = criterion.benchmark_group("sets_per_invocation");
    group.sample_size(10);
    for sets in [1_000_usize, 10_000] {
        group.bench_function(format!("facade_label_sets_{sets}"), |bencher| {
            let customers: Vec<String> = (0..sets).map(|index| format!("c-{index}")).collect();
            bencher.iter(|| {
                let metrics = ours.new_metrics();
                metrics.in_scope(|| {
                    metrics::with_local_recorder(&our_recorder, || {
                        for customer in &customers {
                            metrics::counter!("Orders", "customer" => customer.clone())
                                .increment(1);
                        }
                    });
                });
                metrics.flush().expect("has metrics");
            });
        });
    }
    group.bench_function("add_dimensions_sets_4950", |bencher| {
        // Every pair of 100 names: many sets, few dimensions (thousands of distinct dimension
        // names are still searched one by one, within the 192 KB they may take).
        let names: Vec<String> = (0..100).map(|index| format!("d{index}")).collect();
        let pairs: Vec<[(&str, &str); 2]> = names
            .iter()
            .enumerate()
            .flat_map(|(index, first)| {
                names[index + 1..]
                    .iter()
                    .map(move |second| [(first.as_str(), "v"), (second.as_str(), "v")])
            })
            .collect();
        bencher.iter(|| {
            let metrics = ours.new_metrics();
            for pair in &pairs {
                metrics.add_dimensions(*pair).expect("within the limits");
            }
            metrics
                .add_metric("OrdersPlaced", 1.0, Unit::Count)
                .expect("valid");
            metrics.flush().expect("has metrics");
        });
    });
    group.finish();
}

criterion_group!(benches, emf);
criterion_main!(benches);
