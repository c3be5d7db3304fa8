//! Writing lines to stdout, where Lambda's log capture reads them, without losing one unseen.
//!
//! The logging and metrics crates' default sinks write each line (a log line, an EMF document)
//! with [`write_line`]: in one write, so that lines of concurrent invocations never interleave;
//! outside any panic report
//! ([`outside_panic_reports_with`](crate::failure::outside_panic_reports_with)); and, when the
//! write fails (a pipe whose reader is gone, a full disk in a local run), with a warning on
//! stderr the first time, since the failing stream cannot carry its own warning, and a count of
//! the lines lost ([`lost_lines`]). Logging must not fail an invocation, so the line itself is
//! dropped. A stdout that was closed before the process started is not seen: Rust's standard
//! library takes writes to it for written.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Lines that failed to reach stdout in this process.
static LOST_LINES: AtomicU64 = AtomicU64::new(0);

/// Whether the first failure was said on stderr.
static SAID: AtomicBool = AtomicBool::new(false);

/// Writes `line` (ending with its newline) to stdout in one write. `what` names the line in the
/// warning when the write fails: "log line", "EMF document".
///
/// ```
/// powertools_core::stdout::write_line(b"{\"level\":\"INFO\",\"message\":\"hello\"}\n", "log line");
/// assert_eq!(powertools_core::stdout::lost_lines(), 0);
/// ```
pub fn write_line(line: &[u8], what: &str) {
    // Stdout's lock taken before the line is counted as being written: see
    // `outside_panic_reports_with`.
    crate::failure::outside_panic_reports_with(
        || std::io::stdout().lock(),
        |mut stdout| {
            write_or_say(
                &mut stdout,
                &mut std::io::stderr(),
                line,
                what,
                &LOST_LINES,
                &SAID,
            );
        },
    );
}

/// How many lines [`write_line`] could not write to stdout in this process (all of them counted,
/// though only the first is said on stderr).
///
/// ```
/// assert_eq!(powertools_core::stdout::lost_lines(), 0);
/// ```
pub fn lost_lines() -> u64 {
    LOST_LINES.load(Ordering::Relaxed)
}

/// [`write_line`] on any pair of streams, with its own count and said-once flag.
fn write_or_say(
    out: &mut impl Write,
    warnings: &mut impl Write,
    line: &[u8],
    what: &str,
    lost: &AtomicU64,
    said: &AtomicBool,
) {
    let Err(error) = out.write_all(line).and_then(|()| out.flush()) else {
        return;
    };
    lost.fetch_add(1, Ordering::Relaxed);
    if said.swap(true, Ordering::AcqRel) {
        return;
    }
    // Plain text, one write: stderr may be the same broken pipe, and then nothing can be said.
    let warning = format!(
        "powertools: a {what} could not be written to stdout ({error}), so CloudWatch Logs will \
         not see it; later lines that fail are lost too, not said again \
         (powertools_core::stdout::lost_lines counts them)\n"
    );
    let _ = warnings.write_all(warning.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A stream that refuses every write, as stdout redirected to `/dev/full` does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted_and_said_once_on_stderr() {
        let (lost, said) = (AtomicU64::new(0), AtomicBool::new(false));
        let mut warnings = Vec::new();
        write_or_say(&mut Full, &mut warnings, b"{}\n", "log line", &lost, &said);
        write_or_say(
            &mut Full,
            &mut warnings,
            b"{}\n",
            "EMF document",
            &lost,
            &said,
        );
        assert_eq!(lost.load(Ordering::Relaxed), 2);
        let warnings = String::from_utf8(warnings).unwrap();
        assert_eq!(warnings.lines().count(), 1, "{warnings}");
        assert!(
            warnings.starts_with("powertools: a log line could not be written to stdout (")
                && warnings.contains("os error 28")
                && warnings.contains("lost_lines"),
            "{warnings}"
        );
    }

    #[test]
    fn a_line_written_is_neither_counted_nor_said() {
        let (lost, said) = (AtomicU64::new(0), AtomicBool::new(false));
        let (mut out, mut warnings) = (Vec::new(), Vec::new());
        write_or_say(&mut out, &mut warnings, b"{}\n", "log line", &lost, &said);
        assert_eq!(out, b"{}\n");
        assert!(warnings.is_empty());
        assert_eq!(lost.load(Ordering::Relaxed), 0);
    }
}
