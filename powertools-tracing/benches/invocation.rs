//! Per-invocation cost of `TracingLayer`: disabled, and exporting to a receiver on loopback,
//! against the bare handler in the same run.
//! `cargo bench -p powertools-tracing --bench invocation`; results in BENCHMARKS.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_tracing::{Tracer, TracingLayer};
use serde_json::{Value, json};

/// A minimal OTLP/HTTP receiver on loopback: reads each request and answers `200 OK`, keeping
/// connections alive, so that the benchmark measures a real export round trip.
fn start_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(response).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}/v1/traces")
}

#[tracing::instrument(skip_all)]
async fn bake() {
    tracing::info_span!("oven").in_scope(|| {});
}

async fn handler(_event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    bake().await;
    Ok(json!({"accepted": true}))
}

fn invocation(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let empty = || Env::empty();
    let disabled = Tracer::builder()
        .disabled(true)
        .env(empty())
        .build()
        .expect("valid settings");
    let exporting = Tracer::builder()
        .service("orders")
        .endpoint(start_receiver())
        .env(empty())
        .build()
        .expect("valid settings");
    let event = || TestContext::new().event(json!({"order_id": "o-1001"}));

    let mut group = criterion.benchmark_group("invocation");
    group.bench_function("bare_handler", |bencher| {
        bencher.to_async(&runtime).iter_batched(
            event,
            |event| service_fn(handler).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    // Disabled, a function installs no OTel layer (`otel_layer()` is `None`).
    let disabled_guard = tracing::subscriber::set_default(disabled.subscriber());
    group.bench_function("tracing_disabled", |bencher| {
        let layer = TracingLayer::new(disabled.clone());
        bencher.to_async(&runtime).iter_batched(
            event,
            |event| layer.layer(service_fn(handler)).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    drop(disabled_guard);
    let _guard = tracing::subscriber::set_default(exporting.subscriber());
    group.bench_function("tracing_exporting_3_spans", |bencher| {
        let layer = TracingLayer::new(exporting.clone());
        bencher.to_async(&runtime).iter_batched(
            event,
            // `block_on` polls the invocation on this thread, where the subscriber is set.
            |event| layer.layer(service_fn(handler)).oneshot(event),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, invocation);
criterion_main!(benches);
