//! The set-up both handler benchmarks share (`handler`, timed by criterion, and `per_call`,
//! counted by callgrind), so that their rows measure the same stack.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::idempotency::{Idempotency, InMemoryStore};
use powertools_bench::{DiscardDocuments, Order};

/// Drops finished spans: the span is built, ended, queued and handed over; nothing is sent.
#[derive(Debug)]
pub(crate) struct DropSpans;

impl SpanExporter for DropSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// The whole stack as the function configures it, writing its logs and EMF documents nowhere;
/// with `tracing`, the invocation span goes through the tracer's queue to [`DropSpans`].
pub(crate) fn powertools(tracing: bool) -> Powertools {
    let builder = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            (
                "POWERTOOLS_TRACE_DISABLED",
                if tracing { "false" } else { "true" },
            ),
        ]))
        .logger(|logger| logger.writer(std::io::sink))
        .metrics(|metrics| metrics.sink(DiscardDocuments));
    let builder = if tracing {
        builder.tracer(|tracer| tracer.queued_exporter(DropSpans))
    } else {
        builder
    };
    builder.build().expect("valid settings")
}

/// A new in-memory idempotency store with the function's key prefix.
pub(crate) fn store() -> Idempotency<InMemoryStore> {
    Idempotency::builder(InMemoryStore::new())
        .key_prefix("orders")
        .build()
        .expect("valid settings")
}

/// The idempotency key: the order id.
pub(crate) fn key(order: &Order) -> Option<String> {
    Some(order.order_id.clone())
}
