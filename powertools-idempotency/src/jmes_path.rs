//! JMESPath key and validation expressions (the engine lives in `powertools-core`).

use powertools_core::jmespath::HeaderCaseCheck;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, KeyExtractor};
#[cfg(doc)]
use powertools_core::jmespath::DEFAULT_MAX_DECOMPRESSED_SIZE;

/// Keys on (or validates against) what a JMESPath expression finds in the event's JSON.
///
/// For configuration-driven keys: the expression can come from a setting or an environment
/// variable. In code, prefer [`IdempotencyLayer::key_from`](crate::IdempotencyLayer::key_from),
/// which the compiler checks. The expression is compiled once, by [`JmesPath::new`].
///
/// Besides the standard JMESPath functions, the Powertools functions are available, as in
/// Powertools for Python and TypeScript (see [`powertools_core::jmespath::JmesPath`]):
/// `powertools_json(body).order_id` keys on a field of a JSON body whatever the client's
/// whitespace; `powertools_base64` and `powertools_base64_gzip` decode. Validation expressions
/// get them too, as in Powertools for Python 3.
///
/// What `powertools_base64_gzip` may decompress for one event is limited, to
/// [`DEFAULT_MAX_DECOMPRESSED_SIZE`] unless
/// [`with_max_decompressed_size`](Self::with_max_decompressed_size) says otherwise, so that a
/// gzip bomb in an event fails the invocation with [`Error::KeyExpression`] instead of
/// exhausting the function's memory. What an expression builds from what was decompressed is
/// bounded as [`powertools_core::jmespath::JmesPath`] says: a projection builds its values for
/// each element it projects over, so an expression that builds many values per element
/// (`powertools_json(powertools_base64_gzip(data))[*].{a: @, b: @, …}`) over an event of a few
/// KB that decompresses to hundreds of thousands of elements takes hundreds of MB before its
/// result's bound applies (a new user measured 414 MB for eight per element, over 499,000).
/// Keys from configuration: keep their projections to the parts of the event they need.
///
/// Header names are lowercase in a typed API Gateway or ALB event (as
/// [`IdempotencyLayer::key`](crate::IdempotencyLayer::key) says), as in this one:
///
/// ```
/// use powertools_idempotency::{JmesPath, KeyExtractor};
/// use serde_json::json;
///
/// let key = JmesPath::new(r#"[headers."idempotency-key", powertools_json(body).customer_id]"#)?;
/// let event = json!({
///     "headers": {"idempotency-key": "k-1"},
///     "body": "{\"customer_id\": \"c-7\", \"items\": []}",
/// });
/// assert_eq!(key.extract(&event)?, Some(json!(["k-1", "c-7"])));
/// # Ok::<(), powertools_idempotency::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct JmesPath {
    path: powertools_core::jmespath::JmesPath,
    /// The same expression with its headers in lowercase, when it names one with capitals.
    in_lowercase: Option<std::sync::Arc<HeaderCaseCheck>>,
}

impl JmesPath {
    /// Compiles `expression`, with the default decompression limit,
    /// [`DEFAULT_MAX_DECOMPRESSED_SIZE`].
    ///
    /// # Errors
    /// [`Error::Config`] when it is not valid JMESPath.
    pub fn new(expression: &str) -> Result<Self, Error> {
        powertools_core::jmespath::JmesPath::new(expression)
            .map(JmesPath::of)
            .map_err(|error| Error::Config(error.to_string()))
    }

    fn of(path: powertools_core::jmespath::JmesPath) -> Self {
        let in_lowercase = HeaderCaseCheck::of(&path).map(std::sync::Arc::new);
        JmesPath { path, in_lowercase }
    }

    /// Limits what `powertools_base64_gzip` may decompress for one event to `bytes` (in total,
    /// when the expression calls it more than once).
    ///
    /// Past the limit, decompression stops and the key extraction fails with
    /// [`Error::KeyExpression`], naming the limit: the handler does not run. The default is
    /// [`DEFAULT_MAX_DECOMPRESSED_SIZE`] (10 MiB); raise it for payloads that legitimately
    /// decompress to more, lower it to bound the memory a key costs.
    ///
    /// ```
    /// use powertools_idempotency::{JmesPath, KeyExtractor};
    /// use serde_json::json;
    ///
    /// let key = JmesPath::new("powertools_json(powertools_base64_gzip(body)).order_id")?
    ///     .with_max_decompressed_size(16);
    /// assert_eq!(key.max_decompressed_size(), 16);
    ///
    /// // `{"order_id": "o-1"}`, 19 bytes once gunzipped.
    /// let event = json!({"body": "H4sIAAAAAAACA6tWyi9KSS2Kz0xRslJQytc1VKoFAO44qsITAAAA"});
    /// let error = key.extract(&event).unwrap_err();
    /// assert_eq!(error.error_type(), "IdempotencyKeyExpressionError");
    /// assert!(error.to_string().contains("limit of 16 bytes"));
    /// # Ok::<(), powertools_idempotency::Error>(())
    /// ```
    #[must_use]
    pub fn with_max_decompressed_size(self, bytes: usize) -> Self {
        JmesPath::of(self.path.with_max_decompressed_size(bytes))
    }

    /// The most `powertools_base64_gzip` may decompress for one event, in bytes.
    pub fn max_decompressed_size(&self) -> usize {
        self.path.max_decompressed_size()
    }

    /// The expression, as written.
    pub fn as_str(&self) -> &str {
        self.path.as_str()
    }

    /// Evaluates the expression on `data`, as serde_json writes it, with the elements of every
    /// hash set sorted (as key data's are: two copies of one event key alike).
    ///
    /// # Errors
    /// - [`Error::KeyExpression`] when evaluation fails: a function given the wrong type, text
    ///   that is not JSON for `powertools_json`, invalid base64 or gzip, more decompressed data
    ///   than [`max_decompressed_size`](Self::max_decompressed_size);
    /// - [`Error::Serialization`] when `data` cannot be written as JSON: an integer beyond 64
    ///   bits (`u128`, `i128`) anywhere in it (unless serde_json's `arbitrary_precision` is on
    ///   in the build, where it is a number), or a `Serialize` that fails.
    pub fn search<T: Serialize + ?Sized>(&self, data: &T) -> Result<Value, Error> {
        // Searched as JSON written here, not as the `jmespath` crate serializes the data: that
        // kept each hash set in its own order (five copies of one event ran five times), and
        // refused any 128-bit integer and any map not keyed by strings (found by an attack from
        // the docs).
        let data = crate::key::sorted_json(data, "event")?;
        self.search_json(&self.path, data)
    }

    /// `path`'s search of `data`, its error this crate's.
    fn search_json(
        &self,
        path: &powertools_core::jmespath::JmesPath,
        data: Value,
    ) -> Result<Value, Error> {
        path.search_value(data).map_err(|error| match error {
            powertools_core::Error::JmesPathFailed { expression, reason } => {
                Error::KeyExpression { expression, reason }
            }
            powertools_core::Error::DecompressedSizeExceeded {
                expression, limit, ..
            } => Error::KeyExpression {
                expression,
                reason: format!(
                    "powertools_base64_gzip would decompress more than the limit of {limit} \
                     bytes per event (raise it with `JmesPath::with_max_decompressed_size`)"
                ),
            },
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
        let found = self.search(event)?;
        if let Some(lowercase) = &self.in_lowercase {
            self.check_header_case(lowercase, event, &found);
        }
        Ok(Some(found))
    }

    fn warns_when_validation_finds_nothing(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let expression = self.path.as_str();
        match self.path.header_in_another_case() {
            Some((field, name)) => format!(
                "the JMESPath expression `{expression}` (header names of typed API Gateway and \
                 ALB events are lowercase, as HTTP APIs send them: `{field}.\"{}\"`)",
                name.to_ascii_lowercase()
            ),
            None => format!("the JMESPath expression `{expression}`"),
        }
    }
}

impl JmesPath {
    /// Says, once, that the expression found part of what it asks for and missed a header it
    /// names with capitals, which the event has in lowercase (a typed API Gateway or ALB
    /// event's). A multi-select key then reads that header as `null` in every event (`[null,
    /// "o-80"]`), so requests with different idempotency keys for one order shared one record,
    /// without a word (found by a user writing a function from the docs; Powertools for Python
    /// keys the same way on such an event). The data is left as it is: treated as missing, a
    /// key would turn idempotency off (a review). A result that found nothing at all is not
    /// checked: the missing key's warning and `KeyMissing`, and validation's warning, give the
    /// lowercase path already.
    fn check_header_case<T: Serialize>(
        &self,
        lowercase: &HeaderCaseCheck,
        event: &T,
        found: &Value,
    ) {
        let partly_found = match found {
            Value::Array(items) => partly_null(items.iter()),
            Value::Object(members) => partly_null(members.values()),
            _ => false,
        };
        if !partly_found || !lowercase.try_again() {
            return;
        }
        let in_lowercase = crate::key::sorted_json(event, "event")
            .and_then(|data| self.search_json(lowercase.lowercase(), data));
        if in_lowercase.is_ok_and(|in_lowercase| finds_more(found, &in_lowercase))
            && lowercase.first_to_say()
        {
            tracing::warn!(
                expression = self.as_str(),
                "a JMESPath expression found nothing at a header it names with capitals, which \
                 this event has in lowercase: `{}` finds it. Header names of typed API Gateway \
                 and ALB events are lowercase, as HTTP APIs send them; as written, the \
                 expression reads that header as null in every such event, so events that \
                 differ only in it are not told apart (said once)",
                lowercase.lowercase().as_str()
            );
        }
    }
}

/// Whether some of `items` are `null` and some are not.
fn partly_null<'a>(mut items: impl Iterator<Item = &'a Value> + Clone) -> bool {
    items.clone().any(Value::is_null) && items.any(|item| !item.is_null())
}

/// Whether `lowercase` (the search with the headers in lowercase) found something where `found`
/// found `null`, as an item of a multi-select list or hash, that `found` does not hold already:
/// an expression that names the header in both cases (`[headers."Idempotency-Key",
/// headers."idempotency-key", …]`) tells events apart by it (a review found it warned).
fn finds_more(found: &Value, lowercase: &Value) -> bool {
    let items: Vec<(&Value, &Value)> = match (found, lowercase) {
        (Value::Array(found), Value::Array(lowercase)) => found.iter().zip(lowercase).collect(),
        (Value::Object(found), Value::Object(lowercase)) => found
            .iter()
            .filter_map(|(name, found)| Some((found, lowercase.get(name)?)))
            .collect(),
        _ => return false,
    };
    items.iter().any(|(found_item, lowercase_item)| {
        found_item.is_null()
            && !lowercase_item.is_null()
            && !items.iter().any(|(other, _)| other == lowercase_item)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use lambda_runtime::{LambdaEvent, service_fn};
    use powertools_core::jmespath::DEFAULT_MAX_DECOMPRESSED_SIZE;
    use powertools_core::testing::TestContext;
    use serde_json::json;
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{Idempotency, IdempotencyLayer, InMemoryStore, is_missing};

    /// `{"order_id": "o-1"}` (19 bytes), gzipped and base64-encoded.
    const ORDER_GZIP_BASE64: &str = "H4sIAAAAAAACA6tWyi9KSS2Kz0xRslJQytc1VKoFAO44qsITAAAA";
    const ORDER_KEY: &str = "powertools_json(powertools_base64_gzip(body)).order_id";

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

    /// A header named in another case than lowercase never matches a typed API Gateway or ALB
    /// event (its `HeaderMap` writes names in lowercase, as HTTP APIs send them), and with the
    /// default missing-key rule every request then runs without idempotency: the missing key's
    /// warning and error say so (a new function written from the docs ran twice).
    #[tokio::test]
    async fn a_missing_header_key_in_another_case_than_lowercase_says_headers_are_lowercase() {
        let mixed = JmesPath::new(r#"[headers."Idempotency-Key", body]"#).unwrap();
        let layer = IdempotencyLayer::new(
            Idempotency::builder(InMemoryStore::new())
                .raise_on_missing_key(true)
                .build()
                .unwrap(),
        );
        let service = ServiceBuilder::new()
            .layer(layer.key(mixed))
            .service(service_fn(|_: LambdaEvent<Value>| async {
                Ok::<_, lambda_runtime::Error>(json!("ran"))
            }));
        // As an HTTP API sends it, and as a typed event writes it back.
        let event = json!({"headers": {"idempotency-key": "k-1"}, "body": null});
        let error = service
            .oneshot(TestContext::new().event(event))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("lowercase"), "{message}");
        assert!(
            message.contains(r#"headers."idempotency-key""#),
            "{message}"
        );
        for lowercase in [
            r#"headers."idempotency-key""#,
            "headers.idempotency_key",
            "powertools_json(body).Order_Id",
            r#"multiValueHeaders."x-request-id""#,
        ] {
            let path = JmesPath::new(lowercase).unwrap();
            let described = KeyExtractor::<Value>::describe(&path);
            assert!(!described.contains("lowercase"), "{lowercase}: {described}");
        }
        for nested in [
            "body.headers.Foo",
            "myheaders.Foo",
            "powertools_json(body).headers.X",
            "body | headers.X",
            "body.\"headers\".X",
        ] {
            let path = JmesPath::new(nested).unwrap();
            let described = KeyExtractor::<Value>::describe(&path);
            assert!(!described.contains("lowercase"), "{nested}: {described}");
        }
        for mixed in [
            "headers.Authorization",
            "[body.id, headers.X]",
            "body.id || headers.X",
            r#"multiValueHeaders."X-Request-Id"[0]"#,
            r#"requestContext.http.method || headers."X-Key""#,
        ] {
            let path = JmesPath::new(mixed).unwrap();
            let described = KeyExtractor::<Value>::describe(&path);
            assert!(described.contains("lowercase"), "{mixed}: {described}");
        }
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

    #[test]
    fn the_default_decompression_limit_is_cores() {
        let key = JmesPath::new(ORDER_KEY).unwrap();
        assert_eq!(key.max_decompressed_size(), DEFAULT_MAX_DECOMPRESSED_SIZE);
        let event = json!({ "body": ORDER_GZIP_BASE64 });
        assert_eq!(key.extract(&event).unwrap(), Some(json!("o-1")));
    }

    #[test]
    fn too_much_decompressed_data_is_a_key_expression_error_naming_the_limit() {
        let event = json!({ "body": ORDER_GZIP_BASE64 });
        let at_limit = JmesPath::new(ORDER_KEY)
            .unwrap()
            .with_max_decompressed_size(19);
        assert_eq!(at_limit.extract(&event).unwrap(), Some(json!("o-1")));

        let below = at_limit.with_max_decompressed_size(18);
        assert_eq!(below.max_decompressed_size(), 18);
        let error = below.extract(&event).unwrap_err();
        assert_eq!(error.error_type(), "IdempotencyKeyExpressionError");
        let Error::KeyExpression { expression, reason } = &error else {
            panic!("expected KeyExpression, got {error:?}");
        };
        assert_eq!(expression, ORDER_KEY);
        assert!(reason.contains("limit of 18 bytes"), "{reason}");
        assert!(reason.contains("with_max_decompressed_size"), "{reason}");
        // Said once, not wrapped in core's message.
        assert_eq!(
            error.to_string().matches("JMESPath expression").count(),
            1,
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_handler_does_not_run_past_the_decompression_limit() {
        let ran = Arc::new(AtomicBool::new(false));
        let handler_ran = Arc::clone(&ran);
        let idempotency = Idempotency::builder(InMemoryStore::new()).build().unwrap();
        let mut handler = ServiceBuilder::new()
            .layer(
                IdempotencyLayer::new(idempotency).key(
                    JmesPath::new(ORDER_KEY)
                        .unwrap()
                        .with_max_decompressed_size(8),
                ),
            )
            .service(service_fn(move |_: LambdaEvent<Value>| {
                let ran = Arc::clone(&handler_ran);
                async move {
                    ran.store(true, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>("charged".to_owned())
                }
            }));
        let event = TestContext::new().event(json!({ "body": ORDER_GZIP_BASE64 }));
        let error = handler
            .ready()
            .await
            .unwrap()
            .call(event)
            .await
            .unwrap_err();
        assert_eq!(error.error_type(), "IdempotencyKeyExpressionError");
        assert!(error.to_string().contains("limit of 8 bytes"), "{error}");
        assert!(!ran.load(Ordering::SeqCst));
    }
}
