//! The room of the repeated context counts bytes as a document writes them, escapes included
//! (found by a review).

mod support;

use powertools_metrics::Unit;
use powertools_tests::emf::CheckedSink;
use support::{builder, valid_documents};

/// A metadata key of control characters: each takes 6 bytes in the document (`\u0001`), 1 in
/// the count. add_metadata accepts it; the document passes 256 KB.
#[test]
fn metadata_key_escapes_are_counted() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    let accepted = metrics.add_metadata(&"\u{1}".repeat(60_000), 1);
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| metrics.flush()));
    if accepted.is_ok() {
        assert!(
            flushed.is_ok(),
            "add_metadata accepted a key whose document passes 256 KB"
        );
        let documents = valid_documents(&sink);
        assert!(
            documents
                .iter()
                .any(|document| document.get("\u{1}".repeat(60_000)).is_some()),
            "add_metadata accepted the key (a 192 KB context, 360 KB escaped), and the document \
             was written without it: the metadata is lost, no DocumentTooLarge"
        );
    }
}

/// Dimension values of `"` (printable ASCII, valid): each takes 2 bytes in the document, 1 in
/// the count. add_dimensions accepts them; the document passes 256 KB.
#[test]
fn dimension_value_escapes_are_counted() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    let quotes = "\"".repeat(1024);
    let mut accepted = Ok(());
    for set in 0..9 {
        let names: Vec<String> = (0..20).map(|index| format!("s{set}d{index}")).collect();
        accepted = accepted
            .and(metrics.add_dimensions(names.iter().map(|name| (name.as_str(), quotes.as_str()))));
    }
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| metrics.flush()));
    if accepted.is_ok() {
        assert!(
            flushed.is_ok(),
            "add_dimensions accepted values whose document passes 256 KB"
        );
        valid_documents(&sink);
    }
}
