//! Reading the event into the handler's type, with an error that never quotes the event.
//!
//! `lambda_runtime` deserializes each event itself and, when the event does not fit the
//! handler's type, answers and logs serde's message, which quotes the value it could not read
//! (`invalid type: string "4111 1111 1111 1111", expected a boolean`): a direct invoke can put a
//! card number, or megabytes, into the error Lambda returns and into the logs. [`run`] and
//! [`run_concurrent`] hand the runtime [`EventOf<A>`] instead, which always deserializes, and
//! [`ReadEvent`] fails the invocation itself with [`InvalidEvent`]: where the event went wrong and
//! what the type expected there, never the value.
//!
//! An event that fits costs nothing more: `EventOf<A>` reads it as `A` would be read. Only an
//! event that does not is read a second time, from the bytes `RawEventLayer` keeps, with
//! `serde_path_to_error` tracking where it went wrong (tracking on every event cost about
//! 1.5 µs per API Gateway request).
//!
//! [`run`]: crate::run
//! [`run_concurrent`]: crate::run_concurrent

use std::error::Error as StdError;
use std::fmt::{self, Debug, Display, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use lambda_runtime::{Diagnostic, LambdaEvent, Service};
use serde::{Deserialize, Deserializer};
use serde_path_to_error::{Path, Segment};

/// The longest map key or variant name written into a path; longer ones are cut (a key comes from
/// the event, and a hostile one can be megabytes).
const MAX_SEGMENT_CHARS: usize = 64;
/// The longest path written; a longer one keeps its end, where the event went wrong.
const MAX_PATH_BYTES: usize = 256;
/// The longest message of a `Deserialize` implementation's own kept (its text is the
/// implementation's, which may quote the value: see [`InvalidEvent`]).
const MAX_CUSTOM_MESSAGE_BYTES: usize = 200;

/// The event as the runtime hands it to [`ReadEvent`]: the handler's event, or why the event is
/// not one. Deserializing it never fails, so `lambda_runtime` never answers with serde's message.
pub(crate) struct EventOf<A>(Result<A, InvalidEvent>);

impl<'de, A: Deserialize<'de>> Deserialize<'de> for EventOf<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Without the path: `ReadEvent` finds it by reading the bytes again, for this event only.
        Ok(Self(A::deserialize(deserializer).map_err(|error| {
            InvalidEvent::new::<A>(None, &error.to_string())
        })))
    }
}

/// An event that does not deserialize into the handler's event type: the invocation fails with
/// `errorType` `InvalidEvent` and this message, and the handler is not called.
///
/// The message names the type, the path in the event where it went wrong and what the type
/// expected there (`the event does not read as aws_lambda_events::event::sqs::SqsEvent at
/// Records[0].body: invalid type, expected a string at line 1 column 33`), but not the value
/// found: serde's own messages quote it, and an event sent by a direct invoke can carry anything.
/// Map keys in the path come from the event and are cut at 64 characters, the path at 256 bytes
/// (its end kept). A message of your own `Deserialize` implementation (`de::Error::custom`) is
/// kept, cut at 200 bytes: don't quote the value in it.
#[derive(Debug)]
pub(crate) struct InvalidEvent {
    message: String,
}

impl InvalidEvent {
    fn new<A>(path: Option<&Path>, serde_message: &str) -> Self {
        let mut message = format!("the event does not read as {}", std::any::type_name::<A>());
        let path = path.map(path_without_long_keys).unwrap_or_default();
        if !path.is_empty() {
            message.push_str(" at ");
            message.push_str(&path);
        }
        message.push_str(": ");
        message.push_str(&message_without_value(serde_message));
        Self { message }
    }

    /// The same failure, found again in `body` (the bytes the event was read from) with the path
    /// to where it went wrong; `self` when `body` now reads as `A`, which it cannot.
    fn with_path<A: for<'de> Deserialize<'de>>(self, body: &[u8]) -> Self {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, A>(deserializer) {
            Ok(_) => self,
            Err(error) => Self::new::<A>(Some(error.path()), &error.inner().to_string()),
        }
    }

    /// The error Lambda returns for this invocation.
    fn diagnostic(&self) -> Diagnostic {
        Diagnostic {
            error_type: "InvalidEvent".to_owned(),
            error_message: self.message.clone(),
        }
    }
}

impl Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for InvalidEvent {}

/// `path` as `serde_path_to_error` writes it (`Records[0].body`), each map key and variant cut
/// at [`MAX_SEGMENT_CHARS`], the whole at [`MAX_PATH_BYTES`] from its end; empty at the root.
fn path_without_long_keys(path: &Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                match key.char_indices().nth(MAX_SEGMENT_CHARS) {
                    Some((cut, _)) => {
                        out.push_str(&key[..cut]);
                        out.push('…');
                    }
                    None => out.push_str(key),
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
        out = format!("…{}", &out[start..]);
    }
    out
}

/// serde's message without the value it quotes: `invalid type: string "…", expected a string`
/// becomes `invalid type, expected a string`; so for `invalid value`, `unknown variant` and
/// `unknown field`. serde's other messages (`missing field`, `invalid length`, `duplicate
/// field`) and serde_json's syntax errors quote nothing from the event and are kept; any other
/// message (a `Deserialize` implementation's own) is cut at [`MAX_CUSTOM_MESSAGE_BYTES`].
fn message_without_value(message: &str) -> String {
    // The value comes before the expectation, and the expectation is the type's: the last
    // ", expected " is the one serde wrote, whatever the value holds.
    for (prefix, kind) in [
        ("invalid type: ", "invalid type"),
        ("invalid value: ", "invalid value"),
        ("unknown variant ", "unknown variant"),
        ("unknown field ", "unknown field"),
    ] {
        if message.starts_with(prefix) {
            let expectation = [", there are no variants", ", there are no fields"]
                .into_iter()
                .find(|ending| message.ends_with(ending))
                .map(|ending| message.len() - ending.len())
                .or_else(|| message.rfind(", expected "));
            return match expectation {
                Some(at) => format!("{kind}{}", &message[at..]),
                None => kind.to_owned(),
            };
        }
    }
    if message.len() <= MAX_CUSTOM_MESSAGE_BYTES
        || ["missing field `", "invalid length ", "duplicate field `"]
            .iter()
            .any(|prefix| message.starts_with(prefix))
    {
        return message.to_owned();
    }
    let mut cut = MAX_CUSTOM_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &message[..cut])
}

/// The handler under the runtime: calls it with the event when the event read as its type, and
/// fails the invocation with [`InvalidEvent`] (and one `ERROR` line) when it did not.
#[derive(Clone)]
pub(crate) struct ReadEvent<S> {
    inner: S,
}

impl<S> ReadEvent<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, A> Service<LambdaEvent<EventOf<A>>> for ReadEvent<S>
where
    S: Service<LambdaEvent<A>>,
    A: for<'de> Deserialize<'de>,
{
    type Response = S::Response;
    type Error = ReadEventError<S::Error>;
    type Future = ReadEventFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ReadEventError::Handler)
    }

    fn call(&mut self, event: LambdaEvent<EventOf<A>>) -> Self::Future {
        match event.payload.0 {
            Ok(payload) => ReadEventFuture::Handler {
                future: self.inner.call(LambdaEvent::new(payload, event.context)),
            },
            Err(invalid) => {
                // `RawEventLayer` (which `run` adds) is handing this invocation over: its bytes.
                let invalid = match powertools_logging::received_body(&event.context.request_id) {
                    Some(body) => invalid.with_path::<A>(&body),
                    None => invalid,
                };
                // In the runtime's span: the line carries the invocation's request id.
                tracing::error!(error = &invalid as &dyn StdError, "Invocation failed");
                ReadEventFuture::Invalid {
                    invalid: Some(invalid),
                }
            }
        }
    }
}

/// The handler's error, or an event it could not be given.
#[derive(Debug)]
pub(crate) enum ReadEventError<E> {
    Handler(E),
    Invalid(InvalidEvent),
}

impl<E: Into<Diagnostic>> From<ReadEventError<E>> for Diagnostic {
    fn from(error: ReadEventError<E>) -> Self {
        match error {
            ReadEventError::Handler(error) => error.into(),
            ReadEventError::Invalid(invalid) => invalid.diagnostic(),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`ReadEvent`]'s future: the handler's, or the invalid event's error at once.
    #[project = ReadEventFutureProjection]
    pub(crate) enum ReadEventFuture<F> {
        Handler { #[pin] future: F },
        Invalid { invalid: Option<InvalidEvent> },
    }
}

impl<F, R, E> Future for ReadEventFuture<F>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, ReadEventError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadEventFutureProjection::Handler { future } => {
                future.poll(cx).map_err(ReadEventError::Handler)
            }
            ReadEventFutureProjection::Invalid { invalid } => match invalid.take() {
                Some(invalid) => Poll::Ready(Err(ReadEventError::Invalid(invalid))),
                // Polled again after it finished: as `Ready`, a misuse; answer the same error
                // kind rather than panic.
                None => Poll::Ready(Err(ReadEventError::Invalid(InvalidEvent {
                    message: "the event's future was polled after it finished".to_owned(),
                }))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// As `lambda_runtime` reads an event (its `deserializer::deserialize`, which is private):
    /// `serde_path_to_error` over serde_json, from the body's bytes.
    fn read_as_the_runtime_does<A: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<A, String> {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        let event: EventOf<A> = serde_path_to_error::deserialize(deserializer)
            .map_err(|error| format!("the runtime failed: {error}"))?;
        // Then as `ReadEvent` does, with the bytes `RawEventLayer` keeps.
        event
            .0
            .map_err(|invalid| invalid.with_path::<A>(body).to_string())
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Order {
        id: String,
        paid: bool,
        quantity: u32,
        kind: Kind,
        #[serde(default)]
        lines: Vec<String>,
        #[serde(default)]
        tags: std::collections::HashMap<String, u8>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Bread,
        Cake,
    }

    const SECRET: &str = "4111 1111 1111 1111";

    #[test]
    fn a_valid_event_is_read_as_the_type() {
        let order: Order = read_as_the_runtime_does(
            br#"{"id":"o-1","paid":true,"quantity":2,"kind":"cake","tags":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(order.id, "o-1");
        assert!(matches!(order.kind, Kind::Cake));
        assert_eq!(order.tags["a"], 1);
    }

    #[test]
    fn serde_s_messages_keep_where_and_what_was_expected_but_never_the_value() {
        let cases = [
            (
                format!(r#"{{"id":"o-1","paid":"{SECRET}"}}"#),
                "at paid: invalid type, expected a boolean at line 1 column",
            ),
            (
                format!(r#"{{"id":"o-1","paid":true,"quantity":"{SECRET}"}}"#),
                "at quantity: invalid type, expected u32",
            ),
            (
                r#"{"id":"o-1","paid":true,"quantity":4111111111111111}"#.to_owned(),
                "at quantity: invalid value, expected u32",
            ),
            (
                format!(r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"{SECRET}"}}"#),
                "at kind: unknown variant, expected `bread` or `cake`",
            ),
            (
                format!(
                    r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"cake","lines":["a",{SECRET:?}, 4111111111111111]}}"#
                ),
                "at lines[2]: invalid type, expected a string",
            ),
            (
                // A value that itself holds ", expected ": the last one is serde's.
                r#"{"id":"o-1","paid":"x, expected 4111111111111111"}"#.to_owned(),
                "at paid: invalid type, expected a boolean",
            ),
        ];
        for (body, expected) in cases {
            let message = read_as_the_runtime_does::<Order>(body.as_bytes()).unwrap_err();
            assert!(
                message.starts_with(&format!(
                    "the event does not read as {}",
                    std::any::type_name::<Order>()
                )),
                "{message}"
            );
            assert!(message.contains(expected), "{message} lacks {expected}");
            assert!(!message.contains("4111"), "quotes the value: {message}");
        }
    }

    #[test]
    fn messages_that_quote_nothing_from_the_event_are_kept() {
        for (body, expected) in [
            (r#"{"paid":true}"#, "missing field `id`"),
            (r#"{"id":"a","id":"b"}"#, "duplicate field `id`"),
            ("not json", "expected ident at line 1 column 2"),
            (r#"{"id":"#, "EOF while parsing a value at line 1 column 6"),
        ] {
            let message = read_as_the_runtime_does::<Order>(body.as_bytes()).unwrap_err();
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
        let message = read_as_the_runtime_does::<(u8, u8, u8)>(b"[1,2]").unwrap_err();
        assert!(
            message.contains(": invalid length 2, expected a tuple of size 3"),
            "{message}"
        );
        let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let message = read_as_the_runtime_does::<Value>(nested.as_bytes()).unwrap_err();
        assert!(message.contains("recursion limit exceeded"), "{message}");
    }

    #[test]
    fn keys_from_the_event_are_cut_and_a_long_path_keeps_its_end() {
        let key = format!("{}ZZKEY", "k".repeat(100));
        let body = format!(
            r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"cake","tags":{{"{key}":"{SECRET}"}}}}"#
        );
        let message = read_as_the_runtime_does::<Order>(body.as_bytes()).unwrap_err();
        assert!(
            message.contains(&format!("at tags.{}…: invalid type", "k".repeat(64))),
            "{message}"
        );
        assert!(
            !message.contains("ZZKEY") && !message.contains("4111"),
            "{message}"
        );

        // 100 levels of objects, each key 60 characters: the path keeps its last 256 bytes.
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Nested(std::collections::HashMap<String, Box<Nested>>);
        let mut body = format!(r#""{SECRET}""#);
        for level in 0..100 {
            body = format!(r#"{{"{level:02}{}":{body}}}"#, "n".repeat(58));
        }
        let message = read_as_the_runtime_does::<Nested>(body.as_bytes()).unwrap_err();
        let path = message
            .split(" at ")
            .nth(1)
            .and_then(|rest| rest.split(": ").next())
            .unwrap();
        assert!(path.starts_with('…'), "{message}");
        assert!(path.len() <= MAX_PATH_BYTES + '…'.len_utf8(), "{message}");
        assert!(
            path.ends_with(&format!("00{}", "n".repeat(58))),
            "{message}"
        );
        assert!(!message.contains("4111"), "{message}");
    }

    #[test]
    fn a_custom_message_is_kept_up_to_200_bytes() {
        #[derive(Debug)]
        struct Picky;
        impl<'de> Deserialize<'de> for Picky {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Err(serde::de::Error::custom(format!(
                    "not picky enough: {}",
                    "é".repeat(text.len())
                )))
            }
        }
        let message = read_as_the_runtime_does::<Picky>(br#""ab""#).unwrap_err();
        assert!(message.ends_with(": not picky enough: éé"), "{message}");
        let long = format!(r#""{}""#, "a".repeat(10_000));
        let message = read_as_the_runtime_does::<Picky>(long.as_bytes()).unwrap_err();
        assert!(message.ends_with('…'), "{message}");
        assert!(message.len() < 400, "{} bytes", message.len());
    }

    #[tokio::test]
    async fn an_invalid_event_fails_with_invalid_event_without_calling_the_handler() {
        use lambda_runtime::{Context as LambdaContext, service_fn};
        let called = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = called.clone();
        let mut service = ReadEvent::new(service_fn(move |event: LambdaEvent<Order>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, Diagnostic>(event.payload.id) }
        }));
        let invalid: EventOf<Order> = serde_json::from_str(r#"{"id":1}"#).unwrap();
        let error = service
            .call(LambdaEvent::new(invalid, LambdaContext::default()))
            .await
            .unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "InvalidEvent");
        // Without `RawEventLayer` (which `run` adds) the bytes are gone: no path, but still
        // what was expected, and never the value.
        assert!(
            diagnostic
                .error_message
                .ends_with("Order: invalid type, expected a string at line 1 column 7"),
            "{}",
            diagnostic.error_message
        );
        assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);

        let valid: EventOf<Order> =
            serde_json::from_str(r#"{"id":"o-2","paid":false,"quantity":0,"kind":"bread"}"#)
                .unwrap();
        let answer = service
            .call(LambdaEvent::new(valid, LambdaContext::default()))
            .await
            .unwrap();
        assert_eq!(answer, "o-2");
        assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 1);

        let failing = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), _>(Diagnostic {
                error_type: "Declined".to_owned(),
                error_message: "card declined".to_owned(),
            })
        }))
        .call(LambdaEvent::new(
            serde_json::from_str::<EventOf<Value>>("{}").unwrap(),
            LambdaContext::default(),
        ))
        .await
        .unwrap_err();
        assert_eq!(
            Diagnostic::from(failing).error_type,
            "Declined",
            "the handler's own error"
        );
    }
}
