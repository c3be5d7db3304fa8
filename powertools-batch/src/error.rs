/// Why a batch as a whole failed, or a DynamoDB Streams record's image did not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every record of the batch failed, so Lambda should retry the whole batch (as Powertools
    /// does); turn it off with [`raise_on_entire_batch_failure`](crate::BatchProcessor::raise_on_entire_batch_failure).
    #[error("{}", all_failed(*count, first_error))]
    AllRecordsFailed {
        /// How many records the batch had.
        count: usize,
        /// Why the first one failed.
        first_error: String,
    },
    /// A record of the event given to
    /// [`process_sqs`](crate::BatchProcessor::process_sqs) is not an SQS message: its
    /// `eventSource` is another service's, or it has neither a `messageId` nor a `body` (an
    /// SQS message always has both; an SNS record has neither). Every field of an SQS record
    /// is optional, so another source's event reads as SQS messages without bodies; the batch
    /// fails before any record runs rather than hand them over empty.
    #[error("{}", not_an_sqs_event(*index, event_source.as_deref()))]
    NotAnSqsEvent {
        /// The position of the first such record in the batch.
        index: usize,
        /// Its `eventSource`, if it has one.
        event_source: Option<String>,
    },
    /// The event has no records (`{"Records": []}`): Lambda never sends an empty batch, so the
    /// event was written by hand or for another function, and nothing is reported processed.
    /// Powertools for Python refuses it the same way (`UnexpectedBatchTypeError`).
    #[error(
        "the {event_type} event has no records (`\"Records\": []`): Lambda never sends an empty batch; \
         is the event written by hand or meant for another function?"
    )]
    EmptyBatch {
        /// The event the processor reads: `SQS`, `Kinesis` or `DynamoDB Streams`.
        event_type: &'static str,
    },
    /// A DynamoDB Streams record's image (or keys) does not read as the type asked of
    /// [`read_image`](crate::read_image): which type, where (`at lines[0].qty`) and why,
    /// without the value, which may be a card number in the wrong attribute. A record's
    /// error, for its handler to return: only that record fails.
    #[error("the image does not read as {type_name}{}: {reason}", at(path))]
    InvalidImage {
        /// The type asked for.
        type_name: &'static str,
        /// Where in the image (`lines[0].qty`); empty at its top (a missing attribute).
        path: String,
        /// Why, without the value.
        reason: String,
    },
}

/// " at lines[0].qty", or nothing at the top.
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// "all 3 records of the batch failed; the first: …", or, for a batch of one, "the batch's only
/// record failed: …" (a user read "all 1 records").
fn all_failed(count: usize, first_error: &str) -> String {
    if count == 1 {
        format!("the batch's only record failed: {first_error}")
    } else {
        format!("all {count} records of the batch failed; the first: {first_error}")
    }
}

fn not_an_sqs_event(index: usize, event_source: Option<&str>) -> String {
    let why = match event_source {
        Some(source) if source != SQS_EVENT_SOURCE => {
            format!("its eventSource is {source:?}, not \"{SQS_EVENT_SOURCE}\"")
        }
        _ => "it has neither a messageId nor a body".to_owned(),
    };
    format!(
        "record {index} of the batch is not an SQS message ({why}): is the function wired to \
         another event source? No record of the batch was processed"
    )
}

/// The `eventSource` of every record Lambda reads from SQS.
pub(crate) const SQS_EVENT_SOURCE: &str = "aws:sqs";

impl Error {
    /// A stable identifier of the error kind (Powertools' name).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::AllRecordsFailed { .. } => "BatchProcessingError",
            Error::NotAnSqsEvent { .. } | Error::EmptyBatch { .. } => "UnexpectedBatchTypeError",
            Error::InvalidImage { .. } => "InvalidImage",
        }
    }
}

powertools_core::diagnostic_from_error_type!(Error);
