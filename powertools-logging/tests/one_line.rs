//! Whatever an event holds, it is written as exactly one line of valid JSON, within the line
//! limit (property tests).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use powertools_core::env::Env;
use powertools_logging::{Logger, MemoryLogs};
use proptest::prelude::*;
use serde_json::Value;

struct FailingDebug;

impl fmt::Debug for FailingDebug {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}

/// A value whose only use is its derived `Debug` output, quotes and all.
#[derive(Debug)]
struct Weird {
    #[allow(dead_code)] // read through Debug
    text: String,
}

fn logger(logs: &MemoryLogs) -> Logger {
    Logger::builder()
        .service("orders")
        .writer(logs.clone())
        .env(Env::empty())
        .build()
        .expect("valid settings")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_event_is_one_line_of_valid_json(
        message in any::<String>(),
        text in any::<String>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        number in any::<i64>(),
        float in any::<f64>(),
        flag in any::<bool>(),
        long in "[\\x00-\\x7f]{0,5000}",
    ) {
        let logs = MemoryLogs::new();
        let logger = logger(&logs);
        tracing::subscriber::with_default(logger.subscriber(), || {
            tracing::info!(text = %text, number, float, flag, "{message}");
            tracing::warn!(debug = ?Weird { text: text.clone() }, os = ?OsStr::from_bytes(&bytes), "{}", long);
            tracing::error!(broken = ?FailingDebug, "a Debug impl that fails");
        });
        let contents = logs.contents();
        let lines: Vec<&str> = contents.split_terminator('\n').collect();
        prop_assert_eq!(lines.len(), 3, "{}", contents);
        for line in &lines {
            let parsed: Value = serde_json::from_str(line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
            prop_assert!(parsed.is_object());
        }
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        prop_assert_eq!(first["message"].as_str(), Some(message.as_str()));
        // A `%` value is written as text, never opened as JSON: one that names a redacted key
        // (`cvV`, `my-token`) is masked whole, by design (fail closed).
        let folded = text.to_ascii_lowercase().replace('-', "_");
        let names_a_redacted_key = powertools_logging::DEFAULT_REDACTED_KEYS
            .iter()
            .any(|key| folded.contains(key));
        let expected = if names_a_redacted_key { powertools_logging::REDACTED } else { text.as_str() };
        prop_assert_eq!(first["text"].as_str(), Some(expected));
        prop_assert_eq!(first["number"].as_i64(), Some(number));
        prop_assert_eq!(first["flag"].as_bool(), Some(flag));
        if float.is_finite() {
            // serde_json's parser (without float_roundtrip) may differ in the last bits, which
            // for a subnormal number is more than 1e-15 of it.
            let written = first["float"].as_f64().unwrap();
            let tolerance = (float.abs() * 1e-15).max(1e-320);
            prop_assert!((written - float).abs() <= tolerance, "{} vs {}", written, float);
        } else {
            prop_assert!(first["float"].is_string());
        }
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        prop_assert_eq!(second["message"].as_str(), Some(long.as_str()));
        let third: Value = serde_json::from_str(lines[2]).unwrap();
        prop_assert!(third["broken"].as_str().unwrap().contains("failed"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_line_fits_the_limit_and_stays_valid_json(
        limit in 1024_usize..12_000,
        message in any::<String>(),
        text in any::<String>(),
        repeat in 0_usize..3_000,
        extra_keys in 0_usize..400,
        items in proptest::collection::vec(any::<String>(), 0..40),
        escapes in "[\\x00-\\x1f\"\\\\é🥐]{0,2000}",
    ) {
        let logs = MemoryLogs::new();
        let logger = Logger::builder()
            .service("orders")
            .writer(logs.clone())
            .env(Env::empty())
            .max_line_bytes(limit)
            .persistent_key("document", serde_json::json!({"items": items, "note": escapes}))
            .build()
            .expect("valid settings");
        let long = text.repeat(repeat);
        tracing::subscriber::with_default(logger.subscriber(), || {
            let span = tracing::info_span!("batch", long = long.as_str());
            let _entered = span.enter();
            tracing::info!(escapes = escapes.as_str(), "{message}");
            for index in 0..extra_keys {
                logger.append_persistent_key(&format!("key_{index}"), index).expect("a plain key");
            }
            tracing::error!(text = text.as_str(), "{}", long);
        });
        let contents = logs.contents();
        let lines: Vec<&str> = contents.split_terminator('\n').collect();
        prop_assert_eq!(lines.len(), 2, "{}", contents);
        for line in &lines {
            prop_assert!(line.len() < limit, "{} bytes over {}", line.len(), limit);
            let parsed: Value = serde_json::from_str(line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
            prop_assert!(parsed["level"].is_string(), "{}", line);
            prop_assert!(parsed["timestamp"].is_string(), "{}", line);
        }
    }
}
