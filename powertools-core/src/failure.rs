//! What Lambda will report for an error a powertools-rs layer returned, for the layers outside it
//! that describe the invocation's failure (the logging layer's failure line, the tracing layer's
//! `exception` event).
//!
//! Those layers see the error by reference only, and as a generic type they can format with
//! `Debug` but cannot convert into a `Diagnostic` (that consumes it): for the idempotency layer's
//! own errors they would write the Rust variant (`AlreadyInProgress`) and its `Debug` text where
//! Lambda reports Powertools' name (`IdempotencyAlreadyInProgressError`) and the message. So the
//! layer that returns such an error reports what Lambda will say, in the invocation's scope, and
//! the outer layers use it when the error they see is that one: the report carries the variant
//! name the error's `Debug` begins with, which they check, so that a report is never applied to
//! another error (one a layer between them put in its place).
//!
//! The scope is the invocation's future (a tokio task-local), opened by the outermost layer that
//! reads it: concurrent invocations each have their own; nothing is kept in a global.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static REPORTED: RefCell<Option<Reported>>;
}

/// What Lambda reports for an error, as a layer that returned it described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The name the error's `Debug` begins with (its variant): checked by the readers.
    pub debug_name: &'static str,
    /// Lambda's `errorType`.
    pub error_type: &'static str,
    /// Lambda's `errorMessage`.
    pub message: String,
}

/// Runs `future` in a scope where layers inside it can [`report`]; inside an open scope, in that
/// one.
pub async fn scope<F: Future>(future: F) -> F::Output {
    if REPORTED.try_with(|_| ()).is_ok() {
        future.await
    } else {
        REPORTED.scope(RefCell::new(None), future).await
    }
}

/// Reports what Lambda will say for the error being returned; nothing outside a [`scope`].
pub fn report(reported: Reported) {
    let _ = REPORTED.try_with(|slot| *slot.borrow_mut() = Some(reported));
}

/// The report for an error whose `Debug` text begins with `debug_name`, if one was made in this
/// scope.
pub fn reported(debug_name: &str) -> Option<Reported> {
    REPORTED
        .try_with(|slot| {
            slot.borrow()
                .as_ref()
                .filter(|reported| reported.debug_name == debug_name)
                .cloned()
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_progress() -> Reported {
        Reported {
            debug_name: "AlreadyInProgress",
            error_type: "IdempotencyAlreadyInProgressError",
            message: "execution already in progress".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_report_is_read_in_its_scope_for_the_error_it_describes_only() {
        // Outside a scope nothing is kept
        report(in_progress());
        assert_eq!(reported("AlreadyInProgress"), None);

        scope(async {
            assert_eq!(reported("AlreadyInProgress"), None);
            // A nested scope is the same one: a report inside is read outside it
            scope(async { report(in_progress()) }).await;
            assert_eq!(reported("AlreadyInProgress"), Some(in_progress()));
            // Another error (a layer between replaced it) does not take it
            assert_eq!(reported("PaymentDeclined"), None);
        })
        .await;

        // Concurrent scopes each have their own
        let (first, second) = tokio::join!(
            scope(async {
                report(in_progress());
                tokio::task::yield_now().await;
                reported("AlreadyInProgress")
            }),
            scope(async {
                tokio::task::yield_now().await;
                reported("AlreadyInProgress")
            })
        );
        assert_eq!(first, Some(in_progress()));
        assert_eq!(second, None);
    }
}
