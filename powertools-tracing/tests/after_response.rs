//! Exporting after the response through the tracer's internal Lambda extension, under an emulator
//! of the Runtime and Extensions APIs that keeps Lambda's ordering (support/lambda_api.rs, which
//! says why neither `cargo lambda watch` nor `lambda-simulator` would do). The function is this
//! test binary again, in its own process, as Lambda runs it.

mod support;

use std::time::Duration;

use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_tracing::{FlushMode, Tracer, TracingLayer};
use serde::Deserialize;
use serde_json::json;
use support::lambda_api::{LambdaApi, Outcome};
use support::receiver::{Behaviour, Receiver};
use support::timeline::Timeline;

const FUNCTION: &str = "function_process";
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Order {
    order_id: String,
}

/// The function the emulator runs, when this binary is started by [`LambdaApi::spawn_function`]
/// (`POWERTOOLS_TEST_FUNCTION` set); in a test run of its own it does nothing.
#[test]
fn function_process() {
    if std::env::var_os("POWERTOOLS_TEST_FUNCTION").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run_function()).unwrap();
}

async fn run_function() -> Result<(), lambda_runtime::Error> {
    let before_return =
        std::env::var("POWERTOOLS_TEST_FLUSH_MODE").as_deref() == Ok("before-return");
    let tracer = Tracer::builder()
        .service("orders")
        .flush_mode(if before_return {
            FlushMode::BeforeReturn
        } else {
            FlushMode::AfterResponse
        })
        // Longer than the tests wait: a response that waits for the held export never comes.
        .flush_timeout(2 * LIMIT)
        .export_timeout(2 * LIMIT)
        // With concurrent invocations, nothing is exported before the shutdown in these tests.
        .export_interval(Duration::from_secs(3600))
        .build()?;
    tracing::subscriber::set_global_default(tracer.subscriber())?;
    tracer.register_extension().await?;
    let handler =
        TracingLayer::new(tracer).layer(service_fn(|event: LambdaEvent<Order>| async move {
            tracing::info_span!("bake").in_scope(|| {});
            Ok::<_, lambda_runtime::Error>(json!({"accepted": event.payload.order_id}))
        }));
    if std::env::var_os("AWS_LAMBDA_MAX_CONCURRENCY").is_some() {
        lambda_runtime::run_concurrent(handler).await
    } else {
        lambda_runtime::run(handler).await
    }
}

fn accepted(outcome: Option<&Outcome>) -> Option<&str> {
    match outcome {
        Some(Outcome::Response(body)) => body["accepted"].as_str(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_is_sent_before_the_export_and_the_next_invocation_waits_for_it() {
    // Given a function whose collector holds its answers until the test releases them
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Hold, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    let mut function = lambda.spawn_function(
        FUNCTION,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint)],
    );
    assert!(lambda.wait_for_init(LIMIT).await, "the function started");
    assert_eq!(
        lambda.extensions(),
        [("powertools-tracing".to_owned(), vec!["INVOKE".to_owned()])],
        "registered during init, for INVOKE"
    );

    // When an order is invoked
    let mut first = lambda.invoke(json!({"order_id": "o-1"}), Duration::from_secs(600));

    // Then its response arrives while the collector still holds the export of its spans
    let outcome = first.outcome(LIMIT).await;
    assert_eq!(
        accepted(outcome.as_ref()),
        Some("o-1"),
        "{outcome:?} {:#?}",
        timeline.events()
    );
    let spans = receiver.wait_for("orders-api", 1, LIMIT).await;
    assert_eq!(spans[0].attributes["faas.invocation_id"], first.request_id);
    assert_eq!(timeline.position("export answered"), None, "still held");

    // And the next invocation is not handed to the runtime while the export is under way
    let mut second = lambda.invoke(json!({"order_id": "o-2"}), Duration::from_secs(600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !lambda.dispatched(&second.request_id),
        "{:#?}",
        timeline.events()
    );

    // When the collector answers
    receiver.release();

    // Then the second invocation runs, once the export is done and the extension is back
    let outcome = second.outcome(LIMIT).await;
    assert_eq!(accepted(outcome.as_ref()), Some("o-2"));
    let events = timeline.events();
    let at = |prefix: &str| {
        timeline
            .position(prefix)
            .unwrap_or_else(|| panic!("no {prefix:?} in {events:#?}"))
    };
    assert!(
        at("response req-1 posted") < at("export answered"),
        "{events:#?}"
    );
    assert!(
        at("export answered") < at("extension powertools-tracing done with req-1"),
        "{events:#?}"
    );
    assert!(
        at("extension powertools-tracing done with req-1") < at("invoke req-2 dispatched"),
        "{events:#?}"
    );
    let spans = receiver.wait_for("orders-api", 2, LIMIT).await;
    assert_eq!(spans[1].attributes["faas.invocation_id"], second.request_id);
    assert_eq!(receiver.wait_for("bake", 2, LIMIT).await.len(), 2);

    let status = lambda.shutdown(&mut function, LIMIT).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

/// A poll of `/extension/event/next` that failed (an answer of 500), or whose event did not read,
/// ended the extension for good: it never asked again, and Lambda, which ends an invocation only
/// once every extension subscribed to `INVOKE` is back, would have held the next one until its
/// timeout (found by an attack from the docs). The extension asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_asks_again_after_a_failed_or_unreadable_poll() {
    // Given an Extensions API whose first two answers to the extension are a failure and an
    // event it cannot read
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    lambda.answer_next_extension_polls(vec![
        (
            hyper::StatusCode::INTERNAL_SERVER_ERROR,
            json!({"errorType": "Extension.Unknown", "errorMessage": "a moment's failure"}),
        ),
        (
            hyper::StatusCode::OK,
            json!({"eventType": "RESTORE", "deadlineMs": "soon"}),
        ),
    ]);
    let mut function = lambda.spawn_function(
        FUNCTION,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint)],
    );
    assert!(lambda.wait_for_init(LIMIT).await, "the function started");

    // When two orders are invoked, one after the other
    let mut first = lambda.invoke(json!({"order_id": "o-1"}), Duration::from_secs(600));
    assert_eq!(accepted(first.outcome(LIMIT).await.as_ref()), Some("o-1"));
    let mut second = lambda.invoke(json!({"order_id": "o-2"}), Duration::from_secs(600));

    // Then the extension came back after each, so the second ran, and both were exported
    let outcome = second.outcome(LIMIT).await;
    assert_eq!(
        accepted(outcome.as_ref()),
        Some("o-2"),
        "{outcome:?} {:#?}",
        timeline.events()
    );
    assert!(lambda.wait_idle(LIMIT).await, "{:#?}", timeline.events());
    let spans = receiver.wait_for("orders-api", 2, LIMIT).await;
    let invocations: Vec<&str> = spans
        .iter()
        .map(|span| span.attributes["faas.invocation_id"].as_str())
        .collect();
    assert_eq!(invocations, [&first.request_id, &second.request_id]);
    let status = lambda.shutdown(&mut function, LIMIT).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

/// An Extensions API that answers every poll at once with an event the extension cannot read
/// made it poll in a tight loop, a core's worth of requests (5,533 in 2 s, found by a review):
/// such polls are paced as failed ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_answered_with_events_the_extension_cannot_read_are_paced() {
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    let unreadable = vec![(hyper::StatusCode::OK, json!({"eventType": "RESTORE"})); 1000];
    lambda.answer_next_extension_polls(unreadable);
    let mut function = lambda.spawn_function(
        FUNCTION,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint)],
    );
    assert!(lambda.wait_for_init(LIMIT).await, "the function started");
    // Paced from 10 ms, doubling to a second: about ten polls in the first two seconds, where a
    // tight loop makes thousands.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polled = 1000 - lambda.extension_poll_answers_left();
    assert!(
        (1..=50).contains(&polled),
        "{polled} polls in 2 s {:#?}",
        timeline.events().len()
    );
    let status = lambda.shutdown(&mut function, LIMIT).await;
    assert!(status.is_some(), "the function exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrent_invocations_a_shutdown_exports_what_is_left() {
    // Given a function running invocations concurrently (Lambda Managed Instances), which
    // exports in the background, every hour in this test
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    let mut function = lambda.spawn_function(
        FUNCTION,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "2"),
        ],
    );
    assert!(lambda.wait_for_init(LIMIT).await, "the function started");
    assert_eq!(
        lambda.extensions(),
        [("powertools-tracing".to_owned(), Vec::<String>::new())],
        "registered for no event: only for the SIGTERM"
    );

    // When an order is invoked, its response arrives and its spans wait in the queue
    let mut first = lambda.invoke(json!({"order_id": "o-1"}), Duration::from_secs(600));
    assert_eq!(accepted(first.outcome(LIMIT).await.as_ref()), Some("o-1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.spans().is_empty(), "not exported yet");

    // When Lambda shuts the environment down
    let status = lambda.shutdown(&mut function, LIMIT).await;

    // Then the spans left were exported before the process exited
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    let spans = receiver.wait_for("orders-api", 1, Duration::ZERO).await;
    assert_eq!(spans.len(), 1, "{:#?}", timeline.events());
    assert_eq!(spans[0].attributes["faas.invocation_id"], first.request_id);
    let events = timeline.events();
    let at = |prefix: &str| timeline.position(prefix).unwrap();
    assert!(
        at("shutdown: SIGTERM sent") < at("export received"),
        "{events:#?}"
    );
    assert!(
        at("export received") < at("function process exited"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_runtime_cannot_read_does_not_hold_the_environment_until_its_deadline() {
    // Given a function that exports after the response
    let timeline = Timeline::default();
    let receiver = Receiver::start(Behaviour::Answer, &timeline).await;
    let lambda = LambdaApi::start(&timeline).await;
    let mut function = lambda.spawn_function(
        FUNCTION,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint)],
    );
    assert!(lambda.wait_for_init(LIMIT).await, "the function started");

    // When an event that is not an order comes in, with ten minutes to run (the runtime fails
    // it before any handler or layer sees it), then an order
    let mut malformed = lambda.invoke(json!({"not": "an order"}), Duration::from_secs(600));
    let mut order = lambda.invoke(json!({"order_id": "o-3"}), Duration::from_secs(600));

    // Then the first fails and the second runs: the extension let the environment go long before
    // the first's deadline
    assert!(matches!(
        malformed.outcome(LIMIT).await,
        Some(Outcome::Error(_))
    ));
    assert_eq!(
        accepted(order.outcome(LIMIT).await.as_ref()),
        Some("o-3"),
        "{:#?}",
        timeline.events()
    );
    let spans = receiver.wait_for("orders-api", 1, LIMIT).await;
    assert_eq!(spans[0].attributes["faas.invocation_id"], order.request_id);

    let status = lambda.shutdown(&mut function, LIMIT).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}
