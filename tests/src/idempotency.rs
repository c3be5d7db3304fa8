//! Idempotency stores that fail on purpose, for the examples' handler tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use powertools_idempotency::{DataRecord, IdempotencyStore, InMemoryStore, PutOutcome, StoreError};

/// An [`InMemoryStore`] whose next completions or releases of records of one operation fail, as
/// DynamoDB throttled or unreachable right after the handler ran.
#[derive(Debug, Clone)]
pub struct FailingStore {
    inner: InMemoryStore,
    /// `.<operation>#`: the part of a key that names its operation.
    operation: String,
    /// Releases (a failed handler's claim replaced with a fence, then deleted) fail, rather than
    /// completions.
    releases: bool,
    left: Arc<AtomicUsize>,
    /// The keys whose release's fence failed: their delete fails too.
    fences_failed: Arc<Mutex<HashSet<String>>>,
    /// How many times a completion lets other tasks run first.
    late_completions: usize,
}

impl FailingStore {
    /// Fails the next `times` completions (`update`) of records of `operation` (the operation
    /// name given to `run`/`run_keyed`, or the layer's), as after the handler's side effect
    /// happened: the invocation then fails with `IdempotencyPersistenceLayerError` and the
    /// record stays in progress until its deadline.
    pub fn completions(operation: &str, times: usize) -> Self {
        FailingStore {
            inner: InMemoryStore::new(),
            operation: format!(".{operation}#"),
            releases: false,
            left: Arc::new(AtomicUsize::new(times)),
            fences_failed: Arc::default(),
            late_completions: 0,
        }
    }

    /// Fails nothing, but lets other tasks run 16 times before each completion, as a completion
    /// that waits for DynamoDB does: copies of one key run side by side find its claim still in
    /// progress (with the in-memory store alone, a handler that never awaits completes before
    /// the next copy claims).
    pub fn late_completions() -> Self {
        FailingStore {
            late_completions: 16,
            ..FailingStore::completions("", 0)
        }
    }

    /// Fails the next `times` releases of records of `operation` (both the fence that replaces a
    /// failed handler's claim and the delete tried after it, one failure counted): the
    /// invocation then fails with `Error::DeleteFailed` holding the handler's error, and the
    /// record stays in progress until its deadline.
    pub fn releases(operation: &str, times: usize) -> Self {
        FailingStore {
            releases: true,
            ..FailingStore::completions(operation, times)
        }
    }

    /// How many failures are left to give.
    pub fn failures_left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }

    /// Whether this write of `record` fails: one of `operation`'s, while failures are left.
    fn fails(&self, record: &DataRecord) -> bool {
        record.key.contains(&self.operation)
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    }
}

impl IdempotencyStore for FailingStore {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.inner.get(key).await
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        self.inner.put_in_progress(record, now).await
    }

    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        for _ in 0..self.late_completions {
            tokio::task::yield_now().await;
        }
        if !self.releases && self.fails(record) {
            return Err(StoreError::Backend(
                "ProvisionedThroughputExceededException: the completion failed on purpose".into(),
            ));
        }
        self.inner.update(record).await
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        // The delete tried after a failed fence: the same release, counted once.
        let fence_failed = self
            .fences_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&record.key);
        if fence_failed {
            return Err(StoreError::Backend(
                "ProvisionedThroughputExceededException: the delete failed on purpose".into(),
            ));
        }
        self.inner.delete(record).await
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        if self.releases && self.fails(claim) {
            self.fences_failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(claim.key.clone());
            return Err(StoreError::Backend(
                "ProvisionedThroughputExceededException: the release failed on purpose".into(),
            ));
        }
        self.inner.replace_with_fence(claim, fence).await
    }

    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        self.inner.put_over_fence(record, fence).await
    }
}
