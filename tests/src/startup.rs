//! Start-up checks every example runs on its own binary: a bad setting stops the function at
//! once with the library's message (which names the setting and the fix) instead of a Debug
//! dump, and a non-zero exit status.

use std::process::Command;

/// Runs `binary` with only `env` set; its exit code and what it wrote on stderr.
///
/// # Panics
/// When the binary cannot be started.
pub fn start(binary: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(binary)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|error| panic!("{binary} runs: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// Checks the three start-up failures of an example: no metrics namespace, an invalid log level,
/// and its own required variable `table_variable` unset.
///
/// # Panics
/// When a failure is reported as Debug, without its fix, or with exit status 0.
pub fn assert_bad_settings_are_named(binary: &str, table_variable: &str) {
    let (code, stderr) = start(binary, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: no metrics namespace: set POWERTOOLS_METRICS_NAMESPACE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("MissingNamespace"),
        "no Debug output: {stderr}"
    );

    let (code, stderr) = start(
        binary,
        &[
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_LOG_LEVEL", "verbose"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"POWERTOOLS_LOG_LEVEL has the invalid value "verbose": expected TRACE, DEBUG, INFO, WARN, WARNING, ERROR, FATAL or CRITICAL (any case)"#),
        "{stderr}"
    );
    assert!(
        !stderr.contains("InvalidLevel"),
        "no Debug output: {stderr}"
    );

    // Unset, or set to nothing: the same message.
    for env in [
        vec![("POWERTOOLS_METRICS_NAMESPACE", "Bakery")],
        vec![
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            (table_variable, ""),
        ],
    ] {
        let (code, stderr) = start(binary, &env);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("Error: {table_variable} is not set")),
            "{stderr}"
        );
    }
    let (_, stderr) = start(binary, &[("POWERTOOLS_METRICS_NAMESPACE", "Bakery")]);
    assert!(
        stderr.contains("template.yaml"),
        "says where it comes from: {stderr}"
    );

    // Every setting of its own right (the examples' tables), started outside Lambda (no Runtime
    // API): the variables Lambda sets are named, where `lambda_runtime` alone panics.
    let (code, stderr) = start(
        binary,
        &[
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            (table_variable, "bakery-table"),
            ("ORDERS_TABLE", "orders"),
            ("IDEMPOTENCY_TABLE", "idempotency"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "Error: AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE, \
             AWS_LAMBDA_FUNCTION_VERSION and AWS_LAMBDA_RUNTIME_API are not set: "
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Under Lambda, the error is also posted to the Runtime API's init error path, so that the
    // invocation that started the function is answered with it, not `Runtime.ExitError`.
    let (address, posted) = runtime_api_receiving_one_request();
    let (code, stderr) = start(binary, &[("AWS_LAMBDA_RUNTIME_API", address.as_str())]);
    assert_eq!(code, Some(1), "{stderr}");
    let request = posted
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no init error was posted: {stderr}"));
    assert!(
        request.starts_with("POST /2018-06-01/runtime/init/error HTTP/1.1"),
        "{request}"
    );
    let body: serde_json::Value = serde_json::from_str(
        request
            .split("\r\n\r\n")
            .nth(1)
            .expect("the request's body"),
    )
    .unwrap_or_else(|error| panic!("a JSON body: {error}: {request}"));
    assert_eq!(body["errorType"], "SchemaValidationError", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("set POWERTOOLS_METRICS_NAMESPACE")),
        "{body}"
    );

    // A retry setting `aws_config` panics on: the start's error names it, posted to Lambda, not
    // a panic (found by an attack from the docs). The tracer is off, so that no extension
    // registers with the one-request Runtime API.
    let (address, posted) = runtime_api_receiving_one_request();
    let (code, stderr) = start(
        binary,
        &[
            ("AWS_LAMBDA_RUNTIME_API", address.as_str()),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
            (table_variable, "bakery-table"),
            ("ORDERS_TABLE", "orders"),
            ("IDEMPOTENCY_TABLE", "idempotency"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_MAX_ATTEMPTS", "zero"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let request = posted
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no init error was posted: {stderr}"));
    assert!(
        request.contains("/runtime/init/error") && request.contains("AWS_MAX_ATTEMPTS"),
        "{request}"
    );
}

/// A Runtime API on a local port that answers one request `202 Accepted` and hands it over
/// (head and body) on the channel.
fn runtime_api_receiving_one_request() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("its address").to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        while let Ok(read) = stream.read(&mut buffer) {
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let complete = text.find("\r\n\r\n").is_some_and(|end| {
                let length = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|length| length.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                request.len() >= end + 4 + length
            });
            if read == 0 || complete {
                break;
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        let _ = sender.send(String::from_utf8_lossy(&request).into_owned());
    });
    (address, receiver)
}
