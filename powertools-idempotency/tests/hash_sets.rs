//! Key data holding hash sets, which serialize in an order of their own per set: the same data
//! keys the same way (found by an attack from the docs: five copies of one event ran five times).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, IdempotencyLayer, InMemoryStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order_id: String,
    /// Coupon codes: a set, as the handler only asks whether one is present.
    coupons: HashSet<String>,
}

fn the_event() -> serde_json::Value {
    json!({
        "order_id": "o-1",
        "coupons": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"]
    })
}

/// The same event delivered twice (SQS at-least-once, a client retry), keyed on the whole event
/// (the default): the runtime deserializes each delivery into its own `Order`, whose set
/// iterates in its own order.
#[tokio::test]
async fn a_duplicate_event_with_a_set_field_is_a_duplicate() {
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    assert_eq!(
        runs_for_five_copies(IdempotencyLayer::new(idempotency)).await,
        1,
        "the same order was charged more than once"
    );
}

/// How often the handler behind `layer` runs for five copies of [`the_event`], each
/// deserialized into an `Order` of its own, as the runtime gives each delivery; each copy must
/// succeed (a replay, never a refusal).
async fn runs_for_five_copies<K, V>(layer: IdempotencyLayer<InMemoryStore, K, V>) -> usize
where
    K: powertools_idempotency::KeyExtractor<Order> + Clone + Send + 'static,
    V: powertools_idempotency::KeyExtractor<Order> + Clone + Send + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut handler =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |event: LambdaEvent<Order>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>(format!("charged {}", event.payload.order_id))
                }
            }));
    for _ in 0..5 {
        let order: Order = serde_json::from_value(the_event()).unwrap();
        handler
            .ready()
            .await
            .unwrap()
            .call(TestContext::new().event(order))
            .await
            .expect("a duplicate is replayed, never refused as a mismatch");
    }
    runs.load(Ordering::SeqCst)
}

/// `run` promises "at most once per argument value": two equal sets are one value.
#[tokio::test]
async fn run_on_equal_sets_runs_once() {
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    let context = TestContext::new().build();
    let runs = AtomicUsize::new(0);
    for _ in 0..5 {
        let tags: HashSet<String> = (0..16).map(|i| format!("tag-{i}")).collect();
        let _: u32 = idempotency
            .run(&context, "tag-order", tags, |_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(1)
            })
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Validation data holding a set: a genuine duplicate (same order, same coupons) is refused as
/// a payload mismatch.
#[tokio::test]
async fn a_genuine_duplicate_with_set_validation_data_is_not_refused() {
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    let mut handler = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency)
                .key_from(|order: &Order| Some(order.order_id.clone()))
                .validate_from(|order: &Order| Some(order.coupons.clone())),
        )
        .service(service_fn(|event: LambdaEvent<Order>| async move {
            Ok::<_, lambda_runtime::Error>(format!("charged {}", event.payload.order_id))
        }));
    for attempt in 0..5 {
        let order: Order = serde_json::from_value(the_event()).unwrap();
        let result = handler
            .ready()
            .await
            .unwrap()
            .call(TestContext::new().event(order))
            .await;
        assert!(result.is_ok(), "attempt {attempt}: {}", result.unwrap_err());
    }
}

/// (Found by a review.) a list of sets (`Vec<HashSet<_>>`: an order's lines, each with its options) is
/// sorted as a whole, as its type's name holds `HashSet<`: two orders whose lines differ only in
/// their order key alike, and the second replays the first's response without running.
#[tokio::test]
async fn review_lists_of_sets_in_other_orders_are_other_arguments() {
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    let context = TestContext::new().build();
    let first: Vec<HashSet<String>> = vec![
        HashSet::from(["gift-wrap".to_owned()]),
        HashSet::from(["express".to_owned()]),
    ];
    let second: Vec<HashSet<String>> = first.iter().rev().cloned().collect();
    let mut answers = Vec::new();
    for lines in [first, second] {
        let answer: String = idempotency
            .run(&context, "ship-lines", lines, |lines| async move {
                Ok::<_, std::io::Error>(format!("{lines:?}"))
            })
            .await
            .unwrap();
        answers.push(answer);
    }
    assert_ne!(
        answers[0], answers[1],
        "the second order got the first one's response"
    );
}

/// A `JmesPath` key or validation expression on a typed event reads its sets sorted too: the
/// expression searched the event as the `jmespath` crate serialized it, with each set in its
/// own order, and five copies of one event ran the handler five times (found by an attack from
/// the docs; `sort(coupons)` was the way round).
#[cfg(feature = "jmespath")]
#[tokio::test]
async fn a_jmespath_key_or_validation_on_a_set_field_reads_it_sorted() {
    use powertools_idempotency::{JmesPath, KeyExtractor};
    for expression in ["[order_id, coupons]", "coupons", "@"] {
        let path = JmesPath::new(expression).unwrap();
        let keys: HashSet<String> = (0..20)
            .map(|_| {
                let order: Order = serde_json::from_value(the_event()).unwrap();
                let found = path.extract(&order).unwrap().unwrap();
                powertools_idempotency::key_json(&found)
            })
            .collect();
        assert_eq!(keys.len(), 1, "{expression}: {keys:?}");
    }
    // Through the layer, keyed and validated by expressions.
    let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
    let layer = IdempotencyLayer::new(idempotency)
        .key(JmesPath::new("[order_id, coupons]").unwrap())
        .validation(JmesPath::new("coupons").unwrap());
    assert_eq!(
        runs_for_five_copies(layer).await,
        1,
        "charged more than once"
    );
}
