//! JMESPath expressions over events, with the Powertools functions, compiled once and shared by
//! every utility that is configured with paths (idempotency keys, correlation ids).

use std::io::Read;
use std::sync::{Arc, LazyLock};

use ::jmespath::functions::{ArgumentType, CustomFunction, Function, Signature};
use ::jmespath::{Context, ErrorReason, Expression, JmespathError, Rcvar, Runtime, Variable};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::Error;

/// The standard JMESPath functions plus `powertools_json`, `powertools_base64` and
/// `powertools_base64_gzip`. Immutable once built, so one runtime serves every invocation.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    runtime.register_function("powertools_json", string_function(parse_json));
    runtime.register_function("powertools_base64", string_function(decode_base64));
    runtime.register_function(
        "powertools_base64_gzip",
        string_function(decode_base64_gzip),
    );
    runtime
});

/// A compiled JMESPath expression over an event's JSON.
///
/// For configuration-driven paths (a setting, an environment variable). Besides the standard
/// JMESPath functions, the Powertools functions are available, as in Powertools for Python and
/// TypeScript:
///
/// - `powertools_json(s)`: parses the JSON text `s`, so that a path into an API Gateway `body`
///   does not change with the client's whitespace: `powertools_json(body).order_id`;
/// - `powertools_base64(s)`: decodes standard base64 to UTF-8 text;
/// - `powertools_base64_gzip(s)`: decodes base64, then gunzips, to UTF-8 text (CloudWatch Logs
///   subscriptions): `powertools_json(powertools_base64_gzip(data)).logGroup`.
///
/// Clones share the compiled expression.
///
/// ```
/// use powertools_core::jmespath::JmesPath;
/// use serde_json::json;
///
/// let path = JmesPath::new(r#"[headers."Idempotency-Key", powertools_json(body).customer_id]"#)?;
/// let event = json!({
///     "headers": {"Idempotency-Key": "k-1"},
///     "body": "{\"customer_id\": \"c-7\", \"items\": []}",
/// });
/// assert_eq!(path.search(&event)?, json!(["k-1", "c-7"]));
/// # Ok::<(), powertools_core::Error>(())
/// ```
#[derive(Clone)]
pub struct JmesPath {
    expression: Arc<Expression<'static>>,
}

impl JmesPath {
    /// Compiles `expression`.
    ///
    /// # Errors
    /// [`Error::InvalidJmesPath`] when it is not valid JMESPath.
    pub fn new(expression: &str) -> Result<Self, Error> {
        let compiled = RUNTIME
            .compile(expression)
            .map_err(|error| Error::InvalidJmesPath {
                expression: expression.to_owned(),
                reason: error.reason.to_string(),
            })?;
        Ok(Self {
            expression: Arc::new(compiled),
        })
    }

    /// The expression, as written.
    pub fn as_str(&self) -> &str {
        self.expression.as_str()
    }

    /// Evaluates the expression on `data`.
    ///
    /// # Errors
    /// [`Error::JmesPathFailed`] when evaluation fails: a function given the wrong type, text
    /// that is not JSON for `powertools_json`, invalid base64 or gzip, data that does not
    /// serialize.
    pub fn search<T: Serialize + ?Sized>(&self, data: &T) -> Result<Value, Error> {
        let found = self
            .expression
            .search(data)
            .map_err(|error| self.failed(error.reason.to_string()))?;
        serde_json::to_value(&*found).map_err(|error| self.failed(error.to_string()))
    }

    fn failed(&self, reason: String) -> Error {
        Error::JmesPathFailed {
            expression: self.as_str().to_owned(),
            reason,
        }
    }
}

impl std::fmt::Debug for JmesPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JmesPath").field(&self.as_str()).finish()
    }
}

fn string_function(decode: fn(&str) -> Result<Variable, String>) -> Box<dyn Function> {
    Box::new(CustomFunction::new(
        Signature::new(vec![ArgumentType::String], None),
        Box::new(move |args: &[Rcvar], ctx: &mut Context<'_>| {
            // The signature has checked that there is exactly one string argument.
            let text = args
                .first()
                .and_then(|arg| arg.as_string())
                .ok_or_else(|| {
                    JmespathError::from_ctx(ctx, ErrorReason::Parse("expected a string".to_owned()))
                })?;
            decode(text)
                .map(Rcvar::new)
                .map_err(|message| JmespathError::from_ctx(ctx, ErrorReason::Parse(message)))
        }),
    ))
}

fn parse_json(text: &str) -> Result<Variable, String> {
    Variable::from_json(text).map_err(|error| format!("powertools_json: invalid JSON: {error}"))
}

fn decode_base64(text: &str) -> Result<Variable, String> {
    let bytes = base64_bytes("powertools_base64", text)?;
    utf8("powertools_base64", bytes)
}

fn decode_base64_gzip(text: &str) -> Result<Variable, String> {
    let compressed = base64_bytes("powertools_base64_gzip", text)?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut bytes)
        .map_err(|error| format!("powertools_base64_gzip: invalid gzip data: {error}"))?;
    utf8("powertools_base64_gzip", bytes)
}

fn base64_bytes(function: &str, text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| format!("{function}: invalid base64: {error}"))
}

fn utf8(function: &str, bytes: Vec<u8>) -> Result<Variable, String> {
    String::from_utf8(bytes)
        .map(Variable::String)
        .map_err(|error| format!("{function}: the decoded bytes are not UTF-8: {error}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn gzip_base64(text: &str) -> String {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
    }

    #[test]
    fn a_path_into_a_json_body_ignores_the_clients_whitespace() {
        let key = JmesPath::new("powertools_json(body).order_id").unwrap();
        let compact = json!({"body": r#"{"order_id":"o-1","total":3}"#});
        let spaced = json!({"body": "{ \"total\": 3,\n  \"order_id\": \"o-1\" }"});
        assert_eq!(key.search(&compact).unwrap(), json!("o-1"));
        assert_eq!(key.search(&spaced).unwrap(), key.search(&compact).unwrap());
    }

    #[test]
    fn base64_and_base64_gzip_decode_to_text() {
        let event = json!({
            "plain": base64::engine::general_purpose::STANDARD.encode(r#"{"id": 7}"#),
            "zipped": gzip_base64(r#"{"logGroup": "/aws/lambda/orders"}"#),
        });
        let plain = JmesPath::new("powertools_json(powertools_base64(plain)).id").unwrap();
        let zipped =
            JmesPath::new("powertools_json(powertools_base64_gzip(zipped)).logGroup").unwrap();
        assert_eq!(plain.search(&event).unwrap(), json!(7));
        assert_eq!(zipped.search(&event).unwrap(), json!("/aws/lambda/orders"));
    }

    #[test]
    fn json_types_are_kept() {
        let key = JmesPath::new("[amount, paid, note, items]").unwrap();
        let event = json!({"amount": 12.5, "paid": false, "note": null, "items": [0, "x"]});
        assert_eq!(
            key.search(&event).unwrap(),
            json!([12.5, false, null, [0, "x"]])
        );
    }

    #[test]
    fn standard_functions_are_available() {
        let key = JmesPath::new("join('-', sort(keys(@)))").unwrap();
        assert_eq!(key.search(&json!({"b": 1, "a": 2})).unwrap(), json!("a-b"));
    }

    #[test]
    fn typed_events_are_searched_through_serde() {
        #[derive(Serialize)]
        struct Order {
            order_id: String,
            quantity: u32,
        }
        let key = JmesPath::new("order_id").unwrap();
        let order = Order {
            order_id: "o-9".to_owned(),
            quantity: 2,
        };
        assert_eq!(key.search(&order).unwrap(), json!("o-9"));
    }

    #[test]
    fn nothing_matched_is_null() {
        let key = JmesPath::new("[headers.\"Idempotency-Key\", body.order_id]").unwrap();
        assert_eq!(
            key.search(&json!({"headers": {}})).unwrap(),
            json!([null, null])
        );
        let single = JmesPath::new("requestContext.requestId").unwrap();
        assert_eq!(single.search(&json!({})).unwrap(), Value::Null);
    }

    #[test]
    fn an_invalid_expression_is_refused_when_compiled() {
        let error = JmesPath::new("body.[").unwrap_err();
        assert_eq!(error.error_type(), "InvalidJmesPathExpression");
        assert!(error.to_string().contains("body.["), "{error}");
    }

    #[test]
    fn bad_data_for_a_powertools_function_is_a_typed_error() {
        let cases = [
            (
                "powertools_json(body)",
                json!({"body": "{not json"}),
                "invalid JSON",
            ),
            ("powertools_json(body)", json!({"body": 42}), "string"),
            (
                "powertools_base64(data)",
                json!({"data": "***"}),
                "invalid base64",
            ),
            (
                "powertools_base64_gzip(data)",
                json!({"data": base64::engine::general_purpose::STANDARD.encode("plain text")}),
                "invalid gzip",
            ),
            (
                "powertools_base64(data)",
                json!({"data": base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])}),
                "not UTF-8",
            ),
        ];
        for (expression, event, expected) in cases {
            let error = JmesPath::new(expression)
                .unwrap()
                .search(&event)
                .unwrap_err();
            assert_eq!(error.error_type(), "JmesPathExpressionFailed");
            let message = error.to_string();
            assert!(message.contains(expected), "{expression}: {message}");
            assert!(message.contains(expression), "{message}");
        }
    }

    #[test]
    fn clones_share_one_compiled_expression() {
        let key = JmesPath::new("a").unwrap();
        let copy = key.clone();
        assert!(Arc::ptr_eq(&key.expression, &copy.expression));
        assert_eq!(format!("{copy:?}"), r#"JmesPath("a")"#);
    }
}
