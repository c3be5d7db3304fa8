//! The engine's rules that need no real server: missing keys, the kill switch, the replay hook,
//! failures of the store itself, and the deadline arithmetic, on `InMemoryStore` and wrappers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    DataRecord, Error, Idempotency, IdempotencyLayer, IdempotencyStore, InMemoryStore, PutOutcome,
    Status, StoreError,
};
use serde_json::{Value, json};

/// Counts every storage primitive called, and can fail deletes, fail a claim's write after it
/// landed, and make every call wait once (answering on the next poll) as a network call does.
#[derive(Debug, Clone, Default)]
struct CountingStore {
    inner: InMemoryStore,
    calls: Arc<AtomicUsize>,
    fail_deletes: bool,
    fail_claims_after_landing: bool,
    waits: bool,
}

impl CountingStore {
    /// Counts the call; waits once if the store waits.
    async fn call(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.waits {
            let mut waited = false;
            std::future::poll_fn(|cx| {
                if std::mem::replace(&mut waited, true) {
                    return std::task::Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            })
            .await;
        }
    }
}

impl IdempotencyStore for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.call().await;
        self.inner.get(key).await
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        self.call().await;
        let outcome = self.inner.put_in_progress(record, now).await;
        if self.fail_claims_after_landing {
            return Err(StoreError::Backend("connection reset".into()));
        }
        outcome
    }

    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.call().await;
        self.inner.update(record).await
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.call().await;
        if self.fail_deletes {
            return Err(StoreError::Backend("throttled".into()));
        }
        self.inner.delete(record).await
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        self.call().await;
        if self.fail_deletes {
            return Err(StoreError::Backend("throttled".into()));
        }
        self.inner.replace_with_fence(claim, fence).await
    }

    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        self.call().await;
        self.inner.put_over_fence(record, fence).await
    }
}

fn no_env() -> Env {
    Env::from_pairs::<_, &str, &str>([])
}

/// Idempotency on `store` that refuses events without a key (`raise_on_missing_key`).
fn requiring_keys(store: &CountingStore) -> Idempotency<CountingStore> {
    Idempotency::builder(store.clone())
        .raise_on_missing_key(true)
        .env(no_env())
        .build()
        .expect("valid settings")
}

async fn echo(
    idempotency: &Idempotency<CountingStore>,
    event: Value,
) -> Result<Value, Error<lambda_runtime::Error>> {
    ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency.clone())
                .key_from(|event: &Value| event.get("id").cloned()),
        )
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }))
        .oneshot(TestContext::new().event(event))
        .await
}

#[tokio::test]
async fn a_missing_key_runs_the_handler_with_zero_store_calls() {
    let store = CountingStore::default();
    let idempotency = Idempotency::builder(store.clone())
        .env(no_env())
        .build()
        .unwrap();
    for event in [
        json!({}),
        json!({"id": null}),
        json!({"id": ""}),
        json!({"id": []}),
    ] {
        assert_eq!(echo(&idempotency, event.clone()).await.unwrap(), event);
    }
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
    // 0 and false are keys, not missing ones.
    echo(&idempotency, json!({"id": 0})).await.unwrap();
    assert_eq!(store.calls.load(Ordering::SeqCst), 2);
}

/// An object whose every value is `null` is a missing key, as Java and TypeScript count it (not
/// Python, which looks at the object's keys): a JMESPath multi-select hash that matched nothing
/// (`{order: body.order_id, …}`) keeps its keys. It was a key, the same for every event that
/// lacked the fields: the second such event was answered with the first one's response, its
/// handler never run. (Needs the `jmespath` feature, a default one.)
#[cfg(feature = "jmespath")]
#[tokio::test]
async fn a_multi_select_hash_that_matched_nothing_is_a_missing_key() {
    let store = CountingStore::default();
    let idempotency = Idempotency::builder(store.clone())
        .env(no_env())
        .build()
        .unwrap();
    let expression = "{order: body.order_id, customer: body.customer_id}";
    let handler = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency.clone())
                .key(powertools_idempotency::JmesPath::new(expression).unwrap()),
        )
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload["body"]["note"].clone())
        }));
    for note in ["first", "second"] {
        let answer = handler
            .clone()
            .oneshot(TestContext::new().event(json!({"body": {"note": note}})))
            .await
            .unwrap();
        assert_eq!(answer, note, "each event runs its handler");
    }
    assert_eq!(store.calls.load(Ordering::SeqCst), 0, "no key, no record");

    // Required keys: refused, as Python refuses them (`IdempotencyKeyError`).
    let required = requiring_keys(&store);
    let error = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(required.clone())
                .key(powertools_idempotency::JmesPath::new(expression).unwrap()),
        )
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }))
        .oneshot(TestContext::new().event(json!({"body": {}})))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::KeyMissing { .. }), "{error:?}");

    // A typed argument whose every field is `None`, given to `run`.
    #[derive(serde::Serialize)]
    struct Charge {
        order_id: Option<String>,
        customer_id: Option<String>,
    }
    let charged = required
        .run(
            &TestContext::new().build(),
            "charge",
            Charge {
                order_id: None,
                customer_id: None,
            },
            |_| async { Ok::<_, std::io::Error>(100) },
        )
        .await
        .unwrap_err();
    assert_eq!(charged.error_type(), "IdempotencyKeyError");
    // One field present: a key.
    let charged = required
        .run(
            &TestContext::new().build(),
            "charge",
            Charge {
                order_id: Some("o-1".into()),
                customer_id: None,
            },
            |_| async { Ok::<_, std::io::Error>(100) },
        )
        .await
        .unwrap();
    assert_eq!(charged, 100);
}

#[tokio::test]
async fn a_missing_key_is_an_error_when_required() {
    let store = CountingStore::default();
    let idempotency = requiring_keys(&store);
    let error = echo(&idempotency, json!({"other": 1})).await.unwrap_err();
    assert!(matches!(error, Error::KeyMissing { .. }));
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "IdempotencyKeyError"
    );
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_kill_switch_bypasses_the_store() {
    let store = CountingStore::default();
    let env = Env::from_pairs([("POWERTOOLS_IDEMPOTENCY_DISABLED", "true")]);
    let idempotency = Idempotency::builder(store.clone())
        .env(env)
        .build()
        .unwrap();
    echo(&idempotency, json!({"id": 1})).await.unwrap();
    echo(&idempotency, json!({"id": 1})).await.unwrap();
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);

    let malformed = Env::from_pairs([("POWERTOOLS_IDEMPOTENCY_DISABLED", "perhaps")]);
    let error = Idempotency::builder(store)
        .env(malformed)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, Error::Config(message) if message.contains("POWERTOOLS_IDEMPOTENCY_DISABLED"))
    );
}

#[tokio::test]
async fn the_replay_hook_runs_on_replays_only() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let seen = hooked.clone();
    let idempotency = Idempotency::builder(CountingStore::default())
        .on_replay(move |response: &mut Value, record| {
            seen.fetch_add(1, Ordering::SeqCst);
            assert_eq!(record.status, Status::Completed);
            response["replayed"] = json!(true);
        })
        .env(no_env())
        .build()
        .unwrap();
    let first = echo(&idempotency, json!({"id": 7})).await.unwrap();
    assert_eq!(first, json!({"id": 7}));
    assert_eq!(hooked.load(Ordering::SeqCst), 0);
    let replay = echo(&idempotency, json!({"id": 7})).await.unwrap();
    assert_eq!(replay, json!({"id": 7, "replayed": true}));
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_delete_keeps_the_handler_error_too() {
    let store = CountingStore {
        fail_deletes: true,
        ..CountingStore::default()
    };
    let idempotency = Idempotency::builder(store).env(no_env()).build().unwrap();
    let error = idempotency
        .run(&TestContext::new().build(), "charge", "pay-1", |_| async {
            Err::<(), _>(std::io::Error::other("card declined"))
        })
        .await
        .unwrap_err();
    match &error {
        Error::DeleteFailed {
            error: handler,
            source,
        } => {
            assert!(
                matches!(handler.as_ref(), Error::Handler(inner) if inner.to_string() == "card declined")
            );
            assert_eq!(source.to_string(), "throttled");
        }
        other => panic!("expected DeleteFailed, got {other:?}"),
    }
    assert!(error.to_string().contains("card declined") && error.to_string().contains("throttled"));
}

#[tokio::test]
async fn zero_milliseconds_left_is_still_a_deadline() {
    let store = InMemoryStore::new();
    let idempotency = Idempotency::builder(store.clone())
        .key_prefix("p")
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new()
        .with_remaining_time(Duration::ZERO)
        .build();
    let key = idempotency.key_for(&context, "late", &json!("k"));
    let observed = idempotency
        .run(&context, "late", "k", |_| {
            // What the store holds while the handler runs.
            let record = store.record(&key).map(|record| {
                (
                    record.status.to_string(),
                    record.in_progress_expiry_timestamp,
                )
            });
            async move { Ok::<_, std::io::Error>(record) }
        })
        .await
        .unwrap()
        .expect("the in-progress record exists while the handler runs");
    assert_eq!(observed.0, "INPROGRESS");
    assert!(
        observed.1.is_some(),
        "a deadline of now is written, not omitted"
    );
}

#[tokio::test]
async fn the_key_is_the_function_name_then_the_operation() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new().with_function_name("payments").build();
    assert!(
        idempotency
            .key_for(&context, "charge", &json!(1))
            .starts_with("payments.charge#")
    );
    let prefixed = Idempotency::builder(InMemoryStore::new())
        .key_prefix("stable")
        .env(no_env())
        .build()
        .unwrap();
    assert!(
        prefixed
            .key_for(&context, "handler", &json!(1))
            .starts_with("stable.handler#")
    );
}

#[tokio::test]
async fn an_operation_name_that_could_forge_a_key_is_refused() {
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(no_env())
        .build()
        .unwrap();
    for operation in ["", "charge#abc"] {
        let error = idempotency
            .run(&TestContext::new().build(), operation, 1, |_| async {
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Config(_)),
            "{operation:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn the_layer_works_under_concurrency_on_the_in_memory_store() {
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(no_env())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(idempotency))
        .service(service_fn(move |event: LambdaEvent<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, lambda_runtime::Error>(event.payload)
            }
        }));
    let calls = (0..20u32)
        .flat_map(|key| std::iter::repeat_n(key, 50))
        .map(|key| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(TestContext::new().event(key)).await })
        });
    for result in futures_util::future::join_all(calls).await {
        match result.unwrap() {
            Ok(_) | Err(Error::AlreadyInProgress { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(executions.load(Ordering::SeqCst), 20);
}

#[cfg(feature = "jmespath")]
#[tokio::test]
async fn a_missing_key_s_error_names_where_the_key_was_looked_for() {
    // Given keys required, taken by a JMESPath expression, by a closure, or from `run`'s
    // argument
    let store = CountingStore::default();
    let idempotency = requiring_keys(&store);
    let handler = service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, lambda_runtime::Error>(event.payload)
    });
    let by_expression = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency.clone())
                .key(powertools_idempotency::JmesPath::new("body.order_id").unwrap()),
        )
        .service(handler);

    // When an event has no key
    let error = by_expression
        .oneshot(TestContext::new().event(json!({"body": {"order": "o-1"}})))
        .await
        .unwrap_err();

    // Then the error says where the key was looked for: the expression to fix, or the event
    // to look at
    let message = error.to_string();
    assert!(
        message.contains("no data found to create a hashed idempotency key")
            && message.contains("`body.order_id`"),
        "{message}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "IdempotencyKeyError"
    );
    let message = echo(&idempotency, json!({"other": 1}))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("the `key_from` closure"), "{message}");
    let message = idempotency
        .run(
            &TestContext::new().build(),
            "charge",
            Value::Null,
            |_| async { Ok::<_, Error>(1) },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("the argument of `run`"), "{message}");
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
}

/// Lambda Managed Instances do not stop an invocation that times out: Lambda answers the
/// invoker with a timeout and the handler goes on. Its claim's in-progress deadline is the
/// invocation's, so a retry after it takes the record over and runs the handler again while
/// the first still runs: two charges at once. The handler is stopped at the deadline (dropped
/// at its next `.await`, as a timed-out invocation of a standard Lambda function is stopped by
/// the end of its environment), and the caller is told so.
#[tokio::test]
async fn a_handler_still_running_at_the_deadline_is_stopped_so_a_retry_never_runs_beside_it() {
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let store = CountingStore::default();
    let idempotency = Idempotency::builder(store.clone())
        .env(no_env())
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let charges = Arc::new(AtomicUsize::new(0));
    let charge = |remaining: Duration| {
        let (idempotency, running, most_at_once, charges) = (
            idempotency.clone(),
            running.clone(),
            most_at_once.clone(),
            charges.clone(),
        );
        async move {
            let context = TestContext::new().with_remaining_time(remaining).build();
            idempotency
                .run(&context, "charge", "order-1", move |_| async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    let _running = Running(running);
                    most_at_once.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    charges.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>("charged".to_owned())
                })
                .await
        }
    };

    // The first invocation has 300 ms; its handler takes 900.
    let first = tokio::spawn(charge(Duration::from_millis(300)));
    // The retry comes after the first one's deadline, and takes the record over.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let retry = charge(Duration::from_secs(5)).await;
    let first = first.await.unwrap();

    assert_eq!(retry.unwrap(), "charged");
    let error = first.expect_err("stopped at its deadline");
    assert_eq!(
        error.error_type(),
        "IdempotencyHandlerTimeoutError",
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("deadline") && message.contains("stopped"),
        "{message}"
    );
    assert_eq!(charges.load(Ordering::SeqCst), 1, "charged once");
    assert_eq!(most_at_once.load(Ordering::SeqCst), 1, "never two at once");
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

/// Outside a Tokio runtime (a test under another executor), a handler that answers at once
/// runs and is remembered as before: the stop at the deadline makes its timer only for a
/// handler that waits, and only in a Tokio runtime.
#[test]
fn a_handler_that_answers_at_once_needs_no_tokio_runtime() {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut context = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::park();
        }
    }
    let store = CountingStore::default();
    let idempotency = Idempotency::builder(store.clone())
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let answer = block_on(idempotency.run(&context, "charge", "order-1", |_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(7_u32)
        }))
        .expect("no runtime needed");
        assert_eq!(answer, 7);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second call is a replay"
    );
}

/// A store that waits (as every network call does), and a claim whose write failed after it
/// landed (taken back), outside a Tokio runtime and in one without timers (a user's test under
/// another executor): the store calls run, unbounded there, where making their timeout
/// panicked (found by a review).
#[test]
fn a_store_that_waits_or_fails_needs_no_tokio_timers() {
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }
    let without_timers = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime without timers");
    /// Runs a test's future to its end on an executor.
    type Executor<'e> = &'e dyn Fn(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>);
    let executors: [Executor<'_>; 2] = [&|future| block_on(future), &|future| {
        without_timers.block_on(future)
    }];
    for run in executors {
        let store = CountingStore {
            waits: true,
            ..CountingStore::default()
        };
        let idempotency = Idempotency::builder(store.clone())
            .env(no_env())
            .build()
            .unwrap();
        let context = TestContext::new().build();
        run(Box::pin(async {
            for answer in [7_u32, 8] {
                let stored = idempotency
                    .run(&context, "charge", "order-1", |_| async move {
                        Ok::<_, std::io::Error>(answer)
                    })
                    .await;
                assert_eq!(stored.expect("no panic"), 7, "run, then a replay");
            }
        }));
        assert!(store.calls.load(Ordering::SeqCst) >= 2);
        let failing = CountingStore {
            fail_claims_after_landing: true,
            ..CountingStore::default()
        };
        let idempotency = Idempotency::builder(failing.clone())
            .env(no_env())
            .build()
            .unwrap();
        run(Box::pin(async {
            let refused = idempotency
                .run(&context, "charge", "order-2", |_| async {
                    Ok::<_, std::io::Error>(1_u32)
                })
                .await;
            assert!(refused.is_err(), "the claim's write failed");
        }));
        // Taken back: a retry runs the handler (not `AlreadyInProgress`).
        let working = CountingStore {
            inner: failing.inner.clone(),
            ..CountingStore::default()
        };
        let idempotency = Idempotency::builder(working).env(no_env()).build().unwrap();
        run(Box::pin(async {
            let retried = idempotency
                .run(&context, "charge", "order-2", |_| async {
                    Ok::<_, std::io::Error>(2_u32)
                })
                .await;
            assert_eq!(retried.expect("the claim was taken back"), 2);
        }));
    }
}

/// A store client, or a handler, that keeps finding work ready uses up Tokio's cooperative
/// budget on every poll: the store timeout and the stop at the deadline still come (a review: a
/// timer polled after such a future, within the budget, never fired).
#[tokio::test]
async fn a_store_call_or_a_handler_that_uses_up_tokio_s_budget_is_still_bounded() {
    #[derive(Debug, Clone, Default)]
    struct Spinning(CountingStore);
    impl IdempotencyStore for Spinning {
        async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
            self.0.get(key).await
        }
        async fn put_in_progress(
            &self,
            _record: &DataRecord,
            _now: SystemTime,
        ) -> Result<PutOutcome, StoreError> {
            loop {
                tokio::task::consume_budget().await;
            }
        }
        async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
            self.0.update(record).await
        }
        async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
            self.0.delete(record).await
        }
        async fn replace_with_fence(
            &self,
            claim: &DataRecord,
            fence: &DataRecord,
        ) -> Result<(), StoreError> {
            self.0.replace_with_fence(claim, fence).await
        }
        async fn put_over_fence(
            &self,
            record: &DataRecord,
            fence: &DataRecord,
        ) -> Result<PutOutcome, StoreError> {
            self.0.put_over_fence(record, fence).await
        }
    }
    let idempotency = Idempotency::builder(Spinning::default())
        .env(no_env())
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let claim = tokio::time::timeout(
        Duration::from_secs(10),
        idempotency.run(
            &TestContext::new().build(),
            "charge",
            "order-1",
            |_| async { Ok::<_, std::io::Error>(1_u32) },
        ),
    )
    .await;
    let error = claim
        .expect("the store timeout came")
        .expect_err("timed out");
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");

    let idempotency = Idempotency::builder(CountingStore::default())
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new()
        .with_remaining_time(Duration::from_millis(1500))
        .build();
    let run = tokio::time::timeout(
        Duration::from_secs(10),
        idempotency.run(&context, "charge", "order-2", |_| async {
            loop {
                tokio::task::consume_budget().await;
            }
            #[allow(unreachable_code)]
            Ok::<_, std::io::Error>(1_u32)
        }),
    )
    .await;
    assert!(run.expect("stopped at its deadline").is_err());
}

/// In a Tokio runtime built without timers (a user's test), a handler that waits runs and is
/// remembered as before: making the stop's timer panicked out of `run` and left the claim in
/// progress (found by a review). Nothing is stopped there.
#[test]
fn a_handler_that_waits_in_a_runtime_without_timers_runs_and_is_remembered() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime without timers");
    let idempotency = Idempotency::builder(CountingStore::default())
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let first = runtime.block_on(idempotency.run(&context, "charge", "order-1", |_| async {
        tokio::task::yield_now().await;
        Ok::<_, std::io::Error>(7_u32)
    }));
    assert_eq!(first.expect("no panic"), 7);
    let replay = runtime.block_on(idempotency.run(&context, "charge", "order-1", |_| async {
        Ok::<_, std::io::Error>(8_u32)
    }));
    assert_eq!(replay.expect("a replay"), 7);
}

/// With Tokio's clock paused (a user's test), a handler waiting on something that is not a
/// Tokio timer is not stopped when the paused clock moves on: the deadline is the wall clock's
/// (it was stopped at once, told it ran past a deadline 30 s away: found by a review). Nor is
/// it polled in a loop meanwhile (a timer armed again on the paused clock fired again at once:
/// thousands of polls and days of Tokio's time, found by the next review), and it is still
/// stopped at its wall-clock deadline.
#[tokio::test(start_paused = true)]
async fn a_paused_clock_neither_stops_a_handler_early_nor_spins_nor_misses_its_deadline() {
    let idempotency = Idempotency::builder(CountingStore::default())
        .env(no_env())
        .build()
        .unwrap();
    // Waits `wait` on another thread; counts its polls.
    let waiting = |wait: Duration, polls: Arc<AtomicUsize>| {
        move |_| async move {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                let _ = sender.send(5_u32);
            });
            let mut receiver = std::pin::pin!(receiver);
            let value = std::future::poll_fn(|cx| {
                polls.fetch_add(1, Ordering::SeqCst);
                receiver.as_mut().poll(cx)
            })
            .await
            .expect("the thread answers");
            Ok::<_, std::io::Error>(value)
        }
    };
    let polls = Arc::new(AtomicUsize::new(0));
    let context = TestContext::new().build();
    let answer = idempotency
        .run(
            &context,
            "charge",
            "order-1",
            waiting(Duration::from_millis(100), polls.clone()),
        )
        .await;
    assert_eq!(answer.expect("not stopped"), 5);
    assert!(polls.load(Ordering::SeqCst) <= 4, "polled {polls:?} times");

    let context = TestContext::new()
        .with_remaining_time(Duration::from_millis(300))
        .build();
    let late = idempotency
        .run(
            &context,
            "charge",
            "order-2",
            waiting(Duration::from_secs(2), Arc::default()),
        )
        .await;
    assert_eq!(
        late.expect_err("stopped at its deadline").error_type(),
        "IdempotencyHandlerTimeoutError"
    );
}

/// The stop's wall-clock wait (Tokio's clock paused) wakes the waker of the latest poll: a
/// future polled under one waker, then awaited by another task, was never woken at its deadline
/// and hung (found by a review).
#[test]
fn the_stop_wakes_the_latest_poll_s_waker_at_the_deadline() {
    struct Noted(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Noted {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let idempotency = Idempotency::builder(CountingStore::default())
            .env(no_env())
            .build()
            .unwrap();
        let context = TestContext::new()
            .with_remaining_time(Duration::from_millis(300))
            .build();
        let outcome = runtime.block_on(async {
            let mut charge = Box::pin(idempotency.run(&context, "charge", "order-1", |_| {
                std::future::pending::<Result<u32, std::io::Error>>()
            }));
            let first = std::task::Waker::from(Arc::new(Noted(false.into())));
            let mut first_context = std::task::Context::from_waker(&first);
            assert!(charge.as_mut().poll(&mut first_context).is_pending());
            // The stop's timer fires on the paused clock, long before the wall-clock deadline.
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(charge.as_mut().poll(&mut first_context).is_pending());
            // Then another task awaits it.
            charge.await
        });
        let _ = sender.send(outcome.map_err(|error| error.error_type()));
    });
    // A bound on the wait, not a timing: the stale waker left it pending for ever.
    let outcome = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("stopped at its deadline, not left pending");
    assert_eq!(outcome, Err("IdempotencyHandlerTimeoutError"));
}

/// A store whose claims are refused every time: the first time with no record to be read back,
/// then with a record that had expired (a custom store's claim and read that disagree).
#[derive(Debug, Clone, Default)]
struct DisagreeingStore {
    puts: Arc<AtomicUsize>,
}

impl IdempotencyStore for DisagreeingStore {
    async fn get(&self, _key: &str) -> Result<Option<DataRecord>, StoreError> {
        Ok(None)
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        _now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        if self.puts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(PutOutcome::Exists(None));
        }
        Ok(PutOutcome::Exists(Some(DataRecord::new(
            record.key.clone(),
            Status::Completed,
            1,
        ))))
    }

    async fn update(&self, _record: &DataRecord) -> Result<(), StoreError> {
        Ok(())
    }

    async fn delete(&self, _record: &DataRecord) -> Result<(), StoreError> {
        Ok(())
    }

    async fn replace_with_fence(
        &self,
        _claim: &DataRecord,
        _fence: &DataRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_over_fence(
        &self,
        _record: &DataRecord,
        _fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        Ok(PutOutcome::Exists(None))
    }
}

/// (Found by a review.) `InconsistentState`'s new `answers` describe only the last attempt's disagreement
/// but always say it happened "3 times in a row": here the first attempt's claim was refused
/// and the read found nothing, the next two found an expired record, and the error says the
/// record "had expired ... 3 times in a row", blaming clocks.
#[tokio::test]
async fn review_inconsistent_state_says_what_each_attempt_found() {
    let idempotency = Idempotency::builder(DisagreeingStore::default())
        .env(no_env())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let error = idempotency
        .run(&context, "charge", "order-1", |_| async {
            Ok::<_, std::io::Error>(1_u8)
        })
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::InconsistentState { .. }), "{text}");
    assert!(
        !text.contains("3 times in a row"),
        "one attempt of three found no record, two an expired one: {text}"
    );
}
