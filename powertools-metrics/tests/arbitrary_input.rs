//! Arbitrary input through every function: never a panic, and every document written is valid.

mod support;

use std::time::{Duration, SystemTime};

use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_metrics::{Metrics, MetricsLayer, Resolution, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};
use support::{assert_valid_emf, builder, valid_documents};

/// A small deterministic generator, so that a failure replays exactly (seed in the message).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

#[test]
fn thousands_of_arbitrary_calls_never_panic_or_write_an_invalid_document() {
    let long_name = "n".repeat(300);
    let long_value = "v".repeat(1100);
    let names: Vec<&str> = vec![
        "Orders",
        "Latency",
        "location",
        "service",
        "order_id",
        "_aws",
        "",
        " ",
        ":colon",
        "Zürich",
        "tab\there",
        "line\nbreak",
        "a",
        "b",
        "c",
        "d",
        "e",
        &long_name,
        "Bytes/Second",
        "{\"json\":1}",
        "emoji🥐",
    ];
    let values: Vec<&str> = vec!["Lyon", "", " ", "Zürich", "x", &long_value, "🥐", "a b"];
    let numbers = [
        0.0,
        1.0,
        -1.0,
        0.5,
        1e300,
        -1e300,
        1e108,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
    ];
    let now = SystemTime::now();
    let times = [
        now,
        now - Duration::from_secs(20 * 86_400),
        now + Duration::from_secs(4 * 3600),
        now - Duration::from_secs(3600),
    ];

    for seed in 0..40u64 {
        let sink = CheckedSink::new();
        let layer = builder(&sink)
            .default_dimension("environment", "prod")
            .raise_on_empty_metrics(seed % 2 == 0)
            .build()
            .unwrap();
        let metrics = layer.new_metrics();
        let mut random = Lcg(seed);
        for _ in 0..400 {
            // The results are allowed to be errors; what is checked is that nothing panics and
            // that what is written is valid.
            let _ = match random.next() % 7 {
                0 | 1 => metrics.add_metric(
                    random.pick(&names),
                    random.pick(&numbers),
                    random.pick(Unit::ALL),
                ),
                2 => metrics.add_metric_with_resolution(
                    random.pick(&names),
                    random.pick(&numbers),
                    random.pick(Unit::ALL),
                    random.pick(&[Resolution::High, Resolution::Standard]),
                ),
                3 => metrics.add_dimension(random.pick(&names), random.pick(&values)),
                4 => metrics.add_dimensions([
                    (random.pick(&names), random.pick(&values)),
                    (random.pick(&names), random.pick(&values)),
                ]),
                5 => metrics.add_metadata(random.pick(&names), random.pick(&values)),
                _ => metrics.set_timestamp(random.pick(&times)),
            };
            if random.next().is_multiple_of(50) {
                let _ = metrics.flush();
            }
        }
        let _ = metrics.flush();
        let documents = valid_documents(&sink);
        assert!(!documents.is_empty(), "seed {seed}: some calls were valid");
    }
}

/// The documents of one invocation doing `ops` (seeded) behind `layer`; the handler fails when
/// the seed says so. Timestamps within a minute of now (the invocation's own) read 0, so that
/// two runs compare; explicit ones (an hour or more from `now`) stay.
async fn invocation_documents(
    layer: &MetricsLayer,
    sink: &CheckedSink,
    seed: u64,
    now: SystemTime,
) -> Vec<Value> {
    let before = sink.lines().len();
    let fails = seed % 5 == 0;
    let _ = layer
        .layer(service_fn(move |_event: LambdaEvent<Value>| async move {
            let names = [
                "Orders",
                "Latency",
                "location",
                "order_id",
                "a",
                "b",
                "service",
                "environment",
                "region",
            ];
            let values = ["Lyon", "Zürich", "x", ""];
            // Times CloudWatch accepts (at most 14 days back, 2 hours ahead), an hour and more
            // away from the invocation's own.
            let times = [
                now - Duration::from_secs(3 * 86_400),
                now - Duration::from_secs(3600),
                now + Duration::from_secs(3600),
            ];
            let metrics = Metrics::current().expect("inside the layer's invocation");
            let mut random = Lcg(seed);
            for _ in 0..random.next() % 12 {
                let _ = match random.next() % 7 {
                    0 | 1 => powertools_metrics::add_metric(
                        random.pick(&names),
                        (random.next() % 100) as f64,
                        random.pick(&[Unit::Count, Unit::Milliseconds]),
                    ),
                    2 => {
                        powertools_metrics::add_dimension(random.pick(&names), random.pick(&values))
                    }
                    3 => metrics.add_dimensions([
                        (random.pick(&names), random.pick(&values)),
                        (random.pick(&names), random.pick(&values)),
                    ]),
                    4 => {
                        powertools_metrics::add_metadata(random.pick(&names), random.pick(&values))
                    }
                    5 => metrics.set_timestamp(random.pick(&times)),
                    _ => metrics.flush(),
                };
            }
            if fails {
                return Err::<Value, lambda_runtime::Error>("the handler failed".into());
            }
            Ok(Value::Null)
        }))
        .oneshot(TestContext::new().event(json!({})))
        .await;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    sink.lines()[before..]
        .iter()
        .map(|line| {
            let mut document = assert_valid_emf(line);
            let timestamp = &mut document["_aws"]["Timestamp"];
            if (timestamp.as_i64().expect("a number") - now_ms).abs() < 60_000 {
                *timestamp = Value::from(0);
            }
            document
        })
        .collect()
}

/// A layer as the differential test configures it: with or without `service`, with these
/// default dimensions.
fn configured(sink: &CheckedSink, service: bool, defaults: &[(&str, &str)]) -> MetricsLayer {
    let mut builder = MetricsLayer::builder()
        .namespace("Bakery")
        .sink(sink.clone())
        .env(Env::empty());
    if service {
        builder = builder.service("orders");
    }
    for (name, value) in defaults {
        builder = builder.default_dimension(*name, *value);
    }
    builder.build().expect("a valid configuration")
}

#[tokio::test]
async fn an_invocation_on_a_reused_state_writes_what_it_writes_on_a_fresh_one() {
    // The layer reuses an invocation's state for the next invocation (reset, with its
    // allocations). Whatever the invocations before did (dimensions, replaced defaults, sets,
    // metadata, explicit timestamps, flushes, failures), each invocation's documents must be
    // those it writes behind a layer that never ran anything.
    let now = SystemTime::now();
    let setups: [(bool, &[(&str, &str)]); 4] = [
        (true, &[("environment", "prod")]),
        (false, &[("environment", "prod"), ("region", "eu")]),
        (true, &[]),
        (false, &[]),
    ];
    for (service, defaults) in setups {
        for run in 0..10u64 {
            let reused_sink = CheckedSink::new();
            let reused = configured(&reused_sink, service, defaults);
            for invocation in 0..15u64 {
                let seed = run * 1000 + invocation;
                let fresh_sink = CheckedSink::new();
                let fresh = configured(&fresh_sink, service, defaults);
                let expected = invocation_documents(&fresh, &fresh_sink, seed, now).await;
                let got = invocation_documents(&reused, &reused_sink, seed, now).await;
                assert_eq!(
                    got, expected,
                    "service {service}, defaults {defaults:?}, run {run}, invocation {invocation} \
                     (seed {seed})"
                );
            }
        }
    }
}
