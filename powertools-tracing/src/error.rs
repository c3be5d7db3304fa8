/// What can go wrong when setting up tracing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OTLP exporter could not be built.
    #[error("the OTLP span exporter could not be built: {0}")]
    Exporter(String),
    /// Lambda refused the tracer's internal extension.
    #[error("the tracer's Lambda extension could not be registered: {0}")]
    Extension(String),
    /// A [`TracerBuilder`](crate::TracerBuilder) setting that cannot work.
    #[error("TracerBuilder::{setting}: {reason}")]
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// What is wrong with the value, and what to set instead.
        reason: &'static str,
    },
    /// A malformed environment variable.
    #[error(transparent)]
    Config(#[from] powertools_core::Error),
}

impl Error {
    /// A stable identifier of the error kind.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Exporter(_) => "TracingExporterError",
            Error::Extension(_) => "TracingExtensionError",
            Error::InvalidSetting { .. } => "TracingSettingError",
            Error::Config(error) => error.error_type(),
        }
    }
}

powertools_core::diagnostic_from_error_type!(Error);
