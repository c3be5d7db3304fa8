//! A global subscriber that records a metric for each warning it sees, through a handle that
//! outlived its invocation: the warning about that late value reached it again, and again, until
//! the stack overflowed and the process aborted (`tracing` guards a scoped subscriber against
//! such reentry, not the global one; found by a review). In a binary of its own, for its global
//! subscriber.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::{Metrics, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};
use tracing_subscriber::layer::SubscriberExt;

/// Counts warnings, and adds a `Warnings` metric through the kept handle for each.
struct CountingWarnings {
    warnings: Arc<AtomicUsize>,
    handle: Arc<Mutex<Option<Metrics>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountingWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        if self.warnings.fetch_add(1, Ordering::Relaxed) > 1_000 {
            // Bounded here, so that a recursion fails the test instead of aborting it.
            return;
        }
        let handle = self.handle.lock().expect("not poisoned").clone();
        if let Some(metrics) = handle {
            let _ = metrics.add_metric("Warnings", 1.0, Unit::Count);
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_counts_warnings_as_late_metrics_does_not_recurse() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let handle = Arc::new(Mutex::new(None));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(
        CountingWarnings {
            warnings: warnings.clone(),
            handle: handle.clone(),
        },
    ))
    .expect("the only global subscriber of this binary");
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let keep = handle.clone();
    layer
        .layer(service_fn(move |_: LambdaEvent<Value>| {
            let keep = keep.clone();
            async move {
                let metrics = Metrics::current().expect("inside the invocation");
                metrics.add_metric("OrdersPlaced", 1.0, Unit::Count)?;
                *keep.lock().expect("not poisoned") = Some(metrics);
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .expect("the invocation succeeds");
    let late = handle.lock().expect("not poisoned").clone().expect("kept");
    warnings.store(0, Ordering::Relaxed);
    late.add_dimension("tenant", "acme").unwrap();
    late.add_metric("Late", 1.0, Unit::Count).unwrap();
    let counted = warnings.load(Ordering::Relaxed);
    assert!(counted <= 4, "{counted} warnings for two late values");
    // Every late value is written, the subscriber's too.
    let documents = valid_documents(&sink);
    assert!(
        documents.iter().any(|document| document["Late"] == 1.0),
        "{documents:?}"
    );
    assert!(
        documents
            .iter()
            .any(|document| document.get("Warnings").is_some()),
        "{documents:?}"
    );
}
