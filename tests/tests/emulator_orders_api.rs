//! The `orders-api` example as a deployed function: a real binary polling the Lambda Runtime API
//! of the `cargo lambda` emulator, invoked over HTTP.

use std::path::PathBuf;

use powertools_tests::EmulatedFunction;
use serde_json::{Value, json};

fn orders_api_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders-api")
}

fn sample(name: &str) -> Value {
    let path = orders_api_dir().join("events").join(name);
    let text = std::fs::read_to_string(&path).expect("the sample event exists");
    serde_json::from_str(&text).expect("the sample event is JSON")
}

#[test]
fn the_deployed_function_accepts_orders_refuses_bad_ones_and_reports_one_cold_start() {
    let Some(function) = EmulatedFunction::start(
        &orders_api_dir(),
        "orders-api",
        &[("POWERTOOLS_SERVICE_NAME", "orders")],
    ) else {
        return;
    };

    // When the first order arrives
    let first = function.invoke(&sample("first-order.json"));
    // Then it is accepted, priced, and reported as the cold start of the process
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["order_id"], "ord-1001");
    assert_eq!(first.body["total_cents"], 2550);
    assert_eq!(first.body["cold_start"], true);
    let first_request_id = first.body["request_id"].as_str().unwrap().to_owned();
    assert!(!first_request_id.is_empty());

    // When a second order arrives at the same warm process
    let second = function.invoke(&sample("second-order.json"));
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["cold_start"], false);
    assert_ne!(second.body["request_id"], json!(first_request_id));

    // When an order has an empty basket, Lambda reports the typed error
    let refused = function.invoke(&sample("empty-basket.json"));
    assert_ne!(refused.status, 200);
    assert_eq!(refused.body["errorType"], "EmptyBasket");
    assert_eq!(
        refused.body["errorMessage"],
        "order ord-1003 has an empty basket"
    );
}
