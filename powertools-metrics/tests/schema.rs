//! The checker the other tests rely on must itself reject what CloudWatch would drop.

mod support;

use serde_json::{Value, json};
use support::assert_valid_emf;

fn valid() -> Value {
    json!({
        "_aws": {
            "Timestamp": 1_764_201_600_000_u64,
            "CloudWatchMetrics": [{
                "Namespace": "Bakery",
                "Dimensions": [["service", "location"]],
                "Metrics": [{"Name": "Orders", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1}]
            }]
        },
        "service": "orders", "location": "Lyon", "Orders": 1.0, "Latency": [1.0, 2.0]
    })
}

/// A change that makes the valid document invalid.
type Breakage = Box<dyn Fn(&mut Value)>;

fn rejected(document: &Value) -> bool {
    let line = document.to_string();
    std::panic::catch_unwind(|| assert_valid_emf(&line)).is_err()
}

#[test]
fn a_valid_document_passes() {
    assert_valid_emf(&valid().to_string());
}

#[test]
fn every_kind_of_invalid_document_is_rejected() {
    let mut cases: Vec<(&str, Breakage)> = vec![
        (
            "no envelope",
            Box::new(|d| drop(d.as_object_mut().unwrap().remove("_aws"))),
        ),
        (
            "no timestamp",
            Box::new(|d| drop(d["_aws"].as_object_mut().unwrap().remove("Timestamp"))),
        ),
        (
            "timestamp in seconds as text",
            Box::new(|d| d["_aws"]["Timestamp"] = json!("1764201600")),
        ),
        (
            "unknown unit",
            Box::new(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Count/Minute")
            }),
        ),
        (
            "resolution 5",
            Box::new(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["StorageResolution"] = json!(5)
            }),
        ),
        (
            "empty namespace",
            Box::new(|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("")),
        ),
        (
            "metric value missing",
            Box::new(|d| drop(d.as_object_mut().unwrap().remove("Orders"))),
        ),
        (
            "metric value is text",
            Box::new(|d| d["Orders"] = json!("1")),
        ),
        (
            "101 values",
            Box::new(|d| d["Latency"] = json!(vec![1.0; 101])),
        ),
        (
            "dimension value missing",
            Box::new(|d| drop(d.as_object_mut().unwrap().remove("location"))),
        ),
        (
            "dimension value empty",
            Box::new(|d| d["location"] = json!("")),
        ),
        (
            "dimension value is a number",
            Box::new(|d| d["location"] = json!(7)),
        ),
        (
            "dimension value not ASCII",
            Box::new(|d| d["location"] = json!("Zürich")),
        ),
        (
            "dimension name starts with a colon",
            Box::new(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([["service", ":loc"]]);
                d[":loc"] = json!("x");
            }),
        ),
        (
            "31 dimensions",
            Box::new(|d| {
                let names: Vec<String> = (0..31).map(|i| format!("d{i}")).collect();
                for name in &names {
                    d[name] = json!("v");
                }
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([names]);
            }),
        ),
        (
            "101 metrics",
            Box::new(|d| {
                let metrics: Vec<Value> = (0..101)
                    .map(|i| json!({"Name": format!("m{i}"), "Unit": "Count"}))
                    .collect();
                for i in 0..101 {
                    d[format!("m{i}")] = json!(1.0);
                }
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(metrics);
            }),
        ),
        (
            "a metric named like a dimension",
            Box::new(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"] =
                    json!([{"Name": "location", "Unit": "Count"}]);
            }),
        ),
    ];
    for (what, break_it) in cases.drain(..) {
        let mut document = valid();
        break_it(&mut document);
        assert!(rejected(&document), "{what} was accepted: {document}");
    }
}

#[test]
fn a_document_on_two_lines_is_rejected() {
    let pretty = serde_json::to_string_pretty(&valid()).unwrap();
    assert!(std::panic::catch_unwind(|| assert_valid_emf(&pretty)).is_err());
}
