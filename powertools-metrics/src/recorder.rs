//! A recorder for the `metrics` crate facade that writes into the current invocation's document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString,
};

use crate::document::{Combine, Origin};
use crate::{Error, Metrics, Unit};

/// Sends `counter!`, `gauge!` and `histogram!` from the [`metrics`] facade to the EMF document of
/// the invocation that records them, so libraries instrumented with `metrics` show up in
/// CloudWatch beside the handler's own metrics.
///
/// Unlike a process-wide collector, concurrent invocations never mix: each value goes to the
/// document of the invocation whose task records it (see [`Metrics::current`]). Within one
/// document:
///
/// - a counter is the sum of its increments in the invocation (`Count`);
/// - a gauge is its last value (`None` unit unless described), and an increment after the
///   invocation's document was written at CloudWatch's 100-metric limit, or after the
///   invocation ended (from a task that outlived it, written at once), goes on from that value;
/// - a histogram keeps every sample (up to 100 per document, then a new document);
/// - a name holds one kind in a document: a gauge's value for a name a histogram (or counter, or
///   `add_metric`) already holds there is not recorded, and a warning names the kind that holds
///   it (mixing them would replace the samples, or add a gauge's step to a count);
/// - labels become dimensions, in a document of their own per label set (the same labels in
///   another order are the same set, written in the labels' name order: CloudWatch's metric
///   identity ignores the order), so that they never change the dimensions of the invocation's
///   other metrics; a label named `service` when the
///   layer has a service is refused with a warning (use `add_dimension("service", …)`, which
///   replaces it for the whole invocation); a label given twice keeps its last value (only that
///   one is checked: the label set is that value's given once), and one named as a default dimension replaces the value the invocation's
///   documents carry, each with a warning (`Dimension is being overwritten`, as
///   `add_dimensions` says it) when its label set first appears in the invocation (a default
///   replaced by `add_dimension` after that is not checked again);
/// - units given with `describe_*!` (after [`install`](Self::install)) are mapped to CloudWatch units (`Kibibytes` → `Kilobytes`,
///   …; `Nanoseconds` has no CloudWatch unit and is written as `None`).
///
/// A value recorded outside any invocation (at init, or in a task spawned without
/// [`Metrics::scope`](crate::Metrics::scope)), or one CloudWatch would refuse, is not written; a
/// warning says why: once per metric name for the first, at each call for the second.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{Layer, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_metrics::{EmfRecorder, MemorySink, MetricsLayer};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// EmfRecorder::new().install()?; // once, at init
///
/// let sink = MemorySink::new();
/// let layer = MetricsLayer::builder().namespace("Bakery").service("orders").sink(sink.clone()).build()?;
/// let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
///     metrics::counter!("CacheMisses").increment(2);
///     metrics::counter!("CacheMisses").increment(1);
///     Ok::<_, lambda_runtime::Error>(())
/// }));
/// handler.oneshot(TestContext::new().event(json!({}))).await?;
/// # powertools_tests::emf::valid_lines(&sink.lines()); // every document checked against the EMF schema
/// assert_eq!(sink.documents()[0]["CacheMisses"], 3.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct EmfRecorder {
    units: RwLock<HashMap<String, Unit>>,
}

impl EmfRecorder {
    /// A recorder without described units.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this the `metrics` facade's global recorder.
    ///
    /// # Errors
    /// [`Error::RecorderAlreadyInstalled`] if a global recorder is already set.
    pub fn install(self) -> Result<(), Error> {
        metrics::set_global_recorder(self).map_err(|_| Error::RecorderAlreadyInstalled)
    }

    fn describe(&self, key: KeyName, unit: Option<metrics::Unit>) {
        if let Some(unit) = unit {
            self.units
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    crate::validate::trimmed(key.as_str()).to_owned(),
                    cloudwatch_unit(unit),
                );
        }
    }

    fn handle(&self, key: &Key, default_unit: Unit, origin: Origin) -> Arc<FacadeMetric> {
        let unit = self
            .units
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            // Described and recorded under the metric's name, trimmed as it is written.
            .get(crate::validate::trimmed(key.name()))
            .copied()
            .unwrap_or(default_unit);
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect();
        // In name order, whatever the order given: one set of labels is one label set (one
        // document), as CloudWatch's metric identity ignores the dimensions' order (two
        // documents published a gauge's two values to one metric; found by an attack from the
        // docs). Stable, so that a label given twice keeps its last value.
        labels.sort_by(|(a, _), (b, _)| a.cmp(b));
        Arc::new(FacadeMetric {
            origin,
            name: key.name().to_owned(),
            labels,
            unit,
        })
    }
}

impl metrics::Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key, Unit::Count, Origin::Counter))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key, Unit::None, Origin::Gauge))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key, Unit::None, Origin::Histogram))
    }
}

/// A facade metric handle: it holds no value, it finds the current invocation's document each
/// time it records (a handle may outlive the invocation that registered it).
#[derive(Debug)]
struct FacadeMetric {
    origin: Origin,
    name: String,
    labels: Vec<(String, String)>,
    unit: Unit,
}

impl FacadeMetric {
    fn record(&self, value: f64, combine: Combine) {
        let recorded = Metrics::with_current(|metrics| {
            metrics.record_facade(
                &self.name,
                &self.labels,
                self.unit,
                value,
                combine,
                self.origin,
            )
        });
        match recorded {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                tracing::warn!(
                    metric = %powertools_core::env::shown_bare(&self.name),
                    %error,
                    "a `metrics` facade value was not recorded"
                );
            }
            None => warn_outside_invocation(&self.name),
        }
    }
}

/// The most metric names [`warn_outside_invocation`] names; past them, one more warning says
/// that further ones are not named.
const MAX_NAMED_OUTSIDE: usize = 64;

/// Says that a facade value recorded outside an invocation was not written, once per metric
/// name (a library recording at init time would otherwise warn on every call). It was once per
/// process: a counter at init used the one warning up, and a later one in a task spawned
/// outside the invocation's scope vanished without a word (found by an audit from the docs).
fn warn_outside_invocation(name: &str) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    static WARNED_TOO_MANY: AtomicBool = AtomicBool::new(false);
    // Everything said: no lock on every call (a review).
    if WARNED_TOO_MANY.load(Ordering::Relaxed) {
        return;
    }
    // Kept and shown by its start: a name made at run time can be a megabyte (a review).
    let name = powertools_core::env::shown_bare(name);
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned.contains(name.as_ref()) {
        return;
    }
    let named = warned.len() < MAX_NAMED_OUTSIDE;
    if named {
        warned.insert(name.clone().into_owned());
    }
    // Let go first: a subscriber that records metrics for warnings comes back here.
    drop(warned);
    if named {
        tracing::warn!(
            metric = %name,
            "a `metrics` facade value was recorded outside an invocation wrapped by MetricsLayer \
             (at init, or in a spawned task: run it in `Metrics::scope` with the invocation's \
             `Metrics::current()`) and was not written (warned once per metric name)"
        );
    } else if !WARNED_TOO_MANY.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            named = MAX_NAMED_OUTSIDE,
            "more `metrics` facade metrics were recorded outside an invocation and not written \
             than the warnings name: further ones are not named"
        );
    }
}

impl CounterFn for FacadeMetric {
    fn increment(&self, value: u64) {
        self.record(value as f64, Combine::Accumulate);
    }

    fn absolute(&self, value: u64) {
        self.record(value as f64, Combine::Replace);
    }
}

impl GaugeFn for FacadeMetric {
    fn increment(&self, value: f64) {
        self.record(value, Combine::Accumulate);
    }

    fn decrement(&self, value: f64) {
        self.record(-value, Combine::Accumulate);
    }

    fn set(&self, value: f64) {
        self.record(value, Combine::Replace);
    }
}

impl HistogramFn for FacadeMetric {
    fn record(&self, value: f64) {
        FacadeMetric::record(self, value, Combine::Append);
    }
}

fn cloudwatch_unit(unit: metrics::Unit) -> Unit {
    use metrics::Unit as M;
    match unit {
        M::Count => Unit::Count,
        M::Percent => Unit::Percent,
        M::Seconds => Unit::Seconds,
        M::Milliseconds => Unit::Milliseconds,
        M::Microseconds => Unit::Microseconds,
        M::Tebibytes => Unit::Terabytes,
        M::Gibibytes => Unit::Gigabytes,
        M::Mebibytes => Unit::Megabytes,
        M::Kibibytes => Unit::Kilobytes,
        M::Bytes => Unit::Bytes,
        M::TerabitsPerSecond => Unit::TerabitsPerSecond,
        M::GigabitsPerSecond => Unit::GigabitsPerSecond,
        M::MegabitsPerSecond => Unit::MegabitsPerSecond,
        M::KilobitsPerSecond => Unit::KilobitsPerSecond,
        M::BitsPerSecond => Unit::BitsPerSecond,
        M::CountPerSecond => Unit::CountPerSecond,
        M::Nanoseconds => Unit::None,
    }
}
