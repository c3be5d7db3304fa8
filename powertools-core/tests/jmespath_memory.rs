//! What one search of `powertools_json(powertools_base64_gzip(…))` may make a function use, as
//! peak resident memory (VmHWM, reset through `/proc/self/clear_refs`; Linux): a test binary of
//! its own, one test, so that nothing else allocates meanwhile.
#![cfg(all(feature = "jmespath", target_os = "linux"))]
#![allow(clippy::unwrap_used)]

use std::io::Write as _;

use base64::Engine as _;
use powertools_core::jmespath::{DEFAULT_MAX_DECOMPRESSED_SIZE, JmesPath};
use serde_json::{Value, json};

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How much the peak resident memory grows while `path` searches `event`, in MiB, and what the
/// search gave.
fn peak_growth_mib(path: &JmesPath, event: &Value) -> (usize, Result<Value, String>) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let found = path.search(event).map_err(|error| error.to_string());
    ((status_kib("VmHWM:").saturating_sub(before)) / 1024, found)
}

fn gzip_base64(text: &str) -> String {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
}

#[test]
fn a_search_fits_in_the_smallest_function_whatever_the_event() {
    let path =
        JmesPath::new("length(powertools_json(powertools_base64_gzip(awslogs.data)))").unwrap();

    // A 14 KB event that decompresses to just under the limit, five million values: refused
    // before it is parsed (it grew the memory by 449 MiB)
    let mut zeros = String::from("[0");
    while zeros.len() < DEFAULT_MAX_DECOMPRESSED_SIZE - 4 {
        zeros.push_str(",0");
    }
    zeros.push(']');
    let event = json!({ "awslogs": { "data": gzip_base64(&zeros) } });
    drop(zeros);
    let (peak, found) = peak_growth_mib(&path, &event);
    assert!(
        found
            .as_ref()
            .is_err_and(|error| error.contains("JSON values")),
        "{found:?}"
    );
    assert!(peak < 64, "refusing it took {peak} MiB");

    // The most values accepted, each a string of its own: parsed within what a 128 MB function
    // has to spare
    let strings = format!("[{}\"x\"]", "\"x\",".repeat(499_998));
    let event = json!({ "awslogs": { "data": gzip_base64(&strings) } });
    drop(strings);
    let (peak, found) = peak_growth_mib(&path, &event);
    assert_eq!(found, Ok(json!(499_999)));
    assert!(peak < 80, "the parse took {peak} MiB");
}
