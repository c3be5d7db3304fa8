//! The extension registered on a Tokio runtime that is then dropped (registered in a runtime of
//! its own, the function run in another): its task is gone, and the layer went on handing it
//! the spans, which were neither exported nor counted, without a word (found by an attack from
//! the docs). The layer now exports before returning again, with a warning that says why.

mod support;

use std::time::Duration;

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{Tracer, TracingLayer};
use serde_json::{Value, json};
use support::lambda_api::LambdaApi;
use support::receiver::{Behaviour, Receiver};
use support::timeline::Timeline;
use support::warnings::Warnings;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_whose_runtime_was_dropped_hands_the_export_back_to_the_layer() {
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    let warnings = Warnings::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(warnings.clone()))
        .unwrap();
    let address = lambda.address.to_string();
    let tracer = Tracer::builder()
        .service("orders")
        .env(Env::from_pairs([
            ("AWS_LAMBDA_RUNTIME_API", address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
            ("AWS_REGION", "eu-west-1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                receiver.endpoint.as_str(),
            ),
        ]))
        .build()
        .unwrap();

    // Given the extension registered on a runtime that is then dropped
    let registering = tracer.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(registering.register_extension()).unwrap();
        drop(runtime);
    })
    .join()
    .unwrap();
    assert_eq!(lambda.extensions().len(), 1, "it registered");
    // Not said when the runtime ended, which is also how a process ends its own: said at the
    // next invocation, whose spans it concerns.
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());

    // When an invocation runs through the layer on another runtime
    let response = TracingLayer::new(tracer.clone())
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    assert_eq!(response["accepted"], true);

    // Then its span was exported before it returned, and a warning said why
    assert_eq!(receiver.spans().len(), 1, "{:#?}", timeline.events());
    let said = warnings.all().join("\n");
    assert_eq!(
        said.matches("the tracer's extension stopped").count(),
        1,
        "{said}"
    );
    tokio::time::timeout(Duration::from_secs(5), tracer.flush())
        .await
        .unwrap();
    assert_eq!(tracer.dropped_spans(), 0);
}
