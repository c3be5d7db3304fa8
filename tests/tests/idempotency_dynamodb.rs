//! `powertools-idempotency` against a real DynamoDB-compatible server (moto): every scenario of
//! the Powertools protocol, with the DynamoDB requests counted by an SDK interceptor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::tower::Layer;
use lambda_runtime::tower::{Service, ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    DataRecord, DynamoDbStore, Error, FromFn, Idempotency, IdempotencyLayer, IdempotencyStore,
    JmesPath, Status,
};
use powertools_tests::{RequestCounter, counted_dynamodb_client, create_idempotency_table};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Payment {
    payment_id: String,
    amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Receipt {
    payment_id: String,
    charged_cents: u64,
    charge_number: usize,
}

struct Fixture {
    client: aws_sdk_dynamodb::Client,
    requests: RequestCounter,
    table: String,
    idempotency: Idempotency<DynamoDbStore>,
}

async fn fixture(
    configure: impl FnOnce(
        powertools_idempotency::IdempotencyBuilder<DynamoDbStore>,
    ) -> powertools_idempotency::IdempotencyBuilder<DynamoDbStore>,
) -> Option<Fixture> {
    let (client, requests) = counted_dynamodb_client().await?;
    let table = create_idempotency_table(&client).await;
    let store = DynamoDbStore::new(client.clone(), &table).expect("valid store settings");
    let idempotency = configure(Idempotency::builder(store).key_prefix("payments"))
        .build()
        .expect("valid idempotency settings");
    Some(Fixture {
        client,
        requests,
        table,
        idempotency,
    })
}

fn payment(id: &str, amount_cents: u64) -> Payment {
    Payment {
        payment_id: id.into(),
        amount_cents,
    }
}

fn payment_id(payment: &Payment) -> Option<String> {
    Some(payment.payment_id.clone())
}

type PaymentIdKey = FromFn<fn(&Payment) -> Option<String>>;

/// The layer keyed on the payment id, without validation.
fn keyed_on_payment_id(
    idempotency: &Idempotency<DynamoDbStore>,
) -> IdempotencyLayer<DynamoDbStore, PaymentIdKey> {
    IdempotencyLayer::new(idempotency.clone())
        .key_from(payment_id as fn(&Payment) -> Option<String>)
}

/// A payment handler that counts its executions, behind the layer keyed on the payment id and
/// validated on the amount.
fn payment_service(
    idempotency: &Idempotency<DynamoDbStore>,
    executions: Arc<AtomicUsize>,
) -> impl Service<LambdaEvent<Payment>, Response = Receipt, Error = Error<lambda_runtime::Error>>
+ Clone
+ use<> {
    ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency.clone())
                .key_from(|payment: &Payment| Some(payment.payment_id.clone()))
                .validate_from(|payment: &Payment| Some(payment.amount_cents)),
        )
        .service(service_fn(move |event: LambdaEvent<Payment>| {
            let executions = executions.clone();
            async move {
                let charge_number = executions.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, lambda_runtime::Error>(Receipt {
                    payment_id: event.payload.payment_id,
                    charged_cents: event.payload.amount_cents,
                    charge_number,
                })
            }
        }))
}

/// The default fixture with the counting payment service on it.
async fn payment_fixture() -> Option<(
    Fixture,
    Arc<AtomicUsize>,
    impl Service<LambdaEvent<Payment>, Response = Receipt, Error = Error<lambda_runtime::Error>> + Clone,
)> {
    let fixture = fixture(|builder| builder).await?;
    let executions = Arc::new(AtomicUsize::new(0));
    let service = payment_service(&fixture.idempotency, executions.clone());
    Some((fixture, executions, service))
}

async fn call<S>(service: &mut S, payment: Payment) -> Result<Receipt, Error<lambda_runtime::Error>>
where
    S: Service<LambdaEvent<Payment>, Response = Receipt, Error = Error<lambda_runtime::Error>>,
{
    invoke(service, TestContext::new().event(payment)).await
}

/// Waits for `service` to be ready and calls it with `event`.
async fn invoke<S, T>(service: &mut S, event: LambdaEvent<T>) -> Result<S::Response, S::Error>
where
    S: Service<LambdaEvent<T>>,
{
    service.ready().await?.call(event).await
}

async fn stored_item(fixture: &Fixture, key: &str) -> Option<HashMap<String, AttributeValue>> {
    fixture
        .client
        .get_item()
        .table_name(&fixture.table)
        .key("id", AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
}

fn key_of(fixture: &Fixture, payment_id: &str) -> String {
    fixture.idempotency.key_for(
        &TestContext::new().build(),
        powertools_idempotency::DEFAULT_LAYER_OPERATION,
        &json!(payment_id),
    )
}

fn now() -> (i64, i64) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    (since.as_secs() as i64, since.as_millis() as i64)
}

async fn seed(
    fixture: &Fixture,
    key: &str,
    status: &str,
    expiry_s: i64,
    in_progress_ms: Option<i64>,
    data: Option<&str>,
) {
    let mut put = fixture
        .client
        .put_item()
        .table_name(&fixture.table)
        .item("id", AttributeValue::S(key.into()))
        .item("status", AttributeValue::S(status.into()))
        .item("expiration", AttributeValue::N(expiry_s.to_string()));
    if let Some(deadline) = in_progress_ms {
        put = put.item(
            "in_progress_expiration",
            AttributeValue::N(deadline.to_string()),
        );
    }
    if let Some(data) = data {
        put = put.item("data", AttributeValue::S(data.into()));
    }
    put.send().await.expect("seed record");
}

#[tokio::test]
async fn a_first_call_costs_two_requests_and_a_duplicate_one_with_the_same_response() {
    let Some((fixture, executions, mut service)) = payment_fixture().await else {
        return;
    };

    let (first, first_requests) = fixture
        .requests
        .during(call(&mut service, payment("pay-1", 1250)))
        .await;
    let (replay, replay_requests) = fixture
        .requests
        .during(call(&mut service, payment("pay-1", 1250)))
        .await;

    let first = first.unwrap();
    assert_eq!(first.charge_number, 1);
    assert_eq!(
        replay.unwrap(),
        first,
        "the duplicate gets the stored response"
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1, "charged once");
    assert_eq!(first_requests, 2, "PutItem + UpdateItem");
    assert_eq!(
        replay_requests, 1,
        "one failed conditional PutItem returning the record"
    );

    let item = stored_item(&fixture, &key_of(&fixture, "pay-1"))
        .await
        .expect("record stored");
    assert_eq!(item["status"], AttributeValue::S("COMPLETED".into()));
    let data: Receipt = serde_json::from_str(item["data"].as_s().unwrap()).unwrap();
    assert_eq!(data, first);
    assert!(item.contains_key("validation"));
    assert!(item.contains_key("in_progress_expiration"));
}

#[tokio::test]
async fn a_local_cache_hit_makes_no_request() {
    let Some(fixture) = fixture(|builder| builder.use_local_cache()).await else {
        return;
    };
    let executions = Arc::new(AtomicUsize::new(0));
    let mut service = payment_service(&fixture.idempotency, executions.clone());

    let first = call(&mut service, payment("pay-2", 500)).await.unwrap();
    let (replay, requests) = fixture
        .requests
        .during(call(&mut service, payment("pay-2", 500)))
        .await;
    assert_eq!(replay.unwrap(), first);
    assert_eq!(requests, 0);

    // A cache hit is still validated.
    let mismatch = call(&mut service, payment("pay-2", 501)).await.unwrap_err();
    assert!(
        matches!(mismatch, Error::PayloadMismatch { .. }),
        "{mismatch:?}"
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_keys_called_fifty_times_each_at_once_execute_twenty_times() {
    // moto handles one request at a time: a thousand queued claims can take longer than the
    // default store timeout, and a claim that times out after moto applied it would hold its key.
    let Some(fixture) = fixture(|builder| builder.store_timeout(Duration::from_secs(120))).await
    else {
        return;
    };
    let executions = Arc::new(AtomicUsize::new(0));
    let slow_executions = executions.clone();
    let service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            let executions = slow_executions.clone();
            async move {
                executions.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, lambda_runtime::Error>(event.payload.payment_id)
            }
        },
    ));

    let calls = (0..20)
        .flat_map(|key| (0..50).map(move |_| format!("pay-c{key}")))
        .map(|id| {
            let service = service.clone();
            tokio::spawn(async move {
                let result = service
                    .oneshot(TestContext::new().event(payment(&id, 1)))
                    .await;
                (id, result)
            })
        });
    let results = futures_util::future::join_all(calls).await;

    assert_eq!(
        executions.load(Ordering::SeqCst),
        20,
        "each key executed exactly once"
    );
    let mut completed = 0;
    for outcome in results {
        let (id, result) = outcome.expect("the task did not panic");
        match result {
            Ok(response) => {
                assert_eq!(response, id);
                completed += 1;
            }
            Err(Error::AlreadyInProgress { .. }) => {}
            Err(other) => panic!("unexpected error for {id}: {other:?}"),
        }
    }
    assert!(completed >= 20, "at least the twenty executions answered");
}

#[tokio::test]
async fn a_handler_error_releases_the_record_so_the_retry_executes() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let mut service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            let attempt = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if attempt == 1 {
                    return Err(lambda_runtime::Error::from("payment provider timed out"));
                }
                Ok(event.payload.payment_id)
            }
        },
    ));

    let error = invoke(&mut service, TestContext::new().event(payment("pay-3", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Handler(inner) if inner.to_string() == "payment provider timed out")
    );
    // No record blocks the retry: the claim was replaced with a fence, which keeps its deadline
    // and which the retry takes by its claim id
    let fence = stored_item(&fixture, &key_of(&fixture, "pay-3"))
        .await
        .expect("the fence");
    assert!(
        matches!(&fence["claim_id"], AttributeValue::S(id) if id.starts_with("fence-")),
        "{fence:?}"
    );
    let AttributeValue::N(deadline_ms) = &fence["in_progress_expiration"] else {
        panic!("no in-progress deadline: {fence:?}");
    };
    assert!(
        deadline_ms.parse::<i64>().unwrap() > now().1,
        "the claim's deadline, still ahead: {fence:?}"
    );
    assert!(!fence.contains_key("validation"), "{fence:?}");

    let retried = invoke(&mut service, TestContext::new().event(payment("pay-3", 1)))
        .await
        .unwrap();
    assert_eq!(retried, "pay-3");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_handler_is_reported_and_the_retry_executes() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let mut service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            let attempt = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                assert!(attempt > 1, "provider client bug");
                Ok::<_, lambda_runtime::Error>(event.payload.payment_id)
            }
        },
    ));

    let error = invoke(&mut service, TestContext::new().event(payment("pay-4", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::HandlerPanicked { message } if message.contains("provider client bug")),
        "{error:?}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "HandlerPanicked"
    );
    let released = fixture
        .idempotency
        .store()
        .get(&key_of(&fixture, "pay-4"))
        .await
        .unwrap();
    assert!(
        released.as_ref().is_some_and(DataRecord::is_fence),
        "the claim was released: {released:?}"
    );

    let retried = invoke(&mut service, TestContext::new().event(payment("pay-4", 1)))
        .await
        .unwrap();
    assert_eq!(retried, "pay-4");
}

#[tokio::test]
async fn an_in_progress_record_blocks_until_its_invocation_deadline_then_is_taken_over() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    // Keyed on the payment id without validation: the seeded records carry no validation hash.
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let mut service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            let charge_number = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok::<_, lambda_runtime::Error>(Receipt {
                    payment_id: event.payload.payment_id,
                    charged_cents: event.payload.amount_cents,
                    charge_number,
                })
            }
        },
    ));
    let (now_s, now_ms) = now();

    // A live invocation holds pay-5: the duplicate is told to retry later.
    seed(
        &fixture,
        &key_of(&fixture, "pay-5"),
        "INPROGRESS",
        now_s + 3600,
        Some(now_ms + 60_000),
        None,
    )
    .await;
    let error = invoke(&mut service, TestContext::new().event(payment("pay-5", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::AlreadyInProgress { .. }),
        "{error:?}"
    );
    // The message says where the record is and until when it holds the key: when a retry may
    // run (the running invocation's deadline), not only that one must come later.
    let message = error.to_string();
    let deadline = now_ms + 60_000;
    assert!(
        message.starts_with("execution already in progress with idempotency key "),
        "{message}"
    );
    for part in [
        format!("DynamoDB table {}", fixture.table),
        format!("(epoch ms {deadline})"),
        chrono::DateTime::from_timestamp_millis(deadline)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message}");
    }
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "IdempotencyAlreadyInProgressError"
    );

    // A record without an in-progress deadline (Powertools for Python writes one when its
    // function has not registered the Lambda context) holds the key until it expires.
    seed(
        &fixture,
        &key_of(&fixture, "pay-5b"),
        "INPROGRESS",
        now_s + 3600,
        None,
        None,
    )
    .await;
    let error = invoke(&mut service, TestContext::new().event(payment("pay-5b", 1)))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::AlreadyInProgress { in_progress_until: None, expires_at, .. }
            if expires_at == now_s + 3600),
        "{error:?}"
    );
    assert!(
        message.contains(&format!("(epoch {})", now_s + 3600))
            && message.contains("no in-progress deadline"),
        "{message}"
    );

    // The invocation holding pay-6 timed out: its record is taken over.
    seed(
        &fixture,
        &key_of(&fixture, "pay-6"),
        "INPROGRESS",
        now_s + 3600,
        Some(now_ms - 1_000),
        None,
    )
    .await;
    let receipt = invoke(&mut service, TestContext::new().event(payment("pay-6", 1)))
        .await
        .unwrap();
    assert_eq!(receipt.payment_id, "pay-6");
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_record_is_overwritten() {
    let Some((fixture, _executions, mut service)) = payment_fixture().await else {
        return;
    };
    let (now_s, _) = now();
    let stale = r#"{"payment_id":"pay-7","charged_cents":1,"charge_number":99}"#;
    seed(
        &fixture,
        &key_of(&fixture, "pay-7"),
        "COMPLETED",
        now_s - 10,
        None,
        Some(stale),
    )
    .await;

    let receipt = call(&mut service, payment("pay-7", 1)).await.unwrap();
    assert_eq!(
        receipt.charge_number, 1,
        "executed again, not the stale response"
    );
    let item = stored_item(&fixture, &key_of(&fixture, "pay-7"))
        .await
        .unwrap();
    assert!(item["expiration"].as_n().unwrap().parse::<i64>().unwrap() > now_s);
}

#[tokio::test]
async fn an_unreachable_store_fails_with_a_persistence_error_before_the_handler_runs() {
    let Some((_, _)) = counted_dynamodb_client().await else {
        return;
    };
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk_config = aws_config::load_from_env().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let store =
        DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "unreachable").unwrap();
    let idempotency = Idempotency::builder(store).build().unwrap();
    let executions = Arc::new(AtomicUsize::new(0));
    let mut service = payment_service(&idempotency, executions.clone());

    let error = call(&mut service, payment("pay-8", 1)).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Persistence {
                operation: "save the in-progress record",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        executions.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
}

#[tokio::test]
async fn tenants_never_share_records() {
    let Some((_fixture, executions, mut service)) = payment_fixture().await else {
        return;
    };
    let event_for = |tenant: &'static str| {
        TestContext::new()
            .with_tenant_id(tenant)
            .event(payment("pay-9", 100))
    };

    let a = invoke(&mut service, event_for("bakery-camden"))
        .await
        .unwrap();
    let b = invoke(&mut service, event_for("bakery-islington"))
        .await
        .unwrap();
    let a_again = invoke(&mut service, event_for("bakery-camden"))
        .await
        .unwrap();
    assert_eq!(
        executions.load(Ordering::SeqCst),
        2,
        "one execution per tenant"
    );
    assert_ne!(a.charge_number, b.charge_number);
    assert_eq!(a_again, a, "each tenant replays its own response");
}

#[tokio::test]
async fn a_duplicate_with_other_validation_data_is_refused() {
    let Some((_fixture, executions, mut service)) = payment_fixture().await else {
        return;
    };

    call(&mut service, payment("pay-10", 1250)).await.unwrap();
    let error = call(&mut service, payment("pay-10", 9999))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PayloadMismatch { .. }), "{error:?}");
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "IdempotencyValidationError"
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_malformed_stored_record_is_a_typed_error() {
    let Some((fixture, executions, mut service)) = payment_fixture().await else {
        return;
    };
    let (now_s, _) = now();
    seed(
        &fixture,
        &key_of(&fixture, "pay-11"),
        "DONE",
        now_s + 3600,
        None,
        None,
    )
    .await;

    let error = call(&mut service, payment("pay-11", 1)).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidRecord { reason, .. } if reason.contains("DONE")),
        "{error:?}"
    );
    assert_eq!(executions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_response_that_cannot_be_stored_is_returned_once_and_never_executes_again() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    // The response echoes the input: an attacker controls its size, or a computed ratio is NaN.
    let mut service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let payload = event.payload;
                let (echo, ratio) = match payload.amount_cents {
                    0 => ("x".repeat(500 * 1024), 1.0),
                    _ => (payload.payment_id.clone(), f64::NAN),
                };
                Ok::<_, lambda_runtime::Error>((echo, Some(ratio)))
            }
        },
    ));

    for (id, amount, cause) in [
        ("pay-12", 0, "-byte item limit"),
        ("pay-13", 1, "it holds NaN, which JSON cannot represent"),
    ] {
        let first = invoke(&mut service, TestContext::new().event(payment(id, amount)))
            .await
            .expect("the first caller gets its response");
        assert!(first.0.len() == 500 * 1024 || first.1.is_some_and(f64::is_nan));
        let item = stored_item(&fixture, &key_of(&fixture, id))
            .await
            .expect("the record is kept, never deleted");
        assert_eq!(item["status"], AttributeValue::S("COMPLETED".into()));
        assert!(!item.contains_key("data"), "no response stored for {id}");
        // The record says why, for the duplicates (and whoever reads the table).
        let Some(AttributeValue::S(reason)) = item.get("not_stored_reason") else {
            panic!("the record keeps why its response was not stored: {item:?}");
        };
        assert!(reason.contains(cause), "{cause:?} in {reason:?}");
        for _ in 0..2 {
            let error = invoke(&mut service, TestContext::new().event(payment(id, amount)))
                .await
                .unwrap_err();
            assert!(
                matches!(error, Error::ResponseNotStored { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains(cause), "{cause:?} in: {error}");
            assert_eq!(
                lambda_runtime::Diagnostic::from(error).error_type,
                "IdempotencyResponseNotStoredError"
            );
        }
    }
    assert_eq!(
        executions.load(Ordering::SeqCst),
        2,
        "each payment executed once"
    );
}

#[tokio::test]
async fn computed_floats_replay_bit_for_bit_through_dynamodb() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let context = TestContext::new().build();
    let prices: Vec<f64> = (0..2_000u32)
        .map(|i| f64::from(i) * 1.0001 / 7.3 + 1000.0)
        .collect();
    let expected = prices.clone();
    let first: Vec<f64> = fixture
        .idempotency
        .run(&context, "price", "basket-1", |_| async move {
            Ok::<_, std::io::Error>(prices)
        })
        .await
        .unwrap();
    let replay: Vec<f64> = fixture
        .idempotency
        .run(&context, "price", "basket-1", |_| async {
            Err(std::io::Error::other("must not run twice"))
        })
        .await
        .unwrap();
    assert_eq!(first, expected);
    let off = expected
        .iter()
        .zip(&replay)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(off, 0, "{off} of {} replayed off", expected.len());
}

/// 1000 concurrent duplicates, each through its own clone of the service made ready and called
/// as `lambda_runtime::run_concurrent` does, with a context whose deadline can't be trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_duplicates_through_cloned_services_execute_once() {
    // As above: moto's one-at-a-time queue is slower than DynamoDB.
    let Some(fixture) = fixture(|builder| builder.store_timeout(Duration::from_secs(120))).await
    else {
        return;
    };
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let service = keyed_on_payment_id(&fixture.idempotency).layer(service_fn(
        move |event: LambdaEvent<Payment>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, lambda_runtime::Error>(event.payload.payment_id)
            }
        },
    ));
    let contexts = [
        lambda_runtime::Context::default(),
        TestContext::new().with_deadline_ms(600_000).build(),
    ];
    for (round, context) in contexts.into_iter().enumerate() {
        let id = format!("storm-{round}");
        let calls = (0..1000).map(|_| {
            let mut service = service.clone();
            let event = LambdaEvent::new(payment(&id, 1), context.clone());
            tokio::spawn(async move { service.ready().await?.call(event).await })
        });
        for result in futures_util::future::join_all(calls).await {
            match result.expect("no task panicked") {
                Ok(response) => assert_eq!(response, id),
                Err(Error::AlreadyInProgress { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(
            executions.load(Ordering::SeqCst),
            round + 1,
            "round {round}: one execution for 1000 duplicates"
        );
    }
}

#[tokio::test]
async fn falsy_responses_replay_as_the_same_typed_values() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let context = TestContext::new().build();
    async fn twice<R>(
        idempotency: &Idempotency<DynamoDbStore>,
        context: &lambda_runtime::Context,
        key: &str,
        value: R,
    ) -> (R, R)
    where
        R: Serialize + serde::de::DeserializeOwned + Clone + 'static,
    {
        let first = idempotency
            .run(context, "falsy", key.to_owned(), |_| async {
                Ok::<_, std::io::Error>(value.clone())
            })
            .await
            .unwrap();
        let replay = idempotency
            .run(context, "falsy", key.to_owned(), |_| async {
                Err::<R, _>(std::io::Error::other("must not run"))
            })
            .await
            .unwrap();
        (first, replay)
    }
    assert_eq!(
        twice(&fixture.idempotency, &context, "unit", ()).await,
        ((), ())
    );
    assert_eq!(
        twice(&fixture.idempotency, &context, "false", false).await,
        (false, false)
    );
    assert_eq!(
        twice(&fixture.idempotency, &context, "zero", 0u32).await,
        (0, 0)
    );
    assert_eq!(
        twice(&fixture.idempotency, &context, "empty", String::new()).await,
        (String::new(), String::new())
    );
    assert_eq!(
        twice(&fixture.idempotency, &context, "null", None::<u8>).await,
        (None, None)
    );
    assert_eq!(
        twice(&fixture.idempotency, &context, "json-null", Value::Null).await,
        (Value::Null, Value::Null)
    );
}

#[tokio::test]
async fn the_store_primitives_round_trip_a_record() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let store = fixture.idempotency.store();
    let (now_s, now_ms) = now();
    let record = powertools_idempotency::DataRecord::new(
        "payments.primitive#1",
        Status::InProgress,
        now_s + 60,
    )
    .with_in_progress_expiry(now_ms + 1_000)
    .with_payload_hash("abc");
    assert_eq!(
        store
            .put_in_progress(&record, SystemTime::now())
            .await
            .unwrap(),
        powertools_idempotency::PutOutcome::Stored
    );
    assert_eq!(
        store
            .put_in_progress(&record, SystemTime::now())
            .await
            .unwrap(),
        powertools_idempotency::PutOutcome::Exists(Some(record.clone()))
    );
    assert_eq!(store.get(&record.key).await.unwrap(), Some(record.clone()));
    // A delete of an earlier claim of the key (another in-progress expiry, as a failed
    // invocation's late delete has) leaves this claim; so does one of a completed record
    let earlier = record.clone().with_in_progress_expiry(now_ms - 5_000);
    store.delete(&earlier).await.unwrap();
    assert_eq!(store.get(&record.key).await.unwrap(), Some(record.clone()));
    let mut completed = record.clone();
    completed.status = Status::Completed;
    completed.response_data = Some("{}".to_owned());
    store.update(&completed).await.unwrap();
    store.delete(&record).await.unwrap();
    assert_eq!(
        store.get(&record.key).await.unwrap(),
        Some(completed.clone())
    );
    // Its own claim is deleted
    store
        .put_in_progress(
            &record,
            SystemTime::now() + std::time::Duration::from_secs(120),
        )
        .await
        .unwrap();
    store.delete(&record).await.unwrap();
    assert_eq!(store.get(&record.key).await.unwrap(), None);
}

/// A failed handler's release: its claim replaced with a fence, only while the stored record is
/// that claim (its claim id), as the delete it replaced; the fence reads back with its deadline
/// and claim id and without the claim's payload hash, and any later claim takes it.
#[tokio::test]
async fn a_claim_is_replaced_with_a_fence_only_while_it_is_its_own() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let store = fixture.idempotency.store();
    let (now_s, now_ms) = now();
    let claimed_by = |id: &str, record: &DataRecord| {
        let mut record = record.clone();
        record.claim_id = Some(id.to_owned());
        record
    };
    let claim = claimed_by(
        "c1",
        &DataRecord::new("payments.fence#1", Status::InProgress, now_s + 60)
            .with_in_progress_expiry(now_ms + 30_000)
            .with_payload_hash("abc"),
    );
    let mut fence = claimed_by("fence-1", &claim).with_in_progress_expiry(now_ms - 1);
    fence.payload_hash = None;
    store
        .put_in_progress(&claim, SystemTime::now())
        .await
        .unwrap();
    // Another claim's release (another claim id) leaves it
    store
        .replace_with_fence(&claimed_by("c0", &claim), &fence)
        .await
        .unwrap();
    assert_eq!(store.get(&claim.key).await.unwrap(), Some(claim.clone()));
    // Its own is replaced
    store.replace_with_fence(&claim, &fence).await.unwrap();
    assert_eq!(store.get(&claim.key).await.unwrap(), Some(fence.clone()));
    // The same release again (an SDK retry whose answer was lost) finds the fence: left as it is
    store.replace_with_fence(&claim, &fence).await.unwrap();
    assert_eq!(store.get(&claim.key).await.unwrap(), Some(fence.clone()));
    // Any later claim takes the fence
    let retry = claimed_by("c2", &claim);
    assert_eq!(
        store
            .put_in_progress(&retry, SystemTime::now())
            .await
            .unwrap(),
        powertools_idempotency::PutOutcome::Stored
    );
    // A completed record is never replaced
    let mut completed = retry.clone();
    completed.status = Status::Completed;
    completed.response_data = Some("{}".to_owned());
    store.update(&completed).await.unwrap();
    store.replace_with_fence(&retry, &fence).await.unwrap();
    assert_eq!(store.get(&claim.key).await.unwrap(), Some(completed));
}

#[tokio::test]
async fn jmespath_keys_on_a_json_body_and_validates_it() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let mut service = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(fixture.idempotency.clone())
                .key(JmesPath::new("powertools_json(body).order_id").unwrap())
                .validation(JmesPath::new("powertools_json(body).total_cents").unwrap()),
        )
        .service(service_fn(move |event: LambdaEvent<Value>| {
            let executions = counter.clone();
            async move {
                let run = executions.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, lambda_runtime::Error>(
                    json!({"statusCode": 201, "run": run, "body": event.payload["body"]}),
                )
            }
        }));
    let request =
        |body: &str| TestContext::new().event(json!({"httpMethod": "POST", "body": body}));

    let first = invoke(
        &mut service,
        request(r#"{"order_id":"o-1","total_cents":900}"#),
    )
    .await
    .unwrap();
    let (replay, replay_requests) = fixture
        .requests
        .during(invoke(
            &mut service,
            request("{ \"total_cents\": 900,\n  \"order_id\": \"o-1\" }"),
        ))
        .await;
    assert_eq!(
        replay.unwrap(),
        first,
        "whitespace in the body is not part of the key"
    );
    assert_eq!(replay_requests, 1);
    assert!(
        stored_item(&fixture, &key_of(&fixture, "o-1"))
            .await
            .is_some(),
        "the record is keyed on the order id alone"
    );

    let mismatch = invoke(
        &mut service,
        request(r#"{"order_id":"o-1","total_cents":100}"#),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(mismatch, Error::PayloadMismatch { .. }),
        "{mismatch:?}"
    );

    let (not_json, requests) = fixture
        .requests
        .during(invoke(&mut service, request("order o-1, please")))
        .await;
    let not_json = not_json.unwrap_err();
    assert_eq!(
        not_json.error_type(),
        "IdempotencyKeyExpressionError",
        "{not_json}"
    );
    assert_eq!(
        requests, 0,
        "a body that is not JSON never reaches the table"
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_missing_key_runs_the_handler_without_the_table_or_is_refused_when_required() {
    for raise in [false, true] {
        let Some(fixture) = fixture(|builder| builder.raise_on_missing_key(raise)).await else {
            return;
        };
        let executions = Arc::new(AtomicUsize::new(0));
        let counter = executions.clone();
        let service = IdempotencyLayer::new(fixture.idempotency.clone())
            .key(JmesPath::new(r#"headers."Idempotency-Key""#).unwrap())
            .layer(service_fn(move |_event: LambdaEvent<Value>| {
                let executions = counter.clone();
                async move {
                    executions.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, lambda_runtime::Error>(json!({"statusCode": 201}))
                }
            }));
        let without_header = json!({"headers": {"content-type": "application/json"}, "body": "{}"});

        for _ in 0..2 {
            let (outcome, requests) = fixture
                .requests
                .during(
                    service
                        .clone()
                        .oneshot(TestContext::new().event(without_header.clone())),
                )
                .await;
            assert_eq!(requests, 0, "raise_on_missing_key({raise})");
            if raise {
                let error = outcome.unwrap_err();
                assert_eq!(error.error_type(), "IdempotencyKeyError", "{error}");
            } else {
                assert_eq!(outcome.unwrap(), json!({"statusCode": 201}));
            }
        }
        let expected_runs = if raise { 0 } else { 2 };
        assert_eq!(
            executions.load(Ordering::SeqCst),
            expected_runs,
            "without a key nothing is idempotent, and a required key stops the handler"
        );
    }
}

/// A claim that reaches the store late (its delete after a failure, or its completion, held up
/// and retried by the SDK past the claim's in-progress deadline) must leave a later claim of the
/// key alone, even one with the same in-progress deadline (records of one batch share the
/// invocation's deadline): the claim is told apart by its claim id. A late delete used to free
/// the later claim (so a third call ran beside it) and a late completion overwrote it with the
/// earlier call's response (so duplicates got two responses in one window).
async fn a_late_delete_or_completion_leaves_a_later_claim_with_the_same_deadline<S>(store: &S)
where
    S: IdempotencyStore,
{
    let (now_s, now_ms) = now();
    let claim = |id: &str| {
        let mut record = powertools_idempotency::DataRecord::new(
            "payments.late#1",
            Status::InProgress,
            now_s + 600,
        )
        .with_in_progress_expiry(now_ms + 1_000);
        record.claim_id = Some(id.to_owned());
        record
    };
    let (first, later) = (claim("first"), claim("later"));
    let stored = powertools_idempotency::PutOutcome::Stored;
    assert_eq!(
        store
            .put_in_progress(&first, SystemTime::now())
            .await
            .expect("the store answers"),
        stored
    );
    // The first claim's deadline passed: the later one takes the key over.
    let past_deadline = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(
        store
            .put_in_progress(&later, past_deadline)
            .await
            .expect("the store answers"),
        stored
    );

    store
        .delete(&first)
        .await
        .expect("a late delete is not an error");
    assert_eq!(
        store.get(&later.key).await.expect("the store answers"),
        Some(later.clone()),
        "the late delete freed the later claim"
    );

    let mut first_completed = first.clone();
    first_completed.status = Status::Completed;
    first_completed.response_data = Some("\"first\"".to_owned());
    let late = store.update(&first_completed).await;
    assert!(
        matches!(
            late,
            Err(powertools_idempotency::StoreError::ClaimReplaced { ref key }) if *key == later.key
        ),
        "{late:?}"
    );
    assert_eq!(
        store.get(&later.key).await.expect("the store answers"),
        Some(later.clone()),
        "the late completion overwrote the later claim"
    );

    // The later claim completes, twice (the SDK retrying an update whose answer was lost), and
    // deletes nothing of its own completed record.
    let mut later_completed = later.clone();
    later_completed.status = Status::Completed;
    later_completed.response_data = Some("\"later\"".to_owned());
    store
        .update(&later_completed)
        .await
        .expect("the store answers");
    store
        .update(&later_completed)
        .await
        .expect("the store answers");
    store.delete(&later).await.expect("the store answers");
    let stored = store
        .get(&later.key)
        .await
        .expect("the store answers")
        .expect("the record");
    assert_eq!(
        (stored.status, stored.response_data.as_deref()),
        (Status::Completed, Some("\"later\""))
    );
}

#[tokio::test]
async fn a_late_delete_or_completion_leaves_a_later_claim_in_dynamodb() {
    let Some(fixture) = fixture(|builder| builder).await else {
        return;
    };
    a_late_delete_or_completion_leaves_a_later_claim_with_the_same_deadline(
        fixture.idempotency.store(),
    )
    .await;
}

#[tokio::test]
async fn a_late_delete_or_completion_leaves_a_later_claim_in_memory() {
    a_late_delete_or_completion_leaves_a_later_claim_with_the_same_deadline(
        &powertools_idempotency::InMemoryStore::new(),
    )
    .await;
}
