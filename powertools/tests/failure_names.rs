//! The failure line and the span's exception event name the idempotency layer's own errors as
//! Lambda reports them, and every other error as itself (written by a reviewer who saw only the
//! docs; each test here failed before its fix or held when written).

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::tower::{Service, ServiceBuilder, ServiceExt, service_fn as tower_service_fn};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::idempotency::{
    DataRecord, Idempotency, IdempotencyLayer, IdempotencyStore, InMemoryStore, PutOutcome,
    StoreError,
};
use powertools::logging::MemoryLogs;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};

type IdemError<E> = powertools::idempotency::Error<E>;

#[derive(Debug, Clone)]
enum AppError {
    AlreadyInProgress(String),
    KeyMissing(String),
    Declined,
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::AlreadyInProgress(what) => write!(f, "the oven is already baking {what}"),
            AppError::KeyMissing(what) => write!(f, "customer key missing: {what}"),
            AppError::Declined => f.write_str("card declined"),
        }
    }
}

impl From<AppError> for Diagnostic {
    fn from(error: AppError) -> Self {
        let error_type = match error {
            AppError::AlreadyInProgress(_) => "AppAlreadyInProgress",
            AppError::KeyMissing(_) => "AppKeyMissing",
            AppError::Declined => "Declined",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct KeptSpans(
    Arc<std::sync::Mutex<Vec<powertools::tracing::opentelemetry_sdk::trace::SpanData>>>,
);

impl powertools::tracing::opentelemetry_sdk::trace::SpanExporter for KeptSpans {
    fn export(
        &self,
        batch: Vec<powertools::tracing::opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<
        Output = powertools::tracing::opentelemetry_sdk::error::OTelSdkResult,
    > + Send {
        self.0.lock().expect("the spans").extend(batch);
        std::future::ready(Ok(()))
    }
}

impl KeptSpans {
    /// (exception.type, exception.message) of each exception event, by request id attribute.
    fn exceptions(&self) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        let spans = self.0.lock().expect("test setup").clone();
        let mut out = Vec::new();
        for span in &spans {
            let request = span
                .attributes
                .iter()
                .find(|a| a.key.as_str() == "faas.invocation_id")
                .map(|a| a.value.to_string());
            for event in span.events.iter() {
                if event.name == "exception" {
                    let attribute = |key: &str| {
                        event
                            .attributes
                            .iter()
                            .find(|a| a.key.as_str() == key)
                            .map(|a| a.value.to_string())
                    };
                    out.push((
                        request.clone(),
                        attribute("exception.type"),
                        attribute("exception.message"),
                    ));
                }
            }
        }
        out
    }
}

fn stack(logs: &MemoryLogs, spans: &KeptSpans) -> Powertools {
    stack_with(logs, spans, &[])
}

/// [`stack`], with more environment variables.
fn stack_with(logs: &MemoryLogs, spans: &KeptSpans, env: &[(&str, &str)]) -> Powertools {
    let env =
        std::iter::once(("POWERTOOLS_METRICS_NAMESPACE", "Bakery")).chain(env.iter().copied());
    Powertools::builder()
        .service("orders")
        .env(Env::from_pairs(env))
        .logger(|logger| logger.writer(logs.clone()))
        .metrics(|metrics| metrics.sink(CheckedSink::new()))
        .tracer(|tracer| tracer.span_exporter(spans.clone()))
        .build()
        .expect("valid settings")
}

fn failure_line(logs: &MemoryLogs, request: &str) -> Value {
    let lines: Vec<Value> = logs
        .json()
        .into_iter()
        .filter(|line| {
            line["function_request_id"] == request
                && (line["message"] == "Invocation failed"
                    || line["message"] == "Invocation panicked")
        })
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one failure line for {request}: {:#?}",
        logs.json()
    );
    lines.into_iter().next().expect("one failure line")
}

/// The event of the invocation `request_id`.
fn invocation(request_id: impl Into<String>, payload: Value) -> LambdaEvent<Value> {
    TestContext::new()
        .with_request_id(request_id)
        .event(payload)
}

/// `call`, started 5 ms later: a duplicate that finds the first invocation's claim.
async fn a_moment_later<F: std::future::Future>(call: F) -> F::Output {
    tokio::time::sleep(Duration::from_millis(5)).await;
    call.await
}

fn idempotency() -> Idempotency<InMemoryStore> {
    Idempotency::builder(InMemoryStore::new())
        .raise_on_missing_key(true)
        .build()
        .expect("valid settings")
}

/// Many concurrent invocations mixing idempotency errors and handler errors (one of whose
/// variants is named `AlreadyInProgress` and another `KeyMissing`).
#[tokio::test]
async fn concurrent_mix_never_crosses_names() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            match event.payload["kind"].as_str() {
                Some("app_in_progress") => Err(AppError::AlreadyInProgress("o".into())),
                Some("app_key_missing") => Err(AppError::KeyMissing("c".into())),
                Some("declined") => Err(AppError::Declined),
                _ => Ok(json!({"ok": true})),
            }
        }));

    let mut futures = Vec::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        let (request, event, name) = match i % 5 {
            0 => (format!("req-{i}"), json!({}), "IdempotencyKeyError"),
            1 => (
                format!("req-{i}"),
                json!({"order_id": format!("o-{i}"), "kind": "app_in_progress"}),
                "AppError",
            ),
            2 => (
                format!("req-{i}"),
                json!({"order_id": format!("o-{i}"), "kind": "app_key_missing"}),
                "AppError",
            ),
            3 => (
                format!("req-{i}"),
                // A duplicate of the slow successful one below (i+1): in progress
                json!({"order_id": format!("dup-{}", i / 5), "kind": "ok"}),
                "?",
            ),
            _ => (
                format!("req-{i}"),
                json!({"order_id": format!("dup-{}", i / 5), "kind": "ok"}),
                "?",
            ),
        };
        expected.push((request.clone(), name));
        let service = service.clone();
        futures.push(async move {
            let result = service.oneshot(invocation(&request, event)).await;
            (request, result.map_err(Diagnostic::from))
        });
    }
    let results = futures_join_all(futures).await;
    let in_progress = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(d) if d.error_type == "IdempotencyAlreadyInProgressError"))
        .count();
    assert!(in_progress >= 10, "in progress: {in_progress}");
    for (request, result) in results {
        let Err(diagnostic) = result else { continue };
        let line = failure_line(&logs, &request);
        // The line names what Lambda reports, or for the handler's own (no hook) its type path
        if diagnostic.error_type.starts_with("Idempotency") {
            assert_eq!(
                line["exception_name"], diagnostic.error_type,
                "{request}: {line}"
            );
            assert_eq!(
                line["exception"], diagnostic.error_message,
                "{request}: {line}"
            );
        } else {
            assert!(
                !line["exception_name"]
                    .as_str()
                    .unwrap()
                    .starts_with("Idempotency"),
                "{request}: handler error named as idempotency: {line}"
            );
        }
    }
    for (request, kind, message) in spans.exceptions() {
        let _ = (request, kind, message);
    }
}

async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    for (index, future) in futures.into_iter().enumerate() {
        let results = results.clone();
        local.spawn_local(async move {
            let output = future.await;
            results.lock().expect("the results").push((index, output));
        });
    }
    local.await;
    let mut results = std::mem::take(&mut *results.lock().expect("the results"));
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, output)| output).collect()
}

/// A layer between the logging layer and the idempotency layer that swallows the idempotency
/// error and returns a different error of its own whose variant shares the name.
#[tokio::test]
async fn swallowing_layer_error_with_same_variant_name_is_described_as_itself() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let inner = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    // The user's layer: an idempotency error becomes AppError::KeyMissing("replaced").
    let swallowing = inner.map_err(|error: IdemError<AppError>| match error {
        IdemError::Handler(app) => app,
        _ => AppError::KeyMissing("replaced by the user layer".into()),
    });
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(swallowing);
    let error = service
        .oneshot(invocation("req-swallow", json!({})))
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "AppKeyMissing");
    let line = failure_line(&logs, "req-swallow");
    let exceptions = spans.exceptions();
    // The error actually returned is AppError::KeyMissing("replaced by the user layer")
    assert_ne!(
        line["exception_name"], "IdempotencyKeyError",
        "the line describes the swallowed error, not the one returned: {line}\ntracing: {exceptions:?}"
    );
    assert!(
        line["exception"]
            .as_str()
            .unwrap()
            .contains("replaced by the user layer"),
        "{line}"
    );
}

/// Same, with a differently named variant (should hold).
#[tokio::test]
async fn swallowing_layer_error_with_other_name_is_described_as_itself() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let inner = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    let swallowing = inner.map_err(|error: IdemError<AppError>| match error {
        IdemError::Handler(app) => app,
        _ => AppError::Declined,
    });
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(swallowing);
    let _ = service
        .oneshot(invocation("req-swallow2", json!({})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-swallow2");
    assert_ne!(line["exception_name"], "IdempotencyKeyError", "{line}");
    let exceptions = spans.exceptions();
    assert!(
        exceptions
            .iter()
            .all(|(_, kind, _)| kind.as_deref() != Some("IdempotencyKeyError")),
        "{exceptions:?}"
    );
}

/// A retrying user layer between logging and idempotency: the first attempt is refused by the
/// idempotency layer (no key); the retry (with the key filled in) runs the handler, which fails
/// with its own error. The line must describe the handler's error, the one returned.
#[tokio::test]
async fn retry_layer_a_stale_report_is_not_applied_to_the_handler_error() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let inner = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            Err::<Value, _>(AppError::KeyMissing("customer c-1".into()))
        }));
    let retrying = tower_service_fn(move |event: LambdaEvent<Value>| {
        let mut inner = inner.clone();
        async move {
            let first = inner.ready().await?.call(event.clone()).await;
            match first {
                Err(IdemError::KeyMissing { .. }) => {
                    let mut retry = event;
                    retry.payload["order_id"] = json!("generated-1");
                    inner.ready().await?.call(retry).await
                }
                other => other,
            }
        }
    });
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(retrying);
    let error = service
        .oneshot(invocation("req-retry", json!({})))
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "AppKeyMissing");
    let line = failure_line(&logs, "req-retry");
    assert_ne!(
        line["exception_name"], "IdempotencyKeyError",
        "a stale report named the handler's own error: {line}"
    );
    let exceptions = spans.exceptions();
    assert!(
        exceptions
            .iter()
            .all(|(_, kind, _)| kind.as_deref() != Some("IdempotencyKeyError")),
        "tracing: {exceptions:?}"
    );
}

/// Two overlapping runs of the operation `charge` on one argument, each 20 ms long: one finds
/// the other in progress.
async fn overlapping_runs(
    idempotency: &Idempotency<InMemoryStore>,
    context: &lambda_runtime::Context,
) -> (
    Result<u8, IdemError<AppError>>,
    Result<u8, IdemError<AppError>>,
) {
    let run = |value: u8| {
        idempotency.run(context, "charge", "c-1", move |_| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, AppError>(value)
        })
    };
    tokio::join!(run(1), run(2))
}

/// A handler that calls `Idempotency::run` (gets AlreadyInProgress) and returns a different error.
#[tokio::test]
async fn handler_calling_run_and_returning_another_error_keeps_its_name() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let function_idempotency = Arc::new(idempotency());
    let handler_idempotency = function_idempotency.clone();
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(move |event: LambdaEvent<Value>| {
            let idempotency = handler_idempotency.clone();
            async move {
                let context = event.context.clone();
                // Two overlapping runs of one operation with one argument: one is in progress
                match overlapping_runs(&idempotency, &context).await {
                    (Err(IdemError::AlreadyInProgress { .. }), _)
                    | (_, Err(IdemError::AlreadyInProgress { .. })) => {
                        Err::<Value, _>(AppError::AlreadyInProgress("charge c-1".into()))
                    }
                    _ => Err(AppError::Declined),
                }
            }
        }));
    let error = service
        .oneshot(invocation("req-run", json!({"order_id": "o-run"})))
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(error);
    let line = failure_line(&logs, "req-run");
    assert_eq!(diagnostic.error_type, "AppAlreadyInProgress", "{line}");
    assert_ne!(
        line["exception_name"], "IdempotencyAlreadyInProgressError",
        "{line}"
    );
}

/// A handler that returns `Idempotency::run`'s error boxed (`?` into `lambda_runtime::Error`),
/// its own error type being the function's: the call's refusal is named as Powertools names it
/// in the line and the span (`IdempotencyAlreadyInProgressError`, reported by the call), and
/// the function's error inside by its variant. They were the wrapper's variants
/// (`AlreadyInProgress`, `Handler`; found by an attack from the docs on batch records).
#[tokio::test]
async fn a_boxed_run_error_of_the_function_s_own_type_is_named_as_powertools_names_it() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let idempotency = Arc::new(idempotency());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(move |event: LambdaEvent<Value>| {
            let idempotency = idempotency.clone();
            async move {
                let context = event.context.clone();
                if event.payload["decline"] == true {
                    idempotency
                        .run(&context, "charge", "c-2", |_| async {
                            Err::<u8, _>(AppError::Declined)
                        })
                        .await?;
                }
                let (one, two) = overlapping_runs(&idempotency, &context).await;
                Ok::<_, lambda_runtime::Error>(json!(one? + two?))
            }
        }));
    service
        .clone()
        .oneshot(invocation("req-run-boxed", json!({})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-run-boxed");
    assert_eq!(
        line["exception_name"], "IdempotencyAlreadyInProgressError",
        "{line}"
    );
    assert!(
        line["exception"]
            .as_str()
            .is_some_and(|text| text.contains("already in progress")),
        "{line}"
    );
    service
        .oneshot(invocation("req-run-declined", json!({"decline": true})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-run-declined");
    assert_eq!(line["exception_name"], "Declined", "{line}");
    assert_eq!(line["exception"], "card declined", "{line}");
    let exceptions = spans.exceptions();
    let kind = |request: &str| {
        exceptions
            .iter()
            .find(|(id, ..)| id.as_deref() == Some(request))
            .and_then(|(_, kind, _)| kind.clone())
    };
    assert_eq!(
        kind("req-run-boxed").as_deref(),
        Some("IdempotencyAlreadyInProgressError"),
        "{exceptions:?}"
    );
    assert_eq!(kind("req-run-declined").as_deref(), Some("Declined"));
}

/// The idempotency layer put outside the stack (the order the docs warn against): the logging
/// layer says so, once, at the first invocation, since a replay then writes no line, metrics or
/// span; in the right order, nothing is said. It was accepted without a word (found by an
/// attack from the docs).
#[tokio::test]
async fn the_idempotency_layer_outside_the_stack_is_said_once() {
    const WARNING: &str = "LoggingLayer runs inside IdempotencyLayer";
    // The idempotency layer outside the stack; the same under a layer that opens the failure
    // scope first (a tracing layer outermost: the warning was missed, found by a review); and
    // inside it, as the docs order them.
    for (outside, under_a_scope) in [(true, false), (true, true), (false, false), (false, true)] {
        let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
        let powertools = stack(&logs, &spans);
        let _guard = tracing::subscriber::set_default(powertools.subscriber());
        let handler = service_fn(|event: LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        });
        let idempotency = IdempotencyLayer::new(idempotency())
            .key_from(|event: &Value| event.get("order_id").cloned());
        for request in ["req-1", "req-2", "req-3"] {
            let event = invocation(request, json!({"order_id": "o-1"}));
            let call = async {
                if outside {
                    let service = ServiceBuilder::new()
                        .layer(idempotency.clone())
                        .layer(powertools.layer());
                    service.service(handler).oneshot(event).await.unwrap();
                } else {
                    let service = ServiceBuilder::new()
                        .layer(powertools.layer())
                        .layer(idempotency.clone());
                    service.service(handler).oneshot(event).await.unwrap();
                }
            };
            if under_a_scope {
                powertools::core::failure::scope(call).await;
            } else {
                call.await;
            }
        }
        let warnings = logs
            .json()
            .into_iter()
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|text| text.starts_with(WARNING))
            })
            .count();
        assert_eq!(
            warnings,
            usize::from(outside),
            "outside: {outside}, under a scope: {under_a_scope}"
        );
    }
}

/// Nested idempotency layers: the inner one's error reaches the outer as `Handler(..)`.
#[tokio::test]
async fn nested_layers_name_the_inner_error_as_lambda_reports_it() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency())
                .operation("outer")
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .layer(
            IdempotencyLayer::new(idempotency())
                .operation("inner")
                .key_from(|event: &Value| event.get("customer_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    // The outer has its key; the inner refuses (no customer id)
    let error = service
        .oneshot(invocation("req-nested", json!({"order_id": "o-n"})))
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "IdempotencyKeyError");
    let line = failure_line(&logs, "req-nested");
    let exceptions = spans.exceptions();
    assert_eq!(line["exception_name"], "IdempotencyKeyError", "{line}");
    assert_eq!(line["exception"], diagnostic.error_message, "{line}");
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    assert_eq!(
        exceptions[0].1.as_deref(),
        Some("IdempotencyKeyError"),
        "tracing exception event of nested layers: {exceptions:?}"
    );
    assert_eq!(
        exceptions[0].2.as_deref(),
        Some(diagnostic.error_message.as_str()),
        "{exceptions:?}"
    );
}

/// The logging layer alone (no tracing layer, no facade).
#[tokio::test]
async fn logging_layer_alone_names_in_progress() {
    let logs = MemoryLogs::new();
    let logger = powertools::logging::Logger::builder()
        .service("orders")
        .env(Env::from_pairs([("POWERTOOLS_SERVICE_NAME", "orders")]))
        .writer(logs.clone())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools::logging::LoggingLayer::new(logger))
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    let a = service
        .clone()
        .oneshot(invocation("req-a", json!({"order_id": "same"})));
    let b = a_moment_later(
        service
            .clone()
            .oneshot(invocation("req-b", json!({"order_id": "same"}))),
    );
    let (a, b) = tokio::join!(a, b);
    assert!(a.is_ok());
    let diagnostic = Diagnostic::from(b.unwrap_err());
    assert_eq!(diagnostic.error_type, "IdempotencyAlreadyInProgressError");
    let line = failure_line(&logs, "req-b");
    assert_eq!(line["exception_name"], "IdempotencyAlreadyInProgressError");
    assert_eq!(line["exception"], diagnostic.error_message);
}

/// The tracing layer alone.
#[tokio::test]
async fn tracing_layer_alone_names_in_progress() {
    let spans = KeptSpans::default();
    let tracer = powertools::tracing::Tracer::builder()
        .service("orders")
        .env(Env::from_pairs([("POWERTOOLS_SERVICE_NAME", "orders")]))
        .span_exporter(spans.clone())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools::tracing::TracingLayer::new(tracer))
        .layer(
            IdempotencyLayer::new(idempotency())
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if event.payload["fail"] == true {
                return Err(AppError::AlreadyInProgress("x".into()));
            }
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    let a = service
        .clone()
        .oneshot(invocation("req-a", json!({"order_id": "same"})));
    let b = a_moment_later(
        service
            .clone()
            .oneshot(invocation("req-b", json!({"order_id": "same"}))),
    );
    let c = service.clone().oneshot(invocation(
        "req-c",
        json!({"order_id": "other", "fail": true}),
    ));
    let (a, b, c) = tokio::join!(a, b, c);
    assert!(a.is_ok());
    let diagnostic = Diagnostic::from(b.unwrap_err());
    let _ = c.unwrap_err();
    let exceptions = spans.exceptions();
    assert_eq!(exceptions.len(), 2, "{exceptions:?}");
    let in_progress: Vec<_> = exceptions
        .iter()
        .filter(|(_, kind, _)| kind.as_deref() == Some("IdempotencyAlreadyInProgressError"))
        .collect();
    assert_eq!(in_progress.len(), 1, "{exceptions:?}");
    assert_eq!(
        in_progress[0].2.as_deref(),
        Some(diagnostic.error_message.as_str())
    );
}

/// A store whose claims fail, each with its own message, a given number of times.
#[derive(Clone, Default)]
struct ThrottledClaims {
    inner: InMemoryStore,
    failures_left: Arc<std::sync::atomic::AtomicUsize>,
    claims: Arc<std::sync::atomic::AtomicUsize>,
}

impl powertools::idempotency::IdempotencyStore for ThrottledClaims {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<powertools::idempotency::DataRecord>, powertools::idempotency::StoreError>
    {
        self.inner.get(key).await
    }

    async fn put_in_progress(
        &self,
        record: &powertools::idempotency::DataRecord,
        now: std::time::SystemTime,
    ) -> Result<powertools::idempotency::PutOutcome, powertools::idempotency::StoreError> {
        use std::sync::atomic::Ordering;
        let claim = self.claims.fetch_add(1, Ordering::SeqCst);
        if claim < self.failures_left.load(Ordering::SeqCst) {
            return Err(powertools::idempotency::StoreError::Backend(
                format!("throttled #{claim}").into(),
            ));
        }
        self.inner.put_in_progress(record, now).await
    }

    async fn update(
        &self,
        record: &powertools::idempotency::DataRecord,
    ) -> Result<(), powertools::idempotency::StoreError> {
        self.inner.update(record).await
    }

    async fn delete(
        &self,
        record: &powertools::idempotency::DataRecord,
    ) -> Result<(), powertools::idempotency::StoreError> {
        self.inner.delete(record).await
    }

    async fn replace_with_fence(
        &self,
        claim: &powertools::idempotency::DataRecord,
        fence: &powertools::idempotency::DataRecord,
    ) -> Result<(), powertools::idempotency::StoreError> {
        self.inner.replace_with_fence(claim, fence).await
    }

    async fn put_over_fence(
        &self,
        record: &powertools::idempotency::DataRecord,
        fence: &powertools::idempotency::DataRecord,
    ) -> Result<powertools::idempotency::PutOutcome, powertools::idempotency::StoreError> {
        self.inner.put_over_fence(record, fence).await
    }
}

/// A retrying layer between that returns its first attempt's error after a second attempt
/// failed too (each attempt's report differs: the store's message has the attempt's number).
#[tokio::test]
async fn a_retry_that_returns_its_first_error_has_it_named_as_lambda_reports_it() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    // Every write fails: the claims, and the fences that take each unanswered claim back.
    let store = ThrottledClaims {
        failures_left: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
        ..ThrottledClaims::default()
    };
    let inner = ServiceBuilder::new()
        .layer(
            IdempotencyLayer::new(Idempotency::builder(store).build().expect("valid settings"))
                .key_from(|event: &Value| event.get("order_id").cloned()),
        )
        .service(service_fn(|_event: LambdaEvent<Value>| async move {
            Ok::<_, AppError>(json!({"ok": true}))
        }));
    let retrying = tower_service_fn(move |event: LambdaEvent<Value>| {
        let inner = inner.clone();
        async move {
            match inner.clone().oneshot(event.clone()).await {
                Ok(response) => Ok(response),
                Err(first) => match inner.oneshot(event).await {
                    Ok(response) => Ok(response),
                    Err(_) => Err(first),
                },
            }
        }
    });
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(retrying);
    let error = service
        .oneshot(invocation("req-first-error", json!({"order_id": "o-1"})))
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "IdempotencyPersistenceLayerError");
    assert!(
        diagnostic.error_message.contains("throttled #0"),
        "{}",
        diagnostic.error_message
    );
    let line = failure_line(&logs, "req-first-error");
    assert_eq!(
        line["exception_name"], "IdempotencyPersistenceLayerError",
        "{line}"
    );
    assert_eq!(
        line["exception"],
        diagnostic.error_message.as_str(),
        "{line}"
    );
}

/// `PowertoolsLayer::error_diagnostic` names a handler error of the user's own type in the
/// failure line and the span as Lambda reports it; a metrics flush error keeps its own name.
#[tokio::test]
async fn the_stack_s_error_diagnostic_names_the_handler_s_error_in_the_line_and_the_span() {
    #[derive(Debug)]
    enum StepError {
        Charge(AppError),
    }
    impl From<StepError> for Diagnostic {
        fn from(error: StepError) -> Self {
            match error {
                StepError::Charge(error) => error.into(),
            }
        }
    }
    let describe = |error: &StepError| match error {
        StepError::Charge(error) => Diagnostic::from(error.clone()),
    };
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let failing = ServiceBuilder::new()
        .layer(powertools.layer().error_diagnostic(describe))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, _>(StepError::Charge(AppError::Declined))
        }));
    failing
        .oneshot(invocation("req-declined", json!({})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-declined");
    assert_eq!(line["exception_name"], "Declined", "{line}");
    assert_eq!(line["exception"], "card declined", "{line}");
    let exceptions = spans.exceptions();
    assert!(
        exceptions.iter().any(|(_, kind, message)| {
            kind.as_deref() == Some("Declined") && message.as_deref() == Some("card declined")
        }),
        "{exceptions:?}"
    );

    // A handler that succeeds, under a layer that raises on empty metrics: the flush's error.
    let strict = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([(
            "POWERTOOLS_METRICS_NAMESPACE",
            "Bakery",
        )]))
        .logger(|logger| logger.writer(logs.clone()))
        .metrics(|metrics| {
            metrics
                .sink(CheckedSink::new())
                .raise_on_empty_metrics(true)
        })
        .tracer(|tracer| tracer.span_exporter(spans.clone()))
        .build()
        .unwrap();
    let empty = ServiceBuilder::new()
        .layer(strict.layer().error_diagnostic(describe))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<Value, StepError>(json!({}))
        }));
    let error = empty
        .oneshot(invocation("req-empty", json!({})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-empty");
    assert_eq!(
        line["exception_name"],
        Diagnostic::from(error).error_type,
        "{line}"
    );
}

/// A handler whose error is a `Diagnostic` (as the batch README shows) or a boxed error
/// (`lambda_runtime::Error`) under the whole stack: the failure line names it as Lambda reports
/// it, as the logging layer alone does, not by the `StackError` wrapper's Debug text.
#[tokio::test]
async fn a_diagnostic_or_boxed_error_under_the_stack_is_named_as_lambda_reports_it() {
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let diagnostic = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, _>(Diagnostic {
                error_type: "BatchProcessingError".to_owned(),
                error_message: "all 3 records of the batch failed".to_owned(),
            })
        }));
    diagnostic
        .oneshot(invocation("req-diagnostic", json!({})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-diagnostic");
    assert_eq!(line["exception_name"], "BatchProcessingError", "{line}");
    assert_eq!(
        line["exception"], "all 3 records of the batch failed",
        "{line}"
    );

    let boxed = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, lambda_runtime::Error>(Box::new(std::io::Error::other("card declined")))
        }));
    let error = boxed
        .oneshot(invocation("req-boxed", json!({})))
        .await
        .unwrap_err();
    let reported = Diagnostic::from(error);
    let line = failure_line(&logs, "req-boxed");
    assert_eq!(line["exception"], reported.error_message, "{line}");
    assert_eq!(
        line["exception_name"], "std::io::Error",
        "as the logging layer alone: {line}"
    );
}

/// A powertools-rs error from the handler, boxed by `?` into `lambda_runtime::Error` (the
/// README's signature) or returned as `powertools::Error`: the line, the span and Lambda (through
/// `Diagnostic::from` here, `powertools::run` for the response) name it as Powertools does
/// (`MetricValueError`), with its message. It was `InvalidValue` in the line (its variant's
/// `Debug`), `powertools::error::Error` on the span and `Metrics(InvalidValue { … })` as the
/// line's message (found by an attack).
#[tokio::test]
async fn a_powertools_error_from_the_handler_is_named_as_powertools_names_it() {
    use powertools::metrics::Unit;
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let boxed = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            powertools::metrics::add_metric("Baked", f64::NAN, Unit::Count)?;
            Ok::<Value, lambda_runtime::Error>(json!({}))
        }));
    boxed
        .oneshot(invocation("req-boxed-metric", json!({})))
        .await
        .unwrap_err();
    let direct = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            powertools::metrics::add_metric("Baked", f64::NAN, Unit::Count)?;
            Ok::<Value, powertools::Error>(json!({}))
        }));
    let error = direct
        .oneshot(invocation("req-direct-metric", json!({})))
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(error).error_type, "MetricValueError");
    let exceptions = spans.exceptions();
    for request in ["req-boxed-metric", "req-direct-metric"] {
        let line = failure_line(&logs, request);
        assert_eq!(line["exception_name"], "MetricValueError", "{line}");
        let message = line["exception"].as_str().expect("a message");
        assert!(
            message.starts_with("invalid value NaN for metric"),
            "{line}"
        );
        let (_, kind, span_message) = exceptions
            .iter()
            .find(|(id, ..)| id.as_deref() == Some(request))
            .expect("the span's exception event");
        assert_eq!(kind.as_deref(), Some("MetricValueError"), "{exceptions:?}");
        assert_eq!(span_message.as_deref(), Some(message), "{exceptions:?}");
    }
}

/// Every shape of a handler's error gets one name in the line and the span, the name Lambda
/// gets through `powertools::run`: a utility's own error returned as it is (`MetricValueError`,
/// not its variant `InvalidValue` and its `Debug` text), an `std::io::Error` returned as it is
/// (not `Custom`), and a function-level idempotency error boxed by `?`
/// (`IdempotencyKeyError`, not `KeyMissing`). Found by a review.
#[tokio::test]
async fn every_error_shape_has_one_name_in_the_line_and_the_span() {
    use powertools::metrics::Unit;
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let metric = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            powertools::metrics::add_metric("Baked", f64::NAN, Unit::Count)?;
            Ok::<Value, powertools::metrics::Error>(json!({}))
        }));
    metric
        .oneshot(invocation("req-shape-metric", json!({})))
        .await
        .unwrap_err();
    let io = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Err::<Value, _>(std::io::Error::other("disk full"))
        }));
    io.oneshot(invocation("req-shape-io", json!({})))
        .await
        .unwrap_err();
    let keyed = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            let idempotency = idempotency();
            let receipt = idempotency
                .run(&event.context, "charge", Value::Null, |_| async {
                    Ok::<_, std::io::Error>(json!({"charged": true}))
                })
                .await?;
            Ok::<Value, lambda_runtime::Error>(receipt)
        }));
    keyed
        .oneshot(invocation("req-shape-key", json!({})))
        .await
        .unwrap_err();
    let exceptions = spans.exceptions();
    for (request, name, message) in [
        (
            "req-shape-metric",
            "MetricValueError",
            "invalid value NaN for metric",
        ),
        ("req-shape-io", "std::io::Error", "disk full"),
        (
            "req-shape-key",
            "IdempotencyKeyError",
            "no data found to create",
        ),
    ] {
        let line = failure_line(&logs, request);
        assert_eq!(line["exception_name"], name, "{line}");
        let text = line["exception"].as_str().expect("a message");
        assert!(text.starts_with(message), "{line}");
        let (_, kind, span_message) = exceptions
            .iter()
            .find(|(id, ..)| id.as_deref() == Some(request))
            .expect("the span's exception event");
        assert_eq!(kind.as_deref(), Some(name), "{request}: {exceptions:?}");
        assert_eq!(
            span_message.as_deref(),
            Some(text),
            "{request}: {exceptions:?}"
        );
    }
}

/// The quick start's handler (`lambda_runtime::Error`) with the idempotency layer inside the
/// stack, as the crate docs order them: its error is named as without the idempotency layer,
/// by the type inside the box and its message, in the line and in the span, not by the
/// idempotency error's `Debug` text (`Handler(Error("key must be a string", …))`), which a
/// function written from the docs got. The idempotency layer's own errors keep their names.
#[tokio::test]
async fn a_boxed_error_through_the_idempotency_layer_is_named_as_without_it() {
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            let body: Value = serde_json::from_str(event.payload["body"].as_str().unwrap_or(""))?;
            Ok::<Value, lambda_runtime::Error>(body)
        }));
    service
        .clone()
        .oneshot(invocation("req-boxed-idem", json!({"body": "{1: 2}"})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-boxed-idem");
    // Named by its type, as a batch record's unreadable body is (`Error`, its `Debug`'s
    // first word, before; noted by a review).
    assert_eq!(line["exception_name"], "serde_json::Error", "{line}");
    assert_eq!(
        line["exception"], "key must be a string at line 1 column 2",
        "{line}"
    );
    let exceptions = spans.exceptions();
    let (_, kind, message) = exceptions
        .iter()
        .find(|(request, ..)| request.as_deref() == Some("req-boxed-idem"))
        .expect("the span's exception event");
    assert_eq!(kind.as_deref(), Some("serde_json::Error"), "{exceptions:?}");
    assert_eq!(
        message.as_deref(),
        Some("key must be a string at line 1 column 2"),
        "{exceptions:?}"
    );

    // The idempotency layer's own error, under the same description.
    service
        .oneshot(invocation("req-no-key", Value::Null))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-no-key");
    assert_eq!(line["exception_name"], "IdempotencyKeyError", "{line}");
}

/// A panic behind the idempotency layer (which catches it to free the claim, and reports it as
/// `HandlerPanicked`) still has its `stack_trace` and the panic's `location` on the failure
/// line, as a panic has without the idempotency layer (a function written from the docs got
/// neither).
#[tokio::test]
async fn a_panic_behind_the_idempotency_layer_keeps_its_stack_trace() {
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            if event.payload["order"] == "o-fire" {
                panic!("oven on fire for o-fire");
            }
            Ok::<Value, lambda_runtime::Error>(Value::Null)
        }));
    service
        .oneshot(invocation("req-fire", json!({"order": "o-fire"})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-fire");
    assert_eq!(line["exception_name"], "HandlerPanicked", "{line}");
    // A panic is "Invocation panicked" behind the idempotency layer too, so that one Logs
    // Insights query finds every panic (it was "Invocation failed": found by a user writing a
    // function from the docs).
    assert_eq!(line["message"], "Invocation panicked", "{line}");
    assert!(
        line["exception"]
            .as_str()
            .is_some_and(|text| text.contains("oven on fire for o-fire")),
        "{line}"
    );
    assert!(
        line["location"]
            .as_str()
            .is_some_and(|location| location.contains("failure_names.rs")),
        "the panic's location: {line}"
    );
    assert_eq!(
        line["stack_trace"]["value"], "oven on fire for o-fire",
        "{line}"
    );
    assert!(line["stack_trace"]["frames"].is_array(), "{line}");
}

/// A store whose deletes answer after some polls, the first sooner than the second (as DynamoDB
/// may), so that invocations' releases of a panicked handler's claim interleave.
#[derive(Clone)]
struct SlowDeletes(InMemoryStore, Arc<std::sync::atomic::AtomicUsize>);

impl IdempotencyStore for SlowDeletes {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.0.get(key).await
    }
    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: std::time::SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        self.0.put_in_progress(record, now).await
    }
    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.0.update(record).await
    }
    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        let call = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..if call.is_multiple_of(2) { 2 } else { 8 } {
            tokio::task::yield_now().await;
        }
        self.0.delete(record).await
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        // The release of a failed handler's claim: as slow as the delete it replaced.
        let call = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..if call.is_multiple_of(2) { 2 } else { 8 } {
            tokio::task::yield_now().await;
        }
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

/// Two invocations on one thread panic behind the idempotency layer, whose releases of their
/// claims interleave: each failure line has its own panic's location and stack trace (a review
/// found them crossed, or lost, when the capture was looked for on the thread after the
/// release), a panic without a text message (`panic_any`) too.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_panics_behind_the_idempotency_layer_keep_their_own_locations() {
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let store = SlowDeletes(InMemoryStore::new(), Arc::default());
    let idempotency = Idempotency::builder(store).build().expect("valid settings");
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            let order = event.payload["order"].as_str();
            if order == Some("a") {
                panic!("boom"); // panic a
            }
            if order == Some("b") {
                panic!("boom"); // panic b
            }
            if order == Some("c") {
                std::panic::panic_any(42_u32); // panic c
            }
            Ok::<Value, lambda_runtime::Error>(Value::Null)
        }));
    let line_of = |marker: &str| {
        let source = include_str!("failure_names.rs");
        let line = source
            .lines()
            .position(|line| line.contains(marker))
            .expect("the marker");
        format!("powertools/tests/failure_names.rs:{}", line + 1)
    };
    let _ = tokio::join!(
        service
            .clone()
            .oneshot(invocation("req-panic-a", json!({"order": "a"}))),
        service
            .clone()
            .oneshot(invocation("req-panic-b", json!({"order": "b"}))),
        service.oneshot(invocation("req-panic-any", json!({"order": "c"}))),
    );
    for (request, marker) in [
        ("req-panic-a", "// panic a"),
        ("req-panic-b", "// panic b"),
        ("req-panic-any", "// panic c"),
    ] {
        let line = failure_line(&logs, request);
        assert_eq!(line["exception_name"], "HandlerPanicked", "{line}");
        assert_eq!(line["location"], line_of(marker), "{request}: {line}");
        assert!(
            line["stack_trace"]["frames"].is_array(),
            "{request}: {line}"
        );
    }
}

/// A panic someone else caught leaves the hook's capture on the thread; a later panic the hook
/// never saw (`resume_unwind`) must not get its location or text (a review found another
/// customer's panic text in a later invocation's `stack_trace`), nor one after a response's
/// `Serialize` panicked.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_caught_elsewhere_never_describes_a_later_invocation_s_panic() {
    #[derive(Debug, Clone, serde::Deserialize)]
    struct Unserializable;
    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("serialize boom for customer 1")
        }
    }
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let swallowing = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            if event.payload["order"] == "swallow" {
                let _ = std::panic::catch_unwind(|| panic!("card 4111 of customer 1"));
                return Ok::<Value, lambda_runtime::Error>(Value::Null);
            }
            std::panic::resume_unwind(Box::new("rethrown for customer 2"));
        }));
    swallowing
        .clone()
        .oneshot(invocation("req-swallow", json!({"order": "swallow"})))
        .await
        .unwrap();
    swallowing
        .oneshot(invocation("req-rethrow", json!({"order": "rethrow"})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-rethrow");
    assert_eq!(line["exception_name"], "HandlerPanicked", "{line}");
    assert!(!line.to_string().contains("customer 1"), "{line}");
    assert!(line.get("stack_trace").is_none(), "{line}");
    assert!(
        line["location"]
            .as_str()
            .is_some_and(|location| !location.contains("failure_names.rs")),
        "no location the hook saw for this panic: {line}"
    );

    let serializing = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency()))
        .service(service_fn(|event: LambdaEvent<Value>| async move {
            if event.payload["order"] == "bad" {
                return Ok::<_, lambda_runtime::Error>(Some(Unserializable));
            }
            std::panic::resume_unwind(Box::new(17_u8));
        }));
    // The stack's other layers serialize the response too: that panic goes on, in its task.
    let _ = tokio::spawn(
        serializing
            .clone()
            .oneshot(invocation("req-bad-response", json!({"order": "bad"}))),
    )
    .await;
    serializing
        .oneshot(invocation("req-rethrow-17", json!({"order": "17"})))
        .await
        .unwrap_err();
    let line = failure_line(&logs, "req-rethrow-17");
    assert!(!line.to_string().contains("serialize boom"), "{line}");
    assert!(line.get("stack_trace").is_none(), "{line}");
}

/// A panic while the inner service builds its future (in its `call`): the idempotency layer
/// frees the claim, then lets the panic go on; concurrent invocations' lines keep their own
/// locations (a review found them crossed: the capture was looked for after the release).
#[tokio::test(flavor = "current_thread")]
async fn concurrent_panics_in_the_inner_call_keep_their_own_locations() {
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let store = SlowDeletes(InMemoryStore::new(), Arc::default());
    let idempotency = Idempotency::builder(store).build().expect("valid settings");
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(IdempotencyLayer::new(idempotency))
        .service(tower_service_fn(|event: LambdaEvent<Value>| {
            if event.payload["order"] == "a" {
                panic!("boom"); // call panic a
            }
            if event.payload["order"] == "b" {
                panic!("boom"); // call panic b
            }
            std::future::ready(Ok::<Value, lambda_runtime::Error>(Value::Null))
        }));
    let spawn = |request: &'static str, order: &'static str| {
        tokio::spawn(
            service
                .clone()
                .oneshot(invocation(request, json!({"order": order}))),
        )
    };
    let (a, b) = tokio::join!(spawn("req-call-a", "a"), spawn("req-call-b", "b"));
    assert!(a.is_err_and(|error| error.is_panic()));
    assert!(b.is_err_and(|error| error.is_panic()));
    let source = include_str!("failure_names.rs");
    for (request, marker) in [
        ("req-call-a", "// call panic a"),
        ("req-call-b", "// call panic b"),
    ] {
        let line_number = source
            .lines()
            .position(|line| line.contains(marker))
            .expect("the marker")
            + 1;
        let line = logs
            .json()
            .into_iter()
            .find(|line| {
                line["function_request_id"] == request && line["message"] == "Invocation panicked"
            })
            .expect("the panic's line");
        assert_eq!(
            line["location"],
            format!("powertools/tests/failure_names.rs:{line_number}"),
            "{request}: {line}"
        );
    }
}

/// Descriptions given one after the other (one per type, or one that panics) name the error the
/// same in the failure line and in the span.
#[tokio::test]
async fn chained_or_panicking_descriptions_name_the_error_alike_in_the_line_and_the_span() {
    #[derive(Debug)]
    struct Other;
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    for (request, layer) in [
        (
            "req-chained",
            powertools
                .layer()
                .error_diagnostic(|error: &AppError| Diagnostic::from(error.clone()))
                .error_diagnostic(|_: &Other| Diagnostic {
                    error_type: "Other".to_owned(),
                    error_message: String::new(),
                }),
        ),
        (
            "req-panicking",
            powertools
                .layer()
                .error_diagnostic(|error: &AppError| Diagnostic::from(error.clone()))
                .error_diagnostic(|_: &AppError| -> Diagnostic {
                    panic!("the description failed")
                }),
        ),
    ] {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_: LambdaEvent<Value>| async {
                Err::<Value, _>(AppError::Declined)
            }))
            .oneshot(invocation(request, json!({})))
            .await
            .unwrap_err();
        let line = failure_line(&logs, request);
        assert_eq!(line["exception_name"], "Declined", "{request}: {line}");
        let exceptions = spans.exceptions();
        assert!(
            exceptions.iter().any(|(id, kind, _)| {
                id.as_deref() == Some(request) && kind.as_deref() == Some("Declined")
            }),
            "{request}: {exceptions:?}"
        );
    }
}

/// At `POWERTOOLS_LOG_LEVEL=WARN` (a common production setting) the spans below it still exist:
/// the log level filtered spans as it filters lines, and a layer that disables a span disables it
/// for every layer of the registry, so each `batch_record` span, the user's own `info_span!`s and
/// the AWS SDK's spans were never created: no record reached the traces, and the warnings a
/// record's handler wrote lost its `message_id` (found by an attack from the docs).
#[cfg(feature = "batch")]
#[tokio::test]
async fn at_log_level_warn_info_spans_still_reach_the_traces_and_carry_their_keys() {
    use powertools::batch::{BatchProcessor, SqsRecord};
    use tracing::Instrument as _;
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack_with(&logs, &spans, &[("POWERTOOLS_LOG_LEVEL", "WARN")]);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(
            |event: LambdaEvent<powertools::events::sqs::SqsEvent>| async move {
                BatchProcessor::new()
                    .process_sqs(&event.payload, |_record: SqsRecord<Value>| async move {
                        async {
                            tracing::info!("an INFO line, below the level: not written");
                            tracing::warn!("stock is low");
                        }
                        .instrument(tracing::info_span!("charge_card"))
                        .await;
                        Ok::<(), String>(())
                    })
                    .await
            },
        ));
    let event: powertools::events::sqs::SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"},
        {"messageId": "m-2", "body": "{}", "eventSource": "aws:sqs"},
    ]}))
    .unwrap();
    service
        .oneshot(TestContext::new().event(event))
        .await
        .unwrap();
    powertools.tracer().flush().await;
    let lines = logs.json();
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "stock is low")
        .collect();
    assert_eq!(warnings.len(), 2, "{lines:#?}");
    for warning in &warnings {
        assert!(warning["message_id"].is_string(), "{warning}");
    }
    assert!(
        !lines.iter().any(|line| line["level"] == "INFO"),
        "the level still filters lines: {lines:#?}"
    );
    let kept = spans.0.lock().unwrap().clone();
    let named = |name: &str| kept.iter().filter(|span| span.name == name).count();
    assert_eq!(named("batch_record"), 2, "{kept:#?}");
    assert_eq!(named("charge_card"), 2, "{kept:#?}");
}

/// A batch record that failed has its `batch_record` span's status an error, as the failed
/// invocation's span has; one that succeeded keeps it unset (found by a user writing a function
/// from the docs: every record's span looked successful in the traces). The status is set after
/// the record's failure line, which has no key of it.
#[cfg(feature = "batch")]
#[tokio::test]
async fn a_failed_batch_record_s_span_is_an_error() {
    use powertools::batch::{BatchProcessor, SqsRecord};
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(
            |event: LambdaEvent<powertools::events::sqs::SqsEvent>| async move {
                BatchProcessor::new()
                    .process_sqs(&event.payload, |record: SqsRecord<Value>| async move {
                        if record.body["fail"] == true {
                            Err("the oven is cold".to_owned())
                        } else {
                            Ok(())
                        }
                    })
                    .await
            },
        ));
    let event: powertools::events::sqs::SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-ok", "body": "{\"fail\": false}", "eventSource": "aws:sqs"},
        {"messageId": "m-bad", "body": "{\"fail\": true}", "eventSource": "aws:sqs"},
    ]}))
    .unwrap();
    let response = service
        .oneshot(TestContext::new().event(event))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    powertools.tracer().flush().await;
    let kept = spans.0.lock().unwrap().clone();
    let status = |message_id: &str| {
        kept.iter()
            .find(|span| {
                span.name == "batch_record"
                    && span.attributes.iter().any(|a| {
                        a.key.as_str() == "message_id" && a.value.to_string() == message_id
                    })
            })
            .map(|span| span.status.clone())
            .unwrap_or_else(|| panic!("the span of {message_id}: {kept:#?}"))
    };
    assert!(
        matches!(
            status("m-bad"),
            powertools::tracing::opentelemetry::trace::Status::Error { .. }
        ),
        "{:?}",
        status("m-bad")
    );
    assert_eq!(
        status("m-ok"),
        powertools::tracing::opentelemetry::trace::Status::Unset
    );
    let failure = logs
        .json()
        .into_iter()
        .find(|line| line["message"] == "Record processing exception; skipping this record")
        .unwrap();
    assert!(failure.get("otel.status_code").is_none(), "{failure}");
}

/// The log lines' `xray_trace_id` names the trace the invocation's span joins, or none: the two
/// read Lambda's trace header with two readers, so on a header in another form than Lambda's (a
/// repeated `Root`, spaces around fields, a `Root` that is not an X-Ray trace id in its one
/// form) the lines named a trace that held none of the function's spans (found by an attack
/// from the docs).
#[tokio::test]
async fn the_lines_name_the_trace_the_span_joins_or_none() {
    let (logs, spans) = (MemoryLogs::new(), KeptSpans::default());
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(|_event: LambdaEvent<Value>| async {
            tracing::info!("baking");
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));
    let a = "1-5759e988-bd862e3fe1be46a994272793";
    let b = "1-6759e988-cd862e3fe1be46a994272794";
    let headers = [
        format!("Root={a};Parent=53995c3f42cd8ad8;Sampled=1"),
        format!("Root={a};Root={b};Parent=53995c3f42cd8ad8;Sampled=1"),
        format!("Root={b};Parent=53995c3f42cd8ad8;Sampled=1;Root=1-x"),
        format!("Parent=53995c3f42cd8ad8; Root={a}; Sampled=1"),
        format!("Root=={a};Parent=53995c3f42cd8ad8;Sampled=1"),
        "Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
        "Root=7-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
        "Root=1-5759E988-BD862E3FE1BE46A994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
        format!("root={a};parent=53995c3f42cd8ad8;sampled=1"),
        format!("Root={a};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5"),
    ];
    let mut differences = Vec::new();
    for (index, header) in headers.iter().enumerate() {
        spans.0.lock().unwrap().clear();
        let request = format!("req-trace-{index}");
        let context = TestContext::new()
            .with_function_name("orders-api")
            .with_request_id(&request)
            .with_trace_id(header.clone());
        service
            .clone()
            .oneshot(context.event(json!({})))
            .await
            .unwrap();
        powertools.tracer().flush().await;
        let line = logs
            .json()
            .into_iter()
            .find(|line| line["function_request_id"] == request.as_str())
            .unwrap();
        let logged = line["xray_trace_id"].as_str().map(str::to_owned);
        let joined = spans
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|span| span.name == "orders-api")
            .map(|span| {
                let id = span.span_context.trace_id().to_string();
                format!("1-{}-{}", &id[..8], &id[8..])
            });
        if logged.is_some() && logged != joined {
            differences.push(format!("{header:?}: lines {logged:?}, span {joined:?}"));
        }
        if index == 0 {
            assert_eq!(logged.as_deref(), Some(a), "Lambda's own form");
            assert_eq!(joined.as_deref(), Some(a));
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");
}

/// The logging and tracing layers used one by one outside a layer that passes the handler's
/// error on in its `Handler(…)` (the metrics layer, the idempotency layer), with a handler that
/// returns a `Diagnostic` (the batch README's shape): the line and the span name it by its
/// `error_type` and message, as Lambda reports it, as they do without the layer between. The
/// line said `Diagnostic` and the struct's `Debug` text, the span the wrapper's type path and
/// its `Debug` text (found by an attack from the batch docs).
#[tokio::test]
async fn a_diagnostic_passed_on_by_a_layer_between_is_named_as_lambda_reports_it() {
    use powertools::logging::LoggingLayer;
    use powertools::tracing::TracingLayer;
    let logs = MemoryLogs::new();
    let spans = KeptSpans::default();
    let powertools = stack(&logs, &spans);
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    // Quotes, a backslash, a new line and a character Rust's `Debug` escapes.
    let message = "all 3 records failed: \"oven\" \\ broken\nretry\u{1}é";
    let handler = service_fn(move |_: LambdaEvent<Value>| async move {
        Err::<Value, _>(Diagnostic {
            error_type: "BatchProcessingError".to_owned(),
            error_message: message.to_owned(),
        })
    });
    let metrics_between = ServiceBuilder::new()
        .layer(LoggingLayer::new(powertools.logger().clone()))
        .layer(TracingLayer::new(powertools.tracer().clone()))
        .layer(powertools.metrics().clone())
        .service(handler);
    metrics_between
        .oneshot(invocation("req-metrics-between", json!({})))
        .await
        .unwrap_err();
    let idempotency_between = ServiceBuilder::new()
        .layer(LoggingLayer::new(powertools.logger().clone()))
        .layer(TracingLayer::new(powertools.tracer().clone()))
        .layer(IdempotencyLayer::new(idempotency()).key_from(|_: &Value| Some(json!("k"))))
        .service(handler);
    idempotency_between
        .oneshot(invocation("req-idempotency-between", json!({})))
        .await
        .unwrap_err();
    let exceptions = spans.exceptions();
    for request in ["req-metrics-between", "req-idempotency-between"] {
        let line = failure_line(&logs, request);
        assert_eq!(line["exception_name"], "BatchProcessingError", "{line}");
        assert_eq!(line["exception"], message, "{line}");
        let (_, kind, span_message) = exceptions
            .iter()
            .find(|(id, ..)| id.as_deref() == Some(request))
            .expect("the span's exception event");
        assert_eq!(
            kind.as_deref(),
            Some("BatchProcessingError"),
            "{exceptions:?}"
        );
        assert_eq!(span_message.as_deref(), Some(message), "{exceptions:?}");
    }
}
