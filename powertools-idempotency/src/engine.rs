//! The protocol shared by the layer and the function-level API: claim, run, complete or delete.

use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use lambda_runtime::Context;
use lru::LruCache;
use powertools_core::Invocation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{MAX_ITEM_SIZE, Settings};
use crate::error::Error;
use crate::key::{hash, idempotency_key, is_missing};
use crate::persistence::{IdempotencyStore, PutOutcome, StoreError};
use crate::record::{DataRecord, RecordState, Status, epoch};

/// `MAX_RETRIES` of Powertools: an inconsistent answer from the store is retried twice.
const MAX_ATTEMPTS: usize = 3;

/// The engine: a store, the settings and the local cache, shared by every clone.
#[derive(Debug)]
pub(crate) struct Engine<St> {
    pub(crate) store: St,
    pub(crate) settings: Settings,
    cache: Option<Mutex<LruCache<String, DataRecord>>>,
}

/// What one invocation is keyed on, computed before the handler is called.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) key_data: Option<Value>,
    pub(crate) validation_data: Option<Value>,
}

/// An invocation ready to be claimed: its key, payload hash and deadline, or nothing to claim.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// Idempotency is off, or the key is missing and that is allowed: just run the handler.
    Bypass,
    /// Claim `key` before running the handler.
    Keyed {
        key: String,
        payload_hash: Option<String>,
        deadline: SystemTime,
    },
}

enum Claimed<R> {
    Run(DataRecord),
    Replay(R),
}

impl<St: IdempotencyStore> Engine<St> {
    pub(crate) fn new(store: St, settings: Settings) -> Arc<Self> {
        let cache = settings
            .local_cache_max_items
            .and_then(NonZeroUsize::new)
            .map(|capacity| Mutex::new(LruCache::new(capacity)));
        Arc::new(Engine {
            store,
            settings,
            cache,
        })
    }

    /// Runs `handler` at most once per key within the window, replaying its response otherwise.
    pub(crate) async fn run<R, E, Fut>(
        &self,
        context: &Context,
        claim: Claim,
        handler: impl FnOnce() -> Fut,
    ) -> Result<R, Error<E>>
    where
        R: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<R, E>>,
    {
        let prepared = self.prepare(context, claim)?;
        self.execute(prepared, handler).await
    }

    /// What the invocation needs from its context, taken before anything is awaited, so that
    /// the layer's future holds neither the context nor a copy of it.
    pub(crate) fn prepare<E>(&self, context: &Context, claim: Claim) -> Result<Prepared, Error<E>> {
        if self.settings.disabled {
            return Ok(Prepared::Bypass);
        }
        let key_data = match claim.key_data {
            Some(data) if !is_missing(&data) => data,
            _ if self.settings.raise_on_missing_key => return Err(Error::KeyMissing),
            _ => {
                tracing::warn!(
                    "No idempotency key value found. Skipping persistence layer and validation operations."
                );
                return Ok(Prepared::Bypass);
            }
        };
        Ok(Prepared::Keyed {
            key: self.key_for(context, key_data),
            payload_hash: claim.validation_data.as_ref().map(hash),
            deadline: Invocation::new(context).deadline(),
        })
    }

    /// Claims the key, then runs `handler` or replays the stored response.
    pub(crate) async fn execute<R, E, Fut>(
        &self,
        prepared: Prepared,
        handler: impl FnOnce() -> Fut,
    ) -> Result<R, Error<E>>
    where
        R: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<R, E>>,
    {
        let Prepared::Keyed {
            key,
            payload_hash,
            deadline,
        } = prepared
        else {
            return handler().await.map_err(Error::Handler);
        };
        let record = match self.claim(&key, deadline, payload_hash).await {
            Ok(Claimed::Run(record)) => record,
            Ok(Claimed::Replay(response)) => return Ok(response),
            Err(error) => return Err(error.into_handler_error()),
        };
        self.execute_claimed(record, handler).await
    }

    pub(crate) fn key_for(&self, context: &Context, key_data: Value) -> String {
        let invocation = Invocation::new(context);
        idempotency_key(
            &self.key_prefix(&invocation),
            invocation.tenant_id(),
            key_data,
        )
    }

    fn key_prefix(&self, invocation: &Invocation<'_>) -> String {
        if let Some(prefix) = &self.settings.key_prefix {
            return prefix.clone();
        }
        match &self.settings.handler_name {
            Some(handler) => format!("{}.{handler}", invocation.function_name()),
            None => invocation.function_name().to_owned(),
        }
    }

    async fn claim<R: DeserializeOwned>(
        &self,
        key: &str,
        deadline: SystemTime,
        payload_hash: Option<String>,
    ) -> Result<Claimed<R>, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let now = SystemTime::now();
            if let Some(cached) = self.cached(key, now) {
                return self
                    .replay(cached, payload_hash.as_deref())
                    .map(Claimed::Replay);
            }
            let (now_s, now_ms) = epoch(now);
            let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
            let remaining_ms = i64::try_from(remaining.as_millis()).unwrap_or(i64::MAX);
            let record = DataRecord {
                key: key.to_owned(),
                status: Status::InProgress,
                expiry_timestamp: now_s.saturating_add(expires_after_secs(&self.settings)),
                // Zero milliseconds left is a valid deadline (Powertools for Python #4759).
                in_progress_expiry_timestamp: Some(now_ms.saturating_add(remaining_ms)),
                response_data: None,
                payload_hash: payload_hash.clone(),
            };
            let existing = match self.store.put_in_progress(&record, now).await {
                Ok(PutOutcome::Stored) => return Ok(Claimed::Run(record)),
                Ok(PutOutcome::Exists(Some(existing))) => existing,
                Ok(PutOutcome::Exists(None)) => match self.store.get(key).await {
                    Ok(Some(existing)) => existing,
                    Ok(None) => continue,
                    Err(error) => return Err(store_error(error, "read the existing record")),
                },
                Err(error) => return Err(store_error(error, "save the in-progress record")),
            };
            self.validate(&existing, payload_hash.as_deref())?;
            match existing.state_at(SystemTime::now()) {
                // The claim should have succeeded: the record changed in between. Try again.
                RecordState::Expired | RecordState::InProgressTimedOut => continue,
                RecordState::InProgress => {
                    return Err(Error::AlreadyInProgress {
                        key: key.to_owned(),
                    });
                }
                RecordState::Completed => {
                    self.cache(&existing);
                    return self.replay(existing, None).map(Claimed::Replay);
                }
            }
        }
        Err(Error::InconsistentState {
            key: key.to_owned(),
        })
    }

    fn validate(&self, record: &DataRecord, payload_hash: Option<&str>) -> Result<(), Error> {
        match (payload_hash, record.payload_hash.as_deref()) {
            (Some(expected), Some(stored)) if expected != stored => Err(Error::PayloadMismatch {
                key: record.key.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn replay<R: DeserializeOwned>(
        &self,
        record: DataRecord,
        payload_hash: Option<&str>,
    ) -> Result<R, Error> {
        self.validate(&record, payload_hash)?;
        let Some(text) = record.response_data.as_deref() else {
            return Err(Error::InvalidRecord {
                key: record.key.clone(),
                reason: "a completed record has no response".into(),
            });
        };
        let stored = |source| Error::Serialization {
            what: "stored response",
            source,
        };
        let Some(hook) = &self.settings.replay_hook else {
            // No hook to show the JSON to: straight into the response type.
            return serde_json::from_str(text).map_err(stored);
        };
        let mut response: Value = serde_json::from_str(text).map_err(stored)?;
        hook(&mut response, &record);
        serde_json::from_value(response).map_err(stored)
    }

    /// Runs the handler of a claimed key, then stores its response or deletes the claim.
    async fn execute_claimed<R, E, Fut>(
        &self,
        record: DataRecord,
        handler: impl FnOnce() -> Fut,
    ) -> Result<R, Error<E>>
    where
        R: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let key = record.key.clone();
        let outcome = AssertUnwindSafe(handler()).catch_unwind().await;
        let failure = match outcome {
            Ok(Ok(response)) => match self.complete(record, serialize_response(&response)).await {
                Ok(()) => return Ok(response),
                Err(error @ Error::ItemTooLarge { .. }) => error.into_handler_error(),
                Err(error) => return Err(error.into_handler_error()),
            },
            Ok(Err(error)) => Error::Handler(error),
            Err(panic) => Error::HandlerPanicked {
                message: panic_message(panic.as_ref()),
            },
        };
        // The handler failed: remove its claim so that a retry runs it again.
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop(&key);
        }
        match self.store.delete(&key).await {
            Ok(()) => Err(failure),
            Err(delete_error) => Err(Error::DeleteFailed {
                error: Box::new(failure),
                source: match delete_error {
                    StoreError::Backend(source) => source,
                    other => Box::new(other),
                },
            }),
        }
    }

    async fn complete(
        &self,
        mut record: DataRecord,
        data: Result<String, Error>,
    ) -> Result<(), Error> {
        let data = data?;
        let size = estimated_item_size(&record, &data);
        if size > MAX_ITEM_SIZE {
            return Err(Error::ItemTooLarge {
                key: record.key,
                size,
                limit: MAX_ITEM_SIZE,
            });
        }
        let (now_s, _) = epoch(SystemTime::now());
        record.status = Status::Completed;
        record.expiry_timestamp = now_s.saturating_add(expires_after_secs(&self.settings));
        record.response_data = Some(data);
        self.store
            .update(&record)
            .await
            .map_err(|error| store_error(error, "save the completed record"))?;
        self.cache(&record);
        Ok(())
    }

    fn cached(&self, key: &str, now: SystemTime) -> Option<DataRecord> {
        let mut cache = self
            .cache
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let record = cache.get(key)?.clone();
        if record.state_at(now) == RecordState::Completed {
            Some(record)
        } else {
            cache.pop(key);
            None
        }
    }

    fn cache(&self, record: &DataRecord) {
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(record.key.clone(), record.clone());
        }
    }
}

// Serialized before any await, so the response need not be `Sync` for the future to be `Send`.
fn serialize_response<R: Serialize>(response: &R) -> Result<String, Error> {
    serde_json::to_string(response).map_err(|source| Error::Serialization {
        what: "response",
        source,
    })
}

fn expires_after_secs(settings: &Settings) -> i64 {
    i64::try_from(settings.expires_after.as_secs()).unwrap_or(i64::MAX)
}

/// An upper bound of the DynamoDB item size: attribute values plus generous room for the
/// attribute names and numbers.
fn estimated_item_size(record: &DataRecord, data: &str) -> usize {
    const ATTRIBUTE_NAMES_AND_NUMBERS: usize = 256;
    record.key.len()
        + data.len()
        + record.payload_hash.as_ref().map_or(0, String::len)
        + ATTRIBUTE_NAMES_AND_NUMBERS
}

fn store_error(error: StoreError, operation: &'static str) -> Error {
    match error {
        StoreError::Backend(source) => Error::Persistence { operation, source },
        StoreError::InvalidRecord { key, reason } => Error::InvalidRecord { key, reason },
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
