//! The `metrics` facade recorder, in a test binary of its own: it is installed process-wide.

mod support;

use std::sync::Once;
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::{EmfRecorder, Error, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, dimension_sets, metric_names, valid_documents};

fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        EmfRecorder::new()
            .install()
            .expect("no other recorder in this test binary");
        // After installing: a description given before goes to no recorder.
        metrics::describe_histogram!("PayloadSize", metrics::Unit::Kibibytes, "request body size");
    });
}

#[test]
fn a_second_install_is_a_typed_error() {
    install();
    assert!(matches!(
        EmfRecorder::new().install(),
        Err(Error::RecorderAlreadyInstalled)
    ));
}

#[tokio::test]
async fn counters_gauges_and_histograms_land_in_the_invocations_documents() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
            powertools_metrics::add_metadata("order_id", "o-1")?;
            let misses = metrics::counter!("CacheMisses");
            misses.increment(2);
            misses.increment(3);
            metrics::gauge!("QueueDepth").set(7.0);
            metrics::gauge!("QueueDepth").increment(1.5);
            metrics::histogram!("PayloadSize").record(1.0);
            metrics::histogram!("PayloadSize").record(4.0);
            metrics::counter!("Retries", "dependency" => "payments").increment(1);
            metrics::counter!("Retries", "dependency" => "payments").increment(1);
            metrics::counter!("Retries", "dependency" => "stock").increment(1);
            // Invalid values are warned about and not written; the document stays valid.
            metrics::gauge!("Broken").set(f64::NAN);
            metrics::counter!("Bad", "" => "x").increment(1);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    let documents = valid_documents(&sink);
    assert_eq!(
        documents.len(),
        3,
        "the invocation's, then one per label set"
    );
    let main = &documents[0];
    assert_eq!(
        metric_names(main),
        ["Orders", "CacheMisses", "QueueDepth", "PayloadSize"]
    );
    assert_eq!(main["CacheMisses"], 5.0, "a counter sums its increments");
    assert_eq!(main["QueueDepth"], 8.5, "a gauge keeps its last value");
    assert_eq!(
        main["PayloadSize"],
        json!([1.0, 4.0]),
        "a histogram keeps its samples"
    );
    let units = &main["_aws"]["CloudWatchMetrics"][0]["Metrics"];
    assert_eq!(units[1]["Unit"], "Count");
    assert_eq!(units[2]["Unit"], "None");
    assert_eq!(units[3]["Unit"], "Kilobytes", "described units are mapped");

    for (document, dependency, retries) in [
        (&documents[1], "payments", 2.0),
        (&documents[2], "stock", 1.0),
    ] {
        assert_eq!(metric_names(document), ["Retries"]);
        assert_eq!(document["Retries"], retries);
        assert_eq!(document["dependency"], dependency);
        assert_eq!(dimension_sets(document), json!([["dependency", "service"]]));
        assert_eq!(
            document["order_id"], "o-1",
            "the invocation's metadata goes along"
        );
    }
}

/// Thousands of label sets in one invocation (a label per customer of a batch), their values
/// interleaved: each set is found again by its labels (found in constant time since an
/// invocation with 40,000 sets took 26 s; the time is measured by the crate's bench, not here),
/// keeps its own values, and writes one document, in the order the sets first appeared. The
/// same labels in another order are another set, as before the index.
#[tokio::test]
async fn thousands_of_label_sets_each_keep_their_values_in_the_order_they_appeared() {
    install();
    const SETS: usize = 3_000;
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            for round in 0..3_u64 {
                for customer in 0..SETS {
                    let customer = format!("c-{customer}");
                    metrics::counter!("Orders", "customer" => customer.clone())
                        .increment(round + 1);
                    metrics::gauge!("Basket", "customer" => customer).set(round as f64);
                }
            }
            metrics::counter!("Orders", "a" => "1", "b" => "2").increment(1);
            metrics::counter!("Orders", "b" => "2", "a" => "1").increment(10);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), SETS + 1, "one document per label set");
    for (customer, document) in documents[..SETS].iter().enumerate() {
        assert_eq!(document["customer"], format!("c-{customer}"));
        assert_eq!(document["Orders"], 6.0, "1 + 2 + 3 for c-{customer}");
        assert_eq!(document["Basket"], 2.0, "the last level for c-{customer}");
    }
    // The same labels in another order are the same set (see below).
    assert_eq!(documents[SETS]["Orders"], 11.0);
}

/// Labels given in another order are the same label set: CloudWatch's metric identity ignores
/// the dimensions' order, so two documents for them published a gauge's two values to one
/// metric (its average, not its last value) and a counter's sum in two samples (found by an
/// attack from the docs). One document, its dimensions in the labels' name order.
#[tokio::test]
async fn labels_in_another_order_are_one_label_set() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            metrics::gauge!("QueueDepth", "queue" => "q1", "region" => "eu").set(5.0);
            metrics::gauge!("QueueDepth", "region" => "eu", "queue" => "q1").set(7.0);
            metrics::counter!("Lookups", "b" => "2", "a" => "1").increment(1);
            metrics::counter!("Lookups", "a" => "1", "b" => "2").increment(1);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 2, "{documents:#?}");
    assert_eq!(documents[0]["QueueDepth"], 7.0, "the gauge's last value");
    assert_eq!(
        dimension_sets(&documents[0]),
        json!([["queue", "region", "service"]])
    );
    assert_eq!(
        documents[1]["Lookups"], 2.0,
        "one sample of the counter's sum"
    );
    assert_eq!(
        dimension_sets(&documents[1]),
        json!([["a", "b", "service"]])
    );
}

#[tokio::test]
async fn a_unit_described_under_a_name_with_spaces_is_the_trimmed_metric_s() {
    // Metric names are trimmed as Powertools for Python trims them: a unit described for
    // "Latency " is the unit of `Latency`, whichever spelling records it (one metric, one unit).
    install();
    metrics::describe_histogram!("Latency ", metrics::Unit::Milliseconds, "handler latency");
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            metrics::histogram!("Latency").record(3.0);
            metrics::histogram!("Latency ").record(4.0);
            metrics::histogram!(" Latency").record(5.0);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1, "{documents:?}");
    let main = &documents[0];
    assert_eq!(metric_names(main), ["Latency"]);
    assert_eq!(main["Latency"], json!([3.0, 4.0, 5.0]));
    assert_eq!(
        main["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "Milliseconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_never_share_facade_values() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let service = layer.layer(service_fn(|event: LambdaEvent<Value>| async move {
        let shop = event.payload["shop"].as_u64().unwrap();
        powertools_metrics::add_metadata("shop", shop)?;
        for _ in 0..shop {
            metrics::counter!("Loaves").increment(1);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        metrics::counter!("Loaves").increment(1);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let calls = (0..30u64).map(|shop| {
        tokio::spawn(
            service
                .clone()
                .oneshot(TestContext::new().event(json!({"shop": shop}))),
        )
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 30);
    for document in documents {
        assert_eq!(
            document["Loaves"].as_f64().unwrap(),
            document["shop"].as_f64().unwrap() + 1.0
        );
    }
}

#[test]
fn a_value_recorded_outside_an_invocation_is_not_written_and_does_not_panic() {
    install();
    metrics::counter!("AtInit").increment(1);
    metrics::histogram!("AtInit2").record(1.0);
}

#[tokio::test]
async fn a_labelled_histogram_over_100_samples_continues_in_a_new_document() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            for sample in 0..150 {
                metrics::histogram!("BakeTime", "oven" => "north").record(f64::from(sample));
            }
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    let sizes: Vec<usize> = documents
        .iter()
        .map(|d| d["BakeTime"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 50], "no sample lost");
    assert!(documents.iter().all(|d| d["oven"] == "north"));
}

#[tokio::test]
async fn the_re_exported_facade_reaches_the_installed_recorder() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            // No `metrics` dependency of the user's own, so no version to keep in step.
            powertools_metrics::facade::counter!("ViaReexport").increment(3);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["ViaReexport"], 3.0);
}

/// 29 long labels whose characters double when escaped (the labels do not count towards the
/// metadata's cap).
fn labels_that_double_when_escaped() -> Vec<metrics::Label> {
    (0..29)
        .map(|index| {
            metrics::Label::new(format!("{index:03}{}", "\"".repeat(247)), "\"".repeat(1024))
        })
        .collect()
}

#[tokio::test]
async fn a_labelled_document_that_would_pass_256_kb_with_the_metadata_is_written_without_it() {
    // Given metadata under its cap, and a facade counter with 29 long labels whose characters
    // double when escaped: the labelled document repeats the metadata, and the labels do not
    // count towards the cap
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
            powertools_metrics::add_metadata("blob", "x".repeat(180_000))?;
            metrics::counter!("Retries", labels_that_double_when_escaped()).increment(1);
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    // Then every document is within CloudWatch's limit (the checker asserts it), the labelled
    // counter is written, and the metadata is in the invocation's own document
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 2, "the invocation's and the labelled one");
    assert_eq!(documents[0]["Orders"], 1.0);
    assert_eq!(documents[0]["blob"].as_str().map(str::len), Some(180_000));
    assert_eq!(documents[1]["Retries"], 1.0);
    assert!(documents[1].get("blob").is_none());
}

/// The values `name` has in `documents`, document by document.
fn values_of(documents: &[Value], name: &str) -> Vec<Value> {
    documents
        .iter()
        .filter_map(|document| document.get(name).cloned())
        .collect()
}

/// What the warnings logged while `f` runs (on this thread) say.
async fn warnings_of<F: std::future::Future<Output = ()>>(f: F) -> String {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    let bytes = buffer.0.lock().expect("not poisoned").clone();
    String::from_utf8(bytes).expect("warnings are UTF-8")
}

#[tokio::test]
async fn metadata_that_no_document_can_hold_is_named_in_a_warning() {
    // Given an invocation whose only metrics are labelled facade metrics (so no document of its
    // own), with metadata named like a label, and metadata too large for a labelled document
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|event: LambdaEvent<Value>| async move {
        powertools_metrics::add_metadata("region", "noted by the handler")?;
        if event.payload["large"] == true {
            powertools_metrics::add_metadata("blob", "x".repeat(180_000))?;
            metrics::counter!("Retries", labels_that_double_when_escaped()).increment(1);
        } else {
            metrics::counter!("Retries", "region" => "eu").increment(1);
        }
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    // When they end
    let warned = warnings_of(async {
        handler
            .clone()
            .oneshot(TestContext::new().event(json!({})))
            .await
            .unwrap();
    })
    .await;

    // Then the labelled counter is written, the label keeps its name, and the metadata it
    // displaced is named in a warning rather than lost silently
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["Retries"], 1.0);
    assert_eq!(documents[0]["region"], "eu");
    assert!(
        warned.contains("in no document") && warned.contains("region"),
        "{warned}"
    );

    // And metadata left out for the size limit, with no document of the invocation's own to
    // hold it, is named too
    let warned = warnings_of(async {
        handler
            .oneshot(TestContext::new().event(json!({"large": true})))
            .await
            .unwrap();
    })
    .await;
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 2);
    assert!(documents[1].get("blob").is_none());
    assert!(
        warned.contains("in no document") && warned.contains("blob") && warned.contains("region"),
        "{warned}"
    );
}

#[tokio::test]
async fn a_name_used_by_two_kinds_of_facade_metric_keeps_the_first_and_warns_about_the_second() {
    // Given a histogram, then a gauge and a counter of the same name in one invocation (two
    // libraries that chose one name, say)
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        metrics::histogram!("QueueDepth").record(3.0);
        metrics::histogram!("QueueDepth").record(5.0);
        metrics::gauge!("QueueDepth").set(1.0);
        metrics::counter!("QueueDepth").increment(7);
        metrics::counter!("Retries").increment(1);
        metrics::gauge!("Retries").increment(4.0);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    // When it ends
    let warned = warnings_of(async {
        handler
            .oneshot(TestContext::new().event(json!({})))
            .await
            .unwrap();
    })
    .await;

    // Then each name keeps what its first kind recorded (the gauge's set does not replace the
    // histogram's samples, the gauge's increment is not added to the counter), and each value
    // refused is named in a warning with the kind that holds the name
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0]["QueueDepth"], json!([3.0, 5.0]));
    assert_eq!(documents[0]["Retries"], 1.0);
    assert_eq!(
        warned.matches("was not recorded").count(),
        3,
        "the gauge and counter of QueueDepth, the gauge of Retries: {warned}"
    );
    assert!(warned.contains("a `metrics` facade histogram"), "{warned}");
    assert!(warned.contains("a `metrics` facade counter"), "{warned}");
}

#[tokio::test]
async fn a_gauge_goes_on_from_its_level_after_a_document_is_written_at_the_limit() {
    // Given a gauge set to 10, then enough metrics for the document to be written at CloudWatch's
    // 100-metric limit, in the main document and in a labelled one
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        metrics::gauge!("InFlight").set(10.0);
        metrics::gauge!("Workers", "pool" => "a").set(3.0);
        for index in 0..100 {
            powertools_metrics::add_metric(&format!("M{index}"), 1.0, Unit::Count)?;
            metrics::counter!(format!("C{index}"), "pool" => "a").increment(1);
        }
        // When the gauges move after their documents were written
        metrics::gauge!("InFlight").increment(1.0);
        metrics::gauge!("Workers", "pool" => "a").decrement(1.0);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    handler
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();

    // Then their later documents hold where they went (11 and 2), not the steps from zero
    let documents = valid_documents(&sink);
    let values = |name: &str| values_of(&documents, name);
    assert_eq!(values("InFlight"), vec![json!(10.0), json!(11.0)]);
    assert_eq!(values("Workers"), vec![json!(3.0), json!(2.0)]);
    // And counters still count per document (CloudWatch sums them)
    assert_eq!(values("C0"), vec![json!(1.0)]);
}

/// A labelled metric keeps its kind and unit across the documents the 100-value limit splits an
/// invocation into, as an unlabelled one does (found by an attack from the docs: after the write
/// at the limit, a labelled histogram's name took a gauge's value, and a unit described in
/// between changed its unit within one invocation).
#[tokio::test]
async fn a_labelled_metric_keeps_its_kind_and_unit_after_a_document_is_written_at_the_limit() {
    // Given labelled histograms, then 101 samples of another: its document is written at the
    // 100-value limit
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        metrics::histogram!("OvenLatency", "tenant" => "acme").record(7.0);
        metrics::histogram!("LoafSize", "tenant" => "acme").record(1.0);
        for sample in 0..101 {
            metrics::histogram!("Samples", "tenant" => "acme").record(f64::from(sample));
        }
        // When the same names come back as a gauge, and with a unit described in between
        metrics::gauge!("OvenLatency", "tenant" => "acme").set(-5.0);
        metrics::describe_histogram!("LoafSize", metrics::Unit::Bytes, "loaf size");
        metrics::histogram!("LoafSize", "tenant" => "acme").record(2.0);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let logs = warnings_of(async {
        handler
            .oneshot(TestContext::new().event(json!({})))
            .await
            .unwrap();
    })
    .await;

    // Then the gauge's value is refused with a warning, and so is the size's under another unit
    let documents = valid_documents(&sink);
    let values = |name: &str| values_of(&documents, name);
    assert_eq!(values("OvenLatency"), vec![json!(7.0)], "{documents:#?}");
    assert!(logs.contains("OvenLatency"), "no warning: {logs}");
    let units: Vec<Value> = documents
        .iter()
        .flat_map(|document| {
            document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|metric| metric["Name"] == "LoafSize")
                .map(|metric| metric["Unit"].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    // (the later value under another unit is refused, as an unlabelled one's is)
    assert_eq!(units, vec![json!("None")], "{documents:#?}");
    assert!(logs.contains("LoafSize"), "no warning: {logs}");
}

#[tokio::test]
async fn a_label_named_service_is_refused_with_a_warning_as_add_dimension_refuses_it() {
    // Given a layer with the service `orders`, and a facade counter labelled `service`
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        metrics::counter!("Calls", "service" => "payments").increment(1);
        metrics::counter!("Calls", "channel" => "web").increment(1);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    // When it ends
    let warned = warnings_of(async {
        handler
            .oneshot(TestContext::new().event(json!({})))
            .await
            .unwrap();
    })
    .await;

    // Then the count is not written to the `orders` series as if it had no label (it was, with
    // the label dropped and no warning), and a warning says why
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 1, "{documents:?}");
    assert_eq!(documents[0]["channel"], "web");
    assert!(
        warned.contains("service") && warned.contains("was not recorded"),
        "{warned}"
    );
}

/// A dimension the invocation replaced (the service, a default one) has its new value in every
/// document of the invocation, the facade's labelled ones included (found by a review: those
/// kept the configured values).
#[tokio::test]
async fn a_replaced_service_or_default_dimension_reaches_the_labelled_documents() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    layer
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            powertools_metrics::add_dimension("service", "refunds")?;
            powertools_metrics::add_dimension("environment", "staging")?;
            powertools_metrics::add_metric("Main", 1.0, Unit::Count)?;
            metrics::counter!("Unlabelled").increment(1);
            metrics::counter!("Labelled", "shard" => "s1").increment(1);
            powertools_metrics::single_metric("Single", 1.0, Unit::Count, [("tenant", "t-1")])?;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
        .await
        .unwrap();
    let mut documents = valid_documents(&sink);
    assert_eq!(documents.len(), 3, "{documents:?}");
    // A single metric carries the configured values, as Python's `single_metric` carries its
    // configured service (the docs say so: an attack found them promising otherwise).
    let single = documents.remove(0);
    assert_eq!(metric_names(&single), ["Single"]);
    assert_eq!(
        (&single["service"], &single["environment"]),
        (&json!("orders"), &json!("prod"))
    );
    for document in &documents {
        assert_eq!(document["service"], "refunds", "{document}");
        assert_eq!(document["environment"], "staging", "{document}");
    }
    assert!(
        documents
            .iter()
            .any(|document| metric_names(document) == ["Labelled"] && document["shard"] == "s1")
    );
}

/// A label given twice in one key keeps its last value, as `add_dimensions` keeps a name given
/// twice, and says so as it does (found by an attack from the docs: the first value vanished
/// without a word); a label named as a default dimension replaces its value, and says so too.
#[tokio::test]
async fn a_label_given_twice_keeps_its_last_value_and_says_so() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let handler = layer.layer(service_fn(|_event: LambdaEvent<Value>| async {
        metrics::counter!("Shared", "tenant" => "a", "tenant" => "b").increment(1);
        metrics::counter!("Shared", "tenant" => "a", "tenant" => "b").increment(1);
        metrics::counter!("Same", "tenant" => "c", "tenant" => "c").increment(1);
        metrics::counter!("Staged", "environment" => "staging").increment(1);
        metrics::counter!("Produced", "environment" => "prod").increment(1);
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let warned = warnings_of(async {
        handler
            .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
            .await
            .unwrap();
    })
    .await;
    let documents = valid_documents(&sink);
    let shared = documents
        .iter()
        .find(|document| metric_names(document) == ["Shared"])
        .expect("the labelled document");
    assert_eq!(shared["tenant"], "b", "{shared}");
    assert_eq!(shared["Shared"], 2.0, "{shared}");
    assert_eq!(
        dimension_sets(shared),
        json!([["environment", "tenant", "service"]]),
        "{shared}"
    );
    let staged = documents
        .iter()
        .find(|document| metric_names(document) == ["Staged"])
        .expect("the labelled document");
    assert_eq!(staged["environment"], "staging", "{staged}");
    let warnings: Vec<&str> = warned
        .lines()
        .filter(|line| line.contains("Dimension is being overwritten"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "once per label set and invocation, not for the same value given twice: {warned}"
    );
    assert!(
        warnings[0].contains("Shared") && warnings[0].contains("tenant"),
        "{warned}"
    );
    assert!(
        warnings[1].contains("Staged") && warnings[1].contains("prod"),
        "{warned}"
    );
}

/// A label given twice is its last value: the same label set as that value given once (one
/// document), not another with the same dimensions, which published one metric's values in two
/// documents (a second look at an attack's finding on label order).
#[tokio::test]
async fn a_label_given_twice_is_the_label_set_of_its_last_value() {
    let (documents, warned) = run_labelled(&[], || async {
        metrics::counter!("Lookups", "tenant" => "a", "tenant" => "b").increment(1);
        metrics::counter!("Lookups", "tenant" => "b").increment(1);
        metrics::gauge!("Depth", "queue" => "q0", "queue" => "q1", "zone" => "z").set(3.0);
        metrics::gauge!("Depth", "zone" => "z", "queue" => "q1").set(4.0);
        Ok(())
    })
    .await;
    assert_eq!(documents.len(), 2, "{documents:#?}");
    assert_eq!(
        (&documents[0]["Lookups"], &documents[0]["tenant"]),
        (&json!(2.0), &json!("b"))
    );
    assert_eq!(
        (&documents[1]["Depth"], &documents[1]["queue"]),
        (&json!(4.0), &json!("q1"))
    );
    assert_eq!(
        dimension_sets(&documents[1]),
        json!([["queue", "zone", "service"]])
    );
    // Still said, once per label set as given.
    assert_eq!(overwritten(&warned, "Lookups").len(), 1, "{warned}");
    assert_eq!(overwritten(&warned, "Depth").len(), 1, "{warned}");
}

/// The warnings (`Dimension is being overwritten`) about `metric` in `warned`.
fn overwritten<'a>(warned: &'a str, metric: &str) -> Vec<&'a str> {
    warned
        .lines()
        .filter(|line| line.contains("Dimension is being overwritten"))
        .filter(|line| line.contains(&format!("metric=\"{metric}\"")))
        .collect()
}

/// Runs `handler` once through a new layer (with `layer_defaults` as default dimensions) and
/// returns the documents and the warnings.
async fn run_labelled<F, Fut>(layer_defaults: &[(&str, &str)], handler: F) -> (Vec<Value>, String)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), lambda_runtime::Error>> + Send,
{
    install();
    let sink = CheckedSink::new();
    let mut builder = builder(&sink);
    for (name, value) in layer_defaults {
        builder = builder.default_dimension(*name, *value);
    }
    let layer = builder.build().expect("valid settings");
    let warned = warnings_of(async move {
        layer
            .layer(service_fn(move |_event: LambdaEvent<Value>| {
                let handler = handler.clone();
                async move {
                    handler().await?;
                    Ok::<_, lambda_runtime::Error>(Value::Null)
                }
            }))
            .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
            .await
            .expect("the handler succeeds");
    })
    .await;
    (valid_documents(&sink), warned)
}

/// A label named as a default dimension is compared with the value the invocation's documents
/// carry, which `add_dimension` may have replaced, not the configured one (found by a review:
/// the same value was said to replace the configured one, and the configured one put back went
/// unsaid).
#[tokio::test]
async fn a_label_is_compared_with_the_invocation_s_value_of_a_default() {
    let (documents, warned) = run_labelled(&[("environment", "prod")], || async {
        powertools_metrics::add_dimension("environment", "staging")?;
        metrics::counter!("Same", "environment" => "staging").increment(1);
        metrics::counter!("Back", "environment" => "prod").increment(1);
        Ok(())
    })
    .await;
    let document = |name: &str| {
        documents
            .iter()
            .find(|document| metric_names(document) == [name])
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {documents:?}"))
    };
    assert_eq!(document("Same")["environment"], "staging");
    assert_eq!(document("Back")["environment"], "prod");
    assert!(overwritten(&warned, "Same").is_empty(), "{warned}");
    let back = overwritten(&warned, "Back");
    assert_eq!(back.len(), 1, "{warned}");
    assert!(
        back[0].contains("old=\"staging\"") && back[0].contains("new=\"prod\""),
        "{warned}"
    );
}

/// A label given twice is written with its last value: only that one is checked, and the name
/// counts once against the dimension limit (found by a review: a refused first value refused
/// the key, and 28 defaults, the service and one label given twice were too many).
#[tokio::test]
async fn a_label_given_twice_is_its_last_value_for_the_checks_too() {
    let defaults: Vec<(String, String)> = (0..28)
        .map(|index| (format!("d{index}"), "v".to_owned()))
        .collect();
    let defaults: Vec<(&str, &str)> = defaults
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let (documents, warned) = run_labelled(&defaults, || async {
        metrics::counter!("Edge", "t" => "a", "t" => "b").increment(1);
        metrics::counter!("Refused", "city" => "Zürich", "city" => "Zurich").increment(1);
        Ok(())
    })
    .await;
    let edge = documents
        .iter()
        .find(|document| metric_names(document) == ["Edge"]);
    assert!(edge.is_some_and(|edge| edge["t"] == "b"), "{warned}");
    let refused = documents
        .iter()
        .find(|document| metric_names(document) == ["Refused"]);
    assert!(
        refused.is_some_and(|refused| refused["city"] == "Zurich"),
        "{warned}"
    );
    assert!(!warned.contains("was not recorded"), "{warned}");
}

/// The warning's values are quoted, as `add_dimension`'s are: a value cannot pass for another
/// field (found by a review: `old=a new=evil new=b`).
#[tokio::test]
async fn the_replaced_label_warning_quotes_its_values() {
    let (_, warned) = run_labelled(&[], || async {
        metrics::counter!("Forged", "t" => "a new=evil", "t" => "b").increment(1);
        Ok(())
    })
    .await;
    let lines = overwritten(&warned, "Forged");
    assert_eq!(lines.len(), 1, "{warned}");
    assert!(
        lines[0].contains("old=\"a new=evil\"") && lines[0].contains("new=\"b\""),
        "{warned}"
    );
}

/// A value added after its invocation ended is written alone, with a warning of its own per
/// value; a label given twice in it does not add another warning at each value (found by a
/// review: three increments, three more warnings).
#[tokio::test]
async fn late_values_do_not_repeat_the_replaced_label_warning() {
    install();
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let kept: std::sync::Arc<std::sync::Mutex<Option<powertools_metrics::Metrics>>> =
        std::sync::Arc::default();
    let keep = kept.clone();
    let warned = warnings_of(async move {
        layer
            .layer(service_fn(move |_event: LambdaEvent<Value>| {
                let keep = keep.clone();
                async move {
                    *keep.lock().unwrap() = powertools_metrics::Metrics::current();
                    Ok::<_, lambda_runtime::Error>(Value::Null)
                }
            }))
            .oneshot(TestContext::new().with_cold_start(false).event(json!({})))
            .await
            .unwrap();
        let metrics = kept.lock().unwrap().take().unwrap();
        for _ in 0..3 {
            metrics.in_scope(|| metrics::counter!("Late", "t" => "a", "t" => "b").increment(1));
        }
    })
    .await;
    let documents = valid_documents(&sink);
    let late: Vec<&Value> = documents
        .iter()
        .filter(|document| metric_names(document) == ["Late"])
        .collect();
    assert_eq!(late.len(), 3, "{documents:?}");
    assert!(late.iter().all(|document| document["t"] == "b"));
    assert!(
        !warned.contains("Dimension is being overwritten"),
        "{warned}"
    );
    assert_eq!(
        warned.matches("after its invocation ended").count(),
        3,
        "{warned}"
    );
}
