//! What every powertools-rs utility shares: configuration from the standard Powertools
//! environment variables, the per-invocation view of the Lambda context, and cold-start tracking.
//!
//! # Overview
//!
//! - [`PowertoolsConfig`] reads `POWERTOOLS_SERVICE_NAME`, `POWERTOOLS_DEV` and the variables
//!   Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_REGION`, …). A malformed value is a typed
//!   [`Error`] naming the variable, never a panic. [`env::Env`] is the parser every crate uses
//!   for its own variables.
//! - [`Invocation`] is the view of one invocation's [`Context`](lambda_runtime::Context): request
//!   id, ARN, deadline and remaining time, X-Ray trace id and tenant id, all taken from the
//!   invocation itself so that concurrent invocations never see each other's values.
//! - [`is_cold_start`] answers "is this invocation the process's cold start?" the same way for
//!   every layer, and for exactly one invocation even when many run at once.
//! - `testing::TestContext` (feature `testing`) builds realistic contexts and events for unit
//!   tests.
//!
//! # Example
//!
//! ```
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{Service, ServiceExt}};
//! use powertools_core::{Invocation, PowertoolsConfig, testing::TestContext};
//! use serde_json::{Value, json};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! // Once, at init: a bad POWERTOOLS_* value stops the function here with a clear message.
//! let config = PowertoolsConfig::from_env()?;
//!
//! let mut handler = service_fn(move |event: LambdaEvent<Value>| {
//!     let service = config.service_name().to_owned();
//!     async move {
//!         let invocation = Invocation::new(&event.context);
//!         Ok::<_, lambda_runtime::Error>(json!({
//!             "service": service,
//!             "request_id": invocation.request_id(),
//!             "cold_start": invocation.cold_start(),
//!             "xray_trace_id": invocation.xray_root_trace_id(),
//!         }))
//!     }
//! });
//!
//! // In a unit test (or a deployed function, through `lambda_runtime::run(handler)`):
//! let response = handler.ready().await?.call(TestContext::new().event(json!({}))).await?;
//! assert_eq!(response["cold_start"], true);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! - `jmespath` (off by default): the `jmespath` module, compiled JMESPath expressions over
//!   events with the Powertools functions `powertools_json`, `powertools_base64` and
//!   `powertools_base64_gzip`, shared by idempotency keys and logging correlation ids. It pulls
//!   in `jmespath`, `base64`, `flate2` and `serde_json`.
//! - `testing` (off by default): the `testing` module, realistic Lambda contexts and events for
//!   tests (`TestContext`). Enable it in `[dev-dependencies]`; it pulls in `uuid`.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version of this crate is 1.85 (edition 2024; `lambda_runtime` 1.5
//! needs 1.84). The crates that build on the AWS SDK (`powertools-idempotency`,
//! `powertools-tracing` and the `powertools` facade) need 1.94.1.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod env;
#[doc(hidden)]
pub mod error_chain;
#[doc(hidden)]
pub mod exit;
#[doc(hidden)]
pub mod failure;
#[cfg(feature = "jmespath")]
#[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
pub mod jmespath;
#[doc(hidden)]
pub mod json_depth;
#[doc(hidden)]
pub mod json_escape;
#[doc(hidden)]
pub mod reentry;
#[doc(hidden)]
pub mod serde_message;
pub mod stdout;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod text;
#[doc(hidden)]
pub mod thread_buffer;

pub mod cold_start;
mod config;
mod error;
mod invocation;

pub use cold_start::{ColdStart, is_cold_start};
pub use config::{DEFAULT_SERVICE_NAME, InitializationType, MAX_CONCURRENCY, PowertoolsConfig};
pub use error::Error;
pub use invocation::{Invocation, trusted_time_left, xray_trace_id};

/// Writes the `get_ref`, `get_mut` and `into_inner` methods of a middleware service that keeps
/// the service it wraps in its `inner` field, as tower-http's services do. Used inside the
/// service's `impl` block by every powertools-rs layer.
///
/// Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
#[doc(hidden)]
#[macro_export]
macro_rules! inner_service_accessors {
    ($inner:ty) => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &$inner {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut $inner {
            &mut self.inner
        }

        /// Unwraps the service.
        pub fn into_inner(self) -> $inner {
            self.inner
        }
    };
}

/// Implements `From<$error> for lambda_runtime::Diagnostic` from the error's `error_type()`
/// (the stable identifier) and its `Display` (the message), as every powertools-rs error does.
///
/// Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
#[doc(hidden)]
#[macro_export]
macro_rules! diagnostic_from_error_type {
    ($error:ty) => {
        impl From<$error> for ::lambda_runtime::Diagnostic {
            fn from(error: $error) -> Self {
                ::lambda_runtime::Diagnostic {
                    error_type: error.error_type().to_owned(),
                    error_message: error.to_string(),
                }
            }
        }
    };
}
