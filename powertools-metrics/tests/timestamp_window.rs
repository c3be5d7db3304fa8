//! A timestamp CloudWatch would take when it was set, but no longer when its document is written
//! (a long invocation, a handle flushed late): CloudWatch drops a document over 14 days old, so
//! it is written at the moment of writing instead, with a warning (found by an attack from the
//! docs: the document went out 300 ms past the window, without a word).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use support::{metrics_of, valid_documents};

const FOURTEEN_DAYS: Duration = Duration::from_secs(14 * 86_400);

fn epoch_ms(time: SystemTime) -> u64 {
    u64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn a_timestamp_that_left_cloudwatch_s_window_before_the_write_is_replaced_with_a_warning() {
    let warnings = powertools_tests::CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(warnings.subscriber());

    // Given a timestamp 200 ms inside CloudWatch's 14 days, taken, and a metric
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    let set = SystemTime::now() - FOURTEEN_DAYS + Duration::from_millis(200);
    metrics
        .set_timestamp(set)
        .expect("inside the window when set");
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    // When its documents are written after the timestamp has left the window: three, split at
    // CloudWatch's 100 values per metric
    std::thread::sleep(Duration::from_millis(400));
    let before_write = SystemTime::now();
    for _ in 0..200 {
        metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    }
    metrics.flush().unwrap();

    // Then each is written with a timestamp CloudWatch takes (the moment of writing), and one
    // warning says so
    let documents = valid_documents(&sink);
    assert_eq!(documents.len(), 3);
    for document in &documents {
        let written = document["_aws"]["Timestamp"].as_u64().unwrap();
        assert!(
            written >= epoch_ms(before_write),
            "written at {written}, set at {}, the window's start {}",
            epoch_ms(set),
            epoch_ms(before_write - FOURTEEN_DAYS)
        );
    }
    let warnings = warnings.text();
    assert!(
        warnings.contains("more than 14 days in the past") && warnings.contains("set_timestamp"),
        "no warning: {warnings:?}"
    );
    assert_eq!(
        warnings.matches("more than 14 days").count(),
        1,
        "one warning per invocation: {warnings}"
    );
}

/// A timestamp still inside the window when written is kept as it was set.
#[test]
fn a_timestamp_inside_the_window_is_kept() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    let set = SystemTime::now() - FOURTEEN_DAYS + Duration::from_secs(60);
    metrics.set_timestamp(set).unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    let documents = valid_documents(&sink);
    assert_eq!(
        documents[0]["_aws"]["Timestamp"].as_u64(),
        Some(epoch_ms(set))
    );
}
