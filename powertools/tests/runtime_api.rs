//! `powertools::run` against a Runtime API of the test's own, which hands out what Lambda's can
//! and `cargo lambda watch` does not: a client context set by the caller. The function runs in a
//! child process of the test, whose environment `run` reads.

// The Runtime API's helpers run outside the test functions.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Deserialize)]
struct Order {
    #[allow(dead_code)]
    order_id: String,
}

/// One invocation the Runtime API hands out: its request id, extra headers and event.
struct Invocation {
    request_id: &'static str,
    headers: &'static str,
    /// The event's body, as sent.
    body: String,
}

/// A request the function made: its method and path, and its body.
type Request = (String, String);

/// Serves `invocations` one per `/next`, then answers nothing more to `/next` (the test ends
/// before), and records every request, one per connection (`connection: close`).
async fn runtime_api(invocations: Vec<Invocation>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    tokio::spawn(async move {
        let mut invocations = invocations.into_iter();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (line, body) = read_request(&mut stream).await;
            recorded.lock().unwrap().push((line.clone(), body));
            if line.ends_with("/runtime/invocation/next") {
                let Some(invocation) = invocations.next() else {
                    // Held open: the runtime waits, as Lambda's would between invocations.
                    tokio::spawn(async move {
                        let _held = stream;
                        std::future::pending::<()>().await;
                    });
                    continue;
                };
                let body = invocation.body;
                // Unless the invocation sets its own.
                let deadline = if invocation.headers.contains("lambda-runtime-deadline-ms") {
                    String::new()
                } else {
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 60_000;
                    format!("lambda-runtime-deadline-ms: {at}\r\n")
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     lambda-runtime-aws-request-id: {}\r\n{deadline}\
                     lambda-runtime-invoked-function-arn: \
                     arn:aws:lambda:eu-west-1:123456789012:function:orders\r\n{}\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    invocation.request_id,
                    invocation.headers,
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
            } else {
                stream
                    .write_all(
                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await
                    .unwrap();
            }
        }
    });
    (address, requests)
}

/// The request line's method and path, and the body its content-length announces.
async fn read_request(stream: &mut TcpStream) -> (String, String) {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await.unwrap();
        request.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length || read == 0 {
                let line = text.lines().next().unwrap_or_default();
                let line = line.rsplit_once(' ').map_or(line, |(line, _)| line);
                return (line.to_owned(), text[end + 4..].to_owned());
            }
        }
        if read == 0 {
            return (String::new(), String::new());
        }
    }
}

/// Set in the child process the test runs the function in: the scenario it runs.
const CHILD: &str = "POWERTOOLS_TEST_RUNTIME_API_CHILD";

/// The card number a caller puts in a client context.
const CARD_CONTEXT: &str =
    "lambda-runtime-client-context: {\"custom\":{\"card\":4111111111111111}}\r\n";

/// Runs `test` (this binary's test of that name) in a child process as the function, with the
/// variables `run` reads set there (the workspace forbids the `unsafe` that setting them here
/// takes), against the Runtime API at `address`; what it printed, after asserting it passed.
async fn function_process(test: &str, address: &str, concurrency: Option<&str>) -> String {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env("AWS_LAMBDA_RUNTIME_API", address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "orders")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY");
    if let Some(concurrency) = concurrency {
        command.env("AWS_LAMBDA_MAX_CONCURRENCY", concurrency);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the function ends")
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    printed
}

/// The answer the function posted for `request_id`, if any: its request line and body.
fn answer_of(recorded: &[Request], request_id: &str) -> Option<Request> {
    recorded
        .iter()
        .find(|(line, _)| line.contains(&format!("/invocation/{request_id}/")))
        .cloned()
}

/// Asserts that nothing was posted as an init error: the runtime had started.
fn assert_no_init_error(recorded: &[Request], printed: &str) {
    assert!(
        recorded
            .iter()
            .all(|(line, _)| !line.contains("/init/error")),
        "an error after the runtime started was posted as an init error: {recorded:?}\n{printed}"
    );
}

/// An invalid first event claims the cold start (the next invocation is warm), a client context
/// that does not read stops `run` with an error that names the header and not the value (a card
/// number), and `init_failed` then posts no init error: the function had started. Each failed
/// first (found by two attacks: the warm invocation was the cold start; `run`'s error quoted the
/// card number; it was posted to `/init/error` after invocations).
///
/// The function runs in a child process of this test binary; the Runtime API runs here and
/// records what the function sent.
#[tokio::test]
async fn the_runtime_api_s_edges_are_said_without_quoting_the_caller() {
    const TEST: &str = "the_runtime_api_s_edges_are_said_without_quoting_the_caller";
    if std::env::var_os(CHILD).is_some() {
        return function(&[
            "Lambda-Runtime-Client-Context",
            "aws-lambda-rust-runtime#559",
        ])
        .await;
    }
    let (address, requests) = runtime_api(vec![
        Invocation {
            request_id: "invalid-first",
            headers: "",
            body: json!({"order_id": 5}).to_string(),
        },
        Invocation {
            request_id: "warm",
            headers: "",
            body: json!({"order_id": "o-1"}).to_string(),
        },
        // A second document after the event's (`lambda_runtime` reads the first and ignores
        // the rest, where a reader in front may have kept the other; found by an attack
        // through the emulator): refused, the rest unquoted.
        Invocation {
            request_id: "trailing",
            headers: "",
            body: r#"{"order_id": "o-3"} {"order_id": "4111111111111111"}"#.to_owned(),
        },
        Invocation {
            request_id: "client-context",
            headers: CARD_CONTEXT,
            body: json!({"order_id": "o-2"}).to_string(),
        },
    ])
    .await;
    let printed = function_process(TEST, &address, None).await;

    let recorded = requests.lock().unwrap().clone();
    let (line, body) =
        answer_of(&recorded, "invalid-first").expect("the invalid event is answered");
    assert!(line.ends_with("/error"), "{line}: {body}");
    assert!(body.contains("InvalidEvent"), "{body}");
    let (line, body) = answer_of(&recorded, "warm").expect("the second invocation is answered");
    assert!(line.ends_with("/response"), "{line}: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"cold_start": false}),
        "the second invocation was the cold start"
    );
    let (line, body) = answer_of(&recorded, "trailing").expect("the event is answered");
    assert!(line.ends_with("/error"), "{line}: {body}");
    assert!(
        body.contains("InvalidEvent") && body.contains("trailing characters"),
        "{body}"
    );
    assert!(!body.contains("4111"), "{body}");
    assert!(
        answer_of(&recorded, "client-context").is_none(),
        "{recorded:?}"
    );
    assert_no_init_error(&recorded, &printed);
    assert!(!printed.contains("4111"), "{printed}");
}

/// Under `run_concurrent`, each worker that such an invocation ends says so in
/// `lambda_runtime`'s error, which quoted the card number (and `init_failed` posted it as the
/// function's init error, the caller's answer: found by a review); a client context that is
/// not ASCII is named too. The first invocations are the bad ones: no init error all the same.
#[tokio::test]
async fn a_client_context_that_ends_run_concurrent_s_workers_is_said_without_its_value() {
    const TEST: &str =
        "a_client_context_that_ends_run_concurrent_s_workers_is_said_without_its_value";
    if std::env::var_os(CHILD).is_some() {
        return function(&["Lambda-Runtime-Client-Context", "not visible ASCII"]).await;
    }
    let (address, requests) = runtime_api(vec![
        Invocation {
            request_id: "card",
            headers: CARD_CONTEXT,
            body: json!({"order_id": "o-1"}).to_string(),
        },
        Invocation {
            request_id: "not-ascii",
            headers: "lambda-runtime-client-context: {\"custom\":{\"name\":\"José\"}}\r\n",
            body: json!({"order_id": "o-2"}).to_string(),
        },
    ])
    .await;
    let printed = function_process(TEST, &address, Some("2")).await;
    let recorded = requests.lock().unwrap().clone();
    assert_no_init_error(&recorded, &printed);
    assert!(!printed.contains("4111"), "{printed}");
}

/// A `Lambda-Runtime-Deadline-Ms` that is not a number stops `lambda_runtime` (Lambda always
/// sends one; an emulator or a proxy in front may not): the error names the header, under `run`
/// and in each `run_concurrent` worker's, where it said only "invalid digit found in string"
/// (found by an attack on the facade from the docs).
#[tokio::test]
async fn a_deadline_that_does_not_read_is_named() {
    const TEST: &str = "a_deadline_that_does_not_read_is_named";
    if std::env::var_os(CHILD).is_some() {
        return function(&["Lambda-Runtime-Deadline-Ms", "invalid digit"]).await;
    }
    for (concurrency, deadlines) in [
        (None, ["soon", ""]),
        (Some("2"), ["-5", "99999999999999999999999"]),
    ] {
        let invocations = deadlines
            .iter()
            .zip(["first", "second"])
            .filter(|(deadline, _)| !deadline.is_empty())
            .map(|(deadline, request_id)| Invocation {
                request_id,
                headers: Box::leak(
                    format!("lambda-runtime-deadline-ms: {deadline}\r\n").into_boxed_str(),
                ),
                body: json!({"order_id": "o-1"}).to_string(),
            })
            .collect();
        let (address, requests) = runtime_api(invocations).await;
        let printed = function_process(TEST, &address, concurrency).await;
        let recorded = requests.lock().unwrap().clone();
        assert_no_init_error(&recorded, &printed);
    }
}

/// The function, in the child process: `run` (or `run_concurrent`, as the environment says)
/// until it stops, then `init_failed`, as a function's `main` does; the error names `named`.
async fn function(named: &[&str]) {
    let handler = service_fn(|event: LambdaEvent<Order>| async move {
        Ok::<_, lambda_runtime::Error>(
            json!({"cold_start": powertools_core::is_cold_start(&event.context)}),
        )
    });
    let stopped = if std::env::var_os("AWS_LAMBDA_MAX_CONCURRENCY").is_some() {
        powertools::run_concurrent(handler).await
    } else {
        powertools::run(handler).await
    }
    .expect_err("a client context that does not read stops the runtime");
    let message = stopped.to_string();
    for named in named {
        assert!(message.contains(named), "{named}: {message}");
    }
    assert!(!message.contains("4111"), "{message}");
    let code = powertools::init_failed(&*stopped).await;
    assert_eq!(code, std::process::ExitCode::FAILURE);
}

/// A first event that does not read as the handler's type ends its invocation before the
/// layers see it: it is the cold start all the same, and its `ColdStart` metric is written by
/// the next invocation the metrics layer sees (as Powertools for Python's next invocation
/// writes it). It was never written: the warm invocation is not the cold start, and the metrics
/// layer never saw the cold one (found by an attack from the docs).
#[tokio::test]
async fn the_cold_start_of_an_invalid_first_event_is_counted_by_the_next_invocation() {
    const TEST: &str = "the_cold_start_of_an_invalid_first_event_is_counted_by_the_next_invocation";
    if std::env::var_os(CHILD).is_some() {
        let metrics = powertools::metrics::MetricsLayer::builder()
            .namespace("Orders")
            .service("orders")
            .capture_cold_start_metric(true)
            .build()
            .unwrap();
        let handler = lambda_runtime::tower::ServiceBuilder::new()
            .layer(metrics)
            .service(service_fn(|_: LambdaEvent<Order>| async move {
                Ok::<_, lambda_runtime::Error>(json!({"ok": true}))
            }));
        powertools::run(handler)
            .await
            .expect_err("a client context that does not read stops the runtime");
        return;
    }
    let (address, requests) = runtime_api(vec![
        Invocation {
            request_id: "invalid-first",
            headers: "",
            body: json!({"order_id": 5}).to_string(),
        },
        Invocation {
            request_id: "warm-1",
            headers: "",
            body: json!({"order_id": "o-1"}).to_string(),
        },
        Invocation {
            request_id: "warm-2",
            headers: "",
            body: json!({"order_id": "o-2"}).to_string(),
        },
        Invocation {
            request_id: "client-context",
            headers: CARD_CONTEXT,
            body: json!({"order_id": "o-3"}).to_string(),
        },
    ])
    .await;
    let printed = function_process(TEST, &address, None).await;
    let recorded = requests.lock().unwrap().clone();
    let (line, _) = answer_of(&recorded, "warm-2").expect("the invocations are answered");
    assert!(line.ends_with("/response"), "{line}");
    // The test harness's `test … ` is on the first document's line.
    let cold_starts: Vec<Value> = printed
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(&line[line.find('{')?..]).ok())
        .filter(|document| document.get("ColdStart").is_some())
        .collect();
    assert_eq!(cold_starts.len(), 1, "one ColdStart: {printed}");
    assert_eq!(cold_starts[0]["ColdStart"], 1.0);
    assert_eq!(cold_starts[0]["function_name"], "orders");
}

/// `AWS_LAMBDA_MAX_CONCURRENCY` over Lambda's maximum (1600) stops `run_concurrent` before it
/// asks for any invocation, naming the variable: `lambda_runtime` started that many workers,
/// each asking for the next invocation, flooded the log and stopped answering (found by an
/// attack from the docs: 99999999).
#[tokio::test]
async fn a_concurrency_over_lambda_s_maximum_is_refused_before_any_invocation() {
    const TEST: &str = "a_concurrency_over_lambda_s_maximum_is_refused_before_any_invocation";
    if std::env::var_os(CHILD).is_some() {
        let handler = service_fn(|_: LambdaEvent<Order>| async move {
            Ok::<_, lambda_runtime::Error>(json!({"ok": true}))
        });
        let stopped = powertools::run_concurrent(handler)
            .await
            .expect_err("refused");
        let message = stopped.to_string();
        assert!(
            message.contains("AWS_LAMBDA_MAX_CONCURRENCY") && message.contains("1600"),
            "{message}"
        );
        return;
    }
    let (address, requests) = runtime_api(vec![Invocation {
        request_id: "never-asked-for",
        headers: "",
        body: json!({"order_id": "o-1"}).to_string(),
    }])
    .await;
    function_process(TEST, &address, Some("99999999")).await;
    let recorded = requests.lock().unwrap().clone();
    assert!(
        recorded.iter().all(|(line, _)| !line.contains("/next")),
        "{recorded:?}"
    );
}
