//! Where EMF documents go: stdout in a function, memory in tests and demos.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// Receives each EMF document as one line of JSON (without the trailing newline).
///
/// Lambda sends a function's stdout to CloudWatch Logs, which extracts the metrics, so
/// [`Stdout`] is the sink of a deployed function. [`MemorySink`] keeps the documents for tests
/// and offline demos.
pub trait Sink: fmt::Debug + Send + Sync + 'static {
    /// Writes one document.
    fn write_document(&self, line: &str);
}

/// Writes each document to stdout as one line, in one write, so that lines from concurrent
/// invocations never interleave. A document that cannot be written (a pipe whose reader is
/// gone, a full disk in a local run) is counted ([`powertools_core::stdout::lost_lines`]), and
/// the first is said on stderr with its error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Sink for Stdout {
    fn write_document(&self, line: &str) {
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        // Not inside a panic's report on stderr, where both share one pipe; a document that
        // cannot be written is counted and the first said on stderr.
        powertools_core::stdout::write_line(text.as_bytes(), "EMF document");
    }
}

/// Keeps documents in memory, for tests and the offline demo (not for deployed functions:
/// CloudWatch never sees them). Clones share the same documents.
///
/// ```
/// use powertools_metrics::{MemorySink, Sink};
/// let sink = MemorySink::new();
/// sink.write_document(r#"{"_aws":{}}"#);
/// assert_eq!(sink.lines(), [r#"{"_aws":{}}"#]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    lines: Arc<Mutex<Vec<String>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The documents written so far, as lines.
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The documents written so far, parsed.
    pub fn documents(&self) -> Vec<Value> {
        self.lock()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
            .collect()
    }

    /// Removes and returns the documents written so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // Every critical section is one push or one copy: a panic cannot leave it half done.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for MemorySink {
    fn write_document(&self, line: &str) {
        self.lock().push(line.to_owned());
    }
}
