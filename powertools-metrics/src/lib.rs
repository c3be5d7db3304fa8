//! CloudWatch metrics for Rust Lambda functions in the Embedded Metric Format (EMF): one stdout
//! line per invocation that is both a searchable log and CloudWatch metrics, as Powertools for
//! AWS Lambda writes it, and never a metric lost.
//!
//! # Example
//!
//! ```
//! use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
//! use powertools_core::testing::TestContext;
//! use powertools_metrics::{MemorySink, MetricsLayer, Unit};
//! use serde_json::{Value, json};
//!
//! async fn place_order(event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
//!     let order = &event.payload;
//!     // From anywhere the handler awaits: no handle to pass around.
//!     powertools_metrics::add_dimension("location", order["location"].as_str().unwrap_or_default())?;
//!     powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
//!     powertools_metrics::add_metric("OrderValue", order["total"].as_f64().unwrap_or_default(), Unit::None)?;
//!     // High-cardinality context is metadata, not a (priced) dimension.
//!     powertools_metrics::add_metadata("order_id", order["order_id"].clone())?;
//!     Ok(json!({"accepted": true}))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lambda_runtime::Error> {
//! let sink = MemorySink::new(); // a deployed function leaves the default: stdout
//! let metrics = MetricsLayer::builder().namespace("Bakery").service("orders").sink(sink.clone()).build()?;
//! let handler = ServiceBuilder::new().layer(metrics).service(service_fn(place_order));
//!
//! let order = json!({"order_id": "o-1001", "location": "Lyon", "total": 18.5});
//! handler.oneshot(TestContext::new().event(order)).await?;
//! # powertools_tests::emf::valid_lines(&sink.lines()); // every document checked against the EMF schema
//!
//! let document = &sink.documents()[0];
//! assert_eq!(document["OrderValue"], 18.5);
//! assert_eq!(document["order_id"], "o-1001");
//! # Ok(())
//! # }
//! ```
//!
//! The document it writes (one line; wrapped here):
//!
//! ```json
//! {"_aws":{"Timestamp":1764201600000,"CloudWatchMetrics":[{"Namespace":"Bakery",
//!   "Dimensions":[["location","service"]],
//!   "Metrics":[{"Name":"OrdersPlaced","Unit":"Count"},{"Name":"OrderValue","Unit":"None"}]}]},
//!  "service":"orders","location":"Lyon","order_id":"o-1001","OrdersPlaced":1.0,"OrderValue":18.5}
//! ```
//!
//! # Overview
//!
//! - [`MetricsLayer`] gives each invocation its own document and writes it when the invocation
//!   ends: on success, on a handler error and on a panic. Concurrent invocations in one process
//!   (`lambda_runtime`'s `concurrency-tokio`, Lambda Managed Instances) never mix.
//! - [`add_metric`], [`add_dimension`], [`add_dimensions`], [`add_metadata`] and
//!   [`set_timestamp`] add to the current invocation's document from any function the handler
//!   awaits; [`Metrics`] is the explicit handle ([`Metrics::current`], [`MetricsLayer::new_metrics`]).
//! - With [`capture_cold_start_metric`](MetricsLayerBuilder::capture_cold_start_metric), the cold
//!   start writes `ColdStart` = 1 in a document of its own, with the dimensions `function_name`
//!   and `service` only, as Powertools for Python does, so it does not split the series of the
//!   other metrics and one ColdStart alarm sees functions in every language. A cold start whose
//!   event did not read as the handler's type (`powertools::run` answered it before any layer)
//!   is written by the next invocation the layers see, as a cold start they saw would be.
//! - [`EmfRecorder`] (feature `recorder`, default) sends the `metrics` facade's `counter!`,
//!   `gauge!` and `histogram!` to the current invocation's document.
//!
//! # Nothing is dropped silently
//!
//! CloudWatch drops an invalid EMF document without a word, so every rule is checked when a value
//! is added, and a bad value is a typed [`Error`]: an unknown unit or resolution, NaN or an
//! infinity or a value outside CloudWatch's -2^360..2^360, a metric re-added with another unit,
//! an invalid name or namespace, more than 30 dimensions in a set, a name used twice at the top
//! level, a timestamp CloudWatch refuses, metadata that could never fit in a log event. A
//! document never holds more than 100 metrics or 100 values of one metric: the next value writes
//! it and starts another with the same dimensions and metadata. A document that would pass
//! 256 KB (CloudWatch Logs' event limit for Lambda's output) is split by metrics. An empty
//! dimension value added during an invocation is skipped with a warning, as in Powertools
//! (CloudWatch would drop every dimension of the document); an empty default dimension, set in
//! code, fails the build instead.
//!
//! A dimension *value* CloudWatch refuses (not printable ASCII, such as `Zürich`, `€` or an
//! emoji, or over 1024 characters) comes from data, not code, so it never costs the metrics:
//! it is kept as metadata under the dimension's name, with a warning, and the document is
//! written without that dimension (replacing it, when the invocation had added it with another
//! value: a document has one value per name). (A `metrics` facade label is part of its metric's identity
//! instead: a value with such a label is not recorded, with a warning; see [`EmfRecorder`].)
//!
//! # Lambda's log-level filter
//!
//! With Advanced Logging Controls, Lambda drops application lines below the configured level,
//! and reads a line without a valid `level`, or without an RFC 3339 `timestamp`, as INFO. An EMF
//! document has neither, so at `WARN`, `ERROR` or `FATAL` every metric would vanish. When
//! `AWS_LAMBDA_LOG_LEVEL` is one of those, each document carries `"level"` set to that level
//! and an RFC 3339 `"timestamp"`, so Lambda keeps it (CloudWatch ignores members it does not
//! reference). At `INFO` and below, or without the setting, documents are exactly Powertools
//! for Python's. Whenever `AWS_LAMBDA_LOG_LEVEL` is set (at any level: Lambda reads a document's
//! `level` then, and drops one whose metadata says `"level": "DEBUG"` under `INFO`), `level` and
//! `timestamp` are refused as metric, dimension and metadata names, where Python writes them. A
//! Logs Insights query on `level` then also finds these lines at that level.
//!
//! # Configuration
//!
//! | Option | Environment variable | Default |
//! | --- | --- | --- |
//! | [`namespace`](MetricsLayerBuilder::namespace) | `POWERTOOLS_METRICS_NAMESPACE` | required: building the layer fails without it |
//! | [`service`](MetricsLayerBuilder::service) | `POWERTOOLS_SERVICE_NAME` | none: no `service` dimension |
//! | [`function_name`](MetricsLayerBuilder::function_name) | `POWERTOOLS_METRICS_FUNCTION_NAME` | the invocation's function name |
//! | [`disabled`](MetricsLayerBuilder::disabled) | `POWERTOOLS_METRICS_DISABLED` | `POWERTOOLS_DEV`; disabled, a namespace, service or function name CloudWatch would refuse is warned about at the first invocation instead of failing the build |
//! | [`raise_on_empty_metrics`](MetricsLayerBuilder::raise_on_empty_metrics) | | off: a warning, the first time |
//! | [`capture_cold_start_metric`](MetricsLayerBuilder::capture_cold_start_metric) | | off |
//!
//! # Compatibility with Powertools for Python
//!
//! The documents of Powertools for Python 3.37 and of this crate create the same CloudWatch
//! metrics for the same calls:
//!
//! | | Powertools for Python 3.37 | this crate |
//! | --- | --- | --- |
//! | main dimension set | defaults, added dimensions, `service` | the same, in the same order |
//! | `add_dimensions` sets | defaults + the new dimensions, no `service` | the same |
//! | no service configured | `[[]]`, no `service` key | the same |
//! | ColdStart | own document, `[["function_name","service"]]`, value 1 | the same |
//! | namespace, units, resolution | CloudWatch's | the same, checked when set |
//! | non-ASCII dimension value, NaN | written; CloudWatch refuses the document | kept as metadata (`add_dimension`) / refused with an error (`single_metric`'s dimension, NaN), so the document is valid |
//! | one value | `[1.0]` | `1.0` (as TypeScript; CloudWatch reads both alike; Logs Insights reads Python's as `name.0`) |
//! | metadata | keys made strings, JSON types kept | the same |
//! | metadata nested past 126 levels | written; serde_json (and the tools built on it) cannot read the document back | refused ([`Error::MetadataTooDeep`]), as the logger refuses such a key |
//! | 29 added dimensions and `service` | the document is lost at the flush | written |
//! | dimension name of 251 to 255 characters | written | refused, as AWS's EMF client libraries do |
//! | `AWS_LAMBDA_LOG_LEVEL` above INFO | documents dropped by Lambda | `level` and `timestamp` added |
//!
//! # Differences from Powertools for Python and TypeScript
//!
//! - A metric with one value is written as a number, several as an array (as TypeScript does).
//! - A metric re-added with another unit or another storage resolution, an invalid dimension
//!   and a timestamp out of range are errors, not warnings (TypeScript's behaviour for units;
//!   Java's for the rest). Python takes the last unit and resolution and keeps every value.
//! - The cold-start document is written before the handler runs (as in TypeScript, Java and
//!   .NET), so a handler that fails or panics still counts its cold start.
//! - A task spawned with `tokio::spawn` is outside its parent's invocation; move the handle into
//!   it or run it in [`Metrics::scope`].

#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to items of every feature; with some off (`cargo doc
// --no-default-features`) those links have nothing to point to. Checked with every feature on
// (`scripts/test`'s workspace build, docs.rs).
#![cfg_attr(not(feature = "recorder"), allow(rustdoc::broken_intra_doc_links))]

mod dimension_sets;
mod document;
mod error;
mod layer;
mod metrics;
#[cfg(feature = "recorder")]
mod recorder;
mod sink;
mod unit;
mod validate;

/// The `metrics` crate (0.x) at the version [`EmfRecorder`] implements, so that
/// `powertools_metrics::facade::counter!` always reaches the installed recorder: a `metrics`
/// of another version would be a different facade, recording nowhere. A release of ours that
/// moves to a new one is a breaking release, said in the CHANGELOG.
#[cfg(feature = "recorder")]
#[cfg_attr(docsrs, doc(cfg(feature = "recorder")))]
pub use ::metrics as facade;
pub use error::Error;
pub use layer::{
    MetricsLayer, MetricsLayerBuilder, MetricsService, POWERTOOLS_METRICS_DISABLED,
    POWERTOOLS_METRICS_FUNCTION_NAME, POWERTOOLS_METRICS_NAMESPACE, ServiceError,
};
pub use metrics::Metrics;
#[cfg(feature = "recorder")]
#[cfg_attr(docsrs, doc(cfg(feature = "recorder")))]
pub use recorder::EmfRecorder;
pub use sink::{MemorySink, Sink, Stdout};
pub use unit::{Resolution, Unit};
pub use validate::{MAX_DIMENSIONS, MAX_METRICS, MAX_VALUES_PER_METRIC};

use std::time::SystemTime;

/// Adds a value to the metric `name` in the current invocation's document; see
/// [`Metrics::add_metric`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::add_metric`].
pub fn add_metric(name: &str, value: f64, unit: Unit) -> Result<(), Error> {
    current(|metrics| metrics.add_metric(name, value, unit))
}

/// Adds a value at the given storage resolution; see [`Metrics::add_metric_with_resolution`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as
/// [`Metrics::add_metric_with_resolution`].
pub fn add_metric_with_resolution(
    name: &str,
    value: f64,
    unit: Unit,
    resolution: Resolution,
) -> Result<(), Error> {
    current(|metrics| metrics.add_metric_with_resolution(name, value, unit, resolution))
}

/// Adds a dimension to the current invocation's document; see [`Metrics::add_dimension`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::add_dimension`].
pub fn add_dimension(name: &str, value: &str) -> Result<(), Error> {
    current(|metrics| metrics.add_dimension(name, value))
}

/// Adds a dimension set to the current invocation's document; see [`Metrics::add_dimensions`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::add_dimensions`].
pub fn add_dimensions<'a>(
    dimensions: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Error> {
    current(|metrics| metrics.add_dimensions(dimensions))
}

/// Writes one metric at once in a document of its own, with `dimensions` beside the default
/// ones; see [`Metrics::single_metric`] (Powertools for Python's `single_metric`).
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::single_metric`].
pub fn single_metric<'a>(
    name: &str,
    value: f64,
    unit: Unit,
    dimensions: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Error> {
    current(|metrics| metrics.single_metric(name, value, unit, dimensions))
}

/// Adds metadata to the current invocation's document; see [`Metrics::add_metadata`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::add_metadata`].
pub fn add_metadata(key: &str, value: impl Into<serde_json::Value>) -> Result<(), Error> {
    current(|metrics| metrics.add_metadata(key, value))
}

/// Sets the timestamp of the current invocation's documents; see [`Metrics::set_timestamp`].
///
/// # Errors
/// [`Error::NoCurrentInvocation`] outside an invocation, or as [`Metrics::set_timestamp`].
pub fn set_timestamp(timestamp: SystemTime) -> Result<(), Error> {
    current(|metrics| metrics.set_timestamp(timestamp))
}

fn current(f: impl FnOnce(&Metrics) -> Result<(), Error>) -> Result<(), Error> {
    Metrics::with_current(f).unwrap_or(Err(Error::NoCurrentInvocation))
}
