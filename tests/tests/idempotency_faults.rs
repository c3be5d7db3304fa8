//! `powertools-idempotency` with DynamoDB failing under it: moto behind the fault-injecting proxy
//! (`scripts/fault-proxy.py`), one proxy channel per test. Each fault is tried against the claim
//! (`PutItem`) and the completion (`UpdateItem`), as the failure table of the crate docs says.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{DynamoDbStore, Error, Idempotency, IdempotencyLayer};
use powertools_tests::{FaultProxy, create_idempotency_table, dynamodb_client};
use serde_json::{Value, json};

/// A proxy channel, a table on moto, and an `Idempotency` whose store talks through the channel.
struct Faulty {
    proxy: FaultProxy,
    table: String,
    idempotency: Idempotency<DynamoDbStore>,
    executions: Arc<AtomicUsize>,
}

async fn faulty() -> Option<Faulty> {
    let direct = dynamodb_client().await?;
    let proxy = FaultProxy::start().await?;
    let table = create_idempotency_table(&direct).await;
    let store = DynamoDbStore::new(proxy.client().await, &table).expect("valid store");
    let idempotency = Idempotency::builder(store)
        .key_prefix("faults")
        .build()
        .expect("valid settings");
    Some(Faulty {
        proxy,
        table,
        idempotency,
        executions: Arc::new(AtomicUsize::new(0)),
    })
}

impl Faulty {
    /// Charges `payment` through the layer with `remaining` time left in the invocation.
    async fn charge(
        &self,
        payment: &str,
        remaining: Duration,
    ) -> Result<Value, Error<lambda_runtime::Error>> {
        let executions = self.executions.clone();
        IdempotencyLayer::new(self.idempotency.clone())
            .layer(service_fn(move |event: LambdaEvent<Value>| {
                let charge_number = executions.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    Ok::<_, lambda_runtime::Error>(
                        json!({"charged": event.payload, "charge": charge_number}),
                    )
                }
            }))
            .oneshot(
                TestContext::new()
                    .with_remaining_time(remaining)
                    .event(json!(payment)),
            )
            .await
    }

    fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }
}

const INVOCATION: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_store_that_is_down_before_the_claim_never_runs_the_handler() {
    let Some(faulty) = faulty().await else {
        return;
    };
    for action in ["refuse", "drop"] {
        faulty.proxy.set(json!({"action": action}));
        let error = faulty
            .charge(&format!("pay-down-{action}"), INVOCATION)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Persistence {
                    operation: "save the in-progress record",
                    ..
                }
            ),
            "{action}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("PutItem") && message.contains(&faulty.proxy.port().to_string()),
            "{action}: the message names the operation and the endpoint: {message}"
        );
    }
    assert_eq!(faulty.executions(), 0, "the handler never ran");

    // Back up: the same payment now runs, once.
    faulty.proxy.set(json!({"action": "pass"}));
    faulty.charge("pay-down-refuse", INVOCATION).await.unwrap();
    faulty.charge("pay-down-refuse", INVOCATION).await.unwrap();
    assert_eq!(faulty.executions(), 1);
}

/// DynamoDB's error answers, as DynamoDB sends them (the proxy's `error` action): throttling
/// and server errors on the claim never run the handler, and the error names the code DynamoDB
/// answered with, the operation and the table, so that an alarm or a reader knows which.
#[tokio::test]
async fn a_throttled_or_failing_claim_names_dynamodb_s_error_code_and_never_runs_the_handler() {
    let Some(faulty) = faulty().await else {
        return;
    };
    for (status, code) in [
        (400, "ProvisionedThroughputExceededException"),
        (400, "ThrottlingException"),
        (400, "RequestLimitExceeded"),
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
    ] {
        faulty
            .proxy
            .set(json!({"action": "error", "status": status, "code": code, "target": "PutItem"}));
        let error = faulty
            .charge(&format!("pay-{code}"), INVOCATION)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Persistence {
                    operation: "save the in-progress record",
                    ..
                }
            ),
            "{code}: {error:?}"
        );
        assert_eq!(error.error_type(), "IdempotencyPersistenceLayerError");
        let message = error.to_string();
        assert!(
            message.contains(code)
                && message.contains("PutItem")
                && message.contains(&faulty.table),
            "{code}: the message names the code, the operation and the table: {message}"
        );
    }
    assert_eq!(faulty.executions(), 0, "the handler never ran");
}

/// With the SDK's standard retries (what a function's client has), a claim throttled twice is
/// retried by the SDK and succeeds on the third attempt: the handler runs once, and a duplicate
/// is answered from the record.
#[tokio::test]
async fn a_claim_throttled_then_let_through_by_the_sdk_s_retries_runs_the_handler_once() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let store = DynamoDbStore::new(
        faulty
            .proxy
            .client_retrying(aws_sdk_dynamodb::config::retry::RetryConfig::standard())
            .await,
        &faulty.table,
    )
    .expect("valid store");
    let retrying = Faulty {
        idempotency: Idempotency::builder(store)
            .key_prefix("faults")
            .build()
            .expect("valid settings"),
        ..faulty
    };
    retrying.proxy.set(json!({
        "action": "error", "status": 400, "code": "ProvisionedThroughputExceededException",
        "target": "PutItem", "times": 2
    }));
    let first = retrying.charge("pay-throttled", INVOCATION).await.unwrap();
    assert_eq!(
        retrying.proxy.requests("PutItem"),
        3,
        "two throttled, one through"
    );
    let duplicate = retrying.charge("pay-throttled", INVOCATION).await.unwrap();
    assert_eq!(duplicate, first);
    assert_eq!(retrying.executions(), 1);
}

#[tokio::test]
async fn a_store_that_fails_after_the_handler_keeps_the_key_in_progress_until_the_deadline() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let remaining = Duration::from_millis(1500);
    for action in ["drop", "refuse", "error"] {
        let payment = format!("pay-mid-{action}");
        let before = faulty.executions();
        // The claim passes; the completion fails (throttled, for the `error` action).
        faulty.proxy.set(json!({
            "action": action, "target": "UpdateItem",
            "status": 400, "code": "ProvisionedThroughputExceededException"
        }));
        let error = faulty.charge(&payment, remaining).await.unwrap_err();
        assert!(matches!(error, Error::NotCompleted { .. }), "{error:?}");
        assert_eq!(error.error_type(), "IdempotencyPersistenceLayerError");
        let message = error.to_string();
        assert!(
            message.contains("stays in progress until") && message.contains("UpdateItem"),
            "{message}"
        );
        assert_eq!(faulty.executions(), before + 1, "the handler ran once");

        // A duplicate before the invocation's deadline is told to wait, not charged again.
        faulty.proxy.set(json!({"action": "pass"}));
        let duplicate = faulty.charge(&payment, remaining).await.unwrap_err();
        assert!(
            matches!(duplicate, Error::AlreadyInProgress { .. }),
            "{duplicate:?}"
        );
        assert_eq!(faulty.executions(), before + 1);

        // After the deadline, a retry runs the handler again (Powertools' semantics).
        tokio::time::sleep(remaining + Duration::from_millis(200)).await;
        faulty.charge(&payment, INVOCATION).await.unwrap();
        assert_eq!(faulty.executions(), before + 2);
    }
}

#[tokio::test]
async fn a_store_hung_on_the_claim_fails_the_invocation_before_its_deadline() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let remaining = Duration::from_millis(1500);

    // Hung on the claim: a persistence error, the handler never ran.
    faulty.proxy.set(json!({"action": "hang"}));
    let started = Instant::now();
    let error = faulty
        .charge("pay-hang-claim", remaining)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    // What hung, as every other store error says it: the operation, the table, the endpoint.
    let message = error.to_string();
    assert!(message.contains("no answer within"), "{message}");
    assert!(
        message.contains(&format!("DynamoDB PutItem on table {}", faulty.table))
            && message.contains(&format!("127.0.0.1:{}", faulty.proxy.port())),
        "{message}"
    );
    assert!(
        waited < remaining,
        "gave up after {waited:?}, past the deadline"
    );
    assert_eq!(faulty.executions(), 0);
}

#[tokio::test]
async fn a_store_hung_after_the_handler_fails_the_invocation_before_its_deadline() {
    // A channel of its own: a connection left hung by another rule must not be reused here.
    let Some(faulty) = faulty().await else {
        return;
    };
    let remaining = Duration::from_millis(1500);
    // Hung on the completion: the handler ran, the error says so.
    faulty
        .proxy
        .set(json!({"action": "hang", "target": "UpdateItem"}));
    let started = Instant::now();
    let error = faulty
        .charge("pay-hang-complete", remaining)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, Error::NotCompleted { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("DynamoDB UpdateItem on table {}", faulty.table)),
        "{message}"
    );
    assert!(
        waited < remaining,
        "gave up after {waited:?}, past the deadline"
    );
    assert_eq!(faulty.executions(), 1);
}

/// A store call the SDK retries until the store timeout ends it (throttling, a 5xx) got
/// answers, each with DynamoDB's error code: the error said "no answer within …" and named no
/// code, so that throttling or an outage read as a network hang (found by an attack). It names
/// the last answer now, for the claim (`PutItem`) and for the release of a failed invocation's
/// claim (`UpdateItem`); a store that never answers still says "no answer".
#[tokio::test]
async fn a_call_retried_until_the_store_timeout_names_the_last_answer_dynamodb_gave() {
    let Some((proxy, table, idempotency)) = retrying_store().await else {
        return;
    };
    let context = TestContext::new().with_remaining_time(INVOCATION).build();

    proxy.set(json!({
        "action": "error", "status": 400, "code": "ProvisionedThroughputExceededException",
        "target": "PutItem"
    }));
    let error = idempotency
        .run(&context, "charge", "pay-throttled-long", |_| async {
            Ok::<_, std::io::Error>(1)
        })
        .await
        .unwrap_err();
    assert!(proxy.requests("PutItem") >= 2, "the SDK retried");
    let message = error.to_string();
    assert!(
        message.contains("PutItem")
            && message.contains(&table)
            && message.contains("ProvisionedThroughputExceededException")
            && message.contains("8000 ms")
            && !message.contains("no answer"),
        "{message}"
    );

    proxy.set(json!({
        "action": "error", "status": 500, "code": "InternalServerError", "target": "UpdateItem"
    }));
    let error = idempotency
        .run(&context, "charge", "pay-delete-failing", |_| async {
            Err::<u8, _>(std::io::Error::other("card declined"))
        })
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("UpdateItem")
            && message.contains("InternalServerError")
            && message.contains("card declined")
            && !message.contains("no answer"),
        "{message}"
    );

    // A store that never answers: no answer to name.
    proxy.set(json!({"action": "hang", "target": "PutItem"}));
    let error = idempotency
        .run(&context, "charge", "pay-hung", |_| async {
            Ok::<_, std::io::Error>(1)
        })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no answer within 8000 ms"),
        "{error}"
    );
}

/// A proxy channel, a table on moto, and a store behind a retrying client through the channel
/// (short backoffs: many attempts within the bound) with an 8 s store timeout: the calls that
/// pass through to moto must answer within it on a loaded machine too (CI runs under load saw
/// no answer within 1.5 s, then within 3 s: moto and the proxy answer other tests at once).
async fn retrying_store() -> Option<(FaultProxy, String, Idempotency<DynamoDbStore>)> {
    let direct = dynamodb_client().await?;
    let proxy = FaultProxy::start().await?;
    let table = create_idempotency_table(&direct).await;
    let idempotency = idempotency_retrying(
        &proxy,
        &table,
        aws_sdk_dynamodb::config::retry::RetryConfig::standard()
            .with_max_attempts(50)
            .with_initial_backoff(Duration::from_millis(20)),
    )
    .await;
    Some((proxy, table, idempotency))
}

const STORE_TIMEOUT: Duration = Duration::from_millis(8000);

/// Waits until `operation` has reached the proxy `count` times.
async fn requests_reached(proxy: &FaultProxy, operation: &str, count: usize) {
    let waited = Instant::now();
    while proxy.requests(operation) < count {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "{operation} never reached the proxy {count} times"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A call names its own last answer, never a concurrent call's of the same store: a first
/// version kept the last answer per store and operation, so that a claim whose request hung
/// (no answer at all) named another claim's throttling as its own (and a throttled claim whose
/// retry hung said "no answer" once another claim succeeded; found by a review). Each call that
/// does not answer at once now has its own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_each_name_their_own_last_answer() {
    let Some((proxy, _table, idempotency)) = retrying_store().await else {
        return;
    };
    let context = TestContext::new().with_remaining_time(INVOCATION).build();

    // The hung claim first (held past its bound: a `hang` would end when the rule changes),
    // then a claim throttled throughout beside it.
    proxy.set(json!({"action": "delay", "ms": 15000, "target": "PutItem", "times": 1}));
    let (hung, throttled) = tokio::join!(
        idempotency.run(&context, "charge", "pay-hung-beside", |_| async {
            Ok::<_, std::io::Error>(1)
        }),
        async {
            requests_reached(&proxy, "PutItem", 1).await;
            proxy.set(json!({
                "action": "error", "status": 400,
                "code": "ProvisionedThroughputExceededException", "target": "PutItem"
            }));
            idempotency
                .run(&context, "charge", "pay-throttled-beside", |_| async {
                    Ok::<_, std::io::Error>(1)
                })
                .await
        }
    );
    let hung = hung.unwrap_err().to_string();
    let throttled = throttled.unwrap_err().to_string();
    assert!(
        hung.contains("no answer within 8000 ms") && !hung.contains("Throughput"),
        "{hung}"
    );
    assert!(
        throttled.contains("ProvisionedThroughputExceededException"),
        "{throttled}"
    );
}

#[tokio::test]
async fn a_hung_store_with_no_deadline_to_go_by_is_bounded_by_the_store_timeout() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let table = create_idempotency_table(&direct).await;
    let idempotency =
        Idempotency::builder(DynamoDbStore::new(proxy.client().await, &table).unwrap())
            .store_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
    proxy.set(json!({"action": "hang"}));
    let error = idempotency
        .run(
            &lambda_runtime::Context::default(),
            "charge",
            "pay-1",
            |_| async { Ok::<_, std::io::Error>(1) },
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no answer within 300 ms"),
        "{error}"
    );
}

/// moto applies the claim and the proxy cuts its answer: the claim is taken back (replaced with a
/// fence, only while it is this claim), so a retry runs at once, once, instead of getting
/// `AlreadyInProgress` until the deadline (found by an attack on the examples); a duplicate after
/// it gets the same response, never a second charge.
#[tokio::test]
async fn a_lost_claim_answer_is_taken_back_and_a_retry_charges_once() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let window = Duration::from_secs(8);
    let payment = "pay-cut";
    faulty
        .proxy
        .set(json!({"action": "cut", "target": "PutItem", "times": 1}));
    let error = faulty.charge(payment, window).await.unwrap_err();
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    assert_eq!(faulty.executions(), 0);
    assert_eq!(
        (
            faulty.proxy.requests("UpdateItem"),
            faulty.proxy.requests("DeleteItem")
        ),
        (1, 0),
        "the claim was taken back: replaced with a fence, never deleted"
    );
    // The retry runs at once, well inside the lost claim's window.
    let retried = Instant::now();
    let first = faulty.charge(payment, INVOCATION).await.unwrap();
    assert!(
        retried.elapsed() < window,
        "the retry waited for the window"
    );
    assert_eq!(faulty.executions(), 1);
    let duplicate = faulty.charge(payment, INVOCATION).await.unwrap();
    assert_eq!(duplicate, first);
    assert_eq!(faulty.executions(), 1, "charged once");
}

/// A claim write DynamoDB applies only after the caller gave up on it (a slow network; an SDK
/// retry still in flight when the bound ran out): taking it back found nothing to delete yet,
/// and the write landed a moment later, holding the key `INPROGRESS` until the deadline though
/// the handler never ran, with no warning (found by an attack: the retry got
/// `AlreadyInProgress`). The take-back leaves a fence the late write cannot replace.
#[tokio::test]
async fn a_claim_write_that_lands_after_it_was_taken_back_never_holds_the_key() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let idempotency =
        idempotency_through(&faulty.proxy, &faulty.table, Duration::from_millis(300)).await;
    const LATE: Duration = Duration::from_millis(1500);
    faulty.proxy.set(
        json!({"action": "delay", "ms": LATE.as_millis() as u64, "target": "PutItem", "times": 1}),
    );
    let runs = AtomicUsize::new(0);
    let charge = |charge: u8| {
        let runs = &runs;
        let context = TestContext::new().with_remaining_time(INVOCATION).build();
        let idempotency = idempotency.clone();
        async move {
            idempotency
                .run(&context, "charge", "pay-late-claim", |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(charge)
                })
                .await
        }
    };
    let sent = Instant::now();
    let first = charge(1).await;
    assert!(matches!(first, Err(Error::Persistence { .. })), "{first:?}");
    // The late write has reached moto (the proxy holds it 1.5 s, then sends it on).
    tokio::time::sleep((LATE + Duration::from_millis(1500)).saturating_sub(sent.elapsed())).await;
    let retry = charge(2).await.map_err(|error| error.to_string());
    assert_eq!(retry, Ok(2), "the retry ran");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        charge(3).await.ok(),
        Some(2),
        "a duplicate replays the retry"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "charged once");
}

/// A claim write that lands late, after its take-back's fence and after a retry that claimed the
/// key over the fence and whose handler failed: the retry's delete left no record, so the late
/// write landed and held the key `INPROGRESS` until its deadline (the known limit of the fence).
/// A failed handler's claim is replaced with a fence instead of deleted, and the next retry runs.
#[tokio::test]
async fn a_late_claim_write_never_holds_the_key_after_a_retry_that_failed() {
    let Some(faulty) = faulty().await else {
        return;
    };
    let idempotency =
        idempotency_through(&faulty.proxy, &faulty.table, Duration::from_millis(300)).await;
    const LATE: Duration = Duration::from_millis(1500);
    faulty.proxy.set(
        json!({"action": "delay", "ms": LATE.as_millis() as u64, "target": "PutItem", "times": 1}),
    );
    let runs = AtomicUsize::new(0);
    let charge = |charge: u8, fails: bool| {
        let runs = &runs;
        let context = TestContext::new().with_remaining_time(INVOCATION).build();
        let idempotency = idempotency.clone();
        async move {
            idempotency
                .run(
                    &context,
                    "charge",
                    "pay-late-after-failure",
                    |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if fails {
                            return Err(std::io::Error::other("card network unreachable"));
                        }
                        Ok(charge)
                    },
                )
                .await
        }
    };
    let sent = Instant::now();
    let first = charge(1, false).await;
    assert!(matches!(first, Err(Error::Persistence { .. })), "{first:?}");
    // A retry while the late write is still on its way: it runs, and fails.
    let failed = charge(2, true).await;
    assert!(matches!(failed, Err(Error::Handler(_))), "{failed:?}");
    assert!(
        sent.elapsed() < LATE,
        "the retry failed before the late write landed"
    );
    // The late write has reached moto (the proxy holds it 1.5 s, then sends it on).
    tokio::time::sleep((LATE + Duration::from_millis(1500)).saturating_sub(sent.elapsed())).await;
    let retry = charge(3, false).await.map_err(|error| error.to_string());
    assert_eq!(retry, Ok(3), "the next retry ran");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        charge(4, false).await.ok(),
        Some(3),
        "a duplicate replays it"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2, "charged once");
}

/// A duplicate's claim write that went unanswered while a failing invocation held the key (its
/// take-back found that claim, and wrote no fence), and the failing invocation's release, sent
/// before the duplicate's claim, reaching DynamoDB after it: the release's fence had the moment it
/// was sent for its deadline, the late write passed it and held the key until its own deadline
/// (found by a review). A failed handler's fence keeps its claim's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_claim_write_never_lands_on_a_release_sent_before_it() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let (Some(proxy_failing), Some(proxy_duplicate)) =
        (FaultProxy::start().await, FaultProxy::start().await)
    else {
        return;
    };
    let table = create_idempotency_table(&direct).await;
    let failing = idempotency_through(&proxy_failing, &table, Duration::from_secs(5)).await;
    let duplicate = idempotency_through(&proxy_duplicate, &table, Duration::from_millis(300)).await;
    proxy_failing.set(json!({"action": "delay", "ms": 1500, "target": "UpdateItem", "times": 1}));
    proxy_duplicate.set(json!({"action": "delay", "ms": 3000, "target": "PutItem", "times": 1}));
    let runs = AtomicUsize::new(0);
    let context = || TestContext::new().with_remaining_time(INVOCATION).build();
    let failed = async {
        failing
            .run(&context(), "charge", "pay-slow-release", |_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<u8, _>(std::io::Error::other("card declined"))
            })
            .await
    };
    let lost = async {
        // Sent once the failed invocation's release is on its way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = Instant::now();
        let lost = duplicate
            .run(&context(), "charge", "pay-slow-release", |_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(2u8)
            })
            .await;
        (lost, sent)
    };
    let (failed, (lost, sent)) = tokio::join!(failed, lost);
    assert!(matches!(failed, Err(Error::Handler(_))), "{failed:?}");
    assert!(matches!(lost, Err(Error::Persistence { .. })), "{lost:?}");
    // The late write has reached moto (the proxy holds it 3 s, then sends it on).
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(sent.elapsed())).await;
    let retry = duplicate
        .run(&context(), "charge", "pay-slow-release", |_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(3u8)
        })
        .await
        .map_err(|error| error.to_string());
    assert_eq!(retry, Ok(3), "the retry ran");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the failed run, and the retry's"
    );
}

/// A claim whose first attempt landed with its answer lost (the proxy cuts it), and whose SDK
/// retries were throttled: the error has DynamoDB's code, which read as a refusal that stored
/// nothing, so the claim was never taken back and held the key until its deadline, without a
/// warning (found by a review). An answer the SDK retries may follow a landed attempt: the claim
/// is taken back, and a retry runs.
#[tokio::test]
async fn a_landed_claim_whose_retries_were_throttled_is_taken_back() {
    let Some(landed) = landed_claim_whose_retries_are_answered(
        "ProvisionedThroughputExceededException",
        2,
        "pay-throttled-retries",
    )
    .await
    else {
        return;
    };
    assert!(
        landed
            .first_error
            .contains("ProvisionedThroughputExceededException"),
        "{}",
        landed.first_error
    );
    assert_eq!(
        landed.put_items_after_first, 4,
        "three attempts, and the take-back's fence"
    );
    assert_eq!(landed.retry, Ok(2), "the retry ran");
    assert_eq!(landed.runs, 1);
}

/// A claim whose first attempt landed with its answer lost (the proxy cuts it), and whose SDK
/// retry was refused with a code the SDK does not retry (`AccessDeniedException`: a credential
/// that expired, a policy changed between the attempts): the error read as a refusal that stored
/// nothing, as only the last attempt's answer counted, so the landed claim was never taken back
/// and held the key until its deadline. A claim the SDK sent more than once may have landed,
/// whatever its last answer.
#[tokio::test]
async fn a_landed_claim_whose_retry_was_refused_is_taken_back() {
    let Some(landed) =
        landed_claim_whose_retries_are_answered("AccessDeniedException", 1, "pay-refused-retry")
            .await
    else {
        return;
    };
    assert!(
        landed.first_error.contains("AccessDeniedException"),
        "{}",
        landed.first_error
    );
    assert_eq!(landed.runs_after_first, 0, "no handler ran");
    assert_eq!(landed.retry, Ok(2), "the retry ran");
    assert_eq!(landed.runs, 1);
    assert_eq!(landed.replay, Ok(2), "a duplicate replays it");
}

/// What [`landed_claim_whose_retries_are_answered`] saw.
struct Landed {
    /// The first claim's error.
    first_error: String,
    /// The `PutItem`s the proxy saw by the end of the first claim (its take-back's included).
    put_items_after_first: usize,
    /// Handlers run by then.
    runs_after_first: usize,
    /// The next call's outcome, then a duplicate's after it.
    retry: Result<u8, String>,
    replay: Result<u8, String>,
    /// Handlers run in all.
    runs: usize,
}

/// A claim (of `payment`) whose first attempt lands with its answer cut by the proxy, and whose
/// SDK retries (three attempts, 500 ms apart) are answered with DynamoDB's error `code`, `times`
/// of them; then the next call, and a duplicate of it. `None` without the test servers.
async fn landed_claim_whose_retries_are_answered(
    code: &str,
    times: usize,
    payment: &str,
) -> Option<Landed> {
    let direct = dynamodb_client().await?;
    let proxy = FaultProxy::start().await?;
    let table = create_idempotency_table(&direct).await;
    let idempotency = idempotency_retrying(&proxy, &table, three_slow_attempts()).await;
    let runs = AtomicUsize::new(0);
    let charge = |charge: u8| {
        let (runs, idempotency) = (&runs, idempotency.clone());
        let context = TestContext::new().with_remaining_time(INVOCATION).build();
        async move {
            idempotency
                .run(&context, "charge", payment, |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(charge)
                })
                .await
                .map_err(|error| error.to_string())
        }
    };
    proxy.set(json!({"action": "cut", "target": "PutItem", "times": 1}));
    let answer_the_retries = async {
        requests_reached(&proxy, "PutItem", 1).await;
        proxy.set(json!({
            "action": "error", "status": 400, "code": code, "target": "PutItem", "times": times
        }));
    };
    let (first, ()) = tokio::join!(charge(1), answer_the_retries);
    let first_error = first.expect_err("the first claim fails");
    let (put_items_after_first, runs_after_first) =
        (proxy.requests("PutItem"), runs.load(Ordering::SeqCst));
    let retry = charge(2).await;
    let replay = charge(3).await;
    Some(Landed {
        first_error,
        put_items_after_first,
        runs_after_first,
        retry,
        replay,
        runs: runs.load(Ordering::SeqCst),
    })
}

/// The other side of the test above: a claim refused on its only attempt, with a code the SDK
/// does not retry, stored nothing and is not taken back (no write follows it).
#[tokio::test]
async fn a_claim_refused_on_its_only_attempt_is_not_taken_back() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let table = create_idempotency_table(&direct).await;
    let idempotency = idempotency_retrying(
        &proxy,
        &table,
        aws_sdk_dynamodb::config::retry::RetryConfig::standard(),
    )
    .await;
    proxy.set(json!({
        "action": "error", "status": 400, "code": "AccessDeniedException",
        "target": "PutItem", "times": 1
    }));
    let context = TestContext::new().with_remaining_time(INVOCATION).build();
    let refused = idempotency
        .run(&context, "charge", "pay-refused-once", |_| async {
            Ok::<_, std::io::Error>(1u8)
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("AccessDeniedException"),
        "{refused}"
    );
    let stats = proxy.stats();
    assert_eq!(
        stats["requests"],
        json!({"PutItem": 1}),
        "one attempt, and no take-back: {stats}"
    );
}

/// An `Idempotency` on `proxy`'s channel to `table` with the SDK's retries as `retry` says, and
/// [`STORE_TIMEOUT`].
async fn idempotency_retrying(
    proxy: &FaultProxy,
    table: &str,
    retry: aws_sdk_dynamodb::config::retry::RetryConfig,
) -> Idempotency<DynamoDbStore> {
    let client = proxy.client_retrying(retry).await;
    Idempotency::builder(DynamoDbStore::new(client, table).expect("valid store"))
        .store_timeout(STORE_TIMEOUT)
        .build()
        .expect("valid settings")
}

/// Three attempts, 500 ms apart at first (no jitter): time for a test to change the proxy's
/// rule between them.
fn three_slow_attempts() -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(500))
        .with_use_static_exponential_base(true)
}

/// An `Idempotency` on `proxy`'s channel to `table`, with `store_timeout`.
async fn idempotency_through(
    proxy: &FaultProxy,
    table: &str,
    store_timeout: Duration,
) -> Idempotency<DynamoDbStore> {
    Idempotency::builder(DynamoDbStore::new(proxy.client().await, table).expect("valid store"))
        .store_timeout(store_timeout)
        .build()
        .expect("valid settings")
}

/// Two invocations claiming through their own proxy channels to one new table, with
/// `store_timeout`; `None` without the test servers.
async fn claimants(
    store_timeout: Duration,
) -> Option<[(FaultProxy, Idempotency<DynamoDbStore>); 2]> {
    let direct = dynamodb_client().await?;
    let (first, second) = (FaultProxy::start().await?, FaultProxy::start().await?);
    let table = create_idempotency_table(&direct).await;
    let first_idempotency = idempotency_through(&first, &table, store_timeout).await;
    let second_idempotency = idempotency_through(&second, &table, store_timeout).await;
    Some([(first, first_idempotency), (second, second_idempotency)])
}

/// One charge of `payment` through `idempotency`, with `validation` data: the handler's run
/// number, counted in `runs`.
async fn charge_once(
    idempotency: &Idempotency<DynamoDbStore>,
    runs: &AtomicUsize,
    payment: &str,
    validation: Option<Value>,
) -> Result<usize, String> {
    let context = TestContext::new().with_remaining_time(INVOCATION).build();
    idempotency
        .run_keyed(&context, "charge", json!(payment), validation, || async {
            Ok::<_, std::io::Error>(runs.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
        .map_err(|error| format!("{error:?}"))
}

/// Two duplicates whose claims both land late, each taken back behind a fence: the fence
/// written later but whose claim was sent earlier replaced the other one with a lower
/// in-progress deadline, which the other claim's late write could then replace, holding the key
/// (found by a review). A fence's deadline is the moment it is written, never lowered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_of_two_late_claims_never_let_either_claim_in() {
    let Some([(proxy_a, a), (proxy_c, c)]) = claimants(Duration::from_millis(300)).await else {
        return;
    };
    let runs = AtomicUsize::new(0);
    proxy_a.set(json!({"action": "delay", "ms": 2500, "target": "PutItem", "times": 1}));
    proxy_c.set(json!({"action": "delay", "ms": 3000, "target": "PutItem", "times": 1}));
    let start = Instant::now();
    let at =
        |ms: u64| tokio::time::sleep(Duration::from_millis(ms).saturating_sub(start.elapsed()));
    let (first, second, ()) = tokio::join!(
        charge_once(&a, &runs, "pay-two-fences", None),
        async {
            at(100).await;
            charge_once(&c, &runs, "pay-two-fences", None).await
        },
        async {
            // A's fence (its next PutItem) reaches moto after C's, within its store timeout.
            at(150).await;
            proxy_a.set(json!({"action": "delay", "ms": 200, "target": "PutItem", "times": 1}));
        }
    );
    assert!(first.is_err() && second.is_err(), "{first:?} {second:?}");
    // Both late claims have reached moto by now.
    at(3800).await;
    let retry = charge_once(&a, &runs, "pay-two-fences", None).await;
    assert_eq!(retry, Ok(1), "the retry ran, once");
}

/// A claim sent before a duplicate's fence was written reaches the store after it, is refused,
/// and gets the fence back: it was validated against the fence (which holds no payload hash)
/// and refused as another payload, though it was the same (found by a review). A record past
/// its deadline is claimed again, not validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_refused_by_a_fence_is_not_validated_against_it() {
    let Some([(proxy_a, a), (proxy_b, b)]) = claimants(Duration::from_secs(10)).await else {
        return;
    };
    let runs = AtomicUsize::new(0);
    // B's claim is slow, within its store timeout; A's claim loses its connection at once, so
    // A fences while B's claim is on its way.
    proxy_b.set(json!({"action": "delay", "ms": 1500, "target": "PutItem", "times": 1}));
    proxy_a.set(json!({"action": "drop", "target": "PutItem", "times": 1}));
    let start = Instant::now();
    let payload = Some(json!({"amount_cents": 1000}));
    let (slow, dropped) = tokio::join!(
        charge_once(&b, &runs, "pay-fenced", payload.clone()),
        async {
            tokio::time::sleep(Duration::from_millis(20).saturating_sub(start.elapsed())).await;
            charge_once(&a, &runs, "pay-fenced", payload.clone()).await
        }
    );
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(slow, Ok(1), "the same payload ran");
}

#[tokio::test]
async fn a_slow_store_still_works() {
    let Some(faulty) = faulty().await else {
        return;
    };
    faulty.proxy.set(json!({"action": "delay", "ms": 200}));
    let first = faulty.charge("pay-slow", INVOCATION).await.unwrap();
    let replay = faulty.charge("pay-slow", INVOCATION).await.unwrap();
    assert_eq!(first, replay);
    assert_eq!(faulty.executions(), 1);
    assert_eq!(faulty.proxy.requests("PutItem"), 2);
    assert_eq!(faulty.proxy.requests("UpdateItem"), 1);
}

#[tokio::test]
async fn a_lost_completion_answer_still_replays_to_duplicates() {
    let Some(faulty) = faulty().await else {
        return;
    };
    // moto records the completion, the answer is lost: the caller hears of a failure...
    faulty
        .proxy
        .set(json!({"action": "cut", "target": "UpdateItem", "times": 1}));
    let error = faulty.charge("pay-cut-late", INVOCATION).await.unwrap_err();
    assert!(matches!(error, Error::NotCompleted { .. }), "{error:?}");
    // ...but the record is complete, so a retry gets the response and is not charged again.
    let replay = faulty.charge("pay-cut-late", INVOCATION).await.unwrap();
    assert_eq!(replay, json!({"charged": "pay-cut-late", "charge": 1}));
    assert_eq!(faulty.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_invocation_s_late_release_never_replaces_a_later_claim() {
    let Some(faulty) = faulty().await else {
        return;
    };
    // A: the handler fails; releasing its claim reaches DynamoDB only after A's deadline, when A
    // has long given up on it (DeleteFailed). A has 10 s: its claim must land first, and the
    // proxy and moto, loaded by the suite's concurrency storms, took up to 1.9 s to answer it in
    // CI runs, and once more than 4.9 s (with 5 s, the claim itself timed out). The delete lands
    // 4 s after A's deadline at the earliest, which leaves B's claim that long to land first.
    // The later steps are timed from when A's handler failed (the delete is sent right after
    // it), not from the start.
    const A_REMAINING: Duration = Duration::from_secs(10);
    const DELETE_DELAY: Duration = Duration::from_secs(14);
    faulty
        .proxy
        .set(json!({"action": "delay", "ms": DELETE_DELAY.as_millis() as u64, "target": "UpdateItem", "times": 1}));
    let started = Instant::now();
    let failed_at = Arc::new(std::sync::OnceLock::new());
    let a: Result<u8, _> = faulty
        .idempotency
        .run(
            &TestContext::new().with_remaining_time(A_REMAINING).build(),
            "charge",
            "pay-late-delete",
            |_| {
                let failed_at = failed_at.clone();
                async move {
                    failed_at.get_or_init(Instant::now);
                    Err(std::io::Error::other("card declined"))
                }
            },
        )
        .await;
    assert!(matches!(a, Err(Error::DeleteFailed { .. })), "{a:?}");

    // B: a retry after A's deadline claims the key and runs (as documented), and holds it until
    // C has been answered
    tokio::time::sleep(
        (A_REMAINING + Duration::from_millis(300)).saturating_sub(started.elapsed()),
    )
    .await;
    let (b_running, b_started) = tokio::sync::oneshot::channel();
    let (c_answered, c_done) = tokio::sync::oneshot::channel::<()>();
    let idempotency = faulty.idempotency.clone();
    let b = tokio::spawn(async move {
        idempotency
            .run(
                &TestContext::new().with_remaining_time(INVOCATION).build(),
                "charge",
                "pay-late-delete",
                |_| async move {
                    let _ = b_running.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(30), c_done).await;
                    Ok::<_, std::io::Error>(2u8)
                },
            )
            .await
    });
    b_started.await.expect("B runs its handler");

    // When A's delete lands at DynamoDB (14 s after it was sent) while B runs
    let failed_at = *failed_at.get().expect("A's handler ran");
    tokio::time::sleep_until((failed_at + DELETE_DELAY + Duration::from_millis(500)).into()).await;

    // Then B's claim is still there: a duplicate C gets AlreadyInProgress, never a second run
    // beside B
    let c: Result<u8, Error<std::io::Error>> = faulty
        .idempotency
        .run(
            &TestContext::new().with_remaining_time(INVOCATION).build(),
            "charge",
            "pay-late-delete",
            |_| async { Ok(3) },
        )
        .await;
    let _ = c_answered.send(());
    assert!(matches!(c, Err(Error::AlreadyInProgress { .. })), "{c:?}");
    assert_eq!(b.await.expect("B's task").expect("B's run"), 2);
    assert_eq!(
        faulty.proxy.requests("UpdateItem"),
        2,
        "A's release was sent, and B's completion"
    );
}

/// A claim that landed, whose answer was lost and that the SDK sent again, finds its own record
/// (its claim id): the handler runs, once, and the call succeeds. (It got `AlreadyInProgress`,
/// and so did every retry until the invocation's deadline, though nothing ran.)
#[tokio::test]
async fn a_lost_claim_answer_retried_by_the_sdk_finds_its_own_claim_and_runs_once() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    // The SDK's standard retries (its default), unlike the other tests' clients
    let sdk_config = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk_config)
            .endpoint_url(proxy.endpoint())
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard())
            .build(),
    );
    let table = create_idempotency_table(&direct).await;
    let idempotency = Idempotency::builder(DynamoDbStore::new(client, &table).unwrap())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let charge = || {
        let runs = runs.clone();
        let idempotency = idempotency.clone();
        async move {
            idempotency
                .run(
                    &TestContext::new().with_remaining_time(INVOCATION).build(),
                    "charge",
                    "pay-cut-retried",
                    |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(1u8)
                    },
                )
                .await
        }
    };

    // moto applies the claim, its answer is lost, the SDK sends the claim again
    proxy.set(json!({"action": "cut", "target": "PutItem", "times": 1}));
    let first = charge().await;
    assert!(
        proxy.requests("PutItem") >= 2,
        "the SDK sent the claim again"
    );
    assert_eq!(first.unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A duplicate is a replay, and nothing runs twice
    assert_eq!(charge().await.unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A claim whose every attempt failed to connect (a port nothing listens on, a TLS handshake
/// with a plain-HTTP server) stored nothing: it is not taken back, and no warning says it may be
/// stored (one did, at each invocation, with "taking it back failed too": both false, found by
/// an attack from the docs).
#[tokio::test]
async fn a_claim_that_never_connected_is_not_said_to_be_stored() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let moto = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("the test servers set it");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for endpoint in [
        format!("http://127.0.0.1:{closed_port}"),
        moto.replacen("http://", "https://", 1),
    ] {
        let config = direct
            .config()
            .to_builder()
            .endpoint_url(&endpoint)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build();
        let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "payments")
            .expect("valid store");
        let idempotency = Idempotency::builder(store)
            .store_timeout(STORE_TIMEOUT)
            .build()
            .expect("valid settings");
        let warnings = powertools_tests::CapturedWarnings::default();
        let _guard = tracing::subscriber::set_default(warnings.subscriber());
        let context = TestContext::new().with_remaining_time(INVOCATION).build();
        let ran = AtomicUsize::new(0);
        let error = idempotency
            .run(&context, "charge", "pay-never-connected", |_| async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(1u8)
            })
            .await
            .unwrap_err();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert!(
            error.to_string().contains("could not send the request"),
            "{endpoint}: {error}"
        );
        let warned = warnings.text();
        assert!(
            !warned.contains("may be stored"),
            "{endpoint}: nothing was sent, nothing may be stored: {warned}"
        );
    }
}
