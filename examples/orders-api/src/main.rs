//! `orders-api`: the bakery's order function behind an API Gateway HTTP API.
//!
//! `POST /orders` with an `Idempotency-Key` header places an order: it is priced, the card is
//! charged (once, whatever the retries), and the order is saved. Every log line carries the
//! order, customer and location; each invocation writes `OrdersPlaced` and `OrderValue` by
//! location; the invocation is traced with its DynamoDB calls.
//!
//! Deployed, it runs under the Lambda Runtime API with the tables named by `ORDERS_TABLE` and
//! `IDEMPOTENCY_TABLE`. With the argument `demo` it runs offline, with in-memory stores, over the
//! sample events in `events/`:
//!
//! ```text
//! cargo run -p orders-api -- demo
//! ```

mod api;
mod backend;
mod demo;
mod order;

use powertools::Powertools;
use powertools::idempotency::DynamoDbStore;
use powertools::tracing::AwsSdkSpans;

use crate::api::App;
use crate::backend::{OrdersTable, PaymentProvider};

fn required_env(name: &str) -> Result<String, lambda_runtime::Error> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    if std::env::args().nth(1).as_deref() == Some("demo") {
        return demo::run().await;
    }
    // Once, at init: a bad setting stops the function here with a message that names it.
    let powertools = Powertools::from_env()?;
    powertools.init()?;
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(AwsSdkSpans)
            .build(),
    );
    let store = DynamoDbStore::new(dynamodb.clone(), required_env("IDEMPOTENCY_TABLE")?)?;
    let (order_idempotency, payment_idempotency) = api::idempotency(store)?;
    let app = App {
        orders: OrdersTable::DynamoDb {
            client: dynamodb,
            table: required_env("ORDERS_TABLE")?,
        },
        payments: PaymentProvider::default(),
        payment_idempotency,
    };
    lambda_runtime::run(api::service(&powertools, order_idempotency, app)?).await
}
