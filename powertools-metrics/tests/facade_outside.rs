//! Every `metrics` facade metric recorded outside an invocation is named in a warning, once per
//! name: the warning was once per process, so a counter at init used it up and a later one in a
//! task spawned outside the invocation's scope vanished without a word (found by an audit from
//! the docs). A binary of its own: it installs the global recorder and subscriber.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::testing::TestContext;
use powertools_metrics::{EmfRecorder, Metrics};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{builder, valid_documents};

/// Where the global subscriber writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_facade_metric_recorded_outside_an_invocation_is_named_once() {
    EmfRecorder::new().install().unwrap();
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let warnings = || String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();

    // A library counting at init, twice: one warning.
    metrics::counter!("PoolConnectionsAtInit").increment(1);
    metrics::counter!("PoolConnectionsAtInit").increment(1);

    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    layer
        .layer(service_fn(|_: LambdaEvent<Value>| async move {
            metrics::counter!("OrdersInHandler").increment(1);
            // Spawned outside the invocation's scope: not written, and said.
            tokio::spawn(async { metrics::counter!("OrdersInSpawnedTask").increment(1) })
                .await
                .unwrap();
            // In the invocation's scope, as the warning says: written.
            let metrics = Metrics::current().expect("inside the invocation");
            tokio::spawn(metrics.clone().scope(async {
                metrics::counter!("OrdersInScopedTask").increment(1);
            }))
            .await
            .unwrap();
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    let documents = valid_documents(&sink);
    let written = |name: &str| {
        documents
            .iter()
            .any(|document| document.get(name).is_some())
    };
    assert!(
        written("OrdersInHandler") && written("OrdersInScopedTask"),
        "{documents:#?}"
    );
    assert!(!written("OrdersInSpawnedTask"));
    let warnings = warnings();
    assert_eq!(
        warnings.matches("PoolConnectionsAtInit").count(),
        1,
        "{warnings}"
    );
    assert_eq!(
        warnings.matches("OrdersInSpawnedTask").count(),
        1,
        "{warnings}"
    );
    // The name as it is, without quotes: a query filters on `metric = "OrdersInSpawnedTask"`.
    assert!(
        warnings.contains("metric=OrdersInSpawnedTask\n"),
        "{warnings}"
    );
    assert!(warnings.contains("Metrics::scope"), "{warnings}");

    // A name made at run time, a megabyte long: quoted by its start (found by a review).
    let before = warnings.len();
    metrics::counter!("M".repeat(1_000_000)).increment(1);
    let after = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        after.len() - before < 2_000,
        "{} bytes",
        after.len() - before
    );
    assert!(after.contains(&"M".repeat(64)), "{}", &after[before..]);

    // Past the names a warning names, one more warning says so, and then nothing.
    for index in 0..70 {
        metrics::counter!(format!("Outside{index}")).increment(1);
    }
    let warnings = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        warnings.matches("further ones are not named").count(),
        1,
        "{warnings}"
    );
    assert!(!warnings.contains("Outside69"), "{warnings}");
}
