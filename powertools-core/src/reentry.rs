//! A guard against code that calls itself back through a `tracing` subscriber: a warning whose
//! subscriber reacts by doing what the warning was about (annotating, adding a metric) logs the
//! warning again, and again, until the stack overflows. `tracing` guards a scoped subscriber
//! against such reentry, not the global one.
//!
//! Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
//!
//! ```
//! use std::cell::Cell;
//! use powertools_core::reentry::{is_entered, unless_reentered};
//!
//! thread_local! {
//!     static SAYING: Cell<bool> = const { Cell::new(false) };
//! }
//! let inner = unless_reentered(&SAYING, || {
//!     assert!(is_entered(&SAYING));
//!     unless_reentered(&SAYING, || "reentered")
//! });
//! assert_eq!(inner, Some(None));
//! assert!(!is_entered(&SAYING));
//! ```

use std::cell::Cell;
use std::thread::LocalKey;

/// Runs `f` with `flag` set on this thread, unless it is set already (a call under way further
/// up this thread's stack) or the thread-local is gone (the thread is exiting): `None` then. The
/// flag is cleared when `f` returns or unwinds.
pub fn unless_reentered<R>(
    flag: &'static LocalKey<Cell<bool>>,
    f: impl FnOnce() -> R,
) -> Option<R> {
    /// Clears the flag when `f` returns or unwinds.
    struct Leave(&'static LocalKey<Cell<bool>>);
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = self.0.try_with(|entered| entered.set(false));
        }
    }
    if flag
        .try_with(|entered| entered.replace(true))
        .unwrap_or(true)
    {
        return None;
    }
    let _leave = Leave(flag);
    Some(f())
}

/// Whether `flag` is set on this thread: inside [`unless_reentered`] (or the thread-local is
/// gone, which counts as inside).
pub fn is_entered(flag: &'static LocalKey<Cell<bool>>) -> bool {
    flag.try_with(Cell::get).unwrap_or(true)
}
