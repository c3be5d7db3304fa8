//! Every EMF document a test sees is checked against the specification: the JSON Schema
//! (`tests/emf.schema.json`, written from the AWS EMF specification and the CloudWatch limits it
//! refers to) plus what a schema cannot say (target members at the root with the right types,
//! CloudWatch's value range and dimension value rules, the log event size).
//!
//! The metrics crate's tests, the facade's, the batch crate's, the examples' and the emulator
//! tests all call it on every document they read.

// Test support: a failed check is a test failure, reported as a panic with the document.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use jsonschema::Validator;
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
