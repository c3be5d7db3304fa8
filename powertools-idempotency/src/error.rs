use std::convert::Infallible;

use std::fmt;

use lambda_runtime::Diagnostic;

/// A boxed error from a persistence backend, kept as the `source` of [`Error::Persistence`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong around an idempotent handler.
///
/// `E` is the handler's own error, passed through unchanged as [`Error::Handler`]. The
/// `error_type` of each variant in a Lambda [`Diagnostic`] is the Powertools exception name, so
/// dashboards and retries written for Powertools keep working.
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// Another invocation with the same key is running; retry later: after `in_progress_until`
    /// at the latest (after `expires_at` for a record without it).
    AlreadyInProgress {
        /// The idempotency key.
        key: String,
        /// The running invocation's deadline, in epoch milliseconds: a retry after it runs the
        /// handler if that invocation has not completed. `None` for a record written without
        /// one (Powertools for Python writes such records when its function has not registered
        /// the Lambda context), which holds the key until it expires.
        in_progress_until: Option<i64>,
        /// When the record expires, in epoch seconds.
        expires_at: i64,
        /// The store that holds the record, as it names itself (`DynamoDB table
        /// orders-idempotency`); `None` for a store that does not
        /// ([`IdempotencyStore::describe_store`](crate::IdempotencyStore::describe_store)).
        store: Option<String>,
    },
    /// A record exists for the key but its validation data differs (same order id, different
    /// amount, for example).
    PayloadMismatch {
        /// The idempotency key.
        key: String,
    },
    /// The key extraction found no data and `raise_on_missing_key` is set.
    KeyMissing {
        /// Where the key was looked for: "the JMESPath expression \`body.order_id\`", "the
        /// \`key_from\` closure", "the argument of \`run\`".
        looked_in: String,
    },
    /// A JMESPath key or validation expression failed on this event (a function given the wrong
    /// type, a body that is not JSON for `powertools_json`, …). The handler did not run.
    KeyExpression {
        /// The expression, as written.
        expression: String,
        /// Why it failed.
        reason: String,
    },
    /// The store failed (unreachable, throttled, denied, …); the handler did not run, or its
    /// completion could not be recorded (see `operation`).
    Persistence {
        /// What was being done: `save the in-progress record`, `read the record`, ….
        operation: &'static str,
        /// The backend's error.
        source: BoxError,
    },
    /// The store answered inconsistently three times in a row (a record reported as existing,
    /// then missing, or expired between two reads).
    InconsistentState {
        /// The idempotency key.
        key: String,
        /// What the store answered the last time: which calls (the table, for DynamoDB), and
        /// how their answers disagree.
        answers: String,
    },
    /// A stored record is malformed: a missing attribute, a wrong type, an unknown status.
    InvalidRecord {
        /// The idempotency key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The event, key data or response could not be (de)serialized as JSON.
    Serialization {
        /// What was being (de)serialized.
        what: &'static str,
        /// The serde error (not chained as the error's `source()`: its message may quote the
        /// value).
        source: serde_json::Error,
    },
    /// A duplicate's stored response does not read as the handler's response type: the type
    /// changed since the record was stored (a deploy, or the layer and `run` sharing an
    /// operation), or the record was edited. The handler is not run again; duplicates get this
    /// error until the record expires or is deleted.
    StoredResponseUnreadable {
        /// The idempotency key (the record's partition key value).
        key: String,
        /// The handler's response type, as Rust names it.
        response_type: &'static str,
        /// When the record expires (epoch seconds).
        expires_at: i64,
        /// The serde error (not chained as the error's `source()`: its message may quote the
        /// stored response).
        source: serde_json::Error,
        /// The store that holds the record, as it names itself (`DynamoDB table
        /// orders-idempotency`); `None` for a store that does not
        /// ([`IdempotencyStore::describe_store`](crate::IdempotencyStore::describe_store)).
        store: Option<String>,
    },
    /// A duplicate of a call that succeeded but whose response could not be stored: over the
    /// store's item limit (DynamoDB: 400 KB), not representable as JSON (NaN, ±Infinity, a
    /// map with non-string keys), or its `Serialize` failed or panicked. The handler's side
    /// effects happened once and are not run again until the record expires; the first caller
    /// got the response. The record keeps why ([`DataRecord::not_stored_reason`]), which the
    /// error says; the first call's warning said it too.
    ///
    /// [`DataRecord::not_stored_reason`]: crate::DataRecord::not_stored_reason
    ResponseNotStored {
        /// The idempotency key.
        key: String,
        /// End of the idempotency window, in epoch seconds.
        expires_at: i64,
        /// Why the response was not stored, as the record keeps it; `None` for a record written
        /// by a version or a store that does not keep it.
        reason: Option<String>,
        /// The store that holds the record, as it names itself; `None` for a store that does
        /// not.
        store: Option<String>,
    },
    /// The handler succeeded but the store failed to record its completion. The in-progress
    /// record stays until `in_progress_until`: duplicates until then get
    /// [`AlreadyInProgress`](Error::AlreadyInProgress), and a retry after it runs the handler
    /// again (as in Powertools for Python).
    NotCompleted {
        /// The idempotency key.
        key: String,
        /// When the in-progress record stops blocking retries, in epoch milliseconds.
        in_progress_until: i64,
        /// The store's error.
        source: BoxError,
    },
    /// The configuration is invalid: reported when the layer or store is built, or by a call
    /// that names an invalid operation.
    Config(String),
    /// The handler panicked. Its claim was released so that a retry runs it again.
    HandlerPanicked {
        /// The panic message.
        message: String,
    },
    /// The handler was still running at the invocation's deadline, when its claim's
    /// in-progress deadline passes and a retry may take the record over: it was stopped there
    /// (dropped at its next `.await`), so that it never runs beside a retry. Lambda Managed
    /// Instances do not stop an invocation that times out; a standard function's environment
    /// ends with it. Lambda has answered the invoker with a timeout already.
    HandlerTimedOut {
        /// The idempotency key.
        key: String,
        /// The invocation's deadline, in epoch milliseconds.
        deadline_ms: i64,
    },
    /// The handler failed (or panicked) and releasing its in-progress record (replacing it with
    /// a record any retry claims, see [`IdempotencyStore::replace_with_fence`]) failed too: both
    /// errors are kept. The name is from when the record was deleted. Its `Display` says what
    /// follows: unless the release landed and only its answer was lost, duplicates get
    /// [`Error::AlreadyInProgress`] until the record's in-progress deadline (the invocation's
    /// deadline, or the in-progress fallback window without a trusted one), and a retry after it
    /// runs the handler again.
    ///
    /// [`IdempotencyStore::replace_with_fence`]: crate::IdempotencyStore::replace_with_fence
    DeleteFailed {
        /// The handler's failure.
        error: Box<Error<E>>,
        /// Why the release failed.
        source: BoxError,
    },
    /// The handler's own error, unchanged.
    Handler(E),
}

// `'static` so that a failed delete can write the handler's boxed error with its causes.
impl<E: fmt::Display + 'static> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DeleteFailed { error, source } => {
                // The handler's error with its causes, where they can be walked (a boxed or I/O
                // error): this message is all that is reported of it (found by an attack: a
                // `lambda_runtime::Error` chain was cut to its first message).
                let handler = match &**error {
                    Error::Handler(handler) => powertools_core::error_chain::display_chain(handler),
                    own => own.to_string(),
                };
                write!(
                    f,
                    "{handler}; releasing the in-progress record then failed too: \
                     {source}{RELEASE_FAILED_CONSEQUENCE}"
                )
            }
            Error::Handler(error) => error.fmt(f),
            own => OwnMessage(own).fmt(f),
        }
    }
}

/// As `#[derive(Debug)]` would write it, but for the serde errors, written without the value
/// their message quotes (the stored response's: a card number reached the failure line and the
/// trace through `Debug`; found by a review).
impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Handler(error) => f.debug_tuple("Handler").field(error).finish(),
            // With the handler's error, which the report's `Debug` leaves out (a review).
            Error::DeleteFailed { error, source } => delete_failed_debug(f, &**error, source),
            own => OwnDebug(own).fmt(f),
        }
    }
}

/// The reasons this crate gives in a [`Error::Serialization`] (a float JSON cannot hold, an
/// integer beyond 64 bits, with what to do), which quote nothing of the value but the float.
const OWN_SERIALIZATION_REASONS: [&str; 2] = ["it holds ", "an integer beyond 64 bits"];

/// Why the key or validation data did not serialize, without what a `Serialize`
/// implementation's own message may quote (a card number): the crate's own reasons and serde's
/// are kept (a review found the first left out, then the second quoted).
fn serialization_reason(message: &str) -> std::borrow::Cow<'_, str> {
    if OWN_SERIALIZATION_REASONS
        .iter()
        .any(|own| message.starts_with(own))
    {
        return std::borrow::Cow::Borrowed(message);
    }
    match powertools_core::serde_message::without_quoted_values(message) {
        std::borrow::Cow::Owned(without) => std::borrow::Cow::Owned(without),
        std::borrow::Cow::Borrowed(_) => {
            std::borrow::Cow::Borrowed(powertools_core::serde_message::serialize_reason(message))
        }
    }
}

/// A serde error as its `Debug` writes it (`Error("…", line: 1, column: 26)`), its message
/// without the value it quotes.
struct SerdeDebug<'e>(&'e serde_json::Error);

impl fmt::Debug for SerdeDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0;
        let message = powertools_core::serde_message::without_values(&error.to_string());
        // `Display` ends with the position, which `Debug` gives as fields.
        let position = format!(" at line {} column {}", error.line(), error.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        // On one line in both modes, as serde_json writes it.
        write!(
            f,
            "Error({message:?}, line: {}, column: {})",
            error.line(),
            error.column()
        )
    }
}

/// The `Debug` text of an error of the layer's own, as [`Error`]'s `Debug` writes it but without
/// a `Debug` bound on the handler's error (which such an error does not hold), for the layers
/// outside to recognise it by (`error::tests::the_own_debug_text_is_the_derived_one`).
struct OwnDebug<'e, E>(&'e Error<E>);

impl<E> fmt::Debug for OwnDebug<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::AlreadyInProgress {
                key,
                in_progress_until,
                expires_at,
                store,
            } => f
                .debug_struct("AlreadyInProgress")
                .field("key", key)
                .field("in_progress_until", in_progress_until)
                .field("expires_at", expires_at)
                .field("store", store)
                .finish(),
            Error::PayloadMismatch { key } => {
                f.debug_struct("PayloadMismatch").field("key", key).finish()
            }
            Error::KeyMissing { looked_in } => f
                .debug_struct("KeyMissing")
                .field("looked_in", looked_in)
                .finish(),
            Error::KeyExpression { expression, reason } => f
                .debug_struct("KeyExpression")
                .field("expression", expression)
                .field("reason", reason)
                .finish(),
            Error::Persistence { operation, source } => f
                .debug_struct("Persistence")
                .field("operation", operation)
                .field("source", source)
                .finish(),
            Error::InconsistentState { key, answers } => f
                .debug_struct("InconsistentState")
                .field("key", key)
                .field("answers", answers)
                .finish(),
            Error::InvalidRecord { key, reason } => f
                .debug_struct("InvalidRecord")
                .field("key", key)
                .field("reason", reason)
                .finish(),
            Error::Serialization { what, source } => f
                .debug_struct("Serialization")
                .field("what", what)
                .field("source", &SerdeDebug(source))
                .finish(),
            Error::StoredResponseUnreadable {
                key,
                response_type,
                expires_at,
                source,
                store,
            } => f
                .debug_struct("StoredResponseUnreadable")
                .field("key", key)
                .field("response_type", response_type)
                .field("expires_at", expires_at)
                .field("source", &SerdeDebug(source))
                .field("store", store)
                .finish(),
            Error::ResponseNotStored {
                key,
                expires_at,
                reason,
                store,
            } => f
                .debug_struct("ResponseNotStored")
                .field("key", key)
                .field("expires_at", expires_at)
                .field("reason", reason)
                .field("store", store)
                .finish(),
            Error::NotCompleted {
                key,
                in_progress_until,
                source,
            } => f
                .debug_struct("NotCompleted")
                .field("key", key)
                .field("in_progress_until", in_progress_until)
                .field("source", source)
                .finish(),
            Error::Config(message) => f.debug_tuple("Config").field(message).finish(),
            Error::HandlerTimedOut { key, deadline_ms } => f
                .debug_struct("HandlerTimedOut")
                .field("key", key)
                .field("deadline_ms", deadline_ms)
                .finish(),
            Error::HandlerPanicked { message } => f
                .debug_struct("HandlerPanicked")
                .field("message", message)
                .finish(),
            Error::DeleteFailed { error, source } => {
                delete_failed_debug(f, &OwnDebug(&**error), source)
            }
            // Not an error of the layer's own: `reported` leaves it out.
            Error::Handler(_) => f.write_str("Handler(..)"),
        }
    }
}

/// [`Error::DeleteFailed`]'s `Debug` text with `error` as the error it holds: one writer for
/// [`Error`]'s `Debug`, [`OwnDebug`] and the report around the handler's error, which the
/// layers outside find by that text.
fn delete_failed_debug(
    f: &mut fmt::Formatter<'_>,
    error: &dyn fmt::Debug,
    source: &BoxError,
) -> fmt::Result {
    f.debug_struct("DeleteFailed")
        .field("error", error)
        .field("source", source)
        .finish()
}

/// What a failed release means for the callers after it, as [`Error::NotCompleted`] says it.
const RELEASE_FAILED_CONSEQUENCE: &str = "; unless the release landed and only its answer was \
     lost, duplicates get IdempotencyAlreadyInProgressError until the record's in-progress \
     deadline, and a retry after it runs the handler again";

/// ` (in DynamoDB table orders-idempotency)`: where a record is, when its store says.
struct InStore<'a>(&'a Option<String>);

impl fmt::Display for InStore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(store) => write!(f, " (in {store})"),
            None => Ok(()),
        }
    }
}

/// The message of an error of the layer's own: not the handler's error, nor one that holds it
/// (which [`Error::reported`] leaves out), so that it needs no `Display` of the handler's error.
struct OwnMessage<'e, E>(&'e Error<E>);

impl<E> fmt::Display for OwnMessage<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // Python's words first, for the queries written for them; then where the record is
            // and when a retry may run, which Python leaves out.
            Error::AlreadyInProgress {
                key,
                in_progress_until,
                expires_at,
                store,
            } => {
                write!(
                    f,
                    "execution already in progress with idempotency key {key}{}: ",
                    InStore(store)
                )?;
                // Held until the deadline or the record's expiry, whichever comes first: an
                // expired record is taken whatever its deadline (a review found "until its
                // deadline" for a record that expired before it).
                // Expired once the second of `expires_at` is over (`DataRecord::state_at`).
                let expired_ms = expires_at.saturating_add(1).saturating_mul(1000);
                match in_progress_until {
                    Some(deadline_ms) if *deadline_ms < expired_ms => write!(
                        f,
                        "the running invocation holds it until its deadline, {} (epoch ms \
                         {deadline_ms}); retry after then, or once it completed",
                        crate::record::rfc3339_millis(*deadline_ms)
                    ),
                    Some(deadline_ms) => write!(
                        f,
                        "the running invocation holds it until the record expires at {} (epoch \
                         {expires_at}), before its deadline ({}); retry after then, or once it \
                         completed",
                        crate::record::rfc3339_seconds(*expires_at),
                        crate::record::rfc3339_millis(*deadline_ms)
                    ),
                    None => write!(
                        f,
                        "the record has no in-progress deadline (not written by this crate, or \
                         by a function that did not register the Lambda context), so it holds \
                         the key until it expires at {} (epoch {expires_at}), unless its \
                         invocation completes",
                        crate::record::rfc3339_seconds(*expires_at)
                    ),
                }
            }
            Error::PayloadMismatch { key } => {
                write!(
                    f,
                    "payload does not match the stored record for idempotency key {key}"
                )
            }
            Error::KeyMissing { looked_in } => write!(
                f,
                "no data found to create a hashed idempotency key: {looked_in} gave null, an \
                 empty string, object or array, or only nulls"
            ),
            Error::KeyExpression { expression, reason } => {
                write!(f, "JMESPath expression `{expression}` failed: {reason}")
            }
            Error::Persistence { operation, source } => {
                write!(f, "idempotency store failed to {operation}: {source}")
            }
            Error::InconsistentState { key, answers } => {
                write!(
                    f,
                    "the idempotency store returned inconsistent results for key {key}: {answers}"
                )
            }
            Error::InvalidRecord { key, reason } => {
                write!(f, "stored idempotency record {key} is invalid: {reason}")
            }
            // serde's words without the value they quote; the crate's own reasons (a NaN, an
            // integer beyond 64 bits, with what to do) kept (a review found them left out).
            Error::Serialization { what, source } => {
                write!(
                    f,
                    "could not serialize or deserialize the {what} as JSON: {}",
                    serialization_reason(&source.to_string())
                )
            }
            Error::StoredResponseUnreadable {
                key,
                response_type,
                expires_at,
                source,
                store,
            } => {
                // Text that is not JSON at all was not written by this crate's serializer (a
                // record written by hand or by another tool); JSON of another shape was, for
                // another response type.
                let hint = match source.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                        "the stored text is not JSON: was the record written by something else?"
                    }
                    _ => "was the response type changed since it was stored?",
                };
                // serde's words without the stored value they quote (a card number in the
                // response; found by an audit from the docs).
                write!(
                    f,
                    "the stored response of idempotency key {key}{} does not read as \
                     {response_type}: {}; the handler does not run again, and duplicates \
                     get this error until the record expires at {} (epoch {expires_at}) or is \
                     deleted ({hint})",
                    InStore(store),
                    powertools_core::serde_message::without_values(&source.to_string()),
                    crate::record::rfc3339_seconds(*expires_at)
                )
            }
            Error::ResponseNotStored {
                key,
                expires_at,
                reason,
                store,
            } => {
                write!(
                    f,
                    "the first call with idempotency key {key}{} succeeded, but its response \
                     could not be stored",
                    InStore(store)
                )?;
                match reason.as_deref().filter(|reason| !reason.trim().is_empty()) {
                    Some(reason) => write!(f, ": {reason}")?,
                    None => f.write_str(
                        " (over the item size limit, not valid JSON, or its serialization \
                         failed: the warning that call logged says which)",
                    )?,
                }
                write!(
                    f,
                    "; the handler does not run again before the record expires at {} (epoch \
                     {expires_at})",
                    crate::record::rfc3339_seconds(*expires_at)
                )
            }
            Error::NotCompleted {
                key,
                in_progress_until,
                source,
            } => write!(
                f,
                "the handler succeeded but the idempotency store failed to save the completed \
                 record for key {key}: {source}; unless the write landed and only its answer was \
                 lost (then duplicates get the response), the record stays in progress until {} \
                 (epoch ms {in_progress_until}): duplicates before then get \
                 IdempotencyAlreadyInProgressError, and a retry after it runs the handler again",
                crate::record::rfc3339_millis(*in_progress_until)
            ),
            Error::Config(message) => write!(f, "invalid idempotency configuration: {message}"),
            Error::HandlerPanicked { message } => write!(f, "the handler panicked: {message}"),
            Error::HandlerTimedOut { key, deadline_ms } => write!(
                f,
                "the handler for idempotency key {key} was still running at the invocation's \
                 deadline, {} (epoch ms {deadline_ms}), and was stopped there: a retry may take \
                 its record over from then on, and must not run beside it (Lambda Managed \
                 Instances do not stop an invocation that times out)",
                crate::record::rfc3339_millis(*deadline_ms)
            ),
            Error::DeleteFailed { error, source } => {
                write!(
                    f,
                    "{}; releasing the in-progress record then failed too: \
                     {source}{RELEASE_FAILED_CONSEQUENCE}",
                    OwnMessage(&**error)
                )
            }
            Error::Handler(_) => Ok(()),
        }
    }
}

// Bounded on `Display`, not `Error`, so that handlers returning `lambda_runtime::Error` (a boxed
// error, which is not itself `Error`) get an idempotency error that is.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Persistence { source, .. }
            | Error::DeleteFailed { source, .. }
            | Error::NotCompleted { source, .. } => Some(source.as_ref()),
            // Not the serde errors: their messages quote the value (the stored response's, the
            // event's), which the message above leaves out, and a chain printed whole (a
            // failure line's `exception`) would bring it back. They stay in the fields.
            _ => None,
        }
    }
}

impl<E> Error<E> {
    /// The stable identifier of the error kind: the Powertools exception name, or
    /// `"Handler"` for the handler's own error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::AlreadyInProgress { .. } => "IdempotencyAlreadyInProgressError",
            Error::PayloadMismatch { .. } => "IdempotencyValidationError",
            Error::KeyMissing { .. } => "IdempotencyKeyError",
            Error::KeyExpression { .. } => "IdempotencyKeyExpressionError",
            Error::Persistence { .. } => "IdempotencyPersistenceLayerError",
            Error::InconsistentState { .. } => "IdempotencyInconsistentStateError",
            Error::InvalidRecord { .. } => "IdempotencyInvalidStatusError",
            Error::Serialization { .. } | Error::StoredResponseUnreadable { .. } => {
                "IdempotencySerializationError"
            }
            Error::ResponseNotStored { .. } => "IdempotencyResponseNotStoredError",
            Error::NotCompleted { .. } => "IdempotencyPersistenceLayerError",
            Error::Config(_) => "IdempotencyConfigurationError",
            Error::HandlerPanicked { .. } => "HandlerPanicked",
            Error::HandlerTimedOut { .. } => "IdempotencyHandlerTimeoutError",
            Error::DeleteFailed { .. } => "IdempotencyPersistenceLayerError",
            Error::Handler(_) => "Handler",
        }
    }

    /// What Lambda reports for this error (its `Diagnostic`), for the layers outside the
    /// idempotency layer that describe the failure; `None` for the handler's own error. A failed
    /// release after the handler's own error is reported around it
    /// ([`handler_within`](powertools_core::failure::Reported::handler_within)): this layer
    /// cannot write that error (no `Debug` or `Display` bound on it), and the layers outside
    /// describe it and put it first (found in session 30: they named it `DeleteFailed`, and
    /// wrote the store error's whole `Debug`, where Lambda reports
    /// `IdempotencyPersistenceLayerError`).
    pub(crate) fn reported(&self) -> Option<powertools_core::failure::Reported> {
        fn own<E>(error: &Error<E>) -> bool {
            match error {
                Error::Handler(_) => false,
                Error::DeleteFailed { error, .. } => own(error),
                _ => true,
            }
        }
        if let Error::DeleteFailed { error, source } = self
            && matches!(**error, Error::Handler(_))
        {
            // Its `Debug` text as `Debug` writes it, split where the handler's error goes
            // (`DeleteFailed { error: Handler(` … `), source: … }`), and what `Display` writes
            // after the handler's words.
            const HANDLER: &str = "\u{0}handler\u{0}";
            struct Placeholder;
            impl fmt::Debug for Placeholder {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(HANDLER)
                }
            }
            struct Around<'s>(&'s BoxError);
            impl fmt::Debug for Around<'_> {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    delete_failed_debug(f, &Error::<Placeholder>::Handler(Placeholder), self.0)
                }
            }
            let text = format!("{:?}", Around(source));
            let (debug, debug_end) = text.split_once(HANDLER)?;
            return Some(powertools_core::failure::Reported {
                debug: debug.to_owned(),
                debug_end: debug_end.to_owned(),
                handler_within: true,
                error_type: self.error_type(),
                message: format!(
                    "; releasing the in-progress record then failed too: \
                     {source}{RELEASE_FAILED_CONSEQUENCE}"
                ),
                panicked: false,
            });
        }
        own(self).then(|| powertools_core::failure::Reported {
            debug: format!("{:?}", OwnDebug(self)),
            debug_end: String::new(),
            handler_within: false,
            error_type: self.error_type(),
            message: OwnMessage(self).to_string(),
            panicked: self.holds_panic(),
        })
    }

    /// Whether this is the handler's panic, or a failed delete after it.
    fn holds_panic(&self) -> bool {
        match self {
            Error::HandlerPanicked { .. } => true,
            Error::DeleteFailed { error, .. } => error.holds_panic(),
            _ => false,
        }
    }

    /// The same error for a handler with another error type; `None` for [`Error::Handler`].
    pub(crate) fn without_handler<F>(self) -> Result<Error<F>, E> {
        Ok(match self {
            Error::AlreadyInProgress {
                key,
                in_progress_until,
                expires_at,
                store,
            } => Error::AlreadyInProgress {
                key,
                in_progress_until,
                expires_at,
                store,
            },
            Error::PayloadMismatch { key } => Error::PayloadMismatch { key },
            Error::KeyMissing { looked_in } => Error::KeyMissing { looked_in },
            Error::KeyExpression { expression, reason } => {
                Error::KeyExpression { expression, reason }
            }
            Error::Persistence { operation, source } => Error::Persistence { operation, source },
            Error::InconsistentState { key, answers } => Error::InconsistentState { key, answers },
            Error::InvalidRecord { key, reason } => Error::InvalidRecord { key, reason },
            Error::Serialization { what, source } => Error::Serialization { what, source },
            Error::StoredResponseUnreadable {
                key,
                response_type,
                expires_at,
                source,
                store,
            } => Error::StoredResponseUnreadable {
                key,
                response_type,
                expires_at,
                source,
                store,
            },
            Error::ResponseNotStored {
                key,
                expires_at,
                reason,
                store,
            } => Error::ResponseNotStored {
                key,
                expires_at,
                reason,
                store,
            },
            Error::NotCompleted {
                key,
                in_progress_until,
                source,
            } => Error::NotCompleted {
                key,
                in_progress_until,
                source,
            },
            Error::Config(message) => Error::Config(message),
            Error::HandlerPanicked { message } => Error::HandlerPanicked { message },
            Error::HandlerTimedOut { key, deadline_ms } => {
                Error::HandlerTimedOut { key, deadline_ms }
            }
            Error::DeleteFailed { error, source } => Error::DeleteFailed {
                error: Box::new(error.without_handler()?),
                source,
            },
            Error::Handler(error) => return Err(error),
        })
    }
}

impl Error<Infallible> {
    /// Widens an error that cannot hold a handler error to any handler error type.
    pub fn into_handler_error<E>(self) -> Error<E> {
        match self.without_handler() {
            Ok(error) => error,
            Err(never) => match never {},
        }
    }
}

impl<E: fmt::Display + 'static> Error<E> {
    /// What Lambda reports for this error, as its `Into<Diagnostic>` says, but by reference:
    /// `handler` describes the handler's own error. For the layers that name a failure without
    /// consuming it (`PowertoolsLayer::error_diagnostic`, `LoggingLayer::error_diagnostic`).
    ///
    /// ```
    /// use lambda_runtime::Diagnostic;
    /// use powertools_idempotency::Error;
    ///
    /// fn declined(reason: &String) -> Diagnostic {
    ///     Diagnostic { error_type: "Declined".to_owned(), error_message: reason.clone() }
    /// }
    ///
    /// let handler: Error<String> = Error::Handler("card declined".to_owned());
    /// assert_eq!(handler.diagnostic_with(declined).error_type, "Declined");
    /// let busy: Error<String> = Error::AlreadyInProgress {
    ///     key: "orders#k".to_owned(),
    ///     in_progress_until: Some(1_796_156_400_000),
    ///     expires_at: 1_796_160_000,
    ///     store: Some("DynamoDB table orders-idempotency".to_owned()),
    /// };
    /// let diagnostic = busy.diagnostic_with(declined);
    /// assert_eq!(diagnostic.error_type, "IdempotencyAlreadyInProgressError");
    /// assert_eq!(diagnostic.error_message, busy.to_string());
    /// ```
    pub fn diagnostic_with(&self, handler: impl FnOnce(&E) -> Diagnostic) -> Diagnostic {
        match self {
            Error::Handler(error) => handler(error),
            other => Diagnostic {
                error_type: other.error_type().to_owned(),
                error_message: other.to_string(),
            },
        }
    }
}

impl<E: Into<Diagnostic> + std::fmt::Display + 'static> From<Error<E>> for Diagnostic {
    fn from(error: Error<E>) -> Self {
        match error {
            // A string as `Error`, a box by the error inside, as the layers name them
            // (`lambda_runtime` names a `String` `&alloc::string::String`; found by an attack
            // from the docs).
            Error::Handler(inner) => powertools_core::failure::handler_diagnostic(inner),
            other => Diagnostic {
                error_type: other.error_type().to_owned(),
                error_message: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_errors() -> Vec<Error<String>> {
        let source = || BoxError::from("the table was not found");
        let json = || serde_json::from_str::<u8>("\"not a number\"").unwrap_err();
        vec![
            Error::AlreadyInProgress {
                key: "orders#\"k\"\n".to_owned(),
                in_progress_until: Some(1_796_156_400_000),
                expires_at: 1_796_160_000,
                store: Some("DynamoDB table t".to_owned()),
            },
            Error::AlreadyInProgress {
                key: "k".to_owned(),
                in_progress_until: None,
                expires_at: 1_796_160_000,
                store: None,
            },
            Error::PayloadMismatch {
                key: "k".to_owned(),
            },
            Error::KeyMissing {
                looked_in: "the `key_from` closure".to_owned(),
            },
            Error::KeyExpression {
                expression: "powertools_json(body).order_id".to_owned(),
                reason: "invalid JSON".to_owned(),
            },
            Error::Persistence {
                operation: "save the in-progress record",
                source: source(),
            },
            Error::InconsistentState {
                key: "k".to_owned(),
                answers: "the claim was refused, then no record was found".to_owned(),
            },
            Error::InvalidRecord {
                key: "k".to_owned(),
                reason: "no status".to_owned(),
            },
            Error::Serialization {
                what: "response",
                source: json(),
            },
            Error::StoredResponseUnreadable {
                key: "k".to_owned(),
                response_type: "u8",
                expires_at: 7,
                source: json(),
                store: Some("DynamoDB table orders".to_owned()),
            },
            Error::ResponseNotStored {
                key: "k".to_owned(),
                expires_at: -1,
                reason: None,
                store: None,
            },
            Error::NotCompleted {
                key: "k".to_owned(),
                in_progress_until: 7,
                source: source(),
            },
            Error::Config("an empty table name".to_owned()),
            Error::HandlerPanicked {
                message: "oven on fire".to_owned(),
            },
            Error::HandlerTimedOut {
                key: "k".to_owned(),
                deadline_ms: 7,
            },
            Error::DeleteFailed {
                error: Box::new(Error::HandlerPanicked {
                    message: "p".to_owned(),
                }),
                source: source(),
            },
        ]
    }

    /// The handler's own error converted with `?` into a `Diagnostic` (a handler returning
    /// `Result<_, Diagnostic>` around `run`): a string is `Error` and a box is named by the error
    /// inside, as the failure line names them; `lambda_runtime` alone names them by their Rust
    /// types (`&alloc::string::String`; found by an attack from the docs).
    #[test]
    fn a_handler_error_converts_into_the_diagnostic_the_layers_name() {
        let text = Diagnostic::from(Error::Handler("zero charge".to_owned()));
        assert_eq!(
            (text.error_type.as_str(), text.error_message.as_str()),
            ("Error", "zero charge")
        );
        assert_eq!(
            Diagnostic::from(Error::<&'static str>::Handler("zero")).error_type,
            "Error"
        );
        let boxed: lambda_runtime::Error = std::io::Error::other("disk full").into();
        let boxed = Diagnostic::from(Error::Handler(boxed));
        assert_eq!(
            (boxed.error_type.as_str(), boxed.error_message.as_str()),
            ("std::io::Error", "disk full")
        );
        let io = Diagnostic::from(Error::Handler(std::io::Error::other("disk full")));
        assert_eq!(io.error_type, "std::io::Error");
        let own = Diagnostic::from(Error::<String>::AlreadyInProgress {
            key: "k".to_owned(),
            in_progress_until: None,
            expires_at: 0,
            store: None,
        });
        assert_eq!(own.error_type, "IdempotencyAlreadyInProgressError");
    }

    /// A record that expires before its invocation's deadline (`expires_after` shorter than the
    /// function's timeout) is taken when it expires: the message says so, not "until its
    /// deadline" (found by a review).
    #[test]
    fn an_in_progress_record_is_held_until_its_deadline_or_its_expiry_whichever_is_first() {
        let busy = |deadline_ms: i64, expires_at: i64| {
            Error::<String>::AlreadyInProgress {
                key: "k".to_owned(),
                in_progress_until: Some(deadline_ms),
                expires_at,
                store: Some("DynamoDB table t".to_owned()),
            }
            .to_string()
        };
        let by_deadline = busy(1_796_156_400_000, 1_796_160_000);
        assert!(
            by_deadline.contains("(in DynamoDB table t)")
                && by_deadline.contains("until its deadline, 2026-12-01T20:20:00.000Z"),
            "{by_deadline}"
        );
        let by_expiry = busy(1_796_156_400_000, 1_796_156_100);
        assert!(
            by_expiry.contains("until the record expires at 2026-12-01T20:15:00.000Z"),
            "{by_expiry}"
        );
    }

    #[test]
    fn a_failed_release_says_what_duplicates_get_until_when() {
        let error = Error::DeleteFailed {
            error: Box::new(Error::Handler("card declined".to_owned())),
            source: BoxError::from("DynamoDB UpdateItem on table t failed: AccessDeniedException"),
        };
        let message = error.to_string();
        assert!(message.starts_with("card declined; releasing"), "{message}");
        assert!(
            message.contains(
                "duplicates get IdempotencyAlreadyInProgressError until the record's in-progress \
                 deadline"
            ),
            "{message}"
        );
        let own = Error::<String>::DeleteFailed {
            error: Box::new(Error::HandlerPanicked {
                message: "oven on fire".to_owned(),
            }),
            source: BoxError::from("throttled"),
        };
        let reported = own.reported().expect("an error of the layer's own");
        assert_eq!(reported.message, own.to_string());
        assert!(
            reported
                .message
                .contains("IdempotencyAlreadyInProgressError"),
            "{}",
            reported.message
        );
    }

    #[test]
    fn the_own_debug_text_is_the_derived_one() {
        // The layers outside recognise a report by the error's `Debug` text, which derive
        // writes: the hand-written one (without a `Debug` bound) must be the same, variant by
        // variant, in both modes.
        for error in own_errors() {
            assert_eq!(format!("{:?}", OwnDebug(&error)), format!("{error:?}"));
            assert_eq!(format!("{:#?}", OwnDebug(&error)), format!("{error:#?}"));
            let reported = error.reported().expect("an error of the layer's own");
            assert_eq!(reported.debug, format!("{error:?}"));
            assert_eq!(reported.message, error.to_string());
            assert_eq!(reported.error_type, error.error_type());
        }
        // The handler's error is the handler's to describe; a failed release after it is
        // reported around it: its `Debug` text found, the handler's between, and Lambda's
        // message after the handler's words.
        assert!(Error::Handler("declined".to_owned()).reported().is_none());
        let holds_it = Error::DeleteFailed {
            error: Box::new(Error::Handler("declined".to_owned())),
            source: BoxError::from("throttled"),
        };
        let reported = holds_it
            .reported()
            .expect("reported around the handler's error");
        let debug = format!("{holds_it:?}");
        assert!(reported.handler_within);
        assert_eq!(
            reported.handler_debug(&debug),
            Some("\"declined\""),
            "{debug}"
        );
        assert_eq!(
            format!("declined{}", reported.message),
            holds_it.to_string()
        );
        assert_eq!(reported.error_type, "IdempotencyPersistenceLayerError");
    }
}
