//! An independent, Powertools-style toolkit for AWS Lambda in Rust (not affiliated with AWS):
//! the utilities behind one dependency, and the standard observability stack (JSON logs, EMF
//! metrics, OpenTelemetry tracing) set up from the environment in one call, so that a platform
//! team standardises every function with one line.
//!
//! # Example
//!
//! ```
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
//! use powertools::Powertools;
//! use powertools::core::env::Env;
//! use powertools::core::testing::TestContext;
//! use powertools::logging::MemoryLogs;
//! use powertools::metrics::{MemorySink, Unit};
//! use serde_json::{Value, json};
//!
//! async fn handler(event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
//!     powertools::logging::append_key("order_id", "o-1001")?;
//!     powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
//!     tracing::info!("order accepted");
//!     Ok(json!({"accepted": true}))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! # let (logs, documents) = (MemoryLogs::new(), MemorySink::new());
//! // In a function: `let powertools = Powertools::from_env()?; powertools.init()?;`
//! let powertools = Powertools::builder()
//!     .service("orders")
//!     .env(Env::from_pairs([("POWERTOOLS_METRICS_NAMESPACE", "Bakery"), ("POWERTOOLS_TRACE_DISABLED", "true")]))
//! #   .logger(|logger| logger.writer(logs.clone()))
//! #   .metrics(|metrics| metrics.sink(documents.clone()))
//!     .build()?;
//! let _guard = tracing::subscriber::set_default(powertools.subscriber());
//!
//! let service = ServiceBuilder::new().layer(powertools.layer()).service(service_fn(handler));
//! service.oneshot(TestContext::new().with_request_id("req-1").event(json!({}))).await?;
//! # powertools_tests::emf::valid_lines(&documents.lines()); // every document checked against the EMF schema
//! # assert_eq!(logs.json()[0]["order_id"], "o-1001");
//! # assert_eq!(logs.json()[0]["function_request_id"], "req-1");
//! # assert_eq!(documents.documents()[0]["OrdersPlaced"], 1.0);
//! # Ok(())
//! # }
//! ```
//!
//! Start the runtime with [`run`] rather than `lambda_runtime::run`: it adds what the logger
//! needs to log each event as Lambda sent it (`POWERTOOLS_LOGGER_LOG_EVENT`).
//!
//! # The layer order, and why
//!
//! [`PowertoolsLayer`] is, from the outside in: logging, metrics, tracing, then your handler
//! (with idempotency, when you add it, innermost, around the handler itself).
//!
//! - **Logging outermost**, so that every line of the invocation, including the warnings the
//!   metrics flush and the trace export may write, carries the invocation's context and belongs
//!   to its debug sampling decision and log buffer; a failed invocation flushes that buffer and
//!   gets one `ERROR` line with its context and the error (`exception_name`, `exception`, and a
//!   `stack_trace` for a panic). Since every failure the runtime sees went through it, the
//!   logger [`Powertools`] builds leaves out `lambda_runtime`'s own line for the same failure
//!   ([`LoggerBuilder::runtime_failure_lines`](powertools_logging::LoggerBuilder::runtime_failure_lines)).
//! - **Metrics next**, so that the document is written after everything inside has finished, on
//!   success, error or panic; a flush that `raise_on_empty_metrics` refuses becomes the
//!   invocation's error.
//! - **Tracing inside them**, so that the invocation span covers exactly the handler and
//!   idempotency (the idempotency store's DynamoDB calls become its children), and is exported
//!   before the outer layers finish.
//! - **Idempotency per handler**, innermost: a replayed response is still logged and traced as
//!   an invocation, but the handler does not run again, so neither do its side effects nor its
//!   metrics (the metrics layer warns that the invocation added none, as Powertools for Python
//!   does; with `raise_on_empty_metrics` too, where Python fails the replay). Add it with
//!   `powertools::idempotency::IdempotencyLayer` (feature `idempotency`) inside
//!   `powertools.layer()`. Put outside it, a replay writes no line, metrics or span, and the
//!   logging layer says so once, at the first invocation (`LoggingLayer runs inside
//!   IdempotencyLayer: …`).
//!
//! # Features
//!
//! The defaults are what most functions need: `logging`, `metrics` and `tracing` (with tracing's
//! `aws-sdk` and `aws-lambda-events`). [`Powertools`] and [`PowertoolsLayer`] need the three,
//! [`run`] `logging`. Opt in to the rest:
//!
//! | feature | gives |
//! | --- | --- |
//! | `idempotency` | `powertools::idempotency` with `InMemoryStore` |
//! | `dynamodb` | `idempotency` plus `DynamoDbStore`, `powertools::idempotency::dynamodb_store(table)`, `powertools::load_aws_config()`, and `powertools::aws_config` / `powertools::aws_sdk_dynamodb` |
//! | `jmespath` | JMESPath idempotency keys and validation, and log correlation ids at a JMESPath expression |
//! | `batch` | `powertools::batch` (per-record log keys and counts with `logging` and `metrics`) |
//! | `events` | `powertools::events`: API Gateway, ALB, function URL, SQS, SNS, Kinesis, DynamoDB Streams, S3 and EventBridge types (`events-all`: every type) |
//! | `recorder` | the `metrics` crate facade recorder in `powertools::metrics` |
//! | `concurrency-tokio` | `powertools::run_concurrent`: [`run`] for Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY`) |
//! | `lambda-http` | HTTP server attributes on the invocation span for a `lambda_http::Adapter` (an axum `Router` under `lambda_http`) |
//! | `testing` | `powertools::core::testing::TestContext`, Lambda contexts and events for unit tests (enable it in `[dev-dependencies]`) |
//!
//! [`lambda_runtime`] is always re-exported, and [`Error`] converts every utility's error, so
//! `?` works across them.
//!
//! # HTTP functions
//!
//! [`PowertoolsLayer`] wraps `lambda_http`'s adapter like any handler (turn on `lambda-http` for
//! the HTTP attributes of its span):
//! `powertools::run(ServiceBuilder::new().layer(powertools.layer()).service(lambda_http::Adapter::from(service_fn(handler))))`.

#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to items of every feature; with some off (`cargo doc
// --no-default-features`) those links have nothing to point to. Checked with every feature on
// (`scripts/test`'s workspace build, docs.rs).
#![cfg_attr(
    not(all(
        feature = "logging",
        feature = "metrics",
        feature = "recorder",
        feature = "tracing",
        feature = "aws-sdk",
        feature = "aws-lambda-events",
        feature = "lambda-http",
        feature = "idempotency",
        feature = "dynamodb",
        feature = "jmespath",
        feature = "testing",
        feature = "batch",
        feature = "concurrency-tokio",
        feature = "events"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use lambda_runtime;
#[cfg(feature = "batch")]
#[cfg_attr(docsrs, doc(cfg(feature = "batch")))]
pub use powertools_batch as batch;
pub use powertools_core as core;
#[cfg(feature = "logging")]
#[cfg_attr(docsrs, doc(cfg(feature = "logging")))]
pub use powertools_logging as logging;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use powertools_metrics as metrics;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use powertools_tracing as tracing;

/// The event types of `aws_lambda_events`, for handlers' `LambdaEvent<…>`.
///
/// ```
/// use powertools::events::sqs::SqsEvent;
/// use powertools::lambda_runtime::LambdaEvent;
///
/// async fn handler(event: LambdaEvent<SqsEvent>) -> Result<usize, powertools::lambda_runtime::Error> {
///     Ok(event.payload.records.len())
/// }
/// ```
#[cfg(feature = "events")]
#[cfg_attr(docsrs, doc(cfg(feature = "events")))]
pub use aws_lambda_events as events;

/// `lambda_http`, for an HTTP function (an axum `Router` under `lambda_http::Adapter`): the
/// version whose requests the tracing layer reads its HTTP attributes from.
///
/// ```
/// use powertools::lambda_http::{Adapter, Body, Request, Response};
/// use powertools::lambda_runtime::{Error, service_fn};
///
/// async fn hello(_request: Request) -> Result<Response<Body>, Error> {
///     Ok(Response::new(Body::from("hello")))
/// }
/// let adapter = Adapter::from(service_fn(hello));
/// # drop(adapter);
/// ```
#[cfg(feature = "lambda-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda-http")))]
pub use lambda_http;

/// The AWS SDK configuration loader `DynamoDbStore`'s client needs, at the version and features
/// the store is built with.
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use aws_config;
/// The DynamoDB client `DynamoDbStore` takes, at the version and features the store is built with.
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use aws_sdk_dynamodb;
#[cfg(feature = "dynamodb")]
mod aws;
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use aws::load_aws_config;

#[cfg(feature = "idempotency")]
#[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
pub mod idempotency;

#[cfg(feature = "logging")]
mod describe;
mod error;
#[cfg(feature = "logging")]
mod init_error;
#[cfg(feature = "logging")]
mod read_event;
#[cfg(feature = "logging")]
mod run;
#[cfg(all(feature = "logging", feature = "metrics", feature = "tracing"))]
mod stack;

pub use error::{Error, error_report};
#[cfg(feature = "logging")]
#[cfg_attr(docsrs, doc(cfg(feature = "logging")))]
pub use init_error::init_failed;
#[cfg(feature = "logging")]
#[cfg_attr(docsrs, doc(cfg(feature = "logging")))]
pub use run::run;
#[cfg(feature = "concurrency-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "concurrency-tokio")))]
pub use run::run_concurrent;

#[cfg(all(feature = "logging", feature = "metrics", feature = "tracing"))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "logging", feature = "metrics", feature = "tracing")))
)]
pub use stack::{Powertools, PowertoolsBuilder, PowertoolsLayer, PowertoolsService, StackError};
