//! Per-invocation cost of `IdempotencyLayer` on the in-memory store, against the bare handler in
//! the same run. `cargo bench -p powertools-idempotency --bench layer`; results in BENCHMARKS.md.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{Layer, Service, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, IdempotencyLayer, InMemoryStore, JmesPath};
use serde::{Deserialize, Serialize};

/// A realistic small payment event: a few fields, one nested list.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    payment_id: String,
    customer_id: String,
    amount_cents: u64,
    currency: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    payment_id: String,
    charged_cents: u64,
}

fn payment(payment_id: String) -> Payment {
    Payment {
        payment_id,
        customer_id: "c-42".to_owned(),
        amount_cents: 1250,
        currency: "EUR".to_owned(),
        items: vec![
            Item {
                sku: "croissant".to_owned(),
                quantity: 4,
            },
            Item {
                sku: "baguette".to_owned(),
                quantity: 1,
            },
        ],
    }
}

async fn charge(event: LambdaEvent<Payment>) -> Result<Receipt, lambda_runtime::Error> {
    Ok(Receipt {
        payment_id: event.payload.payment_id,
        charged_cents: event.payload.amount_cents,
    })
}

/// Calls `service` once per iteration with a fresh context (built outside the timing) around the
/// payment `next_payment` returns.
fn bench_service<S>(
    criterion: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    next_payment: impl Fn() -> Payment,
) where
    S: Service<LambdaEvent<Payment>, Response = Receipt> + Clone,
    S::Error: std::fmt::Debug,
{
    bench_calls(criterion, runtime, name, || {
        (service.clone(), TestContext::new().event(next_payment()))
    });
}

/// Times one call per iteration of the service and event that `setup` returns (untimed).
fn bench_calls<S>(
    criterion: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    mut setup: impl FnMut() -> (S, LambdaEvent<Payment>),
) where
    S: Service<LambdaEvent<Payment>, Response = Receipt>,
    S::Error: std::fmt::Debug,
{
    criterion.bench_function(name, |bencher| {
        bencher.to_async(runtime).iter_batched(
            &mut setup,
            |(service, event)| async move { service.oneshot(event).await.expect("call succeeds") },
            BatchSize::SmallInput,
        );
    });
}

fn idempotency_layer(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let bare = service_fn(charge);
    let keyed_on_payment_id = |idempotency: Idempotency<InMemoryStore>| {
        IdempotencyLayer::new(idempotency)
            .key_from(|payment: &Payment| Some(payment.payment_id.clone()))
            .validate_from(|payment: &Payment| Some(payment.amount_cents))
            .layer(service_fn(charge))
    };
    let without_cache = || {
        Idempotency::builder(InMemoryStore::new())
            .key_prefix("bench")
            .build()
            .expect("valid settings")
    };

    bench_service(criterion, &runtime, "bare_handler", bare, || {
        payment("pay-1".to_owned())
    });

    // Every call has a new key. The store is replaced every 4096 calls so that it stays the size
    // of a warm function's, rather than growing to millions of records over the run.
    let fresh_ids = AtomicU64::new(0);
    let mut first_calls = keyed_on_payment_id(without_cache());
    bench_calls(criterion, &runtime, "layer_first_call", || {
        let id = fresh_ids.fetch_add(1, Ordering::Relaxed);
        if id.is_multiple_of(4096) {
            first_calls = keyed_on_payment_id(without_cache());
        }
        (
            first_calls.clone(),
            TestContext::new().event(payment(format!("pay-{id}"))),
        )
    });

    bench_service(
        criterion,
        &runtime,
        "layer_duplicate",
        keyed_on_payment_id(without_cache()),
        || payment("pay-1".to_owned()),
    );

    let cached = Idempotency::builder(InMemoryStore::new())
        .key_prefix("bench")
        .use_local_cache()
        .build()
        .expect("valid settings");
    bench_service(
        criterion,
        &runtime,
        "layer_local_cache_hit",
        keyed_on_payment_id(cached),
        || payment("pay-1".to_owned()),
    );

    let whole_event = IdempotencyLayer::new(without_cache()).layer(service_fn(charge));
    bench_service(
        criterion,
        &runtime,
        "layer_duplicate_whole_event_key",
        whole_event,
        || payment("pay-1".to_owned()),
    );

    let jmespath = IdempotencyLayer::new(without_cache())
        .key(JmesPath::new("payment_id").expect("valid expression"))
        .validation(JmesPath::new("amount_cents").expect("valid expression"))
        .layer(service_fn(charge));
    bench_service(
        criterion,
        &runtime,
        "layer_duplicate_jmespath_key",
        jmespath,
        || payment("pay-1".to_owned()),
    );
}

criterion_group!(benches, idempotency_layer);
criterion_main!(benches);
