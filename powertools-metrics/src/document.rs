//! The EMF document: the metric table of one document and its serialization.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
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

#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) resolution: Resolution,
    pub(crate) values: Vec<f64>,
    /// Whether the values come from the `metrics` facade (counters and gauges combine their
    /// values) rather than `add_metric` (each value a sample): the two never share a metric.
    pub(crate) from_facade: bool,
}

/// The metrics of one document, in the order they were first added.
#[derive(Debug, Default)]
pub(crate) struct MetricTable {
    metrics: Vec<Metric>,
}

impl MetricTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub(crate) fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    pub(crate) fn clear(&mut self) {
        self.metrics.clear();
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
        from_facade: bool,
    ) -> Result<bool, Error> {
        let Some(index) = self.find(name) else {
            return Ok(self.metrics.len() >= MAX_METRICS);
        };
        let metric = &self.metrics[index];
        if metric.from_facade != from_facade {
            return Err(Error::NameCollision {
                name: name.to_owned(),
                used_as: if metric.from_facade {
                    "a `metrics` facade metric"
                } else {
                    "a metric added with add_metric"
                },
            });
        }
        if metric.unit != unit {
            return Err(Error::UnitConflict {
                name: name.to_owned(),
                existing: metric.unit,
                requested: unit,
            });
        }
        if metric.resolution != resolution {
            return Err(Error::ResolutionConflict {
                name: name.to_owned(),
            });
        }
        Ok(combine == Combine::Append && metric.values.len() >= MAX_VALUES_PER_METRIC)
    }

    /// The value the metric would hold after combining `value` into it (to check it first).
    pub(crate) fn combined(&self, name: &str, value: f64, combine: Combine) -> f64 {
        match (combine, self.find(name)) {
            (Combine::Accumulate, Some(index)) => self.metrics[index]
                .values
                .last()
                .map_or(value, |last| last + value),
            _ => value,
        }
    }

    /// Adds the value; [`prepare`](Self::prepare) has made room.
    pub(crate) fn insert(
        &mut self,
        name: &str,
        unit: Unit,
        resolution: Resolution,
        value: f64,
        combine: Combine,
        from_facade: bool,
    ) {
        let Some(index) = self.find(name) else {
            self.metrics.push(Metric {
                name: name.to_owned(),
                unit,
                resolution,
                values: vec![value],
                from_facade,
            });
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
    pub(crate) fn to_line(&self) -> String {
        // A typical document is a few hundred bytes: one allocation instead of a growing string.
        let mut line = Vec::with_capacity(512);
        // Serializing strings, finite numbers and JSON values into memory cannot fail, and
        // serde_json writes UTF-8.
        match serde_json::to_writer(&mut line, self) {
            Ok(()) => String::from_utf8(line).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut root = serializer.serialize_map(None)?;
        root.serialize_entry(
            "_aws",
            &Envelope {
                timestamp: self.timestamp_ms,
                cloud_watch_metrics: [Directive {
                    namespace: self.namespace,
                    dimensions: self.dimension_sets,
                    metrics: MetricDefinitions(self.metrics),
                }],
            },
        )?;
        if let Some(keys) = self.log_level {
            // Lambda keeps a line above INFO only with a valid level and an RFC 3339 timestamp
            // ("Log-level filtering", AWS Lambda Developer Guide).
            root.serialize_entry("level", keys.level)?;
            root.serialize_entry("timestamp", &rfc3339_millis(self.timestamp_ms))?;
        }
        for (name, value) in self.dimensions {
            root.serialize_entry(name, value)?;
        }
        for (key, value) in self.metadata {
            root.serialize_entry(key, value)?;
        }
        for metric in self.metrics {
            match metric.values.as_slice() {
                [single] => root.serialize_entry(&metric.name, single)?,
                several => root.serialize_entry(&metric.name, several)?,
            }
        }
        root.end()
    }
}

/// `epoch_ms` as an RFC 3339 UTC time with milliseconds.
fn rfc3339_millis(epoch_ms: u64) -> String {
    i64::try_from(epoch_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

#[cfg(test)]
mod tests {
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
            false,
        );
        table.insert(
            "Latency",
            Unit::Milliseconds,
            Resolution::High,
            12.0,
            Combine::Append,
            false,
        );
        table.insert(
            "Latency",
            Unit::Milliseconds,
            Resolution::High,
            15.5,
            Combine::Append,
            false,
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

    #[test]
    fn combining_values_appends_accumulates_or_replaces() {
        let mut table = MetricTable::default();
        for (name, combine) in [
            ("appended", Combine::Append),
            ("accumulated", Combine::Accumulate),
            ("replaced", Combine::Replace),
        ] {
            table.insert(name, Unit::Count, Resolution::Standard, 2.0, combine, true);
            table.insert(name, Unit::Count, Resolution::Standard, 3.0, combine, true);
        }
        let values: Vec<_> = table.metrics().iter().map(|m| m.values.clone()).collect();
        assert_eq!(values, [vec![2.0, 3.0], vec![5.0], vec![3.0]]);
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
                        false
                    )
                    .unwrap()
            );
            table.insert(
                &name,
                Unit::Count,
                Resolution::Standard,
                1.0,
                Combine::Append,
                false,
            );
        }
        assert!(
            table
                .prepare(
                    "m100",
                    Unit::Count,
                    Resolution::Standard,
                    Combine::Append,
                    false
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
                false,
            );
        }
        assert!(
            table
                .prepare(
                    "m0",
                    Unit::Count,
                    Resolution::Standard,
                    Combine::Append,
                    false
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
                    false
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
                false
            ),
            Err(Error::UnitConflict { .. })
        ));
        assert!(matches!(
            table.prepare("m1", Unit::Count, Resolution::High, Combine::Append, false),
            Err(Error::ResolutionConflict { .. })
        ));
    }
}
