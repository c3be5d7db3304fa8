use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{IdempotencyStore, PutOutcome, StoreError};
use crate::Error;
use crate::record::{DataRecord, Status, epoch};

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
/// can serve functions in several languages (their keys differ, their records do not collide).
///
/// ```no_run
/// # async fn example() -> Result<(), powertools_idempotency::Error> {
/// use powertools_idempotency::DynamoDbStore;
///
/// let config = aws_config::load_from_env().await;
/// let client = aws_sdk_dynamodb::Client::new(&config);
/// let store = DynamoDbStore::builder(client, "idempotency").build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    settings: Arc<Settings>,
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

impl DynamoDbStore {
    /// A store on `table_name` with the default attribute names.
    ///
    /// # Errors
    /// [`Error::Config`] when the table name is empty.
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

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<DataRecord, StoreError> {
        let settings = &*self.settings;
        let key_attr = settings
            .sort_key_attr
            .as_ref()
            .unwrap_or(&settings.key_attr);
        let key = match item.get(key_attr) {
            Some(AttributeValue::S(key)) => key.clone(),
            _ => {
                return Err(StoreError::InvalidRecord {
                    key: "<unknown>".into(),
                    reason: format!("attribute {key_attr} is missing or not a string"),
                });
            }
        };
        let invalid = |reason: String| StoreError::InvalidRecord {
            key: key.clone(),
            reason,
        };
        let string = |name: &str| -> Result<Option<String>, StoreError> {
            match item.get(name) {
                None => Ok(None),
                Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
                Some(other) => Err(invalid(format!(
                    "attribute {name} should be a string, found {other:?}"
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
                    .map_err(|_| invalid(format!("attribute {name} is not a number: {value:?}"))),
                Some(other) => Err(invalid(format!(
                    "attribute {name} should be a number, found {other:?}"
                ))),
            }
        };
        let status_text = string(&settings.status_attr)?
            .ok_or_else(|| invalid(format!("attribute {} is missing", settings.status_attr)))?;
        let status = Status::from_wire(&status_text)
            .ok_or_else(|| invalid(format!("unknown status {status_text:?}")))?;
        let expiry_timestamp = number(&settings.expiry_attr)?
            .ok_or_else(|| invalid(format!("attribute {} is missing", settings.expiry_attr)))?;
        Ok(DataRecord {
            status,
            expiry_timestamp,
            in_progress_expiry_timestamp: number(&settings.in_progress_expiry_attr)?,
            response_data: string(&settings.data_attr)?,
            payload_hash: string(&settings.validation_key_attr)?,
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
    /// below in the partition key (default: no sort key).
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
    /// [`Error::Config`] for an empty table or attribute name, a sort key equal to the partition
    /// key, two attributes with the same name, a sort key without a static partition value when
    /// `AWS_LAMBDA_FUNCTION_NAME` is not set, or a malformed `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn build(self) -> Result<DynamoDbStore, Error> {
        if self.table_name.trim().is_empty() {
            return Err(Error::Config("the table name is empty".into()));
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
            if let Some((other, _)) = names[..index].iter().find(|(_, earlier)| earlier == name) {
                return Err(Error::Config(format!(
                    "{setting} and {other} are both {name:?}"
                )));
            }
        }
        let static_pk_value = match (&self.sort_key_attr, self.static_pk_value) {
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
        Ok(DynamoDbStore {
            client: self.client,
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
            }),
        })
    }
}

fn backend<E: std::error::Error + Send + Sync + 'static>(error: E) -> StoreError {
    StoreError::Backend(Box::new(error))
}

impl IdempotencyStore for DynamoDbStore {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.settings.table_name)
            .set_key(Some(self.key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        output.item().map(|item| self.parse(item)).transpose()
    }

    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        let settings = &*self.settings;
        let (now_s, now_ms) = epoch(now);
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
        let result = self
            .client
            .put_item()
            .table_name(&settings.table_name)
            .set_item(Some(item))
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Stored),
            Err(error) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failure)) =
                    error.as_service_error()
                {
                    let existing = failure.item().map(|item| self.parse(item)).transpose()?;
                    return Ok(PutOutcome::Exists(existing));
                }
                Err(backend(error))
            }
        }
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
        update
            .update_expression(expression)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.settings.table_name)
            .set_key(Some(self.key(key)))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
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
        let error = DynamoDbStore::builder(client(), "t")
            .sort_key_attr("id")
            .static_pk_value("p")
            .build()
            .unwrap_err();
        assert!(
            matches!(error, Error::Config(message) if message.contains("sort_key_attr and key_attr"))
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
    fn a_composite_key_puts_the_idempotency_key_in_the_sort_key() {
        let store = DynamoDbStore::builder(client(), "t")
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
        let store = DynamoDbStore::new(client(), "t").unwrap();
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
            }
        );
    }

    #[test]
    fn a_malformed_stored_record_is_a_typed_error() {
        let store = DynamoDbStore::new(client(), "t").unwrap();
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
