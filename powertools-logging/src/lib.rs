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
//!   correlation id ([`correlation_paths`] or a typed closure), the incoming event
//!   (`POWERTOOLS_LOGGER_LOG_EVENT`), debug sampling and the log buffer are per invocation.
//! - Business context: [`append_key`] adds a key to every line of the current invocation (gone
//!   when it ends); [`Logger::append_persistent_key`] to every line of every invocation; the
//!   fields of a `tracing` span (`#[instrument(fields(...))]`, `info_span!`) are keys on the lines
//!   written inside it, that is, keys scoped to a block.
//! - Levels: `AWS_LAMBDA_LOG_LEVEL` (Lambda's Advanced Logging Controls) wins, then the level set
//!   in code, then `POWERTOOLS_LOG_LEVEL`, then `INFO`; a more verbose level than Lambda's is
//!   warned about, since Lambda would drop those lines.
//! - Errors recorded as `error = &err as &dyn std::error::Error` are written as
//!   `{"type", "message", "sources"}`, the `source()` chain included.
//! - Values of redacted keys ([`DEFAULT_REDACTED_KEYS`], configurable) are masked wherever they
//!   appear: a field, a business key, a key nested in the logged event.
//! - `POWERTOOLS_DEV=true` pretty-prints each line for reading in a terminal.
//!
//! # Every line is one line of valid JSON
//!
//! Whatever a field holds (quotes, newlines, control characters, a `Debug` impl that fails),
//! each event is one JSON object on one line, written in one `write`, so lines of concurrent
//! invocations never interleave. A key is written once: the standard keys first, then the
//! event's fields, the fields of the spans it is in (innermost first), the invocation's keys,
//! the persistent keys, then the code `location` if no key took that name.
//!
//! # Differences from Powertools for Python and TypeScript
//!
//! - Keys for the current invocation are per invocation automatically ([`append_key`]); there is
//!   no process-wide `append_keys` to clear. A task spawned with `tokio::spawn` logs with the
//!   invocation's context when it runs in its span (`.in_current_span()`); to append keys from it,
//!   append them before spawning.
//! - `timestamp` is RFC 3339 UTC with milliseconds (TypeScript's format), which Lambda accepts.
//! - The debug sampling decision is drawn per invocation, including the first.
//! - Redaction is built in.

mod buffer;
mod correlation;
mod error;
mod invocation;
mod json;
mod layer;
mod level;
mod logger;
mod subscriber;

pub use correlation::{
    CorrelationIdFn, CorrelationIdPath, CorrelationIdSource, NoCorrelationId, correlation_paths,
};
pub use error::Error;
pub use json::{DEFAULT_REDACTED_KEYS, REDACTED};
pub use layer::{LoggingLayer, LoggingService};
pub use level::Level;
pub use logger::{
    AWS_LAMBDA_LOG_LEVEL, BufferConfig, Clock, DEFAULT_BUFFER_MAX_BYTES, Logger, LoggerBuilder,
    MemoryLogs, POWERTOOLS_LOG_LEVEL, POWERTOOLS_LOGGER_LOG_EVENT, POWERTOOLS_LOGGER_SAMPLE_RATE,
};
pub use subscriber::JsonLayer;

use serde::Serialize;
use serde_json::Value;

use crate::invocation::InvocationState;

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
    if json::RESERVED_KEYS.contains(&key) {
        return Err(Error::ReservedKey {
            key: key.to_owned(),
        });
    }
    serde_json::to_value(value).map_err(|source| Error::Serialization {
        key: key.to_owned(),
        source,
    })
}

/// Adds `key` to every line the current invocation writes from now on, replacing its value if it
/// was appended already. Gone when the invocation ends.
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`],
/// [`Error::ReservedKey`], or [`Error::Serialization`].
pub fn append_key(key: &str, value: impl Serialize) -> Result<(), Error> {
    let value = key_value(key, value)?;
    InvocationState::with_current(|state| {
        let mut keys = state.keys();
        match keys.iter_mut().find(|(existing, _)| existing == key) {
            Some((_, existing)) => *existing = value,
            None => keys.push((key.to_owned(), value)),
        }
    })
    .ok_or(Error::NoCurrentInvocation)
}

/// Removes a key appended to the current invocation; `false` if it had none.
pub fn remove_key(key: &str) -> bool {
    InvocationState::with_current(|state| {
        let mut keys = state.keys();
        let before = keys.len();
        keys.retain(|(existing, _)| existing != key);
        keys.len() != before
    })
    .unwrap_or(false)
}

/// Sets the current invocation's `correlation_id`.
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation of a [`LoggingLayer`].
pub fn set_correlation_id(id: impl Into<String>) -> Result<(), Error> {
    let id = id.into();
    InvocationState::with_current(|state| *state.correlation_id() = Some(id))
        .ok_or(Error::NoCurrentInvocation)
}

/// The current invocation's `correlation_id`, to pass on to the services it calls.
pub fn correlation_id() -> Option<String> {
    InvocationState::with_current(|state| state.correlation_id().clone()).flatten()
}
