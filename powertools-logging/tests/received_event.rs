//! `POWERTOOLS_LOGGER_LOG_EVENT` logs the event as Lambda sent it, not as the handler's event
//! type writes it again: through the runtime layer alone, and through `lambda_runtime`'s real
//! `Runtime` against a stand-in for the Lambda Runtime API (in a child process, since the
//! runtime reads its settings from the environment).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::tower::{Layer, Service, ServiceExt, service_fn};
use lambda_runtime::{LambdaEvent, LambdaInvocation};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{Logger, LoggingLayer, MemoryLogs, REDACTED, RawEventLayer};
use serde_json::{Value, json};

/// An API Gateway HTTP API (v2) POST, with a field no event type knows.
const EVENT: &str = r#"{
  "version": "2.0",
  "routeKey": "POST /orders",
  "rawPath": "/orders",
  "rawQueryString": "",
  "headers": {"content-type": "application/json", "authorization": "Bearer abc.def"},
  "requestContext": {
    "accountId": "123456789012",
    "apiId": "api",
    "domainName": "api.example.com",
    "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "curl"},
    "requestId": "api-req-1",
    "routeKey": "POST /orders",
    "stage": "$default",
    "time": "27/Nov/2026:09:15:02 +0000",
    "timeEpoch": 1795770902127
  },
  "body": "{\"order_id\":\"o-1\",\"password\":\"hunter2\",\"card_number\":\"4111111111111111\"}",
  "isBase64Encoded": false,
  "x-bakery-edge": "lyon-2"
}"#;

type Handler = fn(
    LambdaEvent<ApiGatewayV2httpRequest>,
) -> futures_util::future::Ready<Result<Value, lambda_runtime::Error>>;

fn handler(
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> futures_util::future::Ready<Result<Value, lambda_runtime::Error>> {
    let method = event.payload.request_context.http.method.to_string();
    futures_util::future::ready(Ok(json!({"statusCode": 201, "method": method})))
}

/// Checks the event line: the method received, the field no type knows, the secrets masked.
fn assert_logged_as_received(line: &Value, raw_output: &str) {
    for secret in ["abc.def", "hunter2", "4111111111111111"] {
        assert!(!raw_output.contains(secret), "{secret} reached the output");
    }
    // The event is the line's message, as Powertools for Python writes it.
    let event = &line["message"];
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert!(
        event.get("httpMethod").is_none(),
        "no field the event did not have: {event}"
    );
    assert_eq!(event["x-bakery-edge"], "lyon-2", "a field no type knows");
    assert_eq!(event["headers"]["authorization"], REDACTED);
    let body: Value = event["body"]
        .as_str()
        .and_then(|body| serde_json::from_str(body).ok())
        .expect("the body is still JSON text");
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["password"], REDACTED);
    assert_eq!(body["card_number"], REDACTED);
}

#[tokio::test]
async fn a_typed_event_is_logged_as_the_runtime_layer_received_it() {
    // Given a logger logging events, and the runtime layer in front of a stand-in for the
    // runtime's own service, which deserializes the event and calls the handler's service
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .writer(logs.clone())
        .env(Env::from_pairs([("POWERTOOLS_LOGGER_LOG_EVENT", "true")]))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let mut handler_service = LoggingLayer::new(logger).layer(service_fn(handler as Handler));
    let runtime = service_fn(move |invocation: LambdaInvocation| {
        let payload: ApiGatewayV2httpRequest = serde_json::from_slice(&invocation.body).unwrap();
        handler_service.call(LambdaEvent::new(payload, invocation.context))
    });
    let context = TestContext::new().with_request_id("req-1").build();
    let invocation = LambdaInvocation {
        parts: http::Response::new(()).into_parts().0,
        body: EVENT.as_bytes().to_vec().into(),
        context,
    };

    // When an invocation arrives
    RawEventLayer::new()
        .layer(runtime)
        .oneshot(invocation)
        .await
        .unwrap();

    // Then the event line is the event as sent
    let line = logs
        .json()
        .into_iter()
        .find(|line| line["message"].is_object())
        .unwrap();
    assert_eq!(line["function_request_id"], "req-1");
    assert_logged_as_received(&line, &logs.contents());
}

/// `received_body` gives the handler's service the bytes as sent, for its own invocation only,
/// while the runtime layer hands the invocation over; nothing outside it.
#[tokio::test]
async fn received_body_is_the_invocation_s_bytes_while_the_runtime_layer_hands_it_over() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let runtime = service_fn(move |invocation: LambdaInvocation| {
        kept.lock().unwrap().push((
            powertools_logging::received_body(&invocation.context.request_id),
            powertools_logging::received_body("another-request"),
        ));
        futures_util::future::ready(Ok::<(), lambda_runtime::Error>(()))
    });
    let invocation = LambdaInvocation {
        parts: http::Response::new(()).into_parts().0,
        body: EVENT.as_bytes().to_vec().into(),
        context: TestContext::new().with_request_id("req-body").build(),
    };
    RawEventLayer::new()
        .layer(runtime)
        .oneshot(invocation)
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.as_deref(), Some(EVENT.as_bytes()));
    assert!(seen[0].1.is_none(), "another invocation's body");
    assert!(
        powertools_logging::received_body("req-body").is_none(),
        "kept after the call"
    );
}

#[tokio::test]
async fn without_the_runtime_layer_a_typed_event_is_not_logged_and_that_is_said_once() {
    let logs = MemoryLogs::new();
    let logger = Logger::builder()
        .writer(logs.clone())
        .env(Env::empty())
        .log_event(true)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(logger.subscriber());
    let service = LoggingLayer::new(logger).layer(service_fn(handler as Handler));
    for _ in 0..2 {
        let payload: ApiGatewayV2httpRequest = serde_json::from_str(EVENT).unwrap();
        service
            .clone()
            .oneshot(TestContext::new().event(payload))
            .await
            .unwrap();
    }
    let lines = logs.json();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "WARN");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("RawEventLayer")
    );
}

/// Set in the child process that runs the real runtime.
const CHILD: &str = "POWERTOOLS_LOGGING_TEST_RUNTIME_CHILD";
const REQUEST_ID: &str = "req-runtime-1";

#[test]
fn the_real_runtime_hands_the_event_as_sent_to_the_logger() {
    if std::env::var_os(CHILD).is_some() {
        run_function();
        return;
    }
    // Given a stand-in for the Runtime API with one invocation, and the function in a process
    let api = FakeRuntimeApi::start(EVENT);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_real_runtime_hands_the_event_as_sent_to_the_logger",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("POWERTOOLS_SERVICE_NAME", "orders")
        .env("POWERTOOLS_LOGGER_LOG_EVENT", "true")
        .env_remove("AWS_LAMBDA_LOG_LEVEL")
        .env_remove("POWERTOOLS_LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // When the runtime has sent the response
    let response = api
        .responses
        .recv_timeout(Duration::from_secs(60))
        .expect("the function answered");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the runtime did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();

    // Then the handler saw a POST, and the event line is the event as Lambda sent it
    assert_eq!(
        response.0,
        format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response")
    );
    let answered: Value = serde_json::from_str(&response.1).unwrap();
    assert_eq!(answered["method"], "POST");
    // The test harness of the child writes `test … ... ` before the first line.
    let line = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(&line[line.find('{')?..]).ok())
        .find(|line| line["message"].is_object())
        .unwrap_or_else(|| panic!("no event line in {output}"));
    assert_eq!(line["function_request_id"], REQUEST_ID);
    assert_eq!(line["function_name"], "orders-api");
    assert_logged_as_received(&line, &output);
}

/// The function of the child process: `Runtime::new(handler).layer(RawEventLayer::new())`.
fn run_function() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let logger = powertools_logging::init().expect("the logger's settings");
        let service = LoggingLayer::new(logger).layer(service_fn(handler as Handler));
        // Ends with an error once the stand-in stops answering.
        let _ = lambda_runtime::Runtime::new(service)
            .layer(lambda_runtime::layers::TracingLayer::new())
            .layer(RawEventLayer::new())
            .run()
            .await;
    });
}

/// Serves `GET …/invocation/next` once with the event, takes the response, then stops.
struct FakeRuntimeApi {
    address: String,
    responses: mpsc::Receiver<(String, String)>,
}

impl FakeRuntimeApi {
    fn start(event: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let address = listener.local_addr().expect("a bound listener").to_string();
        let (sender, responses) = mpsc::channel();
        let served = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if done.load(Ordering::SeqCst) {
                    // Refuse: the runtime's next poll fails and it stops.
                    break;
                }
                let Ok(stream) = stream else { break };
                let (sender, served, done) = (sender.clone(), served.clone(), done.clone());
                std::thread::spawn(move || serve(stream, event, &sender, &served, &done));
            }
        });
        FakeRuntimeApi { address, responses }
    }
}

/// Answers the requests of one connection until it closes (or fails: the runtime is gone).
fn serve(
    stream: TcpStream,
    event: &str,
    sender: &mpsc::Sender<(String, String)>,
    served: &AtomicBool,
    done: &AtomicBool,
) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method == "GET" && path.ends_with("/invocation/next") {
            if served.swap(true, Ordering::SeqCst) {
                // Close without answering: the runtime's poll fails and it stops.
                return Ok(());
            }
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                + Duration::from_secs(30);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 lambda-runtime-aws-request-id: {REQUEST_ID}\r\n\
                 lambda-runtime-deadline-ms: {}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-1:123456789012:function:orders-api\r\n\
                 lambda-runtime-trace-id: Root=1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a;Parent=53995c3f42cd8ad8;Sampled=1\r\n\r\n",
                event.len(),
                deadline.as_millis()
            );
            writer.write_all(head.as_bytes())?;
            writer.write_all(event.as_bytes())?;
        } else {
            writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")?;
            done.store(true, Ordering::SeqCst);
            let _ = sender.send((path.to_owned(), String::from_utf8_lossy(&body).into_owned()));
        }
    }
}
