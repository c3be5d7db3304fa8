//! The metrics of one invocation: the handle, its state, and the current invocation.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::dimension_sets::DimensionSets;
use crate::document::{Combine, Document, LogLevelKeys, MetricTable, Origin};
use crate::sink::Sink;
use crate::validate::{
    self, DimensionCheck, ENVELOPE_KEY, MAX_CONTEXT_BYTES, MAX_DIMENSIONS, MAX_DOCUMENT_BYTES,
};
use crate::{Error, Resolution, Unit};

tokio::task_local! {
    static CURRENT: Metrics;
}

/// What every invocation of one layer shares, fixed when the layer is built.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) namespace: String,
    /// The default dimensions, validated, without `service`.
    pub(crate) default_dimensions: Vec<(String, String)>,
    /// The `service` dimension, when a service is configured: the last of the main set, as
    /// Powertools for Python writes it; with none, there is no `service` dimension at all.
    pub(crate) service: Option<String>,
    /// Lambda's application log level when it filters out INFO lines (`WARN`, `ERROR`,
    /// `FATAL`): documents then carry it as `level`, with an RFC 3339 `timestamp`, so that
    /// Lambda keeps them.
    pub(crate) log_level_filter: Option<&'static str>,
    /// Whether Lambda's log-level filter is on at all (`AWS_LAMBDA_LOG_LEVEL` set): it reads a
    /// document's `level` at any level (a `DEBUG` one is dropped under INFO), so the names
    /// `level` and `timestamp` are refused.
    pub(crate) log_level_keys_read: bool,
    pub(crate) function_name: Option<String>,
    pub(crate) capture_cold_start_metric: bool,
    pub(crate) raise_on_empty_metrics: bool,
    pub(crate) disabled: bool,
    pub(crate) sink: Arc<dyn Sink>,
    /// Whether the empty-metrics warning was logged: once per layer, as Python's `warnings`
    /// shows it once per process, so that every replayed invocation does not log it again.
    pub(crate) warned_empty: AtomicBool,
    /// What the build would have refused had metrics been enabled (a namespace, service or
    /// function name CloudWatch refuses), warned about at the first invocation.
    pub(crate) refused_while_disabled: Vec<Error>,
    /// Whether those warnings were logged: once per layer.
    pub(crate) warned_refused: AtomicBool,
}

impl Settings {
    /// Logs, once, what the build let through only because metrics are disabled: at build time
    /// the function has usually not installed its subscriber yet, and the warning would be lost.
    pub(crate) fn warn_refused_while_disabled(&self) {
        if self.refused_while_disabled.is_empty()
            || self.warned_refused.swap(true, Ordering::Relaxed)
        {
            return;
        }
        for error in &self.refused_while_disabled {
            tracing::warn!(
                %error,
                "Metrics are disabled, so this value did not stop the start; it will once \
                 metrics are enabled"
            );
        }
    }
}

/// How many invocation states a layer keeps for reuse: one per invocation running at once, up to
/// this many.
const MAX_RECYCLED: usize = 64;

/// Invocation states the layer's invocations left behind, reset, for the next ones: an
/// invocation's state is reused with its allocations (the handle's own, the dimension and set
/// lists, the service dimension's strings: about ten allocations per invocation) instead of being
/// freed and built again. Only a state nothing else holds comes back (no task kept a handle on
/// its invocation). Held by the layer and its services, never by the states' settings (which
/// would make a cycle).
#[derive(Default)]
pub(crate) struct Recycled(Mutex<Vec<Arc<Shared>>>);

impl fmt::Debug for Recycled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Recycled").field("kept", &kept).finish()
    }
}

impl Recycled {
    fn take(&self) -> Option<Arc<Shared>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    fn put(&self, shared: Arc<Shared>) {
        let mut recycled = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if recycled.len() < MAX_RECYCLED {
            recycled.push(shared);
        }
    }
}

/// The metrics, dimensions and metadata of one invocation (or of one manual unit of work), and
/// the handle that adds to them.
///
/// Inside a handler wrapped by [`MetricsLayer`](crate::MetricsLayer), the crate-level functions
/// ([`add_metric`](crate::add_metric), …) reach the invocation's handle without passing it
/// around; [`Metrics::current`] returns it, for example to move into a spawned task. Clones share
/// the same document.
///
/// Values are checked when they are added, so a bad one is refused with a typed [`Error`]
/// instead of making CloudWatch drop the document. A document never holds more than 100
/// metrics or 100 values of one metric: the next one writes the document and starts a new one
/// with the same dimensions and metadata.
///
/// ```
/// use powertools_metrics::{MemorySink, MetricsLayer, Unit};
///
/// let sink = MemorySink::new();
/// let layer = MetricsLayer::builder().namespace("Bakery").service("orders").sink(sink.clone()).build()?;
/// let metrics = layer.new_metrics();
/// metrics.add_dimension("location", "Lyon")?;
/// metrics.add_metric("OrdersPlaced", 1.0, Unit::Count)?;
/// metrics.add_metadata("order_id", "o-1001")?;
/// metrics.flush()?;
///
/// let document = &sink.documents()[0];
/// assert_eq!(document["OrdersPlaced"], 1.0);
/// assert_eq!(document["location"], "Lyon");
/// assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0], serde_json::json!(["location", "service"]));
/// # Ok::<(), powertools_metrics::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Arc<Settings>,
    state: Mutex<State>,
    /// Set when the layer wrote the invocation's last documents: a value added later (from a
    /// task that outlived its invocation) is written at once, in a document of its own.
    ended: AtomicBool,
}

impl Drop for Shared {
    /// The last handle of an invocation's metrics went away with values never written (a
    /// handle of [`MetricsLayer::new_metrics`](crate::MetricsLayer::new_metrics) dropped
    /// without [`Metrics::flush`]): said, not lost in silence (found by an attack from the
    /// docs). The layer's own handles are always flushed first.
    fn drop(&mut self) {
        let Ok(state) = self.state.get_mut() else {
            return;
        };
        if self.settings.disabled || state.holds_no_value() {
            return;
        }
        let names: Vec<&str> = state
            .metrics
            .metrics()
            .iter()
            .chain(
                state
                    .labelled
                    .values()
                    .flat_map(|metrics| metrics.metrics()),
            )
            .map(|metric| metric.name.as_str())
            .collect();
        if *self.ended.get_mut() {
            // Only what a sink added while it wrote late documents waits after the end.
            tracing::warn!(
                metrics = ?names,
                "a metric was never written: the sink added it while it wrote the documents of \
                 values added after their invocation ended, and no value came after it (a sink \
                 that records a metric for each document it writes leaves the last one)"
            );
            return;
        }
        tracing::warn!(
            metrics = ?names,
            "metrics were dropped without being written: the last handle of their invocation \
             went away before Metrics::flush (the layer flushes each invocation's; a handle of \
             MetricsLayer::new_metrics is flushed by its caller)"
        );
    }
}

#[derive(Debug)]
struct State {
    timestamp: Option<SystemTime>,
    /// Whether a document has been written at the moment of writing because `timestamp` had
    /// left CloudWatch's window: warned once per invocation, not once per document.
    stale_timestamp_warned: AtomicBool,
    /// The dimensions whose value was replaced in this invocation, warned about once each: a
    /// batch's records replacing the tenant one after the other wrote a warning for each (999
    /// lines for 1,000 records, where Python's `warnings.warn` shows its warning once).
    overwrites_warned: Vec<String>,
    /// The value of every dimension in any set.
    dimensions: Vec<(String, String)>,
    /// Dimension name lists; the first is the main set, which `add_dimension` grows.
    dimension_sets: DimensionSets,
    metadata: Map<String, Value>,
    /// The names whose metadata is a dimension value CloudWatch refused: a later valid value
    /// makes them dimensions again.
    refused_dimensions: std::collections::BTreeSet<String>,
    metrics: MetricTable,
    /// Facade metrics with labels, one document per label set, in the order the sets first
    /// appeared; found by their labels in constant time (a search through the list made an
    /// invocation with 40,000 label sets take 26 s).
    labelled: IndexMap<Vec<(String, String)>, MetricTable>,
    /// Whether a document was written since the last full flush (an automatic flush at a limit).
    wrote_since_flush: bool,
    /// Whether the invocation's own document (which holds the metadata) was written since the
    /// last full flush.
    wrote_main_since_flush: bool,
    /// Whether a document of this invocation was written by a flush before its last (the
    /// handler's own): the last flush, finding nothing more, does not take the invocation for
    /// one without metrics (it failed under `raise_on_empty_metrics` after its metrics were
    /// published; found by an attack from the docs).
    flushed_before: bool,
    /// The serialized size of `metadata`, kept under [`MAX_CONTEXT_BYTES`] with the dimensions.
    metadata_bytes: usize,
    /// Emptied dimension names and values whose buffers a new dimension reuses (the state is
    /// reused by the layer's next invocation, which mostly adds the same dimensions). Never
    /// read otherwise.
    spare: Vec<String>,
}

/// The longest list (dimensions, sets, metrics) a state may have grown to and still be kept for
/// reuse.
const MAX_KEPT_ENTRIES: usize = 128;

/// How many emptied strings a state keeps, and the largest it keeps.
const SPARE_STRINGS: usize = 16;
const SPARE_STRING_BYTES: usize = 256;

/// Keeps `text`'s buffer in `spare` for a later dimension, emptied, unless enough are kept or it
/// is large.
fn keep_spare(spare: &mut Vec<String>, mut text: String) {
    if spare.len() < SPARE_STRINGS && text.capacity() <= SPARE_STRING_BYTES {
        text.clear();
        spare.push(text);
    }
}

/// The name of the service dimension.
const SERVICE: &str = "service";

/// The names Lambda's log-level filter reads, taken while it is on.
const LOG_LEVEL_KEYS: [&str; 2] = ["level", "timestamp"];

impl State {
    fn new(settings: &Settings) -> Self {
        let mut dimensions = settings.default_dimensions.clone();
        let mut main: Vec<String> = dimensions.iter().map(|(name, _)| name.clone()).collect();
        if let Some(service) = &settings.service {
            dimensions.push((SERVICE.to_owned(), service.clone()));
            main.push(SERVICE.to_owned());
        }
        State {
            timestamp: None,
            stale_timestamp_warned: AtomicBool::new(false),
            overwrites_warned: Vec::new(),
            dimensions,
            dimension_sets: DimensionSets::new(main),
            metadata: Map::new(),
            refused_dimensions: std::collections::BTreeSet::new(),
            metrics: MetricTable::default(),
            labelled: IndexMap::new(),
            wrote_since_flush: false,
            wrote_main_since_flush: false,
            flushed_before: false,
            metadata_bytes: 0,
            spare: Vec::new(),
        }
    }

    /// Whether a reset state is small enough to keep for reuse: one an invocation grew large
    /// (thousands of dimensions or sets) is freed instead, rather than kept at its largest by
    /// the layer's pool (found by a reviewer: 1.2 MB kept per pooled state).
    fn is_small(&self) -> bool {
        self.dimensions.capacity() <= MAX_KEPT_ENTRIES
            && self.dimension_sets.is_small(MAX_KEPT_ENTRIES)
            && self.metrics.capacity() <= MAX_KEPT_ENTRIES
            && self.labelled.capacity() <= MAX_KEPT_ENTRIES
    }

    /// `text` in a kept buffer when there is one.
    fn owned(&mut self, text: &str) -> String {
        match self.spare.pop() {
            Some(mut spare) => {
                spare.push_str(text);
                spare
            }
            None => text.to_owned(),
        }
    }

    /// The serialized size of everything every document of the invocation repeats: the
    /// dimension sets in the directive, the dimension values and the metadata.
    fn context_bytes(&self) -> usize {
        self.context_size(Written::Escaped)
    }

    /// An upper bound of [`context_bytes`](Self::context_bytes), without looking at the bytes
    /// (escaping at most sextuples a name or value: `\u0001`).
    fn context_bytes_at_most(&self) -> usize {
        self.context_size(Written::AtMost)
    }

    /// The repeated context's size, each name and value counted as `written` says.
    fn context_size(&self, written: Written) -> usize {
        let dimensions: usize = self
            .dimensions
            .iter()
            .map(|(name, value)| written.len(name) + written.len(value) + 6)
            .sum();
        // Each set's `[`, `]` and the comma after it too (left out, accepted sets passed the
        // bound in the document; found by a review).
        dimensions + self.dimension_sets.written_bytes(written) + self.metadata_bytes
    }

    /// Refuses a change (adding `added` bytes, freeing `freed`) that would make the repeated part
    /// of every document larger than a document can be: splitting by metrics could not make it
    /// fit.
    fn check_context_room(&self, key: &str, added: usize, freed: usize) -> Result<(), Error> {
        // Escaping at most sextuples a name or value (`\u0001`): a context far from the bound
        // by that measure is not counted byte by byte (that cost every invocation about 400
        // instructions).
        if self.context_bytes_at_most() + added <= MAX_CONTEXT_BYTES {
            return Ok(());
        }
        // What the change frees counts: a value replacing a larger one makes room.
        let size = (self.context_bytes() + added).saturating_sub(freed);
        if size > MAX_CONTEXT_BYTES {
            return Err(Error::DocumentTooLarge {
                key: key.to_owned(),
                size,
                limit: MAX_CONTEXT_BYTES,
            });
        }
        Ok(())
    }

    /// Back to the state `new` gives, keeping the allocations: the default dimensions come first
    /// in `dimensions` and in the main set, and nothing removes them.
    fn reset(&mut self, settings: &Settings) {
        let defaults = &settings.default_dimensions;
        let fixed = defaults.len() + usize::from(settings.service.is_some());
        self.timestamp = None;
        *self.stale_timestamp_warned.get_mut() = false;
        self.overwrites_warned.clear();
        for (name, value) in self.dimensions.drain(fixed.min(self.dimensions.len())..) {
            keep_spare(&mut self.spare, name);
            keep_spare(&mut self.spare, value);
        }
        let default_values = defaults
            .iter()
            .map(|(_, value)| value.as_str())
            .chain(settings.service.as_deref());
        for ((_, value), default) in self.dimensions.iter_mut().zip(default_values) {
            if value != default {
                value.clear();
                value.push_str(default);
            }
        }
        let spare = &mut self.spare;
        self.dimension_sets.keep_main(|main| {
            // The main set is the default names, the added ones, then `service`: the added ones
            // go, `service` stays where it is.
            let service_last = settings.service.is_some()
                && main.len() > defaults.len()
                && main.last().is_some_and(|name| name == SERVICE);
            let service = if service_last { main.pop() } else { None };
            for name in main.drain(defaults.len().min(main.len())..) {
                keep_spare(spare, name);
            }
            if settings.service.is_some() {
                main.push(service.unwrap_or_else(|| SERVICE.to_owned()));
            }
        });
        self.metadata_bytes = 0;
        self.metadata.clear();
        self.refused_dimensions.clear();
        self.metrics.reset();
        if !self.labelled.is_empty() {
            self.labelled.clear();
        }
        self.wrote_since_flush = false;
        self.wrote_main_since_flush = false;
    }

    /// Whether no value waits to be written (labelled groups kept for their gauges' levels
    /// after the invocation ended hold none).
    fn holds_no_value(&self) -> bool {
        self.metrics.is_empty() && self.labelled.values().all(MetricTable::is_empty)
    }

    fn dimension_value(&self, name: &str) -> Option<&str> {
        self.dimensions
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.as_str())
    }

    fn is_metric(&self, name: &str) -> bool {
        self.metrics.contains(name) || self.labelled.values().any(|metrics| metrics.contains(name))
    }

    /// Sets a dimension's value, warning when it replaces another.
    fn set_dimension_value(&mut self, name: &str, value: &str) {
        match self
            .dimensions
            .iter_mut()
            .find(|(existing, _)| existing == name)
        {
            Some((_, existing)) if existing != value => {
                if !self.overwrites_warned.iter().any(|warned| warned == name) {
                    tracing::warn!(
                        dimension = name,
                        old = %existing,
                        new = value,
                        "Dimension is being overwritten (said once per invocation for each \
                         dimension; the last value is the one written)"
                    );
                    self.overwrites_warned.push(name.to_owned());
                }
                existing.clear();
                existing.push_str(value);
            }
            Some(_) => {}
            None => {
                let entry = (self.owned(name), self.owned(value));
                self.dimensions.push(entry);
            }
        }
    }

    /// Removes a dimension added in this invocation (not a default one, nor `service`) from
    /// every set, and its value, which it returns; a set left the same as an earlier one, or
    /// with the default dimensions alone, goes.
    fn remove_added_dimension(
        &mut self,
        name: &str,
        defaults: &[(String, String)],
    ) -> Option<String> {
        self.dimension_sets.rebuild(|sets| {
            let mut kept: Vec<Vec<String>> = Vec::with_capacity(sets.len());
            let mut seen: HashSet<Vec<String>> = HashSet::new();
            for (index, mut set) in sets.into_iter().enumerate() {
                let held = set.iter().any(|existing| existing == name);
                set.retain(|existing| existing != name);
                // A set of `add_dimensions` that held it and is left with the defaults alone
                // (or nothing) is one nobody asked for: every metric would be published under
                // it too (found by a review). A set asked for as it is stays.
                let asked_for = !held
                    || set
                        .iter()
                        .any(|name| !defaults.iter().any(|(default, _)| default == name));
                // The main set is kept, and not compared: a set the same as it stays too
                // (left out of the documents while they are the same), for the main set may
                // grow again (a review: it was dropped for good). Others compared sorted:
                // CloudWatch's metric identity ignores the order.
                if index == 0 {
                    kept.push(set);
                    continue;
                }
                if asked_for && seen.insert(crate::dimension_sets::sorted(&set)) {
                    kept.push(set);
                }
            }
            kept
        });
        let at = self
            .dimensions
            .iter()
            .position(|(existing, _)| existing == name)?;
        Some(self.dimensions.remove(at).1)
    }

    /// The bytes dimension `name` takes in every document: its value, and its name in each set.
    fn dimension_bytes(&self, name: &str) -> usize {
        let value = self
            .dimensions
            .iter()
            .find(|(existing, _)| existing == name)
            .map_or(0, |(name, value)| dimension_len(name, value));
        let in_sets = self.dimension_sets.naming(name);
        value + in_sets * (escaped_len(name) + 3)
    }

    /// The bytes the metadata of a refused value for `name` takes, which a valid value frees.
    fn refused_bytes(&self, name: &str) -> usize {
        if !self.refused_dimensions.contains(name) {
            return 0;
        }
        self.metadata
            .get(name)
            .map_or(0, |value| json_len(name, value))
    }

    /// A valid value for `name` after a refused one: the refused value's metadata goes, and
    /// the name is free to be a dimension again.
    fn forget_refused_dimension(&mut self, name: &str) {
        // Without let-chains: this crate builds with Rust 1.85.
        if !self.refused_dimensions.remove(name) {
            return;
        }
        if let Some(value) = self.metadata.remove(name) {
            self.metadata_bytes = self.metadata_bytes.saturating_sub(json_len(name, &value));
        }
    }

    fn check_free_for_dimension(&self, name: &str) -> Result<(), Error> {
        if self.is_metric(name) {
            return Err(collision(name, "a metric"));
        }
        // A refused value's metadata gives way to a valid value of the same dimension.
        if self.metadata.contains_key(name) && !self.refused_dimensions.contains(name) {
            return Err(collision(name, "metadata"));
        }
        Ok(())
    }
}

/// Refuses `level` and `timestamp` while Lambda's log-level filter reads them.
fn check_log_level_keys(settings: &Settings, name: &str) -> Result<(), Error> {
    if settings.log_level_keys_read && LOG_LEVEL_KEYS.contains(&name) {
        return Err(collision(name, "a key Lambda's log-level filter reads"));
    }
    Ok(())
}

/// Why a value CloudWatch refuses (`rule`, as [`validate::dimension`] says it) is refused for a
/// dimension set when the layer was built, which cannot be kept as metadata instead.
fn configured_refusal(rule: &'static str, service: bool) -> &'static str {
    let long = rule == validate::VALUE_TOO_LONG;
    match (long, service) {
        (true, true) => {
            "the value is longer than 1024 characters, and the service, set when the layer was \
             built, stays a dimension of every document: its value cannot be kept as metadata \
             instead"
        }
        (true, false) => {
            "the value is longer than 1024 characters, and a default dimension, set when the \
             layer was built, stays a dimension of every document: its value cannot be kept as \
             metadata instead"
        }
        (false, true) => {
            "the value must be printable ASCII, and the service, set when the layer was built, \
             stays a dimension of every document: its value cannot be kept as metadata instead"
        }
        (false, false) => {
            "the value must be printable ASCII, and a default dimension, set when the layer was \
             built, stays a dimension of every document: its value cannot be kept as metadata \
             instead"
        }
    }
}

fn collision(name: &str, used_as: &'static str) -> Error {
    Error::NameCollision {
        name: name.to_owned(),
        used_as,
    }
}

impl Metrics {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        let state = Mutex::new(State::new(&settings));
        Metrics {
            shared: Arc::new(Shared {
                settings,
                state,
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// An invocation's handle: a state the layer's earlier invocations left (reset), or a new
    /// one.
    pub(crate) fn for_invocation(settings: &Arc<Settings>, recycled: &Recycled) -> Self {
        match recycled.take() {
            Some(shared) => Metrics { shared },
            None => Metrics::new(Arc::clone(settings)),
        }
    }

    /// The handle of the invocation this task runs in, if it runs inside a
    /// [`MetricsLayer`](crate::MetricsLayer) or a [`scope`](Self::scope).
    ///
    /// A task spawned with `tokio::spawn` is not inside its parent's invocation: move the handle
    /// into it, or run it in [`scope`](Self::scope). A value such a task adds after the
    /// invocation ended is written at once, in a document of its own, with the default
    /// dimensions only (the invocation's own dimensions and metadata were written and cleared
    /// with its last document): await the task in the handler when its values must carry them.
    /// Dimensions and metadata such a task adds then are on the documents of the metrics it
    /// adds after them, and on none if none follows: each is warned about, with its name. Its
    /// [`flush`](Self::flush) has nothing left to publish and writes nothing.
    pub fn current() -> Option<Metrics> {
        CURRENT.try_with(Clone::clone).ok()
    }

    pub(crate) fn with_current<R>(f: impl FnOnce(&Metrics) -> R) -> Option<R> {
        CURRENT.try_with(f).ok()
    }

    /// Runs `future` with this handle as the current invocation's, so that the crate-level
    /// functions and the `metrics` facade recorder add to it.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Runs the synchronous `f` with this handle as the current invocation's.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// Adds a value to the metric `name` at standard (60-second) resolution. Adding the same
    /// metric again adds another value (a document holds up to 100 per metric).
    ///
    /// # Errors
    /// An invalid name or value, another unit than the metric already has, or a name already
    /// used by a dimension or metadata.
    pub fn add_metric(&self, name: &str, value: f64, unit: Unit) -> Result<(), Error> {
        self.add_metric_with_resolution(name, value, unit, Resolution::Standard)
    }

    /// Adds a value to the metric `name` at the given storage resolution.
    ///
    /// # Errors
    /// As [`add_metric`](Self::add_metric), and another resolution than the metric already has.
    pub fn add_metric_with_resolution(
        &self,
        name: &str,
        value: f64,
        unit: Unit,
        resolution: Resolution,
    ) -> Result<(), Error> {
        let name = validate::metric_name(name)?;
        validate::value(name, value)?;
        check_log_level_keys(&self.shared.settings, name)?;
        if self.locked_here() {
            let name = name.to_owned();
            self.defer(move |metrics| {
                metrics.add_metric_with_resolution(&name, value, unit, resolution)
            });
            return Ok(());
        }
        let mut state = self.lock();
        self.add_to_main(
            &mut state,
            name,
            unit,
            resolution,
            value,
            Combine::Append,
            Origin::AddMetric,
        )?;
        drop(state);
        self.write_if_ended();
        Ok(())
    }

    /// Adds a value to the invocation's main document, writing it first if it is full.
    // Private, with two callers: a struct for the arguments would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn add_to_main(
        &self,
        state: &mut State,
        name: &str,
        unit: Unit,
        resolution: Resolution,
        value: f64,
        combine: Combine,
        origin: Origin,
    ) -> Result<(), Error> {
        if state.dimension_value(name).is_some() {
            return Err(collision(name, "a dimension"));
        }
        if state.metadata.contains_key(name) {
            return Err(collision(name, "metadata"));
        }
        validate::value(name, state.metrics.combined(name, value, combine, origin))?;
        if state
            .metrics
            .prepare(name, unit, resolution, combine, origin)?
        {
            state.metrics.remember_kinds();
            self.write_main(state);
        }
        state
            .metrics
            .insert(name, unit, resolution, value, combine, origin);
        Ok(())
    }

    /// Adds a dimension to the main dimension set of this invocation's documents.
    ///
    /// An empty name or value is skipped with a warning (CloudWatch would drop the whole
    /// document's dimensions); a new value for an existing dimension replaces it with a warning,
    /// until the invocation's metrics are flushed (at its end, or by [`flush`](Self::flush)):
    /// `service` and the default dimensions too, in every document of the invocation (the
    /// `metrics` facade's labelled ones included) but a [`single_metric`](Self::single_metric)'s,
    /// which carries the layer's configured values, as Python's `single_metric` carries its
    /// configured service (the next invocation has the configured values again).
    /// A value CloudWatch refuses (not printable ASCII, such as `Zürich`, or over 1024
    /// characters) is kept as metadata under the same name instead, with a warning, so the
    /// invocation's metrics are still written: you never choose between the metric and the
    /// value. Such a value for a dimension added in this invocation replaces it (the dimension
    /// leaves its sets, the value is metadata), and a valid value after it makes the name a
    /// dimension again.
    ///
    /// # Errors
    /// An invalid name, a 31st dimension in the set (30 with `service`), a name already used
    /// by a metric or metadata, or a value CloudWatch refuses for `service` or a default
    /// dimension (set when the layer was built, they stay dimensions: `InvalidDimension`, with
    /// the rule the value breaks).
    pub fn add_dimension(&self, name: &str, value: &str) -> Result<(), Error> {
        if self.locked_here() {
            let (name, value) = (name.to_owned(), value.to_owned());
            self.defer(move |metrics| metrics.add_dimension(&name, &value));
            return Ok(());
        }
        match validate::dimension(name, value)? {
            DimensionCheck::Skip => {
                warn_skipped_dimension(name);
                return Ok(());
            }
            DimensionCheck::RefusedValue(reason) => {
                return self.dimension_as_metadata(name, value, reason);
            }
            DimensionCheck::Valid => {}
        }
        check_log_level_keys(&self.shared.settings, name)?;
        let mut state = self.lock();
        state.check_free_for_dimension(name)?;
        let in_main_set = state.dimension_sets.main().iter().any(|n| n == name);
        let replaced = state.dimension_value(name).map_or(0, escaped_len);
        let added = escaped_len(value).saturating_sub(replaced)
            + if in_main_set {
                0
            } else {
                2 * escaped_len(name) + 9
            };
        state.check_context_room(name, added, state.refused_bytes(name))?;
        if !in_main_set && state.dimension_sets.main().len() > MAX_DIMENSIONS {
            return Err(Error::TooManyDimensions {
                name: name.to_owned(),
                limit: MAX_DIMENSIONS,
            });
        }
        // Every check passed: a refused value's metadata goes only now (an error leaves it;
        // found by a review).
        state.forget_refused_dimension(name);
        if !in_main_set {
            let main = state.dimension_sets.main();
            // `service` stays last, as Powertools for Python writes the set.
            let at = if self.shared.settings.service.is_some() {
                main.len().saturating_sub(1)
            } else {
                main.len()
            };
            let name_owned = state.owned(name);
            state.dimension_sets.insert_into_main(at, name_owned);
        }
        state.set_dimension_value(name, value);
        let late = self.ended();
        drop(state);
        if late {
            warn_added_after_end("dimension", name);
        }
        Ok(())
    }

    /// Whether `name` is a dimension every document has: a default one, or `service`.
    fn is_configured_dimension(&self, name: &str) -> bool {
        let settings = &self.shared.settings;
        (name == SERVICE && settings.service.is_some())
            || settings
                .default_dimensions
                .iter()
                .any(|(default, _)| default == name)
    }

    /// Keeps a dimension value CloudWatch would refuse as metadata, and says so.
    fn dimension_as_metadata(
        &self,
        name: &str,
        value: &str,
        reason: &'static str,
    ) -> Result<(), Error> {
        let value_json = Value::from(value);
        let (replaced, late) = {
            // One lock from the checks to the change: an error leaves the invocation as it
            // was (a first version removed the dimension, then found no room for the metadata;
            // found by a review).
            let mut state = self.lock();
            let (added, freed) = self.check_refused(&state, name, (value, reason), &value_json)?;
            state.check_context_room(name, added, freed)?;
            (
                self.apply_refused(&mut state, name, value_json),
                self.ended(),
            )
        };
        warn_refused(name, value, reason, replaced.as_deref());
        if late {
            warn_added_after_end("dimension", name);
        }
        Ok(())
    }

    /// Whether `name`'s refused value `value` can be kept as metadata, replacing the dimension
    /// of that name if the invocation added one: the bytes it adds to every document, and the
    /// bytes it frees (the dimension it replaces, an earlier refused value).
    fn check_refused(
        &self,
        state: &State,
        name: &str,
        (value, reason): (&str, &'static str),
        value_json: &Value,
    ) -> Result<(usize, usize), Error> {
        if state.metadata.contains_key(name) && !state.refused_dimensions.contains(name) {
            return Err(collision(name, "metadata"));
        }
        let is_dimension = state.dimension_value(name).is_some();
        // A new value replaces a dimension's, and this one is kept as metadata: it replaces
        // the dimension, except one set at build, which every document has. Refused with the
        // rule it breaks (it said the name was "already used as a default dimension", for the
        // service too: found by an attack from the docs).
        if is_dimension && self.is_configured_dimension(name) {
            return Err(Error::InvalidDimension {
                name: name.to_owned(),
                value: value.to_owned(),
                reason: configured_refusal(reason, name == SERVICE),
            });
        }
        self.check_metadata_key(state, name)?;
        let freed = state
            .metadata
            .get(name)
            .map_or(0, |old| json_len(name, old))
            + if is_dimension {
                state.dimension_bytes(name)
            } else {
                0
            };
        Ok((json_len(name, value_json), freed))
    }

    /// Keeps `name`'s refused value as metadata (checked by [`check_refused`]), and returns
    /// the value of the dimension it replaces.
    fn apply_refused(&self, state: &mut State, name: &str, value: Value) -> Option<String> {
        let replaced = if state.dimension_value(name).is_some() {
            state.remove_added_dimension(name, &self.shared.settings.default_dimensions)
        } else {
            None
        };
        insert_metadata(state, name, value);
        state.refused_dimensions.insert(name.to_owned());
        replaced
    }

    /// Adds another dimension set: the default dimensions plus `dimensions` (without `service`,
    /// as Powertools for Python writes it), so that the same metrics are also aggregated by this
    /// combination. Values CloudWatch refuses are kept as metadata, as in
    /// [`add_dimension`](Self::add_dimension). CloudWatch's limit of 30 dimensions holds per
    /// set, not across the sets of a document: Powertools for Python refuses a set that brings
    /// the names of all its sets past 29, and this writes it (see the README's compatibility
    /// table).
    ///
    /// ```
    /// # use powertools_metrics::{MemorySink, MetricsLayer, Unit};
    /// # let sink = MemorySink::new();
    /// # let layer = MetricsLayer::builder().namespace("Bakery").service("orders").sink(sink.clone()).build()?;
    /// let metrics = layer.new_metrics();
    /// metrics.add_dimension("location", "Lyon")?;
    /// metrics.add_dimensions([("country", "FR"), ("channel", "web")])?;
    /// metrics.add_metric("OrdersPlaced", 1.0, Unit::Count)?;
    /// metrics.flush()?;
    /// assert_eq!(
    ///     sink.documents()[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
    ///     serde_json::json!([["location", "service"], ["country", "channel"]])
    /// );
    /// # Ok::<(), powertools_metrics::Error>(())
    /// ```
    ///
    /// No dimensions at all add no set, with a warning, as in Powertools for Python. A set given
    /// again, in the same or another order, is written once (Python writes each copy; to
    /// CloudWatch, whose metric identity ignores the order, each copy publishes every value to
    /// the same metric again).
    ///
    /// # Errors
    /// As [`add_dimension`](Self::add_dimension), for each dimension; nothing is added then.
    pub fn add_dimensions<'a>(
        &self,
        dimensions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Error> {
        if self.locked_here() {
            let owned: Vec<(String, String)> = dimensions
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            self.defer(move |metrics| metrics.add_owned_dimensions(&owned));
            return Ok(());
        }
        // A name given twice takes its last value, as `add_dimension` called twice keeps (and
        // says), before anything is checked or applied.
        let mut given: Vec<(&str, &str)> = Vec::new();
        for (name, value) in dimensions {
            match given.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, kept)) => {
                    if *kept != value {
                        tracing::warn!(
                            dimension = name,
                            old = *kept,
                            new = value,
                            "Dimension is being overwritten"
                        );
                    }
                    *kept = value;
                }
                None => given.push((name, value)),
            }
        }
        if given.is_empty() {
            // Python's words (it was silent: found by an attack from the docs).
            tracing::warn!("Empty dimensions dictionary provided");
            return Ok(());
        }
        let mut valid = Vec::new();
        let mut refused = Vec::new();
        for (name, value) in given {
            match validate::dimension(name, value)? {
                DimensionCheck::Skip => warn_skipped_dimension(name),
                DimensionCheck::RefusedValue(reason) => refused.push((name, value, reason)),
                DimensionCheck::Valid => {
                    check_log_level_keys(&self.shared.settings, name)?;
                    valid.push((name, value));
                }
            }
        }
        if valid.is_empty() && refused.is_empty() {
            return Ok(());
        }
        let mut replaced = Vec::with_capacity(refused.len());
        let late = {
            let mut state = self.lock();
            // Every check, then every change: on an error nothing is added (the refused values
            // were kept before the valid ones were checked; found by a review). The room counts
            // what the call adds and what it frees, together.
            let (mut added, mut freed) = (0, 0);
            let mut refused_values = Vec::with_capacity(refused.len());
            for (name, value, reason) in &refused {
                let value_json = Value::from(*value);
                let (adds, frees) =
                    self.check_refused(&state, name, (value, reason), &value_json)?;
                added += adds;
                freed += frees;
                refused_values.push(value_json);
            }
            let set = if valid.is_empty() {
                None
            } else {
                if self.shared.settings.service.is_some()
                    && valid.iter().any(|(name, _)| *name == SERVICE)
                {
                    // A set of its own would give the main set's `service` its value too (a
                    // document has one value per name): Python's sets never carry the service.
                    return Err(collision(SERVICE, "the service dimension"));
                }
                let mut set: Vec<String> = self
                    .shared
                    .settings
                    .default_dimensions
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect();
                for (name, _) in &valid {
                    state.check_free_for_dimension(name)?;
                    if !set.iter().any(|existing| existing == name) {
                        set.push((*name).to_owned());
                    }
                }
                if set.len() > MAX_DIMENSIONS + 1 {
                    return Err(Error::TooManyDimensions {
                        name: set.last().cloned().unwrap_or_default(),
                        limit: MAX_DIMENSIONS,
                    });
                }
                // New values count for a set already there too (they were not checked then,
                // and a document passed 256 KB; found by a review).
                for (name, value) in &valid {
                    added += match state.dimension_value(name) {
                        Some(old) => escaped_len(value).saturating_sub(escaped_len(old)),
                        None => dimension_len(name, value),
                    };
                    freed += state.refused_bytes(name);
                }
                if !state.dimension_sets.contains(&set) {
                    added += set.iter().map(|name| escaped_len(name) + 3).sum::<usize>() + 3;
                }
                Some(set)
            };
            let names: Vec<&str> = refused
                .iter()
                .map(|(name, _, _)| *name)
                .chain(valid.iter().map(|(name, _)| *name))
                .collect();
            state.check_context_room(&names.join(","), added, freed)?;
            for ((name, value, reason), json) in refused.iter().zip(refused_values) {
                let old = self.apply_refused(&mut state, name, json);
                replaced.push((*name, *value, *reason, old));
            }
            if let Some(set) = set {
                for (name, value) in valid {
                    state.forget_refused_dimension(name);
                    state.set_dimension_value(name, value);
                }
                state.dimension_sets.push(set);
            }
            self.ended().then(|| names.join(","))
        };
        for (name, value, reason, old) in replaced {
            warn_refused(name, value, reason, old.as_deref());
        }
        if let Some(names) = late {
            warn_added_after_end("dimension", &names);
        }
        Ok(())
    }

    /// Adds high-cardinality context (an order id, a customer id) to this invocation's
    /// documents: searchable in CloudWatch Logs Insights, not a metric dimension, so it costs
    /// nothing in CloudWatch Metrics. JSON types are kept.
    ///
    /// `value` is a `serde_json::Value` already, so a float JSON cannot hold has become `null`
    /// before it gets here (serde_json's `From<f64>`): pass `x.to_string()` for a float that
    /// may be NaN or infinite.
    ///
    /// Adding a key again replaces its value, as a dict does in Powertools for Python; replacing
    /// a dimension value CloudWatch refused (which [`add_dimension`](Self::add_dimension) kept
    /// as metadata under the dimension's name) is warned about, with both values.
    ///
    /// # Errors
    /// [`Error::NameCollision`] when `key` is `_aws`, a metric or a dimension;
    /// [`Error::DocumentTooLarge`] when the dimensions and metadata would pass 192 KB, so that
    /// no document could hold them under CloudWatch Logs' 256 KB event limit;
    /// [`Error::MetadataTooDeep`] when `value` nests deeper than 126 levels, so that the
    /// document would be deeper than JSON readers take (as the logger refuses such a key).
    pub fn add_metadata(&self, key: &str, value: impl Into<Value>) -> Result<(), Error> {
        let value = value.into();
        if powertools_core::json_depth::nests_deeper_than(
            &value,
            powertools_core::json_depth::MAX_VALUE_DEPTH,
        ) {
            return Err(Error::MetadataTooDeep {
                key: key.to_owned(),
                limit: powertools_core::json_depth::MAX_VALUE_DEPTH,
            });
        }
        if self.locked_here() {
            let key = key.to_owned();
            self.defer(move |metrics| metrics.add_metadata(&key, value));
            return Ok(());
        }
        let (refused, late) = {
            let mut state = self.lock();
            if state.dimension_value(key).is_some() {
                return Err(collision(key, "a dimension"));
            }
            self.check_metadata_key(&state, key)?;
            let replaced = state.metadata.get(key).map_or(0, |old| json_len(key, old));
            state.check_context_room(key, json_len(key, &value), replaced)?;
            // The caller's own metadata now: a refused dimension value there is replaced, which
            // the caller never set as metadata, so it is said (after the lock).
            let refused = state
                .refused_dimensions
                .remove(key)
                .then(|| state.metadata.get(key))
                .flatten()
                .filter(|old| **old != value)
                .map(|old| (shown_value(old), shown_value(&value)));
            insert_metadata(&mut state, key, value);
            (refused, self.ended())
        };
        if late {
            warn_added_after_end("metadata", key);
        }
        if let Some((old, value)) = refused {
            tracing::warn!(
                dimension = key,
                old,
                value,
                "add_metadata replaces the value of this dimension that CloudWatch refused and \
                 that was kept as metadata: the documents carry the new value only"
            );
        }
        Ok(())
    }

    /// Whether `key` can name metadata, whatever its dimension (the caller checks that): not
    /// the envelope, a key Lambda's log-level filter reads, or a metric.
    fn check_metadata_key(&self, state: &State, key: &str) -> Result<(), Error> {
        if key == ENVELOPE_KEY {
            return Err(collision(key, "the EMF envelope"));
        }
        check_log_level_keys(&self.shared.settings, key)?;
        if state.is_metric(key) {
            return Err(collision(key, "a metric"));
        }
        Ok(())
    }

    /// Sets the timestamp of this invocation's documents (by default, the time each is written).
    ///
    /// It is checked again as each document is written: one that has left CloudWatch's window
    /// by then (a long invocation, a handle flushed late) would have the document dropped, so
    /// that document is written at the moment of writing instead, with a warning. (Powertools
    /// for Python checks only here.)
    ///
    /// # Errors
    /// [`Error::InvalidTimestamp`] more than 14 days in the past or 2 hours in the future, which
    /// CloudWatch would drop.
    pub fn set_timestamp(&self, timestamp: SystemTime) -> Result<(), Error> {
        validate::timestamp(timestamp, SystemTime::now())?;
        if self.locked_here() {
            self.defer(move |metrics| metrics.set_timestamp(timestamp));
            return Ok(());
        }
        self.lock().timestamp = Some(timestamp);
        Ok(())
    }

    /// Gives the invocation's state back to its layer, reset, for a later invocation; unless a
    /// clone of this handle is still alive (a task kept it), or a panic poisoned the state.
    pub(crate) fn recycle(mut self, recycled: &Recycled) {
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return;
        };
        let Ok(state) = shared.state.get_mut() else {
            return;
        };
        state.reset(&shared.settings);
        if !state.is_small() {
            // Kept, it would hold its largest lists for the life of the layer.
            return;
        }
        *shared.ended.get_mut() = false;
        recycled.put(self.shared);
    }

    /// Whether the layer's last flush of the invocation has run: read with the state locked, so
    /// that what was just added is in that flush (`false`) or after it (`true`), never both.
    fn ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// Whether the state holds no value to write ([`State::holds_no_value`]).
    fn nothing_waits(&self) -> bool {
        self.lock().holds_no_value()
    }

    /// After the invocation ended, writes what was just added instead of waiting for a flush
    /// that will not come.
    fn write_if_ended(&self) {
        if !self.shared.ended.load(Ordering::Acquire) {
            return;
        }
        // Re-entered from the sink (or a subscriber) while this thread writes a late value's
        // documents: the value is left to the write under way, which writes it after its own.
        // A sink that records a metric for each document it writes otherwise made each late
        // write add another, written at once in turn, until the stack overflowed and the
        // process aborted (found by an attack from the docs).
        // The mark is the invocation's: another invocation's late value, added meanwhile (by a
        // sink that records in the invocation current where it writes), is written as any is
        // (a review found it left behind, unsaid, under a mark of the thread's).
        let Some(_writing) = WritingLate::start(self.address()) else {
            return;
        };
        if self.nothing_waits() {
            return;
        }
        say_late(|| {
            tracing::warn!(
                "a metric was added after its invocation ended (from a task that outlived it): \
                 it is written in a document of its own"
            );
        });
        for _ in 0..LATE_WRITE_ROUNDS {
            let mut state = self.lock();
            if state.holds_no_value() {
                return;
            }
            self.write_main(&mut state);
            let mut labelled = std::mem::take(&mut state.labelled);
            for (labels, metrics) in &labelled {
                self.write_labelled(&state, labels, metrics);
            }
            // Emptied, each keeping its gauges' levels for the next late value.
            labelled.retain(|_, metrics| {
                metrics.clear();
                metrics.has_levels()
            });
            state.labelled = labelled;
            // Letting go runs the calls deferred while the documents were written: the values
            // the sink added, written in the next round.
            drop(state);
        }
        if !self.nothing_waits() {
            say_late(|| {
                tracing::warn!(
                    "a metric added while the documents of a value added after the invocation \
                     ended were written (by the sink, for each document it writes) is written \
                     with the next value added after the invocation ended: writing it at once \
                     would make the sink add another, without end"
                );
            });
        }
    }

    /// Writes the documents, then clears metrics, dimensions (back to the defaults), metadata
    /// and the timestamp. The layer calls it at the end of every invocation. On a handle that
    /// outlived its invocation it writes only what waits (the metrics such a handle adds are
    /// written at once, but for what a sink adds while it writes them, below; what it added
    /// stays for its next metrics, and there is no empty invocation to warn about or fail), see
    /// [`current`](Self::current).
    ///
    /// With no metric since the last flush it writes nothing and warns (the layer's first such
    /// flush only), or returns [`Error::EmptyMetrics`] if `raise_on_empty_metrics` is set.
    ///
    /// A value added while the flush writes (by the sink, or by a log subscriber that records
    /// metrics, for a warning the flush logs) is added once the flush has let go of the
    /// invocation's state: it goes into the next flush, or, after the layer's last one, is
    /// written at once. A value the sink adds while it writes such a late value's document is
    /// written right after it; one it adds while writing that one is written with the next
    /// value added late, with a warning (a sink that records a metric for each document it
    /// writes would otherwise write without end).
    ///
    /// # Errors
    /// [`Error::EmptyMetrics`], as above.
    pub fn flush(&self) -> Result<(), Error> {
        if self.locked_here() {
            self.defer(Metrics::flush);
            return Ok(());
        }
        self.flush_then(false, false).map(drop)
    }

    /// Writes one metric at once, in a document of its own with the default dimensions (and
    /// `service`) and `dimensions`, leaving this invocation's metrics and dimensions as they are:
    /// Powertools for Python's `single_metric`, for a value whose dimension differs from the
    /// invocation's (a batch record's tenant, where `add_dimension` would give every metric of
    /// the invocation the last record's). Unlike Python's, the default dimensions are on it
    /// without being passed, as they are on every document the layer writes.
    ///
    /// ```
    /// # use powertools_metrics::{MemorySink, MetricsLayer, Unit};
    /// # let sink = MemorySink::new();
    /// # let layer = MetricsLayer::builder().namespace("Bakery").service("orders").sink(sink.clone()).build()?;
    /// let metrics = layer.new_metrics();
    /// for tenant in ["acme", "globex"] {
    ///     metrics.single_metric("OrderProcessed", 1.0, Unit::Count, [("tenant", tenant)])?;
    /// }
    /// metrics.add_metric("BatchSize", 2.0, Unit::Count)?;
    /// metrics.flush()?;
    /// let documents = sink.documents();
    /// assert_eq!(documents[0]["tenant"], "acme");
    /// assert_eq!(documents[1]["tenant"], "globex");
    /// // The invocation's own document has no tenant
    /// assert!(documents[2].get("tenant").is_none());
    /// assert_eq!(documents[2]["BatchSize"], 2.0);
    /// # Ok::<(), powertools_metrics::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`add_dimension`](Self::add_dimension) for each dimension, and
    /// [`Error::InvalidDimension`] for a dimension `add_dimension` would keep as metadata (a
    /// value that is not printable ASCII, or over 1024 characters) or skip (an empty name or
    /// value): the dimension is the point of a single metric. As [`add_metric`](Self::add_metric)
    /// for the value. Nothing is written then.
    pub fn single_metric<'a>(
        &self,
        name: &str,
        value: f64,
        unit: Unit,
        dimensions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Error> {
        let single = Metrics::new(Arc::clone(&self.shared.settings));
        for (dimension, dimension_value) in dimensions {
            // The dimension is the point of a single metric: one CloudWatch would not take is
            // refused, where `add_dimension` keeps it as metadata or skips it with a warning and
            // the value would count for the series without it (found by a review).
            match crate::validate::dimension(dimension, dimension_value)? {
                crate::validate::DimensionCheck::Valid => {}
                crate::validate::DimensionCheck::Skip => {
                    return Err(Error::InvalidDimension {
                        name: dimension.to_owned(),
                        value: dimension_value.to_owned(),
                        reason: "a single metric's dimension needs a name and a value",
                    });
                }
                crate::validate::DimensionCheck::RefusedValue(reason) => {
                    return Err(Error::InvalidDimension {
                        name: dimension.to_owned(),
                        value: dimension_value.to_owned(),
                        reason,
                    });
                }
            }
            single.add_dimension(dimension, dimension_value)?;
        }
        single.add_metric(name, value, unit)?;
        single.flush()?;
        // The invocation published a metric: not one without metrics at its end (found by a
        // review: `raise_on_empty_metrics` failed an invocation of single metrics only).
        if self.locked_here() {
            self.defer(|metrics| {
                metrics.note_nested_documents();
                Ok(())
            });
        } else {
            self.note_nested_documents();
        }
        Ok(())
    }

    /// The layer's last flush of an invocation: flushes, and marks the invocation ended before
    /// it lets go of the state, so that a value a task adds meanwhile is either in this flush
    /// or written at once, never left behind in between. From then on each added value is
    /// written at once, so a task that outlived its invocation never loses one. `true` when the
    /// invocation wrote a document (in this flush or before it).
    pub(crate) fn flush_and_end(&self) -> Result<bool, Error> {
        self.flush_then(true, false)
    }

    /// [`flush_and_end`](Self::flush_and_end) of an invocation cancelled before its handler
    /// ended (its future dropped): not one without metrics, whatever it added. It warned "No
    /// application metrics to publish", or failed with `EmptyMetrics` under
    /// `raise_on_empty_metrics` (found by a review).
    pub(crate) fn flush_and_end_cancelled(&self) -> Result<bool, Error> {
        self.flush_then(true, true)
    }

    /// A [`MetricsLayer`](crate::MetricsLayer) nested inside this invocation's (the facade's
    /// stack around a layer of the caller's) wrote documents for it: this one's flush does not
    /// report the invocation as one without metrics.
    pub(crate) fn note_nested_documents(&self) {
        self.lock().wrote_since_flush = true;
    }

    fn flush_then(&self, end: bool, cancelled: bool) -> Result<bool, Error> {
        let mut state = self.lock();
        // A flush after the invocation ended (a task's, with a handle that outlived it): the
        // metrics it adds are written at once, so there is nothing of the invocation's to
        // publish, and no empty invocation to warn about (nor to use up the layer's one
        // warning, which the next invocation without metrics should get). The dimensions and
        // metadata it added stay for the metrics it adds next, as `add_dimension` says.
        if !end && self.ended() {
            // What waits (a value a sink added while it wrote late documents) is written, as
            // a late value is.
            drop(state);
            self.write_if_ended();
            return Ok(false);
        }
        // Ended already by the exit step (`SIGTERM` with the invocation running), which wrote
        // what it had: not an invocation without metrics (it warned, or failed with
        // `raise_on_empty_metrics`; found by a review).
        if end && self.ended() {
            return Ok(true);
        }
        let wrote_main = !state.metrics.is_empty();
        self.write_main(&mut state);
        let labelled = std::mem::take(&mut state.labelled);
        // The metadata every labelled document left out: with no document of the invocation's
        // own, it is in none.
        let mut left_out: Option<Vec<String>> = None;
        for (labels, metrics) in &labelled {
            let left = self.write_labelled(&state, labels, metrics);
            match &mut left_out {
                Some(keys) => keys.retain(|key| left.contains(key)),
                None => left_out = Some(left),
            }
        }
        if let Some(keys) =
            left_out.filter(|keys| !keys.is_empty() && !state.wrote_main_since_flush)
        {
            tracing::warn!(
                metadata_keys = ?keys,
                "metadata in no document: the invocation wrote no metric of its own (only \
                 `metrics` facade metrics with labels), and their documents left these keys out \
                 (a label of the same name, or CloudWatch's 256 KB limit). Add a metric with \
                 add_metric, or rename the keys"
            );
        }
        let wrote_any = state.wrote_since_flush || wrote_main || !labelled.is_empty();
        // Kept across the handler's own flushes (`reset` leaves it), taken by the last.
        let flushed_before = state.flushed_before;
        state.flushed_before = !end && (flushed_before || wrote_any);
        if end {
            // The gauges' levels stay for what a task that outlived the invocation changes
            // (written at once, going on from them); a later invocation's `reset` drops them.
            let mut levels = std::mem::take(&mut state.metrics);
            levels.end_keeping_levels();
            // Pushed into a new list: collected from `labelled`, the list would keep its
            // capacity, and a state past 128 label sets is not recycled (found by a review).
            let mut groups = IndexMap::new();
            for (labels, mut metrics) in labelled {
                metrics.end_keeping_levels();
                if metrics.has_levels() {
                    groups.insert(labels, metrics);
                }
            }
            state.reset(&self.shared.settings);
            state.metrics = levels;
            state.labelled = groups;
            self.shared.ended.store(true, Ordering::Release);
        } else {
            state.reset(&self.shared.settings);
        }
        drop(state);
        let settings = &self.shared.settings;
        if wrote_any || settings.disabled || cancelled {
            return Ok(wrote_any);
        }
        if end && flushed_before {
            return Ok(true);
        }
        // Not for a replay: the handler did not run again, so it added nothing, and failing it
        // would fail every retry of a call that succeeded (an API client's 502 for good; an SQS
        // message retried into its dead-letter queue). Python's `log_metrics` raises there.
        if settings.raise_on_empty_metrics && !powertools_core::failure::response_replayed() {
            return Err(Error::EmptyMetrics);
        }
        if settings.warned_empty.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        tracing::warn!(
            "No application metrics to publish. The cold-start metric may be published if enabled. \
             If application metrics should never be empty, consider using raise_on_empty_metrics"
        );
        Ok(false)
    }

    /// Writes the cold-start document: `ColdStart` = 1 (Count), with the dimensions
    /// `function_name` and `service` only, as Powertools for Python writes it, so that one
    /// ColdStart alarm sees functions in every language.
    pub(crate) fn write_cold_start(&self, context_function_name: &str) {
        let settings = &self.shared.settings;
        if settings.disabled {
            return;
        }
        let function_name = settings
            .function_name
            .as_deref()
            .unwrap_or(context_function_name);
        let mut dimensions = Vec::with_capacity(2);
        let mut metadata = Map::new();
        match validate::dimension("function_name", function_name) {
            Ok(DimensionCheck::Valid) => {
                dimensions.push(("function_name".to_owned(), function_name.to_owned()));
            }
            Ok(DimensionCheck::RefusedValue(reason)) => {
                // Kept, but not as a dimension CloudWatch would refuse the document for.
                tracing::warn!(
                    function_name,
                    reason,
                    "CloudWatch refuses this function_name as a dimension value: the ColdStart \
                     document carries it as metadata"
                );
                metadata.insert("function_name".to_owned(), Value::from(function_name));
            }
            Ok(DimensionCheck::Skip) | Err(_) => {}
        }
        if let Some(service) = &settings.service {
            dimensions.push((SERVICE.to_owned(), service.clone()));
        }
        let set = [dimensions.iter().map(|(name, _)| name.clone()).collect()];
        let mut table = MetricTable::default();
        table.insert(
            "ColdStart",
            Unit::Count,
            Resolution::Standard,
            1.0,
            Combine::Append,
            Origin::AddMetric,
        );
        self.write_document(&Document {
            timestamp_ms: epoch_ms(SystemTime::now()),
            namespace: &settings.namespace,
            log_level: self.log_level_keys(),
            dimension_sets: &set,
            dimensions: &dimensions,
            metadata: &metadata,
            metrics: table.metrics(),
        });
    }

    /// Whether this invocation's layer writes the cold start to the metric `settings` would
    /// write it to: the same namespace, and the same dimensions (service, and function name:
    /// both from the context, or both set to the same name).
    pub(crate) fn writes_cold_start_like(&self, settings: &Settings) -> bool {
        let own = &self.shared.settings;
        own.capture_cold_start_metric
            && !own.disabled
            && own.namespace == settings.namespace
            && own.service == settings.service
            && own.function_name == settings.function_name
    }

    fn log_level_keys(&self) -> Option<LogLevelKeys> {
        self.shared
            .settings
            .log_level_filter
            .map(|level| LogLevelKeys { level })
    }

    /// Writes `document`, split by metrics into as many documents as it takes to keep each
    /// under CloudWatch Logs' event limit. `true` when the metadata was left out of a document
    /// to keep it under the limit.
    fn write_document(&self, document: &Document<'_>) -> bool {
        let line = document.to_line();
        let fits = line.len() <= MAX_DOCUMENT_BYTES;
        if fits || (document.metrics.len() < 2 && document.metadata.is_empty()) {
            self.shared.settings.sink.write_document(&line);
            crate::document::recycle_line(line);
            return false;
        }
        crate::document::recycle_line(line);
        if document.metrics.len() < 2 {
            // One metric cannot be split. Its document is over the limit only with labels (which
            // the metadata's cap does not count) and the metadata a labelled document repeats:
            // the metric goes without the metadata, which the invocation's own document holds.
            tracing::warn!(
                metadata_keys = ?document.metadata.keys().collect::<Vec<_>>(),
                metric = document.metrics.first().map(|metric| metric.name.as_str()),
                "metadata left out of a metric's document: with its dimensions it would pass \
                 CloudWatch's 256 KB, and CloudWatch would drop it"
            );
            self.write_document(&Document {
                metadata: &Map::new(),
                ..*document
            });
            return true;
        }
        let (first, second) = document.metrics.split_at(document.metrics.len() / 2);
        let mut left_out = false;
        for metrics in [first, second] {
            left_out |= self.write_document(&Document {
                metrics,
                ..*document
            });
        }
        left_out
    }

    /// Adds a value from the `metrics` facade: labels make a document of their own, so that they
    /// never leak into the invocation's other metrics.
    #[cfg_attr(not(feature = "recorder"), allow(dead_code))]
    pub(crate) fn record_facade(
        &self,
        name: &str,
        labels: &[(String, String)],
        unit: Unit,
        value: f64,
        combine: Combine,
        origin: Origin,
    ) -> Result<(), Error> {
        let name = validate::metric_name(name)?;
        validate::value(name, value)?;
        check_log_level_keys(&self.shared.settings, name)?;
        if self.locked_here() {
            let (name, labels) = (name.to_owned(), labels.to_vec());
            self.defer(move |metrics| {
                metrics.record_facade(&name, &labels, unit, value, combine, origin)
            });
            return Ok(());
        }
        let mut state = self.lock();
        if labels.is_empty() {
            self.add_to_main(
                &mut state,
                name,
                unit,
                Resolution::Standard,
                value,
                combine,
                origin,
            )?;
            drop(state);
            self.write_if_ended();
            return Ok(());
        }
        let defaults = &self.shared.settings.default_dimensions;
        if labels
            .iter()
            .chain(defaults)
            .any(|(label, _)| label == name)
            || (name == SERVICE && self.shared.settings.service.is_some())
        {
            return Err(collision(name, "a dimension"));
        }
        // A label given twice is its last value: the label set of that value given once (one
        // document), not another with the same dimensions. The recorder gives labels sorted by
        // name, stably: a name's values are side by side, its last one last.
        let last_values;
        let set = if labels.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            last_values = labels
                .iter()
                .zip(labels.iter().skip(1).map(Some).chain([None]))
                .filter(|((name, _), next)| next.is_none_or(|(next, _)| next != name))
                .map(|(label, _)| label.clone())
                .collect::<Vec<_>>();
            &last_values[..]
        } else {
            labels
        };
        let index = match state.labelled.get_index_of(set) {
            Some(index) => index,
            None => {
                self.check_labels(labels)?;
                // Not for a value added after the invocation ended: each is written alone, and
                // warned about, at once, and would say it again at each value (a review).
                if !self.ended() {
                    let state = &*state;
                    warn_replaced_labels(name, labels, |label| {
                        defaults.iter().find(|(default, _)| default == label).map(
                            |(_, configured)| state.dimension_value(label).unwrap_or(configured),
                        )
                    });
                }
                state
                    .labelled
                    .insert_full(set.to_vec(), MetricTable::default())
                    .0
            }
        };
        validate::value(
            name,
            state.labelled[index].combined(name, value, combine, origin),
        )?;
        let needs_room =
            state.labelled[index].prepare(name, unit, Resolution::Standard, combine, origin)?;
        if needs_room {
            // Taken out to be written with the state borrowed, then put back cleared: the table
            // keeps its gauges' levels for the next document.
            let mut metrics = std::mem::take(&mut state.labelled[index]);
            // Its names keep their kind and unit for the rest of the invocation, as the main
            // document's do (found by an attack: a histogram's name took a gauge's value after
            // the write).
            metrics.remember_kinds();
            self.write_labelled(&state, set, &metrics);
            metrics.clear();
            state.labelled[index] = metrics;
            state.wrote_since_flush = true;
        }
        state.labelled[index].insert(name, unit, Resolution::Standard, value, combine, origin);
        drop(state);
        self.write_if_ended();
        Ok(())
    }

    fn check_labels(&self, labels: &[(String, String)]) -> Result<(), Error> {
        let settings = &self.shared.settings;
        // A label given twice is written with its last value: that one is checked, and the
        // name counted once (a review: a refused first value refused the key, and a name
        // given twice counted twice against the dimension limit).
        let is_last =
            |index: usize, name: &str| !labels[index + 1..].iter().any(|(later, _)| later == name);
        for (index, (name, value)) in labels.iter().enumerate() {
            if !is_last(index, name) {
                continue;
            }
            if name == SERVICE && settings.service.is_some() {
                // A labelled document carries the layer's service (or the one `add_dimension`
                // gave the invocation): a label cannot replace it, and its value would go to
                // that service's series as if it had no label.
                return Err(collision(name, "the service dimension"));
            }
            let reason = match validate::dimension(name, value)? {
                DimensionCheck::Valid => {
                    check_log_level_keys(&self.shared.settings, name)?;
                    continue;
                }
                DimensionCheck::Skip => "a label of a `metrics` facade metric is empty",
                DimensionCheck::RefusedValue(reason) => reason,
            };
            return Err(Error::InvalidDimension {
                name: name.clone(),
                value: value.clone(),
                reason,
            });
        }
        let defaults = &settings.default_dimensions;
        let extra = labels
            .iter()
            .enumerate()
            .filter(|(index, (name, _))| {
                is_last(*index, name) && !defaults.iter().any(|(default, _)| default == name)
            })
            .count();
        if defaults.len() + usize::from(settings.service.is_some()) + extra > MAX_DIMENSIONS + 1 {
            let past = labels
                .iter()
                .rfind(|(name, _)| !defaults.iter().any(|(default, _)| default == name));
            return Err(Error::TooManyDimensions {
                name: past.map(|(name, _)| name.to_string()).unwrap_or_default(),
                limit: MAX_DIMENSIONS,
            });
        }
        Ok(())
    }

    /// Writes the main document if it has metrics, and clears its metrics (dimensions and
    /// metadata stay for the rest of the invocation).
    fn write_main(&self, state: &mut State) {
        if state.metrics.is_empty() {
            return;
        }
        let settings = &self.shared.settings;
        if !settings.disabled {
            self.write_document(&Document {
                timestamp_ms: document_timestamp_ms(state),
                namespace: &settings.namespace,
                log_level: self.log_level_keys(),
                dimension_sets: &state.dimension_sets.written(),
                dimensions: &state.dimensions,
                metadata: &state.metadata,
                metrics: state.metrics.metrics(),
            });
        }
        state.metrics.clear();
        state.wrote_since_flush = true;
        state.wrote_main_since_flush = true;
    }

    /// Writes a labelled group's document; returns the metadata keys it left out (named like
    /// one of its dimensions or metrics, or all of them when the document would pass the size
    /// limit with them).
    fn write_labelled(
        &self,
        state: &State,
        labels: &[(String, String)],
        metrics: &MetricTable,
    ) -> Vec<String> {
        let settings = &self.shared.settings;
        if settings.disabled || metrics.is_empty() {
            return Vec::new();
        }
        // The default dimensions and the service with the values this invocation gave them
        // (`add_dimension` may replace them), as in its other documents.
        let current = |name: &str, configured: &str| {
            state.dimension_value(name).unwrap_or(configured).to_owned()
        };
        let mut dimensions: Vec<(String, String)> = settings
            .default_dimensions
            .iter()
            .map(|(name, value)| (name.clone(), current(name, value)))
            .collect();
        for (name, value) in labels {
            match dimensions.iter_mut().find(|(existing, _)| existing == name) {
                Some((_, existing)) => existing.clone_from(value),
                None => dimensions.push((name.clone(), value.clone())),
            }
        }
        if let Some(service) = &settings.service {
            dimensions.push((SERVICE.to_owned(), current(SERVICE, service)));
        }
        let set = [dimensions.iter().map(|(name, _)| name.clone()).collect()];
        let (kept, left_out): (Vec<_>, Vec<_>) = state.metadata.iter().partition(|(key, _)| {
            !dimensions.iter().any(|(name, _)| name == *key) && !metrics.contains(key)
        });
        let metadata: Map<String, Value> = kept
            .into_iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let without_metadata = self.write_document(&Document {
            timestamp_ms: document_timestamp_ms(state),
            namespace: &settings.namespace,
            log_level: self.log_level_keys(),
            dimension_sets: &set,
            dimensions: &dimensions,
            metadata: &metadata,
            metrics: metrics.metrics(),
        });
        if without_metadata {
            return state.metadata.keys().cloned().collect();
        }
        left_out.into_iter().map(|(key, _)| key.clone()).collect()
    }

    fn lock(&self) -> Locked<'_> {
        // The state stays consistent between statements; recover rather than panic.
        let guard = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        LOCKED.with_borrow_mut(|locked| locked.push(self.address()));
        Locked {
            guard,
            _after: AfterUnlock,
        }
    }

    /// The address of the state this handle shares, which tells invocations apart.
    fn address(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// [`add_dimensions`](Self::add_dimensions) of owned pairs, for a deferred call: not
    /// generic, so that the deferred call does not make another `add_dimensions` to compile.
    fn add_owned_dimensions(&self, dimensions: &[(String, String)]) -> Result<(), Error> {
        self.add_dimensions(
            dimensions
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
    }

    /// Whether this thread holds this invocation's lock now: a warning logged under it reached
    /// a subscriber that adds a value (a layer counting warnings with `metrics::counter!`), or
    /// the sink did. Locking again would wait for ever on this thread (found by an attack from
    /// the docs): the call is deferred instead ([`defer`]).
    fn locked_here(&self) -> bool {
        let address = self.address();
        LOCKED.with_borrow(|locked| locked.contains(&address))
    }

    /// Runs `call` on a clone of this handle once this thread lets go of every metrics lock it
    /// holds; an error it returns is logged then.
    fn defer(&self, call: impl FnOnce(&Metrics) -> Result<(), Error> + 'static) {
        let metrics = self.clone();
        DEFERRED.with_borrow_mut(|deferred| {
            deferred.push_back(Box::new(move || {
                if let Err(error) = call(&metrics) {
                    tracing::warn!(
                        %error,
                        "a metric added while the invocation's metrics were being written \
                         (from a log subscriber or the sink) was refused"
                    );
                }
            }));
        });
    }
}

/// How many times [`Metrics::write_if_ended`] writes in one call: the late value's documents,
/// then what the sink added while it wrote them.
const LATE_WRITE_ROUNDS: usize = 2;

/// Marks this thread as writing the late values' documents of one invocation (its state's
/// address; [`Metrics::write_if_ended`]) while it lives, even through a panic of the sink.
struct WritingLate(usize);

impl WritingLate {
    /// The mark, or `None` when this thread is writing that invocation's late values already.
    fn start(invocation: usize) -> Option<Self> {
        WRITING_LATE.with_borrow_mut(|writing| {
            if writing.contains(&invocation) {
                return None;
            }
            writing.push(invocation);
            Some(WritingLate(invocation))
        })
    }
}

impl Drop for WritingLate {
    fn drop(&mut self) {
        WRITING_LATE.with_borrow_mut(|writing| writing.retain(|&invocation| invocation != self.0));
    }
}

thread_local! {
    /// The invocations whose late values this thread is writing ([`WritingLate`]).
    static WRITING_LATE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// The invocations whose lock this thread holds, innermost last.
    static LOCKED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Calls made on this thread to an invocation whose lock it held, run once it holds none.
    static DEFERRED: RefCell<std::collections::VecDeque<Box<dyn FnOnce()>>> =
        const { RefCell::new(std::collections::VecDeque::new()) };
}

/// An invocation's state, locked: lets go of the lock when dropped, then ([`AfterUnlock`]) runs
/// the calls deferred meanwhile ([`Metrics::defer`]) once this thread holds no metrics lock.
struct Locked<'a> {
    // Dropped first (fields drop in order): the lock goes before the deferred calls run.
    guard: MutexGuard<'a, State>,
    _after: AfterUnlock,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// Marks a lock let go on this thread, and runs the deferred calls after the outermost.
struct AfterUnlock;

impl Drop for AfterUnlock {
    fn drop(&mut self) {
        let outermost = LOCKED.with_borrow_mut(|locked| {
            locked.pop();
            locked.is_empty()
        });
        if outermost {
            // In the order they were made: a gauge set twice keeps its last value (a review
            // found them run newest first).
            while let Some(call) = DEFERRED.with_borrow_mut(std::collections::VecDeque::pop_front) {
                call();
            }
        }
    }
}

/// The most bytes of a value a warning quotes: a metadata value may be up to 192 KB, and two of
/// them in one line would pass CloudWatch Logs' 256 KB event limit.
const SHOWN_VALUE_BYTES: usize = 256;

/// `value`'s JSON, cut to [`SHOWN_VALUE_BYTES`] on a character boundary (with `…`), for a
/// warning.
fn shown_value(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > SHOWN_VALUE_BYTES {
        text.truncate(powertools_core::text::floor_char_boundary(
            &text,
            SHOWN_VALUE_BYTES,
        ));
        text.push('…');
    }
    text
}

/// Says that a dimension or metadata was added after its invocation ended: it is only in the
/// documents of the metrics added after it (each written at once), none if none follows.
fn warn_added_after_end(kind: &str, key: &str) {
    say_late(|| {
        tracing::warn!(
            kind,
            key,
            "a dimension or metadata was added after its invocation ended (from a task that \
             outlived it): it goes only into the documents of metrics added after it, none if \
             none follows"
        );
    });
}

thread_local! {
    /// Set while this thread logs a warning about a value added after its invocation ended.
    static SAYING_LATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Logs a warning about a value added after its invocation ended (`say`), unless this thread is
/// logging one already: a subscriber that records a metric for each warning it sees (a
/// `metrics::counter!` of warnings, through a handle that outlived its invocation) adds a late
/// value there, whose warning reached it again, until the stack overflowed (a global subscriber
/// has no reentry guard; found by a review). The value is still written.
fn say_late(say: impl FnOnce()) {
    let _ = powertools_core::reentry::unless_reentered(&SAYING_LATE, say);
}

fn warn_skipped_dimension(name: &str) {
    tracing::warn!(
        dimension = name,
        "The dimension was not added: its name or value is empty, and CloudWatch would drop \
         every dimension of the document"
    );
}

/// Says that a refused dimension value is kept as metadata (replacing the dimension's value
/// `replaced`), once it is true.
fn warn_refused(name: &str, value: &str, reason: &str, replaced: Option<&str>) {
    match replaced {
        Some(old) => tracing::warn!(
            dimension = name,
            old,
            value,
            reason,
            "CloudWatch refuses this dimension value: it replaces the dimension's value as \
             metadata, and the metrics are written without this dimension"
        ),
        None => tracing::warn!(
            dimension = name,
            value,
            reason,
            "CloudWatch refuses this dimension value: it is kept as metadata instead, and the \
             metrics are written without this dimension"
        ),
    }
}

/// Inserts checked metadata, counting its bytes.
fn insert_metadata(state: &mut State, key: &str, value: Value) {
    let added = json_len(key, &value);
    let replaced = state.metadata.get(key).map_or(0, |old| json_len(key, old));
    state.metadata_bytes = state.metadata_bytes - replaced + added;
    state.metadata.insert(key.to_owned(), value);
}

/// The bytes a dimension's `"name":"value",` takes in a document.
fn dimension_len(name: &str, value: &str) -> usize {
    escaped_len(name) + escaped_len(value) + 6
}

/// The bytes `"key":value,` takes in a document.
fn json_len(key: &str, value: &Value) -> usize {
    let value_len = serde_json::to_string(value).map_or(0, |text| text.len());
    escaped_len(key) + value_len + 4
}

/// How a name or value is counted when measuring a document's repeated context.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Written {
    /// As serde_json writes it ([`escaped_len`]).
    Escaped,
    /// The most escaping can make of it, six times its length (`\u0001`), without looking at
    /// its bytes.
    AtMost,
}

impl Written {
    /// The bytes `text` is counted as.
    pub(crate) fn len(self, text: &str) -> usize {
        match self {
            Written::Escaped => escaped_len(text),
            Written::AtMost => 6 * text.len(),
        }
    }
}

/// The bytes `text` takes inside a JSON string as serde_json writes it: `"` and `\` escaped,
/// control characters as `\n` or `\u0001` (counted as written, not as given: a key of control
/// characters is six times its length in a document; found by a review).
pub(crate) fn escaped_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    // Counted without branches, which the compiler vectorizes: a branch per byte cost this
    // crate's per-invocation path about 600 instructions.
    let quoted = bytes
        .iter()
        .filter(|&&byte| byte == b'"' || byte == b'\\')
        .count();
    let control = bytes.iter().filter(|&&byte| byte < 0x20).count();
    if control == 0 {
        return bytes.len() + quoted;
    }
    let short = bytes
        .iter()
        .filter(|&&byte| matches!(byte, b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t'))
        .count();
    // `\n` and the like take two bytes, the other control characters six (`\u0001`).
    bytes.len() + quoted + short + 5 * (control - short)
}

/// The timestamp of a document written now, in epoch milliseconds: the invocation's own
/// ([`Metrics::set_timestamp`]), unless it has left CloudWatch's window since it was set (a long
/// invocation, a handle flushed late), which would have the document dropped: then the moment of
/// writing, with a warning (once per invocation; found by an attack: a document went out 300 ms
/// past 14 days without a word). Otherwise the moment of writing.
fn document_timestamp_ms(state: &State) -> u64 {
    let now = SystemTime::now();
    let Some(timestamp) = state.timestamp else {
        return epoch_ms(now);
    };
    match validate::timestamp(timestamp, now) {
        Ok(()) => epoch_ms(timestamp),
        Err(_) if state.stale_timestamp_warned.swap(true, Ordering::Relaxed) => epoch_ms(now),
        Err(error) => {
            tracing::warn!(
                set_timestamp = epoch_ms(timestamp),
                written_at = epoch_ms(now),
                "the timestamp given to set_timestamp was refused when the document was written \
                 ({error}), which CloudWatch would drop: its metrics are written at the moment of \
                 writing instead"
            );
            epoch_ms(now)
        }
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Says which labels of a `metrics` facade key replace another value: a label given twice (the
/// last value is written) or one named as a default dimension (the label's value is written
/// over the one the invocation's documents carry), as `add_dimensions` says it of a name given
/// twice (found by an attack: the first value vanished without a word). Once per label set and
/// invocation, when the set first appears. `current_default` is the value a default dimension
/// has in this invocation (`add_dimension` may have replaced it), `None` for another name.
#[cfg_attr(not(feature = "recorder"), allow(dead_code))]
fn warn_replaced_labels<'a>(
    metric: &str,
    labels: &'a [(String, String)],
    current_default: impl Fn(&str) -> Option<&'a str>,
) {
    for (index, (name, value)) in labels.iter().enumerate() {
        let later = labels[index + 1..].iter().find(|(later, _)| later == name);
        let replaced = match later {
            Some((_, later_value)) => Some((value.as_str(), later_value.as_str())),
            // A default replaced by a label: by its last value, reported at that label.
            None => current_default(name).map(|default| (default, value.as_str())),
        };
        let Some((old, new)) = replaced else {
            continue;
        };
        if old != new {
            // Values as `str` fields, which `tracing`'s formatters quote, as `add_dimension`'s
            // warning has them: a value holding ` new=…` cannot pass for another field (a
            // review).
            tracing::warn!(
                metric = powertools_core::env::shown_bare(metric).as_ref(),
                dimension = powertools_core::env::shown_bare(name).as_ref(),
                old = powertools_core::env::shown_bare(old).as_ref(),
                new = powertools_core::env::shown_bare(new).as_ref(),
                "Dimension is being overwritten"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// `escaped_len` is the length serde_json writes, for every byte that can start a char.
    #[test]
    fn escaped_len_is_what_serde_json_writes() {
        let mut samples: Vec<String> = (0_u8..0x80)
            .map(|byte| char::from(byte).to_string())
            .collect();
        samples.extend(
            [
                "",
                "web",
                "a\"b\\c",
                "\u{1}\n\t\u{1f}",
                "Zürich",
                "\u{2028}\u{7f}",
                "🥐\"\u{0}",
            ]
            .map(str::to_owned),
        );
        for text in samples {
            let written = serde_json::to_string(&text)
                .expect("a string serializes")
                .len()
                - 2;
            assert_eq!(super::escaped_len(&text), written, "{text:?}");
        }
    }

    use powertools_core::env::Env;

    use crate::{MemorySink, MetricsLayer, Unit};

    /// A layer with the namespace `Bakery` and the service `orders`, writing to `sink`.
    fn layer(sink: &MemorySink) -> MetricsLayer {
        MetricsLayer::builder()
            .namespace("Bakery")
            .service("orders")
            .sink(sink.clone())
            .env(Env::empty())
            .build()
            .unwrap()
    }

    #[test]
    fn dimension_buffers_are_reused_emptied_and_only_small_ones_kept() {
        let sink = MemorySink::new();
        let layer = layer(&sink);
        let metrics = layer.new_metrics();
        for index in 0..25 {
            let value = if index % 2 == 0 {
                "v".repeat(300)
            } else {
                format!("value-{index}")
            };
            metrics
                .add_dimension(&format!("dimension{index}"), &value)
                .unwrap();
        }
        metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
        metrics.flush().unwrap();
        {
            let state = metrics.lock();
            assert!(!state.spare.is_empty());
            assert!(state.spare.len() <= super::SPARE_STRINGS);
            assert!(
                state
                    .spare
                    .iter()
                    .all(|spare| spare.is_empty() && spare.capacity() <= super::SPARE_STRING_BYTES)
            );
            assert_eq!(state.dimension_sets.all(), [vec!["service".to_owned()]]);
        }

        metrics.add_dimension("location", "Lyon").unwrap();
        metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
        metrics.flush().unwrap();
        let document = &sink.documents()[1];
        assert_eq!(document["location"], "Lyon");
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["location", "service"])
        );
        assert!(document.get("dimension1").is_none());
    }

    #[test]
    fn a_state_that_grew_large_is_freed_not_kept_for_reuse() {
        let sink = MemorySink::new();
        let layer = layer(&sink);
        let recycled = super::Recycled::default();
        let kept = |recycled: &super::Recycled| recycled.0.lock().unwrap().len();

        let small = super::Metrics::for_invocation(&layer.settings(), &recycled);
        small.add_dimension("location", "Lyon").unwrap();
        small.add_metric("Orders", 1.0, Unit::Count).unwrap();
        small.flush_and_end().unwrap();
        small.recycle(&recycled);
        assert_eq!(kept(&recycled), 1);

        let large = super::Metrics::for_invocation(&layer.settings(), &recycled);
        assert_eq!(kept(&recycled), 0, "the kept state is reused");
        for index in 0..1000 {
            let _ = large.add_dimensions([(format!("d{index}").as_str(), "v")]);
        }
        large.add_metric("Orders", 1.0, Unit::Count).unwrap();
        large.flush_and_end().unwrap();
        large.recycle(&recycled);
        assert_eq!(kept(&recycled), 0, "a state grown to 1000 sets is not kept");
    }
}
