//! What an invocation is keyed on: key extraction, the canonical JSON that is hashed, and the
//! rules for a missing key.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;

/// Extracts the data an event is keyed on (or validated against).
///
/// Implemented by [`WholeEvent`] (the default), [`NoValidation`]
/// and [`FromFn`], which [`IdempotencyLayer::key_from`](crate::IdempotencyLayer::key_from) wraps
/// around a typed closure.
pub trait KeyExtractor<T>: Clone + Send + Sync + 'static {
    /// The key data of `event`, `None` when it has none.
    ///
    /// # Errors
    /// [`Error::Serialization`] when the event or the extracted value is not JSON-serializable.
    fn extract(&self, event: &T) -> Result<Option<Value>, Error>;

    /// Whether this extractor extracts anything at all: `false` only for [`NoValidation`], which
    /// turns payload validation off. When it is `true`, a `None` from
    /// [`extract`](Self::extract) used for validation is validated as `null`, so a duplicate
    /// whose validation data is missing never matches one whose data is present.
    fn is_enabled(&self) -> bool {
        true
    }

    /// Whether payload validation warns when this extractor finds nothing in an event (once per
    /// layer; default: no). `true` for `JmesPath`, whose expression may match nothing in any
    /// event (a misspelt field, a header in another case): validation would then compare
    /// `null` with `null` and pass every duplicate without a word. A closure's `None` is
    /// deliberate.
    fn warns_when_validation_finds_nothing(&self) -> bool {
        false
    }

    /// Where the key is looked for, as [`Error::KeyMissing`] and the missing key's warning name
    /// it: "the JMESPath expression \`body.order_id\`", "the \`key_from\` closure". Called only
    /// when a key is missing, or validation data is (see
    /// [`warns_when_validation_finds_nothing`](Self::warns_when_validation_finds_nothing)).
    fn describe(&self) -> String {
        String::from("the key extractor")
    }
}

/// Keys on the whole event, as Powertools does by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeEvent;

impl<T: Serialize> KeyExtractor<T> for WholeEvent {
    fn extract(&self, event: &T) -> Result<Option<Value>, Error> {
        to_json(event, "event").map(Some)
    }

    fn describe(&self) -> String {
        String::from("the whole event")
    }
}

/// No payload validation (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoValidation;

impl<T> KeyExtractor<T> for NoValidation {
    fn extract(&self, _event: &T) -> Result<Option<Value>, Error> {
        Ok(None)
    }

    fn is_enabled(&self) -> bool {
        false
    }
}

/// Keys on what a typed closure picks from the event: checked by the compiler, no string paths.
#[derive(Clone, Copy)]
pub struct FromFn<F>(pub F);

impl<F> std::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFn(..)")
    }
}

impl<T, V, F> KeyExtractor<T> for FromFn<F>
where
    F: Fn(&T) -> Option<V> + Clone + Send + Sync + 'static,
    V: Serialize,
{
    fn extract(&self, event: &T) -> Result<Option<Value>, Error> {
        (self.0)(event)
            .map(|value| to_json(&value, "key data"))
            .transpose()
    }

    fn describe(&self) -> String {
        String::from("the `key_from` closure")
    }
}

/// `value` as JSON key data. A float JSON cannot hold (NaN, ±Infinity) is refused: serde_json
/// would write `null`, and distinct values would share one key.
pub(crate) fn to_json<T: Serialize + ?Sized>(
    value: &T,
    what: &'static str,
) -> Result<Value, Error> {
    if let Err(reason) = crate::storable::check_storable(value) {
        return Err(Error::Serialization {
            what,
            source: <serde_json::Error as serde::ser::Error>::custom(reason),
        });
    }
    sorted_json(value, what)
}

/// `value` as JSON with the elements of every hash set sorted: the same set keys the same way,
/// whatever its order. An integer beyond 64 bits is an error that says what to do.
pub(crate) fn sorted_json<T: Serialize + ?Sized>(
    value: &T,
    what: &'static str,
) -> Result<Value, Error> {
    crate::sets::to_value(value).map_err(|source| {
        // serde_json's `Value` holds integers of 64 bits at most: say what to do instead.
        let source = if source.to_string() == "number out of range" {
            <serde_json::Error as serde::ser::Error>::custom(
                "an integer beyond 64 bits (u128, i128) cannot be key or validation data: key on \
                 its text instead (`id.to_string()`)",
            )
        } else {
            source
        };
        Error::Serialization { what, source }
    })
}

/// The error of an extractor used for validation data: extractors say "key data", their usual
/// role.
pub(crate) fn as_validation_error(error: Error) -> Error {
    match error {
        Error::Serialization {
            what: "key data",
            source,
        } => Error::Serialization {
            what: "validation data",
            source,
        },
        other => other,
    }
}

/// Whether extracted key data counts as missing: `null`, an empty string, and an array or an
/// object that is empty or holds only `null`s (a JMESPath multi-select list or hash that matched
/// nothing: `{order: body.order_id}` is `{"order": null}`; a typed argument whose every field is
/// `None`). Numbers and booleans, `0` and `false` included, never do; nor does data with one
/// value that is not `null`.
///
/// Powertools for Python's rule (`all(x is None for x in data)`) is the same for `null`, a
/// string, a number and an array, and Java's too; for an object Python looks at its *keys*,
/// never `None`, so `{"order": null}` is not missing there: every event without an order id
/// shares that one key, and all but the first are answered as its duplicates. Here it is
/// missing, as in Java and TypeScript (which also count `0`, `false` and `""` as missing
/// values): with `raise_on_missing_key` the call fails with `KeyMissing`, without it the
/// handler runs without idempotency and a warning says so.
pub fn is_missing(data: &Value) -> bool {
    match data {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.iter().all(Value::is_null),
        Value::Object(fields) => fields.values().all(Value::is_null),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The JSON text an idempotency key's SHA-256 digest is computed over: `value` with object keys
/// sorted by Unicode code point (UTF-8 byte order), no whitespace,
/// strings escaped as `serde_json` escapes them, and numbers by value: an integer, or a float
/// with an integral value below 2^64 in magnitude (`1.0`, `1e3`, `-0`), is written as integer
/// digits (`1`, `1000`, `0`); any other float as `serde_json` prints it (the shortest text that
/// reads back as the same `f64`).
///
/// This is not RFC 8785 (JSON Canonicalization Scheme): RFC 8785 sorts keys by UTF-16 code units
/// and writes every number as an IEEE double, so two distinct integer ids above 2^53 would share
/// one key. The format is part of the stored records: it changes only with a CHANGELOG entry.
///
/// The same data always gives the same text, whatever order its fields were written in and
/// however its numbers were spelled, so it hashes to the same key. (Typed key data is made a
/// `Value` with the elements of every `HashSet` sorted, so that two sets of the same elements,
/// which iterate in orders of their own, give one key.) Keys are not portable to
/// other Powertools runtimes, which hash their own JSON spellings with MD5. Integers beyond 64
/// bits in a `serde_json::Value` event were already read as `f64` by serde_json before this
/// crate sees them (two such ids can collapse into one key): key on the id as a string for ids
/// that large (a typed `u128` or `i128` beyond 64 bits is refused as key data, with an error
/// that says so, unless serde_json's `arbitrary_precision` is on in the build: there it keys
/// as the float it rounds to).
///
/// ```
/// use powertools_idempotency::key_json;
/// let value = serde_json::json!({"b": [1.0, {"d": true, "c": null}], "a": "x"});
/// assert_eq!(key_json(&value), r#"{"a":"x","b":[1,{"c":null,"d":true}]}"#);
/// ```
pub fn key_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only JSON text was written, and JSON text is UTF-8.
    String::from_utf8(out)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            let mut entries: Vec<_> = fields.iter().collect();
            // Rust's str ordering is byte order, which for UTF-8 is code point order.
            entries.sort_unstable_by_key(|(name, _)| *name);
            out.push(b'{');
            for (index, (name, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&**name, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Number(number) => write_number(number, out),
        scalar => write_scalar(scalar, out),
    }
}

/// 2^64 as `f64`, exactly.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// Writes a number by value: integers as their digits, integral floats below 2^64 in magnitude
/// as integer digits, so that `-0`, `0`, `0.0` and `1.0`, `1` give the same key, and other
/// floats in their shortest form, so that `1.5`, `1.50` and `15e-1` do too. Each as its
/// integer or float, not as the `Number`: where a crate in the build turns on serde_json's
/// `arbitrary_precision`, a `Number` writes its digits as they came, and `1.5` and `1.50`, or
/// `-0` and `0`, gave two keys (found by an attack and its review). There, an integer beyond 64
/// bits is read as the float a build without it reads (`18446744073709551616` and
/// `18446744073709551616.0` key alike), and only a number beyond the range of `f64` (`1e400`,
/// which such a build alone keeps) is written as it came.
fn write_number(number: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(integer) = number.as_i64() {
        write_scalar(&integer, out);
    } else if let Some(integer) = number.as_u64() {
        write_scalar(&integer, out);
    } else if let Some(float) = number.as_f64().filter(|float| float.is_finite()) {
        // `as` is exact here: the value is integral and within the target type's range.
        #[allow(clippy::cast_possible_truncation)]
        if float.fract() == 0.0 && float.abs() < TWO_POW_64 {
            write_scalar(&(float as i128), out);
        } else {
            write_scalar(&float, out);
        }
    } else {
        write_scalar(number, out);
    }
}

/// Appends a string, number, bool or null as `serde_json` writes it, with no allocation.
fn write_scalar<T: serde::Serialize + ?Sized>(scalar: &T, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail: there is no I/O and no map key to reject.
    let _ = serde_json::to_writer(out, scalar);
}

/// The lowercase hex SHA-256 digest of `value`'s canonical JSON.
pub(crate) fn hash(value: &Value) -> String {
    let mut text = Vec::with_capacity(128);
    write_canonical(value, &mut text);
    let mut digest = String::with_capacity(64);
    push_hex(&mut digest, &Sha256::digest(&text).into());
    digest
}

/// Appends `bytes` (at most 32: a SHA-256 digest, a claim's id) in lowercase hex.
pub(crate) fn push_hex<const N: usize>(out: &mut String, bytes: &[u8; N]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    const { assert!(N <= 32) };
    // Into bytes, then one `push_str`: a `push` per character cost about 600 instructions per
    // key, this about 250.
    let mut hex = [0_u8; 64];
    for (index, byte) in bytes.iter().enumerate() {
        hex[2 * index] = DIGITS[usize::from(byte >> 4)];
        hex[2 * index + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    let hex = &hex[..2 * N];
    // Always ASCII; the lossy conversion is never taken.
    match std::str::from_utf8(hex) {
        Ok(hex) => out.push_str(hex),
        Err(_) => out.push_str(&String::from_utf8_lossy(hex)),
    }
}

/// The idempotency key `<prefix>.<operation>#<digest>` for `data`.
///
/// With a tenant id (Lambda tenant isolation) the digest covers a NUL byte, the tenant id as a
/// JSON string, another NUL and the data's canonical JSON. Canonical JSON never contains a raw
/// NUL, so no key data, with or without a tenant, hashes the same input as another tenant's:
/// one tenant can never be served another tenant's stored response.
pub(crate) fn idempotency_key(
    prefix: &str,
    operation: &str,
    tenant_id: Option<&str>,
    data: Value,
) -> String {
    let mut text = Vec::with_capacity(128);
    if let Some(tenant_id) = tenant_id {
        text.push(0);
        write_scalar(tenant_id, &mut text);
        text.push(0);
    }
    write_canonical(&data, &mut text);
    // The digest goes straight into the key: no string of its own.
    let mut key = String::with_capacity(prefix.len() + operation.len() + 2 + 64);
    key.push_str(prefix);
    key.push('.');
    key.push_str(operation);
    key.push('#');
    push_hex(&mut key, &Sha256::digest(&text).into());
    key
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn field_order_does_not_change_the_key() {
        let a: Value =
            serde_json::from_str(r#"{"order_id":"o-1","amount":12.5,"items":[{"b":1,"a":2}]}"#)
                .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "items": [{"a": 2, "b": 1}], "amount": 12.5, "order_id": "o-1" }"#,
        )
        .unwrap();
        assert_eq!(
            idempotency_key("f", "op", None, a),
            idempotency_key("f", "op", None, b)
        );
    }

    #[test]
    fn the_key_is_the_prefix_the_operation_and_the_sha256_of_the_key_json() {
        // printf '%s' '{"a":1}' | sha256sum
        assert_eq!(
            idempotency_key("orders-api", "handler", None, json!({"a": 1.0})),
            "orders-api.handler#015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn numbers_are_written_by_value() {
        let cases = [
            ("-0", "0"),
            ("-0.0", "0"),
            ("0.0", "0"),
            ("1e3", "1000"),
            ("-12.0", "-12"),
            ("12.5", "12.5"),
            ("9007199254740993", "9007199254740993"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("-9.223372036854775808e18", "-9223372036854775808"),
            ("-1e19", "-10000000000000000000"),
            ("-1.8446744073709550e19", "-18446744073709549568"),
            ("1e19", "10000000000000000000"),
            ("1e20", "1e+20"),
            ("1.5e-7", "1.5e-7"),
        ];
        for (text, canonical) in cases {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(key_json(&value), canonical, "{text}");
        }
    }

    #[test]
    fn tenants_get_different_keys_for_the_same_data() {
        let data = json!({"order_id": "o-1"});
        let a = idempotency_key("f", "op", Some("tenant-a"), data.clone());
        let b = idempotency_key("f", "op", Some("tenant-b"), data.clone());
        assert_ne!(a, b);
        assert_ne!(a, idempotency_key("f", "op", None, data));
    }

    #[test]
    fn key_json_sorts_by_code_point_and_escapes_strings() {
        let value = json!({"é": 1, "z": 2, "A": "line\n\"quoted\""});
        assert_eq!(
            key_json(&value),
            "{\"A\":\"line\\n\\\"quoted\\\"\",\"z\":2,\"é\":1}"
        );
    }

    #[test]
    fn missing_follows_the_powertools_rule() {
        for missing in [
            json!(null),
            json!(""),
            json!([]),
            json!([null, null]),
            json!({}),
            json!({"a": null}),
            json!({"a": null, "b": null}),
        ] {
            assert!(is_missing(&missing), "{missing}");
        }
        for present in [
            json!(0),
            json!(false),
            json!("x"),
            json!([null, 1]),
            json!({"a": null, "b": 0}),
            json!({"a": {"b": null}}),
            json!([[]]),
        ] {
            assert!(!is_missing(&present), "{present}");
        }
    }

    #[test]
    fn a_typed_closure_extracts_its_field() {
        struct Order {
            id: String,
        }
        let extractor = FromFn(|order: &Order| Some(order.id.clone()));
        let key = extractor.extract(&Order { id: "o-9".into() }).unwrap();
        assert_eq!(key, Some(json!("o-9")));
    }
}
