//! Where an invocation's correlation id comes from.

#[cfg(feature = "jmespath")]
use powertools_core::jmespath::{HeaderCaseCheck, JmesPath};
#[cfg(feature = "jmespath")]
use serde::Serialize;
#[cfg(feature = "jmespath")]
use serde_json::Value;

#[cfg(feature = "jmespath")]
#[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
/// JMESPath expressions for the correlation id of common event sources, as Powertools names them.
///
/// ```
/// use powertools_logging::{CorrelationIdPath, correlation_paths};
/// let path = CorrelationIdPath::new(correlation_paths::API_GATEWAY_REST)?;
/// # Ok::<(), powertools_logging::Error>(())
/// ```
pub mod correlation_paths {
    /// API Gateway REST API: the request id.
    pub const API_GATEWAY_REST: &str = "requestContext.requestId";
    /// API Gateway HTTP API: the request id.
    pub const API_GATEWAY_HTTP: &str = "requestContext.requestId";
    /// AppSync Lambda authorizer: the request id.
    pub const APPSYNC_AUTHORIZER: &str = "requestContext.requestId";
    /// AppSync resolver: the X-Ray trace header.
    pub const APPSYNC_RESOLVER: &str = r#"request.headers."x-amzn-trace-id""#;
    /// Application Load Balancer: the X-Ray trace header.
    pub const APPLICATION_LOAD_BALANCER: &str = r#"headers."x-amzn-trace-id""#;
    /// EventBridge: the event id.
    pub const EVENT_BRIDGE: &str = "id";
    /// Lambda function URL: the request id.
    pub const LAMBDA_FUNCTION_URL: &str = "requestContext.requestId";
    /// S3 Object Lambda: the request id.
    pub const S3_OBJECT_LAMBDA: &str = "xAmzRequestId";
    /// VPC Lattice: the X-Ray trace header.
    pub const VPC_LATTICE: &str = r#"headers."x-amzn-trace-id""#;
}

/// Finds an invocation's correlation id in its event.
///
/// Implemented by [`NoCorrelationId`] (the default), `CorrelationIdPath` (a JMESPath
/// expression, for configuration; the `jmespath` feature) and [`CorrelationIdFn`] (a typed
/// closure, checked by the compiler).
pub trait CorrelationIdSource<T>: Clone + Send + Sync + 'static {
    /// The correlation id of `event`, if it has one.
    fn correlation_id(&self, event: &T) -> Option<String>;
}

/// No correlation id.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCorrelationId;

impl<T> CorrelationIdSource<T> for NoCorrelationId {
    fn correlation_id(&self, _event: &T) -> Option<String> {
        None
    }
}

#[cfg(feature = "jmespath")]
#[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
/// The correlation id at a JMESPath expression in the event's JSON (see [`correlation_paths`]).
/// A string is used as is; a number, a boolean, an object or an array as its JSON text (Python
/// keeps the value's JSON type; the id is text here). Nothing found (`null`, `""`, `{}`, `[]`, a
/// multi-select of `null`s) means no id.
///
/// Header names of typed API Gateway and ALB events are lowercase (their `HeaderMap` writes them
/// as HTTP APIs send them): `headers."x-correlation-id"`, not `headers."X-Correlation-Id"`. A path
/// that names a header with capitals and finds nothing, where the same path in lowercase finds
/// the id, says so once, in a warning that gives the lowercase path.
#[derive(Debug, Clone)]
pub struct CorrelationIdPath(JmesPath, Option<std::sync::Arc<HeaderCaseCheck>>);

#[cfg(feature = "jmespath")]
impl CorrelationIdPath {
    /// Compiles `expression`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when it is not valid JMESPath.
    pub fn new(expression: &str) -> Result<Self, crate::Error> {
        let path = JmesPath::new(expression)?;
        let lowercase = HeaderCaseCheck::of(&path).map(std::sync::Arc::new);
        Ok(CorrelationIdPath(path, lowercase))
    }
}

#[cfg(feature = "jmespath")]
impl<T: Serialize> CorrelationIdSource<T> for CorrelationIdPath {
    fn correlation_id(&self, event: &T) -> Option<String> {
        match self.0.search(event) {
            Ok(Value::String(id)) if !id.is_empty() => Some(id),
            Ok(Value::Null | Value::String(_)) => self.nothing_found(event),
            // Nothing found by a multi-select, or an empty object: no id.
            Ok(Value::Array(items)) if items.iter().all(Value::is_null) => {
                self.nothing_found(event)
            }
            Ok(Value::Object(members)) if members.is_empty() => self.nothing_found(event),
            // Kept as its JSON text rather than dropped: a number, a boolean, or an object or
            // array (a path one level short, most likely, which the id then shows).
            Ok(other) => Some(other.to_string()),
            Err(error) => {
                tracing::warn!(%error, "the correlation id expression failed on this event");
                None
            }
        }
    }
}

#[cfg(feature = "jmespath")]
impl CorrelationIdPath {
    /// No id; the first time the same path with its header in lowercase finds one (a typed
    /// event, whose header names are lowercase), a warning that says so. Only the first
    /// [`HEADER_CASE_TRIES`](powertools_core::jmespath::HEADER_CASE_TRIES) misses try it.
    fn nothing_found<T: Serialize>(&self, event: &T) -> Option<String> {
        let check = self.1.as_ref()?;
        if !check.try_again() {
            return None;
        }
        let found =
            matches!(check.lowercase().search(event), Ok(Value::String(id)) if !id.is_empty());
        if found && check.first_to_say() {
            tracing::warn!(
                target: "powertools_logging",
                expression = self.0.as_str(),
                "the correlation id expression found nothing, but `{}` finds the id: header \
                 names of typed API Gateway and ALB events are lowercase, as HTTP APIs send them \
                 (said once)",
                check.lowercase().as_str()
            );
        }
        None
    }
}

/// The correlation id a typed closure returns.
#[derive(Clone, Copy)]
pub struct CorrelationIdFn<F>(pub F);

impl<F> std::fmt::Debug for CorrelationIdFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CorrelationIdFn(..)")
    }
}

impl<T, F> CorrelationIdSource<T> for CorrelationIdFn<F>
where
    F: Fn(&T) -> Option<String> + Clone + Send + Sync + 'static,
{
    fn correlation_id(&self, event: &T) -> Option<String> {
        (self.0)(event)
    }
}

#[cfg(all(test, feature = "jmespath"))]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_paths_find_the_ids_of_their_event_sources() {
        let cases = [
            (
                correlation_paths::API_GATEWAY_REST,
                json!({"requestContext": {"requestId": "r-1"}}),
                "r-1",
            ),
            (
                correlation_paths::API_GATEWAY_HTTP,
                json!({"requestContext": {"requestId": "r-2"}}),
                "r-2",
            ),
            (
                correlation_paths::APPLICATION_LOAD_BALANCER,
                json!({"headers": {"x-amzn-trace-id": "Root=1-a"}}),
                "Root=1-a",
            ),
            (
                correlation_paths::EVENT_BRIDGE,
                json!({"id": "e-1", "detail": {}}),
                "e-1",
            ),
            (
                correlation_paths::APPSYNC_RESOLVER,
                json!({"request": {"headers": {"x-amzn-trace-id": "Root=1-b"}}}),
                "Root=1-b",
            ),
            (
                correlation_paths::S3_OBJECT_LAMBDA,
                json!({"xAmzRequestId": "s3-1"}),
                "s3-1",
            ),
            (
                correlation_paths::VPC_LATTICE,
                json!({"headers": {"x-amzn-trace-id": "Root=1-c"}}),
                "Root=1-c",
            ),
        ];
        for (path, event, expected) in cases {
            let source = CorrelationIdPath::new(path).unwrap();
            assert_eq!(
                source.correlation_id(&event).as_deref(),
                Some(expected),
                "{path}"
            );
        }
    }

    /// An event that counts how often it is serialized.
    struct Counted<'a>(&'a Value, &'a std::sync::atomic::AtomicUsize);

    impl Serialize for Counted<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.serialize(serializer)
        }
    }

    /// A header named with capitals finds nothing in a typed API Gateway or ALB event, whose
    /// `HeaderMap` writes names in lowercase: the first miss says so, with the lowercase path
    /// (a function written from the docs lost every correlation id without a word).
    #[test]
    fn a_header_named_with_capitals_that_finds_nothing_says_headers_are_lowercase() {
        let logs = crate::MemoryLogs::new();
        let logger = crate::Logger::builder()
            .service("orders")
            .writer(logs.clone())
            .build()
            .unwrap();
        let mixed = CorrelationIdPath::new(r#"headers."X-Correlation-Id""#).unwrap();
        let typed = json!({"headers": {"x-correlation-id": "c-1"}});
        tracing::subscriber::with_default(logger.subscriber(), || {
            assert_eq!(mixed.correlation_id(&typed), None);
            // Once per path (its clones share it), not once per invocation.
            assert_eq!(mixed.clone().correlation_id(&typed), None);
            // As sent in a JSON event, it is found, and nothing is said.
            let as_sent = json!({"headers": {"X-Correlation-Id": "c-2"}});
            assert_eq!(mixed.correlation_id(&as_sent).as_deref(), Some("c-2"));
            let lowercase = CorrelationIdPath::new(r#"headers."x-correlation-id""#).unwrap();
            assert_eq!(lowercase.correlation_id(&json!({"headers": {}})), None);
            // A request that did not send the header at all says nothing: the path is right
            // for an event that keeps the case it was sent in (found by a review).
            let absent = CorrelationIdPath::new(r#"headers."X-Request-Id""#).unwrap();
            let without = json!({"headers": {"Host": "api.example.com"}});
            assert_eq!(absent.correlation_id(&without), None);
            // Only the first misses search again with the lowercase path (each search
            // serializes the event): after them, a typed event is not searched twice (found by
            // a review).
            let late = CorrelationIdPath::new(r#"headers."X-Late""#).unwrap();
            for _ in 0..powertools_core::jmespath::HEADER_CASE_TRIES {
                assert_eq!(late.correlation_id(&without), None);
            }
            let serialized = std::sync::atomic::AtomicUsize::new(0);
            let counted = Counted(&typed, &serialized);
            assert_eq!(late.correlation_id(&counted), None);
            assert_eq!(
                serialized.load(std::sync::atomic::Ordering::Relaxed),
                1,
                "once"
            );
            // The field quoted, as JMESPath allows.
            let quoted = CorrelationIdPath::new(r#""headers"."X-Trace""#).unwrap();
            assert_eq!(
                quoted.correlation_id(&json!({"headers": {"x-trace": "t"}})),
                None
            );
        });
        let lines = logs.json();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        let message = lines[0]["message"].as_str().unwrap();
        assert!(message.contains("lowercase"), "{message}");
        assert!(
            message.contains(r#"headers."x-correlation-id""#),
            "names the lowercase path: {message}"
        );
    }

    #[test]
    fn nothing_found_or_a_failing_path_means_no_id() {
        let path = CorrelationIdPath::new("powertools_json(body).id").unwrap();
        assert_eq!(path.correlation_id(&json!({})), None);
        assert_eq!(path.correlation_id(&json!({"body": "{not json"})), None);
        assert_eq!(
            path.correlation_id(&json!({"body": "{\"id\": 42}"}))
                .as_deref(),
            Some("42")
        );
        assert!(CorrelationIdPath::new("a.[").is_err());
    }

    /// An id that is an object or an array (a path one level short, or a multi-select) is kept
    /// as its JSON text, as a number is, rather than dropped without a word; an empty string or
    /// an empty array is no id.
    #[test]
    fn an_object_or_array_found_is_the_id_as_its_json_text() {
        let path = CorrelationIdPath::new("id").unwrap();
        assert_eq!(
            path.correlation_id(&json!({"id": {"tenant": "t-1", "n": 7}}))
                .as_deref(),
            Some(r#"{"n":7,"tenant":"t-1"}"#)
        );
        assert_eq!(
            path.correlation_id(&json!({"id": ["a", 1]})).as_deref(),
            Some(r#"["a",1]"#)
        );
        assert_eq!(
            path.correlation_id(&json!({"id": true})).as_deref(),
            Some("true")
        );
        assert_eq!(path.correlation_id(&json!({"id": ""})), None);
        assert_eq!(path.correlation_id(&json!({"id": []})), None);
        assert_eq!(path.correlation_id(&json!({"id": {}})), None);
        let multi = CorrelationIdPath::new("[missing, other]").unwrap();
        assert_eq!(
            multi.correlation_id(&json!({})),
            None,
            "[null, null] is nothing found"
        );
    }
}
