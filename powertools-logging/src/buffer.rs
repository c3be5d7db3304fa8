//! The per-invocation buffer of verbose lines.

use std::collections::VecDeque;

use crate::logger::Logger;

/// Lines held back during one invocation, oldest first, within a byte budget.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    evicted: usize,
    /// Whether a line over the budget was handed back in this invocation already.
    refused_one: bool,
    /// The logger that formatted the lines, which writes them: the installed one, which writes
    /// the invocation's other lines (a flush found it by a downcast the subscriber may not
    /// allow, behind `tracing_subscriber::reload`, and a failed invocation wrote with the
    /// layer's logger, another writer; found by a review).
    writer: Option<Logger>,
    /// The invocation ended: a line a task logs after it is not held for a flush that will not
    /// come (found by an audit from the docs: lost without a word).
    closed: bool,
}

/// What [`LogBuffer::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Buffered,
    /// The invocation ended: the caller writes the line if its level is written, as for a line
    /// outside any buffer.
    Closed(Vec<u8>),
    /// The line alone is over the budget: the caller writes it directly, saying so for the
    /// invocation's first such line (`first`), with the budget (`max_bytes`).
    TooLarge {
        line: Vec<u8>,
        first: bool,
        max_bytes: usize,
    },
}

impl LogBuffer {
    pub(crate) fn new(max_bytes: usize) -> Self {
        LogBuffer {
            max_bytes,
            ..LogBuffer::default()
        }
    }

    /// Keeps `line`, formatted by `writer`, evicting the oldest lines until it fits.
    pub(crate) fn push(&mut self, line: Vec<u8>, writer: &Logger) -> Pushed {
        if self.closed {
            return Pushed::Closed(line);
        }
        if self.writer.is_none() {
            self.writer = Some(writer.clone());
        }
        if line.len() > self.max_bytes {
            return Pushed::TooLarge {
                line,
                first: !std::mem::replace(&mut self.refused_one, true),
                max_bytes: self.max_bytes,
            };
        }
        while self.bytes + line.len() > self.max_bytes {
            match self.lines.pop_front() {
                Some(oldest) => {
                    self.bytes -= oldest.len();
                    self.evicted += 1;
                }
                None => break,
            }
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        Pushed::Buffered
    }

    /// Removes the buffered lines, oldest first, and how many were evicted before them.
    pub(crate) fn take(&mut self) -> (VecDeque<Vec<u8>>, usize) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.lines),
            std::mem::take(&mut self.evicted),
        )
    }

    /// The logger that formatted the buffered lines, if any were buffered.
    pub(crate) fn writer(&self) -> Option<Logger> {
        self.writer.clone()
    }

    /// Forgets everything, for good: the invocation ended.
    pub(crate) fn close(&mut self) {
        self.clear();
        self.closed = true;
    }

    /// Forgets the lines (not that a line too large was warned about: once per invocation).
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
        self.evicted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Logger {
        Logger::builder()
            .env(powertools_core::env::Env::empty())
            .build()
            .expect("valid settings")
    }

    #[test]
    fn the_oldest_lines_are_evicted_to_stay_within_the_budget() {
        let mut buffer = LogBuffer::new(10);
        for line in ["aaaa", "bbbb", "cccc"] {
            assert_eq!(
                buffer.push(line.as_bytes().to_vec(), &writer()),
                Pushed::Buffered
            );
        }
        let (lines, evicted) = buffer.take();
        assert_eq!(lines, [b"bbbb".to_vec(), b"cccc".to_vec()]);
        assert_eq!(evicted, 1);
        assert_eq!(buffer.take().1, 0, "taking resets the eviction count");
    }

    #[test]
    fn a_line_over_the_budget_is_handed_back() {
        let mut buffer = LogBuffer::new(4);
        assert_eq!(
            buffer.push(b"too long".to_vec(), &writer()),
            Pushed::TooLarge {
                line: b"too long".to_vec(),
                first: true,
                max_bytes: 4
            }
        );
        assert!(matches!(
            buffer.push(b"again".to_vec(), &writer()),
            Pushed::TooLarge { first: false, .. }
        ));
        assert!(buffer.take().0.is_empty());
    }
}
