//! An error that stops the function before it serves an invocation, reported where the caller
//! of that invocation sees it.

use std::error::Error as StdError;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use lambda_runtime::Diagnostic;
use lambda_runtime_api_client::body::Body;

/// How long the report may take: Lambda answers at once, and a Runtime API that does not must
/// not hold a process that is ending.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes of the message posted (the whole report is on stderr).
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The `errorType` of an init error whose type has no name to give (and the header's value when
/// the name is not one).
const INIT_ERROR: &str = "Runtime.InitError";

/// Ends a function that could not start (a setting missing, a table that is not there): writes
/// [`error_report`](crate::error_report) to stderr (the function's log), and, under Lambda
/// (`AWS_LAMBDA_RUNTIME_API` set) and before [`run`](crate::run) or
/// [`run_concurrent`](crate::run_concurrent) started the runtime, reports the error to the
/// Runtime API's init error path, so
/// that the invocation that started the function is answered with the error's `errorType` and
/// `errorMessage`, as Lambda's own runtimes report an exception raised at start (Powertools for
/// Python's functions included), rather than `Runtime.ExitError` and an exit status. Returns
/// [`ExitCode::FAILURE`], for `main` to return.
///
/// The `errorType` is a powertools-rs error's Powertools name (`SchemaValidationError` for a
/// missing `POWERTOOLS_METRICS_NAMESPACE`), or the error's type (`std::io::Error`); the
/// `errorMessage` is its message with its causes. A report that fails (a Runtime API that does
/// not answer within 2 s, or a future awaited outside a Tokio runtime, where the Runtime API
/// client cannot run) is written to stderr too. In a Tokio runtime built without timers the
/// report waits for the answer without that bound.
///
/// ```no_run
/// use std::process::ExitCode;
///
/// async fn start() -> Result<(), lambda_runtime::Error> {
///     let powertools = powertools::Powertools::from_env()?;
///     powertools.init()?;
///     // … build the handler, then `powertools::run(handler).await`
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> ExitCode {
///     match start().await {
///         Ok(()) => ExitCode::SUCCESS,
///         Err(error) => powertools::init_failed(&*error).await,
///     }
/// }
/// ```
///
/// The error is read before the returned future first waits, which holds only what it read:
/// the future is `Send` (it can be spawned) whatever the error is.
pub fn init_failed(
    error: &(dyn StdError + 'static),
) -> impl Future<Output = ExitCode> + Send + 'static {
    let mut stderr = std::io::stderr().lock();
    // The function's log is where its errors are read; a failing stderr has nowhere else to go.
    let _ = writeln!(stderr, "{}", crate::error_report(error));
    drop(stderr);
    // Once the runtime asks for an invocation, init is over: an error then (the Runtime API
    // failing, `run` stopping at an invocation) is not an init error, and Lambda answers the
    // invocation in flight with `Runtime.ExitError` when the process exits (found by an attack:
    // errors after many invocations were posted as init errors, then by its review: so was one
    // at an invocation the runtime stopped at before any layer saw it).
    let runtime_api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|address| !address.trim().is_empty())
        .filter(|_| !crate::run::runtime_started());
    let diagnostic = runtime_api
        .as_ref()
        .map(|_| crate::describe::error_diagnostic(error));
    async move {
        if let (Some(runtime_api), Some(diagnostic)) = (runtime_api, diagnostic)
            && let Err(unreported) = report_diagnostic(&runtime_api, diagnostic).await
        {
            let _ = writeln!(
                std::io::stderr(),
                "the error could not be reported to the Lambda Runtime API at {runtime_api}: \
                 {unreported}"
            );
        }
        ExitCode::FAILURE
    }
}

/// Posts `error` to the init error path of the Runtime API at `runtime_api` (`host:port`, or a
/// URI with a scheme and a base path, as emulators give it).
#[cfg(test)]
pub(crate) async fn report(
    runtime_api: &str,
    error: &(dyn StdError + 'static),
) -> Result<(), String> {
    report_diagnostic(runtime_api, crate::describe::error_diagnostic(error)).await
}

/// Posts `diagnostic` as [`report`] posts an error's.
async fn report_diagnostic(runtime_api: &str, diagnostic: Diagnostic) -> Result<(), String> {
    let Diagnostic {
        error_type,
        mut error_message,
    } = diagnostic;
    // The header and the body say the same: a type name a header cannot carry (not ASCII) is
    // `Runtime.InitError` in both.
    let (error_type, header_type) = match http::HeaderValue::from_str(&error_type) {
        Ok(value) => (error_type, value),
        Err(_) => (
            INIT_ERROR.to_owned(),
            http::HeaderValue::from_static(INIT_ERROR),
        ),
    };
    // A start-up error's message is a sentence or two; one of megabytes would be refused whole.
    if error_message.len() > MAX_MESSAGE_BYTES {
        error_message.truncate(error_message.floor_char_boundary(MAX_MESSAGE_BYTES));
        error_message.push('…');
    }
    // Lambda sets a host and port; emulators may give the scheme and a base path, as the
    // runtime's own client takes them.
    let endpoint = crate::run::runtime_api_uri(runtime_api.trim())
        .ok_or_else(|| format!("AWS_LAMBDA_RUNTIME_API={runtime_api:?} is not a host and port"))?;
    let client = lambda_runtime_api_client::Client::builder()
        .with_endpoint(endpoint)
        .build()
        .map_err(|failure| failure.to_string())?;
    let body = serde_json::json!({"errorType": error_type, "errorMessage": error_message});
    let request = http::Request::post("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", header_type)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|failure| failure.to_string())?;
    // The Runtime API client is hyper on Tokio: outside a Tokio runtime it would panic, so the
    // report is refused in words instead (the error itself is on stderr already).
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(
            "not in a Tokio runtime (`init_failed` must be awaited in one, as \
                    `#[tokio::main]` gives)"
                .to_owned(),
        );
    }
    // A runtime built without timers (`enable_time`) cannot make one (making one panics): the
    // report then waits for the answer without a bound.
    let timers = powertools_core::failure::catch_quiet_panic(|| {
        drop(tokio::time::sleep(Duration::ZERO));
    })
    .is_ok();
    let answer = if timers {
        tokio::time::timeout(REPORT_TIMEOUT, client.call(request))
            .await
            .map_err(|_| format!("no answer within {} s", REPORT_TIMEOUT.as_secs()))?
    } else {
        client.call(request).await
    };
    let response =
        answer.map_err(|failure| powertools_core::error_chain::message_chain(failure.as_ref()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("Lambda answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The future of `init_failed` is `Send` whatever the error (it holds what it read of it, not
    /// the error), so it can be spawned; it held the `&dyn Error` before, which is not `Send`
    /// (found by an attack from the docs).
    #[tokio::test]
    async fn init_failed_can_be_spawned_with_an_error_that_is_not_sync() {
        #[derive(Debug)]
        struct NotSync(std::cell::Cell<u8>);
        impl std::fmt::Display for NotSync {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the oven is cold ({})", self.0.get())
            }
        }
        impl std::error::Error for NotSync {}
        let error = NotSync(std::cell::Cell::new(1));
        let code = tokio::spawn(super::init_failed(&error)).await.unwrap();
        assert_eq!(code, std::process::ExitCode::FAILURE);
    }

    /// A Runtime API that answers one request with `status`, and gives back the request.
    async fn runtime_api(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            // The head, then the body its content-length announces.
            loop {
                let read = stream.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|length| length.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || read == 0 {
                        break;
                    }
                }
            }
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (address, served)
    }

    #[tokio::test]
    async fn an_init_error_is_posted_to_the_runtime_api_with_its_type_and_message() {
        let (address, served) = runtime_api("202 Accepted").await;
        let error = crate::Error::from(powertools_core::Error::InvalidEnvVar {
            name: "POWERTOOLS_LOG_LEVEL".to_owned(),
            value: "loud".to_owned(),
            expected: "TRACE, DEBUG, INFO, WARN or ERROR",
        });
        super::report(&address, &error).await.expect("reported");
        let request = served.await.unwrap();
        assert!(
            request.starts_with("POST /2018-06-01/runtime/init/error HTTP/1.1"),
            "{request}"
        );
        assert!(
            request.to_lowercase().contains(&format!(
                "lambda-runtime-function-error-type: {}",
                error.error_type().to_lowercase()
            )),
            "{request}"
        );
        let body: serde_json::Value =
            serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["errorType"], error.error_type());
        assert_eq!(body["errorMessage"], error.to_string());

        // A message of megabytes is cut (the Runtime API would refuse it whole).
        let (address, served) = runtime_api("202 Accepted").await;
        let huge = std::io::Error::other("é".repeat(100_000));
        super::report(&address, &huge).await.expect("reported");
        let request = served.await.unwrap();
        let body: serde_json::Value =
            serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let message = body["errorMessage"].as_str().unwrap();
        assert!(
            message.len() <= super::MAX_MESSAGE_BYTES + 3,
            "{}",
            message.len()
        );
        assert_eq!(body["errorType"], "std::io::Error");

        // An emulator's address with its scheme and a base path (`cargo lambda watch` sets
        // `http://127.0.0.1:9000/.rt/<function>`), which the runtime's own client takes.
        let (address, served) = runtime_api("202 Accepted").await;
        super::report(&format!("http://{address}/.rt/orders"), &error)
            .await
            .expect("reported");
        let request = served.await.unwrap();
        assert!(
            request.starts_with("POST /.rt/orders/2018-06-01/runtime/init/error HTTP/1.1"),
            "{request}"
        );

        // An address the runtime's client could not reach (no host: it would panic) is an error.
        for unreachable in ["/x://y", "http://:9001", "127.0.0.1:abc"] {
            let refused = super::report(unreachable, &error).await.unwrap_err();
            assert!(refused.contains("is not a host and port"), "{refused}");
        }

        // A refusal, or nothing listening, is an error to write, never a panic.
        let (address, served) = runtime_api("403 Forbidden").await;
        let refused = super::report(&address, &error).await.unwrap_err();
        assert!(refused.contains("403"), "{refused}");
        served.await.unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap();
        let unreachable = super::report(&closed.to_string(), &error)
            .await
            .unwrap_err();
        assert!(
            unreachable.to_lowercase().contains("refused"),
            "{unreachable}"
        );
    }

    /// Outside a Tokio runtime the report is an error that says so, and in one built without
    /// timers it is still posted: both panicked (the Runtime API client, the report's timeout).
    #[test]
    fn a_report_outside_tokio_or_without_its_timers_is_no_panic() {
        let error = std::io::Error::other("the oven is cold");
        let mut outside = std::pin::pin!(super::report("127.0.0.1:9", &error));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(refused) = outside.as_mut().poll(&mut context) else {
            panic!("the report outside Tokio waited");
        };
        let refused = refused.unwrap_err();
        assert!(refused.contains("not in a Tokio runtime"), "{refused}");

        let without_timers = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        without_timers.block_on(async {
            let (address, served) = runtime_api("202 Accepted").await;
            super::report(&address, &error).await.expect("reported");
            let request = served.await.unwrap();
            assert!(request.contains("the oven is cold"), "{request}");
        });
    }
}
