//! Test support: every EMF document the tests produce is checked against the specification.

#![allow(dead_code, clippy::unwrap_used)] // test support: a failed check is a test failure

use std::sync::LazyLock;

use jsonschema::Validator;
use powertools_core::env::Env;
use powertools_metrics::{MemorySink, MetricsLayer, MetricsLayerBuilder};
use serde_json::Value;

static EMF_SCHEMA: LazyLock<Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("emf.schema.json")).expect("schema is JSON");
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
pub(crate) fn assert_valid_emf(line: &str) -> Value {
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

/// Every document `sink` holds, each checked.
pub(crate) fn valid_documents(sink: &MemorySink) -> Vec<Value> {
    sink.lines()
        .iter()
        .map(|line| assert_valid_emf(line))
        .collect()
}

/// A builder with the namespace `Bakery`, the service `orders`, writing to `sink`, reading an
/// empty environment (so the machine's variables do not leak in).
pub(crate) fn builder(sink: &MemorySink) -> MetricsLayerBuilder {
    MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .env(Env::empty())
}

/// The names of the metrics a document defines.
pub(crate) fn metric_names(document: &Value) -> Vec<String> {
    document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|metric| metric["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// The dimension sets of a document.
pub(crate) fn dimension_sets(document: &Value) -> Value {
    document["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()
}
