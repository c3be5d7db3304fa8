//! `?` across the utilities: every crate's error converts into `powertools::Error`, and that
//! into `lambda_runtime::Error`, keeping its message, its kind and its source.

use powertools::core::env::Env;
use powertools::core::error_chain::MAX_SOURCES;
use powertools::core::error_chain::fixtures::{
    DEEP_CHAIN_LENGTH, FailingDisplay, OwnSource, deep_chain,
};
use powertools::logging::LoggerBuilder;
use powertools::metrics::Unit;

/// A step of a function that fails with one utility's error.
type Step = fn() -> Result<(), powertools::Error>;

fn core() -> Result<(), powertools::Error> {
    let error = powertools::core::Error::NonUnicodeEnvVar {
        name: "POWERTOOLS_DEV".to_owned(),
        value: r#""\xFF""#.to_owned(),
    };
    Err(error)?
}

fn logging() -> Result<(), powertools::Error> {
    // Outside an invocation.
    powertools::logging::append_key("order_id", "o-1001")?;
    Ok(())
}

fn logging_settings() -> Result<(), powertools::Error> {
    LoggerBuilder::default()
        .env(Env::from_pairs([("POWERTOOLS_LOG_LEVEL", "LOUD")]))
        .build()?;
    Ok(())
}

fn metrics() -> Result<(), powertools::Error> {
    powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count)?;
    Ok(())
}

fn tracing() -> Result<(), powertools::Error> {
    Err(powertools::tracing::Error::Exporter(
        "no endpoint".to_owned(),
    ))?
}

fn idempotency() -> Result<(), powertools::Error> {
    let error: powertools::idempotency::Error = powertools::idempotency::Error::Persistence {
        operation: "read the record",
        source: Box::new(std::io::Error::other("connection reset")),
    };
    Err(error)?
}

fn batch() -> Result<(), powertools::Error> {
    Err(powertools::batch::Error::AllRecordsFailed {
        count: 2,
        first_error: "no flour".to_owned(),
    })?
}

/// What a handler does with them: `?` into the runtime's error.
fn handler(step: Step) -> Result<(), lambda_runtime::Error> {
    step()?;
    Ok(())
}

fn failure(step: Step) -> lambda_runtime::Error {
    handler(step).expect_err("the step fails")
}

fn kind(error: &lambda_runtime::Error) -> &'static str {
    error
        .downcast_ref::<powertools::Error>()
        .expect("a powertools::Error")
        .error_type()
}

#[test]
fn every_crate_s_error_converts_and_keeps_its_message_and_kind() {
    let cases: [(Step, &str, &str); 7] = [
        (
            core,
            "NonUnicodeEnvironmentVariable",
            "environment variable POWERTOOLS_DEV is not valid UTF-8",
        ),
        (
            logging,
            "NoCurrentInvocation",
            "no current invocation: call this inside a handler wrapped by LoggingLayer",
        ),
        (
            logging_settings,
            "InvalidEnvironmentVariable",
            "environment variable POWERTOOLS_LOG_LEVEL has the invalid value \"LOUD\"",
        ),
        (
            metrics,
            "NoCurrentInvocation",
            "no current invocation: call this inside a handler wrapped by MetricsLayer",
        ),
        (
            tracing,
            "TracingExporterError",
            "the OTLP span exporter could not be built: no endpoint",
        ),
        (
            idempotency,
            "IdempotencyPersistenceLayerError",
            "idempotency store failed to read the record: connection reset",
        ),
        (
            batch,
            "BatchProcessingError",
            "all 2 records of the batch failed; the first: no flour",
        ),
    ];
    for (step, error_type, message) in cases {
        let error = failure(step);
        assert!(
            error.to_string().starts_with(message),
            "{error} names the cause"
        );
        assert_eq!(kind(&error), error_type);
        let diagnostic = lambda_runtime::Diagnostic::from(step().expect_err("the step fails"));
        assert_eq!(diagnostic.error_type, error_type);
        assert_eq!(diagnostic.error_message, error.to_string());
    }
}

#[test]
fn the_inner_error_s_source_is_kept() {
    let error = failure(idempotency);
    let source = error.source().expect("the store's error");
    assert_eq!(source.to_string(), "connection reset");
    assert!(source.downcast_ref::<std::io::Error>().is_some());
}

#[test]
fn matching_gives_the_utility_s_error_back() {
    let error = metrics().expect_err("outside an invocation");
    assert!(matches!(
        error,
        powertools::Error::Metrics(powertools::metrics::Error::NoCurrentInvocation)
    ));
}

/// Runs `report` on another thread and gives its result, or fails if it has not returned after a
/// minute (a report that loops forever would otherwise hang the test run).
fn report_within_a_minute(report: fn() -> String) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(std::panic::catch_unwind(report)));
    match receiver.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => panic!("error_report panicked"),
        Err(_) => panic!("error_report did not return"),
    }
}

/// An error with a message and the cause under it.
#[derive(Debug)]
struct Waiting(std::io::Error);

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for lock")
    }
}

impl std::error::Error for Waiting {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn error_report_keeps_a_cause_whose_message_is_a_word_of_the_error_s() {
    // `lock` was left out as already said by `…waiting for lock` (found by a review of the same
    // rule in the failure line's message chain).
    let report = powertools::error_report(&Waiting(std::io::Error::other("lock")));
    assert_eq!(
        report,
        "Error: timed out waiting for lock\n  caused by: lock"
    );
    // A `Display` that prints its source is still reported once.
    let printed = std::io::Error::other(std::io::Error::other("refused"));
    assert_eq!(powertools::error_report(&printed), "Error: refused");
}

#[test]
fn error_report_describes_an_error_that_is_its_own_source_once() {
    let report = report_within_a_minute(|| powertools::error_report(&OwnSource));
    assert_eq!(report, "Error: loops");
}

#[test]
fn error_report_says_where_it_cuts_a_chain_deeper_than_it_reports() {
    let report = report_within_a_minute(|| powertools::error_report(deep_chain()));
    let lines: Vec<&str> = report.lines().collect();
    const { assert!(DEEP_CHAIN_LENGTH > MAX_SOURCES + 1) };
    assert_eq!(lines.len(), 1 + MAX_SOURCES + 1, "{report}");
    assert_eq!(lines[0], "Error: cause 0");
    assert_eq!(
        lines[MAX_SOURCES],
        format!("  caused by: cause {MAX_SOURCES}")
    );
    assert_eq!(
        lines[MAX_SOURCES + 1],
        format!("  caused by: … (more causes: the report stops after {MAX_SOURCES})")
    );
}

#[test]
fn error_report_describes_an_error_whose_display_fails_instead_of_panicking() {
    let report = report_within_a_minute(|| powertools::error_report(&FailingDisplay));
    assert_eq!(report, "Error: half<formatting failed>");
}
