//! A model-based property test of the idempotency engine: random sequences of calls on two or
//! three keys, on an `InMemoryStore` behind a store that injects the faults each call's script
//! asks for.
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
//! failed put), the completion (`update`) or the delete. A fault is an error, or a hang that the
//! engine's 50 ms store timeout cuts off; and the call it interrupts was either applied by the
//! backend before the reply was lost (as a DynamoDB timeout may be), or not.
//!
//! # The model
//!
//! Per key, the model knows what the store holds:
//!
//! - `Absent`: no record; the next call claims the key and runs the handler.
//! - `Orphaned`: an in-progress record nobody will finish (a completion or a delete failed). It
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
//! 3. After a handler error, or a panic whose claim was deleted, the next call runs again.
//! 4. A store failure on the claim means the handler did not run (`Error::Persistence`).
//! 5. A store failure on the completion gives `Error::NotCompleted`, after which duplicates get
//!    `Error::AlreadyInProgress` (or, when the update landed before its reply was lost, the
//!    stored response).
//! 6. A failed delete after a handler error gives `Error::DeleteFailed`, after which duplicates
//!    get `Error::AlreadyInProgress` (unless the delete landed before its reply was lost).

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
/// The engine's bound on one store call: a hung call fails after this.
const STORE_TIMEOUT: Duration = Duration::from_millis(50);
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
    Delete,
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

fn fault() -> impl Strategy<Value = Fault> {
    let on = prop_oneof![
        Just(Primitive::PutInProgress),
        Just(Primitive::Get),
        Just(Primitive::Update),
        Just(Primitive::Delete),
    ];
    let reply = prop_oneof![Just(Reply::Error), Just(Reply::Hang)];
    (on, reply, any::<bool>()).prop_map(|(on, reply, applied)| Fault { on, reply, applied })
}

fn op(keys: usize) -> impl Strategy<Value = Op> {
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
        proptest::option::weighted(0.5, fault()),
    )
        .prop_map(|(key, path, behaviour, fault)| Op {
            key,
            path,
            behaviour,
            fault,
        })
}

fn scenario(max_ops: usize) -> impl Strategy<Value = Scenario> {
    (2..=3usize, any::<bool>(), any::<bool>()).prop_flat_map(
        move |(keys, local_cache, store_hides_existing)| {
            proptest::collection::vec(op(keys), 1..=max_ops).prop_map(move |ops| Scenario {
                keys,
                local_cache,
                store_hides_existing,
                ops,
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

/// An `InMemoryStore` that fails, hangs or loses the reply of the primitive its script names.
#[derive(Debug, Clone, Default)]
struct FaultyStore {
    inner: InMemoryStore,
    script: Arc<Mutex<Script>>,
    hides_existing: bool,
}

impl FaultyStore {
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

impl IdempotencyStore for FaultyStore {
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

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(Primitive::Delete, self.inner.delete(key)).await
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
    fn of(source: &BoxError) -> Self {
        let message = source.to_string();
        if message.starts_with(INJECTED_ERROR) {
            Cause::Injected
        } else if message.starts_with(&format!(
            "no answer within {} ms",
            STORE_TIMEOUT.as_millis()
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

    fn of(result: Result<Result<Response, Error<HandlerFailed>>, Box<dyn Any + Send>>) -> Self {
        match result {
            Ok(Ok(response)) => Outcome::response(&response),
            Ok(Err(error)) => Outcome::of_error(error),
            Err(panic) => Outcome::PanicResumed(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a panic without a String payload".to_owned()),
            ),
        }
    }

    fn of_error(error: Error<HandlerFailed>) -> Self {
        match error {
            Error::Handler(error) => Outcome::Handler(error),
            Error::HandlerPanicked { message } => Outcome::HandlerPanicked(message),
            Error::DeleteFailed { error, source } => Outcome::DeleteFailed {
                error: Box::new(Outcome::of_error(*error)),
                cause: Cause::of(&source),
            },
            Error::Persistence { operation, source } => Outcome::Persistence {
                operation,
                cause: Cause::of(&source),
            },
            Error::NotCompleted {
                key,
                in_progress_until,
                source,
            } => Outcome::NotCompleted {
                key,
                in_progress_until,
                cause: Cause::of(&source),
            },
            Error::AlreadyInProgress { key } => Outcome::AlreadyInProgress { key },
            other => Outcome::Unexpected(format!("{other:?}")),
        }
    }
}

// The model.

/// What the store holds for one key.
#[derive(Debug, Clone)]
enum KeyState {
    Absent,
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
            // Promise 4: the handler does not run. A claim that landed before its reply was
            // lost leaves an in-progress record behind.
            let next = match state {
                KeyState::Absent if fault.applied => KeyState::Orphaned {
                    in_progress_until: deadline_ms,
                },
                _ => state.clone(),
            };
            let outcome = Outcome::Persistence {
                operation: SAVE_CLAIM,
                cause: fault.cause(),
            };
            return not_run(outcome, calls, next);
        }

        match state {
            KeyState::Absent => self.claimed(op, n, deadline_ms, calls),
            KeyState::Orphaned { .. } | KeyState::Completed { .. } => {
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
            // The panic goes on to the caller, whether the delete failed or not.
            Behaviour::PanicBeforeFuture => (Outcome::PanicResumed(message), Ran::CalledOnly),
        };

        // Promises 3 and 6: a failure deletes the claim, so that the next call runs again.
        calls.push(Primitive::Delete);
        let delete_fault = fault_on(Primitive::Delete);
        let outcome = match delete_fault {
            Some(fault) if ran == Ran::Executed => Outcome::DeleteFailed {
                error: Box::new(failure),
                cause: fault.cause(),
            },
            _ => failure,
        };
        let next = match delete_fault {
            Some(fault) if !fault.applied => orphaned,
            _ => KeyState::Absent,
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

    /// Checks the store's record of every key against its state.
    fn check_store(&self, store: &InMemoryStore) -> Result<(), TestCaseError> {
        for (state, key) in self.states.iter().zip(&self.store_keys) {
            let record = store.record(key);
            let matches = match (state, &record) {
                (KeyState::Absent, None) => true,
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

/// Makes one call through `path`, and catches a panic that reaches the caller.
async fn call(
    idempotency: &Idempotency<FaultyStore>,
    path: Path,
    key_data: String,
    handler: Handler,
    context: Context,
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
    Outcome::of(result)
}

/// Runs `scenario` against the engine and the model, call by call.
async fn check_scenario(scenario: &Scenario, paused_clock: bool) -> Result<(), TestCaseError> {
    let store = FaultyStore {
        hides_existing: scenario.store_hides_existing,
        ..FaultyStore::default()
    };
    let idempotency = Idempotency::builder(store.clone())
        .key_prefix("model")
        .store_timeout(STORE_TIMEOUT)
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
            prop_assert!(elapsed >= STORE_TIMEOUT, "call {n} hung only {elapsed:?}");
        } else if paused_clock {
            prop_assert!(elapsed < STORE_TIMEOUT, "call {n} took {elapsed:?}");
        }

        model.apply(op.key, prediction);
        model.check_store(&store.inner)?;
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

/// Runs `scenario` on a fresh current-thread runtime, on tokio's paused clock (a hang costs no
/// real time) or on the real one.
fn run_scenario(scenario: &Scenario, paused_clock: bool) -> Result<(), TestCaseError> {
    silence_injected_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused_clock)
        .build()
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    runtime.block_on(check_scenario(scenario, paused_clock))
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
    fn every_call_does_what_the_model_of_its_key_predicts(scenario in scenario(20)) {
        run_scenario(&scenario, true)?;
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// The same model on the real clock, with fewer cases: a hung store call is cut off by the
    /// 50 ms store timeout in real time too, and the promises hold.
    #[test]
    fn hung_store_calls_time_out_in_real_time_and_the_model_still_holds(
        scenario in scenario(12)
    ) {
        run_scenario(&scenario, false)?;
    }
}
