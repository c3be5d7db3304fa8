//! Starting the runtime with what the utilities need from it.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_core::Stream;
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Diagnostic, IntoFunctionResponse, LambdaEvent, Runtime, Service};
use powertools_logging::RawEventLayer;

use crate::Error;
use crate::read_event::ReadEvent;
use serde::{Deserialize, Serialize};

/// Starts the Lambda runtime with `handler`, as [`lambda_runtime::run`] does (the runtime's own
/// span per invocation included), plus [`RawEventLayer`], so that
/// `POWERTOOLS_LOGGER_LOG_EVENT` logs each event as Lambda sent it, whatever the handler's event
/// type. Use it in place of `lambda_runtime::run`, and, for an HTTP function, in place of
/// `lambda_http::run`: `powertools::run(stack.layer(lambda_http::Adapter::from(service)))`.
///
/// An event that does not deserialize into `A` (a direct invoke can send any JSON), or whose
/// JSON value is followed by anything but whitespace (`lambda_runtime` alone reads the first
/// value and ignores a second document after it, which a reader in front of the function may
/// have read instead), fails its invocation with `errorType` `InvalidEvent`, without calling the
/// handler. The message names
/// `A`, the path in the event and what `A` expected there, never the value found, which
/// `lambda_runtime`'s own message quotes (a card number, or megabytes of a hostile event):
/// `the event does not read as aws_lambda_events::event::sqs::SqsEvent at Records[0].body:
/// invalid type (the value is left out), expected a string at line 1 column 33`. One `ERROR`
/// line says the same, with the invocation's request id and `cold_start` (and only those: the
/// logging layer never saw the invocation; the invocation claims the cold start, so the next one
/// is warm in the logs, metrics and span, as in Powertools for Python). Map keys
/// in the path (a `HashMap`'s, not a struct's field names) come from the event and are written
/// when they read as a field's name (up to 64 ASCII letters, digits, `_` and `-`), else as
/// `<key>`; an unknown field's name is not. A message of a `Deserialize`
/// implementation's own (`de::Error::custom`: chrono's, uuid's) is left out, since it may quote
/// the value. A `Deserialize` implementation that panics fails the invocation the same way,
/// where `lambda_runtime` alone would stop the function's process; its message is not printed
/// on stderr either (the logging layer's panic hook keeps it from the hook before it).
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
/// `lambda_runtime` alone would stop the function's process. Its message names where in the
/// response it failed (map keys as an invalid event's path writes them: a key that does not
/// read as a field's name is `<key>`) and serde_json's own
/// reason, never a `Serialize` implementation's own message (it may quote the value). A
/// response holding NaN or ±Infinity, which JSON cannot hold, is sent as serde_json writes it
/// (`null`), with a warning that names where. `run` finds it after the layers returned: its failure line
/// carries the invocation's request id but not its appended keys, and its buffer of debug
/// lines (`LoggerBuilder::buffer`) is not written for it; with the tracer on, the span is in
/// error too.
///
/// `run` is sequential. Where `AWS_LAMBDA_MAX_CONCURRENCY` is set (Lambda Managed Instances, and
/// `cargo lambda watch`, which sets it to 1), `lambda_runtime` warns that "the concurrency-tokio
/// feature is not enabled; running sequentially", whichever features are on: it means that `run`
/// does not read the variable. `run_concurrent` does.
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
/// [`Error::LambdaEnvironment`] before anything else when a variable Lambda sets for the runtime
/// (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`,
/// `AWS_LAMBDA_RUNTIME_API`) is missing or malformed, as outside Lambda, where
/// `lambda_runtime` alone panics; the message names each such variable. Then, as
/// [`lambda_runtime::Runtime::run`]: the Runtime API failed, or an invocation's client context
/// or Cognito identity (headers its caller sets) did not read as `lambda_runtime`'s types, where
/// `lambda_runtime` stops without answering it (aws-lambda-rust-runtime#559; Lambda reports
/// that invocation as `Runtime.ExitError` and starts a new environment for the next): the error
/// names the two headers and leaves out the value, which `lambda_runtime`'s own message quotes.
/// A `Lambda-Runtime-Deadline-Ms` that is not a number (Lambda always sends a number; an
/// emulator or a proxy in front may not) stops it the same way, and the error names that header
/// (one left out entirely makes `lambda_runtime` panic, as does an invocation without a
/// `Lambda-Runtime-Aws-Request-Id` header).
/// Under [`run_concurrent`], such an invocation ends one worker (`lambda_runtime` logs it, with
/// its message), and the runtime stops when none is left.
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
    lambda_environment(|name| std::env::var(name))?;
    powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
    let runtime = Runtime::new(ReadEvent::<F, B, S>::new(handler))
        .layer(TracingLayer::new())
        .layer(RawEventLayer::new());
    RUNTIME_STARTED.store(true, Ordering::Relaxed);
    runtime.run().await.map_err(runtime_stopped)
}

/// [`run`] for Lambda Managed Instances: as many invocations at once as
/// `AWS_LAMBDA_MAX_CONCURRENCY` says, each in its own task, and sequential when it is unset or 1,
/// as [`lambda_runtime::run_concurrent`] does, with the same [`RawEventLayer`] and runtime span as
/// [`run`]. Use it in place of `lambda_runtime::run_concurrent` (and, for an HTTP function, of
/// `lambda_http::run_concurrent`). The feature `concurrency-tokio`. An event that does not read
/// as `A` fails with `InvalidEvent`, as under [`run`].
///
/// Locally, `cargo lambda watch` (1.9.2) sets `AWS_LAMBDA_MAX_CONCURRENCY=1` for the function
/// it starts; give the function a cargo runner that sets it last to run several at once in one
/// process (`--config "target.'cfg(all())'.runner=['env', 'AWS_LAMBDA_MAX_CONCURRENCY=8']"`, as
/// the orders-api example's README shows).
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
/// [`Error::LambdaEnvironment`] outside Lambda, as [`run`]; an `AWS_LAMBDA_MAX_CONCURRENCY` over
/// Lambda's maximum of 1600 (`InvalidEnvironmentVariable`); then, as
/// [`lambda_runtime::Runtime::run_concurrent`]: every worker ended (the Runtime API failed, or
/// each met an invocation whose client context or Cognito identity did not read, as under
/// [`run`]): the error lists each worker's, a client context's value left out and the headers
/// named.
///
/// # Panics
/// Outside a Tokio runtime.
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
    lambda_environment(|name| std::env::var(name))?;
    powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
    // Over Lambda's maximum, before `lambda_runtime` starts a worker per invocation it allows:
    // 99999999 workers flooded the log asking for invocations and the function stopped
    // answering (found by an attack from the docs). Only that: the values `lambda_runtime`
    // reads as one at a time (`0`, `" 4"`) and the other variables are not `run_concurrent`'s
    // to refuse (checking the whole configuration refused a function over a variable it never
    // read: a review).
    over_lambda_s_maximum_concurrency(std::env::var(
        powertools_core::env::vars::AWS_LAMBDA_MAX_CONCURRENCY,
    ))?;
    let runtime = Runtime::new(ReadEvent::<F, B, S>::new(handler))
        .layer(TracingLayer::new())
        .layer(RawEventLayer::new());
    RUNTIME_STARTED.store(true, Ordering::Relaxed);
    runtime.run_concurrent().await.map_err(runtime_stopped)
}

/// Refuses an `AWS_LAMBDA_MAX_CONCURRENCY` that `lambda_runtime` reads as a number over
/// Lambda's maximum of 1600 invocations at once.
#[cfg(feature = "concurrency-tokio")]
fn over_lambda_s_maximum_concurrency(
    value: Result<String, std::env::VarError>,
) -> Result<(), powertools_core::Error> {
    match value {
        Ok(value)
            if value
                .parse::<u32>()
                .is_ok_and(|n| n > powertools_core::MAX_CONCURRENCY) =>
        {
            Err(powertools_core::Error::InvalidEnvVar {
                name: powertools_core::env::vars::AWS_LAMBDA_MAX_CONCURRENCY.to_owned(),
                value,
                expected: "a whole number from 1 to 1600 (Lambda's maximum)",
            })
        }
        _ => Ok(()),
    }
}

/// Whether [`run`] or [`run_concurrent`] started the runtime in this process: init is over once
/// it asks for an invocation, and an error after that is not an init error
/// ([`init_failed`](crate::init_failed)).
static RUNTIME_STARTED: AtomicBool = AtomicBool::new(false);

/// Whether [`run`] or [`run_concurrent`] started the runtime in this process.
pub(crate) fn runtime_started() -> bool {
    RUNTIME_STARTED.load(Ordering::Relaxed)
}

/// The error `lambda_runtime` stopped with, with what its own does not say. It reads each
/// invocation's client context and Cognito identity (headers the caller of a direct invoke, or a
/// mobile client, sets) into its types before any layer sees the invocation, and stops at one
/// that does not read (aws-lambda-rust-runtime#559), with serde's message, which quotes the
/// value (found by an attack: a card number in a client context reached the log and Lambda's
/// answer; then by its review: under `run_concurrent` too, in the workers' errors). The value is
/// left out, and the headers named.
fn runtime_stopped(error: lambda_runtime::Error) -> lambda_runtime::Error {
    const HEADERS: &str = "an invocation's client context or Cognito identity (the \
         Lambda-Runtime-Client-Context or Lambda-Runtime-Cognito-Identity header, which its \
         caller sets)";
    const UNANSWERED: &str = "aws-lambda-rust-runtime#559: lambda_runtime stops at such an \
         invocation without answering it, and Lambda reports it as Runtime.ExitError";
    const DEADLINE: &str = "an invocation's Lambda-Runtime-Deadline-Ms header is not a number \
         of milliseconds";
    const DEADLINE_UNANSWERED: &str = "Lambda always sends one: an emulator or a proxy in \
         front of the Runtime API sent this; lambda_runtime stops at such an invocation without \
         answering it";
    let error = match error.downcast::<serde_json::Error>() {
        Ok(unread) => {
            return Box::new(RuntimeStopped(format!(
                "lambda_runtime stopped: {HEADERS} does not read as lambda_runtime's \
                 ClientContext or CognitoIdentity: {} ({UNANSWERED})",
                powertools_core::serde_message::without_values(&unread.to_string())
            )));
        }
        Err(error) => error,
    };
    // Lambda always sends a deadline; an emulator or a proxy in front may send one that is not
    // a number, and the runtime's error said only `invalid digit found in string` (found by an
    // attack on the facade from the docs).
    if let Some(unread) = error.downcast_ref::<std::num::ParseIntError>() {
        return Box::new(RuntimeStopped(format!(
            "lambda_runtime stopped: {DEADLINE}: {unread} ({DEADLINE_UNANSWERED})"
        )));
    }
    if error.is::<http::header::ToStrError>() {
        return Box::new(RuntimeStopped(format!(
            "lambda_runtime stopped: a header of an invocation is not visible ASCII, such as \
             {HEADERS} ({UNANSWERED})"
        )));
    }
    // `run_concurrent`'s: every worker ended, each with its error, in a JSON text
    // (`ConcurrentWorkerErrors`, a private type), where serde's messages quote the values.
    let text = error.to_string();
    let Ok(mut workers) = serde_json::from_str::<serde_json::Value>(&text) else {
        return error;
    };
    let Some(failures) = workers
        .get_mut("failures")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return error;
    };
    // `http`'s words for a header that is not visible ASCII (its error has no other name).
    let not_ascii = http::HeaderValue::from_bytes(&[0xff])
        .ok()
        .and_then(|value| value.to_str().err())
        .map(|error| error.to_string());
    // The standard library's words for a deadline that is not a number.
    let not_a_number: Vec<String> = ["", "soon", "99999999999999999999999"]
        .into_iter()
        .filter_map(|text| text.parse::<u64>().err())
        .map(|error| error.to_string())
        .collect();
    let mut cleared = false;
    for failure in failures {
        let Some(serde_json::Value::String(message)) = failure.get_mut("err") else {
            continue;
        };
        if let std::borrow::Cow::Owned(without) =
            powertools_core::serde_message::without_quoted_values(message)
        {
            *message = format!("{without}: {HEADERS} does not read ({UNANSWERED})");
            cleared = true;
        } else if not_a_number.contains(message) {
            *message = format!("{message}: {DEADLINE} ({DEADLINE_UNANSWERED})");
            cleared = true;
        } else if not_ascii.as_deref() == Some(message.as_str()) {
            *message = format!(
                "{message}: a header that is not visible ASCII, such as {HEADERS} ({UNANSWERED})"
            );
            cleared = true;
        }
    }
    if cleared {
        Box::new(RuntimeStopped(format!("lambda_runtime stopped: {workers}")))
    } else {
        error
    }
}

/// `lambda_runtime` stopped, said without what the caller sent.
#[derive(Debug)]
struct RuntimeStopped(String);

impl std::fmt::Display for RuntimeStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeStopped {}

/// The variables `lambda_runtime` reads when it starts, each with the check that keeps its
/// reading from panicking (`Config::from_env`, and the Runtime API client's base URI).
const RUNTIME_VARIABLES: [(&str, Check); 4] = [
    ("AWS_LAMBDA_FUNCTION_NAME", Check::Set),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", Check::Megabytes),
    ("AWS_LAMBDA_FUNCTION_VERSION", Check::Set),
    ("AWS_LAMBDA_RUNTIME_API", Check::HostAndPort),
];

#[derive(Clone, Copy)]
enum Check {
    Set,
    Megabytes,
    HostAndPort,
}

/// Checks, through `read` (`std::env::var` in [`run`]), that `lambda_runtime` finds the variables
/// Lambda sets, so that a function started outside Lambda stops with an error that names them
/// instead of the runtime's panic.
fn lambda_environment(
    read: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<(), Error> {
    let mut variables = Vec::new();
    let mut unset = Vec::new();
    let mut malformed = Vec::new();
    for (name, check) in RUNTIME_VARIABLES {
        let value = match read(name) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                variables.push(name);
                unset.push(name);
                continue;
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                variables.push(name);
                malformed.push(format!("{name} is not valid Unicode"));
                continue;
            }
        };
        let expected = match check {
            Check::Set => continue,
            Check::Megabytes if value.parse::<i32>().is_ok() => continue,
            Check::Megabytes => "a whole number of megabytes",
            Check::HostAndPort if runtime_api_uri(&value).is_some() => continue,
            Check::HostAndPort => "a host and port",
        };
        // The value as found, cut: a hostile one could be megabytes.
        let shown: String = value.chars().take(64).collect();
        let cut = if shown.len() < value.len() { "…" } else { "" };
        variables.push(name);
        malformed.push(format!("{name}={shown:?}{cut} is not {expected}"));
    }
    if variables.is_empty() {
        return Ok(());
    }
    let mut problems = Vec::new();
    match unset.as_slice() {
        [] => {}
        [one] => problems.push(format!("{one} is not set")),
        [many @ .., last] => problems.push(format!("{} and {last} are not set", many.join(", "))),
    }
    problems.extend(malformed);
    Err(Error::LambdaEnvironment {
        variables,
        problems: problems.join("; "),
    })
}

/// The Runtime API's address as `lambda_runtime`'s client takes it (the text as a URI: Lambda
/// sets `127.0.0.1:9001`, emulators may add a scheme and a base path), if that client can reach
/// it: it needs a host (it panics without one), a port, when given, that is a number (it
/// would connect to port 80 instead), and no scheme but `http` (its connector refuses others).
pub(crate) fn runtime_api_uri(value: &str) -> Option<http::Uri> {
    let uri = value.parse::<http::Uri>().ok()?;
    if uri.scheme_str().is_some_and(|scheme| scheme != "http") {
        return None;
    }
    let authority = uri.authority()?;
    // The port is what follows the last `:` after any user info and IPv6 brackets.
    let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_host = host_and_port.rsplit(']').next().unwrap_or_default();
    let port_given = after_host.contains(':');
    (!authority.host().is_empty() && (!port_given || authority.port_u16().is_some())).then_some(uri)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::env::VarError;

    use super::*;

    fn check(set: &[(&str, &str)]) -> Result<(), Error> {
        let set: HashMap<&str, &str> = set.iter().copied().collect();
        lambda_environment(|name| {
            set.get(name)
                .map(|value| (*value).to_owned())
                .ok_or(VarError::NotPresent)
        })
    }

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ];

    #[test]
    fn what_lambda_sets_is_enough() {
        check(&LAMBDA).expect("Lambda's variables");
        // Emulators may give the scheme; a version or name may be empty for the runtime.
        let mut emulator = LAMBDA;
        emulator[3].1 = "http://localhost:9001";
        emulator[2].1 = "";
        check(&emulator).expect("an emulator's variables");
    }

    #[test]
    fn outside_lambda_every_missing_variable_is_named_at_once() {
        let error = check(&[]).expect_err("nothing set");
        assert_eq!(error.error_type(), "LambdaEnvironmentError");
        let Error::LambdaEnvironment { variables, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            variables,
            &[
                "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_VERSION",
                "AWS_LAMBDA_RUNTIME_API"
            ]
        );
        assert!(
            error.to_string().starts_with(
                "AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE, \
                 AWS_LAMBDA_FUNCTION_VERSION and AWS_LAMBDA_RUNTIME_API are not set: the Lambda \
                 runtime reads these variables"
            ),
            "{error}"
        );
        assert!(error.to_string().contains("cargo lambda watch"), "{error}");

        let mut one_missing = LAMBDA.to_vec();
        one_missing.remove(2);
        let error = check(&one_missing).expect_err("no version");
        assert!(
            error
                .to_string()
                .starts_with("AWS_LAMBDA_FUNCTION_VERSION is not set: "),
            "{error}"
        );
    }

    #[test]
    fn a_malformed_variable_is_named_with_its_value_cut() {
        for (index, value, expected) in [
            (
                1,
                "",
                r#"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="" is not a whole number of megabytes"#,
            ),
            (
                1,
                "1.5",
                r#"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1.5" is not a whole number of megabytes"#,
            ),
            (
                1,
                "99999999999",
                r#"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="99999999999" is not"#,
            ),
            (3, "", r#"AWS_LAMBDA_RUNTIME_API="" is not a host and port"#),
            (
                3,
                "/2018-06-01",
                r#"AWS_LAMBDA_RUNTIME_API="/2018-06-01" is not a host and port"#,
            ),
            (
                3,
                "host name",
                r#"AWS_LAMBDA_RUNTIME_API="host name" is not a host and port"#,
            ),
        ] {
            let mut set = LAMBDA;
            set[index].1 = value;
            let error = check(&set).expect_err(value).to_string();
            assert!(error.starts_with(expected), "{value:?}: {error}");
        }
        let huge = "9".repeat(1 << 20);
        let mut set = LAMBDA;
        set[1].1 = &huge;
        let error = check(&set).expect_err("a huge value").to_string();
        assert!(error.len() < 400, "{}", error.len());
        assert!(
            error.contains(&format!("\"{}\"…", "9".repeat(64))),
            "{error}"
        );

        let error = lambda_environment(|name| match name {
            "AWS_LAMBDA_FUNCTION_NAME" => Err(VarError::NotUnicode("or\u{fffd}".into())),
            _ => LAMBDA
                .iter()
                .find(|(set, _)| *set == name)
                .map(|(_, value)| (*value).to_owned())
                .ok_or(VarError::NotPresent),
        })
        .expect_err("a name that is not Unicode");
        assert!(
            error
                .to_string()
                .starts_with("AWS_LAMBDA_FUNCTION_NAME is not valid Unicode: "),
            "{error}"
        );
    }

    /// Differential, against the Runtime API client `lambda_runtime` starts with: each value the
    /// check lets through reaches a Runtime API there (the client panics on one without a host,
    /// and sends one with a port that is not a number to port 80), and each one it refuses is one
    /// of those.
    #[tokio::test]
    async fn what_the_check_lets_through_the_runtime_s_client_reaches() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let mut paths = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = vec![0_u8; 4096];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
                paths.push(head.split(' ').nth(1).unwrap_or_default().to_owned());
                if paths.len() == 4 {
                    break;
                }
            }
            paths
        });
        let accepted = [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}/.rt/orders"),
        ];
        for address in &accepted {
            let mut set = LAMBDA.map(|(name, value)| (name, value.to_owned()));
            set[3].1.clone_from(address);
            let set: Vec<(&str, &str)> = set.iter().map(|(n, v)| (*n, v.as_str())).collect();
            check(&set).unwrap_or_else(|error| panic!("{address}: {error}"));
            // As `lambda_runtime` builds its client: the variable's text as a URI.
            let uri: http::Uri = address
                .as_str()
                .try_into()
                .expect("the client's conversion");
            let client = lambda_runtime_api_client::Client::builder()
                .with_endpoint(uri)
                .build()
                .expect("a client");
            let request = http::Request::get("/2018-06-01/runtime/invocation/next")
                .body(lambda_runtime_api_client::body::Body::empty())
                .unwrap();
            let response = client.call(request).await.expect("the Runtime API answers");
            assert_eq!(response.status(), 204, "{address}");
        }
        let paths = served.await.unwrap();
        assert_eq!(paths[3], "/.rt/orders/2018-06-01/runtime/invocation/next");
        for refused in [
            "",
            "/2018-06-01",
            "/x://y",
            "http://:9001",
            "127.0.0.1:abc",
            "127.0.0.1:99999",
            "host name",
            "https://127.0.0.1:9001",
            "unix://runtime",
        ] {
            let mut set = LAMBDA;
            set[3].1 = refused;
            assert!(check(&set).is_err(), "{refused:?} is let through");
            assert!(runtime_api_uri(refused).is_none(), "{refused:?}");
        }
    }

    /// Only a number over Lambda's maximum stops `run_concurrent`: what `lambda_runtime` reads
    /// as one at a time (`0`, `" 4"`, text) is its own to read, as before (a review found the
    /// whole configuration checked, and a function stopped over a variable it never read).
    #[cfg(feature = "concurrency-tokio")]
    #[test]
    fn only_a_concurrency_over_lambda_s_maximum_stops_run_concurrent() {
        let refused = over_lambda_s_maximum_concurrency(Ok("99999999".to_owned())).unwrap_err();
        assert!(
            refused.to_string().contains("AWS_LAMBDA_MAX_CONCURRENCY"),
            "{refused}"
        );
        assert!(over_lambda_s_maximum_concurrency(Ok("1601".to_owned())).is_err());
        for value in ["1600", "1", "0", " 4", "many", ""] {
            assert!(
                over_lambda_s_maximum_concurrency(Ok(value.to_owned())).is_ok(),
                "{value:?}"
            );
        }
        assert!(over_lambda_s_maximum_concurrency(Err(std::env::VarError::NotPresent)).is_ok());
    }
}
