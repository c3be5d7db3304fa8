//! The cold-start document, in a test binary of its own: the cold start is once per process.

mod support;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, dimension_sets, valid_documents};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_cold_start_document_for_twenty_concurrent_first_invocations() {
    let sink = CheckedSink::new();
    // The 29 default dimensions the builder accepts: the cold-start document must still stay
    // within CloudWatch's 30 dimensions (it has Python's two).
    let layer = (1..29)
        .fold(builder(&sink), |builder, index| {
            builder.default_dimension(format!("d{index}"), "x")
        })
        .default_dimension("environment", "prod")
        .capture_cold_start_metric(true)
        .env(Env::from_pairs([(
            "POWERTOOLS_METRICS_FUNCTION_NAME",
            "orders-api",
        )]))
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|event: LambdaEvent<Value>| async move {
        if event.payload["fail"] == true {
            return Err::<Value, lambda_runtime::Error>("failed".into());
        }
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok(Value::Null)
    }));

    let calls = (0..20).map(|index| {
        let context = TestContext::new().with_function_name("orders-api-Xy12AbC");
        let service = service.clone();
        tokio::spawn(service.oneshot(context.event(json!({"fail": index % 2 == 0}))))
    });
    let outcomes = futures_util::future::join_all(calls).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.as_ref().unwrap().is_err())
            .count(),
        10
    );

    let documents = valid_documents(&sink);
    let cold: Vec<_> = documents
        .iter()
        .filter(|d| d.get("ColdStart").is_some())
        .collect();
    assert_eq!(cold.len(), 1, "exactly one cold start");
    let cold = cold[0];
    assert_eq!(cold["ColdStart"], 1.0);
    assert_eq!(
        cold["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{"Name": "ColdStart", "Unit": "Count"}])
    );
    // Powertools for Python 3.37 writes exactly `[["function_name","service"]]`, without the
    // default dimensions, so one ColdStart alarm sees functions in every language.
    assert_eq!(dimension_sets(cold), json!([["function_name", "service"]]));
    assert!(cold.get("environment").is_none(), "{cold}");
    assert_eq!(
        cold["function_name"], "orders-api",
        "POWERTOOLS_METRICS_FUNCTION_NAME wins over the context's name"
    );
    assert!(
        documents
            .iter()
            .all(|d| d.get("ColdStart").is_none() || d.get("Orders").is_none()),
        "the cold start has a document of its own"
    );
    assert!(
        documents
            .iter()
            .all(|d| d.get("Orders").is_none() || d.get("function_name").is_none()),
        "function_name never splits the application's series"
    );
    assert_eq!(
        documents
            .iter()
            .filter(|d| d.get("Orders").is_some())
            .count(),
        10
    );
}

#[tokio::test]
async fn nested_layers_of_one_namespace_write_one_cold_start_and_of_two_namespaces_one_each() {
    // Given a MetricsLayer inside another (the facade's stack and a user's own layer, say), both
    // capturing the cold start
    let sink = CheckedSink::new();
    let layer = |namespace: &str| {
        builder(&sink)
            .namespace(namespace)
            .capture_cold_start_metric(true)
            .build()
            .unwrap()
    };
    let handler = service_fn(|_: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    });
    let cold = || TestContext::new().with_cold_start(true).event(json!({}));
    let cold_starts = |sink: &CheckedSink| {
        valid_documents(sink)
            .into_iter()
            .filter(|document| document.get("ColdStart").is_some())
            .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Namespace"].clone())
            .collect::<Vec<_>>()
    };

    // When a cold invocation goes through both, of one namespace
    let same = layer("Bakery").layer(layer("Bakery").layer(handler));
    same.oneshot(cold()).await.unwrap();
    // Then one ColdStart is written: a ColdStart alarm must not count the cold start twice
    assert_eq!(cold_starts(&sink), vec![json!("Bakery")]);

    // And layers of two namespaces each write theirs (two metrics, one per namespace)
    let sink_before = sink.lines().len();
    let two = layer("Bakery").layer(layer("Shop").layer(handler));
    two.oneshot(cold()).await.unwrap();
    let written: Vec<_> = sink.lines()[sink_before..]
        .iter()
        .map(|line| support::assert_valid_emf(line))
        .filter(|document| document.get("ColdStart").is_some())
        .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Namespace"].clone())
        .collect();
    assert_eq!(written, vec![json!("Bakery"), json!("Shop")]);

    // And so do layers of one namespace whose function names differ (another dimension value,
    // another metric: the inner one set to a stable name, the outer one taking the context's)
    let sink_before = sink.lines().len();
    let named = builder(&sink)
        .capture_cold_start_metric(true)
        .function_name("orders-stable-name")
        .build()
        .unwrap();
    let two = layer("Bakery").layer(named.layer(handler));
    two.oneshot(cold()).await.unwrap();
    let function_names: Vec<_> = sink.lines()[sink_before..]
        .iter()
        .map(|line| support::assert_valid_emf(line))
        .filter(|document| document.get("ColdStart").is_some())
        .map(|document| document["function_name"].clone())
        .collect();
    assert_eq!(function_names.len(), 2, "{function_names:?}");
    assert!(function_names.contains(&json!("orders-stable-name")));
}
