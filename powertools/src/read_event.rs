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
use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use lambda_runtime::{Diagnostic, FunctionResponse, IntoFunctionResponse, LambdaEvent, Service};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_path_to_error::Path;

/// The event as the runtime hands it to [`ReadEvent`]: the handler's event, or why the event is
/// not one. Deserializing it never fails, so `lambda_runtime` never answers with serde's message.
pub(crate) struct EventOf<A>(Result<A, InvalidEvent>);

impl<'de, A: Deserialize<'de>> Deserialize<'de> for EventOf<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Without the path: `ReadEvent` finds it by reading the bytes again, for this event only.
        // A `Deserialize` that panics (a hostile event meeting an `unwrap` in it) would stop the
        // whole function process inside the runtime: it fails this invocation instead.
        Ok(Self(
            // Quiet: its message, which may quote the event, is left out of the error and must
            // not reach the log through the panic hook's print either.
            match powertools_core::failure::catch_quiet_panic(|| A::deserialize(deserializer)) {
                Ok(read) => read.map_err(|error| InvalidEvent::new::<A>(None, &error.to_string())),
                Err(_) => Err(InvalidEvent::panicked::<A>()),
            },
        ))
    }
}

/// An event that does not deserialize into the handler's event type: the invocation fails with
/// `errorType` `InvalidEvent` and this message, and the handler is not called.
///
/// The message names the type, the path in the event where it went wrong and what the type
/// expected there (`the event does not read as aws_lambda_events::event::sqs::SqsEvent at
/// Records[0].body: invalid type (the value is left out), expected a string at line 1 column
/// 33`), but not the value found: serde's own messages quote it, and an event sent by a direct
/// invoke can carry anything.
/// Map keys in the path (a `HashMap`'s keys, not a struct's field names) and enum variant names
/// (which a `#[serde(other)]` variant takes from the event) are written as the event spells them
/// when they read as a field's name (up to 64 ASCII letters, digits, `_` and `-`, not starting
/// with a digit), else as `<key>` (a card number, an e-mail address); the path is cut at 256
/// bytes (its end kept); an unknown field's name is left out. A message of a `Deserialize` implementation's own (`de::Error::custom`:
/// chrono's, uuid's, some of `aws_lambda_events`') is left out too, since it may quote the
/// value: the path and serde_json's position say where. The base64 decoder's (Kinesis data
/// that is not base64) is said without the byte it names.
#[derive(Debug)]
pub(crate) struct InvalidEvent {
    message: String,
    /// Reading the event panicked: it is not read again for its path.
    panicked: bool,
}

impl InvalidEvent {
    fn new<A>(path: Option<&Path>, serde_message: &str) -> Self {
        let mut message = format!("the event does not read as {}", std::any::type_name::<A>());
        // An unknown field's name is the path's last key, and comes from the event.
        let unknown_field = serde_message.starts_with("unknown field `");
        let path = path
            .map(|path| powertools_core::serde_message::shown_path(path, unknown_field))
            .unwrap_or_default();
        if !path.is_empty() {
            message.push_str(" at ");
            message.push_str(&path);
        }
        message.push_str(": ");
        message.push_str(&powertools_core::serde_message::without_values(
            serde_message,
        ));
        Self {
            message,
            panicked: false,
        }
    }

    /// Reading the event as `A` panicked. The panic's message is left out, as it may quote the
    /// value (an `unwrap` on a parse error).
    fn panicked<A>() -> Self {
        Self {
            message: format!(
                "the event does not read as {}: its deserializer panicked (the panic's message is \
                 left out: it may quote the value)",
                std::any::type_name::<A>()
            ),
            panicked: true,
        }
    }

    /// What follows the event's JSON value at byte `end` of `body`: the value is the event, the
    /// rest is refused, unquoted (it may be anything).
    fn trailing<A>(end: usize, body: &[u8]) -> Self {
        let (line, column) = position(&body[..end]);
        Self {
            message: format!(
                "the event does not read as {}: trailing characters after its JSON value, at \
                 line {line} column {column} ({} bytes, left out)",
                std::any::type_name::<A>(),
                body.len() - end
            ),
            panicked: false,
        }
    }

    /// The same failure, found again in `body` (the bytes the event was read from) with the path
    /// to where it went wrong; `self` when `body` now reads as `A`, which it cannot.
    fn with_path<A: for<'de> Deserialize<'de>>(self, body: &[u8]) -> Self {
        if self.panicked {
            return self;
        }
        // As quiet and as contained as the first read: it runs the same `Deserialize`.
        let again = powertools_core::failure::catch_quiet_panic(|| {
            let deserializer = &mut serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize::<_, A>(deserializer).map(drop)
        });
        match again {
            Ok(Err(error)) => Self::new::<A>(Some(error.path()), &error.inner().to_string()),
            Ok(Ok(())) | Err(_) => self,
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

/// The line and column (both from 1, the column in bytes) just after `text`, as serde_json
/// counts them.
fn position(text: &[u8]) -> (usize, usize) {
    let line = text.iter().filter(|byte| **byte == b'\n').count() + 1;
    let line_start = text
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, text.len() - line_start + 1)
}

/// What a byte is to [`json_value_end`]: most are [`BORING`].
const BORING: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;
const BACKSLASH: u8 = 4;

/// Each byte's class, for [`json_value_end`]: one lookup per byte, and a branch only on the few
/// that matter (half the time of a `match` per byte: 0.5 ns a byte here, a 1 KB event in 0.5 µs).
static CLASS: [u8; 256] = {
    let mut table = [BORING; 256];
    table[b'"' as usize] = QUOTE;
    table[b'{' as usize] = OPEN;
    table[b'[' as usize] = OPEN;
    table[b'}' as usize] = CLOSE;
    table[b']' as usize] = CLOSE;
    table[b'\\' as usize] = BACKSLASH;
    table
};

/// Where the JSON value that `body` begins with ends, with the whitespace after it: `body.len()`
/// when nothing else follows. `body` is known to begin with a valid JSON value (the event was
/// read from it), so only strings, escapes and brackets are followed. `None` when `body` does
/// not begin with one after all.
fn json_value_end(body: &[u8]) -> Option<usize> {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|byte| !is_space(byte))?;
    let end = match body[start] {
        b'{' | b'[' | b'"' => {
            let mut depth = 0_usize;
            let mut in_string = false;
            let mut at = start;
            loop {
                let class = CLASS[usize::from(*body.get(at)?)];
                at += 1;
                if class == BORING {
                    continue;
                }
                if in_string {
                    match class {
                        QUOTE => {
                            in_string = false;
                            if depth == 0 {
                                break at;
                            }
                        }
                        // The escaped character, whatever it is.
                        BACKSLASH => at += 1,
                        _ => {}
                    }
                    continue;
                }
                match class {
                    QUOTE => in_string = true,
                    OPEN => depth += 1,
                    CLOSE => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            break at;
                        }
                    }
                    _ => {}
                }
            }
        }
        // `true`, `false` or `null`: as long as its word.
        b't' | b'n' => start + 4,
        b'f' => start + 5,
        // A number: `-`, digits, then a fraction and an exponent if any (read as JSON's grammar
        // reads it: `1e5e5` is `1e5` and a trailing `e5`).
        _ => {
            let digits = |from: usize| {
                from + body[from..]
                    .iter()
                    .position(|byte| !byte.is_ascii_digit())
                    .unwrap_or(body.len() - from)
            };
            let mut at = digits(start + usize::from(body[start] == b'-'));
            if body.get(at) == Some(&b'.') {
                at = digits(at + 1);
            }
            if matches!(body.get(at), Some(b'e' | b'E')) {
                at += 1;
                if matches!(body.get(at), Some(b'+' | b'-')) {
                    at += 1;
                }
                at = digits(at);
            }
            at
        }
    };
    let rest = body.get(end..)?.iter().position(|byte| !is_space(byte));
    Some(rest.map_or(body.len(), |first| end + first))
}

impl Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for InvalidEvent {}

/// The handler under the runtime: calls it with the event when the event read as its type, and
/// fails the invocation with [`InvalidEvent`] (and one `ERROR` line) when it did not.
/// `B` and `St` are the handler's response's body and stream types (as
/// `IntoFunctionResponse<B, St>` names them): a buffered body is serialized here, so that one
/// that does not serialize fails its invocation instead of the runtime.
pub(crate) struct ReadEvent<S, B, St> {
    inner: S,
    response: PhantomData<fn() -> (B, St)>,
}

impl<S: Clone, B, St> Clone for ReadEvent<S, B, St> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S, B, St> ReadEvent<S, B, St> {
    pub(crate) fn new(inner: S) -> Self {
        // The events it reads are read inside `quiet_panics`: without the logging layer, whose
        // hook honours it too, Rust's default hook would print a panicking `Deserialize`'s
        // message, which may quote the event.
        powertools_core::failure::install_quiet_panic_hook();
        Self {
            inner,
            response: PhantomData,
        }
    }
}

impl<S, A, B, St> Service<LambdaEvent<EventOf<A>>> for ReadEvent<S, B, St>
where
    S: Service<LambdaEvent<A>>,
    S::Response: IntoFunctionResponse<B, St>,
    B: Serialize,
    A: for<'de> Deserialize<'de>,
{
    type Response = FunctionResponse<Box<RawValue>, St>;
    type Error = ReadEventError<S::Error>;
    type Future = ReadEventFuture<S::Future, B, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ReadEventError::Handler)
    }

    fn call(&mut self, event: LambdaEvent<EventOf<A>>) -> Self::Future {
        // `lambda_runtime` reads the body's first JSON value and ignores what follows it: an
        // event with a second document after it (`{"amount_cents":5}{"amount_cents":99999}`)
        // was handled as the first, where a reader in front of the function may have kept the
        // other (found by an attack through the emulator). Refused as serde_json refuses it.
        let payload = event.payload.0.and_then(|payload| {
            match powertools_logging::received_body(&event.context.request_id) {
                Some(body) => match json_value_end(&body) {
                    Some(end) if end < body.len() => Err(InvalidEvent::trailing::<A>(end, &body)),
                    _ => Ok(payload),
                },
                None => Ok(payload),
            }
        });
        match payload {
            Ok(payload) => {
                // The next invocation after a cold start no layer saw writes its metric: claimed
                // here, before any layer asks.
                powertools_core::cold_start::claim_unseen_cold_start(&event.context);
                let event = LambdaEvent::new(payload, event.context);
                match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(event))) {
                    Ok(future) => ReadEventFuture::Handler {
                        future,
                        response: PhantomData,
                    },
                    Err(panic) => ReadEventFuture::Early {
                        early: Some(Early::Panicked(panic_message(&*panic))),
                    },
                }
            }
            Err(invalid) => {
                // `RawEventLayer` (which `run` adds) is handing this invocation over: its bytes.
                let invalid = match powertools_logging::received_body(&event.context.request_id) {
                    Some(body) => invalid.with_path::<A>(&body),
                    None => invalid,
                };
                // The layers never see this invocation: it claims the process's cold start
                // here, or the next one, warm, was the cold start in the logs, metrics and span
                // (found by two attacks; Powertools for Python counts a first invocation that
                // fails as the cold start too).
                // Its ColdStart metric is the next invocation's to write.
                let cold_start =
                    powertools_core::cold_start::note_unseen_invocation(&event.context);
                // In the runtime's span: the line carries the invocation's request id.
                // The logging layer's failure line, as it writes one (its marker field says so:
                // `exception` fails closed on masked keys, and is not repeated as a field), with
                // the Lambda context keys every line of the function has (a query on
                // `function_name` missed these lines; found by reading the notes of an attack).
                let invocation = powertools_core::Invocation::new(&event.context);
                // The standard keys first, as on every line (they came after `exception`: found
                // by an attack from the docs).
                tracing::error!(
                    target: "powertools_logging",
                    cold_start,
                    function_name = invocation.function_name(),
                    function_memory_size = invocation.memory_size_mb(),
                    function_arn = invocation.function_arn(),
                    function_version = invocation.function_version(),
                    xray_trace_id = invocation.xray_root_trace_id(),
                    tenant_id = invocation.tenant_id(),
                    exception_name = "InvalidEvent",
                    exception = %invalid,
                    powertools_logging.failure = true,
                    "Invocation failed"
                );
                ReadEventFuture::Early {
                    early: Some(Early::Invalid(invalid)),
                }
            }
        }
    }
}

/// The handler's error, or what ended the invocation without one.
#[derive(Debug)]
pub(crate) enum ReadEventError<E> {
    Handler(E),
    Early(Early),
}

impl<E: Into<Diagnostic> + 'static> From<ReadEventError<E>> for Diagnostic {
    fn from(error: ReadEventError<E>) -> Self {
        match error {
            // A boxed error named as the layers name it, not by the box's type.
            ReadEventError::Handler(error) => crate::describe::lambda_diagnostic(error),
            ReadEventError::Early(Early::Invalid(invalid)) => invalid.diagnostic(),
            // As `lambda_runtime` reports a panic, but named `Panic` (as the failure line's
            // `exception_name` is), not `alloc::boxed::Box<dyn core::any::Any + Send>`.
            // As Lambda's own runtimes report a response they cannot send.
            ReadEventError::Early(Early::Unmarshalable(reason)) => Diagnostic {
                error_type: "Runtime.MarshalError".to_owned(),
                error_message: format!("Unable to marshal response: {reason}"),
            },
            ReadEventError::Early(Early::Panicked(message)) => Diagnostic {
                error_type: "Panic".to_owned(),
                error_message: match message {
                    Some(message) => format!("Lambda panicked: {message}"),
                    None => format!(
                        "Lambda panicked with {}",
                        powertools_core::error_chain::UNREADABLE_PANIC
                    ),
                },
            },
        }
    }
}

/// What ends an invocation without the handler's error: an event it could not be given, or its
/// panic (the logging layer wrote its `Invocation panicked` line), with the panic's message when
/// it had one.
#[derive(Debug)]
pub(crate) enum Early {
    Invalid(InvalidEvent),
    Panicked(Option<String>),
    /// The response did not serialize: serde's reason.
    Unmarshalable(String),
}

/// The response with its buffered body serialized, as the runtime would send it: a body that
/// does not serialize (or whose `Serialize` panics) is the invocation's error, where the runtime
/// would fail to build its request and stop. A stream is handed on as it is.
fn serialized<B: Serialize, St>(
    response: FunctionResponse<B, St>,
) -> Result<FunctionResponse<Box<RawValue>, St>, Early> {
    match response {
        FunctionResponse::BufferedResponse(body) => {
            match std::panic::catch_unwind(AssertUnwindSafe(|| {
                serde_json::value::to_raw_value(&body)
            })) {
                Ok(Ok(raw)) => {
                    // serde_json writes NaN and ±Infinity as `null`: a response holding one is
                    // sent so, with a warning, not without a word (found by an attack from the
                    // docs). Looked for only in a response with a `null`, once.
                    if raw.get().contains("null") {
                        warn_of_non_finite_floats(&body);
                    }
                    Ok(FunctionResponse::BufferedResponse(raw))
                }
                Ok(Err(error)) => {
                    let reason = marshal_reason(&body, &error);
                    // In the runtime's span, as the invalid event's: the line carries the
                    // invocation's request id.
                    tracing::error!(
                        target: "powertools_logging",
                        exception_name = "Runtime.MarshalError",
                        exception = %reason,
                        powertools_logging.failure = true,
                        "Invocation failed"
                    );
                    Err(Early::Unmarshalable(reason))
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    // The layers inside saw a response; its `Serialize` panicked only here.
                    tracing::error!(
                        target: "powertools_logging",
                        exception_name = "Panic",
                        exception = message.as_deref().unwrap_or("the response's Serialize panicked"),
                        powertools_logging.failure = true,
                        "Invocation failed"
                    );
                    Err(Early::Panicked(message))
                }
            }
        }
        FunctionResponse::StreamingResponse(stream) => {
            Ok(FunctionResponse::StreamingResponse(stream))
        }
    }
}

/// Warns when `body` holds a float JSON cannot hold, which serde_json wrote as `null`.
fn warn_of_non_finite_floats<B: Serialize>(body: &B) {
    if let Some((path, float)) = powertools_core::serde_message::non_finite_float(body) {
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" at {path}")
        };
        tracing::warn!(
            target: "powertools",
            "the response holds {float}{at}, which JSON cannot hold: it is sent as null, as \
             serde_json writes it (send such a value as text to keep it)"
        );
    }
}

/// Why `body` did not serialize, as `Runtime.MarshalError` says it: where in the response (its
/// path, map keys as an invalid event's are written) and serde_json's own reason (`key must be
/// a string`), but not the message of a `Serialize` implementation's own (`ser::Error::custom`),
/// which may quote the value. The path is found by serializing again, on this failure only.
fn marshal_reason<B: Serialize>(body: &B, error: &serde_json::Error) -> String {
    let message = error.to_string();
    let reason = powertools_core::serde_message::serialize_reason(&message);
    let path = powertools_core::failure::catch_quiet_panic(|| {
        let mut serializer = serde_json::Serializer::new(std::io::sink());
        serde_path_to_error::serialize(body, &mut serializer)
            .err()
            .map(|error| powertools_core::serde_message::shown_path(error.path(), false))
    });
    match path {
        Ok(Some(path)) if !path.is_empty() && path != "." => format!("at {path}: {reason}"),
        _ => reason.to_owned(),
    }
}

/// A panic's message, when it is text or an error.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> Option<String> {
    powertools_core::error_chain::panic_description(panic)
}

pin_project_lite::pin_project! {
    /// [`ReadEvent`]'s future: the handler's, or the invalid event's error (or the handler's
    /// panic when it was called) at once.
    #[project = ReadEventFutureProjection]
    pub(crate) enum ReadEventFuture<F, B, St> {
        Handler { #[pin] future: F, response: PhantomData<fn() -> (B, St)> },
        Early { early: Option<Early> },
    }
}

impl<F, R, E, B, St> Future for ReadEventFuture<F, B, St>
where
    F: Future<Output = Result<R, E>>,
    R: IntoFunctionResponse<B, St>,
    B: Serialize,
{
    type Output = Result<FunctionResponse<Box<RawValue>, St>, ReadEventError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadEventFutureProjection::Handler { future, .. } => {
                let response = match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx)))
                {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Err(error))) => {
                        return Poll::Ready(Err(ReadEventError::Handler(error)));
                    }
                    Ok(Poll::Ready(Ok(response))) => response,
                    Err(panic) => {
                        return Poll::Ready(Err(ReadEventError::Early(Early::Panicked(
                            panic_message(&*panic),
                        ))));
                    }
                };
                Poll::Ready(serialized(response.into_response()).map_err(ReadEventError::Early))
            }
            ReadEventFutureProjection::Early { early } => Poll::Ready(Err(ReadEventError::Early(
                // Polled again after it finished: as `Ready`, a misuse; answer the same error
                // kind rather than panic.
                early.take().unwrap_or_else(|| {
                    Early::Invalid(InvalidEvent {
                        message: "the event's future was polled after it finished".to_owned(),
                        panicked: false,
                    })
                }),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// Any JSON value, strings with escapes and characters past ASCII included.
    fn json_values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |number| number.is_finite())
                .prop_map(Value::from),
            "(\\PC|[\"\\\\/\n\t\u{0}-\u{1f}]){0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("(\\PC|[\"\\\\]){0,6}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// A body that is no JSON value after all (outside what the runtime hands over: its first
    /// value parsed) is `None` or an end within it, never a panic.
    #[test]
    fn a_body_that_is_no_json_value_is_no_panic() {
        for body in [
            "", " ", "1e", "1.", "-", "1e+", "t", "fals", "\"open", "{\"a\":", "]",
        ] {
            let end = super::json_value_end(body.as_bytes());
            assert!(end.is_none_or(|end| end <= body.len()), "{body:?}: {end:?}");
        }
    }

    proptest! {
        /// Where the event's value ends, against serde_json on the same bytes: read as
        /// `lambda_runtime` reads an event (the first value), what follows is trailing exactly
        /// when serde_json's `end` says so.
        #[test]
        fn the_end_of_the_event_s_value_is_where_serde_json_finds_it(
            value in json_values(),
            pretty in any::<bool>(),
            before in "[ \t\n\r]{0,3}",
            after in prop_oneof![
                Just(String::new()),
                "[ \t\n\r]{1,3}",
                Just("{}".to_owned()),
                Just("x".to_owned()),
                Just(" 5".to_owned()),
                Just("5".to_owned()),
                Just("\"s\"".to_owned()),
                Just(" {\"amount_cents\":99999}".to_owned()),
                Just("]".to_owned()),
                Just("e5".to_owned()),
                Just("true".to_owned()),
            ],
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .expect("a value serializes");
            let body = format!("{before}{text}{after}");
            let mut deserializer = serde_json::Deserializer::from_slice(body.as_bytes());
            // Only what the runtime reads: its first value parsed.
            if serde::de::IgnoredAny::deserialize(&mut deserializer).is_ok() {
                let trailing = deserializer.end().is_err();
                let end = super::json_value_end(body.as_bytes());
                prop_assert_eq!(
                    end.is_some_and(|end| end < body.len()),
                    trailing,
                    "{:?} ends at {:?}",
                    body,
                    end
                );
            }
        }
    }

    use super::*;
    use serde_json::Value;

    /// The error of a result whose success need not be `Debug` (a `FunctionResponse`).
    trait Failed<E> {
        fn failed(self) -> E;
    }

    impl<T, E> Failed<E> for Result<T, E> {
        fn failed(self) -> E {
            match self {
                Ok(_) => panic!("it succeeded"),
                Err(error) => error,
            }
        }
    }

    /// A handler's error whose `Display` panics: what Lambda is told names its type and says
    /// its description panicked, where the runtime panicked while it converted the error (found
    /// in a review; the logging and tracing layers already described it as such).
    #[test]
    fn an_error_whose_display_panics_is_still_reported_to_lambda() {
        #[derive(Debug)]
        struct Exploding;
        impl std::fmt::Display for Exploding {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                panic!("Display exploded")
            }
        }
        impl std::error::Error for Exploding {}
        let error: ReadEventError<lambda_runtime::Error> =
            ReadEventError::Handler(Box::new(Exploding));
        let diagnostic =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Diagnostic::from(error)))
                .expect("the conversion must not panic");
        assert!(
            diagnostic.error_message.contains("panicked"),
            "{diagnostic:?}"
        );
        assert!(!diagnostic.error_type.is_empty(), "{diagnostic:?}");
    }

    /// The event is read with panics quiet, so that a `Deserialize` that panics with the
    /// event's value in its message does not print it on stderr through the panic hook (the
    /// error leaves the message out; found by an attack through the emulator).
    #[test]
    fn the_event_is_read_with_panics_quiet() {
        struct Probe(bool);
        impl<'de> Deserialize<'de> for Probe {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(deserializer)?;
                Ok(Probe(powertools_core::failure::panics_are_quiet()))
            }
        }
        let read: EventOf<Probe> = serde_json::from_str("{}").unwrap();
        assert!(matches!(read.0, Ok(Probe(true))));
        assert!(!powertools_core::failure::panics_are_quiet());
        // And the hook that keeps quiet panics quiet is there without the logging layer's
        // (`powertools::run` reads events through `ReadEvent`; found by a review).
        let _service = ReadEvent::<_, Value, ()>::new(());
        assert!(powertools_core::failure::quiet_panic_hook_installed());
    }

    /// A buffered response's JSON.
    fn body<St>(response: FunctionResponse<Box<RawValue>, St>) -> String {
        match response {
            FunctionResponse::BufferedResponse(body) => body.get().to_owned(),
            FunctionResponse::StreamingResponse(_) => panic!("a buffered response"),
        }
    }

    /// `{}` as the event of a handler of `Value`s.
    fn empty_event() -> LambdaEvent<EventOf<Value>> {
        LambdaEvent::new(
            serde_json::from_str::<EventOf<Value>>("{}").unwrap(),
            lambda_runtime::Context::default(),
        )
    }

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

    /// Kinesis data that is not base64 names the record and what is wrong, as the batch README
    /// says, without the byte: the decoder's message was left out as any deserializer's own
    /// ("invalid value"; found by a new function written from the docs).
    #[cfg(feature = "events")]
    #[test]
    fn kinesis_data_that_is_not_base64_is_named_by_its_record_and_the_decoder_s_reason() {
        let record = |data: &str| {
            serde_json::json!({
                "eventSource": "aws:kinesis",
                "kinesis": {
                    "partitionKey": "p",
                    "sequenceNumber": "1",
                    "data": data,
                    "kinesisSchemaVersion": "1.0",
                    "approximateArrivalTimestamp": 1.5e9
                }
            })
        };
        let event = serde_json::json!({"Records": [record("e30="), record("!!!!")]});
        let message = read_as_the_runtime_does::<aws_lambda_events::event::kinesis::KinesisEvent>(
            event.to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(
            message.contains(
                "at Records[1].kinesis.data: not base64: a byte that is not a base64 symbol at \
                 offset 0"
            ),
            "{message}"
        );
    }

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
                "at paid: invalid type (the value is left out), expected a boolean at line 1 column",
            ),
            (
                format!(r#"{{"id":"o-1","paid":true,"quantity":"{SECRET}"}}"#),
                "at quantity: invalid type (the value is left out), expected u32",
            ),
            (
                r#"{"id":"o-1","paid":true,"quantity":4111111111111111}"#.to_owned(),
                "at quantity: invalid value (the value is left out), expected u32",
            ),
            (
                format!(r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"{SECRET}"}}"#),
                "at kind: unknown variant (its name is left out), expected `bread` or `cake`",
            ),
            (
                format!(
                    r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"cake","lines":["a",{SECRET:?}, 4111111111111111]}}"#
                ),
                "at lines[2]: invalid type (the value is left out), expected a string",
            ),
            (
                // A value that itself holds ", expected ": the last one is serde's.
                r#"{"id":"o-1","paid":"x, expected 4111111111111111"}"#.to_owned(),
                "at paid: invalid type (the value is left out), expected a boolean",
            ),
        ];
        for (body, expected) in cases {
            let message = read_as_the_runtime_does::<Order>(body.as_bytes()).failed();
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
            let message = read_as_the_runtime_does::<Order>(body.as_bytes()).failed();
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
        let message = read_as_the_runtime_does::<(u8, u8, u8)>(b"[1,2]").failed();
        assert!(
            message.contains(": invalid length 2, expected a tuple of size 3"),
            "{message}"
        );
        let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let message = read_as_the_runtime_does::<Value>(nested.as_bytes()).failed();
        assert!(message.contains("recursion limit exceeded"), "{message}");
    }

    #[test]
    fn keys_from_the_event_are_left_out_and_a_long_path_keeps_its_end() {
        let key = format!("{}ZZKEY", "k".repeat(100));
        let body = format!(
            r#"{{"id":"o-1","paid":true,"quantity":1,"kind":"cake","tags":{{"{key}":"{SECRET}"}}}}"#
        );
        let message = read_as_the_runtime_does::<Order>(body.as_bytes()).failed();
        assert!(message.contains("at tags.<key>: invalid type"), "{message}");
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
        let message = read_as_the_runtime_does::<Nested>(body.as_bytes()).failed();
        let path = message
            .split(" at ")
            .nth(1)
            .and_then(|rest| rest.split(": ").next())
            .unwrap();
        assert!(path.starts_with('…'), "{message}");
        assert!(
            path.len() <= powertools_core::serde_message::MAX_PATH_BYTES + '…'.len_utf8(),
            "{message}"
        );
        assert!(path.ends_with("<key>.<key>"), "{message}");
        assert!(!message.contains("4111"), "{message}");
    }

    #[test]
    fn a_deserializer_s_own_message_is_left_out_as_it_may_quote_the_value() {
        // As chrono's `value is not a legal timestamp: …` and aws_lambda_events' DynamoDB
        // attribute messages do.
        #[derive(Debug)]
        struct Timestamp;
        impl<'de> Deserialize<'de> for Timestamp {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let seconds = i64::deserialize(deserializer)?;
                Err(serde::de::Error::custom(format!(
                    "value is not a legal timestamp: {seconds}"
                )))
            }
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Record {
            at: Timestamp,
        }
        let message = read_as_the_runtime_does::<Record>(br#"{"at": 4111111111111111}"#).failed();
        assert!(
            message.ends_with(&format!(
                "at at: {} at line 1 column 24",
                powertools_core::serde_message::LEFT_OUT
            )),
            "{message}"
        );
        assert!(!message.contains("4111"), "{message}");
    }

    #[test]
    fn a_deserializer_that_panics_fails_the_event_not_the_process() {
        #[derive(Debug)]
        struct Fragile;
        impl<'de> Deserialize<'de> for Fragile {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                let number: u64 = text.parse().unwrap();
                let _ = number;
                Ok(Fragile)
            }
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Order {
            id: Fragile,
        }
        let message =
            read_as_the_runtime_does::<Order>(format!(r#"{{"id": "{SECRET}"}}"#).as_bytes())
                .failed();
        assert!(message.contains("its deserializer panicked"), "{message}");
        assert!(!message.contains("4111"), "{message}");
        let order = read_as_the_runtime_does::<Order>(br#"{"id": "7"}"#).unwrap();
        assert!(matches!(order.id, Fragile));
    }

    /// The second read (for the path) runs the same `Deserialize`: one that fails on the first
    /// read and panics on the second (it keeps state, or reads a clock) fails the event with
    /// the first read's error, quietly, instead of panicking in the runtime's task (the second
    /// read was outside `catch_unwind`; noticed in a review).
    #[test]
    fn a_deserializer_that_panics_only_on_the_second_read_keeps_the_first_error() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static READS: AtomicUsize = AtomicUsize::new(0);
        #[derive(Debug)]
        struct Moody;
        impl<'de> Deserialize<'de> for Moody {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(deserializer)?;
                if READS.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(serde::de::Error::custom("not today"))
                } else {
                    panic!("second read of {SECRET}")
                }
            }
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Order {
            id: Moody,
        }
        let message = read_as_the_runtime_does::<Order>(br#"{"id": "7"}"#).failed();
        assert_eq!(READS.load(Ordering::SeqCst), 2, "read twice");
        assert!(
            message.starts_with("the event does not read as")
                && !message.contains("panicked")
                && !message.contains("4111"),
            "{message}"
        );
    }

    #[test]
    fn a_name_from_the_event_in_an_unknown_field_or_variant_is_left_out() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            id: String,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            empty: Option<Empty>,
            strict: Option<Strict>,
            #[serde(default)]
            nothing: Option<Never>,
        }
        #[derive(Deserialize, Debug)]
        enum Never {}
        let huge = "9".repeat(100_000);
        for (body, expected) in [
            // The name holds ", expected ", and serde_json adds the position after
            // ", there are no fields".
            (
                format!(r#"{{"empty":{{"x, expected {SECRET}":1}}}}"#),
                "at empty: unknown field (its name is left out), there are no fields at line 1 column",
            ),
            (
                format!(r#"{{"strict":{{"id":"a","{SECRET}, expected {huge}":1}}}}"#),
                "at strict: unknown field (its name is left out), expected `id` at line 1 column",
            ),
            (
                format!(r#"{{"nothing":"{SECRET}, expected {huge}"}}"#),
                "at nothing: unknown variant (its name is left out), there are no variants at line 1 column",
            ),
        ] {
            let message = read_as_the_runtime_does::<Outer>(body.as_bytes()).failed();
            assert!(message.contains(expected), "{message} lacks {expected}");
            assert!(
                !message.contains("4111") && !message.contains("999"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_long_path_is_cut_where_a_segment_begins() {
        let mut body = format!(r#""{SECRET}""#);
        for _ in 0..100 {
            body = format!("[{body}]");
        }
        // Recursive rather than 100 `Vec`s written out: that type overflowed the compiler's
        // recursion limit in release builds (E0275, checking that it is `Unpin`).
        #[derive(Deserialize, Debug)]
        #[serde(transparent)]
        #[allow(dead_code)]
        struct Deep(Vec<Deep>);
        let message = read_as_the_runtime_does::<Deep>(body.as_bytes()).failed();
        let path = message
            .split(" at ")
            .nth(1)
            .and_then(|rest| rest.split(": ").next())
            .unwrap();
        assert!(path.starts_with("…[0]"), "{path}");
        assert!(!message.contains("4111"), "{message}");
    }

    /// A response that does not serialize (a map with keys that are not strings) is the
    /// invocation's error, as Lambda's own runtimes report it (`Runtime.MarshalError`): the
    /// runtime failed to build its request, and `lambda_runtime::run` returned, ending the
    /// process, for every invocation after it too (found by an attack).
    #[tokio::test]
    async fn a_response_that_does_not_serialize_fails_the_invocation_not_the_runtime() {
        use lambda_runtime::service_fn;
        use std::collections::HashMap;
        let error = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(HashMap::from([((1_u8, 2_u8), 3_u8)]))
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "Runtime.MarshalError");
        assert_eq!(
            diagnostic.error_message,
            "Unable to marshal response: key must be a string"
        );
        // A response that serializes is handed on as the JSON it serializes to.
        let fine = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(HashMap::from([("loaves", 3_u8)]))
        }))
        .call(empty_event())
        .await
        .expect("a response");
        assert_eq!(body(fine), r#"{"loaves":3}"#);
    }

    /// A response whose own `Serialize` refuses it (`ser::Error::custom`) may quote the value in
    /// its message (a card number): `Runtime.MarshalError` names where in the response it
    /// failed and leaves that message out, as an invalid event's is (found by an attack from
    /// the docs: the message went to the log and to Lambda whole). serde_json's own reasons are
    /// kept.
    #[tokio::test]
    async fn a_response_s_own_refusal_is_named_by_its_path_without_its_message() {
        use lambda_runtime::service_fn;
        use std::collections::HashMap;
        struct Card(&'static str);
        impl Serialize for Card {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom(format!(
                    "cannot serialize {}",
                    self.0
                )))
            }
        }
        #[derive(Serialize)]
        struct Receipt {
            lines: Vec<HashMap<&'static str, Card>>,
        }
        let error = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(Receipt {
                lines: vec![HashMap::from([("card", Card("4111111111111111"))])],
            })
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "Runtime.MarshalError");
        assert!(
            !diagnostic.error_message.contains("4111"),
            "{}",
            diagnostic.error_message
        );
        assert!(
            diagnostic
                .error_message
                .starts_with("Unable to marshal response: at lines[0].card: "),
            "{}",
            diagnostic.error_message
        );
        assert!(
            diagnostic.error_message.contains("left out"),
            "{}",
            diagnostic.error_message
        );
    }

    /// A response whose `Serialize` panics (with the tracer not capturing responses, the first
    /// to serialize it is `run`): the invocation fails as a panic, with a failure line (there was
    /// none; found by a review).
    /// A response holding NaN or ±Infinity, which JSON cannot hold, is sent as serde_json
    /// writes it (`null`), with a warning that names where (found by an attack from the docs:
    /// the values were lost without a word).
    #[tokio::test]
    async fn a_response_with_a_float_json_cannot_hold_is_sent_with_a_warning() {
        use lambda_runtime::service_fn;
        #[derive(Serialize)]
        struct Reading {
            label: Option<&'static str>,
            value: f64,
            samples: Vec<f32>,
        }
        let warnings = powertools_tests::CapturedWarnings::default();
        let _guard = tracing::subscriber::set_default(warnings.subscriber());
        let sent = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(Reading {
                label: None,
                value: 1.5,
                samples: vec![2.0, f32::NAN, f32::INFINITY],
            })
        }))
        .call(empty_event())
        .await
        .expect("a response");
        assert_eq!(
            body(sent),
            r#"{"label":null,"value":1.5,"samples":[2.0,null,null]}"#
        );
        let text = warnings.text();
        assert!(
            text.contains("at samples[1]") && text.contains("NaN") && text.contains("null"),
            "{text}"
        );
        // A response whose nulls are its own is sent without one.
        let warnings = powertools_tests::CapturedWarnings::default();
        let _guard = tracing::subscriber::set_default(warnings.subscriber());
        ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(Reading {
                label: None,
                value: f64::MAX,
                samples: vec![],
            })
        }))
        .call(empty_event())
        .await
        .expect("a response");
        assert_eq!(warnings.text(), "");
    }

    #[tokio::test]
    async fn a_response_whose_serialize_panics_fails_with_a_failure_line() {
        use lambda_runtime::service_fn;
        struct PanicsWhenSerialized;
        impl Serialize for PanicsWhenSerialized {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("the oven's receipt cannot be written")
            }
        }
        let logs = powertools_logging::MemoryLogs::new();
        let logger = powertools_logging::Logger::builder()
            .service("bakery")
            .writer(logs.clone())
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(logger.subscriber());
        let error = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Diagnostic>(PanicsWhenSerialized)
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "Panic");
        assert_eq!(
            diagnostic.error_message,
            "Lambda panicked: the oven's receipt cannot be written"
        );
        let lines = logs.json();
        assert!(
            lines
                .iter()
                .any(|line| line["message"] == "Invocation failed"
                    && line["exception_name"] == "Panic"
                    && line["exception"] == "the oven's receipt cannot be written"),
            "{lines:#?}"
        );
    }

    /// Lambda's `errorType` for a boxed error (the README's handler signature) is the type
    /// inside the box, or a powertools-rs error's Powertools name, as the failure line and the
    /// span name it: `lambda_runtime` reported
    /// `&alloc::boxed::Box<dyn core::error::Error + Send + Sync>` (found by an attack).
    #[tokio::test]
    async fn a_boxed_error_is_reported_to_lambda_as_the_layers_name_it() {
        use lambda_runtime::service_fn;
        let io = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), lambda_runtime::Error>(Box::new(std::io::Error::other("card declined")))
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(io);
        assert_eq!(diagnostic.error_type, "std::io::Error");
        assert_eq!(diagnostic.error_message, "card declined");
        // Returned as it is, or as text: as the line and the span name them.
        let io = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), _>(std::io::Error::other("card declined"))
        }))
        .call(empty_event())
        .await
        .failed();
        assert_eq!(Diagnostic::from(io).error_type, "std::io::Error");
        let text = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), _>("card declined".to_owned())
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(text);
        assert_eq!(diagnostic.error_type, "Error");
        assert_eq!(diagnostic.error_message, "card declined");
        let text = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), &'static str>("card declined")
        }))
        .call(empty_event())
        .await
        .failed();
        assert_eq!(Diagnostic::from(text).error_type, "Error");
        #[cfg(feature = "idempotency")]
        {
            let io = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
                Err::<(), _>(powertools_idempotency::Error::Handler(
                    std::io::Error::other("card declined"),
                ))
            }))
            .call(empty_event())
            .await
            .failed();
            assert_eq!(Diagnostic::from(io).error_type, "std::io::Error");
        }
        #[cfg(feature = "metrics")]
        {
            // Outside an invocation: `NoCurrentInvocation`, a metrics error of its own name.
            let refused =
                powertools_metrics::add_metric("Baked", f64::NAN, powertools_metrics::Unit::Count)
                    .failed();
            let (error_type, message) = (refused.error_type(), refused.to_string());
            let metric = ReadEvent::new(service_fn(move |_: LambdaEvent<Value>| {
                let refused = powertools_metrics::add_metric(
                    "Baked",
                    f64::NAN,
                    powertools_metrics::Unit::Count,
                );
                async move { refused.map_err(lambda_runtime::Error::from) }
            }))
            .call(empty_event())
            .await
            .failed();
            let diagnostic = Diagnostic::from(metric);
            assert_eq!(diagnostic.error_type, error_type);
            assert_eq!(diagnostic.error_message, message);
        }
    }

    /// The `InvalidEvent` failure line an event the handler's type cannot hold writes, invoked
    /// with `context`.
    #[cfg(feature = "logging")]
    async fn invalid_event_failure_line(context: lambda_runtime::Context) -> Value {
        use lambda_runtime::service_fn;
        let logs = powertools_logging::MemoryLogs::new();
        let logger = powertools_logging::Logger::builder()
            .service("orders")
            .writer(logs.clone())
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let _subscriber = powertools_tests::set_test_default(logger.subscriber());
        let mut service = ReadEvent::new(service_fn(|event: LambdaEvent<Order>| async move {
            Ok::<_, Diagnostic>(event.payload.id)
        }));
        let invalid: EventOf<Order> = serde_json::from_str(r#"{"id":1}"#).unwrap();
        service
            .call(LambdaEvent::new(invalid, context))
            .await
            .failed();
        let lines = logs.lines();
        let line = lines
            .iter()
            .find(|line| line.contains(r#""exception_name":"InvalidEvent""#))
            .unwrap_or_else(|| panic!("{lines:?}"));
        // The standard keys first, as on every line: then `exception_name` and `exception`.
        let at = |key: &str| line.find(&format!("\"{key}\":"));
        for key in ["cold_start", "function_name", "function_arn"] {
            assert!(
                at(key).is_some_and(|position| at("exception_name").is_some_and(|e| position < e)),
                "{key} after exception_name: {line}"
            );
        }
        serde_json::from_str(line).unwrap()
    }

    /// The failure line of an event the handler's type cannot hold says `cold_start`, as every
    /// line of an invocation does: it said `extra_cold_start`, the name a field takes beside a
    /// standard key, which a Logs Insights query on `cold_start` misses (found by an attack on
    /// the facade from the docs).
    #[cfg(feature = "logging")]
    #[tokio::test]
    async fn an_invalid_event_s_failure_line_says_cold_start() {
        let failure = invalid_event_failure_line(lambda_runtime::Context::default()).await;
        assert!(failure["cold_start"].is_boolean(), "{failure}");
        assert!(failure.get("extra_cold_start").is_none(), "{failure}");
    }

    /// The failure line of an event the handler's type cannot hold carries the Lambda context
    /// keys every other line of the function has: a Logs Insights query or a dashboard that
    /// filters on `function_name` (one log group per platform, many functions) found every
    /// failure of the function but these (they had the request id and `cold_start` only).
    #[cfg(feature = "logging")]
    #[tokio::test]
    async fn an_invalid_event_s_failure_line_carries_the_lambda_context_keys() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let context = powertools_core::testing::TestContext::new()
            .with_request_id("req-invalid")
            .with_function_name("orders-api")
            .with_function_arn("arn:aws:lambda:eu-west-1:123456789012:function:orders-api")
            .with_function_version("7")
            .with_memory_size_mb(256)
            .with_trace_id(header)
            .with_tenant_id("tenant-9")
            .build();
        let failure = invalid_event_failure_line(context).await;
        assert_eq!(failure["function_name"], "orders-api", "{failure}");
        assert_eq!(failure["function_memory_size"], 256, "{failure}");
        assert_eq!(
            failure["function_arn"], "arn:aws:lambda:eu-west-1:123456789012:function:orders-api",
            "{failure}"
        );
        assert_eq!(failure["function_version"], "7", "{failure}");
        assert_eq!(
            failure["xray_trace_id"], "1-5759e988-bd862e3fe1be46a994272793",
            "{failure}"
        );
        assert_eq!(failure["tenant_id"], "tenant-9", "{failure}");
        assert!(
            failure
                .as_object()
                .unwrap()
                .keys()
                .all(|key| !key.starts_with("extra_")),
            "{failure}"
        );
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
            .failed();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "InvalidEvent");
        // Without `RawEventLayer` (which `run` adds) the bytes are gone: no path, but still
        // what was expected, and never the value.
        assert!(
            diagnostic.error_message.ends_with(
                "Order: invalid type (the value is left out), expected a string at line 1 column 7"
            ),
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
        assert_eq!(body(answer), r#""o-2""#);
        assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 1);

        let failing = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            Err::<(), _>(Diagnostic {
                error_type: "Declined".to_owned(),
                error_message: "card declined".to_owned(),
            })
        }))
        .call(empty_event())
        .await
        .failed();
        assert_eq!(
            Diagnostic::from(failing).error_type,
            "Declined",
            "the handler's own error"
        );

        // A handler that panics, in its future or when called: Lambda gets `Panic` and the
        // message, as `lambda_runtime` words it.
        let panicking = ReadEvent::new(service_fn(|_: LambdaEvent<Value>| async {
            if true {
                panic!("oven on fire");
            }
            Ok::<(), Diagnostic>(())
        }))
        .call(empty_event())
        .await
        .failed();
        let diagnostic = Diagnostic::from(panicking);
        assert_eq!(diagnostic.error_type, "Panic");
        assert_eq!(diagnostic.error_message, "Lambda panicked: oven on fire");
        struct PanicsWhenCalled;
        impl Service<LambdaEvent<Value>> for PanicsWhenCalled {
            type Response = ();
            type Error = Diagnostic;
            type Future = std::future::Ready<Result<(), Diagnostic>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Diagnostic>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: LambdaEvent<Value>) -> Self::Future {
                panic!("{}", String::from("no oven"))
            }
        }
        let error = ReadEvent::new(PanicsWhenCalled)
            .call(empty_event())
            .await
            .failed();
        assert_eq!(
            Diagnostic::from(error).error_message,
            "Lambda panicked: no oven"
        );
    }

    /// A panic whose payload is an error (`panic_any(io_error)`, a boxed error) says its message,
    /// and one that is neither text nor an error says so (found by an attack: both were `Lambda
    /// panicked`).
    #[tokio::test]
    async fn a_panic_s_payload_that_is_an_error_or_neither_is_described() {
        let panicking = |payload: fn() -> Box<dyn std::any::Any + Send>| {
            ReadEvent::new(lambda_runtime::service_fn(
                move |_: LambdaEvent<Value>| async move {
                    if true {
                        std::panic::resume_unwind(payload());
                    }
                    Ok::<(), Diagnostic>(())
                },
            ))
        };
        let message = |error: ReadEventError<Diagnostic>| Diagnostic::from(error).error_message;
        let io = panicking(|| Box::new(std::io::Error::other("disk full")))
            .call(empty_event())
            .await
            .failed();
        assert_eq!(message(io), "Lambda panicked: disk full");
        let boxed = panicking(|| {
            let error: lambda_runtime::Error = "oven on fire".into();
            Box::new(error)
        })
        .call(empty_event())
        .await
        .failed();
        assert_eq!(message(boxed), "Lambda panicked: oven on fire");
        let number = panicking(|| Box::new(42_u8))
            .call(empty_event())
            .await
            .failed();
        assert_eq!(
            message(number),
            "Lambda panicked with a payload that is neither text nor an error"
        );
    }
}
