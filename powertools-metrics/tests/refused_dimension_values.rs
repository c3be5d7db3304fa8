//! A dimension value CloudWatch refuses replaces the dimension as metadata: errors on the way
//! leave the invocation as it was, and no dimension set is left that nobody asked for (found by
//! a review of the change that made the replacement).

mod support;

use powertools_metrics::{Error, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::json;
use support::{builder, dimension_sets, flushed, metrics_of};

/// A valid value that is then refused (too many dimensions) must not have already thrown away
/// the refused value's metadata: the error leaves the invocation as it was.
#[test]
fn a_valid_value_that_errors_keeps_the_refused_value_as_metadata() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    let mut index = 0;
    while metrics.add_dimension(&format!("d{index}"), "v").is_ok() {
        index += 1;
    }
    metrics.add_dimension("city", "Zürich").unwrap();
    let error = metrics.add_dimension("city", "Paris").unwrap_err();
    assert!(
        matches!(error, Error::TooManyDimensions { .. }),
        "{error:?}"
    );
    let document = &flushed(&metrics, &sink);
    assert_eq!(
        document["city"], "Zürich",
        "the refused value was lost: {document}"
    );
}

/// Same through add_dimensions, whose docs say "nothing is added then" on an error.
#[test]
fn add_dimensions_that_errors_keeps_the_refused_value_as_metadata() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    metrics.add_dimension("city", "Zürich").unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let error = metrics
        .add_dimensions([("city", "Paris"), ("Orders", "x")])
        .unwrap_err();
    assert!(matches!(error, Error::NameCollision { .. }), "{error:?}");
    let document = &flushed(&metrics, &sink);
    assert_eq!(
        document["city"], "Zürich",
        "the refused value was lost: {document}"
    );
}

/// A refused value that cannot be kept as metadata (no room) is an error: the dimension it
/// would have replaced must still be there, not removed before the metadata was refused.
#[test]
fn a_refused_value_that_does_not_fit_as_metadata_keeps_the_dimension() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    metrics.add_dimension("city", "Paris").unwrap();
    metrics
        .add_metadata("blob", "x".repeat(192 * 1024 - 1500))
        .unwrap();
    let long_refused = format!("Zürich{}", "x".repeat(2000));
    let error = metrics.add_dimension("city", &long_refused).unwrap_err();
    assert!(matches!(error, Error::DocumentTooLarge { .. }), "{error:?}");
    let document = &flushed(&metrics, &sink);
    assert_eq!(
        document["city"],
        "Paris",
        "city lost on an error: sets {}",
        dimension_sets(document)
    );
    assert_eq!(dimension_sets(document), json!([["city", "service"]]));
}

/// A set of `add_dimensions` emptied by the removal of its only dimension goes (it was kept as
/// `[]`, and every metric was also published with no dimension at all, a metric nobody asked
/// for); so does one left with the default dimensions alone.
#[test]
fn a_set_emptied_by_a_refused_value_goes() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    metrics.add_dimensions([("city", "Paris")]).unwrap();
    metrics.add_dimension("city", "Zürich").unwrap();
    let document = &flushed(&metrics, &sink);
    assert_eq!(dimension_sets(document), json!([["service"]]), "{document}");
}

#[test]
fn a_set_reduced_to_the_defaults_by_a_refused_value_goes() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let metrics = layer.new_metrics();
    metrics.add_dimensions([("city", "Paris")]).unwrap();
    metrics.add_dimension("city", "Zürich").unwrap();
    let document = &flushed(&metrics, &sink);
    assert_eq!(
        dimension_sets(document),
        json!([["environment", "service"]]),
        "{document}"
    );
}
