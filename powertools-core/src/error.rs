/// Errors shared by every powertools-rs crate.
///
/// Each variant names the environment variable at fault, so a misconfigured function fails with a
/// message that says what to fix instead of panicking or silently falling back to a default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is set to a value that cannot be parsed.
    #[error(
        "environment variable {name} has the invalid value {}: expected {expected}",
        crate::env::shown(value)
    )]
    InvalidEnvVar {
        /// The variable's name, for example `POWERTOOLS_DEV`.
        name: String,
        /// The value found in the environment (the message shows it quoted, cut after
        /// [`MAX_SHOWN_CHARS`](crate::env::MAX_SHOWN_CHARS) characters: a value can be
        /// megabytes).
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// An environment variable holds bytes that are not valid UTF-8.
    #[error("environment variable {name} is not valid UTF-8: {value}")]
    NonUnicodeEnvVar {
        /// The variable's name.
        name: String,
        /// The value as the message shows it, so that the user can see which bytes are wrong:
        /// quoted, its text escaped as Rust's `Debug` writes a string, each byte that is not
        /// UTF-8 as `\xNN`, cut after [`MAX_SHOWN_CHARS`](crate::env::MAX_SHOWN_CHARS)
        /// characters (then followed by `…`).
        value: String,
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
    /// `powertools_base64_gzip` would have produced more than the expression's decompression
    /// limit (`JmesPath::max_decompressed_size`, by default
    /// `jmespath::DEFAULT_MAX_DECOMPRESSED_SIZE`): a gzip bomb, or a legitimate payload larger
    /// than the limit, which `JmesPath::with_max_decompressed_size` raises. Decompression stopped
    /// at the limit: nothing larger was allocated.
    #[error(
        "JMESPath expression `{expression}` failed: powertools_base64_gzip would decompress more \
         than the limit of {limit} bytes per search (raise it with \
         `JmesPath::with_max_decompressed_size`)"
    )]
    #[non_exhaustive]
    DecompressedSizeExceeded {
        /// The expression, as written.
        expression: String,
        /// The limit, in bytes, on what one search may decompress.
        limit: usize,
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
            Error::DecompressedSizeExceeded { .. } => "JmesPathDecompressedSizeExceeded",
        }
    }
}

crate::diagnostic_from_error_type!(Error);
