//! The idempotency utility where serde_json's `arbitrary_precision` is on: a `Number` keeps its
//! digits as written, and serde reads a float it buffers (`#[serde(flatten)]`, internally tagged
//! and untagged enums) as a map. Found by an attack: `1.5` and `1.50` gave two keys, and a float
//! under `#[serde(flatten)]` was stored and every duplicate failed until the record expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use powertools_idempotency::{Error, Idempotency, InMemoryStore, key_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Amount {
    cents: u64,
    rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
    #[serde(flatten)]
    amount: Amount,
}

#[test]
fn this_build_keeps_numbers_as_written() {
    let number: Value = serde_json::from_str("1.50").unwrap();
    assert_eq!(
        number.to_string(),
        "1.50",
        "arbitrary_precision is off here"
    );
}

/// However a number is spelled, its key is its value's.
#[test]
fn keys_do_not_depend_on_how_a_number_is_spelled() {
    for spellings in [
        ["1.5", "1.50", "15e-1"],
        ["12.5", "12.50", "1.25e1"],
        ["100", "1e2", "100.0"],
        ["0", "-0.0", "-0"],
        [
            "18446744073709551616",
            "18446744073709551616.0",
            "1.8446744073709552e19",
        ],
        [
            "123456789012345678901234567890",
            "123456789012345678901234567890.0",
            "1.2345678901234568e29",
        ],
    ] {
        let keys: Vec<String> = spellings
            .iter()
            .map(|spelling| key_json(&serde_json::from_str::<Value>(spelling).unwrap()))
            .collect();
        assert!(
            keys.iter().all(|key| *key == keys[0]),
            "{spellings:?}: {keys:?}"
        );
    }
}

/// A `JmesPath` key reads numbers by value too: the `jmespath` crate serialized a `Number` of
/// this build as the map serde_json writes it through (`{"$serde_json::private::Number":
/// "1.50"}`), so each spelling keyed apart (found by an attack from the docs: three runs).
#[test]
fn a_jmespath_key_reads_numbers_by_value() {
    use powertools_idempotency::{JmesPath, KeyExtractor};
    // (Not `@`: the body's text differs with the spelling.)
    for expression in ["id", "{id: id, n: n}", "[id, n]", "powertools_json(body).id"] {
        let path = JmesPath::new(expression).unwrap();
        for spellings in [["1.5", "1.50", "15e-1"], ["0", "-0", "0.0"]] {
            let keys: Vec<String> = spellings
                .iter()
                .map(|spelling| {
                    let event: Value = serde_json::from_str(&format!(
                        r#"{{"id": {spelling}, "n": 2, "body": "{{\"id\": {spelling}}}"}}"#
                    ))
                    .unwrap();
                    key_json(&path.extract(&event).unwrap().unwrap())
                })
                .collect();
            assert!(
                keys.iter().all(|key| *key == keys[0]),
                "{expression} on {spellings:?}: {keys:?}"
            );
        }
    }
}

/// Warnings, written into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A response that would not read back is not stored, with a warning that names the feature:
/// the first caller gets it, a duplicate gets `ResponseNotStored`, never the response's
/// `StoredResponseUnreadable` until the record expires. A response that reads back replays.
#[tokio::test]
async fn a_response_that_would_not_read_back_is_not_stored_and_says_why() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .key_prefix("check")
        .build()
        .unwrap();
    let mut context = lambda_runtime::Context::default();
    context.request_id = "r-1".to_owned();
    let runs = Arc::new(AtomicUsize::new(0));

    let receipt = Receipt {
        id: "o-1".to_owned(),
        amount: Amount {
            cents: 1250,
            rate: 0.5,
        },
    };
    let call = |key: &'static str, response: Receipt| {
        let runs = Arc::clone(&runs);
        idempotency.run(&context, "charge", key, move |_| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(response)
        })
    };
    assert_eq!(call("o-1", receipt.clone()).await.unwrap(), receipt);
    let duplicate = call("o-1", receipt.clone()).await.unwrap_err();
    assert!(
        matches!(duplicate, Error::ResponseNotStored { .. }),
        "{duplicate:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let warnings = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(warnings.contains("arbitrary_precision"), "{warnings}");

    // The same values without `flatten` read back: stored, and replayed as they were.
    let amount = Amount {
        cents: 1250,
        rate: 0.1 + 0.2,
    };
    let plain = |response: Amount| {
        let runs = Arc::clone(&runs);
        idempotency.run(&context, "amount", "o-2", move |_| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(response)
        })
    };
    assert_eq!(plain(amount.clone()).await.unwrap(), amount);
    assert_eq!(plain(amount.clone()).await.unwrap(), amount);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
