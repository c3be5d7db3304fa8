//! Refused dimension values, again: a call that fails changes nothing, the room counts what a
//! change frees, a set asked for stays, and values for a set already there are bounded too
//! (found by a review of the fix in `refused_dimension_values.rs`).

mod support;

use powertools_metrics::{Error, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::json;
use support::{builder, dimension_sets, valid_documents};

/// add_dimensions documents "nothing is added then" on an error; a refused value in the same
/// call is applied (and replaces the dimension) before the valid part fails.
#[test]
fn add_dimensions_error_after_a_refused_value_adds_nothing() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let error = metrics
        .add_dimensions([("city", "Zürich"), ("Orders", "x")])
        .unwrap_err();
    assert!(matches!(error, Error::NameCollision { .. }), "{error:?}");
    metrics.flush().unwrap();
    let document = &valid_documents(&sink)[0];
    assert_eq!(
        document["city"], "Paris",
        "the failed add_dimensions changed city: {document}"
    );
    assert_eq!(dimension_sets(document), json!([["city", "service"]]));
}

/// Same, with `service` in the valid part (refused after the refused value was applied).
#[test]
fn add_dimensions_service_error_after_a_refused_value_adds_nothing() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    let error = metrics
        .add_dimensions([("city", "Zürich"), ("service", "payments")])
        .unwrap_err();
    assert!(matches!(error, Error::NameCollision { .. }), "{error:?}");
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    let document = &valid_documents(&sink)[0];
    assert!(
        document.get("city").is_none(),
        "the failed add_dimensions added city as metadata: {document}"
    );
}

/// A set of the default dimensions alone that the caller asked for with add_dimensions is
/// dropped when an unrelated dimension gets a refused value.
#[test]
fn an_asked_for_set_of_defaults_survives_an_unrelated_refused_value() {
    let sink = CheckedSink::new();
    let layer = builder(&sink)
        .default_dimension("environment", "prod")
        .build()
        .unwrap();
    let metrics = layer.new_metrics();
    metrics.add_dimensions([("environment", "prod")]).unwrap();
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    let before = &valid_documents(&sink)[0];
    assert_eq!(
        dimension_sets(before),
        json!([["environment", "city", "service"], ["environment"]])
    );

    metrics.add_dimensions([("environment", "prod")]).unwrap();
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_dimension("city", "Zürich").unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    let after = &valid_documents(&sink)[1];
    assert_eq!(
        dimension_sets(after),
        json!([["environment", "service"], ["environment"]]),
        "the asked-for set [environment] went with city: {after}"
    );
}

/// A valid value after a large refused one frees the refused value's metadata, but the room
/// check does not count it as freed: near 192 KB the valid value is refused as too large.
#[test]
fn a_valid_value_after_a_large_refused_one_is_not_refused_for_room() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    // 100 KB refused value (not ASCII) kept as metadata.
    metrics.add_dimension("city", &"é".repeat(50_000)).unwrap();
    // Fill the context to its bound exactly.
    let probe = 192 * 1024;
    let Err(Error::DocumentTooLarge { size, limit, .. }) =
        metrics.add_metadata("blob", "x".repeat(probe))
    else {
        panic!("the probe fits")
    };
    metrics
        .add_metadata("blob", "x".repeat(probe - (size - limit)))
        .unwrap();
    metrics
        .add_dimension("city", "Paris")
        .expect("Paris replaces 100 KB of metadata: the context shrinks");
}

/// Same through add_dimensions.
#[test]
fn a_valid_value_after_a_large_refused_one_is_not_refused_for_room_add_dimensions() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    metrics.add_dimension("city", &"é".repeat(50_000)).unwrap();
    let probe = 192 * 1024;
    let Err(Error::DocumentTooLarge { size, limit, .. }) =
        metrics.add_metadata("blob", "x".repeat(probe))
    else {
        panic!("the probe fits")
    };
    metrics
        .add_metadata("blob", "x".repeat(probe - (size - limit)))
        .unwrap();
    metrics
        .add_dimensions([("city", "Lyon")])
        .expect("Lyon replaces 100 KB of metadata: the context shrinks");
}

/// add_dimensions checks room only for a new set: a set already there takes new values of
/// any size unchecked, so the context passes 192 KB, and here a document passes 256 KB.
#[test]
fn add_dimensions_on_an_existing_set_checks_the_room() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    let long = "v".repeat(1024);
    let sets: Vec<Vec<String>> = (0..16)
        .map(|set| (0..20).map(|index| format!("s{set}d{index}")).collect())
        .collect();
    for names in &sets {
        metrics
            .add_dimensions(names.iter().map(|name| (name.as_str(), "v")))
            .unwrap();
    }
    let mut grown = Ok(());
    for names in &sets {
        grown = grown
            .and(metrics.add_dimensions(names.iter().map(|name| (name.as_str(), long.as_str()))));
    }
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    if grown.is_ok() {
        // Accepted: then every document must still be valid (under 256 KB).
        valid_documents(&sink);
    }
}

/// A refused value that replaces a long dimension: the room check does not count the removed
/// dimension as freed, so near 192 KB the replacement is refused though the context shrinks.
#[test]
fn a_short_refused_value_replacing_a_long_dimension_is_not_refused_for_room() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    metrics.add_dimension("city", &"P".repeat(1000)).unwrap();
    let probe = 192 * 1024;
    let Err(Error::DocumentTooLarge { size, limit, .. }) =
        metrics.add_metadata("blob", "x".repeat(probe))
    else {
        panic!("the probe fits")
    };
    metrics
        .add_metadata("blob", "x".repeat(probe - (size - limit)))
        .unwrap();
    metrics
        .add_dimension("city", "Zürich")
        .expect("a 7-byte value replaces a 1000-byte dimension: the context shrinks");
}
