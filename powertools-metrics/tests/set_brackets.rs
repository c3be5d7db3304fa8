//! The repeated context's count includes each dimension set's `[`, `]` and the comma between
//! sets: accepted dimensions stay within the documented 192 KB (found by a review).

mod support;

use powertools_metrics::{Error, Unit};
use powertools_tests::emf::CheckedSink;
use support::{builder, valid_documents};

#[test]
fn accepted_dimension_sets_stay_within_192_kb_in_the_document() {
    let sink = CheckedSink::new();
    let layer = builder(&sink).build().unwrap();
    let metrics = layer.new_metrics();
    let names: Vec<String> = (0x21u8..0x7f)
        .filter(|b| *b != b':')
        .map(|b| (b as char).to_string())
        .collect();
    let mut accepted = 0usize;
    let mut refused = false;
    'outer: for i in 0..names.len() {
        for j in i + 1..names.len() {
            for k in j + 1..names.len() {
                let set = [
                    (names[i].as_str(), "v"),
                    (names[j].as_str(), "v"),
                    (names[k].as_str(), "v"),
                ];
                match metrics.add_dimensions(set) {
                    Ok(()) => accepted += 1,
                    Err(Error::DocumentTooLarge { .. }) => {
                        refused = true;
                        break 'outer;
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        }
    }
    assert!(refused, "the cap was reached");
    metrics.add_metric("Orders", 1.0, Unit::Count).unwrap();
    metrics.flush().unwrap();
    let lines = sink.lines();
    let documents = valid_documents(&sink);
    let document = &documents[0];
    let sets =
        serde_json::to_string(&document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]).unwrap();
    let mut members = 0;
    for (key, value) in document.as_object().unwrap() {
        if key != "_aws" && key != "Orders" {
            members += 1
                + serde_json::to_string(key).unwrap().len()
                + 1
                + serde_json::to_string(value).unwrap().len();
        }
    }
    let context = sets.len() - 2 + members;
    eprintln!(
        "accepted {accepted} sets; line {} bytes; context in the document {context} bytes",
        lines[0].len()
    );
    assert!(
        context <= 192 * 1024,
        "every add_dimensions was accepted, yet the dimensions take {context} bytes of the \
         document, past the 192 KB (196608) the count keeps them under"
    );
}
