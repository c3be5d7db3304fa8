//! The panic hook the logging layer and the facade install hands a panic on to the hook before
//! it (Rust's default writes its report to stderr, in several writes) while holding stdout's
//! lock: a log line or an EMF document (one locked write to stdout each) written meanwhile by
//! another invocation waits for the report, where stdout and stderr share one pipe (Lambda's
//! log capture, an emulator), instead of landing inside one of its lines, which CloudWatch then
//! cannot read (found by an attack from the docs: 8 of 379 EMF documents began with a fragment
//! of a backtrace). Its own binary: panic hooks are global.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use powertools_core::failure::install_quiet_panic_hook;

#[test]
fn a_line_written_to_stdout_waits_for_the_panic_report_being_written() {
    let reporting = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    {
        let (reporting, release) = (Arc::clone(&reporting), Arc::clone(&release));
        // The hook before: a report that takes a while to write.
        std::panic::set_hook(Box::new(move |_| {
            reporting.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    install_quiet_panic_hook();

    let panicking = std::thread::spawn(|| std::panic::catch_unwind(|| panic!("oven on fire")));
    while !reporting.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let written = Arc::new(AtomicBool::new(false));
    let writer = {
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            // As the metrics sink writes a document.
            let _ = std::io::stdout().lock().write_all(b"{\"document\":1}\n");
            written.store(true, Ordering::SeqCst);
        })
    };
    // Given the time to: it does not, while the report is being written.
    std::thread::sleep(Duration::from_millis(200));
    let written_during_the_report = written.load(Ordering::SeqCst);
    // Released before asserting: this thread's own panic would wait in that hook too.
    release.store(true, Ordering::SeqCst);
    assert!(
        !written_during_the_report,
        "a line was written in the middle of the panic's report"
    );
    writer.join().unwrap();
    assert!(written.load(Ordering::SeqCst));
    assert!(panicking.join().unwrap().is_err());
}
