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
