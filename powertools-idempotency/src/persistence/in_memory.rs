use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{IdempotencyStore, PutOutcome, StoreError};
use crate::record::DataRecord;

type Records = HashMap<String, DataRecord, RandomState>;

/// A store in this process's memory with the same atomic claim as [`DynamoDbStore`]: for unit
/// tests and offline demos, **not** for deployed functions (each execution environment would
/// have its own records).
///
/// It refuses what DynamoDB refuses, so that a test catches it: a record over 400 KB (as the
/// engine does for every store), and a key over DynamoDB's 2048 bytes for a partition key (a
/// long `key_prefix` or operation name, which failed every call only once deployed). A table
/// with a sort key takes 1024 bytes there, which this store cannot know: keep keys under 1024
/// bytes for one.
///
/// Clones share the same records.
///
/// [`DynamoDbStore`]: crate::DynamoDbStore
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    records: Arc<Mutex<Records>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the record stored under `key`, for assertions in tests.
    pub fn record(&self, key: &str) -> Option<DataRecord> {
        self.lock().get(key).cloned()
    }

    /// The keys of every record, sorted, for assertions in tests.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// The keys of every record but fences (what a failed handler's claim leaves: see
    /// [`DataRecord::is_fence`]), sorted: after a failure, a test asserts this is empty where it
    /// asserted [`is_empty`](Self::is_empty) when failed claims were deleted.
    ///
    /// ```
    /// # use powertools_core::testing::TestContext;
    /// # use powertools_idempotency::{Idempotency, InMemoryStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = InMemoryStore::new();
    /// let idempotency = Idempotency::builder(store.clone()).build().unwrap();
    /// let failed = idempotency
    ///     .run(&TestContext::new().build(), "charge", "order-7", |_| async {
    ///         Err::<u8, _>(std::io::Error::other("card declined"))
    ///     })
    ///     .await;
    /// assert!(failed.is_err());
    /// assert_eq!(store.len(), 1, "a fence");
    /// assert!(store.keys_without_fences().is_empty(), "nothing blocks the retry");
    /// # }
    /// ```
    pub fn keys_without_fences(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .lock()
            .values()
            .filter(|record| !record.is_fence())
            .map(|record| record.key.clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Stores `record` as is, replacing any record with the same key (for setting up tests).
    pub fn insert(&self, record: DataRecord) {
        self.lock().insert(record.key.clone(), record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave the map half-updated: every critical
        // section is a single map operation.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Refuses a key DynamoDB would refuse as a partition key (found by an attack from the docs: the
/// in-memory store took a 3,000-byte key that fails every call on DynamoDB).
fn check_key_size(key: &str) -> Result<(), StoreError> {
    match super::key_over_limit(key, super::MAX_PARTITION_KEY_BYTES, "partition") {
        None => Ok(()),
        Some(cause) => Err(StoreError::Backend(Box::new(super::KeyTooLong(cause)))),
    }
}

impl IdempotencyStore for InMemoryStore {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        check_key_size(key)?;
        Ok(self.record(key))
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        check_key_size(&record.key)?;
        let mut records = self.lock();
        match records.get_mut(&record.key) {
            Some(existing) if !existing.replaceable_at(now) => {
                Ok(PutOutcome::Exists(Some(existing.clone())))
            }
            Some(existing) => {
                existing.clone_from(record);
                Ok(PutOutcome::Stored)
            }
            None => {
                records.insert(record.key.clone(), record.clone());
                Ok(PutOutcome::Stored)
            }
        }
    }

    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        let mut records = self.lock();
        // As `DynamoDbStore`'s condition: only the record's own claim is completed (one lookup).
        let own = |existing: &DataRecord| {
            record.claim_id.is_none() || existing.claim_id == record.claim_id
        };
        match records.get_mut(&record.key) {
            Some(existing) if own(existing) => {
                // As DynamoDB's UpdateItem does: the in-progress deadline attribute stays in
                // place when the update does not set it.
                let in_progress_expiry = existing.in_progress_expiry_timestamp;
                existing.clone_from(record);
                existing.in_progress_expiry_timestamp =
                    record.in_progress_expiry_timestamp.or(in_progress_expiry);
            }
            None if record.claim_id.is_none() => {
                records.insert(record.key.clone(), record.clone());
            }
            _ => {
                return Err(StoreError::ClaimReplaced {
                    key: record.key.clone(),
                });
            }
        }
        Ok(())
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        let mut records = self.lock();
        if records
            .get(&record.key)
            .is_some_and(|stored| stored.is_claim_of(record))
        {
            records.remove(&record.key);
        }
        Ok(())
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        let mut records = self.lock();
        if let Some(stored) = records
            .get_mut(&claim.key)
            .filter(|stored| stored.is_claim_of(claim))
        {
            stored.clone_from(fence);
        }
        Ok(())
    }

    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        let mut records = self.lock();
        match records.get_mut(&record.key) {
            Some(stored) if stored.is_fence() && stored.claim_id == fence.claim_id => {
                stored.clone_from(record);
                Ok(PutOutcome::Stored)
            }
            Some(stored) => Ok(PutOutcome::Exists(Some(stored.clone()))),
            None => Ok(PutOutcome::Exists(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::{Status, epoch};

    /// A key DynamoDB refuses is refused here too, at the call, naming why and what makes it
    /// long; one at the limit is taken (found by an attack from the docs: a 3,000-byte key was
    /// taken here, and failed every call on DynamoDB).
    #[tokio::test]
    async fn a_key_over_dynamodb_s_partition_key_limit_is_refused_as_dynamodb_would() {
        use powertools_core::testing::TestContext;
        let context = TestContext::new().with_function_name("orders").build();
        // `<prefix>.charge#<64 hex digits>`: 72 bytes besides the prefix.
        let call = |prefix_bytes: usize| {
            let store = InMemoryStore::new();
            let idempotency = crate::Idempotency::builder(store.clone())
                .key_prefix("p".repeat(prefix_bytes))
                .build()
                .unwrap();
            let context = context.clone();
            async move {
                let outcome = idempotency
                    .run(&context, "charge", "order-7", |_| async {
                        Ok::<_, std::io::Error>(7)
                    })
                    .await;
                (outcome, store)
            }
        };
        let (at_limit, store) = call(2048 - 72).await;
        assert_eq!(at_limit.unwrap(), 7);
        assert_eq!(store.keys()[0].len(), 2048);
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = warnings.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || WriteTo(writer.clone()))
            .with_max_level(tracing::Level::WARN)
            .finish();
        let (over, store) = {
            let _guard = tracing::subscriber::set_default(subscriber);
            call(2048 - 71).await
        };
        // Nothing was sent: no take-back, no warning that the claim may be stored (one said
        // so, with the 2 KB key; found by a review).
        let warned = String::from_utf8(warnings.lock().unwrap().clone()).unwrap();
        assert!(warned.is_empty(), "{warned}");
        let error = over.unwrap_err();
        assert!(
            matches!(error, crate::Error::Persistence { .. }),
            "{error:?}"
        );
        let message = format!("{error} {:?}", std::error::Error::source(&error));
        assert!(
            message.contains("2049 bytes, over DynamoDB's limit of 2048 bytes for a partition key")
                && message.contains("key_prefix"),
            "{message}"
        );
        assert!(store.is_empty(), "nothing stored");
    }

    /// A writer into shared bytes, for the warnings a test reads.
    struct WriteTo(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_delete_removes_its_own_claim_only() {
        // Given a claim of the key, and an earlier claim of it (a failed invocation whose delete
        // arrives after its deadline, when this claim replaced it)
        let store = InMemoryStore::new();
        let (now_s, now_ms) = epoch(SystemTime::now());
        let claim = DataRecord::new("orders.charge#1", Status::InProgress, now_s + 60)
            .with_in_progress_expiry(now_ms + 1_000);
        let earlier = claim.clone().with_in_progress_expiry(now_ms - 5_000);
        store.insert(claim.clone());

        // When the earlier claim's delete arrives, then the claim stays
        store.delete(&earlier).await.unwrap();
        assert_eq!(store.record(&claim.key), Some(claim.clone()));

        // And a completed record stays too
        let mut completed = claim.clone();
        completed.status = Status::Completed;
        store.update(&completed).await.unwrap();
        store.delete(&claim).await.unwrap();
        assert_eq!(store.record(&claim.key), Some(completed));

        // While its own claim is deleted
        let later = SystemTime::now() + Duration::from_secs(120);
        store.put_in_progress(&claim, later).await.unwrap();
        store.delete(&claim).await.unwrap();
        assert!(store.is_empty());
    }
}
