//! The batch processor: one handler call per record, failures reported per record.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::Instrument;

use crate::Error;
use crate::raw::RecordBody;

/// One SQS message, its body deserialized. `#[non_exhaustive]`: read its fields, or match
/// with `..`; [`SqsRecord::new`] builds one (for a handler's unit tests).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqsRecord<T> {
    /// The message id, reported when the record fails.
    pub message_id: String,
    /// The body, deserialized from JSON; as sent with `T` = [`Raw`](crate::Raw).
    pub body: T,
    /// The whole message (attributes, receipt handle, …).
    pub message: SqsMessage,
}

/// One Kinesis record, its data deserialized. `#[non_exhaustive]`: read its fields, or match
/// with `..`; [`KinesisRecord::new`] builds one (for a handler's unit tests).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KinesisRecord<T> {
    /// The sequence number, reported when the record fails.
    pub sequence_number: String,
    /// The data, deserialized from JSON; as sent (base64-decoded) with `T` = [`Raw`](crate::Raw).
    pub data: T,
    /// The whole record.
    pub record: KinesisEventRecord,
}

impl<T> SqsRecord<T> {
    /// A record of `message` with its body already deserialized.
    ///
    /// ```
    /// use aws_lambda_events::sqs::SqsMessage;
    /// use powertools_batch::SqsRecord;
    ///
    /// let record = SqsRecord::new("m-1", 42, SqsMessage::default());
    /// assert_eq!((record.message_id.as_str(), record.body), ("m-1", 42));
    /// ```
    pub fn new(message_id: impl Into<String>, body: T, message: SqsMessage) -> Self {
        SqsRecord {
            message_id: message_id.into(),
            body,
            message,
        }
    }
}

impl<T> KinesisRecord<T> {
    /// A record of `record` with its data already deserialized.
    ///
    /// ```
    /// use aws_lambda_events::kinesis::KinesisEventRecord;
    /// use powertools_batch::KinesisRecord;
    ///
    /// let record = KinesisRecord::new("4958", "payload", KinesisEventRecord::default());
    /// assert_eq!(record.sequence_number, "4958");
    /// ```
    pub fn new(sequence_number: impl Into<String>, data: T, record: KinesisEventRecord) -> Self {
        KinesisRecord {
            sequence_number: sequence_number.into(),
            data,
            record,
        }
    }
}

/// Processes the records of a batch and reports the failed ones, so that one bad record does not
/// make the whole batch retry (`ReportBatchItemFailures` on the event source mapping).
///
/// - **SQS standard queues**: records are independent; up to [`concurrency`](Self::concurrency)
///   run at once (default 1), and a record that finishes makes room for the next at once (a
///   slow record holds only its own place). They run on the invocation's task, taking turns at
///   their `.await`s: move CPU-heavy work in a record to `tokio::task::spawn_blocking`, with the
///   record's span (`let span = tracing::Span::current(); spawn_blocking(move || span.in_scope(||
///   …))`) so that its lines keep the record's id and keys (a blocking thread has no span of its
///   own).
/// - **SQS FIFO queues** (a record's source ARN ends in `.fifo`, a record has the FIFO-only
///   `SequenceNumber` attribute, or [`fifo`](Self::fifo) says so): in order, one at a time. The first
///   failure fails every remaining record, so ordering within a message group holds; with
///   [`skip_group_on_error`](Self::skip_group_on_error), only the rest of that record's message
///   group fails.
/// - **Kinesis and DynamoDB Streams**: in order, one at a time. Lambda retries a stream batch from
///   the lowest failed sequence number, so the processor stops at the first failure and reports
///   it; the records after it are retried with it rather than processed twice.
/// - The handler's record holds the body (SQS) or data (Kinesis) read as JSON into its `T`, or
///   as sent with `T` = [`Raw`](crate::Raw) (text, CSV, gzip, protobuf).
/// - A body that does not deserialize, a handler error and a handler panic each fail that record
///   only. When every record fails, the processor returns [`Error::AllRecordsFailed`] by default
///   so that Lambda retries the whole batch, as Powertools does. A stream stops at its first
///   failure, so for a stream that is a batch of one record that failed; a longer stream batch
///   reports its first failed record (Lambda resumes there).
/// - Each record runs in a `batch_record` span with its id (`message_id` or `sequence_number`),
///   so `powertools-logging` puts the id on every line the handler writes for it; a record that
///   failed has its span's status an error (`otel.status_code`, which `powertools-tracing`
///   exports). With the
///   `logging` feature (default) each record also runs in a log-key scope of its own
///   (`powertools_logging::key_scope`): it starts with the keys the invocation has as the
///   record starts (those appended before the batch started are on every record; one appended
///   to the invocation while the batch runs, beside it, only on the records started after),
///   and keys the handler appends (`append_key("refund_id", …)`) are on that
///   record's lines only, even with records running at once. A failed record is logged as
///   Powertools for Python logs it (`BatchProcessor(logger=…)`): a `WARN`, `Record processing
///   exception; skipping this record`, with its id, its keys, `exception_name` (the error's
///   type or variant as the logging layer names an invocation's, `Error` for a message only,
///   `Panic`, `serde_json::Error` for a body that did not read; an `Idempotency::run` result
///   returned as it is by the error inside, `Panic` for a panic it caught, and Powertools' names
///   for its own refusals, `IdempotencyAlreadyInProgressError`) and `exception` (the error's
///   message with its causes' messages: the error is boxed as `?` boxes it, and an AWS SDK
///   error's own `Display` is only `service error`); so is each record of a FIFO batch failed
///   without running, after an earlier failure (`SQSFifoCircuitBreakerError`, or
///   `SQSFifoMessageGroupCircuitBreakerError` with `skip_group_on_error`, Python's names). The
///   line's own fields (`message_id` or `sequence_number`, `exception_name`, `exception`)
///   replace keys of those names on it, as any line's fields replace appended keys
///   (Powertools for Python's `extra`).
/// - With the `metrics` feature the invocation's EMF document gets `BatchRecordsProcessed` (the
///   records processed successfully) and `BatchRecordsFailed` (the records reported as failed);
///   a stream's records after its first failure, which Lambda retries, are in neither. Without
///   a `MetricsLayer` around the handler there is no document: a warning says so, once per
///   process.
#[derive(Debug, Clone, Copy)]
pub struct BatchProcessor {
    concurrency: usize,
    raise_on_entire_batch_failure: bool,
    skip_group_on_error: bool,
    fifo: bool,
}

impl Default for BatchProcessor {
    fn default() -> Self {
        BatchProcessor {
            concurrency: 1,
            raise_on_entire_batch_failure: true,
            skip_group_on_error: false,
            fifo: false,
        }
    }
}

/// What happened to each record, in batch order.
type Outcomes = Vec<(String, Result<(), String>)>;

impl BatchProcessor {
    /// A processor with the defaults: one record at a time, an error when all fail.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records of an SQS standard queue run at once (at least 1). FIFO queues and
    /// streams stay sequential, because their order matters: a batch of theirs processed with
    /// a concurrency above 1 says so in a warning, once per process.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Whether a batch in which every record failed is an error (default: yes, so Lambda retries
    /// the batch); if not, every record is reported as failed. Powertools for Python's
    /// `raise_on_entire_batch_failure` (TypeScript's `throwOnFullBatchFailure`).
    pub fn raise_on_entire_batch_failure(mut self, raise: bool) -> Self {
        self.raise_on_entire_batch_failure = raise;
        self
    }

    /// Processes every SQS batch as one of a FIFO queue (in order, one record at a time, the
    /// rest failed after a failure), as Powertools for Python's `SqsFifoPartialProcessor` does
    /// (default: a batch is FIFO when a record's source ARN ends in `.fifo` or a record has the
    /// `SequenceNumber` attribute only FIFO queues set). For events built by hand or by a
    /// transformation that leave both off. `fifo(false)` is that default: it never makes a FIFO
    /// queue's batch run as a standard queue's.
    pub fn fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// For SQS FIFO queues: after a failure, fail only the rest of that message group and go on
    /// with the other groups (default: fail every remaining record). A record without a
    /// `MessageGroupId`, or with an empty one (only hand-written events lack it), belongs to no
    /// group: its failure skips no other record, as in Powertools for Python. On a batch that is
    /// not a FIFO queue's (see [`fifo`](Self::fifo)) it does not apply, and a warning says so,
    /// once per process.
    pub fn skip_group_on_error(mut self, skip: bool) -> Self {
        self.skip_group_on_error = skip;
        self
    }

    /// Processes an SQS batch.
    ///
    /// # Errors
    /// [`Error::AllRecordsFailed`] when every record failed and
    /// [`raise_on_entire_batch_failure`](Self::raise_on_entire_batch_failure) is on; [`Error::NotAnSqsEvent`],
    /// before any record runs, when a record's `eventSource` is another service's (a Kinesis or
    /// DynamoDB Streams event reads as an SQS event of empty messages) or it has neither a
    /// `messageId` nor a `body`; [`Error::EmptyBatch`] for an event without records.
    pub async fn process_sqs<T, F, Fut, E>(
        &self,
        event: &SqsEvent,
        handler: F,
    ) -> Result<SqsBatchResponse, Error>
    where
        T: RecordBody,
        F: Fn(SqsRecord<T>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        not_empty(&event.records, "SQS")?;
        powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
        if let Some((index, message)) = event.records.iter().enumerate().find(|(_, message)| {
            message
                .event_source
                .as_deref()
                .is_some_and(|source| source != crate::error::SQS_EVENT_SOURCE)
                || (message.message_id.is_none() && message.body.is_none())
        }) {
            return Err(Error::NotAnSqsEvent {
                index,
                event_source: message.event_source.clone(),
            });
        }
        // Any record: Lambda sets every record's ARN, but an event built by hand or by a
        // transformation may leave it off some, and running FIFO records at once breaks order.
        // A FIFO queue's records also carry a `SequenceNumber` attribute, which a standard
        // queue's never do (its fair queues' carry a `MessageGroupId`, so that one tells
        // nothing); and `fifo(true)` says it outright.
        let fifo = self.fifo
            || event.records.iter().any(|message| {
                message
                    .event_source_arn
                    .as_deref()
                    .is_some_and(|arn| arn.ends_with(".fifo"))
                    || message.attributes.contains_key("SequenceNumber")
            });
        if fifo {
            self.warn_if_concurrent("an SQS FIFO queue's");
        } else if self.skip_group_on_error {
            warn_skip_group_not_fifo();
        }
        let handler = &handler;
        let run = |message: &SqsMessage| {
            let message_id = message.message_id.clone().unwrap_or_default();
            let message = message.clone();
            in_record_scope(async move {
                let span = tracing::info_span!(
                    "batch_record",
                    message_id = %message_id,
                    otel.status_code = tracing::field::Empty,
                    error.r#type = tracing::field::Empty
                );
                // Deserialized in `guarded` too: a `Deserialize` that panics fails its record.
                let start = || {
                    let bytes = message.body.as_deref().unwrap_or("").as_bytes();
                    let parsed = T::read(bytes).map_err(|error| (error, T::failure_path(bytes)));
                    parsed.map(|body| {
                        handler(SqsRecord {
                            message_id: message_id.clone(),
                            body,
                            message,
                        })
                    })
                };
                guarded(RecordId::Message(message_id.clone()), start)
                    .instrument(span)
                    .await
            })
        };
        let outcomes: Outcomes = if fifo {
            let mut outcomes = Vec::with_capacity(event.records.len());
            let mut failed_groups = HashSet::new();
            let mut stop = false;
            for message in &event.records {
                let message_id = message.message_id.clone().unwrap_or_default();
                // A record without a group, or with an empty one (hand-written events), belongs
                // to none: as in Powertools for Python, which remembers only truthy group ids.
                let group = message
                    .attributes
                    .get("MessageGroupId")
                    .filter(|group| !group.is_empty());
                let skipped = stop || group.is_some_and(|group| failed_groups.contains(group));
                if skipped {
                    // Python's circuit breakers' names and our words.
                    let (name, reason) = if stop {
                        (
                            "SQSFifoCircuitBreakerError",
                            "an earlier record of the FIFO batch failed",
                        )
                    } else {
                        (
                            "SQSFifoMessageGroupCircuitBreakerError",
                            "an earlier record of its message group failed",
                        )
                    };
                    // Reported to Lambda as failed, so logged as failed, as a record that ran.
                    message_failure_line(&message_id, name, reason);
                    outcomes.push((message_id, Err(reason.into())));
                    continue;
                }
                let outcome = run(message).await;
                if outcome.1.is_err() {
                    if self.skip_group_on_error {
                        failed_groups.extend(group);
                    } else {
                        stop = true;
                    }
                }
                outcomes.push(outcome);
            }
            outcomes
        } else {
            at_most_at_once(&event.records, self.concurrency, run).await
        };
        let failures = self.failures(outcomes, event.records.len())?;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        Ok(response)
    }

    /// Processes a Kinesis batch, in order, stopping at the first failure.
    ///
    /// # Errors
    /// [`Error::AllRecordsFailed`] when the batch's every record failed: as it stops at the first
    /// failure, a batch of one record. [`Error::EmptyBatch`] for an event without records.
    pub async fn process_kinesis<T, F, Fut, E>(
        &self,
        event: &KinesisEvent,
        handler: F,
    ) -> Result<KinesisEventResponse, Error>
    where
        T: RecordBody,
        F: Fn(KinesisRecord<T>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        not_empty(&event.records, "Kinesis")?;
        powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
        self.warn_if_concurrent("a Kinesis stream's");
        let handler = &handler;
        let outcomes = in_order_until_failure(&event.records, |record| {
            let sequence_number = record.kinesis.sequence_number.clone();
            let record = record.clone();
            in_record_scope(async move {
                let span = tracing::info_span!(
                    "batch_record",
                    sequence_number = %sequence_number,
                    otel.status_code = tracing::field::Empty,
                    error.r#type = tracing::field::Empty
                );
                // Deserialized in `guarded` too: a `Deserialize` that panics fails its record.
                let start = || {
                    let bytes = &record.kinesis.data.0;
                    let parsed = T::read(bytes).map_err(|error| (error, T::failure_path(bytes)));
                    parsed.map(|data| {
                        handler(KinesisRecord {
                            sequence_number: sequence_number.clone(),
                            data,
                            record,
                        })
                    })
                };
                guarded(RecordId::Sequence(sequence_number.clone()), start)
                    .instrument(span)
                    .await
            })
        })
        .await;
        let failures = self.failures(outcomes, event.records.len())?;
        let mut response = KinesisEventResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|id| {
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(id);
                failure
            })
            .collect();
        Ok(response)
    }

    /// Processes a DynamoDB Streams batch, in order, stopping at the first failure. The handler
    /// gets each stream record as Lambda sends it (keys and images in DynamoDB's JSON).
    ///
    /// # Errors
    /// [`Error::AllRecordsFailed`] when the batch's every record failed: as it stops at the first
    /// failure, a batch of one record. [`Error::EmptyBatch`] for an event without records.
    pub async fn process_dynamodb<F, Fut, E>(
        &self,
        event: &DynamoDbEvent,
        handler: F,
    ) -> Result<DynamoDbEventResponse, Error>
    where
        F: Fn(EventRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        not_empty(&event.records, "DynamoDB Streams")?;
        powertools_core::failure::notice_if_panics_abort(|warning| tracing::warn!("{warning}"));
        self.warn_if_concurrent("a DynamoDB stream's");
        let handler = &handler;
        let outcomes = in_order_until_failure(&event.records, |record| {
            let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
            let record = record.clone();
            in_record_scope(async move {
                let span = tracing::info_span!(
                    "batch_record",
                    sequence_number = %sequence_number,
                    otel.status_code = tracing::field::Empty,
                    error.r#type = tracing::field::Empty
                );
                let start = || Ok::<_, (serde_json::Error, Option<String>)>(handler(record));
                guarded(RecordId::Sequence(sequence_number), start)
                    .instrument(span)
                    .await
            })
        })
        .await;
        let failures = self.failures(outcomes, event.records.len())?;
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|id| {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(id);
                failure
            })
            .collect();
        Ok(response)
    }

    /// Says once per process that [`concurrency`](Self::concurrency) does not apply to records
    /// that run one at a time (`records`: whose), rather than ignore it without a word (found by
    /// a user writing a function from the docs: a stream's records took 20 times as long as the
    /// setting led them to expect).
    fn warn_if_concurrent(&self, records: &'static str) {
        static SAID: std::sync::Once = std::sync::Once::new();
        if self.concurrency > 1 {
            SAID.call_once(|| {
                tracing::warn!(
                    concurrency = self.concurrency,
                    "BatchProcessor::concurrency({}) does not apply to {records} records, which run \
                     one at a time, in order (it applies to SQS standard queues; said once per \
                     process)",
                    self.concurrency
                );
            });
        }
    }

    /// The ids of the failed records, after logging and counting the outcomes; `Err` when every
    /// record of the batch (`batch_size`, which a stream stopped at a failure did not all run)
    /// failed.
    fn failures(&self, outcomes: Outcomes, batch_size: usize) -> Result<Vec<String>, Error> {
        let total = outcomes.len();
        let failed: Vec<(String, String)> = outcomes
            .into_iter()
            .filter_map(|(id, outcome)| outcome.err().map(|reason| (id, reason)))
            .collect();
        record_counts(total - failed.len(), failed.len());
        // Lambda only ever sends records with ids; a hand-written event may not, or a blank one
        // that names no record of the batch.
        if let Some((blank, _)) = failed.iter().find(|(id, _)| id.trim().is_empty()) {
            tracing::warn!(
                item_identifier = blank.as_str(),
                "a failed batch record has no id (SQS messageId, or sequence number), or a blank \
                 one: Lambda reads an empty or unknown itemIdentifier as the whole batch failed, \
                 so every record of the batch will be retried, those that succeeded too"
            );
        }
        if batch_size > 0 && failed.len() == batch_size && self.raise_on_entire_batch_failure {
            let first_error = failed
                .first()
                .map(|(_, reason)| reason.clone())
                .unwrap_or_default();
            return Err(Error::AllRecordsFailed {
                count: batch_size,
                first_error,
            });
        }
        Ok(failed.into_iter().map(|(id, _)| id).collect())
    }
}

/// Runs the records one at a time, in order, and stops after the first that fails: a stream
/// resumes from there, so the records after it are not run now.
async fn in_order_until_failure<R, Fut>(records: &[R], mut run: impl FnMut(&R) -> Fut) -> Outcomes
where
    Fut: Future<Output = (String, Result<(), String>)>,
{
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        let outcome = run(record).await;
        let failed = outcome.1.is_err();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    outcomes
}

/// Runs up to `concurrency` records at once, each record that finishes making room for the next
/// (one slow record holds its own place only), and returns the outcomes in batch order.
async fn at_most_at_once<'a, R, Fut>(
    records: &'a [R],
    concurrency: usize,
    mut run: impl FnMut(&'a R) -> Fut,
) -> Outcomes
where
    Fut: Future<Output = (String, Result<(), String>)>,
{
    let mut waiting = records.iter().enumerate();
    let mut running = FuturesUnordered::new();
    let mut outcomes = Vec::with_capacity(records.len());
    loop {
        while running.len() < concurrency {
            let Some((index, record)) = waiting.next() else {
                break;
            };
            let started = run(record);
            running.push(async move { (index, started.await) });
        }
        match running.next().await {
            Some(outcome) => outcomes.push(outcome),
            None => break,
        }
    }
    outcomes.sort_unstable_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}

/// How a record is identified in `batchItemFailures` and in its log lines.
enum RecordId {
    /// An SQS message id.
    Message(String),
    /// A Kinesis or DynamoDB Streams sequence number.
    Sequence(String),
}

/// Runs one record in a log-key scope of its own (see [`BatchProcessor`]): created, and first
/// polled, inside it, so that the handler's synchronous part and the record's span are in it too.
#[cfg(feature = "logging")]
fn in_record_scope<F: Future>(record: F) -> impl Future<Output = F::Output> {
    powertools_logging::key_scope(record)
}

#[cfg(not(feature = "logging"))]
fn in_record_scope<F: Future>(record: F) -> F {
    record
}

/// The most bytes of a failed record's reason (its line, and [`Error::AllRecordsFailed`]):
/// an error's causes can be many large messages, and CloudWatch Logs keeps 256 KB of a line.
const MAX_REASON_BYTES: usize = 16 * 1024;

/// `reason` cut to [`MAX_REASON_BYTES`] on a character boundary, saying how much was left out.
fn capped(mut reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let left_out = reason.len() - end;
    reason.truncate(end);
    reason.push_str(&format!("… ({left_out} bytes more)"));
    reason
}

/// Runs one record's handler, turning a body that did not deserialize, an error and a panic
/// into that record's failure. `start` calls the handler: a handler that panics before it
/// returns its future, or an error whose `Display` panics, fails its record only too.
///
/// In a failure scope of the record's own (`powertools_core::failure::record_scope`): where
/// `Idempotency::run` reports what its own errors are called (`IdempotencyAlreadyInProgressError`),
/// read back to name the record's failure, never another record's (in the invocation's scope,
/// past 8 failed records at once the first ones' reports were gone; found by a review).
fn guarded<Fut, E>(
    id: RecordId,
    start: impl FnOnce() -> Result<Fut, (serde_json::Error, Option<String>)>,
) -> impl Future<Output = (String, Result<(), String>)>
where
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    powertools_core::failure::record_scope(guarded_in_scope(id, start))
}

/// [`guarded`], in a failure scope.
async fn guarded_in_scope<Fut, E>(
    id: RecordId,
    start: impl FnOnce() -> Result<Fut, (serde_json::Error, Option<String>)>,
) -> (String, Result<(), String>)
where
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // `Err((exception_name, exception))`, as the failure line writes them.
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(start)) {
        Err(panic) => Err((PANIC.into(), panicked_then_dropped(panic))),
        // Its own words: `without_values` would leave out a message it does not know.
        Ok(Err((error, _))) if error.to_string() == crate::raw::READ_PANICKED => Err((
            PANIC.into(),
            format!(
                "the record's body (SQS) or data (Kinesis) could not be read: {}",
                crate::raw::READ_PANICKED
            ),
        )),
        Ok(Err((error, path))) => Err((
            UNREADABLE_BODY.into(),
            format!(
                "the record's body (SQS) or data (Kinesis) is not the expected JSON{}: {}",
                path.map(|path| format!(" at {path}")).unwrap_or_default(),
                without_values(&error)
            ),
        )),
        Ok(Ok(future)) => {
            // Boxed so that it can be dropped within the record too: a handler's future that is
            // no `async` block (a struct, a combinator holding state) may panic in its `Drop`,
            // which ran outside the `catch_unwind` (found by a review).
            let mut running = Box::pin(AssertUnwindSafe(future).catch_unwind());
            let ran = running.as_mut().await;
            match (dropped_within_the_record(running), ran) {
                // A panic as its future is dropped fails a record that had succeeded, as it
                // does when an `async` block drops the same value within its poll (found by a
                // review).
                (Err(reason), Ok(Ok(()))) => Err((PANIC.into(), reason)),
                (_, ran) => Ok(ran),
            }
        }
    };
    let outcome = match outcome {
        Err(reason) => Err(reason),
        Ok(ran) => match ran {
            Ok(Ok(())) => Ok(()),
            // Not `to_string`, which panics when a `Display` fails: one record's error would
            // fail the whole batch, records already done included.
            Ok(Err(error)) => {
                // Boxed, as `?` boxes it (any `std::error::Error`, a `String`, an `anyhow`
                // error), for its causes: an AWS SDK error's `Display` alone is `unhandled
                // error`, `dispatch failure` or `service error` (found by an attack).
                let error: Box<dyn std::error::Error + Send + Sync> = error.into();
                // An idempotent call's own error (`Idempotency::run`'s result returned as it
                // is), by the name Powertools gives it and its message, a panic it caught as a
                // panic: it was named by its Rust variant (`AlreadyInProgress`,
                // `HandlerPanicked`; found by an attack from the docs).
                let (name, reason) = match powertools_core::failure::reported_for(error.as_ref()) {
                    Some((reported, message)) if reported.panicked => (PANIC.into(), message),
                    Some((reported, message)) => (Cow::Borrowed(reported.error_type), message),
                    None => (
                        // Named as the logging layer names an invocation's error: its type or
                        // variant, `Error` for a message only (a `String`, whose boxed `Debug`
                        // is quoted text).
                        powertools_core::error_chain::type_name(error.as_ref())
                            .map_or(Cow::Borrowed(MESSAGE_ONLY), Cow::Owned),
                        // Quiet: the panic's message may quote what the `Display` was writing.
                        powertools_core::failure::catch_quiet_panic(|| {
                            powertools_core::error_chain::message_chain(error.as_ref())
                        })
                        .unwrap_or_else(|payload| {
                            // Leaked, not dropped: a payload whose `Drop` panics would unwind
                            // here.
                            std::mem::forget(payload);
                            "<the error's Display panicked>".to_owned()
                        }),
                    ),
                };
                let _already_failed = dropped_within_the_record(error);
                Err((name, reason))
            }
            Err(panic) => Err((PANIC.into(), panicked_then_dropped(panic))),
        },
    };
    let outcome = outcome.map_err(|(name, reason)| (name, capped(reason)));
    // Inside the record's scope: its keys are on the line.
    if let Err((name, reason)) = &outcome {
        failure_line(&id, name, reason);
    }
    if let Err((name, _)) = &outcome {
        // The record's span is an error, as a failed invocation's is (its traces showed every
        // record as a success), with the error's type as OpenTelemetry's `error.type` (the
        // status alone did not tell a poison message from a refused one). After the failure
        // line, which would carry them as keys; the reason stays on that line, masked, and off
        // the span.
        let span = tracing::Span::current();
        span.record("otel.status_code", "ERROR");
        span.record("error.type", name.as_ref());
    }
    let (RecordId::Message(id) | RecordId::Sequence(id)) = id;
    (id, outcome.map_err(|(_, reason)| reason))
}

/// [`failure_line`] of the SQS message `message_id`.
fn message_failure_line(message_id: &str, name: &str, reason: &str) {
    tracing::warn!(
        message_id,
        exception_name = name,
        exception = reason,
        "{FAILURE_MESSAGE}"
    );
}

/// `exception_name` of a record whose handler panicked, as the logging layer names a panic.
const PANIC: &str = "Panic";
/// `exception_name` of a record whose body did not deserialize.
const UNREADABLE_BODY: &str = "serde_json::Error";
/// `exception_name` of an error that is only a message (a `String`): it has no type to name.
const MESSAGE_ONLY: &str = "Error";
/// The message of a failed record's line: Powertools for Python's (`BatchProcessor(logger=…)`),
/// which Logs Insights queries written for it filter on.
const FAILURE_MESSAGE: &str = "Record processing exception; skipping this record";

/// Logs that the record `id` failed, as Powertools for Python does: a `WARN` with Python's
/// message, `exception_name` and `exception`, and the record's id.
fn failure_line(id: &RecordId, name: &str, reason: &str) {
    match id {
        RecordId::Message(message_id) => message_failure_line(message_id, name, reason),
        RecordId::Sequence(sequence_number) => tracing::warn!(
            sequence_number = sequence_number.as_str(),
            exception_name = name,
            exception = reason,
            "{FAILURE_MESSAGE}"
        ),
    }
}

/// [`Error::EmptyBatch`] for a batch without records, as Powertools for Python refuses one
/// (Lambda never sends one: reporting it processed would hide an event meant for elsewhere).
fn not_empty<R>(records: &[R], event_type: &'static str) -> Result<(), Error> {
    if records.is_empty() {
        return Err(Error::EmptyBatch { event_type });
    }
    Ok(())
}

/// Drops what a record left (its handler's future, its error, its panic's payload) so that a
/// `Drop` that panics fails nothing more than that record: it would otherwise unwind out of the
/// batch, and Lambda would retry every record, those done included (found by an attack from the
/// docs and a review). Says why when it panicked; the payload of such a panic is leaked, not
/// dropped: it may panic again.
fn dropped_within_the_record<T>(value: T) -> Result<(), String> {
    std::panic::catch_unwind(AssertUnwindSafe(move || drop(value))).map_err(|payload| {
        let reason = panicked(&*payload);
        std::mem::forget(payload);
        reason
    })
}

/// The reason of a record whose handler panicked, the payload then dropped within the record.
fn panicked_then_dropped(panic: Box<dyn std::any::Any + Send>) -> String {
    let reason = panicked(&*panic);
    let _already_failed = dropped_within_the_record(panic);
    reason
}

/// serde_json's message for a body that does not deserialize, without the value it quotes:
/// `invalid type: string "4111…", expected u32` becomes `invalid type (the value is left out),
/// expected u32`. A poison message's values (a card number in the wrong field, a megabyte of
/// text) would otherwise be copied into every log line and error that names the failure. What
/// was expected, and where, stays (see `powertools_core::serde_message`).
fn without_values(error: &serde_json::Error) -> String {
    powertools_core::serde_message::without_values(&error.to_string())
}

/// The failure reason of a record whose handler panicked.
fn panicked(panic: &(dyn std::any::Any + Send)) -> String {
    match powertools_core::error_chain::panic_description(panic).as_deref() {
        Some("") => "the record's handler panicked (with an empty message)".to_owned(),
        Some(message) => format!("the record's handler panicked: {message}"),
        None => format!(
            "the record's handler panicked (with {})",
            powertools_core::error_chain::UNREADABLE_PANIC
        ),
    }
}

#[cfg(feature = "metrics")]
fn record_counts(processed: usize, failed: usize) {
    use powertools_metrics::{Metrics, Unit};
    let Some(metrics) = Metrics::current() else {
        // Said once per process, not per batch: a function without metrics would otherwise
        // warn on every invocation (found by an attack: the counts went without a word).
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "The batch's counts (BatchRecordsProcessed, BatchRecordsFailed) are not \
                 recorded: no MetricsLayer runs around this handler. Add one, or turn off \
                 powertools-batch's default `metrics` feature (said once per process)."
            );
        });
        return;
    };
    // Each on its own: a handler's metric of one of these names (another unit) refuses that
    // count only, and the warning names it (chained, a clash on the first lost both, with a
    // warning naming neither; found by an attack from the docs).
    for (name, count) in [
        ("BatchRecordsProcessed", processed),
        ("BatchRecordsFailed", failed),
    ] {
        if let Err(error) = metrics.add_metric(name, count as f64, Unit::Count) {
            tracing::warn!(%error, "the batch's {name} count ({count}) is not recorded");
        }
    }
}

#[cfg(not(feature = "metrics"))]
fn record_counts(_processed: usize, _failed: usize) {}

/// Says once per process that [`BatchProcessor::skip_group_on_error`] does not apply to a batch
/// that is not a FIFO queue's: it was ignored without a word, where Python's option belongs to
/// the FIFO processor the user chose, and applies (found by a new function written from the
/// docs, on an event built by hand).
fn warn_skip_group_not_fifo() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "BatchProcessor::skip_group_on_error(true) applies to an SQS FIFO queue's records, \
             and this batch is not one (no record's source ARN ends in .fifo, none has the \
             SequenceNumber attribute): its records ran as a standard queue's; for an event built \
             by hand, set fifo(true) (said once per process)"
        );
    });
}
#[cfg(test)]
mod tests {
    use super::{RecordId, guarded, panicked, without_values};

    /// A panic with a payload that is not text (`panic_any(42)`) says so, rather than ending
    /// the reason with a colon and nothing after it.
    #[test]
    fn a_panic_without_text_says_so_in_the_reason() {
        assert_eq!(
            panicked(&"the oven caught fire"),
            "the record's handler panicked: the oven caught fire"
        );
        assert_eq!(
            panicked(&42_u32),
            "the record's handler panicked (with a payload that is neither text nor an error)"
        );
        assert_eq!(
            panicked(&std::io::Error::other("disk full")),
            "the record's handler panicked: disk full"
        );
        assert_eq!(
            panicked(&String::new()),
            "the record's handler panicked (with an empty message)"
        );
    }

    /// A body whose `Deserialize` panics, quoting the body: read quietly (the panic hook does
    /// not print the message) and failed as a body that does not read, without the message,
    /// which was the reason's (`the record's handler panicked: …4111…`) and blamed the handler
    /// (found by a review).
    #[test]
    fn a_body_whose_deserialize_panics_fails_without_the_panic_s_message() {
        use crate::raw::RecordBody;
        #[derive(Debug)]
        struct Loud;
        impl<'de> serde::Deserialize<'de> for Loud {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let body = String::deserialize(deserializer)?;
                assert!(powertools_core::failure::panics_are_quiet(), "read quietly");
                panic!("cannot read {body}");
            }
        }
        let error = Loud::read(br#""card 4111111111111111""#).expect_err("it panicked");
        assert!(error.to_string().contains("panicked"), "{error}");
        // The record's reason says so, without the message and without blaming the handler
        // (`without_values` left out the whole reason: found by a review).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let (_, outcome) = runtime.block_on(guarded(RecordId::Message("m-1".to_owned()), || {
            Loud::read(br#""card 4111111111111111""#)
                .map(|_| async { Ok::<(), std::convert::Infallible>(()) })
                .map_err(|error| (error, None))
        }));
        let reason = outcome.expect_err("the record failed");
        assert!(
            reason.contains("panicked") && reason.contains("body"),
            "{reason}"
        );
        assert!(
            !reason.contains("4111") && !reason.contains("handler"),
            "{reason}"
        );
        // Without `BatchProcessor::new` (its `Default`, a copy): the hook is there all the same.
        assert!(powertools_core::failure::quiet_panic_hook_installed());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only by serde
    enum Size {
        Small,
        Large { loaves: u32 },
    }

    fn reason<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        without_values(&serde_json::from_str::<T>(json).expect_err("not a T"))
    }

    #[test]
    fn names_and_values_from_the_body_are_left_out_and_what_was_expected_stays() {
        let secret = "4111111111111111";
        for (json, expected) in [
            (
                format!(r#"{{"{secret}": 1}}"#),
                "unknown variant (its name is left out), expected `Small` or `Large` at line 1 column 19",
            ),
            (
                format!(r#"{{"Large": {{"{secret}": 1}}}}"#),
                "unknown field (its name is left out), expected `loaves` at line 1 column 29",
            ),
            (
                format!(r#"{{"Large": {{"loaves": "{secret}"}}}}"#),
                "invalid type (the value is left out), expected u32 at line 1 column 39",
            ),
        ] {
            let reason = reason::<Size>(&json);
            assert_eq!(reason, expected, "{json}");
            assert!(!reason.contains(secret));
        }
        // A type without fields or variants: serde's ending says nothing expected, so a
        // `, expected` in the body's name is not taken for serde's.
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Nothing {}
        #[derive(Debug, serde::Deserialize)]
        enum Never {}
        let injected = format!(r#"{{"x, expected {secret}": 1}}"#);
        assert_eq!(
            reason::<Nothing>(&injected),
            "unknown field (its name is left out), there are no fields at line 1 column 31"
        );
        let injected = format!(r#"{{"x, expected {secret}": null}}"#);
        assert!(!reason::<Never>(&injected).contains(secret));
        // A deserializer's own message, which may quote the value (chrono's does): left out.
        #[derive(Debug)]
        struct Stamp;
        impl<'de> serde::Deserialize<'de> for Stamp {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let seconds = <i64 as serde::Deserialize>::deserialize(deserializer)?;
                Err(serde::de::Error::custom(format!(
                    "value is not a legal timestamp: {seconds}"
                )))
            }
        }
        assert!(!reason::<Stamp>(secret).contains(secret));
        // Syntax errors and missing fields quote nothing: kept as serde_json says them.
        assert_eq!(
            reason::<Size>(r#"{"Large": {}}"#),
            "missing field `loaves` at line 1 column 12"
        );
        assert_eq!(
            reason::<Size>("{"),
            "EOF while parsing an object at line 1 column 1"
        );
    }
}
