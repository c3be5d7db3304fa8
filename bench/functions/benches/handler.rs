//! The order handler of the Powertools for Python comparison, per invocation, in process: bare,
//! behind logs + metrics + idempotency on the in-memory store (first call, replay, local-cache
//! hit, JMESPath key), and with the invocation span as well (spans go through the tracer's queue
//! to an exporter that drops them, flushed before returning as without the extension: the row
//! measures the span and the hand-over, not a network export).
//! `cargo bench -p powertools-bench --bench handler`, or `scripts/bench`; results in BENCHMARKS.md.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::core::testing::TestContext;
use powertools::idempotency::{Idempotency, IdempotencyLayer, InMemoryStore, JmesPath};
use powertools_bench::{Order, Receipt, accept, handler};

mod common;
use common::{key, powertools, store};

/// Calls of a first-call row between two fresh stores: a warm function's store holds what its
/// recent invocations wrote, not the millions of records a benchmark run would pile up (a map
/// that large measures its own growth). Building the new store is setup, outside the timing.
const STORE_ROTATION: u64 = 4096;

/// The setup of a first-call row: the service, replaced every [`STORE_ROTATION`] calls, and a
/// new order.
fn first_calls<'a, S: Clone + 'a>(
    build: impl Fn() -> S + 'a,
    ids: &'a AtomicU64,
) -> impl FnMut() -> (S, LambdaEvent<Order>) + 'a {
    let mut service = build();
    move || {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        if id.is_multiple_of(STORE_ROTATION) {
            service = build();
        }
        let event = TestContext::new().event(Order::sample(format!("o-{id}")));
        (service.clone(), event)
    }
}

fn invocation(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ids = AtomicU64::new(0);
    let new_order = || {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        TestContext::new().event(Order::sample(format!("o-{id}")))
    };
    let same_order = || TestContext::new().event(Order::sample("o-replayed"));

    let mut group = criterion.benchmark_group("handler");
    let untraced = powertools(false);
    let guard = tracing::subscriber::set_default(untraced.subscriber());
    group.bench_function("bare", |bencher| {
        let bare = service_fn(|event: LambdaEvent<Order>| async move {
            Ok::<Receipt, std::convert::Infallible>(accept(&event.payload))
        });
        bencher.to_async(&runtime).iter_batched(
            new_order,
            |event| bare.oneshot(event),
            BatchSize::SmallInput,
        );
    });
    let stack = |idempotency: IdempotencyLayer<InMemoryStore, _, _>| {
        ServiceBuilder::new()
            .layer(untraced.layer())
            .layer(idempotency)
            .service(service_fn(handler))
    };
    group.bench_function("full_stack_first_call", |bencher| {
        bencher.to_async(&runtime).iter_batched(
            first_calls(|| stack(IdempotencyLayer::new(store()).key_from(key)), &ids),
            |(service, event)| service.oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("full_stack_replay", |bencher| {
        let service = stack(IdempotencyLayer::new(store()).key_from(key));
        bencher.to_async(&runtime).iter_batched(
            same_order,
            |event| service.clone().oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("full_stack_local_cache_hit", |bencher| {
        let idempotency = Idempotency::builder(InMemoryStore::new())
            .key_prefix("orders")
            .use_local_cache()
            .build()
            .expect("valid settings");
        let service = stack(IdempotencyLayer::new(idempotency).key_from(key));
        bencher.to_async(&runtime).iter_batched(
            same_order,
            |event| service.clone().oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("full_stack_first_call_jmespath_key", |bencher| {
        let path = JmesPath::new("order_id").expect("a valid expression");
        let build = || {
            ServiceBuilder::new()
                .layer(untraced.layer())
                .layer(IdempotencyLayer::new(store()).key(path.clone()))
                .service(service_fn(handler))
        };
        bencher.to_async(&runtime).iter_batched(
            first_calls(build, &ids),
            |(service, event)| service.oneshot(event),
            BatchSize::SmallInput,
        );
    });
    drop(guard);

    let traced = powertools(true);
    let _guard = tracing::subscriber::set_default(traced.subscriber());
    group.bench_function("full_stack_with_span_first_call", |bencher| {
        let build = || {
            ServiceBuilder::new()
                .layer(traced.layer())
                .layer(IdempotencyLayer::new(store()).key_from(key))
                .service(service_fn(handler))
        };
        bencher.to_async(&runtime).iter_batched(
            first_calls(build, &ids),
            |(service, event)| service.oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, invocation);
criterion_main!(benches);
