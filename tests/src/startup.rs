//! Start-up checks every example runs on its own binary: a bad setting stops the function at
//! once with the library's message (which names the setting and the fix) instead of a Debug
//! dump, and a non-zero exit status.

use std::process::Command;

/// Runs `binary` with only `env` set; its exit code and what it wrote on stderr.
///
/// # Panics
/// When the binary cannot be started.
pub fn start(binary: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(binary)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|error| panic!("{binary} runs: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// Checks the three start-up failures of an example: no metrics namespace, an invalid log level,
/// and its own required variable `table_variable` unset.
///
/// # Panics
/// When a failure is reported as Debug, without its fix, or with exit status 0.
pub fn assert_bad_settings_are_named(binary: &str, table_variable: &str) {
    let (code, stderr) = start(binary, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: no metrics namespace: set POWERTOOLS_METRICS_NAMESPACE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("MissingNamespace"),
        "no Debug output: {stderr}"
    );

    let (code, stderr) = start(
        binary,
        &[
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_LOG_LEVEL", "verbose"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"POWERTOOLS_LOG_LEVEL has the invalid value "verbose": expected TRACE, DEBUG, INFO, WARN or ERROR"#),
        "{stderr}"
    );
    assert!(
        !stderr.contains("InvalidLevel"),
        "no Debug output: {stderr}"
    );

    // Unset, or set to nothing: the same message.
    for env in [
        vec![("POWERTOOLS_METRICS_NAMESPACE", "Bakery")],
        vec![
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            (table_variable, ""),
        ],
    ] {
        let (code, stderr) = start(binary, &env);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("Error: {table_variable} is not set")),
            "{stderr}"
        );
    }
    let (_, stderr) = start(binary, &[("POWERTOOLS_METRICS_NAMESPACE", "Bakery")]);
    assert!(
        stderr.contains("template.yaml"),
        "says where it comes from: {stderr}"
    );
}
