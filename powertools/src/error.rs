//! One error type for every utility, so that `?` works across them.

use powertools_core::error_chain;

/// Any powertools-rs utility's error, so that one function can use `?` on all of them, and
/// convert the result into `lambda_runtime::Error` with `?` again.
///
/// Each variant holds the utility's own error unchanged: [`Display`](std::fmt::Display) is that
/// error's message and [`source`](std::error::Error::source) its source, and matching on the
/// variant gives it back. The variants of the utilities a feature leaves out are left out too.
///
/// ```
/// use powertools::logging::append_key;
/// use powertools::metrics::{Unit, add_metric};
///
/// // Outside an invocation both calls fail; `?` converts either error.
/// fn record_order() -> Result<(), powertools::Error> {
///     append_key("order_id", "o-1001")?;
///     add_metric("OrdersPlaced", 1.0, Unit::Count)?;
///     Ok(())
/// }
///
/// fn handler() -> Result<(), lambda_runtime::Error> {
///     record_order()?;
///     Ok(())
/// }
///
/// let error = handler().unwrap_err();
/// assert!(error.to_string().starts_with("no current invocation"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed Powertools environment variable, or a JMESPath expression that does not
    /// compile or failed.
    #[error(transparent)]
    Core(#[from] powertools_core::Error),
    /// The logger's settings, or a log key.
    #[cfg(feature = "logging")]
    #[cfg_attr(docsrs, doc(cfg(feature = "logging")))]
    #[error(transparent)]
    Logging(#[from] powertools_logging::Error),
    /// The metrics' settings (a missing `POWERTOOLS_METRICS_NAMESPACE`, for example), or a
    /// metric, dimension or metadata value CloudWatch would refuse.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[error(transparent)]
    Metrics(#[from] powertools_metrics::Error),
    /// The tracer's settings.
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    #[error(transparent)]
    Tracing(#[from] powertools_tracing::Error),
    /// An idempotency error that holds no handler error (the store's, the configuration's, a
    /// duplicate in progress, …).
    #[cfg(feature = "idempotency")]
    #[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
    #[error(transparent)]
    Idempotency(#[from] powertools_idempotency::Error<std::convert::Infallible>),
    /// A batch whose records all failed.
    #[cfg(feature = "batch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "batch")))]
    #[error(transparent)]
    Batch(#[from] powertools_batch::Error),
    /// The AWS SDK's shared config does not load from the environment
    /// ([`load_aws_config`](crate::load_aws_config)): `aws_config`'s message, which names the
    /// setting (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`, or the profile's).
    #[cfg(feature = "dynamodb")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
    #[error("the AWS SDK's configuration from the environment is invalid: {message}")]
    AwsConfig {
        /// `aws_config`'s message.
        message: String,
    },
    /// A global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadyInstalled,
    /// [`run`](crate::run) or `run_concurrent` was called where the
    /// variables Lambda sets for the runtime are missing or malformed: outside Lambda, or under
    /// an emulator that leaves some out. `lambda_runtime` alone panics there.
    #[error(
        "{problems}: the Lambda runtime reads these variables, which Lambda sets; outside Lambda, \
         start the function under an emulator (`cargo lambda watch`) or call the handler's \
         service directly"
    )]
    LambdaEnvironment {
        /// The variables that are missing or malformed, in the order the runtime reads them.
        variables: Vec<&'static str>,
        /// What is wrong with each of them, in one sentence.
        problems: String,
    },
}

impl Error {
    /// A stable identifier of the error kind: the utility's own
    /// (`MetricUnitError`, `IdempotencyAlreadyInProgressError`, …).
    ///
    /// ```
    /// let error = powertools::Error::from(powertools::logging::Error::NoCurrentInvocation);
    /// assert_eq!(error.error_type(), "NoCurrentInvocation");
    /// ```
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Core(error) => error.error_type(),
            #[cfg(feature = "logging")]
            Error::Logging(error) => error.error_type(),
            #[cfg(feature = "metrics")]
            Error::Metrics(error) => error.error_type(),
            #[cfg(feature = "tracing")]
            Error::Tracing(error) => error.error_type(),
            #[cfg(feature = "idempotency")]
            Error::Idempotency(error) => error.error_type(),
            #[cfg(feature = "batch")]
            Error::Batch(error) => error.error_type(),
            #[cfg(feature = "dynamodb")]
            Error::AwsConfig { .. } => "AwsConfigError",
            Error::SubscriberAlreadyInstalled => "SubscriberAlreadyInstalled",
            Error::LambdaEnvironment { .. } => "LambdaEnvironmentError",
        }
    }
}

/// The `errorType` Lambda reports is the utility's own ([`Error::error_type`]).
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// What a function prints when it cannot start: `Error: <message>`, then each cause the message
/// does not already include, one per line: at most 32 of them, and a last line that says so when
/// the chain goes on (a chain that loops is described once). The messages of this project's
/// errors name the setting and the fix; `main`'s default `Debug` output
/// (`Error: Metrics(MissingNamespace)`) would hide them.
///
/// ```
/// use std::process::ExitCode;
///
/// async fn start() -> Result<(), lambda_runtime::Error> {
///     Err("IDEMPOTENCY_TABLE is not set: set it to the idempotency table's name".into())
/// }
///
/// # async fn example() -> ExitCode {
/// match start().await {
///     Ok(()) => ExitCode::SUCCESS,
///     Err(error) => {
///         eprintln!("{}", powertools::error_report(&*error));
///         ExitCode::FAILURE
///     }
/// }
/// # }
/// # let error: lambda_runtime::Error = "no table".into();
/// # assert_eq!(powertools::error_report(&*error), "Error: no table");
/// ```
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("Error: {}", error_chain::display_text(&error));
    // Bounded: an error that is its own source would otherwise be followed forever.
    for cause in error_chain::sources(error) {
        let cause_text = error_chain::display_text(&cause);
        if !error_chain::holds_part(&text, &cause_text) {
            text.push_str("\n  caused by: ");
            text.push_str(&cause_text);
        }
    }
    // Said, not silently dropped: the rest of a chain deeper than the bound.
    if error_chain::is_cut_short(error) {
        text.push_str(&format!(
            "\n  caused by: … (more causes: the report stops after {})",
            error_chain::MAX_SOURCES
        ));
    }
    text
}
