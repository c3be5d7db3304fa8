//! A `JmesPath` key searches a typed event as serde_json writes it: fields the expression does
//! not read cannot fail it. The `jmespath` crate's own serializer refused any `u128` or `i128`
//! (`5` included) and any map whose keys are not strings, anywhere in the event, so every
//! invocation failed with an error that blamed the expression (found by an attack from the
//! docs).

#![cfg(feature = "jmespath")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};

use powertools_idempotency::{Error, JmesPath, KeyExtractor};
use serde::Serialize;
use serde_json::json;

#[derive(Serialize)]
struct Transfer {
    transfer_id: String,
    amount: u128,
    fee: i128,
    /// Ledger lines by their number: JSON writes the keys as strings.
    lines: HashMap<i64, String>,
    by_day: BTreeMap<u32, u32>,
}

fn transfer(amount: u128) -> Transfer {
    Transfer {
        transfer_id: "t-1".to_owned(),
        amount,
        fee: -1,
        lines: HashMap::from([(1, "rent".to_owned())]),
        by_day: BTreeMap::from([(7, 3)]),
    }
}

#[test]
fn fields_the_expression_does_not_read_do_not_fail_it() {
    let event = transfer(5);
    let key = JmesPath::new("transfer_id").unwrap();
    assert_eq!(key.extract(&event).unwrap(), Some(json!("t-1")));
    // Each of those fields, read as JSON has it.
    let all = JmesPath::new(r#"[amount, fee, lines."1", by_day."7"]"#).unwrap();
    assert_eq!(
        all.extract(&event).unwrap(),
        Some(json!([5, -1, "rent", 3]))
    );
}

/// An integer beyond 64 bits anywhere in the event is refused as key data is: JSON numbers stop
/// at 64 bits in a `serde_json::Value`, and the error says what to do, naming no expression.
#[test]
fn an_integer_beyond_64_bits_is_refused_saying_so() {
    let event = transfer(u128::from(u64::MAX) + 1);
    let error = JmesPath::new("transfer_id")
        .unwrap()
        .extract(&event)
        .unwrap_err();
    assert!(
        matches!(error, Error::Serialization { .. })
            && error.error_type() == "IdempotencySerializationError"
            && error.to_string().contains("beyond 64 bits"),
        "{error:?}: {error}"
    );
}

/// A multi-select key that names a header with capitals (Python's expression, ported as it is)
/// on an event whose header names are lowercase (a typed API Gateway or ALB event's) found
/// `[null, "o-80"]`, not missing: two requests with different idempotency keys for one order
/// shared one record, and the second got the first's response, without a word (found by a user
/// writing a function from the docs, which say the missing key's warning tells). The key is
/// missing now, as the single path's is, and the warning or `KeyMissing` gives the lowercase
/// path.
#[tokio::test]
async fn a_header_in_another_case_in_a_multi_select_key_is_a_missing_key() {
    use lambda_runtime::{LambdaEvent, service_fn};
    use powertools_core::env::Env;
    use powertools_core::testing::TestContext;
    use powertools_idempotency::{Idempotency, IdempotencyLayer, InMemoryStore};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};

    const EXPRESSION: &str = r#"[headers."Idempotency-Key", powertools_json(body).order_id]"#;
    let request = |key: &str| json!({"headers": {"idempotency-key": key}, "body": "{\"order_id\": \"o-80\"}"});
    let path = JmesPath::new(EXPRESSION).unwrap();
    assert_eq!(path.extract(&request("k-1")).unwrap(), None);
    // An event that has the header in the expression's case (a `serde_json::Value` event of a
    // REST API, as the client sent it) keys on it.
    let as_sent =
        json!({"headers": {"Idempotency-Key": "k-1"}, "body": "{\"order_id\": \"o-80\"}"});
    assert_eq!(
        path.extract(&as_sent).unwrap(),
        Some(json!(["k-1", "o-80"]))
    );
    // A request without the header at all is what it was: the order alone.
    let without = json!({"headers": {}, "body": "{\"order_id\": \"o-80\"}"});
    assert_eq!(path.extract(&without).unwrap(), Some(json!([null, "o-80"])));

    for raise in [false, true] {
        let idempotency = Idempotency::builder(InMemoryStore::new())
            .env(Env::from_pairs::<_, &str, &str>([]))
            .raise_on_missing_key(raise)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let service = IdempotencyLayer::new(idempotency)
            .key(JmesPath::new(EXPRESSION).unwrap())
            .layer(service_fn(move |event: LambdaEvent<serde_json::Value>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>(event.payload["headers"].clone())
                }
            }));
        let mut answers = Vec::new();
        for key in ["k-1", "k-2"] {
            let result = service
                .clone()
                .oneshot(TestContext::new().event(request(key)))
                .await;
            answers.push(match result {
                Ok(headers) => headers["idempotency-key"].clone(),
                Err(error) => {
                    assert!(
                        error.error_type() == "IdempotencyKeyError"
                            && error.to_string().contains(r#"headers."idempotency-key""#),
                        "{error}"
                    );
                    json!("refused")
                }
            });
        }
        if raise {
            assert_eq!(answers, [json!("refused"), json!("refused")]);
            assert_eq!(ran.load(Ordering::SeqCst), 0);
        } else {
            // Each request its own answer: never the first's for the second.
            assert_eq!(answers, [json!("k-1"), json!("k-2")]);
            assert_eq!(ran.load(Ordering::SeqCst), 2);
        }
    }
}
