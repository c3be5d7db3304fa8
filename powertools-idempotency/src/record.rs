use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The status of a stored idempotency record.
///
/// Only these two are written; a record whose expiry has passed reads as expired through
/// [`DataRecord::state_at`], whatever it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The handler is running (or died without cleaning up: see the in-progress expiry).
    InProgress,
    /// The handler finished and its response is stored.
    Completed,
}

impl Status {
    /// The value stored in the status attribute, as every Powertools runtime writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "INPROGRESS",
            Status::Completed => "COMPLETED",
        }
    }

    /// Parses a stored status; `None` for anything else.
    pub fn from_wire(value: &str) -> Option<Self> {
        match value {
            "INPROGRESS" => Some(Status::InProgress),
            "COMPLETED" => Some(Status::Completed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a record means at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordState {
    /// Running, and its invocation's deadline (if known) has not passed.
    InProgress,
    /// Running according to the store, but its invocation's deadline has passed: the invocation
    /// timed out or crashed, and the record may be taken over.
    InProgressTimedOut,
    /// Completed, with a stored response.
    Completed,
    /// The idempotency window has ended; the record no longer counts.
    Expired,
}

/// One idempotency record, as the persistence layer stores it.
///
/// Built with [`DataRecord::new`] and the `with_*` setters (the fields are public to read and
/// change, and the struct is `#[non_exhaustive]`, so a field added later is not a breaking
/// change).
///
/// ```
/// use powertools_idempotency::{DataRecord, Status};
/// let record = DataRecord::new("orders.charge#4b08", Status::Completed, 1_796_160_000)
///     .with_response_data(r#"{"charged":true}"#)
///     .with_payload_hash("9f86d0");
/// assert_eq!(record.in_progress_expiry_timestamp, None);
/// ```
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataRecord {
    /// The idempotency key, `<prefix>.<operation>#<sha-256 hex>`.
    pub key: String,
    /// The stored status.
    pub status: Status,
    /// End of the idempotency window, in epoch **seconds** (the DynamoDB TTL attribute).
    pub expiry_timestamp: i64,
    /// The deadline of the invocation that holds the record, in epoch **milliseconds**, while it
    /// is in progress.
    pub in_progress_expiry_timestamp: Option<i64>,
    /// The handler's response as JSON, once completed.
    pub response_data: Option<String>,
    /// The SHA-256 hex digest of the validation data, when payload validation is on.
    pub payload_hash: Option<String>,
    /// A random id of the claim that wrote the record while it is in progress: a claim whose
    /// answer was lost and that the client sent again (the AWS SDK retries) finds this record
    /// and knows it for its own, where another invocation's claim is refused. A store keeps it
    /// as it keeps the other attributes (`DynamoDbStore`: the attribute `claim_id`).
    pub claim_id: Option<String>,
    /// Why a completed record holds no response: it could not be stored faithfully (over the
    /// item limit, a float JSON cannot hold, …), so that its duplicates' error
    /// ([`Error::ResponseNotStored`](crate::Error::ResponseNotStored)) says why, where only the
    /// first call's warning did. At most [`MAX_NOT_STORED_REASON_BYTES`] bytes. A store keeps
    /// it as it keeps the response (`DynamoDbStore`: the attribute `not_stored_reason`).
    pub not_stored_reason: Option<String>,
}

/// The most bytes of [`DataRecord::not_stored_reason`]: a reason may quote a `Serialize`
/// implementation's own error, whatever its length, and the record must stay far under the
/// store's item limit.
pub const MAX_NOT_STORED_REASON_BYTES: usize = 1024;

/// `reason` cut to at most [`MAX_NOT_STORED_REASON_BYTES`] bytes on a character boundary, with
/// `…` where it was cut; `None` when it is blank (it would say nothing). For the reason written
/// and the one read back alike: a store of the user's, or an item written by hand, may hold
/// anything.
pub(crate) fn not_stored_reason(reason: &str) -> Option<String> {
    if reason.trim().is_empty() {
        return None;
    }
    if reason.len() <= MAX_NOT_STORED_REASON_BYTES {
        return Some(reason.to_owned());
    }
    let end = powertools_core::text::floor_char_boundary(
        reason,
        MAX_NOT_STORED_REASON_BYTES - '…'.len_utf8(),
    );
    Some(format!("{}…", &reason[..end]))
}

impl Clone for DataRecord {
    fn clone(&self) -> Self {
        DataRecord {
            key: self.key.clone(),
            status: self.status,
            expiry_timestamp: self.expiry_timestamp,
            in_progress_expiry_timestamp: self.in_progress_expiry_timestamp,
            response_data: self.response_data.clone(),
            payload_hash: self.payload_hash.clone(),
            claim_id: self.claim_id.clone(),
            not_stored_reason: self.not_stored_reason.clone(),
        }
    }

    /// Field by field, so that a stored record updated in place keeps its strings' buffers.
    fn clone_from(&mut self, source: &Self) {
        self.key.clone_from(&source.key);
        self.status = source.status;
        self.expiry_timestamp = source.expiry_timestamp;
        self.in_progress_expiry_timestamp = source.in_progress_expiry_timestamp;
        self.response_data.clone_from(&source.response_data);
        self.payload_hash.clone_from(&source.payload_hash);
        self.claim_id.clone_from(&source.claim_id);
        self.not_stored_reason.clone_from(&source.not_stored_reason);
    }
}

impl DataRecord {
    /// A record with the given key, status and window end (epoch seconds), with no in-progress
    /// deadline, response or validation hash.
    pub fn new(key: impl Into<String>, status: Status, expiry_timestamp: i64) -> Self {
        DataRecord {
            key: key.into(),
            status,
            expiry_timestamp,
            in_progress_expiry_timestamp: None,
            response_data: None,
            payload_hash: None,
            claim_id: None,
            not_stored_reason: None,
        }
    }

    /// Sets the in-progress deadline, epoch milliseconds.
    #[must_use]
    pub fn with_in_progress_expiry(mut self, epoch_ms: i64) -> Self {
        self.in_progress_expiry_timestamp = Some(epoch_ms);
        self
    }

    /// Sets the stored response (JSON text).
    #[must_use]
    pub fn with_response_data(mut self, data: impl Into<String>) -> Self {
        self.response_data = Some(data.into());
        self
    }

    /// Sets the validation hash.
    #[must_use]
    pub fn with_payload_hash(mut self, hash: impl Into<String>) -> Self {
        self.payload_hash = Some(hash.into());
        self
    }

    /// What the record means at `now`.
    ///
    /// Expiry is checked here, not left to DynamoDB's TTL, which deletes items up to days late.
    pub fn state_at(&self, now: SystemTime) -> RecordState {
        let (now_s, now_ms) = epoch(now);
        if now_s > self.expiry_timestamp {
            return RecordState::Expired;
        }
        match self.status {
            Status::Completed => RecordState::Completed,
            Status::InProgress => match self.in_progress_expiry_timestamp {
                Some(deadline_ms) if deadline_ms < now_ms => RecordState::InProgressTimedOut,
                _ => RecordState::InProgress,
            },
        }
    }

    /// Whether a conditional put may replace this record at `now`: the DynamoDB condition
    /// `attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND
    /// attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_ms)`, evaluated in memory.
    pub fn replaceable_at(&self, now: SystemTime) -> bool {
        let (now_s, now_ms) = epoch(now);
        self.expiry_timestamp < now_s
            || (self.status == Status::InProgress
                && self
                    .in_progress_expiry_timestamp
                    .is_some_and(|deadline_ms| deadline_ms < now_ms))
    }

    /// Whether this stored record is still the in-progress claim `claim` (the condition of
    /// [`IdempotencyStore::delete`](crate::IdempotencyStore::delete), evaluated in memory): in
    /// progress, with the same claim id, or, for a claim without one, the same in-progress
    /// expiry.
    pub fn is_claim_of(&self, claim: &DataRecord) -> bool {
        self.status == Status::InProgress
            && match &claim.claim_id {
                Some(_) => self.claim_id == claim.claim_id,
                None => self.in_progress_expiry_timestamp == claim.in_progress_expiry_timestamp,
            }
    }

    /// Whether this stored record is a fence: what a failed handler's claim, or a claim whose
    /// write went unanswered, leaves in its place (in progress, with a claim id beginning
    /// `fence-`; a failed handler's keeps its claim's deadline, a taken-back claim's has the
    /// moment it was written). Any later claim takes it, by its id; it holds nothing, and blocks
    /// no retry. For tests that look into a store after a failure.
    ///
    /// ```
    /// use powertools_idempotency::{DataRecord, Status};
    /// let mut record = DataRecord::new("orders.charge#4b08", Status::InProgress, 1_796_160_000)
    ///     .with_in_progress_expiry(1_796_156_400_000);
    /// assert!(!record.is_fence());
    /// record.claim_id = Some("fence-5f0c".to_owned());
    /// assert!(record.is_fence());
    /// ```
    pub fn is_fence(&self) -> bool {
        self.status == Status::InProgress
            && self
                .claim_id
                .as_deref()
                .is_some_and(|id| id.starts_with(FENCE_ID_PREFIX))
    }

    /// Whether this stored record was written by the claim `claim` itself (in progress, with its
    /// claim id): its answer was lost and the client sent it again.
    pub fn is_written_by(&self, claim: &DataRecord) -> bool {
        self.status == Status::InProgress
            && self.claim_id.is_some()
            && self.claim_id == claim.claim_id
    }
}

/// How the claim id of a fence begins (a claim's own is hex).
pub(crate) const FENCE_ID_PREFIX: &str = "fence-";

/// `(epoch seconds, epoch milliseconds)` of `time`, zero before 1970.
pub(crate) fn epoch(time: SystemTime) -> (i64, i64) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let millis = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    (secs, millis)
}

/// `epoch_s` as an RFC 3339 UTC time, for error messages.
pub(crate) fn rfc3339_seconds(epoch_s: i64) -> String {
    rfc3339_millis(epoch_s.saturating_mul(1000))
}

/// `epoch_ms` as an RFC 3339 UTC time with milliseconds, for error messages.
pub(crate) fn rfc3339_millis(epoch_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(epoch_ms).map_or_else(
        || format!("epoch ms {epoch_ms}"),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, expiry: i64, in_progress_ms: Option<i64>) -> DataRecord {
        DataRecord {
            key: "k".into(),
            status,
            expiry_timestamp: expiry,
            in_progress_expiry_timestamp: in_progress_ms,
            response_data: None,
            payload_hash: None,
            claim_id: None,
            not_stored_reason: None,
        }
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary_within_its_limit() {
        let short = "x".repeat(MAX_NOT_STORED_REASON_BYTES);
        assert_eq!(not_stored_reason(&short), Some(short));
        assert_eq!(not_stored_reason(" \n"), None);
        // `é` is two bytes: the limit falls inside one; 3 bytes of `…` need room too.
        let long = format!("a{}", "é".repeat(MAX_NOT_STORED_REASON_BYTES));
        let cut = not_stored_reason(&long).unwrap();
        assert!(cut.len() <= MAX_NOT_STORED_REASON_BYTES, "{}", cut.len());
        assert!(cut.len() > MAX_NOT_STORED_REASON_BYTES - 5, "{}", cut.len());
        assert!(cut.ends_with("é…"), "{cut}");
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn clone_from_gives_the_same_record_as_clone_whatever_was_there() {
        let full = DataRecord::new("orders.charge#ab", Status::Completed, 10)
            .with_response_data(r#"{"ok":true}"#)
            .with_payload_hash("9f86d0");
        let mut bare = record(Status::InProgress, 3, Some(7));
        let mut not_stored = record(Status::Completed, 5, None);
        not_stored.not_stored_reason = Some("over the item limit".into());
        let shapes = [
            full.clone(),
            bare.clone(),
            record(Status::Completed, 0, None),
            not_stored,
        ];
        for source in &shapes {
            for target in &shapes {
                let mut copy = target.clone();
                copy.clone_from(source);
                assert_eq!(&copy, source);
            }
        }
        bare.clone_from(&full);
        assert_eq!(bare, full);
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn a_record_expires_strictly_after_its_expiry_second() {
        let completed = record(Status::Completed, 100, None);
        assert_eq!(completed.state_at(at(100, 999)), RecordState::Completed);
        assert_eq!(completed.state_at(at(101, 0)), RecordState::Expired);
    }

    #[test]
    fn an_in_progress_record_times_out_after_its_invocation_deadline() {
        let running = record(Status::InProgress, 1_000, Some(50_500));
        assert_eq!(running.state_at(at(50, 500)), RecordState::InProgress);
        assert_eq!(
            running.state_at(at(50, 501)),
            RecordState::InProgressTimedOut
        );
        assert!(!running.replaceable_at(at(50, 500)));
        assert!(running.replaceable_at(at(50, 501)));
    }

    #[test]
    fn an_in_progress_record_without_deadline_holds_until_expiry() {
        let running = record(Status::InProgress, 100, None);
        assert_eq!(running.state_at(at(99, 0)), RecordState::InProgress);
        assert!(!running.replaceable_at(at(100, 0)));
        assert!(running.replaceable_at(at(101, 0)));
    }

    #[test]
    fn statuses_round_trip_through_their_wire_names() {
        for status in [Status::InProgress, Status::Completed] {
            assert_eq!(Status::from_wire(status.as_str()), Some(status));
        }
        assert_eq!(Status::from_wire("COMPLETE"), None);
        assert_eq!(
            Status::from_wire("EXPIRED"),
            None,
            "EXPIRED is derived, never stored"
        );
    }
}
