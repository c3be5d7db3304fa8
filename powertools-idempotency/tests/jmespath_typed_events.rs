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
