//! Reading a DynamoDB Streams record's image into a type of the function's own
//! (`powertools_batch::read_image`): where it went wrong, without the value (found by a new
//! user following the README: `serde_dynamo::from_item`'s error quoted the value, a card
//! number in the wrong attribute, into the failure line and Lambda's `errorMessage`, and named
//! no attribute).

use aws_lambda_events::dynamodb::{Event, EventRecord};
use powertools_batch::{BatchProcessor, Error, read_image};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, PartialEq)]
struct Order {
    order_id: String,
    status: Status,
    quantity: Option<i64>,
    price: Option<f32>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Baked,
    Burnt,
}

const CARD: &str = "4111111111111111111111";

fn event(new_images: &[serde_json::Value]) -> Event {
    let records: Vec<_> = new_images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            json!({
                "eventID": format!("e-{index}"), "eventName": "MODIFY",
                "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1",
                "dynamodb": {"Keys": {"order_id": {"S": "o-1"}}, "NewImage": image,
                             "SequenceNumber": format!("{}", 100 + index), "SizeBytes": 10,
                             "StreamViewType": "NEW_IMAGE"}
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a DynamoDB Streams event")
}

fn image(new_image: serde_json::Value) -> powertools_batch::serde_dynamo::Item {
    event(&[new_image]).records.remove(0).change.new_image
}

#[test]
fn an_image_reads_into_the_function_s_type() {
    let order: Order = read_image(image(json!({
        "order_id": {"S": "o-1"}, "status": {"S": "baked"}, "quantity": {"N": "2"},
        "price": {"N": "2.5"}, "note": {"S": "extra attributes are ignored"}
    })))
    .expect("an order");
    assert_eq!(
        order,
        Order {
            order_id: "o-1".into(),
            status: Status::Baked,
            quantity: Some(2),
            price: Some(2.5),
        }
    );
}

#[test]
fn an_image_that_does_not_read_names_where_and_why_without_the_value() {
    let base = || json!({"order_id": {"S": "o-1"}, "status": {"S": "baked"}});
    let with = |key: &str, value: serde_json::Value| {
        let mut image = base();
        image[key] = value;
        image
    };
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("order_id");
    for (new_image, path, why) in [
        // serde_dynamo: "Failed to parse '4111…' as an integer: number too large…".
        (with("quantity", json!({"N": CARD})), "quantity", "integer"),
        (
            with("price", json!({"N": format!("{CARD}x")})),
            "price",
            "float",
        ),
        // serde's "unknown variant `4111…`, expected one of …".
        (
            with("status", json!({"S": CARD})),
            "status",
            "unknown variant",
        ),
        // serde_dynamo's own, which quote nothing: kept.
        (
            with("order_id", json!({"N": "5"})),
            "order_id",
            "Expected string",
        ),
        (missing, "", "missing field `order_id`"),
    ] {
        let error = read_image::<Order>(image(new_image)).expect_err(path);
        let message = error.to_string();
        assert!(matches!(error, Error::InvalidImage { .. }), "{error:?}");
        assert_eq!(error.error_type(), "InvalidImage");
        assert!(
            !message.contains("4111") && message.contains(why) && message.contains("Order"),
            "{message}"
        );
        if !path.is_empty() {
            assert!(message.contains(&format!("at {path}")), "{message}");
        }
    }
}

/// The README's pattern, through the processor: the failed record's reason (here Lambda's
/// `errorMessage`, the batch's only record) names the attribute, not its value.
#[tokio::test]
async fn a_record_whose_image_does_not_read_fails_without_its_value() {
    async fn on_change(record: EventRecord) -> Result<(), Error> {
        let _order: Order = read_image(record.change.new_image)?;
        Ok(())
    }
    let event = event(&[json!({
        "order_id": {"S": "o-1"}, "status": {"S": "baked"}, "quantity": {"N": CARD}
    })]);
    let error = BatchProcessor::new()
        .process_dynamodb(&event, on_change)
        .await
        .expect_err("the only record failed");
    let Error::AllRecordsFailed { first_error, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        first_error.contains("at quantity") && !first_error.contains("4111"),
        "{first_error}"
    );
}
