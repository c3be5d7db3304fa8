//! Starting the runtime with what the utilities need from it.

use std::fmt::Debug;
use std::future::Future;

use futures_core::Stream;
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Diagnostic, IntoFunctionResponse, LambdaEvent, Runtime, Service};
use powertools_logging::RawEventLayer;

use crate::read_event::ReadEvent;
use serde::{Deserialize, Serialize};

/// Starts the Lambda runtime with `handler`, as [`lambda_runtime::run`] does (the runtime's own
/// span per invocation included), plus [`RawEventLayer`], so that
/// `POWERTOOLS_LOGGER_LOG_EVENT` logs each event as Lambda sent it, whatever the handler's event
/// type. Use it in place of `lambda_runtime::run`, and, for an HTTP function, in place of
/// `lambda_http::run`: `powertools::run(stack.layer(lambda_http::Adapter::from(service)))`.
///
/// An event that does not deserialize into `A` (a direct invoke can send any JSON) fails its
/// invocation with `errorType` `InvalidEvent`, without calling the handler. The message names
/// `A`, the path in the event and what `A` expected there, never the value found, which
/// `lambda_runtime`'s own message quotes (a card number, or megabytes of a hostile event):
/// `the event does not read as aws_lambda_events::event::sqs::SqsEvent at Records[0].body:
/// invalid type (the value is left out), expected a string at line 1 column 33`. One `ERROR`
/// line says the same, with the invocation's request id (and only that: the logging layer never saw the invocation). Map keys
/// in the path (a `HashMap`'s, not a struct's field names) come from the event and are written,
/// cut at 64 characters; an unknown field's name is not. A message of a `Deserialize`
/// implementation's own (`de::Error::custom`: chrono's, uuid's) is left out, since it may quote
/// the value. A `Deserialize` implementation that panics fails the invocation the same way,
/// where `lambda_runtime` alone would stop the function's process.
///
/// A handler that panics is reported to Lambda with `errorType` `Panic` (the failure line's
/// `exception_name`) and `Lambda panicked: <message>`, where `lambda_runtime` alone names the
/// panic payload's Rust type (`&alloc::boxed::Box<dyn core::any::Any + core::marker::Send>`).
/// Behind the idempotency layer, which catches the panic to free its claim, it is reported as
/// `HandlerPanicked` with `the handler panicked: <message>`; the failure line still has the
/// panic's `location` and `stack_trace`.
///
/// A handler's boxed error (`lambda_runtime::Error`) is reported with the `errorType` the failure
/// line and the span give it: a powertools-rs error's Powertools name (`MetricValueError`), any
/// other by the type inside the box (`std::io::Error`), where `lambda_runtime` alone names the
/// box's Rust type. A response that does not serialize (a map whose keys are not strings) fails
/// its invocation with `Runtime.MarshalError`, as Lambda's own runtimes report it, where
/// `lambda_runtime` alone would stop the function's process.
///
/// ```no_run
/// use lambda_runtime::{LambdaEvent, service_fn, tower::ServiceBuilder};
/// use powertools::Powertools;
/// use serde_json::{Value, json};
///
/// async fn handler(_event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
///     Ok(json!({"accepted": true}))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     let powertools = Powertools::from_env()?;
///     powertools.init()?;
///     let service = ServiceBuilder::new().layer(powertools.layer()).service(service_fn(handler));
///     powertools::run(service).await
/// }
/// ```
///
/// # Errors
/// As [`lambda_runtime::Runtime::run`]: the Runtime API failed.
///
/// # Panics
/// As [`lambda_runtime::Runtime::new`], when the variables Lambda sets
/// (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_RUNTIME_API`, …) are missing: outside Lambda.
pub async fn run<A, F, R, B, S, D, E>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Service<LambdaEvent<A>, Response = R>,
    F::Future: Future<Output = Result<R, F::Error>>,
    F::Error: Into<Diagnostic> + Debug + 'static,
    A: for<'de> Deserialize<'de>,
    R: IntoFunctionResponse<B, S>,
    B: Serialize,
    S: Stream<Item = Result<D, E>> + Unpin + Send + 'static,
    D: Into<bytes::Bytes> + Send,
    E: Into<lambda_runtime::Error> + Send + Debug,
{
    Runtime::new(ReadEvent::<F, B, S>::new(handler))
        .layer(TracingLayer::new())
        .layer(RawEventLayer::new())
        .run()
        .await
}

/// [`run`] for Lambda Managed Instances: as many invocations at once as
/// `AWS_LAMBDA_MAX_CONCURRENCY` says, each in its own task, and sequential when it is unset or 1,
/// as [`lambda_runtime::run_concurrent`] does, with the same [`RawEventLayer`] and runtime span as
/// [`run`]. Use it in place of `lambda_runtime::run_concurrent` (and, for an HTTP function, of
/// `lambda_http::run_concurrent`). The feature `concurrency-tokio`. An event that does not read
/// as `A` fails with `InvalidEvent`, as under [`run`].
///
/// ```no_run
/// use lambda_runtime::{LambdaEvent, service_fn, tower::ServiceBuilder};
/// use powertools::Powertools;
/// use serde_json::{Value, json};
///
/// async fn handler(_event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
///     Ok(json!({"accepted": true}))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     let powertools = Powertools::from_env()?;
///     powertools.init()?;
///     powertools.register_extension().await?;
///     let service = ServiceBuilder::new().layer(powertools.layer()).service(service_fn(handler));
///     powertools::run_concurrent(service).await
/// }
/// ```
///
/// # Errors
/// As [`lambda_runtime::Runtime::run_concurrent`]: the Runtime API failed.
///
/// # Panics
/// As [`lambda_runtime::Runtime::new`], outside Lambda; and outside a Tokio runtime.
#[cfg(feature = "concurrency-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "concurrency-tokio")))]
pub async fn run_concurrent<A, F, R, B, S, D, E>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Service<LambdaEvent<A>, Response = R> + Clone + Send + 'static,
    F::Future: Future<Output = Result<R, F::Error>> + Send + 'static,
    F::Error: Into<Diagnostic> + Debug + 'static,
    A: for<'de> Deserialize<'de> + Send + 'static,
    R: IntoFunctionResponse<B, S> + Send + 'static,
    B: Serialize + Send + 'static,
    S: Stream<Item = Result<D, E>> + Unpin + Send + 'static,
    D: Into<bytes::Bytes> + Send + 'static,
    E: Into<lambda_runtime::Error> + Send + Debug + 'static,
{
    Runtime::new(ReadEvent::<F, B, S>::new(handler))
        .layer(TracingLayer::new())
        .layer(RawEventLayer::new())
        .run_concurrent()
        .await
}
