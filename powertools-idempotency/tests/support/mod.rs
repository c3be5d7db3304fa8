//! What the tests that read their warnings share.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Keeps what a subscriber writes at `WARN` and above, as text.
#[derive(Clone, Default)]
pub(crate) struct CapturedWarnings(Arc<Mutex<Vec<u8>>>);

impl CapturedWarnings {
    /// A subscriber writing here.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish()
    }

    /// What was written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8")
    }
}

impl Write for CapturedWarnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
