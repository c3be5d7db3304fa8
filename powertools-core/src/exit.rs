//! What the utilities do before the process exits with invocations still running (Lambda's
//! `SIGTERM` at shutdown, which the tracer's extension handles): each registers a hook, and the
//! code that exits the process runs them, once. The metrics utility writes what running
//! invocations added, which the exit would otherwise take with it without a word.
//!
//! ```
//! fn say_goodbye() {}
//! powertools_core::exit::on_exit(say_goodbye);
//! powertools_core::exit::before_exit();
//! powertools_core::exit::before_exit(); // runs nothing: once per process
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
static RAN: AtomicBool = AtomicBool::new(false);

/// Runs `hook` in [`before_exit`]. Register each hook once (behind a `std::sync::Once`).
pub fn on_exit(hook: fn()) {
    HOOKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(hook);
}

/// Runs the hooks [`on_exit`] registered, once per process: the extension's `SIGTERM` handler
/// and a function's own shutdown hook may both call it.
pub fn before_exit() {
    if RAN.swap(true, Ordering::AcqRel) {
        return;
    }
    // Taken out first: a hook that registers another (or logs through code that does) must not
    // find the lock held.
    let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(PoisonError::into_inner));
    for hook in hooks {
        hook();
    }
}
