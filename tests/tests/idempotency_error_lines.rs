//! A handler that returns `Idempotency::run`'s error under the logging layer: neither the failure
//! line nor the runtime's own line (`error!("{error:?}")`) quotes a stored response that does not
//! read back (both printed the error's `Debug`, with serde's words quoting a card number; found
//! by a review).
#![allow(clippy::unwrap_used)]

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::core::env::Env;
use powertools::logging::{Logger, LoggingLayer, MemoryLogs};
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};
use serde_json::{Value, json};

const CARD: &str = "4111111111111111";

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    card: String,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Receipt {
    card: u64,
}

/// A handler using `Idempotency::run` and returning its error (a `Diagnostic` by
/// `From<Error<E>>`), under LoggingLayer with its defaults: the failure line, and the
/// runtime's own line (`error!("{error:?}")`, kept by default), must not quote the card.
#[tokio::test]
async fn the_failure_lines_do_not_quote_an_unreadable_stored_response() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .service("payments")
        .writer(logs.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(Env::empty())
        .build()
        .unwrap();
    let first = idempotency.clone();
    let context = TestContext::new().build();
    first
        .run(&context, "charge", "k", |_| async {
            Ok::<_, std::io::Error>(Stored { card: CARD.into() })
        })
        .await
        .unwrap();
    let error = LoggingLayer::new(logger)
        .layer(service_fn(move |event: LambdaEvent<Value>| {
            let idempotency = idempotency.clone();
            async move {
                idempotency
                    .run(&event.context, "charge", "k", |_| async {
                        Ok::<_, std::io::Error>(Receipt { card: 1 })
                    })
                    .await
            }
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap_err();
    // What lambda_runtime 1.5 (layers/panic.rs:83) logs for every handler error.
    tracing::error!(target: "lambda_runtime::layers::panic", "{error:?}");
    let quoting: Vec<String> = logs
        .json()
        .into_iter()
        .filter(|line| line.to_string().contains(CARD))
        .map(|line| line.to_string())
        .collect();
    assert!(quoting.is_empty(), "{quoting:#?}");
}
