//! What a record's body (SQS) or data (Kinesis) becomes before the handler gets it.

use serde::de::DeserializeOwned;

/// A record's body (SQS) or data (Kinesis) as Lambda sent it, not read as JSON: for queues of
/// CSV, XML or plain text, and streams of gzip (CloudWatch Logs subscriptions), protobuf or any
/// other bytes. Powertools for Python hands over `record.body` and the decoded Kinesis data
/// the same way. The handler reads it (and fails its record if it cannot); with any other `T`
/// the processor reads the body as JSON, and a body that is not JSON fails its record.
///
/// ```
/// use aws_lambda_events::sqs::SqsEvent;
/// use powertools_batch::{BatchProcessor, Raw, SqsRecord};
///
/// async fn import(record: SqsRecord<Raw>) -> Result<(), String> {
///     let line = record.body.as_str().ok_or("not text")?;
///     let fields: Vec<&str> = line.split(',').collect();
///     if fields.len() != 3 {
///         return Err(format!("{} fields, not 3", fields.len()));
///     }
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
///     {"messageId": "m-1", "body": "o-1,rye,2"},
///     {"messageId": "m-2", "body": "o-2,spelt"}
/// ]}))?;
/// let response = BatchProcessor::new().process_sqs(&event, import).await?;
/// assert_eq!(response.batch_item_failures[0].item_identifier, "m-2");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw(Vec<u8>);

impl Raw {
    /// The bytes as sent: an SQS body's UTF-8, or a Kinesis record's data, base64-decoded.
    ///
    /// ```
    /// let raw = powertools_batch::Raw::from(vec![0x1f, 0x8b]);
    /// assert_eq!(raw.as_bytes(), [0x1f, 0x8b]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text: always `Some` for an SQS body; `None` for data that is not UTF-8.
    ///
    /// ```
    /// use powertools_batch::Raw;
    ///
    /// assert_eq!(Raw::from("o-1,rye,2").as_str(), Some("o-1,rye,2"));
    /// assert_eq!(Raw::from(vec![0xff]).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The bytes, owned.
    ///
    /// ```
    /// assert_eq!(powertools_batch::Raw::from("a").into_bytes(), b"a");
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A record of given bytes (for a handler's unit tests).
impl From<Vec<u8>> for Raw {
    fn from(bytes: Vec<u8>) -> Self {
        Raw(bytes)
    }
}

/// A record of given text (for a handler's unit tests).
impl From<&str> for Raw {
    fn from(text: &str) -> Self {
        Raw(text.as_bytes().to_vec())
    }
}

/// What the handler of a record can take as its body (SQS) or data (Kinesis): [`Raw`], or any
/// type that deserializes from JSON. Sealed: implemented for those only.
pub trait RecordBody: Sized + sealed::Sealed {
    /// Reads the bytes of a record.
    #[doc(hidden)]
    fn read(bytes: &[u8]) -> Result<Self, serde_json::Error>;

    /// Where `bytes`, which did not [`read`](Self::read), went wrong (`lines[1].qty`), as the
    /// facade's invalid events name it; `None` when it cannot say.
    #[doc(hidden)]
    fn failure_path(bytes: &[u8]) -> Option<String> {
        let _ = bytes;
        None
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: serde::de::DeserializeOwned> Sealed for T {}
    impl Sealed for super::Raw {}
}

/// The error of a body whose `Deserialize` panicked (its message is left out).
pub(crate) const READ_PANICKED: &str =
    "reading it panicked (the panic's message is left out: it may quote the record)";

impl<T: DeserializeOwned> RecordBody for T {
    fn read(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        // A `Deserialize` that panics fails the record as a body that does not read, without
        // the panic's message (it may quote the record), which the panic hook does not print
        // either: read inside `quiet_panics`, with the hook that honours it installed here (a
        // processor built with `Default` never runs `new`; one atomic load once installed).
        powertools_core::failure::catch_quiet_panic(|| serde_json::from_slice(bytes))
            .unwrap_or_else(|_| {
                Err(<serde_json::Error as serde::de::Error>::custom(
                    READ_PANICKED,
                ))
            })
    }

    fn failure_path(bytes: &[u8]) -> Option<String> {
        // Read again, tracking the path (tracking on every record would cost each one), as
        // quietly and as contained as the first read: it runs the same `Deserialize`.
        let again = powertools_core::failure::catch_quiet_panic(|| {
            let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize::<_, T>(deserializer).map(drop)
        });
        let Ok(Err(error)) = again else {
            return None;
        };
        // An unknown field's name is the path's last key, and comes from the body.
        let unknown_field = error.inner().to_string().starts_with("unknown field `");
        Some(powertools_core::serde_message::shown_path(
            error.path(),
            unknown_field,
        ))
        .filter(|path| !path.is_empty())
    }
}

impl RecordBody for Raw {
    fn read(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(Raw(bytes.to_vec()))
    }
}
