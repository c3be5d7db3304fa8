//! The README says what `annotate` refuses: every key of
//! `LAYER_KEYS` (src/annotations.rs) that no listed group covers is named there (a review found
//! five missing).

#[test]
fn readme_names_every_key_annotate_refuses() {
    let source = include_str!("../src/annotations.rs");
    let readme = include_str!("../README.md");
    let block = source
        .split("const LAYER_KEYS: &[&str] = &[")
        .nth(1)
        .and_then(|rest| rest.split("];").next())
        .expect("LAYER_KEYS");
    // The README's paragraph on annotate.
    let paragraph = readme
        .split("`annotate` refuses")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the paragraph");
    let groups = ["faas.", "cloud.", "http.", "service.", "telemetry."];
    let missing: Vec<&str> = block
        .split(',')
        .map(|entry| entry.trim().trim_matches('"'))
        .filter(|key| key.contains('.'))
        .filter(|key| !groups.iter().any(|group| key.starts_with(group)))
        .filter(|key| !paragraph.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "refused by annotate, not in the README: {missing:?}"
    );
}
