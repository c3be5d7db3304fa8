//! Realistic Lambda contexts and events for unit tests of layered handlers.
//!
//! `lambda_runtime::Context` is `#[non_exhaustive]` and its default has an empty request id, no
//! deadline and no trace id, which is not what a handler sees in Lambda. [`TestContext`] builds
//! one that is: a fresh request id, a deadline in the future, an X-Ray trace header, the function's
//! name, ARN, version and memory.
//!
//! ```
//! use std::time::Duration;
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{Service, ServiceExt}};
//! use powertools_core::testing::TestContext;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! let mut handler = service_fn(|event: LambdaEvent<serde_json::Value>| async move {
//!     Ok::<_, lambda_runtime::Error>(event.context.request_id)
//! });
//! let event = TestContext::new()
//!     .with_request_id("c6af9ac6-7b61-11e6-9a41-93e812345678")
//!     .with_remaining_time(Duration::from_secs(5))
//!     .event(serde_json::json!({"order_id": "o-1"}));
//! let response = handler.ready().await?.call(event).await?;
//! assert_eq!(response, "c6af9ac6-7b61-11e6-9a41-93e812345678");
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Config, Context, LambdaEvent};

const DEFAULT_FUNCTION_NAME: &str = "test-function";
const DEFAULT_REGION_AND_ACCOUNT: &str = "us-east-1:123456789012";

/// Builder of a realistic [`Context`] (and [`LambdaEvent`]) for tests.
#[derive(Debug, Clone)]
pub struct TestContext {
    request_id: Option<String>,
    function_name: Option<String>,
    function_arn: Option<String>,
    function_version: String,
    memory_size_mb: i32,
    deadline: Deadline,
    trace_id: TraceId,
    tenant_id: Option<String>,
    cold_start: Option<bool>,
}

#[derive(Debug, Clone)]
enum Deadline {
    In(Duration),
    AtEpochMs(u64),
}

#[derive(Debug, Clone)]
enum TraceId {
    Generated,
    Given(String),
    Absent,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// A context with a fresh request id, 30 seconds left, a sampled X-Ray trace header and the
    /// function `test-function` (`$LATEST`, 128 MB) in `us-east-1`.
    pub fn new() -> Self {
        TestContext {
            request_id: None,
            function_name: None,
            function_arn: None,
            function_version: "$LATEST".to_owned(),
            memory_size_mb: 128,
            deadline: Deadline::In(Duration::from_secs(30)),
            trace_id: TraceId::Generated,
            tenant_id: None,
            cold_start: None,
        }
    }

    /// Sets the request id (default: a fresh UUID).
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the function name (default: taken from the ARN, else `test-function`).
    #[must_use]
    pub fn with_function_name(mut self, function_name: impl Into<String>) -> Self {
        self.function_name = Some(function_name.into());
        self
    }

    /// Sets the invoked function ARN (default: built from the function name).
    #[must_use]
    pub fn with_function_arn(mut self, function_arn: impl Into<String>) -> Self {
        self.function_arn = Some(function_arn.into());
        self
    }

    /// Sets the function version (default `$LATEST`).
    #[must_use]
    pub fn with_function_version(mut self, version: impl Into<String>) -> Self {
        self.function_version = version.into();
        self
    }

    /// Sets the configured memory in MB (default 128).
    #[must_use]
    pub fn with_memory_size_mb(mut self, megabytes: i32) -> Self {
        self.memory_size_mb = megabytes;
        self
    }

    /// Sets the time left from when the context is built (default 30 seconds).
    #[must_use]
    pub fn with_remaining_time(mut self, remaining: Duration) -> Self {
        self.deadline = Deadline::In(remaining);
        self
    }

    /// Sets the deadline in milliseconds since the Unix epoch.
    #[must_use]
    pub fn with_deadline_ms(mut self, deadline_ms: u64) -> Self {
        self.deadline = Deadline::AtEpochMs(deadline_ms);
        self
    }

    /// Sets the X-Ray trace header (default: a fresh sampled one).
    #[must_use]
    pub fn with_trace_id(mut self, header: impl Into<String>) -> Self {
        self.trace_id = TraceId::Given(header.into());
        self
    }

    /// Builds the context without an X-Ray trace header, as when tracing is off.
    #[must_use]
    pub fn without_trace_id(mut self) -> Self {
        self.trace_id = TraceId::Absent;
        self
    }

    /// Sets the tenant id of a tenant-isolated function (default: none).
    #[must_use]
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Makes every powertools-rs layer report this invocation as the process's cold start
    /// (`true`) or as a warm invocation (`false`), whatever other tests of the same process
    /// invoked before it (default: the process decides, and the first invocation to ask wins).
    ///
    /// The answer is keyed by the built context's request id and deadline, so tests running in
    /// parallel in one process each get their own; a declared invocation does not take the
    /// process's cold start from an undeclared one.
    ///
    /// ```
    /// use powertools_core::{is_cold_start, testing::TestContext};
    ///
    /// let first = TestContext::new().with_cold_start(true).build();
    /// let second = TestContext::new().with_cold_start(false).build();
    /// assert!(is_cold_start(&first));
    /// assert!(!is_cold_start(&second));
    /// ```
    #[must_use]
    pub fn with_cold_start(mut self, cold: bool) -> Self {
        self.cold_start = Some(cold);
        self
    }

    /// Builds the context.
    ///
    /// Each build is its own invocation: the deadline of
    /// [`with_remaining_time`](Self::with_remaining_time) (and the default 30 seconds) counts
    /// from the build, and a fresh request id is drawn unless one was set. Two builds of one
    /// `TestContext` can therefore differ by a millisecond, and the layers key the cold start by
    /// request id and deadline: where one invocation must be seen twice, build once and clone the
    /// [`Context`].
    pub fn build(self) -> Context {
        let function_name = self
            .function_name
            .or_else(|| {
                self.function_arn
                    .as_deref()
                    .and_then(|arn| crate::invocation::arn_part(arn, 6))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| DEFAULT_FUNCTION_NAME.to_owned());
        let function_arn = self.function_arn.unwrap_or_else(|| {
            format!("arn:aws:lambda:{DEFAULT_REGION_AND_ACCOUNT}:function:{function_name}")
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let deadline = match self.deadline {
            Deadline::In(remaining) => {
                // `Duration::MAX` ("no deadline") is the latest one, not an overflow.
                now.checked_add(remaining)
                    .and_then(|deadline| u64::try_from(deadline.as_millis()).ok())
                    .unwrap_or(u64::MAX)
            }
            Deadline::AtEpochMs(deadline_ms) => deadline_ms,
        };
        let xray_trace_id = match self.trace_id {
            TraceId::Generated => Some(generated_trace_header(now)),
            TraceId::Given(header) => Some(header),
            TraceId::Absent => None,
        };

        let mut context = Context::default();
        context.request_id = self.request_id.unwrap_or_else(|| random_uuid().to_string());
        context.deadline = deadline;
        context.invoked_function_arn = function_arn;
        context.xray_trace_id = xray_trace_id;
        context.tenant_id = self.tenant_id;
        context.env_config = Arc::new(Config {
            function_name: function_name.clone(),
            memory: self.memory_size_mb,
            version: self.function_version,
            log_stream: "2026/11/27/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
            log_group: format!("/aws/lambda/{function_name}"),
        });
        if let Some(cold) = self.cold_start {
            crate::cold_start::declare(&context, cold);
        }
        context
    }

    /// Builds a [`LambdaEvent`] carrying `payload` and this context.
    pub fn event<T>(self, payload: T) -> LambdaEvent<T> {
        LambdaEvent::new(payload, self.build())
    }
}

/// 128 bits that differ on every call and between processes: SipHash, under keys std seeds from
/// the operating system's random source, of a process-wide call counter. Not for secrets; test
/// ids only. (Not `uuid`'s `v4` feature: it would turn on `rng` in the `uuid` that the AWS SDK
/// links too, so a function that enables `testing` in its dependencies, as the orders example
/// does for its demo, would compile the SDK once more than the other examples.)
fn random_bits() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let keys = RandomState::new();
    (u128::from(keys.hash_one((call, 0_u8))) << 64) | u128::from(keys.hash_one((call, 1_u8)))
}

/// A random (version 4) UUID, for request ids.
fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bits().to_be_bytes()).into_uuid()
}

/// An X-Ray header in the format Lambda sends: `Root=1-{epoch seconds, hex}-{96 random bits};
/// Parent={64 random bits};Sampled=1`.
fn generated_trace_header(now: Duration) -> String {
    format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=1",
        now.as_secs(),
        random_bits() >> 32,
        // An all-zero span id is invalid.
        (random_bits() as u64).max(1),
    )
}

/// Runs the test `name` of the running test binary again, alone, in a child process whose
/// environment `configure` adds to (`.env(…)`, `.env_remove(…)`), with `child` set to `1` so
/// that the test can tell it is the child (`std::env::var_os(child).is_some()`), and checks that
/// it passed. For a test that needs environment variables: setting them in the test's own
/// process is `unsafe` (`std::env::set_var`) and races its other tests. Returns the child's
/// output, for more checks (its stderr).
///
/// ```no_run
/// use powertools_core::testing::rerun_in_child;
///
/// const CHILD: &str = "MY_TEST_CHILD";
///
/// #[test]
/// fn reads_the_region() {
///     if std::env::var_os(CHILD).is_none() {
///         rerun_in_child("reads_the_region", CHILD, |command| command.env("AWS_REGION", "eu-west-1"));
///         return;
///     }
///     assert_eq!(std::env::var("AWS_REGION").as_deref(), Ok("eu-west-1"));
/// }
/// ```
///
/// # Panics
/// When the test binary cannot be run again, or the child did not pass (with its output).
pub fn rerun_in_child(
    name: &str,
    child: &str,
    configure: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
) -> std::process::Output {
    let binary =
        std::env::current_exe().unwrap_or_else(|error| panic!("the test binary's path: {error}"));
    let mut command = std::process::Command::new(binary);
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(child, "1");
    let output = configure(&mut command)
        .output()
        .unwrap_or_else(|error| panic!("the child process of {name} did not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child process of {name} failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_context_has_its_own_request_and_trace_ids() {
        let first = TestContext::new().build();
        let second = TestContext::new().build();
        assert_ne!(first.request_id, second.request_id);
        assert_ne!(first.xray_trace_id, second.xray_trace_id);
    }

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| TestContext::new().build().request_id)
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
        }
        // From another thread (other keys), still distinct.
        let elsewhere = std::thread::spawn(|| TestContext::new().build().request_id)
            .join()
            .unwrap();
        assert!(!ids.contains(&elsewhere));
    }

    #[test]
    fn the_generated_trace_header_has_the_xray_shape() {
        let header = TestContext::new().build().xray_trace_id.unwrap();
        let parts: Vec<&str> = header.split(';').collect();
        assert_eq!(parts.len(), 3);
        let root = parts[0].strip_prefix("Root=1-").unwrap();
        let (epoch, random) = root.split_once('-').unwrap();
        assert_eq!((epoch.len(), random.len()), (8, 24));
        assert!(root.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        assert_eq!(parts[1].strip_prefix("Parent=").unwrap().len(), 16);
        assert_eq!(parts[2], "Sampled=1");
    }

    #[test]
    fn a_remaining_time_past_what_the_clock_holds_is_the_latest_deadline_not_a_panic() {
        let context = TestContext::new()
            .with_remaining_time(Duration::MAX)
            .build();
        assert_eq!(context.deadline, u64::MAX);
    }

    #[test]
    fn the_deadline_is_the_remaining_time_from_now() {
        let before = SystemTime::now();
        let context = TestContext::new()
            .with_remaining_time(Duration::from_secs(10))
            .build();
        let remaining = context.deadline().duration_since(before).unwrap();
        // The deadline is whole milliseconds, so up to one is lost to truncation.
        assert!(remaining >= Duration::from_millis(9_999) && remaining < Duration::from_secs(11));
        assert_eq!(TestContext::new().with_deadline_ms(42).build().deadline, 42);
    }

    #[test]
    fn the_arn_follows_the_function_name_and_the_name_follows_the_arn() {
        let named = TestContext::new().with_function_name("orders").build();
        assert_eq!(
            named.invoked_function_arn,
            "arn:aws:lambda:us-east-1:123456789012:function:orders"
        );
        let from_arn = TestContext::new()
            .with_function_arn("arn:aws:lambda:eu-west-1:1:function:payments:live")
            .build();
        assert_eq!(from_arn.env_config.function_name, "payments");
    }

    #[test]
    fn an_event_carries_the_payload_and_the_context() {
        let event = TestContext::new()
            .with_request_id("r")
            .with_tenant_id("t")
            .event(7);
        assert_eq!(event.payload, 7);
        assert_eq!(event.context.request_id, "r");
        assert_eq!(event.context.tenant_id.as_deref(), Some("t"));
    }
}
