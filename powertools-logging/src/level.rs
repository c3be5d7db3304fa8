//! Log levels by their Lambda names, and which setting wins.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A log level, written as Lambda's Advanced Logging Controls name it (`"level":"WARN"`), so that
/// Lambda can filter the lines of a function in a custom runtime.
///
/// Parses the Lambda names (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`) and the
/// Powertools and Python spellings (`WARNING`, `CRITICAL`), in any case. `FATAL` and `CRITICAL`
/// are `ERROR`: `tracing` has no level above it.
///
/// ```
/// use powertools_logging::Level;
/// assert_eq!("warning".parse::<Level>()?, Level::Warn);
/// assert_eq!("FATAL".parse::<Level>()?, Level::Error);
/// assert_eq!(Level::Warn.as_str(), "WARN");
/// # Ok::<(), powertools_logging::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `TRACE`, the most verbose.
    Trace,
    /// `DEBUG`.
    Debug,
    /// `INFO`, the default.
    Info,
    /// `WARN`.
    Warn,
    /// `ERROR` (also `FATAL` and `CRITICAL`).
    Error,
}

impl Level {
    /// The Lambda name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    pub(crate) fn of(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::TRACE => Level::Trace,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::ERROR => Level::Error,
        }
    }

    pub(crate) fn to_tracing(self) -> tracing::Level {
        match self {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Ok(Level::Trace),
            "DEBUG" => Ok(Level::Debug),
            "INFO" => Ok(Level::Info),
            "WARN" | "WARNING" => Ok(Level::Warn),
            "ERROR" | "FATAL" | "CRITICAL" => Ok(Level::Error),
            _ => Err(Error::InvalidLevel {
                level: text.to_owned(),
            }),
        }
    }
}

/// The level in force and, when the settings disagree, the warning to log about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) level: Level,
    pub(crate) conflict: Option<String>,
}

/// `AWS_LAMBDA_LOG_LEVEL` (Lambda's Advanced Logging Controls) wins, then the level set in code,
/// then `POWERTOOLS_LOG_LEVEL` (else the legacy `LOG_LEVEL`), then `INFO`, as in Powertools.
/// Lambda drops the lines below its own level anyway, so a more verbose level in code or
/// `POWERTOOLS_LOG_LEVEL` would only lose lines silently: say so.
pub(crate) fn resolve(alc: Option<Level>, code: Option<Level>, env: Option<Level>) -> Resolved {
    let requested = code.or(env);
    match (alc, requested) {
        (Some(alc), Some(requested)) if requested < alc => Resolved {
            level: alc,
            conflict: Some(format!(
                "Current log level ({requested}) does not match AWS Lambda Advanced Logging \
                 Controls minimum log level ({alc}). This can lead to data loss, consider \
                 adjusting them."
            )),
        },
        (Some(alc), _) => Resolved {
            level: alc,
            conflict: None,
        },
        (None, requested) => Resolved {
            level: requested.unwrap_or(Level::Info),
            conflict: None,
        },
    }
}

#[cfg(test)]
mod tests {
    /// A long level in code is quoted by its start, as one from a variable is (found by an
    /// attack from the docs, on the metrics namespace's message).
    #[test]
    fn a_long_level_is_quoted_by_its_start() {
        let message = "LOUD"
            .repeat(50_000)
            .parse::<Level>()
            .unwrap_err()
            .to_string();
        assert!(message.len() < 300, "{}", message.len());
        assert!(
            message.contains(&format!("\"{}\"…", "LOUD".repeat(16))),
            "{message}"
        );
        // So is the key of a value that does not serialize (a persistent key's error comes back
        // from `build`, and `init_failed` sends it to Lambda; found by a review).
        let deep = (0..200).fold(serde_json::json!(1), |value, _| {
            serde_json::Value::Array(vec![value])
        });
        let message = crate::key_value(&"k".repeat(200_000), deep)
            .unwrap_err()
            .to_string();
        assert!(message.len() < 400, "{}", message.len());
    }

    use super::*;

    #[test]
    fn every_spelling_parses_and_garbage_is_a_typed_error() {
        for (text, level) in [
            ("trace", Level::Trace),
            ("Debug", Level::Debug),
            (" INFO ", Level::Info),
            ("warn", Level::Warn),
            ("WARNING", Level::Warn),
            ("error", Level::Error),
            ("FATAL", Level::Error),
            ("critical", Level::Error),
        ] {
            assert_eq!(text.parse::<Level>().unwrap(), level, "{text}");
        }
        assert!(matches!(
            "verbose".parse::<Level>(),
            Err(Error::InvalidLevel { level }) if level == "verbose"
        ));
    }

    #[test]
    fn lambda_wins_then_code_then_powertools_then_info() {
        use Level::*;
        assert_eq!(resolve(None, None, None).level, Info);
        assert_eq!(resolve(None, None, Some(Debug)).level, Debug);
        assert_eq!(resolve(None, Some(Warn), Some(Debug)).level, Warn);
        assert_eq!(resolve(Some(Error), Some(Warn), Some(Debug)).level, Error);
        assert_eq!(resolve(Some(Debug), Some(Warn), None).level, Debug);
    }

    #[test]
    fn a_level_more_verbose_than_lambdas_is_warned_about() {
        let resolved = resolve(Some(Level::Warn), Some(Level::Debug), None);
        let warning = resolved.conflict.unwrap();
        assert!(
            warning.contains("(DEBUG)") && warning.contains("(WARN)"),
            "{warning}"
        );
        assert!(
            resolve(Some(Level::Debug), Some(Level::Warn), None)
                .conflict
                .is_none(),
            "a stricter level loses nothing"
        );
    }
}
