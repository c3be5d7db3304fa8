//! `failure::install_quiet_panic_hook` keeps a panic inside `quiet_panics` from the hook before
//! it (Rust's default prints the message on stderr): the facade installs it for the event it
//! reads, so that a function without the logging layer (whose own hook does the same) does not
//! print a panicking `Deserialize`'s message, which may quote the event (found by a review). Its
//! own binary: panic hooks are global.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use powertools_core::failure::{install_quiet_panic_hook, quiet_panics};

#[test]
fn the_hook_hands_on_loud_panics_only_and_is_installed_once() {
    let handed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handed);
    std::panic::set_hook(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    install_quiet_panic_hook();
    // Twice: one hook, not two in a chain.
    install_quiet_panic_hook();

    assert!(std::panic::catch_unwind(|| quiet_panics(|| panic!("card 4111111111111111"))).is_err());
    assert_eq!(handed.load(Ordering::SeqCst), 0);
    assert!(std::panic::catch_unwind(|| panic!("a handler's own panic")).is_err());
    assert_eq!(handed.load(Ordering::SeqCst), 1);
}
