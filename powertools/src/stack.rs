//! The standard stack: logging, metrics and tracing from the environment, in the right order.

use std::fmt::Debug;

use lambda_runtime::Diagnostic;
use powertools_core::env::Env;
#[cfg(feature = "jmespath")]
use powertools_logging::CorrelationIdPath;
use powertools_logging::{
    CorrelationIdFn, Logger, LoggerBuilder, LoggingLayer, LoggingService, NoCorrelationId,
};
use powertools_metrics::{MetricsLayer, MetricsLayerBuilder, MetricsService};
use powertools_tracing::{Tracer, TracerBuilder, TracingLayer, TracingService};
use tower::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::Error;
use crate::describe::{boxed_error_diagnostic, error_diagnostic};

/// The logger, the metrics layer and the tracer of a function, configured together.
#[derive(Debug, Clone)]
pub struct Powertools {
    logger: Logger,
    metrics: MetricsLayer,
    tracer: Tracer,
}

impl Powertools {
    /// Everything from the Powertools and OpenTelemetry environment variables
    /// (`POWERTOOLS_SERVICE_NAME`, `POWERTOOLS_METRICS_NAMESPACE`, `POWERTOOLS_LOG_LEVEL`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, …).
    ///
    /// # Errors
    /// The first utility whose configuration is invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A builder, to set options in code or adjust one utility.
    pub fn builder() -> PowertoolsBuilder {
        PowertoolsBuilder::default()
    }

    /// The logger.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    /// The tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The metrics layer (its [`new_metrics`](MetricsLayer::new_metrics) gives a handle for work
    /// outside an invocation).
    pub fn metrics(&self) -> &MetricsLayer {
        &self.metrics
    }

    /// A subscriber with the JSON log layer and the OpenTelemetry layer on one registry.
    pub fn subscriber(&self) -> impl ::tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::registry()
            .with(self.logger.json_layer())
            .with(self.tracer.otel_layer())
    }

    /// Installs [`subscriber`](Self::subscriber) as the global `tracing` subscriber.
    ///
    /// # Errors
    /// [`Error::SubscriberAlreadyInstalled`] if one is.
    pub fn init(&self) -> Result<(), Error> {
        ::tracing::subscriber::set_global_default(self.subscriber())
            .map_err(|_| Error::SubscriberAlreadyInstalled)
    }

    /// Registers the tracer's internal Lambda extension, so that each invocation's spans are
    /// exported after its response is sent, not before (see
    /// [`Tracer::register_extension`](powertools_tracing::Tracer::register_extension)). Call it
    /// in `main`, after [`init`](Self::init) and before the runtime starts: an extension
    /// registers during the function's init. Outside Lambda, with tracing off, or with
    /// [`FlushMode::BeforeReturn`](powertools_tracing::FlushMode::BeforeReturn) it does nothing,
    /// and the stack exports before it returns, within the flush timeout.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), powertools::Error> {
    /// let powertools = powertools::Powertools::from_env()?;
    /// powertools.init()?;
    /// powertools.register_extension().await?;
    /// // then powertools::run_concurrent(ServiceBuilder::new().layer(powertools.layer())…)
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Tracing`] when Lambda refuses the registration (after the init phase), or a
    /// Runtime API (a local emulator) has no Extensions API; the stack then exports before
    /// returning, as without it, so a caller that logs the error and goes on still runs (`?`
    /// stops the start).
    pub async fn register_extension(&self) -> Result<(), Error> {
        self.tracer.register_extension().await?;
        Ok(())
    }

    /// The stack as one tower layer: logging, then metrics, then tracing (see the crate docs for
    /// why this order).
    pub fn layer(&self) -> PowertoolsLayer {
        // Under the stack the logging layer sees the metrics layer's `StackError<E>`, which it
        // cannot look into by itself: a handler's `Diagnostic` (as the batch utility's docs
        // show) and boxed error (`lambda_runtime::Error`: the type or variant its `Debug` begins
        // with, and its message chain) are named here as the logging layer alone names them.
        let logging = LoggingLayer::new(self.logger.clone())
            .error_diagnostic(|error: &StackError<Diagnostic>| match error {
                StackError::Handler(diagnostic) => diagnostic.clone(),
                other => stack_error_diagnostic(other),
            })
            .error_diagnostic(|error: &StackError<lambda_runtime::Error>| match error {
                StackError::Handler(boxed) => boxed_error_diagnostic(boxed),
                other => stack_error_diagnostic(other),
            });
        // The span names them as the line does (a boxed powertools-rs error by its Powertools
        // name, not by its variant).
        let tracing =
            TracingLayer::new(self.tracer.clone()).error_diagnostic(boxed_error_diagnostic);
        // The facade's and each utility's own error returned as it is (`Result<_,
        // powertools::metrics::Error>`): by its Powertools name and message, not its variant's
        // `Debug` text, in the line and the span alike.
        let (logging, tracing) = named_as_powertools::<Error>(logging, tracing);
        let (logging, tracing) = named_as_powertools::<powertools_core::Error>(logging, tracing);
        let (logging, tracing) = named_as_powertools::<powertools_logging::Error>(logging, tracing);
        let (logging, tracing) = named_as_powertools::<powertools_metrics::Error>(logging, tracing);
        let (logging, tracing) = named_as_powertools::<powertools_tracing::Error>(logging, tracing);
        #[cfg(feature = "batch")]
        let (logging, tracing) = named_as_powertools::<powertools_batch::Error>(logging, tracing);
        // And an I/O error returned as it is: `std::io::Error`, not its `Debug` (`Custom`).
        let (logging, tracing) = named_as_powertools::<std::io::Error>(logging, tracing);
        // A boxed error with the idempotency layer inside the stack (as the crate docs order
        // them), whose error wraps the handler's: named as without it, in the line and the span;
        // the idempotency layer's own errors as Lambda reports them.
        #[cfg(feature = "idempotency")]
        let (logging, tracing) = {
            use crate::idempotency::Error as IdempotencyError;
            let tracing =
                tracing.error_diagnostic(|error: &IdempotencyError<lambda_runtime::Error>| {
                    error.diagnostic_with(boxed_error_diagnostic)
                });
            let logging = logging.error_diagnostic(
                |error: &StackError<IdempotencyError<lambda_runtime::Error>>| match error {
                    StackError::Handler(error) => error.diagnostic_with(boxed_error_diagnostic),
                    other => stack_error_diagnostic(other),
                },
            );
            (logging, tracing)
        };
        PowertoolsLayer {
            logging,
            metrics: self.metrics.clone(),
            tracing,
        }
    }
}

/// Builds [`Powertools`]. [`service`](Self::service) and [`env`](Self::env) apply to every
/// utility; [`logger`](Self::logger), [`metrics`](Self::metrics) and [`tracer`](Self::tracer)
/// adjust one.
///
/// The logger leaves out `lambda_runtime`'s own line for a failed invocation
/// ([`LoggerBuilder::runtime_failure_lines`]): [`PowertoolsLayer`] puts logging outermost, so its
/// failure line, with the invocation's context, covers every failure of the handler. An event
/// that does not fit the handler's type never reaches the stack: under [`run`](crate::run) it
/// gets a failure line of its own (`InvalidEvent`), with the request id and the Lambda context
/// keys, but no appended key.
#[derive(Debug)]
#[must_use]
pub struct PowertoolsBuilder {
    logger: LoggerBuilder,
    metrics: MetricsLayerBuilder,
    tracer: TracerBuilder,
}

impl Default for PowertoolsBuilder {
    fn default() -> Self {
        PowertoolsBuilder {
            logger: LoggerBuilder::default().runtime_failure_lines(false),
            metrics: MetricsLayerBuilder::default(),
            tracer: TracerBuilder::default(),
        }
    }
}

impl PowertoolsBuilder {
    /// The service name of logs, metrics and traces (default: `POWERTOOLS_SERVICE_NAME`).
    pub fn service(self, service: impl Into<String>) -> Self {
        let service = service.into();
        PowertoolsBuilder {
            logger: self.logger.service(service.clone()),
            metrics: self.metrics.service(service.clone()),
            tracer: self.tracer.service(service),
        }
    }

    /// Reads unset options from `env` instead of the process environment (for tests). The cold
    /// start is the process's, not an option: it follows `AWS_LAMBDA_INITIALIZATION_TYPE` in the
    /// process environment whatever `env` says (decide it per invocation with
    /// `TestContext::with_cold_start`).
    pub fn env(self, env: Env) -> Self {
        PowertoolsBuilder {
            logger: self.logger.env(env.clone()),
            metrics: self.metrics.env(env.clone()),
            tracer: self.tracer.env(env),
        }
    }

    /// Adjusts the logger.
    pub fn logger(mut self, configure: impl FnOnce(LoggerBuilder) -> LoggerBuilder) -> Self {
        self.logger = configure(self.logger);
        self
    }

    /// Adjusts the metrics.
    pub fn metrics(
        mut self,
        configure: impl FnOnce(MetricsLayerBuilder) -> MetricsLayerBuilder,
    ) -> Self {
        self.metrics = configure(self.metrics);
        self
    }

    /// Adjusts the tracer.
    pub fn tracer(mut self, configure: impl FnOnce(TracerBuilder) -> TracerBuilder) -> Self {
        self.tracer = configure(self.tracer);
        self
    }

    /// Builds the three utilities.
    ///
    /// # Errors
    /// The first utility whose configuration is invalid.
    pub fn build(self) -> Result<Powertools, Error> {
        Ok(Powertools {
            logger: self.logger.build()?,
            metrics: self.metrics.build()?,
            tracer: self.tracer.build()?,
        })
    }
}

/// The standard stack as one layer: [`LoggingLayer`] around [`MetricsLayer`] around
/// [`TracingLayer`].
#[derive(Debug, Clone)]
pub struct PowertoolsLayer<C = NoCorrelationId> {
    logging: LoggingLayer<C>,
    metrics: MetricsLayer,
    tracing: TracingLayer,
}

/// The service [`PowertoolsLayer`] builds. Its error is [`StackError<E>`] for a handler whose
/// error is `E`.
pub type PowertoolsService<S, C = NoCorrelationId> =
    LoggingService<MetricsService<TracingService<S>>, C>;

/// The error of a handler wrapped by [`PowertoolsLayer`], whose own error is `E`: either `E`,
/// unchanged ([`StackError::Handler`]), or the metrics flush refusing an empty document
/// ([`StackError::Metrics`], only with
/// [`raise_on_empty_metrics`](powertools_metrics::MetricsLayerBuilder::raise_on_empty_metrics)).
/// Logging and tracing pass the handler's error through, so this is the stack's only error type;
/// its `Display` is the inner error's, for an `E` that has one. A `lambda_runtime::Diagnostic`
/// (the batch README's handler error) has none: read a `StackError<Diagnostic>` as Lambda will,
/// through `Diagnostic::from(error)` (its `error_type` and `error_message`), or match
/// [`StackError::Handler`]. Under [`run`](crate::run) its Lambda `errorType` is the
/// handler error's own, as the failure line and the span name it; `lambda_runtime::run` alone
/// names a boxed error by the box's Rust type (`&alloc::boxed::Box<dyn core::error::Error + …>`),
/// one reason to start the function with [`run`](crate::run).
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
/// use powertools::{Powertools, StackError};
/// use powertools::core::env::Env;
/// use powertools::core::testing::TestContext;
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), powertools::Error> {
/// let powertools = Powertools::builder()
///     .service("orders")
///     .env(Env::from_pairs([("POWERTOOLS_METRICS_NAMESPACE", "Bakery"), ("POWERTOOLS_TRACE_DISABLED", "true")]))
/// #   .logger(|logger| logger.writer(powertools::logging::MemoryLogs::new()))
/// #   .metrics(|metrics| metrics.sink(powertools_tests::emf::CheckedSink::new()))
///     .build()?;
/// let service = ServiceBuilder::new()
///     .layer(powertools.layer())
///     .service(service_fn(|_: LambdaEvent<Value>| async { Err::<Value, _>("out of flour") }));
/// let error: StackError<&str> = service.oneshot(TestContext::new().event(json!({}))).await.unwrap_err();
/// assert_eq!(error.handler_error(), Some(&"out of flour"));
/// assert_eq!(error.to_string(), "out of flour");
/// # Ok(())
/// # }
/// ```
pub type StackError<E> = powertools_metrics::ServiceError<E>;

impl<C> PowertoolsLayer<C> {
    /// Takes the logs' correlation id at a JMESPath expression in the event (see
    /// [`correlation_paths`](powertools_logging::correlation_paths)). Name headers in lowercase
    /// (`headers."x-correlation-id"`): typed API Gateway and ALB events hold them so, and a
    /// path that names one with capitals finds nothing there (a warning says so, once, when the
    /// lowercase path would have found the id).
    ///
    /// # Errors
    /// [`powertools_logging::Error::Config`] when it is not valid JMESPath.
    #[cfg(feature = "jmespath")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
    pub fn correlation_id_path(
        self,
        expression: &str,
    ) -> Result<PowertoolsLayer<CorrelationIdPath>, powertools_logging::Error> {
        Ok(PowertoolsLayer {
            logging: self.logging.correlation_id_path(expression)?,
            metrics: self.metrics,
            tracing: self.tracing,
        })
    }

    /// Takes the logs' correlation id from a typed closure on the event.
    pub fn correlation_id_from<F>(self, extract: F) -> PowertoolsLayer<CorrelationIdFn<F>> {
        PowertoolsLayer {
            logging: self.logging.correlation_id_from(extract),
            metrics: self.metrics,
            tracing: self.tracing,
        }
    }

    /// Describes the handler's errors of type `E` as Lambda reports them (`errorType`,
    /// `errorMessage`), for the failure line's `exception_name` and `exception` and the span's
    /// `exception.type` and `exception.message`: give it your `Into<Diagnostic>` by reference.
    ///
    /// Without it the line names an error of your own type by the type or variant its `Debug`
    /// text begins with, and `exception` is that text; the span names it by its type path (see
    /// [`LoggingLayer::error_diagnostic`], which this sets for the stack's error,
    /// [`StackError<E>`], and [`TracingLayer::error_diagnostic`]). A `Diagnostic` is named as
    /// Lambda reports it, and a boxed error (`lambda_runtime::Error`) by its type and message
    /// chain, without it. A metrics flush error keeps its own name.
    ///
    /// `E` must be exactly the error of the service inside the stack: a description of another
    /// type compiles and is never used. With an idempotency layer inside, that is
    /// `powertools::idempotency::Error<YourError>`: describe it with its `diagnostic_with` (the
    /// feature `idempotency`; a boxed error behind the idempotency layer is named as without
    /// it, with no description). A description that panics is not used (the error is named as
    /// without it, and the line is still written).
    ///
    /// ```
    /// use lambda_runtime::{Diagnostic, LambdaEvent, service_fn, tower::{ServiceBuilder, ServiceExt}};
    /// use powertools::Powertools;
    /// use powertools::core::{env::Env, testing::TestContext};
    /// use powertools::logging::MemoryLogs;
    /// use serde_json::{Value, json};
    ///
    /// #[derive(Debug)]
    /// enum StepError {
    ///     Declined { order_id: String },
    /// }
    ///
    /// fn diagnostic(error: &StepError) -> Diagnostic {
    ///     match error {
    ///         StepError::Declined { order_id } => Diagnostic {
    ///             error_type: "PaymentDeclined".to_owned(),
    ///             error_message: format!("the card for {order_id} was declined"),
    ///         },
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), powertools::Error> {
    /// let logs = MemoryLogs::new();
    /// let powertools = Powertools::builder()
    ///     .env(Env::from_pairs([("POWERTOOLS_METRICS_NAMESPACE", "Bakery"), ("POWERTOOLS_TRACE_DISABLED", "true")]))
    ///     .logger(|logger| logger.writer(logs.clone()))
    /// #   .metrics(|metrics| metrics.sink(powertools_tests::emf::CheckedSink::new()))
    ///     .build()?;
    /// let _guard = tracing::subscriber::set_default(powertools.subscriber());
    /// let service = ServiceBuilder::new()
    ///     .layer(powertools.layer().error_diagnostic(diagnostic))
    ///     .service(service_fn(|_: LambdaEvent<Value>| async {
    ///         Err::<Value, _>(StepError::Declined { order_id: "o-1".to_owned() })
    ///     }));
    /// service.oneshot(TestContext::new().event(json!({}))).await.unwrap_err();
    /// let lines = logs.json();
    /// let line = lines.iter().find(|line| line["message"] == "Invocation failed").unwrap();
    /// assert_eq!(line["exception_name"], "PaymentDeclined");
    /// assert_eq!(line["exception"], "the card for o-1 was declined");
    /// # Ok(())
    /// # }
    /// ```
    pub fn error_diagnostic<E, F>(mut self, describe: F) -> Self
    where
        E: Debug + 'static,
        F: Fn(&E) -> Diagnostic + Send + Sync + 'static,
    {
        let describe = std::sync::Arc::new(describe);
        let for_the_span = describe.clone();
        self.tracing = self
            .tracing
            .error_diagnostic(move |error: &E| for_the_span(error));
        self.logging = self
            .logging
            .error_diagnostic(move |error: &StackError<E>| match error {
                StackError::Handler(error) => describe(error),
                other => stack_error_diagnostic(other),
            });
        self
    }

    /// Sets the traces' `faas.trigger` (`http`, `pubsub`, `datasource`, `timer`, `other`;
    /// default: read from the event, see `powertools_tracing`'s "Other triggers").
    pub fn trigger(mut self, trigger: &'static str) -> Self {
        self.tracing = self.tracing.trigger(trigger);
        self
    }
}

impl<S, C: Clone> Layer<S> for PowertoolsLayer<C> {
    type Service = PowertoolsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.logging
            .layer(self.metrics.layer(self.tracing.layer(inner)))
    }
}

/// The layers with `E` (a utility's own error, or an I/O error) named by its Powertools name (or
/// its type) and message chain,
/// in the failure line (under the stack, inside `StackError`) and on the span.
fn named_as_powertools<E: std::error::Error + 'static>(
    logging: LoggingLayer,
    tracing: TracingLayer,
) -> (LoggingLayer, TracingLayer) {
    let logging = logging.error_diagnostic(|error: &StackError<E>| match error {
        StackError::Handler(error) => error_diagnostic(error),
        other => stack_error_diagnostic(other),
    });
    let tracing = tracing.error_diagnostic(|error: &E| error_diagnostic(error));
    (logging, tracing)
}

/// What Lambda reports for a stack error that is not the handler's: the metrics flush's.
fn stack_error_diagnostic<E: Debug>(error: &StackError<E>) -> Diagnostic {
    match error {
        StackError::Metrics(error) => Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        },
        // The handler's, or a kind of stack error this version does not know: its Debug text,
        // as the logging layer names an error it has no description for.
        other => Diagnostic {
            error_type: "StackError".to_owned(),
            error_message: format!("{other:?}"),
        },
    }
}
