//! Where records live: the storage primitives, and the stores that implement them.

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod in_memory;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoDbError, DynamoDbStore, DynamoDbStoreBuilder};
pub use in_memory::InMemoryStore;

use crate::error::BoxError;
use crate::record::DataRecord;

/// What a conditional put of an in-progress record found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// No live record held the key; the in-progress record is stored.
    Stored,
    /// A live record holds the key. Stores that get it back with the failed write (DynamoDB's
    /// `ReturnValuesOnConditionCheckFailure = ALL_OLD`) return it, so no second read is needed.
    Exists(Option<DataRecord>),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: unreachable, throttled, access denied, ….
    #[error(transparent)]
    Backend(BoxError),
    /// The record is over the store's item size limit (DynamoDB: 400 KB). The engine then
    /// completes the record without its response (see [`Error::ResponseNotStored`]).
    ///
    /// [`Error::ResponseNotStored`]: crate::Error::ResponseNotStored
    #[error("the record for {key} is over the store's item size limit: {reason}")]
    ItemTooLarge {
        /// The idempotency key.
        key: String,
        /// What the store said.
        reason: String,
    },
    /// [`IdempotencyStore::update`] found the key no longer held by the record's claim: its
    /// in-progress deadline passed and another invocation claimed the key (or the record
    /// expired and went). The stored record is left as it is.
    #[error(
        "the idempotency record {key} is no longer this invocation's claim: another invocation \
         claimed the key after this claim's in-progress deadline, so its record was left as it is"
    )]
    ClaimReplaced {
        /// The idempotency key.
        key: String,
    },
    /// A stored record could not be read: a missing attribute, a wrong type, an unknown status.
    #[error("stored record {key} is invalid: {reason}")]
    InvalidRecord {
        /// The idempotency key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One of the storage primitives, named in the errors the engine raises itself about a call
/// (see [`IdempotencyStore::describe_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreCall {
    /// [`IdempotencyStore::get`].
    Get,
    /// [`IdempotencyStore::put_in_progress`].
    PutInProgress,
    /// [`IdempotencyStore::update`].
    Update,
    /// [`IdempotencyStore::delete`].
    Delete,
    /// [`IdempotencyStore::replace_with_fence`].
    ReplaceWithFence,
    /// [`IdempotencyStore::put_over_fence`].
    PutOverFence,
}

/// The storage primitives of idempotency.
///
/// Hashing, expiry, payload validation, the local cache and the retries on inconsistent state
/// live in the engine, not here, so a store is only storage. The rules a store must enforce
/// itself are the atomic claim in [`put_in_progress`](Self::put_in_progress), and the claim
/// checks of [`update`](Self::update), [`delete`](Self::delete),
/// [`replace_with_fence`](Self::replace_with_fence) and [`put_over_fence`](Self::put_over_fence),
/// which match a record by its [`claim_id`](DataRecord::claim_id): a store must keep that
/// attribute ([`DataRecord::is_claim_of`] is the delete's condition, evaluated in memory).
///
/// A store that wraps another (to count, log or inject faults) forwards every method, the
/// provided ones ([`describe_call`](Self::describe_call), [`describe_store`](Self::describe_store))
/// included.
pub trait IdempotencyStore: Clone + Send + Sync + 'static {
    /// The record stored under `key`, read with strong consistency; `None` if there is none.
    fn get(&self, key: &str)
    -> impl Future<Output = Result<Option<DataRecord>, StoreError>> + Send;

    /// Stores `record` (in progress) **only if** no record holds its key, or the one that does
    /// is replaceable at `now` (see [`DataRecord::replaceable_at`]); atomically.
    fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Overwrites the status, expiry, response (or [why it was not
    /// stored](DataRecord::not_stored_reason)) and validation hash of `record`'s key: **only
    /// while** the stored record is `record`'s claim (the same [`claim_id`](DataRecord::claim_id))
    /// when `record` has a claim id, atomically; otherwise [`StoreError::ClaimReplaced`], the
    /// stored record left as it is. A completion that reaches the store late (after the claim's
    /// deadline, when a retry may have claimed the key again) must never overwrite a later
    /// invocation's claim; the same completion sent twice (a retry of a write whose answer was
    /// lost) succeeds both times.
    fn update(&self, record: &DataRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the in-progress claim `record` (its handler failed, so that a retry runs it
    /// again): **only while** the stored record is still that claim, in progress with the same
    /// [`claim_id`](DataRecord::claim_id) (for a record without one, the same in-progress
    /// expiry), atomically. A delete that reaches the store late (after the claim's deadline,
    /// when a retry may have claimed the key again, with the same deadline when both are records
    /// of one batch) must never remove a later invocation's claim: a record that is no longer
    /// `record`'s claim is left as it is, and that is `Ok`.
    fn delete(&self, record: &DataRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the in-progress claim `claim` with `fence` (its handler failed, or its write went
    /// unanswered and it is taken back), so that a retry runs it again: **only while** the stored record is still that claim, as
    /// [`delete`](Self::delete) matches it, atomically; a record that is no longer `claim`'s is
    /// left as it is, and that is `Ok`. A store writes the fence's status, expiry, in-progress
    /// deadline and claim id, and leaves no payload hash or response.
    ///
    /// A fence is an in-progress record known by its claim id (`fence-…`, see
    /// [`DataRecord::is_fence`]), whose in-progress deadline (here the claim's own; a fence
    /// written in place of nothing has the moment it is written) a claim write
    /// sent before it cannot pass: one whose answer was lost and that is still on its way
    /// compares that deadline with the moment it was sent, and is refused. Every later claim
    /// takes the fence at once with [`put_over_fence`](Self::put_over_fence). Deleting the
    /// claim instead freed the key for such a write, which then held it in progress until its
    /// own deadline, though its handler never ran; a store that cannot write a fence may still
    /// delete, with that gap.
    fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores the claim `record` in place of the fence `fence` (see
    /// [`replace_with_fence`](Self::replace_with_fence)): **only while** the stored record is
    /// still that fence (in progress, with its [`claim_id`](DataRecord::claim_id)), whatever its
    /// deadline, atomically; otherwise [`PutOutcome::Exists`] with the record that holds the key
    /// when the store gets it back with the failed write (`None` when there is none, or the store
    /// does not say), as [`put_in_progress`](Self::put_in_progress) answers.
    fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// What a call is, in the store's own words, for the errors the engine raises itself about
    /// it (a call with no answer within the store timeout): [`DynamoDbStore`] says `DynamoDB
    /// PutItem on table orders-idempotency at 127.0.0.1:8000`, as its own errors do (`… before
    /// any request was sent (region eu-west-1)` while no request has gone out: the SDK was still
    /// getting credentials, say). `None` (the default) adds nothing.
    ///
    /// [`DynamoDbStore`]: crate::DynamoDbStore
    fn describe_call(&self, call: StoreCall) -> Option<String> {
        let _ = call;
        None
    }

    /// The store as the errors about its records name it, so that the one who reads them knows
    /// where to look (or which record to delete): [`DynamoDbStore`] says `DynamoDB table
    /// orders-idempotency`. `None` (the default) adds nothing.
    ///
    /// [`DynamoDbStore`]: crate::DynamoDbStore
    fn describe_store(&self) -> Option<String> {
        None
    }
}

/// The error answers one store call got, for the engine's error when the store timeout ends the
/// call while its client retries (the AWS SDK retries throttling and 5xx answers): "no answer"
/// would hide the store's own. The engine scopes each call that does not answer at once in its
/// own ([`CALL_ANSWERS`]), so concurrent calls never see each other's; the DynamoDB store's
/// interceptor records into the call's, as each attempt ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallAnswers(Arc<Mutex<Option<(Instant, String)>>>);

tokio::task_local! {
    /// The answers of the store call being polled.
    pub(crate) static CALL_ANSWERS: CallAnswers;
}

std::thread_local! {
    /// An answer recorded outside a scoped call: during a call's first poll, which the engine
    /// makes before it scopes a call that waits ([`forget_unscoped`](CallAnswers::forget_unscoped),
    /// [`adopt_unscoped`](CallAnswers::adopt_unscoped)). An attempt that ended within that poll
    /// (a refused connection on loopback, an answer at once) was lost (found by a review).
    static UNSCOPED: std::cell::RefCell<Option<Option<(Instant, String)>>> =
        const { std::cell::RefCell::new(None) };
}

impl CallAnswers {
    /// Records the answer the current call's last attempt got: an error's text, or `None` for
    /// a success (or an answer the store expects, such as a failed condition). Outside a call
    /// the engine scoped, kept on the thread for the call whose first poll this is.
    #[cfg(feature = "dynamodb")]
    pub(crate) fn record(answer: Option<String>) {
        let answer = answer.map(|answer| (Instant::now(), answer));
        let mut answer = Some(answer);
        let _ = CALL_ANSWERS.try_with(|answers| {
            if let Some(answer) = answer.take() {
                *answers.0.lock().unwrap_or_else(PoisonError::into_inner) = answer;
            }
        });
        if let Some(answer) = answer {
            UNSCOPED.with(|unscoped| *unscoped.borrow_mut() = Some(answer));
        }
    }

    /// Forgets what was recorded outside a scoped call, before a call's first poll.
    pub(crate) fn forget_unscoped() {
        UNSCOPED.with(|unscoped| unscoped.borrow_mut().take());
    }

    /// Takes over what was recorded outside a scoped call, after the call's first poll.
    pub(crate) fn adopt_unscoped(&self) {
        if let Some(answer) = UNSCOPED.with(|unscoped| unscoped.borrow_mut().take()) {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = answer;
        }
    }

    /// The last error answer and how long ago it came, unless a success came after it.
    pub(crate) fn last(&self) -> Option<(Duration, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(at, answer)| (at.elapsed(), answer.clone()))
    }
}

/// The most bytes DynamoDB takes in a partition key's value.
pub(crate) const MAX_PARTITION_KEY_BYTES: usize = 2048;

/// A key the store refused before storing anything, for its size ([`key_over_limit`]): the
/// engine reads it as a write that did not land, so it takes nothing back and warns of nothing
/// that may be stored.
#[derive(Debug)]
pub(crate) struct KeyTooLong(pub(crate) String);

impl std::fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyTooLong {}

/// Why `key` cannot be stored under a key attribute of at most `limit` bytes (DynamoDB's
/// `attribute` key, `partition` or `sort`), naming what makes it long; `None` when it fits.
pub(crate) fn key_over_limit(key: &str, limit: usize, attribute: &str) -> Option<String> {
    if key.len() <= limit {
        return None;
    }
    // `<prefix>.<operation>#<digest>`: all but the digest and `#` is the caller's.
    let named = key.rfind('#').unwrap_or(key.len());
    Some(format!(
        "the idempotency key is {} bytes, over DynamoDB's limit of {limit} bytes for a \
         {attribute} key: its prefix (key_prefix, else the function's name) and operation name \
         make {named} of them; shorten them (the key starts {})",
        key.len(),
        powertools_core::env::shown(key)
    ))
}

#[cfg(all(test, feature = "dynamodb"))]
mod tests {
    use super::*;

    /// An attempt that ends within a call's first poll, before the engine scopes the call,
    /// is the call's answer once it is scoped (a refused connection on loopback was lost, and
    /// the store timeout's error said "no answer"; found by a review); one from before the call
    /// is forgotten.
    #[test]
    fn an_answer_of_the_first_poll_is_the_scoped_call_s() {
        CallAnswers::record(Some("an earlier call's answer".to_owned()));
        CallAnswers::forget_unscoped();
        let answers = CallAnswers::default();
        answers.adopt_unscoped();
        assert_eq!(answers.last(), None);

        CallAnswers::forget_unscoped();
        CallAnswers::record(Some("no connection (Connection refused)".to_owned()));
        let answers = CallAnswers::default();
        answers.adopt_unscoped();
        assert_eq!(
            answers.last().map(|(_, answer)| answer).as_deref(),
            Some("no connection (Connection refused)")
        );
        // Taken over once: the next call does not see it.
        let next = CallAnswers::default();
        next.adopt_unscoped();
        assert_eq!(next.last(), None);
    }
}
