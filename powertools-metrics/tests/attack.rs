//! Adversarial tests of powertools-metrics, written from its documentation only (README,
//! CHANGELOG, `//!`/`///` docs) and the Powertools for Python 3.37 reference output.
//!
//! Every document is checked twice: with the project's checker
//! (`powertools_tests::emf::assert_valid_emf`) and with `cloudwatch_rules` below, written
//! independently from the AWS EMF specification and the PutMetricData / CloudWatch Logs limits.
//! A failing assertion is a finding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_metrics::{EmfRecorder, Error, Metrics, MetricsLayer, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// CloudWatch's own rules, independent of the project's checker.
// ---------------------------------------------------------------------------------------------

/// CloudWatch Logs: an event is at most 256 KB including 26 bytes of overhead.
const CW_MAX_EVENT: usize = 256 * 1024 - 26;

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn numbers(value: &Value) -> Vec<f64> {
    match value {
        Value::Number(n) => vec![n.as_f64().unwrap()],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .unwrap_or_else(|| panic!("non-numeric value {v}"))
            })
            .collect(),
        other => panic!("not a metric value: {other}"),
    }
}

/// Checks `line` against the EMF specification and CloudWatch's limits; returns the document.
fn cloudwatch_rules(line: &str, log_level: Option<&str>) -> Value {
    assert!(
        line.len() <= CW_MAX_EVENT,
        "document of {} bytes > CloudWatch Logs event limit",
        line.len()
    );
    assert!(!line.contains('\n'));
    let doc: Value = serde_json::from_str(line).expect("JSON");
    let root = doc.as_object().expect("object");
    let aws = &doc["_aws"];
    let ts = aws["Timestamp"]
        .as_u64()
        .expect("Timestamp is a non-negative integer (ms)");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        ts + 14 * 24 * 3600 * 1000 >= now,
        "Timestamp over 14 days old"
    );
    assert!(ts <= now + 2 * 3600 * 1000, "Timestamp over 2 hours ahead");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    let mut all_metric_names: Vec<String> = Vec::new();
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert!(!ns.is_empty() && ns.len() <= 255, "namespace length");
        assert!(
            ns.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c)),
            "namespace chars {ns}"
        );
        assert!(
            !ns.starts_with(':') && !ns.starts_with("AWS/") && !ns.trim().is_empty(),
            "namespace {ns}"
        );
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(
            !metrics.is_empty() && metrics.len() <= 100,
            "{} metrics in a directive",
            metrics.len()
        );
        let mut metric_names = Vec::new();
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            assert!(
                !name.is_empty() && name.chars().count() <= 255,
                "metric name length {}",
                name.len()
            );
            assert!(!metric_names.contains(&name), "metric {name} twice");
            metric_names.push(name);
            assert!(
                !all_metric_names.iter().any(|n| n == name),
                "metric {name} in two directives"
            );
            all_metric_names.push(name.to_owned());
            if let Some(r) = m.get("StorageResolution") {
                assert!(r == 1 || r == 60, "StorageResolution {r}");
            }
            let values = numbers(
                root.get(name)
                    .unwrap_or_else(|| panic!("metric {name} missing at root")),
            );
            assert!(
                !values.is_empty() && values.len() <= 100,
                "metric {name}: {} values",
                values.len()
            );
            for v in values {
                assert!(
                    v.is_finite() && v.abs() <= 2f64.powi(360),
                    "metric {name} value {v:e}"
                );
            }
        }
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("dimension set array");
            assert!(set.len() <= 30, "dimension set of {} > 30", set.len());
            let mut seen = Vec::new();
            for n in set {
                let n = n.as_str().expect("dimension name string");
                assert!(
                    !seen.contains(&n),
                    "dimension {n} twice in one set: {set:?}"
                );
                seen.push(n);
                assert!(
                    !n.is_empty() && n.len() <= 250,
                    "dimension name length {}",
                    n.len()
                );
                assert!(
                    printable_ascii(n) && !n.starts_with(':'),
                    "dimension name {n:?}"
                );
                assert!(
                    !metric_names.contains(&n),
                    "{n} is a metric and a dimension"
                );
                let v = root.get(n).and_then(Value::as_str).unwrap_or_else(|| {
                    panic!(
                        "dimension {n} has no string value at root: {:?}",
                        root.get(n)
                    )
                });
                assert!(
                    !v.trim().is_empty() && v.len() <= 1024,
                    "dimension {n}={v:?}"
                );
                assert!(
                    printable_ascii(v),
                    "dimension {n}={v:?} not printable ASCII"
                );
            }
        }
    }
    if let Some(level) = log_level {
        assert_eq!(doc["level"], level, "level for Lambda's filter");
        let t = doc["timestamp"].as_str().expect("timestamp string");
        chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339 timestamp");
    }
    doc
}

/// Every line of the sink, checked by the project checker and by `cloudwatch_rules`.
fn checked(sink: &CheckedSink) -> Vec<Value> {
    checked_at(sink, None)
}

fn checked_at(sink: &CheckedSink, log_level: Option<&str>) -> Vec<Value> {
    sink.lines()
        .iter()
        .map(|line| {
            powertools_tests::emf::assert_valid_emf(line);
            cloudwatch_rules(line, log_level)
        })
        .collect()
}

fn dims(doc: &Value) -> Value {
    doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()
}

fn metric_names(doc: &Value) -> Vec<String> {
    doc["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["Metrics"].as_array().unwrap().iter())
        .map(|m| m["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// All values of every metric across documents.
fn all_values(docs: &[Value]) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for doc in docs {
        for name in metric_names(doc) {
            out.entry(name.clone())
                .or_default()
                .extend(numbers(&doc[&name]));
        }
    }
    out
}

fn builder(sink: &CheckedSink) -> powertools_metrics::MetricsLayerBuilder {
    MetricsLayer::builder()
        .env(Env::empty())
        .namespace("Attack")
        .sink(sink.clone())
}

fn layer_with_service(sink: &CheckedSink) -> MetricsLayer {
    builder(sink).service("orders").build().unwrap()
}

fn name(prefix: &str, i: usize, len: usize) -> String {
    let tail = format!("{prefix}{i}");
    format!("{}{}", "n".repeat(len - tail.len()), tail)
}

static RECORDER: Once = Once::new();
fn install_recorder() {
    RECORDER.call_once(|| EmfRecorder::new().install().expect("install recorder"));
}

// ---------------------------------------------------------------------------------------------
// 30 / 31 dimensions in every path
// ---------------------------------------------------------------------------------------------

#[test]
fn dims_29_added_plus_service_ok_30th_refused() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    for i in 0..29 {
        m.add_dimension(&format!("d{i}"), "v").unwrap();
    }
    let err = m.add_dimension("d29", "v").unwrap_err();
    assert!(matches!(err, Error::TooManyDimensions { .. }), "{err:?}");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    let set = dims(&docs[0])[0].as_array().unwrap().clone();
    assert_eq!(set.len(), 30);
    assert_eq!(set.last().unwrap(), "service");
}

#[test]
fn dims_30_added_without_service_stay_within_30() {
    let sink = CheckedSink::new();
    let m = builder(&sink).build().unwrap().new_metrics();
    let mut ok = 0;
    for i in 0..31 {
        if m.add_dimension(&format!("d{i}"), "v").is_ok() {
            ok += 1;
        }
    }
    assert!(ok <= 30, "{ok} dimensions accepted");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn defaults_29_with_service_build_then_add_dimension_refused() {
    let sink = CheckedSink::new();
    let mut b = builder(&sink).service("orders");
    for i in 0..29 {
        b = b.default_dimension(format!("def{i}"), "v");
    }
    let layer = b.build().expect("29 defaults + service = 30");
    let m = layer.new_metrics();
    assert!(
        m.add_dimension("extra", "v").is_err(),
        "31st dimension accepted"
    );
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0])[0].as_array().unwrap().len(), 30);
}

#[test]
fn defaults_30_with_service_refused_at_build() {
    let sink = CheckedSink::new();
    let mut b = builder(&sink).service("orders");
    for i in 0..30 {
        b = b.default_dimension(format!("def{i}"), "v");
    }
    assert!(b.build().is_err(), "30 defaults + service built");
}

#[test]
fn add_dimensions_with_29_defaults_refuses_overflow() {
    let sink = CheckedSink::new();
    let mut b = builder(&sink).service("orders");
    for i in 0..29 {
        b = b.default_dimension(format!("def{i}"), "v");
    }
    let m = b.build().unwrap().new_metrics();
    // defaults (29) + 2 new = 31 in one set: CloudWatch refuses it.
    let r = m.add_dimensions([("a", "1"), ("b", "2")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
    assert!(r.is_err(), "a 31-dimension set was accepted");
}

#[test]
fn add_dimensions_31_names_refused_30_fit() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let names: Vec<String> = (0..31).map(|i| format!("k{i}")).collect();
    let pairs31: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let r31 = m.add_dimensions(pairs31.iter().copied());
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
    assert!(r31.is_err(), "31-dimension set accepted");
}

#[test]
fn add_dimensions_duplicate_name_in_one_set() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let r = m.add_dimensions([("country", "FR"), ("country", "DE")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    if r.is_ok() {
        // Whatever is written must be a set without duplicates.
        for set in dims(&docs[0]).as_array().unwrap() {
            let s = set.as_array().unwrap();
            let mut names: Vec<_> = s.iter().map(|v| v.as_str().unwrap()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), s.len());
        }
    }
}

#[test]
fn add_dimensions_repeating_a_default_name() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    let _ = m.add_dimensions([("environment", "staging"), ("channel", "web")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn default_dimension_named_service_plus_service() {
    let sink = CheckedSink::new();
    let r = builder(&sink)
        .service("orders")
        .default_dimension("service", "other")
        .build();
    if let Ok(layer) = r {
        let m = layer.new_metrics();
        m.add_metric("M", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        let docs = checked(&sink);
        assert_eq!(dims(&docs[0]), json!([["service"]]));
    }
}

async fn h_override_service(e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    if let Some(service) = e.payload["service"].as_str() {
        powertools_metrics::add_dimension("service", service)?;
    }
    powertools_metrics::add_metric("M", 1.0, Unit::Count)?;
    Ok(())
}

/// Powertools for Python 3.37 lets `add_dimension("service", …)` replace the configured
/// service for the invocation (with a warning): so does this crate, in the service's place in
/// the set, and the next invocation has the configured one again.
#[tokio::test]
async fn add_dimension_named_service_replaces_it_for_the_invocation_as_in_python() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let handler = layer.layer(service_fn(h_override_service));
    for event in [json!({"service": "refunds"}), json!({})] {
        handler
            .clone()
            .oneshot(TestContext::new().with_cold_start(false).event(event))
            .await
            .unwrap();
    }
    let docs = checked(&sink);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["service"], "refunds");
    assert_eq!(dims(&docs[0]), json!([["environment", "service"]]));
    assert_eq!(docs[1]["service"], "orders", "the next invocation's");
    assert_eq!(dims(&docs[1]), json!([["environment", "service"]]));
}

#[test]
fn add_dimension_named_service_keeps_one_service_last() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let _ = m.add_dimension("service", "other");
    m.add_dimension("location", "Lyon").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0]), json!([["location", "service"]]));
}

// ---------------------------------------------------------------------------------------------
// Python's dimension sets
// ---------------------------------------------------------------------------------------------

#[test]
fn python_main_set_order_and_add_dimensions_sets() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimensions([("country", "FR"), ("channel", "web")])
        .unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        dims(&docs[0]),
        json!([
            ["environment", "location", "service"],
            ["environment", "country", "channel"]
        ])
    );
    assert_eq!(docs[0]["service"], "orders");
}

#[test]
fn python_no_service_is_one_empty_set() {
    let sink = CheckedSink::new();
    let m = builder(&sink).build().unwrap().new_metrics();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0]), json!([[]]));
    assert!(docs[0].get("service").is_none());
}

#[test]
fn python_add_dimension_after_add_dimensions_goes_to_main_set() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimensions([("country", "FR")]).unwrap();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        dims(&docs[0]),
        json!([["location", "service"], ["country"]])
    );
}

#[tokio::test]
async fn python_cold_start_document() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .capture_cold_start_metric(true)
        .build()
        .unwrap();
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(
            TestContext::new()
                .with_function_name("orders-api")
                .with_cold_start(true)
                .event(json!({})),
        )
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    assert_eq!(docs.len(), 2);
    let cold = &docs[0];
    assert_eq!(dims(cold), json!([["function_name", "service"]]));
    assert_eq!(metric_names(cold), ["ColdStart"]);
    assert_eq!(numbers(&cold["ColdStart"]), [1.0]);
    assert_eq!(cold["function_name"], "orders-api");
    assert_eq!(cold["service"], "orders");
    assert!(
        cold.get("environment").is_none(),
        "Python puts no default dimension on ColdStart"
    );
    assert_eq!(dims(&docs[1]), json!([["environment", "service"]]));
}

#[test]
fn flush_resets_to_defaults() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimensions([("country", "FR")]).unwrap();
    m.add_metadata("order_id", "o-1").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    m.add_metric("M", 2.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[1]), json!([["environment", "service"]]));
    assert!(docs[1].get("order_id").is_none());
    assert!(docs[1].get("location").is_none());
}

// ---------------------------------------------------------------------------------------------
// Non-ASCII / invalid dimension values kept as metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn non_ascii_value_becomes_metadata_metrics_written() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("ville", "Zürich").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs[0]["ville"], "Zürich");
    assert_eq!(dims(&docs[0]), json!([["service"]]));
}

#[test]
fn non_ascii_then_ascii_same_dimension() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("city", "Zürich").unwrap();
    let r = m.add_dimension("city", "Lyon");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    if r.is_ok() {
        assert_eq!(docs[0]["city"], "Lyon");
        assert_eq!(dims(&docs[0]), json!([["city", "service"]]));
    }
}

#[test]
fn ascii_then_non_ascii_same_dimension() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("city", "Lyon").unwrap();
    let _ = m.add_dimension("city", "Zürich");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink); // the root's "city" must not be Zürich while a set names it
}

#[test]
fn non_ascii_dimension_over_existing_metadata() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metadata("city", json!({"id": 7})).unwrap();
    let r = m.add_dimension("city", "Zürich");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    // Either refused (name used by metadata, as for an ASCII value) or both kept; never a
    // silent overwrite of the metadata the caller added.
    if r.is_ok() {
        assert_eq!(
            docs[0]["city"],
            json!({"id": 7}),
            "metadata silently overwritten"
        );
    }
}

#[test]
fn non_ascii_dimension_named_like_a_metric() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let r = m.add_dimension("Orders", "Zürich");
    m.flush().unwrap();
    let docs = checked(&sink);
    assert!(r.is_err(), "a metric's name taken by demoted metadata");
    assert_eq!(numbers(&docs[0]["Orders"]), [1.0]);
}

#[test]
fn metric_named_like_demoted_dimension() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("Orders", "Zürich").unwrap();
    let r = m.add_metric("Orders", 1.0, Unit::Count);
    m.add_metric("Other", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    if r.is_ok() {
        assert_eq!(numbers(&docs[0]["Orders"]), [1.0], "metric value lost");
    }
}

#[test]
fn metadata_then_add_dimensions_non_ascii_same_name() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metadata("region", "eu").unwrap();
    let r = m.add_dimensions([("region", "Zürich"), ("channel", "web")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    if r.is_ok() {
        assert_eq!(docs[0]["region"], "eu", "metadata silently overwritten");
    }
}

#[test]
fn whitespace_only_and_control_dimension_values() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let _ = m.add_dimension("blank", "   ");
    let _ = m.add_dimension("tab", "a\tb");
    let _ = m.add_dimension("nul", "a\0b");
    let _ = m.add_dimension("del", "a\u{7f}b");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn dimension_value_1024_kept_1025_metadata() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("ok", &"v".repeat(1024)).unwrap();
    m.add_dimension("long", &"v".repeat(1025)).unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0]), json!([["ok", "service"]]));
    assert_eq!(docs[0]["long"].as_str().unwrap().len(), 1025);
}

#[test]
fn dimension_names_invalid_refused() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    for bad in [":lead", "Zürich", "a\tb", &"n".repeat(251)] {
        assert!(
            m.add_dimension(bad, "v").is_err(),
            "dimension name {bad:?} accepted"
        );
        assert!(
            m.add_dimensions([(bad, "v")]).is_err(),
            "set dimension name {bad:?} accepted"
        );
    }
    m.add_dimension(&"n".repeat(250), "v").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn default_dimension_non_ascii_or_invalid() {
    let sink = CheckedSink::new();
    let r = builder(&sink)
        .service("orders")
        .default_dimension("city", "Zürich")
        .build();
    if let Ok(layer) = r {
        let m = layer.new_metrics();
        m.add_metric("M", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        checked(&sink);
    }
    let sink = CheckedSink::new();
    assert!(
        builder(&sink)
            .default_dimension("Zürich", "x")
            .build()
            .is_err()
    );
}

#[test]
fn service_non_ascii() {
    let sink = CheckedSink::new();
    if let Ok(layer) = builder(&sink)
        .service("Zürich")
        .capture_cold_start_metric(true)
        .build()
    {
        let m = layer.new_metrics();
        m.add_metric("M", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        checked(&sink);
    }
}

// ---------------------------------------------------------------------------------------------
// Reserved names
// ---------------------------------------------------------------------------------------------

#[test]
fn reserved_names_refused() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    assert!(m.add_metric("_aws", 1.0, Unit::Count).is_err());
    assert!(m.add_metadata("_aws", 1).is_err());
    assert!(m.add_dimension("_aws", "x").is_err());
    assert!(m.add_dimensions([("_aws", "x")]).is_err());
    assert!(
        m.add_dimension("_aws", "Zürich").is_err(),
        "_aws through a demoted dimension"
    );
    assert!(m.add_metric("service", 1.0, Unit::Count).is_err());
    assert!(m.add_metadata("service", "x").is_err());
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs[0]["service"], "orders");
}

#[test]
fn metric_metadata_dimension_collisions() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metadata("Orders", 5).unwrap();
    assert!(m.add_metric("Orders", 1.0, Unit::Count).is_err());
    m.add_dimensions([("channel", "web")]).unwrap();
    assert!(m.add_metric("channel", 1.0, Unit::Count).is_err());
    assert!(m.add_metadata("channel", "x").is_err());
    m.add_metric("Sold", 1.0, Unit::Count).unwrap();
    assert!(m.add_dimension("Sold", "x").is_err());
    assert!(m.add_dimensions([("Sold", "x")]).is_err());
    assert!(m.add_metadata("Sold", "x").is_err());
    m.flush().unwrap();
    checked(&sink);
}

fn warn_layer(sink: &CheckedSink, level: &str) -> powertools_metrics::MetricsLayerBuilder {
    MetricsLayer::builder()
        .env(Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", level)]))
        .namespace("Attack")
        .service("orders")
        .sink(sink.clone())
}

#[test]
fn warn_level_refuses_level_and_timestamp_everywhere() {
    let sink = CheckedSink::new();
    let m = warn_layer(&sink, "WARN").build().unwrap().new_metrics();
    for n in ["level", "timestamp"] {
        assert!(m.add_metric(n, 1.0, Unit::Count).is_err(), "metric {n}");
        assert!(m.add_metadata(n, "x").is_err(), "metadata {n}");
        assert!(m.add_dimension(n, "x").is_err(), "dimension {n}");
        assert!(
            m.add_dimension(n, "Zürich").is_err(),
            "demoted dimension {n}"
        );
        assert!(m.add_dimensions([(n, "x")]).is_err(), "set dimension {n}");
        assert!(
            m.add_dimensions([(n, "Zürich")]).is_err(),
            "demoted set dimension {n}"
        );
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked_at(&sink, Some("WARN"));
}

#[test]
fn warn_level_default_dimension_named_level() {
    for (level, name) in [("WARN", "level"), ("ERROR", "timestamp")] {
        let sink = CheckedSink::new();
        let built = warn_layer(&sink, level)
            .default_dimension(name, "x")
            .build();
        if let Ok(layer) = &built {
            let m = layer.new_metrics();
            m.add_metric("M", 1.0, Unit::Count).unwrap();
            m.flush().unwrap();
            let line = sink.lines()[0].clone();
            // Check Lambda's filter and CloudWatch's rules before failing on the build.
            cloudwatch_rules(&line, Some(level));
            panic!("default dimension {name:?} accepted at {level}; document: {line}");
        }
    }
}

#[test]
fn warn_level_service_named_and_every_document() {
    for (env, level) in [
        ("WARN", "WARN"),
        ("WARNING", "WARN"),
        ("ERROR", "ERROR"),
        ("FATAL", "FATAL"),
        ("CRITICAL", "FATAL"),
    ] {
        let sink = CheckedSink::new();
        let m = warn_layer(&sink, env).build().unwrap().new_metrics();
        m.add_metadata("k", "v").unwrap();
        for i in 0..101 {
            m.add_metric(&format!("M{i}"), 1.0, Unit::Count).unwrap();
        }
        m.flush().unwrap();
        let docs = checked_at(&sink, Some(level));
        assert_eq!(docs.len(), 2);
    }
}

#[tokio::test]
async fn warn_level_cold_start_carries_level() {
    let sink = CheckedSink::new();
    let layer = warn_layer(&sink, "ERROR")
        .capture_cold_start_metric(true)
        .build()
        .unwrap();
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("M", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(true).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked_at(&sink, Some("ERROR"));
    assert_eq!(docs.len(), 2);
}

/// At INFO documents carry no `level` of their own, and the name is Lambda's filter's (a
/// caller's `level` of `DEBUG` would have the document dropped: see
/// `compat::level_and_timestamp_are_refused_whenever_lambda_s_filter_reads_them`).
#[test]
fn info_level_documents_have_no_level() {
    let sink = CheckedSink::new();
    let m = warn_layer(&sink, "INFO").build().unwrap().new_metrics();
    assert!(matches!(
        m.add_metadata("level", "custom"),
        Err(Error::NameCollision { .. })
    ));
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert!(docs[0].get("level").is_none());
    assert!(docs[0].get("timestamp").is_none());
}

#[test]
fn lower_case_warn_level() {
    // Lambda's ALC writes upper case, but a user setting it by hand may not.
    let sink = CheckedSink::new();
    if let Ok(layer) = warn_layer(&sink, "warn").build() {
        let m = layer.new_metrics();
        m.add_metric("M", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        let docs = checked(&sink);
        assert_eq!(
            docs[0]["level"], "WARN",
            "lower-case warn: documents dropped by Lambda's filter"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Values, names, namespace, timestamp
// ---------------------------------------------------------------------------------------------

#[test]
fn value_limits() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let max = 2f64.powi(360);
    m.add_metric("Edge", max, Unit::None).unwrap();
    m.add_metric("Edge", -max, Unit::None).unwrap();
    m.add_metric("Edge", f64::MIN_POSITIVE, Unit::None).unwrap();
    m.add_metric("Edge", 5e-324, Unit::None).unwrap();
    m.add_metric("Edge", -0.0, Unit::None).unwrap();
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        max * (1.0 + f64::EPSILON),
        f64::MAX,
    ] {
        assert!(
            m.add_metric("Bad", bad, Unit::None).is_err(),
            "{bad:e} accepted"
        );
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(numbers(&docs[0]["Edge"]).len(), 5);
}

#[test]
fn metric_names_limits() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    assert!(m.add_metric("", 1.0, Unit::Count).is_err());
    assert!(m.add_metric(&"x".repeat(256), 1.0, Unit::Count).is_err());
    assert!(
        m.add_metric("   ", 1.0, Unit::Count).is_err(),
        "whitespace-only metric name accepted"
    );
    m.add_metric(&"x".repeat(255), 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn namespace_rules() {
    for bad in [
        "AWS/Lambda",
        " ",
        ":lead",
        "Zürich",
        "a\tb",
        &"a".repeat(256),
    ] {
        let sink = CheckedSink::new();
        assert!(
            builder(&sink).namespace(bad).build().is_err(),
            "namespace {bad:?} accepted"
        );
    }
    for good in ["My App", "a:b", "x/y#z", &"a".repeat(255)] {
        let sink = CheckedSink::new();
        let m = builder(&sink)
            .namespace(good)
            .build()
            .unwrap()
            .new_metrics();
        m.add_metric("M", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        checked(&sink);
    }
}

#[test]
fn timestamp_limits() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    assert!(
        m.set_timestamp(now - 14 * day - Duration::from_secs(60))
            .is_err()
    );
    assert!(
        m.set_timestamp(now + Duration::from_secs(2 * 3600 + 60))
            .is_err()
    );
    assert!(
        m.set_timestamp(UNIX_EPOCH - Duration::from_secs(1))
            .is_err()
    );
    assert!(m.set_timestamp(UNIX_EPOCH).is_err());
    m.set_timestamp(now - 13 * day).unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    let ts = docs[0]["_aws"]["Timestamp"].as_u64().unwrap();
    let want = (now - 13 * day)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(ts, want);
}

#[test]
fn timestamp_carried_to_auto_flushed_documents() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let t = SystemTime::now() - Duration::from_secs(3600);
    m.set_timestamp(t).unwrap();
    for i in 0..150 {
        m.add_metric(&format!("M{i}"), 1.0, Unit::Count).unwrap();
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    let want = t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    for d in &docs {
        assert_eq!(d["_aws"]["Timestamp"].as_u64().unwrap(), want);
    }
}

#[test]
fn unit_and_resolution_conflicts() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    assert!(m.add_metric("M", 1.0, Unit::Seconds).is_err());
    assert!(
        m.add_metric_with_resolution("M", 1.0, Unit::Count, powertools_metrics::Resolution::High)
            .is_err()
    );
    m.add_metric_with_resolution("H", 1.0, Unit::Count, powertools_metrics::Resolution::High)
        .unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(numbers(&docs[0]["M"]), [1.0]);
}

// ---------------------------------------------------------------------------------------------
// 101st metric / value, document size
// ---------------------------------------------------------------------------------------------

#[test]
fn auto_flush_101st_metric_carries_everything() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimensions([("country", "FR")]).unwrap();
    m.add_dimension("ville", "Zürich").unwrap();
    m.add_metadata("order_id", "o-1").unwrap();
    for i in 0..101 {
        m.add_metric(&format!("M{i}"), i as f64, Unit::Count)
            .unwrap();
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs.len(), 2);
    for d in &docs {
        assert_eq!(
            dims(d),
            json!([
                ["environment", "location", "service"],
                ["environment", "country"]
            ])
        );
        assert_eq!(d["order_id"], "o-1");
        assert_eq!(d["ville"], "Zürich");
        assert_eq!(d["location"], "Lyon");
        assert_eq!(d["country"], "FR");
    }
    let v = all_values(&docs);
    assert_eq!(v.len(), 101);
}

#[test]
fn auto_flush_101st_value() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metadata("k", "v").unwrap();
    for i in 0..250 {
        m.add_metric("Lat", i as f64, Unit::Milliseconds).unwrap();
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs.len(), 3);
    let mut v = all_values(&docs).remove("Lat").unwrap();
    v.sort_by(f64::total_cmp);
    assert_eq!(v, (0..250).map(f64::from).collect::<Vec<_>>());
    for d in &docs {
        assert_eq!(d["k"], "v");
    }
}

#[test]
fn dimensions_added_after_auto_flush() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    for i in 0..101 {
        m.add_metric("Lat", i as f64, Unit::Milliseconds).unwrap();
    }
    m.add_dimension("late", "x").unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs.len(), 2);
    assert_eq!(all_values(&docs)["Lat"].len(), 101);
}

#[test]
fn values_conserved_many_metrics_values() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let mut expected = 0usize;
    for round in 0..3 {
        for i in 0..150 {
            for j in 0..(1 + (i % 7) * 20) {
                m.add_metric(&format!("M{i}"), (round * 1000 + j) as f64, Unit::Count)
                    .unwrap();
                expected += 1;
            }
        }
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    let total: usize = all_values(&docs).values().map(Vec::len).sum();
    assert_eq!(total, expected);
}

#[test]
fn full_document_100x100_long_names_long_values() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let v = -1.234_567_890_123_456_7e-300;
    for i in 0..100 {
        let n = name("m", i, 255);
        for _ in 0..100 {
            m.add_metric(&n, v, Unit::BytesPerSecond).unwrap();
        }
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    let total: usize = all_values(&docs).values().map(Vec::len).sum();
    assert_eq!(total, 10_000);
}

#[test]
fn metadata_budget_then_full_metrics() {
    let sink = CheckedSink::new();
    let m = warn_layer(&sink, "WARN")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    for i in 0..28 {
        m.add_dimension(&name("d", i, 250), &"v".repeat(1024))
            .unwrap();
    }
    // Fill the metadata budget in chunks until it is refused.
    let mut refused = false;
    for i in 0..400 {
        match m.add_metadata(&format!("blob{i}"), "b".repeat(1000)) {
            Ok(()) => {}
            Err(Error::DocumentTooLarge { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refused, "metadata budget never reached");
    let v = -1.234_567_890_123_456_7e-300;
    for i in 0..100 {
        let n = name("m", i, 255);
        for _ in 0..100 {
            m.add_metric_with_resolution(
                &n,
                v,
                Unit::BytesPerSecond,
                powertools_metrics::Resolution::High,
            )
            .unwrap();
        }
    }
    m.flush().unwrap();
    let docs = checked_at(&sink, Some("WARN"));
    let total: usize = all_values(&docs).values().map(Vec::len).sum();
    assert_eq!(total, 10_000);
}

#[test]
fn escaped_metadata_counts_serialized_size() {
    // 60 000 control characters serialize as 360 000 bytes ("\u0001").
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let r = m.add_metadata("ctl", "\u{1}".repeat(60_000));
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
    assert!(r.is_err());
}

#[test]
fn demoted_dimension_values_count_in_budget() {
    // Values over 1024 characters or not printable become metadata: they must count in the
    // 192 KB budget like metadata does, or the document passes 256 KB.
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let mut results = Vec::new();
    for i in 0..5 {
        results.push(m.add_dimension(&format!("long{i}"), &"é".repeat(40_000)));
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        all_values(&docs)["M"],
        [1.0],
        "metric lost: results {results:?}"
    );
}

#[test]
fn demoted_control_chars_count_escaped() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let mut results = Vec::new();
    for i in 0..5 {
        results.push(
            m.add_dimensions([(format!("ctl{i}").as_str(), "\u{1}".repeat(10_000).as_str())]),
        );
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(all_values(&docs)["M"], [1.0]);
}

#[test]
fn many_dimension_sets_with_long_names() {
    // Each add_dimensions set repeats its names in the directive: 29 names of 250 bytes = 7 KB
    // per set that the root's values do not show.
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let mut accepted = 0;
    for s in 0..60 {
        let names: Vec<String> = (0..29).map(|i| name(&format!("s{s}d"), i, 250)).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        match m.add_dimensions(pairs.iter().copied()) {
            Ok(()) => accepted += 1,
            Err(_) => break,
        }
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let sizes: Vec<usize> = sink.lines().iter().map(String::len).collect();
    assert!(
        sizes.iter().all(|&n| n <= CW_MAX_EVENT),
        "{accepted} sets accepted, documents of {sizes:?} bytes"
    );
    let docs = checked(&sink);
    assert_eq!(all_values(&docs)["M"], [1.0], "{accepted} sets");
}

#[test]
fn same_long_names_in_many_sets() {
    // The same 29 long names in 40 sets: root values counted once, the directive 40 times.
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let names: Vec<String> = (0..29).map(|i| name("same", i, 250)).collect();
    let mut accepted = 0;
    for s in 0..40 {
        // A different subset order each time makes a different set.
        let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        pairs.rotate_left(s % 29);
        if s >= 29 {
            pairs.pop();
        }
        match m.add_dimensions(pairs.iter().copied()) {
            Ok(()) => accepted += 1,
            Err(_) => break,
        }
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let sizes: Vec<usize> = sink.lines().iter().map(String::len).collect();
    assert!(
        sizes.iter().all(|&n| n <= CW_MAX_EVENT),
        "{accepted} sets accepted, documents of {sizes:?} bytes"
    );
    let docs = checked(&sink);
    assert_eq!(all_values(&docs)["M"], [1.0], "{accepted} sets");
}

#[test]
fn metadata_single_huge_value() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    assert!(matches!(
        m.add_metadata("huge", "x".repeat(300 * 1024)),
        Err(Error::DocumentTooLarge { .. })
    ));
    // Replacing a key must not count twice nor let the budget be bypassed.
    for _ in 0..10 {
        m.add_metadata("k", "y".repeat(100 * 1024)).unwrap();
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

/// Metadata nested past what JSON readers take is refused, as the logger refuses such a key: a
/// value 127 levels deep made a document serde_json (and the tools built on it) cannot read
/// back, `recursion limit exceeded`, so its metrics were lost with it (found by comparing with
/// Python, which writes it too). 126 levels, with the document's own object the 127 readers
/// take, are kept.
#[test]
fn metadata_nested_past_what_json_readers_take_is_refused() {
    let nested = |levels: usize| (0..levels).fold(json!(1), |value, _| json!([value]));
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_metadata("kept", nested(126)).unwrap();
    for levels in [127, 1_000] {
        let error = m.add_metadata("deep", nested(levels)).unwrap_err();
        assert!(
            matches!(&error, Error::MetadataTooDeep { key, limit: 126 } if key == "deep"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "metadata \"deep\" nests deeper than 126 levels: the document would be deeper than \
             JSON readers take (serde_json stops at 128), and its metrics lost with it"
        );
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    for line in sink.lines() {
        serde_json::from_str::<Value>(&line).expect("every document reads back");
    }
    assert_eq!(docs.len(), 1);
    assert!(docs[0].get("deep").is_none());
    assert!(docs[0].get("kept").is_some());
}

#[test]
fn metadata_nested_object_with_escapes_size() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let obj = json!({"a": vec!["\"\\\u{1}"; 20_000]});
    let _ = m.add_metadata("obj", obj);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

// ---------------------------------------------------------------------------------------------
// Concurrency through MetricsLayer
// ---------------------------------------------------------------------------------------------

async fn h_mix(e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    let i = e.payload["i"].as_u64().unwrap() as usize;
    powertools_metrics::add_dimension("req", &format!("r{i}"))?;
    tokio::task::yield_now().await;
    if i % 3 == 0 {
        powertools_metrics::add_dimensions([("batch", format!("b{i}").as_str())])?;
    }
    powertools_metrics::add_metadata("req_id", i)?;
    tokio::time::sleep(Duration::from_millis((i % 5) as u64)).await;
    for j in 0..(1 + i % 130) {
        powertools_metrics::add_metric("Work", (i * 1000 + j) as f64, Unit::Count)?;
        if j % 17 == 0 {
            tokio::task::yield_now().await;
        }
    }
    Ok::<_, lambda_runtime::Error>(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_never_mix() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let handler = layer.layer(service_fn(h_mix));
        tasks.push(tokio::spawn(async move {
            handler
                .oneshot(
                    TestContext::new()
                        .with_cold_start(false)
                        .event(json!({"i": i})),
                )
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let docs = checked(&sink);
    let mut per_req: BTreeMap<usize, usize> = BTreeMap::new();
    for d in &docs {
        let i = d["req_id"].as_u64().expect("req_id metadata") as usize;
        assert_eq!(d["req"], format!("r{i}"), "dimension of another invocation");
        let expected_dims = if i.is_multiple_of(3) {
            json!([["environment", "req", "service"], ["environment", "batch"]])
        } else {
            json!([["environment", "req", "service"]])
        };
        assert_eq!(dims(d), expected_dims);
        if i % 3 == 0 {
            assert_eq!(d["batch"], format!("b{i}"));
        } else {
            assert!(d.get("batch").is_none());
        }
        for v in numbers(&d["Work"]) {
            assert_eq!(v as usize / 1000, i, "value of another invocation");
        }
        *per_req.entry(i).or_default() += numbers(&d["Work"]).len();
    }
    assert_eq!(per_req.len(), 200);
    for (i, n) in per_req {
        assert_eq!(n, 1 + i % 130, "values lost for invocation {i}");
    }
}

async fn h_fail(e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    let i = e.payload["i"].as_u64().unwrap() as usize;
    powertools_metrics::add_metadata("req_id", i)?;
    powertools_metrics::add_metric("Work", i as f64, Unit::Count)?;
    tokio::task::yield_now().await;
    match i % 3 {
        0 => Ok::<_, lambda_runtime::Error>(()),
        1 => Err("boom".into()),
        _ => panic!("handler panic {i}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_handler_errors_and_panics_still_flush() {
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let handler = layer.layer(service_fn(h_fail));
        tasks.push(tokio::spawn(async move {
            let _ = handler
                .oneshot(
                    TestContext::new()
                        .with_cold_start(false)
                        .event(json!({"i": i})),
                )
                .await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let docs = checked(&sink);
    let mut seen: Vec<u64> = docs.iter().map(|d| d["req_id"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..60).collect::<Vec<_>>());
    for d in &docs {
        assert_eq!(numbers(&d["Work"]), [d["req_id"].as_f64().unwrap()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spawned_task_with_moved_handle() {
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        let m = Metrics::current().expect("inside the invocation");
        let mut joins = Vec::new();
        for k in 0..20 {
            let m = m.clone();
            joins.push(tokio::spawn(async move {
                for j in 0..10 {
                    m.add_metric("Spawned", (k * 10 + j) as f64, Unit::Count)
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    let mut v = all_values(&docs).remove("Spawned").unwrap();
    v.sort_by(f64::total_cmp);
    assert_eq!(v, (0..200).map(f64::from).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// The `metrics` facade recorder
// ---------------------------------------------------------------------------------------------

async fn h_rec(e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    let i = e.payload["i"].as_u64().unwrap() as usize;
    powertools_metrics::add_metadata("req_id", i)?;
    metrics::counter!("Hits").increment(1);
    tokio::task::yield_now().await;
    metrics::counter!("Hits").increment(i as u64);
    metrics::counter!("Labelled", "shard" => format!("s{}", i % 4)).increment(1);
    for j in 0..(i % 150) {
        metrics::histogram!("Lat").record((i * 1000 + j) as f64);
    }
    Ok::<_, lambda_runtime::Error>(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorder_concurrent_invocations_and_labels() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let mut tasks = Vec::new();
    for i in 0..100usize {
        let handler = layer.layer(service_fn(h_rec));
        tasks.push(tokio::spawn(async move {
            handler
                .oneshot(
                    TestContext::new()
                        .with_cold_start(false)
                        .event(json!({"i": i})),
                )
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let docs = checked(&sink);
    let mut hits: BTreeMap<u64, f64> = BTreeMap::new();
    let mut lat: BTreeMap<u64, usize> = BTreeMap::new();
    let mut labelled = 0;
    for d in &docs {
        let i = d["req_id"]
            .as_u64()
            .expect("req_id on every document of the invocation");
        if let Some(h) = d.get("Hits") {
            *hits.entry(i).or_default() += numbers(h).iter().sum::<f64>();
        }
        if let Some(l) = d.get("Lat") {
            for v in numbers(l) {
                assert_eq!(v as u64 / 1000, i);
            }
            *lat.entry(i).or_default() += numbers(l).len();
        }
        if d.get("Labelled").is_some() {
            labelled += 1;
            assert_eq!(d["shard"], format!("s{}", i % 4));
            assert_eq!(
                dims(d),
                json!([["shard", "service"]]),
                "labels + service, as add_dimension"
            );
            assert!(
                d.get("Hits").is_none(),
                "labels leaked into another metric's document"
            );
        }
    }
    assert_eq!(labelled, 100);
    for i in 0..100u64 {
        assert_eq!(hits[&i], 1.0 + i as f64);
        assert_eq!(lat.get(&i).copied().unwrap_or(0), (i % 150) as usize);
    }
}

#[tokio::test]
async fn recorder_30_and_31_labels() {
    install_recorder();
    let sink = CheckedSink::new();
    let mut b = builder(&sink).service("orders");
    for i in 0..5 {
        b = b.default_dimension(format!("def{i}"), "v");
    }
    let layer = b.build().unwrap();
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        for n in [24usize, 25, 26, 30] {
            let labels: Vec<metrics::Label> = (0..n)
                .map(|i| metrics::Label::new(format!("l{i}"), "v"))
                .collect();
            metrics::counter!(format!("L{n}"), labels).increment(1);
        }
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    let v = all_values(&docs);
    // 5 defaults + 24 labels + service = 30: within CloudWatch's limit, must be written.
    assert_eq!(
        v.get("L24").cloned(),
        Some(vec![1.0]),
        "a 30-dimension label set was lost"
    );
}

#[tokio::test]
async fn recorder_label_values_non_ascii_and_collisions() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metadata("city", "meta")?;
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        metrics::counter!("ByCity", "city" => "Zürich").increment(1);
        metrics::counter!("ByService", "service" => "other").increment(1);
        metrics::counter!("ByPlain", "Plain" => "x").increment(1);
        metrics::counter!("ByAws", "_aws" => "x").increment(1);
        metrics::counter!("Blank", "blank" => "  ").increment(1);
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    for d in &docs {
        assert!(d.get("city").is_none_or(|c| c == "meta" || c == "Zürich"));
    }
    let v = all_values(&docs);
    assert_eq!(v["Plain"], [1.0]);
}

#[tokio::test]
async fn recorder_gauge_increment_overflow() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        let max = 2f64.powi(360);
        metrics::gauge!("G").set(max);
        metrics::gauge!("G").increment(max); // 2^361: out of CloudWatch's range
        metrics::gauge!("H").set(f64::MAX);
        metrics::gauge!("H").increment(f64::MAX); // infinity
        metrics::gauge!("N").set(1.0);
        metrics::gauge!("N").decrement(f64::MAX);
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    assert_eq!(
        all_values(&docs)["Plain"],
        [1.0],
        "document with the handler's metric lost"
    );
}

#[tokio::test]
async fn recorder_counter_huge_and_name_collision() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Shared", 1.0, Unit::Count)?;
        powertools_metrics::add_metadata("meta", 1)?;
        metrics::counter!("Big").absolute(u64::MAX);
        metrics::counter!("Shared").increment(5); // same name as an add_metric metric
        metrics::counter!("meta").increment(1); // same name as metadata
        metrics::counter!("service").increment(1);
        metrics::counter!("_aws").increment(1);
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    let v = all_values(&docs);
    assert!(
        v["Shared"].contains(&1.0),
        "add_metric's value 1.0 lost: Shared = {:?}",
        v["Shared"]
    );
}

#[tokio::test]
async fn recorder_101_histogram_samples_and_101_metrics() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metadata("k", "v")?;
        powertools_metrics::add_dimension("location", "Lyon")?;
        for j in 0..250 {
            metrics::histogram!("Hist").record(j as f64);
            metrics::histogram!("HistL", "shard" => "a").record(j as f64);
        }
        for i in 0..120 {
            metrics::counter!(format!("C{i}")).increment(1);
            metrics::counter!(format!("CL{i}"), "shard" => "b").increment(1);
        }
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    for d in &docs {
        assert_eq!(d["k"], "v", "metadata not carried to every document");
    }
    let v = all_values(&docs);
    assert_eq!(v["Hist"].len(), 250);
    assert_eq!(v["HistL"].len(), 250);
    for i in 0..120 {
        assert_eq!(v[&format!("C{i}")], [1.0]);
        assert_eq!(v[&format!("CL{i}")], [1.0]);
    }
}

#[tokio::test]
async fn recorder_warn_level_label_named_level() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = warn_layer(&sink, "WARN").build().unwrap();
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        metrics::counter!("level").increment(1);
        metrics::counter!("timestamp").increment(1);
        metrics::counter!("ByLevel", "level" => "x").increment(1);
        metrics::counter!("ByTs", "timestamp" => "Zürich").increment(1);
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked_at(&sink, Some("WARN"));
    assert_eq!(all_values(&docs)["Plain"], [1.0]);
}

#[test]
fn dimension_sets_overflow_minimal_18_sets() {
    // 18 add_dimensions sets of 29 distinct 250-character names (values "v"): every call
    // succeeds, and the one document is over CloudWatch Logs' 256 KB event limit.
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let mut results = Vec::new();
    for s in 0..18 {
        let names: Vec<String> = (0..29).map(|i| name(&format!("s{s}d"), i, 250)).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        results.push(m.add_dimensions(pairs.iter().copied()).is_ok());
    }
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let sizes: Vec<usize> = sink.lines().iter().map(String::len).collect();
    assert!(
        sizes.iter().all(|&n| n <= CW_MAX_EVENT),
        "add_dimensions accepted {:?}; documents of {sizes:?} bytes",
        results.iter().filter(|ok| **ok).count()
    );
    checked(&sink);
}

#[test]
fn metric_named_like_default_dimension_or_service() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    assert!(m.add_metric("environment", 1.0, Unit::Count).is_err());
    assert!(m.add_metadata("environment", "x").is_err());
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs[0]["environment"], "prod");
}

#[tokio::test]
async fn cold_start_with_non_ascii_function_name() {
    cold_start_case("Zürich-fn", "orders".to_owned()).await;
}

#[tokio::test]
async fn cold_start_with_function_name_over_1024() {
    cold_start_case(&"f".repeat(1100), "orders".to_owned()).await;
}

#[tokio::test]
async fn cold_start_with_service_over_1024() {
    cold_start_case("fn", "s".repeat(1100)).await;
}

#[tokio::test]
async fn cold_start_with_non_ascii_service() {
    cold_start_case("fn", "Zürich".to_owned()).await;
}

async fn cold_start_case(function: &str, service: String) {
    {
        let sink = CheckedSink::new();
        let Ok(layer) = builder(&sink)
            .service(service.clone())
            .function_name(function)
            .capture_cold_start_metric(true)
            .build()
        else {
            return;
        };
        let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("M", 1.0, Unit::Count)?;
            Ok::<_, lambda_runtime::Error>(())
        }));
        handler
            .oneshot(TestContext::new().with_cold_start(true).event(json!({})))
            .await
            .map_err(|e| e.to_string())
            .unwrap();
        let docs = checked(&sink);
        let v = all_values(&docs);
        assert_eq!(
            v.get("ColdStart").cloned(),
            Some(vec![1.0]),
            "ColdStart lost ({function}, {})",
            service.len()
        );
        assert_eq!(v["M"], [1.0]);
    }
}

static SHARED_COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();

async fn h_shared_handle(e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    let i = e.payload["i"].as_u64().unwrap();
    powertools_metrics::add_metadata("req_id", i)?;
    let c = SHARED_COUNTER.get_or_init(|| metrics::counter!("SharedHandle"));
    for _ in 0..=i % 5 {
        c.increment(1);
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorder_handle_outlives_invocation_concurrently() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let handler = layer.layer(service_fn(h_shared_handle));
        tasks.push(tokio::spawn(async move {
            handler
                .oneshot(
                    TestContext::new()
                        .with_cold_start(false)
                        .event(json!({"i": i})),
                )
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let docs = checked(&sink);
    assert_eq!(docs.len(), 50);
    for d in &docs {
        let i = d["req_id"].as_u64().unwrap();
        assert_eq!(numbers(&d["SharedHandle"]), [(i % 5 + 1) as f64]);
    }
}

#[tokio::test]
async fn recorder_gauge_increment_overflow_minimal() {
    // gauge!("G").set(2^360) then .increment(2^360): each value is in range, the sum is not.
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        metrics::gauge!("G").set(2f64.powi(360));
        metrics::gauge!("G").increment(2f64.powi(360));
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    for line in sink.lines() {
        let doc: Value = serde_json::from_str(&line).unwrap();
        let g = doc.get("G").map(numbers).unwrap_or_default();
        assert!(
            g.iter().all(|v| v.is_finite() && v.abs() <= 2f64.powi(360)),
            "G = {g:?} written in a document with metrics {:?}: CloudWatch refuses all of them",
            metric_names(&doc)
        );
        cloudwatch_rules(&line, None);
    }
}

#[test]
fn demoted_value_for_a_default_dimension() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    let _ = m.add_dimension("environment", "Zürich");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    checked(&sink);
}

#[test]
fn demoted_value_for_service() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let r = m.add_dimension("service", "Zürich");
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0]), json!([["service"]]), "{r:?}");
}

#[test]
fn demoted_set_value_for_a_main_set_dimension() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimension("city", "Lyon").unwrap();
    let r = m.add_dimensions([("city", "Zürich"), ("channel", "web")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    // A new value replaces a dimension's (a document has one value per name), and a refused
    // one is kept as metadata: the main set loses `city`, the value is kept (it was refused as
    // a collision, and Zürich lost).
    r.unwrap();
    assert_eq!(docs[0]["city"], "Zürich");
    assert_eq!(dims(&docs[0]), json!([["service"], ["channel"]]));
}

#[test]
fn demoted_set_value_for_service() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let _ = m.add_dimensions([("service", "Zürich")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(docs[0]["service"], "orders");
}

#[test]
fn add_dimensions_ascii_value_for_service_changes_main_set() {
    // Python: add_dimensions sets never carry service; the main set's service stays the configured one.
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    let r = m.add_dimensions([("service", "other")]);
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    if r.is_ok() {
        assert_eq!(
            docs[0]["service"], "orders",
            "the main set's service was replaced"
        );
    }
}

#[test]
fn add_dimension_replacing_a_default_keeps_python_order() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimension("environment", "staging").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        dims(&docs[0]),
        json!([["environment", "location", "service"]])
    );
    assert_eq!(docs[0]["environment"], "staging");
}

#[test]
fn add_dimensions_error_adds_nothing() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    assert!(m.add_dimensions([("ok", "1"), (":bad", "2")]).is_err());
    assert!(
        m.add_dimensions([("ok2", "Zürich"), ("_aws", "2")])
            .is_err()
    );
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(dims(&docs[0]), json!([["service"]]));
    assert!(
        docs[0].get("ok").is_none() && docs[0].get("ok2").is_none(),
        "a refused add_dimensions added something"
    );
}

#[tokio::test]
async fn recorder_label_named_like_object_metadata() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        powertools_metrics::add_metadata("shard", json!({"k": 1}))?;
        powertools_metrics::add_dimension("city", "Lyon")?;
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        metrics::counter!("ByShard", "shard" => "a").increment(1);
        metrics::counter!("ByCity", "city" => "Paris").increment(1);
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let docs = checked(&sink);
    let v = all_values(&docs);
    assert_eq!(v["Plain"], [1.0]);
    assert_eq!(
        v.get("ByShard").cloned(),
        Some(vec![1.0]),
        "labelled counter lost"
    );
    for d in &docs {
        if d.get("ByCity").is_some() {
            assert_eq!(d["city"], "Paris");
        }
        if d.get("Plain").is_some() {
            assert_eq!(d["city"], "Lyon");
        }
    }
}

#[tokio::test]
async fn recorder_long_labels_with_full_metadata() {
    install_recorder();
    let sink = CheckedSink::new();
    let layer = warn_layer(&sink, "WARN").build().unwrap();
    let handler = layer.layer(service_fn(|_e: LambdaEvent<Value>| async {
        for i in 0..400 {
            if powertools_metrics::add_metadata(&format!("blob{i}"), "b".repeat(1000)).is_err() {
                break;
            }
        }
        let labels: Vec<metrics::Label> = (0..29)
            .map(|i| metrics::Label::new(name("l", i, 250), "v".repeat(1024)))
            .collect();
        let metric = name("h", 0, 255);
        for _ in 0..100 {
            metrics::histogram!(metric.clone(), labels.clone())
                .record(-1.234_567_890_123_456_7e-300);
        }
        powertools_metrics::add_metric("Plain", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(())
    }));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let sizes: Vec<usize> = sink.lines().iter().map(String::len).collect();
    assert!(
        sizes.iter().all(|&n| n <= CW_MAX_EVENT),
        "documents of {sizes:?} bytes"
    );
    let docs = checked_at(&sink, Some("WARN"));
    let v = all_values(&docs);
    assert_eq!(v["Plain"], [1.0]);
}

static LATE: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Result<(), String>>>> =
    std::sync::Mutex::new(None);

async fn h_late(_e: LambdaEvent<Value>) -> Result<(), lambda_runtime::Error> {
    powertools_metrics::add_metric("OnTime", 1.0, Unit::Count)?;
    let m = Metrics::current().expect("inside the invocation");
    let (tx, rx) = tokio::sync::oneshot::channel();
    *LATE.lock().unwrap() = Some(rx);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = m
            .add_metric("Late", 1.0, Unit::Count)
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_added_through_moved_handle_after_invocation_end() {
    // The documented way to use a spawned task is to move the handle into it. If the task
    // outlives the invocation, its value must reach a document or the call must fail.
    let sink = CheckedSink::new();
    let layer = layer_with_service(&sink);
    let handler = layer.layer(service_fn(h_late));
    handler
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .map_err(|e| e.to_string())
        .unwrap();
    let rx = LATE.lock().unwrap().take().unwrap();
    let result = rx.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let docs = checked(&sink);
    let v = all_values(&docs);
    assert_eq!(v["OnTime"], [1.0]);
    assert!(
        result.is_err() || v.contains_key("Late"),
        "add_metric returned Ok after the invocation ended and the value is in no document: {docs:?}"
    );
}

#[test]
fn no_service_with_defaults_and_added() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimensions([("country", "FR")]).unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        dims(&docs[0]),
        json!([["environment", "location"], ["environment", "country"]])
    );
    assert!(docs[0].get("service").is_none());
}

#[test]
fn split_documents_carry_dimensions_and_metadata() {
    let sink = CheckedSink::new();
    let m = builder(&sink)
        .service("orders")
        .default_dimension("environment", "prod")
        .build()
        .unwrap()
        .new_metrics();
    m.add_dimension("location", "Lyon").unwrap();
    m.add_dimensions([("country", "FR")]).unwrap();
    m.add_metadata("blob", "b".repeat(100 * 1024)).unwrap();
    let v = -1.234_567_890_123_456_7e-300;
    for i in 0..100 {
        let n = name("m", i, 255);
        for _ in 0..100 {
            m.add_metric(&n, v, Unit::Count).unwrap();
        }
    }
    m.flush().unwrap();
    let docs = checked(&sink);
    assert!(docs.len() > 1, "expected a split");
    for d in &docs {
        assert_eq!(
            dims(d),
            json!([
                ["environment", "location", "service"],
                ["environment", "country"]
            ])
        );
        assert_eq!(d["blob"].as_str().map(str::len), Some(100 * 1024));
    }
    assert_eq!(
        all_values(&docs).values().map(Vec::len).sum::<usize>(),
        10_000
    );
}

#[test]
fn many_threads_one_handle_across_auto_flushes() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    std::thread::scope(|s| {
        for t in 0..8 {
            let m = m.clone();
            s.spawn(move || {
                for j in 0..1000 {
                    m.add_metric(&format!("M{}", (t * 1000 + j) % 150), 1.0, Unit::Count)
                        .unwrap();
                }
            });
        }
    });
    m.flush().unwrap();
    let docs = checked(&sink);
    assert_eq!(
        all_values(&docs).values().map(Vec::len).sum::<usize>(),
        8000
    );
}

/// A blank service or function name would leave out its dimension from every document (a
/// ColdStart alarm on `function_name, service` would never see it), with no warning: refused
/// as a bad non-ASCII or too-long one is.
#[test]
fn a_blank_service_or_function_name_is_refused_naming_the_setting() {
    let sink = CheckedSink::new();
    for blank in ["   ", "\t", " \n "] {
        let error = builder(&sink).service(blank).build().unwrap_err();
        assert!(error.to_string().contains("service"), "{error}");
        let error = builder(&sink)
            .service("orders")
            .function_name(blank)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("function"), "{error}");
        for (variable, name) in [
            ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_SERVICE_NAME"),
            (
                "POWERTOOLS_METRICS_FUNCTION_NAME",
                "POWERTOOLS_METRICS_FUNCTION_NAME",
            ),
        ] {
            let error = MetricsLayer::builder()
                .env(Env::from_pairs([(variable, blank)]))
                .namespace("Attack")
                .sink(sink.clone())
                .build()
                .unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}

/// One set of names in another order is the same set: CloudWatch's metric identity ignores the
/// dimensions' order, so a second set of the same names would publish each value twice to one
/// metric (its Sum and SampleCount doubled). Written once, in the order first given (found by
/// an attack from the docs: `["b","c"]` and `["c","b"]` were both written; the same order was
/// written once).
#[test]
fn a_set_given_again_in_another_order_is_written_once() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimensions([("b", "1"), ("c", "1")]).unwrap();
    m.add_dimensions([("c", "1"), ("b", "1")]).unwrap();
    m.add_dimensions([("b", "1"), ("c", "1")]).unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let documents = checked(&sink);
    assert_eq!(
        documents[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["service"], ["b", "c"]])
    );
}

/// A set of `add_dimensions` that the main set then grows into (its names added with
/// `add_dimension`) is the same set: written once, not beside the main set (found by an
/// attack from the docs: `[["region"],["region"]]`, and with a default dimension
/// `[["env","region"],["env","region"]]`; the other order of the calls wrote it once). A set the
/// main set grows past is written again (a review: the first fix dropped it for good), as it is
/// when the main set was that set as it was given.
#[test]
fn a_set_the_main_set_grows_into_is_written_once() {
    for defaults in [&[][..], &[("env", "prod")][..]] {
        let sink = CheckedSink::new();
        let mut builder = MetricsLayer::builder()
            .namespace("Attack")
            .env(Env::from_pairs([("X", "y")]))
            .sink(sink.clone());
        for (name, value) in defaults {
            builder = builder.default_dimension(*name, *value);
        }
        let layer = builder.build().unwrap();
        let with_defaults = |names: &[&str]| {
            let mut set: Vec<&str> = defaults.iter().map(|(name, _)| *name).collect();
            set.extend_from_slice(names);
            json!([set])
        };
        type Call = (&'static str, &'static [(&'static str, &'static str)]);
        let scenarios: [&[Call]; 4] = [
            // Grown into.
            &[
                ("sets", &[("region", "eu")]),
                ("dimension", &[("region", "eu")]),
            ],
            // Two sets, grown into the second.
            &[
                ("sets", &[("region", "eu")]),
                ("sets", &[("tier", "gold"), ("region", "eu")]),
                ("dimension", &[("region", "eu")]),
                ("dimension", &[("tier", "gold")]),
            ],
            // Grown into, then past.
            &[
                ("sets", &[("region", "eu")]),
                ("dimension", &[("region", "eu")]),
                ("dimension", &[("tier", "gold")]),
            ],
            // The main set given as a set, then grown past.
            &[
                ("dimension", &[("region", "eu")]),
                ("sets", &[("region", "eu")]),
                ("dimension", &[("tier", "gold")]),
            ],
        ];
        for calls in scenarios {
            let m = layer.new_metrics();
            for (call, dimensions) in calls {
                match *call {
                    "sets" => m.add_dimensions(dimensions.iter().copied()).unwrap(),
                    _ => m.add_dimension(dimensions[0].0, dimensions[0].1).unwrap(),
                }
            }
            m.add_metric("Orders", 1.0, Unit::Count).unwrap();
            m.flush().unwrap();
        }
        let concat = |parts: &[Value]| {
            Value::Array(
                parts
                    .iter()
                    .flat_map(|part| part.as_array().unwrap().clone())
                    .collect(),
            )
        };
        let grown_past = concat(&[
            with_defaults(&["region", "tier"]),
            with_defaults(&["region"]),
        ]);
        // A refused value takes a dimension out of the main set, which is then the same as a
        // set, and a valid value puts it back (a second review: the set was dropped for good).
        let m = layer.new_metrics();
        m.add_dimension("region", "eu").unwrap();
        m.add_dimension("tier", "gold").unwrap();
        m.add_dimensions([("region", "eu")]).unwrap();
        m.add_dimension("tier", "Zürich").unwrap();
        m.add_dimension("tier", "gold").unwrap();
        m.add_metric("Orders", 1.0, Unit::Count).unwrap();
        m.flush().unwrap();
        let sets: Vec<Value> = checked(&sink)
            .iter()
            .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone())
            .collect();
        assert_eq!(
            sets,
            [
                with_defaults(&["region"]),
                grown_past.clone(),
                grown_past.clone(),
                grown_past.clone(),
                grown_past,
            ],
            "defaults {defaults:?}"
        );
    }
}

/// A refused value for a dimension of two sets takes it out of both: sets left with the same
/// names in another order are one set (CloudWatch's metric identity ignores the order).
#[test]
fn sets_a_refused_dimension_leaves_the_same_in_another_order_are_written_once() {
    let sink = CheckedSink::new();
    let m = layer_with_service(&sink).new_metrics();
    m.add_dimensions([("b", "1"), ("x", "1"), ("a", "1")])
        .unwrap();
    m.add_dimensions([("a", "1"), ("b", "1")]).unwrap();
    m.add_dimension("x", "Zürich").unwrap();
    m.add_metric("M", 1.0, Unit::Count).unwrap();
    m.flush().unwrap();
    let documents = checked(&sink);
    assert_eq!(
        documents[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["service"], ["b", "a"]])
    );
    assert_eq!(documents[0]["x"], "Zürich");
}
