//! An invocation whose future is dropped as its thread exits (a runtime, or a future, kept in a
//! thread-local): its span ends without touching thread-locals already destroyed. A panic there
//! is a panic in a thread-local's destructor, which aborts the process.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{Tracer, TracingLayer};
use serde_json::{Value, json};

thread_local! {
    /// Holds an invocation's future until the thread exits.
    static HELD: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>> = const { RefCell::new(None) };
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    if event.payload["hang"] == json!(true) {
        std::future::pending::<()>().await;
    }
    Ok(json!({ "ok": true }))
}

#[test]
fn an_invocation_dropped_as_its_thread_exits_ends_its_span_without_a_panic() {
    let tracer = Tracer::builder()
        .service("orders")
        .env(Env::empty())
        // The OTLP exporter, whose queue takes the span as it ends. (A caller's exporter goes
        // through OpenTelemetry's `SimpleSpanProcessor`, which runs an executor of its own on
        // a thread-local and aborts here whatever this crate does.)
        .endpoint("http://127.0.0.1:9")
        .flush_timeout(Duration::from_millis(200))
        .build()
        .expect("valid tracer settings");
    let thread = std::thread::spawn(move || {
        // Registered first, so destroyed after the thread-locals the layer uses below.
        HELD.with(|_| {});
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let service = TracingLayer::new(tracer).layer(service_fn(handler));
        let done = runtime.block_on(service.clone().oneshot(TestContext::new().event(json!({}))));
        assert_eq!(done.expect("the first invocation"), json!({ "ok": true }));
        let mut hanging: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
            let _ = service
                .oneshot(TestContext::new().event(json!({ "hang": true })))
                .await;
        });
        runtime.block_on(async {
            let started = tokio::time::timeout(Duration::from_millis(20), hanging.as_mut());
            assert!(started.await.is_err(), "the handler hangs");
        });
        HELD.with(|held| *held.borrow_mut() = Some(hanging));
    });
    assert!(thread.join().is_ok());
}
