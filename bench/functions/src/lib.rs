//! The benchmark suite's order handler, shared by everything `scripts/bench` measures: the
//! in-process comparison with Powertools for Python, the latency through DynamoDB, and the two
//! functions whose cold start, size and memory are compared (`bare-function` and
//! `full-stack-function`).
//!
//! The handler is the one the Python side runs (`bench/python/handler.py`): it adds the order id
//! to the logs, records one metric with one dimension, logs one line and answers with a receipt.
//!
//! ```
//! use powertools_bench::{Order, accept};
//!
//! let order: Order = serde_json::from_str(include_str!("../../events/order.json")).unwrap();
//! assert_eq!(accept(&order).total_cents, 2420);
//! ```

use lambda_runtime::LambdaEvent;
use powertools::metrics::{Sink, Unit};
use serde::{Deserialize, Serialize};

/// The sample event of `bench/events/order.json`.
pub const ORDER_EVENT: &str = include_str!("../../events/order.json");

/// An EMF sink that drops each document once it is serialized: the benchmarks measure the
/// document, not a terminal (Python's side writes to `/dev/null`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardDocuments;

impl Sink for DiscardDocuments {
    fn write_document(&self, line: &str) {
        std::hint::black_box(line);
    }
}

/// An order line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// Product code.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Unit price.
    pub price_cents: u64,
}

/// The event: an order placed through a channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    /// The idempotency key.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// Where the order came from; the metric's dimension.
    pub channel: String,
    /// What was ordered.
    pub items: Vec<Item>,
    /// The total the client computed.
    pub total_cents: u64,
    /// ISO 4217 code.
    pub currency: String,
}

impl Order {
    /// The sample order with another id, so that each call of a first-call benchmark is new.
    pub fn sample(order_id: impl Into<String>) -> Self {
        let mut order: Order =
            serde_json::from_str(ORDER_EVENT).expect("bench/events/order.json is an Order");
        order.order_id = order_id.into();
        order
    }
}

/// The handler's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    /// The order.
    pub order_id: String,
    /// Always true: the benchmark's orders are valid.
    pub accepted: bool,
    /// The sum of the lines.
    pub total_cents: u64,
}

/// The business logic, with no Powertools call: what the bare handler does.
pub fn accept(order: &Order) -> Receipt {
    Receipt {
        order_id: order.order_id.clone(),
        accepted: true,
        total_cents: order
            .items
            .iter()
            .map(|item| u64::from(item.quantity) * item.price_cents)
            .sum(),
    }
}

/// The handler with its Powertools calls: the order id on every log line, `OrdersPlaced` by
/// channel, one log line. Errors of the calls are logged, never returned, as a function would.
pub fn accept_with_powertools(order: &Order) -> Receipt {
    if let Err(error) = powertools::logging::append_key("order_id", &order.order_id) {
        tracing::warn!(%error, "order id not added to the logs");
    }
    let recorded = powertools::metrics::add_dimension("channel", &order.channel)
        .and_then(|()| powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count));
    if let Err(error) = recorded {
        tracing::warn!(%error, "metric not recorded");
    }
    tracing::info!("order placed");
    accept(order)
}

/// [`accept_with_powertools`] as a `service_fn` handler.
pub async fn handler(event: LambdaEvent<Order>) -> Result<Receipt, std::convert::Infallible> {
    Ok(accept_with_powertools(&event.payload))
}

/// Writes the order into `table` (key `order_id`) with one PutItem: the handler's one DynamoDB
/// call, the same in the bare and the full-stack function.
pub async fn save_order(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    order: &Order,
) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    client
        .put_item()
        .table_name(table)
        .item("order_id", AttributeValue::S(order.order_id.clone()))
        .item("customer_id", AttributeValue::S(order.customer_id.clone()))
        .item("channel", AttributeValue::S(order.channel.clone()))
        .item(
            "total_cents",
            AttributeValue::N(order.total_cents.to_string()),
        )
        .item("currency", AttributeValue::S(order.currency.clone()))
        .send()
        .await?;
    Ok(())
}
