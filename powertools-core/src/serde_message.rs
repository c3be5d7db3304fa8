//! serde's and serde_json's error messages without what they quote from the input.
//!
//! serde's messages quote the value they could not read (`invalid type: string "4111 1111 1111
//! 1111", expected u32`), and a `Deserialize` implementation's own messages often do too
//! (chrono's `value is not a legal timestamp: 4111…`). An event or a record body that does not
//! deserialize must not copy a card number, or megabytes, into an error or a log line: the
//! facade's `InvalidEvent` and the batch processor's record failures say what was expected and
//! where, with this.

/// Fixed texts, with nothing from the input: serde_json's for JSON it cannot parse, serde's and
/// lambda_http's own.
const FIXED_MESSAGES: &[&str] = &[
    "EOF while parsing a list",
    "EOF while parsing an object",
    "EOF while parsing a string",
    "EOF while parsing a value",
    "expected `:`",
    "expected `,` or `]`",
    "expected `,` or `}`",
    "expected ident",
    "expected value",
    "expected `\"`",
    "invalid escape",
    "invalid number",
    "number out of range",
    "invalid unicode code point",
    "control character (\\u0000-\\u001F) found while parsing a string",
    "key must be a string",
    "invalid value: expected key to be a number in quotes",
    "float key must be finite (got NaN or +/-inf)",
    "lone leading surrogate in hex escape",
    "trailing comma",
    "trailing characters",
    "unexpected end of hex escape",
    "recursion limit exceeded",
    // serde's own, for enums and flattened fields.
    "untagged and internally tagged enums do not support enum input",
    "value is missing",
    "can only flatten structs and maps",
    "unexpected map key",
    // lambda_http's, for an event that is none of the HTTP events it reads.
    "this function expects a JSON payload from Amazon API Gateway, Amazon Elastic Load Balancer, \
     or AWS Lambda Function URLs, but the data doesn't match any of those services' events",
];

/// Beginnings of serde's messages whose rest comes from the type, not the event (a field's name,
/// an enum's, a length and what the type expected).
const TYPE_MESSAGES: &[&str] = &[
    "missing field `",
    "duplicate field `",
    "data did not match any variant of untagged enum ",
    "no variant of enum ",
];

/// What is said instead of a message that may quote the event.
pub const LEFT_OUT: &str =
    "invalid value (the message of its type's deserializer is left out: it may quote the value)";

/// serde's message without the value it quotes: `invalid type: string "…", expected a string`
/// becomes `invalid type (the value is left out), expected a string`; so for `invalid value`,
/// `unknown variant` and `unknown field` (whose names come from the event). serde_json's syntax errors and serde's
/// messages that name only the type's fields (`missing field`, `invalid length`, …) are kept. Any
/// other message is a `Deserialize` implementation's own (chrono's `value is not a legal
/// timestamp: 4111…`, uuid's, `aws_lambda_events`' `The key '…' is not a known DynamoDB
/// prefix`), which may quote the value: it is left out, but for the base64 decoder's, which
/// are said without the byte they name (`not base64: a byte that is not a base64 symbol at
/// offset 0`). serde_json's position (`at line 1 column 33`) is kept.
pub fn without_values(message: &str) -> String {
    let (text, position) = without_position(message);
    let mut out = if FIXED_MESSAGES.contains(&text)
        || TYPE_MESSAGES.iter().any(|prefix| text.starts_with(prefix))
        || is_invalid_length(text)
    {
        text.to_owned()
    } else {
        quoting_nothing(text)
            .or_else(|| base64_reason(text))
            .unwrap_or_else(|| LEFT_OUT.to_owned())
    };
    out.push_str(position);
    out
}

/// `message` without the value it quotes when it is one of serde's messages that quote one
/// (`invalid type: integer `4111…`, expected a string` becomes `invalid type (the value is left
/// out), expected a string`), else as it is: for an error that may or may not come from serde
/// (a runtime's), whose other messages say their cause and quote nothing of the input.
///
/// ```
/// use powertools_core::serde_message::without_quoted_values;
///
/// assert_eq!(
///     without_quoted_values("invalid type: integer `4111`, expected a string at line 1 column 9"),
///     "invalid type (the value is left out), expected a string at line 1 column 9"
/// );
/// assert_eq!(without_quoted_values("connection refused"), "connection refused");
/// ```
pub fn without_quoted_values(message: &str) -> std::borrow::Cow<'_, str> {
    let (text, position) = without_position(message);
    match quoting_nothing(text) {
        Some(mut cleared) => {
            cleared.push_str(position);
            std::borrow::Cow::Owned(cleared)
        }
        None => std::borrow::Cow::Borrowed(message),
    }
}

/// What is said instead of the message of a `Serialize` implementation's own.
pub const SERIALIZE_LEFT_OUT: &str =
    "its Serialize implementation refused it (the message is left out: it may quote the value)";

/// Why a value did not serialize, from serde_json's message, without what it may quote: serde_json's
/// own reasons (`key must be a string`, `float key must be finite …`) are kept, and the message
/// of a `Serialize` implementation's own (`ser::Error::custom`, which may quote the value: a
/// card number) is [`SERIALIZE_LEFT_OUT`].
///
/// ```
/// use powertools_core::serde_message::{SERIALIZE_LEFT_OUT, serialize_reason};
///
/// assert_eq!(serialize_reason("key must be a string"), "key must be a string");
/// assert_eq!(serialize_reason("cannot serialize 4111 1111 1111 1111"), SERIALIZE_LEFT_OUT);
/// ```
pub fn serialize_reason(message: &str) -> &str {
    if FIXED_MESSAGES.contains(&message) {
        message
    } else {
        SERIALIZE_LEFT_OUT
    }
}

/// serde's messages that quote the event, without what they quote; `None` for any other.
fn quoting_nothing(text: &str) -> Option<String> {
    for (prefix, kind) in [
        ("invalid type: ", "invalid type (the value is left out)"),
        ("invalid value: ", "invalid value (the value is left out)"),
        (
            "unknown variant `",
            "unknown variant (its name is left out)",
        ),
        ("unknown field `", "unknown field (its name is left out)"),
    ] {
        if text.starts_with(prefix) {
            // The name or value comes first, then what the type expected: the last
            // ", expected " is serde's, whatever the event's text holds.
            let expectation = [", there are no variants", ", there are no fields"]
                .into_iter()
                .find(|ending| text.ends_with(ending))
                .map(|ending| text.len() - ending.len())
                .or_else(|| text.rfind(", expected "));
            return Some(match expectation {
                Some(at) => format!("{kind}{}", &text[at..]),
                None => kind.to_owned(),
            });
        }
    }
    None
}

/// The base64 decoder's messages (the `base64` crate's, which `aws_lambda_events` hands on for
/// Kinesis data and base64 fields), in words that leave out the byte they name: exactly their
/// shape, or `None`.
fn base64_reason(text: &str) -> Option<String> {
    fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }
    // `Invalid symbol 33, offset 0.`: a byte, then where.
    let symbol = |rest: &str| {
        let (byte, offset) = rest.strip_suffix('.')?.split_once(", offset ")?;
        number::<u8>(byte)?;
        number::<usize>(offset)
    };
    if let Some(offset) = text.strip_prefix("Invalid symbol ").and_then(symbol) {
        return Some(format!(
            "not base64: a byte that is not a base64 symbol at offset {offset}"
        ));
    }
    if let Some(offset) = text.strip_prefix("Invalid last symbol ").and_then(symbol) {
        return Some(format!(
            "not base64: its last symbol, at offset {offset}, has bits set past the data's end"
        ));
    }
    if let Some(length) = text
        .strip_prefix("Invalid input length: ")
        .and_then(number::<usize>)
    {
        return Some(format!(
            "not base64: {length} symbols, a length base64 cannot have"
        ));
    }
    (text == "Invalid padding").then(|| "not base64: its padding is wrong".to_owned())
}

/// serde's `invalid length 2, expected …`: a number, then what the type expected.
fn is_invalid_length(text: &str) -> bool {
    text.strip_prefix("invalid length ")
        .and_then(|rest| rest.split_once(", expected "))
        .is_some_and(|(length, _)| {
            !length.is_empty() && length.bytes().all(|byte| byte.is_ascii_digit())
        })
}

/// `message` without serde_json's ` at line L column C`, and that position.
fn without_position(message: &str) -> (&str, &str) {
    // Without let-chains: this crate builds with Rust 1.85.
    let Some(at) = message.rfind(" at line ") else {
        return (message, "");
    };
    match message[at + " at line ".len()..].split_once(" column ") {
        Some((line, column))
            if !line.is_empty()
                && !column.is_empty()
                && line
                    .bytes()
                    .chain(column.bytes())
                    .all(|byte| byte.is_ascii_digit()) =>
        {
            (&message[..at], &message[at..])
        }
        _ => (message, ""),
    }
}

use std::fmt::Write as _;

use serde_path_to_error::{Path, Segment};

/// The longest map key or variant name written into a path; a longer one is `<key>` (a key comes
/// from the input, and a hostile one can be megabytes).
pub const MAX_SEGMENT_CHARS: usize = 64;
/// The longest key with digits that a path shows (`address2`); a longer one is `<key>`.
const MAX_NAME_WITH_DIGITS: usize = 12;
/// The longest path written; a longer one keeps its end, where the input went wrong.
pub const MAX_PATH_BYTES: usize = 256;

/// The field names of AWS's events (as `aws_lambda_events` reads them) longer than
/// [`MAX_NAME_WITH_DIGITS`] with digits, which [`reads_as_a_name`] would otherwise take for tokens
/// (found by an attack through the emulator: `isBase64Encoded` was written `<key>`).
const AWS_NAMES_WITH_DIGITS: &[&str] = &[
    "ec2-instance-id",
    "ec2RoleDelivery",
    "isBase64Encoded",
    "listObjectsV2Context",
    "md5OfMessageAttributes",
    "s3SchemaVersion",
    "x509CertificatePem",
    "x509SanNameCn",
    "x509SubjectCn",
];

/// Whether `key` reads as a field's name (`order_id`, `x-request-id`, `line2`), which a path may
/// show: not a token's shape, long with digits among its letters (`sk_live_4eC39Hq…`,
/// `AKIAIOSFODNN7EXAMPLE`: a review found them written).
fn reads_as_a_name(key: &str) -> bool {
    if AWS_NAMES_WITH_DIGITS.contains(&key) {
        return true;
    }
    let digits = key.bytes().any(|byte| byte.is_ascii_digit());
    key.len() <= MAX_SEGMENT_CHARS
        && (!digits || key.len() <= MAX_NAME_WITH_DIGITS)
        && key
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// `path` as `serde_path_to_error` writes it (`Records[0].body`), the whole cut at
/// [`MAX_PATH_BYTES`] from its end, where a segment begins; empty at the root. Without its last
/// key when `without_last_key`. A key or variant is written when it reads as a field's name (up
/// to [`MAX_SEGMENT_CHARS`] ASCII letters, digits, `_` and `-`, not starting with a digit or
/// `-`), else as `<key>`: a map's keys are data (a card number, an e-mail address, a token, which
/// a review found written so), and serde's path does not tell them from a struct's fields.
pub fn shown_path(path: &Path, without_last_key: bool) -> String {
    let mut segments: Vec<&Segment> = path.iter().collect();
    // A key serde_path_to_error does not know (the input ended or broke before one): the path
    // ends at the object it was reading, where `?` said nothing (found by an attack through the
    // emulator: an event of `{` was "at ?").
    while matches!(segments.last(), Some(Segment::Unknown)) {
        segments.pop();
    }
    if without_last_key && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                if reads_as_a_name(key) {
                    out.push_str(key);
                } else {
                    out.push_str("<key>");
                }
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    if out.len() > MAX_PATH_BYTES {
        let mut start = out.len() - MAX_PATH_BYTES;
        while !out.is_char_boundary(start) {
            start += 1;
        }
        // From the next segment's start: `[` or the character after `.`.
        if let Some(next) = out[start..].find(['[', '.']) {
            start += next + usize::from(out[start + next..].starts_with('.'));
        }
        out = format!("…{}", &out[start..]);
    }
    out
}

#[cfg(test)]
mod tests {

    /// Map keys shaped like tokens are left out of a path; field names stay (found by a review:
    /// `api_keys.sk_live_4eC39HqLyjWDarjtT1zdp7dc.limit` was written).
    #[test]
    fn a_path_shows_field_names_and_leaves_out_token_shaped_keys() {
        type Keys = std::collections::HashMap<
            String,
            std::collections::HashMap<String, std::collections::HashMap<String, u32>>,
        >;
        let shown = |text: &str| {
            let deserializer = &mut serde_json::Deserializer::from_str(text);
            let error = serde_path_to_error::deserialize::<_, Keys>(deserializer).unwrap_err();
            shown_path(error.path(), false)
        };
        assert_eq!(
            shown(r#"{"api_keys":{"sk_live_4eC39HqLyjWDarjtT1zdp7dc":{"limit":"x"}}}"#),
            "api_keys.<key>.limit"
        );
        assert_eq!(
            shown(r#"{"keys":{"AKIAIOSFODNN7EXAMPLE":{"line2":"x"}}}"#),
            "keys.<key>.line2"
        );
        assert_eq!(
            shown(r#"{"tags":{"x-request-id":{"limit":"x"}}}"#),
            "tags.x-request-id.limit"
        );
        assert_eq!(
            shown(r#"{"cards":{"4111111111111111":{"a":"x"}}}"#),
            "cards.<key>.a"
        );
        // The event fields of AWS's own with digits in a long name are names (found by an
        // attack through the emulator: `isBase64Encoded` was written `<key>`).
        assert_eq!(
            shown(r#"{"isBase64Encoded":{"s3SchemaVersion":{"a":"x"}}}"#),
            "isBase64Encoded.s3SchemaVersion.a"
        );
        assert_eq!(
            shown(r#"{"ec2RoleDelivery":{"md5OfMessageAttributes":{"a":"x"}}}"#),
            "ec2RoleDelivery.md5OfMessageAttributes.a"
        );
        // Where serde_path_to_error does not know the key (the input ended, or broke, before
        // one), the path ends at the object it was reading: `?` said nothing (found by the same
        // attack: an event of `{` was "at ?").
        assert_eq!(shown("{"), "");
        assert_eq!(shown(r#"{"orders":{"#), "orders");
        assert_eq!(shown(r#"{"orders":{"a":{"b":1,"#), "orders.a");
    }
    use super::*;

    #[test]
    fn values_and_names_from_the_input_are_left_out_and_what_was_expected_stays() {
        for (message, expected) in [
            (
                "invalid type: string \"4111\", expected u32 at line 1 column 9",
                "invalid type (the value is left out), expected u32 at line 1 column 9",
            ),
            (
                "invalid value: integer `4111`, expected u8",
                "invalid value (the value is left out), expected u8",
            ),
            (
                "unknown field `x, expected 4111`, there are no fields at line 1 column 43",
                "unknown field (its name is left out), there are no fields at line 1 column 43",
            ),
            (
                "unknown variant `4111, expected 4111`, expected `a` or `b`",
                "unknown variant (its name is left out), expected `a` or `b`",
            ),
            // serde_derive's own, for a flattened struct that denies unknown fields.
            (
                "unknown field `4111`",
                "unknown field (its name is left out)",
            ),
            (
                "value is not a legal timestamp: 4111 at line 1 column 24",
                &format!("{LEFT_OUT} at line 1 column 24"),
            ),
            ("The key '4111' is not a known DynamoDB prefix", LEFT_OUT),
            ("invalid length 4111SECRET", LEFT_OUT),
            (
                FIXED_MESSAGES[FIXED_MESSAGES.len() - 1],
                FIXED_MESSAGES[FIXED_MESSAGES.len() - 1],
            ),
            // The base64 decoder's (`aws_lambda_events`' Kinesis data, an HTTP body), which
            // say what is wrong and where, without the byte (found by a new function written
            // from the docs: "invalid value", where the decoder said why).
            (
                "Invalid symbol 33, offset 0. at line 1 column 90",
                "not base64: a byte that is not a base64 symbol at offset 0 at line 1 column 90",
            ),
            (
                "Invalid last symbol 66, offset 3.",
                "not base64: its last symbol, at offset 3, has bits set past the data's end",
            ),
            (
                "Invalid input length: 5",
                "not base64: 5 symbols, a length base64 cannot have",
            ),
            ("Invalid padding", "not base64: its padding is wrong"),
            // A message of that shape with more in it is not the decoder's.
            ("Invalid symbol 4111, offset 0.", LEFT_OUT),
            ("Invalid symbol 33, offset 0: 4111", LEFT_OUT),
            ("Invalid input length: 4111SECRET", LEFT_OUT),
            // What quotes nothing from the input is kept.
            (
                "missing field `id` at line 1 column 2",
                "missing field `id` at line 1 column 2",
            ),
            (
                "invalid length 2, expected a tuple of size 3",
                "invalid length 2, expected a tuple of size 3",
            ),
            (
                "EOF while parsing a value at line 1 column 6",
                "EOF while parsing a value at line 1 column 6",
            ),
            (
                "recursion limit exceeded at line 1 column 129",
                "recursion limit exceeded at line 1 column 129",
            ),
            (
                "data did not match any variant of untagged enum LambdaRequest",
                "data did not match any variant of untagged enum LambdaRequest",
            ),
        ] {
            assert_eq!(without_values(message), expected, "{message}");
        }
    }

    #[test]
    fn a_position_is_only_serde_json_s_own() {
        assert_eq!(
            without_position("x at line 1 column 2"),
            ("x", " at line 1 column 2")
        );
        assert_eq!(
            without_position("x at line one column 2"),
            ("x at line one column 2", "")
        );
        assert_eq!(
            without_position("x at line  column "),
            ("x at line  column ", "")
        );
    }
}

/// Where `value` holds a float JSON cannot hold (NaN, ±Infinity), which serde_json writes as
/// `null`, and which: its path as [`shown_path`] writes it (empty at the top) and the float
/// (`NaN`, `Infinity`, `-Infinity`); `None` when it holds none, or when its `Serialize` fails or panics
/// first (its serialization reports that). Walks `value` through serde once, writing nothing.
///
/// ```
/// use powertools_core::serde_message::non_finite_float;
///
/// #[derive(serde::Serialize)]
/// struct Reading { samples: Vec<f64> }
///
/// let reading = Reading { samples: vec![1.5, f64::NAN] };
/// assert_eq!(non_finite_float(&reading), Some(("samples[1]".to_owned(), "NaN".to_owned())));
/// assert_eq!(non_finite_float(&Reading { samples: vec![1.5] }), None);
/// // Through a map, its key as a path writes it: `<key>` when it is data (a card number).
/// let by_customer = std::collections::BTreeMap::from([
///     ("john_smith", vec![1.0, f64::INFINITY]),
///     ("4111111111111111", vec![f64::NEG_INFINITY]),
/// ]);
/// assert_eq!(
///     non_finite_float(&by_customer),
///     Some(("<key>[0]".to_owned(), "-Infinity".to_owned()))
/// );
/// let by_customer = std::collections::BTreeMap::from([("john_smith", vec![1.0, f64::INFINITY])]);
/// assert_eq!(
///     non_finite_float(&by_customer),
///     Some(("john_smith[1]".to_owned(), "Infinity".to_owned()))
/// );
/// ```
pub fn non_finite_float<T: serde::Serialize + ?Sized>(value: &T) -> Option<(String, String)> {
    let found = crate::failure::catch_quiet_panic(|| {
        serde_path_to_error::serialize(value, FindNonFinite).err()
    })
    .ok()
    .flatten()?;
    let float = found.inner().0.clone()?;
    Some((shown_path(found.path(), false), float))
}

/// A serializer that writes nothing and fails at the first float JSON cannot hold
/// ([`non_finite_float`]).
struct FindNonFinite;

/// [`FindNonFinite`]'s error: the float found, or `None` for a `Serialize`'s own error.
#[derive(Debug)]
struct NonFinite(Option<String>);

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("the value does not serialize"))
    }
}

impl std::error::Error for NonFinite {}

impl serde::ser::Error for NonFinite {
    fn custom<T: std::fmt::Display>(_message: T) -> Self {
        NonFinite(None)
    }
}

fn finite(value: f64) -> Result<(), NonFinite> {
    if value.is_finite() {
        Ok(())
    } else if value.is_nan() {
        Err(NonFinite(Some("NaN".to_owned())))
    } else if value > 0.0 {
        Err(NonFinite(Some("Infinity".to_owned())))
    } else {
        Err(NonFinite(Some("-Infinity".to_owned())))
    }
}

/// Serializer methods that accept their value and write nothing.
macro_rules! accepted {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, _value: $type) -> Result<(), NonFinite> { Ok(()) })*
    };
}

impl serde::Serializer for FindNonFinite {
    type Ok = ();
    type Error = NonFinite;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    accepted!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, value: f32) -> Result<(), NonFinite> {
        finite(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), NonFinite> {
        finite(value)
    }

    fn serialize_none(self) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<(), NonFinite> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, NonFinite> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, NonFinite> {
        Ok(self)
    }
}

/// The compound serializers of [`FindNonFinite`]: each element walked the same way.
macro_rules! walked {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl serde::ser::$trait for FindNonFinite {
            type Ok = ();
            type Error = NonFinite;

            fn $method<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
                value.serialize(FindNonFinite)
            }

            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

walked!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl serde::ser::SerializeMap for FindNonFinite {
    type Ok = ();
    type Error = NonFinite;

    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NonFinite> {
        // Walked, so that the path records it (found by a review: the path said `?`). serde_json
        // refuses a float key that is not finite (`float key must be finite`): a response
        // walked here has none.
        key.serialize(FindNonFinite)
    }

    fn serialize_value<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(FindNonFinite)
    }

    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

/// The struct serializers of [`FindNonFinite`]: each field walked the same way.
macro_rules! walked_fields {
    ($($trait:ident),* $(,)?) => {
        $(impl serde::ser::$trait for FindNonFinite {
            type Ok = ();
            type Error = NonFinite;

            fn serialize_field<T: serde::Serialize + ?Sized>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> Result<(), NonFinite> {
                value.serialize(FindNonFinite)
            }

            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

walked_fields!(SerializeStruct, SerializeStructVariant);
