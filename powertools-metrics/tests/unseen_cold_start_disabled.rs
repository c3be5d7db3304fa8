//! The `ColdStart` of a cold start no layer saw (its event did not read as the handler's type:
//! `powertools::run` answered it) is written by the next invocation as a cold start the layers
//! saw is: by each layer that would write it then. A flag taken once gave it to the outermost
//! layer only, a disabled one included, which wrote nothing (found by a review; test adapted
//! from it). Its own binary: the cold start is the process's (`unseen_cold_start.rs` has the
//! other case).
#![allow(clippy::unwrap_used)]

mod support;
#[path = "support/unseen.rs"]
mod unseen;

use lambda_runtime::LambdaEvent;
use lambda_runtime::tower::{Layer, ServiceExt};
use powertools_core::testing::TestContext;
use powertools_tests::emf::CheckedSink;
use serde_json::json;
use support::builder;
use unseen::{cold_starts, handler, next_after_an_unseen_cold_start};

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
    stack
        .oneshot(LambdaEvent::new(json!({}), next))
        .await
        .unwrap();
    assert_eq!(cold_starts(&sink), cold_starts(&seen_sink));
}
