//! Arbitrary input through every function: never a panic, and every document written is valid.

mod support;

use std::time::{Duration, SystemTime};

use powertools_metrics::{Resolution, Unit};
use powertools_tests::emf::CheckedSink;
use support::{builder, valid_documents};

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
