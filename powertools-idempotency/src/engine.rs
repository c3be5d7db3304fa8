//! The protocol shared by the layer and the function-level API: claim, run, complete or delete.

use std::cell::RefCell;
use std::future::Future;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use lambda_runtime::Context;
use lru::LruCache;
use powertools_core::Invocation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{MAX_ITEM_SIZE, POWERTOOLS_IDEMPOTENCY_DISABLED, Settings};
use crate::error::Error;
use crate::key::{hash, idempotency_key, is_missing};
use crate::persistence::{
    CALL_ANSWERS, CallAnswers, IdempotencyStore, PutOutcome, StoreCall, StoreError,
};
use crate::record::{DataRecord, FENCE_ID_PREFIX, RecordState, Status, epoch};
use crate::storable::{check_storable, f32_bits};

/// `MAX_RETRIES` of Powertools: an inconsistent answer from the store is retried twice.
const MAX_ATTEMPTS: usize = 3;

thread_local! {
    /// The claims whose handlers run on this thread now, innermost last (each while its
    /// service's `call` builds the handler's future, and during each poll of that future): the
    /// engine's address and the key. The keys move in and out, never copied; the stack keeps
    /// its capacity from one invocation to the next.
    static HOLDING: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

/// Holds a claim's key on [`HOLDING`] until dropped (unwinding included), then moves it back to
/// the claim (whose `key` is empty meanwhile). Holdings nest as polls and calls do.
struct Holding<'k> {
    key: &'k mut String,
}

impl<'k> Holding<'k> {
    fn enter(engine: usize, key: &'k mut String) -> Self {
        let moved = std::mem::take(key);
        HOLDING.with_borrow_mut(|held| held.push((engine, moved)));
        Holding { key }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if let Some((_, key)) = HOLDING.with_borrow_mut(Vec::pop) {
            *self.key = key;
        }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future, polled with its claim held ([`Holding`]): a layer inside on the
    /// same key and engine, called only after an `await` of a layer between, sees it too.
    struct Held<'k, F> {
        #[pin]
        future: F,
        engine: usize,
        key: &'k mut String,
    }
}

impl<F: Future> Future for Held<'_, F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _holding = Holding::enter(*this.engine, this.key);
        this.future.poll(cx)
    }
}

/// How the store's answers to a claim disagreed, for [`Error::InconsistentState`].
#[derive(Clone, Copy, PartialEq)]
enum Inconsistency {
    /// The claim was refused as the record exists, then the read found none.
    Missing,
    /// The claim was refused, yet the record it found had expired.
    Expired,
    /// The claim found a fence (another claim's, taken back or released after its handler
    /// failed), which the next attempt claims over by its id.
    Fenced,
}

/// Time kept back from the invocation's remaining time to report a store failure before Lambda
/// stops the function, and the least time a store call is given.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// The margin for the call that completes a record after the handler succeeded: the last call
/// of the invocation, and one that failing guarantees the handler runs again (a retry after the
/// claim's deadline), where trying it costs at most the invocation running into its deadline
/// (its retry then finds the record completed, if the write landed). So it gets all but the time
/// the runtime needs to send the response.
const COMPLETION_MARGIN: Duration = Duration::from_millis(10);

/// Whether the warning about an untrusted deadline was logged (once per process).
static UNTRUSTED_DEADLINE_WARNED: AtomicBool = AtomicBool::new(false);

/// The engine: a store, the settings and the local cache, shared by every clone.
#[derive(Debug)]
pub(crate) struct Engine<St> {
    pub(crate) store: St,
    pub(crate) settings: Settings,
    cache: Option<Mutex<LruCache<String, DataRecord>>>,
    /// Whether the warning that idempotency is disabled was logged: once per built instance.
    warned_disabled: AtomicBool,
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
        /// The invocation's deadline, in milliseconds since the Unix epoch.
        deadline_ms: u64,
    },
}

/// The invocation's deadline as the protocol may use it.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// A deadline Lambda could have sent: the in-progress record expires then, and store calls
    /// end before it.
    Trusted(SystemTime),
    /// Missing, long past, or further ahead than any invocation lasts: the fallback window is
    /// used, and store calls are bounded by the store timeout alone.
    Untrusted,
}

impl Deadline {
    /// The deadline `deadline_ms` as seen at `now`: trusted when Lambda could have sent it
    /// (`powertools_core::trusted_time_left`: missing, passed more than a second ago, or more
    /// than 90 minutes ahead is not). A deadline passed within the second counts as "0 ms left"
    /// (Powertools for Python #4759): the time it takes to get from the runtime to the claim.
    fn at(deadline_ms: u64, now: SystemTime) -> Self {
        match powertools_core::trusted_time_left(deadline_ms, now) {
            Some(left) => Deadline::Trusted(now + left),
            None => Deadline::Untrusted,
        }
    }
}

enum Claimed<R> {
    Run(DataRecord),
    Replay(R),
}

/// The key prefix of a function without a name, as Powertools for Python names it.
const NAMELESS_FUNCTION: &str = "test-func";

impl<St: IdempotencyStore> Engine<St> {
    pub(crate) fn new(store: St, settings: Settings) -> Arc<Self> {
        // Unbounded, bounded by `cache` itself: `LruCache::new` reserves its whole capacity up
        // front (`local_cache(usize::MAX)`, "no bound", panicked; 100 million items took 130 MB).
        let cache = settings
            .local_cache_max_items
            .filter(|max_items| *max_items > 0)
            .map(|_| Mutex::new(LruCache::unbounded()));
        Arc::new(Engine {
            store,
            settings,
            cache,
            warned_disabled: AtomicBool::new(false),
        })
    }

    /// What the invocation needs from its context, taken before anything is awaited, so that
    /// the layer's future holds neither the context nor a copy of it.
    pub(crate) fn prepare<E>(
        &self,
        context: &Context,
        operation: &str,
        claim: Claim,
        looked_in: impl FnOnce() -> String,
    ) -> Result<Prepared, Error<E>> {
        if self.settings.disabled {
            // At the first invocation, when the function's subscriber is installed (Python
            // warns on every call, and its `warnings` filter shows the warning once).
            if !self.warned_disabled.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{POWERTOOLS_IDEMPOTENCY_DISABLED} is set: handlers run without idempotency. \
                     This is intended for development environments only and should not be used \
                     in production."
                );
            }
            return Ok(Prepared::Bypass);
        }
        check_operation(operation).map_err(Error::into_handler_error)?;
        let key_data = match claim.key_data {
            Some(data) if !is_missing(&data) => data,
            _ if self.settings.raise_on_missing_key => {
                return Err(Error::KeyMissing {
                    looked_in: looked_in(),
                });
            }
            _ => {
                tracing::warn!(
                    looked_in = looked_in(),
                    "No idempotency key value found. Skipping persistence layer and validation operations."
                );
                return Ok(Prepared::Bypass);
            }
        };
        let key = self.key_for(context, operation, key_data);
        // Inside the `call` of a layer that holds this very key (one layer applied twice, with
        // one operation name): that claim covers this call too. Claiming it again found the
        // outer claim and refused every invocation as already in progress (found by an attack
        // from the docs).
        let engine = std::ptr::from_ref(self) as usize;
        if HOLDING.with_borrow(|held| {
            held.iter()
                .any(|(holder, held)| *holder == engine && *held == key)
        }) {
            return Ok(Prepared::Bypass);
        }
        Ok(Prepared::Keyed {
            key,
            // Validation on with no data hashes `null`: missing compares like any value.
            payload_hash: claim.validation_data.as_ref().map(hash),
            deadline_ms: Invocation::new(context).deadline_ms(),
        })
    }

    /// Claims the key, then runs `handler` or replays the stored response.
    ///
    /// One future for the whole protocol, which takes `handler` (and so the event it holds) by
    /// value once: as an `async fn`, or split into nested ones, each level would keep its own
    /// copy of the handler's closure (an argument stays in the future's prefix after the body
    /// moves it) and the layer's boxed future would be twice as large, copied on every call.
    /// `engine` is a reference for the function API and the layer's `Arc` for its `'static`
    /// future, which is then the box's content itself instead of a wrapper around it.
    // Not an `async fn`: that is the second copy of each argument this avoids.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn execute<R, E, Fut, H>(
        engine: impl Deref<Target = Self>,
        prepared: Result<Prepared, Error<E>>,
        handler: H,
    ) -> impl Future<Output = Result<R, Error<E>>>
    where
        R: Serialize + DeserializeOwned + 'static,
        H: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        async move {
            powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
            let (key, payload_hash, deadline) = match prepared? {
                // Nothing to claim, but a panic in the future is still the documented error.
                Prepared::Bypass => {
                    let future = handler();
                    return match AssertUnwindSafe(future).catch_unwind().await {
                        Ok(outcome) => outcome.map_err(Error::Handler),
                        Err(panic) => Err(handler_panicked(panic.as_ref())),
                    };
                }
                Prepared::Keyed {
                    key,
                    payload_hash,
                    deadline_ms,
                } => (key, payload_hash, deadline_ms),
            };
            let deadline = Deadline::at(deadline, SystemTime::now());
            // Who holds the claim, for a layer inside on the same key ([`Holding`]).
            let engine_id = std::ptr::from_ref::<Self>(&engine) as usize;
            let mut record = match engine.claim(key, deadline, payload_hash).await {
                Ok(Claimed::Run(record)) => record,
                Ok(Claimed::Replay(response)) => {
                    // So that a metrics layer around does not fail the invocation for adding
                    // no metric (`raise_on_empty_metrics`): the handler did not run again.
                    powertools_core::failure::note_replayed_response();
                    return Ok(response);
                }
                Err(error) => return Err(error.into_handler_error()),
            };
            // A panic while the handler builds its future (in a service's `call`, or in the
            // closure given to `run`) must not leave the claim behind: delete it, then let the
            // panic go on.
            let future = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                let _holding = Holding::enter(engine_id, &mut record.key);
                handler()
            })) {
                Ok(future) => future,
                Err(panic) => {
                    // Resumed after the release: the logging layer then finds its capture in
                    // the scope, not on whatever thread runs the task after the await.
                    hand_on_panic_capture(panic.as_ref());
                    if let Err(error) = engine.release_failed(&record, deadline).await {
                        tracing::error!(
                            key = %record.key,
                            error = %error,
                            "the handler panicked before it started and releasing its \
                             in-progress idempotency record failed: duplicates get \
                             AlreadyInProgress until it expires"
                        );
                    }
                    std::panic::resume_unwind(panic);
                }
            };
            // With a trusted deadline, the handler stops there: the claim's in-progress deadline
            // is the invocation's, after which a retry takes the record over and runs the
            // handler again, beside this one where nothing ends the invocation (Lambda Managed
            // Instances answer a timeout and let the handler run on).
            let stop_at = match deadline {
                Deadline::Trusted(at) => Some(at),
                Deadline::Untrusted => None,
            };
            let outcome = match (StopAt {
                future: Held {
                    future: AssertUnwindSafe(future).catch_unwind(),
                    engine: engine_id,
                    key: &mut record.key,
                },
                deadline: stop_at,
                timer: None,
                wall_clock_waker: None,
            })
            .await
            {
                Some(outcome) => outcome,
                None => {
                    return Err(Error::HandlerTimedOut {
                        key: record.key,
                        deadline_ms: stop_at.map_or(0, |at| epoch(at).1),
                    });
                }
            };
            let failure = match outcome {
                Ok(Ok(response)) => {
                    // Serialized before any await, so the response need not be `Sync` for the
                    // future to be `Send`.
                    // A panic in the response's `Serialize` must not leave the claim behind
                    // either: the handler's side effects happened, so the record is completed
                    // without it.
                    let data = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        storable_response(&record, &response)
                    }))
                    .unwrap_or_else(|panic| {
                        // Handled here: its capture is no later panic's.
                        drop(powertools_core::failure::take_panic_capture(panic.as_ref()));
                        Err(format!(
                            "serializing the response panicked: {}",
                            panic_message(panic.as_ref())
                        ))
                    });
                    return match engine.complete(record, data, deadline).await {
                        Ok(()) => Ok(response),
                        Err(error) => Err(error.into_handler_error()),
                    };
                }
                Ok(Err(error)) => Error::Handler(error),
                Err(panic) => handler_panicked(panic.as_ref()),
            };
            // The handler failed: remove its claim so that a retry runs it again.
            match engine.release_failed(&record, deadline).await {
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
    }

    pub(crate) fn key_for(&self, context: &Context, operation: &str, key_data: Value) -> String {
        let invocation = Invocation::new(context);
        // Without a function name (`Context::default()`: tests, local runs), Powertools for
        // Python's `test-func`, never a prefix of `.` alone. (Every nameless function shares
        // it, as in Python; `key_prefix` or a named test context keeps them apart.)
        let prefix = match self.settings.key_prefix.as_deref() {
            Some(prefix) => prefix,
            None => match invocation.function_name() {
                "" => NAMELESS_FUNCTION,
                name => name,
            },
        };
        idempotency_key(prefix, operation, invocation.tenant_id(), key_data)
    }

    /// The in-progress expiry of a claim written at `now`, in epoch milliseconds.
    fn in_progress_expiry(&self, deadline: Deadline, now: SystemTime) -> i64 {
        match deadline {
            // Zero milliseconds left is a valid deadline (Powertools for Python #4759).
            Deadline::Trusted(deadline) => epoch(deadline.max(now)).1,
            Deadline::Untrusted => {
                if !UNTRUSTED_DEADLINE_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        fallback_secs = self.settings.in_progress_fallback.as_secs(),
                        "The invocation's deadline is missing, long past or more than 90 minutes \
                         ahead (Context::default(), or an emulator's relative deadline), so \
                         in-progress idempotency records expire after the fallback window \
                         instead (logged once per process)."
                    );
                }
                // Saturating: a huge window must never wrap around to "now".
                let window = i64::try_from(self.settings.in_progress_fallback.as_millis())
                    .unwrap_or(i64::MAX);
                epoch(now).1.saturating_add(window)
            }
        }
    }

    /// Runs one store call within the store timeout and, with a trusted deadline, before it.
    async fn bounded<T>(
        &self,
        deadline: Deadline,
        kind: StoreCall,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        // A store that answers at once (in memory, the local cache) needs no timer: one poll
        // first, and the timeout (a timer entry and the runtime's handle) only for a call that
        // waits. The limit still runs from before that poll, as `timeout` alone would.
        let started = tokio::time::Instant::now();
        let mut call = std::pin::pin!(call);
        CallAnswers::forget_unscoped();
        if let Poll::Ready(outcome) =
            std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
        {
            return outcome;
        }
        // What an attempt that ended within that poll answered (it was not yet scoped).
        let answers = CallAnswers::default();
        answers.adopt_unscoped();
        let mut limit = self.settings.store_timeout;
        let mut left_before_deadline = None;
        if let Deadline::Trusted(deadline) = deadline {
            let remaining = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            // Every call ends the margin before the deadline, so that the invocation can still
            // answer: with many calls in one invocation (the records of a batch) a least time per
            // call added up past the deadline, and Lambda stopped the invocation before it
            // reported anything. Past that point a call that does not answer at once fails.
            let before_deadline = remaining.saturating_sub(margin_for(kind));
            if before_deadline < limit {
                limit = before_deadline;
                left_before_deadline = Some(remaining);
            }
        }
        // A limit past what the clock can hold (`Duration::MAX`: "no timeout") bounds nothing.
        let Some(limit_at) = started.checked_add(limit) else {
            return call.await;
        };
        // The call's own answers (a client retrying throttled calls gets answers, just no
        // success), scoped to it: only a call that did not answer at once pays for the scope.
        match until(limit_at, CALL_ANSWERS.scope(answers.clone(), call)).await {
            Some(outcome) => outcome,
            None => Err(StoreError::Backend(Box::new(StoreTimedOut {
                after: limit,
                left_before_deadline,
                margin: margin_for(kind),
                call: self.store.describe_call(kind),
                last_answer: answers.last(),
            }))),
        }
    }

    async fn claim<R: DeserializeOwned + 'static>(
        &self,
        mut key: String,
        deadline: Deadline,
        payload_hash: Option<String>,
    ) -> Result<Claimed<R>, Error> {
        // What the store answered inconsistently at each attempt, for the error after the last.
        let mut inconsistencies = [Inconsistency::Missing; MAX_ATTEMPTS];
        let mut attempt = 0;
        // A fence the last attempt found: this attempt claims over it by its id.
        let mut over_fence: Option<DataRecord> = None;
        // The key moves into each attempt's record and back out of it: one string per call.
        for _ in 0..MAX_ATTEMPTS {
            let now = SystemTime::now();
            if let Some(cached) = self.cached(&key, now) {
                return self
                    .replay(cached, payload_hash.as_deref())
                    .map(Claimed::Replay);
            }
            let (now_s, _) = epoch(now);
            let in_progress_until = self.in_progress_expiry(deadline, now);
            let record = DataRecord {
                key,
                status: Status::InProgress,
                // Never before the in-progress deadline: a window shorter than the handler's
                // run would otherwise let the conditional put (`#expiry < :now`), or DynamoDB's
                // TTL, free a claim that is still running.
                expiry_timestamp: now_s
                    .saturating_add(expires_after_secs(&self.settings))
                    .max(in_progress_until.div_euclid(1000).saturating_add(1)),
                in_progress_expiry_timestamp: Some(in_progress_until),
                response_data: None,
                payload_hash: payload_hash.clone(),
                claim_id: Some(new_claim_id()),
                not_stored_reason: None,
            };
            // Boxed, as the take-back below: a claim's futures are many deep (the store
            // timeout, the store's own, a store of the user's wrapping another), and a function
            // composing the layers as the bake-queue example does (an idempotent call per record
            // of a batch, inside the stack's layer) passed the compiler's depth limit computing
            // its future's layout (`queries overflow the depth limit!`; 8 levels were to spare).
            // One allocation per claim (about 150 instructions); `tests/tests/future_depth.rs`
            // keeps 28 levels to spare.
            let written =
                Box::pin(self.write_claim(&record, over_fence.take(), now, deadline)).await;
            let existing = match written {
                Ok(PutOutcome::Stored) => return Ok(Claimed::Run(record)),
                // This claim's own write: its answer was lost and the client sent it again.
                Ok(PutOutcome::Exists(Some(existing))) if existing.is_written_by(&record) => {
                    return Ok(Claimed::Run(record));
                }
                Ok(PutOutcome::Exists(Some(existing))) => existing,
                Ok(PutOutcome::Exists(None)) => {
                    match self
                        .bounded(deadline, StoreCall::Get, self.store.get(&record.key))
                        .await
                    {
                        // This claim's own write, read back: as above (found by a review: it
                        // got `AlreadyInProgress`, the key held with no handler running).
                        Ok(Some(existing)) if existing.is_written_by(&record) => {
                            return Ok(Claimed::Run(record));
                        }
                        Ok(Some(existing)) => existing,
                        Ok(None) => {
                            key = record.key;
                            inconsistencies[attempt] = Inconsistency::Missing;
                            attempt += 1;
                            continue;
                        }
                        Err(error) => return Err(store_error(error, "read the existing record")),
                    }
                }
                Err(error) => {
                    // No answer (a timeout, a connection cut once the request was out): the
                    // claim may be stored, and would hold the key in progress until the deadline
                    // though the handler never ran (found by an attack: retries got
                    // `AlreadyInProgress` for the function's whole timeout). It is taken back,
                    // only while it is this claim (its id); so is one the SDK retried after an
                    // attempt that may have landed (throttling, HTTP 5xx, or any answer to a
                    // second attempt). A single attempt's refusal with the service's error code
                    // (`AccessDeniedException`) stored nothing.
                    // Bounded apart: a store that hung on the write likely hangs on this too,
                    // and the caller has waited for the write already.
                    if outcome_unknown(&error) {
                        let taken_back = until(
                            tokio::time::Instant::now() + TAKE_BACK_TIMEOUT,
                            Box::pin(self.take_back(&record, now, deadline)),
                        )
                        .await;
                        let cause = match taken_back {
                            Some(Ok(())) => None,
                            Some(Err(error)) => {
                                Some(powertools_core::error_chain::message_chain(&error))
                            }
                            None => Some(format!(
                                "taking it back did not finish within {}s",
                                TAKE_BACK_TIMEOUT.as_secs()
                            )),
                        };
                        if let Some(cause) = cause {
                            // The time the claim holds the key until: an untrusted deadline's
                            // is the fallback window's end, not the deadline (found by an attack
                            // under an emulator, whose deadline is not trusted).
                            let until = record
                                .in_progress_expiry_timestamp
                                .map(crate::record::rfc3339_millis)
                                .unwrap_or_default();
                            let which = match deadline {
                                Deadline::Trusted(_) => "the invocation's deadline",
                                Deadline::Untrusted => {
                                    "the in-progress fallback window's end: the invocation's \
                                     deadline can't be trusted"
                                }
                            };
                            // With why taking it back failed (it said nothing of it, on no
                            // line: found by an attack on the examples).
                            tracing::warn!(
                                key = %record.key,
                                error = %cause,
                                "The in-progress record may be stored though its write went \
                                 unanswered (or was answered only after the SDK's retries), and \
                                 taking it back failed too: duplicates get AlreadyInProgress \
                                 until {until} ({which})."
                            );
                        }
                    }
                    return Err(store_error(error, "save the in-progress record"));
                }
            };
            key = record.key;
            if existing.is_fence() {
                // A fence (a failed handler's, whose deadline is its claim's; or a taken-back
                // claim's, written after this claim was sent): claimed over by its id at the next
                // attempt, whatever its deadline and this clock, and never validated against, as
                // it holds no payload (found by a review: a same-payload duplicate got
                // `PayloadMismatch`).
                over_fence = Some(existing);
                inconsistencies[attempt] = Inconsistency::Fenced;
                attempt += 1;
                continue;
            }
            match existing.state_at(SystemTime::now()) {
                // The claim should have succeeded: the record changed in between. Try again,
                // without validating against a record that no longer counts.
                RecordState::Expired | RecordState::InProgressTimedOut => {
                    inconsistencies[attempt] = Inconsistency::Expired;
                    attempt += 1;
                    continue;
                }
                RecordState::InProgress => {
                    self.validate(&existing, payload_hash.as_deref())?;
                    return Err(Error::AlreadyInProgress {
                        key,
                        in_progress_until: existing.in_progress_expiry_timestamp,
                        expires_at: existing.expiry_timestamp,
                        store: self.store.describe_store(),
                    });
                }
                RecordState::Completed => {
                    self.validate(&existing, payload_hash.as_deref())?;
                    self.cache(&existing);
                    return self.replay(existing, None).map(Claimed::Replay);
                }
            }
        }
        let describe = |call: StoreCall, generic: &str| match self.store.describe_call(call) {
            Some(call) => format!("{generic} ({call})"),
            None => generic.to_owned(),
        };
        let what = |inconsistency: Inconsistency| match inconsistency {
            Inconsistency::Missing => format!(
                "the claim was refused as the record exists, then {} found no record",
                describe(StoreCall::Get, "the read")
            ),
            Inconsistency::Expired => "the claim was refused as the record exists, yet \
                 the record it found had expired (or its in-progress deadline had passed)"
                .to_owned(),
            Inconsistency::Fenced => "the claim found a fence in the way (what another \
                 claim of the key leaves when its handler fails, or when it is taken back after \
                 its write went unanswered)"
                .to_owned(),
        };
        let claim = describe(StoreCall::PutInProgress, "each claim");
        let answers = if inconsistencies
            .iter()
            .all(|kind| *kind == inconsistencies[0])
        {
            format!(
                "{claim}: {}, {MAX_ATTEMPTS} times in a row",
                what(inconsistencies[0])
            )
        } else {
            let each: Vec<String> = inconsistencies
                .iter()
                .enumerate()
                .map(|(index, kind)| format!("attempt {}: {}", index + 1, what(*kind)))
                .collect();
            format!("{claim}: {}", each.join("; "))
        };
        Err(Error::InconsistentState { key, answers })
    }

    /// A call with validation on matches only a record with the same validation hash: a record
    /// written without validation data does not match one with it.
    fn validate(&self, record: &DataRecord, payload_hash: Option<&str>) -> Result<(), Error> {
        match payload_hash {
            Some(expected) if record.payload_hash.as_deref() != Some(expected) => {
                Err(Error::PayloadMismatch {
                    key: record.key.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn replay<R: DeserializeOwned + 'static>(
        &self,
        record: DataRecord,
        payload_hash: Option<&str>,
    ) -> Result<R, Error> {
        self.validate(&record, payload_hash)?;
        let Some(text) = record.response_data.as_deref() else {
            // Completed without a response: it could not be stored.
            return Err(Error::ResponseNotStored {
                key: record.key.clone(),
                expires_at: record.expiry_timestamp,
                // Cut to its limit and blank as none, as it is written (a review).
                reason: record
                    .not_stored_reason
                    .as_deref()
                    .and_then(crate::record::not_stored_reason),
                store: self.store.describe_store(),
            });
        };
        // Straight from the stored text into the response type, never through `Value`, which
        // cannot hold integers beyond 64 bits.
        let mut response: R = serde_json::from_str(text).map_err(|source| {
            // Not kept in the local cache: the error says deleting the record from the store
            // lets the next call run, which a cached copy would keep replaying.
            self.uncache(&record.key);
            Error::StoredResponseUnreadable {
                key: record.key.clone(),
                response_type: std::any::type_name::<R>(),
                expires_at: record.expiry_timestamp,
                source,
                store: self.store.describe_store(),
            }
        })?;
        for hook in self
            .settings
            .replay_hooks
            .iter()
            .filter_map(|hook| hook.for_type::<R>())
        {
            hook(&mut response, &record);
        }
        Ok(response)
    }

    /// Forgets `key` in the local cache.
    fn uncache(&self, key: &str) {
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop(key);
        }
    }

    /// Takes back `claim`, whose write (sent at `sent_at`) went unanswered: it may have landed,
    /// or may still land later (a slow network, an SDK retry in flight when the bound ran out).
    /// A delete alone finds nothing of a write still on its way, which then holds the key in
    /// progress until the deadline though the handler never ran (found by an attack). So a fence
    /// is written first: a record whose in-progress deadline is the moment it is written, which
    /// the late write's condition (evaluated with the moment the claim was sent, earlier) cannot
    /// replace, and any later claim can. Never the moment the claim was sent: a fence written
    /// later but sent earlier would lower the one a later claim left, and let its late write in
    /// (found by a review). A claim of this invocation's found there is replaced with a fence
    /// that keeps its deadline, in one write (a delete freed the key for another late write).
    async fn take_back(
        &self,
        claim: &DataRecord,
        sent_at: SystemTime,
        deadline: Deadline,
    ) -> Result<(), StoreError> {
        let mut fence = fence_for(claim, 0);
        // The last fence write that failed: a late claim may still land, which the caller is
        // told (found by a review: a fence that went unanswered too was taken for a success).
        let mut unfenced = None;
        // Another claim's fence found at the last attempt: replaced with this one by its id.
        let mut over_fence: Option<DataRecord> = None;
        for _ in 0..FENCE_ATTEMPTS {
            // Never before the claim was sent, should the clock have been set back meanwhile.
            let now = SystemTime::now().max(sent_at);
            let fenced_ms = epoch(now).1;
            fence.in_progress_expiry_timestamp = Some(fenced_ms);
            let written = match self
                .write_claim(&fence, over_fence.take(), now, deadline)
                .await
            {
                Ok(written) => written,
                // The store refused or lost the fence too: tried again, within the take-back's
                // bound.
                Err(error) => {
                    unfenced = Some(error);
                    continue;
                }
            };
            let found = match written {
                PutOutcome::Stored => {
                    self.uncache(&claim.key);
                    // A claim made in the millisecond the fence was written would not replace
                    // it (its condition is strict): the caller's retry comes after that
                    // millisecond. Yielding, not a timer, which a paused clock (tests) would
                    // skip; bounded in real time, for a clock set back meanwhile.
                    clock_passed(fenced_ms).await;
                    return Ok(());
                }
                PutOutcome::Exists(Some(existing)) => existing,
                // A store that does not say what holds the key: read.
                PutOutcome::Exists(None) => {
                    let read = self.store.get(&claim.key);
                    match self.bounded(deadline, StoreCall::Get, read).await {
                        Ok(Some(existing)) => existing,
                        // Nothing holds it now: the fence is written at the next attempt.
                        Ok(None) => continue,
                        Err(error) => {
                            unfenced = Some(error);
                            continue;
                        }
                    }
                }
            };
            if found.is_written_by(claim) {
                // This claim landed: replaced with a fence in one write, keeping its deadline,
                // never deleted. A delete freed the key for another claim's write still on its
                // way, whose take-back had found this claim holding the key and so wrote no fence
                // (found by a review: it landed, and held the key until its deadline); every such
                // write was sent before this claim's deadline.
                let mut own = fence.clone();
                own.in_progress_expiry_timestamp = Some(
                    claim
                        .in_progress_expiry_timestamp
                        .unwrap_or_default()
                        .max(fenced_ms),
                );
                let replaced = self.store.replace_with_fence(claim, &own);
                match self
                    .bounded(deadline, StoreCall::ReplaceWithFence, replaced)
                    .await
                {
                    Ok(()) => {
                        self.uncache(&claim.key);
                        return Ok(());
                    }
                    Err(error) => unfenced = Some(error),
                }
            } else if found.is_fence() {
                // Another claim's fence, whose deadline is still ahead (a failed handler's: its
                // claim's) or this very millisecond: replaced with this fence, which this claim's
                // late write cannot pass either way, and which refuses a late claim over that
                // fence by its id (this claim's own, when it was one).
                over_fence = Some(found);
            } else if found.replaceable_at(sent_at) {
                // A record the late write could replace (a claim over a fence whose deadline
                // passed before this claim was sent, found by a refused claim over a fence; found
                // by a review): the next attempt's fence, conditioned on the time, replaces it.
                continue;
            } else {
                // Another invocation's live claim or completed record, which the late write's
                // condition cannot replace; nor what comes after it: its completion, its fence
                // (should its handler fail, or its write be taken back: its deadline), or a claim
                // after its deadline, all past the moment this claim was sent.
                return Ok(());
            }
        }
        // No fence stands: the claim, if it landed, is deleted as far as a delete can, and the
        // caller warns that it may still land.
        self.release(claim, deadline).await?;
        Err(unfenced.unwrap_or_else(|| {
            StoreError::Backend(
                format!(
                    "no fence stood after {FENCE_ATTEMPTS} fence writes (each found another \
                     fence in the way, or the key empty when read back)"
                )
                .into(),
            )
        }))
    }

    /// Releases the claim of a failed handler, so that a retry runs it again: forgotten in the
    /// local cache, and replaced in the store with a fence (see [`take_back`](Self::take_back)),
    /// not deleted. A delete freed the key for a claim write sent earlier and still on its way
    /// (one whose answer was lost, taken back behind a fence that this claim then replaced),
    /// which then held the key in progress until its own deadline, though its handler never ran
    /// (the fence's known limit, found by a review).
    async fn release_failed(
        &self,
        claim: &DataRecord,
        deadline: Deadline,
    ) -> Result<(), StoreError> {
        self.uncache(&claim.key);
        // The claim's own deadline (a millisecond before now, should it have passed): a claim
        // write sent earlier that is still on its way, whose take-back found this claim holding
        // the key (and so wrote no fence), was sent before it; so was one taken back behind a
        // fence this claim replaced. Now, when the release is sent, is not enough: the release
        // may reach the store after such a write was sent (found by a review: the write then
        // landed on the fence and held the key). Later claims take the fence by its id.
        let deadline_ms = claim.in_progress_expiry_timestamp.unwrap_or_default();
        let fenced_at = deadline_ms.max(epoch(SystemTime::now()).1.saturating_sub(1));
        let fence = fence_for(claim, fenced_at);
        let replaced = self.store.replace_with_fence(claim, &fence);
        self.bounded(deadline, StoreCall::ReplaceWithFence, replaced)
            .await
    }

    /// Writes `record` (a claim, or a take-back's fence) in place of `over_fence` by its id, or,
    /// without one, where no live record holds the key at `now`.
    async fn write_claim(
        &self,
        record: &DataRecord,
        over_fence: Option<DataRecord>,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<PutOutcome, StoreError> {
        match over_fence {
            Some(fence) => {
                let put = self.store.put_over_fence(record, &fence);
                self.bounded(deadline, StoreCall::PutOverFence, put).await
            }
            None => {
                let put = self.store.put_in_progress(record, now);
                self.bounded(deadline, StoreCall::PutInProgress, put).await
            }
        }
    }

    /// Deletes a claim, from the local cache and the store.
    async fn release(&self, claim: &DataRecord, deadline: Deadline) -> Result<(), StoreError> {
        self.uncache(&claim.key);
        self.bounded(deadline, StoreCall::Delete, self.store.delete(claim))
            .await
    }

    /// Marks the record completed with the response, or without it when it cannot be stored
    /// faithfully. The handler's side effects happened: the record is never deleted here.
    async fn complete(
        &self,
        mut record: DataRecord,
        data: Result<String, String>,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let in_progress_until = record.in_progress_expiry_timestamp.unwrap_or_default();
        let (now_s, _) = epoch(SystemTime::now());
        record.status = Status::Completed;
        record.expiry_timestamp = now_s.saturating_add(expires_after_secs(&self.settings));
        match data {
            Ok(data) => record.response_data = Some(data),
            Err(reason) => not_stored(&mut record, &reason),
        }
        let mut outcome = self
            .bounded(deadline, StoreCall::Update, self.store.update(&record))
            .await;
        if let Err(StoreError::ItemTooLarge { reason, .. }) = &outcome {
            // The store measured it over the limit after all: complete without the response.
            let reason = reason.clone();
            not_stored(&mut record, &reason);
            outcome = self
                .bounded(deadline, StoreCall::Update, self.store.update(&record))
                .await;
        }
        match outcome {
            Ok(()) => {
                self.cache(&record);
                Ok(())
            }
            // The handler's work is done: its caller gets its response. The key is another
            // invocation's now, whose outcome its duplicates get.
            Err(StoreError::ClaimReplaced { key }) => {
                tracing::warn!(
                    key = %key,
                    "the handler succeeded, but its idempotency record was claimed by another \
                     invocation meanwhile (this claim's in-progress deadline had passed): the \
                     record was left to it, and duplicates get that invocation's outcome"
                );
                Ok(())
            }
            Err(error) => Err(Error::NotCompleted {
                key: record.key,
                in_progress_until,
                source: match error {
                    StoreError::Backend(source) => source,
                    other => Box::new(other),
                },
            }),
        }
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
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.put(record.key.clone(), record.clone());
            let max_items = self.settings.local_cache_max_items.unwrap_or(usize::MAX);
            while cache.len() > max_items {
                cache.pop_lru();
            }
        }
    }
}

/// The error for a handler's panic, just caught: the panic hook's capture of it (its location
/// and backtrace, kept on this thread by the logging layer's hook) goes to the layers outside,
/// taken now, in the poll that caught it, before another invocation's panic on this thread can
/// replace it.
fn handler_panicked<E>(panic: &(dyn std::any::Any + Send)) -> Error<E> {
    hand_on_panic_capture(panic);
    Error::HandlerPanicked {
        message: panic_message(panic),
    }
}

/// Hands the panic hook's capture of the panic whose `payload` was just caught to the layers
/// outside, in the invocation's scope, before anything is awaited.
fn hand_on_panic_capture(payload: &(dyn std::any::Any + Send)) {
    if let Some(capture) = powertools_core::failure::take_panic_capture(payload) {
        powertools_core::failure::report_caught_panic(capture);
    }
}

/// The most levels of JSON arrays and objects serde_json reads into a value (its recursion
/// limit, 128, is reached on the 128th).
const MAX_JSON_DEPTH: usize = 127;

/// The response as the JSON to store, or why it cannot be stored faithfully: a float that JSON
/// cannot hold (serde_json would write `null`), a value serde_json refuses, JSON that would not
/// read back into the response type, or a record over the item size limit.
fn storable_response<R: Serialize + DeserializeOwned>(
    record: &DataRecord,
    response: &R,
) -> Result<String, String> {
    // JSON that serde_json writes but cannot read back into the type would make every
    // duplicate fail until the record expires: JSON nested deeper than serde_json reads (unless
    // the deep part is skipped when read), and a 128-bit integer or a map key that is not a
    // string where serde buffers values (`#[serde(flatten)]`, internally tagged and untagged
    // enums). The walk sees both; only such a response is read back to find out, so the usual
    // response costs no second pass.
    let shape = check_storable(response)?;
    if shape.duplicate_key {
        return Err(
            "its JSON would hold one key twice in an object (a `#[serde(flatten)]` map, or \
             an internally tagged enum's tag, with the name of a field beside it?), which reads \
             back as an error or as another value"
                .to_owned(),
        );
    }
    let data = serde_json::to_string(response).map_err(|error| error.to_string())?;
    // With `arbitrary_precision`, serde reads a float where it buffers values as a map, which
    // no float field takes: every response is read back (found by an attack: a float under
    // `#[serde(flatten)]` was stored, and every duplicate failed until the record expired).
    let kept_as_written = crate::storable::numbers_kept_as_written();
    if shape.depth > MAX_JSON_DEPTH
        || shape.buffering_sensitive
        || shape.f32_changed_if_buffered
        || kept_as_written
    {
        let read = serde_json::from_str::<R>(&data).map_err(|error| {
            let build = if kept_as_written {
                "; serde_json's `arbitrary_precision` feature is on in this build, and serde \
                 reads a float under `#[serde(flatten)]` or in an internally tagged or untagged \
                 enum as a map then"
            } else {
                ""
            };
            // Without the values serde's message may quote: the reason is kept in the record
            // and said to every duplicate, as `StoredResponseUnreadable` says its own.
            format!(
                "its JSON would not read back into the response type ({}){build}",
                powertools_core::serde_message::without_values(&error.to_string())
            )
        })?;
        // Whether that `f32` was buffered shows only in what reads back: the `f32`s of both,
        // compared as sets with their counts (a map or set may write its entries in another
        // order), and nothing else, so that what the type does to its other values as it reads
        // them back stays as it was.
        if shape.f32_changed_if_buffered && {
            let (mut read, mut written) = (f32_bits(&read), f32_bits(response));
            read.sort_unstable();
            written.sort_unstable();
            read != written
        } {
            return Err(
                "its JSON would read back as another value (an `f32` under `#[serde(flatten)]` \
                 or in an internally tagged or untagged enum, which serde reads through an `f64`)"
                    .to_owned(),
            );
        }
    }
    let size = estimated_item_size(record, &data);
    if size > MAX_ITEM_SIZE {
        return Err(format!(
            "the record would be about {size} bytes, over the {MAX_ITEM_SIZE}-byte item limit"
        ));
    }
    Ok(data)
}

pin_project_lite::pin_project! {
    /// `future`, stopped at `deadline` if it is still running then: its output, or `None` once
    /// the deadline passed first. It is polled first on each wake, and its timer is made only
    /// when it waits: a handler that answers at once needs no timer. Without a Tokio runtime,
    /// or in one without timers (the executor of a user's test), nothing is stopped. The timer
    /// runs on Tokio's clock, which a test may pause and move on at once; the deadline is the
    /// wall clock's, so a timer that fires before it hands the wait to a thread that sleeps on
    /// the wall clock (a Tokio timer would be moved on again at once, in a loop).
    struct StopAt<F> {
        #[pin]
        future: F,
        deadline: Option<SystemTime>,
        // Polled outside the cooperative budget, as `tokio::time::timeout` polls its timer: a
        // handler that uses the budget up on every poll is still stopped.
        #[pin]
        timer: Option<tokio::task::Unconstrained<tokio::time::Sleep>>,
        // The waker the wall-clock thread wakes at the deadline: the latest poll's.
        wall_clock_waker: Option<Arc<Mutex<std::task::Waker>>>,
    }
}

impl<F: Future> Future for StopAt<F> {
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        loop {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if let Some(waker) = this.wall_clock_waker.as_ref() {
                if left.is_zero() {
                    return Poll::Ready(None);
                }
                // The thread wakes the task at the deadline: this poll's waker, as the future
                // may have moved to another task since.
                let mut waker = waker.lock().unwrap_or_else(PoisonError::into_inner);
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                return Poll::Pending;
            }
            match this.timer.as_mut().as_pin_mut() {
                None => match timer_after(left) {
                    Some(timer) => this.timer.set(Some(tokio::task::unconstrained(timer))),
                    None => {
                        *this.deadline = None;
                        return Poll::Pending;
                    }
                },
                Some(timer) => match timer.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if left.is_zero() => return Poll::Ready(None),
                    // Fired early by Tokio's clock (paused and moved on in a test): the rest
                    // of the wait on the wall clock, in a thread of its own. Without one,
                    // nothing is stopped.
                    Poll::Ready(()) => {
                        this.timer.set(None);
                        let waker = Arc::new(Mutex::new(cx.waker().clone()));
                        let woken = waker.clone();
                        let waiting = std::thread::Builder::new()
                            .name("idempotency-deadline".to_owned())
                            .spawn(move || {
                                // Until the wall clock says so, whatever it did meanwhile.
                                while let Ok(left) = deadline.duration_since(SystemTime::now())
                                    && !left.is_zero()
                                {
                                    std::thread::sleep(left);
                                }
                                woken
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .wake_by_ref();
                            });
                        match waiting {
                            Ok(_) => *this.wall_clock_waker = Some(waker),
                            Err(_) => *this.deadline = None,
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

/// A Tokio timer of `wait`, or `None` where Tokio can make none: outside a Tokio runtime, or in
/// one built without timers (the executor of a user's test), where making one panics.
fn timer_after(wait: Duration) -> Option<tokio::time::Sleep> {
    // Checked first: outside a runtime, no panic at all (a caught panic aborts the process
    // under `panic = "abort"`).
    tokio::runtime::Handle::try_current().ok()?;
    powertools_core::failure::catch_quiet_panic(|| tokio::time::sleep(wait)).ok()
}

/// `future`'s output, or `None` once `at` passed first, as `tokio::time::timeout_at`; where
/// Tokio can make no timer ([`timer_after`]), `future` runs unbounded instead of panicking (a
/// review found a store that waits, or a claim taken back, panicking under another executor).
async fn until<F: Future>(at: tokio::time::Instant, future: F) -> Option<F::Output> {
    if timer_after(Duration::ZERO).is_none() {
        return Some(future.await);
    }
    if at <= tokio::time::Instant::now() {
        // Past the limit already (a call with less than the margin left): it answers at once or
        // fails, without waiting for the timer's next tick. Each such call waited about 1 ms for
        // it, and the five calls of a claim whose write hangs (the claim, its take-back) added
        // 5 ms per record past the margin: a test of ten records in one invocation ran past the
        // deadline on a loaded machine.
        let mut future = std::pin::pin!(future);
        return std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match future.as_mut().poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await;
    }
    // Tokio's own: it polls its timer outside the cooperative budget, so a call that uses the
    // budget up on every poll (a client that keeps finding work ready) still times out (a
    // review: a timer polled after it, within the budget, never fired).
    tokio::time::timeout_at(at, future).await.ok()
}

/// Completes `record` without its response, keeping why, with a warning.
fn not_stored(record: &mut DataRecord, reason: &str) {
    record.response_data = None;
    record.not_stored_reason = crate::record::not_stored_reason(reason);
    tracing::warn!(
        key = record.key,
        reason,
        "the handler succeeded but its response cannot be stored: the record is completed \
         without it, this caller gets the response, and duplicates get \
         IdempotencyResponseNotStoredError until the record expires"
    );
}

/// An operation name is part of every key, `<prefix>.<operation>#<digest>`: without `.` or `#`
/// the last `.` and the `#` separate the three parts unambiguously.
pub(crate) fn check_operation(operation: &str) -> Result<(), Error> {
    // Whitespace alone is empty, as for the key prefix; so is what displays as nothing
    // (zero-width spaces, fillers, a byte order mark, tags, …).
    if powertools_core::text::displays_as_empty(operation)
        || operation.contains(['#', '.'])
        || !readable_in_logs(operation)
    {
        return Err(Error::Config(format!(
            "the idempotency operation name {} must be non-empty (not whitespace or invisible \
             characters alone), without control characters, line separators (U+2028, U+2029) or \
             bidirectional formatting characters, and without `#` or `.`",
            powertools_core::env::shown(operation)
        )));
    }
    Ok(())
}

/// Whether a part of every key (the prefix, an operation name) reads back from a log line as
/// it is: no control character nor Unicode's line and paragraph separators (a line break
/// splits the line; U+2028 and U+2029 are one in many log viewers: a review found them taken)
/// and no bidirectional formatting character (an override shows the rest of the key reversed:
/// found by an attack from the docs).
pub(crate) fn readable_in_logs(name: &str) -> bool {
    !name.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}')
            || powertools_core::text::is_bidi_control(c)
    })
}

/// A new claim's id: 128 bits in hex, unique, not secret. Each thread draws 128 random bits
/// once (`RandomState`, seeded from the operating system's randomness once per thread and
/// differently per instance); each claim adds one to the low half. Ids therefore never repeat
/// within a thread and differ across threads and processes but by a 2^-64 chance. (Drawing
/// 128 new bits for every claim, two SipHash rounds and a lossy UTF-8 conversion, cost about
/// 800 instructions per claim; this costs about 200.)
fn new_claim_id() -> String {
    use std::cell::Cell;
    use std::hash::BuildHasher;
    thread_local! {
        static NEXT: Cell<(u64, u64)> = Cell::new({
            let random = std::collections::hash_map::RandomState::new();
            (random.hash_one(0_u8), random.hash_one(1_u8))
        });
    }
    let (high, low) = NEXT.with(|next| {
        let (high, low) = next.get();
        next.set((high, low.wrapping_add(1)));
        (high, low)
    });
    let mut id = String::with_capacity(32);
    crate::key::push_hex(
        &mut id,
        &((u128::from(high) << 64) | u128::from(low)).to_be_bytes(),
    );
    id
}

/// How long before the invocation's deadline a store call must end.
fn margin_for(call: StoreCall) -> Duration {
    match call {
        StoreCall::Update => COMPLETION_MARGIN,
        _ => DEADLINE_MARGIN,
    }
}

/// The most a claim whose write went unanswered waits to be taken back.
const TAKE_BACK_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times taking a claim back writes its fence (replacing a copy of the claim found in its
/// place, or another claim's fence); when none stands after the last, the claim is deleted as far
/// as a delete can, and the caller warns.
const FENCE_ATTEMPTS: usize = 3;

/// The fence that takes `claim`'s place: an in-progress record whose deadline is `fenced_at_ms`
/// (a taken-back claim's: the moment it is written, see [`Engine::take_back`]; a failed handler's:
/// its claim's deadline, see [`Engine::release_failed`]), which any later claim replaces by its
/// id and a claim write sent before it cannot.
fn fence_for(claim: &DataRecord, fenced_at_ms: i64) -> DataRecord {
    DataRecord {
        key: claim.key.clone(),
        status: Status::InProgress,
        // As long as the claim would have held the key: a late write compares its expiry with
        // the moment it was sent too.
        expiry_timestamp: claim.expiry_timestamp,
        in_progress_expiry_timestamp: Some(fenced_at_ms),
        response_data: None,
        payload_hash: None,
        // Marked, so that a claim refused by it is never validated against it, nor told the key
        // is in progress while its clock has not passed the fence's deadline.
        claim_id: Some(format!("{FENCE_ID_PREFIX}{}", new_claim_id())),
        not_stored_reason: None,
    }
}

/// Waits until this clock has passed `deadline_ms` (epoch milliseconds), for at most 2 ms of real
/// time: a fence's deadline is the millisecond it was written, which a claim in that millisecond
/// cannot replace (its condition is strict). Yielding, not a timer, which a paused clock (tests)
/// would skip without time passing. Whether it passed.
async fn clock_passed(deadline_ms: i64) -> bool {
    let waiting = std::time::Instant::now();
    loop {
        if epoch(SystemTime::now()).1 > deadline_ms {
            return true;
        }
        if waiting.elapsed() >= Duration::from_millis(2) {
            return false;
        }
        tokio::task::yield_now().await;
    }
}

/// Whether a failed write may have been stored all the same: no answer came (the store timeout,
/// a connection cut, an answer that did not read), the answer is one the SDK retries
/// (throttling, HTTP 5xx: an earlier attempt may have landed), or the SDK sent the write more
/// than once (an earlier attempt may have landed, whatever the last answer), as opposed to the
/// service's refusal of a single attempt (a DynamoDB `ValidationException`,
/// `AccessDeniedException`). A store of another kind
/// cannot tell: its failure may have been stored.
fn outcome_unknown(error: &StoreError) -> bool {
    match error {
        // Refused before anything was stored (the in-memory store's key size check).
        StoreError::Backend(source) if source.is::<crate::persistence::KeyTooLong>() => false,
        #[cfg(feature = "dynamodb")]
        StoreError::Backend(source) => source
            .downcast_ref::<crate::DynamoDbError>()
            .is_none_or(crate::DynamoDbError::may_have_landed),
        #[cfg(not(feature = "dynamodb"))]
        StoreError::Backend(_) => true,
        StoreError::ItemTooLarge { .. }
        | StoreError::ClaimReplaced { .. }
        | StoreError::InvalidRecord { .. } => false,
    }
}

/// A store call that did not finish within its bound.
#[derive(Debug)]
struct StoreTimedOut {
    after: Duration,
    /// The time that was left before the invocation's deadline, when it bounded the call more
    /// than the store timeout.
    left_before_deadline: Option<Duration>,
    /// How long before the deadline the call had to end.
    margin: Duration,
    /// The call, as the store describes it.
    call: Option<String>,
    /// The call's last error answer and its age when the bound ended the call (a client
    /// retrying throttled calls got answers, just no success).
    last_answer: Option<(Duration, String)>,
}

impl std::fmt::Display for StoreTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(call) = &self.call {
            write!(f, "{call}: ")?;
        }
        // A call that got answers (each retried by the client) had no success, not no answer.
        let outcome = if self.last_answer.is_some() {
            "no success"
        } else {
            "no answer"
        };
        match self.left_before_deadline {
            None => write!(
                f,
                "{outcome} within {} ms (the store timeout; see \
                 IdempotencyBuilder::store_timeout)",
                self.after.as_millis()
            ),
            Some(left) if self.after.is_zero() => write!(
                f,
                "no time to wait for an answer (the request may have reached the store): {} ms \
                 were left before the invocation's deadline, and this call ends {} ms before it, \
                 so that the invocation can still answer",
                left.as_millis(),
                self.margin.as_millis()
            ),
            Some(left) => write!(
                f,
                "{outcome} within {} ms, all the invocation could give it: {} ms were left before \
                 its deadline, and this call ends {} ms before it, so that the invocation can \
                 still answer",
                self.after.as_millis(),
                left.as_millis(),
                self.margin.as_millis()
            ),
        }?;
        match &self.last_answer {
            Some((age, answer)) => write!(
                f,
                "; its client retried it: the last answer, {} ms before the bound, was {answer}",
                age.as_millis()
            ),
            None => Ok(()),
        }
    }
}

impl std::error::Error for StoreTimedOut {}

/// The window in whole seconds (records expire in seconds, as DynamoDB's TTL reads them), a
/// fraction rounded up: never shorter than asked.
fn expires_after_secs(settings: &Settings) -> i64 {
    let window = settings.expires_after;
    let seconds = window
        .as_secs()
        .saturating_add(u64::from(window.subsec_nanos() > 0));
    i64::try_from(seconds).unwrap_or(i64::MAX)
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
        other @ (StoreError::ItemTooLarge { .. } | StoreError::ClaimReplaced { .. }) => {
            Error::Persistence {
                operation,
                source: Box::new(other),
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    powertools_core::error_chain::panic_description(panic).unwrap_or_else(|| {
        format!(
            "a panic with {}",
            powertools_core::error_chain::UNREADABLE_PANIC
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_128_bits_of_hex_and_differ_across_claims_and_threads() {
        let mut ids: Vec<String> = (0..1000).map(|_| new_claim_id()).collect();
        let other_thread =
            std::thread::spawn(|| (0..1000).map(|_| new_claim_id()).collect::<Vec<_>>());
        ids.extend(other_thread.join().unwrap());
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase()),
                "{id}"
            );
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
