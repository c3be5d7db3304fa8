//! What a caller waits for when an invocation's spans are exported, through the Runtime and
//! Extensions API emulator of the tests (`tests/support/lambda_api.rs`): the function is this
//! binary again, in its own process, exporting to an OTLP receiver on loopback.
//!
//! With tracing off, then for each flush mode (before the invocation returns, after the response
//! through the tracer's extension), `response_us` is the time from queuing an invoke to its response reaching the
//! emulator, and `complete_us` the time until the invocation is complete for Lambda (the response
//! posted and the extension back at `/extension/event/next`: when the environment may be frozen
//! or take the next invocation). Then ten invocations against a collector that hangs, in each
//! mode. One JSON line on stdout.
//!
//! `cargo bench -p powertools-tracing --bench response_latency [-- --quick]`, or `scripts/bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_tracing::{FlushMode, Tracer, TracingLayer};
use serde_json::{Value, json};
use support::lambda_api::{LambdaApi, Outcome};
use support::receiver::{Behaviour, Receiver};
use support::timeline::Timeline;

const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    if std::env::var_os("POWERTOOLS_TEST_FUNCTION").is_some() {
        function();
        return;
    }
    let quick = std::env::args().any(|argument| argument == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let results = runtime.block_on(measure(if quick { 200 } else { 1000 }));
    println!("{results}");
}

/// The function: the order handler behind the tracing layer, in the flush mode the driver asks.
fn function() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(async {
            let mode = match std::env::var("POWERTOOLS_TEST_FLUSH_MODE").as_deref() {
                Ok("before-return") => FlushMode::BeforeReturn,
                _ => FlushMode::AfterResponse,
            };
            let tracer = Tracer::builder()
                .service("orders")
                .flush_mode(mode)
                .build()?;
            tracing::subscriber::set_global_default(tracer.subscriber())?;
            tracer.register_extension().await?;
            let handler = TracingLayer::new(tracer).layer(service_fn(
                |event: LambdaEvent<Value>| async move {
                    tracing::info_span!("bake").in_scope(|| {});
                    Ok::<_, lambda_runtime::Error>(json!({"accepted": event.payload["order_id"]}))
                },
            ));
            lambda_runtime::run(handler).await
        })
        .expect("the function runs");
}

fn micros(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e7).round() / 10.0
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    // Nearest rank.
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "median": percentile(&samples, 0.5),
        "p99": percentile(&samples, 0.99),
        "n": samples.len(),
    })
}

/// One function process under the emulator, exporting to a receiver that behaves as asked.
struct Function {
    lambda: LambdaApi,
    process: std::process::Child,
    _receiver: Receiver,
}

impl Function {
    async fn start(mode: &str, behaviour: Behaviour) -> Function {
        let timeline = Timeline::default();
        let receiver = Receiver::start(behaviour, &timeline).await;
        let lambda = LambdaApi::start(&timeline).await;
        let disabled = if mode == "disabled" { "true" } else { "false" };
        let process = lambda.spawn_function(
            "function",
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint),
                ("POWERTOOLS_TEST_FLUSH_MODE", mode),
                ("POWERTOOLS_TRACE_DISABLED", disabled),
            ],
        );
        assert!(lambda.wait_for_init(LIMIT).await, "the function started");
        Function {
            lambda,
            process,
            _receiver: receiver,
        }
    }

    /// One invocation: (until its response, until it is complete).
    async fn invoke(&self, order: usize) -> (Duration, Duration) {
        let start = Instant::now();
        let mut invocation = self
            .lambda
            .invoke(json!({"order_id": format!("o-{order}")}), LIMIT);
        let outcome = invocation.outcome(LIMIT).await;
        let responded = start.elapsed();
        assert!(matches!(outcome, Some(Outcome::Response(_))), "{outcome:?}");
        assert!(
            self.lambda.wait_idle(LIMIT).await,
            "the invocation completes"
        );
        (responded, start.elapsed())
    }

    async fn stop(mut self) {
        self.lambda.shutdown(&mut self.process, LIMIT).await;
    }
}

async fn measure(calls: usize) -> Value {
    let mut results = json!({"calls": calls});
    for mode in ["disabled", "before-return", "after-response"] {
        let function = Function::start(mode, Behaviour::Answer).await;
        for order in 0..50 {
            function.invoke(order).await;
        }
        let (mut response, mut complete) = (Vec::new(), Vec::new());
        for order in 0..calls {
            let (responded, completed) = function.invoke(order).await;
            response.push(micros(responded));
            complete.push(micros(completed));
        }
        function.stop().await;
        results[mode] = json!({
            "response_us": summary(response),
            "complete_us": summary(complete),
        });
    }
    // A collector that accepts connections and never answers: the default 2 s flush timeout.
    for mode in ["before-return", "after-response"] {
        let function = Function::start(mode, Behaviour::Hang).await;
        let (mut response, mut complete) = (Vec::new(), Vec::new());
        for order in 0..10 {
            let (responded, completed) = function.invoke(order).await;
            response.push(micros(responded));
            complete.push(micros(completed));
        }
        function.stop().await;
        results[format!("hanging_{mode}")] = json!({
            "response_us": response,
            "complete_us": complete,
        });
    }
    results
}
