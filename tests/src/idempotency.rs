//! Idempotency stores that fail on purpose, for the examples' handler tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use powertools_idempotency::{DataRecord, IdempotencyStore, InMemoryStore, PutOutcome, StoreError};

/// An [`InMemoryStore`] whose next completions (`update`) of records of one operation fail, as
/// DynamoDB throttled or unreachable right after the handler's side effect happened: the
/// invocation then fails with `IdempotencyPersistenceLayerError` and the record stays in
/// progress until its deadline.
#[derive(Debug, Clone)]
pub struct FailingCompletions {
    inner: InMemoryStore,
    /// `.<operation>#`: the part of a key that names its operation.
    operation: String,
    left: Arc<AtomicUsize>,
}

impl FailingCompletions {
    /// Fails the next `times` completions of records of `operation` (the operation name given to
    /// `run`/`run_keyed`, or the layer's).
    pub fn new(operation: &str, times: usize) -> Self {
        FailingCompletions {
            inner: InMemoryStore::new(),
            operation: format!(".{operation}#"),
            left: Arc::new(AtomicUsize::new(times)),
        }
    }

    /// How many failures are left to give.
    pub fn failures_left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }
}

impl IdempotencyStore for FailingCompletions {
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
        let fails = record.key.contains(&self.operation)
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if fails {
            return Err(StoreError::Backend(
                "ProvisionedThroughputExceededException: the completion failed on purpose".into(),
            ));
        }
        self.inner.update(record).await
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.inner.delete(record).await
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
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
