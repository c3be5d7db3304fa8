//! The `ColdStart` of a cold start no layer saw (its event did not read as the handler's type:
//! `powertools::run` answered it) is written by the next invocation as a cold start the layers
//! saw is: by each layer that would write it then. A flag taken once gave it to the outermost
//! layer only, a disabled one included, which wrote nothing (found by a review; test adapted
//! from it). Its own binary: the cold start is the process's (`unseen_cold_start.rs` has the
//! other case).
#![allow(clippy::unwrap_used)]

mod support;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::cold_start::{claim_unseen_cold_start, note_unseen_invocation};
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

fn handler() -> impl lambda_runtime::tower::Service<
    LambdaEvent<Value>,
    Response = Value,
    Error = lambda_runtime::Error,
    Future = impl Future<Output = Result<Value, lambda_runtime::Error>> + Send,
> + Clone {
    service_fn(|_: LambdaEvent<Value>| async {
        powertools_metrics::add_metric("Orders", 1.0, Unit::Count)?;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    })
}

/// The next invocation after a cold start no layer saw, claimed as `powertools::run` claims it.
fn next_after_an_unseen_cold_start(request_id: &str) -> TestContext {
    assert!(note_unseen_invocation(
        &TestContext::new().with_cold_start(true).build()
    ));
    let next = TestContext::new()
        .with_request_id(request_id)
        .with_cold_start(false);
    claim_unseen_cold_start(&next.clone().build());
    next
}

/// The namespaces of the `ColdStart` documents `sink` has.
fn cold_starts(sink: &CheckedSink) -> Vec<Value> {
    valid_documents(sink)
        .into_iter()
        .filter(|document| document.get("ColdStart").is_some())
        .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Namespace"].clone())
        .collect()
}

/// An outer layer disabled (capture on) around an enabled one: the inner one writes it, as it
/// writes a cold start it saw.
#[tokio::test]
async fn under_a_disabled_layer_the_enabled_one_writes_it() {
    let layer = |sink: &CheckedSink| {
        builder(sink)
            .namespace("Bakery")
            .capture_cold_start_metric(true)
            .build()
            .unwrap()
    };
    let outer = |sink: &CheckedSink| {
        builder(sink)
            .capture_cold_start_metric(true)
            .disabled(true)
            .build()
            .unwrap()
    };
    let seen_sink = CheckedSink::new();
    let seen = outer(&seen_sink).layer(layer(&seen_sink).layer(handler()));
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
    let stack = outer(&sink).layer(layer(&sink).layer(handler()));
    let next = next_after_an_unseen_cold_start("after-disabled");
    stack.oneshot(next.event(json!({}))).await.unwrap();
    assert_eq!(cold_starts(&sink), cold_starts(&seen_sink));
}
