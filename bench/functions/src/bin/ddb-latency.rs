//! Our side of the latency comparison through DynamoDB (`bench/python/through_dynamodb.py` is
//! the other): the order handler behind logs, metrics and idempotency on `DynamoDbStore`,
//! against the DynamoDB-compatible server at `AWS_ENDPOINT_URL_DYNAMODB` (moto in
//! `scripts/bench`), timed call by call, with each call's DynamoDB requests counted.
//!
//! ```text
//! AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:PORT ddb-latency [--iterations N] [--quick]
//! ```
//!
//! Rows: `first_call` (a new order id each call), `duplicate` (the same ids again, each
//! completed earlier) and `cache_hit` (a duplicate with the local cache on, after its first
//! call). The last line on stdout is one JSON object for `scripts/bench`.

use std::time::{Duration, Instant};

use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer};
use powertools_bench::{DiscardDocuments, Order, Receipt, handler};
use serde_json::{Value, json};

/// Latencies and request counts of one row.
#[derive(Default)]
struct Row {
    latencies: Vec<Duration>,
    requests: Vec<usize>,
}

impl Row {
    fn latency_json(&self) -> Value {
        let mut millis: Vec<f64> = self
            .latencies
            .iter()
            .map(|latency| latency.as_secs_f64() * 1e3)
            .collect();
        millis.sort_by(f64::total_cmp);
        let n = millis.len();
        let round = |value: f64| (value * 1000.0).round() / 1000.0;
        let median = if n % 2 == 1 {
            millis[n / 2]
        } else {
            (millis[n / 2 - 1] + millis[n / 2]) / 2.0
        };
        // Nearest rank, as in_process.py computes it.
        let p90 = millis[((n * 9).div_ceil(10)).saturating_sub(1)];
        json!({
            "median": round(median),
            "mean": round(millis.iter().sum::<f64>() / n as f64),
            "p90": round(p90),
            "n": n,
        })
    }

    /// The requests every call made, if they all made the same number.
    fn calls(&self) -> Value {
        let (min, max) = self.min_max();
        if min == max { json!(min) } else { Value::Null }
    }

    fn min_max(&self) -> (usize, usize) {
        (
            self.requests.iter().min().copied().unwrap_or(0),
            self.requests.iter().max().copied().unwrap_or(0),
        )
    }
}

fn iterations() -> Result<usize, String> {
    let mut iterations = 200;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => iterations = 30,
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|&value| value > 0)
                    .ok_or("--iterations takes a positive number")?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(iterations)
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let iterations = iterations()?;
    let Some((client, counter)) = powertools_tests::counted_dynamodb_client().await else {
        return Err("set AWS_ENDPOINT_URL_DYNAMODB to a local DynamoDB-compatible server".into());
    };
    let table = powertools_tests::create_idempotency_table(&client).await;
    let powertools = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
        ]))
        .logger(|logger| logger.writer(std::io::sink))
        .metrics(|metrics| metrics.sink(DiscardDocuments))
        .build()?;
    powertools.init()?;
    let service = |local_cache: bool| -> Result<_, lambda_runtime::Error> {
        let builder = Idempotency::builder(DynamoDbStore::new(client.clone(), table.clone())?)
            .key_prefix("orders");
        let builder = if local_cache {
            builder.use_local_cache()
        } else {
            builder
        };
        Ok(ServiceBuilder::new()
            .layer(powertools.layer())
            .layer(
                IdempotencyLayer::new(builder.build()?)
                    .key_from(|order: &Order| Some(order.order_id.clone())),
            )
            .service(service_fn(handler)))
    };
    let run = std::process::id();
    let call = |service, order_id: String| {
        let counter = counter.clone();
        async move {
            let event: LambdaEvent<Order> = TestContext::new().event(Order::sample(&order_id));
            let started = Instant::now();
            let (receipt, requests) = counter.during(ServiceExt::oneshot(service, event)).await;
            let elapsed = started.elapsed();
            let receipt: Receipt = receipt.map_err(|error| format!("{order_id}: {error}"))?;
            if receipt.order_id != order_id {
                return Err(format!(
                    "{order_id} got the receipt of {}",
                    receipt.order_id
                ));
            }
            Ok::<_, String>((elapsed, requests))
        }
    };

    let plain = service(false)?;
    // One call outside the timing: the first connection and the SDK's lazy setup.
    call(plain.clone(), format!("warm-{run}")).await?;
    let (mut first, mut duplicate, mut cache_hit) =
        (Row::default(), Row::default(), Row::default());
    for index in 0..iterations {
        let (latency, requests) = call(plain.clone(), format!("o-{run}-{index}")).await?;
        first.latencies.push(latency);
        first.requests.push(requests);
    }
    for index in 0..iterations {
        let (latency, requests) = call(plain.clone(), format!("o-{run}-{index}")).await?;
        duplicate.latencies.push(latency);
        duplicate.requests.push(requests);
    }
    let cached = service(true)?;
    for index in 0..iterations {
        let order_id = format!("c-{run}-{index}");
        call(cached.clone(), order_id.clone()).await?;
        let (latency, requests) = call(cached.clone(), order_id).await?;
        cache_hit.latencies.push(latency);
        cache_hit.requests.push(requests);
    }
    client.delete_table().table_name(&table).send().await?;

    let (first_min, first_max) = first.min_max();
    let (duplicate_min, duplicate_max) = duplicate.min_max();
    println!(
        "{}",
        json!({
            "first_call_ms": first.latency_json(),
            "duplicate_ms": duplicate.latency_json(),
            "cache_hit_ms": cache_hit.latency_json(),
            "ddb_calls_first": first.calls(),
            "ddb_calls_first_min": first_min,
            "ddb_calls_first_max": first_max,
            "ddb_calls_duplicate": duplicate.calls(),
            "ddb_calls_duplicate_min": duplicate_min,
            "ddb_calls_duplicate_max": duplicate_max,
            "ddb_calls_cache_hit": cache_hit.calls(),
        })
    );
    Ok(())
}
