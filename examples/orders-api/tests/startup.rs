//! Start-up: a bad setting stops the function at once, with the library's message (which names
//! the setting and the fix) instead of a Debug dump, and a non-zero exit status.

use std::process::Command;

/// Runs the function binary with only `env` set; its exit code and what it wrote on stderr.
fn start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_orders-api"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn a_missing_metrics_namespace_is_named_with_its_fix() {
    let (code, stderr) = start(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: no metrics namespace: set POWERTOOLS_METRICS_NAMESPACE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("MissingNamespace"),
        "no Debug output: {stderr}"
    );
}

#[test]
fn an_invalid_log_level_says_which_levels_exist() {
    let (code, stderr) = start(&[
        ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
        ("POWERTOOLS_LOG_LEVEL", "verbose"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(r#""verbose": expected TRACE, DEBUG, INFO, WARN or ERROR"#),
        "{stderr}"
    );
    assert!(
        !stderr.contains("InvalidLevel"),
        "no Debug output: {stderr}"
    );
}

#[test]
fn a_missing_table_name_is_named_with_its_fix() {
    let (code, stderr) = start(&[("POWERTOOLS_METRICS_NAMESPACE", "Bakery")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: ORDERS_TABLE is not set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("template.yaml"),
        "says where it comes from: {stderr}"
    );
}
