//! The DynamoDB path the idempotency layer builds on, against the real test server: a
//! conditional put that fails hands back the existing record, so no extra read is needed.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use powertools_tests::{create_idempotency_table, dynamodb_client};

const LOCK_CONDITION: &str = "attribute_not_exists(#id) OR #expiry < :now";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

async fn conditional_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
    owner: &str,
    expiry: i64,
) -> Result<(), PutItemError> {
    client
        .put_item()
        .table_name(table)
        .item("id", AttributeValue::S(id.into()))
        .item("status", AttributeValue::S("INPROGRESS".into()))
        .item("owner", AttributeValue::S(owner.into()))
        .item("expiration", AttributeValue::N(expiry.to_string()))
        .condition_expression(LOCK_CONDITION)
        .expression_attribute_names("#id", "id")
        .expression_attribute_names("#expiry", "expiration")
        .expression_attribute_values(":now", AttributeValue::N(now_secs().to_string()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| error.into_service_error())
}

#[tokio::test]
async fn a_failed_conditional_put_returns_the_existing_item() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    // Given a table holding a live record written by a first invocation
    let table = create_idempotency_table(&client).await;
    conditional_put(&client, &table, "order-1", "first", now_secs() + 3600)
        .await
        .expect("the first put finds no record and succeeds");

    // When a second invocation tries to write the same key
    let error = conditional_put(&client, &table, "order-1", "second", now_secs() + 3600)
        .await
        .expect_err("the record is live, so the condition fails");

    // Then the error is the conditional check and carries the first invocation's record
    let PutItemError::ConditionalCheckFailedException(failure) = error else {
        panic!("expected ConditionalCheckFailedException, got {error:?}");
    };
    let old = failure.item().expect("ALL_OLD returns the existing item");
    assert_eq!(old.get("owner"), Some(&AttributeValue::S("first".into())));
    assert_eq!(
        old.get("status"),
        Some(&AttributeValue::S("INPROGRESS".into()))
    );
}

#[tokio::test]
async fn a_conditional_put_takes_over_an_expired_record() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    // Given a record whose expiry has passed (DynamoDB's TTL deletes late, so code must compare)
    let table = create_idempotency_table(&client).await;
    conditional_put(&client, &table, "order-2", "crashed", now_secs() - 10)
        .await
        .unwrap();

    // When another invocation writes the same key
    conditional_put(&client, &table, "order-2", "retry", now_secs() + 3600)
        .await
        .expect("an expired record does not block the key");

    // Then the new record replaced the old one
    let item = client
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S("order-2".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the record exists");
    assert_eq!(item.get("owner"), Some(&AttributeValue::S("retry".into())));
}
