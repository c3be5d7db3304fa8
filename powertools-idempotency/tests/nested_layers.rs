//! Idempotency layers nested on one key: a shared middleware stack adds one, the function adds
//! another, with one operation name.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, IdempotencyLayer, InMemoryStore};
use serde_json::{Value, json};

/// The inner layer claims the key the outer one holds: it found that claim and refused every
/// invocation as "already in progress", forever, naming a concurrent duplicate that does not
/// exist (found by an attack from the docs). It runs the handler as the outer layer's now, once,
/// and the duplicates replay; a layer inside with its own operation keeps its own records.
#[tokio::test]
async fn a_layer_inside_another_on_the_same_key_runs_the_handler_once() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("nested")
        .build()
        .unwrap();
    for inner_operation in ["handler", "charge"] {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let mut handler = ServiceBuilder::new()
            .layer(IdempotencyLayer::new(idempotency.clone()))
            .layer(IdempotencyLayer::new(idempotency.clone()).operation(inner_operation))
            .service(service_fn(move |event: LambdaEvent<Value>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>(event.payload)
                }
            }));
        for _ in 0..3 {
            let event = json!({"order": inner_operation});
            let answer = handler
                .ready()
                .await
                .unwrap()
                .call(TestContext::new().event(event.clone()))
                .await;
            assert_eq!(
                answer.map_err(|error| error.to_string()),
                Ok(event),
                "{inner_operation}"
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{inner_operation}");
    }
}

/// (Found by a review.) `BUILDING_FOR` is set only while the outer layer's inner `call` runs synchronously.
/// A layer between the two that calls its inner service after an await (an authorizer that
/// looks something up first, tower's `AsyncFilter` or `Buffer`, or another `IdempotencyLayer`
/// with its own operation, which claims before calling in) makes the inner layer claim the key
/// the outer one holds: every invocation is refused as already in progress, where lib.rs says
/// "a layer inside another on the same key ... runs the handler under the outer layer's claim,
/// once".
#[tokio::test]
async fn review_a_same_key_layer_behind_an_async_layer_runs_the_handler() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("nested")
        .build()
        .unwrap();
    // Outer "handler" → a layer that awaits before calling in → inner "handler".
    let deferring = lambda_runtime::tower::layer::layer_fn(|inner| {
        let inner: lambda_runtime::tower::util::BoxCloneService<
            LambdaEvent<Value>,
            Value,
            powertools_idempotency::Error<lambda_runtime::Error>,
        > = lambda_runtime::tower::util::BoxCloneService::new(inner);
        service_fn(move |event: LambdaEvent<Value>| {
            let mut inner = inner.clone();
            async move {
                tokio::task::yield_now().await;
                inner.ready().await?.call(event).await
            }
        })
    });
    let mut handler = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .layer(deferring)
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }));
    let event = json!({"order": 1});
    let answer = handler
        .ready()
        .await
        .unwrap()
        .call(TestContext::new().event(event.clone()))
        .await;
    assert_eq!(answer.map_err(|error| error.to_string()), Ok(event));
}

/// (Found by a review.) the same with three idempotency layers, the middle one with its own operation: the
/// middle one claims before it calls in, so the innermost (same key as the outermost) claims
/// again and finds the outer claim.
#[tokio::test]
async fn review_a_same_key_layer_behind_another_operation_s_layer_runs_the_handler() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("nested")
        .build()
        .unwrap();
    let mut handler = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .layer(IdempotencyLayer::new(idempotency.clone()).operation("charge"))
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }));
    let event = json!({"order": 2});
    let answer = handler
        .ready()
        .await
        .unwrap()
        .call(TestContext::new().event(event.clone()))
        .await;
    assert_eq!(answer.map_err(|error| error.to_string()), Ok(event));
}

/// (Found by a review.) the bypass compares keys only (`<prefix>.<operation>#<digest>`), not stores. A
/// shared stack's cheap per-container layer (in memory) outside the function's durable one
/// (DynamoDB; here a second store shared by two "containers"), both with the default prefix and
/// operation, worked before: each claimed in its own store. Now the durable layer is always
/// bypassed under the in-memory claim, so a duplicate delivered to another container runs the
/// handler again, and the durable store never holds a record.
#[tokio::test]
async fn review_a_nested_layer_on_another_store_still_claims_in_it() {
    let durable = Idempotency::builder(InMemoryStore::new())
        .key_prefix("orders")
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let container = || {
        let counted = runs.clone();
        let local = Idempotency::builder(InMemoryStore::new())
            .key_prefix("orders")
            .build()
            .unwrap();
        ServiceBuilder::new()
            .layer(IdempotencyLayer::new(local))
            .layer(IdempotencyLayer::new(durable.clone()))
            .service(service_fn(move |event: LambdaEvent<Value>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>(event.payload)
                }
            }))
    };
    let event = json!({"order": 3});
    for mut handler in [container(), container()] {
        handler
            .ready()
            .await
            .unwrap()
            .call(TestContext::new().event(event.clone()))
            .await
            .unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the duplicate ran again in the second container: the durable layer was bypassed"
    );
}

/// The outer claim is known to the task that polls it: a layer between two on the same key that
/// calls the inner service on another task (tower's `Buffer`, a layer that spawns) makes the
/// inner layer find the outer's claim. lib.rs says what follows, and this holds it to it: every
/// call fails, as `AlreadyInProgress`, and the handler never runs (found by an attack: lib.rs
/// promised "any layers between").
#[tokio::test]
async fn a_same_key_layer_behind_a_layer_that_calls_it_on_another_task_fails_loudly() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("nested")
        .build()
        .unwrap();
    let spawning = lambda_runtime::tower::layer::layer_fn(|inner| {
        let inner: lambda_runtime::tower::util::BoxCloneService<
            LambdaEvent<Value>,
            Value,
            powertools_idempotency::Error<lambda_runtime::Error>,
        > = lambda_runtime::tower::util::BoxCloneService::new(inner);
        service_fn(move |event: LambdaEvent<Value>| {
            let mut inner = inner.clone();
            async move {
                tokio::spawn(async move { inner.ready().await?.call(event).await })
                    .await
                    .expect("the spawned call")
            }
        })
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut handler = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .layer(spawning)
        .layer(IdempotencyLayer::new(idempotency.clone()))
        .service(service_fn(move |event: LambdaEvent<Value>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<_, lambda_runtime::Error>(event.payload)
            }
        }));
    for _ in 0..3 {
        let answer = handler
            .ready()
            .await
            .unwrap()
            .call(TestContext::new().event(json!({"order": 3})))
            .await
            .expect_err("the inner layer finds the outer claim");
        assert!(
            answer.to_string().to_lowercase().contains("in progress"),
            "{answer}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}
