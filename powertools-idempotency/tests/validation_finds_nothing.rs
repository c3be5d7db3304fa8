//! Payload validation whose JMESPath expression finds nothing in an event (a misspelt field, a
//! header in another case) compares `null` with `null`, which is validation turned off without
//! a word, as in Powertools for Python. A warning says so, once per layer, naming the
//! expression; a closure's `None` is deliberate and says nothing.

#![cfg(feature = "jmespath")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    FromFn, Idempotency, IdempotencyLayer, InMemoryStore, JmesPath, KeyExtractor,
};
use serde_json::{Value, json};
use support::CapturedWarnings;
use tower::{Layer, ServiceExt};

/// Idempotency on an in-memory store, its settings not read from the process's environment.
fn in_memory() -> Idempotency<InMemoryStore> {
    Idempotency::builder(InMemoryStore::new())
        .env(Env::from_pairs::<_, &str, &str>([]))
        .build()
        .expect("valid settings")
}

/// Runs `events` through one layer validating with `validation`, under a subscriber that keeps
/// the warnings: the warnings, and how often the handler ran.
async fn warnings_of<V>(validation: V, events: &[Value]) -> (String, usize)
where
    V: KeyExtractor<Value> + Clone + Send + Sync + 'static,
{
    let captured = CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let idempotency = in_memory();
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let service = IdempotencyLayer::new(idempotency)
        .validation(validation)
        .layer(service_fn(move |event: LambdaEvent<Value>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<_, lambda_runtime::Error>(event.payload)
            }
        }));
    for event in events {
        // Each event is a first call or the replay of one: none fails here.
        service
            .clone()
            .oneshot(TestContext::new().event(event.clone()))
            .await
            .expect("the call succeeds");
    }
    (captured.text(), ran.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_validation_expression_that_finds_nothing_is_said_once_per_layer() {
    // The events carry `total`; the expression reads `amount`.
    let events = [
        json!({"order": "o-1", "total": 10}),
        json!({"order": "o-2", "total": 20}),
        json!({"order": "o-1", "total": 10}),
    ];
    let (warnings, ran) =
        warnings_of(JmesPath::new("amount").expect("an expression"), &events).await;
    assert_eq!(ran, 2, "the third event is the first one's replay");
    assert_eq!(
        warnings.matches("payload validation found nothing").count(),
        1,
        "{warnings}"
    );
    assert!(
        warnings.contains("the JMESPath expression `amount`"),
        "{warnings}"
    );
}

#[tokio::test]
async fn a_header_in_another_case_is_named_in_the_warning() {
    let (warnings, _) = warnings_of(
        JmesPath::new(r#"headers."X-Amount""#).expect("an expression"),
        &[json!({"headers": {"x-amount": "10"}})],
    )
    .await;
    assert!(
        warnings.contains("payload validation found nothing")
            && warnings.contains("events are lowercase")
            && warnings.contains("x-amount"),
        "{warnings}"
    );
}

#[tokio::test]
async fn validation_that_finds_data_or_a_closure_s_none_says_nothing() {
    let events = [json!({"order": "o-1", "total": 10})];
    let (warnings, ran) =
        warnings_of(JmesPath::new("total").expect("an expression"), &events).await;
    assert_eq!((warnings.as_str(), ran), ("", 1));
    let (warnings, ran) = warnings_of(FromFn(|_: &Value| None::<u32>), &events).await;
    assert_eq!((warnings.as_str(), ran), ("", 1));
    // An empty list or object is data, which a duplicate's other data does not match (a
    // review found them said to be nothing).
    for expression in ["coupons", "metadata", "[coupons, metadata]"] {
        let (warnings, _) = warnings_of(
            JmesPath::new(expression).expect("an expression"),
            &[json!({"coupons": [], "metadata": {}})],
        )
        .await;
        assert_eq!(warnings, "", "{expression}");
    }
}

/// A validation multi-select that names a header with capitals, on events that have it in
/// lowercase, still validates what it does find: a first fix of the header's case made such
/// data `null` as a whole, so a duplicate with another amount replayed the first response
/// (found by a review).
#[tokio::test]
async fn a_validation_multi_select_with_a_header_in_another_case_still_validates_the_rest() {
    let idempotency = in_memory();
    let service = IdempotencyLayer::new(idempotency)
        .key(JmesPath::new("order").expect("an expression"))
        .validation(JmesPath::new(r#"[headers."X-Signature", amount]"#).expect("an expression"))
        .layer(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }));
    let event =
        |amount: u32| json!({"order": "o-1", "amount": amount, "headers": {"x-signature": "s"}});
    service
        .clone()
        .oneshot(TestContext::new().event(event(10)))
        .await
        .expect("the first call");
    let refused = service
        .oneshot(TestContext::new().event(event(99_999)))
        .await
        .expect_err("another amount");
    assert_eq!(refused.error_type(), "IdempotencyValidationError");
}
