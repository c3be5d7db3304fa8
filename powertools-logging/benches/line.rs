//! The cost of one log line, ours against tracing-subscriber's `fmt().json()` on the same event
//! in the same run, inside an invocation, buffered, and the layer against the bare handler.
//! `cargo bench -p powertools-logging --bench line`; results in BENCHMARKS.md.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_logging::{BufferConfig, Logger, LoggingLayer};
use serde_json::{Value, json};

fn discard() -> std::io::Sink {
    std::io::sink()
}

fn logger(buffer: bool) -> Logger {
    let mut builder = Logger::builder()
        .service("orders")
        .writer(discard)
        .env(Env::empty());
    if buffer {
        builder = builder.buffer(BufferConfig::default());
    }
    builder.build().expect("valid settings")
}

fn log_order_line() {
    tracing::info!(
        order_id = "o-1001",
        loaves = 3,
        paid = true,
        "order accepted"
    );
}

/// Runs one invocation through `layer` whose handler logs `lines` times with `log`, and returns
/// the time the lines took.
fn time_lines_in_invocation(
    runtime: &tokio::runtime::Runtime,
    logger: &Logger,
    lines: u64,
    log: fn(),
) -> Duration {
    let service = LoggingLayer::new(logger.clone()).layer(service_fn(
        move |_event: LambdaEvent<Value>| async move {
            powertools_logging::append_key("customer_id", "c-7")?;
            let start = Instant::now();
            for _ in 0..lines {
                log();
            }
            Ok::<_, lambda_runtime::Error>(start.elapsed())
        },
    ));
    let context = TestContext::new().event(json!({}));
    runtime
        .block_on(service.oneshot(context))
        .expect("the handler succeeds")
}

fn lines(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut group = criterion.benchmark_group("log_line");

    let fmt_json = tracing_subscriber::fmt()
        .json()
        .with_writer(discard)
        .finish();
    tracing::subscriber::with_default(fmt_json, || {
        group.bench_function("fmt_json", |bencher| bencher.iter(log_order_line));
    });

    let plain = logger(false);
    tracing::subscriber::with_default(plain.subscriber(), || {
        group.bench_function("powertools_outside_invocation", |bencher| {
            bencher.iter(log_order_line)
        });
        group.bench_function("powertools_in_invocation", |bencher| {
            bencher.iter_custom(|iters| {
                time_lines_in_invocation(&runtime, &plain, iters, log_order_line)
            })
        });
        group.bench_function("powertools_debug_filtered_out", |bencher| {
            bencher.iter(|| tracing::debug!(order_id = "o-1001", "detail"))
        });
    });

    let buffered = logger(true);
    tracing::subscriber::with_default(buffered.subscriber(), || {
        group.bench_function("powertools_debug_buffered", |bencher| {
            bencher.iter_custom(|iters| {
                time_lines_in_invocation(&runtime, &buffered, iters, || {
                    tracing::debug!(order_id = "o-1001", loaves = 3, "detail")
                })
            })
        });
    });
    group.finish();

    let mut group = criterion.benchmark_group("invocation");
    tracing::subscriber::with_default(plain.subscriber(), || {
        let handler = |_event: LambdaEvent<Value>| async {
            log_order_line();
            Ok::<_, lambda_runtime::Error>(Value::Null)
        };
        group.bench_function("bare_handler_one_line", |bencher| {
            bencher.iter_batched(
                || TestContext::new().event(json!({})),
                |event| runtime.block_on(service_fn(handler).oneshot(event)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("logging_layer_one_line", |bencher| {
            let layer = LoggingLayer::new(plain.clone());
            bencher.iter_batched(
                || TestContext::new().event(json!({})),
                |event| runtime.block_on(layer.layer(service_fn(handler)).oneshot(event)),
                BatchSize::SmallInput,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, lines);
criterion_main!(benches);
