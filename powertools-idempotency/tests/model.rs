//! A model-based property test of the idempotency engine: random sequences of calls on two or
//! three keys, on a store (an `InMemoryStore`, or a `DynamoDbStore` on a fresh table of the moto
//! server that `scripts/with-test-services` starts) behind a store that injects the faults each
//! call's script asks for.
//!
//! # The calls
//!
//! Each operation calls one key, through [`Idempotency::run`] or through [`IdempotencyLayer`]
//! (renamed to the same operation and keyed on the same data, so both paths share records), with
//! a handler that succeeds with a fresh response (a computed `f64` and a string, so a replay is
//! checked bit for bit), fails, panics inside its future, or panics before its future exists (in
//! the closure given to `run`, or in a service's `call()`). At most one store fault is scripted
//! per call, on one storage primitive: the claim (`put_in_progress`), the read of the existing
//! record (`get`, reached only when the store does not return the existing record with its
//! failed put), the completion (`update`) or the release of a failed handler's claim
//! (`replace_with_fence`). A fault is an error, or a hang that the
//! engine's store timeout (50 ms in memory, 2 s on moto) cuts off; and the call it interrupts was
//! either applied by the backend before the reply was lost (as a DynamoDB timeout may be: the
//! wrapper makes the real call, then drops its answer), or not.
//!
//! # The model
//!
//! Per key, the model knows what the store holds:
//!
//! - `Absent`: no record, or a fence (a taken-back claim's, a failed handler's); the next call
//!   claims the key and runs the handler.
//! - `Orphaned`: an in-progress record nobody will finish (a completion or a release failed). It
//!   blocks duplicates until the deadline of the invocation that wrote it, 30 s away, longer
//!   than any case runs.
//! - `Completed(response)`: the first successful response, replayed to every later call; with
//!   the local cache on, also whether the engine has it cached (a cached replay makes no store
//!   call at all, so a fault scripted on the claim is never reached).
//!
//! For every call the model predicts the outcome (response bits, error variant, key, the
//! operation and the cause of a store error), the store primitives called, whether the handler
//! was called and whether its body ran, and the key's next state; after every call the store's
//! records are checked against the states of all keys, and at the end the executions per key.
//! The promises it encodes:
//!
//! 1. While a successful completion is recorded, the handler never runs again for that key.
//! 2. Every replay returns exactly the first successful response (compared by `f64` bits).
//! 3. After a handler error, or a panic whose claim was released, the next call runs again.
//! 4. A store failure on the claim means the handler did not run (`Error::Persistence`), and
//!    the claim is taken back: one that landed before its reply was lost leaves a fence that
//!    keeps its deadline, which the next call takes by its id (one that did not land, a fence
//!    any later claim replaces, counted as no record).
//! 5. A store failure on the completion gives `Error::NotCompleted`, after which duplicates get
//!    `Error::AlreadyInProgress` (or, when the update landed before its reply was lost, the
//!    stored response).
//! 6. A failed release after a handler error gives `Error::DeleteFailed`, after which duplicates
//!    get `Error::AlreadyInProgress` (unless the release landed before its reply was lost).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use lambda_runtime::tower::{Layer, Service, ServiceExt};
use lambda_runtime::{Context, LambdaEvent};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    BoxError, DataRecord, Error, Idempotency, IdempotencyLayer, IdempotencyStore, InMemoryStore,
    PutOutcome, Status, StoreError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The operation name of every call, on both paths.
const OPERATION: &str = "op";
/// The engine's bound on one store call in memory: a hung call fails after this.
const IN_MEMORY_STORE_TIMEOUT: Duration = Duration::from_millis(50);
/// How injected panics start; the panic hook stays quiet about them.
const INJECTED_PANIC: &str = "model: injected panic";
/// What an injected store error says.
const INJECTED_ERROR: &str = "model: injected store error";
/// What the engine says when the claim fails, and when reading the existing record fails.
const SAVE_CLAIM: &str = "save the in-progress record";
const READ_EXISTING: &str = "read the existing record";

// The operations.

/// A handler's response: a computed float, so that a replay that is one ULP off shows, and a
/// string.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Response {
    value: f64,
    label: String,
}

impl Response {
    /// The response of the `n`th call of a case.
    fn nth(n: u32) -> Self {
        Response {
            value: f64::from(n) * 1.0001 / 7.3 + 1000.0,
            label: format!("response {n}"),
        }
    }
}

/// The handler's own error, naming the call that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HandlerFailed(u32);

/// Which API a call goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Run,
    Layer,
}

/// What the handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Succeed,
    Fail,
    PanicInFuture,
    PanicBeforeFuture,
}

/// The storage primitives, as the fault-injecting store logs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    PutInProgress,
    Get,
    Update,
    /// Only in a take-back (a claim's fault is the call's one fault, so never faulted itself).
    Delete,
    ReplaceWithFence,
    /// A claim over a fence (never faulted: a claim's one fault is on its first write).
    PutOverFence,
}

/// How a faulty store call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// `StoreError::Backend` at once.
    Error,
    /// Never: the engine's store timeout fires.
    Hang,
}

/// A fault scripted on the next call of one primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fault {
    on: Primitive,
    reply: Reply,
    /// Whether the backend applied the call before its reply was lost (no effect on `get`).
    applied: bool,
}

impl Fault {
    /// The cause the engine should report for this fault.
    fn cause(self) -> Cause {
        match self.reply {
            Reply::Error => Cause::Injected,
            Reply::Hang => Cause::TimedOut,
        }
    }
}

/// One call of a sequence.
#[derive(Debug, Clone)]
struct Op {
    key: usize,
    path: Path,
    behaviour: Behaviour,
    fault: Option<Fault>,
}

/// A case: the keys, the engine's configuration and the calls.
#[derive(Debug, Clone)]
struct Scenario {
    keys: usize,
    local_cache: bool,
    /// The store answers a failed claim without the existing record, so the engine reads it.
    store_hides_existing: bool,
    ops: Vec<Op>,
}

/// A fault, a hang one time in `one_hang_in` (at least 2) and an error otherwise.
fn fault(one_hang_in: u32) -> impl Strategy<Value = Fault> {
    let on = prop_oneof![
        Just(Primitive::PutInProgress),
        Just(Primitive::Get),
        Just(Primitive::Update),
        Just(Primitive::ReplaceWithFence),
    ];
    let reply = prop_oneof![
        one_hang_in - 1 => Just(Reply::Error),
        1 => Just(Reply::Hang),
    ];
    (on, reply, any::<bool>()).prop_map(|(on, reply, applied)| Fault { on, reply, applied })
}

fn op(keys: usize, one_hang_in: u32) -> impl Strategy<Value = Op> {
    let path = prop_oneof![Just(Path::Run), Just(Path::Layer)];
    let behaviour = prop_oneof![
        4 => Just(Behaviour::Succeed),
        2 => Just(Behaviour::Fail),
        1 => Just(Behaviour::PanicInFuture),
        1 => Just(Behaviour::PanicBeforeFuture),
    ];
    (
        0..keys,
        path,
        behaviour,
        proptest::option::weighted(0.5, fault(one_hang_in)),
    )
        .prop_map(|(key, path, behaviour, fault)| Op {
            key,
            path,
            behaviour,
            fault,
        })
}

/// Cases of up to `max_ops` calls, whose faults are hangs one time in `one_hang_in`.
fn scenario(max_ops: usize, one_hang_in: u32) -> impl Strategy<Value = Scenario> {
    (2..=3usize, any::<bool>(), any::<bool>()).prop_flat_map(
        move |(keys, local_cache, store_hides_existing)| {
            proptest::collection::vec(op(keys, one_hang_in), 1..=max_ops).prop_map(move |ops| {
                Scenario {
                    keys,
                    local_cache,
                    store_hides_existing,
                    ops,
                }
            })
        },
    )
}

// The fault-injecting store.

/// The fault armed for the current call, and the primitives that call used.
#[derive(Debug, Default)]
struct Script {
    fault: Option<Fault>,
    calls: Vec<Primitive>,
}

/// A store that fails, hangs or loses the reply of the primitive its script names, in front of
/// any store. A lost reply is the inner store's call made, and its answer dropped.
#[derive(Debug, Clone)]
struct FaultyStore<S> {
    inner: S,
    script: Arc<Mutex<Script>>,
    hides_existing: bool,
}

impl<S: IdempotencyStore> FaultyStore<S> {
    fn new(inner: S, hides_existing: bool) -> Self {
        FaultyStore {
            inner,
            script: Arc::default(),
            hides_existing,
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scripts `fault` for the next call and clears the log.
    fn arm(&self, fault: Option<Fault>) {
        let mut script = self.script();
        script.fault = fault;
        script.calls.clear();
    }

    /// Removes a fault that was not reached, and returns the primitives called since `arm`.
    fn disarm(&self) -> Vec<Primitive> {
        let mut script = self.script();
        script.fault = None;
        std::mem::take(&mut script.calls)
    }

    /// Logs a call of `primitive` and takes the fault scripted on it, if any.
    fn next(&self, primitive: Primitive) -> Option<Fault> {
        let mut script = self.script();
        script.calls.push(primitive);
        if script.fault.is_some_and(|fault| fault.on == primitive) {
            script.fault.take()
        } else {
            None
        }
    }

    /// Runs `call` on the inner store, unless a fault is scripted on `primitive`.
    async fn call<T>(
        &self,
        primitive: Primitive,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(fault) = self.next(primitive) else {
            return call.await;
        };
        if fault.applied {
            // The backend did it; the reply is lost.
            let _lost = call.await;
        }
        match fault.reply {
            Reply::Error => Err(StoreError::Backend(
                format!("{INJECTED_ERROR} on {primitive:?}").into(),
            )),
            Reply::Hang => std::future::pending().await,
        }
    }
}

impl<S: IdempotencyStore> IdempotencyStore for FaultyStore<S> {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.call(Primitive::Get, self.inner.get(key)).await
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        let put = self.inner.put_in_progress(record, now);
        Ok(match self.call(Primitive::PutInProgress, put).await? {
            PutOutcome::Exists(_) if self.hides_existing => PutOutcome::Exists(None),
            outcome => outcome,
        })
    }

    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.call(Primitive::Update, self.inner.update(record))
            .await
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.call(Primitive::Delete, self.inner.delete(record))
            .await
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        let replaced = self.inner.replace_with_fence(claim, fence);
        self.call(Primitive::ReplaceWithFence, replaced).await
    }

    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        let put = self.inner.put_over_fence(record, fence);
        Ok(match self.call(Primitive::PutOverFence, put).await? {
            PutOutcome::Exists(_) if self.hides_existing => PutOutcome::Exists(None),
            outcome => outcome,
        })
    }
}

// The handler.

/// How often the handler was called, and how often its body (the side effect) ran, per key.
#[derive(Debug, Default)]
struct Tally {
    called: [AtomicUsize; 3],
    executed: [AtomicUsize; 3],
}

impl Tally {
    fn of(&self, key: usize) -> (usize, usize) {
        (
            self.called[key].load(Ordering::SeqCst),
            self.executed[key].load(Ordering::SeqCst),
        )
    }
}

/// The handler of the `n`th call, as the closure given to `run` and as a service.
#[derive(Debug, Clone)]
struct Handler {
    key: usize,
    n: u32,
    behaviour: Behaviour,
    tally: Arc<Tally>,
}

impl Handler {
    /// Calls the handler: a `PanicBeforeFuture` handler panics here, before its future exists.
    fn call(self) -> impl Future<Output = Result<Response, HandlerFailed>> + Send + 'static {
        self.tally.called[self.key].fetch_add(1, Ordering::SeqCst);
        if self.behaviour == Behaviour::PanicBeforeFuture {
            panic!("{}", panic_message(self.n));
        }
        async move {
            self.tally.executed[self.key].fetch_add(1, Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Succeed => Ok(Response::nth(self.n)),
                Behaviour::Fail => Err(HandlerFailed(self.n)),
                Behaviour::PanicInFuture | Behaviour::PanicBeforeFuture => {
                    panic!("{}", panic_message(self.n))
                }
            }
        }
    }
}

fn panic_message(n: u32) -> String {
    format!("{INJECTED_PANIC} in call {n}")
}

/// The handler as a Lambda service, for the layer path.
#[derive(Debug, Clone)]
struct HandlerService(Handler);

impl Service<LambdaEvent<String>> for HandlerService {
    type Response = Response;
    type Error = HandlerFailed;
    type Future = BoxFuture<'static, Result<Response, HandlerFailed>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _event: LambdaEvent<String>) -> Self::Future {
        Box::pin(self.0.clone().call())
    }
}

// Outcomes.

/// Why a store call failed, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    /// The injected `StoreError::Backend`.
    Injected,
    /// The engine's store timeout.
    TimedOut,
    Other(String),
}

impl Cause {
    /// The cause of `source`, from an engine whose store timeout is `store_timeout`.
    fn of(source: &BoxError, store_timeout: Duration) -> Self {
        let message = source.to_string();
        if message.starts_with(INJECTED_ERROR) {
            Cause::Injected
        } else if message.starts_with(&format!(
            "no answer within {} ms",
            store_timeout.as_millis()
        )) {
            Cause::TimedOut
        } else {
            Cause::Other(message)
        }
    }
}

/// What a call returned, with everything the model predicts about it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Response {
        value_bits: u64,
        label: String,
    },
    Handler(HandlerFailed),
    HandlerPanicked(String),
    DeleteFailed {
        error: Box<Outcome>,
        cause: Cause,
    },
    Persistence {
        operation: &'static str,
        cause: Cause,
    },
    NotCompleted {
        key: String,
        in_progress_until: i64,
        cause: Cause,
    },
    AlreadyInProgress {
        key: String,
    },
    /// The panic reached the caller (a panic before the handler's future existed).
    PanicResumed(String),
    Unexpected(String),
}

impl Outcome {
    fn response(response: &Response) -> Self {
        Outcome::Response {
            value_bits: response.value.to_bits(),
            label: response.label.clone(),
        }
    }

    fn of(
        result: Result<Result<Response, Error<HandlerFailed>>, Box<dyn Any + Send>>,
        store_timeout: Duration,
    ) -> Self {
        match result {
            Ok(Ok(response)) => Outcome::response(&response),
            Ok(Err(error)) => Outcome::of_error(error, store_timeout),
            Err(panic) => Outcome::PanicResumed(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a panic without a String payload".to_owned()),
            ),
        }
    }

    fn of_error(error: Error<HandlerFailed>, store_timeout: Duration) -> Self {
        let cause = |source: &BoxError| Cause::of(source, store_timeout);
        match error {
            Error::Handler(error) => Outcome::Handler(error),
            Error::HandlerPanicked { message } => Outcome::HandlerPanicked(message),
            Error::DeleteFailed { error, source } => Outcome::DeleteFailed {
                error: Box::new(Outcome::of_error(*error, store_timeout)),
                cause: cause(&source),
            },
            Error::Persistence { operation, source } => Outcome::Persistence {
                operation,
                cause: cause(&source),
            },
            Error::NotCompleted {
                key,
                in_progress_until,
                source,
            } => Outcome::NotCompleted {
                key,
                in_progress_until,
                cause: cause(&source),
            },
            Error::AlreadyInProgress { key, .. } => Outcome::AlreadyInProgress { key },
            other => Outcome::Unexpected(format!("{other:?}")),
        }
    }
}

// The model.

/// What the store holds for one key.
#[derive(Debug, Clone)]
enum KeyState {
    Absent,
    /// A failed handler's fence: in progress until its claim's deadline `in_progress_until`
    /// (epoch ms), which no claim write sent before it passes; the next claim takes it by its id.
    Fenced {
        in_progress_until: i64,
    },
    /// An in-progress record that blocks duplicates until `in_progress_until` (epoch ms).
    Orphaned {
        in_progress_until: i64,
    },
    /// The first successful response, and whether the engine's local cache holds it.
    Completed {
        response: Response,
        cached: bool,
    },
}

/// How far the handler got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Not called at all.
    No,
    /// Called, but it panicked before its future existed: the side effect did not run.
    CalledOnly,
    /// Its body ran.
    Executed,
}

/// The model's prediction for one call.
#[derive(Debug)]
struct Prediction {
    outcome: Outcome,
    calls: Vec<Primitive>,
    ran: Ran,
    next: KeyState,
}

#[derive(Debug)]
struct Model {
    local_cache: bool,
    store_hides_existing: bool,
    /// The key in the store of each key's data.
    store_keys: Vec<String>,
    states: Vec<KeyState>,
    executions: Vec<usize>,
}

impl Model {
    fn new(scenario: &Scenario, store_keys: Vec<String>) -> Self {
        Model {
            local_cache: scenario.local_cache,
            store_hides_existing: scenario.store_hides_existing,
            store_keys,
            states: vec![KeyState::Absent; scenario.keys],
            executions: vec![0; scenario.keys],
        }
    }

    /// What the `n`th call, `op`, made in an invocation whose deadline is `deadline_ms`, does.
    fn predict(&self, op: &Op, n: u32, deadline_ms: i64) -> Prediction {
        let state = &self.states[op.key];
        let fault_on = |primitive| op.fault.filter(|fault| fault.on == primitive);
        let not_run = |outcome, calls, next| Prediction {
            outcome,
            calls,
            ran: Ran::No,
            next,
        };

        // Promises 1 and 2: a cached completion is replayed without any store call.
        if let KeyState::Completed {
            response,
            cached: true,
        } = state
            && self.local_cache
        {
            return not_run(Outcome::response(response), vec![], state.clone());
        }

        let mut calls = vec![Primitive::PutInProgress];
        if let Some(fault) = fault_on(Primitive::PutInProgress) {
            // Promise 4: the handler does not run. The claim, which may have landed before its
            // reply was lost (or may land later), is taken back: a fence is written in its
            // place (a record any later claim replaces, which the model counts as absent); a
            // claim that landed is found there and replaced with a fence that keeps its deadline
            // (taken by the next claim by its id), and a failed handler's fence found there is
            // replaced with the take-back's, by its id. A store that hides the record it found
            // gets it read.
            calls.push(Primitive::PutInProgress);
            let hides = self.store_hides_existing;
            let next = match state {
                KeyState::Absent if fault.applied => {
                    if hides {
                        calls.push(Primitive::Get);
                    }
                    calls.push(Primitive::ReplaceWithFence);
                    KeyState::Fenced {
                        in_progress_until: deadline_ms,
                    }
                }
                KeyState::Absent => KeyState::Absent,
                KeyState::Fenced { .. } => {
                    if hides {
                        calls.push(Primitive::Get);
                    }
                    calls.push(Primitive::PutOverFence);
                    KeyState::Absent
                }
                KeyState::Orphaned { .. } | KeyState::Completed { .. } => {
                    if hides {
                        calls.push(Primitive::Get);
                    }
                    state.clone()
                }
            };
            let outcome = Outcome::Persistence {
                operation: SAVE_CLAIM,
                cause: fault.cause(),
            };
            return not_run(outcome, calls, next);
        }

        if matches!(state, KeyState::Absent) {
            return self.claimed(op, n, deadline_ms, calls);
        }
        // The claim was refused: a store that hides what it found has it read.
        if self.store_hides_existing {
            calls.push(Primitive::Get);
            if let Some(fault) = fault_on(Primitive::Get) {
                let outcome = Outcome::Persistence {
                    operation: READ_EXISTING,
                    cause: fault.cause(),
                };
                return not_run(outcome, calls, state.clone());
            }
        }
        match state {
            KeyState::Absent => unreachable!("claimed above"),
            // Promise 3: the claim finds the fence, and takes it by its id.
            KeyState::Fenced { .. } => {
                calls.push(Primitive::PutOverFence);
                self.claimed(op, n, deadline_ms, calls)
            }
            KeyState::Orphaned { .. } | KeyState::Completed { .. } => {
                match state {
                    // Promises 1 and 2: the first successful response, and no execution.
                    KeyState::Completed { response, .. } => not_run(
                        Outcome::response(response),
                        calls,
                        KeyState::Completed {
                            response: response.clone(),
                            cached: self.local_cache,
                        },
                    ),
                    // Promises 5 and 6: an orphaned claim blocks duplicates.
                    _ => {
                        let key = self.store_keys[op.key].clone();
                        not_run(Outcome::AlreadyInProgress { key }, calls, state.clone())
                    }
                }
            }
        }
    }

    /// The rest of a call that claimed its key: the handler runs, then the completion or the
    /// delete.
    fn claimed(&self, op: &Op, n: u32, deadline_ms: i64, mut calls: Vec<Primitive>) -> Prediction {
        let fault_on = |primitive| op.fault.filter(|fault| fault.on == primitive);
        let orphaned = KeyState::Orphaned {
            in_progress_until: deadline_ms,
        };
        let message = panic_message(n);
        let (failure, ran) = match op.behaviour {
            Behaviour::Succeed => {
                let response = Response::nth(n);
                calls.push(Primitive::Update);
                let (outcome, next) = match fault_on(Primitive::Update) {
                    None => (
                        Outcome::response(&response),
                        KeyState::Completed {
                            response,
                            cached: self.local_cache,
                        },
                    ),
                    // Promise 5: the claim stays in progress, unless the update landed anyway
                    // (then the engine did not cache it).
                    Some(fault) => (
                        Outcome::NotCompleted {
                            key: self.store_keys[op.key].clone(),
                            in_progress_until: deadline_ms,
                            cause: fault.cause(),
                        },
                        if fault.applied {
                            KeyState::Completed {
                                response,
                                cached: false,
                            }
                        } else {
                            orphaned
                        },
                    ),
                };
                return Prediction {
                    outcome,
                    calls,
                    ran: Ran::Executed,
                    next,
                };
            }
            Behaviour::Fail => (Outcome::Handler(HandlerFailed(n)), Ran::Executed),
            Behaviour::PanicInFuture => (Outcome::HandlerPanicked(message), Ran::Executed),
            // The panic goes on to the caller, whether the release failed or not.
            Behaviour::PanicBeforeFuture => (Outcome::PanicResumed(message), Ran::CalledOnly),
        };

        // Promises 3 and 6: a failure releases the claim (replaced with a fence that keeps its
        // deadline and that the next call takes by its id), so that the next call runs again.
        calls.push(Primitive::ReplaceWithFence);
        let delete_fault = fault_on(Primitive::ReplaceWithFence);
        let outcome = match delete_fault {
            Some(fault) if ran == Ran::Executed => Outcome::DeleteFailed {
                error: Box::new(failure),
                cause: fault.cause(),
            },
            _ => failure,
        };
        let next = match delete_fault {
            Some(fault) if !fault.applied => orphaned,
            _ => KeyState::Fenced {
                in_progress_until: deadline_ms,
            },
        };
        Prediction {
            outcome,
            calls,
            ran,
            next,
        }
    }

    fn apply(&mut self, key: usize, prediction: Prediction) {
        if prediction.ran == Ran::Executed {
            self.executions[key] += 1;
        }
        self.states[key] = prediction.next;
    }

    /// Checks the store's record of every key, read with its `get`, against its state.
    async fn check_store(&self, store: &impl IdempotencyStore) -> Result<(), TestCaseError> {
        for (state, key) in self.states.iter().zip(&self.store_keys) {
            let record = store.get(key).await.map_err(|error| {
                TestCaseError::fail(format!("reading the record of {key} back: {error}"))
            })?;
            let matches = match (state, &record) {
                (KeyState::Absent, None) => true,
                // A fence (a taken-back claim's, or a failed handler's): in progress, known by its
                // claim id, already past its deadline, so that any claim replaces it.
                (KeyState::Absent, Some(record)) => {
                    let now_ms = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |since| {
                            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                        });
                    record.status == Status::InProgress
                        && record.response_data.is_none()
                        && record.payload_hash.is_none()
                        && record
                            .claim_id
                            .as_deref()
                            .is_some_and(|id| id.starts_with("fence-"))
                        && record
                            .in_progress_expiry_timestamp
                            .is_some_and(|deadline| deadline < now_ms)
                }
                (KeyState::Fenced { in_progress_until }, Some(record)) => {
                    record.is_fence()
                        && record.response_data.is_none()
                        && record.payload_hash.is_none()
                        && record.in_progress_expiry_timestamp == Some(*in_progress_until)
                }
                (KeyState::Orphaned { in_progress_until }, Some(record)) => {
                    record.status == Status::InProgress
                        && record.in_progress_expiry_timestamp == Some(*in_progress_until)
                }
                (KeyState::Completed { response, .. }, Some(record)) => {
                    let stored = record
                        .response_data
                        .as_deref()
                        .and_then(|data| serde_json::from_str::<Response>(data).ok());
                    record.status == Status::Completed
                        && stored.is_some_and(|stored| {
                            Outcome::response(&stored) == Outcome::response(response)
                        })
                }
                _ => false,
            };
            if !matches {
                return Err(TestCaseError::fail(format!(
                    "the store holds {record:?} for {key}, the model says {state:?}"
                )));
            }
        }
        Ok(())
    }
}

// The test.

/// Keeps the expected panics out of the test output; any other panic is reported as usual.
fn silence_injected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload_as_str()
                .is_some_and(|message| message.starts_with(INJECTED_PANIC));
            if !injected {
                report(info);
            }
        }));
    });
}

/// How a case runs: the engine's store timeout, and on which clock.
#[derive(Debug, Clone, Copy)]
struct Setup {
    store_timeout: Duration,
    /// Tokio's paused clock, on which a hang costs no real time (and a call that does not hang
    /// takes no time at all), or the real one.
    paused_clock: bool,
}

/// Makes one call through `path`, and catches a panic that reaches the caller.
async fn call<S: IdempotencyStore>(
    idempotency: &Idempotency<FaultyStore<S>>,
    path: Path,
    key_data: String,
    handler: Handler,
    context: Context,
    store_timeout: Duration,
) -> Outcome {
    let result = match path {
        Path::Run => {
            let run = idempotency.run(&context, OPERATION, key_data, move |_: String| {
                handler.call()
            });
            AssertUnwindSafe(run).catch_unwind().await
        }
        Path::Layer => {
            let service = IdempotencyLayer::new(idempotency.clone())
                .operation(OPERATION)
                .layer(HandlerService(handler));
            let call = service.oneshot(LambdaEvent::new(key_data, context));
            AssertUnwindSafe(call).catch_unwind().await
        }
    };
    Outcome::of(result, store_timeout)
}

/// Runs `scenario` against the engine on `inner` (holding no record of the case's keys) and the
/// model, call by call.
async fn check_scenario<S: IdempotencyStore>(
    scenario: &Scenario,
    inner: S,
    setup: Setup,
) -> Result<(), TestCaseError> {
    let Setup {
        store_timeout,
        paused_clock,
    } = setup;
    let store = FaultyStore::new(inner, scenario.store_hides_existing);
    let idempotency = Idempotency::builder(store.clone())
        .key_prefix("model")
        .store_timeout(store_timeout)
        .local_cache(if scenario.local_cache { 16 } else { 0 })
        .env(Env::from_pairs::<_, &str, &str>([]))
        .build()
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    let key_data: Vec<String> = (0..scenario.keys)
        .map(|key| format!("order-{key}"))
        .collect();
    let store_keys = key_data
        .iter()
        .map(|data| idempotency.key_for(&Context::default(), OPERATION, &json!(data)))
        .collect();
    let mut model = Model::new(scenario, store_keys);
    let tally = Arc::new(Tally::default());

    for (n, op) in (0u32..).zip(&scenario.ops) {
        let context = TestContext::new().build();
        let deadline_ms = i64::try_from(context.deadline).unwrap_or(i64::MAX);
        let prediction = model.predict(op, n, deadline_ms);
        let handler = Handler {
            key: op.key,
            n,
            behaviour: op.behaviour,
            tally: tally.clone(),
        };

        let before = tally.of(op.key);
        store.arm(op.fault);
        let started = tokio::time::Instant::now();
        let outcome = call(
            &idempotency,
            op.path,
            key_data[op.key].clone(),
            handler,
            context,
            store_timeout,
        )
        .await;
        let elapsed = started.elapsed();
        let calls = store.disarm();
        let (called, executed) = tally.of(op.key);

        prop_assert_eq!(&outcome, &prediction.outcome, "call {}: {:?}", n, op);
        prop_assert_eq!(&calls, &prediction.calls, "store calls of call {}", n);
        prop_assert_eq!(
            called - before.0,
            usize::from(prediction.ran != Ran::No),
            "handler calls in call {}",
            n
        );
        prop_assert_eq!(
            executed - before.1,
            usize::from(prediction.ran == Ran::Executed),
            "executions in call {}",
            n
        );
        let hung = op
            .fault
            .is_some_and(|fault| fault.reply == Reply::Hang && calls.contains(&fault.on));
        if hung {
            prop_assert!(elapsed >= store_timeout, "call {n} hung only {elapsed:?}");
        } else if paused_clock {
            prop_assert!(elapsed < store_timeout, "call {n} took {elapsed:?}");
        }

        model.apply(op.key, prediction);
        model.check_store(&store.inner).await?;
    }

    for key in 0..scenario.keys {
        prop_assert_eq!(
            tally.of(key).1,
            model.executions[key],
            "executions of key {}",
            key
        );
    }
    Ok(())
}

/// A fresh current-thread runtime, on tokio's paused clock or on the real one.
fn runtime(paused_clock: bool) -> Result<tokio::runtime::Runtime, TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused_clock)
        .build()
        .map_err(|error| TestCaseError::fail(error.to_string()))
}

/// Runs `scenario` on a fresh `InMemoryStore` and a fresh runtime, on tokio's paused clock (a
/// hang costs no real time) or on the real one.
fn run_in_memory(scenario: &Scenario, paused_clock: bool) -> Result<(), TestCaseError> {
    silence_injected_panics();
    let setup = Setup {
        store_timeout: IN_MEMORY_STORE_TIMEOUT,
        paused_clock,
    };
    runtime(paused_clock)?.block_on(check_scenario(scenario, InMemoryStore::new(), setup))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files: a failure prints its minimal case.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Random sequences of up to 20 calls on two or three keys, through `run` and the layer,
    /// with handlers that succeed, fail or panic and store calls that fail, hang or lose their
    /// reply: every call's outcome, store calls and executions are the model's, and so is the
    /// store after every call. Hangs are cut off by the store timeout on tokio's paused clock.
    #[test]
    fn every_call_does_what_the_model_of_its_key_predicts(scenario in scenario(20, 2)) {
        run_in_memory(&scenario, true)?;
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// The same model on the real clock, with fewer cases: a hung store call is cut off by the
    /// 50 ms store timeout in real time too, and the promises hold.
    #[test]
    fn hung_store_calls_time_out_in_real_time_and_the_model_still_holds(
        scenario in scenario(12, 2)
    ) {
        run_in_memory(&scenario, false)?;
    }
}

/// The same model on a `DynamoDbStore`, on a fresh table of the moto server per case.
#[cfg(feature = "dynamodb")]
mod moto {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use powertools_idempotency::DynamoDbStore;
    use proptest::test_runner::{TestCaseError, TestRunner};

    use super::{
        Scenario, Setup, check_scenario, config, runtime, scenario, silence_injected_panics,
    };

    /// The engine's bound on one store call on moto, which takes milliseconds per request (more
    /// on a busy machine). Every hang costs this much real time, so hangs are rare here.
    const STORE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The variable that holds moto's endpoint.
    const ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_DYNAMODB";

    /// Whether moto is configured. Outside CI, says why the test skips when it is not; in CI
    /// (`CI` set), a missing endpoint fails the test, so that a broken service start never turns
    /// into a green run of skipped tests.
    fn moto_configured() -> bool {
        if std::env::var(ENDPOINT_VAR).is_ok_and(|endpoint| !endpoint.is_empty()) {
            return true;
        }
        let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
        assert!(
            !in_ci,
            "{ENDPOINT_VAR} is not set: run the tests through scripts/with-test-services (CI must \
             not skip them)"
        );
        eprintln!("skipping: {ENDPOINT_VAR} is not set (run through scripts/with-test-services)");
        false
    }

    /// A table name no other case or run uses.
    fn unique_table_name() -> String {
        static CASES: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let case = CASES.fetch_add(1, Ordering::Relaxed);
        format!("model-{}-{nanos}-{case}", std::process::id())
    }

    /// Creates an idempotency table (partition key `id`, a string; on demand) and returns its
    /// name.
    async fn create_table(client: &Client) -> Result<String, TestCaseError> {
        let table = unique_table_name();
        let complete = |error: aws_sdk_dynamodb::error::BuildError| {
            TestCaseError::fail(format!("building the table's definition: {error}"))
        };
        client
            .create_table()
            .table_name(&table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(complete)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(complete)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|error| {
                TestCaseError::fail(format!(
                    "creating table {table} on {}: {}",
                    std::env::var(ENDPOINT_VAR).unwrap_or_default(),
                    aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                ))
            })?;
        Ok(table)
    }

    /// Runs `scenario` on a `DynamoDbStore` on a fresh table, on a fresh runtime on the real
    /// clock (the client is made in the runtime that uses it: its connections belong to it).
    fn run_on_moto(scenario: &Scenario) -> Result<(), TestCaseError> {
        silence_injected_panics();
        runtime(false)?.block_on(async {
            let config = aws_config::load_from_env().await;
            let client = Client::new(&config);
            let table = create_table(&client).await?;
            let store = DynamoDbStore::new(client.clone(), &table)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            let setup = Setup {
                store_timeout: STORE_TIMEOUT,
                paused_clock: false,
            };
            let result = check_scenario(scenario, store, setup).await;
            // moto keeps every table in memory; a failed case keeps its table for a look.
            if result.is_ok() {
                let _ = client.delete_table().table_name(&table).send().await;
            }
            result
        })
    }

    /// The model on DynamoDB (moto, with its requests serialized so that conditional writes are
    /// atomic), with fewer and shorter cases: 16 sequences of up to 10 calls, whose faults are
    /// hangs one time in five (each costs the 2 s store timeout, so a case takes at most 20 s
    /// more than its requests, within the 30 s an orphaned claim blocks for in the model). A lost
    /// reply is the real request made and its answer dropped; the records are read back with
    /// `GetItem`.
    #[test]
    fn the_model_holds_on_dynamodb() {
        if !moto_configured() {
            return;
        }
        let mut runner = TestRunner::new(config(16));
        if let Err(error) = runner.run(&scenario(10, 5), |scenario| run_on_moto(&scenario)) {
            panic!("{error}\n{runner}");
        }
    }
}
