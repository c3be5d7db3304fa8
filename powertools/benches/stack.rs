//! The whole stack per invocation (logs, metrics, tracing disabled and exporting, idempotency on
//! the in-memory store) against the bare handler, in the same run.
//! `cargo bench -p powertools --bench stack`; results in BENCHMARKS.md.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::idempotency::{Idempotency, IdempotencyLayer, InMemoryStore};
use powertools::metrics::{Sink, Unit};
use serde_json::{Value, json};

/// Discards EMF documents after they are serialized.
#[derive(Debug)]
struct Discard;

impl Sink for Discard {
    fn write_document(&self, line: &str) {
        std::hint::black_box(line);
    }
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    powertools::logging::append_key("order_id", event.payload["order_id"].clone())?;
    powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
    tracing::info!("order placed");
    Ok(json!({"accepted": true}))
}

fn stack(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let powertools = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
        ]))
        .logger(|logger| logger.writer(std::io::sink))
        .metrics(|metrics| metrics.sink(Discard))
        .build()
        .expect("valid settings");
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let ids = std::sync::atomic::AtomicU64::new(0);
    let event = || {
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TestContext::new().event(json!({"order_id": format!("o-{id}")}))
    };

    let mut group = criterion.benchmark_group("invocation");
    group.bench_function("bare_handler", |bencher| {
        bencher.to_async(&runtime).iter_batched(
            event,
            |event| service_fn(handler).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("logs_metrics_tracing_off", |bencher| {
        let layer = powertools.layer();
        bencher.to_async(&runtime).iter_batched(
            event,
            |event| {
                ServiceBuilder::new()
                    .layer(layer.clone())
                    .service(service_fn(handler))
                    .oneshot(event)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("full_stack_first_call_in_memory", |bencher| {
        let build = || {
            let idempotency = Idempotency::builder(InMemoryStore::new())
                .key_prefix("orders")
                .build()
                .expect("valid settings");
            ServiceBuilder::new()
                .layer(powertools.layer())
                .layer(IdempotencyLayer::new(idempotency))
                .service(service_fn(handler))
        };
        // A new store every 4096 calls, outside the timing: a warm function's store holds its
        // recent records, not the millions a benchmark run would pile up.
        let mut service = build();
        let mut calls = 0_u64;
        bencher.to_async(&runtime).iter_batched(
            || {
                calls += 1;
                if calls.is_multiple_of(4096) {
                    service = build();
                }
                (service.clone(), event())
            },
            |(service, event)| service.oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
