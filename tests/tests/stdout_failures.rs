//! A function whose stdout fails (here `/dev/full`) loses its log lines and EMF documents, but
//! not unseen: the first is said on stderr with the error, and all are counted.

use std::process::{Command, Stdio};

#[test]
fn lines_that_cannot_reach_stdout_are_said_once_on_stderr_and_counted() {
    // Given the default sinks' stdout on a device where every write fails with ENOSPC
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");

    // When a function writes two log lines and two EMF documents
    let output = Command::new(env!("CARGO_BIN_EXE_lines_to_stdout"))
        .env_remove("POWERTOOLS_LOG_LEVEL")
        .env_remove("AWS_LAMBDA_LOG_LEVEL")
        .env_remove("POWERTOOLS_DEV")
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .unwrap();

    // Then the first failure is said once, naming what was lost and why, and all four are counted
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("powertools:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("powertools: a log line could not be written to stdout (")
            && warnings[0].contains("os error 28"),
        "{stderr}"
    );
    assert!(stderr.contains("lost_lines=4"), "{stderr}");
}
