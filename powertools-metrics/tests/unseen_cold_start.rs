//! The `ColdStart` of a cold start no layer saw (its event did not read as the handler's type:
//! `powertools::run` answered it) is written by the next invocation as a cold start the layers
//! saw is: by each layer that would write it then. A flag taken once gave it to the outermost
//! layer only, a disabled one included, which wrote nothing (found by a review; test adapted
//! from it). Its own binary: the cold start is the process's (`unseen_cold_start_disabled.rs`
//! has the other case).
#![allow(clippy::unwrap_used)]

mod support;
#[path = "support/unseen.rs"]
mod unseen;

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Layer, ServiceExt};
use powertools_core::cold_start::claim_unseen_cold_start;
use powertools_core::testing::TestContext;
use powertools_tests::emf::CheckedSink;
use serde_json::json;
use support::builder;
use unseen::{cold_starts, handler, next_after_an_unseen_cold_start};

#[tokio::test]
async fn a_cold_start_no_layer_saw_is_written_by_each_layer_as_one_they_saw_is() {
    let layer = |sink: &CheckedSink, namespace: &str| {
        builder(sink)
            .namespace(namespace)
            .capture_cold_start_metric(true)
            .build()
            .unwrap()
    };
    // Two namespaces nested: one each, as for a cold start they saw.
    let sink = CheckedSink::new();
    let stack = layer(&sink, "Bakery").layer(layer(&sink, "Shop").layer(handler()));
    let next = next_after_an_unseen_cold_start("next");
    stack
        .clone()
        .oneshot(LambdaEvent::new(json!({}), next))
        .await
        .unwrap();
    assert_eq!(cold_starts(&sink), [json!("Bakery"), json!("Shop")]);
    // And no later invocation.
    let later = TestContext::new()
        .with_request_id("later")
        .with_cold_start(false)
        .build();
    claim_unseen_cold_start(&later);
    stack
        .oneshot(LambdaEvent::new(json!({}), later))
        .await
        .unwrap();
    assert_eq!(cold_starts(&sink).len(), 2);
}
