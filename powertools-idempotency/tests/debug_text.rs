//! The `Debug` of an error that a stored response does not read back does not quote the
//! response: serde's error in it did (a card number), and `lambda_runtime` logs every handler
//! error's `Debug`, as does the failure line of an error no layer reports (found by a review).
#![allow(clippy::unwrap_used)]

use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{BoxError, Error, Idempotency, InMemoryStore};

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

/// A key-data type whose `Serialize` refuses a value and says which (`ser::Error::custom`).
struct Card;

impl serde::Serialize for Card {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(format!(
            "card {} is not on file",
            "4111 1111 1111 1111"
        )))
    }
}

/// A `Serialize` implementation's own message may quote the value: left out of `Serialization`'s
/// message, where the crate's own reasons are kept (the first version of this fix let it
/// through; found by a review).
#[test]
fn a_serialize_implementation_s_message_is_left_out_and_the_crate_s_kept() {
    let error = Error::<std::convert::Infallible>::Serialization {
        what: "key data",
        source: serde_json::to_value(Card).unwrap_err(),
    };
    let display = error.to_string();
    assert!(!display.contains("4111"), "{display}");
    let own = Error::<std::convert::Infallible>::Serialization {
        what: "key data",
        source: serde::ser::Error::custom(
            "an integer beyond 64 bits (u128, i128) cannot be key or validation data",
        ),
    };
    assert!(own.to_string().contains("beyond 64 bits"), "{own}");
}

/// The serde errors in `Debug` keep serde_json's one-line layout, `{:#?}` too, without the
/// value; a failed release shows the handler's error, as a derived `Debug` did (a review).
#[test]
fn the_debug_keeps_serde_s_layout_and_the_handler_s_error() {
    let source = || serde_json::from_str::<u8>("true").unwrap_err();
    let error = Error::<std::convert::Infallible>::Serialization {
        what: "response",
        source: source(),
    };
    let debug = format!("{error:#?}");
    assert!(
        debug.contains(
            "source: Error(\"invalid type (the value is left out), expected u8\", line: 1, \
             column: 4),"
        ),
        "{debug}"
    );
    let error = Error::DeleteFailed {
        error: Box::new(Error::Handler("card declined".to_owned())),
        source: BoxError::from("throttled"),
    };
    assert!(format!("{error:?}").contains("card declined"));
}
