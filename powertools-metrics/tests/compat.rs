//! Documents that land where Powertools for Python's dashboards and alarms look, and that
//! CloudWatch never drops: dimension sets as Python writes them, CloudWatch's namespace and value
//! rules, dimension values CloudWatch refuses, Lambda's log-level filter and the log event size.

mod support;

use powertools_core::env::Env;
use powertools_metrics::{Error, MetricsLayer, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, dimension_sets, valid_documents};

fn flushed(sink: &CheckedSink) -> Vec<Value> {
    valid_documents(sink)
}

/// The layer of `builder`, with the default dimension `environment=prod`.
fn with_environment(sink: &CheckedSink) -> MetricsLayer {
    builder(sink)
        .default_dimension("environment", "prod")
        .build()
        .expect("valid settings")
}

#[test]
fn the_main_set_is_the_defaults_the_added_dimensions_then_service_as_python_writes_it() {
    let sink = CheckedSink::new();
    let layer = with_environment(&sink);
    let metrics = layer.new_metrics();
    metrics.add_dimension("location", "Lyon").unwrap();
    metrics
        .add_dimensions([("country", "FR"), ("channel", "web")])
        .unwrap();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &flushed(&sink)[0];
    // Powertools for Python 3.37: `[["environment","location","service"],["environment","country","channel"]]`.
    assert_eq!(
        dimension_sets(document),
        json!([
            ["environment", "location", "service"],
            ["environment", "country", "channel"]
        ])
    );
    assert_eq!(document["service"], "orders");
}

/// No dimensions at all add no set, and say so, as Powertools for Python 3.37 warns
/// `Empty dimensions dictionary provided` (it was silent: found by an attack from the docs).
#[test]
fn empty_dimensions_add_no_set_and_say_so_as_python_does() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(warnings.subscriber());
    let sink = CheckedSink::new();
    let layer = with_environment(&sink);
    let metrics = layer.new_metrics();
    metrics.add_dimensions([]).unwrap();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    assert_eq!(
        dimension_sets(&flushed(&sink)[0]),
        json!([["environment", "service"]])
    );
    let warned = warnings.text();
    assert_eq!(
        warned
            .matches("Empty dimensions dictionary provided")
            .count(),
        1,
        "{warned}"
    );
}

#[test]
fn without_a_service_there_is_no_service_dimension_and_one_empty_set() {
    let sink = CheckedSink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(sink.clone())
        .env(Env::empty())
        .build()
        .unwrap();
    let metrics = layer.new_metrics();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &flushed(&sink)[0];
    assert_eq!(dimension_sets(document), json!([[]]));
    assert!(document.get("service").is_none(), "{document}");
}

#[test]
fn namespaces_follow_cloudwatchs_rules() {
    for accepted in ["Bakery Orders", "a.b-c_d/e#f:g", "x", &"n".repeat(255)] {
        let result = MetricsLayer::builder()
            .namespace(accepted)
            .env(Env::empty())
            .build();
        assert!(result.is_ok(), "{accepted:?}: {result:?}");
    }
    for refused in [
        "AWS/Lambda",
        ":leading-colon",
        "   ",
        "",
        "tab\there",
        "Zürich",
        &"n".repeat(256),
    ] {
        let result = MetricsLayer::builder()
            .namespace(refused)
            .env(Env::empty())
            .build();
        assert!(
            matches!(result, Err(Error::InvalidNamespace { .. })),
            "{refused:?}: {result:?}"
        );
    }
}

#[test]
fn values_follow_the_current_putmetricdata_range_and_no_more() {
    let sink = CheckedSink::new();
    let metrics = builder(&sink).build().unwrap().new_metrics();
    let limit = 2f64.powi(360);
    for accepted in [limit, -limit, f64::MIN_POSITIVE, 1e-200, 5e-324, 0.0, -0.0] {
        metrics
            .add_metric("Accepted", accepted, Unit::None)
            .unwrap_or_else(|error| panic!("{accepted:e}: {error}"));
    }
    for refused in [
        f64::from_bits(limit.to_bits() + 1),
        -f64::from_bits(limit.to_bits() + 1),
        f64::MAX,
        f64::NAN,
        f64::INFINITY,
    ] {
        assert!(
            matches!(
                metrics.add_metric("Refused", refused, Unit::None),
                Err(Error::InvalidValue { .. })
            ),
            "{refused:e}"
        );
    }
    metrics.flush().unwrap();
    // The checker applies the same range rule to what was written.
    assert_eq!(flushed(&sink).len(), 1);
}

#[test]
fn a_dimension_value_cloudwatch_refuses_keeps_the_metric_and_becomes_metadata() {
    let sink = CheckedSink::new();
    let metrics = builder(&sink).build().unwrap().new_metrics();
    for (name, value) in [("ville", "Zürich"), ("currency", "€"), ("mood", "🥐")] {
        metrics
            .add_dimension(name, value)
            .unwrap_or_else(|error| panic!("{name}={value}: {error}"));
    }
    metrics.add_dimension("location", "Lyon").unwrap();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &flushed(&sink)[0];
    assert_eq!(document["OrdersPlaced"], 1.0, "the metric is kept");
    assert_eq!(dimension_sets(document), json!([["location", "service"]]));
    assert_eq!(document["ville"], "Zürich", "the value is kept as metadata");
    assert_eq!(document["currency"], "€");
    assert_eq!(document["mood"], "🥐");
}

/// A dimension's new value replaces the old one, and a value CloudWatch refuses becomes
/// metadata: together, the refused value replaces the dimension (the metrics are written without
/// it, the value kept). It was an error (`NameCollision`) that kept the old value as the
/// dimension and lost the new one; and a valid value after a refused one was refused against
/// the metadata the refused one had become (found by an attack from the docs).
#[test]
fn a_refused_value_replaces_a_dimension_and_a_valid_value_replaces_a_refused_one() {
    let sink = CheckedSink::new();
    let layer = with_environment(&sink);
    let metrics = layer.new_metrics();
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_dimension("channel", "web").unwrap();
    metrics
        .add_dimension("city", "Zürich")
        .expect("a refused value replaces the dimension as metadata");
    metrics.add_dimension("mood", "🥐").unwrap();
    metrics
        .add_dimension("mood", "happy")
        .expect("a valid value replaces the refused one as a dimension");
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &flushed(&sink)[0];
    assert_eq!(
        dimension_sets(document),
        json!([["environment", "channel", "mood", "service"]])
    );
    assert_eq!(document["city"], "Zürich");
    assert_eq!(document["mood"], "happy");
    assert_eq!(document["channel"], "web");

    // A default dimension (or the service) set at build keeps its value: refusing the new one
    // says the rule it breaks and which it is, and the metrics are still written. It said
    // `"service" is already used as a default dimension in this document`, a collision there
    // was none of, for the service too (found by an attack from the docs).
    let metrics = layer.new_metrics();
    let long = "x".repeat(1025);
    for (name, value, rule, kind) in [
        (
            "environment",
            "Zürich",
            "printable ASCII",
            "a default dimension",
        ),
        ("service", "Zürich", "printable ASCII", "the service"),
        (
            "environment",
            long.as_str(),
            "longer than 1024",
            "a default dimension",
        ),
        ("service", long.as_str(), "longer than 1024", "the service"),
    ] {
        let error = metrics.add_dimension(name, value).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("invalid dimension \"{name}\""))
                && message.contains(rule)
                && message.contains(kind)
                && !message.contains("already used"),
            "{message}"
        );
        assert_eq!(error.error_type(), "SchemaValidationError");
        let error = metrics.add_dimensions([(name, value)]).unwrap_err();
        assert!(error.to_string().contains(rule), "{error}");
    }
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &flushed(&sink)[1];
    assert_eq!(document["environment"], "prod");
    assert_eq!(document["OrdersPlaced"], 1.0);
}

#[test]
fn documents_survive_lambdas_log_level_filter() {
    // With an application log level above INFO, Lambda drops lines whose `level` is missing or
    // whose `timestamp` is not RFC 3339 (they count as INFO).
    // A value with spaces around it is the level it names, as the logger reads it (they left the
    // documents without `level`, dropped by the filter the logger honoured).
    for (value, level) in [
        ("WARN", "WARN"),
        ("ERROR", "ERROR"),
        ("FATAL", "FATAL"),
        (" WARN", "WARN"),
        ("\terror\n", "ERROR"),
    ] {
        let sink = CheckedSink::new();
        let metrics = builder(&sink)
            .env(Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", value)]))
            .build()
            .unwrap()
            .new_metrics();
        metrics
            .add_metric("OrdersPlaced", 1.0, Unit::Count)
            .unwrap();
        metrics.flush().unwrap();
        let document = &flushed(&sink)[0];
        assert_eq!(document["level"], level, "{document}");
        let timestamp = document["timestamp"].as_str().expect("a timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        // And the names are taken while the filter is on.
        assert!(matches!(
            metrics.add_metadata("level", "x"),
            Err(Error::NameCollision { .. })
        ));
    }
    // Without the filter (or at INFO and below) the document is exactly Python's.
    for env in [
        Env::empty(),
        Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "INFO")]),
        Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "debug")]),
    ] {
        let sink = CheckedSink::new();
        let metrics = builder(&sink).env(env).build().unwrap().new_metrics();
        metrics
            .add_metric("OrdersPlaced", 1.0, Unit::Count)
            .unwrap();
        metrics.flush().unwrap();
        let document = &flushed(&sink)[0];
        assert!(document.get("level").is_none(), "{document}");
        assert!(document.get("timestamp").is_none(), "{document}");
    }
}

/// At INFO and below Lambda's filter still reads `level`: a document whose metadata (or
/// dimension) `level` is `DEBUG` is dropped under `AWS_LAMBDA_LOG_LEVEL=INFO`, with its
/// metrics, without a word. The names are refused whenever the filter is on, as above WARN
/// (they were taken at INFO and below; found by comparing with Python, which writes them).
/// Without the filter they are the caller's.
#[test]
fn level_and_timestamp_are_refused_whenever_lambda_s_filter_reads_them() {
    for (env, refused) in [
        (Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "INFO")]), true),
        (Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "debug")]), true),
        (Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "TRACE")]), true),
        (Env::empty(), false),
    ] {
        let sink = CheckedSink::new();
        let layer = builder(&sink).env(env.clone()).build().unwrap();
        for name in ["level", "timestamp"] {
            let metadata = layer.new_metrics().add_metadata(name, "DEBUG");
            let dimension = layer.new_metrics().add_dimension(name, "DEBUG");
            assert_eq!(
                (
                    matches!(metadata, Err(Error::NameCollision { .. })),
                    matches!(dimension, Err(Error::NameCollision { .. })),
                ),
                (refused, refused),
                "{name} under {env:?}: {metadata:?} {dimension:?}"
            );
        }
        let default_dimension = builder(&CheckedSink::new())
            .env(env.clone())
            .default_dimension("level", "DEBUG")
            .build();
        assert_eq!(default_dimension.is_err(), refused, "{env:?}");
    }
}

#[test]
fn no_document_exceeds_the_log_event_limit() {
    // A hundred long-named metrics with a hundred values each, and large metadata: split, never cut.
    let sink = CheckedSink::new();
    let metrics = builder(&sink).build().unwrap().new_metrics();
    metrics
        .add_metadata("note", "n".repeat(100 * 1024))
        .unwrap();
    for metric in 0..100 {
        let name = format!("{metric:03}{}", "m".repeat(240));
        for value in 0..100 {
            metrics
                .add_metric(&name, f64::from(value) + 0.123_456_789_012_345, Unit::None)
                .unwrap();
        }
    }
    metrics.flush().unwrap();
    let documents = flushed(&sink);
    let values: usize = documents
        .iter()
        .flat_map(|document| {
            document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|metric| {
                    document[metric["Name"].as_str().unwrap()]
                        .as_array()
                        .map_or(1, Vec::len)
                })
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(values, 100 * 100, "every value written, none lost");
    for line in sink.lines() {
        assert!(line.len() <= 256 * 1024, "{} bytes", line.len());
    }

    // Metadata that could never fit is refused when it is added.
    let error = metrics
        .add_metadata("huge", "h".repeat(300 * 1024))
        .unwrap_err();
    assert!(matches!(error, Error::DocumentTooLarge { .. }), "{error:?}");
}

#[test]
fn metric_names_are_trimmed_of_whitespace_as_python_trims_them() {
    // Powertools for Python 3.37 `add_metric`: `name = name.strip()`, then the length check. The
    // same calls must make the same CloudWatch metric: `"OrdersPlaced "` is `OrdersPlaced`.
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics
        .add_metric("OrdersPlaced ", 2.0, Unit::Count)
        .unwrap();
    // Python's whitespace, which is not quite Rust's: U+001C to U+001F are whitespace to
    // `str.strip()` (and U+200B, a zero-width space, is not).
    metrics
        .add_metric(
            "\t\u{1f}\u{3000}OrdersPlaced\n\u{a0}\u{85}",
            3.0,
            Unit::Count,
        )
        .unwrap();
    metrics
        .add_metric("\u{200b}Kept", 1.0, Unit::Count)
        .unwrap();
    // 255 characters once trimmed: accepted, as in Python.
    let long = format!("{} ", "n".repeat(255));
    metrics.add_metric(&long, 1.0, Unit::Count).unwrap();
    // Only whitespace: refused, as Python refuses an empty name.
    assert!(matches!(
        metrics.add_metric(" \u{1c} ", 1.0, Unit::Count),
        Err(Error::InvalidMetricName { .. })
    ));
    metrics.flush().unwrap();
    let document = &flushed(&sink)[0];
    let names: Vec<&str> = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|metric| metric["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["OrdersPlaced", "\u{200b}Kept", "n".repeat(255).as_str()]
    );
    assert_eq!(document["OrdersPlaced"], json!([1.0, 2.0, 3.0]));
}

/// A dimension overwritten record after record (a batch's tenant) is warned about once per
/// invocation and name, as Python's `warnings.warn` shows its warning once: a batch of 1,000
/// records wrote 999 warning lines (found by a new function written from the docs). The next
/// invocation of the same layer (whose state is recycled: a review found the test could not
/// fail with the flag never reset) that overwrites it is warned again, and the last value is
/// still the one written.
#[tokio::test(flavor = "current_thread")]
async fn an_overwritten_dimension_is_warned_about_once_per_invocation_and_name() {
    use lambda_runtime::tower::{Layer, ServiceExt};
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(warnings.subscriber());
    let sink = CheckedSink::new();
    let service = with_environment(&sink).layer(lambda_runtime::service_fn(
        |_: lambda_runtime::LambdaEvent<serde_json::Value>| async {
            for record in 0..1_000 {
                powertools_metrics::add_dimension("tenant", &format!("t-{record}"))?;
                powertools_metrics::add_dimension("channel", &format!("c-{}", record % 2))?;
                powertools_metrics::add_metric("OrderProcessed", 1.0, Unit::Count)?;
            }
            Ok::<(), lambda_runtime::Error>(())
        },
    ));
    for invocation in 0..3 {
        service
            .clone()
            .oneshot(
                powertools_core::testing::TestContext::new()
                    .with_cold_start(false)
                    .event(json!({})),
            )
            .await
            .unwrap();
        let documents = flushed(&sink);
        let last = documents.last().unwrap();
        assert_eq!(
            (&last["tenant"], &last["channel"]),
            (&json!("t-999"), &json!("c-1"))
        );
        let warned = warnings.text();
        let overwritten: Vec<&str> = warned
            .lines()
            .filter(|line| line.contains("Dimension is being overwritten"))
            .collect();
        assert_eq!(overwritten.len(), 2 * (invocation + 1), "{warned}");
        assert!(
            overwritten.iter().any(|line| line.contains("tenant"))
                && overwritten.iter().any(|line| line.contains("channel")),
            "{warned}"
        );
    }
}
