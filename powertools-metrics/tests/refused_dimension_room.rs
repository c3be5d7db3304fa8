//! Refused dimension values, again: a call that fails changes nothing, the room counts what a
//! change frees, a set asked for stays, and new values for a set already there are bounded too
//! (found by a review of the fix in `refused_dimension_values.rs`).

mod support;

use powertools_metrics::{Error, Unit};
use powertools_tests::emf::CheckedSink;
use serde_json::json;
use support::{builder, dimension_sets, fill_to_the_bound, flushed, metrics_of};

/// `add_dimensions` adds nothing when it fails, its refused values included: they were kept
/// (replacing a dimension) before the valid part was checked.
#[test]
fn add_dimensions_that_fails_after_a_refused_value_adds_nothing() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let error = metrics
        .add_dimensions([("city", "Zürich"), ("Orders", "x")])
        .unwrap_err();
    assert!(matches!(error, Error::NameCollision { .. }), "{error:?}");
    let document = flushed(&metrics, &sink);
    assert_eq!(document["city"], "Paris", "{document}");
    assert_eq!(dimension_sets(&document), json!([["city", "service"]]));

    // The same with `service` in the valid part.
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    let error = metrics
        .add_dimensions([("city", "Zürich"), ("service", "payments")])
        .unwrap_err();
    assert!(matches!(error, Error::NameCollision { .. }), "{error:?}");
    let document = flushed(&metrics, &sink);
    assert!(document.get("city").is_none(), "{document}");
}

/// A refused value drops only the sets that held its dimension: a set of the default
/// dimensions alone, asked for with `add_dimensions`, stays.
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
    let before = flushed(&metrics, &sink);
    assert_eq!(
        dimension_sets(&before),
        json!([["environment", "city", "service"], ["environment"]])
    );

    metrics.add_dimensions([("environment", "prod")]).unwrap();
    metrics.add_dimension("city", "Paris").unwrap();
    metrics.add_dimension("city", "Zürich").unwrap();
    let after = flushed(&metrics, &sink);
    assert_eq!(
        dimension_sets(&after),
        json!([["environment", "service"], ["environment"]]),
        "{after}"
    );
}

/// At the bound, a change that frees more than it adds is taken: a valid value replacing a
/// large refused one (through either call), a short refused value replacing a long dimension.
#[test]
fn at_the_bound_a_change_that_frees_room_is_taken() {
    for through_add_dimensions in [false, true] {
        let sink = CheckedSink::new();
        let (_layer, metrics) = metrics_of(&sink);
        // 100 KB of refused value (not ASCII), kept as metadata.
        metrics.add_dimension("city", &"é".repeat(50_000)).unwrap();
        fill_to_the_bound(&metrics);
        let replaced = if through_add_dimensions {
            metrics.add_dimensions([("city", "Lyon")])
        } else {
            metrics.add_dimension("city", "Paris")
        };
        replaced.expect("the valid value frees 100 KB of metadata");
    }

    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    metrics.add_dimension("city", &"P".repeat(1000)).unwrap();
    fill_to_the_bound(&metrics);
    metrics
        .add_dimension("city", "Zürich")
        .expect("a 7-byte value replaces a 1000-byte dimension");
}

/// New values for a set already there count towards the bound too: they did not, and a
/// document passed 256 KB.
#[test]
fn add_dimensions_on_an_existing_set_checks_the_room() {
    let sink = CheckedSink::new();
    let (_layer, metrics) = metrics_of(&sink);
    let long = "v".repeat(1024);
    let sets: Vec<Vec<String>> = (0..16)
        .map(|set| (0..20).map(|index| format!("s{set}d{index}")).collect())
        .collect();
    for names in &sets {
        metrics
            .add_dimensions(names.iter().map(|name| (name.as_str(), "v")))
            .unwrap();
    }
    let grown: Result<(), Error> = sets.iter().try_for_each(|names| {
        metrics.add_dimensions(names.iter().map(|name| (name.as_str(), long.as_str())))
    });
    assert!(
        matches!(grown, Err(Error::DocumentTooLarge { .. })),
        "{grown:?}"
    );
    // Every document written is valid (`valid_documents` checks each under 256 KB).
    flushed(&metrics, &sink);
}
