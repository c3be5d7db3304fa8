//! The `exception.type` and `exception.message` of a handler error.
//!
//! Lambda reports a handler error as the `Diagnostic` the error converts into, but that conversion
//! consumes the error, and the layer must hand the error back unchanged; so the type is found from
//! a reference, by the error's own type where Rust knows it.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};

use lambda_runtime::Diagnostic;
use powertools_core::failure::{ErrorDescriptions, error_type_name};

/// What the span records of an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Exception {
    pub(crate) kind: Cow<'static, str>,
    pub(crate) message: String,
}

/// The type recorded for an error that is only a message (`"card declined".into()`, a `String`):
/// it has no type of its own to name.
const MESSAGE_ONLY: &str = "Error";

/// Describes `error`: with the caller's hook when the error is of its type, else by the first of
///
/// 1. a [`Diagnostic`]: its `error_type` and `error_message`, as Lambda reports them;
/// 2. a boxed `dyn Error` (`lambda_runtime::Error`): the `error_type` of a powertools-rs error
///    inside, else the type or variant name its `Debug` begins with (`OrderRejected { .. }` gives
///    `OrderRejected`), else `Error` for a message only; the message is its `Display`;
/// 3. a `String` or `&str`: `Error`, and the text;
/// 4. an error of the idempotency layer's own: Powertools' name and the message, as Lambda
///    reports them (that layer says so, see `powertools_core::failure`), and a handler's
///    `Diagnostic` that a powertools-rs layer between passed on in its `Handler(…)`, as in 1;
/// 5. any other type: its path without generic arguments (`orders_api::OrderError`), and its
///    `Debug` text (the layer has no `Display` bound: `Diagnostic` has none).
pub(crate) fn describe<E: fmt::Debug + 'static>(
    error: &E,
    hook: Option<&ErrorDescriptions>,
) -> Exception {
    let any: &dyn Any = error;
    if let Some(diagnostic) = hook.and_then(|hook| hook.describe(any)) {
        return from_diagnostic(diagnostic);
    }
    if let Some(diagnostic) = any.downcast_ref::<Diagnostic>() {
        return from_diagnostic(diagnostic.clone());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
        return boxed_error(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send>>() {
        return boxed_error(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError>>() {
        return boxed_error(boxed.as_ref());
    }
    // As the logging layer names it: `std::io::Error`, not the path of its module.
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return boxed_error(io);
    }
    if let Some(text) = any.downcast_ref::<String>() {
        return message_only(text.clone());
    }
    if let Some(text) = any.downcast_ref::<&'static str>() {
        return message_only((*text).to_owned());
    }
    let debug = text_of(format_args!("{error:?}"));
    let inner = powertools_core::failure::inside_handler_wrappers(&debug);
    // An error of a powertools-rs layer inside (the idempotency layer's, within the `Handler(…)`
    // of the layers between, nested idempotency layers): what Lambda reports for it, as that
    // layer said (see `powertools_core::failure`).
    if let Some((reported, message)) = powertools_core::failure::reported_with_message(inner) {
        return Exception {
            kind: Cow::Borrowed(reported.error_type),
            message,
        };
    }
    // The handler's `Diagnostic`, which a layer between (metrics, idempotency) passed on.
    if inner.len() < debug.len()
        && let Some(diagnostic) = powertools_core::failure::diagnostic_in_debug(inner)
    {
        return from_diagnostic(diagnostic);
    }
    Exception {
        kind: Cow::Borrowed(powertools_core::failure::type_path::<E>()),
        message: debug,
    }
}

impl Exception {
    /// Cuts the type to at most `bytes`, on a character boundary.
    pub(crate) fn bound_kind(&mut self, bytes: usize) {
        if self.kind.len() > bytes {
            let end = self.kind.floor_char_boundary(bytes);
            self.kind = Cow::Owned(self.kind[..end].to_owned());
        }
    }
}

fn from_diagnostic(diagnostic: Diagnostic) -> Exception {
    Exception {
        kind: Cow::Owned(diagnostic.error_type),
        message: diagnostic.error_message,
    }
}

/// An error of type `E` whose description panicked (its `Display` or `Debug`): named by its
/// type, and said so.
pub(crate) fn undescribable<E>() -> Exception {
    use powertools_core::failure::{UNDESCRIBABLE, type_path};
    Exception {
        kind: Cow::Borrowed(type_path::<E>()),
        message: UNDESCRIBABLE.to_owned(),
    }
}

fn message_only(message: String) -> Exception {
    Exception {
        kind: Cow::Borrowed(MESSAGE_ONLY),
        message,
    }
}

fn boxed_error(error: &(dyn StdError + 'static)) -> Exception {
    // An idempotent call's own error returned boxed (`Idempotency::run`'s, whose handler error
    // type is the caller's): by the name the call reported for it, as Lambda reports it.
    if let Some((reported, message)) = powertools_core::failure::reported_for(error) {
        return Exception {
            kind: Cow::Borrowed(reported.error_type),
            message,
        };
    }
    let message = text_of(format_args!("{error}"));
    // The powertools-rs errors this crate can name: their Diagnostic's error_type.
    let known = error
        .downcast_ref::<powertools_core::Error>()
        .map(powertools_core::Error::error_type)
        .or_else(|| {
            error
                .downcast_ref::<crate::Error>()
                .map(crate::Error::error_type)
        });
    let kind = match known {
        Some(kind) => Cow::Borrowed(kind),
        None => error_type_name(error, &text_of(format_args!("{error:?}")))
            .map_or(Cow::Borrowed(MESSAGE_ONLY), |name| {
                Cow::Owned(name.to_owned())
            }),
    };
    Exception { kind, message }
}

/// Formats without ever panicking: a failing `Display` or `Debug` leaves a marker.
fn text_of(arguments: fmt::Arguments<'_>) -> String {
    let mut text = String::new();
    if text.write_fmt(arguments).is_err() {
        text.push_str("<formatting failed>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_of_another_type_is_passed_over() {
        let hook = ErrorDescriptions::then(None, |code: &u8| Diagnostic {
            error_type: "Code".to_owned(),
            error_message: code.to_string(),
        });
        assert_eq!(
            describe(&7_u8, Some(&hook)),
            Exception {
                kind: "Code".into(),
                message: "7".to_owned()
            }
        );
        assert_eq!(
            describe(&"late".to_owned(), Some(&hook)),
            Exception {
                kind: "Error".into(),
                message: "late".to_owned()
            }
        );
    }

    /// A boxed I/O error is `std::io::Error`, not the first word of its `Debug` (`Os`,
    /// `Custom`: its private representation).
    #[test]
    fn a_boxed_io_error_is_named_by_its_type() {
        let errors: [lambda_runtime::Error; 2] = [
            Box::new(std::io::Error::from_raw_os_error(2)),
            Box::new(std::io::Error::other("disk full")),
        ];
        for error in errors {
            let exception = describe(&error, None);
            assert_eq!(exception.kind, "std::io::Error", "{error:?}");
            assert_eq!(exception.message, error.to_string());
        }
        // A type of the user's whose Debug looks like an I/O error's keeps its own name.
        #[derive(Debug)]
        enum Reason {
            Timeout,
        }
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Kind(Reason);
        impl fmt::Display for Kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("timed out")
            }
        }
        impl StdError for Kind {}
        let boxed: lambda_runtime::Error = Box::new(Kind(Reason::Timeout));
        assert_eq!(describe(&boxed, None).kind, "Kind");
    }

    #[test]
    fn a_hook_that_panics_is_not_used() {
        let hook = ErrorDescriptions::then(None, |_: &String| -> Diagnostic {
            panic!("the description failed")
        });
        assert_eq!(
            describe(&"late".to_owned(), Some(&hook)),
            Exception {
                kind: "Error".into(),
                message: "late".to_owned()
            }
        );
    }
    /// A failed release after a handler error that is a string (`"declined".into()`): the span
    /// says `declined; releasing …`, as Lambda does, not the `Debug` text with its quotes (found
    /// by a review).
    #[tokio::test]
    async fn a_string_handler_error_around_a_failed_release_is_written_as_text() {
        struct DeleteFailedLike;
        impl fmt::Debug for DeleteFailedLike {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"DeleteFailed { error: Handler("declined"), source: "throttled" }"#)
            }
        }
        let exception = powertools_core::failure::scope(async {
            powertools_core::failure::report(powertools_core::failure::Reported {
                debug: "DeleteFailed { error: Handler(".to_owned(),
                debug_end: r#"), source: "throttled" }"#.to_owned(),
                handler_within: true,
                error_type: "IdempotencyPersistenceLayerError",
                message: "; releasing the in-progress record then failed too: throttled".to_owned(),
                panicked: false,
            });
            describe(&DeleteFailedLike, None)
        })
        .await;
        assert_eq!(exception.kind, "IdempotencyPersistenceLayerError");
        assert!(
            exception.message.starts_with("declined; releasing"),
            "{}",
            exception.message
        );
    }
}
