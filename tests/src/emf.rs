//! Every EMF document a test sees is checked against the specification: the JSON Schema
//! (`tests/emf.schema.json`, written from the AWS EMF specification and the CloudWatch limits it
//! refers to) plus what a schema cannot say (target members at the root with the right types,
//! CloudWatch's value range and dimension value rules, the log event size).
//!
//! The metrics crate's tests, the facade's, the batch crate's, the examples' and the emulator
//! tests all call it on every document they read.

// Test support: a failed check is a test failure, reported as a panic with the document.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use jsonschema::Validator;
use powertools_metrics::{MemorySink, Sink};
use serde_json::Value;

static EMF_SCHEMA: LazyLock<Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../emf.schema.json")).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
});

/// The CloudWatch Logs event size limit that applies to EMF documents in Lambda.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// PutMetricData's value range ("Values must be in the range of -2^360 to 2^360", the `Value`
/// member of `MetricDatum`), the rule the crate enforces.
fn assert_value_in_range(name: &str, value: &Value) {
    let number = value
        .as_f64()
        .unwrap_or_else(|| panic!("metric {name} has a non-numeric value {value}"));
    assert!(
        number.is_finite() && number.abs() <= 2f64.powi(360),
        "metric {name} has {number:e}, outside -2^360..=2^360"
    );
}

/// Parses `line` and checks it is a valid EMF document: the JSON Schema of the specification,
/// plus what a schema cannot say (target members present at the root with the right types).
pub fn assert_valid_emf(line: &str) -> Value {
    assert!(!line.contains('\n'), "an EMF document is one line: {line}");
    assert!(line.len() <= MAX_DOCUMENT_BYTES, "document over 256 KB");
    let document: Value = serde_json::from_str(line).expect("the document is JSON");
    let errors: Vec<String> = EMF_SCHEMA
        .iter_errors(&document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations {errors:#?} in {line}");

    for directive in document["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
        let mut metric_names = Vec::new();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(!metric_names.contains(&name), "metric {name} defined twice");
            metric_names.push(name);
            match &document[name] {
                Value::Number(_) => assert_value_in_range(name, &document[name]),
                Value::Array(values) => {
                    for value in values {
                        assert_value_in_range(name, value);
                    }
                    assert!(
                        (1..=100).contains(&values.len()),
                        "metric {name} has {} values",
                        values.len()
                    );
                    assert!(
                        values.iter().all(Value::is_number),
                        "metric {name}: {values:?}"
                    );
                }
                other => panic!("metric {name} has no numeric member at the root: {other}"),
            }
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                let name = name.as_str().unwrap();
                assert!(
                    !metric_names.contains(&name),
                    "{name} is a metric and a dimension"
                );
                let value = document[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {name} has no string member at the root"));
                assert!(
                    !value.trim().is_empty() && value.len() <= 1024,
                    "dimension {name}={value:?}"
                );
                assert!(
                    value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "dimension {name}={value:?} is not printable ASCII"
                );
            }
        }
    }
    document
}

/// Every EMF document (a JSON object with `_aws`) among `lines`, each checked.
///
/// # Panics
/// When a document is invalid.
pub fn valid_documents<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    lines
        .into_iter()
        .filter_map(|line| line.find("{\"_aws\"").map(|start| &line[start..]))
        .map(assert_valid_emf)
        .collect()
}

/// Every line of an in-memory sink (`MemorySink::lines`), each checked.
///
/// # Panics
/// When a document is invalid.
pub fn valid_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|line| assert_valid_emf(line)).collect()
}

/// A metrics sink for tests that checks every document as it is written, so a fixture that never
/// reads its documents still fails on an invalid one.
///
/// A document that fails the check panics in `write_document` (the test sees the panic unless
/// the code under test catches it) and is remembered: the last clone to be dropped panics again
/// if the panic was caught on the way, so no invalid document passes unnoticed. Otherwise it is
/// [`MemorySink`]: `lines`, `documents` and `take` read what was written.
#[derive(Debug, Clone, Default)]
pub struct CheckedSink {
    documents: MemorySink,
    failures: Arc<Failures>,
}

#[derive(Debug, Default)]
struct Failures(Mutex<Vec<String>>);

impl Drop for Failures {
    fn drop(&mut self) {
        let failures = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !failures.is_empty() && !std::thread::panicking() {
            panic!("invalid EMF documents were written: {failures:#?}");
        }
    }
}

impl CheckedSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The documents written so far, as lines (each already checked).
    pub fn lines(&self) -> Vec<String> {
        self.documents.lines()
    }

    /// The documents written so far, parsed (each already checked).
    pub fn documents(&self) -> Vec<Value> {
        self.documents.documents()
    }

    /// Removes and returns the documents written so far.
    pub fn take(&self) -> Vec<String> {
        self.documents.take()
    }
}

impl Sink for CheckedSink {
    fn write_document(&self, line: &str) {
        self.documents.write_document(line);
        let checked = std::panic::catch_unwind(|| assert_valid_emf(line));
        if let Err(panic) = checked {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            self.failures
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{reason}\n{line}"));
            std::panic::resume_unwind(panic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Bakery","Dimensions":[[]],"Metrics":[{"Name":"Orders","Unit":"Count"}]}]},"Orders":1}"#;

    #[test]
    fn a_valid_document_is_kept() {
        let sink = CheckedSink::new();
        sink.write_document(VALID);
        assert_eq!(sink.lines(), [VALID]);
    }

    #[test]
    fn an_invalid_document_panics_as_it_is_written() {
        let sink = CheckedSink::new();
        let written = std::panic::catch_unwind(|| sink.write_document(r#"{"_aws":{}}"#));
        assert!(written.is_err());
        // Caught here, so the drop below must report it again.
        let dropped = std::panic::catch_unwind(move || drop(sink));
        assert!(
            dropped.is_err(),
            "a caught failure is reported when the sink is dropped"
        );
    }

    #[test]
    fn a_document_over_a_limit_is_refused() {
        let over_range = VALID.replace(r#""Orders":1}"#, r#""Orders":1e300}"#);
        let sink = CheckedSink::new();
        let written = std::panic::catch_unwind(|| sink.write_document(&over_range));
        assert!(written.is_err(), "1e300 is past 2^360");
        std::mem::forget(sink); // already reported
    }
}
