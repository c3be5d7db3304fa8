/// Errors shared by every powertools-rs crate.
///
/// Each variant names the environment variable at fault, so a misconfigured function fails with a
/// message that says what to fix instead of panicking or silently falling back to a default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is set to a value that cannot be parsed.
    #[error("environment variable {name} has the invalid value {value:?}: expected {expected}")]
    InvalidEnvVar {
        /// The variable's name, for example `POWERTOOLS_DEV`.
        name: String,
        /// The value found in the environment.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// An environment variable holds bytes that are not valid UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NonUnicodeEnvVar {
        /// The variable's name.
        name: String,
    },
    /// A JMESPath expression does not compile.
    #[error("invalid JMESPath expression `{expression}`: {reason}")]
    InvalidJmesPath {
        /// The expression, as written.
        expression: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A JMESPath expression failed on the data it searched (a function given the wrong type,
    /// text that is not JSON for `powertools_json`, …).
    #[error("JMESPath expression `{expression}` failed: {reason}")]
    JmesPathFailed {
        /// The expression, as written.
        expression: String,
        /// Why it failed.
        reason: String,
    },
}

impl Error {
    /// A stable identifier of the error kind, used as the Lambda `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidEnvVar { .. } => "InvalidEnvironmentVariable",
            Error::NonUnicodeEnvVar { .. } => "NonUnicodeEnvironmentVariable",
            Error::InvalidJmesPath { .. } => "InvalidJmesPathExpression",
            Error::JmesPathFailed { .. } => "JmesPathExpressionFailed",
        }
    }
}

crate::diagnostic_from_error_type!(Error);
