//! Writes two log lines and two EMF documents through the default (stdout) sinks of the logging
//! and metrics crates, then says on stderr how many lines were lost: `stdout_failures.rs` runs it
//! with stdout on `/dev/full`.

use powertools_logging::Logger;
use powertools_metrics::{Sink, Stdout};

fn main() -> Result<(), powertools_logging::Error> {
    let logger = Logger::builder().service("orders").build()?;
    tracing::subscriber::with_default(logger.subscriber(), || {
        tracing::info!(order_id = "o-1", "accepted");
        tracing::info!(order_id = "o-2", "accepted");
    });
    Stdout.write_document(r#"{"_aws":{}}"#);
    Stdout.write_document(r#"{"_aws":{}}"#);
    eprintln!("lost_lines={}", powertools_core::stdout::lost_lines());
    Ok(())
}
