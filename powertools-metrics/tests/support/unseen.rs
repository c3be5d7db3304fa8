//! What the tests of a cold start no layer saw share (`unseen_cold_start*.rs`: one binary each,
//! since the cold start is the process's).

use lambda_runtime::{Context, LambdaEvent, service_fn};
use powertools_core::cold_start::{claim_unseen_cold_start, note_unseen_invocation};
use powertools_core::testing::TestContext;
use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use serde_json::Value;

use crate::support::valid_documents;

/// A handler that adds one metric.
pub(crate) fn handler() -> impl lambda_runtime::tower::Service<
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
///
/// Built once: the claim is keyed by the request id and the deadline, and a second `build` of
/// the same `TestContext` computes its deadline again (30 s from then), so an event built from
/// it could fall on the next millisecond and be another invocation than the one that claimed
/// (about 1 run in 200 failed so).
pub(crate) fn next_after_an_unseen_cold_start(request_id: &str) -> Context {
    assert!(note_unseen_invocation(
        &TestContext::new().with_cold_start(true).build()
    ));
    let next = TestContext::new()
        .with_request_id(request_id)
        .with_cold_start(false)
        .build();
    claim_unseen_cold_start(&next);
    next
}

/// The namespaces of the `ColdStart` documents `sink` has.
pub(crate) fn cold_starts(sink: &CheckedSink) -> Vec<Value> {
    valid_documents(sink)
        .into_iter()
        .filter(|document| document.get("ColdStart").is_some())
        .map(|document| document["_aws"]["CloudWatchMetrics"][0]["Namespace"].clone())
        .collect()
}
