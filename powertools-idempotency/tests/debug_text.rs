//! The `Debug` of an error that a stored response does not read back does not quote the
//! response: serde's error in it did (a card number), and `lambda_runtime` logs every handler
//! error's `Debug`, as does the failure line of an error no layer reports (found by a review).
#![allow(clippy::unwrap_used)]

use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};

const CARD: &str = "4111111111111111";

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    card: String,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Receipt {
    card: u64,
}

/// `lambda_runtime` 1.5 logs every handler error as `error!("{error:?}")`, which
/// powertools-logging keeps by default (`runtime_failure_lines`).
#[tokio::test]
async fn the_debug_of_an_unreadable_stored_response_does_not_quote_it() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(Env::empty())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    idempotency
        .run(&context, "charge", "k", |_| async {
            Ok::<_, std::io::Error>(Stored { card: CARD.into() })
        })
        .await
        .unwrap();
    let error = idempotency
        .run(&context, "charge", "k", |_| async {
            Ok::<_, std::io::Error>(Receipt { card: 1 })
        })
        .await
        .unwrap_err();
    let display = error.to_string();
    assert!(!display.contains(CARD), "Display: {display}");
    let debug = format!("{error:?}");
    assert!(
        !debug.contains(CARD),
        "Debug (the runtime's failure line): {debug}"
    );
}
