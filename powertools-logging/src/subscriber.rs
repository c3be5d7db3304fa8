//! The `tracing-subscriber` layer that writes one flat JSON line per event.

use std::cell::RefCell;
use std::sync::PoisonError;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::buffer::Pushed;
use crate::failure::StackTrace;
use crate::invocation::InvocationState;
use crate::json::Line;
use crate::json::{
    FAILURE_KEYS, FieldCollector, OUTSIDE_INVOCATION_KEYS, REDACTED, masked_json_text,
    redacted_message, write_str,
};
use crate::level::Level;
use crate::logger::{Logger, Shared};
use crate::scope::{Scope, ScopeKeys};

/// The name a span's `message` field is kept under until a line writes it as `span_message`
/// (a name no field can have: a real `span_message` field stays apart from it).
const SPAN_MESSAGE: &str = "\0span_message";

/// A span's fields as its lines write them, its `message` kept under [`SPAN_MESSAGE`].
fn span_fields(fields: FieldCollector<'_>) -> SpanFields {
    let mut written = fields.fields;
    if let Some(message) = fields.message {
        let mut json = Vec::new();
        crate::json::write_str(&mut json, &message);
        written.push((SPAN_MESSAGE, json));
    }
    SpanFields(written, fields.repeated)
}

/// Whether `fields[at]` is a field given again under the name of one before it (in one event
/// or span), when `repeated` says some name is.
fn is_repeated(fields: &[(&'static str, Vec<u8>)], at: usize, repeated: bool) -> bool {
    repeated && fields[..at].iter().any(|(name, _)| *name == fields[at].0)
}

/// The target of `lambda_runtime`'s own line for a failed invocation.
const RUNTIME_FAILURE_TARGET: &str = "lambda_runtime::layers::panic";
/// The target of `lambda_runtime`'s lines about the event it received.
const RUNTIME_RAW_EVENT_TARGET: &str = "lambda_runtime::layers::api_response";

thread_local! {
    /// The `stack_trace` of the failure line being written on this thread.
    static STACK_TRACE: RefCell<Option<StackTrace>> = const { RefCell::new(None) };
}

/// Runs `log` (which writes the failure line) with `stack_trace` available to it.
pub(crate) fn with_stack_trace(stack_trace: Option<StackTrace>, log: impl FnOnce()) {
    let _ = STACK_TRACE.try_with(|slot| *slot.borrow_mut() = stack_trace);
    log();
    let _ = STACK_TRACE.try_with(|slot| slot.borrow_mut().take());
}

/// Writes each `tracing` event as one line of flat JSON: the Powertools keys (`level`,
/// `message`, `timestamp`, `service`, the Lambda context, `correlation_id`, `sampling_rate`),
/// then the event's fields, the fields of the spans it is in (innermost first), the keys of its
/// scope (the invocation's, or a [`key_scope`](crate::key_scope)'s), the persistent keys, and
/// `location` (the code's `module:line`, unless a key of yours is named `location`). A key is
/// written once: the first of these wins. A field named like a standard key is written as
/// `extra_` + its name; a field named `error` also gives Powertools' `exception_name` (for an
/// error recorded as `&dyn Error`) and `exception` (its message chain, or its text).
///
/// Each line is at most [`max_line_bytes`](crate::LoggerBuilder::max_line_bytes) long.
///
/// Get it from [`Logger::json_layer`] and add it to a `tracing_subscriber` registry, with other
/// layers if you like:
///
/// ```
/// use powertools_logging::{Logger, MemoryLogs};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let logs = MemoryLogs::new();
/// let logger = Logger::builder().service("orders").writer(logs.clone()).build()?;
/// let subscriber = tracing_subscriber::registry().with(logger.json_layer());
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("checkout", customer_id = "c-7");
///     let _entered = span.enter();
///     tracing::warn!(items = 3, paid = false, "basket abandoned");
/// });
/// let line = &logs.json()[0];
/// assert_eq!(line["level"], "WARN");
/// assert_eq!(line["message"], "basket abandoned");
/// assert_eq!(line["items"], 3);
/// assert_eq!(line["paid"], false);
/// assert_eq!(line["customer_id"], "c-7");
/// # Ok::<(), powertools_logging::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct JsonLayer {
    logger: Logger,
    /// The most verbose level any line can be written or buffered at.
    max_level: Level,
}

/// The rendered fields of a span, kept in its extensions, and whether a name is among them more
/// than once ([`FieldCollector::repeated`]).
struct SpanFields(Vec<(&'static str, Vec<u8>)>, bool);

impl JsonLayer {
    pub(crate) fn new(logger: Logger) -> Self {
        let shared = &logger.shared;
        let mut max_level = shared.level;
        if shared.sample_rate.is_some_and(|rate| rate > 0.0) {
            max_level = max_level.min(Level::Debug);
        }
        if let Some(buffer) = &shared.buffer {
            // Everything at the buffer level and more verbose may be buffered, down to DEBUG
            // (TRACE at a TRACE buffer only).
            max_level = max_level.min(buffer.lowest_level(shared.level));
        }
        JsonLayer { logger, max_level }
    }

    /// The logger whose settings the lines follow.
    pub(crate) fn logger(&self) -> &Logger {
        &self.logger
    }

    fn shared(&self) -> &Shared {
        &self.logger.shared
    }

    fn format<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        scope: Option<&Scope>,
        level: Level,
    ) -> Vec<u8>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let shared = self.shared();
        let metadata = event.metadata();
        let mut fields = FieldCollector::for_target(&shared.redactor, metadata.target());
        event.record(&mut fields);
        let invocation = scope.and_then(|scope| scope.invocation.as_deref());
        // One lock for the line: the correlation id now, the keys below.
        let keys = scope.map(Scope::keys);

        let message = fields.message.as_deref().unwrap_or_default();
        // `lambda_runtime`'s own failure line is the error's `Debug`: an error message, which
        // fails closed.
        let message = if metadata.target() == RUNTIME_FAILURE_TARGET {
            redacted_message(message, &shared.redactor)
        } else {
            std::borrow::Cow::Borrowed(message)
        };
        let event_json = invocation
            .filter(|_| fields.event_marker)
            .and_then(|invocation| invocation.event.as_ref());
        let mut line = match event_json {
            Some(event_json) => shared.open_event_line(level, event_json),
            None => shared.open_line(level, &message),
        };
        if let Some(invocation) = invocation {
            line.reserved_members(&invocation.lambda_members);
        } else if let Some(request_id) = ctx.event_scope(event).and_then(|mut spans| {
            spans.find_map(|span| {
                span.extensions()
                    .get::<RuntimeRequestId>()
                    .map(|id| id.0.clone())
            })
        }) {
            // A line of the runtime's own, before any layer of the handler's ran (an event the
            // handler's type cannot hold): its invocation is the runtime span's.
            line.str_member("function_request_id", &request_id);
        }
        if let Some(keys) = &keys {
            correlation_member(&mut line, keys, shared);
        }
        // Whenever a rate is configured, 0 included, as Python writes it (found by an attack).
        if let Some(rate) = shared.sample_rate
            && line.key("sampling_rate")
        {
            // A finite f64 always serializes; straight into the line, no buffer of its own.
            let _ = serde_json::to_writer(&mut line.out, &rate);
        }
        // The failure keys first, the line's own (from an `error` field, or the layer's failure
        // line): a field of the same name then moves to `extra_<name>` instead of replacing
        // one of the pair, or being lost.
        if let Some((name, message)) = &fields.exception {
            if let Some(name) = name
                && line.own_key("exception_name")
            {
                write_str(&mut line.out, name);
            }
            if line.own_key("exception") {
                write_str(&mut line.out, message);
            }
        }
        // A panic's failure line gives the panic's `file:line` as its `location` field: written
        // where the code location is, so that a business `location` replaces it as it replaces
        // the code location on every other line (written first, it took the name and the
        // business value was dropped without a word: found by an attack from the docs).
        let mut panic_location = None;
        // The names of fields given twice whose first value the line did not write: their
        // later values are not written either.
        let mut unwritten: Vec<&str> = Vec::new();
        for (at, (name, json)) in fields.fields.iter().enumerate() {
            if is_repeated(&fields.fields, at, fields.repeated) {
                if !unwritten.contains(name) {
                    line.repeated_key(name);
                    line.out.extend_from_slice(json);
                }
                continue;
            }
            if fields.failure_marker && *name == "location" {
                panic_location = Some(json);
                continue;
            }
            // A failure line outside any invocation's scope (`powertools::run`'s for an event the
            // handler's type cannot hold, which no layer saw) gives the invocation's
            // `cold_start` and Lambda context as fields: the standard keys, as every invocation
            // line has them, not `extra_cold_start` (found by an attack on the facade from the
            // docs).
            let written = if fields.failure_marker
                && (FAILURE_KEYS.contains(name)
                    || (invocation.is_none() && OUTSIDE_INVOCATION_KEYS.contains(name)))
            {
                line.own_key(name)
            } else {
                line.user_key(name)
            };
            if written {
                line.out.extend_from_slice(json);
            } else if fields.repeated {
                unwritten.push(name);
            }
        }
        if fields.failure_marker
            && let Some(stack_trace) = STACK_TRACE
                .try_with(|slot| slot.borrow_mut().take())
                .ok()
                .flatten()
        {
            line.raw_member("stack_trace", &stack_trace.to_json(&shared.redactor));
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(SpanFields(span_fields, repeated)) =
                    span.extensions().get::<SpanFields>()
                {
                    // A span's values of a name given twice are shadowed together (by the
                    // event's field, or an inner span's): a later value came back alone as
                    // `extra_<name>` (found by a review).
                    let mut unwritten: Vec<&str> = Vec::new();
                    for (at, (name, json)) in span_fields.iter().enumerate() {
                        let written = if is_repeated(span_fields, at, *repeated) {
                            if unwritten.contains(name) {
                                continue;
                            }
                            line.repeated_key(name);
                            true
                        } else if *name == SPAN_MESSAGE {
                            line.own_key("span_message")
                        } else {
                            line.span_key(name)
                        };
                        if written {
                            line.out.extend_from_slice(json);
                        } else if *repeated {
                            unwritten.push(name);
                        }
                    }
                }
            }
        }
        let location_hidden = business_members(&mut line, keys.as_deref(), shared);
        drop(keys);
        // Last, so that a business `location` (a shop, a region) wins over the code location;
        // `location` appended as `None` leaves it out, as Python's `append_keys(location=None)`.
        if !location_hidden {
            match panic_location {
                Some(json) => line.raw_member("location", json),
                None => line.location_member(
                    metadata.module_path().unwrap_or(metadata.target()),
                    metadata.line().unwrap_or(0),
                ),
            }
        }
        line.finish()
    }

    /// The scope the event is written in: the task's, else (a task spawned with
    /// `.in_current_span()`) the one attached to the innermost span it is in that has one.
    fn scope<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<Scope>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Scope::current().or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<Scope>().cloned())
        })
    }

    /// Whether the event is `lambda_runtime`'s line for a failed invocation, which the failure
    /// line of [`LoggingLayer`](crate::LoggingLayer) replaces when so configured.
    fn is_dropped_runtime_line(&self, metadata: &Metadata<'_>) -> bool {
        !self.shared().runtime_failure_lines
            && metadata.is_event()
            && metadata.target() == RUNTIME_FAILURE_TARGET
    }
}

/// Whether the event is `lambda_runtime`'s TRACE line with each event's raw text (`raw JSON event
/// received from Lambda`, its `body` the whole event, unmasked): an event the handler's type
/// cannot hold, and every other, would reach the log at TRACE. `POWERTOOLS_LOGGER_LOG_EVENT`
/// logs the event, masked.
fn is_runtime_raw_event(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == tracing::Level::TRACE
        && metadata.is_event()
        && metadata.target() == RUNTIME_RAW_EVENT_TARGET
        && metadata.fields().field("body").is_some()
}

/// The request id of `lambda_runtime`'s span around each invocation (`requestId`), for the lines
/// written before the logging layer sees the invocation; so of the tracing extension's span
/// around its lines about an invocation.
#[derive(Debug, Default)]
struct RuntimeRequestId(String);

impl tracing::field::Visit for RuntimeRequestId {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "requestId" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "requestId" {
            self.0 = format!("{value:?}").trim_matches('"').to_owned();
        }
    }
}

/// The least level of the spans the layer lets exist at log level `max_level`: `INFO` and above
/// whatever the level of the lines. A layer that disables a span disables it for every layer of
/// the registry, so a `WARN` log level filtering spans as it filters lines took away every
/// `info_span!`: batch records' spans and their `message_id` on the lines inside, the handler's
/// own spans, the AWS SDK's, from the logs and from the traces alike (found by an attack from the
/// docs). `DEBUG` and `TRACE` spans still follow the log level, as they did: libraries (the AWS
/// SDK) open many, which would cost every call and fill the traces.
fn span_level(max_level: Level) -> Level {
    max_level.min(Level::Info)
}

/// The crate of a target (`powertools_tracing` of `powertools_tracing::log_scope`): up to its
/// first `:`, which no crate name has. A character search: `split_once("::")` set up a
/// substring searcher for each span, about 380 instructions of every invocation (counted).
fn crate_of(target: &str) -> &str {
    target.split(':').next().unwrap_or(target)
}

/// Whether `target` is one of powertools-rs's crates or their modules (not another crate whose
/// name begins with `powertools`).
fn is_powertools_target(target: &str) -> bool {
    let krate = crate_of(target);
    [
        "powertools",
        "powertools_core",
        "powertools_logging",
        "powertools_metrics",
        "powertools_tracing",
        "powertools_idempotency",
        "powertools_batch",
    ]
    .contains(&krate)
}

/// Spans whose fields describe the invocation for another tool, not the business: the tracing
/// layer's invocation and AWS SDK spans (`faas.*`, `rpc.*`, `otel.*`) and the runtime's own span
/// (`requestId`, already `function_request_id`). Their fields are not log keys.
fn is_instrumentation(target: &str) -> bool {
    // The crates themselves and their modules, not another crate whose name begins with
    // theirs (`powertools_tracing_extras`, whose `requestId` became `function_request_id`;
    // found by a review).
    let krate = crate_of(target);
    [
        "powertools_tracing",
        "lambda_runtime",
        "lambda_runtime_api_client",
    ]
    .contains(&krate)
}

/// The scope the current code logs in, as its lines find it: its task's, or the one the current
/// span keeps (a task spawned with `.in_current_span()`).
pub(crate) fn current_scope() -> Option<Scope> {
    Scope::current().or_else(|| {
        tracing::Span::current()
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
                let span = registry.span(id)?;
                span.scope()
                    .find_map(|span| span.extensions().get::<Scope>().cloned())
            })
            .flatten()
    })
}

/// Writes the correlation id of `keys`, if it has one.
fn correlation_member(line: &mut Line<'_>, keys: &ScopeKeys, shared: &Shared) {
    let Some(correlation_id) = keys.correlation_id.as_deref() else {
        return;
    };
    // Masked as a string field is: an id taken at a path one level short (the `headers`
    // object, as its JSON text) or set from a caller's value can hold a masked key (it was
    // written as it was; found by an attack from the docs).
    if shared.redactor.masks("correlation_id") {
        line.str_member("correlation_id", REDACTED);
    } else {
        match masked_json_text(correlation_id, &shared.redactor) {
            Some(masked) => line.str_member("correlation_id", &masked),
            None => line.str_member("correlation_id", correlation_id),
        }
    }
}

/// Writes the appended keys of `keys`, then the persistent keys; whether `location` was
/// appended as `None` (which leaves the code location out).
fn business_members(line: &mut Line<'_>, keys: Option<&ScopeKeys>, shared: &Shared) -> bool {
    // A key whose value is `null` (an `Option` appended as `None`) is left out, as Powertools
    // for Python leaves out every top-level `None`; it still hides a persistent key of its
    // name, as Python's one set of keys would.
    let mut hidden = HiddenKeys::default();
    if let Some(keys) = keys {
        for (key, value) in keys.keys.keys() {
            if value.is_null() {
                hidden.insert(key);
            } else {
                line.value_member(key, value);
            }
        }
    }
    let persistent = shared
        .persistent_keys
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    if !persistent.is_empty() {
        for (key, value) in persistent.keys() {
            if value.is_null() {
                hidden.insert(key);
            } else if !hidden.contains(key) {
                line.value_member(key, value);
            }
        }
    }
    hidden.contains("location")
}

/// The keys appended as `None` on a line: a set past a few, as each persistent key is looked up
/// among them (a list of thousands, against thousands of persistent keys, cost 1.2 s a line in
/// a debug build: a review).
#[derive(Default)]
struct HiddenKeys<'k> {
    list: Vec<&'k str>,
    set: Option<std::collections::HashSet<&'k str>>,
}

impl<'k> HiddenKeys<'k> {
    /// Past this many, a set.
    const LISTED: usize = 16;

    fn insert(&mut self, key: &'k str) {
        match &mut self.set {
            Some(set) => {
                set.insert(key);
            }
            None => {
                self.list.push(key);
                if self.list.len() > Self::LISTED {
                    self.set = Some(self.list.drain(..).collect());
                }
            }
        }
    }

    fn contains(&self, key: &str) -> bool {
        match &self.set {
            Some(set) => set.contains(key),
            None => self.list.iter().any(|hidden| {
                #[cfg(test)]
                crate::scope::KEYS_COMPARED.with(|compared| compared.set(compared.get() + 1));
                *hidden == key
            }),
        }
    }
}

/// A line of the logger's own about one invocation (a buffer notice): with its Lambda context
/// (`function_request_id`, `cold_start`, …) and the correlation id and keys of `scope`, as the
/// invocation's lines have them, so that a query for either finds the notice too (found by an
/// attack from the docs: it had no Lambda context; then none of the keys).
fn invocation_notice(
    shared: &Shared,
    invocation: &InvocationState,
    scope: Option<&Scope>,
    level: Level,
    message: &str,
) {
    let mut line = shared.open_line(level, message);
    line.reserved_members(&invocation.lambda_members);
    let keys = scope.map(Scope::keys);
    if let Some(keys) = &keys {
        correlation_member(&mut line, keys, shared);
    }
    business_members(&mut line, keys.as_deref(), shared);
    drop(keys);
    let line = line.finish();
    shared.write(&line);
    crate::json::recycle_line(line);
}

/// Writes the buffered lines of `invocation`, oldest first, then a warning if some were evicted,
/// with the logger that formatted them (else nothing was buffered).
pub(crate) fn flush_buffer(invocation: &InvocationState) {
    flush_buffer_then(invocation, false);
}

/// [`flush_buffer`], closing the buffer in the same hold of its lock when `close` (the
/// invocation ended): a line a task logs meanwhile is written at its level, never left in it.
pub(crate) fn flush_buffer_then(invocation: &InvocationState, close: bool) {
    let Some(mut buffer) = invocation.buffer() else {
        return;
    };
    let (lines, evicted) = buffer.take();
    let writer = buffer.writer();
    if close {
        buffer.close();
    }
    drop(buffer);
    let Some(writer) = writer else {
        return;
    };
    let shared = &*writer.shared;
    for line in lines {
        shared.write(&line);
    }
    if evicted > 0 {
        // The scope of the code that flushes: the invocation's (the layer flushes in it, and
        // `flush_buffer` is called from the handler), or one inside it (`key_scope`).
        let scope = Scope::current().filter(|scope| {
            scope
                .invocation
                .as_deref()
                .is_some_and(|current| std::ptr::eq(current, invocation))
        });
        invocation_notice(
            shared,
            invocation,
            scope.as_ref(),
            Level::Warn,
            &format!(
                "Some logs are not displayed because they were evicted from the buffer \
                 ({evicted} lines). Increase buffer size to store more logs in the buffer"
            ),
        );
    }
}

impl<S> tracing_subscriber::Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        let least = if metadata.is_span() {
            span_level(self.max_level)
        } else {
            self.max_level
        };
        Level::of(metadata.level()) >= least
            && !self.is_dropped_runtime_line(metadata)
            && !is_runtime_raw_event(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(span_level(self.max_level).to_tracing().into())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let metadata = attrs.metadata();
        // The first span of a scope keeps it, for tasks spawned with `.in_current_span()`;
        // spans inside it find it on their way up.
        if let Some(scope) = Scope::current() {
            let inherited = span
                .scope()
                .skip(1)
                .find_map(|ancestor| {
                    ancestor
                        .extensions()
                        .get::<Scope>()
                        .map(|found| found.is(&scope))
                })
                .unwrap_or(false);
            if !inherited {
                // `replace`, not `insert` (which panics on a second value): a registry with two
                // loggers' layers sees each span twice (found by a review).
                span.extensions_mut().replace(scope);
            }
        }
        if is_instrumentation(metadata.target()) {
            // `lambda_runtime`'s span around an invocation, and the tracing extension's, which
            // writes about an invocation from its own task (found by a new user: its line had
            // the id as `request_id`).
            let mut request_id = RuntimeRequestId::default();
            attrs.record(&mut request_id);
            if !request_id.0.is_empty() {
                span.extensions_mut().replace(request_id);
            }
            return;
        }
        let mut fields = FieldCollector::new(&self.shared().redactor);
        attrs.record(&mut fields);
        let fields = span_fields(fields);
        if !fields.0.is_empty() {
            span.extensions_mut().replace(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if is_instrumentation(span.metadata().target()) {
            return;
        }
        let mut fields = FieldCollector::new(&self.shared().redactor);
        values.record(&mut fields);
        // A `message` recorded later (`message = Empty`, then `Span::record`) too.
        let fields = span_fields(fields);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            // A value recorded later replaces the field's (the first of its name).
            Some(SpanFields(existing, _)) => {
                for (name, json) in fields.0 {
                    match existing.iter_mut().find(|(known, _)| *known == name) {
                        Some((_, value)) => *value = json,
                        None => existing.push((name, json)),
                    }
                }
            }
            None if !fields.0.is_empty() => extensions.insert(fields),
            None => {}
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let shared = self.shared();
        let level = Level::of(event.metadata().level());
        let scope = Self::scope(event, &ctx);
        let invocation: Option<&InvocationState> =
            scope.as_ref().and_then(|scope| scope.invocation.as_deref());
        let sampled = invocation.as_ref().is_some_and(|state| state.debug_sampled);
        let buffered = !sampled
            && invocation
                .as_ref()
                .is_some_and(|state| state.buffer.is_some())
            && shared
                .buffer
                .is_some_and(|buffer| buffer.holds(level, shared.level))
            // The library's warnings report data lost (a metric refused, a record failed): a
            // buffer discarded with a successful invocation would hide them (found by an attack
            // from the docs). Powertools for Python's own lines never reach the user's buffer.
            // One the logger's level would not write is buffered still, as it was: written when
            // the invocation fails (found by a review: at an ERROR logger they were lost).
            && !(level >= Level::Warn
                && level >= shared.level
                && is_powertools_target(event.metadata().target()));
        let written = level >= shared.level || (sampled && level >= Level::Debug);
        if !buffered && !written {
            return;
        }
        let line = self.format(event, &ctx, scope.as_ref(), level);
        if buffered && let Some(state) = invocation {
            let line = crate::json::keep_line(line);
            let pushed = state
                .buffer()
                .map(|mut buffer| buffer.push(line, &self.logger));
            match pushed {
                Some(Pushed::TooLarge {
                    line,
                    first,
                    max_bytes,
                }) => {
                    // Once per invocation, with the budget: a warning per line doubled the
                    // volume of a function whose lines are all over it (found by an attack from
                    // the docs; Python warns once).
                    if first {
                        invocation_notice(
                            shared,
                            state,
                            scope.as_ref(),
                            Level::Warn,
                            &format!(
                                "A log line of {} bytes is larger than the log buffer's \
                                 max_bytes ({max_bytes}): it is written directly, as are the \
                                 invocation's other such lines (warned once per invocation)",
                                line.len()
                            ),
                        );
                    }
                    shared.write(&line);
                }
                // Logged after the invocation ended (a task that outlived it): written as any
                // line at its level, else dropped as one would be without a buffer.
                Some(Pushed::Closed(line)) if written => shared.write(&line),
                Some(Pushed::Buffered | Pushed::Closed(_)) | None => {}
            }
            return;
        }
        if level == Level::Error
            && shared
                .buffer
                .is_some_and(|buffer| buffer.flush_on_error_log)
            && let Some(state) = invocation
        {
            flush_buffer(state);
        }
        shared.write(&line);
        crate::json::recycle_line(line);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::scope::KEYS_COMPARED;
    use crate::{Logger, MemoryLogs};

    /// Thousands of persistent keys are set, and written beside thousands of keys appended as
    /// `None`, without comparing each with all the others: setting them cost time growing with
    /// the square of their number (20,000: 1.7 s in a debug build), and a line with 10,000 of
    /// each 1.2 s (found by a review).
    #[tokio::test]
    async fn many_persistent_and_hidden_keys_are_looked_up_without_comparing_each_with_all() {
        let logs = MemoryLogs::new();
        let logger = Logger::builder()
            .service("orders")
            .writer(logs.clone())
            .build()
            .unwrap();
        let keys = 3_000;
        for index in 0..keys {
            logger
                .append_persistent_key(&format!("persistent_{index}"), index)
                .unwrap();
        }
        logger
            .append_persistent_key("persistent_7", "again")
            .unwrap();
        logger.remove_persistent_key("persistent_8");
        let _guard = tracing::subscriber::set_default(logger.subscriber());
        crate::key_scope(async {
            for index in 0..keys {
                crate::append_key(&format!("hidden_{index}"), Option::<u8>::None).unwrap();
            }
            // Hides the persistent key of its name.
            crate::append_key("persistent_9", Option::<u8>::None).unwrap();
            tracing::info!("many keys");
        })
        .await;
        let compared = KEYS_COMPARED.with(std::cell::Cell::take);
        assert!(compared < 8 * keys, "{compared} keys compared");

        let line = &logs.json()[0];
        let written = line.as_object().unwrap();
        assert_eq!(line["persistent_0"], 0);
        assert_eq!(line["persistent_7"], "again");
        assert!(!written.contains_key("persistent_8"), "removed");
        assert!(!written.contains_key("persistent_9"), "hidden");
        assert!(!written.contains_key("hidden_0"), "None is left out");
        let persistent = written
            .keys()
            .filter(|key| key.starts_with("persistent_"))
            .count();
        assert_eq!(persistent, keys - 2);
        assert!(written.values().all(|value| !value.is_null()));
        let _: &Value = line;
    }

    /// A failure line outside any invocation (`powertools::run`'s for an event the handler's
    /// type cannot hold) writes the Lambda context keys as every line does, unmasked: masked
    /// there only (a user's `redact_key("tenant_id")`), a query on the key missed it again (found
    /// by a review).
    #[test]
    fn the_failure_line_s_lambda_context_keys_are_never_masked() {
        let logs = MemoryLogs::new();
        let logger = Logger::builder()
            .service("orders")
            .redact_key("tenant_id")
            .redact_key("function_name")
            .writer(logs.clone())
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(logger.subscriber());
        tracing::error!(
            target: "powertools_logging",
            exception_name = "InvalidEvent",
            exception = "the event does not read as Order",
            function_name = "orders-api",
            tenant_id = "tenant-9",
            powertools_logging.failure = true,
            "Invocation failed"
        );
        let line = &logs.json()[0];
        assert_eq!(line["tenant_id"], "tenant-9", "{line}");
        assert_eq!(line["function_name"], "orders-api", "{line}");
    }

    /// Only the library's own lines are failure lines: another target's line that carries the
    /// marker cannot write the standard keys (`function_name = "forged"` outside an invocation
    /// wrote `"function_name":"forged"`; found by a review). Its fields are kept under the
    /// prefixed names, as any line's.
    #[test]
    fn another_target_s_line_cannot_pass_for_a_failure_line() {
        let logs = MemoryLogs::new();
        let logger = Logger::builder()
            .service("orders")
            .writer(logs.clone())
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(logger.subscriber());
        tracing::error!(
            target: "my_app",
            function_name = "forged",
            cold_start = true,
            exception = "mine",
            powertools_logging.failure = true,
            "not a failure line"
        );
        let line = &logs.json()[0];
        assert!(line.get("function_name").is_none(), "{line}");
        assert_eq!(line["extra_function_name"], "forged", "{line}");
        assert!(line.get("cold_start").is_none(), "{line}");
        assert_eq!(line["exception"], "mine", "{line}");
    }
}
