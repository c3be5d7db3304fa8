//! `DynamoDbStore`'s errors say why, on one line: the DynamoDB operation, the table and the cause
//! (DynamoDB's error code and message, or the connection failure and the endpoint), because a
//! Lambda error response only carries `Display`. And a write over DynamoDB's item size limit is
//! `StoreError::ItemTooLarge`, not a backend failure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_idempotency::{
    DataRecord, DynamoDbStore, Error, Idempotency, IdempotencyLayer, IdempotencyStore, Status,
    StoreError,
};
use powertools_tests::{FaultProxy, create_idempotency_table, dynamodb_client, unique_table_name};
use serde_json::{Value, json};

fn in_progress(key: &str) -> DataRecord {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let (now_s, now_ms) = (since.as_secs() as i64, since.as_millis() as i64);
    DataRecord::new(key, Status::InProgress, now_s + 3600).with_in_progress_expiry(now_ms + 60_000)
}

fn completed(record: &DataRecord, response: String) -> DataRecord {
    let mut completed = record.clone().with_response_data(response);
    completed.status = Status::Completed;
    completed
}

/// The backend error inside a `StoreError`, or a panic naming what it is instead.
fn backend(error: &StoreError) -> &(dyn std::error::Error + Send + Sync + 'static) {
    match error {
        StoreError::Backend(source) => source.as_ref(),
        other => panic!("a backend error, not {other:?}"),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{part:?} is missing from {message:?}"
        );
    }
}

/// A client with static settings sending to `endpoint`, without retries: no server needed.
fn client_for(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[tokio::test]
async fn a_missing_table_names_the_operation_the_table_and_dynamodbs_answer() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = unique_table_name("missing");
    let store = DynamoDbStore::new(client, &table).expect("valid store settings");
    let record = in_progress("orders#missing");

    let put = store
        .put_in_progress(&record, SystemTime::now())
        .await
        .expect_err("no table");
    let get = store.get(&record.key).await.expect_err("no table");
    let update = store
        .update(&completed(&record, "{}".into()))
        .await
        .expect_err("no table");
    let delete = store.delete(&record).await.expect_err("no table");
    let mut claim = record.clone();
    claim.claim_id = Some("0123456789abcdef0123456789abcdef".to_owned());
    let mut fence = record.clone().with_in_progress_expiry(0);
    fence.claim_id = Some("fence-0123456789abcdef0123456789abcdef".to_owned());
    let release = store
        .replace_with_fence(&claim, &fence)
        .await
        .expect_err("no table");

    for (error, operation) in [
        (&put, "PutItem"),
        (&get, "GetItem"),
        (&update, "UpdateItem"),
        (&delete, "DeleteItem"),
        (&release, "UpdateItem"),
    ] {
        let message = error.to_string();
        assert_mentions(
            &message,
            &[
                operation,
                &table,
                "ResourceNotFoundException: Requested resource not found",
            ],
        );
    }
    // The SDK's error is kept as the source, for whoever needs more than the message.
    let source = backend(&put).source().expect("the SDK error as source");
    assert!(
        source.downcast_ref::<SdkError<PutItemError>>().is_some(),
        "{source:?}"
    );
    let source = backend(&get).source().expect("the SDK error as source");
    assert!(
        source.downcast_ref::<SdkError<GetItemError>>().is_some(),
        "{source:?}"
    );
}

#[tokio::test]
async fn a_missing_table_reaches_the_lambda_error_response_through_the_layer() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = unique_table_name("missing");
    let store = DynamoDbStore::new(client, &table).expect("valid store settings");
    let idempotency = Idempotency::builder(store)
        .build()
        .expect("valid idempotency settings");
    let service = ServiceBuilder::new()
        .layer(IdempotencyLayer::new(idempotency))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        }));
    let error = service
        .oneshot(TestContext::new().event(json!({"order": 1})))
        .await
        .expect_err("no table");
    let message = error.to_string();
    assert_mentions(&message, &["PutItem", &table, "ResourceNotFoundException"]);
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "IdempotencyPersistenceLayerError");
    assert_mentions(
        &diagnostic.error_message,
        &["PutItem", &table, "ResourceNotFoundException"],
    );
}

#[tokio::test]
async fn a_table_keyed_on_another_attribute_is_a_validation_exception() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = unique_table_name("other-key");
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("complete key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("the test server creates the table");
    let store = DynamoDbStore::new(client, &table).expect("valid store settings");

    let error = store
        .put_in_progress(&in_progress("orders#1"), SystemTime::now())
        .await
        .expect_err("the key attribute is not the table's");
    assert_mentions(
        &error.to_string(),
        &[
            "PutItem",
            &table,
            // DynamoDB and moto say the same here.
            "ValidationException: One or more parameter values were invalid: Missing the key pk \
             in the item",
            // DynamoDB names the table's key, not the store's: both, to compare (found by an
            // attack from the docs: no hint at `key_attr`).
            "this store keys records on partition key id alone",
            "key_attr",
        ],
    );
    let error = store.get("orders#1").await.expect_err("wrong key");
    assert_mentions(
        &error.to_string(),
        &[
            "GetItem",
            &table,
            "ValidationException: The provided key element does not match the schema",
        ],
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_endpoint_and_the_cause() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    let store = DynamoDbStore::new(client_for(&format!("http://127.0.0.1:{port}")), "orders")
        .expect("valid store settings");

    let error = store
        .put_in_progress(&in_progress("orders#1"), SystemTime::now())
        .await
        .expect_err("nothing listens");
    assert_mentions(
        &error.to_string(),
        &[
            "PutItem",
            "orders",
            &format!("127.0.0.1:{port}"),
            "Connection refused",
        ],
    );
    let error = store
        .delete(&in_progress("orders#1"))
        .await
        .expect_err("nothing listens");
    assert_mentions(
        &error.to_string(),
        &[
            "DeleteItem",
            &format!("127.0.0.1:{port}"),
            "Connection refused",
        ],
    );
}

#[tokio::test]
async fn a_reset_connection_names_the_endpoint_and_the_cause() {
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let store = DynamoDbStore::new(proxy.client().await, "orders").expect("valid store settings");
    proxy.set(json!({"action": "refuse"}));

    let error = store.get("orders#1").await.expect_err("reset");
    let message = error.to_string();
    assert_mentions(
        &message,
        &["GetItem", "orders", &format!("127.0.0.1:{}", proxy.port())],
    );
    assert!(
        ["reset", "closed", "refused"]
            .iter()
            .any(|cause| message.to_lowercase().contains(cause)),
        "no cause in {message:?}"
    );
}

#[tokio::test]
async fn a_timeout_names_the_endpoint() {
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let client = proxy.client().await;
    let config = client
        .config()
        .to_builder()
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "orders")
        .expect("valid store settings");
    proxy.set(json!({"action": "hang"}));

    let error = store.get("orders#1").await.expect_err("no answer");
    assert_mentions(
        &error.to_string(),
        &[
            "GetItem",
            "orders",
            "timed out",
            &format!("127.0.0.1:{}", proxy.port()),
        ],
    );
}

/// A string of `len` bytes.
fn big(len: usize) -> String {
    "x".repeat(len)
}

#[tokio::test]
async fn an_update_over_the_item_size_limit_is_item_too_large() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let store = DynamoDbStore::new(client, &table).expect("valid store settings");
    let record = in_progress("orders#big-response");
    store
        .put_in_progress(&record, SystemTime::now())
        .await
        .expect("stored");

    let error = store
        .update(&completed(&record, big(450 * 1024)))
        .await
        .expect_err("over 400 KB");
    match &error {
        StoreError::ItemTooLarge { key, reason } => {
            assert_eq!(key, &record.key);
            assert_mentions(
                reason,
                &["UpdateItem", &table, "exceeded the maximum allowed size"],
            );
        }
        other => panic!("ItemTooLarge, not {other:?}: {other}"),
    }
    // A small response still fits. (moto, unlike DynamoDB, has already applied the SETs before
    // the oversized one, so the record in between is not checked.)
    let small = completed(&record, "{}".into());
    store.update(&small).await.expect("a small response fits");
    assert_eq!(store.get(&record.key).await.expect("readable"), Some(small));
}

#[tokio::test]
async fn a_put_over_the_item_size_limit_is_item_too_large() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let store = DynamoDbStore::new(client, &table).expect("valid store settings");
    let record = in_progress("orders#big-hash").with_payload_hash(big(450 * 1024));

    let error = store
        .put_in_progress(&record, SystemTime::now())
        .await
        .expect_err("over 400 KB");
    match &error {
        StoreError::ItemTooLarge { key, reason } => {
            assert_eq!(key, &record.key);
            assert_mentions(
                reason,
                &["PutItem", &table, "exceeded the maximum allowed size"],
            );
        }
        other => panic!("ItemTooLarge, not {other:?}: {other}"),
    }
}

#[tokio::test]
async fn a_call_that_times_out_before_any_request_went_out_says_so_instead_of_guessing_the_endpoint()
 {
    // Given a client whose credentials never come (an instance metadata endpoint that accepts
    // connections and never answers), configured in code with an endpoint the store cannot see
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let metadata = aws_config::imds::Client::builder()
        .endpoint(format!(
            "http://127.0.0.1:{}",
            silent.local_addr().expect("bound").port()
        ))
        .expect("a valid endpoint")
        .build();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:8000")
        .credentials_provider(
            aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                .imds_client(metadata)
                .build(),
        )
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "orders")
        .expect("valid store");
    let idempotency = Idempotency::builder(store)
        .store_timeout(Duration::from_millis(300))
        .build()
        .expect("valid settings");

    // When the claim gets no answer
    let error = idempotency
        .run(
            &TestContext::new()
                .with_remaining_time(Duration::from_secs(30))
                .build(),
            "charge",
            "pay-1",
            |_| async { Ok::<_, std::io::Error>(1) },
        )
        .await
        .expect_err("no credentials, no claim");

    // Then the error names the operation and the table, and says no request went out (the SDK
    // was still getting ready to send: credentials, here), with the endpoint the client was
    // given, which the call's config shows (it named the region's, where the client never
    // sends; found by a review)
    let message = error.to_string();
    assert!(
        message.contains(
            "DynamoDB PutItem on table orders before any request was sent (endpoint URL \
             \"http://127.0.0.1:8000\"): no answer within 300 ms"
        ),
        "{message}"
    );
    drop(silent);
}

/// A store configured with a sort key the table does not have (its key schema is `id` alone):
/// every claim wrote the one item keyed on the static partition value, so the first key's
/// handler ran and failed its completion with DynamoDB's bare "key element does not match the
/// schema", and every other key was told "already in progress" with its own key, from the first
/// key's record, with its handler never run and nothing naming the cause. Then the first key's
/// handler ran (a charge, once per deadline) before its completion named the cause (found by an
/// attack: DynamoDB stores `sk` as an attribute, so the first claim cannot be told from a right
/// one). Now a store with a sort key reads its key once before its first claim, which DynamoDB
/// refuses on such a table: no handler runs, and the error names the store's key and the key
/// schema.
#[tokio::test]
async fn a_sort_key_the_table_does_not_have_is_named_instead_of_blocking_other_keys() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let store = DynamoDbStore::builder(client, &table)
        .sort_key_attr("sk")
        .static_pk_value("idempotency#orders")
        .build()
        .expect("valid store settings");
    let idempotency = Idempotency::builder(store)
        .key_prefix("orders")
        .build()
        .expect("valid settings");
    let context = TestContext::new().build();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let charge = |order: &'static str| {
        let runs = runs.clone();
        idempotency.run(&context, "charge", order, move |order| async move {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("charged {order}"))
        })
    };

    for order in ["order-1", "order-1", "order-2"] {
        let error = charge(order)
            .await
            .expect_err("the key schema does not match");
        assert_eq!(
            error.error_type(),
            "IdempotencyPersistenceLayerError",
            "{error}"
        );
        assert_mentions(
            &error.to_string(),
            &[
                "GetItem",
                &table,
                "The provided key element does not match the schema",
                "partition key id",
                "sort key sk",
                "key schema",
            ],
        );
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no handler runs"
        );
    }
}

/// A table keyed on `pk` and `sk` (strings); its name.
async fn create_composite_table(client: &aws_sdk_dynamodb::Client) -> String {
    let table = unique_table_name("composite");
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("complete attribute definition")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("complete key schema")
    };
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("the test server creates the table");
    table
}

/// The key read a store with a sort key makes before its first claim costs one request, once
/// per store and its clones, on a table with the sort key: every claim after it is the usual
/// one `PutItem`, and records are kept per key.
#[tokio::test]
async fn a_sort_key_store_reads_its_key_once_then_claims_as_usual() {
    let Some((client, requests)) = powertools_tests::counted_dynamodb_client().await else {
        return;
    };
    let table = create_composite_table(&client).await;
    let store = DynamoDbStore::builder(client, &table)
        .key_attr("pk")
        .sort_key_attr("sk")
        .static_pk_value("idempotency#orders")
        .build()
        .expect("valid store settings");

    let (first, first_requests) = requests
        .during(store.put_in_progress(&in_progress("orders#1"), SystemTime::now()))
        .await;
    assert!(
        matches!(first, Ok(powertools_idempotency::PutOutcome::Stored)),
        "{first:?}"
    );
    assert_eq!(first_requests, 2, "the key read, then PutItem");
    // A clone shares what the first claim learnt.
    let clone = store.clone();
    let (second, second_requests) = requests
        .during(clone.put_in_progress(&in_progress("orders#2"), SystemTime::now()))
        .await;
    assert!(
        matches!(second, Ok(powertools_idempotency::PutOutcome::Stored)),
        "{second:?}"
    );
    assert_eq!(second_requests, 1, "PutItem alone");
    let (again, _) = requests
        .during(store.put_in_progress(&in_progress("orders#1"), SystemTime::now()))
        .await;
    assert!(
        matches!(&again, Ok(powertools_idempotency::PutOutcome::Exists(Some(record))) if record.key == "orders#1"),
        "{again:?}"
    );
    // A failed handler's release writes its fence under the composite key, in place of the claim
    let mut claim = in_progress("orders#3");
    claim.claim_id = Some("c3".to_owned());
    let mut fence = claim.clone().with_in_progress_expiry(0);
    fence.claim_id = Some("fence-3".to_owned());
    store
        .put_in_progress(&claim, SystemTime::now())
        .await
        .expect("the claim");
    store
        .replace_with_fence(&claim, &fence)
        .await
        .expect("the release");
    assert_eq!(store.get("orders#3").await.expect("the read"), Some(fence));
    assert!(
        store
            .get("orders#1")
            .await
            .expect("the read")
            .is_some_and(|record| !record.is_fence()),
        "another key's record is left as it is"
    );
}

/// The key read throttled until the store timeout ends the claim: the error names `GetItem`,
/// the call DynamoDB throttled (it named `PutItem`, which the claim never reached: found by a
/// review), and DynamoDB's answer.
#[tokio::test]
async fn a_key_read_throttled_past_the_store_timeout_is_named_as_the_read() {
    let Some(direct) = dynamodb_client().await else {
        return;
    };
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let table = create_composite_table(&direct).await;
    let client = proxy
        .client_retrying(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                .with_max_attempts(50)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .await;
    let store = DynamoDbStore::builder(client, &table)
        .key_attr("pk")
        .sort_key_attr("sk")
        .static_pk_value("idempotency#orders")
        .build()
        .expect("valid store settings");
    let idempotency = Idempotency::builder(store)
        .store_timeout(Duration::from_millis(1500))
        .build()
        .expect("valid settings");
    proxy.set(json!({"action": "error", "status": 400, "code": "ThrottlingException", "target": "GetItem"}));
    let context = TestContext::new()
        .with_remaining_time(Duration::from_secs(30))
        .build();
    let error = idempotency
        .run(&context, "charge", "pay-1", |_| async {
            Ok::<_, std::io::Error>(1)
        })
        .await
        .expect_err("the key read never succeeds");
    assert_eq!(proxy.requests("PutItem"), 0);
    assert_mentions(
        &error.to_string(),
        &[
            "GetItem",
            "before its first claim",
            &table,
            "ThrottlingException",
        ],
    );
}

/// A stored record this crate cannot read (a status Powertools for Python defines, `EXPIRED`)
/// blocks its key until it expires: the error names the table it lives in, as every store
/// error does (found by an attack from the docs: it named the key alone).
#[tokio::test]
async fn an_unreadable_record_s_error_names_its_table() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let store = DynamoDbStore::new(client.clone(), &table).unwrap();
    let idempotency = Idempotency::builder(store)
        .key_prefix("errors")
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let key = idempotency.key_for(&context, "charge", &json!("order-4"));
    let in_an_hour = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    client
        .put_item()
        .table_name(&table)
        .item("id", AttributeValue::S(key))
        .item("expiration", AttributeValue::N(in_an_hour.to_string()))
        .item("status", AttributeValue::S("EXPIRED".into()))
        .send()
        .await
        .unwrap();
    let error = idempotency
        .run(
            &context,
            "charge",
            "order-4".to_owned(),
            |order: String| async move { Ok::<_, std::io::Error>(order) },
        )
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::InvalidRecord { .. }), "{text}");
    for part in [table.as_str(), "EXPIRED"] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
}

/// A store that answers every claim "the record exists" without the record, and then has no
/// record: after its retries the claim fails as inconsistent, naming the table, the calls and
/// what they answered (found by an attack from the docs: it named the key alone).
#[tokio::test]
async fn an_inconsistent_store_s_error_names_the_table_and_what_it_answered() {
    let Some(proxy) = FaultProxy::start().await else {
        return;
    };
    let Some(admin) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&admin).await;
    let store = DynamoDbStore::new(proxy.client().await, &table).unwrap();
    let idempotency = Idempotency::builder(store)
        .key_prefix("errors")
        .build()
        .unwrap();
    proxy.set(json!({"action": "error", "status": 400, "code": "ConditionalCheckFailedException", "target": "PutItem"}));
    let context = TestContext::new().build();
    let error = idempotency
        .run(
            &context,
            "charge",
            "order-7".to_owned(),
            |order: String| async move { Ok::<_, std::io::Error>(order) },
        )
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::InconsistentState { .. }), "{text}");
    for part in [table.as_str(), "PutItem", "GetItem", "no record"] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
}

/// A key over DynamoDB's size limit for its attribute (2048 bytes for a partition key, 1024 for
/// a sort key) is refused before any request, naming the settings that make it long, the limit
/// and the table; nothing is taken back or said to be stored. It was sent, and DynamoDB's
/// `ValidationException` named neither `key_prefix` nor the operation, at every invocation
/// (found by an attack from the docs). A prefix with a control character is refused at build,
/// as an operation name with one is.
#[tokio::test]
async fn a_key_over_dynamodb_s_limit_names_the_settings_that_make_it() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    for (sort_key, prefix_bytes, limit) in [(false, 1990, "2048"), (true, 1000, "1024")] {
        let mut store = DynamoDbStore::builder(client.clone(), &table);
        if sort_key {
            store = store
                .sort_key_attr("sk")
                .static_pk_value("idempotency#orders");
        }
        let idempotency = Idempotency::builder(store.build().expect("valid store settings"))
            .key_prefix("p".repeat(prefix_bytes))
            .build()
            .expect("valid settings");
        let warnings = powertools_tests::CapturedWarnings::default();
        let _guard = tracing::subscriber::set_default(warnings.subscriber());
        let context = TestContext::new().build();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let error = idempotency
            .run(&context, "charge", "order-1", |_| async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(1u8)
            })
            .await
            .expect_err("the key is too long");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_mentions(
            &error.to_string(),
            &["key_prefix", "operation", limit, &table],
        );
        let warned = warnings.text();
        assert!(!warned.contains("may be stored"), "{warned}");
    }
    // The static partition key of a table with a sort key: refused when the store is built
    // (it was sent, a review found).
    let refused = DynamoDbStore::builder(client.clone(), &table)
        .sort_key_attr("sk")
        .static_pk_value("p".repeat(2049))
        .build()
        .expect_err("a static partition key over the limit");
    assert_mentions(&refused.to_string(), &["static_pk_value", "2049", "2048"]);
    DynamoDbStore::builder(client.clone(), &table)
        .sort_key_attr("sk")
        .static_pk_value("é".repeat(1024))
        .build()
        .expect("2048 bytes is within the limit");
    let store = DynamoDbStore::new(client, &table).expect("valid store");
    let refused = Idempotency::builder(store)
        .key_prefix("orders\nadmin")
        .build()
        .expect_err("a control character in the prefix");
    assert_mentions(&refused.to_string(), &["key_prefix", "control"]);
}

/// An attribute name with a control character, or white space at an end (`"ttl "`), is refused
/// when the store is built, naming the setting: DynamoDB takes it, and a table whose TTL is on
/// `ttl` never deleted the records (found by an attack from the docs). White space inside a
/// name is DynamoDB's to take.
#[test]
fn an_attribute_name_with_a_control_character_or_white_space_at_an_end_is_refused() {
    let client = client_for("http://127.0.0.1:9");
    type Setting = fn(
        powertools_idempotency::DynamoDbStoreBuilder,
        &str,
    ) -> powertools_idempotency::DynamoDbStoreBuilder;
    let settings: [(&str, Setting); 3] = [
        ("expiry_attr", |store, name| store.expiry_attr(name)),
        ("status_attr", |store, name| store.status_attr(name)),
        ("key_attr", |store, name| store.key_attr(name)),
    ];
    for (setting, set) in settings {
        for name in ["ttl ", " ttl", "s\n", "a\u{7}b"] {
            let error = set(DynamoDbStore::builder(client.clone(), "orders"), name)
                .build()
                .err()
                .unwrap_or_else(|| panic!("{setting} {name:?} is refused"));
            assert_eq!(error.error_type(), "IdempotencyConfigurationError");
            assert_mentions(&error.to_string(), &[setting, &format!("{name:?}")]);
        }
        set(
            DynamoDbStore::builder(client.clone(), "orders"),
            "time to live",
        )
        .build()
        .expect("white space inside a name is DynamoDB's to take");
    }
}

/// The attributes the store writes of its own (a claim's id, why a response was not stored)
/// cannot be configured as another attribute: a completion would write the reason over the
/// response, or a claim's id over its status.
#[test]
fn an_attribute_named_as_one_the_store_writes_of_its_own_is_refused() {
    let client = client_for("http://127.0.0.1:9");
    for (name, says) in [
        ("claim_id", "claim ids"),
        ("not_stored_reason", "holds no response"),
    ] {
        let error = DynamoDbStore::builder(client.clone(), "orders")
            .data_attr(name)
            .build()
            .err()
            .unwrap_or_else(|| panic!("data_attr {name:?} is refused"));
        assert_eq!(error.error_type(), "IdempotencyConfigurationError");
        assert_mentions(&error.to_string(), &["data_attr", name, says]);
    }
}
