//! Lines that are right when it matters: key scopes of concurrent work, the failure line of an
//! invocation, bounded lines, secrets inside string-encoded JSON, fields named like standard
//! keys, and event types that are not `Serialize`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use futures_util::FutureExt;
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{Error, Logger, LoggerBuilder, LoggingLayer, MemoryLogs, REDACTED};
use serde_json::{Value, json};
use tracing::Instrument;

fn builder(logs: &MemoryLogs) -> LoggerBuilder {
    Logger::builder()
        .service("payments")
        .writer(logs.clone())
        .env(Env::empty())
}

fn lines_with(logs: &MemoryLogs, message: &str) -> Vec<Value> {
    logs.json()
        .into_iter()
        .filter(|line| line["message"] == message)
        .collect()
}

#[derive(Debug)]
struct PaymentFailed {
    order_id: String,
    cause: std::io::Error,
}

impl fmt::Display for PaymentFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payment of {} failed", self.order_id)
    }
}

impl StdError for PaymentFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.cause)
    }
}

fn declined(order_id: &str) -> PaymentFailed {
    PaymentFailed {
        order_id: order_id.to_owned(),
        cause: std::io::Error::other("card declined"),
    }
}

// Item 1: concurrent work of one invocation keeps its own keys.

#[tokio::test]
async fn concurrent_key_scopes_keep_their_own_keys_and_inherit_the_invocations() {
    // Given an invocation that appends a key, then runs 20 refunds at once, each in a key scope
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger).layer(service_fn(|_: LambdaEvent<Value>| async {
        powertools_logging::append_key("customer_id", "c-7")?;
        let refunds = (0..20).map(|index| {
            powertools_logging::key_scope(async move {
                powertools_logging::append_key("refund_id", format!("rf-{index}"))?;
                tokio::time::sleep(Duration::from_millis(20 - index)).await;
                tracing::info!(index, "refund issued");
                // A task spawned in the scope's span logs with the scope's keys too.
                tokio::spawn(
                    async move { tracing::info!(index, "receipt sent") }
                        .instrument(tracing::info_span!("receipt")),
                )
                .await?;
                Ok::<_, lambda_runtime::Error>(())
            })
        });
        for refund in futures_util::future::join_all(refunds).await {
            refund?;
        }
        tracing::info!("all refunds issued");
        Ok::<_, lambda_runtime::Error>(())
    }));
    service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    // Then every refund line carries its own refund id and the invocation's key
    for message in ["refund issued", "receipt sent"] {
        let lines = lines_with(&logs, message);
        assert_eq!(lines.len(), 20, "{message}");
        for line in lines {
            assert_eq!(
                line["refund_id"],
                format!("rf-{}", line["index"]),
                "{message}: {line}"
            );
            assert_eq!(line["customer_id"], "c-7");
        }
    }
    // And the scopes' keys end with them
    let after = &lines_with(&logs, "all refunds issued")[0];
    assert!(after.get("refund_id").is_none(), "{after}");
}

#[tokio::test]
async fn a_key_appended_as_none_is_left_out_of_the_lines_as_python_leaves_it_out() {
    // Powertools for Python 3.37 drops every top-level key whose value is None:
    // `append_keys(customer_id=None)` writes no `customer_id`. An `Option` field appended as it
    // is must not write `"customer_id":null` where Python writes nothing (`ispresent()` queries).
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    logger.append_persistent_key("region", "eu-west-1").unwrap();
    logger.append_persistent_key("team", "payments").unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger).layer(service_fn(|_: LambdaEvent<Value>| async {
        powertools_logging::append_key("customer_id", None::<String>)?;
        powertools_logging::append_key("order", json!({"note": null}))?;
        // Python has one set of keys: None hides the persistent key of that name too.
        powertools_logging::append_key("region", Option::<&str>::None)?;
        tracing::info!("no customer");
        powertools_logging::append_key("coupon", "c-7")?;
        powertools_logging::key_scope(async {
            powertools_logging::append_key("coupon", None::<&str>)?;
            tracing::info!("in the scope");
            Ok::<_, lambda_runtime::Error>(())
        })
        .await?;
        powertools_logging::append_key("customer_id", Some("cu-1"))?;
        tracing::info!("a customer");
        // `location` is a key the line writes (the code's location): None leaves it out too.
        powertools_logging::append_key("location", None::<&str>)?;
        tracing::info!("nowhere");
        Ok::<_, lambda_runtime::Error>(())
    }));
    service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    let first = &lines_with(&logs, "no customer")[0];
    assert!(first.get("customer_id").is_none(), "{first}");
    assert!(first.get("region").is_none(), "{first}");
    assert_eq!(first["team"], "payments");
    // Only top-level keys: a null inside a value is the value's.
    assert_eq!(first["order"], json!({"note": null}));
    let scoped = &lines_with(&logs, "in the scope")[0];
    assert!(scoped.get("coupon").is_none(), "{scoped}");
    let last = &lines_with(&logs, "a customer")[0];
    assert_eq!(last["customer_id"], "cu-1");
    assert_eq!(last["coupon"], "c-7");
    assert!(last.get("region").is_none(), "{last}");
    assert!(last["location"].is_string(), "{last}");
    let nowhere = &lines_with(&logs, "nowhere")[0];
    assert!(nowhere.get("location").is_none(), "{nowhere}");
    for line in logs.json() {
        assert!(
            line.as_object()
                .unwrap()
                .values()
                .all(|value| !value.is_null()),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_key_scope_outside_an_invocation_has_keys_of_its_own() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    powertools_logging::key_scope(async {
        powertools_logging::append_key("job", "nightly").unwrap();
        tracing::info!("started");
    })
    .await;
    assert!(matches!(
        powertools_logging::append_key("job", "x"),
        Err(Error::NoCurrentInvocation)
    ));
    assert_eq!(logs.json()[0]["job"], "nightly");
}

// Item 2: a failed invocation is logged with its context, in Powertools' exception keys.

#[cfg(feature = "jmespath")]
#[tokio::test]
async fn a_failed_invocation_writes_one_error_line_with_its_context_and_exception_keys() {
    // Given a handler that appends a key and returns an error with a source
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger)
        .correlation_id_path(powertools_logging::correlation_paths::API_GATEWAY_REST)
        .unwrap()
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            powertools_logging::append_key("order_id", "o-1")?;
            Err::<Value, lambda_runtime::Error>(Box::new(declined("o-1")))
        }));
    let context = TestContext::new().with_request_id("req-9").with_trace_id(
        "Root=1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a;Parent=53995c3f42cd8ad8;Sampled=1",
    );

    // When it is invoked
    let error = service
        .oneshot(context.event(json!({"requestContext": {"requestId": "api-1"}})))
        .await
        .unwrap_err();

    // Then the error goes on unchanged, and one ERROR line says what failed, in which invocation
    assert_eq!(error.to_string(), "payment of o-1 failed");
    let errors: Vec<Value> = logs
        .json()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let line = &errors[0];
    assert_eq!(line["message"], "Invocation failed");
    assert_eq!(line["function_request_id"], "req-9");
    assert_eq!(line["xray_trace_id"], "1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a");
    assert_eq!(line["correlation_id"], "api-1");
    assert_eq!(line["order_id"], "o-1");
    assert_eq!(line["exception_name"], "PaymentFailed");
    assert_eq!(line["exception"], "payment of o-1 failed: card declined");
    assert!(line.get("stack_trace").is_none(), "nothing panicked");
}

#[tokio::test]
async fn a_panicking_invocation_writes_its_message_location_and_stack_trace() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger).layer(service_fn(|_: LambdaEvent<Value>| async {
        powertools_logging::append_key("oven", 3)?;
        if true {
            panic!("oven on fire");
        }
        Ok::<Value, lambda_runtime::Error>(Value::Null)
    }));
    let panicked = std::panic::AssertUnwindSafe(
        service.oneshot(TestContext::new().with_request_id("req-p").event(json!({}))),
    )
    .catch_unwind()
    .await;
    assert!(panicked.is_err(), "the panic goes on to the runtime");

    let line = &lines_with(&logs, "Invocation panicked")[0];
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["function_request_id"], "req-p");
    assert_eq!(line["oven"], 3);
    assert_eq!(line["exception_name"], "Panic");
    assert_eq!(line["exception"], "oven on fire");
    let panic_line = include_str!("lines.rs")
        .lines()
        .position(|text| text.trim() == "panic!(\"oven on fire\");")
        .unwrap()
        + 1;
    assert!(
        line["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("lines.rs:{panic_line}")),
        "the panic's location: {line}"
    );
    let stack_trace = &line["stack_trace"];
    assert_eq!(stack_trace["type"], "Panic");
    assert_eq!(stack_trace["value"], "oven on fire");
    let frames = stack_trace["frames"].as_array().unwrap();
    assert!(!frames.is_empty());
    assert!(
        frames.last().unwrap()["function"]
            .as_str()
            .unwrap()
            .starts_with("lines::a_panicking_invocation"),
        "the panicking function last, as in Python: {frames:#?}"
    );
}

#[tokio::test]
async fn an_error_field_gives_the_exception_keys_python_queries_look_for() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    tracing::subscriber::with_default(logger.subscriber(), || {
        let error = declined("o-2");
        tracing::error!(error = &error as &dyn StdError, "charge failed");
        tracing::warn!(error = %"provider slow", "retrying");
    });
    let lines = logs.json();
    assert_eq!(lines[0]["exception_name"], "PaymentFailed");
    assert_eq!(
        lines[0]["exception"],
        "payment of o-2 failed: card declined"
    );
    assert_eq!(lines[0]["error"]["message"], "payment of o-2 failed");
    assert!(lines[1].get("exception_name").is_none());
    assert_eq!(lines[1]["exception"], "provider slow");
}

/// How the metrics and idempotency layers hand the handler's error on.
#[derive(Debug)]
enum Wrapped<E> {
    #[allow(dead_code)] // read through Debug
    Handler(E),
}

#[derive(Debug)]
enum OrderError {
    OutOfStock(u32),
}

#[tokio::test]
async fn a_wrapped_error_is_named_by_what_it_wraps_and_a_hook_names_it_as_lambda_does() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let failing = || {
        service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, _>(Wrapped::Handler(OrderError::OutOfStock(7)))
        })
    };
    LoggingLayer::new(logger.clone())
        .layer(failing())
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap_err();
    LoggingLayer::new(logger)
        .error_diagnostic(|error: &Wrapped<OrderError>| match error {
            Wrapped::Handler(OrderError::OutOfStock(item)) => Diagnostic {
                error_type: "OutOfStock".to_owned(),
                error_message: format!("item {item} is out of stock"),
            },
        })
        .layer(failing())
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap_err();
    let lines = lines_with(&logs, "Invocation failed");
    assert_eq!(lines[0]["exception_name"], "OutOfStock");
    assert_eq!(lines[0]["exception"], "OutOfStock(7)");
    assert_eq!(lines[1]["exception_name"], "OutOfStock");
    assert_eq!(lines[1]["exception"], "item 7 is out of stock");
}

#[tokio::test]
async fn the_runtimes_own_failure_line_can_be_left_out() {
    let runtime_line = || tracing::error!(target: "lambda_runtime::layers::panic", "Handler(Handler(PaymentFailed))");
    let kept = MemoryLogs::new();
    let logger = builder(&kept).build().unwrap();
    tracing::subscriber::with_default(logger.subscriber(), runtime_line);
    assert_eq!(kept.json().len(), 1, "kept by default");

    let left_out = MemoryLogs::new();
    let logger = builder(&left_out)
        .runtime_failure_lines(false)
        .build()
        .unwrap();
    tracing::subscriber::with_default(logger.subscriber(), || {
        runtime_line();
        tracing::error!("another error");
    });
    assert_eq!(lines_with(&left_out, "another error").len(), 1);
    assert_eq!(left_out.json().len(), 1, "{:?}", left_out.lines());
}

// Item 3: every line fits in a CloudWatch Logs event.

/// The most a CloudWatch Logs event holds: 256 KiB, 26 bytes of which are its own.
const CLOUDWATCH_MAX_MESSAGE: usize = 256 * 1024 - 26;

#[tokio::test]
async fn a_five_megabyte_value_never_makes_a_line_over_the_cloudwatch_limit() {
    // Given an invocation whose handler appends a 5 MB key and fails
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let blob = "é".repeat(2_600_000);
    let service = LoggingLayer::new(logger).layer(service_fn(move |_: LambdaEvent<Value>| {
        let blob = blob.clone();
        async move {
            powertools_logging::append_key("order_id", "o-1")?;
            powertools_logging::append_key("document", &blob)?;
            tracing::info!("document received");
            tracing::info!("{}", blob);
            Err::<Value, lambda_runtime::Error>("too big".into())
        }
    }));
    service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap_err();

    // Then every line is valid JSON within the limit, cut where it was too long, and says so
    let raw = logs.lines();
    for line in &raw {
        assert!(line.len() < CLOUDWATCH_MAX_MESSAGE, "{} bytes", line.len());
        let parsed: Value = serde_json::from_str(line).unwrap();
        assert_eq!(parsed["order_id"], "o-1");
        let truncated = parsed["truncated_keys"].as_array().unwrap();
        assert!(truncated.contains(&json!("document")), "{truncated:?}");
        let document = parsed["document"].as_str().unwrap();
        assert!(document.starts_with("éééé"));
        assert!(document.contains("...[truncated "), "a visible marker");
    }
    assert_eq!(raw.len(), 3);
    let lines = logs.json();
    assert_eq!(lines[0]["message"], "document received");
    assert_eq!(lines[2]["message"], "Invocation failed");
    assert_eq!(lines[2]["exception"], "too big");
}

#[tokio::test]
async fn the_line_limit_is_configurable_and_a_too_small_one_is_refused() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).max_line_bytes(2_000).build().unwrap();
    tracing::subscriber::with_default(logger.subscriber(), || {
        tracing::info!(note = "x".repeat(10_000).as_str(), "noted");
    });
    let raw = logs.lines();
    assert!(raw[0].len() < 2_000);
    let line: Value = serde_json::from_str(&raw[0]).unwrap();
    assert_eq!(line["message"], "noted");
    assert_eq!(line["truncated_keys"], json!(["note"]));
    let refused = builder(&logs).max_line_bytes(100).build().unwrap_err();
    assert!(matches!(refused, Error::InvalidLineLimit { bytes: 100 }));
    assert_eq!(refused.error_type(), "InvalidLogLineLimit");
}

// Item 4: secrets in an API Gateway body are masked too.

#[tokio::test]
async fn the_logged_event_has_secrets_masked_inside_its_string_encoded_body() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).log_event(true).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let event = json!({
        "headers": {"authorization": "Bearer abc.def"},
        "body": r#"{"order_id":"o-1","password":"hunter2","payment":{"card_number":"4111111111111111"}}"#,
    });
    LoggingLayer::new(logger)
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(())
        }))
        .oneshot(TestContext::new().event(event))
        .await
        .unwrap();
    let raw = logs.contents();
    for secret in ["abc.def", "hunter2", "4111111111111111"] {
        assert!(!raw.contains(secret), "{secret} reached the output: {raw}");
    }
    let lines = logs.json();
    let line = lines
        .iter()
        .find(|line| line["message"].is_object())
        .expect("the event line: the event is its message, as in Powertools for Python");
    assert_eq!(line["message"]["headers"]["authorization"], REDACTED);
    let body: Value = serde_json::from_str(line["message"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["password"], REDACTED);
    assert_eq!(body["payment"]["card_number"], REDACTED);
}

// Item 5: a field named like a standard key is kept.

#[tokio::test]
async fn fields_named_like_standard_keys_are_kept_under_a_prefix() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    tracing::subscriber::with_default(logger.subscriber(), || {
        let span = tracing::info_span!("delivery", service = "express", correlation_id = "d-1");
        let _entered = span.enter();
        tracing::info!(
            level = "gold",
            timestamp = 1_700_000_000,
            function_name = "bake",
            "customer upgraded"
        );
    });
    let line = &logs.json()[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["service"], "payments");
    assert_eq!(line["extra_level"], "gold");
    assert_eq!(line["extra_timestamp"], 1_700_000_000);
    assert_eq!(line["extra_function_name"], "bake");
    assert_eq!(line["extra_service"], "express");
    assert_eq!(line["extra_correlation_id"], "d-1");
    assert!(matches!(
        powertools_logging::append_key("level", "gold"),
        Err(Error::NoCurrentInvocation | Error::ReservedKey { .. })
    ));
}

/// A span's field named like a failure key (`exception`, `exception_name`, `stack_trace`) is
/// on every line in the span, as an appended key would be (which is refused for that reason):
/// it is kept under the prefix, and no line in the span poses as an exception (it wrote
/// `"exception":"…"` on each line without an error of its own: found by an attack from the
/// docs). An event's own field of that name is the line's, as before.
#[tokio::test]
async fn a_span_field_named_like_a_failure_key_is_kept_under_a_prefix() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    tracing::subscriber::with_default(logger.subscriber(), || {
        let span = tracing::info_span!(
            "retry",
            exception = "timeout",
            exception_name = "Timeout",
            stack_trace = "none"
        );
        let _entered = span.enter();
        tracing::info!("retrying");
        tracing::error!(exception = "card declined", "charge failed");
    });
    let lines = logs.json();
    let retrying = &lines[0];
    for key in ["exception", "exception_name", "stack_trace"] {
        assert!(retrying.get(key).is_none(), "{key}: {retrying}");
    }
    assert_eq!(retrying["extra_exception"], "timeout");
    assert_eq!(retrying["extra_exception_name"], "Timeout");
    assert_eq!(retrying["extra_stack_trace"], "none");
    let failed = &lines[1];
    assert_eq!(failed["exception"], "card declined", "{failed}");
    assert_eq!(failed["extra_exception"], "timeout", "{failed}");
    assert!(failed.get("exception_name").is_none(), "{failed}");
}

// Item 6: the layer wraps a service whose event type is not `Serialize`.

/// An event type of an adapter (as `lambda_http`'s `LambdaRequest`): `Deserialize` only.
#[derive(Debug, serde::Deserialize)]
struct AdapterRequest {
    path: String,
}

#[tokio::test]
async fn the_layer_wraps_a_service_whose_event_is_not_serialize() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger).layer(service_fn(
        |event: LambdaEvent<AdapterRequest>| async move {
            tracing::info!(path = event.payload.path.as_str(), "request");
            Ok::<_, lambda_runtime::Error>(())
        },
    ));
    let request = AdapterRequest {
        path: "/orders".to_owned(),
    };
    service
        .oneshot(TestContext::new().with_request_id("req-h").event(request))
        .await
        .unwrap();
    let line = &logs.json()[0];
    assert_eq!(line["path"], "/orders");
    assert_eq!(line["function_request_id"], "req-h");
}

#[test]
fn a_runtime_line_before_the_handler_carries_the_runtime_spans_request_id() {
    // Given lambda_runtime's own span around an invocation whose event the handler's type cannot
    // hold: the logging layer never sees it.
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let span = tracing::info_span!(
        target: "lambda_runtime::layers::trace",
        "Lambda runtime invoke",
        requestId = "req-undeserializable"
    );
    span.in_scope(|| {
        tracing::error!(
            target: "lambda_runtime::layers::api_response",
            error = "missing field `requestContext`",
            "Request payload deserialization into LambdaEvent<T> failed."
        );
    });
    tracing::error!(target: "lambda_runtime::layers::api_response", "outside any invocation");

    // Then the runtime's line says which invocation it was, and no other line invents one
    let inside = lines_with(
        &logs,
        "Request payload deserialization into LambdaEvent<T> failed.",
    );
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0]["function_request_id"], "req-undeserializable");
    assert!(
        inside[0].get("requestId").is_none(),
        "the span's field is not a key"
    );
    let outside = lines_with(&logs, "outside any invocation");
    assert!(outside[0].get("function_request_id").is_none());
}

/// The tracing extension's line about an invocation (one that never reached `TracingLayer`),
/// written from the extension's own task, outside the invocation: it carries the invocation's
/// `function_request_id`, under its span's `requestId` as the runtime's lines do. It wrote the
/// id as `request_id`, a key no query on Powertools' keys finds (found by a new user).
#[test]
fn a_tracing_extension_line_carries_its_invocation_s_request_id() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let span = tracing::info_span!(
        target: "powertools_tracing::log_scope",
        "invocation",
        requestId = "req-never-reached"
    );
    span.in_scope(|| {
        tracing::warn!(
            target: "powertools_tracing",
            "an invocation did not reach TracingLayer within the grace"
        );
    });
    let line = &lines_with(
        &logs,
        "an invocation did not reach TracingLayer within the grace",
    )[0];
    assert_eq!(line["function_request_id"], "req-never-reached");
    assert!(line.get("requestId").is_none() && line.get("request_id").is_none());
}

/// A span of another crate whose name begins with `powertools_tracing` or `lambda_runtime` is
/// the function's own: its `requestId` is a log key, not the invocation's id (found by a
/// review).
#[test]
fn a_span_of_a_crate_named_like_the_runtime_s_is_the_function_s_own() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    for target in [
        "powertools_tracing_extras::orders",
        "lambda_runtime_helpers",
    ] {
        let span = match target {
            "lambda_runtime_helpers" => {
                tracing::info_span!(target: "lambda_runtime_helpers", "mine", requestId = "own-1")
            }
            _ => tracing::info_span!(
                target: "powertools_tracing_extras::orders",
                "mine",
                requestId = "own-1"
            ),
        };
        span.in_scope(|| tracing::info!("inside the extras' span"));
    }
    let lines = lines_with(&logs, "inside the extras' span");
    assert_eq!(lines.len(), 2);
    for line in lines {
        assert!(line.get("function_request_id").is_none(), "{line}");
        assert_eq!(line["requestId"], "own-1", "{line}");
    }
}

/// `lambda_runtime` writes every event's raw text at TRACE (`raw JSON event received from
/// Lambda`, `body` = the whole event): with `POWERTOOLS_LOG_LEVEL=TRACE` or Lambda's TRACE log
/// level, an event the handler's type cannot hold, and every other, reached the log unmasked,
/// though the facade promises it never does (found by an attack). The line is left out; the
/// event is logged by `POWERTOOLS_LOGGER_LOG_EVENT`, masked. The runtime's other TRACE lines and
/// its error for an event that is not text stay.
#[test]
fn the_runtime_s_raw_event_line_is_left_out_at_trace() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .level(powertools_logging::Level::Trace)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    tracing::trace!(
        target: "lambda_runtime::layers::api_response",
        body = r#"{"card":"4111111111111111"}"#,
        "raw JSON event received from Lambda"
    );
    tracing::trace!(target: "lambda_runtime::layers::api_response", "another runtime line");
    tracing::error!(
        target: "lambda_runtime::layers::api_response",
        "Failed to parse raw JSON event received from Lambda. The handler will not be called."
    );
    let text = logs.lines().join("\n");
    assert!(!text.contains("4111111111111111"), "{text}");
    assert!(lines_with(&logs, "raw JSON event received from Lambda").is_empty());
    assert_eq!(lines_with(&logs, "another runtime line").len(), 1);
    assert_eq!(
        logs.json()
            .iter()
            .filter(|line| line["level"] == "ERROR")
            .count(),
        1
    );
}
