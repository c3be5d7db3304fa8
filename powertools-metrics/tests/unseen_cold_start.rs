//! The `ColdStart` of a cold start no layer saw (its event did not read as the handler's type:
//! `powertools::run` answered it) is written by the next invocation as a cold start the layers
//! saw is: by each layer that would write it then. A flag taken once gave it to the outermost
//! layer only, a disabled one included, which wrote nothing (found by a review; test adapted
//! from it). Its own binary: the cold start is the process's.
#![allow(clippy::unwrap_used)]

mod support;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::cold_start::note_unseen_invocation;
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

/// The namespaces of the `ColdStart` documents `sink` has.
fn cold_starts(sink: &CheckedSink) -> Vec<Value> {
    valid_documents(sink)
        .into_iter()
        .filter(|document| document.get("ColdStart").is_some())
        .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Namespace"].clone())
        .collect()
}

#[tokio::test]
async fn a_cold_start_no_layer_saw_is_written_as_one_they_saw_is() {
    let handler = service_fn(|_: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    });
    let layer = |sink: &CheckedSink, namespace: &str| {
        builder(sink)
            .namespace(namespace)
            .capture_cold_start_metric(true)
            .build()
            .unwrap()
    };
    let unseen_then = |context: TestContext| {
        assert!(note_unseen_invocation(
            &TestContext::new().with_cold_start(true).build()
        ));
        context.with_cold_start(false)
    };

    // Two namespaces nested: one each, as for a cold start they saw.
    let sink = CheckedSink::new();
    let stack = layer(&sink, "Bakery").layer(layer(&sink, "Shop").layer(handler));
    let next = unseen_then(TestContext::new().with_request_id("next"));
    stack.clone().oneshot(next.event(json!({}))).await.unwrap();
    assert_eq!(cold_starts(&sink), [json!("Bakery"), json!("Shop")]);
    // And no later invocation.
    let later = TestContext::new()
        .with_request_id("later")
        .with_cold_start(false);
    stack.oneshot(later.event(json!({}))).await.unwrap();
    assert_eq!(cold_starts(&sink).len(), 2);

    // An outer layer disabled (capture on) around an enabled one: the inner one writes it, as
    // it writes a cold start it saw.
    let outer = |sink: &CheckedSink| {
        builder(sink)
            .capture_cold_start_metric(true)
            .disabled(true)
            .build()
            .unwrap()
    };
    let seen_sink = CheckedSink::new();
    let seen = outer(&seen_sink).layer(layer(&seen_sink, "Bakery").layer(handler));
    seen.oneshot(
        TestContext::new()
            .with_request_id("seen")
            .with_cold_start(true)
            .event(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(cold_starts(&seen_sink), [json!("Bakery")]);
    let sink = CheckedSink::new();
    let stack = outer(&sink).layer(layer(&sink, "Bakery").layer(handler));
    let next = unseen_then(TestContext::new().with_request_id("after-disabled"));
    stack.oneshot(next.event(json!({}))).await.unwrap();
    assert_eq!(cold_starts(&sink), cold_starts(&seen_sink));
}
