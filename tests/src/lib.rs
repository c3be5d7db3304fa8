//! Support for the workspace's integration and end-to-end tests: finding the real servers that
//! `scripts/with-test-services` starts, and clients for them.
//!
//! A test that needs a server and does not find one **fails** when `CI` is set, so a broken
//! service start can never turn into a green run of skipped tests. Outside CI it prints why it
//! skips and passes, so `cargo test` works on a laptop without the servers.

pub mod emf;
pub mod idempotency;
pub mod startup;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The warnings a test's own `tracing` subscriber wrote, kept as text: for tests that check what
/// a call warned about.
///
/// ```
/// let warnings = powertools_tests::CapturedWarnings::default();
/// let _guard = tracing::subscriber::set_default(warnings.subscriber());
/// tracing::warn!("the oven is cold");
/// assert!(warnings.text().contains("the oven is cold"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CapturedWarnings(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedWarnings {
    /// A subscriber that writes `WARN` and `ERROR` events here, as text lines.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedWarnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `tracing::subscriber::set_default(subscriber)`, for a test that reads the lines its own
/// subscriber wrote while other tests of the binary run beside it, some without a subscriber.
///
/// `tracing` caches whether a callsite is enabled for the whole process, and while a single
/// subscriber is registered it asks only the thread that reaches the callsite first: a test
/// without a subscriber reaching `tracing::info!("charged")` first disabled it for the test whose
/// subscriber was the only one alive, which then lost that line (now and then, under load; the
/// payment example's tests, 1 run in 4 with the machine busy). A global subscriber that keeps
/// nothing (a bare `Registry`, installed once per binary, unless the binary has a global one
/// already) keeps two registered from then on, so each callsite asks every live subscriber.
///
/// Like `set_default`, it reaches this thread only: lines written on a `multi_thread` runtime's
/// workers or in `spawn_blocking` go to the global subscriber, not here, and a test of spawned
/// work that reads them needs a global subscriber in a binary of its own (a test of an attack
/// passed while checking nothing that way).
pub fn set_test_default(
    subscriber: impl Into<tracing::Dispatch>,
) -> tracing::subscriber::DefaultGuard {
    static FALLBACK: std::sync::Once = std::sync::Once::new();
    FALLBACK.call_once(|| {
        // A binary that has a global subscriber already keeps two registered with it.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    tracing::dispatcher::set_default(&subscriber.into())
}

/// The variable that holds the DynamoDB-compatible endpoint (moto in our runs).
pub const DYNAMODB_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_DYNAMODB";

/// Whether this run is CI's, where a missing server must fail the test instead of skipping it.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// The endpoint of the server behind `variable`, after checking that it accepts connections.
///
/// Returns `None` (after printing why) when the server is not configured outside CI.
///
/// # Panics
/// When `CI` is set and the variable is missing or its server does not answer, or when the
/// variable holds something that is not an `http://host:port` URL.
pub fn required_service(variable: &str) -> Option<String> {
    let in_ci = in_ci();
    let Some(endpoint) = std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
    else {
        assert!(
            !in_ci,
            "{variable} is not set: run the tests through scripts/with-test-services (CI must not skip them)"
        );
        eprintln!("skipping: {variable} is not set (run through scripts/with-test-services)");
        return None;
    };
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let reachable = authority
        .to_socket_addrs()
        .unwrap_or_else(|error| panic!("{variable}={endpoint} is not host:port: {error}"))
        .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    if !reachable {
        assert!(!in_ci, "{variable}={endpoint} does not accept connections");
        eprintln!("skipping: nothing answers at {variable}={endpoint}");
        return None;
    }
    Some(endpoint)
}

/// A DynamoDB client for the test server, configured from the standard variables that
/// `scripts/with-test-services` exports, or `None` outside CI when there is no server.
pub async fn dynamodb_client() -> Option<aws_sdk_dynamodb::Client> {
    required_service(DYNAMODB_ENDPOINT_VAR)?;
    let config = aws_config::load_from_env().await;
    Some(aws_sdk_dynamodb::Client::new(&config))
}

/// A table name no other test run uses.
pub fn unique_table_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A function running under the Lambda Runtime API emulator (`cargo lambda watch`), stopped when
/// dropped.
#[derive(Debug)]
pub struct EmulatedFunction {
    child: std::process::Child,
    log_path: std::path::PathBuf,
    function: String,
    address: std::net::SocketAddr,
    agent: ureq::Agent,
}

/// What the emulator's Invoke API answered.
#[derive(Debug)]
pub struct InvokeResult {
    /// The HTTP status: 200 for a successful invocation, 500 when the handler returned an error
    /// (`cargo lambda watch` 1.9 answers an init error it received with 200 and the error's body
    /// when it answers at all: its init-error handler may wait on another function's queue, and
    /// the function then reports "the error could not be reported", the invoke getting no
    /// answer; a test of init errors accepts either).
    pub status: u16,
    /// The response body: the handler's response, or Lambda's `{"errorType", "errorMessage"}`.
    pub body: serde_json::Value,
}

impl EmulatedFunction {
    /// Starts `bin` of the workspace package in `package_dir` under `cargo lambda watch` with the
    /// given extra environment, or returns `None` outside CI when `cargo lambda` is not installed.
    ///
    /// # Panics
    /// When `CI` is set and `cargo lambda` is missing, or when the emulator does not come up.
    pub fn start(package_dir: &std::path::Path, bin: &str, env: &[(&str, &str)]) -> Option<Self> {
        Self::start_with_watch_args(package_dir, bin, env, &[])
    }

    /// [`start`](Self::start) with more arguments for `cargo lambda watch`, such as
    /// [`runner_env`] to set a variable the emulator would otherwise override.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with_watch_args(
        package_dir: &std::path::Path,
        bin: &str,
        env: &[(&str, &str)],
        watch_args: &[String],
    ) -> Option<Self> {
        use std::process::{Command, Stdio};
        let in_ci = in_ci();
        let installed = Command::new("cargo")
            .args(["lambda", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                !in_ci,
                "cargo lambda is not installed: run through scripts/with-test-services"
            );
            eprintln!(
                "skipping: cargo lambda is not installed (run through scripts/with-test-services)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let log_dir = std::env::temp_dir();
        let log_path = log_dir.join(format!("cargo-lambda-{bin}-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("emulator log file");
        let child = Command::new("cargo")
            .current_dir(package_dir)
            .args(["lambda", "watch", "--bin", bin, "--ignore-changes"])
            .args(watch_args)
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("emulator log file"))
            .stderr(log)
            .spawn()
            .expect("cargo lambda watch starts");
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let function = EmulatedFunction {
            child,
            log_path: log_path.clone(),
            function: bin.to_owned(),
            address,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                // The first invocation waits for `cargo lambda watch` to build the function if
                // scripts/test has not built it already.
                .timeout_global(Some(Duration::from_secs(600)))
                .build()
                .into(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "cargo lambda watch did not listen on {address}; log: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(function)
    }

    /// Everything the emulator and the function wrote so far (the function's stdout and stderr
    /// included: its log lines and EMF documents).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The lines of [`output`](Self::output) that are JSON objects, parsed.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|line| {
                let start = line.find('{')?;
                serde_json::from_str::<serde_json::Value>(&line[start..]).ok()
            })
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Every EMF document the function wrote so far, each checked against the specification
    /// ([`emf::assert_valid_emf`]).
    ///
    /// # Panics
    /// When a document is invalid.
    pub fn emf_documents(&self) -> Vec<serde_json::Value> {
        emf::valid_documents(self.output().lines())
    }

    /// Invokes the function through the emulator's Invoke API, as `aws lambda invoke` would.
    ///
    /// # Panics
    /// When the emulator does not answer or answers with something that is not JSON, and as soon
    /// as the function process exits (the emulator would wait for it until the timeout), with
    /// the end of its output.
    pub fn invoke(&self, payload: &serde_json::Value) -> InvokeResult {
        self.invoke_text(&payload.to_string())
    }

    /// [`invoke`](Self::invoke) with the payload's text as it is: JSON a `Value` cannot hold
    /// (a field given twice, a number past `f64`).
    ///
    /// # Panics
    /// As [`invoke`](Self::invoke).
    pub fn invoke_text(&self, payload: &str) -> InvokeResult {
        // The call runs on a thread of its own, not a scoped one: a scope would wait for it
        // before the panic below left, and the emulator keeps an invocation of a process that
        // exited open for ten minutes.
        let (agent, url, payload) = (self.agent.clone(), self.invoke_url(), payload.to_owned());
        let call = std::thread::spawn(move || invoke_blocking(&agent, &url, &payload));
        while !call.is_finished() {
            let output = self.output();
            if let Some(exit) = output.find("command exited code=") {
                let start = output[..exit].len().saturating_sub(2000);
                panic!(
                    "the function process exited while invoked; its output:\n{}",
                    &output[output.floor_char_boundary(start)..]
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        call.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Invokes the function once per payload, all at once (a thread each), in waves of at most
    /// [`MAX_INVOKES_AT_ONCE`]; the results in the payloads' order.
    ///
    /// # Panics
    /// As [`invoke`](Self::invoke).
    pub fn invoke_all(&self, payloads: &[serde_json::Value]) -> Vec<InvokeResult> {
        payloads
            .chunks(MAX_INVOKES_AT_ONCE)
            .flat_map(|wave| {
                std::thread::scope(|scope| {
                    let calls: Vec<_> = wave
                        .iter()
                        .map(|payload| scope.spawn(move || self.invoke(payload)))
                        .collect();
                    calls
                        .into_iter()
                        .map(|call| {
                            call.join()
                                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    }

    fn invoke_url(&self) -> String {
        format!(
            "http://{}/2015-03-31/functions/{}/invocations",
            self.address, self.function
        )
    }
}

/// The most invocations [`EmulatedFunction::invoke_all`] has waiting at once. `cargo lambda
/// watch` 1.9.2 stops handing out events when about 115 or more invocations wait at once: the
/// first few dozen are answered, then the function's `/next` requests wait while the rest stay
/// queued, until the client's timeout (found by an attack sending 1,000; a bare
/// `lambda_runtime` function, without any of this workspace's crates, stalls the same way at
/// 200). 1,000 duplicates are sent in ten waves of 100.
pub const MAX_INVOKES_AT_ONCE: usize = 100;

/// One invocation through the emulator's Invoke API, waiting for its answer.
fn invoke_blocking(agent: &ureq::Agent, url: &str, payload: &str) -> InvokeResult {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(payload)
        .unwrap_or_else(|error| panic!("invoke {url}: {error}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .expect("a readable invoke response");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("invoke answered {status} with non-JSON {text:?}: {error}"));
    InvokeResult { status, body }
}

/// Arguments for [`EmulatedFunction::start_with_watch_args`] that start the function with
/// `name=value` in its environment even where `cargo lambda watch` sets the variable itself.
///
/// `cargo lambda watch` 1.9.2 sets `AWS_LAMBDA_MAX_CONCURRENCY=1` for the function it starts,
/// after the variables it was given (its `--concurrency` starts more processes instead). It starts
/// the function with `cargo run`, so a cargo runner (`env name=value`) sets the variable last. A
/// runner, unlike cargo's `[env]`, is not part of the build's fingerprint: nothing is rebuilt.
pub fn runner_env(name: &str, value: &str) -> Vec<String> {
    vec![
        "--config".to_owned(),
        format!("target.'cfg(all())'.runner=['env', '{name}={value}']"),
    ]
}

impl Drop for EmulatedFunction {
    fn drop(&mut self) {
        // SIGTERM lets cargo lambda stop the function process it started; SIGKILL would orphan it.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut stopped = false;
        while !stopped && std::time::Instant::now() < deadline {
            stopped = matches!(self.child.try_wait(), Ok(Some(_)));
            if !stopped {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Every EMF document the function wrote is checked, also in tests that never read them.
        if !std::thread::panicking() {
            emf::valid_documents(self.output().lines());
        }
    }
}

/// Counts the HTTP requests a DynamoDB client sends (every attempt, retries included).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RequestCounter {
    /// Requests sent so far.
    pub fn count(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests sent while `work` ran.
    pub async fn during<T>(&self, work: impl std::future::Future<Output = T>) -> (T, usize) {
        let before = self.count();
        let output = work.await;
        (output, self.count() - before)
    }
}

impl aws_sdk_dynamodb::config::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// A DynamoDB client for the test server that counts its requests, or `None` outside CI when
/// there is no server.
pub async fn counted_dynamodb_client() -> Option<(aws_sdk_dynamodb::Client, RequestCounter)> {
    required_service(DYNAMODB_ENDPOINT_VAR)?;
    let sdk_config = aws_config::load_from_env().await;
    let counter = RequestCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
        .interceptor(counter.clone())
        .build();
    Some((aws_sdk_dynamodb::Client::from_conf(config), counter))
}

/// Creates a table shaped as the idempotency docs say (string partition key `id`, TTL on
/// `expiration`) and returns its name.
///
/// # Panics
/// When the server refuses to create it.
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

/// Creates an orders table keyed on `order_id` and returns its unique name.
pub async fn create_orders_table(client: &aws_sdk_dynamodb::Client) -> String {
    create_table(client, "orders", "order_id").await
}

/// Creates an idempotency table with the Powertools key (`id`) and TTL on `expiration`, and
/// returns its unique name.
pub async fn create_idempotency_table(client: &aws_sdk_dynamodb::Client) -> String {
    let table = create_table(client, "idempotency", "id").await;
    client
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiration")
                .enabled(true)
                .build()
                .expect("complete TTL specification"),
        )
        .send()
        .await
        .expect("the test server enables TTL");
    table
}

async fn create_table(client: &aws_sdk_dynamodb::Client, prefix: &str, key: &str) -> String {
    let table = unique_table_name(prefix);
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("complete key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("the test server creates the table");
    table
}

/// The variable that holds the control URL of `scripts/fault-proxy.py`.
pub const FAULT_PROXY_VAR: &str = "POWERTOOLS_TEST_FAULT_PROXY";

/// One channel of the fault-injecting proxy that `scripts/with-test-services` runs in front of
/// moto: a loopback port of its own that forwards to moto until a rule says otherwise, so that a
/// test can refuse, reset, hang, delay or cut its DynamoDB connections without disturbing the
/// tests running beside it. The channel is closed when this value is dropped.
///
/// Rules are JSON, as `scripts/fault-proxy.py` documents them:
///
/// ```no_run
/// # async fn example() {
/// use serde_json::json;
///
/// let Some(proxy) = powertools_tests::FaultProxy::start().await else { return };
/// let client = proxy.client().await; // retries disabled, so one fault is one error
/// proxy.set(json!({"action": "cut", "target": "PutItem", "times": 1}));
/// // The next PutItem sent with `client` reaches moto, which applies it, but its answer is lost;
/// // every other request passes.
/// # drop(client);
/// # }
/// ```
///
/// The control calls are small blocking HTTP requests to a local process, so they are made
/// directly, also from async tests.
#[derive(Debug)]
pub struct FaultProxy {
    control: String,
    id: String,
    port: u16,
    agent: ureq::Agent,
}

impl FaultProxy {
    /// Opens a new channel (rule `pass`), or returns `None` outside CI when the proxy is not
    /// running.
    ///
    /// # Panics
    /// When `CI` is set and the proxy is missing, or when it does not open the channel.
    pub async fn start() -> Option<Self> {
        let control = required_service(FAULT_PROXY_VAR)?
            .trim_end_matches('/')
            .to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let channel = control_answer(
            "POST /channels",
            agent.post(&format!("{control}/channels")).send(""),
        );
        let (Some(id), Some(port)) = (
            channel["id"].as_str(),
            channel["port"]
                .as_u64()
                .and_then(|port| u16::try_from(port).ok()),
        ) else {
            panic!("the fault proxy answered {channel} to POST /channels");
        };
        Some(FaultProxy {
            id: id.to_owned(),
            port,
            control,
            agent,
        })
    }

    /// The channel's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The channel's endpoint URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the channel's rule, for example `json!({"action": "hang"})` or
    /// `json!({"action": "drop", "target": "UpdateItem", "times": 1})`.
    ///
    /// # Panics
    /// When the proxy rejects the rule.
    pub fn set(&self, rule: serde_json::Value) {
        let url = format!("{}/channels/{}/rule", self.control, self.id);
        control_answer(
            &format!("PUT {url} {rule}"),
            self.agent.put(&url).send(rule.to_string()),
        );
    }

    /// The proxy's counters for this channel: `{"requests": {"PutItem": 2, …}, "connections": N,
    /// "refused": N}`.
    ///
    /// # Panics
    /// When the proxy does not answer.
    pub fn stats(&self) -> serde_json::Value {
        let url = format!("{}/channels/{}/stats", self.control, self.id);
        control_answer(&format!("GET {url}"), self.agent.get(&url).call())
    }

    /// How many requests for `operation` (`"PutItem"`, …) reached the channel, whatever its rule
    /// then did with them. Connections refused by an untargeted `refuse` carry no request.
    pub fn requests(&self, operation: &str) -> usize {
        self.stats()["requests"][operation]
            .as_u64()
            .map_or(0, |count| usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// A DynamoDB client configured from the environment like [`dynamodb_client`], but sending to
    /// this channel, with the SDK's retries disabled so that one fault is one error.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        self.client_retrying(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .await
    }

    /// [`client`](Self::client) with the SDK's retries as `retry` says (a function's client has
    /// the standard ones: three attempts, with backoff).
    pub async fn client_retrying(
        &self,
        retry: aws_sdk_dynamodb::config::retry::RetryConfig,
    ) -> aws_sdk_dynamodb::Client {
        let sdk_config = aws_config::load_from_env().await;
        let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
            .endpoint_url(self.endpoint())
            .retry_config(retry)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(&format!("{}/channels/{}", self.control, self.id))
            .call();
    }
}

/// The JSON answer (`null` for none) of a control API call.
fn control_answer(
    what: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> serde_json::Value {
    let mut response = result.unwrap_or_else(|error| panic!("fault proxy {what}: {error}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert!(
        (200..300).contains(&status),
        "fault proxy {what} answered {status}: {text}"
    );
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("fault proxy {what}: {error} in {text:?}"))
    }
}

#[cfg(test)]
mod build_settings {
    /// `.cargo/config.toml` gives every compilation of the workspace (build scripts included, so
    /// `aws-lc-sys`'s) `AWS_LC_SYS_NO_JITTER_ENTROPY=1`: deployed examples seed AWS-LC from the
    /// kernel instead of spending about 32 ms of their first HTTPS request on CPU jitter.
    #[test]
    fn the_workspace_builds_aws_lc_without_jitter_entropy() {
        assert_eq!(option_env!("AWS_LC_SYS_NO_JITTER_ENTROPY"), Some("1"));
    }

    /// Where a `let` chain (`if let … && …`, Rust 1.88) starts in `source`, if anywhere: an
    /// `&&` outside brackets in the condition of an `if let` or `while let`, up to its block,
    /// and any `&& let`.
    fn let_chain_in(source: &str) -> Option<usize> {
        if let Some(at) = source.find("&& let ") {
            return Some(at);
        }
        ["if let ", "while let "].iter().find_map(|keyword| {
            source.match_indices(keyword).find_map(|(start, _)| {
                let condition = &source[start..];
                let mut depth = 0_i32;
                for (offset, character) in condition.char_indices() {
                    match character {
                        '(' | '[' => depth += 1,
                        ')' | ']' => depth -= 1,
                        '{' if depth == 0 => return None,
                        '&' if depth == 0 && condition[offset..].starts_with("&& ") => {
                            return Some(start);
                        }
                        _ => {}
                    }
                }
                None
            })
        })
    }

    /// The crates that declare Rust 1.85 (`rust-version`) use no `let` chains, which need 1.88:
    /// clippy's `incompatible_msrv` checks the standard library's APIs, not syntax, and four
    /// had come in unseen (found by a review).
    #[test]
    fn the_crates_declaring_rust_1_85_use_no_let_chains() {
        fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("a source folder") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    sources(&path, found);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    found.push(path);
                }
            }
        }
        assert_eq!(let_chain_in("if let Some(a) = b\n && c {"), Some(0));
        assert_eq!(let_chain_in("if let Some(a) = f(b && c) {"), None);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut checked = 0;
        for krate in ["powertools-core", "powertools-metrics"] {
            let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml"))
                .expect("the crate's manifest");
            assert!(
                manifest.contains("rust-version = \"1.85\""),
                "{krate} no longer declares 1.85: update this test"
            );
            let mut files = Vec::new();
            sources(&root.join(krate).join("src"), &mut files);
            for file in files {
                let source = std::fs::read_to_string(&file).expect("a source file");
                if let Some(at) = let_chain_in(&source) {
                    let line = source[..at].matches('\n').count() + 1;
                    panic!("a let chain in {}:{line}", file.display());
                }
                checked += 1;
            }
        }
        assert!(checked > 10, "{checked} files");
    }
}

/// An `Idempotency` on a new table, through a fault proxy that refuses every `UpdateItem` (the
/// release of a failed handler's claim) with `AccessDeniedException`: a handler error is then
/// followed by a failed release. `None` without the test servers (outside CI); the proxy lives
/// as long as the returned one.
pub async fn idempotency_whose_release_is_refused() -> Option<(
    FaultProxy,
    powertools_idempotency::Idempotency<powertools_idempotency::DynamoDbStore>,
)> {
    let client = dynamodb_client().await?;
    let table = create_idempotency_table(&client).await;
    let proxy = FaultProxy::start().await?;
    let store = powertools_idempotency::DynamoDbStore::new(proxy.client().await, &table)
        .expect("a valid store");
    let idempotency = powertools_idempotency::Idempotency::builder(store)
        .build()
        .expect("valid settings");
    proxy.set(serde_json::json!({
        "action": "error", "status": 400, "code": "AccessDeniedException", "target": "UpdateItem"
    }));
    Some((proxy, idempotency))
}

/// A handler's own typed error, with the `Diagnostic` a function gives it
/// (`errorType` `PaymentDeclined`).
#[derive(Debug)]
pub enum PaymentError {
    /// The card was declined, with the bank's code.
    Declined {
        /// The bank's code.
        code: u16,
    },
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentError::Declined { code } => write!(f, "the card was declined ({code})"),
        }
    }
}

impl std::error::Error for PaymentError {}

impl From<PaymentError> for lambda_runtime::Diagnostic {
    fn from(error: PaymentError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "PaymentDeclined".to_owned(),
            error_message: error.to_string(),
        }
    }
}
