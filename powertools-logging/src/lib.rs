//! Structured JSON logs for Rust Lambda functions through `tracing`: one flat JSON object per
//! line, with the Lambda context and your business context (order id, customer, location) on
//! every line, in the schema Powertools for AWS Lambda writes and Lambda's Advanced Logging
//! Controls understand.
//!
//! # Example
//!
//! ```
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
//! use powertools_core::testing::TestContext;
//! use powertools_logging::{Logger, LoggingLayer, MemoryLogs};
//! use serde_json::{Value, json};
//!
//! #[tracing::instrument(skip_all, fields(location = "Lyon"))]
//! async fn bake(order: &Value) {
//!     tracing::info!(loaves = order["loaves"].as_u64(), "baking");
//! }
//!
//! async fn handler(event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
//!     // On every line of this invocation, from here on, whichever function logs it.
//!     powertools_logging::append_key("order_id", event.payload["order_id"].clone())?;
//!     bake(&event.payload).await;
//!     Ok(json!({"accepted": true}))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! let logs = MemoryLogs::new(); // a deployed function leaves the default: stdout
//! let logger = Logger::builder().service("orders").writer(logs.clone()).build()?;
//! let _guard = tracing::subscriber::set_default(logger.subscriber()); // or logger.init()
//!
//! let service = ServiceBuilder::new().layer(LoggingLayer::new(logger)).service(service_fn(handler));
//! let event = TestContext::new().with_function_name("orders-api").event(json!({"order_id": "o-1001", "loaves": 3}));
//! service.oneshot(event).await?;
//!
//! let line = &logs.json()[0];
//! assert_eq!(line["message"], "baking");
//! assert_eq!(line["loaves"], 3);
//! assert_eq!(line["location"], "Lyon");
//! assert_eq!(line["order_id"], "o-1001");
//! assert_eq!(line["function_name"], "orders-api");
//! # Ok(())
//! # }
//! ```
//!
//! The line it writes (one line; wrapped here):
//!
//! ```json
//! {"level":"INFO","message":"baking","timestamp":"2026-11-27T09:15:02.127Z","service":"orders",
//!  "cold_start":true,"function_name":"orders-api","function_memory_size":128,
//!  "function_arn":"arn:aws:lambda:eu-west-1:123456789012:function:orders-api",
//!  "function_request_id":"4ac1a1d3-6b0e-4c63-a8f0-4e4d0c1a8b7e","function_version":"$LATEST",
//!  "xray_trace_id":"1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a","loaves":3,"location":"Lyon",
//!  "order_id":"o-1001"}
//! ```
//!
//! `location` is the code's `module:line` unless a key of yours is named `location`, as here.
//!
//! # Overview
//!
//! - [`Logger`] holds the settings, from [`Logger::builder`] and the Powertools environment
//!   variables. Its [`json_layer`](Logger::json_layer) is a `tracing-subscriber` layer that writes
//!   the lines; compose it with other layers (OpenTelemetry) or let [`init`] install it.
//! - [`LoggingLayer`] (tower) scopes each invocation: Lambda context keys, the cold start, the
//!   correlation id (a typed closure, or a JMESPath expression such as those of
//!   `correlation_paths`, feature `jmespath`), the incoming event
//!   (`POWERTOOLS_LOGGER_LOG_EVENT`), debug sampling and the log buffer are per invocation. When
//!   the handler returns an error or panics, it writes one `ERROR` line with the invocation's
//!   context and Powertools' `exception_name`, `exception` and (for a panic) `stack_trace`.
//! - Business context: [`append_key`] adds a key to every line of the current invocation (gone
//!   when it ends); [`key_scope`] gives work that runs alongside other work of the invocation (a
//!   batch record, an idempotent call) keys of its own; [`Logger::append_persistent_key`] adds a
//!   key to every line of every invocation; the fields of a `tracing` span
//!   (`#[instrument(fields(...))]`, `info_span!`) are keys on the lines written inside it, that
//!   is, keys scoped to a block.
//! - The log buffer ([`LoggerBuilder::buffer`], [`BufferConfig`]) holds an invocation's verbose
//!   lines and writes them only when something goes wrong: an `ERROR` line, a failed invocation,
//!   or [`flush_buffer`] (and [`clear_buffer`] drops them), as Powertools for Python's buffer.
//! - Levels: `AWS_LAMBDA_LOG_LEVEL` (Lambda's Advanced Logging Controls) wins, then the level set
//!   in code, then `POWERTOOLS_LOG_LEVEL`, then Python's legacy `LOG_LEVEL`, then `INFO`; a
//!   more verbose level than Lambda's is warned about, since Lambda would drop those lines.
//! - Errors recorded as `error = &err as &dyn std::error::Error` are written as
//!   `{"type", "message", "sources"}`, the `source()` chain included, and as Powertools'
//!   `exception_name` and `exception` (the message chain), which Logs Insights queries written
//!   for Powertools for Python look for.
//! - Values of redacted keys ([`DEFAULT_REDACTED_KEYS`], configurable) are masked wherever they
//!   appear: a field, a business key, a key nested in the logged event, a key inside a string
//!   that holds JSON (an API Gateway `body`).
//! - `POWERTOOLS_LOGGER_LOG_EVENT` logs the event as Lambda sent it, with [`RawEventLayer`] on
//!   the runtime (`powertools::run` adds it), or when the handler takes a `serde_json::Value`.
//! - `POWERTOOLS_DEV=true` pretty-prints each line for reading in a terminal; the logger says so
//!   in a warning when it is built, since it turns metrics and traces off too.
//!
//! # Every line is one line of valid JSON, small enough for CloudWatch
//!
//! Whatever a field holds (quotes, newlines, control characters, a `Debug` impl that fails),
//! each event is one JSON object on one line, written in one `write`, so lines of concurrent
//! invocations never interleave. A key is written once: the standard keys first, then the
//! event's fields, the fields of the spans it is in (innermost first), the keys of its scope,
//! the persistent keys, then the code `location` if no key took that name.
//!
//! A line is at most [`DEFAULT_MAX_LINE_BYTES`] long (just under the 256 KB CloudWatch Logs
//! takes per event; [`LoggerBuilder::max_line_bytes`] changes it). A longer line has its largest
//! values cut, each ending in `...[truncated N bytes]`, and names them in `truncated_keys`; the
//! standard keys are cut last and never below 128 bytes, so the ids that join a line to its
//! invocation and trace stay whole:
//!
//! ```json
//! {"level":"INFO","message":"document received",…,"order_id":"o-1",
//!  "document":"JVBERi0xLjcKJeLjz9MK…...[truncated 4988213 bytes]","truncated_keys":["document"]}
//! ```
//!
//! # Keys named like the standard keys
//!
//! A field of an event or a span named like a key the line writes itself (`level`, `message`,
//! `timestamp`, `service`, `cold_start`, `function_*`, `xray_trace_id`, `tenant_id`,
//! `correlation_id`, `sampling_rate`, `truncated_keys`) is kept under its name prefixed with
//! [`RESERVED_PREFIX`]: `info!(level = "gold", …)` writes `"extra_level":"gold"` beside
//! `"level":"INFO"`. [`append_key`] and persistent keys refuse those names, and the
//! failure line's `exception_name`, `exception` and `stack_trace`, which would be on every line
//! ([`Error::ReservedKey`]). `location` is not reserved: a business `location` replaces the code
//! location. A span's field named like one of the failure keys is prefixed too
//! (`extra_exception`), since it is on every line in the span, as an appended key would be; an
//! event's field of that name is its line's own (`error!(exception = %reason, "charge failed")`
//! writes `exception`). For the same reason a span's `error` field is written as `error`, where
//! an event's also writes `exception` (below).
//!
//! A field of an event or a span named like an appended or persistent key replaces that key on
//! its line only (the event's field before the span's), as an `extra` key replaces an appended
//! one in Powertools for Python: `warn!(reason = "the bank refused", …)` writes that `reason`,
//! and the invocation's other lines keep the appended one.
//!
//! # Differences from Powertools for Python and TypeScript
//!
//! - Keys for the current invocation are per invocation automatically ([`append_key`]); there is
//!   no process-wide `append_keys` to clear, and concurrent work gets its own with [`key_scope`]
//!   (Python's `thread_safe_append_keys`). A task spawned with `tokio::spawn` logs with the
//!   context of the scope it was spawned in when it runs in a span created there
//!   (`.in_current_span()`); to append keys from it, append them before spawning. A span
//!   belongs to the invocation it was created in: one kept and reused across invocations (a
//!   client's span made on first use, held in a `static` or a shared struct) gives lines logged
//!   under it later, from a task or thread with no invocation of its own, the first
//!   invocation's request id and keys, and keeps that invocation's keys and buffer alive. Make
//!   such spans per invocation, or attach spawned work with `.in_current_span()`.
//! - `timestamp` is RFC 3339 UTC with milliseconds (TypeScript's format), which Lambda accepts.
//! - The debug sampling decision is drawn per invocation, including the first.
//! - Redaction is built in.
//! - A failed invocation is logged by the layer itself (Java's `logError`), not only when the
//!   handler logs its exception.
//! - Lines carry `function_version` (the version the invocation ran, `$LATEST` or a number),
//!   which Python's lines do not; queries that don't name it are unaffected.
//! - `location` comes last, after the line's own keys, where Python writes it second; Logs
//!   Insights and JSON readers do not depend on the order of keys.
//! - `level` is written as Lambda's advanced logging controls spell it (`WARN`; there is no
//!   level above `ERROR`), where Python writes `WARNING` (and `CRITICAL`): a query that filters
//!   `level = "WARNING"` for both runtimes needs `level in ["WARN", "WARNING"]`. `DEBUG`,
//!   `INFO` and `ERROR` are the same.
//! - `location` is the Rust module path and line (`orders_api::api:142`), where Python writes
//!   the function name and line (`handler:59`): Rust's `tracing` records the module, not the
//!   function. A panic's failure line has the `panic!`'s file and line (`src/oven.rs:42`): a
//!   panic knows its file, not its module. A business `location` replaces either.
//! - A float JSON cannot hold (NaN, ±infinity), in a field or anywhere in an appended or
//!   persistent key's value, is written as its text (`"NaN"`, `"inf"`, `"-inf"`), where Python's
//!   `json.dumps` writes a bare `NaN` or `Infinity` that makes the line invalid JSON (Logs
//!   Insights then reads none of its keys), and serde_json alone would write `null`.
//! - An integer beyond 64 bits (`u128`, `i128`) in an appended or persistent key's value is
//!   written as its digits in a string (`"340282366920938463463374607431768211455"`), where
//!   Python writes the number: serde_json's values, which hold the keys, have 64-bit integers
//!   (a field of an event writes the number; so does an appended key where a crate in the build
//!   turns on serde_json's `arbitrary_precision`).
//! - `correlation_id` is always a string: an id found at a JMESPath expression that is a
//!   number, a boolean, an object or an array is written as its JSON text, where Python writes
//!   the value with its JSON type. A query that compares it with a number needs the text.
//! - `sampling_rate` is always a number (`0.1`), where Python writes the variable's text when
//!   the rate comes from `POWERTOOLS_LOGGER_SAMPLE_RATE` (`"0.1"`) and a number when it is set in
//!   code: a query that filters on its text (`sampling_rate = "0.1"`) matches only Python's
//!   lines.
//! - `function_memory_size` is a number (`128`), as Powertools' documentation shows it; on
//!   Lambda, Python's lines carry the runtime's text (`"128"`: its context reads
//!   `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` as a string, and Powertools copies it). A query that
//!   compares it with text (`function_memory_size = "128"`) matches only Python's lines.
//! - A message that is JSON text (`info!("{{\"order_id\":1}}")`) is written as that text, a
//!   string, where Python decodes it (`"message":{"order_id":1}`; `"123"` becomes a number):
//!   `message` is text on every line but the event's (`POWERTOOLS_LOGGER_LOG_EVENT`), so that a
//!   query on it reads every line alike. Log structure as fields (`info!(order_id = 1, …)`) or
//!   with [`append_key`].
//! - An event's field named `error` (Rust's name for an error value: `warn!(%error, …)`) writes
//!   `exception` (and `exception_name` for an `&dyn Error`) on a line of any level, as Python's
//!   `exc_info=True` does at any level: count failures by `level = "ERROR"`, not by
//!   `ispresent(exception)`.
//! - `exception` is the error's message chain (`payment of o-1 failed: card declined`), not a
//!   Python traceback, and `stack_trace` is written for a panic only (an error value carries no
//!   stack); it has no `module` or `statement`.
//! - `CRITICAL` and `FATAL` are read as `ERROR` (`tracing` has no level above it), so `ERROR`
//!   lines are written under them where Python writes `CRITICAL` lines only.
//! - A sampled invocation writes a `DEBUG` line, `Setting log level to DEBUG due to sampling
//!   rate` (Python logs it to a logger of its own that writes nothing); the warnings about the
//!   configuration (a level Lambda would drop, a log buffer evicting lines) are JSON lines, where
//!   Python sends them to stderr as `UserWarning`s.
//! - The log buffer's lines are written when the handler fails (`flush_on_handler_error`, on by
//!   default: the lines kept for a failure are what a failure needs), where Python's
//!   `flush_buffer_on_uncaught_error` is off by default.
//! - `tenant_id` (Lambda's tenant isolation) is written as TypeScript writes it; Python 3.37
//!   does not write it.
//! - In the configuration: a sample rate outside 0.0 to 1.0 (`1.5`, `-0.1`, `NaN`, `inf`) stops
//!   the start, where Python runs (sampling always or never, without a word); `TRACE` is a level
//!   (Python: `Unknown level`); levels and booleans are trimmed (Python refuses `" DEBUG"` and
//!   `" true"`); an `AWS_LAMBDA_LOG_LEVEL` that is not a level stops the start (Python ignores
//!   it). The README says why.
//!
//! # Feature flags
//!
//! - `jmespath` (off by default): correlation ids at a JMESPath expression in the event
//!   (`LoggingLayer::correlation_id_path`, `CorrelationIdPath`, and the expressions of
//!   `correlation_paths`), with the Powertools functions. It pulls in `jmespath`, `base64` and
//!   `flate2` through `powertools-core`.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod buffer;
mod correlation;
mod error;
mod failure;
mod finite;
mod invocation;
mod json;
mod layer;
mod level;
mod logger;
mod raw_event;
mod scope;
mod subscriber;
mod truncate;

/// The `chrono` version of [`Clock`] (a replaceable source of each line's time), so that a test
/// clock needs no `chrono` of its own in step with this crate's.
#[doc(no_inline)]
pub use chrono;
pub use correlation::{CorrelationIdFn, CorrelationIdSource, NoCorrelationId};
#[cfg(feature = "jmespath")]
#[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
pub use correlation::{CorrelationIdPath, correlation_paths};
pub use error::Error;
pub use json::{DEFAULT_REDACTED_KEYS, REDACTED, RESERVED_PREFIX};
pub use layer::{LoggingLayer, LoggingService};
pub use level::Level;
pub use logger::{
    AWS_LAMBDA_LOG_LEVEL, BufferConfig, Clock, DEFAULT_BUFFER_MAX_BYTES, LOG_LEVEL, Logger,
    LoggerBuilder, MemoryLogs, POWERTOOLS_LOG_LEVEL, POWERTOOLS_LOGGER_LOG_EVENT,
    POWERTOOLS_LOGGER_SAMPLE_RATE,
};
pub use raw_event::{RawEventLayer, RawEventService, received_body};
pub use scope::key_scope;
pub use subscriber::JsonLayer;
pub use truncate::{DEFAULT_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES};

use serde::Serialize;
use serde_json::Value;

use crate::scope::Scope;

/// Builds a [`Logger`] from the environment and installs it as the global `tracing`
/// subscriber: the one call a platform team puts at the top of every function.
///
/// # Errors
/// A malformed environment variable, or [`Error::SubscriberAlreadyInstalled`].
pub fn init() -> Result<Logger, Error> {
    let logger = Logger::from_env()?;
    logger.init()?;
    Ok(logger)
}

pub(crate) fn key_value(key: &str, value: impl Serialize) -> Result<Value, Error> {
    if json::RESERVED_KEYS.contains(&key) || json::FAILURE_KEYS.contains(&key) {
        return Err(Error::ReservedKey {
            key: key.to_owned(),
        });
    }
    finite::to_value(&value).map_err(|source| Error::Serialization {
        key: key.to_owned(),
        source,
    })
}

/// Adds `key` to every line the current invocation writes from now on, replacing its value if it
/// was appended already. Gone when the invocation ends.
///
/// A float JSON cannot hold, anywhere in `value`, is written as its text (`"NaN"`, `"inf"`,
/// `"-inf"`), as a field of an event is, not as serde_json's `null`.
///
/// A value that serializes to `null` (`None`) leaves the key out of the lines, as Powertools for
/// Python leaves out a key whose value is `None`; it also hides a persistent key of that name.
/// Appending a value again brings the key back.
///
/// A field of a line (the event's or a span's) with the key's name replaces it on that line
/// only, as an `extra` key replaces an appended one in Powertools for Python:
/// `warn!(reason = "…", "…")` writes its own `reason`, and the invocation's other lines keep the
/// appended one. Name business keys apart from the fields your lines (and the libraries' lines,
/// such as `powertools-batch`'s `message_id` and `reason`) write.
///
/// Inside a [`key_scope`] (each record of `powertools-batch` runs in one), the key is that
/// scope's: on its lines only, gone when it ends.
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`] and outside a
/// [`key_scope`], [`Error::ReservedKey`], or [`Error::Serialization`] (a value that does not
/// serialize, or that nests deeper than 126 levels: its line, one more, would be deeper than the
/// 127 that serde_json reads).
pub fn append_key(key: &str, value: impl Serialize) -> Result<(), Error> {
    let value = key_value(key, value)?;
    Scope::with_current(|scope| scope.keys().keys.append(key, value))
        .ok_or(Error::NoCurrentInvocation)
}

/// Removes a key appended to the current invocation (or [`key_scope`]); `false` if it had none.
pub fn remove_key(key: &str) -> bool {
    Scope::with_current(|scope| scope.keys().keys.remove(key)).unwrap_or(false)
}

/// Sets the current invocation's `correlation_id` (inside a [`key_scope`], that scope's).
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`] and outside a
/// [`key_scope`].
pub fn set_correlation_id(id: impl Into<String>) -> Result<(), Error> {
    let id = id.into();
    Scope::with_current(|scope| scope.keys().correlation_id = Some(id))
        .ok_or(Error::NoCurrentInvocation)
}

/// The current invocation's `correlation_id`, to pass on to the services it calls.
pub fn correlation_id() -> Option<String> {
    Scope::with_current(|scope| scope.keys().correlation_id.clone()).flatten()
}

/// Writes the lines the current invocation's log buffer holds now, oldest first (then the
/// warning that some were evicted, if any were), as an `ERROR` line or a failed invocation
/// writes them: for a failure the handler deals with without an `ERROR` line. Powertools for
/// Python's `Logger.flush_buffer()`. Without a buffer ([`LoggerBuilder::buffer`]) it does
/// nothing.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{Layer, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_logging::{BufferConfig, Logger, LoggingLayer, MemoryLogs};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder()
///     .service("payments")
///     .buffer(BufferConfig::default())
///     .writer(logs.clone())
///     .build()?;
/// let _guard = tracing::subscriber::set_default(logger.subscriber());
/// let handler = LoggingLayer::new(logger).layer(service_fn(|_: LambdaEvent<Value>| async {
///     tracing::debug!("asked the bank");
///     // The bank said no, and the handler answers without failing: keep the story anyway.
///     powertools_logging::flush_buffer()?;
///     tracing::debug!("answered");
///     Ok::<_, lambda_runtime::Error>(json!({"paid": false}))
/// }));
/// handler.oneshot(TestContext::new().event(json!({}))).await?;
/// let messages: Vec<Value> = logs.json().iter().map(|line| line["message"].clone()).collect();
/// assert_eq!(messages, [json!("asked the bank")]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`]: not in its task
/// (or a [`key_scope`] within it) nor in one of its spans (a task spawned with
/// `.in_current_span()`).
pub fn flush_buffer() -> Result<(), Error> {
    subscriber::flush_buffer(&*current_invocation()?);
    Ok(())
}

/// Drops the lines the current invocation's log buffer holds: a failure later in the invocation
/// no longer writes them. Powertools for Python's `Logger.clear_buffer()`. Without a buffer it
/// does nothing.
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`], as
/// [`flush_buffer`].
pub fn clear_buffer() -> Result<(), Error> {
    if let Some(mut buffer) = current_invocation()?.buffer() {
        buffer.clear();
    }
    Ok(())
}

/// The current invocation's state, for the buffer functions: its task's scope's, or the one
/// the current span keeps (a task spawned with `.in_current_span()`, whose lines go to the
/// invocation's buffer; found by a review).
fn current_invocation() -> Result<std::sync::Arc<invocation::InvocationState>, Error> {
    subscriber::current_scope()
        .and_then(|scope| scope.invocation)
        .ok_or(Error::NoCurrentInvocation)
}
