use std::time::{Duration, SystemTime};

use lambda_runtime::Context;

use crate::cold_start::is_cold_start;

/// How long an invocation can last: Lambda's longest timeout, 15 minutes, and 90 for the
/// asynchronous and event-source-mapping invocations of Lambda Managed Instances (5,400 s), with
/// a minute for the clocks of Lambda and of the instance to differ.
const LONGEST_INVOCATION: Duration = Duration::from_secs(90 * 60 + 60);
/// How long ago a deadline may have passed and still be the invocation's own (a slow handler).
const PASSED_DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The time left at `now` before `deadline_ms` (milliseconds since the Unix epoch, as Lambda
/// sends it), when Lambda could have sent that deadline; `None` when it is missing (0), passed
/// more than a second ago, or further ahead than any invocation lasts (90 minutes, under Lambda
/// Managed Instances), as
/// `Context::default()` and emulators that send a relative deadline give. A deadline passed
/// within the second counts as no time left.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use powertools_core::trusted_time_left;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let in_three_seconds = 1_800_000_003_000;
/// assert_eq!(trusted_time_left(in_three_seconds, now), Some(Duration::from_secs(3)));
/// assert_eq!(trusted_time_left(0, now), None);
/// assert_eq!(trusted_time_left(3_000, now), None, "a relative deadline");
/// // Lambda Managed Instances run asynchronous invocations for up to 90 minutes
/// let in_an_hour = 1_800_003_600_000;
/// assert_eq!(trusted_time_left(in_an_hour, now), Some(Duration::from_secs(3_600)));
/// assert_eq!(trusted_time_left(1_800_086_400_000, now), None, "a day ahead");
/// ```
pub fn trusted_time_left(deadline_ms: u64, now: SystemTime) -> Option<Duration> {
    if deadline_ms == 0 {
        return None;
    }
    let deadline = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(deadline_ms))?;
    match deadline.duration_since(now) {
        Ok(left) => (left <= LONGEST_INVOCATION).then_some(left),
        Err(passed) => (passed.duration() <= PASSED_DEADLINE_GRACE).then_some(Duration::ZERO),
    }
}

/// A read-only view of one invocation's Lambda [`Context`], with the values every utility needs.
///
/// Everything comes from the invocation's own `Context`, never from process-wide variables such
/// as `_X_AMZN_TRACE_ID`, which `lambda_runtime` does not set when it runs invocations
/// concurrently.
///
/// ```
/// use std::time::Duration;
/// use powertools_core::{Invocation, testing::TestContext};
///
/// let context = TestContext::new()
///     .with_function_arn("arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live")
///     .with_trace_id("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
///     .with_remaining_time(Duration::from_secs(3))
///     .build();
/// let invocation = Invocation::new(&context);
/// assert_eq!(invocation.function_name(), "orders-api");
/// assert_eq!(invocation.region(), Some("eu-west-1"));
/// assert_eq!(invocation.account_id(), Some("123456789012"));
/// assert_eq!(invocation.xray_root_trace_id(), Some("1-5759e988-bd862e3fe1be46a994272793"));
/// assert!(invocation.remaining_time() <= Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    context: &'a Context,
}

impl<'a> Invocation<'a> {
    /// A view of `context`.
    pub fn new(context: &'a Context) -> Self {
        Invocation { context }
    }

    /// The underlying Lambda context.
    pub fn context(&self) -> &'a Context {
        self.context
    }

    /// The AWS request id of this invocation.
    pub fn request_id(&self) -> &'a str {
        &self.context.request_id
    }

    /// The ARN the function was invoked with (it may carry a version or alias qualifier).
    pub fn function_arn(&self) -> &'a str {
        &self.context.invoked_function_arn
    }

    /// The function name: from the runtime's configuration, else from the invoked ARN.
    pub fn function_name(&self) -> &'a str {
        let configured = self.context.env_config.function_name.as_str();
        if configured.is_empty() {
            self.arn_part(6).unwrap_or_default()
        } else {
            configured
        }
    }

    /// The function version the runtime reports (`$LATEST` or a number); empty when unknown.
    pub fn function_version(&self) -> &'a str {
        &self.context.env_config.version
    }

    /// The memory configured for the function, in MB, when the runtime knows it.
    pub fn memory_size_mb(&self) -> Option<u32> {
        u32::try_from(self.context.env_config.memory)
            .ok()
            .filter(|mb| *mb > 0)
    }

    /// The Region, from the invoked ARN.
    pub fn region(&self) -> Option<&'a str> {
        self.arn_part(3)
    }

    /// The AWS account id, from the invoked ARN.
    pub fn account_id(&self) -> Option<&'a str> {
        self.arn_part(4)
    }

    fn arn_part(&self, index: usize) -> Option<&'a str> {
        arn_part(self.function_arn(), index)
    }

    /// When Lambda stops this invocation.
    pub fn deadline(&self) -> SystemTime {
        self.context.deadline()
    }

    /// The deadline in milliseconds since the Unix epoch, as Lambda sends it.
    pub fn deadline_ms(&self) -> u64 {
        self.context.deadline
    }

    /// Time left before the deadline, zero once it has passed.
    pub fn remaining_time(&self) -> Duration {
        self.remaining_time_at(SystemTime::now())
    }

    /// Time left before the deadline as seen at `now`, zero once it has passed.
    pub fn remaining_time_at(&self, now: SystemTime) -> Duration {
        self.deadline()
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// [`remaining_time`](Self::remaining_time), when the deadline is one Lambda could have
    /// sent: see [`trusted_time_left`].
    pub fn trusted_remaining_time(&self) -> Option<Duration> {
        trusted_time_left(self.deadline_ms(), SystemTime::now())
    }

    /// The full X-Ray trace header (`Root=…;Parent=…;Sampled=…`), when Lambda sent one.
    pub fn xray_trace_header(&self) -> Option<&'a str> {
        self.context
            .xray_trace_id
            .as_deref()
            .filter(|header| !header.is_empty())
    }

    /// The X-Ray trace id (the header's `Root` value), as Powertools logs it: the trace the
    /// invocation joins. The header is read as the X-Ray SDKs and OpenTelemetry's X-Ray
    /// propagator read it (fields split on `;`, keys as they are, the last `Root` wins, a `Root`
    /// that does not read as a trace id refuses the whole header, which then starts a trace of
    /// its own), and the id is given only in the form Lambda sends (`1-` then 8 and 24
    /// lower-case hex digits, not all zero). On any other header it is `None`, rather than the
    /// id of a trace that holds none of the invocation's spans (found by an attack: a repeated
    /// `Root`, or spaces around the fields, made the two disagree). On Lambda's headers it is
    /// the `Root` value, as Powertools for Python logs it.
    pub fn xray_root_trace_id(&self) -> Option<&'a str> {
        xray_joined_root(self.xray_trace_header()?)
    }

    /// Whether X-Ray sampled this invocation (`Sampled=1`), when the header says.
    pub fn xray_sampled(&self) -> Option<bool> {
        let header = self.xray_trace_header()?;
        header
            .split(';')
            .find_map(|part| part.trim().strip_prefix("Sampled="))
            .and_then(|flag| match flag {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            })
    }

    /// The tenant id of a tenant-isolated function, when present.
    pub fn tenant_id(&self) -> Option<&'a str> {
        self.context
            .tenant_id
            .as_deref()
            .filter(|id| !id.is_empty())
    }

    /// Whether this invocation is the process's cold start (see [`is_cold_start`]).
    pub fn cold_start(&self) -> bool {
        is_cold_start(self.context)
    }
}

/// Part `index` of a Lambda function ARN (`arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]`).
pub(crate) fn arn_part(arn: &str, index: usize) -> Option<&str> {
    if !arn.starts_with("arn:") {
        return None;
    }
    arn.split(':').nth(index).filter(|part| !part.is_empty())
}

/// The `Root` an X-Ray trace header joins, in Lambda's form: see
/// [`Invocation::xray_root_trace_id`].
fn xray_joined_root(header: &str) -> Option<&str> {
    // Lambda's own form, `Root=…;Parent=…;Sampled=…` at fixed offsets, with no `;` in the
    // parent to hide another field: its one `Root`, without a scan. This runs on every
    // invocation.
    let bytes = header.as_bytes();
    if bytes.len() == 74
        && bytes.starts_with(b"Root=")
        && &bytes[40..48] == b";Parent="
        && !bytes[48..64].contains(&b';')
        && &bytes[64..73] == b";Sampled="
    {
        return header.get(5..40).filter(|root| in_lambda_form(root));
    }
    let mut joined = None;
    for pair in header.trim().split_terminator(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        if key == "Root" {
            let value = value.trim_start_matches('=');
            if !reads_as_trace_id(value) {
                return None;
            }
            joined = Some(value);
        }
    }
    joined.filter(|root| in_lambda_form(root))
}

/// `1-{8 hex}-{24 hex}`, lower case, not all zero: an X-Ray trace id as Lambda sends it.
fn in_lambda_form(root: &str) -> bool {
    let bytes = root.as_bytes();
    bytes.len() == 35
        && bytes.starts_with(b"1-")
        && bytes[10] == b'-'
        && lower_hex(&bytes[2..10])
        && lower_hex(&bytes[11..])
        && (bytes[2..10] != [b'0'; 8] || bytes[11..] != [b'0'; 24])
}

/// Whether every byte is a lower-case hexadecimal digit: a table, as this runs on every
/// invocation (a comparison per byte cost three times as much).
fn lower_hex(bytes: &[u8]) -> bool {
    const LOWER_HEX: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = matches!(byte as u8, b'0'..=b'9' | b'a'..=b'f');
            byte += 1;
        }
        table
    };
    bytes
        .iter()
        .fold(true, |all, byte| all & LOWER_HEX[usize::from(*byte)])
}

/// Whether a `Root` value reads as a trace id, as [`xray_trace_id`] reads it.
fn reads_as_trace_id(root: &str) -> bool {
    xray_trace_id(root).is_some()
}

/// An X-Ray trace id (a trace header's `Root`, `1-5759e988-bd862e3fe1be46a994272793`) as a
/// 128-bit OpenTelemetry trace id, read as OpenTelemetry's X-Ray propagator reads it: three
/// `-`-separated parts, the last two one hexadecimal number, not zero. powertools-tracing's span
/// and [`Invocation::xray_root_trace_id`] (the log lines' `xray_trace_id`) both read it here, so
/// that they never disagree.
///
/// ```
/// use powertools_core::xray_trace_id;
///
/// assert_eq!(
///     xray_trace_id("1-5759e988-bd862e3fe1be46a994272793"),
///     Some(0x5759e988_bd862e3fe1be46a994272793)
/// );
/// assert_eq!(xray_trace_id("1-00000000-000000000000000000000000"), None);
/// assert_eq!(xray_trace_id("garbage"), None);
/// ```
pub fn xray_trace_id(root: &str) -> Option<u128> {
    let mut parts = root.split_terminator('-');
    let (Some(_version), Some(epoch), Some(unique), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // Read from a stack buffer: this runs on every invocation.
    let mut buffer = [0_u8; 64];
    let length = epoch.len() + unique.len();
    let id = if length <= buffer.len() {
        buffer[..epoch.len()].copy_from_slice(epoch.as_bytes());
        buffer[epoch.len()..length].copy_from_slice(unique.as_bytes());
        u128::from_str_radix(std::str::from_utf8(&buffer[..length]).ok()?, 16)
    } else {
        u128::from_str_radix(&format!("{epoch}{unique}"), 16)
    };
    id.ok().filter(|id| *id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestContext;

    #[test]
    fn a_context_with_trace_and_tenant_ids_exposes_both() {
        let context = TestContext::new()
            .with_request_id("req-1")
            .with_function_arn("arn:aws:lambda:us-east-1:111122223333:function:bakery")
            .with_trace_id(
                "Root=1-65f1c2a0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1",
            )
            .with_tenant_id("shop-42")
            .with_function_version("12")
            .with_memory_size_mb(256)
            .build();
        let invocation = Invocation::new(&context);
        assert_eq!(invocation.request_id(), "req-1");
        assert_eq!(
            invocation.function_arn(),
            "arn:aws:lambda:us-east-1:111122223333:function:bakery"
        );
        assert_eq!(invocation.function_name(), "bakery");
        assert_eq!(invocation.function_version(), "12");
        assert_eq!(invocation.memory_size_mb(), Some(256));
        assert_eq!(invocation.region(), Some("us-east-1"));
        assert_eq!(invocation.account_id(), Some("111122223333"));
        assert_eq!(
            invocation.xray_trace_header(),
            Some("Root=1-65f1c2a0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1")
        );
        assert_eq!(
            invocation.xray_root_trace_id(),
            Some("1-65f1c2a0-0123456789abcdef01234567")
        );
        assert_eq!(invocation.xray_sampled(), Some(true));
        assert_eq!(invocation.tenant_id(), Some("shop-42"));
    }

    #[test]
    fn the_root_is_the_one_the_header_joins_in_lambda_s_form() {
        let a = "1-5759e988-bd862e3fe1be46a994272793";
        let b = "1-6759e988-cd862e3fe1be46a994272794";
        let cases = [
            (
                format!("Root={a};Parent=53995c3f42cd8ad8;Sampled=1"),
                Some(a),
            ),
            (format!("Root={a}"), Some(a)),
            (format!("  Root={a};Sampled=1  "), Some(a)),
            (
                format!("Parent=53995c3f42cd8ad8;Root={a};Sampled=1"),
                Some(a),
            ),
            (format!("Root={a};Root={b};Sampled=1"), Some(b)),
            (format!("Root={b};Sampled=1;Root=1-x"), None),
            (format!("Root={a};Foo=xRoot=1;Sampled=1"), Some(a)),
            (format!("Parent=53995c3f42cd8ad8; Root={a}"), None),
            // The propagator reads past the `=`s: the trace is joined, and named
            (format!("Root=={a}"), Some(a)),
            (format!("Root={a}x;Sampled=1"), None),
            ("Root=1-5759e988-bd86;Sampled=1".to_owned(), None),
            ("Root=7-5759e988-bd862e3fe1be46a994272793".to_owned(), None),
            ("Root=1-5759E988-BD862E3FE1BE46A994272793".to_owned(), None),
            ("Root=1-00000000-000000000000000000000000".to_owned(), None),
            (format!("root={a}"), None),
            (
                "Root=1-5759e988-bd862e3fe1be46a99427279é;Sampled=1".to_owned(),
                None,
            ),
            ("Root=".to_owned(), None),
            // Lambda's length and separators, another `Root` hidden in the parent
            (format!("Root={a};Parent=;Root=1-5759e988;Sampled=1"), None),
            (
                format!("Root={a};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1"),
                Some(a),
            ),
            ("garbage".to_owned(), None),
        ];
        for (header, expected) in cases {
            let context = TestContext::new().with_trace_id(header.clone()).build();
            assert_eq!(
                Invocation::new(&context).xray_root_trace_id(),
                expected,
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_context_without_trace_or_tenant_id_says_so() {
        let context = TestContext::new().without_trace_id().build();
        let invocation = Invocation::new(&context);
        assert_eq!(invocation.xray_trace_header(), None);
        assert_eq!(invocation.xray_root_trace_id(), None);
        assert_eq!(invocation.xray_sampled(), None);
        assert_eq!(invocation.tenant_id(), None);
    }

    #[test]
    fn the_default_test_context_has_a_trace_id_and_a_request_id() {
        let context = TestContext::new().build();
        let invocation = Invocation::new(&context);
        assert!(invocation.xray_root_trace_id().unwrap().starts_with("1-"));
        assert_eq!(invocation.request_id().len(), 36);
        assert_eq!(invocation.function_name(), "test-function");
    }

    #[test]
    fn remaining_time_counts_down_to_the_deadline_and_stops_at_zero() {
        let context = TestContext::new().build();
        let invocation = Invocation::new(&context);
        let deadline = invocation.deadline();
        assert_eq!(
            invocation.remaining_time_at(deadline - Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
        assert_eq!(invocation.remaining_time_at(deadline), Duration::ZERO);
        assert_eq!(
            invocation.remaining_time_at(deadline + Duration::from_secs(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn without_runtime_configuration_the_name_comes_from_the_arn() {
        let mut context = lambda_runtime::Context::default();
        context.invoked_function_arn =
            "arn:aws:lambda:eu-west-1:123456789012:function:orders:prod".into();
        let invocation = Invocation::new(&context);
        assert_eq!(invocation.function_name(), "orders");
        assert_eq!(invocation.memory_size_mb(), None);
        assert_eq!(invocation.function_version(), "");
    }

    #[test]
    fn a_malformed_arn_yields_no_parts() {
        let mut context = lambda_runtime::Context::default();
        context.invoked_function_arn = "not-an-arn".into();
        let invocation = Invocation::new(&context);
        assert_eq!(invocation.function_name(), "");
        assert_eq!(invocation.region(), None);
        assert_eq!(invocation.account_id(), None);
    }
}
