//! What happened, in the order it happened, as the servers saw it (an order, never timings).

use std::sync::{Arc, Mutex, PoisonError};

/// A shared, ordered record of events.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<String>>>);

impl Timeline {
    /// Appends an event.
    pub fn record(&self, event: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.to_owned());
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The position of the first event that starts with `prefix`.
    pub fn position(&self, prefix: &str) -> Option<usize> {
        self.events()
            .iter()
            .position(|event| event.starts_with(prefix))
    }
}
