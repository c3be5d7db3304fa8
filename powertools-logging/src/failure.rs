//! What the failure line of an invocation says: `exception_name`, `exception` (the message chain)
//! and, for a panic, `stack_trace`, the keys Powertools for Python writes for an exception.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::sync::Once;

use lambda_runtime::Diagnostic;
use powertools_core::error_chain::message_chain;
use powertools_core::failure::{ErrorDescriptions, debug_type_name, error_type_name};

use crate::json::{Redactor, redacted_message, write_str};

/// An error or a panic, as the failure line writes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// `exception_name`.
    pub(crate) name: String,
    /// `exception`: the message, then the messages of its sources.
    pub(crate) message: String,
    /// Whether a layer inside reported it as (or as holding) its handler's panic, which it
    /// caught: written as a panic, with the capture it handed on.
    pub(crate) panicked: bool,
}

impl Failure {
    fn new(name: String, message: String) -> Self {
        Failure {
            name,
            message,
            panicked: false,
        }
    }
}

/// The name written for an error that is only a message (`"card declined".into()`, a `String`):
/// it has no type of its own to name.
const MESSAGE_ONLY: &str = "Error";

/// The name written for a panic.
pub(crate) const PANIC: &str = "Panic";

/// Describes a handler error, by the first of:
///
/// 1. the caller's hook, when the error is of its type;
/// 2. a [`Diagnostic`]: its `error_type` and `error_message`, as Lambda reports them;
/// 3. a boxed `dyn Error` (`lambda_runtime::Error`): the type or variant name its `Debug` begins
///    with (`else Error`), and its message chain;
/// 4. a `String` or `&str`: `Error`, and the text;
/// 5. an error wrapped by a powertools-rs layer (`Handler(…)` in its `Debug`, as the metrics and
///    idempotency layers pass the handler's own error on): what is inside, a `Diagnostic` as in
///    2, another error named as in 3, or, for an error of the idempotency layer's own, by
///    Powertools' name and message, as Lambda reports it;
/// 6. any other type: its path without generic arguments, and its `Debug` text (the layer has
///    no `Display` bound, since Lambda accepts a `Diagnostic`, which has none).
pub(crate) fn describe_error<E: fmt::Debug + 'static>(
    error: &E,
    hook: Option<&ErrorDescriptions>,
) -> Failure {
    let any: &dyn Any = error;
    if let Some(diagnostic) = hook.and_then(|hook| hook.describe(any)) {
        // Described by the function's own words (the facade's, for the idempotency layer's
        // errors), and still a panic when a layer inside reported it as one.
        let mut failure = from_diagnostic(diagnostic);
        let debug = text_of(format_args!("{error:?}"));
        failure.panicked = powertools_core::failure::reported(
            powertools_core::failure::inside_handler_wrappers(&debug),
        )
        .is_some_and(|reported| reported.panicked);
        return failure;
    }
    if let Some(diagnostic) = any.downcast_ref::<Diagnostic>() {
        return from_diagnostic(diagnostic.clone());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
        return from_error(boxed.as_ref());
    }
    // Not by its `Debug`, which begins with its private representation (`Custom { .. }`).
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return from_error(io);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send>>() {
        return from_error(boxed.as_ref());
    }
    if let Some(text) = any.downcast_ref::<String>() {
        return message_only(text.clone());
    }
    if let Some(text) = any.downcast_ref::<&'static str>() {
        return message_only((*text).to_owned());
    }
    let debug = text_of(format_args!("{error:?}"));
    let inner = powertools_core::failure::inside_handler_wrappers(&debug);
    // An error of a powertools-rs layer inside (the idempotency layer's): what Lambda reports
    // for it, as that layer said (see `powertools_core::failure`).
    if let Some((reported, message)) = powertools_core::failure::reported_with_message(inner) {
        return Failure {
            name: reported.error_type.to_owned(),
            message,
            panicked: reported.panicked,
        };
    }
    if inner.len() < debug.len() {
        // The handler's `Diagnostic`, which the layer between passed on.
        if let Some(diagnostic) = powertools_core::failure::diagnostic_in_debug(inner) {
            return from_diagnostic(diagnostic);
        }
        return match unquoted(inner) {
            Some(message) => message_only(message),
            None => Failure::new(
                debug_type_name(inner).unwrap_or(MESSAGE_ONLY).to_owned(),
                inner.to_owned(),
            ),
        };
    }
    Failure::new(powertools_core::failure::type_path::<E>().to_owned(), debug)
}

/// An error of type `E` whose description panicked (its `Display` or `Debug`): named by its
/// type, and said so.
pub(crate) fn undescribable<E>() -> Failure {
    use powertools_core::failure::{UNDESCRIBABLE, type_path};
    Failure::new(type_path::<E>().to_owned(), UNDESCRIBABLE.to_owned())
}

/// Describes an error recorded as a `tracing` field (`error = &err as &dyn Error`).
pub(crate) fn from_error(error: &(dyn StdError + 'static)) -> Failure {
    // An idempotent call's own error returned boxed (`Idempotency::run`'s, whose handler error
    // type is the caller's): by the name the call reported for it, as Lambda reports it.
    if let Some((reported, message)) = powertools_core::failure::reported_for(error) {
        return Failure {
            name: reported.error_type.to_owned(),
            message,
            panicked: reported.panicked,
        };
    }
    let debug = text_of(format_args!("{error:?}"));
    Failure::new(
        error_type_name(error, &debug)
            .unwrap_or(MESSAGE_ONLY)
            .to_owned(),
        message_chain(error),
    )
}

fn from_diagnostic(diagnostic: Diagnostic) -> Failure {
    Failure::new(diagnostic.error_type, diagnostic.error_message)
}

fn message_only(message: String) -> Failure {
    Failure::new(MESSAGE_ONLY.to_owned(), message)
}

/// The text of a `Debug`-quoted string (`"card declined"`), if that is what `debug` is.
fn unquoted(debug: &str) -> Option<String> {
    if !(debug.len() >= 2 && debug.starts_with('"') && debug.ends_with('"')) {
        return None;
    }
    // Rust's string escapes are JSON's for all but the rare `\u{…}` and `\'`.
    serde_json::from_str(debug)
        .ok()
        .or_else(|| Some(debug[1..debug.len() - 1].to_owned()))
}

/// Formats without ever panicking: a failing `Display` or `Debug` leaves a marker.
fn text_of(arguments: fmt::Arguments<'_>) -> String {
    let mut text = String::new();
    if text.write_fmt(arguments).is_err() {
        text.push_str("<formatting failed>");
    }
    text
}

/// A panic as the hook saw it: where, and the stack.
struct Captured {
    message: Option<String>,
    location: Option<String>,
    backtrace: Backtrace,
}

/// The message a panic carries (`panic!("…")`), if it is text.
fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    powertools_core::error_chain::panic_text(payload).map(str::to_owned)
}

/// Chains a panic hook that keeps each panic's location and backtrace for the failure line, then
/// runs the hook that was there (Rust's message on stderr, by default), over core's
/// `install_quiet_panic_hook`, which leaves out a panic inside
/// `powertools_core::failure::quiet_panics`. Installed once, by the
/// first [`LoggingLayer`](crate::LoggingLayer); a hook set later replaces it, and failure lines
/// then have no `stack_trace`.
pub(crate) fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Chained over core's hook, which keeps a panic inside `quiet_panics` (an event's
        // `Deserialize`, whose message may quote the event) from the hooks before it.
        powertools_core::failure::install_quiet_panic_hook();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = Captured {
                message: panic_message(info.payload()),
                location: info
                    .location()
                    .map(|location| format!("{}:{}", location.file(), location.line())),
                // Resolved into names only if a failure line is written.
                backtrace: Backtrace::force_capture(),
            };
            // Kept on this thread for the code that catches the panic: this crate's layer, or
            // the idempotency layer, which hands it on in the invocation's scope.
            powertools_core::failure::keep_panic_capture(
                captured.message.clone(),
                Box::new(captured),
            );
            previous(info);
        }));
    });
}

/// A caught panic, described for the failure line.
#[derive(Debug)]
pub(crate) struct PanicReport {
    pub(crate) failure: Failure,
    /// `file:line` of the `panic!`, when the hook saw it.
    pub(crate) location: Option<String>,
    /// The `stack_trace` member, when the hook captured a backtrace.
    pub(crate) stack_trace: Option<StackTrace>,
}

/// A panic's `stack_trace`: its message and its frames, written with the line's redaction (the
/// message is the `exception`'s, masked alike).
#[derive(Debug)]
pub(crate) struct StackTrace {
    value: String,
    /// The `frames` array's JSON.
    frames: Vec<u8>,
}

impl StackTrace {
    /// `{"type":"Panic","value":…,"frames":[…]}`, the shape of Powertools for Python's
    /// `stack_trace`.
    pub(crate) fn to_json(&self, redactor: &Redactor) -> Vec<u8> {
        let value = redacted_message(&self.value, redactor);
        let mut out = Vec::with_capacity(32 + value.len() + self.frames.len());
        out.extend_from_slice(b"{\"type\":");
        write_str(&mut out, PANIC);
        out.extend_from_slice(b",\"value\":");
        write_str(&mut out, &value);
        out.extend_from_slice(b",\"frames\":");
        out.extend_from_slice(&self.frames);
        out.push(b'}');
        out
    }
}

/// What the idempotency layer reports for a handler that panicked: it catches the panic to free
/// the claim, and returns this error (`the handler panicked: <message>`).
const HANDLER_PANICKED: &str = "HandlerPanicked";

/// A failure that a layer inside reported as its handler's panic (`HandlerPanicked`, or a failed
/// delete after it: found by an attack, it was written as `Invocation failed` without either), with the
/// panic's location and `stack_trace` from the capture that layer handed on in the invocation's
/// scope (taken where it caught the panic, so it is this invocation's); `Err` for any other
/// failure, or without a capture.
pub(crate) fn caught_panic(failure: Failure) -> Result<PanicReport, Failure> {
    if failure.name != HANDLER_PANICKED && !failure.panicked {
        return Err(failure);
    }
    let Some(captured) = powertools_core::failure::take_caught_panic().and_then(hook_capture)
    else {
        return Err(failure);
    };
    let value = captured
        .message
        .clone()
        .unwrap_or_else(|| failure.message.clone());
    Ok(PanicReport::with_capture(failure, Some(captured), value))
}

/// The capture this crate's panic hook kept, from the box it was handed on in.
fn hook_capture(capture: Box<dyn Any + Send>) -> Option<Box<Captured>> {
    capture.downcast().ok()
}

impl PanicReport {
    /// `failure`, with the location and the stack trace (whose `value` is `value`) of
    /// `captured`, when the hook captured the panic.
    fn with_capture(failure: Failure, captured: Option<Box<Captured>>, value: String) -> Self {
        let (location, stack_trace) = match captured {
            Some(captured) => (
                captured.location,
                frames_json(&captured.backtrace).map(|frames| StackTrace { value, frames }),
            ),
            None => (None, None),
        };
        PanicReport {
            failure,
            location,
            stack_trace,
        }
    }
}

/// Describes the panic whose payload was just caught on this thread.
pub(crate) fn describe_panic(payload: &(dyn Any + Send)) -> PanicReport {
    let message = panic_message(payload);
    // Handed on in the invocation's scope by a layer inside that caught the panic and resumed
    // it after an await (the idempotency layer, after freeing its claim), else on this thread,
    // where the hook left it in this poll. Either is this panic's only with its message.
    let captured = powertools_core::failure::take_caught_panic()
        .and_then(hook_capture)
        .filter(|captured| captured.message == message)
        .or_else(|| powertools_core::failure::take_panic_capture(payload).and_then(hook_capture));
    // Text is what the hook captured and is compared with; an error payload is described too.
    let value = message
        .or_else(|| powertools_core::error_chain::panic_description(payload))
        .unwrap_or_else(|| {
            format!(
                "the handler panicked with {}",
                powertools_core::error_chain::UNREADABLE_PANIC
            )
        });
    let failure = Failure::new(PANIC.to_owned(), value.clone());
    PanicReport::with_capture(failure, captured, value)
}

/// The most frames a `stack_trace` lists: those nearest the panic.
const MAX_FRAMES: usize = 24;

/// One frame of a backtrace.
#[derive(Debug, PartialEq, Eq)]
struct Frame<'a> {
    function: &'a str,
    file: Option<&'a str>,
    line: Option<u32>,
}

/// Reads the frames of a backtrace's text (`  3: crate::function` then `at file:line:column`).
fn frames(text: &str) -> Vec<Frame<'_>> {
    let mut frames: Vec<Frame<'_>> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(at) = line.strip_prefix("at ") {
            let mut parts = at.rsplitn(3, ':');
            let (_column, number, file) = (parts.next(), parts.next(), parts.next());
            if let (Some(frame), Some(file), Some(number)) = (frames.last_mut(), file, number) {
                frame.file = Some(file);
                frame.line = number.parse().ok();
            }
        } else if let Some((index, function)) = line.split_once(": ")
            && !index.is_empty()
            && index.bytes().all(|byte| byte.is_ascii_digit())
        {
            frames.push(Frame {
                function,
                file: None,
                line: None,
            });
        }
    }
    frames
}

/// Whether a frame belongs to the panic machinery (std's, and this hook), above the panic site.
fn is_panic_machinery(function: &str) -> bool {
    [
        "rust_begin_unwind",
        "core::panicking::",
        "std::panicking::",
        "std::panic::",
        "std::backtrace",
        "std::sys::backtrace",
        "powertools_logging::failure::",
        "<alloc::boxed::Box<F,A> as core::ops::function::Fn",
    ]
    .iter()
    .any(|machinery| function.contains(machinery))
}

/// `[{"file","line","function"},…]`, the frames of Powertools for Python's `stack_trace`, in
/// Python's order: the panicking function last.
fn frames_json(backtrace: &Backtrace) -> Option<Vec<u8>> {
    if backtrace.status() != BacktraceStatus::Captured {
        return None;
    }
    let text = backtrace.to_string();
    let all = frames(&text);
    // The panic site is the first frame after the panic's entry into std (`panic_fmt`,
    // `rust_begin_unwind`) that is not std's; frames further out (a `catch_unwind` of the
    // caller) are the caller's.
    let entry = all
        .iter()
        .position(|frame| {
            frame.function.contains("core::panicking::")
                || frame.function.contains("rust_begin_unwind")
                || frame.function.contains("std::panicking::begin_panic")
        })
        .unwrap_or(0);
    let first_user = all
        .iter()
        .enumerate()
        .skip(entry)
        .find(|(_, frame)| !is_panic_machinery(frame.function))
        .map_or(all.len(), |(index, _)| index);
    let mut kept: Vec<&Frame<'_>> = all[first_user..].iter().take(MAX_FRAMES).collect();
    kept.reverse();
    let mut out = Vec::with_capacity(2 + kept.len() * 96);
    out.push(b'[');
    for (index, frame) in kept.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"file\":");
        match frame.file {
            Some(file) => write_str(&mut out, file),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"line\":");
        match frame.line {
            Some(line) => out.extend_from_slice(itoa::Buffer::new().format(line).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"function\":");
        write_str(&mut out, frame.function);
        out.push(b'}');
    }
    out.push(b']');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct PaymentFailed {
        #[allow(dead_code)] // read through Debug
        order_id: &'static str,
    }

    impl fmt::Display for PaymentFailed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("payment failed")
        }
    }

    impl StdError for PaymentFailed {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            static CAUSE: std::sync::LazyLock<std::io::Error> =
                std::sync::LazyLock::new(|| std::io::Error::other("provider timed out"));
            Some(&*CAUSE)
        }
    }

    /// How the metrics and idempotency layers wrap the handler's error.
    #[derive(Debug)]
    enum Wrapper<E> {
        Handler(E),
    }

    #[test]
    fn a_boxed_error_is_named_by_its_type_with_its_message_chain() {
        let error: lambda_runtime::Error = Box::new(PaymentFailed { order_id: "o-1" });
        assert_eq!(
            describe_error(&error, None),
            Failure::new(
                "PaymentFailed".to_owned(),
                "payment failed: provider timed out".to_owned()
            )
        );
        let message: lambda_runtime::Error = "card declined".into();
        assert_eq!(describe_error(&message, None).name, "Error");
        assert_eq!(describe_error(&message, None).message, "card declined");
    }

    #[test]
    fn an_error_inside_powertools_wrappers_is_named_by_what_is_inside() {
        let nested = Wrapper::Handler(Wrapper::Handler(PaymentFailed { order_id: "o-1" }));
        let failure = describe_error(&nested, None);
        assert_eq!(failure.name, "PaymentFailed");
        assert_eq!(failure.message, r#"PaymentFailed { order_id: "o-1" }"#);
        let boxed: Wrapper<lambda_runtime::Error> = Wrapper::Handler("card \"x\" declined".into());
        assert_eq!(
            describe_error(&boxed, None),
            Failure::new("Error".to_owned(), "card \"x\" declined".to_owned())
        );
    }

    #[test]
    fn a_diagnostic_and_a_hook_give_lambdas_error_type() {
        let diagnostic = Diagnostic {
            error_type: "OutOfFlour".to_owned(),
            error_message: "no flour left".to_owned(),
        };
        assert_eq!(describe_error(&diagnostic, None).name, "OutOfFlour");
        let hook = ErrorDescriptions::then(None, |code: &u8| Diagnostic {
            error_type: "Code".to_owned(),
            error_message: code.to_string(),
        });
        assert_eq!(describe_error(&7_u8, Some(&hook)).name, "Code");
        assert_eq!(describe_error(&7_u16, Some(&hook)).name, "u16");
        // A second hook is tried first, and the first still describes its own type.
        let both = ErrorDescriptions::then(Some(&hook), |_: &u16| Diagnostic {
            error_type: "Wide".to_owned(),
            error_message: String::new(),
        });
        assert_eq!(describe_error(&7_u16, Some(&both)).name, "Wide");
        assert_eq!(describe_error(&7_u8, Some(&both)).name, "Code");
        // A hook that panics describes nothing: the error is named as without it.
        let panicking = ErrorDescriptions::then(Some(&both), |_: &u8| -> Diagnostic {
            panic!("the hook failed")
        });
        assert_eq!(describe_error(&7_u8, Some(&panicking)).name, "Code");
        assert_eq!(describe_error(&7_u32, Some(&panicking)).name, "u32");
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "charge failed: {}", self.0)
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("timed out"));
        assert_eq!(message_chain(&error), "charge failed: timed out");
    }

    #[test]
    fn backtrace_text_is_read_into_frames() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/library/std/src/backtrace.rs:312:13\n   1: core::panicking::panic_fmt\n   2: orders::bake\n             at src/bake.rs:12:5\n   3: orders::main\n";
        assert_eq!(
            frames(text),
            [
                Frame {
                    function: "std::backtrace::Backtrace::force_capture",
                    file: Some("/rustc/x/library/std/src/backtrace.rs"),
                    line: Some(312)
                },
                Frame {
                    function: "core::panicking::panic_fmt",
                    file: None,
                    line: None
                },
                Frame {
                    function: "orders::bake",
                    file: Some("src/bake.rs"),
                    line: Some(12)
                },
                Frame {
                    function: "orders::main",
                    file: None,
                    line: None
                },
            ]
        );
    }
    /// The report `powertools_idempotency::Error::reported` builds for `DeleteFailed { error:
    /// Handler(…), source }`, `source_debug` and `source_display` its source's.
    fn around(source_debug: &str, source_display: &str) -> powertools_core::failure::Reported {
        powertools_core::failure::Reported {
            debug: "DeleteFailed { error: Handler(".to_owned(),
            debug_end: format!("), source: {source_debug} }}"),
            handler_within: true,
            error_type: "IdempotencyPersistenceLayerError",
            message: format!(
                "; releasing the in-progress record then failed too: {source_display}"
            ),
            panicked: false,
        }
    }

    /// An error whose `Debug` is the given text.
    struct DebugText(&'static str);
    impl fmt::Debug for DebugText {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    /// Nested layers around a failed release (an inner idempotency layer whose release
    /// succeeded, or a metrics layer, passing the handler's error on as `Handler(…)`): the
    /// handler's error is written as a single layer writes it, without the wrapper (found by a
    /// review).
    #[tokio::test]
    async fn a_failed_release_in_nested_layers_writes_the_handler_s_error_unwrapped() {
        let failure = powertools_core::failure::scope(async {
            powertools_core::failure::report(around(r#""throttled""#, "throttled"));
            describe_error(
                &DebugText(
                    r#"DeleteFailed { error: Handler(Handler(Declined { code: 51 })), source: "throttled" }"#,
                ),
                None,
            )
        })
        .await;
        assert_eq!(failure.name, "IdempotencyPersistenceLayerError");
        assert!(
            failure
                .message
                .starts_with("Declined { code: 51 }; releasing"),
            "{}",
            failure.message
        );
    }

    /// Nested idempotency layers whose releases both failed: the inner failed release is
    /// written by its report (the handler's error, then its release's words), not by its
    /// `Debug`, which holds the store's raw answer (found by a review).
    #[tokio::test]
    async fn two_failed_releases_in_nested_layers_are_written_by_their_reports() {
        let failure = powertools_core::failure::scope(async {
            // The inner layer reports first, then the outer one.
            powertools_core::failure::report(around(
                r#"Custom { kind: Other, error: "raw response: SdkBody" }"#,
                "throttled",
            ));
            powertools_core::failure::report(around(r#""refused""#, "refused"));
            describe_error(
                &DebugText(
                    r#"DeleteFailed { error: Handler(DeleteFailed { error: Handler(Declined { code: 51 }), source: Custom { kind: Other, error: "raw response: SdkBody" } }), source: "refused" }"#,
                ),
                None,
            )
        })
        .await;
        assert_eq!(failure.name, "IdempotencyPersistenceLayerError");
        assert_eq!(
            failure.message,
            "Declined { code: 51 }; releasing the in-progress record then failed too: \
             throttled; releasing the in-progress record then failed too: refused"
        );
    }
    /// Nested idempotency layers: the inner one's handler panicked and its release failed, then
    /// the outer one's release failed too: still the handler's panic (found by a review: the
    /// inner report's message was kept, its panic dropped).
    #[tokio::test]
    async fn a_failed_release_around_an_inner_layer_s_panic_is_still_a_panic() {
        let failure = powertools_core::failure::scope(async {
            powertools_core::failure::report(powertools_core::failure::Reported {
                debug: r#"DeleteFailed { error: HandlerPanicked { message: "boom" }, source: "throttled" }"#
                    .to_owned(),
                debug_end: String::new(),
                handler_within: false,
                error_type: "IdempotencyPersistenceLayerError",
                message: "the handler panicked: boom; releasing the in-progress record then \
                          failed too: throttled"
                    .to_owned(),
                panicked: true,
            });
            powertools_core::failure::report(around(r#""refused""#, "refused"));
            describe_error(
                &DebugText(
                    r#"DeleteFailed { error: Handler(DeleteFailed { error: HandlerPanicked { message: "boom" }, source: "throttled" }), source: "refused" }"#,
                ),
                None,
            )
        })
        .await;
        assert!(
            failure.message.starts_with("the handler panicked: boom"),
            "{}",
            failure.message
        );
        assert!(failure.panicked, "the inner report's panic is lost");
    }
}
