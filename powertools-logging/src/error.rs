/// Everything that can be wrong with the logging configuration or a business key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not one of the level names.
    #[error(
        "invalid log level {}: expected {}",
        powertools_core::env::shown(level),
        powertools_core::env::LOG_LEVEL_NAMES
    )]
    InvalidLevel {
        /// The level given (the message quotes its start: it can be long).
        level: String,
    },
    /// A sampling rate outside 0.0..=1.0.
    #[error("invalid debug sampling rate {rate}: expected a number from 0.0 to 1.0")]
    InvalidSampleRate {
        /// The rate given.
        rate: f64,
    },
    /// A log buffer of zero bytes, or a buffer level above `WARN`.
    #[error("invalid log buffer settings: {reason}")]
    InvalidBuffer {
        /// What is wrong.
        reason: &'static str,
    },
    /// A line limit too small to hold the standard keys of a line.
    #[error(
        "invalid line limit {bytes} bytes: expected at least {min}",
        min = crate::MIN_MAX_LINE_BYTES
    )]
    InvalidLineLimit {
        /// The limit given.
        bytes: usize,
    },
    /// A key's value could not be serialized as JSON.
    #[error(
        "the value of key {} cannot be written as JSON: {source}",
        powertools_core::env::shown(key)
    )]
    Serialization {
        /// The key (the message quotes its start: it can be long).
        key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The key is one the log line itself writes (`level`, `message`, `timestamp`, …), or one
    /// of the failure line's (`exception_name`, `exception`, `stack_trace`).
    #[error("{key:?} is a reserved key of the log line and cannot be appended")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// The call was made outside an invocation of a [`LoggingLayer`](crate::LoggingLayer) (and
    /// outside a [`key_scope`](crate::key_scope)), so there is no invocation to add a key to.
    #[error(
        "no current invocation: call this inside a handler wrapped by LoggingLayer or a key_scope, or use a persistent key"
    )]
    NoCurrentInvocation,
    /// A global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadyInstalled,
    /// A malformed environment variable, or a correlation id path that is not valid JMESPath.
    #[error(transparent)]
    Config(#[from] powertools_core::Error),
}

impl Error {
    /// A stable identifier of the error kind.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidLevel { .. } => "InvalidLogLevel",
            Error::InvalidSampleRate { .. } => "InvalidSampleRate",
            Error::InvalidBuffer { .. } => "InvalidLogBufferConfig",
            Error::InvalidLineLimit { .. } => "InvalidLogLineLimit",
            Error::Serialization { .. } => "LogKeySerializationError",
            Error::ReservedKey { .. } => "ReservedLogKey",
            Error::NoCurrentInvocation => "NoCurrentInvocation",
            Error::SubscriberAlreadyInstalled => "SubscriberAlreadyInstalled",
            Error::Config(error) => error.error_type(),
        }
    }
}

powertools_core::diagnostic_from_error_type!(Error);
