//! The EMF document: the metric table of one document and its serialization.

use std::cell::Cell;

use powertools_core::json_escape::first_escape;
use powertools_core::thread_buffer;
use serde_json::{Map, Value};

use crate::validate::{MAX_METRICS, MAX_VALUES_PER_METRIC};
use crate::{Error, Resolution, Unit};

/// How a new value combines with the values a metric already has in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only the `metrics` facade recorder accumulates or replaces.
#[cfg_attr(not(feature = "recorder"), allow(dead_code))]
pub(crate) enum Combine {
    /// Another value (a Powertools metric added twice, a histogram sample).
    Append,
    /// Added to the last value (a `metrics` counter increment, a gauge increment).
    Accumulate,
    /// Replaces the values (a gauge set, a counter's absolute value).
    Replace,
}

/// Where a metric's values come from: `add_metric` (each value a sample) or one kind of `metrics`
/// facade metric (counters and gauges combine their values). One name keeps one origin in a
/// document: a gauge's `set` must not replace a histogram's samples, nor a gauge's increment add
/// to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "recorder"), allow(dead_code))]
pub(crate) enum Origin {
    AddMetric,
    Counter,
    Gauge,
    Histogram,
}

impl Origin {
    /// What holds a name, for [`Error::NameCollision`].
    fn described(self) -> &'static str {
        match self {
            Origin::AddMetric => "a metric added with add_metric",
            Origin::Counter => "a `metrics` facade counter",
            Origin::Gauge => "a `metrics` facade gauge",
            Origin::Histogram => "a `metrics` facade histogram",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) resolution: Resolution,
    pub(crate) values: Vec<f64>,
    /// Where the values come from: a name never mixes two origins.
    pub(crate) origin: Origin,
}

thread_local! {
    /// The buffer of the last document this thread wrote, emptied, for its next document.
    static SPARE_LINE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest document buffer kept for the next document (a larger one is freed).
const SPARE_LINE_BYTES: usize = 16 * 1024;

/// Gives a written document's buffer back for this thread's next document.
pub(crate) fn recycle_line(line: String) {
    thread_buffer::keep(&SPARE_LINE, line.into_bytes(), SPARE_LINE_BYTES);
}

/// How many cleared metrics a table keeps to reuse their name and value buffers.
const SPARE_METRICS: usize = 16;
/// The most values a kept metric's buffer may hold: a larger one is freed, not kept.
const SPARE_VALUES: usize = 16;

/// The metrics of one document, in the order they were first added.
#[derive(Debug, Default)]
pub(crate) struct MetricTable {
    metrics: Vec<Metric>,
    /// Cleared metrics whose name and value buffers a new metric reuses (an invocation state
    /// is reused by the layer's next invocation, which mostly adds the same metrics): two
    /// allocations fewer per metric. Never read otherwise.
    spare: Vec<Metric>,
    /// The last value of each gauge in a document written at a limit: a gauge is a level, and
    /// an increment in the next document goes on from it. Dropped by [`reset`](Self::reset).
    levels: Vec<(String, f64)>,
    /// The name, unit, resolution and origin of each metric in a document written at a limit:
    /// the invocation's later values of that name keep them, as within one document (a unit
    /// changed after the write at 100 metrics was taken; found by an attack from the docs).
    /// Dropped by [`reset`](Self::reset).
    written: Vec<(String, Unit, Resolution, Origin)>,
}

/// Refuses a value for `name` with another origin, unit or resolution than the metric `name`
/// has in this invocation (`existing`), until its metrics are flushed.
fn check_same(
    name: &str,
    (existing_unit, existing_resolution, existing_origin): (Unit, Resolution, Origin),
    (unit, resolution, origin): (Unit, Resolution, Origin),
) -> Result<(), Error> {
    if existing_origin != origin {
        return Err(Error::NameCollision {
            name: name.to_owned(),
            used_as: existing_origin.described(),
        });
    }
    if existing_unit != unit {
        return Err(Error::UnitConflict {
            name: name.to_owned(),
            existing: existing_unit,
            requested: unit,
        });
    }
    if existing_resolution != resolution {
        return Err(Error::ResolutionConflict {
            name: name.to_owned(),
            existing: existing_resolution,
            requested: resolution,
        });
    }
    Ok(())
}

impl MetricTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// How many metrics the table has room for without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.metrics.capacity()
    }

    pub(crate) fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// Empties the table after its document was written, keeping each gauge's level for the
    /// next document of the invocation.
    pub(crate) fn clear(&mut self) {
        for metric in &self.metrics {
            if let (Origin::Gauge, Some(&level)) = (metric.origin, metric.values.last()) {
                match self
                    .levels
                    .iter_mut()
                    .find(|(name, _)| *name == metric.name)
                {
                    Some((_, kept)) => *kept = level,
                    None => self.levels.push((metric.name.clone(), level)),
                }
            }
        }
        self.empty();
    }

    /// Notes the name, unit, resolution and kind of each metric before a write at a limit,
    /// which [`clear`](Self::clear)s the table mid-invocation: the invocation's later values of
    /// those names must keep them. (Not at a flush, which [`reset`](Self::reset)s the table:
    /// no copy of the names per invocation.)
    pub(crate) fn remember_kinds(&mut self) {
        for metric in &self.metrics {
            if !self.written.iter().any(|(name, ..)| *name == metric.name) {
                self.written.push((
                    metric.name.clone(),
                    metric.unit,
                    metric.resolution,
                    metric.origin,
                ));
            }
        }
    }

    /// Empties the table, keeping only the gauges' levels (of the documents written, and of the
    /// metrics still in it): the invocation's last flush, after which a task that outlived it
    /// may still change a gauge, written at once, going on from its level (it started again
    /// from 0; found by an attack from the docs). The state is [`reset`](Self::reset) before a
    /// later invocation reuses it.
    pub(crate) fn end_keeping_levels(&mut self) {
        self.clear();
        let levels = std::mem::take(&mut self.levels);
        self.reset();
        self.levels = levels;
    }

    /// Whether the table keeps a gauge's level.
    pub(crate) fn has_levels(&self) -> bool {
        !self.levels.is_empty()
    }

    /// Empties the table and forgets the gauges' levels: the invocation's last flush.
    pub(crate) fn reset(&mut self) {
        self.levels.clear();
        self.written.clear();
        if self.levels.capacity() > SPARE_METRICS {
            // A reused state would keep it at its largest.
            self.levels = Vec::new();
        }
        self.empty();
    }

    fn empty(&mut self) {
        for metric in self.metrics.drain(..) {
            if self.spare.len() < SPARE_METRICS && metric.values.capacity() <= SPARE_VALUES {
                self.spare.push(metric);
            }
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|metric| metric.name == name)
    }

    /// Checks that `name` can take a value with this unit and resolution, and says whether the
    /// document must be written first to make room (the 101st metric, or the 101st value).
    pub(crate) fn prepare(
        &self,
        name: &str,
        unit: Unit,
        resolution: Resolution,
        combine: Combine,
        origin: Origin,
    ) -> Result<bool, Error> {
        let Some(index) = self.find(name) else {
            if let Some(&(_, existing_unit, existing_resolution, existing_origin)) =
                self.written.iter().find(|(written, ..)| written == name)
            {
                check_same(
                    name,
                    (existing_unit, existing_resolution, existing_origin),
                    (unit, resolution, origin),
                )?;
            }
            return Ok(self.metrics.len() >= MAX_METRICS);
        };
        let metric = &self.metrics[index];
        check_same(
            name,
            (metric.unit, metric.resolution, metric.origin),
            (unit, resolution, origin),
        )?;
        Ok(combine == Combine::Append && metric.values.len() >= MAX_VALUES_PER_METRIC)
    }

    /// The value the metric would hold after combining `value` into it (to check it first).
    pub(crate) fn combined(&self, name: &str, value: f64, combine: Combine, origin: Origin) -> f64 {
        match (combine, self.find(name)) {
            (Combine::Accumulate, Some(index)) => self.metrics[index]
                .values
                .last()
                .map_or(value, |last| last + value),
            (Combine::Accumulate, None) if origin == Origin::Gauge => {
                self.level(name).map_or(value, |level| level + value)
            }
            _ => value,
        }
    }

    /// A gauge's level from an earlier document of the invocation.
    fn level(&self, name: &str) -> Option<f64> {
        self.levels
            .iter()
            .find(|(kept, _)| kept == name)
            .map(|&(_, level)| level)
    }

    /// Adds the value; [`prepare`](Self::prepare) has made room.
    pub(crate) fn insert(
        &mut self,
        name: &str,
        unit: Unit,
        resolution: Resolution,
        value: f64,
        combine: Combine,
        origin: Origin,
    ) {
        let Some(index) = self.find(name) else {
            // A gauge's step goes on from its level in the invocation's earlier document.
            let value = match (combine, origin) {
                (Combine::Accumulate, Origin::Gauge) => {
                    self.level(name).map_or(value, |level| level + value)
                }
                _ => value,
            };
            let metric = match self.spare.pop() {
                Some(mut spare) => {
                    spare.name.clear();
                    spare.name.push_str(name);
                    spare.values.clear();
                    spare.values.push(value);
                    Metric {
                        unit,
                        resolution,
                        origin,
                        ..spare
                    }
                }
                None => Metric {
                    name: name.to_owned(),
                    unit,
                    resolution,
                    values: vec![value],
                    origin,
                },
            };
            self.metrics.push(metric);
            return;
        };
        let values = &mut self.metrics[index].values;
        match (combine, values.last_mut()) {
            (Combine::Accumulate, Some(last)) => *last += value,
            (Combine::Replace, _) => {
                values.clear();
                values.push(value);
            }
            _ => values.push(value),
        }
    }
}

/// The keys Lambda's log-level filter reads, written when it filters out INFO lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogLevelKeys {
    pub(crate) level: &'static str,
}

/// One EMF document, borrowed from the invocation's state for serialization.
pub(crate) struct Document<'a> {
    pub(crate) timestamp_ms: u64,
    pub(crate) namespace: &'a str,
    /// `level` and `timestamp` for Lambda's log-level filter, when it is on.
    pub(crate) log_level: Option<LogLevelKeys>,
    /// Dimension name lists, each a dimension set.
    pub(crate) dimension_sets: &'a [Vec<String>],
    /// The value of every dimension named in a set.
    pub(crate) dimensions: &'a [(String, String)],
    pub(crate) metadata: &'a Map<String, Value>,
    pub(crate) metrics: &'a [Metric],
}

impl Document<'_> {
    /// The document as one line of compact JSON, without the newline.
    ///
    /// Written by hand rather than through serde: every invocation writes one, and this takes
    /// about half the instructions. The output is byte for byte what serde_json writes for the
    /// same document (`tests::the_writer_matches_serde_json`, a differential test against the
    /// serde implementation kept in `reference`).
    pub(crate) fn to_line(&self) -> String {
        // The thread's last document's buffer, or, a typical document being a few hundred bytes,
        // one allocation instead of a growing string.
        // Written as a `String` from the start: every piece is a `&str` or ASCII, so no UTF-8
        // check of the whole line at the end (about 200 instructions per document).
        let mut out = String::from_utf8(thread_buffer::take(&SPARE_LINE, 512)).unwrap_or_default();
        out.push_str(r#"{"_aws":{"Timestamp":"#);
        out.push_str(itoa::Buffer::new().format(self.timestamp_ms));
        out.push_str(r#","CloudWatchMetrics":[{"Namespace":"#);
        write_str(&mut out, self.namespace);
        out.push_str(r#","Dimensions":["#);
        for (index, set) in self.dimension_sets.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('[');
            for (index, name) in set.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_str(&mut out, name);
            }
            out.push(']');
        }
        out.push_str(r#"],"Metrics":["#);
        for (index, metric) in self.metrics.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(r#"{"Name":"#);
            write_str(&mut out, &metric.name);
            out.push_str(r#","Unit":"#);
            write_str(&mut out, metric.unit.as_str());
            if metric.resolution == Resolution::High {
                out.push_str(r#","StorageResolution":1"#);
            }
            out.push('}');
        }
        out.push_str("]}]}");
        if let Some(keys) = self.log_level {
            // Lambda keeps a line above INFO only with a valid level and an RFC 3339 timestamp
            // ("Log-level filtering", AWS Lambda Developer Guide).
            write_member(&mut out, "level");
            write_str(&mut out, keys.level);
            write_member(&mut out, "timestamp");
            write_str(&mut out, &rfc3339_millis(self.timestamp_ms));
        }
        for (name, value) in self.dimensions {
            write_member(&mut out, name);
            write_str(&mut out, value);
        }
        for (key, value) in self.metadata {
            write_member(&mut out, key);
            // Metadata is any JSON value, and rarer: serde_json writes it (into memory, which
            // cannot fail), into a string of its own, one allocation per value, so that the
            // line is a `String` throughout.
            match serde_json::to_string(value) {
                Ok(json) => out.push_str(&json),
                Err(_) => out.push_str("null"),
            }
        }
        for metric in self.metrics {
            write_member(&mut out, &metric.name);
            match metric.values.as_slice() {
                [single] => write_f64(&mut out, *single),
                several => {
                    out.push('[');
                    for (index, value) in several.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        write_f64(&mut out, *value);
                    }
                    out.push(']');
                }
            }
        }
        out.push('}');
        out
    }
}

/// `,"name":` (every root member follows `_aws`).
fn write_member(out: &mut String, name: &str) {
    out.push(',');
    write_str(out, name);
    out.push(':');
}

/// A value as serde_json writes it, with the same formatter (`zmij`). A value that is not finite
/// never reaches a document (`validate::value`); it would be `null`, as serde_json writes it.
fn write_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(value));
    } else {
        out.push_str("null");
    }
}

/// `text` as a JSON string, escaped as serde_json escapes it: `"`, `\` and the control
/// characters, with the short forms JSON has and lowercase `\u00XX` for the others.
fn write_str(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    let mut start = 0;
    // What serde_json escapes: not DEL.
    while let Some(offset) = first_escape::<false>(&bytes[start..]) {
        let index = start + offset;
        // `index` is at an ASCII byte, so at a character boundary.
        out.push_str(&text[start..index]);
        let byte = bytes[index];
        match byte {
            b'"' => out.push_str(r#"\""#),
            b'\\' => out.push_str(r"\\"),
            b'\n' => out.push_str(r"\n"),
            b'\r' => out.push_str(r"\r"),
            b'\t' => out.push_str(r"\t"),
            0x08 => out.push_str(r"\b"),
            0x0c => out.push_str(r"\f"),
            _ => {
                out.push_str(r"\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        start = index + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// `epoch_ms` as an RFC 3339 UTC time with milliseconds.
fn rfc3339_millis(epoch_ms: u64) -> String {
    i64::try_from(epoch_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The serde implementation the hand-written writer replaced, kept as the reference of the
/// differential test.
#[cfg(test)]
mod reference {
    use serde::Serialize;
    use serde::ser::{SerializeMap, Serializer};

    use super::{Document, Metric, rfc3339_millis};
    use crate::Resolution;

    /// serde_json's output for `document`.
    pub(super) fn line(document: &Document<'_>) -> String {
        serde_json::to_string(&Serde(document)).expect("a document serializes")
    }

    struct Serde<'d, 'a>(&'d Document<'a>);

    impl Serialize for Serde<'_, '_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let document = self.0;
            let mut root = serializer.serialize_map(None)?;
            root.serialize_entry(
                "_aws",
                &Envelope {
                    timestamp: document.timestamp_ms,
                    cloud_watch_metrics: [Directive {
                        namespace: document.namespace,
                        dimensions: document.dimension_sets,
                        metrics: MetricDefinitions(document.metrics),
                    }],
                },
            )?;
            if let Some(keys) = document.log_level {
                // Lambda keeps a line above INFO only with a valid level and an RFC 3339 timestamp
                // ("Log-level filtering", AWS Lambda Developer Guide).
                root.serialize_entry("level", keys.level)?;
                root.serialize_entry("timestamp", &rfc3339_millis(document.timestamp_ms))?;
            }
            for (name, value) in document.dimensions {
                root.serialize_entry(name, value)?;
            }
            for (key, value) in document.metadata {
                root.serialize_entry(key, value)?;
            }
            for metric in document.metrics {
                match metric.values.as_slice() {
                    [single] => root.serialize_entry(&metric.name, single)?,
                    several => root.serialize_entry(&metric.name, several)?,
                }
            }
            root.end()
        }
    }

    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "Timestamp")]
        timestamp: u64,
        #[serde(rename = "CloudWatchMetrics")]
        cloud_watch_metrics: [Directive<'a>; 1],
    }

    #[derive(Serialize)]
    struct Directive<'a> {
        #[serde(rename = "Namespace")]
        namespace: &'a str,
        #[serde(rename = "Dimensions")]
        dimensions: &'a [Vec<String>],
        #[serde(rename = "Metrics")]
        metrics: MetricDefinitions<'a>,
    }

    struct MetricDefinitions<'a>(&'a [Metric]);

    impl Serialize for MetricDefinitions<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter().map(|metric| MetricDefinition {
                name: &metric.name,
                unit: metric.unit.as_str(),
                storage_resolution: (metric.resolution == Resolution::High).then_some(1),
            }))
        }
    }

    #[derive(Serialize)]
    struct MetricDefinition<'a> {
        #[serde(rename = "Name")]
        name: &'a str,
        #[serde(rename = "Unit")]
        unit: &'static str,
        #[serde(rename = "StorageResolution", skip_serializing_if = "Option::is_none")]
        storage_resolution: Option<u8>,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_document_has_the_envelope_then_dimensions_metadata_and_values() {
        let mut table = MetricTable::default();
        table.insert(
            "Orders",
            Unit::Count,
            Resolution::Standard,
            1.0,
            Combine::Append,
            Origin::AddMetric,
        );
        table.insert(
            "Latency",
            Unit::Milliseconds,
            Resolution::High,
            12.0,
            Combine::Append,
            Origin::AddMetric,
        );
        table.insert(
            "Latency",
            Unit::Milliseconds,
            Resolution::High,
            15.5,
            Combine::Append,
            Origin::AddMetric,
        );
        let mut metadata = Map::new();
        metadata.insert("order_id".into(), json!("o-1"));
        let line = Document {
            timestamp_ms: 1_700_000_000_000,
            namespace: "Bakery",
            log_level: None,
            dimension_sets: &[vec!["service".into(), "location".into()]],
            dimensions: &[
                ("service".into(), "orders".into()),
                ("location".into(), "Lyon".into()),
            ],
            metadata: &metadata,
            metrics: table.metrics(),
        }
        .to_line();
        assert_eq!(
            line,
            concat!(
                r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Bakery","#,
                r#""Dimensions":[["service","location"]],"Metrics":[{"Name":"Orders","Unit":"Count"},"#,
                r#"{"Name":"Latency","Unit":"Milliseconds","StorageResolution":1}]}]},"#,
                r#""service":"orders","location":"Lyon","order_id":"o-1","Orders":1.0,"Latency":[12.0,15.5]}"#
            )
        );
    }

    /// Any text: control characters, quotes, backslashes, non-ASCII, astral characters.
    fn text() -> impl Strategy<Value = String> {
        let character = prop_oneof![
            any::<char>(),
            (0u8..0x20).prop_map(char::from),
            proptest::sample::select(&['"', '\\', '/', '\u{7f}', 'é', '\u{2028}', '😀', 'a'][..]),
        ];
        proptest::collection::vec(character, 0..12)
            .prop_map(|characters| characters.into_iter().collect())
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |value| value.is_finite()),
            Just(0.0),
            Just(-0.0),
            Just(1.0),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(1e21),
            Just(-2f64.powi(360)),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            value().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec((text(), inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn metric() -> impl Strategy<Value = Metric> {
        (
            text(),
            proptest::sample::select(Unit::ALL),
            any::<bool>(),
            proptest::collection::vec(value(), 1..4),
        )
            .prop_map(|(name, unit, high, values)| Metric {
                name,
                unit,
                resolution: if high {
                    Resolution::High
                } else {
                    Resolution::Standard
                },
                values,
                origin: Origin::AddMetric,
            })
    }

    proptest! {
        /// The hand-written writer against serde_json, on any document: the same bytes.
        #[test]
        fn the_writer_matches_serde_json(
            timestamp_ms in any::<u64>(),
            namespace in text(),
            level in proptest::option::of(proptest::sample::select(&["WARN", "ERROR", "FATAL"][..])),
            dimension_sets in proptest::collection::vec(proptest::collection::vec(text(), 0..4), 0..3),
            dimensions in proptest::collection::vec((text(), text()), 0..4),
            metadata in proptest::collection::vec((text(), json()), 0..4),
            metrics in proptest::collection::vec(metric(), 0..4),
        ) {
            let metadata: Map<String, Value> = metadata.into_iter().collect();
            let document = Document {
                // Beyond chrono's range the timestamp text is the same default on both sides.
                timestamp_ms,
                namespace: &namespace,
                log_level: level.map(|level| LogLevelKeys { level }),
                dimension_sets: &dimension_sets,
                dimensions: &dimensions,
                metadata: &metadata,
                metrics: &metrics,
            };
            let line = document.to_line();
            prop_assert_eq!(&line, &reference::line(&document));
            prop_assert!(serde_json::from_str::<Value>(&line).is_ok());
            // The next case writes into this buffer: nothing of this document may show there.
            recycle_line(line);
        }
    }

    #[test]
    fn a_written_documents_buffer_serves_the_next_document() {
        let metadata = Map::new();
        let long = vec![Metric {
            name: "n".repeat(2000),
            unit: Unit::Count,
            resolution: Resolution::Standard,
            values: vec![1.0],
            origin: Origin::AddMetric,
        }];
        let short = vec![Metric {
            name: "Orders".to_owned(),
            unit: Unit::Count,
            resolution: Resolution::High,
            values: vec![2.0],
            origin: Origin::AddMetric,
        }];
        let document = |metrics| Document {
            timestamp_ms: 1,
            namespace: "Bakery",
            log_level: None,
            dimension_sets: &[],
            dimensions: &[],
            metadata: &metadata,
            metrics,
        };
        let first = document(&long).to_line();
        let reused = first.as_ptr();
        recycle_line(first);
        let second = document(&short).to_line();
        assert_eq!(second.as_ptr(), reused);
        assert_eq!(second, reference::line(&document(&short)));
    }

    #[test]
    fn combining_values_appends_accumulates_or_replaces() {
        let mut table = MetricTable::default();
        for (name, combine) in [
            ("appended", Combine::Append),
            ("accumulated", Combine::Accumulate),
            ("replaced", Combine::Replace),
        ] {
            table.insert(
                name,
                Unit::Count,
                Resolution::Standard,
                2.0,
                combine,
                Origin::Counter,
            );
            table.insert(
                name,
                Unit::Count,
                Resolution::Standard,
                3.0,
                combine,
                Origin::Counter,
            );
        }
        let values: Vec<_> = table.metrics().iter().map(|m| m.values.clone()).collect();
        assert_eq!(values, [vec![2.0, 3.0], vec![5.0], vec![3.0]]);
    }

    #[test]
    fn a_cleared_table_reuses_its_metrics_with_nothing_of_what_they_held() {
        let mut table = MetricTable::default();
        for index in 0..40 {
            let name = format!("metric-with-a-long-name-{index}");
            for value in 0..(index % 20) {
                table.insert(
                    &name,
                    Unit::Bytes,
                    Resolution::High,
                    f64::from(value),
                    Combine::Append,
                    Origin::Counter,
                );
            }
        }
        table.clear();
        assert!(table.is_empty());
        assert!(table.spare.len() <= SPARE_METRICS);
        assert!(
            table
                .spare
                .iter()
                .all(|metric| metric.values.capacity() <= SPARE_VALUES)
        );
        let kept = table.spare.len();
        assert!(kept > 0, "small metrics are kept");

        for index in 0..kept + 2 {
            let name = format!("m{index}");
            table.insert(
                &name,
                Unit::Count,
                Resolution::Standard,
                7.0,
                Combine::Append,
                Origin::AddMetric,
            );
        }
        assert!(table.spare.is_empty());
        for (index, metric) in table.metrics().iter().enumerate() {
            assert_eq!(metric.name, format!("m{index}"));
            assert_eq!(metric.values, [7.0]);
            assert_eq!(metric.unit, Unit::Count);
            assert_eq!(metric.resolution, Resolution::Standard);
            assert_eq!(metric.origin, Origin::AddMetric);
        }
    }

    #[test]
    fn prepare_refuses_conflicts_and_asks_for_room_at_the_limits() {
        let mut table = MetricTable::default();
        for index in 0..MAX_METRICS {
            let name = format!("m{index}");
            assert!(
                !table
                    .prepare(
                        &name,
                        Unit::Count,
                        Resolution::Standard,
                        Combine::Append,
                        Origin::AddMetric
                    )
                    .unwrap()
            );
            table.insert(
                &name,
                Unit::Count,
                Resolution::Standard,
                1.0,
                Combine::Append,
                Origin::AddMetric,
            );
        }
        assert!(
            table
                .prepare(
                    "m100",
                    Unit::Count,
                    Resolution::Standard,
                    Combine::Append,
                    Origin::AddMetric
                )
                .unwrap(),
            "the 101st metric needs a new document"
        );
        for _ in 1..MAX_VALUES_PER_METRIC {
            table.insert(
                "m0",
                Unit::Count,
                Resolution::Standard,
                1.0,
                Combine::Append,
                Origin::AddMetric,
            );
        }
        assert!(
            table
                .prepare(
                    "m0",
                    Unit::Count,
                    Resolution::Standard,
                    Combine::Append,
                    Origin::AddMetric
                )
                .unwrap(),
            "the 101st value needs a new document"
        );
        assert!(
            !table
                .prepare(
                    "m0",
                    Unit::Count,
                    Resolution::Standard,
                    Combine::Accumulate,
                    Origin::AddMetric
                )
                .unwrap(),
            "accumulating adds no value"
        );
        assert!(matches!(
            table.prepare(
                "m1",
                Unit::Seconds,
                Resolution::Standard,
                Combine::Append,
                Origin::AddMetric
            ),
            Err(Error::UnitConflict { .. })
        ));
        let conflict = table
            .prepare(
                "m1",
                Unit::Count,
                Resolution::High,
                Combine::Append,
                Origin::AddMetric,
            )
            .expect_err("another resolution");
        assert!(matches!(conflict, Error::ResolutionConflict { .. }));
        // Which resolutions clash, as the unit conflict says which units (found by an attack).
        assert_eq!(
            conflict.to_string(),
            "metric \"m1\" was already added with storage resolution 60 (standard), not 1 (high)"
        );
    }

    #[test]
    fn an_invalid_unit_lists_the_units_cloudwatch_accepts() {
        // As Python lists them: the message alone says what to write instead.
        let message = "Counts"
            .parse::<Unit>()
            .expect_err("not a unit")
            .to_string();
        for unit in Unit::ALL {
            assert!(
                message.contains(unit.as_str()),
                "{unit:?} is missing from {message}"
            );
        }
        assert!(
            message.starts_with("invalid metric unit \"Counts\""),
            "{message}"
        );
    }
}
