//! The log buffer's and the correlation id's edges, found by a review of the change that added
//! `flush_buffer`/`clear_buffer`, the `TRACE` rule and the correlation id's masking. Five failed
//! before their fixes (behind `reload`, at a `TRACE` logger, after `clear_buffer`, in a spawned
//! task, and the one writer); the others pin what held, and what `key_scope`'s docs now say.

#![allow(clippy::unwrap_used)]

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{BufferConfig, Level, Logger, LoggerBuilder, LoggingLayer, MemoryLogs};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

type HandlerResult = Result<Value, lambda_runtime::Error>;

fn builder(logs: &MemoryLogs) -> LoggerBuilder {
    Logger::builder()
        .service("orders")
        .writer(logs.clone())
        .env(Env::empty())
}

async fn invoke<F, Fut>(logger: &Logger, context: TestContext, handler: F) -> HandlerResult
where
    F: Fn(LambdaEvent<Value>) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    LoggingLayer::new(logger.clone())
        .layer(service_fn(handler))
        .oneshot(context.event(json!({})))
        .await
}

fn messages(logs: &MemoryLogs) -> Vec<String> {
    logs.json()
        .iter()
        .map(|line| line["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// though the layer behind the reload buffered the line (and an ERROR line would flush it).
#[tokio::test]
async fn flush_buffer_behind_reload_writes_the_buffer() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let (reloadable, _handle) = tracing_subscriber::reload::Layer::new(logger.json_layer());
    let subscriber = tracing_subscriber::registry().with(reloadable);
    let _guard = tracing::subscriber::set_default(subscriber);
    invoke(&logger, TestContext::new(), |_| async {
        tracing::debug!("asked the bank");
        powertools_logging::flush_buffer()?;
        Ok(Value::Null)
    })
    .await
    .unwrap();
    assert_eq!(messages(&logs), ["asked the bank"]);
}

/// a successful invocation writes the TRACE noise and drops the function's own DEBUG line.
#[tokio::test]
async fn at_trace_level_a_debug_buffer_does_not_write_trace_lines_directly() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .level(Level::Trace)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    invoke(&logger, TestContext::new(), |_| async {
        tracing::trace!(target: "aws_smithy_runtime::client", "the SDK's at trace");
        tracing::debug!("ours at debug");
        Ok(Value::Null)
    })
    .await
    .unwrap();
    let written = messages(&logs);
    assert!(
        !written.iter().any(|m| m == "the SDK's at trace"),
        "a TRACE line, more verbose than the buffered DEBUG, bypassed the buffer: {written:?}"
    );
}

/// the flag, so the same invocation warns again.
#[tokio::test]
async fn the_too_large_warning_is_once_per_invocation_even_after_clear_buffer() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default().with_max_bytes(600))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    invoke(&logger, TestContext::new(), |_| async {
        tracing::debug!(blob = "x".repeat(1_000), "big 1");
        powertools_logging::clear_buffer()?;
        tracing::debug!(blob = "y".repeat(1_000), "big 2");
        Ok(Value::Null)
    })
    .await
    .unwrap();
    let warnings = logs
        .json()
        .iter()
        .filter(|line| line["level"] == "WARN")
        .count();
    assert_eq!(warnings, 1, "{:?}", messages(&logs));
}

/// invocation's buffer), but `flush_buffer()` there says there is no invocation.
#[tokio::test]
async fn flush_buffer_works_in_a_task_that_logs_into_the_invocation() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let flushed = invoke(&logger, TestContext::new(), |_| async {
        let flushed = tokio::spawn(
            async {
                tracing::debug!("in the task");
                powertools_logging::flush_buffer()
            }
            .in_current_span(),
        )
        .await
        .unwrap();
        Ok(json!(flushed.is_ok()))
    })
    .await
    .unwrap();
    assert_eq!(flushed, json!(true), "{:?}", messages(&logs));
}

/// one: the same buffer goes to two different writers depending on how it is flushed.
#[tokio::test]
async fn a_failure_and_flush_buffer_write_the_buffer_to_the_same_logger() {
    let installed_logs = MemoryLogs::new();
    let layer_logs = MemoryLogs::new();
    let installed = builder(&installed_logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let layer_logger = builder(&layer_logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(installed.subscriber());
    let _ = invoke(&layer_logger, TestContext::new(), |_| async {
        tracing::debug!("flushed on demand");
        powertools_logging::flush_buffer()?;
        tracing::debug!("flushed by the failure");
        Err::<Value, _>("declined".into())
    })
    .await;
    let installed_messages = messages(&installed_logs);
    assert!(
        installed_messages.contains(&"flushed on demand".to_owned())
            && installed_messages.contains(&"flushed by the failure".to_owned()),
        "installed: {installed_messages:?}; layer's: {:?}",
        messages(&layer_logs)
    );
}

/// `#[instrument]`ed function's) the task does get the scope's keys.
#[tokio::test]
async fn a_task_spawned_in_a_span_opened_inside_a_scope_has_its_keys() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs).build().unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    invoke(&logger, TestContext::new(), |_| async {
        powertools_logging::key_scope(async {
            powertools_logging::append_key("order_id", "o-1")?;
            async {
                tokio::spawn(async { tracing::info!("from the task") }.in_current_span())
                    .await
                    .unwrap();
            }
            .instrument(tracing::info_span!("record"))
            .await;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        })
        .await
    })
    .await
    .unwrap();
    let line = logs.json()[0].clone();
    assert_eq!(line["order_id"], "o-1", "{line}");
}

/// inside JSON text, whole when `correlation_id` is redacted.
#[tokio::test]
async fn correlation_ids_are_masked_and_not_mangled() {
    for (redact, id, expected) in [
        (None, "c-1", json!("c-1")),
        (None, "password-reset-42", json!("password-reset-42")),
        (
            None,
            "12345678901234567890123",
            json!("12345678901234567890123"),
        ),
        (None, "[1, 2]", json!("[1, 2]")),
        (None, "{\"a\": 1.0}", json!("{\"a\": 1.0}")),
        (Some("id"), "c-1", json!("c-1")),
        (Some("correlation-id"), "c-1", json!("*****")),
        (Some("CorrelationId"), "c-1", json!("*****")),
    ] {
        let logs = MemoryLogs::new();
        let mut b = builder(&logs);
        if let Some(key) = redact {
            b = b.redact_key(key);
        }
        let logger = b.build().unwrap();
        let _guard = tracing::subscriber::set_default(logger.subscriber());
        let id = id.to_owned();
        LoggingLayer::new(logger.clone())
            .correlation_id_from(move |_: &Value| Some(id.clone()))
            .layer(service_fn(|_: LambdaEvent<Value>| async {
                tracing::info!("x");
                Ok::<_, lambda_runtime::Error>(Value::Null)
            }))
            .oneshot(TestContext::new().event(json!({})))
            .await
            .unwrap();
        let line = logs.json()[0].clone();
        assert_eq!(line["correlation_id"], expected, "{redact:?} {line}");
    }
}

/// `flush_buffer()` find the logger.
#[tokio::test]
async fn flush_buffer_through_a_per_layer_filter() {
    use tracing_subscriber::Layer as _;
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("buffer_edges", tracing::Level::TRACE);
    let subscriber = tracing_subscriber::registry().with(logger.json_layer().with_filter(filter));
    let _guard = tracing::subscriber::set_default(subscriber);
    invoke(&logger, TestContext::new(), |_| async {
        tracing::debug!(target: "aws_smithy_runtime", "the SDK's");
        tracing::debug!("asked the bank");
        powertools_logging::flush_buffer()?;
        powertools_logging::flush_buffer()?;
        Ok(Value::Null)
    })
    .await
    .unwrap();
    assert_eq!(messages(&logs), ["asked the bank"]);
}

/// A field whose `Display` calls the buffer functions, as its line is formatted.
struct Reenters;
impl std::fmt::Display for Reenters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = powertools_logging::clear_buffer();
        let flushed = powertools_logging::flush_buffer();
        write!(f, "reentered {}", flushed.is_ok())
    }
}

/// `clear_buffer()`/`flush_buffer()` from inside a line's formatting (a field's `Display`):
/// no deadlock on the buffer's mutex, at a buffered and at an ERROR (flushing) line.
#[tokio::test]
async fn buffer_functions_inside_an_event_callback_do_not_deadlock() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let run = invoke(&logger, TestContext::new(), |_| async {
        tracing::debug!("before");
        tracing::debug!(x = %Reenters, "buffered");
        tracing::error!(x = %Reenters, "failed");
        Ok(Value::Null)
    });
    tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .expect("no deadlock")
        .unwrap();
    let written = messages(&logs);
    assert!(written.iter().any(|m| m == "failed"), "{written:?}");
}

/// A line a task logs after its invocation ended is not held in the ended invocation's buffer,
/// which nothing writes again: with the buffer at `INFO`, a late `INFO` line was lost without a
/// word (found by an audit from the docs). It is written, as a line at a written level is, with
/// its invocation's context; a late `DEBUG` line is left out by the level, as without a buffer.
#[tokio::test]
async fn a_line_logged_after_the_invocation_ended_is_not_held() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default().with_level(Level::Info))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(Some(wait)));
    let mut late = None;
    let handled = invoke(
        &logger,
        TestContext::new().with_request_id("req-late"),
        move |_| {
            let wait = wait.lock().unwrap().take().unwrap();
            let task = tokio::spawn(
                async move {
                    let _ = wait.await;
                    tracing::info!("late info");
                    tracing::debug!("late debug");
                }
                .in_current_span(),
            );
            async move {
                tracing::info!("held");
                Ok(json!({ "task": format!("{:?}", task.id()) }))
            }
        },
    )
    .await;
    assert!(handled.is_ok());
    // The invocation succeeded: its held line is dropped. Then the task logs.
    go.send(()).unwrap();
    for _ in 0..3_000 {
        late = logs
            .json()
            .into_iter()
            .find(|line| line["message"] == "late info");
        if late.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let late = late.unwrap_or_else(|| panic!("{:?}", messages(&logs)));
    assert_eq!(late["function_request_id"], "req-late");
    assert_eq!(messages(&logs), ["late info"]);
}

/// An invocation whose future is dropped before it completes (a timeout outside the layer)
/// says so in a line of its own, with the invocation's keys, and writes its buffered lines as a
/// failure does: it wrote nothing and dropped the buffer, as though it had succeeded (found by an
/// attack from the docs: "nothing is dropped without a word").
#[tokio::test]
async fn an_invocation_cancelled_from_outside_says_so_and_writes_its_buffer() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        invoke(
            &logger,
            TestContext::new().with_request_id("req-cancelled"),
            |_| async {
                powertools_logging::append_key("order_id", "o-7")?;
                tracing::debug!("asked the bank");
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                Ok(Value::Null)
            },
        ),
    )
    .await;
    assert!(cancelled.is_err(), "the timeout fired");
    let lines = logs.json();
    assert!(
        lines.iter().any(|line| line["message"] == "asked the bank"),
        "{lines:?}"
    );
    let line = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|text| text.starts_with("Invocation cancelled"))
        })
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["function_request_id"], "req-cancelled", "{line}");
    assert_eq!(line["order_id"], "o-7", "{line}");
}

/// A buffer that holds warnings (`with_level(Level::Warn)`) holds the function's, and not the
/// library's own: they report data lost (a metric refused, a batch record failed, a dimension
/// overwritten), which the buffer, discarded with a successful invocation, would hide (found by
/// an attack from the docs). The library's lines below `WARN` are buffered as any. A crate
/// whose name only begins with `powertools` is the function's own.
#[tokio::test]
async fn a_warning_buffer_holds_the_function_s_warnings_not_the_library_s() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .buffer(BufferConfig::default().with_level(Level::Warn))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    invoke(&logger, TestContext::new(), |_| async {
        tracing::warn!("the function's own warning");
        tracing::warn!(target: "powertools_metrics", "a metric was refused");
        tracing::warn!(target: "powertools_batch::processor", "a record failed");
        tracing::warn!(target: "powertools", "the response holds NaN");
        tracing::warn!(target: "powertools_extras", "a crate of the function's");
        tracing::info!(target: "powertools_metrics", "the library's info line");
        Ok(Value::Null)
    })
    .await
    .unwrap();
    assert_eq!(
        messages(&logs),
        [
            "a metric was refused",
            "a record failed",
            "the response holds NaN"
        ]
    );
}

/// At a logger level that would not write them (`ERROR`), the library's warnings are buffered
/// as before, and written with the buffer when the invocation fails: bypassing the buffer there
/// lost them (found by a review).
#[tokio::test]
async fn at_an_error_logger_the_library_s_warnings_are_buffered_and_written_on_failure() {
    let logs = MemoryLogs::new();
    let logger = builder(&logs)
        .level(Level::Error)
        .buffer(BufferConfig::default().with_level(Level::Warn))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let failed = invoke(&logger, TestContext::new(), |_| async {
        tracing::warn!("the function's own warning");
        tracing::warn!(target: "powertools_metrics", "a metric was refused");
        Err::<Value, _>("the oven is cold".into())
    })
    .await;
    assert!(failed.is_err());
    let written = messages(&logs);
    assert!(
        written.starts_with(&[
            "the function's own warning".to_owned(),
            "a metric was refused".to_owned()
        ]),
        "{written:?}"
    );
}
