//! A `JmesPath` key searches a typed event as serde_json writes it: fields the expression does
//! not read cannot fail it. The `jmespath` crate's own serializer refused any `u128` or `i128`
//! (`5` included) and any map whose keys are not strings, anywhere in the event, so every
//! invocation failed with an error that blamed the expression (found by an attack from the
//! docs).

#![cfg(feature = "jmespath")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};

mod support;

use powertools_idempotency::{Error, JmesPath, KeyExtractor};
use serde::Serialize;
use serde_json::json;
use support::CapturedWarnings;

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
/// on an event whose header names are lowercase (a typed API Gateway or ALB event's) finds
/// `[null, "o-80"]`: two requests with different idempotency keys for one order share one
/// record, as in Powertools for Python, which keys the same way. That went without a word
/// (found by a user writing a function from the docs); a warning now gives the lowercase path,
/// once. The key stays as it is: made missing (as first fixed), it turned idempotency off for
/// every such request (found by a review).
#[test]
fn a_header_in_another_case_in_a_multi_select_is_said_once() {
    const EXPRESSION: &str = r#"[headers."Idempotency-Key", powertools_json(body).order_id]"#;
    let request = |key: &str| json!({"headers": {"idempotency-key": key}, "body": "{\"order_id\": \"o-80\"}"});
    let as_sent =
        json!({"headers": {"Idempotency-Key": "k-1"}, "body": "{\"order_id\": \"o-80\"}"});
    let without = json!({"headers": {}, "body": "{\"order_id\": \"o-80\"}"});
    let captured = CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let path = JmesPath::new(EXPRESSION).unwrap();
    // Events that have the header as the expression names it, or not at all, say nothing.
    assert_eq!(
        path.extract(&as_sent).unwrap(),
        Some(json!(["k-1", "o-80"]))
    );
    assert_eq!(path.extract(&without).unwrap(), Some(json!([null, "o-80"])));
    // An expression that names the header in both cases tells the events apart already (a
    // review found it warned).
    let either = JmesPath::new(
        r#"[headers."Idempotency-Key", headers."idempotency-key", powertools_json(body).order_id]"#,
    )
    .unwrap();
    assert_eq!(
        either.extract(&request("k-1")).unwrap(),
        Some(json!([null, "k-1", "o-80"]))
    );
    assert_eq!(captured.text(), "");
    // The header in lowercase: the same data as before, and the warning, once (a clone of the
    // expression shares it).
    for key in ["k-1", "k-2"] {
        assert_eq!(
            path.clone().extract(&request(key)).unwrap(),
            Some(json!([null, "o-80"]))
        );
    }
    let warnings = warned_once_of_the_header_case(&captured);
    assert!(
        warnings
            .contains(r#"`[headers."idempotency-key", powertools_json(body).order_id]` finds it"#),
        "{warnings}"
    );
}

/// The header-case warning is said once however many invocations meet it at once, through one
/// layer's clones: 64 concurrent tasks, one warning, and every task keyed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_header_case_warning_is_said_once_under_concurrency() {
    let captured = CapturedWarnings::default();
    // Set for every worker thread: the warning may come from any of them.
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(captured.subscriber()));
    let path = JmesPath::new(r#"[headers."Idempotency-Key", body.order_id]"#).unwrap();
    let tasks = (0..64).map(|task| {
        let path = path.clone();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        tokio::spawn(async move {
            tracing::dispatcher::with_default(&dispatch, || {
                let event = json!({
                    "headers": {"idempotency-key": format!("k-{task}")},
                    "body": {"order_id": "o-1"}
                });
                path.extract(&event).unwrap()
            })
        })
    });
    for found in futures_util::future::join_all(tasks).await {
        assert_eq!(found.unwrap(), Some(json!([null, "o-1"])));
    }
    warned_once_of_the_header_case(&captured);
}

/// The warnings captured, checked to say the header-case warning once.
fn warned_once_of_the_header_case(captured: &CapturedWarnings) -> String {
    let warnings = captured.text();
    assert_eq!(
        warnings
            .matches("found nothing at a header it names with capitals")
            .count(),
        1,
        "{warnings}"
    );
    warnings
}
