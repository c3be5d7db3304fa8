//! `MetricsLayer` end to end over `lambda_runtime` services: every document is checked against
//! the EMF specification (tests/support).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_metrics::{Error, Metrics, MetricsLayer, Resolution, ServiceError, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, dimension_sets, metric_names, valid_documents};
use tracing_subscriber::layer::SubscriberExt;

type HandlerResult = Result<Value, lambda_runtime::Error>;
type InvocationResult = Result<Value, ServiceError<lambda_runtime::Error>>;

/// Runs `handler` once behind `layer` and returns what it returned.
async fn invoke<F, Fut>(layer: &MetricsLayer, handler: F) -> InvocationResult
where
    F: Fn(LambdaEvent<Value>) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    layer
        .layer(service_fn(handler))
        .oneshot(TestContext::new().event(json!({})))
        .await
}

/// The error of an invocation behind `layer` (`raise_on_empty_metrics`) whose handler adds no
/// metric: `EmptyMetrics`.
async fn fails_for_adding_nothing(layer: &MetricsLayer) -> ServiceError<lambda_runtime::Error> {
    let error = invoke(layer, |_| async { Ok(json!("ok")) })
        .await
        .expect_err("an invocation without metrics fails");
    assert!(
        matches!(error, ServiceError::Metrics(Error::EmptyMetrics)),
        "{error:?}"
    );
    error
}

async fn add_metrics(count: usize) -> HandlerResult {
    powertools_metrics::add_dimension("location", "Lyon")?;
    powertools_metrics::add_metadata("order_id", "o-1")?;
    for index in 0..count {
        powertools_metrics::add_metric(&format!("Metric{index}"), index as f64, Unit::Count)?;
    }
    Ok(Value::Null)
}

#[tokio::test]
async fn up_to_100_metrics_share_a_document_and_the_101st_starts_another() {
    for (count, expected) in [(99, vec![99]), (100, vec![100]), (101, vec![100, 1])] {
        let sink = CheckedSink::new();
        let layer = builder(&sink).build().unwrap();
        invoke(&layer, move |_| add_metrics(count)).await.unwrap();

        let documents = valid_documents(&sink);
        let sizes: Vec<usize> = documents.iter().map(|d| metric_names(d).len()).collect();
        assert_eq!(sizes, expected, "{count} metrics");
        for document in &documents {
            assert_eq!(document["location"], "Lyon", "dimensions carry over");
            assert_eq!(document["order_id"], "o-1", "metadata carries over");
        }
        let written: f64 = documents
            .iter()
            .flat_map(|d| metric_names(d).into_iter().map(|n| d[&n].as_f64().unwrap()))
            .sum();
        assert_eq!(
            written,
            (0..count).map(|i| i as f64).sum::<f64>(),
            "nothing lost"
        );
    }
}

#[tokio::test]
async fn up_to_100_values_share_a_document_and_the_101st_starts_another() {
    for (count, expected) in [(100, vec![100]), (101, vec![100, 1])] {
        let sink = CheckedSink::new();
        let layer = builder(&sink).build().unwrap();
        invoke(&layer, move |_| async move {
            for value in 0..count {
                powertools_metrics::add_metric("Latency", value as f64, Unit::Milliseconds)?;
            }
            Ok(Value::Null)
        })
        .await
        .unwrap();

        let documents = valid_documents(&sink);
        let sizes: Vec<usize> = documents
            .iter()
            .map(|d| match &d["Latency"] {
                Value::Array(values) => values.len(),
                _ => 1,
            })
            .collect();
        assert_eq!(sizes, expected, "{count} values");
    }
}

#[tokio::test]
async fn twenty_nine_dimensions_plus_service_are_accepted_and_the_thirtieth_refused() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let outcome = invoke(&layer, |_| async {
        for index in 0..29 {
            powertools_metrics::add_dimension(&format!("d{index}"), "v")?;
        }
        let thirtieth = powertools_metrics::add_dimension("d29", "v").unwrap_err();
        assert!(matches!(
            thirtieth,
            Error::TooManyDimensions { limit: 29, .. }
        ));
        // The refused dimension is named, as Python names it ("Unable to add dimension d29").
        assert!(thirtieth.to_string().contains("\"d29\""), "{thirtieth}");
        // The limit as CloudWatch counts it: a set from `add_dimensions`, without `service`,
        // holds 30 (the message said "at most 29 dimensions plus `service`" for those too;
        // found by an attack from the docs).
        assert!(
            thirtieth.to_string().contains(
                "at most 30 dimensions in a set, `service` among the main set's when there is one"
            ),
            "{thirtieth}"
        );
        assert_eq!(thirtieth.error_type(), "SchemaValidationError");
        // Overwriting an existing dimension is not a new one.
        powertools_metrics::add_dimension("d0", "w")?;
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok(Value::Null)
    })
    .await;
    outcome.unwrap();

    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    let set = dimension_sets(&documents[0]);
    assert_eq!(set[0].as_array().unwrap().len(), 30);
    assert_eq!(
        set[0][29], "service",
        "service stays last, as Python writes it"
    );
    assert_eq!(documents[0]["d0"], "w");
    assert!(documents[0].get("d29").is_none());
}

#[tokio::test]
async fn a_dimension_set_of_more_than_30_dimensions_is_refused_whole() {
    // An extra set has no `service` (as Python writes it), so it can hold CloudWatch's 30.
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    invoke(&layer, |_| async {
        let names: Vec<String> = (0..31).map(|index| format!("d{index}")).collect();
        let set: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
        let error = powertools_metrics::add_dimensions(set[..31].iter().copied()).unwrap_err();
        assert!(matches!(error, Error::TooManyDimensions { .. }));
        powertools_metrics::add_dimensions(set[..30].iter().copied())?;
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok(Value::Null)
    })
    .await
    .unwrap();
    let documents = valid_documents(&sink);
    let sets = dimension_sets(&documents[0]);
    assert_eq!(sets.as_array().unwrap().len(), 2);
    assert_eq!(sets[1].as_array().unwrap().len(), 30);
    assert!(
        documents[0].get("d30").is_none(),
        "the refused set added nothing"
    );
}

#[tokio::test]
async fn the_document_is_written_when_the_handler_fails() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let error = invoke(&layer, |_| async {
        powertools_metrics::add_metric("PaymentAttempts", 1.0, Unit::Count)?;
        Err::<Value, _>("card declined".into())
    })
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "card declined",
        "the handler's error is unchanged"
    );
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["PaymentAttempts"], 1.0);
}

#[tokio::test]
async fn the_document_is_written_when_the_handler_panics_and_the_panic_goes_on() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let outcome = std::panic::AssertUnwindSafe(invoke(&layer, |_| async {
        powertools_metrics::add_metric("PaymentAttempts", 1.0, Unit::Count)?;
        nested_work_that_panics().await
    }))
    .catch_unwind()
    .await;
    let panic = outcome.expect_err("the panic reaches the runtime, which reports it");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"provider exploded"));
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["PaymentAttempts"], 1.0);
    assert_eq!(
        documents[0]["Partial"], 2.0,
        "metrics added just before the panic are kept"
    );
}

async fn nested_work_that_panics() -> HandlerResult {
    tokio::task::yield_now().await;
    powertools_metrics::add_metric("Partial", 2.0, Unit::Count)?;
    panic!("provider exploded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_never_mix_metrics_dimensions_or_metadata() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let service = layer.layer(service_fn(|event: LambdaEvent<Value>| async move {
        let shop = event.payload["shop"].as_u64().unwrap();
        powertools_metrics::add_metadata("order_id", format!("o-{shop}"))?;
        tokio::time::sleep(Duration::from_millis(shop % 7)).await;
        powertools_metrics::add_dimension("location", &format!("shop-{shop}"))?;
        record_value(shop).await?;
        // A task the handler spawns carries the handle explicitly.
        let metrics = Metrics::current().expect("inside the layer");
        tokio::spawn(metrics.scope(async move {
            tokio::task::yield_now().await;
            powertools_metrics::add_metric("Spawned", shop as f64, Unit::Count)
        }))
        .await??;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    let calls = (0..50u64).map(|shop| {
        let service = service.clone();
        tokio::spawn(service.oneshot(TestContext::new().event(json!({"shop": shop}))))
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }

    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 50);
    let mut shops: Vec<u64> = documents
        .iter()
        .map(|document| {
            let shop = document["OrderValue"].as_f64().unwrap() as u64;
            assert_eq!(document["location"], format!("shop-{shop}"));
            assert_eq!(document["order_id"], format!("o-{shop}"));
            assert_eq!(document["Spawned"], shop as f64);
            assert_eq!(metric_names(document), ["OrderValue", "Spawned"]);
            shop
        })
        .collect();
    shops.sort_unstable();
    assert_eq!(shops, (0..50).collect::<Vec<_>>());
}

/// Counts WARN events.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn record_value(shop: u64) -> Result<(), Error> {
    tokio::task::yield_now().await;
    powertools_metrics::add_metric("OrderValue", shop as f64, Unit::None)
}

#[tokio::test]
async fn an_empty_invocation_warns_once_by_default_and_fails_when_configured() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(CountWarnings(warnings.clone())),
    );
    let sink = CheckedSink::new();
    let lenient = builder(&sink).build().unwrap();
    for _ in 0..3 {
        invoke(&lenient, |_| async { Ok(json!("ok")) })
            .await
            .unwrap();
    }
    assert!(sink.lines().is_empty(), "nothing to write");
    assert_eq!(
        warnings.load(Ordering::Relaxed),
        1,
        "warned for the first empty invocation only"
    );

    let strict = builder(&sink).raise_on_empty_metrics(true).build().unwrap();
    let error = fails_for_adding_nothing(&strict).await;
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "SchemaValidationError");
    assert!(sink.lines().is_empty());
}

/// A handler that published its metrics with its own flush (before a long wait, say) added
/// metrics: its invocation neither fails under `raise_on_empty_metrics` nor is warned about as
/// one without metrics (it failed with `EmptyMetrics` after its document was written; found by
/// an attack from the docs, which say "an invocation that added no metric"). Python's
/// `log_metrics` raises there.
#[tokio::test]
async fn an_invocation_that_flushed_its_own_metrics_is_not_one_without_metrics() {
    let sink = CheckedSink::new();
    let strict = builder(&sink).raise_on_empty_metrics(true).build().unwrap();
    let response = invoke(&strict, |_| async {
        powertools_metrics::add_metric("Baked", 1.0, Unit::Count).unwrap();
        powertools_metrics::Metrics::current()
            .unwrap()
            .flush()
            .unwrap();
        // The handler's own second flush found nothing since the first: its call says so.
        let again = powertools_metrics::Metrics::current().unwrap().flush();
        assert!(matches!(again, Err(Error::EmptyMetrics)), "{again:?}");
        Ok(json!("ok"))
    })
    .await;
    assert!(response.is_ok(), "{response:?}");
    assert_eq!(sink.documents().len(), 1);
    assert_eq!(sink.documents()[0]["Baked"], 1.0);

    // And the next invocation, which adds nothing, still fails
    fails_for_adding_nothing(&strict).await;
}

#[tokio::test]
async fn disabled_metrics_write_nothing_but_still_check_values() {
    let cases = [
        (vec![("POWERTOOLS_METRICS_DISABLED", "true")], true),
        (vec![("POWERTOOLS_DEV", "true")], true),
        (
            vec![
                ("POWERTOOLS_DEV", "true"),
                ("POWERTOOLS_METRICS_DISABLED", "false"),
            ],
            false,
        ),
        (vec![], false),
    ];
    for (vars, disabled) in cases {
        let sink = CheckedSink::new();
        let layer = builder(&sink)
            .env(Env::from_pairs(vars.clone()))
            .build()
            .unwrap();
        let outcome = invoke(&layer, |_| async {
            let nan = powertools_metrics::add_metric("Bad", f64::NAN, Unit::Count).unwrap_err();
            assert_eq!(nan.error_type(), "MetricValueError");
            powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
            Ok(Value::Null)
        })
        .await;
        outcome.unwrap();
        assert_eq!(sink.lines().is_empty(), disabled, "{vars:?}");
    }
}

#[tokio::test]
async fn the_namespace_is_required_from_code_or_the_environment() {
    let sink = CheckedSink::new();
    let empty = Env::empty();
    let missing = MetricsLayer::builder()
        .env(empty.clone())
        .build()
        .unwrap_err();
    assert!(matches!(missing, Error::MissingNamespace));
    assert_eq!(missing.error_type(), "SchemaValidationError");
    // The fix in both ways a function is built (a facade user was told of `MetricsLayer`).
    let message = missing.to_string();
    for fix in [
        "POWERTOOLS_METRICS_NAMESPACE",
        "Powertools::builder().metrics(",
    ] {
        assert!(message.contains(fix), "{message}");
    }
    // Set, but empty: read as unset, and the message says so rather than only "set it" (found
    // by an attack on errors).
    let blank = MetricsLayer::builder()
        .env(Env::from_pairs([("POWERTOOLS_METRICS_NAMESPACE", "")]))
        .build()
        .unwrap_err();
    assert!(blank.to_string().contains("unset or empty"), "{blank}");

    let invalid = MetricsLayer::builder()
        .namespace("AWS/Lambda")
        .env(empty)
        .build()
        .unwrap_err();
    assert!(matches!(invalid, Error::InvalidNamespace { .. }));

    let from_env = MetricsLayer::builder()
        .sink(sink.clone())
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery/Env"),
            ("POWERTOOLS_SERVICE_NAME", "payments"),
        ]))
        .build()
        .unwrap();
    invoke(&from_env, |_| async {
        powertools_metrics::add_metric("Charges", 1.0, Unit::Count)?;
        Ok(Value::Null)
    })
    .await
    .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(
        documents[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Bakery/Env"
    );
    assert_eq!(documents[0]["service"], "payments");

    let malformed = MetricsLayer::builder()
        .namespace("Bakery")
        .env(Env::from_pairs([("POWERTOOLS_METRICS_DISABLED", "maybe")]))
        .build()
        .unwrap_err();
    assert!(matches!(malformed, Error::Config(_)), "{malformed}");
    assert!(
        malformed
            .to_string()
            .contains("POWERTOOLS_METRICS_DISABLED")
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_typed_errors_and_the_document_stays_valid() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    invoke(&layer, |_| async {
        use powertools_metrics::{add_dimension, add_metadata, add_metric, set_timestamp};
        add_metric("Orders", 1.0, Unit::Count)?;
        let cases: Vec<(Error, &str)> = vec![
            (
                add_metric("Orders", 1.0, Unit::Seconds).unwrap_err(),
                "MetricUnitError",
            ),
            (
                powertools_metrics::add_metric_with_resolution(
                    "Orders",
                    1.0,
                    Unit::Count,
                    Resolution::High,
                )
                .unwrap_err(),
                "MetricResolutionError",
            ),
            (
                add_metric("Inf", f64::INFINITY, Unit::Count).unwrap_err(),
                "MetricValueError",
            ),
            // Powertools for Python 3.37 raises `MetricNameError` for a name it refuses.
            (
                add_metric("", 1.0, Unit::Count).unwrap_err(),
                "MetricNameError",
            ),
            (
                add_metric(&"n".repeat(256), 1.0, Unit::Count).unwrap_err(),
                "MetricNameError",
            ),
            (
                add_metric("_aws", 1.0, Unit::Count).unwrap_err(),
                "SchemaValidationError",
            ),
            (
                add_metric("environment", 1.0, Unit::Count).unwrap_err(),
                "SchemaValidationError",
            ),
            (
                add_dimension("Orders", "x").unwrap_err(),
                "SchemaValidationError",
            ),
            (
                add_dimension(":colon", "x").unwrap_err(),
                "SchemaValidationError",
            ),
            (
                add_metadata("Orders", "x").unwrap_err(),
                "SchemaValidationError",
            ),
            (
                add_metadata("environment", "x").unwrap_err(),
                "SchemaValidationError",
            ),
            (
                set_timestamp(SystemTime::now() - Duration::from_secs(15 * 86_400)).unwrap_err(),
                "SchemaValidationError",
            ),
            (
                set_timestamp(SystemTime::now() + Duration::from_secs(3 * 3600)).unwrap_err(),
                "SchemaValidationError",
            ),
        ];
        for (error, error_type) in cases {
            assert_eq!(error.error_type(), error_type, "{error}");
        }
        // Skipped with a warning, not an error: CloudWatch would drop every dimension.
        add_dimension("location", "")?;
        add_dimension("", "Lyon")?;
        add_metadata("customer", json!({"id": "c-7", "tier": 2}))?;
        Ok(Value::Null)
    })
    .await
    .unwrap();

    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    let document = &documents[0];
    assert_eq!(
        dimension_sets(document),
        json!([["environment", "service"]])
    );
    assert_eq!(metric_names(document), ["Orders"]);
    assert_eq!(document["Orders"], 1.0);
    assert_eq!(
        document["customer"],
        json!({"id": "c-7", "tier": 2}),
        "JSON types kept"
    );
    assert!(document.get("location").is_none() && document.get("empty").is_none());
}

#[tokio::test]
async fn resolution_timestamp_and_dimension_sets_are_written_as_the_specification_says() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    invoke(&layer, move |_| async move {
        powertools_metrics::set_timestamp(an_hour_ago)?;
        powertools_metrics::add_dimension("location", "Lyon")?;
        powertools_metrics::add_dimensions([("country", "FR")])?;
        powertools_metrics::add_dimensions([("country", "FR")])?;
        powertools_metrics::add_metric_with_resolution(
            "Latency",
            12.5,
            Unit::Milliseconds,
            Resolution::High,
        )?;
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok(Value::Null)
    })
    .await
    .unwrap();

    let document = &valid_documents(&sink)[0];
    let expected_ms = an_hour_ago.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert_eq!(document["_aws"]["Timestamp"], expected_ms);
    assert_eq!(
        dimension_sets(document),
        json!([["location", "service"], ["country"]]),
        "an identical set is added once"
    );
    assert_eq!(
        document["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([
            {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
            {"Name": "Orders", "Unit": "Count"}
        ])
    );
}

#[tokio::test]
async fn outside_an_invocation_the_functions_say_so_and_a_manual_handle_works() {
    let error = powertools_metrics::add_metric("Orders", 1.0, Unit::Count).unwrap_err();
    assert!(matches!(error, Error::NoCurrentInvocation));
    assert!(Metrics::current().is_none());

    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    metrics.add_metric("Warmups", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    metrics.flush().unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1, "a second flush has nothing to write");
    assert_eq!(documents[0]["Warmups"], 1.0);
}

#[tokio::test]
async fn each_invocation_starts_from_the_default_dimensions() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let calls = calls.clone();
        invoke(&layer, move |_| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    powertools_metrics::add_dimension("environment", "staging")?;
                    powertools_metrics::add_dimensions([("country", "FR")])?;
                    powertools_metrics::add_dimension("location", "Lyon")?;
                    powertools_metrics::add_metadata("order_id", "o-1")?;
                }
                powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
                Ok(Value::Null)
            }
        })
        .await
        .unwrap();
    }
    let documents = valid_documents(&sink);
    assert_eq!(
        dimension_sets(&documents[0]),
        json!([
            ["environment", "location", "service"],
            ["environment", "country"]
        ])
    );
    assert_eq!(documents[0]["environment"], "staging");
    assert_eq!(
        dimension_sets(&documents[1]),
        json!([["environment", "service"]])
    );
    assert_eq!(
        documents[1]["environment"], "prod",
        "an overwritten default is restored"
    );
    for key in ["order_id", "location", "country"] {
        assert!(
            documents[1].get(key).is_none(),
            "{key} stayed in the first invocation"
        );
    }
}

#[derive(Debug)]
struct OrderRejected;

impl From<OrderRejected> for lambda_runtime::Diagnostic {
    fn from(_: OrderRejected) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "OrderRejected".into(),
            error_message: "the basket is empty".into(),
        }
    }
}

#[tokio::test]
async fn a_typed_handler_error_reaches_lambda_with_its_own_error_type() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let error = layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("Rejected", 1.0, Unit::Count)
                .map_err(|_| OrderRejected)?;
            Err::<Value, _>(OrderRejected)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap_err();
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "OrderRejected");
    assert_eq!(diagnostic.error_message, "the basket is empty");
    assert_eq!(valid_documents(&sink)[0]["Rejected"], 1.0);
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let long = "N".repeat(300);
    let error = MetricsLayer::builder()
        .env(Env::from_pairs([(
            "POWERTOOLS_METRICS_NAMESPACE",
            long.as_str(),
        )]))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "environment variable POWERTOOLS_METRICS_NAMESPACE: invalid metrics namespace"
        ),
        "{error}"
    );
    assert_eq!(error.error_type(), "SchemaValidationError");

    let error = MetricsLayer::builder()
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_SERVICE_NAME", "Zürich-orders"),
        ]))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "environment variable POWERTOOLS_SERVICE_NAME: invalid dimension \"service\""
        ),
        "{error}"
    );

    // Set in code, the value is the code's: the error is the rule alone.
    let error = MetricsLayer::builder()
        .env(Env::empty())
        .namespace(long)
        .build()
        .unwrap_err();
    assert!(matches!(error, Error::InvalidNamespace { .. }), "{error:?}");
}

/// A dimension value CloudWatch refuses that cannot be kept as metadata either (its name is
/// already a dimension) is refused with the typed error alone: the warning said it was "kept as
/// metadata instead" though it was kept nowhere. A name given twice to `add_dimensions` keeps
/// the last value with the warning `add_dimension` gives, where the second value was dropped
/// without a word.
#[test]
fn dimension_values_are_never_dropped_or_misreported_without_a_true_warning() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(CountWarnings(warnings.clone())),
    );
    let (metrics, sink) = metrics_in_memory();
    metrics.add_dimension("shop", "Lyon").unwrap();
    // A refused value replaces the dimension as metadata, as the docs say (it was an error that
    // kept Lyon and lost Zürich): one warning, and it is true.
    metrics.add_dimension("shop", "Zürich").unwrap();
    assert_eq!(
        warnings.load(Ordering::Relaxed),
        1,
        "the replacement is warned about"
    );

    metrics
        .add_dimensions([("channel", "web"), ("channel", "app")])
        .unwrap();
    assert_eq!(
        warnings.load(Ordering::Relaxed),
        2,
        "the overwrite is warned about"
    );
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &sink.documents()[0];
    assert_eq!(document["shop"], "Zürich");
    assert_eq!(
        document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["service"], ["channel"]])
    );
    assert_eq!(
        document["channel"], "app",
        "the last value, as add_dimension keeps"
    );
}

/// `add_metadata` under the name of a dimension value CloudWatch refused (kept as metadata, with
/// a warning) replaces that value with a warning naming both: it was replaced without a word,
/// the refused value lost though the caller never set it as metadata. Replacing the caller's own
/// metadata stays silent, as Python's dict assignment is.
#[test]
fn metadata_that_replaces_a_refused_dimension_value_is_warned_about() {
    let captured = Captured::default();
    let _guard = powertools_tests::set_test_default(capturing(&captured));
    let (metrics, sink) = metrics_in_memory();
    metrics.add_dimension("city", "Zürich").unwrap();
    assert_eq!(
        captured.warnings().len(),
        1,
        "the refused value is warned about"
    );
    metrics.add_metadata("city", "Lyon").unwrap();
    let warnings = captured.warnings();
    assert_eq!(
        warnings.len(),
        2,
        "the replacement is warned about: {warnings:?}"
    );
    assert!(
        warnings[1].contains("Zürich") && warnings[1].contains("Lyon"),
        "the warning names the replaced value and the new one: {warnings:?}"
    );
    metrics.add_metadata("order_id", "o-1").unwrap();
    metrics.add_metadata("order_id", "o-2").unwrap();
    metrics.add_metadata("city", "Paris").unwrap();
    // The same value again is no replacement to warn about; a long one is quoted cut (a review
    // found a 180 KB warning line, and a false "replaces" for the same value).
    metrics.add_dimension("town", "Zürich").unwrap();
    metrics.add_metadata("town", "Zürich").unwrap();
    metrics
        .add_dimension("region", &format!("é{}", "x".repeat(80_000)))
        .unwrap();
    metrics.add_metadata("region", "y".repeat(100_000)).unwrap();
    let warnings = captured.warnings();
    let cut = |text: &String| text.chars().take(300).collect::<String>();
    assert_eq!(
        warnings.len(),
        5,
        "{:?}",
        warnings.iter().map(cut).collect::<Vec<_>>()
    );
    assert!(warnings[4].len() < 2_000, "{}", warnings[4].len());

    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &sink.documents()[0];
    assert_eq!(document["city"], "Paris", "{document}");
    assert_eq!(document["order_id"], "o-2", "{document}");
}

/// A name repeated in `add_dimensions` whose first value CloudWatch refuses: the last value wins
/// before anything is checked, so the call neither fails half-applied (the refused value kept as
/// metadata, then a collision) nor keeps the first.
#[test]
fn a_repeated_dimension_name_takes_its_last_value_before_anything_is_applied() {
    let (metrics, sink) = metrics_in_memory();
    metrics
        .add_dimensions([("city", "Zürich"), ("city", "Lyon")])
        .expect("the last value is a valid dimension");
    metrics
        .add_metric("OrdersPlaced", 1.0, Unit::Count)
        .unwrap();
    metrics.flush().unwrap();
    let document = &sink.documents()[0];
    assert_eq!(document["city"], "Lyon", "{document}");
    assert_eq!(
        document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1],
        json!(["city"])
    );
}

/// One invocation's metrics of a layer (namespace `Bakery`, service `orders`) writing to memory.
fn metrics_in_memory() -> (Metrics, powertools_metrics::MemorySink) {
    let sink = powertools_metrics::MemorySink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .build()
        .expect("valid settings");
    (layer.new_metrics(), sink)
}

// Configuration from the environment against Powertools for Python 3.37 (found by an attack).

/// The WARN events (and above) logged while installed, each as its fields' `Debug` text.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<String>>>);

impl Captured {
    fn warnings(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() <= tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().expect("not poisoned").push(fields.0);
        }
    }
}

/// A subscriber recording its warnings in `captured`.
fn capturing(captured: &Captured) -> impl tracing::Subscriber + Send + Sync + use<> {
    tracing_subscriber::registry().with(captured.clone())
}

#[tokio::test]
async fn disabled_metrics_start_with_a_value_they_would_refuse_and_warn_once_at_the_first_invocation()
 {
    let refused = [
        ("POWERTOOLS_METRICS_NAMESPACE", "AWS/x"),
        ("POWERTOOLS_METRICS_NAMESPACE", "Bäckerei"),
        ("POWERTOOLS_SERVICE_NAME", "Zürich"),
        ("POWERTOOLS_METRICS_FUNCTION_NAME", "fünf"),
        // Refused when enabled, as the logger refuses it; disabled, it stopped the build (found
        // by a review).
        ("AWS_LAMBDA_LOG_LEVEL", "loud"),
    ];
    for (variable, value) in refused {
        for disabling in [
            ("POWERTOOLS_METRICS_DISABLED", "true"),
            ("POWERTOOLS_DEV", "true"),
        ] {
            let sink = CheckedSink::new();
            // Built before any subscriber is installed, as in `main`.
            let layer = MetricsLayer::builder()
                .capture_cold_start_metric(true)
                .sink(sink.clone())
                .env(Env::from_pairs([(variable, value), disabling]))
                .build()
                .unwrap_or_else(|error| panic!("{variable}={value} with {disabling:?}: {error}"));
            let captured = Captured::default();
            let _guard = powertools_tests::set_test_default(capturing(&captured));
            for _ in 0..2 {
                invoke(&layer, |_| async {
                    powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
                    Ok(Value::Null)
                })
                .await
                .unwrap();
            }
            assert!(sink.lines().is_empty(), "disabled: nothing written");
            let warnings = captured.warnings();
            assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
            assert!(
                warnings[0].contains(variable) && warnings[0].contains(value),
                "{warnings:?}"
            );

            // Enabled, the same value stops the build.
            let mut enabled = MetricsLayer::builder()
                .sink(sink.clone())
                .env(Env::from_pairs([(variable, value)]));
            if variable != "POWERTOOLS_METRICS_NAMESPACE" {
                enabled = enabled.namespace("Bakery");
            }
            assert!(enabled.build().is_err(), "{variable}={value}");
        }
    }
}

#[test]
fn a_refused_service_or_function_name_is_quoted_in_the_error() {
    let long = "é".repeat(500);
    for (variable, value, shown) in [
        (
            "POWERTOOLS_SERVICE_NAME",
            "Zürich",
            r#""Zürich""#.to_owned(),
        ),
        (
            "POWERTOOLS_METRICS_FUNCTION_NAME",
            "fünf",
            r#""fünf""#.to_owned(),
        ),
        ("POWERTOOLS_SERVICE_NAME", "a\tb", r#""a\tb""#.to_owned()),
        (
            "POWERTOOLS_SERVICE_NAME",
            &long,
            format!("\"{}\"…", "é".repeat(64)),
        ),
    ] {
        let error = MetricsLayer::builder()
            .namespace("Bakery")
            .env(Env::from_pairs([(variable, value)]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(variable) && error.contains(&shown),
            "{shown} in {error}"
        );
        assert!(error.len() < 400, "cut: {error}");
    }
}

#[test]
fn an_alc_level_metrics_cannot_use_is_refused_as_the_logger_refuses_it() {
    let error = MetricsLayer::builder()
        .namespace("Bakery")
        .env(Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "bogus")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("AWS_LAMBDA_LOG_LEVEL") && error.contains("\"bogus\""),
        "{error}"
    );
    for accepted in [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL",
    ] {
        assert!(error.contains(accepted), "{accepted} in {error}");
    }
    for level in [
        "TRACE", "debug", "Info", "WARN", "error", "FATAL", "critical",
    ] {
        MetricsLayer::builder()
            .namespace("Bakery")
            .env(Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", level)]))
            .build()
            .unwrap_or_else(|error| panic!("{level}: {error}"));
    }
}

/// A default dimension with an empty or blank name or value is refused when building, as a
/// blank `service` is: it was skipped with a warning written during `build()`, before any
/// subscriber exists in the order the docs show, so every document lacked it without a word
/// (found by an attack from the docs).
#[test]
fn a_blank_default_dimension_is_refused_when_building() {
    for (name, value) in [
        ("environment", " "),
        ("environment", ""),
        ("", "prod"),
        (" ", "prod"),
    ] {
        let error = MetricsLayer::builder()
            .namespace("Bakery")
            .service("orders")
            .default_dimension(name, value)
            .env(Env::empty())
            .build()
            .err()
            .unwrap_or_else(|| panic!("{name:?}={value:?} was taken"));
        assert!(
            matches!(error, Error::InvalidDimension { .. }),
            "{name:?}={value:?}: {error:?}"
        );
        assert!(error.to_string().contains("empty"), "{error}");
    }
}

/// A `MetricsLayer` inside another (the facade's stack around a layer of your own, or the stack
/// applied twice): the inner one writes the handler's metrics, and the outer one must not
/// report the invocation as one without metrics: with `raise_on_empty_metrics` it failed the
/// invocation (`EmptyMetrics`), without it it warned "No application metrics to publish"
/// (found by an attack from the docs). When nothing was published, the outer one still
/// raises.
#[tokio::test]
async fn an_outer_layer_does_not_call_an_invocation_empty_when_an_inner_layer_wrote_its_metrics() {
    let captured = Captured::default();
    let _guard = powertools_tests::set_test_default(capturing(&captured));
    let sink = CheckedSink::new();
    let layer = |raise: bool| {
        builder(&sink)
            .raise_on_empty_metrics(raise)
            .build()
            .unwrap()
    };
    let handler = service_fn(|event: LambdaEvent<Value>| async move {
        if event.payload["orders"] == true {
            powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        }
        Ok::<_, lambda_runtime::Error>(Value::Null)
    });
    let event = |orders: bool| TestContext::new().event(json!({ "orders": orders }));

    for raise in [true, false] {
        let nested = layer(raise).layer(layer(false).layer(handler));
        nested.clone().oneshot(event(true)).await.unwrap();
        // Failed too: the inner layer's failure flush
        let failing = layer(raise).layer(layer(false).layer(service_fn(
            |_: LambdaEvent<Value>| async {
                powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
                Err::<Value, lambda_runtime::Error>("refused".into())
            },
        )));
        let error = failing.oneshot(event(true)).await.unwrap_err();
        assert!(
            matches!(error, ServiceError::Handler(ServiceError::Handler(_))),
            "{error:?}"
        );
        if raise {
            let empty = nested.oneshot(event(false)).await.unwrap_err();
            assert!(
                matches!(empty, ServiceError::Metrics(Error::EmptyMetrics)),
                "{empty:?}"
            );
        }
    }
    let orders = valid_documents(&sink)
        .iter()
        .filter(|document| document.get("Orders").is_some())
        .count();
    assert_eq!(orders, 4);
    let empty_warnings = captured
        .warnings()
        .into_iter()
        .filter(|warning| warning.contains("No application metrics"))
        .count();
    // The inner layers of the raising outer one, with an invocation that added none: one
    // warning per layer at most, never the outer ones for invocations that added metrics.
    assert!(empty_warnings <= 1, "{:#?}", captured.warnings());
}

/// An invocation cancelled before it added a metric (a timeout outside the layer) is not one
/// "without metrics": its handler did not end. Its flush warned "No application metrics to
/// publish", or with `raise_on_empty_metrics` "metrics were not flushed after the invocation was
/// cancelled" with `EmptyMetrics` (found by a review; the logging layer says it was cancelled).
#[tokio::test]
async fn an_invocation_cancelled_before_its_metrics_is_not_one_without_metrics() {
    for raise in [false, true] {
        let captured = Captured::default();
        let _guard = powertools_tests::set_test_default(capturing(&captured));
        let sink = CheckedSink::new();
        let layer = builder(&sink)
            .raise_on_empty_metrics(raise)
            .build()
            .unwrap();
        let handler = service_fn(|_: LambdaEvent<Value>| async {
            std::future::pending::<()>().await;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        });
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            layer
                .layer(handler)
                .oneshot(TestContext::new().event(json!({}))),
        )
        .await;
        assert!(cancelled.is_err(), "the invocation is cancelled");
        let empty: Vec<String> = captured
            .warnings()
            .into_iter()
            .filter(|warning| {
                warning.contains("No application metrics") || warning.contains("EmptyMetrics")
            })
            .collect();
        assert!(
            empty.is_empty(),
            "raise_on_empty_metrics({raise}): {empty:#?}"
        );
    }
}

/// (Found by a review.) a nested `MetricsLayer` whose invocation is cancelled (a timeout outside the stack)
/// writes the handler's metrics from its `FlushIfCancelled`, but never tells the outer layer, whose
/// own cancellation flush then reports the invocation as one without metrics: "No application
/// metrics to publish", or with `raise_on_empty_metrics` "metrics were not flushed after the
/// invocation was cancelled" with `EmptyMetrics`, for an invocation that published. The changelog
/// says an inner layer's documents count as the invocation's for the outer one.
#[tokio::test]
async fn review_a_cancelled_nested_invocation_s_documents_count_for_the_outer_layer() {
    for raise in [false, true] {
        let captured = Captured::default();
        let _guard = powertools_tests::set_test_default(capturing(&captured));
        let sink = CheckedSink::new();
        let layer = |raise: bool| {
            builder(&sink)
                .raise_on_empty_metrics(raise)
                .build()
                .unwrap()
        };
        let handler = service_fn(|_: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
            std::future::pending::<()>().await;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        });
        let nested = layer(raise).layer(layer(false).layer(handler));
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            nested.oneshot(TestContext::new().event(json!({}))),
        )
        .await;
        assert!(cancelled.is_err(), "the invocation is cancelled");
        let orders = valid_documents(&sink)
            .iter()
            .filter(|document| document.get("Orders").is_some())
            .count();
        assert_eq!(orders, 1, "the inner layer published the handler's metric");
        let empty: Vec<String> = captured
            .warnings()
            .into_iter()
            .filter(|warning| {
                warning.contains("No application metrics") || warning.contains("EmptyMetrics")
            })
            .collect();
        assert!(
            empty.is_empty(),
            "raise_on_empty_metrics({raise}): {empty:#?}"
        );
    }
}

/// (Found by a review.) the third way a nested `MetricsLayer`'s invocation ends, a panic in the handler's
/// synchronous part (its service's `call`, before any future exists), still does not tell the
/// outer layer: the inner one writes the metric from its `call`'s `catch_unwind`
/// (`flush_after_failure`, whose `bool` is dropped there), and the outer one's own flush
/// after the panic then reports the invocation as one without metrics.
#[tokio::test]
async fn review_a_nested_invocation_that_panics_in_call_counts_for_the_outer_layer() {
    for raise in [false, true] {
        let captured = Captured::default();
        let _guard = powertools_tests::set_test_default(capturing(&captured));
        let sink = CheckedSink::new();
        let layer = |raise: bool| {
            builder(&sink)
                .raise_on_empty_metrics(raise)
                .build()
                .unwrap()
        };
        let handler = service_fn(
            |_: LambdaEvent<Value>| -> std::future::Ready<Result<Value, lambda_runtime::Error>> {
                powertools_metrics::add_metric("Orders", 1.0, Unit::Count).unwrap();
                panic!("the handler's synchronous part panicked")
            },
        );
        let mut nested = layer(raise).layer(layer(false).layer(handler));
        lambda_runtime::tower::ServiceExt::<LambdaEvent<Value>>::ready(&mut nested)
            .await
            .unwrap();
        let event = TestContext::new().event(json!({}));
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lambda_runtime::tower::Service::call(&mut nested, event)
        }));
        assert!(called.is_err(), "the panic goes on");
        let orders = valid_documents(&sink)
            .iter()
            .filter(|document| document.get("Orders").is_some())
            .count();
        assert_eq!(orders, 1, "the inner layer published the handler's metric");
        let empty: Vec<String> = captured
            .warnings()
            .into_iter()
            .filter(|warning| {
                warning.contains("No application metrics")
                    || warning.contains("EmptyMetrics")
                    || warning.contains("empty")
            })
            .collect();
        assert!(
            empty.is_empty(),
            "raise_on_empty_metrics({raise}): {empty:#?}"
        );
    }
}

/// A value per batch record with the record's own dimension (its tenant), from records running
/// at once: each in a valid document of its own with its tenant and the default dimensions, the
/// invocation's document without a tenant (found by a user writing a function from the docs:
/// `add_dimension` per record gave every metric of the invocation the last record's tenant, and
/// Python's `single_metric` had no equivalent).
#[tokio::test]
async fn single_metrics_carry_their_own_dimensions_beside_the_invocation_s() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    invoke(&layer, |_| async {
        let record = |tenant: &'static str| async move {
            tokio::task::yield_now().await;
            powertools_metrics::single_metric(
                "OrderProcessed",
                1.0,
                Unit::Count,
                [("tenant", tenant)],
            )
        };
        let (first, second, third) = tokio::join!(record("acme"), record("globex"), record("acme"));
        first?;
        second?;
        third?;
        // A refused value writes nothing.
        assert!(
            powertools_metrics::single_metric(
                "OrderProcessed",
                f64::NAN,
                Unit::Count,
                [("tenant", "x")]
            )
            .is_err()
        );
        powertools_metrics::add_metric("BatchSize", 3.0, Unit::Count)?;
        Ok(Value::Null)
    })
    .await
    .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 4, "{documents:#?}");
    let mut tenants: Vec<&str> = documents[..3]
        .iter()
        .filter_map(|d| d["tenant"].as_str())
        .collect();
    tenants.sort_unstable();
    assert_eq!(tenants, ["acme", "acme", "globex"]);
    for single in &documents[..3] {
        assert_eq!(single["environment"], "prod");
        assert_eq!(single["service"], "orders");
        assert_eq!(single["OrderProcessed"], 1.0);
        assert_eq!(
            single["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["environment", "tenant", "service"]])
        );
    }
    assert!(documents[3].get("tenant").is_none(), "{}", documents[3]);
    assert_eq!(documents[3]["BatchSize"], 3.0);
    // Outside an invocation
    assert!(matches!(
        powertools_metrics::single_metric("X", 1.0, Unit::Count, []),
        Err(Error::NoCurrentInvocation)
    ));
}

/// An invocation whose only metrics are single metrics published them: no `EmptyMetrics` error
/// with `raise_on_empty_metrics`, no "no application metrics" warning (found by a review).
#[tokio::test]
async fn an_invocation_of_single_metrics_only_is_not_empty() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).raise_on_empty_metrics(true).build().unwrap();
    let result = invoke(&layer, |_| async {
        for tenant in ["acme", "globex"] {
            powertools_metrics::single_metric(
                "OrderProcessed",
                1.0,
                Unit::Count,
                [("tenant", tenant)],
            )?;
        }
        Ok(Value::Null)
    })
    .await;
    assert_eq!(valid_documents(&sink).len(), 2);
    assert!(result.is_ok(), "{:?}", result.err());
    // A dimension CloudWatch would not take is refused, not kept as metadata or skipped.
    let metrics = builder(&sink).build().unwrap().new_metrics();
    for (name, value) in [("tenant", "Zürich"), ("tenant", ""), ("", "acme")] {
        assert!(
            matches!(
                metrics.single_metric("OrderProcessed", 1.0, Unit::Count, [(name, value)]),
                Err(Error::InvalidDimension { .. })
            ),
            "{name:?}={value:?}"
        );
    }
    assert_eq!(valid_documents(&sink).len(), 2, "nothing more written");
}

/// Dimensions and metadata a task adds after its invocation ended go only into the documents of
/// metrics it adds after them: each is said, with its key (they returned `Ok` and were in no
/// document, without a word; found by an attack from the docs). A late `flush` has nothing of
/// the invocation's to publish: it neither warns about empty metrics nor uses up the layer's one
/// warning, which the next invocation without metrics still gets.
#[tokio::test]
async fn dimensions_and_metadata_added_after_the_invocation_ended_are_said() {
    let captured = Captured::default();
    let _guard = powertools_tests::set_test_default(capturing(&captured));
    let sink = powertools_metrics::MemorySink::new();
    let layer = MetricsLayer::builder()
        .namespace("Bakery")
        .service("orders")
        .sink(sink.clone())
        .env(Env::empty())
        .build()
        .expect("valid settings");
    let kept = Arc::new(std::sync::Mutex::new(None));
    let keep = kept.clone();
    layer
        .layer(service_fn(move |_: LambdaEvent<serde_json::Value>| {
            let keep = keep.clone();
            async move {
                let metrics = Metrics::current().expect("inside the invocation");
                metrics.add_metric("OrdersPlaced", 1.0, Unit::Count)?;
                *keep.lock().expect("not poisoned") = Some(metrics);
                Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
            }
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .expect("the invocation succeeds");
    let late = kept.lock().expect("not poisoned").take().expect("kept");
    assert_eq!(sink.documents().len(), 1);
    assert!(captured.warnings().is_empty(), "{:?}", captured.warnings());

    late.add_metadata("order_total", 18.5).unwrap();
    late.add_dimension("region", "eu").unwrap();
    let warnings = captured.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("order_total"), "{warnings:?}");
    assert!(warnings[1].contains("region"), "{warnings:?}");
    late.flush().unwrap();
    assert_eq!(
        captured.warnings().len(),
        2,
        "a late flush has nothing of the invocation's to publish: {:?}",
        captured.warnings()
    );
    // As the docs say: a metric added later carries them, in a document of its own.
    late.add_metric("Late", 1.0, Unit::Count).unwrap();
    let documents = sink.documents();
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[1]["order_total"], 18.5, "{}", documents[1]);
    assert_eq!(documents[1]["region"], "eu", "{}", documents[1]);
    drop(late);

    // The next invocation without metrics still gets the layer's one empty-metrics warning.
    let before = captured.warnings().len();
    layer
        .layer(service_fn(|_: LambdaEvent<serde_json::Value>| async {
            Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .expect("the invocation succeeds");
    let warnings = captured.warnings();
    assert!(
        warnings[before..]
            .iter()
            .any(|warning| warning.contains("No application metrics")),
        "{warnings:?}"
    );
}

/// A value a rule refuses because of its length (a namespace, a metric or dimension name, a
/// metadata key, a unit) is quoted by its start, as every error from a variable is: the whole of
/// a 200 KB namespace was in the message (found by an attack from the docs; `init_failed` sends
/// the message to Lambda).
#[test]
fn errors_quote_the_start_of_a_long_value() {
    let huge = "N".repeat(200_000);
    let start = format!("\"{}\"…", "N".repeat(powertools_core::env::MAX_SHOWN_CHARS));
    let namespace = MetricsLayer::builder()
        .env(Env::from_pairs([(
            "POWERTOOLS_METRICS_NAMESPACE",
            huge.as_str(),
        )]))
        .build()
        .unwrap_err();
    let in_code = MetricsLayer::builder()
        .namespace(huge.clone())
        .env(Env::empty())
        .build()
        .unwrap_err();
    let metrics = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(powertools_metrics::MemorySink::new())
        .env(Env::empty())
        .build()
        .unwrap()
        .new_metrics();
    let name = metrics.add_metric(&huge, 1.0, Unit::Count).unwrap_err();
    let dimension = metrics.add_dimension(&huge, "eu").unwrap_err();
    let key = metrics.add_metadata(&huge, 1).unwrap_err();
    let unit = huge.parse::<Unit>().unwrap_err();
    for error in [namespace, in_code, name, dimension, key, unit] {
        let message = error.to_string();
        assert!(
            message.len() < 700,
            "{} bytes: {}",
            message.len(),
            &message[..300]
        );
        assert!(message.contains(&start), "{message}");
    }
}

/// The handler's own error under the metrics layer converted into a `Diagnostic` (a function
/// that builds its Lambda error from the layer's): a string is `Error` and a box is named by the
/// error inside, as the failure line names them; `lambda_runtime` alone names them by their Rust
/// types (`&alloc::string::String`; found by an attack from the docs on the idempotency crate's
/// conversion, which this one shared).
#[test]
fn a_handler_error_converts_into_the_diagnostic_the_layers_name() {
    use lambda_runtime::Diagnostic;
    let text = Diagnostic::from(ServiceError::Handler("zero charge".to_owned()));
    assert_eq!(
        (text.error_type.as_str(), text.error_message.as_str()),
        ("Error", "zero charge")
    );
    let boxed: lambda_runtime::Error = std::io::Error::other("disk full").into();
    let boxed = Diagnostic::from(ServiceError::Handler(boxed));
    assert_eq!(
        (boxed.error_type.as_str(), boxed.error_message.as_str()),
        ("std::io::Error", "disk full")
    );
    let own = Diagnostic::from(ServiceError::<String>::Metrics(Error::MissingNamespace));
    assert_eq!(own.error_type, "SchemaValidationError");
}
