//! A panic inside `powertools_core::failure::quiet_panics` (the facade reads each event inside
//! it) is not handed to the panic hook that was there before the logging layer's (Rust's default
//! prints the panic's message on stderr, the function's log): a `Deserialize` that panicked with
//! the event's value in its message printed it there, though the invocation's error leaves it
//! out (found by an attack through the emulator). Its own binary: panic hooks are global.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_logging::{Logger, LoggingLayer, MemoryLogs};

#[test]
fn a_quiet_panic_skips_the_previous_hook_and_a_loud_one_reaches_it() {
    // Given a hook before the logging layer's, counting the panics it is handed
    let handed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handed);
    std::panic::set_hook(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let logger = Logger::builder()
        .service("orders")
        .writer(MemoryLogs::new())
        .env(Env::empty())
        .build()
        .expect("a logger");
    // (the logging layer installs its hook when it wraps a service)
    let _service = LoggingLayer::new(logger).layer(service_fn(
        |_event: LambdaEvent<serde_json::Value>| async { Ok::<_, lambda_runtime::Error>(()) },
    ));

    // When a panic happens inside `quiet_panics`, and another outside it
    let quiet = std::panic::catch_unwind(|| {
        powertools_core::failure::quiet_panics(|| panic!("card 4111111111111111"))
    });
    assert!(quiet.is_err());
    assert!(
        !powertools_core::failure::panics_are_quiet(),
        "restored after the unwind"
    );
    assert_eq!(
        handed.load(Ordering::SeqCst),
        0,
        "the quiet panic was handed on"
    );
    let loud = std::panic::catch_unwind(|| panic!("a handler's own panic"));
    assert!(loud.is_err());

    // Then only the loud one reached the hook before
    assert_eq!(handed.load(Ordering::SeqCst), 1);
}
