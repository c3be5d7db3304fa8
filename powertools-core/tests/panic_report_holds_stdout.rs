//! The panic hook the logging layer and the facade install marks a panic's report as under way
//! while the hook before it writes it (Rust's default writes it to stderr, in several writes):
//! the stdout sinks' lines wait for it ([`wait_for_panic_reports`], at most 250 ms), where
//! stdout and stderr share one pipe (Lambda's log capture, an emulator), instead of landing
//! inside one of its lines, which CloudWatch then cannot read (found by an attack from the docs:
//! 8 of 379 EMF documents began with a fragment of a backtrace). No lock is held, so that no
//! hook or writer can deadlock it (holding stdout's did: a review). Its own binary: panic hooks
//! are global, and the tests run one after the other in it.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use powertools_core::failure::{
    install_quiet_panic_hook, outside_panic_reports, wait_for_panic_reports,
};

/// What the hook before does, per test.
type Previous = Box<dyn Fn() + Send + Sync>;
/// Shared, so that the hook is not called under the lock: threads' reports run side by side.
static PREVIOUS: Mutex<Option<Arc<dyn Fn() + Send + Sync>>> = Mutex::new(None);

/// One test at a time: the hook is the process's.
static SERIAL: Mutex<()> = Mutex::new(());

fn with_previous_hook(previous: Previous) -> std::sync::MutexGuard<'static, ()> {
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|_| {
            let previous = PREVIOUS.lock().unwrap().clone();
            if let Some(previous) = previous {
                previous();
            }
        }));
        install_quiet_panic_hook();
    });
    *PREVIOUS.lock().unwrap() = Some(Arc::from(previous));
    serial
}

#[test]
fn a_line_waits_for_the_panic_report_being_written() {
    let reporting = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let _serial = with_previous_hook({
        let (reporting, release) = (Arc::clone(&reporting), Arc::clone(&release));
        // A report that takes a while to write.
        Box::new(move || {
            reporting.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let panicking = std::thread::spawn(|| std::panic::catch_unwind(|| panic!("oven on fire")));
    while !reporting.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let waiting = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicBool::new(false));
    let writer = {
        let (waiting, written) = (Arc::clone(&waiting), Arc::clone(&written));
        std::thread::spawn(move || {
            // As the metrics sink writes a document.
            waiting.store(true, Ordering::SeqCst);
            wait_for_panic_reports();
            let _ = std::io::stdout().lock().write_all(b"{\"document\":1}\n");
            written.store(true, Ordering::SeqCst);
        })
    };
    while !waiting.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let written_during_the_report = written.load(Ordering::SeqCst);
    // Released before asserting: a panic here would wait in that hook too.
    release.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(panicking.join().unwrap().is_err());
    assert!(
        !written_during_the_report,
        "a line was written in the middle of the panic's report"
    );
    assert!(written.load(Ordering::SeqCst));
}

/// A thread that holds stdout's lock while it waits for the thread that panics (a writer fed by
/// a channel): the panic is reported and the writer ends (the hook held stdout's lock, and the
/// process hung for good: a review).
#[test]
fn a_panic_on_a_thread_feeding_a_writer_that_holds_stdout_does_not_deadlock() {
    let _serial = with_previous_hook(Box::new(|| {
        let _ = std::io::stderr().write_all(b"a report\n");
    }));
    let (lines, received) = mpsc::channel::<String>();
    let writer = std::thread::spawn(move || {
        let mut stdout = std::io::stdout().lock();
        for line in received {
            let _ = stdout.write_all(line.as_bytes());
        }
    });
    let worker = std::thread::spawn(move || {
        lines.send("{\"line\":1}\n".to_owned()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        panic!("the worker failed");
    });
    assert!(worker.join().is_err());
    writer.join().unwrap();
}

/// A hook before that has another thread write a line and joins it: the line is written (at
/// most 250 ms late) and the report ends (it deadlocked: a review).
#[test]
fn a_previous_hook_that_waits_for_a_thread_writing_a_line_does_not_deadlock() {
    let _serial = with_previous_hook(Box::new(|| {
        std::thread::spawn(|| {
            wait_for_panic_reports();
            let _ = std::io::stdout()
                .lock()
                .write_all(b"{\"from_the_hook\":1}\n");
        })
        .join()
        .unwrap();
    }));
    assert!(std::thread::spawn(|| panic!("reported")).join().is_err());
}

/// Lines wait 250 ms in all for a run of reports, not 250 ms each: eight lines written during
/// one report that takes long are all written while it is still under way (each waited its own
/// 250 ms: 2 s for eight, a review).
#[test]
fn lines_wait_for_a_long_report_a_quarter_second_in_all_not_each() {
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reporting = Arc::new(AtomicBool::new(false));
    let _serial = with_previous_hook({
        let (written, reporting) = (Arc::clone(&written), Arc::clone(&reporting));
        // A slow report: until the eight lines are written, or 1.5 s.
        Box::new(move || {
            reporting.store(true, Ordering::SeqCst);
            let until = std::time::Instant::now() + Duration::from_millis(1500);
            while written.load(Ordering::SeqCst) < 8 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let report_ended = Arc::new(AtomicBool::new(false));
    let panicking = {
        let report_ended = Arc::clone(&report_ended);
        std::thread::spawn(move || {
            let caught = std::panic::catch_unwind(|| panic!("slow report"));
            report_ended.store(true, Ordering::SeqCst);
            caught
        })
    };
    while !reporting.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut during_the_report = 0;
    for _ in 0..8 {
        wait_for_panic_reports();
        let _ = std::io::stdout().lock().write_all(b"{\"line\":1}\n");
        if !report_ended.load(Ordering::SeqCst) {
            during_the_report += 1;
        }
        written.fetch_add(1, Ordering::SeqCst);
    }
    assert!(panicking.join().unwrap().is_err());
    assert_eq!(
        during_the_report, 8,
        "lines waited for the report one after the other"
    );
}

/// A report that begins while a line is being written waits for the line to end: the line had
/// checked for reports before the report began, and was then written in the middle of it (found
/// by an attack from the docs: a JSON line inside a backtrace's line, 2 runs in 5).
#[test]
fn a_report_that_begins_during_a_line_waits_for_the_line() {
    let events = Arc::new(Mutex::new(Vec::<&str>::new()));
    let _serial = with_previous_hook({
        let events = Arc::clone(&events);
        Box::new(move || events.lock().unwrap().push("report"))
    });
    let (begun, line_begun) = mpsc::channel();
    let writer = {
        let events = Arc::clone(&events);
        std::thread::spawn(move || {
            // As the sinks write a line: a write that takes a while (a busy pipe), within the
            // 50 ms a report waits for lines.
            outside_panic_reports(|| {
                events.lock().unwrap().push("line begins");
                begun.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                events.lock().unwrap().push("line ends");
            });
        })
    };
    line_begun.recv().unwrap();
    assert!(
        std::thread::spawn(|| panic!("during a line"))
            .join()
            .is_err()
    );
    writer.join().unwrap();
    // Copied out first: the assertion's own panic goes through the hook, which takes the lock.
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        ["line begins", "line ends", "report"],
        "the report was written in the middle of a line"
    );
}

/// Panics that follow each other without a gap a waiting line can see (each report begins a new
/// run, with a deadline of its own) hold a line 250 ms, not until they stop: the run's deadline
/// moved on with each report, and a line waited seconds (found by a review: 1.7 s).
#[test]
fn a_line_waits_a_quarter_second_for_reports_that_follow_each_other() {
    let reports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _serial = with_previous_hook({
        let reports = Arc::clone(&reports);
        Box::new(move || {
            reports.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        })
    });
    let panicking = std::thread::spawn(move || {
        for _ in 0..30 {
            let _ = std::panic::catch_unwind(|| panic!("again"));
        }
    });
    // Once the second report is under way
    while reports.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let waiting = std::time::Instant::now();
    outside_panic_reports(|| ());
    let waited = waiting.elapsed();
    let storm_left = !panicking.is_finished();
    panicking.join().unwrap();
    assert!(storm_left, "the reports ended before the line was written");
    // 250 ms, with room for a busy machine; the 30 reports take 1.5 s.
    assert!(waited < Duration::from_millis(900), "waited {waited:?}");
}

/// A panic inside a line's own write (its closure) is reported at once: the report waited 250 ms
/// for the line being written, its own (found by a review).
#[test]
fn a_panic_inside_a_line_s_write_is_reported_without_waiting_for_it() {
    let (reported_at, _serial) = recording_when_reported();
    let panicked_at = std::time::Instant::now();
    let caught = std::panic::catch_unwind(|| outside_panic_reports(|| panic!("in the write")));
    assert!(caught.is_err());
    let delay = when(&reported_at) - panicked_at;
    assert!(
        delay < Duration::from_millis(200),
        "reported after {delay:?}"
    );
}

/// A thread that panics while it holds stdout's lock (inside `println!`, a `Display` that
/// panics) is reported at once while another thread's line waits for the lock: the line was
/// counted as being written before it had the lock, and the report waited 250 ms for a line the
/// panicking thread itself kept from being written (found by a review).
#[test]
fn a_line_waiting_for_stdout_s_lock_does_not_hold_the_report_of_its_holder() {
    let (reported_at, _serial) = recording_when_reported();
    let panicked_at = Arc::new(Mutex::new(None));
    let (locked, stdout_held) = mpsc::channel();
    let holder = {
        let panicked_at = Arc::clone(&panicked_at);
        std::thread::spawn(move || {
            std::panic::catch_unwind(move || {
                let _stdout = std::io::stdout().lock();
                locked.send(()).unwrap();
                // Long enough for the line below to be waiting for the lock.
                std::thread::sleep(Duration::from_millis(50));
                *panicked_at.lock().unwrap() = Some(std::time::Instant::now());
                panic!("inside println!");
            })
        })
    };
    stdout_held.recv().unwrap();
    let writer = std::thread::spawn(|| {
        powertools_core::stdout::write_line(b"{\"waiting\":1}\n", "log line");
    });
    assert!(holder.join().unwrap().is_err());
    writer.join().unwrap();
    let delay = when(&reported_at) - panicked_at.lock().unwrap().unwrap();
    assert!(
        delay < Duration::from_millis(200),
        "reported after {delay:?}"
    );
}

/// A line that a hook of the function's writes while its own panic is reported (a hook
/// installed before the library's that logs, then hands the panic on) waits for another
/// thread's report under way: it skipped every report, and landed inside another thread's
/// backtrace (found by a review: 9 of 80 such lines).
#[test]
fn a_line_from_a_reporting_thread_waits_for_another_thread_s_report() {
    let events = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (other_reporting, other_report_begun) = mpsc::channel();
    let other_reporting = Mutex::new(Some(other_reporting));
    let _serial = with_previous_hook({
        let events = Arc::clone(&events);
        Box::new(move || {
            if std::thread::current().name() == Some("slow-report") {
                events.lock().unwrap().push("other report begins");
                if let Some(begun) = other_reporting.lock().unwrap().take() {
                    begun.send(()).unwrap();
                }
                // Within the 50 ms a hook's line waits for other threads' reports.
                std::thread::sleep(Duration::from_millis(20));
                events.lock().unwrap().push("other report ends");
            } else {
                // The function's hook, logging before the report it hands on.
                outside_panic_reports(|| events.lock().unwrap().push("hook's line"));
            }
        })
    });
    let slow = std::thread::Builder::new()
        .name("slow-report".to_owned())
        .spawn(|| std::panic::catch_unwind(|| panic!("slow")))
        .unwrap();
    other_report_begun.recv().unwrap();
    assert!(
        std::thread::spawn(|| panic!("logged by a hook"))
            .join()
            .is_err()
    );
    assert!(slow.join().unwrap().is_err());
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        ["other report begins", "other report ends", "hook's line"],
        "the hook's line was written inside the other report"
    );
}

/// A report waits at most 50 ms for a line that does not end (stdout blocked): it waited 250 ms,
/// and every panic paid it (found by a review: 48 panics in 3 s where 1,168 went through).
#[test]
fn a_report_waits_briefly_for_a_line_that_does_not_end() {
    let (reported_at, _serial) = recording_when_reported();
    let (begun, line_begun) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        outside_panic_reports(|| {
            begun.send(()).unwrap();
            // A write blocked on a pipe nobody reads.
            std::thread::sleep(Duration::from_millis(600));
        });
    });
    line_begun.recv().unwrap();
    let panicked_at = std::time::Instant::now();
    assert!(
        std::thread::spawn(|| panic!("while stdout is blocked"))
            .join()
            .is_err()
    );
    let delay = when(&reported_at) - panicked_at;
    writer.join().unwrap();
    assert!(
        delay < Duration::from_millis(200),
        "reported after {delay:?}"
    );
}

/// When the hook before was handed a panic.
type ReportedAt = Arc<Mutex<Option<std::time::Instant>>>;

/// A hook before that records when it is handed a panic, and the serial guard.
fn recording_when_reported() -> (ReportedAt, std::sync::MutexGuard<'static, ()>) {
    let reported_at: ReportedAt = Arc::default();
    let serial = with_previous_hook({
        let reported_at = Arc::clone(&reported_at);
        Box::new(move || *reported_at.lock().unwrap() = Some(std::time::Instant::now()))
    });
    (reported_at, serial)
}

fn when(reported_at: &ReportedAt) -> std::time::Instant {
    reported_at.lock().unwrap().expect("the panic was reported")
}
