//! Errors that hid their cause, found by an attack from the docs (2026-12-05): each test asserts
//! what the message says, and each failed before its fix.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{Read, Write};

use lambda_runtime::{
    LambdaEvent, service_fn,
    tower::{ServiceBuilder, ServiceExt},
};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{DynamoDbStore, Error, Idempotency};
use powertools_tests::{
    create_idempotency_table, dynamodb_client, idempotency_whose_release_is_refused,
};
use serde_json::{Value, json};

/// `charging the order failed` ← `HTTP request to the payment provider failed` ← io error.
#[derive(Debug)]
struct Wrapped(&'static str, Box<dyn std::error::Error + Send + Sync>);
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.1)
    }
}
fn charge_error() -> lambda_runtime::Error {
    let root = std::io::Error::other("connect to payments.internal:443 refused");
    Box::new(Wrapped(
        "charging the order failed",
        Box::new(Wrapped(
            "HTTP request to the payment provider failed",
            Box::new(root),
        )),
    ))
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn stack(logs: &powertools::logging::MemoryLogs) -> Powertools {
    Powertools::builder()
        .service("attk")
        .env(Env::from_pairs([
            ("POWERTOOLS_TRACE_DISABLED", "true"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Attk"),
        ]))
        .logger(|logger| logger.writer(logs.clone()))
        .metrics(|metrics| metrics.sink(powertools::metrics::MemorySink::new()))
        .build()
        .unwrap()
}

/// F1: the handler failed and deleting its claim failed too: the handler's causes are gone
/// from Display, from source() and from what Lambda gets (errorMessage is this Display).
#[tokio::test]
async fn delete_failed_keeps_the_handler_errors_causes() {
    let Some((_proxy, idempotency)) = idempotency_whose_release_is_refused().await else {
        return;
    };
    let context = TestContext::new().build();
    let error = idempotency
        .run(&context, "charge", "order-1", |_| async {
            Err::<String, _>(charge_error())
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DeleteFailed { .. }), "{error}");
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    // Today: "charging the order failed; releasing the in-progress record then failed too: DynamoDB UpdateItem …"
    assert!(
        diagnostic
            .error_message
            .contains("connect to payments.internal:443 refused"),
        "errorMessage hides the handler's cause: {}",
        diagnostic.error_message
    );
}

/// F1b: the same through the stack: the failure line of a panic whose claim could not be
/// deleted loses the panic's location and stack trace (and says "Invocation failed").
#[tokio::test(flavor = "current_thread")]
async fn delete_failed_after_a_panic_keeps_the_panic_location() {
    use powertools::idempotency::IdempotencyLayer;
    let Some((_proxy, idempotency)) = idempotency_whose_release_is_refused().await else {
        return;
    };
    let logs = powertools::logging::MemoryLogs::new();
    let powertools = stack(&logs);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency)
                .key_from(|event: &Value| Some(event["order_id"].clone())),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async {
            if true {
                panic!("oven on fire");
            }
            Ok::<Value, lambda_runtime::Error>(json!({}))
        }));
    let _ = service
        .oneshot(TestContext::new().event(json!({"order_id": "o-1"})))
        .await;
    let failure = logs
        .json()
        .into_iter()
        .find(|line| line["level"] == "ERROR")
        .unwrap();
    assert!(
        failure["location"]
            .as_str()
            .unwrap()
            .contains("error_causes.rs")
            && failure.get("stack_trace").is_some(),
        "the panic's location and stack trace are lost: {failure}"
    );
}

/// F2: a batch record whose handler returns the AWS SDK's own error types (the SDK's
/// documented `Result<_, aws_sdk_dynamodb::Error>` pattern, or `SdkError` from `.send()`):
/// the reason is "unhandled error" / "dispatch failure", the connection refusal is gone.
#[tokio::test(flavor = "current_thread")]
async fn batch_record_with_an_sdk_error_names_its_cause() {
    use powertools::aws_sdk_dynamodb as ddb;
    use powertools::batch::{BatchProcessor, SqsRecord};
    let config = ddb::Config::builder()
        .behavior_version_latest()
        .region(ddb::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:1")
        .retry_config(ddb::config::retry::RetryConfig::disabled())
        .credentials_provider(ddb::config::Credentials::new("a", "s", None, None, "test"))
        .build();
    let client = ddb::Client::from_conf(config);
    let event: powertools::events::sqs::SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{\"id\": \"o-1\"}", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q"}
    ]})).unwrap();
    let error = BatchProcessor::new()
        .process_sqs(&event, |record: SqsRecord<Value>| {
            let client = client.clone();
            async move {
                let id = record.body["id"].as_str().unwrap_or_default().to_owned();
                client
                    .put_item()
                    .table_name("orders")
                    .item("id", ddb::types::AttributeValue::S(id))
                    .send()
                    .await?;
                Ok::<(), ddb::Error>(())
            }
        })
        .await
        .unwrap_err();
    // It was: "all 1 records of the batch failed; the first: unhandled error" (and the
    // record's `a batch record failed` line has reason "unhandled error").
    assert!(error.to_string().contains("Connection refused"), "{error}");
}

/// F3: an answer that is not DynamoDB's JSON (a proxy, a gateway, a WAF): the body's own words
/// ("Rate exceeded") are replaced by a JSON parser's message, and an empty body reads "Error".
#[tokio::test]
async fn a_non_json_answer_says_what_came_back() {
    let answer = |status: &'static str, body: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut buffer = vec![0_u8; 1 << 16];
                while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        port
    };
    let store = |port: u16| {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "a", "s", None, None, "test",
            ))
            .build();
        Idempotency::builder(
            DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency").unwrap(),
        )
        .build()
        .unwrap()
    };
    let context = TestContext::new().build();
    let rate = store(answer("429 Too Many Requests", "Rate exceeded"));
    let error = rate
        .run(&context, "op", 1, |_| async { Ok::<u8, std::io::Error>(1) })
        .await
        .unwrap_err();
    // Today: "… HTTP 429 without an error code: Error at offset 0: unexpected token 'R'. Expected one of '{', …"
    assert!(
        error.to_string().contains("Rate exceeded"),
        "{}",
        chain(&error)
    );
    let empty = store(answer("403 Forbidden", ""));
    let error = empty
        .run(&context, "op", 1, |_| async { Ok::<u8, std::io::Error>(1) })
        .await
        .unwrap_err();
    // Today: "… HTTP 403 without an error code: Error"
    assert!(!error.to_string().ends_with(": Error"), "{}", chain(&error));
}

/// F4: a stored response that does not read: the message says to delete the record, but not
/// in which table, nor that the stored data is not JSON at all.
#[tokio::test]
async fn an_unreadable_stored_response_names_the_table() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let idempotency = Idempotency::builder(DynamoDbStore::new(client.clone(), &table).unwrap())
        .build()
        .unwrap();
    let context = TestContext::new().build();
    let key = idempotency.key_for(&context, "op", &json!("k"));
    let expiration = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    client
        .put_item()
        .table_name(&table)
        .item("id", aws_sdk_dynamodb::types::AttributeValue::S(key))
        .item(
            "expiration",
            aws_sdk_dynamodb::types::AttributeValue::N(expiration),
        )
        .item(
            "status",
            aws_sdk_dynamodb::types::AttributeValue::S("COMPLETED".into()),
        )
        .item(
            "data",
            aws_sdk_dynamodb::types::AttributeValue::S("not json {".into()),
        )
        .send()
        .await
        .unwrap();
    let error = idempotency
        .run(&context, "op", "k", |_| async {
            Ok::<String, std::io::Error>("ran".into())
        })
        .await
        .unwrap_err();
    // Today: "the stored response of idempotency key … does not read as alloc::string::String:
    // expected ident at line 1 column 2; … or is deleted (was the response type changed …?)"
    assert!(error.to_string().contains(&table), "{error}");
}

/// F5: an error whose Display is empty: errorMessage "" and `"exception":""`.
#[tokio::test(flavor = "current_thread")]
async fn an_error_with_an_empty_message_still_says_something() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Declined {
        code: u16,
    }
    impl std::fmt::Display for Declined {
        fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Ok(())
        }
    }
    impl std::error::Error for Declined {}
    let logs = powertools::logging::MemoryLogs::new();
    let powertools = stack(&logs);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_e: LambdaEvent<Value>| async {
            Err::<Value, lambda_runtime::Error>(Box::new(Declined { code: 402 }))
        }));
    let _ = service.oneshot(TestContext::new().event(json!({}))).await;
    let failure = logs
        .json()
        .into_iter()
        .find(|line| line["level"] == "ERROR")
        .unwrap();
    assert_ne!(failure["exception"], "", "{failure}");
}

/// The handler's own typed error, then the release of its claim failing: the failure line
/// names the error as Lambda reports it (`errorType`), with the handler's error in the
/// message, as every other idempotency error's line does (noticed in session 30: the outer
/// layers looked for the report by `Debug` text and did not find this one).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_release_after_a_typed_handler_error_is_named_as_lambda_reports_it() {
    use powertools::idempotency::IdempotencyLayer;
    use powertools_tests::PaymentError;
    let Some((_proxy, idempotency)) = idempotency_whose_release_is_refused().await else {
        return;
    };
    let logs = powertools::logging::MemoryLogs::new();
    let powertools = stack(&logs);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency)
                .key_from(|event: &Value| Some(event["order_id"].clone())),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async {
            Err::<Value, PaymentError>(PaymentError::Declined { code: 51 })
        }));
    let error = service
        .oneshot(TestContext::new().event(json!({"order_id": "o-1"})))
        .await
        .unwrap_err();
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    let failure = logs
        .json()
        .into_iter()
        .find(|line| line["level"] == "ERROR")
        .unwrap();
    assert_eq!(
        failure["exception_name"], diagnostic.error_type,
        "{failure} against {diagnostic:?}"
    );
    // The handler's error by what the layer outside can know of it (its `Debug`), then
    // Lambda's words; not the store error's whole `Debug` (the SDK's raw response).
    let exception = failure["exception"].as_str().unwrap();
    assert!(
        exception.starts_with("Declined { code: 51 }; releasing the in-progress record")
            && exception.contains("AccessDeniedException")
            && !exception.contains("SdkBody"),
        "{exception}"
    );
    assert!(
        diagnostic
            .error_message
            .contains("the card was declined (51)")
            && diagnostic.error_message.contains("AccessDeniedException"),
        "{diagnostic:?}"
    );
}
