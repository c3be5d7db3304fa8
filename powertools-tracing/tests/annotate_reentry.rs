//! A global subscriber that annotates as it records events (to mark the traces that logged a
//! warning, say): `annotate`'s own lines about a refusal reach it, and its annotation is refused
//! in turn. `tracing` guards a scoped (`set_default`) subscriber against such reentry, not the
//! global one, so this binary installs one of its own: the refusals recursed until the stack
//! overflowed and the process aborted (found by a review).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{Tracer, TracingLayer, annotate};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

/// Counts the events it records, keeps the fields of the warnings, and annotates on each.
struct Annotating(Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Annotating {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.1.lock().expect("not poisoned").push(fields.0);
        }
        if self.0.fetch_add(1, Ordering::Relaxed) > 1_000 {
            // Bounded here, so that a recursion fails the test instead of aborting it.
            return;
        }
        annotate("has_log", true);
    }
}

/// A tracer whose exports go nowhere (nothing listens on port 9), given up within 100 ms.
fn tracer() -> Tracer {
    Tracer::builder()
        .service("orders")
        .env(Env::empty())
        .endpoint("http://127.0.0.1:9")
        .flush_timeout(Duration::from_millis(100))
        .build()
        .expect("valid tracer settings")
}

#[tokio::test]
async fn a_subscriber_that_annotates_on_every_event_does_not_recurse() {
    let events = Arc::new(AtomicUsize::new(0));
    let warnings = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Annotating(events.clone(), warnings.clone())),
    )
    .expect("the only global subscriber of this binary");

    // Outside an invocation: the refusal is a debug line, which the subscriber records and
    // annotates on, refused in silence.
    tracing::info!("a line before any invocation");
    assert!(events.load(Ordering::Relaxed) <= 2, "{events:?}");

    let counted = events.clone();
    let recorded = TracingLayer::new(tracer())
        .layer(service_fn(move |_: LambdaEvent<Value>| {
            let events = counted.clone();
            async move {
                for key in 0..47 {
                    annotate(format!("key_{key}"), 1_i64);
                }
                // Its 48th annotation is the subscriber's; the next line's is refused (a warning,
                // recorded and annotated on, refused in silence), and the one after it is refused
                // as the second of its kind.
                events.store(0, Ordering::Relaxed);
                tracing::warn!("a line at the 48th key");
                tracing::warn!("another line");
                tracing::warn!("and another");
                Ok::<_, Diagnostic>(events.load(Ordering::Relaxed))
            }
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .expect("the invocation succeeds");
    assert!(recorded <= 6, "{recorded} events for three lines");

    // The subscriber's annotation refused in silence (the invocation full) while the handler's
    // first empty key is logged does not use up the warning of its kind: the handler's own
    // refusal of that kind after it is still said (found by a review).
    warnings.lock().expect("not poisoned").clear();
    TracingLayer::new(tracer())
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            for key in 0..48 {
                annotate(format!("key_{key}"), 1_i64);
            }
            assert!(!annotate("", 1_i64));
            assert!(!annotate("order_id", "o-1"));
            Ok::<_, Diagnostic>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .expect("the invocation succeeds");
    let warnings = warnings.lock().expect("not poisoned").clone();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("order_id") && warning.contains("48")),
        "{warnings:#?}"
    );
}
