//! The smallest Lambda Runtime API + Extensions API emulator that keeps Lambda's ordering, for
//! the tests of exporting after the response.
//!
//! Neither emulator at hand keeps it: `cargo lambda watch` 1.9.2 hands an `INVOKE` event to an
//! extension that happens to be waiting, but gives the runtime its next invocation without
//! waiting for the extensions, and simulates no shutdown; `lambda-simulator` 0.2 tracks the
//! extensions' readiness but its `/next` also hands out the next queued invocation at once, and it
//! never sends the runtime `SIGTERM`. What this one does, as Lambda documents it:
//!
//! - registration is refused once the runtime has asked for its first invocation (init is over);
//! - an invocation is handed to the runtime (and, as `INVOKE`, to every extension subscribed to
//!   it) only when the previous one is complete: its response posted *and* every such extension
//!   back at `/extension/event/next` — until then the environment would be frozen or busy;
//! - shutting down sends `SHUTDOWN` to the extensions subscribed to it and `SIGTERM` to the
//!   function's process (Lambda does when an extension is registered), then waits for it to exit.
//!
//! Everything it sees goes on the shared [`Timeline`], in order.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use super::timeline::Timeline;

/// How the runtime ended an invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Debug)]
struct Extension {
    name: String,
    events: Vec<String>,
    inbox: VecDeque<Value>,
    /// The invocation whose `INVOKE` it was last given, until it asks for its next event.
    busy_with: Option<String>,
}

#[derive(Debug)]
struct Current {
    request_id: String,
    responded: bool,
    /// Extensions given its `INVOKE` that have not asked for their next event yet.
    waiting_for: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    init_done: bool,
    queue: VecDeque<(String, Value, u64)>,
    current: Option<Current>,
    extensions: HashMap<String, Extension>,
    callers: HashMap<String, oneshot::Sender<Outcome>>,
    next_id: usize,
    /// Answers for the extensions' next polls of `/extension/event/next`, before any event.
    canned_polls: VecDeque<(StatusCode, Value)>,
}

impl State {
    fn can_dispatch(&self) -> bool {
        !self.queue.is_empty()
            && self
                .current
                .as_ref()
                .is_none_or(|current| current.responded && current.waiting_for.is_empty())
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
    timeline: Timeline,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The emulator, listening on a free loopback port until the test's runtime ends.
#[derive(Debug, Clone)]
pub struct LambdaApi {
    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

/// An invocation made through [`LambdaApi::invoke`].
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    outcome: oneshot::Receiver<Outcome>,
}

impl Invocation {
    /// The runtime's response or error, waiting at most `limit` (`None` after it).
    pub async fn outcome(&mut self, limit: Duration) -> Option<Outcome> {
        tokio::time::timeout(limit, &mut self.outcome)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl LambdaApi {
    pub async fn start(timeline: &Timeline) -> LambdaApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            timeline: timeline.clone(),
        });
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| route(Arc::clone(&shared), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LambdaApi { address, shared }
    }

    /// Queues an invocation with a deadline `timeout` from now.
    pub fn invoke(&self, payload: Value, timeout: Duration) -> Invocation {
        let (sender, outcome) = oneshot::channel();
        let mut state = self.shared.state();
        state.next_id += 1;
        let request_id = format!("req-{}", state.next_id);
        let deadline = SystemTime::now() + timeout;
        let deadline_ms =
            u64::try_from(deadline.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
        state
            .queue
            .push_back((request_id.clone(), payload, deadline_ms));
        state.callers.insert(request_id.clone(), sender);
        drop(state);
        self.shared
            .timeline
            .record(&format!("invoke {request_id} queued"));
        self.shared.changed.notify_waiters();
        Invocation {
            request_id,
            outcome,
        }
    }

    /// Answers the extensions' next polls of `/extension/event/next` with these, one each, before
    /// any event: a failure of the API, or an event the extension cannot read.
    pub fn answer_next_extension_polls(&self, answers: Vec<(StatusCode, Value)>) {
        self.shared.state().canned_polls.extend(answers);
    }

    /// How many of the answers given to [`answer_next_extension_polls`] are still to be given.
    pub fn extension_poll_answers_left(&self) -> usize {
        self.shared.state().canned_polls.len()
    }

    /// Whether the invocation has been handed to the runtime.
    pub fn dispatched(&self, request_id: &str) -> bool {
        let state = self.shared.state();
        !state.queue.iter().any(|(id, _, _)| id == request_id)
    }

    /// Waits until the current invocation is complete (its response posted and every extension
    /// subscribed to `INVOKE` back at `/extension/event/next`), at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let idle = self
                .shared
                .state()
                .current
                .as_ref()
                .is_none_or(|current| current.responded && current.waiting_for.is_empty());
            if idle {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The names of the registered extensions and the events they subscribed to.
    pub fn extensions(&self) -> Vec<(String, Vec<String>)> {
        self.shared
            .state()
            .extensions
            .values()
            .map(|extension| (extension.name.clone(), extension.events.clone()))
            .collect()
    }

    /// Waits until the runtime has asked for its first invocation (init is over), at most
    /// `limit`.
    pub async fn wait_for_init(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.shared.state().init_done {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Shuts the environment down: `SHUTDOWN` to the extensions subscribed to it, `SIGTERM` to
    /// the function's process; waits for it to exit, at most `limit`, killing it after that.
    pub async fn shutdown(&self, function: &mut Child, limit: Duration) -> Option<ExitStatus> {
        {
            let mut state = self.shared.state();
            let deadline_ms = u64::try_from(
                (SystemTime::now() + limit)
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap();
            for extension in state.extensions.values_mut() {
                if extension.events.iter().any(|event| event == "SHUTDOWN") {
                    extension.inbox.push_back(json!({
                        "eventType": "SHUTDOWN",
                        "shutdownReason": "SPINDOWN",
                        "deadlineMs": deadline_ms,
                    }));
                }
            }
        }
        self.shared.changed.notify_waiters();
        self.shared.timeline.record("shutdown: SIGTERM sent");
        let sent = Command::new("kill")
            .args(["-TERM", &function.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        assert!(sent, "kill -TERM failed");
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = function.try_wait().unwrap() {
                self.shared.timeline.record("function process exited");
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = function.kill();
        let _ = function.wait();
        None
    }

    /// Starts the function process: this test binary again, running only `test` (a test that
    /// runs the function when `POWERTOOLS_TEST_FUNCTION` is set), with the Lambda variables.
    pub fn spawn_function(&self, test: &str, env: &[(&str, &str)]) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("POWERTOOLS_TEST_FUNCTION", "1")
            .env("AWS_LAMBDA_RUNTIME_API", self.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        command.spawn().unwrap()
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn route(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let extension_name = header("lambda-extension-name");
    let extension_id = header("lambda-extension-identifier");
    let body = request.into_body().collect().await?.to_bytes();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => {
            next_invocation(&shared).await
        }
        (
            Method::POST,
            [
                "2018-06-01",
                "runtime",
                "invocation",
                request_id,
                kind @ ("response" | "error"),
            ],
        ) => {
            let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut state = shared.state();
            if let Some(current) = state
                .current
                .as_mut()
                .filter(|c| c.request_id == *request_id)
            {
                current.responded = true;
            }
            let caller = state.callers.remove(*request_id);
            drop(state);
            shared
                .timeline
                .record(&format!("{kind} {request_id} posted"));
            if let Some(caller) = caller {
                let _ = caller.send(if *kind == "response" {
                    Outcome::Response(payload)
                } else {
                    Outcome::Error(payload)
                });
            }
            shared.changed.notify_waiters();
            respond(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            shared.timeline.record("init error posted");
            respond(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        (Method::POST, ["2020-01-01", "extension", "register"]) => {
            let events: Vec<String> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|body| serde_json::from_value(body["events"].clone()).ok())
                .unwrap_or_default();
            let name = extension_name.unwrap_or_default();
            let mut state = shared.state();
            if state.init_done {
                drop(state);
                shared
                    .timeline
                    .record(&format!("extension {name} refused: init is over"));
                return Ok(respond(
                    StatusCode::FORBIDDEN,
                    json!({"errorType": "Extension.InitError", "errorMessage": "init is over"}),
                ));
            }
            let id = format!("ext-{}", state.extensions.len() + 1);
            state.extensions.insert(
                id.clone(),
                Extension {
                    name: name.clone(),
                    events: events.clone(),
                    inbox: VecDeque::new(),
                    busy_with: None,
                },
            );
            drop(state);
            shared
                .timeline
                .record(&format!("extension {name} registered for {events:?}"));
            let mut response = respond(
                StatusCode::OK,
                json!({"functionName": "orders-api", "functionVersion": "1", "handler": "bootstrap"}),
            );
            response
                .headers_mut()
                .insert("lambda-extension-identifier", id.parse().unwrap());
            response
        }
        (Method::GET, ["2020-01-01", "extension", "event", "next"]) => {
            next_event(&shared, &extension_id.unwrap_or_default()).await
        }
        (Method::POST, ["2020-01-01", "extension", kind @ ("init" | "exit"), "error"]) => {
            shared
                .timeline
                .record(&format!("extension {kind} error posted"));
            respond(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        (method, _) => respond(
            StatusCode::NOT_FOUND,
            json!({"unknown": format!("{method} {path}")}),
        ),
    })
}

async fn next_invocation(shared: &Shared) -> Response<Full<Bytes>> {
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut state = shared.state();
            if !state.init_done {
                state.init_done = true;
                drop(state);
                shared
                    .timeline
                    .record("init done: the runtime asked for its first invocation");
                continue;
            }
            if state.can_dispatch() {
                let (request_id, payload, deadline_ms) = state.queue.pop_front().unwrap();
                let mut waiting_for = Vec::new();
                for (id, extension) in &mut state.extensions {
                    if extension.events.iter().any(|event| event == "INVOKE") {
                        extension.inbox.push_back(json!({
                            "eventType": "INVOKE",
                            "deadlineMs": deadline_ms,
                            "requestId": request_id,
                            "invokedFunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:orders-api",
                            "tracing": {"type": "X-Amzn-Trace-Id", "value": ""},
                        }));
                        waiting_for.push(id.clone());
                    }
                }
                state.current = Some(Current {
                    request_id: request_id.clone(),
                    responded: false,
                    waiting_for,
                });
                drop(state);
                shared
                    .timeline
                    .record(&format!("invoke {request_id} dispatched"));
                shared.changed.notify_waiters();
                return Response::builder()
                    .header("lambda-runtime-aws-request-id", &request_id)
                    .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:eu-west-1:123456789012:function:orders-api",
                    )
                    .header(
                        "lambda-runtime-trace-id",
                        "Root=1-6b000001-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
                    )
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(payload.to_string())))
                    .unwrap();
            }
        }
        changed.await;
    }
}

async fn next_event(shared: &Shared, extension_id: &str) -> Response<Full<Bytes>> {
    {
        let mut state = shared.state();
        let Some(extension) = state.extensions.get_mut(extension_id) else {
            return respond(
                StatusCode::FORBIDDEN,
                json!({"errorType": "Extension.Unknown"}),
            );
        };
        if let Some(request_id) = extension.busy_with.take() {
            let name = extension.name.clone();
            if let Some(current) = state
                .current
                .as_mut()
                .filter(|current| current.request_id == request_id)
            {
                current.waiting_for.retain(|id| id != extension_id);
            }
            drop(state);
            shared
                .timeline
                .record(&format!("extension {name} done with {request_id}"));
            shared.changed.notify_waiters();
        }
    }
    let canned = shared.state().canned_polls.pop_front();
    if let Some((status, body)) = canned {
        shared
            .timeline
            .record(&format!("extension poll answered {status}"));
        return respond(status, body);
    }
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut state = shared.state();
            let extension = state.extensions.get_mut(extension_id).unwrap();
            if let Some(event) = extension.inbox.pop_front() {
                if event["eventType"] == "INVOKE" {
                    extension.busy_with = event["requestId"].as_str().map(str::to_owned);
                }
                return respond(StatusCode::OK, event);
            }
        }
        changed.await;
    }
}
