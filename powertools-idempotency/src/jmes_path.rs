//! JMESPath key and validation expressions (the engine lives in `powertools-core`).

use serde::Serialize;
use serde_json::Value;

use crate::{Error, KeyExtractor};

/// Keys on (or validates against) what a JMESPath expression finds in the event's JSON.
///
/// For configuration-driven keys: the expression can come from a setting or an environment
/// variable. In code, prefer [`IdempotencyLayer::key_from`](crate::IdempotencyLayer::key_from),
/// which the compiler checks. The expression is compiled once, by [`JmesPath::new`].
///
/// Besides the standard JMESPath functions, the Powertools functions are available, as in
/// Powertools for Python and TypeScript (see [`powertools_core::jmespath::JmesPath`]):
/// `powertools_json(body).order_id` keys on a field of a JSON body whatever the client's
/// whitespace; `powertools_base64` and `powertools_base64_gzip` decode. Unlike Powertools for
/// Python, validation expressions get the Powertools functions too.
///
/// ```
/// use powertools_idempotency::{JmesPath, KeyExtractor};
/// use serde_json::json;
///
/// let key = JmesPath::new(r#"[headers."Idempotency-Key", powertools_json(body).customer_id]"#)?;
/// let event = json!({
///     "headers": {"Idempotency-Key": "k-1"},
///     "body": "{\"customer_id\": \"c-7\", \"items\": []}",
/// });
/// assert_eq!(key.extract(&event)?, Some(json!(["k-1", "c-7"])));
/// # Ok::<(), powertools_idempotency::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct JmesPath(powertools_core::jmespath::JmesPath);

impl JmesPath {
    /// Compiles `expression`.
    ///
    /// # Errors
    /// [`Error::Config`] when it is not valid JMESPath.
    pub fn new(expression: &str) -> Result<Self, Error> {
        powertools_core::jmespath::JmesPath::new(expression)
            .map(JmesPath)
            .map_err(|error| Error::Config(error.to_string()))
    }

    /// The expression, as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Evaluates the expression on `data`.
    ///
    /// # Errors
    /// [`Error::KeyExpression`] when evaluation fails: a function given the wrong type, text
    /// that is not JSON for `powertools_json`, invalid base64 or gzip.
    pub fn search<T: Serialize + ?Sized>(&self, data: &T) -> Result<Value, Error> {
        self.0.search(data).map_err(|error| match error {
            powertools_core::Error::JmesPathFailed { expression, reason } => {
                Error::KeyExpression { expression, reason }
            }
            other => Error::KeyExpression {
                expression: self.as_str().to_owned(),
                reason: other.to_string(),
            },
        })
    }
}

impl<T: Serialize> KeyExtractor<T> for JmesPath {
    fn extract(&self, event: &T) -> Result<Option<Value>, Error> {
        // `null` (nothing matched) is left to the engine's missing-key rule, like any other data.
        self.search(event).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::is_missing;

    #[test]
    fn a_path_into_a_json_body_keys_on_the_field() {
        let key = JmesPath::new("powertools_json(body).order_id").unwrap();
        let event = json!({"body": "{ \"total\": 3,\n  \"order_id\": \"o-1\" }"});
        assert_eq!(key.extract(&event).unwrap(), Some(json!("o-1")));
    }

    #[test]
    fn nothing_matched_counts_as_a_missing_key() {
        let key = JmesPath::new("[headers.\"Idempotency-Key\", body.order_id]").unwrap();
        let found = key.extract(&json!({"headers": {}})).unwrap().unwrap();
        assert!(is_missing(&found));
    }

    #[test]
    fn an_invalid_expression_is_a_configuration_error() {
        let error = JmesPath::new("body.[").unwrap_err();
        assert_eq!(error.error_type(), "IdempotencyConfigurationError");
        assert!(error.to_string().contains("body.["), "{error}");
    }

    #[test]
    fn a_failing_expression_is_a_key_expression_error() {
        let error = JmesPath::new("powertools_json(body)")
            .unwrap()
            .search(&json!({"body": "{not json"}))
            .unwrap_err();
        assert_eq!(error.error_type(), "IdempotencyKeyExpressionError");
        assert!(error.to_string().contains("invalid JSON"), "{error}");
    }
}
