//! The offline demo (the README's first quick-start command) runs to the end, and every EMF
//! document it prints is valid.

use std::process::Command;

#[test]
fn the_demo_runs_offline_and_every_document_it_prints_is_valid() {
    let output = Command::new(env!("CARGO_BIN_EXE_orders-api"))
        .arg("demo")
        .env_clear()
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let documents =
        powertools_tests::emf::valid_documents(stdout.lines().filter(|line| line.starts_with('{')));
    assert!(
        documents.len() >= 3,
        "the demo prints its metrics: {stdout}"
    );
    for line in stdout.lines().filter(|line| line.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|error| panic!("a JSON line ({error}): {line}"));
    }
    // The banner tells logs, metrics and spans apart by how their lines start: each kind is
    // there, and every JSON line is one of them.
    for start in [r#"{"level""#, r#"{"_aws""#, r#"{"span""#] {
        assert!(
            stdout.lines().any(|line| line.starts_with(start)),
            "lines start with {start}, as the banner says: {stdout}"
        );
    }
    for line in stdout.lines().filter(|line| line.starts_with('{')) {
        assert!(
            [r#"{"level""#, r#"{"_aws""#, r#"{"span""#]
                .iter()
                .any(|start| line.starts_with(start)),
            "a line the banner does not describe: {line}"
        );
    }
}
