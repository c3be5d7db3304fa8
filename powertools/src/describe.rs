//! What the failure line, the span and Lambda's error response call a handler's error that the
//! layers or the runtime see boxed or wrapped: a powertools-rs error by the name Powertools gives
//! it (`MetricValueError`), any other by the type inside the box, each with its message chain.

use std::any::Any;
use std::error::Error as StdError;

use lambda_runtime::Diagnostic;
use powertools_core::error_chain::message_chain;

/// A powertools-rs error as Lambda reports it: its `error_type()` and its message chain; `None`
/// for an error of another crate.
pub(crate) fn powertools_diagnostic(error: &(dyn StdError + 'static)) -> Option<Diagnostic> {
    let named = |error_type: &str| {
        Some(Diagnostic {
            error_type: error_type.to_owned(),
            error_message: message_chain(error),
        })
    };
    if let Some(error) = error.downcast_ref::<crate::Error>() {
        return named(error.error_type());
    }
    if let Some(error) = error.downcast_ref::<powertools_core::Error>() {
        return named(error.error_type());
    }
    #[cfg(feature = "logging")]
    if let Some(error) = error.downcast_ref::<powertools_logging::Error>() {
        return named(error.error_type());
    }
    #[cfg(feature = "metrics")]
    if let Some(error) = error.downcast_ref::<powertools_metrics::Error>() {
        return named(error.error_type());
    }
    #[cfg(feature = "tracing")]
    if let Some(error) = error.downcast_ref::<powertools_tracing::Error>() {
        return named(error.error_type());
    }
    #[cfg(feature = "batch")]
    if let Some(error) = error.downcast_ref::<powertools_batch::Error>() {
        return named(error.error_type());
    }
    #[cfg(feature = "idempotency")]
    {
        // A function-level run's error boxed by `?`: its handler error type is the caller's, so
        // only the usual ones can be named (`Handler(…)` as the error inside it is named).
        use powertools_idempotency::Error as IdempotencyError;
        if let Some(error) = error.downcast_ref::<IdempotencyError<std::convert::Infallible>>() {
            return named(error.error_type());
        }
        if let Some(error) = error.downcast_ref::<IdempotencyError<lambda_runtime::Error>>() {
            return Some(error.diagnostic_with(boxed_error_diagnostic));
        }
        if let Some(error) = error.downcast_ref::<IdempotencyError<std::io::Error>>() {
            return Some(error.diagnostic_with(|inner| error_diagnostic(inner)));
        }
        if let Some(error) = error.downcast_ref::<IdempotencyError<String>>() {
            return Some(error.diagnostic_with(|inner| text_diagnostic(inner)));
        }
        if let Some(error) = error.downcast_ref::<IdempotencyError<crate::Error>>() {
            return Some(error.diagnostic_with(|inner| error_diagnostic(inner)));
        }
    }
    None
}

/// A boxed error (`lambda_runtime::Error`): a powertools-rs error by its Powertools name, another
/// by the type inside the box (or the type or variant its `Debug` begins with), as the logging
/// layer alone names it, with its message chain.
pub(crate) fn boxed_error_diagnostic(boxed: &lambda_runtime::Error) -> Diagnostic {
    error_diagnostic(boxed.as_ref())
}

/// An error by its Powertools name, or else by its type (or the type or variant its `Debug`
/// begins with), with its message chain.
pub(crate) fn error_diagnostic(error: &(dyn StdError + 'static)) -> Diagnostic {
    // An idempotent call's own error of a handler error type not named below: by the name the
    // call reported for it (`Idempotency::run` reports its own errors).
    let reported = || {
        powertools_core::failure::reported_for(error).map(|(reported, message)| Diagnostic {
            error_type: reported.error_type.to_owned(),
            error_message: message,
        })
    };
    powertools_diagnostic(error)
        .or_else(reported)
        .unwrap_or_else(|| Diagnostic {
            error_type: powertools_core::failure::error_type_name(error, &format!("{error:?}"))
                .unwrap_or("Error")
                .to_owned(),
            error_message: message_chain(error),
        })
}

/// A text error, as the line and the span name it: `Error`, and the text.
fn text_diagnostic(text: &str) -> Diagnostic {
    Diagnostic {
        error_type: "Error".to_owned(),
        error_message: text.to_owned(),
    }
}

/// What Lambda reports for a handler's error under [`run`](crate::run): a boxed, I/O or text
/// error (alone, under the stack, behind the idempotency layer) named as the layers name it, not
/// by its Rust type (`&alloc::boxed::Box<dyn core::error::Error + Send + Sync>`, which
/// `lambda_runtime` reports); any other error as it converts itself.
pub(crate) fn lambda_diagnostic<E: Into<Diagnostic> + 'static>(error: E) -> Diagnostic {
    // The error's own `Display` and `Debug` run here, in the runtime's loop: one that panics is
    // reported as such (as the failure line and the span report it), not a panic of the runtime.
    use powertools_core::failure::{UNDESCRIBABLE, catch_quiet_panic, type_path};
    let undescribable = |error_type: String| Diagnostic {
        error_type,
        error_message: UNDESCRIBABLE.to_owned(),
    };
    // Described in place first, so that the error is still there to be named when that panics.
    match catch_quiet_panic(|| described_in_place(&error)) {
        Ok(Some(diagnostic)) => diagnostic,
        Ok(None) => catch_quiet_panic(|| error.into())
            .unwrap_or_else(|_| undescribable(type_path::<E>().to_owned())),
        Err(_) => undescribable(
            catch_quiet_panic(|| undescribable_type(&error))
                .unwrap_or_else(|_| type_path::<E>().to_owned()),
        ),
    }
}

/// The `errorType` of an error whose description panics: a boxed error's by its `Debug`, as the
/// failure line names it (`ExplodingError`; a review found Lambda told
/// `powertools_metrics::layer::ServiceError`, the stack's wrapper, for the same invocation),
/// else its type's.
fn undescribable_type<E: 'static>(error: &E) -> String {
    let any: &dyn Any = error;
    #[cfg(feature = "metrics")]
    let any = handler_under_the_stack(any).unwrap_or(any);
    #[cfg(feature = "idempotency")]
    let any = match any.downcast_ref::<powertools_idempotency::Error<lambda_runtime::Error>>() {
        Some(powertools_idempotency::Error::Handler(inner)) => inner as &dyn Any,
        _ => any,
    };
    any.downcast_ref::<lambda_runtime::Error>()
        .and_then(|boxed| {
            // An I/O error by its type, not its `Debug`'s private representation (`Custom`).
            let debug = format!("{boxed:?}");
            powertools_core::failure::error_type_name(boxed.as_ref(), &debug).map(str::to_owned)
        })
        .unwrap_or_else(|| powertools_core::failure::type_path::<E>().to_owned())
}

/// [`lambda_diagnostic`] for the error types the layers name (alone or under the stack),
/// unguarded; `None` for another, which converts itself.
fn described_in_place<E: 'static>(error: &E) -> Option<Diagnostic> {
    let any: &dyn Any = error;
    #[cfg(feature = "metrics")]
    let any = handler_under_the_stack(any).unwrap_or(any);
    handler_diagnostic(any)
}

/// The handler's error inside the stack's [`StackError`](crate::StackError), for the error types
/// [`handler_diagnostic`] names.
#[cfg(feature = "metrics")]
fn handler_under_the_stack(any: &dyn Any) -> Option<&dyn Any> {
    fn inside<T: 'static>(any: &dyn Any) -> Option<&dyn Any> {
        match any.downcast_ref::<powertools_metrics::ServiceError<T>>()? {
            powertools_metrics::ServiceError::Handler(inner) => Some(inner),
            _ => None,
        }
    }
    let inner = inside::<lambda_runtime::Error>(any)
        .or_else(|| inside::<std::io::Error>(any))
        .or_else(|| inside::<String>(any))
        .or_else(|| inside::<&'static str>(any));
    #[cfg(feature = "idempotency")]
    let inner = inner.or_else(|| {
        use powertools_idempotency::Error as IdempotencyError;
        inside::<IdempotencyError<lambda_runtime::Error>>(any)
            .or_else(|| inside::<IdempotencyError<std::io::Error>>(any))
            .or_else(|| inside::<IdempotencyError<String>>(any))
    });
    inner
}

/// A boxed, I/O or text error, or the idempotency layer's around one, as the layers name it;
/// `None` for another type.
fn handler_diagnostic(any: &dyn Any) -> Option<Diagnostic> {
    if let Some(boxed) = any.downcast_ref::<lambda_runtime::Error>() {
        return Some(boxed_error_diagnostic(boxed));
    }
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return Some(error_diagnostic(io));
    }
    if let Some(text) = any
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| any.downcast_ref::<&'static str>().copied())
    {
        return Some(text_diagnostic(text));
    }
    #[cfg(feature = "idempotency")]
    {
        use powertools_idempotency::Error as IdempotencyError;
        if let Some(error) = any.downcast_ref::<IdempotencyError<lambda_runtime::Error>>() {
            return Some(error.diagnostic_with(boxed_error_diagnostic));
        }
        if let Some(error) = any.downcast_ref::<IdempotencyError<std::io::Error>>() {
            return Some(error.diagnostic_with(|io| error_diagnostic(io)));
        }
        if let Some(error) = any.downcast_ref::<IdempotencyError<String>>() {
            return Some(error.diagnostic_with(|text| text_diagnostic(text)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use lambda_runtime::Diagnostic;

    #[derive(Debug)]
    struct ExplodingError;

    impl std::fmt::Display for ExplodingError {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("no words for this one")
        }
    }

    impl std::error::Error for ExplodingError {}

    /// An error whose `Display` panics is named by its own type, as the failure line names it,
    /// alone and under the stack (the stack's wrapper was Lambda's `errorType`: an attack).
    #[test]
    fn an_error_whose_display_panics_is_named_by_its_own_type() {
        let assert_named = |diagnostic: Diagnostic| {
            assert_eq!(diagnostic.error_type, "ExplodingError", "{diagnostic:?}");
            assert_eq!(
                diagnostic.error_message,
                powertools_core::failure::UNDESCRIBABLE
            );
        };
        let boxed: lambda_runtime::Error = Box::new(ExplodingError);
        assert_named(super::lambda_diagnostic(boxed));
        // An I/O error around it, by its type (not `Custom`, its `Debug`'s first word).
        let boxed: lambda_runtime::Error = Box::new(std::io::Error::other(ExplodingError));
        assert_eq!(super::lambda_diagnostic(boxed).error_type, "std::io::Error");
        #[cfg(feature = "metrics")]
        {
            let boxed: lambda_runtime::Error = Box::new(ExplodingError);
            assert_named(super::lambda_diagnostic(
                powertools_metrics::ServiceError::Handler(boxed),
            ));
        }
        #[cfg(all(feature = "metrics", feature = "idempotency"))]
        {
            let boxed: lambda_runtime::Error = Box::new(ExplodingError);
            assert_named(super::lambda_diagnostic(
                powertools_metrics::ServiceError::Handler(powertools_idempotency::Error::Handler(
                    boxed,
                )),
            ));
        }
    }
}
