//! What Lambda will report for an error a powertools-rs layer returned, for the layers outside it
//! that describe the invocation's failure (the logging layer's failure line, the tracing layer's
//! `exception` event).
//!
//! Those layers see the error by reference only, and as a generic type they can format with
//! `Debug` but cannot convert into a `Diagnostic` (that consumes it): for the idempotency layer's
//! own errors they would write the Rust variant (`AlreadyInProgress`) and its `Debug` text where
//! Lambda reports Powertools' name (`IdempotencyAlreadyInProgressError`) and the message. So the
//! layer that returns such an error reports what Lambda will say, in the invocation's scope, and
//! the outer layers use it when the error they see is that one: the report carries the error's
//! `Debug` text, which they compare with the error they see (inside the `Handler(…)` wrappers of
//! the layers between). An error of another kind or content (one a layer between put in its
//! place, a later attempt's handler error) is never named by a report; one whose `Debug` text is
//! the very same is (a handler error written `KeyMissing` after the layer reported its own
//! `KeyMissing` in that invocation).
//!
//! Not reported, so described by the readers' usual rules: the layer's error that holds the
//! handler's (a failed delete after a handler error: its message needs the handler error's
//! `Display`), and an error of a layer run on another task than the readers' (`tokio::spawn`
//! does not carry the scope).
//!
//! The scope is the invocation's future (a tokio task-local, set while it is polled), opened by
//! the outermost layer that reads it: concurrent invocations each have their own; nothing is kept
//! in a global.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// The reports of one invocation, the latest last: shared between the polls of its scope (each
/// sets the task-local for the duration of the poll). A few are kept, not one: a layer between
/// that retries may return its first attempt's error after a second report.
type Slot = Arc<Mutex<Reports>>;

/// An invocation's reports, and the capture of a panic a layer inside caught.
#[derive(Default)]
struct Reports {
    list: Vec<Reported>,
    caught_panic: Option<Box<dyn std::any::Any + Send>>,
    /// An idempotent call of the invocation answered with a stored response
    /// ([`note_replayed_response`]).
    replayed: bool,
    /// The idempotency layer was entered in this scope ([`idempotency_scope`]).
    idempotency_entered: bool,
    /// A record's scope ([`record_scope`]): the scope open around it, where its replay is noted
    /// too when it ends.
    outer: Option<Slot>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("list", &self.list)
            .field("caught_panic", &self.caught_panic.is_some())
            .field("replayed", &self.replayed)
            .finish()
    }
}

/// What a panic hook captured of a panic, with the panic's message to tell it by.
type PanicCapture = (Option<String>, Box<dyn std::any::Any + Send>);

std::thread_local! {
    /// What the panic hook captured of the last panic on this thread.
    static PANIC_CAPTURE: std::cell::RefCell<Option<PanicCapture>> =
        const { std::cell::RefCell::new(None) };
}

std::thread_local! {
    /// Set while code runs whose panics' messages must not be printed (see [`quiet_panics`]).
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panics quiet: a panic hook that honours it
/// ([`panics_are_quiet`]; [`install_quiet_panic_hook`]'s, which the logging layer and the facade
/// install) does not hand the panic to the hook before it
/// (Rust's default prints the panic's message on stderr, the function's log). For code whose
/// panic messages may quote data that must not reach the log, such as an event's `Deserialize`,
/// whose panic the caller catches and reports without its message.
///
/// ```
/// use powertools_core::failure::{panics_are_quiet, quiet_panics};
///
/// assert!(!panics_are_quiet());
/// assert!(quiet_panics(panics_are_quiet));
/// assert!(!panics_are_quiet());
/// ```
pub fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag when `f` returns or unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = QUIET_PANICS.try_with(|quiet| quiet.set(self.0));
        }
    }
    let _restore = Restore(
        QUIET_PANICS
            .try_with(|quiet| quiet.replace(true))
            .unwrap_or(false),
    );
    f()
}

/// Runs `f` with this thread's panics quiet ([`quiet_panics`]) and caught: its result, or the
/// panic's payload for the caller to report without its message. Installs the hook that keeps
/// such panics off stderr ([`install_quiet_panic_hook`]) first, once per process. For code that
/// reads data whose `Deserialize` may panic with the data in its message (an event, a record's
/// body).
///
/// ```
/// let read = powertools_core::failure::catch_quiet_panic(|| -> u32 { panic!("card 4111") });
/// assert!(read.is_err());
/// ```
///
/// # Errors
/// The panic's payload, when `f` panicked.
pub fn catch_quiet_panic<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    install_quiet_panic_hook();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| quiet_panics(f)))
}

/// Polls `future` as [`catch_quiet_panic`] runs a closure: each poll's panic quiet and caught,
/// the future's output or the panic's payload. For a library's future whose panic must become
/// an error rather than the invocation's (the AWS SDK's, which panics on some settings: an
/// access key id with a control character, `aws_config`'s invalid retry settings). Once it
/// completed or panicked, the future is never polled again: polled after that, this one stays
/// pending.
///
/// ```
/// use powertools_core::failure::catch_quiet_panics;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(catch_quiet_panics(async { 7 }).await.ok(), Some(7));
/// let failed = catch_quiet_panics(async {
///     if true {
///         panic!("no retry mode 'legacy'");
///     }
/// })
/// .await;
/// assert!(failed.is_err());
/// # }
/// ```
pub fn catch_quiet_panics<F: Future>(future: F) -> CaughtPanics<F> {
    CaughtPanics {
        future,
        done: false,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`catch_quiet_panics`].
    pub struct CaughtPanics<F> {
        // Held in place, not boxed: one allocation fewer for each DynamoDB call it wraps.
        #[pin]
        future: F,
        // Completed or panicked: never polled again (a review found a finished future polled
        // again).
        done: bool,
    }
}

impl<F> std::fmt::Debug for CaughtPanics<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaughtPanics")
            .field("done", &self.done)
            .finish()
    }
}

impl<F: Future> Future for CaughtPanics<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.done {
            return Poll::Pending;
        }
        let future = this.future;
        let poll = match catch_quiet_panic(|| future.poll(cx)) {
            Ok(Poll::Ready(output)) => Ok(output),
            Ok(Poll::Pending) => return Poll::Pending,
            Err(payload) => Err(payload),
        };
        *this.done = true;
        Poll::Ready(poll)
    }
}

/// Installs, once per process, a panic hook that hands a panic to the hook before it (Rust's
/// default prints its message on stderr) unless it happens inside [`quiet_panics`]. The facade
/// installs it where it reads events, so that a function without the logging layer (whose own
/// hook also honours [`quiet_panics`]) keeps quiet panics quiet too.
pub fn install_quiet_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !panics_are_quiet() {
                // Rust's default hook writes its report to stderr in several writes: marked as
                // under way meanwhile, so that the log lines and EMF documents of other
                // invocations wait for it ([`outside_panic_reports_with`]) where stdout and stderr
                // share one pipe (Lambda's log capture, an emulator), instead of landing inside
                // one of its lines, which CloudWatch then cannot read (found by an attack from
                // the docs: 8 of 379 documents began with a fragment of a backtrace). No lock is
                // held: holding stdout's deadlocked a process whose panicking thread fed a thread
                // that held it (a review).
                let _reporting = PanicReport::start();
                previous(info);
            } else {
                note_quiet_panic(info);
            }
        }));
        QUIET_HOOK_INSTALLED.store(true, std::sync::atomic::Ordering::Release);
    });
}

/// What a panic hook writes, on stderr, of a panic inside [`quiet_panics`] when panics abort
/// (`panic = "abort"`, as `cargo lambda build --release` sets unless the workspace says
/// otherwise): nothing catches it then, the process is about to stop, and the location is the
/// only clue left. Nothing when panics unwind: the caller catches the panic and reports it.
fn note_quiet_panic(info: &std::panic::PanicHookInfo<'_>) {
    if cfg!(panic = "abort") {
        use std::io::Write as _;
        let note = quiet_panic_note(info.location().map(|at| (at.file(), at.line())));
        let _ = std::io::stderr().write_all(note.as_bytes());
    }
}

/// The line [`note_quiet_panic`] writes.
fn quiet_panic_note(location: Option<(&str, u32)>) -> String {
    let at = location.map_or_else(
        || "an unknown location".to_owned(),
        |(file, line)| format!("{file}:{line}"),
    );
    format!(
        "a panic at {at} (its message is left out: it may quote the data being read; panics \
         abort in this build, so the process stops)\n"
    )
}

/// Panic reports under way ([`install_quiet_panic_hook`]'s hook handing a panic on).
static PANIC_REPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The panic reports this thread is writing (more than one when a hook panics): its own
    /// lines do not wait for them, and wait for the other threads' reports.
    static REPORTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// This thread's reports under way (see [`REPORTING`]); as many as there are, should its
/// thread-local be gone (a line from a thread-local's destructor), so that nothing waits.
fn own_reports() -> usize {
    REPORTING
        .try_with(std::cell::Cell::get)
        .unwrap_or(usize::MAX)
}

/// Until when lines wait, in milliseconds from [`panic_clock`]'s start: set by the report that
/// finds none under way, so that reports following each other (a thread panicking in a loop, a
/// hook that never returns) hold lines 250 ms in all, not 250 ms each line (a review: 8 lines
/// took 2 s during one slow report).
static PANIC_REPORTS_UNTIL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Milliseconds since the first call.
fn panic_clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A panic report under way, from [`start`](Self::start) until dropped.
struct PanicReport;

impl PanicReport {
    fn start() -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = panic_clock();
        let until = now.saturating_add(PANIC_REPORT_WAIT_MS);
        // The run's deadline stored before the report is counted, so that a line that sees the
        // count sees this deadline, never the last run's, long passed (found by a review); and
        // again if the count was 0 after all (a run that ended in between). Only ever moved
        // forward: a report whose thread paused between the two steps cannot shorten a newer
        // run's deadline with its older one.
        if PANIC_REPORTS.load(SeqCst) == 0 {
            PANIC_REPORTS_UNTIL.fetch_max(until, SeqCst);
        }
        if PANIC_REPORTS.fetch_add(1, SeqCst) == 0 {
            PANIC_REPORTS_UNTIL.fetch_max(until, SeqCst);
        }
        let _ = REPORTING.try_with(|reporting| reporting.set(reporting.get() + 1));
        // A line that checked for reports before this one was counted
        // ([`outside_panic_reports_with`]) is written first: the report would land in its
        // middle, or it in the report's (found by an attack from the docs: a JSON line inside a
        // backtrace's line, 2 runs in 5 of 300 concurrent invocations with 30 panics). A line is
        // counted only while it holds what it writes to (stdout's lock) and writes, so this
        // waits for one write at most; not for this thread's own line (a panic inside one); and
        // at most 50 ms, within the run's deadline: a write that takes longer is blocked (a pipe
        // nobody reads), and each panic waited 250 ms for it (found by a review).
        let own = WRITING_HERE
            .try_with(std::cell::Cell::get)
            .unwrap_or(usize::MAX);
        let lines_until = now
            .saturating_add(REPORT_WAITS_FOR_LINES_MS)
            .min(PANIC_REPORTS_UNTIL.load(SeqCst));
        let mut tries = 0_u32;
        while LINES_BEING_WRITTEN.load(SeqCst) > own && panic_clock() < lines_until {
            if tries < 64 {
                std::thread::yield_now();
                tries += 1;
            } else {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
        PanicReport
    }
}

/// How long lines wait for panic reports under way, from the first of them
/// ([`wait_for_panic_reports`]). In milliseconds.
const PANIC_REPORT_WAIT_MS: u64 = 250;

/// How long a panic report waits for the lines being written when it begins, in milliseconds:
/// one write each, which takes longer only when stdout is blocked. Also how long a line of a
/// reporting thread (a hook's) waits for the other threads' reports.
const REPORT_WAITS_FOR_LINES_MS: u64 = 50;

/// Lines that [`outside_panic_reports_with`] is writing: a panic report that begins waits for
/// them.
static LINES_BEING_WRITTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The lines this thread is writing (counted in [`LINES_BEING_WRITTEN`]): the report of a
    /// panic inside one does not wait for it.
    static WRITING_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `write` (one line's write) outside any panic report, as
/// [`outside_panic_reports_with`] does, with nothing to acquire first.
///
/// ```
/// use std::io::Write as _;
/// powertools_core::failure::outside_panic_reports(|| {
///     let _ = std::io::stdout().lock().write_all(b"{\"level\":\"INFO\"}\n");
/// });
/// ```
pub fn outside_panic_reports<R>(write: impl FnOnce() -> R) -> R {
    outside_panic_reports_with(|| (), |()| write())
}

/// Acquires what a line is written to (`acquire`: stdout's lock), then runs `write` with it,
/// outside any panic report: after the reports under way (at most 250 ms from the first of a
/// run of them, and at most 250 ms for this line however many runs follow each other), and
/// counted while it writes, so that a report beginning meanwhile waits for the write to end (at
/// most 50 ms) instead of interleaving with it. Acquired before it is counted, so that a line
/// waiting for a lock the panicking thread holds (a panic inside `println!`) does not hold that
/// thread's report; released while the line waits. On a thread reporting its own panic (a hook
/// that logs), the line waits for the other threads' reports only, at most 50 ms.
/// [`stdout::write_line`](crate::stdout::write_line) writes through it.
///
/// The waits are bounded, and that is the trade-off: under panics that follow each other for
/// longer than 250 ms, lines are written meanwhile, and may land inside a report.
///
/// ```
/// use std::io::Write as _;
/// powertools_core::failure::outside_panic_reports_with(
///     || std::io::stdout().lock(),
///     |mut stdout| stdout.write_all(b"{\"level\":\"INFO\"}\n"),
/// )?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn outside_panic_reports_with<G, R>(
    mut acquire: impl FnMut() -> G,
    write: impl FnOnce(G) -> R,
) -> R {
    use std::sync::atomic::Ordering::SeqCst;
    /// Ends the count, whatever `write` does.
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            let _ = WRITING_HERE.try_with(|here| here.set(here.get().saturating_sub(1)));
            LINES_BEING_WRITTEN.fetch_sub(1, SeqCst);
        }
    }
    // On a thread writing a report (a hook of the function's that logs, before the report it
    // hands on), the line waits for the other threads' reports, not its own, and is counted as
    // any line is: it skipped both, and landed inside another thread's backtrace (found by a
    // review: 9 of 80 such lines).
    let own_reports = own_reports();
    // This line's own deadline, from when it first waits: the run's deadline moves on with each
    // new run of reports, and a line that never saw a gap between them waited seconds (found by
    // a review).
    let mut line_until: Option<u64> = None;
    loop {
        let target = acquire();
        // Counted before looking, and the report counts itself before looking at the lines
        // (both sequentially consistent): either this line sees the report and waits, or the
        // report sees this line and waits for it.
        LINES_BEING_WRITTEN.fetch_add(1, SeqCst);
        let _ = WRITING_HERE.try_with(|here| here.set(here.get() + 1));
        let counted = Counted;
        let clear = PANIC_REPORTS.load(SeqCst) <= own_reports || {
            let now = panic_clock();
            now >= PANIC_REPORTS_UNTIL.load(SeqCst) || line_until.is_some_and(|until| now >= until)
        };
        if clear {
            let result = write(target);
            drop(counted);
            return result;
        }
        drop(counted);
        drop(target);
        // A line of a reporting thread waits 50 ms at most: when several threads panic at once
        // and each one's hook logs, each line waits for the others' reports while its own
        // report waits for it, and all of them waited out the 250 ms (found by checking the
        // fix above: 68 panics in 3 s where 2,127 went through without such a hook).
        let wait = if own_reports > 0 {
            REPORT_WAITS_FOR_LINES_MS
        } else {
            PANIC_REPORT_WAIT_MS
        };
        let until = *line_until.get_or_insert_with(|| panic_clock().saturating_add(wait));
        wait_for_panic_reports_until(until, own_reports);
    }
}

impl Drop for PanicReport {
    fn drop(&mut self) {
        let _ = REPORTING.try_with(|reporting| reporting.set(reporting.get().saturating_sub(1)));
        PANIC_REPORTS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits while another thread hands a panic to the hook before [`install_quiet_panic_hook`]'s
/// (Rust's default writes its report to stderr in several writes), until 250 ms after the first
/// of the reports under way began, and at most 250 ms: at once when no other thread's report is
/// under way (one atomic load). It sleeps the thread (a Tokio worker too). A line written after
/// it may still meet a report that begins in between: the stdout sinks write through
/// [`outside_panic_reports_with`], which waits and writes without that gap.
///
/// ```
/// // No panic is being reported: back at once.
/// powertools_core::failure::wait_for_panic_reports();
/// ```
pub fn wait_for_panic_reports() {
    let own = own_reports();
    if PANIC_REPORTS.load(std::sync::atomic::Ordering::Acquire) <= own {
        return;
    }
    wait_for_panic_reports_until(panic_clock().saturating_add(PANIC_REPORT_WAIT_MS), own);
}

/// Sleeps while other threads' reports are under way (more than this thread's `own`), until the
/// run's deadline or `until`, whichever is first.
fn wait_for_panic_reports_until(until: u64, own: usize) {
    while PANIC_REPORTS.load(std::sync::atomic::Ordering::Acquire) > own && {
        let now = panic_clock();
        now < PANIC_REPORTS_UNTIL.load(std::sync::atomic::Ordering::SeqCst) && now < until
    } {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// What [`notice_if_panics_abort`] says: the promises about panics that a build whose panics
/// abort cannot keep, and the setting that keeps them.
pub const PANICS_ABORT_WARNING: &str = "this function is built with panic = \"abort\": a \
     panic ends the process, so a panicking batch record fails its whole batch (Lambda retries \
     every record), an idempotency claim stays in progress until the invocation's deadline, and \
     the invocation's buffered logs and metrics are lost; set panic = \"unwind\" in \
     [profile.release] (cargo lambda build --release sets \"abort\" when the project has no \
     release profile)";

/// Hands [`PANICS_ABORT_WARNING`] to `warn`, once per process, when this build's panics abort
/// (`panic = "abort"`): the facade's `run`, the batch processor and the idempotency layer call
/// it, so that a function built that way says so in its log, whichever of them it uses first
/// (found by a new function written from the docs: its batch aborted at a panicking record,
/// where the docs promise that record alone fails). Nothing at all in a build whose panics
/// unwind.
///
/// ```
/// let mut said = Vec::new();
/// powertools_core::failure::notice_if_panics_abort(|warning| said.push(warning));
/// assert_eq!(said.is_empty(), !cfg!(panic = "abort"));
/// ```
pub fn notice_if_panics_abort(warn: impl FnOnce(&'static str)) {
    if first_notice(cfg!(panic = "abort")) {
        warn(PANICS_ABORT_WARNING);
    }
}

/// Whether this is the process's first notice that panics abort: `aborts`, the first time.
fn first_notice(aborts: bool) -> bool {
    static NOTICED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    aborts && !NOTICED.swap(true, std::sync::atomic::Ordering::Relaxed)
}

/// Set once [`install_quiet_panic_hook`] has run.
static QUIET_HOOK_INSTALLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether [`install_quiet_panic_hook`] has run in this process.
pub fn quiet_panic_hook_installed() -> bool {
    QUIET_HOOK_INSTALLED.load(std::sync::atomic::Ordering::Acquire)
}

/// Whether this thread runs code inside [`quiet_panics`]: a panic hook then keeps the panic's
/// message to itself.
pub fn panics_are_quiet() -> bool {
    QUIET_PANICS.try_with(std::cell::Cell::get).unwrap_or(false)
}

/// Keeps what a panic hook captured of the panic under way on this thread (its location, its
/// backtrace), with the panic's message (`None` for a payload that is not text), for the code
/// that catches it: [`take_panic_capture`]. The logging layer's hook calls it.
pub fn keep_panic_capture(message: Option<String>, capture: Box<dyn std::any::Any + Send>) {
    let _ = PANIC_CAPTURE.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some((message, capture));
        }
    });
}

/// Takes this thread's last panic capture, if it is the capture of the panic whose `payload` was
/// just caught: called where a panic is caught, in the poll that caught it (a later poll may
/// have run other invocations' panics on this thread). The capture is told by the panic's
/// message, so a capture left by a panic someone else caught is not taken for a panic the hook
/// never saw (`resume_unwind`); it is dropped, since it can belong to no later panic either.
pub fn take_panic_capture(
    payload: &(dyn std::any::Any + Send),
) -> Option<Box<dyn std::any::Any + Send>> {
    let (message, capture) = PANIC_CAPTURE
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
        .ok()
        .flatten()?;
    (message.as_deref() == crate::error_chain::panic_text(payload)).then_some(capture)
}

/// Hands the capture of a panic that a layer caught and returns as an error (the idempotency
/// layer's `HandlerPanicked`) to the layers outside it in this invocation's scope; nothing
/// outside a [`scope`].
pub fn report_caught_panic(capture: Box<dyn std::any::Any + Send>) {
    let _ = REPORTED.try_with(|slot| {
        slot.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .caught_panic = Some(capture);
    });
}

/// Takes the capture a layer inside reported with [`report_caught_panic`] in this invocation.
pub fn take_caught_panic() -> Option<Box<dyn std::any::Any + Send>> {
    REPORTED
        .try_with(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .caught_panic
                .take()
        })
        .ok()
        .flatten()
}

/// How many reports an invocation keeps (the oldest goes first): a handler may make many
/// idempotent calls before it returns the first one's refusal (found by a review, at 8).
const KEPT_REPORTS: usize = 64;

tokio::task_local! {
    static REPORTED: Slot;
}

/// What Lambda reports for an error, as a layer that returned it described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The error's `Debug` text: a reader applies the report to the error it sees only when its
    /// `Debug` text is this one; with [`handler_within`](Self::handler_within), its start.
    pub debug: String,
    /// With [`handler_within`](Self::handler_within), the end of the error's `Debug` text, the
    /// handler's error between the two; empty otherwise.
    pub debug_end: String,
    /// Whether the error holds the handler's own error, which the reporting layer cannot
    /// write (it has no `Debug` or `Display` bound on it): the idempotency layer's failed
    /// release after a handler error. Its `Debug` text is [`debug`](Self::debug), the handler
    /// error's, then [`debug_end`](Self::debug_end); [`message`](Self::message) is what Lambda's
    /// message says after the handler error's own words (a reader puts its description of the
    /// handler's error first).
    pub handler_within: bool,
    /// Lambda's `errorType`.
    pub error_type: &'static str,
    /// Lambda's `errorMessage`.
    pub message: String,
    /// Whether the error is, or holds, the handler's panic that the layer caught and handed on
    /// with [`report_caught_panic`] (`HandlerPanicked`, or a failed delete after it): a reader
    /// writes it as a panic, with that capture's location and stack trace.
    pub panicked: bool,
}

/// Runs `future` in a scope where layers inside it can [`report`]; polled inside an open scope
/// (an outer layer's), in that one.
///
/// The future holds `future` once, beside one pointer: a layer boxes its future, and one over
/// 1 KiB costs glibc a consolidation of its fast bins on every invocation.
pub fn scope<F: Future>(future: F) -> Scoped<F> {
    Scoped {
        future,
        slot: None,
        kind: ScopeKind::Invocation,
        entered: false,
    }
}

/// [`scope`], for the idempotency layer: entering it is noted in the scope (the one it opens,
/// or one a layer outside opened), so that a logging layer polled inside it can tell
/// ([`idempotency_layer_entered`]) and say that replays then write nothing.
pub fn idempotency_scope<F: Future>(future: F) -> Scoped<F> {
    Scoped {
        future,
        slot: None,
        kind: ScopeKind::Idempotency,
        entered: false,
    }
}

/// A scope of its own for one batch record, even inside an open scope: its reports are read
/// back for its own failure, never another record's or lost among them (the invocation's scope
/// keeps 64; found by a review), and a replay it notes
/// ([`note_replayed_response`]) is noted in the scope around it too when it ends.
pub fn record_scope<F: Future>(future: F) -> Scoped<F> {
    Scoped {
        future,
        slot: None,
        kind: ScopeKind::Record,
        entered: false,
    }
}

/// Whether the idempotency layer was entered in this scope ([`idempotency_scope`]) before the
/// layer asking was polled: that layer runs inside it, where a replay never reaches it; `false`
/// outside a scope.
pub fn idempotency_layer_entered() -> bool {
    REPORTED
        .try_with(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .idempotency_entered
        })
        .unwrap_or(false)
}

/// Which layer or call a [`Scoped`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeKind {
    /// A layer's, for its invocation: the open scope, or a new one.
    Invocation,
    /// The idempotency layer's: as [`Invocation`](Self::Invocation), noting it was entered.
    Idempotency,
    /// A batch record's: always a new one ([`record_scope`]).
    Record,
}

pin_project_lite::pin_project! {
    /// The future of [`scope`].
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        // Created on the first poll outside an open scope (always, for a record).
        slot: Option<Slot>,
        kind: ScopeKind,
        // The idempotency layer's: whether its entering was noted.
        entered: bool,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let kind = *this.kind;
        if this.slot.is_none() && kind != ScopeKind::Record {
            let open = REPORTED.try_with(|slot| {
                if kind == ScopeKind::Idempotency && !*this.entered {
                    slot.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .idempotency_entered = true;
                }
            });
            *this.entered = true;
            if open.is_ok() {
                return this.future.poll(cx);
            }
        }
        let slot = Arc::clone(this.slot.get_or_insert_with(|| {
            Arc::new(Mutex::new(Reports {
                idempotency_entered: kind == ScopeKind::Idempotency,
                outer: match kind {
                    ScopeKind::Record => REPORTED.try_with(Arc::clone).ok(),
                    _ => None,
                },
                ..Reports::default()
            }))
        }));
        let future = this.future;
        let poll = REPORTED.sync_scope(Arc::clone(&slot), || future.poll(cx));
        if kind == ScopeKind::Record && poll.is_ready() {
            let (outer, replayed) = {
                let mut reports = slot.lock().unwrap_or_else(PoisonError::into_inner);
                (reports.outer.take(), reports.replayed)
            };
            // No let chain: this crate declares Rust 1.85.
            if let Some(outer) = outer {
                if replayed {
                    outer
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replayed = true;
                }
            }
        }
        poll
    }
}

/// Reports what Lambda will say for the error being returned; nothing outside a [`scope`].
pub fn report(reported: Reported) {
    let _ = REPORTED.try_with(|slot| {
        let reports = &mut slot.lock().unwrap_or_else(PoisonError::into_inner).list;
        if reports.len() >= KEPT_REPORTS {
            reports.remove(0);
        }
        reports.push(reported);
    });
}

/// Notes that an idempotent call of this invocation answered with the response it stored
/// before, without running its handler (the idempotency crate calls it); nothing outside a
/// [`scope`]. A metrics layer asks ([`response_replayed`]) before it fails an invocation for
/// adding no metric: a replay adds none, and failing it would fail every retry of a call that
/// succeeded.
///
/// ```
/// use powertools_core::failure::{note_replayed_response, response_replayed, scope};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let replayed = scope(async {
///     note_replayed_response();
///     response_replayed()
/// })
/// .await;
/// assert!(replayed);
/// assert!(!scope(async { response_replayed() }).await, "each scope is its own invocation");
/// note_replayed_response(); // outside a scope: nothing to note it in
/// assert!(!response_replayed());
/// # });
/// ```
pub fn note_replayed_response() {
    let _ = REPORTED.try_with(|slot| {
        slot.lock().unwrap_or_else(PoisonError::into_inner).replayed = true;
    });
}

/// Whether an idempotent call of this invocation replayed a stored response
/// ([`note_replayed_response`]); `false` outside a [`scope`].
pub fn response_replayed() -> bool {
    REPORTED
        .try_with(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner).replayed)
        .unwrap_or(false)
}

/// The report for an error whose `Debug` text is `debug`, if one was made in this scope.
pub fn reported(debug: &str) -> Option<Reported> {
    REPORTED
        .try_with(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list
                .iter()
                .rev()
                .find(|reported| reported.describes(debug))
                .cloned()
        })
        .ok()
        .flatten()
}

impl Reported {
    /// Whether this report is of the error whose `Debug` text is `debug`.
    fn describes(&self, debug: &str) -> bool {
        if !self.handler_within {
            return self.debug == debug;
        }
        debug.len() >= self.debug.len() + self.debug_end.len()
            && debug.starts_with(&self.debug)
            && debug.ends_with(&self.debug_end)
    }

    /// The `Debug` text of the handler's error inside `debug` (the text this report
    /// [`describes`](reported)), when the report is [`handler_within`](Self::handler_within).
    pub fn handler_debug<'d>(&self, debug: &'d str) -> Option<&'d str> {
        if !self.handler_within || !self.describes(debug) {
            return None;
        }
        debug.get(self.debug.len()..debug.len() - self.debug_end.len())
    }
}

/// What a layer outside says of a handler's error it knows by its `Debug` text only, inside a
/// report [`handler_within`](Reported::handler_within): inside the `Handler(…)` wrappers of the
/// layers between, a `Diagnostic`'s message, a string's text, or the `Debug` text itself.
///
/// ```
/// use powertools_core::failure::handler_words;
///
/// assert_eq!(
///     handler_words(r#"Diagnostic { error_type: "Declined", error_message: "card 51" }"#),
///     "card 51"
/// );
/// assert_eq!(handler_words(r#"Handler("card \"51\" declined")"#), r#"card "51" declined"#);
/// assert_eq!(handler_words("Declined { code: 51 }"), "Declined { code: 51 }");
/// ```
pub fn handler_words(debug: &str) -> String {
    let debug = inside_handler_wrappers(debug);
    if let Some(diagnostic) = diagnostic_in_debug(debug) {
        return diagnostic.error_message;
    }
    match debug_string(debug) {
        Some((text, "")) => text,
        _ => debug.to_owned(),
    }
}

/// What Lambda reports for the error whose `Debug` text is `debug`, when a layer inside
/// [`report`]ed it in this scope: the report, and the message. For a report around the
/// handler's error ([`handler_within`](Reported::handler_within)), the message begins with the
/// handler's error in [`handler_words`], or with what Lambda reports for it when a layer
/// further inside reported that too (nested idempotency layers whose releases both failed: the
/// inner one's text is its report's, not its `Debug`, which holds the store's raw answer), and
/// the report is a panic when that one is. Each report is applied once: a handler's own `Debug`
/// text that repeats a report's shape is the handler's (found by a review: one report was
/// applied at every level, and a million levels overflowed the stack).
pub fn reported_with_message(debug: &str) -> Option<(Reported, String)> {
    let reports = REPORTED
        .try_with(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list
                .clone()
        })
        .ok()?;
    let mut used = vec![false; reports.len()];
    reported_within(&reports, &mut used, debug)
}

/// [`reported_with_message`] with `reports` (the scope's), those `used` already left out: at
/// most one level per report.
fn reported_within(
    reports: &[Reported],
    used: &mut [bool],
    debug: &str,
) -> Option<(Reported, String)> {
    let index = (0..reports.len())
        .rev()
        .find(|&index| !used[index] && reports[index].describes(debug))?;
    used[index] = true;
    let reported = &reports[index];
    let mut panicked = reported.panicked;
    let message = match reported.handler_debug(debug) {
        Some(handler) => {
            let handler = inside_handler_wrappers(handler);
            let words = match reported_within(reports, used, handler) {
                Some((inner, words)) => {
                    panicked |= inner.panicked;
                    words
                }
                None => handler_words(handler),
            };
            words + &reported.message
        }
        None => reported.message.clone(),
    };
    Some((
        Reported {
            panicked,
            ..reported.clone()
        },
        message,
    ))
}

/// What Lambda is told of a handler's error that a powertools-rs error passes on (the
/// idempotency crate's `Error::Handler`, the metrics layer's `ServiceError::Handler`): a
/// `String` or `&str` as `Error` and its text, a boxed or I/O error by its type or variant
/// ([`error_chain::type_name`](crate::error_chain::type_name)) and its message chain, as the
/// failure line and the span name them; any other error as it converts itself. `lambda_runtime`
/// alone names a string `&alloc::string::String` and a box by the box's type. An error whose
/// `Display` or `Debug` panics here is named by its type and said so ([`UNDESCRIBABLE`]).
///
/// ```
/// use powertools_core::failure::handler_diagnostic;
///
/// let text = handler_diagnostic("card declined".to_owned());
/// assert_eq!((text.error_type.as_str(), text.error_message.as_str()), ("Error", "card declined"));
/// let boxed: lambda_runtime::Error = std::io::Error::other("disk full").into();
/// assert_eq!(handler_diagnostic(boxed).error_type, "std::io::Error");
/// ```
pub fn handler_diagnostic<E: Into<lambda_runtime::Diagnostic> + 'static>(
    error: E,
) -> lambda_runtime::Diagnostic {
    use lambda_runtime::Diagnostic;
    use std::any::Any;
    let described = catch_quiet_panic(|| {
        let any: &dyn Any = &error;
        if let Some(text) = any
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| any.downcast_ref::<&'static str>().copied())
        {
            return Some(Diagnostic {
                error_type: "Error".to_owned(),
                error_message: text.to_owned(),
            });
        }
        let error: &(dyn std::error::Error + 'static) =
            if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
                boxed.as_ref()
            } else if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error>>() {
                boxed.as_ref()
            } else {
                any.downcast_ref::<std::io::Error>()?
            };
        Some(Diagnostic {
            error_type: crate::error_chain::type_name(error).unwrap_or_else(|| "Error".to_owned()),
            error_message: crate::error_chain::message_chain(error),
        })
    });
    match described {
        Ok(Some(diagnostic)) => diagnostic,
        Ok(None) => error.into(),
        Err(payload) => {
            // Leaked, not dropped: a payload whose `Drop` panics would unwind from here.
            std::mem::forget(payload);
            Diagnostic {
                error_type: type_path::<E>().to_owned(),
                error_message: UNDESCRIBABLE.to_owned(),
            }
        }
    }
}

/// What Lambda reports for `error`, when a layer or a call inside [`report`]ed it in this scope
/// (the idempotency crate's own errors: `IdempotencyAlreadyInProgressError`, a panic it caught):
/// [`reported_with_message`] of its `Debug` text, which is written only as far as the longest
/// report's (a handler error's `Debug` may be megabytes) and quietly (a `Debug` that panics
/// matches nothing).
pub fn reported_for(error: &(dyn std::error::Error + 'static)) -> Option<(Reported, String)> {
    let longest = REPORTED
        .try_with(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list
                .iter()
                .filter(|reported| !reported.handler_within)
                .map(|reported| reported.debug.len())
                .max()
        })
        .ok()
        .flatten()?;
    // Room for the `Handler(…)` wrappers of calls around the one that reported (a `run` whose
    // closure returns another `run`'s refusal; found by a review).
    let debug = crate::error_chain::bounded_debug(error, longest + MAX_WRAPPER_BYTES)?;
    if debug.cut {
        return None;
    }
    reported_with_message(inside_handler_wrappers(&debug.text))
}

/// The most bytes of `Handler(…)` wrappers [`reported_for`] reads around a reported error.
const MAX_WRAPPER_BYTES: usize = 16 * "Handler()".len();

/// The error inside the `Handler(…)` variants with which powertools-rs layers pass an inner
/// error on, in a `Debug` text: `Handler(Handler(KeyMissing))` gives `KeyMissing`.
pub fn inside_handler_wrappers(debug: &str) -> &str {
    let mut inner = debug;
    while let Some(rest) = inner
        .strip_prefix("Handler(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        inner = rest;
    }
    inner
}

/// The [`Diagnostic`](lambda_runtime::Diagnostic) whose derived `Debug` text `debug` is
/// (`Diagnostic { error_type: "…", error_message: "…" }`): what a layer that passes a handler's
/// `Diagnostic` on inside its `Handler(…)` shows of it (see [`inside_handler_wrappers`]), read
/// back so that the layers outside name it as Lambda reports it. `None` for any other text.
///
/// ```
/// use lambda_runtime::Diagnostic;
/// use powertools_core::failure::diagnostic_in_debug;
///
/// let diagnostic = Diagnostic {
///     error_type: "BatchProcessingError".into(),
///     error_message: "all \"3\" records failed\n".into(),
/// };
/// assert_eq!(diagnostic_in_debug(&format!("{diagnostic:?}")), Some(diagnostic));
/// assert_eq!(diagnostic_in_debug("Declined(\"card\")"), None);
/// ```
pub fn diagnostic_in_debug(debug: &str) -> Option<lambda_runtime::Diagnostic> {
    let rest = debug.strip_prefix("Diagnostic { error_type: ")?;
    let (error_type, rest) = debug_string(rest)?;
    let rest = rest.strip_prefix(", error_message: ")?;
    let (error_message, rest) = debug_string(rest)?;
    (rest == " }").then_some(lambda_runtime::Diagnostic {
        error_type,
        error_message,
    })
}

/// The string whose `Debug` text (`str::escape_debug` between quotes) `text` begins with, and
/// what follows it; `None` when `text` does not begin with one.
fn debug_string(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut string = String::new();
    let quoted = &text[1..];
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((string, &quoted[at + 1..])),
            '\\' => {
                let escaped = match chars.next()?.1 {
                    't' => '\t',
                    'r' => '\r',
                    'n' => '\n',
                    '0' => '\0',
                    'u' => {
                        if chars.next()?.1 != '{' {
                            return None;
                        }
                        let mut code = 0_u32;
                        let mut digits = 0;
                        loop {
                            let digit = chars.next()?.1;
                            if digit == '}' {
                                break;
                            }
                            digits += 1;
                            if digits > 6 {
                                return None;
                            }
                            code = code * 16 + digit.to_digit(16)?;
                        }
                        if digits == 0 {
                            return None;
                        }
                        char::from_u32(code)?
                    }
                    other @ ('\\' | '"' | '\'') => other,
                    _ => return None,
                };
                string.push(escaped);
            }
            c => string.push(c),
        }
    }
    None
}

/// Describes an error of the caller's type: `Some` when the error is of that type.
type Describe = dyn Fn(&dyn std::any::Any) -> Option<lambda_runtime::Diagnostic> + Send + Sync;

/// The caller's descriptions of its own error types (`error_diagnostic` on the logging and
/// tracing layers), erased: the last given is tried first, and one that panics is passed over.
#[derive(Clone)]
pub struct ErrorDescriptions(Arc<Vec<Arc<Describe>>>);

impl ErrorDescriptions {
    /// `earlier`'s descriptions, with `describe` for errors of type `E` tried first.
    pub fn then<E: 'static>(
        earlier: Option<&ErrorDescriptions>,
        describe: impl Fn(&E) -> lambda_runtime::Diagnostic + Send + Sync + 'static,
    ) -> Self {
        let mut descriptions = earlier
            .map(|earlier| earlier.0.to_vec())
            .unwrap_or_default();
        descriptions.push(Arc::new(move |error: &dyn std::any::Any| {
            error.downcast_ref::<E>().map(&describe)
        }));
        ErrorDescriptions(Arc::new(descriptions))
    }

    /// The description of `error` by the last given that knows its type. One that panics
    /// describes nothing: the error is then named as without it, and the failure still recorded
    /// (the panic's message goes to the panic hook, as any panic's).
    pub fn describe(&self, error: &dyn std::any::Any) -> Option<lambda_runtime::Diagnostic> {
        self.0.iter().rev().find_map(|describe| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| describe(error)))
                .ok()
                .flatten()
        })
    }
}

impl std::fmt::Debug for ErrorDescriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ErrorDescriptions({})", self.0.len())
    }
}

/// What is said of an error whose `Display` or `Debug` panicked while a layer described it.
pub const UNDESCRIBABLE: &str = "the error's Display or Debug panicked";

/// The path of type `E` without its generic arguments (`alloc::boxed::Box`), which names an
/// error whose `Display` or `Debug` panicked: the failure line, the span and Lambda's error
/// response all call it so.
///
/// ```
/// use powertools_core::failure::type_path;
///
/// assert_eq!(type_path::<Vec<u8>>(), "alloc::vec::Vec");
/// ```
pub fn type_path<E: ?Sized>() -> &'static str {
    let path = std::any::type_name::<E>();
    path.split_once('<').map_or(path, |(path, _)| path)
}

/// The type or variant name a derived `Debug` text begins with (`OrderRejected { order: 7 }`
/// gives `OrderRejected`, `Declined("card")` gives `Declined`, `Timeout` itself, and a path
/// its path: `reqwest::Error { kind: Request }` gives `reqwest::Error`); `None` for a text that
/// is not one (a quoted string, an OS error's message, a message such as `anyhow`'s `Debug`:
/// `Card declined` names no type `Card`).
pub fn debug_type_name(debug: &str) -> Option<&str> {
    type_name_in(debug, true)
}

/// [`debug_type_name`] of a `Debug` text that was cut short (its first bytes only), whose close
/// is unseen: named only when a derived struct's fields begin after the name (` { field: `).
pub fn cut_debug_type_name(debug: &str) -> Option<&str> {
    type_name_in(debug, false)
}

/// The name `debug` begins with; `whole` when `debug` is the whole `Debug` text, whose end must
/// close what it opens after the name.
fn type_name_in(debug: &str, whole: bool) -> Option<&str> {
    let end = debug
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(debug.len());
    let (name, rest) = debug.split_at(end);
    let last = name.rsplit("::").next()?;
    let mut segments = name.split("::");
    let identifier = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    // What a derived `Debug` puts after the name: nothing (a unit variant), ` { … }` (fields),
    // `(…)` (a tuple), closed at the very end. Cut short, only a struct's start (` { field: `)
    // tells: a message can begin `Word(` or `Word {` too, and its close is past the cut.
    let derived_shape = if whole {
        rest.is_empty()
            || rest
                .strip_prefix(' ')
                .filter(|fields| fields.starts_with('{'))
                .is_some_and(closes_at_its_end)
            || (rest.starts_with('(') && closes_at_its_end(rest))
    } else {
        rest.strip_prefix(" { ")
            .and_then(|fields| fields.split_once(": "))
            .is_some_and(|(field, _)| identifier(field))
    };
    let named = name.len() <= MAX_TYPE_NAME_BYTES
        && identifier(last)
        && last.starts_with(|c: char| c.is_ascii_uppercase())
        && segments.all(identifier)
        && derived_shape;
    named.then_some(name)
}

/// Whether `text`, which opens with `(`, `[` or `{`, closes what it opens at its last
/// character and not before, skipping string and character literals as `Debug` writes them
/// (quoted, with `\` escapes).
fn closes_at_its_end(text: &str) -> bool {
    let mut depth = 0_usize;
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = match depth.checked_sub(1) {
                    Some(depth) => depth,
                    None => return false,
                };
                if depth == 0 {
                    return at + c.len_utf8() == text.len();
                }
            }
            '"' | '\'' => {
                // To the literal's closing quote, past escaped characters.
                let closed = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            chars.next();
                        }
                        Some((_, quote)) if quote == c => break true,
                        Some(_) => {}
                        None => break false,
                    }
                };
                if !closed {
                    return false;
                }
            }
            _ => {}
        }
    }
    false
}

/// The longest name [`debug_type_name`] reads, in bytes: longer than any type's path, and a
/// word of a message past it is no name (it would be a log key's whole value).
pub const MAX_TYPE_NAME_BYTES: usize = 256;

/// The name of `error`'s type, `debug` being its `Debug` text: `std::io::Error` for an I/O
/// error (found by its type: its `Debug` begins with its private representation, `Os`,
/// `Custom`, `Kind` or `Error`, which names no type a reader knows), `serde_json::Error` for a
/// serde_json error (whose `Debug` begins `Error(`), each alone or boxed; a handler's error
/// passed on inside the `Handler(…)` of a powertools-rs error (the idempotency crate's, the
/// metrics layer's) by [`handler_debug_type_name`] of what is inside; else as
/// [`debug_type_name`] reads `debug`.
///
/// ```
/// use powertools_core::failure::error_type_name;
///
/// let error = std::io::Error::other("disk full");
/// assert_eq!(error_type_name(&error, &format!("{error:?}")), Some("std::io::Error"));
/// ```
pub fn error_type_name<'a>(
    error: &(dyn std::error::Error + 'static),
    debug: &'a str,
) -> Option<&'a str> {
    // Boxed too: `#[source] Box<io::Error>` (thiserror's) is an error of its own type, whose
    // `Debug` is the I/O error's.
    if error.is::<std::io::Error>() || error.is::<Box<std::io::Error>>() {
        Some("std::io::Error")
    } else if error.is::<serde_json::Error>() || error.is::<Box<serde_json::Error>>() {
        // Its `Debug` begins `Error(`: named as a batch record whose body did not read is.
        Some("serde_json::Error")
    } else {
        let inner = inside_handler_wrappers(debug);
        if inner.len() < debug.len() {
            handler_debug_type_name(inner)
        } else {
            debug_type_name(debug)
        }
    }
}

/// [`cut_debug_type_name`] of a `Debug` text cut short, read inside the `Handler(` wrappers
/// it begins with, as [`error_type_name`] reads a whole one.
pub fn cut_error_type_name(debug: &str) -> Option<&str> {
    let (inner, wrappers) = after_handler_openings(debug);
    if wrappers > 0 && io_error_debug(inner, false) {
        return Some("std::io::Error");
    }
    cut_debug_type_name(inner)
}

/// The name of the handler's error whose `Debug` text, inside the `Handler(…)` of the
/// powertools-rs errors that pass it on (the idempotency crate's, the metrics layer's), is
/// `debug`: `std::io::Error` for an I/O error's `Debug` (which begins with its private
/// representation: the error's type is not known there), `None` for a quoted string (a message
/// only), else as [`debug_type_name`] reads it.
///
/// ```
/// use powertools_core::failure::handler_debug_type_name;
///
/// let io = std::io::Error::other("disk full");
/// assert_eq!(handler_debug_type_name(&format!("{io:?}")), Some("std::io::Error"));
/// assert_eq!(handler_debug_type_name("Declined { code: 51 }"), Some("Declined"));
/// assert_eq!(handler_debug_type_name("\"card declined\""), None);
/// ```
pub fn handler_debug_type_name(debug: &str) -> Option<&str> {
    if io_error_debug(debug, true) {
        Some("std::io::Error")
    } else if json_error_debug(debug) {
        Some("serde_json::Error")
    } else {
        debug_type_name(debug)
    }
}

/// The opening of `serde_json::Error`'s `Debug` text. Named: a `(` inside a literal reads as an
/// open call to the let-chain check of the crates that declare Rust 1.85.
const JSON_ERROR_OPENING: &str = "Error(\"";

/// Whether `debug` is what `serde_json::Error`'s `Debug` writes: `Error("…", line: 1, column:
/// 2)` (inside `Handler(…)` its type is not known; it was named `Error`, found by a review).
fn json_error_debug(debug: &str) -> bool {
    debug.starts_with(JSON_ERROR_OPENING) && ends_as_json_error(debug)
}

/// Whether `text` ends as `serde_json::Error`'s `Debug` text does: `", line: 1, column: 2)`.
fn ends_as_json_error(text: &str) -> bool {
    let Some(rest) = text.strip_suffix(')') else {
        return false;
    };
    // The message's closing quote is the last one: `", line: N, column: M` follows it.
    let Some((_, position)) = rest.rsplit_once('"') else {
        return false;
    };
    let Some(position) = position.strip_prefix(", line: ") else {
        return false;
    };
    let Some((line, column)) = position.split_once(", column: ") else {
        return false;
    };
    let number = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    number(line) && number(column)
}

/// How many `Handler(` wrappers a `Debug` text cut short (`head`) opens before a serde_json
/// error's opening, if it is one's; its end (`tail`, read apart) must then close them after
/// serde_json's own end. A serde_json error's message can be long (`invalid type: string
/// "…"` quotes the input): past the bound it was named `Error` (found by a review).
pub(crate) fn json_error_wrappers(head: &str) -> Option<usize> {
    let (inner, wrappers) = after_handler_openings(head);
    inner.starts_with(JSON_ERROR_OPENING).then_some(wrappers)
}

/// What `debug` holds after the `Handler(` openings it begins with, and how many there are
/// (their closes are not looked for: the text may be cut short).
fn after_handler_openings(debug: &str) -> (&str, usize) {
    // Named: a `(` inside a literal reads as an open call to the let-chain check.
    const OPENING: &str = "Handler(";
    let mut inner = debug;
    let mut openings = 0;
    while let Some(rest) = inner.strip_prefix(OPENING) {
        inner = rest;
        openings += 1;
    }
    (inner, openings)
}

/// Whether `tail`, the end of a `Debug` text whose start [`json_error_wrappers`] read, closes a
/// serde_json error and then its `wrappers`.
pub(crate) fn json_error_tail(tail: &str, wrappers: usize) -> bool {
    let mut inner = tail;
    for _ in 0..wrappers {
        let Some(rest) = inner.strip_suffix(')') else {
            return false;
        };
        inner = rest;
    }
    ends_as_json_error(inner)
}

/// Whether `debug` is what `std::io::Error`'s `Debug` writes (`Os { code: 2, kind: NotFound,
/// message: "…" }`, `Custom { kind: Other, error: … }`, `Kind(TimedOut)`, `Error { kind:
/// UnexpectedEof, message: "…" }`), its kind an unquoted `ErrorKind` variant (a type of the
/// user's with a quoted `kind` is not one; found by a review); `whole` when `debug` is the
/// whole text, else its start (cut short).
fn io_error_debug(debug: &str, whole: bool) -> bool {
    // `text` begins with an `ErrorKind` variant's name, then `then`: what follows them, or
    // `Some("")` when a text cut short ends within them.
    fn kind_then<'t>(text: &'t str, then: &str, whole: bool) -> Option<&'t str> {
        let end = text
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(text.len());
        let (kind, rest) = text.split_at(end);
        if !kind.starts_with(|c: char| c.is_ascii_uppercase()) {
            return (!whole && kind.is_empty() && rest.is_empty()).then_some("");
        }
        match rest.strip_prefix(then) {
            Some(after) => Some(after),
            None if !whole && then.starts_with(rest) => Some(""),
            None => None,
        }
    }
    let message_closes = |rest: &str| !whole || (rest.starts_with('"') && rest.ends_with("\" }"));
    if let Some(rest) = debug.strip_prefix("Os { code: ") {
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return !whole && rest.is_empty();
        }
        let rest = &rest[digits..];
        return match rest.strip_prefix(", kind: ") {
            Some(kind) => kind_then(kind, ", message: ", whole).is_some_and(message_closes),
            None => !whole && ", kind: ".starts_with(rest),
        };
    }
    if let Some(rest) = debug.strip_prefix("Custom { kind: ") {
        return kind_then(rest, ", error: ", whole)
            .is_some_and(|error| !whole || error.ends_with(" }"));
    }
    if let Some(rest) = debug.strip_prefix("Error { kind: ") {
        return kind_then(rest, ", message: ", whole).is_some_and(message_closes);
    }
    // Named: a `(` inside a literal reads as an open call to the let-chain check of the crates
    // that declare Rust 1.85.
    const KIND: &str = "Kind(";
    if let Some(rest) = debug.strip_prefix(KIND) {
        return kind_then(rest, ")", whole).is_some_and(|after| after.is_empty());
    }
    false
}

#[cfg(test)]
mod tests {
    /// Polled again after it completed or panicked, the future it wraps is not polled again:
    /// an async block would panic "resumed after completion" (found by a review).
    #[test]
    fn caught_panics_is_fused() {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut done = std::pin::pin!(super::catch_quiet_panics(async { 7 }));
        assert!(matches!(
            done.as_mut().poll(&mut context),
            Poll::Ready(Ok(7))
        ));
        assert!(done.as_mut().poll(&mut context).is_pending());
        let mut panicked = std::pin::pin!(super::catch_quiet_panics(async {
            if true {
                panic!("the SDK's");
            }
        }));
        assert!(matches!(
            panicked.as_mut().poll(&mut context),
            Poll::Ready(Err(_))
        ));
        assert!(panicked.as_mut().poll(&mut context).is_pending());
    }

    use super::*;

    #[test]
    fn generic_arguments_are_dropped_from_a_type_name() {
        assert_eq!(
            type_path::<std::vec::IntoIter<Box<dyn std::error::Error>>>(),
            "alloc::vec::into_iter::IntoIter"
        );
        assert_eq!(type_path::<std::io::Error>(), "std::io::error::Error");
    }

    #[test]
    fn a_build_whose_panics_abort_is_noticed_once_and_one_that_unwinds_never() {
        assert!(!first_notice(false));
        assert!(first_notice(true));
        assert!(!first_notice(true) && !first_notice(false));
        for named in [
            "panic = \"unwind\"",
            "[profile.release]",
            "whole batch",
            "in progress",
        ] {
            assert!(PANICS_ABORT_WARNING.contains(named), "{named}");
        }
    }

    #[test]
    fn a_quiet_panic_s_note_names_its_location_and_not_its_message() {
        assert_eq!(
            quiet_panic_note(Some(("src/orders.rs", 42))),
            "a panic at src/orders.rs:42 (its message is left out: it may quote the data being \
             read; panics abort in this build, so the process stops)\n"
        );
        assert!(quiet_panic_note(None).starts_with("a panic at an unknown location"));
    }

    /// Read back exactly, whatever the strings hold (quotes, backslashes, control and
    /// zero-width characters, which `Debug` escapes as `\u{…}`, the field separator itself):
    /// against `Debug` itself, the writer it reads.
    #[test]
    fn a_diagnostic_is_read_back_from_its_debug_text_exactly() {
        let texts = [
            "",
            "BatchProcessingError",
            "\"quoted\" \\ back\\slash",
            "line\nbreak\ttab\rreturn\0nul",
            "\u{1}\u{7f}\u{200b}\u{feff}\u{10ffff}",
            "é🥐 Zürich ' apostrophe",
            "\", error_message: \"injected\" }",
        ];
        for error_type in texts {
            for error_message in texts {
                let diagnostic = lambda_runtime::Diagnostic {
                    error_type: error_type.to_owned(),
                    error_message: error_message.to_owned(),
                };
                let debug = format!("{diagnostic:?}");
                assert_eq!(diagnostic_in_debug(&debug), Some(diagnostic), "{debug}");
            }
        }
        for other in [
            "Diagnostic",
            "Diagnostic { error_type: \"a\" }",
            "Diagnostic { error_type: \"a\", error_message: \"b\" } trailing",
            "Diagnostic { error_type: \"a\", error_message: \"unterminated }",
            "Diagnostic { error_type: \"\\q\", error_message: \"b\" }",
            "Diagnostic { error_type: \"\\u{110000}\", error_message: \"b\" }",
            "Diagnostic { error_type: \"\\u{}\", error_message: \"b\" }",
            "Declined(\"card\")",
        ] {
            assert_eq!(diagnostic_in_debug(other), None, "{other}");
        }
    }

    #[test]
    fn a_name_is_read_off_a_derived_debug_only() {
        assert_eq!(
            debug_type_name("OrderRejected { order: 7 }"),
            Some("OrderRejected")
        );
        assert_eq!(debug_type_name("Declined(\"card\")"), Some("Declined"));
        assert_eq!(debug_type_name("Timeout"), Some("Timeout"));
        assert_eq!(debug_type_name("\"card declined\""), None);
        assert_eq!(debug_type_name("connection refused (os error 111)"), None);
        assert_eq!(debug_type_name("Connection: refused"), None);
        assert_eq!(debug_type_name(""), None);
    }

    /// A message is no name: `anyhow`'s `Debug` is its message (`Card declined for refund
    /// rf-4`), which gave `Card` (and `No` for `No such bucket`), so a Logs Insights `stats by
    /// exception_name` grouped failures by their first word (found by a review). A struct's
    /// `Debug` has ` {` after its name. A path names its type (`reqwest::Error { kind: Request
    /// }` was `Error`, the name alone).
    #[test]
    fn a_message_is_no_name_and_a_path_is_the_type_s() {
        for message in [
            "Card declined for refund rf-4",
            "No such bucket",
            "Timeout after 3 s",
            "Declined (card)",
            "Error: the bank said no",
            "Order{order: 7}",
        ] {
            assert_eq!(debug_type_name(message), None, "{message}");
        }
        assert_eq!(
            debug_type_name("reqwest::Error { kind: Request }"),
            Some("reqwest::Error")
        );
        assert_eq!(
            debug_type_name("bank::Refused(\"card\")"),
            Some("bank::Refused")
        );
        for not_a_type in [
            "reqwest::error { kind: Request }",
            "::Error { .. }",
            "a::::B(1)",
        ] {
            assert_eq!(debug_type_name(not_a_type), None, "{not_a_type}");
        }
        // A derived `Debug` closes what it opens, at the end; a message that only begins like
        // one is not one (`Timeout(30s) waiting for the lock` was `Timeout`; found by a review).
        for message in [
            "Timeout(30s) waiting for the lock",
            "HTTP(S) proxy refused",
            "Invalid { at line 3 } in the body",
        ] {
            assert_eq!(debug_type_name(message), None, "{message}");
        }
        // Nor is a name longer than any type's: a word of 200,000 letters was the whole
        // `exception_name`, a line of 260 KB.
        let word = format!("X{}", "x".repeat(MAX_TYPE_NAME_BYTES));
        assert_eq!(debug_type_name(&word), None);
        assert_eq!(
            debug_type_name(&word[..MAX_TYPE_NAME_BYTES]),
            Some(&word[..MAX_TYPE_NAME_BYTES])
        );
        // What the name opens closes at the very end, not at the first `)` (a review found
        // these named `Timeout` and `Card`); string and character literals are skipped.
        for message in [
            "Timeout(30s) waiting for the lock (attempt 3)",
            "Card(4111111111111111) declined for user (bob)",
            "Refused { reason: 1 } and { more }",
            "Error(can't connect)",
        ] {
            assert_eq!(debug_type_name(message), None, "{message}");
        }
        for (derived, name) in [
            ("Gen(Some(Gen([1])))", "Gen"),
            ("Refused { reason: \"a)b}\" }", "Refused"),
            ("Quoted('(')", "Quoted"),
            ("Escaped(\"say \\\"hi)\\\"\")", "Escaped"),
            (
                "Nested { inner: Some(Inner { a: [1, 2] }), b: () }",
                "Nested",
            ),
        ] {
            assert_eq!(debug_type_name(derived), Some(name), "{derived}");
        }
    }

    /// A `Debug` cut at a bound (its close unseen) is named only by a derived struct's start
    /// (` { field: `): a message longer than the bound that begins `Word(` or `Word {` (an
    /// `anyhow` error's `Debug` with its backtrace is kilobytes) was named `Word`, and a word
    /// running up to the cut was named by its first 256 bytes (found by a review).
    #[test]
    fn a_cut_debug_is_named_by_a_derived_struct_s_start_only() {
        assert_eq!(
            cut_debug_type_name("Declined { reason: \"xxxxxxxx"),
            Some("Declined")
        );
        assert_eq!(
            cut_debug_type_name("bank::Declined { code: 4"),
            Some("bank::Declined")
        );
        for cut in [
            "Timeout(30s) waiting for the lock\n\nStack backtrace:\n   0: anyh",
            "Charge(card ending 4242) declined; retr",
            "Invalid { at line 3 } in the bo",
            "Declined(\"xxxxxxxxxxxxx",
            "Xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(cut_debug_type_name(cut), None, "{cut}");
        }
    }

    /// A boxed I/O error is named as one (thiserror's `#[source] Box<io::Error>` gave
    /// `Custom`, its representation).
    #[test]
    fn a_boxed_io_error_is_named_as_one() {
        let boxed = Box::new(std::io::Error::other("disk full"));
        assert_eq!(
            error_type_name(&boxed, &format!("{boxed:?}")),
            Some("std::io::Error")
        );
    }

    /// A handler's error passed on inside `Handler(…)` (the idempotency crate's `Error<E>`, the
    /// metrics layer's) is named by what is inside, an I/O error by its type in each form the
    /// standard library writes, a message as none; cut short too. A batch record returning
    /// `Idempotency::run`'s error was named `Handler` (found by an attack from the docs).
    #[test]
    fn a_handler_error_inside_its_wrappers_is_named_by_what_is_inside() {
        use std::io::Read as _;
        #[derive(Debug)]
        struct Wrapped;
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapped {}
        let name = |debug: String| {
            let error = Wrapped;
            error_type_name(&error, &debug).map(str::to_owned)
        };
        let simple_message = (&[1_u8][..]).read_exact(&mut [0_u8; 4]).unwrap_err();
        for io in [
            std::io::Error::from_raw_os_error(2),
            std::io::Error::other("disk full"),
            std::io::Error::from(std::io::ErrorKind::TimedOut),
            simple_message,
        ] {
            assert_eq!(
                name(format!("Handler({io:?})")).as_deref(),
                Some("std::io::Error"),
                "{io:?}"
            );
            assert_eq!(
                name(format!("Handler(Handler({io:?}))")).as_deref(),
                Some("std::io::Error")
            );
        }
        assert_eq!(
            name("Handler(Declined { code: 51 })".into()).as_deref(),
            Some("Declined")
        );
        // A serde_json error inside (`run` over `serde_json::from_str`; found by a review).
        let json = serde_json::from_str::<u8>("{").unwrap_err();
        assert_eq!(
            name(format!("Handler({json:?})")).as_deref(),
            Some("serde_json::Error"),
            "{json:?}"
        );
        assert_eq!(
            name("Handler(Error(\"x\", line: one))".into()).as_deref(),
            Some("Error")
        );
        assert_eq!(name("Handler(\"card declined\")".into()), None);
        // A type of the user's named like a representation, its kind quoted: its own name.
        for (user, named) in [
            (
                "Os { code: 2, kind: \"NotFound\", message: \"gone\" }",
                "Os",
            ),
            ("Custom { kind: \"Other\", error: \"bad\" }", "Custom"),
            ("Kind(\"TimedOut\")", "Kind"),
            ("Error { kind: 3, message: \"x\" }", "Error"),
        ] {
            assert_eq!(
                name(format!("Handler({user})")).as_deref(),
                Some(named),
                "{user}"
            );
        }
        // Not an I/O error's shape (its kind is one word): a variant of the user's named so.
        assert_eq!(
            name("Handler(Kind(\"a b\"))".into()).as_deref(),
            Some("Kind")
        );
        assert_eq!(
            cut_error_type_name("Handler(Custom { kind: Other, error: \"xxxx"),
            Some("std::io::Error")
        );
        assert_eq!(
            cut_error_type_name("Handler(Declined { reason: \"xxxx"),
            Some("Declined")
        );
        assert_eq!(cut_error_type_name("Handler(\"xxxx"), None);
    }

    /// What a call reported for its own error is found by the error's `Debug` text, which is
    /// written only as far as the longest report's; a longer one, or one outside a scope, is
    /// not looked up.
    #[tokio::test]
    async fn a_reported_error_is_found_by_its_debug_text_read_only_as_far_as_needed() {
        #[derive(Debug)]
        struct Busy(&'static str);
        impl std::fmt::Display for Busy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "busy with {}", self.0)
            }
        }
        impl std::error::Error for Busy {}
        let busy = Busy("k");
        assert_eq!(reported_for(&busy), None, "outside a scope");
        let (found, longer, wrapped, ()) = scope(async {
            report(Reported {
                debug: format!("{busy:?}"),
                debug_end: String::new(),
                handler_within: false,
                error_type: "IdempotencyAlreadyInProgressError",
                message: "already in progress".to_owned(),
                panicked: false,
            });
            (
                reported_for(&busy),
                reported_for(&Busy("k-but-longer")),
                reported_for(&Handler(Handler(Busy("k")))),
                {
                    // Kept among as many reports as a handler may make before it returns the
                    // first call's refusal; the oldest goes past that.
                    let other = || Reported {
                        debug: "Other".to_owned(),
                        debug_end: String::new(),
                        handler_within: false,
                        error_type: "Other",
                        message: String::new(),
                        panicked: false,
                    };
                    (1..KEPT_REPORTS).for_each(|_| report(other()));
                    assert!(reported_for(&busy).is_some(), "kept among {KEPT_REPORTS}");
                    report(other());
                    assert!(reported_for(&busy).is_none(), "the oldest goes");
                },
            )
        })
        .await;
        let (reported, message) = found.expect("reported");
        assert_eq!(
            (reported.error_type, message.as_str()),
            ("IdempotencyAlreadyInProgressError", "already in progress")
        );
        assert_eq!(longer, None);
        // Inside the wrappers of calls around the one that reported (a `run` returning another
        // `run`'s refusal).
        assert_eq!(
            wrapped.map(|(reported, _)| reported.error_type),
            Some("IdempotencyAlreadyInProgressError")
        );
    }

    /// A record's scope is its own inside the invocation's: its reports are not the
    /// invocation's (nor the invocation's its), and a replay it notes is noted around it when it
    /// ends. The idempotency layer's entering is noted in the scope it finds open too.
    #[tokio::test]
    async fn a_record_s_scope_is_its_own_and_its_replay_is_noted_around_it() {
        let reported = |debug: &str| Reported {
            debug: debug.to_owned(),
            debug_end: String::new(),
            handler_within: false,
            error_type: "IdempotencyAlreadyInProgressError",
            message: String::new(),
            panicked: false,
        };
        let (inside, outside, replayed_inside, replayed) = scope(async {
            report(reported("invocation's"));
            let (inside, replayed_inside) = record_scope(async {
                report(reported("record's"));
                note_replayed_response();
                (
                    reported("invocation's").describes("invocation's")
                        && super::reported("invocation's").is_some(),
                    response_replayed(),
                )
            })
            .await;
            (
                inside,
                super::reported("record's").is_some(),
                replayed_inside,
                response_replayed(),
            )
        })
        .await;
        assert!(!inside, "the invocation's report is not the record's");
        assert!(!outside, "the record's report is not the invocation's");
        assert!(
            replayed_inside && replayed,
            "the replay is noted around the record"
        );

        let entered = scope(async {
            let before = idempotency_layer_entered();
            let within = idempotency_scope(async { idempotency_layer_entered() }).await;
            (before, within)
        })
        .await;
        assert_eq!(entered, (false, true));
        assert!(idempotency_scope(async { idempotency_layer_entered() }).await);
    }

    /// A serde_json error inside `Handler(…)` whose message takes its `Debug` past the bound read
    /// for a name (`invalid type: string "…"` quotes the input) is still named so: its end is
    /// read apart. It was `Error` (found by a review).
    #[test]
    fn a_long_json_error_inside_its_wrappers_is_named_by_its_type() {
        use serde::de::Error as _;
        let long = || serde_json::Error::custom("y".repeat(300));
        assert_eq!(
            crate::error_chain::type_name(&Handler(long())).as_deref(),
            Some("serde_json::Error")
        );
        assert_eq!(
            crate::error_chain::type_name(&Handler(Handler(long()))).as_deref(),
            Some("serde_json::Error")
        );
        // A type of the user's that begins alike but does not end as one.
        #[derive(Debug)]
        struct Error(String, u8);
        impl std::fmt::Display for Error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} {}", self.0, self.1)
            }
        }
        assert_ne!(
            crate::error_chain::type_name(&Handler(Error("y".repeat(300), 1))).as_deref(),
            Some("serde_json::Error")
        );
    }

    /// A `Handler(…)` wrapper, as the idempotency crate's `Error::Handler` writes its `Debug`.
    #[derive(Debug)]
    struct Handler<E>(E);

    impl<E: std::fmt::Display> std::fmt::Display for Handler<E> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Handler<E> {}

    /// A serde_json error's `Debug` is `Error("…", line: 1, column: 2)`, which read as a type
    /// named `Error`; a batch record whose body did not read says `serde_json::Error`, and a
    /// handler's own `?` on `serde_json::from_str` said `Error` (noted by a review).
    #[test]
    fn a_json_error_is_named_by_its_type_alone_or_boxed() {
        let error = serde_json::from_str::<u8>("[").unwrap_err();
        let debug = format!("{error:?}");
        assert!(debug.starts_with("Error("), "{debug}");
        assert_eq!(error_type_name(&error, &debug), Some("serde_json::Error"));
        let boxed = Box::new(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(
            error_type_name(&boxed, &format!("{boxed:?}")),
            Some("serde_json::Error")
        );
        let handler_error: Box<dyn std::error::Error + Send + Sync> =
            serde_json::from_str::<u8>("\"nan\"").unwrap_err().into();
        assert_eq!(
            crate::error_chain::type_name(handler_error.as_ref()).as_deref(),
            Some("serde_json::Error")
        );
    }

    /// An I/O error's `Debug` begins with its private representation (`Os`, `Custom`, `Kind`,
    /// `Error`): it is named by its type instead, in every form the standard library builds,
    /// and a type of the user's whose `Debug` looks the same keeps its own name.
    #[test]
    fn an_io_error_is_named_by_its_type_not_its_representation() {
        use std::io::Read as _;
        let os = std::io::Error::from_raw_os_error(2);
        let custom = std::io::Error::other("disk full");
        let kind = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let simple_message = (&[1_u8][..]).read_exact(&mut [0_u8; 4]).unwrap_err();
        for error in [os, custom, kind, simple_message] {
            let debug = format!("{error:?}");
            assert_eq!(
                error_type_name(&error, &debug),
                Some("std::io::Error"),
                "{debug}"
            );
        }

        #[derive(Debug)]
        #[allow(dead_code)]
        enum AppError {
            Kind(u8),
            Custom { kind: u8, error: String },
        }
        impl std::fmt::Display for AppError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("app")
            }
        }
        impl std::error::Error for AppError {}
        for (error, name) in [
            (AppError::Kind(3), "Kind"),
            (
                AppError::Custom {
                    kind: 1,
                    error: "bad".into(),
                },
                "Custom",
            ),
        ] {
            let debug = format!("{error:?}");
            assert_eq!(error_type_name(&error, &debug), Some(name), "{debug}");
        }
    }

    fn in_progress() -> Reported {
        Reported {
            debug: r#"AlreadyInProgress { key: "k" }"#.to_owned(),
            debug_end: String::new(),
            handler_within: false,
            error_type: "IdempotencyAlreadyInProgressError",
            message: "execution already in progress".to_owned(),
            panicked: false,
        }
    }

    /// A handler error whose `Debug` text repeats a report's shape a million levels deep: each
    /// report is applied once (the rest is the handler's text), not at every level to a stack
    /// overflow (found by a review).
    #[tokio::test]
    async fn a_report_s_shape_repeated_deep_is_followed_a_few_levels() {
        let around = Reported {
            debug: "DeleteFailed { error: Handler(".to_owned(),
            debug_end: "), source: S }".to_owned(),
            handler_within: true,
            error_type: "IdempotencyPersistenceLayerError",
            message: "; then S".to_owned(),
            panicked: false,
        };
        let levels = 1_000_000;
        let debug = format!(
            "{}x{}",
            around.debug.repeat(levels),
            around.debug_end.repeat(levels)
        );
        let (reported, message) = scope(async {
            report(around.clone());
            reported_with_message(&debug)
        })
        .await
        .expect("reported");
        assert_eq!(reported, around);
        assert_eq!(message.matches("; then S").count(), 1, "applied once");
        // Two reports of the same shape (two nested layers): each applied once
        let (_, message) = scope(async {
            report(around.clone());
            report(around.clone());
            reported_with_message(&debug)
        })
        .await
        .expect("reported");
        assert_eq!(message.matches("; then S").count(), 2);
    }

    #[tokio::test]
    async fn a_report_around_the_handler_s_error_is_read_for_any_error_between() {
        let around = Reported {
            debug: "DeleteFailed { error: Handler(".to_owned(),
            debug_end: "), source: Timeout }".to_owned(),
            handler_within: true,
            error_type: "IdempotencyPersistenceLayerError",
            message: "; releasing the in-progress record then failed too: timeout".to_owned(),
            panicked: false,
        };
        scope(async {
            report(around.clone());
            let debug = "DeleteFailed { error: Handler(Declined { code: 51 }), source: Timeout }";
            assert_eq!(reported(debug), Some(around.clone()));
            assert_eq!(around.handler_debug(debug), Some("Declined { code: 51 }"));
            // Another source, or a text that only starts alike, is not this error
            assert_eq!(
                reported("DeleteFailed { error: Handler(Declined), source: Other }"),
                None
            );
            assert_eq!(
                reported("DeleteFailed { error: Handler(), source: Timeout"),
                None
            );
            // An empty handler text between the two still is; fewer bytes than both is not
            assert_eq!(
                around.handler_debug("DeleteFailed { error: Handler(), source: Timeout }"),
                Some("")
            );
            assert_eq!(
                reported("DeleteFailed { error: Handler), source: Timeout }"),
                None
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_report_is_read_in_its_scope_for_the_error_it_describes_only() {
        // Outside a scope nothing is kept
        report(in_progress());
        assert_eq!(reported(r#"AlreadyInProgress { key: "k" }"#), None);

        scope(async {
            assert_eq!(reported(r#"AlreadyInProgress { key: "k" }"#), None);
            // A nested scope is the same one: a report inside is read outside it
            scope(async { report(in_progress()) }).await;
            assert_eq!(
                reported(r#"AlreadyInProgress { key: "k" }"#),
                Some(in_progress())
            );
            // Another error (a layer between replaced it) does not take it
            assert_eq!(reported(r#"AlreadyInProgress { key: "other" }"#), None);
        })
        .await;

        // Several reports in one scope: each error finds its own (a retry's first error)
        scope(async {
            let second = Reported {
                debug: r#"AlreadyInProgress { key: "k2" }"#.to_owned(),
                ..in_progress()
            };
            report(in_progress());
            report(second.clone());
            assert_eq!(
                reported(r#"AlreadyInProgress { key: "k" }"#),
                Some(in_progress())
            );
            assert_eq!(reported(&second.debug), Some(second));
            // A bounded number: the oldest goes
            for _ in 0..KEPT_REPORTS {
                report(Reported {
                    debug: "Other".to_owned(),
                    ..in_progress()
                });
            }
            assert_eq!(reported(r#"AlreadyInProgress { key: "k" }"#), None);
        })
        .await;

        // Concurrent scopes each have their own
        let (first, second) = tokio::join!(
            scope(async {
                report(in_progress());
                tokio::task::yield_now().await;
                reported(r#"AlreadyInProgress { key: "k" }"#)
            }),
            scope(async {
                tokio::task::yield_now().await;
                reported(r#"AlreadyInProgress { key: "k" }"#)
            })
        );
        assert_eq!(first, Some(in_progress()));
        assert_eq!(second, None);
    }

    #[test]
    fn the_error_inside_handler_wrappers() {
        assert_eq!(
            inside_handler_wrappers("Handler(Handler(KeyMissing))"),
            "KeyMissing"
        );
        assert_eq!(inside_handler_wrappers(r#"Handler("x")"#), r#""x""#);
        assert_eq!(inside_handler_wrappers("Handler(x"), "Handler(x");
        assert_eq!(inside_handler_wrappers("Handlers(x)"), "Handlers(x)");
        assert_eq!(inside_handler_wrappers(""), "");
    }

    #[test]
    fn the_scope_holds_its_future_once() {
        let large = async {
            let buffer = [7_u8; 2048];
            tokio::task::yield_now().await;
            buffer.len()
        };
        let inner = std::mem::size_of_val(&large);
        assert!(inner >= 2048);
        assert!(std::mem::size_of_val(&scope(large)) <= inner + 16);
    }
}
