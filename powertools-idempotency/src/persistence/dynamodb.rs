use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use powertools_core::error_chain;

use super::{CallAnswers, IdempotencyStore, PutOutcome, StoreCall, StoreError};
use crate::record::{DataRecord, Status, epoch};
use crate::{BoxError, Error};

/// A failed invocation deletes its own claim only: a delete that reaches DynamoDB late must not
/// remove a later invocation's claim of the key, even one with the same deadline (records of one
/// batch).
pub(crate) const DELETE_CONDITION: &str = "#status = :inprogress AND #claim_id = :claim_id";
/// As [`DELETE_CONDITION`], for a claim written without a claim id (by code of the user's own).
pub(crate) const DELETE_CONDITION_WITHOUT_CLAIM_ID: &str =
    "#status = :inprogress AND #in_progress_expiry = :in_progress_expiry";
/// A completion writes its own claim only: one that reaches DynamoDB late must not overwrite a
/// later invocation's claim of the key. The same completion again (the SDK retrying a write
/// whose answer was lost) still matches.
pub(crate) const UPDATE_CONDITION: &str = "#claim_id = :claim_id";
/// A failed handler's claim replaced with a fence: the fence's status, deadline and claim id set,
/// its payload hash removed (a fence is never validated against); the expiry stays the claim's.
pub(crate) const FENCE_UPDATE: &str = "SET #status = :inprogress, \
     #in_progress_expiry = :fenced_at, #claim_id = :fence_id REMOVE #validation_key";
/// A claim in place of a fence, whatever the fence's deadline: only while it is that fence.
pub(crate) const OVER_FENCE_CONDITION: &str = "#status = :inprogress AND #claim_id = :fence_id";
/// As [`DELETE_CONDITION_WITHOUT_CLAIM_ID`], for a claim written without an in-progress expiry.
pub(crate) const DELETE_CONDITION_WITHOUT_EXPIRY: &str =
    "#status = :inprogress AND attribute_not_exists(#in_progress_expiry)";

/// The attribute of an in-progress record's claim id ([`DataRecord::claim_id`]).
pub(crate) const CLAIM_ID_ATTR: &str = "claim_id";
/// The attribute of why a completed record holds no response
/// ([`DataRecord::not_stored_reason`]).
pub(crate) const NOT_STORED_REASON_ATTR: &str = "not_stored_reason";

/// The conditional write that claims a key: no record, an expired one, or an in-progress one
/// whose invocation deadline has passed. The same three clauses as every Powertools runtime.
pub(crate) const PUT_CONDITION: &str = "attribute_not_exists(#id) OR #expiry < :now OR \
     (#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)";

/// Records in a DynamoDB table, claimed with one conditional `PutItem` that returns the existing
/// record when it fails (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so a duplicate costs
/// one request.
///
/// The table needs a string partition key (`id` by default) and TTL on the expiry attribute
/// (`expiration`); the function needs `dynamodb:GetItem`, `PutItem`, `UpdateItem` and
/// `DeleteItem` on it. Attribute names default to those of Powertools for Python, so one table
/// can serve functions in several languages (their keys differ, and their records do not collide,
/// unless a Python function is set to key as this crate does: see the crate's "Differences from
/// Powertools for Python and TypeScript").
///
/// A failed request is a [`DynamoDbError`] in [`StoreError::Backend`], whose message names the
/// operation, the table and the cause (DynamoDB's error code and message, or the endpoint and
/// the connection error); a write DynamoDB refuses for the 400 KB item limit is
/// [`StoreError::ItemTooLarge`].
///
/// ```no_run
/// # async fn example() -> Result<(), powertools_idempotency::Error> {
/// use powertools_idempotency::DynamoDbStore;
///
/// let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
/// let client = aws_sdk_dynamodb::Client::new(&config);
/// let store = DynamoDbStore::builder(client, "idempotency").build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    settings: Arc<Settings>,
    endpoint: EndpointRecorder,
}

#[derive(Debug)]
struct Settings {
    table_name: String,
    key_attr: String,
    sort_key_attr: Option<String>,
    static_pk_value: String,
    expiry_attr: String,
    in_progress_expiry_attr: String,
    status_attr: String,
    data_attr: String,
    validation_key_attr: String,
    /// Whether a read with the whole key succeeded (stores with a sort key only): see
    /// [`DynamoDbStore::check_key_schema`].
    key_schema_checked: AtomicBool,
}

/// Builder of a [`DynamoDbStore`]; invalid settings are rejected by [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct DynamoDbStoreBuilder {
    client: Client,
    table_name: String,
    key_attr: String,
    sort_key_attr: Option<String>,
    static_pk_value: Option<String>,
    expiry_attr: String,
    in_progress_expiry_attr: String,
    status_attr: String,
    data_attr: String,
    validation_key_attr: String,
}

/// Whether DynamoDB accepts `name` as a `TableName`: 3 to 255 of `[A-Za-z0-9_.-]`, or a table's
/// ARN (`arn:<partition>:dynamodb:<region>:<account>:table/<name>`, at most 1024 bytes).
fn is_table_name(name: &str) -> bool {
    let is_name = |name: &str| {
        (3..=255).contains(&name.len())
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
    };
    if name.len() > 1024 {
        return false;
    }
    let mut parts = name.splitn(6, ':');
    match std::array::from_fn::<_, 6, _>(|_| parts.next()) {
        [
            Some("arn"),
            Some(partition),
            Some("dynamodb"),
            Some(region),
            Some(account),
            Some(resource),
        ] if !partition.is_empty() && !region.is_empty() && !account.is_empty() => {
            resource.strip_prefix("table/").is_some_and(is_name)
        }
        _ => is_name(name),
    }
}

impl DynamoDbStore {
    /// A store on `table_name` with the default attribute names.
    ///
    /// # Errors
    /// [`Error::Config`] when the table name is empty or not one DynamoDB accepts (3 to 255
    /// letters, digits, `_`, `-` and `.`, or a table's ARN), or the client has no region
    /// (`AWS_REGION` unset or empty).
    pub fn new(client: Client, table_name: impl Into<String>) -> Result<Self, Error> {
        Self::builder(client, table_name).build()
    }

    /// A builder for a store on `table_name`, with a client the caller configured (region,
    /// endpoint, retries, credentials).
    pub fn builder(client: Client, table_name: impl Into<String>) -> DynamoDbStoreBuilder {
        DynamoDbStoreBuilder {
            client,
            table_name: table_name.into(),
            key_attr: "id".into(),
            sort_key_attr: None,
            static_pk_value: None,
            expiry_attr: "expiration".into(),
            in_progress_expiry_attr: "in_progress_expiration".into(),
            status_attr: "status".into(),
            data_attr: "data".into(),
            validation_key_attr: "validation".into(),
        }
    }

    fn key(&self, idempotency_key: &str) -> HashMap<String, AttributeValue> {
        let settings = &*self.settings;
        match &settings.sort_key_attr {
            None => HashMap::from([(
                settings.key_attr.clone(),
                AttributeValue::S(idempotency_key.to_owned()),
            )]),
            Some(sort_key_attr) => HashMap::from([
                (
                    settings.key_attr.clone(),
                    AttributeValue::S(settings.static_pk_value.clone()),
                ),
                (
                    sort_key_attr.clone(),
                    AttributeValue::S(idempotency_key.to_owned()),
                ),
            ]),
        }
    }

    /// Refuses, before any request, a key over DynamoDB's size limit for the attribute that
    /// holds it (2048 bytes for a partition key, 1024 for a sort key), naming what makes it
    /// long: sent, every invocation failed with DynamoDB's `ValidationException`, which names
    /// neither the prefix nor the operation (found by an attack from the docs). Such a request
    /// is never sent, so nothing is taken back.
    fn check_key_size(&self, operation: &'static str, key: &str) -> Result<(), StoreError> {
        let (limit, attribute) = match self.settings.sort_key_attr {
            None => (super::MAX_PARTITION_KEY_BYTES, "partition"),
            Some(_) => (MAX_SORT_KEY_BYTES, "sort"),
        };
        let Some(cause) = super::key_over_limit(key, limit, attribute) else {
            return Ok(());
        };
        Err(StoreError::Backend(Box::new(DynamoDbError::unsent(
            operation,
            &self.settings.table_name,
            cause,
        ))))
    }

    /// `error` of `operation` as a [`DynamoDbError`].
    fn failure<E>(
        &self,
        operation: &'static str,
        error: SdkError<E, HttpResponse>,
        sent: u32,
    ) -> DynamoDbError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.endpoint.describe(&self.client);
        let mut failure =
            DynamoDbError::new(operation, &self.settings.table_name, &endpoint, error);
        failure.worded_for(sent);
        // DynamoDB's message names no attribute of the store's (only, for a write, the table's
        // key it missed): say what the store sends as the key, and how to change it.
        if failure.code.as_deref() == Some("ValidationException")
            && (failure
                .cause
                .contains("key element does not match the schema")
                || failure.cause.contains("Missing the key"))
        {
            failure.cause.push_str(&format!(
                " ({}, which the table's key schema must match: key_attr and sort_key_attr \
                 name the store's)",
                self.describe_key()
            ));
        }
        failure
    }

    /// Reads the store's whole key before a claim of a store with a sort key, until one such
    /// read succeeded (for the store and its clones; claims that start before the first read
    /// answers each read). On a table keyed on the partition key alone, DynamoDB keeps the sort key
    /// as an attribute: the claim succeeds, the handler runs, and only the completion fails,
    /// after the side effect (and again after each in-progress deadline). A read with both key
    /// attributes is refused there (`ValidationException`, which [`failure`](Self::failure)
    /// names with the store's key), so no handler runs. Any other failure of the read fails the
    /// claim as its `PutItem` would, and the read is tried again on the next claim.
    async fn check_key_schema(&self, key: &str) -> Result<(), StoreError> {
        let settings = &*self.settings;
        let read = self
            .client
            .get_item()
            .table_name(&settings.table_name)
            .set_key(Some(self.key(key)))
            .projection_expression("#id")
            .expression_attribute_names("#id", &settings.key_attr)
            .send();
        let (read, sent) = counting_sends(read).await;
        read.map_err(|error| {
            // A read before the claim's PutItem: the claim was never sent.
            let mut failure = self.failure("GetItem", error, sent);
            failure.unsent = true;
            StoreError::Backend(Box::new(failure))
        })?;
        settings.key_schema_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether a claim reads the store's key first ([`check_key_schema`](Self::check_key_schema)):
    /// a store with a sort key whose read has not succeeded yet.
    fn key_read_pending(&self) -> bool {
        self.settings.sort_key_attr.is_some()
            && !self.settings.key_schema_checked.load(Ordering::Acquire)
    }

    /// The key this store writes: `partition key id`, or `partition key pk (always …) and sort
    /// key sk`.
    fn describe_key(&self) -> String {
        let settings = &*self.settings;
        match &settings.sort_key_attr {
            None => format!(
                "this store keys records on partition key {} alone (a string)",
                settings.key_attr
            ),
            Some(sort_key_attr) => format!(
                "this store keys records on partition key {} (always {:?}) and sort key {} \
                 (strings)",
                settings.key_attr, settings.static_pk_value, sort_key_attr
            ),
        }
    }

    /// `error` of a write of `key`: [`StoreError::ItemTooLarge`] when DynamoDB refused the item
    /// for its size, [`StoreError::Backend`] otherwise.
    fn write_failure<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
        sent: u32,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let too_large = is_item_too_large(&error);
        let error = self.failure(operation, error, sent);
        if too_large {
            StoreError::ItemTooLarge {
                key: key.to_owned(),
                reason: error.to_string(),
            }
        } else {
            StoreError::Backend(Box::new(error))
        }
    }

    /// The failure of a write conditional on a claim (its release: a delete, or its fence): `Ok`
    /// when the condition failed, as the record is no longer that claim (completed, or claimed
    /// again after its deadline) and is left as it is; otherwise the error, naming `operation`.
    fn unless_claim_replaced<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
        sent: u32,
    ) -> Result<(), StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if error
            .as_service_error()
            .and_then(ProvideErrorMetadata::code)
            == Some("ConditionalCheckFailedException")
        {
            tracing::debug!(key = %key, "the claim was already replaced: left as it is");
            return Ok(());
        }
        Err(StoreError::Backend(Box::new(
            self.failure(operation, error, sent),
        )))
    }

    /// What a claim's conditional `PutItem` (`put_in_progress`, `put_over_fence`) answered:
    /// stored, or refused with the record that holds the key (DynamoDB returns it with the
    /// refusal); a record of another key is the table's key schema, not a claim in the way.
    fn claim_answer(
        &self,
        record: &DataRecord,
        result: Result<PutItemOutput, SdkError<PutItemError, HttpResponse>>,
        sent: u32,
    ) -> Result<PutOutcome, StoreError> {
        let settings = &*self.settings;
        match result {
            Ok(_) => Ok(PutOutcome::Stored),
            Err(error) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failure)) =
                    error.as_service_error()
                {
                    let existing = failure.item().map(|item| self.parse(item)).transpose()?;
                    if let Some(other) = existing.as_ref().filter(|other| other.key != record.key) {
                        // The item DynamoDB holds under this key is another key's: the table
                        // is keyed on less than the store writes (a sort key it does not have),
                        // so every key shares one item. Not "in progress": a misconfiguration.
                        return Err(StoreError::Backend(
                            format!(
                                "DynamoDB PutItem on table {} answered the claim of {} with \
                                 another key's record ({}): {}, which the table's key schema \
                                 must match",
                                settings.table_name,
                                record.key,
                                other.key,
                                self.describe_key()
                            )
                            .into(),
                        ));
                    }
                    return Ok(PutOutcome::Exists(existing));
                }
                match self.write_failure("PutItem", &record.key, error, sent) {
                    // Sent more than once: an earlier attempt (unanswered, or answered with
                    // an error the SDK retries) may have landed, whatever the last one's answer.
                    // Never sent (it failed before its first attempt went out): it stored
                    // nothing, and is not taken back (found by a user: a warning said it may
                    // be stored, over an empty table).
                    StoreError::Backend(mut backend) if sent != 1 => {
                        if let Some(failure) = backend.downcast_mut::<DynamoDbError>() {
                            failure.resent = sent > 1;
                            failure.unsent = sent == 0;
                        }
                        Err(StoreError::Backend(backend))
                    }
                    other => Err(other),
                }
            }
        }
    }

    /// `record` as the item DynamoDB stores, under the store's key and attribute names.
    fn item_of(&self, record: &DataRecord) -> HashMap<String, AttributeValue> {
        let settings = &*self.settings;
        let mut item = self.key(&record.key);
        item.insert(
            settings.expiry_attr.clone(),
            AttributeValue::N(record.expiry_timestamp.to_string()),
        );
        item.insert(
            settings.status_attr.clone(),
            AttributeValue::S(record.status.as_str().to_owned()),
        );
        if let Some(deadline_ms) = record.in_progress_expiry_timestamp {
            item.insert(
                settings.in_progress_expiry_attr.clone(),
                AttributeValue::N(deadline_ms.to_string()),
            );
        }
        if let Some(hash) = &record.payload_hash {
            item.insert(
                settings.validation_key_attr.clone(),
                AttributeValue::S(hash.clone()),
            );
        }
        if let Some(claim_id) = &record.claim_id {
            item.insert(
                CLAIM_ID_ATTR.to_owned(),
                AttributeValue::S(claim_id.clone()),
            );
        }
        if let Some(reason) = &record.not_stored_reason {
            item.insert(
                NOT_STORED_REASON_ATTR.to_owned(),
                AttributeValue::S(reason.clone()),
            );
        }
        item
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<DataRecord, StoreError> {
        let settings = &*self.settings;
        let key_attr = settings
            .sort_key_attr
            .as_ref()
            .unwrap_or(&settings.key_attr);
        let table = &settings.table_name;
        let key = match item.get(key_attr) {
            Some(AttributeValue::S(key)) => key.clone(),
            _ => {
                return Err(StoreError::InvalidRecord {
                    key: "<unknown>".into(),
                    reason: format!(
                        "attribute {key_attr} is missing or not a string (in table {table})"
                    ),
                });
            }
        };
        // The table too, as every store error names it (found by an attack from the docs).
        let invalid = |reason: String| StoreError::InvalidRecord {
            key: key.clone(),
            reason: format!("{reason} (in table {table})"),
        };
        let string = |name: &str| -> Result<Option<String>, StoreError> {
            match item.get(name) {
                None => Ok(None),
                Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
                Some(other) => Err(invalid(format!(
                    "attribute {name} should be a string (S), found {}",
                    attribute_type(other)
                ))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, StoreError> {
            match item.get(name) {
                None => Ok(None),
                Some(AttributeValue::N(value)) => value
                    .parse::<i64>()
                    .or_else(|_| value.parse::<f64>().map(|float| float as i64))
                    .map(Some)
                    .map_err(|_| {
                        invalid(format!(
                            "attribute {name} is not a number: {}",
                            powertools_core::env::shown(value)
                        ))
                    }),
                Some(other) => Err(invalid(format!(
                    "attribute {name} should be a number (N), found {}",
                    attribute_type(other)
                ))),
            }
        };
        let status_text = string(&settings.status_attr)?
            .ok_or_else(|| invalid(format!("attribute {} is missing", settings.status_attr)))?;
        let status = Status::from_wire(&status_text).ok_or_else(|| {
            invalid(format!(
                "unknown status {}",
                powertools_core::env::shown(&status_text)
            ))
        })?;
        let expiry_timestamp = number(&settings.expiry_attr)?
            .ok_or_else(|| invalid(format!("attribute {} is missing", settings.expiry_attr)))?;
        Ok(DataRecord {
            status,
            expiry_timestamp,
            in_progress_expiry_timestamp: number(&settings.in_progress_expiry_attr)?,
            response_data: string(&settings.data_attr)?,
            payload_hash: string(&settings.validation_key_attr)?,
            claim_id: string(CLAIM_ID_ATTR)?,
            not_stored_reason: string(NOT_STORED_REASON_ATTR)?,
            key,
        })
    }
}

impl DynamoDbStoreBuilder {
    /// The partition key attribute (default `id`).
    pub fn key_attr(mut self, name: impl Into<String>) -> Self {
        self.key_attr = name.into();
        self
    }

    /// Stores the idempotency key in this sort key attribute, with the static partition value
    /// below in the partition key (default: no sort key). The store's claims (and its clones')
    /// are preceded by a `GetItem` of their key until one such read succeeds (one, or one per
    /// claim that starts before the first read answers): on a table without this sort key,
    /// DynamoDB would keep it as a plain attribute and take the claim, so the mistake would show
    /// only after the handler ran; the read is refused there instead, naming the key schema.
    /// The role needs `dynamodb:GetItem` on the table (as Powertools' documented policy gives).
    pub fn sort_key_attr(mut self, name: impl Into<String>) -> Self {
        self.sort_key_attr = Some(name.into());
        self
    }

    /// The partition key value used with a sort key (default `idempotency#<function name>`,
    /// from `AWS_LAMBDA_FUNCTION_NAME`).
    pub fn static_pk_value(mut self, value: impl Into<String>) -> Self {
        self.static_pk_value = Some(value.into());
        self
    }

    /// The expiry attribute, epoch seconds; point the table's TTL at it (default `expiration`).
    pub fn expiry_attr(mut self, name: impl Into<String>) -> Self {
        self.expiry_attr = name.into();
        self
    }

    /// The in-progress deadline attribute, epoch milliseconds (default `in_progress_expiration`).
    pub fn in_progress_expiry_attr(mut self, name: impl Into<String>) -> Self {
        self.in_progress_expiry_attr = name.into();
        self
    }

    /// The status attribute (default `status`).
    pub fn status_attr(mut self, name: impl Into<String>) -> Self {
        self.status_attr = name.into();
        self
    }

    /// The response attribute (default `data`).
    pub fn data_attr(mut self, name: impl Into<String>) -> Self {
        self.data_attr = name.into();
        self
    }

    /// The validation hash attribute (default `validation`).
    pub fn validation_key_attr(mut self, name: impl Into<String>) -> Self {
        self.validation_key_attr = name.into();
        self
    }

    /// Checks the settings and builds the store.
    ///
    /// # Errors
    /// [`Error::Config`] for a client without a region (`AWS_REGION` unset or empty), or with
    /// one that is no region, a table
    /// name that is empty or that DynamoDB refuses (3 to 255 letters, digits, `_`, `-` and `.`,
    /// or a table's ARN), an empty attribute name, a sort key equal to the partition
    /// key, two attributes with the same name, a sort key without a static partition value when
    /// `AWS_LAMBDA_FUNCTION_NAME` is not set, an empty static partition value, or a malformed
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn build(self) -> Result<DynamoDbStore, Error> {
        if self.table_name.trim().is_empty() {
            return Err(Error::Config(format!(
                "the table name is empty ({})",
                powertools_core::env::shown(&self.table_name)
            )));
        }
        // Refused here, at init, rather than by DynamoDB's `ValidationException` at the first
        // invocation (a name read from a variable with a typo or a trailing newline).
        if !is_table_name(&self.table_name) {
            return Err(Error::Config(format!(
                "the table name {} is not one DynamoDB accepts: 3 to 255 letters, digits, \
                 '_', '-' and '.', or a table's ARN",
                powertools_core::env::shown(&self.table_name)
            )));
        }
        // Refused here, at init, rather than at every call, where the SDK says "Missing Region:
        // dispatch failure" or "invalid value for field: `region`" (found by a user).
        if self
            .client
            .config()
            .region()
            .is_none_or(|region| region.as_ref().trim().is_empty())
        {
            return Err(Error::Config(
                "the DynamoDB client has no region: set AWS_REGION (Lambda sets it), or give \
                 the client one (aws_config::from_env().region(...))"
                    .into(),
            ));
        }
        // A region that is no host label fails every call with "could not build the request:
        // invalid value for field: region", naming no variable (found by an attack from the
        // docs).
        if let Some(region) = self.client.config().region()
            && !is_host_label(region.as_ref())
        {
            return Err(Error::Config(format!(
                "the DynamoDB client's region {} is not a region (letters, digits and hyphens, \
                 such as eu-west-1): check AWS_REGION, or the region given to the client",
                powertools_core::env::shown(region.as_ref())
            )));
        }
        let mut names = vec![
            ("key_attr", &self.key_attr),
            ("expiry_attr", &self.expiry_attr),
            ("in_progress_expiry_attr", &self.in_progress_expiry_attr),
            ("status_attr", &self.status_attr),
            ("data_attr", &self.data_attr),
            ("validation_key_attr", &self.validation_key_attr),
        ];
        if let Some(sort_key_attr) = &self.sort_key_attr {
            names.push(("sort_key_attr", sort_key_attr));
        }
        for (index, (setting, name)) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::Config(format!("{setting} is empty")));
            }
            // DynamoDB takes either, and a table whose TTL is on `ttl` never deletes records
            // written under `ttl ` (found by an attack from the docs).
            if name.chars().any(char::is_control) || name.trim() != name.as_str() {
                return Err(Error::Config(format!(
                    "{setting} {} has a control character, or white space at an end: attribute \
                     names are matched exactly (a table's TTL attribute, say)",
                    powertools_core::env::shown(name)
                )));
            }
            if let Some((other, _)) = names[..index].iter().find(|(_, earlier)| earlier == name) {
                return Err(Error::Config(format!(
                    "{setting} and {other} are both {}",
                    powertools_core::env::shown(name)
                )));
            }
            if name.as_str() == CLAIM_ID_ATTR {
                return Err(Error::Config(format!(
                    "{setting} is {CLAIM_ID_ATTR:?}, the attribute of in-progress records' claim ids"
                )));
            }
            if name.as_str() == NOT_STORED_REASON_ATTR {
                return Err(Error::Config(format!(
                    "{setting} is {NOT_STORED_REASON_ATTR:?}, the attribute of why a completed \
                     record holds no response"
                )));
            }
        }
        let static_pk_value = match (&self.sort_key_attr, self.static_pk_value) {
            // DynamoDB refuses an empty string as a key's value: every call would fail.
            (Some(_), Some(value)) if value.is_empty() => {
                return Err(Error::Config(
                    "static_pk_value is empty: DynamoDB refuses an empty string as a key's value"
                        .into(),
                ));
            }
            // Every request's partition key: over DynamoDB's limit, each would be refused (it
            // was sent: a review).
            (Some(_), Some(value)) if value.len() > super::MAX_PARTITION_KEY_BYTES => {
                return Err(Error::Config(format!(
                    "static_pk_value is {} bytes, over DynamoDB's limit of \
                     {} bytes for a partition key (it starts {})",
                    value.len(),
                    super::MAX_PARTITION_KEY_BYTES,
                    powertools_core::env::shown(&value)
                )));
            }
            (_, Some(value)) => value,
            (None, None) => String::new(),
            (Some(_), None) => {
                let env = powertools_core::env::Env::process();
                let function_name = env
                    .string(powertools_core::env::vars::AWS_LAMBDA_FUNCTION_NAME)
                    .map_err(|error| Error::Config(error.to_string()))?
                    .ok_or_else(|| {
                        Error::Config(
                            "a sort key needs static_pk_value when AWS_LAMBDA_FUNCTION_NAME is not set".into(),
                        )
                    })?;
                format!("idempotency#{function_name}")
            }
        };
        // The SDK's config does not tell which endpoint it sends to; the recorder sees it on the
        // first request, so that a connection error can name the host it could not reach.
        let endpoint = EndpointRecorder::default();
        let client = Client::from_conf(
            self.client
                .config()
                .to_builder()
                .interceptor(endpoint.clone())
                .interceptor(AnswerRecorder)
                .build(),
        );
        Ok(DynamoDbStore {
            client,
            endpoint,
            settings: Arc::new(Settings {
                table_name: self.table_name,
                key_attr: self.key_attr,
                sort_key_attr: self.sort_key_attr,
                static_pk_value,
                expiry_attr: self.expiry_attr,
                in_progress_expiry_attr: self.in_progress_expiry_attr,
                status_attr: self.status_attr,
                data_attr: self.data_attr,
                validation_key_attr: self.validation_key_attr,
                key_schema_checked: AtomicBool::new(false),
            }),
        })
    }
}

/// A DynamoDB request of [`DynamoDbStore`] failed: which operation, on which table, and why.
///
/// The SDK's own errors display as `service error` or `dispatch failure`, with the reason a few
/// levels down [`source`](std::error::Error::source), where a Lambda error response (built from
/// `Display`) never looks. This error's `Display` says it all on one line:
///
/// - `DynamoDB PutItem on table idempotency failed: ThrottlingException: Rate of requests
///   exceeds the allowed throughput` for an error answer from DynamoDB (its code and message;
///   for `ResourceNotFoundException`, the endpoint it looked at and what to check: `Requested
///   resource not found (no table idempotency at dynamodb.eu-west-1.amazonaws.com:443: check
///   the table's name, and the region, AWS_REGION)`);
/// - `DynamoDB GetItem on table idempotency failed: could not sign the request: no AWS
///   credentials (no credentials found in chain. …); AWS_SECRET_ACCESS_KEY is set but empty`
///   when the credential provider found none (with what to set, or the variable set but empty);
/// - `DynamoDB GetItem on table idempotency failed: could not send the request to 127.0.0.1:8000:
///   Connection refused (os error 111)` when no attempt of the request went out (refused,
///   unreachable), and `got no answer from 127.0.0.1:8000 (the request may
///   have reached it): …` when one may have been written (its connection failed after, or an
///   earlier attempt's did while the last could not connect): the endpoint the client sends to
///   and the innermost cause, on one line.
///
/// It reaches callers boxed in [`StoreError::Backend`] (and from there in
/// [`Error::Persistence`]); its `source` is the SDK's `SdkError` for the operation, for example
/// `aws_sdk_dynamodb::error::SdkError<PutItemError>`, for whoever wants to downcast it.
#[derive(Debug)]
pub struct DynamoDbError {
    operation: &'static str,
    table: String,
    code: Option<String>,
    /// An answer the SDK retries (throttling, a transient error, HTTP 5xx): a write whose first
    /// attempt went unanswered may have landed before the retries got it.
    retried_answer: bool,
    /// A claim's write the SDK sent more than once: an earlier attempt may have landed, whatever
    /// the last one's answer (a code the SDK does not retry, such as an expired credential's).
    resent: bool,
    /// A claim's write the SDK never sent (no credentials to sign it with, say): it stored
    /// nothing, whatever its error.
    unsent: bool,
    /// For a dispatch failure: what its wording needs once the attempts that went out are
    /// counted ([`worded_for`](Self::worded_for)).
    dispatch: Option<Dispatch>,
    cause: String,
    source: BoxError,
}

/// A dispatch failure's facts, worded once the attempts that went out are known.
#[derive(Debug)]
struct Dispatch {
    endpoint: String,
    /// The innermost cause.
    detail: String,
    /// Whether the last attempt never connected (refused, unreachable).
    last_never_sent: bool,
    /// For an attempt that could not be signed, the credential provider's error and what to
    /// set ([`unsigned`]).
    unsigned: Option<String>,
}

impl Dispatch {
    /// The cause, given how many attempts went out (`None`: not counted, as the last one's).
    fn worded(&self, sent: Option<u32>) -> String {
        let Dispatch {
            endpoint, detail, ..
        } = self;
        match (sent, self.last_never_sent) {
            // No credentials: not the endpoint's doing, and nothing was sent (found by an
            // attack from the docs: it said "could not send the request to" the endpoint).
            (Some(0) | None, _) if self.unsigned.is_some() => {
                format!(
                    "could not sign the request: {}",
                    self.unsigned.as_deref().unwrap_or_default()
                )
            }
            (Some(0), _) | (None, true) => {
                format!("could not send the request to {endpoint}: {detail}")
            }
            (Some(_), true) => format!(
                "got no answer from {endpoint} (an earlier attempt may have reached it; the last \
                 could not connect): {detail}"
            ),
            (_, false) => {
                format!("got no answer from {endpoint} (the request may have reached it): {detail}")
            }
        }
    }
}

impl DynamoDbError {
    /// The DynamoDB operation: `PutItem`, `GetItem`, `UpdateItem` or `DeleteItem`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The table the request was for.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The error code DynamoDB answered with (`ResourceNotFoundException`,
    /// `ProvisionedThroughputExceededException`, …); `None` when no answer came.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the write may have been stored all the same: no answer came (a timeout, a cut
    /// connection), or the answer is one the SDK retries (throttling, a transient error, HTTP
    /// 5xx), which the SDK gives for its last attempt only, while an earlier attempt of the same
    /// write may have landed with its answer lost (found by a review: a claim that landed, then
    /// was throttled on its retries, was never taken back). A claim's write the SDK sent more
    /// than once may have landed too, whatever its last answer (an attempt that landed with its
    /// answer lost, then a retry refused with `AccessDeniedException`).
    pub(crate) fn may_have_landed(&self) -> bool {
        !self.unsent && (self.code.is_none() || self.retried_answer || self.resent)
    }
}

/// The error codes of answers the SDK's standard retry classifier retries (its throttling and
/// transient errors), besides any HTTP 5xx.
const RETRIED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServerError",
    "ServiceUnavailable",
];

impl fmt::Display for DynamoDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DynamoDB {} on table {} failed: {}",
            self.operation, self.table, self.cause
        )
    }
}

impl std::error::Error for DynamoDbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The most bytes DynamoDB takes in a sort key's value.
const MAX_SORT_KEY_BYTES: usize = 1024;

impl DynamoDbError {
    /// A request the store refused to send, for `cause`: it stored nothing.
    fn unsent(operation: &'static str, table: &str, cause: String) -> Self {
        DynamoDbError {
            operation,
            table: table.to_owned(),
            code: None,
            retried_answer: false,
            resent: false,
            unsent: true,
            dispatch: None,
            source: cause.clone().into(),
            cause,
        }
    }

    fn new<E>(
        operation: &'static str,
        table: &str,
        endpoint: &str,
        error: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut dispatch = None;
        let cause = match &error {
            // DynamoDB's message names neither the table nor where it looked (found by an attack
            // from the docs: a table in another region read as a missing one).
            SdkError::ServiceError(_) if error.code() == Some("ResourceNotFoundException") => {
                format!(
                    "ResourceNotFoundException: {} (no table {table} at {endpoint}: check the \
                     table's name, and the region, AWS_REGION)",
                    error.message().unwrap_or("Requested resource not found")
                )
            }
            SdkError::ServiceError(context) => match (error.code(), error.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, _) => answer_without_code(context.raw(), endpoint),
            },
            // Refused or unreachable: nothing was sent. Any other dispatch failure (a
            // connection closed before the answer) may come after the request was written: it
            // said "could not send" of a write that had landed (found by an attack).
            SdkError::DispatchFailure(failure) => {
                let described = Dispatch {
                    endpoint: endpoint.to_owned(),
                    detail: error_chain::one_line(innermost_cause(&error)),
                    last_never_sent: failure.as_connector_error().is_some_and(never_sent),
                    unsigned: unsigned(&error),
                };
                let cause = described.worded(None);
                dispatch = Some(described);
                cause
            }
            SdkError::TimeoutError(_) => format!(
                "timed out talking to {endpoint}: {}",
                innermost_cause(&error)
            ),
            SdkError::ResponseError(context) => format!(
                "could not read the answer (HTTP {}) from {endpoint}: {}",
                context.raw().status(),
                innermost_cause(&error)
            ),
            SdkError::ConstructionFailure(_) => {
                format!("could not build the request: {}", innermost_cause(&error))
            }
            other => format!("{other} ({endpoint}): {}", innermost_cause(&error)),
        };
        let retried_answer = match &error {
            SdkError::ServiceError(context) => {
                context.raw().status().is_server_error()
                    || error
                        .code()
                        .is_some_and(|code| RETRIED_CODES.contains(&code))
            }
            _ => false,
        };
        DynamoDbError {
            operation,
            table: table.to_owned(),
            code: error.code().map(str::to_owned),
            retried_answer,
            resent: false,
            unsent: false,
            dispatch,
            cause: error_chain::one_line(cause),
            source: Box::new(error),
        }
    }

    /// Words a dispatch failure by the attempts that went out (`sent`, counted by
    /// [`AnswerRecorder`]): none, "could not send the request" (no credentials to sign it with,
    /// an endpoint that is not a URL: it said "got no answer … (the request may have reached
    /// it)"); some, "may have reached it" even when the last could not connect (an earlier one,
    /// cut after it was written, may have landed: it said "could not send" of a write the table
    /// held). Both found by attacks from the docs.
    fn worded_for(&mut self, sent: u32) {
        if let Some(dispatch) = &self.dispatch {
            self.cause = dispatch.worded(Some(sent));
        }
    }
}

/// An answer without DynamoDB's error code, which is not DynamoDB's JSON error (a proxy's, a
/// gateway's or a firewall's): its status, where it came from, its content type and the start of
/// its body, which say whose it is. The SDK's own description is its JSON parser's complaint
/// (`unexpected token 'R'`), or `Error` for an empty body.
fn answer_without_code(raw: &HttpResponse, endpoint: &str) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "HTTP {} without an error code, from {endpoint}",
        raw.status()
    );
    if let Some(content_type) = raw.headers().get("content-type") {
        let _ = write!(
            text,
            " (content-type {:?})",
            excerpt(content_type, MAX_CONTENT_TYPE_CHARS)
        );
    }
    let body = String::from_utf8_lossy(raw.body().bytes().unwrap_or_default());
    // A block page may echo the request, its signature and session token with it: what follows
    // the first mention of one is left out (found by a review).
    let folded = body.to_ascii_lowercase();
    let clear = ECHOED_CREDENTIALS
        .iter()
        .filter_map(|marker| folded.find(marker))
        .min()
        .map_or(&body[..], |at| &body[..at]);
    if body.trim().is_empty() {
        text.push_str(", with an empty body");
    } else {
        let mut shown = excerpt(clear, MAX_BODY_CHARS);
        if clear.len() < body.len() && !shown.ends_with('…') {
            shown.push('…');
        }
        let _ = write!(text, ": {shown:?}");
    }
    text
}

/// What begins a credential an answer may echo from its request, lowercase.
const ECHOED_CREDENTIALS: &[&str] = &[
    "authorization",
    "credential=",
    "signature=",
    "x-amz-security-token",
    "x-amz-signature",
];

/// The most characters of an answer's body an error shows.
const MAX_BODY_CHARS: usize = 160;

/// The most characters of an answer's content type an error shows.
const MAX_CONTENT_TYPE_CHARS: usize = 64;

/// `text` with its runs of white space as one space, cut to `max` characters and `…`.
fn excerpt(text: &str, max: usize) -> String {
    let mut words = text.split_whitespace().peekable();
    let mut shown = String::new();
    let mut chars = 0;
    if let Some(first) = words.next() {
        shown.push_str(first);
        chars += first.chars().count();
    }
    while let Some(word) = words.peek() {
        if chars >= max {
            break;
        }
        shown.push(' ');
        shown.push_str(word);
        chars += 1 + word.chars().count();
        words.next();
    }
    // Cut: longer than `max`, or words left (a review found an excerpt of exactly `max`
    // characters with more after it unmarked).
    if chars > max || words.peek().is_some() {
        shown = shown.chars().take(max).collect();
        shown.push('…');
    }
    shown
}

/// The message of the last error in `error`'s source chain that has one: the SDK wraps an I/O
/// error in three or four layers that each say only `dispatch failure`, `io error`, ….
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error_chain::display_text(&error);
    for current in error_chain::sources(error) {
        let message = error_chain::display_text(&current);
        if !message.trim().is_empty() {
            cause = message;
        }
    }
    cause
}

/// For a request that could not be signed, the credential provider's error, on one line, and
/// what to set: the SDK reads `AWS_ACCESS_KEY_ID` or `AWS_SECRET_ACCESS_KEY` set but empty as
/// unset, and its chain's error names neither (`Environment: the credential provider was not
/// enabled: environment variable not set`). `None` for any other failure.
fn unsigned(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_credential_types::provider::error::CredentialsError;
    let credentials = std::iter::once(error)
        .chain(error_chain::sources(error))
        .find_map(|cause| cause.downcast_ref::<CredentialsError>())?;
    // A provider that timed out or failed (an STS `AccessDenied` of an assumed role) is not a
    // missing credential, nor one the environment variables would fix (a review).
    let (what, none_found) = match credentials {
        CredentialsError::CredentialsNotLoaded(_) => ("no AWS credentials", true),
        CredentialsError::ProviderTimedOut(_) => ("the AWS credential provider timed out", false),
        CredentialsError::InvalidConfiguration(_) => (
            "the AWS credential provider is not properly configured",
            false,
        ),
        _ => ("the AWS credential provider failed", false),
    };
    let mut text = format!(
        "{what} ({})",
        error_chain::one_line(error_chain::message_chain(credentials))
    );
    if !none_found {
        return Some(text);
    }
    let empty: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some_and(|value| value.is_empty()))
        .collect();
    if empty.is_empty() {
        text.push_str(
            ": give the function a role with access to the table, or set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
        );
    } else {
        for name in empty {
            text.push_str(&format!("; {name} is set but empty"));
        }
    }
    Some(text)
}

/// Whether DynamoDB refused a write because the item would be over 400 KB. DynamoDB says `Item
/// size has exceeded the maximum allowed size` for a `PutItem` and `Item size to update has
/// exceeded the maximum allowed size` for an `UpdateItem`; moto says the same.
fn is_item_too_large(error: &impl ProvideErrorMetadata) -> bool {
    error.code() == Some("ValidationException")
        && error.message().is_some_and(|message| {
            message.contains("Item size") && message.contains("exceeded the maximum allowed size")
        })
}

/// Remembers the endpoint the client sends its requests to, as the SDK's config does not tell
/// it.
#[derive(Debug, Clone, Default)]
struct EndpointRecorder(Arc<Endpoints>);

/// What [`EndpointRecorder`] has seen.
#[derive(Debug, Default)]
struct Endpoints {
    /// The first request's `host:port`.
    sent: OnceLock<String>,
    /// The endpoint URL the client's config sets, in code, by a variable or in a profile
    /// (`None`: the region's), read from the first call's config before its request is built.
    configured: OnceLock<Option<String>>,
}

impl EndpointRecorder {
    /// The endpoint, or what is known of it before the first request went out.
    fn describe(&self, client: &Client) -> String {
        self.describe_with(client, endpoint_variable)
    }

    /// [`describe`](Self::describe), `variable` giving the variable that sets the endpoint.
    fn describe_with(
        &self,
        client: &Client,
        variable: impl FnOnce() -> Option<(&'static str, String)>,
    ) -> String {
        if let Some(endpoint) = self.0.sent.get() {
            return endpoint.clone();
        }
        let endpoint = match client.config().region() {
            Some(region) => format!("the DynamoDB endpoint of {region}"),
            None => "the DynamoDB endpoint (no region is configured)".to_owned(),
        };
        // Known once a call began: the URL is named, wherever it was set (the region's
        // endpoint was named of a client given one in code that is no URL; found by a review).
        match self.0.configured.get() {
            Some(Some(url)) => {
                let by = match variable() {
                    Some((name, value)) if value == *url => format!(" ({name})"),
                    _ => String::new(),
                };
                return format!(
                    "the client's endpoint URL {}{by}",
                    powertools_core::env::shown(&without_credentials(url))
                );
            }
            Some(None) => return endpoint,
            None => {}
        }
        // A client loaded from the environment (`aws_config`) sends to the endpoint these
        // variables set, which its config does not show: the value is named, so that one that is
        // not a URL is found (found by an attack from the docs). A client given its own
        // endpoint in code ignores them, hence "or".
        match variable() {
            Some((name, value)) => format!(
                "{endpoint} or the client's own ({name} is {})",
                powertools_core::env::shown(&value)
            ),
            None => endpoint,
        }
    }
}

/// Whether `region` is what the SDK's endpoint rules take for a region: host labels (1 to 63
/// letters, digits and hyphens, not beginning with a hyphen) separated by dots (`local.test`, a
/// local endpoint's; found by a review: dotted regions were refused).
fn is_host_label(region: &str) -> bool {
    region.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    })
}

/// The variable of the access key id the SDK's shared config reads first.
const ACCESS_KEY_ID_VARIABLE: &str = "AWS_ACCESS_KEY_ID";

/// The variable that sets DynamoDB's endpoint for the SDK's shared config, and its value:
/// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`, unless
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` turns them off.
fn endpoint_variable() -> Option<(&'static str, String)> {
    endpoint_variable_in(|name| std::env::var(name).ok())
}

/// [`endpoint_variable`] with the variables `lookup` gives.
fn endpoint_variable_in(lookup: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    // Set but blank counts, as the SDK reads it (it fails every request on it).
    let set = |name: &str| lookup(name);
    if set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    {
        return None;
    }
    ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| set(name).map(|value| (name, value)))
}

/// Where an endpoint URL the variables did not set came from: the client's code, or the
/// `endpoint_url` of its profile (or the profile's `services` section), in the file and profile
/// the variables name. An empty one in a profile was reported naming neither.
fn not_from_the_variables() -> String {
    let variable = |name: &str, unset: &str| match std::env::var(name) {
        Ok(value) => format!("{name} {}", powertools_core::env::shown(&value)),
        Err(_) => format!("{name} unset: {unset}"),
    };
    format!(
        "; not from AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL: given in code, or by \
         endpoint_url in the client's profile or its services section ({}; {})",
        variable("AWS_PROFILE", "default"),
        variable("AWS_CONFIG_FILE", "~/.aws/config"),
    )
}

impl Intercept for EndpointRecorder {
    fn name(&self) -> &'static str {
        "powertools-idempotency endpoint"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // The SDK panics resolving an empty endpoint URL ("URL was unset"), which took the
        // invocation down naming no setting (found by an attack from the docs:
        // `AWS_ENDPOINT_URL_DYNAMODB=`). Refused here, before it resolves it: the call fails
        // with an error that says so. A blank one is refused too: it is no URL either.
        let configured = cfg.load::<aws_types::endpoint_config::EndpointUrl>();
        if self.0.configured.get().is_none() {
            let _ = self
                .0
                .configured
                .set(configured.map(|configured| configured.0.clone()));
        }
        // Refused per call, not when the store is built: only the call's config tells whether
        // the client follows the variables (one given its own endpoint, or a profile's
        // `ignore_configured_endpoint_urls`, does not; a review found such stores refused).
        match configured {
            Some(aws_types::endpoint_config::EndpointUrl(url)) if url.trim().is_empty() => {
                let by = match endpoint_variable() {
                    Some((name, value)) if value == *url => format!(", set by {name}"),
                    _ => not_from_the_variables(),
                };
                Err(format!(
                    "the DynamoDB client's endpoint URL is empty ({}{by}): give it a URL, or \
                     none for the region's",
                    powertools_core::env::shown(url)
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.0.sent.get().is_none() {
            let _ = self.0.sent.set(authority(context.request().uri()));
        }
        Ok(())
    }
}

/// The DynamoDB operation of a store call.
fn operation_of(call: StoreCall) -> &'static str {
    match call {
        StoreCall::Get => "GetItem",
        StoreCall::PutInProgress => "PutItem",
        StoreCall::Update => "UpdateItem",
        StoreCall::Delete => "DeleteItem",
        StoreCall::ReplaceWithFence => "UpdateItem",
        StoreCall::PutOverFence => "PutItem",
    }
}

tokio::task_local! {
    /// How many times the SDK has sent the request being polled ([`counting_sends`]).
    static SENT_ATTEMPTS: Cell<u32>;
}

/// An SDK request's future on the heap: it is many futures deep, and the functions that compose
/// the layers (an idempotent handler inside a batch inside the stack's layer) otherwise passed
/// the compiler's depth limit computing their future's layout (`queries overflow the depth
/// limit!` building the bake-queue example's tests, found when a claim's send gained one more
/// level). One allocation per DynamoDB call, beside its network round trip.
trait Boxed: Future + Sized {
    fn boxed(self) -> std::pin::Pin<Box<Self>> {
        Box::pin(self)
    }
}

impl<F: Future> Boxed for F {}

/// Awaits `send` (an SDK request's future) and counts the attempts the SDK sent on the wire for
/// it (counted by [`AnswerRecorder`]): the SDK's error is its last attempt's, while an earlier
/// attempt may have been applied with its answer lost.
/// Boxed, as every SDK call of the store is ([`Boxed`]). A panic of the SDK's is the call's
/// error ([`SdkPanicked`]), not the invocation's: its signer panics on an access key id with a
/// control character (found by an attack from the docs).
async fn counting_sends<O, E>(
    send: impl Future<Output = Result<O, SdkError<E, HttpResponse>>> + Send,
) -> (Result<O, SdkError<E, HttpResponse>>, u32) {
    SENT_ATTEMPTS
        .scope(Cell::new(0), async {
            let output = match powertools_core::failure::catch_quiet_panics(send).await {
                Ok(output) => output,
                Err(payload) => {
                    let panicked = SdkPanicked(
                        powertools_core::error_chain::panic_description(payload.as_ref())
                            .unwrap_or_else(|| {
                                powertools_core::error_chain::UNREADABLE_PANIC.to_owned()
                            }),
                    );
                    // After an attempt went out, the request may have been applied: a dispatch
                    // failure, worded so, not "could not build the request" (found by a review).
                    if SENT_ATTEMPTS.with(Cell::get) == 0 {
                        Err(SdkError::construction_failure(panicked))
                    } else {
                        Err(SdkError::dispatch_failure(
                            aws_sdk_dynamodb::error::ConnectorError::other(
                                Box::new(panicked),
                                None,
                            ),
                        ))
                    }
                }
            };
            (output, SENT_ATTEMPTS.with(Cell::get))
        })
        .boxed()
        .await
}

/// The AWS SDK panicked inside a store call, with this message.
#[derive(Debug, thiserror::Error)]
#[error("the AWS SDK panicked: {message}{hint}", message = .0, hint = access_key_id_hint())]
struct SdkPanicked(String);

/// What to check when the SDK panicked: its signer panics on an access key id with a character
/// no header value takes, which `AWS_ACCESS_KEY_ID` read with its trailing newline has (the
/// value is not written). Said only when the variable has one: the client may have other
/// credentials.
fn access_key_id_hint() -> String {
    let control = std::env::var(ACCESS_KEY_ID_VARIABLE).is_ok_and(|key_id| {
        key_id
            .bytes()
            .any(|byte| (byte < b' ' && byte != b'\t') || byte == 0x7f)
    });
    if control {
        format!(
            " ({ACCESS_KEY_ID_VARIABLE} has a control character, a trailing newline say, which \
             no request can be signed with)"
        )
    } else {
        String::new()
    }
}

/// The most bytes of DynamoDB's message kept for an error.
const MAX_ANSWER_BYTES: usize = 300;

/// Counts the attempts a request sent ([`counting_sends`]), and records DynamoDB's answer
/// to each attempt in the answers of the call it belongs to ([`CallAnswers`]), for the error of
/// a call the store timeout ends while the SDK retries: throttling or an outage would otherwise
/// read as a call that got no answer. A success (or a failed condition, an answer the store
/// expects) clears it; an attempt that got no answer (a connection cut) leaves it.
#[derive(Debug, Clone, Copy, Default)]
struct AnswerRecorder;

impl Intercept for AnswerRecorder {
    fn name(&self) -> &'static str {
        "powertools-idempotency answers"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // Outside a claim's write (`counting_sends`), nothing.
        let _ = SENT_ATTEMPTS.try_with(|sent| sent.set(sent.get().saturating_add(1)));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let answer = match context.output_or_error() {
            None => return Ok(()),
            Some(Ok(_)) => None,
            Some(Err(error)) => {
                if let Some(connector) = error
                    .as_connector_error()
                    .filter(|connector| never_connected(connector))
                {
                    // Its request never went out: not a sent attempt, which may have landed
                    // (found by an attack from the docs: a refused connection's claim was
                    // taken back, and a warning said it may be stored).
                    let _ = SENT_ATTEMPTS.try_with(|sent| sent.set(sent.get().saturating_sub(1)));
                    // Kept as the call's last answer, for the store timeout's error should it end
                    // the call while the client retries: "no answer" alone pointed at the
                    // store's latency, where the cause is the connection (a function in a VPC
                    // without a route to DynamoDB; found by a review).
                    let mut answer = format!("no connection ({})", innermost_cause(connector));
                    answer.truncate(answer.floor_char_boundary(MAX_ANSWER_BYTES));
                    CallAnswers::record(Some(answer));
                    return Ok(());
                }
                // An attempt that got no answer (a connection cut) is not an answer.
                let Some(error) = error.as_operation_error() else {
                    return Ok(());
                };
                let metadata: Option<&dyn ProvideErrorMetadata> =
                    if let Some(error) = error.downcast_ref::<GetItemError>() {
                        Some(error)
                    } else if let Some(error) = error.downcast_ref::<PutItemError>() {
                        Some(error)
                    } else if let Some(error) = error.downcast_ref::<UpdateItemError>() {
                        Some(error)
                    } else if let Some(error) = error.downcast_ref::<DeleteItemError>() {
                        Some(error)
                    } else {
                        None
                    };
                match metadata.map(|metadata| (metadata.code(), metadata.message())) {
                    // The answer a conditional write expects when the record is not its.
                    Some((Some("ConditionalCheckFailedException"), _)) => None,
                    Some((Some(code), Some(message))) => Some(format!("{code}: {message}")),
                    Some((Some(code), None)) => Some(code.to_owned()),
                    _ => Some(match context.response() {
                        Some(response) => format!("HTTP {}", response.status().as_u16()),
                        None => "an error without a code".to_owned(),
                    }),
                }
            }
        };
        CallAnswers::record(answer.map(|mut answer| {
            answer.truncate(answer.floor_char_boundary(MAX_ANSWER_BYTES));
            answer
        }));
        Ok(())
    }
}

/// Whether a connector error is the SDK's HTTP client failing to connect (the TCP connection
/// refused or unreachable, the name unresolved, the TLS handshake failed): the request was
/// never written. Told by the client's own error (`hyper_util`'s, which the SDK's default HTTP
/// client uses); with another client, `false`, and the attempt counts as sent.
///
/// The chain is walked as far as [`error_chain::sources`] goes: a custom client's error whose
/// `source()` loops hung the description (found by a review).
fn never_connected(error: &aws_sdk_dynamodb::error::ConnectorError) -> bool {
    error_chain::sources(error)
        .find_map(|cause| cause.downcast_ref::<hyper_util::client::legacy::Error>())
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

/// Whether a connector error shows the request was never written: [`never_connected`], or an
/// I/O error of connecting in its chain (refused, unreachable: what another HTTP client, or a
/// connector that wraps the OS error itself, gives).
fn never_sent(error: &aws_sdk_dynamodb::error::ConnectorError) -> bool {
    use std::io::ErrorKind;
    if never_connected(error) {
        return true;
    }
    let error: &(dyn std::error::Error + 'static) = error;
    std::iter::once(error)
        .chain(error_chain::sources(error))
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            )
        })
}

/// `url` without what may be secret in it: the user-info (`admin:password@`), the query and the
/// fragment (`?token=…`). Written into errors, where the endpoint is named (found by a review).
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The user-info first, to its last `@` before the path: a password may hold a `?` or a
    // `#` (found by a review: part of one was written as the host).
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(['?', '#']).next().unwrap_or(host);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// `host:port` of a URL, with the scheme's default port when it has none.
fn authority(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = host_port.rsplit_once(':').is_some_and(|(_, port)| {
        !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit())
    });
    if has_port {
        host_port.to_owned()
    } else if scheme.eq_ignore_ascii_case("http") {
        format!("{host_port}:80")
    } else {
        format!("{host_port}:443")
    }
}

impl IdempotencyStore for DynamoDbStore {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.check_key_size("GetItem", key)?;
        let output = self
            .client
            .get_item()
            .table_name(&self.settings.table_name)
            .set_key(Some(self.key(key)))
            .consistent_read(true)
            .send();
        let (output, sent) = counting_sends(output).await;
        let output = output
            .map_err(|error| StoreError::Backend(Box::new(self.failure("GetItem", error, sent))))?;
        output.item().map(|item| self.parse(item)).transpose()
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        let settings = &*self.settings;
        self.check_key_size("PutItem", &record.key)?;
        if self.key_read_pending() {
            self.check_key_schema(&record.key).await?;
        }
        let (now_s, now_ms) = epoch(now);
        let result = self
            .client
            .put_item()
            .table_name(&settings.table_name)
            .set_item(Some(self.item_of(record)))
            .condition_expression(PUT_CONDITION)
            .expression_attribute_names("#id", &settings.key_attr)
            .expression_attribute_names("#expiry", &settings.expiry_attr)
            .expression_attribute_names("#in_progress_expiry", &settings.in_progress_expiry_attr)
            .expression_attribute_names("#status", &settings.status_attr)
            .expression_attribute_values(":now", AttributeValue::N(now_s.to_string()))
            .expression_attribute_values(":now_in_millis", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(Status::InProgress.as_str().to_owned()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let (result, sent) = counting_sends(result).await;
        self.claim_answer(record, result, sent)
    }

    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        let settings = &*self.settings;
        let Some(fence_id) = &fence.claim_id else {
            return Ok(PutOutcome::Exists(None));
        };
        let result = self
            .client
            .put_item()
            .table_name(&settings.table_name)
            .set_item(Some(self.item_of(record)))
            .condition_expression(OVER_FENCE_CONDITION)
            .expression_attribute_names("#status", &settings.status_attr)
            .expression_attribute_names("#claim_id", CLAIM_ID_ATTR)
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(Status::InProgress.as_str().to_owned()),
            )
            .expression_attribute_values(":fence_id", AttributeValue::S(fence_id.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let (result, sent) = counting_sends(result).await;
        // Refused: the fence was replaced meanwhile (by another claim), or went with the TTL.
        self.claim_answer(record, result, sent)
    }

    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        let settings = &*self.settings;
        let mut update = self
            .client
            .update_item()
            .table_name(&settings.table_name)
            .set_key(Some(self.key(&record.key)))
            .expression_attribute_names("#expiry", &settings.expiry_attr)
            .expression_attribute_names("#status", &settings.status_attr)
            .expression_attribute_values(
                ":expiry",
                AttributeValue::N(record.expiry_timestamp.to_string()),
            )
            .expression_attribute_values(
                ":status",
                AttributeValue::S(record.status.as_str().to_owned()),
            );
        let mut expression = String::from("SET #expiry = :expiry, #status = :status");
        if let Some(data) = &record.response_data {
            expression.push_str(", #response_data = :response_data");
            update = update
                .expression_attribute_names("#response_data", &settings.data_attr)
                .expression_attribute_values(":response_data", AttributeValue::S(data.clone()));
        }
        if let Some(hash) = &record.payload_hash {
            expression.push_str(", #validation_key = :validation_key");
            update = update
                .expression_attribute_names("#validation_key", &settings.validation_key_attr)
                .expression_attribute_values(":validation_key", AttributeValue::S(hash.clone()));
        }
        if let Some(reason) = &record.not_stored_reason {
            expression.push_str(", #not_stored_reason = :not_stored_reason");
            update = update
                .expression_attribute_names("#not_stored_reason", NOT_STORED_REASON_ATTR)
                .expression_attribute_values(
                    ":not_stored_reason",
                    AttributeValue::S(reason.clone()),
                );
        }
        if let Some(claim_id) = &record.claim_id {
            update = update
                .condition_expression(UPDATE_CONDITION)
                .expression_attribute_names("#claim_id", CLAIM_ID_ATTR)
                .expression_attribute_values(":claim_id", AttributeValue::S(claim_id.clone()));
        }
        let (result, sent) = counting_sends(update.update_expression(expression).send()).await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                if let Some(UpdateItemError::ConditionalCheckFailedException(_)) =
                    error.as_service_error()
                {
                    return Err(StoreError::ClaimReplaced {
                        key: record.key.clone(),
                    });
                }
                Err(self.write_failure("UpdateItem", &record.key, error, sent))
            }
        }
    }

    fn describe_call(&self, call: StoreCall) -> Option<String> {
        let operation = match call {
            // A claim whose store has not read its key yet was in that read: its `PutItem`
            // comes only after the read succeeded, which marks the store.
            StoreCall::PutInProgress if self.key_read_pending() => {
                "GetItem (the read of the store's key before its first claim)"
            }
            call => operation_of(call),
        };
        // Before any request went out, no endpoint was reached: the call is still waiting for
        // what comes before sending, credentials say. The endpoint the client was given is named
        // once a call began (the call's config shows it), else the region, never a guess.
        let target = match (self.endpoint.0.sent.get(), self.endpoint.0.configured.get()) {
            (Some(endpoint), _) => format!("at {endpoint}"),
            // Its own endpoint, once a call began (found by a review: the region was named).
            (None, Some(Some(url))) => format!(
                "before any request was sent (endpoint URL {})",
                powertools_core::env::shown(&without_credentials(url))
            ),
            (None, _) => match self.client.config().region() {
                Some(region) => format!("before any request was sent (region {region})"),
                None => "before any request was sent (no region is configured)".to_owned(),
            },
        };
        Some(format!(
            "DynamoDB {operation} on table {} {target}",
            self.settings.table_name
        ))
    }

    fn describe_store(&self) -> Option<String> {
        Some(format!("DynamoDB table {}", self.settings.table_name))
    }

    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        let settings = &*self.settings;
        let request = self
            .client
            .delete_item()
            .table_name(&settings.table_name)
            .set_key(Some(self.key(&record.key)))
            .expression_attribute_names("#status", &settings.status_attr)
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(Status::InProgress.as_str().to_owned()),
            );
        // DynamoDB refuses a name or value the condition does not use.
        let expiry_name = ("#in_progress_expiry", &settings.in_progress_expiry_attr);
        let request = match (&record.claim_id, record.in_progress_expiry_timestamp) {
            (Some(claim_id), _) => request
                .condition_expression(DELETE_CONDITION)
                .expression_attribute_names("#claim_id", CLAIM_ID_ATTR)
                .expression_attribute_values(":claim_id", AttributeValue::S(claim_id.clone())),
            (None, Some(deadline_ms)) => request
                .condition_expression(DELETE_CONDITION_WITHOUT_CLAIM_ID)
                .expression_attribute_names(expiry_name.0, expiry_name.1)
                .expression_attribute_values(
                    ":in_progress_expiry",
                    AttributeValue::N(deadline_ms.to_string()),
                ),
            (None, None) => request
                .condition_expression(DELETE_CONDITION_WITHOUT_EXPIRY)
                .expression_attribute_names(expiry_name.0, expiry_name.1),
        };
        match counting_sends(request.send()).await {
            (Ok(_), _) => Ok(()),
            (Err(error), sent) => {
                self.unless_claim_replaced("DeleteItem", &record.key, error, sent)
            }
        }
    }

    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        // The engine's claims all have an id; a record of the user's own without one is deleted,
        // by the delete's own condition for it.
        let (Some(claim_id), Some(fence_id), Some(fenced_at)) = (
            &claim.claim_id,
            &fence.claim_id,
            fence.in_progress_expiry_timestamp,
        ) else {
            return self.delete(claim).await;
        };
        let settings = &*self.settings;
        let request = self
            .client
            .update_item()
            .table_name(&settings.table_name)
            .set_key(Some(self.key(&claim.key)))
            .update_expression(FENCE_UPDATE)
            .condition_expression(DELETE_CONDITION)
            .expression_attribute_names("#status", &settings.status_attr)
            .expression_attribute_names("#in_progress_expiry", &settings.in_progress_expiry_attr)
            .expression_attribute_names("#claim_id", CLAIM_ID_ATTR)
            .expression_attribute_names("#validation_key", &settings.validation_key_attr)
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(Status::InProgress.as_str().to_owned()),
            )
            .expression_attribute_values(":fenced_at", AttributeValue::N(fenced_at.to_string()))
            .expression_attribute_values(":fence_id", AttributeValue::S(fence_id.clone()))
            .expression_attribute_values(":claim_id", AttributeValue::S(claim_id.clone()));
        match counting_sends(request.send()).await {
            (Ok(_), _) => Ok(()),
            (Err(error), sent) => self.unless_claim_replaced("UpdateItem", &claim.key, error, sent),
        }
    }
}

/// A DynamoDB attribute's type, as DynamoDB names it, without its value: a record's values may
/// hold what a response held (a card number), and megabytes of it (found by an audit from the
/// docs: the whole attribute was quoted).
fn attribute_type(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::B(_) => "a binary (B)",
        AttributeValue::Bool(_) => "a boolean (BOOL)",
        AttributeValue::Bs(_) => "a binary set (BS)",
        AttributeValue::L(_) => "a list (L)",
        AttributeValue::M(_) => "a map (M)",
        AttributeValue::N(_) => "a number (N)",
        AttributeValue::Ns(_) => "a number set (NS)",
        AttributeValue::Null(_) => "null (NULL)",
        AttributeValue::S(_) => "a string (S)",
        AttributeValue::Ss(_) => "a string set (SS)",
        _ => "an attribute type this crate does not know",
    }
}

#[cfg(test)]
mod tests {
    use powertools_core::error_chain::fixtures::{FailingDisplay, OwnSource};

    use super::*;

    #[test]
    fn the_innermost_cause_of_an_error_that_is_its_own_source_is_its_message() {
        assert_eq!(innermost_cause(&OwnSource), "loops");
    }

    #[test]
    fn the_innermost_cause_of_an_error_whose_display_fails_is_written_instead_of_panicking() {
        assert_eq!(innermost_cause(&FailingDisplay), "half<formatting failed>");
    }

    fn client() -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().expect("a valid status"), "".into())
    }

    fn metadata(code: &str, message: &str) -> aws_sdk_dynamodb::error::ErrorMetadata {
        aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build()
    }

    fn described(error: SdkError<PutItemError, HttpResponse>) -> DynamoDbError {
        DynamoDbError::new("PutItem", "orders", "127.0.0.1:8000", error)
    }

    /// An error that says only what it wraps, as the SDK's layers do.
    #[derive(Debug)]
    struct Layer(&'static str, std::io::Error);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn a_service_error_shows_the_operation_the_table_and_dynamodbs_code_and_message() {
        let modeled = PutItemError::ResourceNotFoundException(
            aws_sdk_dynamodb::types::error::ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .meta(metadata(
                    "ResourceNotFoundException",
                    "Requested resource not found",
                ))
                .build(),
        );
        let error = described(SdkError::service_error(modeled, response(400)));
        // Where it looked, and what to check: a table in another region read as a missing one,
        // naming neither (found by an attack from the docs).
        assert_eq!(
            error.to_string(),
            "DynamoDB PutItem on table orders failed: ResourceNotFoundException: Requested \
             resource not found (no table orders at 127.0.0.1:8000: check the table's name, and \
             the region, AWS_REGION)"
        );
        assert_eq!(error.operation(), "PutItem");
        assert_eq!(error.table(), "orders");
        assert_eq!(error.code(), Some("ResourceNotFoundException"));
        let source = std::error::Error::source(&error).expect("the SDK error");
        assert!(
            source
                .downcast_ref::<SdkError<PutItemError, HttpResponse>>()
                .is_some()
        );

        let unmodeled = PutItemError::generic(metadata(
            "ValidationException",
            "One or more parameter values were invalid: Missing the key id in the item",
        ));
        assert_eq!(
            described(SdkError::service_error(unmodeled, response(400))).to_string(),
            "DynamoDB PutItem on table orders failed: ValidationException: One or more parameter \
             values were invalid: Missing the key id in the item"
        );
    }

    #[test]
    fn a_service_error_without_a_code_shows_the_http_status() {
        let error =
            PutItemError::generic(aws_sdk_dynamodb::error::ErrorMetadata::builder().build());
        let error = described(SdkError::service_error(error, response(502)));
        assert!(
            error.to_string().starts_with(
                "DynamoDB PutItem on table orders failed: HTTP 502 without an error code"
            ),
            "{error}"
        );
        assert_eq!(error.code(), None);
    }

    /// How an answer of `status` without DynamoDB's error code, with `content_type` and `body`,
    /// is described.
    fn answer(status: u16, content_type: Option<&str>, body: &str) -> String {
        let mut response = HttpResponse::new(
            status.try_into().expect("a valid status"),
            body.to_owned().into(),
        );
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert("content-type", content_type.to_owned());
        }
        let unparsed =
            PutItemError::generic(aws_sdk_dynamodb::error::ErrorMetadata::builder().build());
        described(SdkError::service_error(unparsed, response)).to_string()
    }

    /// A proxy's, a gateway's or a firewall's answer is not DynamoDB's JSON: what it said, not
    /// the SDK's JSON parser's complaint about it (found by an attack: `Rate exceeded` was
    /// `Error at offset 0: unexpected token 'R'`, an empty body `Error`).
    #[test]
    fn an_answer_that_is_not_dynamodb_s_json_is_shown_as_it_came() {
        assert_eq!(
            answer(429, Some("text/plain"), "Rate exceeded"),
            "DynamoDB PutItem on table orders failed: HTTP 429 without an error code, from \
             127.0.0.1:8000 (content-type \"text/plain\"): \"Rate exceeded\""
        );
        assert_eq!(
            answer(403, None, ""),
            "DynamoDB PutItem on table orders failed: HTTP 403 without an error code, from \
             127.0.0.1:8000, with an empty body"
        );
        let html = format!(
            "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>{}</body></html>",
            "x".repeat(1_000)
        );
        let shown = answer(502, Some("text/html"), &html);
        assert!(
            shown.starts_with(
                "DynamoDB PutItem on table orders failed: HTTP 502 without an error code, from \
                 127.0.0.1:8000 (content-type \"text/html\"): \"<html> <head><title>502 Bad Gateway</title></head>"
            ),
            "{shown}"
        );
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.ends_with("…\""), "{shown}");
    }

    /// The excerpt says when it was cut, leaves out what follows a credential the answer echoes
    /// (an egress proxy's block page quoting the request's `Authorization` or session token),
    /// and quotes the content type (found by a review).
    #[test]
    fn an_answer_s_excerpt_is_marked_when_cut_and_leaves_out_echoed_credentials() {
        let shown = answer(
            502,
            Some("text/plain"),
            &format!("{} and the rest of the page", "x".repeat(160)),
        );
        assert!(shown.ends_with("…\""), "{shown}");
        let shown = answer(
            403,
            Some("text/plain"),
            "Blocked by egress proxy. Authorization: AWS4-HMAC-SHA256 \
             Credential=AKIAIOSFODNN7EXAMPLE/20261205/eu-west-1/dynamodb/aws4_request, \
             x-amz-security-token: IQoJb3JpZ2luX2Vj",
        );
        assert!(shown.contains("Blocked by egress proxy."), "{shown}");
        assert!(
            !shown.contains("AKIAIOSFODNN7EXAMPLE") && !shown.contains("IQoJb3JpZ2luX2Vj"),
            "{shown}"
        );
        let shown = answer(403, Some(r#"text/plain): "no error" (x"#), "");
        assert!(
            shown.contains(r#"(content-type "text/plain): \"no error\" (x")"#),
            "{shown}"
        );
    }

    /// Before its first request the client's endpoint is unknown (its config does not show
    /// one set by the SDK's shared config): the variable that sets it is named, so that a value
    /// that is not a URL is found (it said "the DynamoDB endpoint of us-east-1"; found by an
    /// attack from the docs).
    #[test]
    fn the_endpoint_variable_is_named_before_the_first_request() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(
            endpoint_variable_in(lookup(&[
                ("AWS_ENDPOINT_URL", "http://a"),
                ("AWS_ENDPOINT_URL_DYNAMODB", "not a url")
            ])),
            Some(("AWS_ENDPOINT_URL_DYNAMODB", "not a url".to_owned()))
        );
        assert_eq!(
            endpoint_variable_in(lookup(&[("AWS_ENDPOINT_URL", "http://a")])),
            Some(("AWS_ENDPOINT_URL", "http://a".to_owned()))
        );
        assert_eq!(
            endpoint_variable_in(lookup(&[
                ("AWS_ENDPOINT_URL", "http://a"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
            ])),
            None
        );
        // Blank, it is still the one the SDK reads (and fails on): named, not the next.
        assert_eq!(
            endpoint_variable_in(lookup(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", " "),
                ("AWS_ENDPOINT_URL", "http://a")
            ])),
            Some(("AWS_ENDPOINT_URL_DYNAMODB", " ".to_owned()))
        );
    }

    /// A dispatch failure is worded by the attempts that went out: none, "could not send" (a
    /// request never signed said "got no answer … may have reached it"); some, "may have reached
    /// it" even when the last could not connect (an earlier attempt, cut after it was written,
    /// may have landed: it said "could not send" of a write the table held). Found by attacks
    /// from the docs, with the fault proxy and credentials that failed after the claim.
    #[test]
    fn a_dispatch_failure_is_worded_by_the_attempts_that_went_out() {
        let refused = || {
            SdkError::dispatch_failure(aws_sdk_dynamodb::error::ConnectorError::io(Box::new(
                Layer(
                    "client error (Connect)",
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                ),
            )))
        };
        let unsigned = || {
            SdkError::dispatch_failure(aws_sdk_dynamodb::error::ConnectorError::other(
                "the session's credentials expired and their refresh failed".into(),
                None,
            ))
        };
        let worded = |error, sent| {
            let mut failure = described(error);
            failure.worded_for(sent);
            failure.to_string()
        };
        assert_eq!(
            worded(refused(), 1),
            "DynamoDB PutItem on table orders failed: got no answer from 127.0.0.1:8000 (an \
             earlier attempt may have reached it; the last could not connect): connection refused"
        );
        assert!(
            worded(refused(), 0).contains("could not send the request to 127.0.0.1:8000"),
            "{}",
            worded(refused(), 0)
        );
        assert_eq!(
            worded(unsigned(), 0),
            "DynamoDB PutItem on table orders failed: could not send the request to \
             127.0.0.1:8000: the session's credentials expired and their refresh failed"
        );
        assert!(
            worded(unsigned(), 2).contains("(the request may have reached it)"),
            "{}",
            worded(unsigned(), 2)
        );
        // On one line, as the SDK's list of credential providers is not.
        let listed = SdkError::dispatch_failure(aws_sdk_dynamodb::error::ConnectorError::other(
            "no credentials found in chain. Attempted:\n  Environment: missing\n  Profile: none"
                .into(),
            None,
        ));
        assert_eq!(
            worded(listed, 0),
            "DynamoDB PutItem on table orders failed: could not send the request to \
             127.0.0.1:8000: no credentials found in chain. Attempted: Environment: missing \
             Profile: none"
        );
    }

    /// A credential provider that timed out or failed (an STS `AccessDenied`) is said as such,
    /// not as missing credentials with what to set (found by a review).
    #[test]
    fn a_credential_provider_s_failure_is_worded_by_its_kind() {
        use aws_credential_types::provider::error::CredentialsError;
        let worded = |credentials: CredentialsError| {
            let mut failure = described(SdkError::dispatch_failure(
                aws_sdk_dynamodb::error::ConnectorError::other(Box::new(credentials), None),
            ));
            failure.worded_for(0);
            failure.to_string()
        };
        let timed_out = worded(CredentialsError::provider_timed_out(
            std::time::Duration::from_secs(5),
        ));
        assert!(
            timed_out.starts_with(
                "DynamoDB PutItem on table orders failed: could not sign the request: the AWS \
                 credential provider timed out (credentials provider timed out after 5 seconds"
            ) && !timed_out.contains("give the function a role"),
            "{timed_out}"
        );
        let denied = worded(CredentialsError::provider_error(
            "AccessDenied: not authorized to perform sts:AssumeRoleWithWebIdentity",
        ));
        assert!(
            denied.contains("could not sign the request: the AWS credential provider failed (")
                && denied.contains("AccessDenied")
                && !denied.contains("no AWS credentials"),
            "{denied}"
        );
        let missing = worded(CredentialsError::not_loaded("no providers in chain"));
        assert!(
            missing.contains("could not sign the request: no AWS credentials (")
                && missing.contains("AWS_ACCESS_KEY_ID"),
            "{missing}"
        );
    }

    #[test]
    fn a_connection_error_shows_the_endpoint_and_the_innermost_cause() {
        let refused = Layer(
            "client error (Connect)",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let error = described(SdkError::dispatch_failure(
            aws_sdk_dynamodb::error::ConnectorError::io(Box::new(refused)),
        ));
        assert_eq!(
            error.to_string(),
            "DynamoDB PutItem on table orders failed: could not send the request to \
             127.0.0.1:8000: connection refused"
        );
        assert_eq!(error.code(), None);
    }

    /// A connector error whose chain loops (a custom HTTP client's) is described, not walked
    /// forever: the walks that tell a request never sent stop where every other chain walk of
    /// the library stops (found by a review: the description hung).
    #[test]
    fn a_connector_error_whose_chain_loops_is_described() {
        #[derive(Debug)]
        struct Looping;
        impl fmt::Display for Looping {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the client's own error")
            }
        }
        impl std::error::Error for Looping {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(self)
            }
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let error = described(SdkError::dispatch_failure(
                aws_sdk_dynamodb::error::ConnectorError::other(Box::new(Looping), None),
            ));
            let _ = done.send(error.to_string());
        });
        let shown = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("described within 10 s");
        assert!(
            shown.contains("got no answer from 127.0.0.1:8000"),
            "{shown}"
        );
    }

    /// A connection closed after the request was written is no proof it was not sent: the
    /// write may have landed (it said "could not send the request" of a claim DynamoDB held;
    /// found by an attack through the fault proxy).
    #[test]
    fn a_connection_closed_before_the_answer_says_the_request_may_have_reached_it() {
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::BrokenPipe,
        ] {
            let closed = Layer(
                "connection closed before message completed",
                std::io::Error::from(kind),
            );
            let error = described(SdkError::dispatch_failure(
                aws_sdk_dynamodb::error::ConnectorError::io(Box::new(closed)),
            ));
            let shown = error.to_string();
            assert!(
                shown.starts_with(
                    "DynamoDB PutItem on table orders failed: got no answer from 127.0.0.1:8000 \
                     (the request may have reached it): "
                ),
                "{kind:?}: {shown}"
            );
        }
    }

    #[test]
    fn timeouts_unreadable_answers_and_unbuildable_requests_say_so() {
        let timeout = described(SdkError::timeout_error(
            "operation timeout (all attempts including retries) occurred after 1s",
        ));
        assert_eq!(
            timeout.to_string(),
            "DynamoDB PutItem on table orders failed: timed out talking to 127.0.0.1:8000: \
             operation timeout (all attempts including retries) occurred after 1s"
        );
        let unreadable = described(SdkError::response_error(
            "connection closed before message completed",
            response(200),
        ));
        assert_eq!(
            unreadable.to_string(),
            "DynamoDB PutItem on table orders failed: could not read the answer (HTTP 200) from \
             127.0.0.1:8000: connection closed before message completed"
        );
        let unbuildable = described(SdkError::construction_failure("no region is configured"));
        assert_eq!(
            unbuildable.to_string(),
            "DynamoDB PutItem on table orders failed: could not build the request: no region is \
             configured"
        );
    }

    #[test]
    fn item_size_errors_are_recognised_in_dynamodbs_and_motos_words() {
        let validation = |message| {
            SdkError::<_, HttpResponse>::service_error(
                PutItemError::generic(metadata("ValidationException", message)),
                response(400),
            )
        };
        assert!(is_item_too_large(&validation(
            "Item size has exceeded the maximum allowed size"
        )));
        assert!(is_item_too_large(&validation(
            "Item size to update has exceeded the maximum allowed size"
        )));
        assert!(!is_item_too_large(&validation(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum \
             size limit of 2048 bytes"
        )));
        assert!(!is_item_too_large(&validation(
            "One or more parameter values were invalid: Missing the key id in the item"
        )));
        let throttled = SdkError::<_, HttpResponse>::service_error(
            PutItemError::generic(metadata(
                "ThrottlingException",
                "Item size has exceeded the maximum allowed size",
            )),
            response(400),
        );
        assert!(!is_item_too_large(&throttled));
    }

    #[test]
    fn an_endpoint_is_shown_as_host_and_port() {
        assert_eq!(authority("http://127.0.0.1:8000/"), "127.0.0.1:8000");
        assert_eq!(authority("http://localhost"), "localhost:80");
        assert_eq!(
            authority("https://dynamodb.us-east-1.amazonaws.com"),
            "dynamodb.us-east-1.amazonaws.com:443"
        );
        assert_eq!(authority("http://[::1]:8000/path?x=1"), "[::1]:8000");
        assert_eq!(authority("https://[::1]/"), "[::1]:443");
        assert_eq!(authority("http://user@host:81"), "host:81");
    }

    #[test]
    fn before_any_request_the_endpoint_is_described_by_the_region() {
        let store = DynamoDbStore::new(client(), "orders").unwrap();
        assert_eq!(
            store.endpoint.describe_with(&store.client, || None),
            "the DynamoDB endpoint of us-east-1"
        );
        // With a variable that sets the endpoint (which the client may follow), its value.
        assert_eq!(
            store.endpoint.describe_with(&store.client, || Some((
                "AWS_ENDPOINT_URL_DYNAMODB",
                "not a url".to_owned()
            ))),
            "the DynamoDB endpoint of us-east-1 or the client's own \
             (AWS_ENDPOINT_URL_DYNAMODB is \"not a url\")"
        );
        // A client without a region is refused when the store is built
        // (`a_client_without_a_region_is_refused_naming_aws_region`).
    }

    /// What may be secret in an endpoint URL is left out of errors: the user-info (a password
    /// with a `?`, `#` or `@` in it too), the query and the fragment (found by a review).
    #[test]
    fn an_endpoint_url_is_written_without_its_credentials() {
        for (url, written) in [
            (
                "http://admin:hunter2@127.0.0.1:1/p?token=s3cr3t",
                "http://127.0.0.1:1/p",
            ),
            ("http://admin:hun?ter2@127.0.0.1:1/", "http://127.0.0.1:1/"),
            ("http://admin:hun#ter@2@127.0.0.1:1", "http://127.0.0.1:1"),
            (
                "https://dynamodb.local/?X-Amz-Signature=abc#frag",
                "https://dynamodb.local/",
            ),
            ("user:pw@host:8000", "host:8000"),
            ("not a url", "not a url"),
            ("http://host/p?email=a@b", "http://host/p"),
        ] {
            assert_eq!(without_credentials(url), written, "{url}");
        }
    }

    /// Once a call began, the endpoint URL the client's config sets is named, with the
    /// variable that set it when it is that variable's value.
    #[test]
    fn once_a_call_began_the_configured_endpoint_is_named() {
        let variable = || Some(("AWS_ENDPOINT_URL_DYNAMODB", "not a url".to_owned()));
        let store = DynamoDbStore::new(client(), "orders").unwrap();
        store.endpoint.0.configured.set(None).unwrap();
        assert_eq!(
            store.endpoint.describe_with(&store.client, variable),
            "the DynamoDB endpoint of us-east-1"
        );
        for (configured, described) in [
            (
                "not a url",
                "the client's endpoint URL \"not a url\" (AWS_ENDPOINT_URL_DYNAMODB)",
            ),
            ("http://[::1", "the client's endpoint URL \"http://[::1\""),
        ] {
            let store = DynamoDbStore::new(client(), "orders").unwrap();
            store
                .endpoint
                .0
                .configured
                .set(Some(configured.to_owned()))
                .unwrap();
            assert_eq!(
                store.endpoint.describe_with(&store.client, variable),
                described
            );
        }
    }

    #[test]
    fn the_claim_condition_is_the_powertools_one() {
        assert_eq!(
            PUT_CONDITION,
            "attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND \
             attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)"
        );
    }

    #[test]
    fn a_sort_key_equal_to_the_partition_key_is_rejected_at_build() {
        let error = DynamoDbStore::builder(client(), "orders")
            .sort_key_attr("id")
            .static_pk_value("p")
            .build()
            .unwrap_err();
        assert!(
            matches!(error, Error::Config(message) if message.contains("sort_key_attr and key_attr"))
        );
    }

    /// Found by an attack: the store built, and every call failed with DynamoDB's
    /// `ValidationException`, reported as a failure to save the in-progress record.
    #[test]
    fn an_empty_static_partition_value_is_rejected_at_build() {
        let error = DynamoDbStore::builder(client(), "orders")
            .sort_key_attr("sk")
            .static_pk_value("")
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(message) if message.contains("static_pk_value is empty")),
            "{error}"
        );
    }

    #[test]
    fn an_empty_table_name_is_rejected_at_build() {
        assert!(matches!(
            DynamoDbStore::new(client(), " "),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn a_table_name_dynamodb_refuses_is_rejected_at_build_naming_it() {
        let long = "t".repeat(256);
        for refused in [
            "t",
            "ab",
            "orders\n",
            " orders",
            "bad name!",
            "orders/idempotency",
            "commandes-é",
            long.as_str(),
            "arn:aws:dynamodb:eu-west-1:123456789012:table/",
            "arn:aws:dynamodb:eu-west-1:123456789012:stream/orders",
            "arn:aws:s3:eu-west-1:123456789012:table/orders",
            "arn::dynamodb:eu-west-1:123456789012:table/orders",
        ] {
            let error = DynamoDbStore::new(client(), refused).unwrap_err();
            assert!(
                matches!(&error, Error::Config(message)
                    if message.contains(&powertools_core::env::shown(refused))
                        && message.contains("not one DynamoDB accepts")),
                "{refused:?}: {error}"
            );
        }
        let longest = "t".repeat(255);
        for accepted in [
            "ord",
            "Orders_v2.idempotency-table",
            longest.as_str(),
            "arn:aws:dynamodb:eu-west-1:123456789012:table/orders",
            "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/orders.v2",
        ] {
            let store = DynamoDbStore::new(client(), accepted);
            assert!(store.is_ok(), "{accepted:?}: {:?}", store.err());
        }
    }

    #[test]
    fn a_composite_key_puts_the_idempotency_key_in_the_sort_key() {
        let store = DynamoDbStore::builder(client(), "orders")
            .sort_key_attr("sk")
            .static_pk_value("idempotency#orders")
            .build()
            .unwrap();
        let key = store.key("orders#abc");
        assert_eq!(key["id"], AttributeValue::S("idempotency#orders".into()));
        assert_eq!(key["sk"], AttributeValue::S("orders#abc".into()));
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn a_stored_record_is_parsed_with_every_attribute() {
        let store = DynamoDbStore::new(client(), "orders").unwrap();
        let record = store
            .parse(&item(&[
                ("id", AttributeValue::S("f#1".into())),
                ("status", AttributeValue::S("COMPLETED".into())),
                ("expiration", AttributeValue::N("1700000000".into())),
                (
                    "in_progress_expiration",
                    AttributeValue::N("1699999999123".into()),
                ),
                ("data", AttributeValue::S("{\"ok\":true}".into())),
                ("validation", AttributeValue::S("abc".into())),
            ]))
            .unwrap();
        assert_eq!(
            record,
            DataRecord {
                key: "f#1".into(),
                status: Status::Completed,
                expiry_timestamp: 1_700_000_000,
                in_progress_expiry_timestamp: Some(1_699_999_999_123),
                response_data: Some("{\"ok\":true}".into()),
                payload_hash: Some("abc".into()),
                claim_id: None,
                not_stored_reason: None,
            }
        );
    }

    #[test]
    fn a_malformed_stored_record_is_a_typed_error() {
        let store = DynamoDbStore::new(client(), "orders").unwrap();
        let cases = [
            item(&[("status", AttributeValue::S("COMPLETED".into()))]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::S("DONE".into())),
                ("expiration", AttributeValue::N("1".into())),
            ]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::N("1".into())),
                ("expiration", AttributeValue::N("1".into())),
            ]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::S("COMPLETED".into())),
            ]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::S("COMPLETED".into())),
                ("expiration", AttributeValue::S("soon".into())),
            ]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::S("COMPLETED".into())),
                ("expiration", AttributeValue::N("x".into())),
            ]),
            item(&[
                ("id", AttributeValue::S("k".into())),
                ("status", AttributeValue::S("COMPLETED".into())),
                ("expiration", AttributeValue::N("1".into())),
                ("data", AttributeValue::Bool(true)),
            ]),
        ];
        for case in cases {
            assert!(
                matches!(store.parse(&case), Err(StoreError::InvalidRecord { .. })),
                "{case:?}"
            );
        }
    }
}
