//! The promise attacked at its edges, on the in-memory store: replay fidelity, panics before the
//! handler's future exists, validation data that is missing, operations that share one
//! `Idempotency`, deadlines that cannot be trusted, responses that cannot be stored, and numbers
//! in keys. The same edges against a real server are in `tests/tests/idempotency_dynamodb.rs`.

// The helpers below are test code too.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use lambda_runtime::tower::{Layer, Service, ServiceBuilder, ServiceExt};
use lambda_runtime::{Context, LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    Error, Idempotency, IdempotencyLayer, InMemoryStore, Status, key_json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn no_env() -> Env {
    Env::from_pairs::<_, &str, &str>([])
}

fn idempotency(store: &InMemoryStore) -> Idempotency<InMemoryStore> {
    Idempotency::builder(store.clone())
        .key_prefix("edges")
        .env(no_env())
        .build()
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs `value` through `run` twice under one key: the first call's response and the replay.
async fn first_and_replay<R>(
    idempotency: &Idempotency<InMemoryStore>,
    key: &str,
    value: R,
) -> (R, R)
where
    R: Serialize + serde::de::DeserializeOwned + Clone + Send + 'static,
{
    let context = TestContext::new().build();
    let first = idempotency
        .run(&context, "replay", key.to_owned(), |_| async {
            Ok::<_, std::io::Error>(value.clone())
        })
        .await
        .unwrap();
    let replay = idempotency
        .run(&context, "replay", key.to_owned(), |_| async {
            Err::<R, _>(std::io::Error::other("must not run twice"))
        })
        .await
        .unwrap();
    (first, replay)
}

// 1. Replay fidelity.

#[tokio::test]
async fn every_computed_float_replays_bit_for_bit() {
    // Given ten thousand computed prices, about one in ten of which serde_json's default float
    // parser reads back one or two ULP off,
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let prices: Vec<f64> = (0..10_000u32)
        .map(|i| f64::from(i) * 1.0001 / 7.3 + 1000.0)
        .collect();
    // when each is the response of a first call and of its replay,
    let (first, replay) = first_and_replay(&idempotency, "prices", prices.clone()).await;
    // then every replayed value has the same bits.
    assert_eq!(first, prices);
    let different: Vec<_> = prices
        .iter()
        .zip(&replay)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .take(3)
        .collect();
    assert!(different.is_empty(), "replayed off: {different:?}");
    // Extremes too.
    let extremes = vec![
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        5e-324,
        1494.0665000000001,
        -0.0,
        0.1 + 0.2,
    ];
    let (_, replay) = first_and_replay(&idempotency, "extremes", extremes.clone()).await;
    for (a, b) in extremes.iter().zip(&replay) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} replayed as {b}");
    }
}

#[tokio::test]
async fn integers_beyond_64_bits_replay_with_and_without_a_replay_hook() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let seen = hooked.clone();
    let store = InMemoryStore::new();
    let with_hook = Idempotency::builder(store.clone())
        .key_prefix("hooked")
        .on_replay(move |_response: &mut (u128, i128), _record| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .env(no_env())
        .build()
        .unwrap();
    let without_hook = idempotency(&store);
    for idempotency in [&with_hook, &without_hook] {
        let value = (u128::MAX, i128::MIN);
        let (first, replay) = first_and_replay(idempotency, "big", value).await;
        assert_eq!(first, value);
        assert_eq!(replay, value);
    }
    assert_eq!(
        hooked.load(Ordering::SeqCst),
        1,
        "the hook ran on its replay"
    );
}

// 2. A panic before the handler's future exists.

/// A service whose `call` panics before it returns a future, the first `panics` times.
#[derive(Clone)]
struct PanicsInCall {
    panics: Arc<AtomicUsize>,
    executions: Arc<AtomicUsize>,
}

impl Service<LambdaEvent<Value>> for PanicsInCall {
    type Response = Value;
    type Error = lambda_runtime::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Value, lambda_runtime::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: LambdaEvent<Value>) -> Self::Future {
        if self.panics.load(Ordering::SeqCst) > 0 {
            self.panics.fetch_sub(1, Ordering::SeqCst);
            panic!("bug in call()");
        }
        self.executions.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(event.payload) })
    }
}

#[tokio::test]
async fn a_panic_in_the_inner_call_deletes_the_claim_and_the_panic_goes_on() {
    let store = InMemoryStore::new();
    let executions = Arc::new(AtomicUsize::new(0));
    let service = IdempotencyLayer::new(idempotency(&store)).layer(PanicsInCall {
        panics: Arc::new(AtomicUsize::new(1)),
        executions: executions.clone(),
    });

    let panicked = AssertUnwindSafe(
        service
            .clone()
            .oneshot(TestContext::new().event(json!({"order": 1}))),
    )
    .catch_unwind()
    .await;
    assert!(panicked.is_err(), "the panic reaches the caller");
    assert!(
        store.keys_without_fences().is_empty(),
        "no in-progress record is left behind"
    );

    let retried = service
        .oneshot(TestContext::new().event(json!({"order": 1})))
        .await
        .unwrap();
    assert_eq!(retried, json!({"order": 1}));
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_in_the_closure_given_to_run_deletes_the_claim_and_the_panic_goes_on() {
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new().build();

    let panicked = AssertUnwindSafe(idempotency.run(&context, "charge", "pay-1", |_| {
        panic!("bug before the future");
        #[allow(unreachable_code)]
        async {
            Ok::<u32, std::io::Error>(1)
        }
    }))
    .catch_unwind()
    .await;
    assert!(panicked.is_err());
    assert!(
        store.keys_without_fences().is_empty(),
        "no in-progress record is left behind"
    );

    let retried = idempotency
        .run(&context, "charge", "pay-1", |_| async {
            Ok::<u32, std::io::Error>(2)
        })
        .await
        .unwrap();
    assert_eq!(retried, 2);
}

// 3. Missing validation data.

#[tokio::test]
async fn missing_validation_data_is_compared_like_any_value() {
    #[derive(Clone, Serialize, Deserialize)]
    struct Payment {
        id: String,
        amount: Option<u64>,
    }
    let store = InMemoryStore::new();
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let service = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency(&store))
                .key_from(|payment: &Payment| Some(payment.id.clone()))
                .validate_from(|payment: &Payment| payment.amount),
        )
        .service(service_fn(move |event: LambdaEvent<Payment>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, lambda_runtime::Error>(event.payload.amount) }
        }));
    let call = |id: &str, amount| {
        service.clone().oneshot(TestContext::new().event(Payment {
            id: id.into(),
            amount,
        }))
    };

    // Present first, missing second: refused.
    assert_eq!(call("a", Some(100)).await.unwrap(), Some(100));
    let error = call("a", None).await.unwrap_err();
    assert!(matches!(error, Error::PayloadMismatch { .. }), "{error:?}");
    // Missing first, present second: refused too.
    assert_eq!(call("b", None).await.unwrap(), None);
    let error = call("b", Some(100)).await.unwrap_err();
    assert!(matches!(error, Error::PayloadMismatch { .. }), "{error:?}");
    // Missing both times: the same value, replayed.
    assert_eq!(call("b", None).await.unwrap(), None);
    assert_eq!(executions.load(Ordering::SeqCst), 2);
}

// 4. Operations that share one `Idempotency`.

#[tokio::test]
async fn two_operations_sharing_one_idempotency_never_share_records() {
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new().build();
    let charged = idempotency
        .run(&context, "charge", "o-1", |_| async {
            Ok::<_, std::io::Error>("charged".to_owned())
        })
        .await
        .unwrap();
    let emailed = idempotency
        .run(&context, "email", "o-1", |_| async {
            Ok::<_, std::io::Error>(3u32)
        })
        .await
        .unwrap();
    assert_eq!((charged.as_str(), emailed), ("charged", 3));

    // The layer, on the same payload, is an operation of its own.
    let layered = IdempotencyLayer::new(idempotency.clone())
        .layer(service_fn(|_: LambdaEvent<String>| async {
            Ok::<_, lambda_runtime::Error>(json!({"layer": true}))
        }))
        .oneshot(TestContext::new().event("o-1".to_owned()))
        .await
        .unwrap();
    assert_eq!(layered, json!({"layer": true}));
    assert_eq!(store.len(), 3, "one record per operation");
}

// 5. Deadlines that cannot be trusted.

async fn concurrent_duplicates(context: Context, calls: usize) -> (usize, InMemoryStore) {
    let store = InMemoryStore::new();
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let service = IdempotencyLayer::new(idempotency(&store)).layer(service_fn(
        move |event: LambdaEvent<Value>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, lambda_runtime::Error>(event.payload)
            }
        },
    ));
    let tasks = (0..calls).map(|_| {
        let service = service.clone();
        let event = LambdaEvent::new(json!({"payment": "p-1"}), context.clone());
        tokio::spawn(async move { service.oneshot(event).await })
    });
    for result in futures_util::future::join_all(tasks).await {
        match result.unwrap() {
            Ok(_) | Err(Error::AlreadyInProgress { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    (executions.load(Ordering::SeqCst), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_execute_once_whatever_the_deadline_says() {
    let contexts = [
        ("Context::default() (deadline 0)", Context::default()),
        (
            "a deadline a minute ago",
            TestContext::new()
                .with_deadline_ms((now_ms() - 60_000) as u64)
                .build(),
        ),
        (
            "cargo-lambda's relative deadline (600000)",
            TestContext::new().with_deadline_ms(600_000).build(),
        ),
        (
            "a deadline a day ahead",
            TestContext::new()
                .with_deadline_ms((now_ms() + 86_400_000) as u64)
                .build(),
        ),
    ];
    for (what, context) in contexts {
        let before = now_ms();
        let (executions, store) = concurrent_duplicates(context, 50).await;
        assert_eq!(executions, 1, "{what}: 50 concurrent duplicates");
        // The in-progress window was the safe fallback: 15 minutes from the claim.
        let record = store
            .record(&store_key(&store))
            .expect("the completed record");
        let in_progress = record.in_progress_expiry_timestamp.unwrap();
        let fifteen_minutes = 15 * 60 * 1000;
        assert!(
            (before + fifteen_minutes..=now_ms() + fifteen_minutes).contains(&in_progress),
            "{what}: in-progress expiry {in_progress} is not 15 minutes after {before}"
        );
    }
}

/// Lambda Managed Instances run asynchronous and event-source invocations for up to 90 minutes:
/// such a deadline is the claim's, not the 15-minute fallback, which would let a duplicate
/// claim the key and run beside the first before its deadline (found by an attack: a deadline
/// 20 minutes ahead was not trusted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadline_up_to_ninety_minutes_ahead_is_the_claim_s() {
    for minutes in [20, 60, 89] {
        let deadline = now_ms() + minutes * 60 * 1000;
        let context = TestContext::new().with_deadline_ms(deadline as u64).build();
        let (executions, store) = concurrent_duplicates(context, 20).await;
        assert_eq!(executions, 1, "{minutes} minutes");
        let record = store
            .record(&store_key(&store))
            .expect("the completed record");
        assert_eq!(
            record.in_progress_expiry_timestamp,
            Some(deadline),
            "{minutes} minutes: the claim lasts until the deadline"
        );
    }
}

fn store_key(store: &InMemoryStore) -> String {
    assert_eq!(store.len(), 1);
    // The only record's key, found through a seeded lookup on the prefix.
    store.keys().into_iter().next().unwrap()
}

#[tokio::test]
async fn zero_milliseconds_left_is_a_deadline_of_now_not_a_fallback() {
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new()
        .with_remaining_time(Duration::ZERO)
        .build();
    let before = now_ms();
    idempotency
        .run(&context, "late", "k", |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap();
    let in_progress = store
        .record(&store_key(&store))
        .unwrap()
        .in_progress_expiry_timestamp
        .unwrap();
    assert!(
        (before - 1_000..=now_ms()).contains(&in_progress),
        "Powertools for Python #4759: the deadline of now ({before}) is written, got {in_progress}"
    );
}

#[tokio::test]
async fn the_fallback_window_is_configurable() {
    let store = InMemoryStore::new();
    let idempotency = Idempotency::builder(store.clone())
        .in_progress_fallback(Duration::from_secs(120))
        .env(no_env())
        .build()
        .unwrap();
    let before = now_ms();
    idempotency
        .run(&Context::default(), "op", "k", |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap();
    let in_progress = store
        .record(&store_key(&store))
        .unwrap()
        .in_progress_expiry_timestamp
        .unwrap();
    assert!((before + 120_000..=now_ms() + 120_000).contains(&in_progress));
}

// 6. A response that cannot be stored.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    echoed: String,
    ratio: Option<f64>,
}

/// `cause`: what the duplicates' error says of why the response was not stored.
async fn unstorable(response: Receipt, cause: &str) {
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let executions = Arc::new(AtomicUsize::new(0));
    let context = TestContext::new().build();
    let charge = || {
        let executions = executions.clone();
        let response = response.clone();
        move |_: &str| async move {
            executions.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(response)
        }
    };

    // The first caller gets its response: the charge happened.
    let first = idempotency
        .run(&context, "charge", "pay-1", charge())
        .await
        .unwrap();
    assert_eq!(first.echoed, response.echoed);
    // The record is completed without a response, never deleted.
    let record = store.record(&store_key(&store)).expect("the record stays");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.response_data, None);
    // A duplicate is told, and why: the record keeps the reason (the first call's warning was
    // the only place that said it), and does not charge again.
    for _ in 0..2 {
        let error = idempotency
            .run(&context, "charge", "pay-1", charge())
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::ResponseNotStored { .. }),
            "{error:?}"
        );
        assert_eq!(error.error_type(), "IdempotencyResponseNotStoredError");
        assert!(error.to_string().contains(cause), "{cause:?} in: {error}");
    }
    assert_eq!(executions.load(Ordering::SeqCst), 1, "charged once");
}

#[tokio::test]
async fn a_response_over_the_item_limit_is_returned_once_and_never_runs_again() {
    unstorable(
        Receipt {
            echoed: "x".repeat(500 * 1024),
            ratio: Some(1.0),
        },
        "over the 409600-byte item limit",
    )
    .await;
}

#[tokio::test]
async fn a_response_with_nan_or_infinity_is_returned_once_and_never_runs_again() {
    for ratio in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        unstorable(
            Receipt {
                echoed: "small".into(),
                ratio: Some(ratio),
            },
            &format!("it holds {ratio}, which JSON cannot represent"),
        )
        .await;
    }
}

// 10. Numbers in keys.

#[test]
fn numbers_are_keyed_by_value_not_spelling() {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(key_json(&parse("-0")), key_json(&parse("0")));
    assert_eq!(key_json(&parse("-0.0")), key_json(&parse("0")));
    assert_eq!(key_json(&parse("1.0")), key_json(&parse("1")));
    assert_eq!(
        key_json(&parse("[1e3, 12.50]")),
        key_json(&parse("[1000, 12.5]"))
    );
    assert_ne!(
        key_json(&parse("9007199254740993")),
        key_json(&parse("9007199254740992")),
        "integers beyond 2^53 stay exact"
    );
    assert_ne!(key_json(&parse("0.1")), key_json(&parse("0")));
}

/// An event with a large payload, so that the event's copies dominate the size of a future.
struct LargeEvent {
    id: String,
    padding: [u8; 4096],
}

#[tokio::test]
async fn the_layer_s_future_holds_the_event_at_most_twice() {
    // The closure that calls the service holds the event until the key is claimed, and the
    // handler's future holds it after: two copies are the least. Each nested `async fn` that
    // took the closure by value kept one more, and the boxed future was copied on every call.
    let store = InMemoryStore::new();
    let mut service = IdempotencyLayer::new(idempotency(&store))
        .key_from(|event: &LargeEvent| Some(event.id.clone()))
        .layer(service_fn(|event: LambdaEvent<LargeEvent>| async move {
            let padding = std::hint::black_box(&event.payload.padding);
            Ok::<_, std::convert::Infallible>(format!("{}:{}", event.payload.id, padding.len()))
        }));
    let event = LambdaEvent::new(
        LargeEvent {
            id: "large-1".to_owned(),
            padding: [7; 4096],
        },
        TestContext::new().build(),
    );
    let event_size = std::mem::size_of_val(&event);
    let future = service.call(event);
    let future_size = std::mem::size_of_val(&*future);
    assert!(
        future_size < 3 * event_size,
        "the layer's future is {future_size} bytes for a {event_size}-byte event"
    );
    assert_eq!(future.await.unwrap(), "large-1:4096");
    assert_eq!(store.len(), 1, "the call was claimed and completed");
}

#[tokio::test]
async fn the_function_api_s_future_holds_the_function_at_most_twice() {
    // As the layer's: the function (and what it captured) until the key is claimed, then its
    // future. With `run` and `run_keyed` as `async fn`s over the engine's, each level kept a copy.
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new().build();
    let captured = [7_u8; 4096];
    let future = idempotency.run(
        &context,
        "large",
        "large-1".to_owned(),
        move |id: String| async move {
            let captured = std::hint::black_box(&captured);
            Ok::<_, std::convert::Infallible>(format!("{id}:{}", captured.len()))
        },
    );
    let future_size = std::mem::size_of_val(&future);
    assert!(
        future_size < 3 * captured.len(),
        "the function API's future is {future_size} bytes for a {}-byte capture",
        captured.len()
    );
    assert_eq!(future.await.unwrap(), "large-1:4096");
    assert_eq!(store.len(), 1, "the call was claimed and completed");
}

#[tokio::test]
async fn a_panic_inside_the_future_is_handler_panicked_when_nothing_was_claimed_too() {
    // The missing-key rule lets the function run without a claim: its panic is still the
    // documented `HandlerPanicked`, not a panic out of the future.
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new().build();
    let outcome =
        AssertUnwindSafe(
            idempotency.run(&context, "bypass", String::new(), |_: String| async {
                if std::hint::black_box(true) {
                    panic!("inside the unclaimed future");
                }
                Ok::<u8, std::io::Error>(1)
            }),
        )
        .catch_unwind()
        .await;
    match outcome {
        Ok(Err(Error::HandlerPanicked { message })) => {
            assert!(message.contains("inside the unclaimed future"), "{message}");
        }
        other => panic!(
            "expected HandlerPanicked, got {:?}",
            other.map(|r| r.map_err(|e| e.to_string()))
        ),
    }
    assert!(store.is_empty(), "nothing was claimed");
}

#[tokio::test]
async fn the_function_api_s_future_outlives_the_context_and_the_operation_name() {
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let future = {
        let context = TestContext::new().build();
        let operation = String::from("short-lived");
        idempotency.run(&context, &operation, 7_u8, |value| async move {
            Ok::<_, std::io::Error>(value * 2)
        })
    };
    assert_eq!(future.await.unwrap(), 14);
    let future = {
        let context = TestContext::new().build();
        let operation = String::from("short-lived-keyed");
        idempotency.run_keyed(&context, &operation, json!("k"), None, || async {
            Ok::<_, std::io::Error>(3_u8)
        })
    };
    assert_eq!(future.await.unwrap(), 3);
    assert_eq!(store.len(), 2);
}

/// The WARN events logged while installed, each as its fields' `Debug` text.
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

// Found by an attack: the warning was logged by `build`, before `main` installs a subscriber,
// and so reached no log.
#[tokio::test]
async fn disabled_idempotency_is_warned_about_once_at_the_first_invocation_of_each_instance() {
    use tracing_subscriber::layer::SubscriberExt;
    let disabled = || {
        Idempotency::builder(InMemoryStore::new())
            .env(Env::from_pairs([(
                "POWERTOOLS_IDEMPOTENCY_DISABLED",
                "true",
            )]))
            .build()
            .unwrap()
    };
    // Built before any subscriber is installed, as in `main`.
    let run_instance = disabled();
    let layer_instance = disabled();
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));

    let context = TestContext::new().build();
    for key in 0..3 {
        run_instance
            .run(&context, "op", key, |_| async {
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
    }
    let mut service =
        IdempotencyLayer::new(layer_instance).layer(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!("ok"))
        }));
    for id in 0..3 {
        service
            .ready()
            .await
            .unwrap()
            .call(TestContext::new().event(json!({ "id": id })))
            .await
            .unwrap();
    }
    let warnings = warnings.0.lock().unwrap().clone();
    assert_eq!(warnings.len(), 2, "once per instance: {warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|warning| warning.contains("POWERTOOLS_IDEMPOTENCY_DISABLED")),
        "{warnings:?}"
    );
}

/// A handler that panics with an error whose `Display` panics too: the claim is still freed and
/// the panic reported as `HandlerPanicked`, not a second panic out of `run` leaving the key in
/// progress until the deadline (found by a review: describing the payload ran its `Display`
/// before the claim was freed).
#[tokio::test]
async fn a_panic_payload_whose_display_panics_still_frees_the_claim() {
    #[derive(Debug)]
    struct Exploding;
    impl std::fmt::Display for Exploding {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("Display of the payload exploded")
        }
    }
    impl std::error::Error for Exploding {}
    let store = InMemoryStore::new();
    let idempotency = idempotency(&store);
    let context = TestContext::new()
        .with_remaining_time(Duration::from_secs(3600))
        .build();
    let outcome = AssertUnwindSafe(idempotency.run(&context, "op", 1, |_| async {
        if true {
            let payload: Box<dyn std::error::Error + Send + Sync> = Box::new(Exploding);
            std::panic::panic_any(payload);
        }
        Ok::<u8, String>(1)
    }))
    .catch_unwind()
    .await
    .expect("no second panic out of run");
    match outcome {
        Err(Error::HandlerPanicked { message }) => {
            assert_eq!(message, "an error whose Display panicked");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        store.keys_without_fences().is_empty(),
        "the claim was freed"
    );
    let again = idempotency
        .run(&context, "op", 1, |_| async { Ok::<u8, String>(2) })
        .await;
    assert_eq!(again.unwrap(), 2);
}
