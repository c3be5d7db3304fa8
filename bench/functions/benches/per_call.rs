//! The rows of the handler benchmark as plain loops, for instruction counts under callgrind,
//! which do not depend on the load of a shared machine:
//!
//! ```text
//! cargo bench -p powertools-bench --bench per_call --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*measured*' \
//!     target/release/deps/per_call-* ROW CALLS
//! ```
//!
//! `scripts/bench` runs each row with two numbers of calls and reports the difference per call
//! (set-up and the process's start cancel out). Rows: `bare`, `first_call` (logs + metrics +
//! idempotency in memory), `replay`, `first_call_with_span` (the same with the invocation span,
//! handed to the tracer's queue and flushed to an exporter that drops it), `span_only` (the
//! tracing layer alone around the bare handler, same exporter).

use std::convert::Infallible;

use lambda_runtime::tower::{Layer, Service, ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::core::testing::TestContext;
use powertools::idempotency::IdempotencyLayer;
use powertools::tracing::TracingLayer;
use powertools_bench::{Order, Receipt, accept, handler};

mod common;
use common::{key, powertools, store};

fn main() {
    let arguments: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with("--"))
        .collect();
    let (Some(row), Some(calls)) = (arguments.first(), arguments.get(1)) else {
        eprintln!("usage: per_call ROW CALLS");
        return;
    };
    let calls: u64 = calls.parse().expect("a number of calls");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let traced = row.contains("span");
    let powertools = powertools(traced);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let order = |call: u64| TestContext::new().event(Order::sample(format!("o-{call}")));
    // Each event is made just before its call, as the runtime deserializes one per invocation;
    // `--toggle-collect='*measured*'` counts only the calls, not deserializing it. (Events made
    // all at once before the loop were freed one per call with nothing allocated between them,
    // which overflows glibc's per-thread cache and takes its slow path: a pattern no function
    // has, which cost every row about 250 instructions and a first call about 1,250.)
    let new_orders = || (0..calls).map(order);
    match row.as_str() {
        "bare" => {
            let bare = service_fn(|event: LambdaEvent<Order>| async move {
                Ok::<Receipt, Infallible>(accept(&event.payload))
            });
            call_each(&runtime, &bare, new_orders());
        }
        "span_only" => {
            let service = TracingLayer::new(powertools.tracer().clone()).layer(service_fn(
                |event: LambdaEvent<Order>| async move {
                    Ok::<Receipt, Infallible>(accept(&event.payload))
                },
            ));
            call_each(&runtime, &service, new_orders());
        }
        "first_call" | "first_call_with_span" => {
            let service = ServiceBuilder::new()
                .layer(powertools.layer())
                .layer(IdempotencyLayer::new(store()).key_from(key))
                .service(service_fn(handler));
            call_each(&runtime, &service, new_orders());
        }
        "replay" => {
            let service = ServiceBuilder::new()
                .layer(powertools.layer())
                .layer(IdempotencyLayer::new(store()).key_from(key))
                .service(service_fn(handler));
            call_each(&runtime, &service, std::iter::once(order(0)));
            call_each(&runtime, &service, (0..calls).map(|_| order(0)));
        }
        other => eprintln!("unknown row {other}"),
    }
}

/// Calls `service` with each event, made as the call before it ends.
fn call_each<S>(
    runtime: &tokio::runtime::Runtime,
    service: &S,
    events: impl Iterator<Item = LambdaEvent<Order>>,
) where
    S: Service<LambdaEvent<Order>> + Clone,
{
    for event in events {
        measured(runtime, service, event);
    }
}

/// The call callgrind counts.
#[inline(never)]
fn measured<S>(runtime: &tokio::runtime::Runtime, service: &S, event: LambdaEvent<Order>)
where
    S: Service<LambdaEvent<Order>> + Clone,
{
    std::hint::black_box(runtime.block_on(service.clone().oneshot(event)).ok());
}
