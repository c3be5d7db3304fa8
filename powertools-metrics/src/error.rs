use crate::{Resolution, Unit};

/// Everything that can be wrong with a metric, a dimension, the metadata or the configuration.
///
/// Every rule that would make CloudWatch drop a document silently is checked when the value is
/// added, so a bad value is refused with one of these instead of losing the whole document later.
/// [`error_type`](Error::error_type) gives the Powertools exception name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No namespace: set `POWERTOOLS_METRICS_NAMESPACE` or call
    /// [`namespace`](crate::MetricsLayerBuilder::namespace). Reported when the layer is built.
    #[error(
        "no metrics namespace: set POWERTOOLS_METRICS_NAMESPACE (it is unset or empty), or the namespace in code (the metrics builder's namespace(..), with the facade Powertools::builder().metrics(|metrics| metrics.namespace(..)))"
    )]
    MissingNamespace,
    /// The namespace breaks CloudWatch's rules.
    #[error(
        "invalid metrics namespace {}: {reason}",
        powertools_core::env::shown(namespace)
    )]
    InvalidNamespace {
        /// The namespace (the message quotes its start: it can be long).
        namespace: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Not one of the CloudWatch units.
    #[error(
        "invalid metric unit {}: expected one of the CloudWatch units: {}",
        powertools_core::env::shown(unit),
        crate::unit::unit_names()
    )]
    InvalidUnit {
        /// The unit given (the message quotes its start: it can be long).
        unit: String,
    },
    /// A storage resolution other than 60 or 1 second.
    #[error("invalid storage resolution {seconds}: expected 60 (standard) or 1 (high)")]
    InvalidResolution {
        /// The resolution given, in seconds.
        seconds: u64,
    },
    /// A metric name CloudWatch would refuse.
    #[error("invalid metric name {}: {reason}", powertools_core::env::shown(name))]
    InvalidMetricName {
        /// The name (the message quotes its start: it can be long).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// NaN, an infinity, or a number outside CloudWatch's range (±2^360).
    #[error("invalid value {value} for metric {name:?}: {reason}")]
    InvalidValue {
        /// The metric name.
        name: String,
        /// The value.
        value: f64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The metric was already added in this document with another unit.
    #[error(
        "metric {name:?} was already added with unit {existing}, not {requested}: use one unit per metric"
    )]
    UnitConflict {
        /// The metric name.
        name: String,
        /// The unit it has.
        existing: Unit,
        /// The unit now asked for.
        requested: Unit,
    },
    /// The metric was already added in this document with another storage resolution.
    #[error(
        "metric {name:?} was already added with storage resolution {}, not {}",
        existing.described(),
        requested.described()
    )]
    ResolutionConflict {
        /// The metric name.
        name: String,
        /// The resolution it has.
        existing: Resolution,
        /// The resolution now asked for.
        requested: Resolution,
    },
    /// A dimension name or value CloudWatch would refuse.
    #[error(
        "invalid dimension {} (value {}): {reason}",
        powertools_core::env::shown(name),
        powertools_core::env::shown(value)
    )]
    InvalidDimension {
        /// The dimension name (the message quotes its start: it can be long).
        name: String,
        /// The dimension value (the message quotes its start: it can be long).
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// More dimensions in one dimension set than CloudWatch accepts.
    #[error(
        "too many dimensions: cannot add {name:?}: CloudWatch takes at most {} dimensions in a \
         set, `service` among the main set's when there is one",
        .limit + 1
    )]
    TooManyDimensions {
        /// The dimension that went past the limit.
        name: String,
        /// The limit on user dimensions (29).
        limit: usize,
    },
    /// The name is already used at the top level of the document by something else (a metric
    /// named like a dimension, metadata named like a metric, …).
    #[error("{name:?} is already used as {used_as} in this document")]
    NameCollision {
        /// The name.
        name: String,
        /// What uses it: `a metric`, `a dimension`, `metadata` or `the EMF envelope`.
        used_as: &'static str,
    },
    /// A timestamp CloudWatch would refuse (more than 14 days in the past or 2 hours in the
    /// future).
    #[error("invalid metrics timestamp: {reason}")]
    InvalidTimestamp {
        /// Why it is refused.
        reason: &'static str,
    },
    /// Metadata (with the dimensions) that would make a document larger than a CloudWatch Logs
    /// event can be, so that no document holding it could be written whole.
    #[error(
        "{} would make this invocation's documents about {size} bytes of dimensions and \
         metadata, over the {limit}-byte budget that keeps each document under CloudWatch Logs' \
         256 KB event limit",
        powertools_core::env::shown(key)
    )]
    DocumentTooLarge {
        /// The metadata key that was refused (the message quotes its start: it can be long).
        key: String,
        /// The size the dimensions and metadata would have had, in bytes.
        size: usize,
        /// The budget, in bytes.
        limit: usize,
    },
    /// Metadata nested deeper than JSON readers take within a document: serde_json reads 127
    /// levels, the document's own object among them, so a value may nest `limit` (126).
    #[error(
        "metadata {} nests deeper than {limit} levels: the document would be deeper than JSON \
         readers take (serde_json stops at 128), and its metrics lost with it",
        powertools_core::env::shown(key)
    )]
    MetadataTooDeep {
        /// The metadata key that was refused (the message quotes its start: it can be long).
        key: String,
        /// The deepest a value may nest.
        limit: usize,
    },
    /// A flush found no metric and `raise_on_empty_metrics` is set.
    #[error(
        "no metrics to publish: none were added since the last flush (a handler's own flush \
         publishes what it added) and raise_on_empty_metrics is set"
    )]
    EmptyMetrics,
    /// The call was made outside an invocation of a [`MetricsLayer`](crate::MetricsLayer) (or a
    /// [`Metrics::scope`](crate::Metrics::scope)), so there is no document to add to.
    #[error(
        "no current invocation: call this inside a handler wrapped by MetricsLayer, or use a Metrics handle"
    )]
    NoCurrentInvocation,
    /// [`EmfRecorder::install`](crate::EmfRecorder::install) found another global recorder
    /// for the `metrics` facade.
    #[error("a global recorder for the `metrics` facade is already installed")]
    RecorderAlreadyInstalled,
    /// A value read from an environment variable breaks a rule: the variable, and what is wrong
    /// with its value (the wrapped error).
    #[error("environment variable {variable}: {source}")]
    FromEnv {
        /// The variable, for example `POWERTOOLS_METRICS_NAMESPACE`.
        variable: &'static str,
        /// What is wrong with its value.
        #[source]
        source: Box<Error>,
    },
    /// A malformed Powertools environment variable.
    #[error(transparent)]
    Config(#[from] powertools_core::Error),
}

impl Error {
    /// The stable identifier of the error kind: the Powertools exception name where Powertools
    /// has one.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidUnit { .. } | Error::UnitConflict { .. } => "MetricUnitError",
            Error::InvalidResolution { .. } | Error::ResolutionConflict { .. } => {
                "MetricResolutionError"
            }
            Error::InvalidValue { .. } => "MetricValueError",
            // As Powertools for Python 3.37 names a metric name it refuses.
            Error::InvalidMetricName { .. } => "MetricNameError",
            Error::MissingNamespace
            | Error::InvalidNamespace { .. }
            | Error::InvalidDimension { .. }
            | Error::TooManyDimensions { .. }
            | Error::NameCollision { .. }
            | Error::InvalidTimestamp { .. }
            | Error::DocumentTooLarge { .. }
            | Error::MetadataTooDeep { .. }
            | Error::EmptyMetrics => "SchemaValidationError",
            Error::NoCurrentInvocation => "NoCurrentInvocation",
            Error::RecorderAlreadyInstalled => "RecorderAlreadyInstalled",
            Error::Config(error) => error.error_type(),
            Error::FromEnv { source, .. } => source.error_type(),
        }
    }
}

powertools_core::diagnostic_from_error_type!(Error);
