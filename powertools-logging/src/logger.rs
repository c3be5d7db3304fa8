//! The logger's settings, shared by the `tracing` layer that writes lines and the tower layer
//! that scopes invocations.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use powertools_core::PowertoolsConfig;
use powertools_core::env::Env;
use serde::Serialize;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::json::{
    self, DEFAULT_REDACTED_KEYS, FAILURE_KEYS, Line, RESERVED_KEYS, Redactor, write_timestamp,
};
use crate::level::{self, Level};
use crate::subscriber::JsonLayer;
use crate::truncate::{DEFAULT_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES};
use crate::{Error, key_value};

/// `DEBUG`, `INFO`, … (`AWS_LAMBDA_LOG_LEVEL`, set by Lambda's Advanced Logging Controls, wins).
pub const POWERTOOLS_LOG_LEVEL: &str = "POWERTOOLS_LOG_LEVEL";
/// The level when [`POWERTOOLS_LOG_LEVEL`] is unset: the legacy name Powertools for Python still
/// reads, so that a function ported from Python keeps its level.
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// The level Lambda's Advanced Logging Controls filter at; it wins over every other setting.
pub const AWS_LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
/// The share of invocations, 0.0 to 1.0, that log at `DEBUG` whatever the level.
pub const POWERTOOLS_LOGGER_SAMPLE_RATE: &str = "POWERTOOLS_LOGGER_SAMPLE_RATE";
/// `true` logs each incoming event (redacted) at `INFO`, as Lambda sent it (see
/// [`RawEventLayer`](crate::RawEventLayer)).
pub const POWERTOOLS_LOGGER_LOG_EVENT: &str = "POWERTOOLS_LOGGER_LOG_EVENT";

/// The default byte budget of the per-invocation log buffer, as in Powertools.
pub const DEFAULT_BUFFER_MAX_BYTES: usize = 20_480;

/// Buffering of verbose lines: held per invocation, written only if something goes wrong.
///
/// Lines at `level` and more verbose down to `DEBUG` (default `DEBUG`: `DEBUG` lines only) are
/// kept in a buffer of `max_bytes` (default 20480) instead of being written; `TRACE` lines only
/// with `level` `TRACE` (then only they are) or with the logger's level at `TRACE` (then with
/// the rest), since Python has no `TRACE` and the crates a function links write many (the AWS
/// SDK's and hyper's, hundreds for a few DynamoDB calls), which filled the buffer, evicting the
/// function's own lines, and cost their formatting (found by an attack from the docs). When an `ERROR` line is logged (`flush_on_error_log`, default
/// on) or the handler fails or panics (`flush_on_handler_error`, default on) the buffered lines
/// are written first, each with its own timestamp and the keys it was logged with; otherwise
/// they are dropped when the invocation ends. When full, the oldest line is evicted and a
/// warning says so at the flush; a single line larger than the buffer is written directly (with
/// a warning, once per invocation). Nothing is buffered outside an invocation, nor in an
/// invocation the sample rate drew (its `DEBUG` lines are written, which is what sampling is
/// for).
///
/// Compared with Powertools for Python's `LoggerBufferConfig`: the logger is the process's
/// `tracing` subscriber, so other crates' lines at the buffered levels are buffered too (keep
/// them out with a filter by target: the README's "`DEBUG` is every crate's"); `max_bytes`
/// counts each line as written, Lambda context included (about 400 bytes for a short message),
/// where Python counts the record's text without it, so the same budget holds about half as many
/// lines; and a buffered line keeps the keys it was logged with, where Python's takes the keys at
/// the flush. Besides an `ERROR` line and a failed invocation, [`flush_buffer`](crate::flush_buffer)
/// writes the buffer and [`clear_buffer`](crate::clear_buffer) drops it, as Python's
/// `Logger.flush_buffer()` and `clear_buffer()` do.
///
/// Start from [`BufferConfig::default`] and change what differs (the type is
/// `#[non_exhaustive]`, so that later options are not breaking changes):
///
/// ```
/// use powertools_logging::{BufferConfig, Level, Logger};
///
/// let buffer = BufferConfig::default().with_max_bytes(64 * 1024).with_level(Level::Info);
/// assert_eq!(buffer.max_bytes, 65_536);
/// let logger = Logger::builder().service("orders").buffer(buffer).build()?;
/// # drop(logger);
/// # Ok::<(), powertools_logging::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferConfig {
    /// The byte budget (serialized lines).
    pub max_bytes: usize,
    /// The least verbose level that is buffered: `Trace`, `Debug`, `Info` or `Warn`.
    pub level: Level,
    /// Write the buffer before an `ERROR` line.
    pub flush_on_error_log: bool,
    /// Write the buffer when the handler returns an error or panics.
    pub flush_on_handler_error: bool,
}

impl BufferConfig {
    /// The most verbose level the buffer holds under a logger at `logger_level`: `DEBUG`, or
    /// `TRACE` for a `TRACE` buffer or a logger at `TRACE` (whose `TRACE` lines were otherwise
    /// written at once, ahead of the `DEBUG` lines held before them; found by a review).
    pub(crate) fn lowest_level(&self, logger_level: Level) -> Level {
        if self.level == Level::Trace || logger_level == Level::Trace {
            Level::Trace
        } else {
            Level::Debug
        }
    }

    /// Whether a line at `level` is buffered under a logger at `logger_level`.
    pub(crate) fn holds(&self, level: Level, logger_level: Level) -> bool {
        level <= self.level && level >= self.lowest_level(logger_level)
    }

    /// The byte budget (serialized lines).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The least verbose level that is buffered: `Trace`, `Debug`, `Info` or `Warn` (down to
    /// `DEBUG`; `TRACE` only at `Trace`). powertools-rs's own warnings are written at once, not
    /// buffered, when the logger's level writes them: they report data lost (a metric refused, a
    /// batch record failed), which a buffer discarded with a successful invocation would hide.
    #[must_use]
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Whether an `ERROR` line writes the buffer first.
    #[must_use]
    pub fn with_flush_on_error_log(mut self, flush: bool) -> Self {
        self.flush_on_error_log = flush;
        self
    }

    /// Whether a handler error or panic writes the buffer.
    #[must_use]
    pub fn with_flush_on_handler_error(mut self, flush: bool) -> Self {
        self.flush_on_handler_error = flush;
        self
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: DEFAULT_BUFFER_MAX_BYTES,
            level: Level::Debug,
            flush_on_error_log: true,
            flush_on_handler_error: true,
        }
    }
}

/// Supplies the time of each line (UTC); replaceable in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Receives each line, newline included, in one call.
pub(crate) trait LineSink: Send + Sync {
    fn write_line(&self, line: &[u8]);
}

struct MakeWriterSink<M>(M);

impl<M> LineSink for MakeWriterSink<M>
where
    M: for<'a> MakeWriter<'a> + Send + Sync,
{
    fn write_line(&self, line: &[u8]) {
        // One write per line, so that lines of concurrent invocations never interleave. Nothing
        // useful can be done if the writer fails: logging must not fail the invocation.
        let _ = self.0.make_writer().write_all(line);
    }
}

/// The default sink: stdout, one write per line, not inside a panic's report on stderr, where
/// both share one pipe (Lambda's log capture); a line that cannot be written is counted and the
/// first said on stderr ([`powertools_core::stdout::write_line`]).
struct StdoutSink;

impl LineSink for StdoutSink {
    fn write_line(&self, line: &[u8]) {
        powertools_core::stdout::write_line(line, "log line");
    }
}

/// Collects lines in memory, for tests and the offline demo (a deployed function writes to
/// stdout, the default). Clones share the lines.
///
/// ```
/// use powertools_logging::{Logger, MemoryLogs};
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder().service("orders").writer(logs.clone()).build()?;
/// tracing::subscriber::with_default(logger.subscriber(), || tracing::info!(order_id = "o-1", "accepted"));
/// assert_eq!(logs.json()[0]["order_id"], "o-1");
/// # Ok::<(), powertools_logging::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryLogs {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl MemoryLogs {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.lock())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every line written so far, parsed (a line that is not JSON becomes `null`).
    pub fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
            .collect()
    }

    /// Everything written so far, as written.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Every critical section is one append or one copy.
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::io::Write for MemoryLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for MemoryLogs {
    type Writer = MemoryLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The logging settings, shared by the `tracing` layer that writes lines
/// ([`Logger::json_layer`]) and the tower layer that scopes each invocation
/// ([`LoggingLayer`](crate::LoggingLayer)). Cheap to clone.
///
/// Build it once at init with [`Logger::builder`] (or [`Logger::from_env`]); options not set in
/// code come from the Powertools environment variables.
#[derive(Clone)]
pub struct Logger {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) service: String,
    pub(crate) level: Level,
    /// The rate when one is configured (in code or `POWERTOOLS_LOGGER_SAMPLE_RATE`), 0
    /// included: every line then carries `sampling_rate`, as Python's lines do.
    pub(crate) sample_rate: Option<f64>,
    pub(crate) log_event: bool,
    pub(crate) dev_mode: bool,
    pub(crate) redactor: Redactor,
    pub(crate) buffer: Option<BufferConfig>,
    pub(crate) persistent_keys: RwLock<crate::scope::OrderedKeys>,
    pub(crate) sink: Box<dyn LineSink>,
    pub(crate) clock: Option<Clock>,
    pub(crate) max_line_bytes: usize,
    pub(crate) runtime_failure_lines: bool,
    /// Whether the warning that the event as received is not available was written.
    pub(crate) warned_no_raw_event: AtomicBool,
    /// Whether the layer checked, at its first invocation, that a subscriber is installed.
    pub(crate) checked_subscriber: AtomicBool,
    /// Whether the layer said that another logger is installed, whose settings its lines follow.
    pub(crate) warned_other_logger: AtomicBool,
    /// Whether the layer checked, at its first invocation, that it is not inside the
    /// idempotency layer.
    pub(crate) checked_layer_order: AtomicBool,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.shared;
        f.debug_struct("Logger")
            .field("service", &shared.service)
            .field("level", &shared.level)
            .field("sample_rate", &shared.sample_rate)
            .field("log_event", &shared.log_event)
            .field("buffer", &shared.buffer)
            .field("max_line_bytes", &shared.max_line_bytes)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A new line with the members every line opens with: `level`, `message`, `timestamp` (now,
    /// or the test clock's now, in RFC 3339 UTC with milliseconds) and `service`.
    pub(crate) fn open_line(&self, level: Level, message: &str) -> Line<'_> {
        self.open_line_with(level, |line| {
            line.opening_str_member(&json::MESSAGE, message);
        })
    }

    /// The event line's opening: the event (masked) is its `message`, as Powertools for Python
    /// writes it (`log_event`), so that the same Logs Insights queries read it
    /// (`message.requestContext.requestId`).
    pub(crate) fn open_event_line(&self, level: Level, event: &Value) -> Line<'_> {
        self.open_line_with(level, |line| {
            line.opening_key(&json::MESSAGE);
            // Masked as the `event` it was written as before (`redact_key("event")` hides it).
            json::write_value(&mut line.out, "event", event, &self.redactor);
        })
    }

    fn open_line_with(&self, level: Level, message: impl FnOnce(&mut Line<'_>)) -> Line<'_> {
        let mut line = Line::new(&self.redactor);
        line.opening_str_member(&json::LEVEL, level.as_str());
        message(&mut line);
        line.opening_key(&json::TIMESTAMP);
        let now = self.clock.as_ref().map_or_else(Utc::now, |clock| clock());
        write_timestamp(&mut line.out, now);
        line.opening_str_member(&json::SERVICE, &self.service);
        line
    }

    /// Writes a line, within the line limit, pretty-printed in development mode.
    pub(crate) fn write(&self, line: &[u8]) {
        let line = &*crate::truncate::bound(line, self.max_line_bytes);
        if self.dev_mode
            && let Ok(value) = serde_json::from_slice::<Value>(line)
            && let Ok(mut pretty) = serde_json::to_vec_pretty(&value)
        {
            pretty.push(b'\n');
            self.sink.write_line(&pretty);
            return;
        }
        self.sink.write_line(line);
    }

    /// A line of the logger's own (a configuration warning).
    pub(crate) fn notice(&self, level: Level, message: &str) {
        let line = self.open_line(level, message).finish();
        self.write(&line);
        crate::json::recycle_line(line);
    }
}

/// Powertools for Python's variables that powertools-rs does not read: a logger that finds one
/// set says so once, when it is built.
const PYTHON_ONLY_VARIABLES: [&str; 6] = [
    "POWERTOOLS_DEBUG",
    "POWERTOOLS_LOG_DEDUPLICATION_DISABLED",
    "POWERTOOLS_TRACE_MIDDLEWARES",
    "POWERTOOLS_PARAMETERS_MAX_AGE",
    "POWERTOOLS_PARAMETERS_SSM_DECRYPT",
    "POWERTOOLS_EVENT_HANDLER_DEBUG",
];

impl Logger {
    /// A builder reading unset options from the process environment.
    pub fn builder() -> LoggerBuilder {
        LoggerBuilder::default()
    }

    /// A logger configured from the environment only, writing to stdout.
    ///
    /// # Errors
    /// As [`LoggerBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// The `tracing-subscriber` layer that writes the JSON lines; compose it with other layers
    /// (OpenTelemetry, for example) on one registry.
    pub fn json_layer(&self) -> JsonLayer {
        JsonLayer::new(self.clone())
    }

    /// A subscriber with only this logger's layer, for `tracing::subscriber::with_default` in
    /// tests or for [`init`](Self::init).
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::registry().with(self.json_layer())
    }

    /// Installs [`subscriber`](Self::subscriber) as the global `tracing` subscriber.
    ///
    /// # Errors
    /// [`Error::SubscriberAlreadyInstalled`] if one is.
    pub fn init(&self) -> Result<(), Error> {
        tracing::subscriber::set_global_default(self.subscriber())
            .map_err(|_| Error::SubscriberAlreadyInstalled)
    }

    /// The level in force.
    pub fn level(&self) -> Level {
        self.shared.level
    }

    /// Adds a key to every line of every invocation from now on (configuration, deployment
    /// data); invocation keys and fields of the line win over it. A value that serializes to
    /// `null` (`None`) leaves the key out, as Powertools for Python does.
    ///
    /// # Errors
    /// [`Error::ReservedKey`] or [`Error::Serialization`].
    pub fn append_persistent_key(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        let value = key_value(key, value)?;
        self.shared
            .persistent_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .append(key, value);
        Ok(())
    }

    /// Removes a persistent key.
    pub fn remove_persistent_key(&self, key: &str) {
        self.shared
            .persistent_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// `text` without the underscores Python's `float` reads between digits (`0.0_5` is `0.05`, PEP
/// 515); an underscore anywhere else is kept, for the parse to refuse (`_0.5`, `0__5`, `0._5`),
/// as Python does. Rust's `f64` reads none of them, and a rate Python takes stopped the start
/// (found by an attack from the docs).
fn python_float_digits(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('_') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let between_digits = |at: usize| {
        at > 0
            && bytes[at - 1].is_ascii_digit()
            && bytes.get(at + 1).is_some_and(u8::is_ascii_digit)
    };
    std::borrow::Cow::Owned(
        text.char_indices()
            .filter(|&(at, c)| c != '_' || !between_digits(at))
            .map(|(_, c)| c)
            .collect(),
    )
}

/// Builds a [`Logger`]. Options set here win over the environment, except that Lambda's own
/// level (`AWS_LAMBDA_LOG_LEVEL`) wins over every level.
#[derive(Default)]
#[must_use]
pub struct LoggerBuilder {
    service: Option<String>,
    level: Option<Level>,
    sample_rate: Option<f64>,
    log_event: Option<bool>,
    dev_mode: Option<bool>,
    redacted_keys: Option<Vec<String>>,
    extra_redacted_keys: Vec<String>,
    buffer: Option<BufferConfig>,
    persistent_keys: Vec<(String, Result<Value, serde_json::Error>)>,
    sink: Option<Box<dyn LineSink>>,
    clock: Option<Clock>,
    env: Option<Env>,
    max_line_bytes: Option<usize>,
    runtime_failure_lines: Option<bool>,
}

impl std::fmt::Debug for LoggerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggerBuilder")
            .field("service", &self.service)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl LoggerBuilder {
    /// The `service` key (default: `POWERTOOLS_SERVICE_NAME`, else `service_undefined`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The level (default: `POWERTOOLS_LOG_LEVEL`, else the legacy `LOG_LEVEL`, else `INFO`;
    /// `AWS_LAMBDA_LOG_LEVEL` wins).
    pub fn level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// The share of invocations that log at `DEBUG` (default: `POWERTOOLS_LOGGER_SAMPLE_RATE`,
    /// else none), drawn per invocation. When set, 0 included, every line carries
    /// `sampling_rate`, as in Powertools for Python.
    pub fn sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = Some(rate);
        self
    }

    /// Logs each incoming event at `INFO`, as Lambda sent it, with redacted keys masked, inside
    /// string-encoded JSON too (an API Gateway `body`) (default: `POWERTOOLS_LOGGER_LOG_EVENT`,
    /// else off). Needs [`RawEventLayer`](crate::RawEventLayer) on the runtime unless the event
    /// type is `serde_json::Value`.
    pub fn log_event(mut self, log_event: bool) -> Self {
        self.log_event = Some(log_event);
        self
    }

    /// Pretty-printed lines for reading in a terminal (default: `POWERTOOLS_DEV`).
    pub fn dev_mode(mut self, dev_mode: bool) -> Self {
        self.dev_mode = Some(dev_mode);
        self
    }

    /// Replaces the masked keys (default: [`DEFAULT_REDACTED_KEYS`]); an empty list masks
    /// nothing. Keys are compared without case and without `-` and `_`: `"iban_code"` masks
    /// `ibanCode` and `IBAN-CODE` too; a dotted name (`customer.iban_code`) by its last part or
    /// its dots read as separators. A key of the default list also masks a name whose last
    /// words it is (`password` masks `db_password` and `userPassword`); another key does not
    /// (`id` masks no `order_id`).
    pub fn redacted_keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.redacted_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Masks one more key, besides the default list.
    pub fn redact_key(mut self, key: impl Into<String>) -> Self {
        self.extra_redacted_keys.push(key.into());
        self
    }

    /// Buffers verbose lines per invocation (default: off).
    pub fn buffer(mut self, buffer: BufferConfig) -> Self {
        self.buffer = Some(buffer);
        self
    }

    /// The most bytes a line may have, newline included (default [`DEFAULT_MAX_LINE_BYTES`],
    /// just under the 256 KB CloudWatch Logs accepts for one event; at least
    /// [`MIN_MAX_LINE_BYTES`]). A longer line has its largest values cut, each ending in
    /// `...[truncated N bytes]`, and lists them in `truncated_keys`.
    ///
    /// There is no ceiling, on stdout either: a limit above CloudWatch's 256 KB is for a
    /// [`writer`](Self::writer) of your own, since on stdout Lambda splits a longer line into
    /// events that are not JSON each.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = Some(bytes);
        self
    }

    /// Whether `lambda_runtime`'s own line for a failed invocation is written (default: yes).
    ///
    /// [`LoggingLayer`](crate::LoggingLayer) writes a failure line with the invocation's
    /// context; the runtime then writes its own (`"location":"lambda_runtime::layers::panic:…"`,
    /// the error's `Debug` and nothing else). When `LoggingLayer` is the outermost layer of the
    /// handler, every failure the runtime sees went through it: turn the runtime's line off to
    /// log each failure once. `powertools::Powertools` does, since its stack puts logging
    /// outermost.
    pub fn runtime_failure_lines(mut self, keep: bool) -> Self {
        self.runtime_failure_lines = Some(keep);
        self
    }

    /// A key on every line of every invocation.
    ///
    /// Reserved keys and values that do not serialize are reported by
    /// [`build`](Self::build).
    pub fn persistent_key(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.persistent_keys
            .push((key.into(), crate::finite::to_value(&value)));
        self
    }

    /// Where lines go (default: stdout), one write per line. On stdout, a line that cannot be
    /// written (a pipe whose reader is gone, a full disk in a local run) is counted
    /// ([`powertools_core::stdout::lost_lines`]), and the first is said on stderr with its error;
    /// a writer of your own handles its own errors.
    pub fn writer<M>(mut self, writer: M) -> Self
    where
        M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.sink = Some(Box::new(MakeWriterSink(writer)));
        self
    }

    /// The time of each line (default: the system clock), for tests.
    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Reads unset options from `env` instead of the process environment (for tests). The cold
    /// start is the process's, not an option: it follows `AWS_LAMBDA_INITIALIZATION_TYPE` in the
    /// process environment whatever `env` says (decide it per invocation with
    /// `TestContext::with_cold_start`).
    pub fn env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Checks the settings and builds the logger. A level more verbose than Lambda's
    /// `AWS_LAMBDA_LOG_LEVEL` is logged as a warning (Lambda would drop those lines), and so is
    /// `POWERTOOLS_DEV=true` (it turns metrics and traces off too).
    ///
    /// # Errors
    /// A malformed environment variable, a level that is not one, a sampling rate outside
    /// 0.0..=1.0, an empty buffer or a buffer level above `WARN`, a reserved or unserializable
    /// persistent key, a line limit below [`MIN_MAX_LINE_BYTES`].
    pub fn build(self) -> Result<Logger, Error> {
        let env = self.env.unwrap_or_else(Env::process);
        let config = PowertoolsConfig::from_env_source(&env)?;
        // A bad value from the environment is named with its variable: two variables hold
        // levels, and the message must say which one to fix.
        let parse_level = |name: &str| -> Result<Option<Level>, Error> {
            Ok(
                env.parse_with(name, powertools_core::env::LOG_LEVEL_NAMES, |text| {
                    text.parse::<Level>().ok()
                })?,
            )
        };
        // Python's level names (its variables only, not Lambda's): `NOTSET` too, with which
        // Python's logger takes the root logger's level, WARNING by default.
        let python_level = |text: &str| {
            if text.trim().eq_ignore_ascii_case("NOTSET") {
                Some(Level::Warn)
            } else {
                text.parse::<Level>().ok()
            }
        };
        // The variables are read only for a level not set in code, as every option's is; the
        // legacy one only when the other is unset, as Python's `or` reads them.
        // Python's legacy name is generic (another runtime's logger may read it: `verbose`,
        // `info,hyper=warn`): a value that is no level is ignored, with a warning once the logger
        // can write it, never refused.
        let mut legacy_ignored = None;
        let from_env = match self.level {
            Some(_) => None,
            None => match env.parse_with(
                POWERTOOLS_LOG_LEVEL,
                powertools_core::env::LOG_LEVEL_NAMES,
                python_level,
            )? {
                Some(level) => Some(level),
                None => match env.string(LOG_LEVEL) {
                    // Spaces alone are the empty value, which counts as unset.
                    Ok(None) => None,
                    Ok(Some(text)) if text.trim().is_empty() => None,
                    Ok(Some(text)) => python_level(&text).or_else(|| {
                        legacy_ignored = Some(powertools_core::env::shown(&text));
                        None
                    }),
                    // Not UTF-8: no level either, and the warning shows its bytes (a first
                    // version ignored it without a word).
                    Err(powertools_core::Error::NonUnicodeEnvVar { value, .. }) => {
                        legacy_ignored = Some(value);
                        None
                    }
                    Err(_) => None,
                },
            },
        };
        let resolved = level::resolve(parse_level(AWS_LAMBDA_LOG_LEVEL)?, self.level, from_env);
        let sample_rate = match self.sample_rate {
            Some(rate) => Some(rate),
            None => env.parse_with(
                POWERTOOLS_LOGGER_SAMPLE_RATE,
                "a number from 0.0 to 1.0",
                |text| {
                    python_float_digits(text.trim())
                        .parse::<f64>()
                        .ok()
                        .filter(|rate| (0.0..=1.0).contains(rate))
                },
            )?,
        };
        if let Some(rate) = sample_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(Error::InvalidSampleRate { rate });
        }
        // `-0` is in range: written `0.0`, not `-0.0` (adding zero turns a negative zero positive).
        let sample_rate = sample_rate.map(|rate| rate + 0.0);
        if let Some(buffer) = &self.buffer {
            if buffer.max_bytes == 0 {
                return Err(Error::InvalidBuffer {
                    reason: "max_bytes must be positive",
                });
            }
            if buffer.level == Level::Error {
                return Err(Error::InvalidBuffer {
                    reason: "the buffer level must be TRACE, DEBUG, INFO or WARN",
                });
            }
        }
        let max_line_bytes = self.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
        if max_line_bytes < MIN_MAX_LINE_BYTES {
            return Err(Error::InvalidLineLimit {
                bytes: max_line_bytes,
            });
        }
        let mut persistent_keys = crate::scope::OrderedKeys::default();
        for (key, value) in self.persistent_keys {
            if RESERVED_KEYS.contains(&key.as_str()) || FAILURE_KEYS.contains(&key.as_str()) {
                return Err(Error::ReservedKey { key });
            }
            match value {
                // A key given twice: the last value, as `append_persistent_key` sets it.
                Ok(value) => persistent_keys.append(&key, value),
                Err(source) => return Err(Error::Serialization { key, source }),
            }
        }
        let log_event = match self.log_event {
            Some(flag) => flag,
            None => env.bool(POWERTOOLS_LOGGER_LOG_EVENT)?.unwrap_or(false),
        };
        let mut redacted: Vec<String> = self.redacted_keys.unwrap_or_else(|| {
            DEFAULT_REDACTED_KEYS
                .iter()
                .map(|key| (*key).to_owned())
                .collect()
        });
        redacted.extend(self.extra_redacted_keys);
        let shared = Shared {
            service: self
                .service
                .unwrap_or_else(|| config.service_name().to_owned()),
            level: resolved.level,
            sample_rate,
            log_event,
            dev_mode: self.dev_mode.unwrap_or(config.dev_mode()),
            redactor: Redactor::new(redacted),
            buffer: self.buffer,
            persistent_keys: RwLock::new(persistent_keys),
            sink: self.sink.unwrap_or_else(|| Box::new(StdoutSink)),
            clock: self.clock,
            max_line_bytes,
            runtime_failure_lines: self.runtime_failure_lines.unwrap_or(true),
            warned_no_raw_event: AtomicBool::new(false),
            checked_subscriber: AtomicBool::new(false),
            warned_other_logger: AtomicBool::new(false),
            checked_layer_order: AtomicBool::new(false),
        };
        if config.dev_mode() {
            // Left on in production, POWERTOOLS_DEV turns metrics and traces off without a word
            // from them: say what it does, as Python's `UserWarning` does. Written by the logger
            // itself, as its other notices, so that it is not lost when no subscriber is
            // installed yet (or ever); once per logger.
            let lines = if shared.dev_mode {
                "log lines are pretty-printed"
            } else {
                "log lines stay JSON (dev_mode(false) in code)"
            };
            shared.notice(
                Level::Warn,
                &format!(
                    "POWERTOOLS_DEV is on, for development only: {lines}, metrics are off unless \
                     POWERTOOLS_METRICS_DISABLED=false (or disabled(false) in code), and traces \
                     are off unless POWERTOOLS_TRACE_DISABLED=false (or disabled(false) in code)."
                ),
            );
        }
        if let Some(warning) = resolved.conflict {
            shared.notice(Level::Warn, &warning);
        }
        let python_only: Vec<&str> = PYTHON_ONLY_VARIABLES
            .into_iter()
            .filter(|name| env.is_set(name))
            .collect();
        if !python_only.is_empty() {
            // Said by the logger, which every stack has and whose notices need no subscriber:
            // a template shared with Python functions sets them, and they were ignored without
            // a word (found by a new user from the docs).
            shared.notice(
                Level::Warn,
                &format!(
                    "{} set, but not read by powertools-rs: Powertools for Python's only (its \
                     own debug logging, log deduplication, event handler and parameters \
                     utilities, which powertools-rs does not have)",
                    python_only.join(", ")
                ),
            );
        }
        if let Some(text) = legacy_ignored {
            shared.notice(
                Level::Warn,
                &format!(
                    "LOG_LEVEL={text} is not a level (expected {}): ignored; set \
                     POWERTOOLS_LOG_LEVEL for this logger",
                    powertools_core::env::LOG_LEVEL_NAMES
                ),
            );
        }
        if let Some(buffer) = &shared.buffer
            && buffer.level < shared.level
            && shared.level > Level::Debug
            && env.string(AWS_LAMBDA_LOG_LEVEL)?.is_some()
        {
            shared.notice(
                Level::Warn,
                "Advanced Logging Controls (ALC) Log Level is less verbose than Log Buffering Log \
                 Level. Buffered logs will be filtered by ALC",
            );
        }
        Ok(Logger {
            shared: Arc::new(shared),
        })
    }
}
