//! `orders-api`: the bakery's order function behind an API Gateway HTTP API.
//!
//! `POST /orders` with an `Idempotency-Key` header places an order: it is priced, the card is
//! charged (once, whatever the retries), and the order is saved. Every log line carries the
//! order, customer and location; the invocation that saved an order writes `OrdersPlaced` and
//! `OrderValue` by location, once per order; the invocation is traced with its DynamoDB calls.
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
mod request;

use std::process::ExitCode;
use std::time::Duration;

use powertools::Powertools;
use powertools::idempotency::DynamoDbStore;
use powertools::tracing::AwsSdkSpans;

use crate::api::App;
use crate::backend::{OrdersTable, PaymentProvider};
use crate::order::Catalogue;

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = if std::env::args().nth(1).as_deref() == Some("demo") {
        demo::run().await
    } else {
        run().await
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The message, which names the setting and the fix (not a Debug dump), in the log and,
        // under Lambda, in the answer to the invocation that started the function.
        Err(error) => powertools::init_failed(&*error).await,
    }
}

/// The deployed function: settings from the environment, once, then the Runtime API.
async fn run() -> Result<(), lambda_runtime::Error> {
    // A bad setting stops the function here, before the first invocation.
    let powertools = Powertools::builder()
        .metrics(|metrics| metrics.capture_cold_start_metric(true))
        .build()?;
    powertools.init()?;
    // Spans leave after the response (an in-process Lambda extension): callers never wait for
    // the collector.
    powertools.register_extension().await?;
    let orders_table = required_env("ORDERS_TABLE", "orders table")?;
    let idempotency_table = required_env("IDEMPOTENCY_TABLE", "idempotency table")?;
    // Not `aws_config::load_from_env()`, which panics on an invalid `AWS_MAX_ATTEMPTS` or
    // `AWS_RETRY_MODE`: an error naming it, which Lambda reports as the start's.
    let aws = powertools::load_aws_config().await?;
    // The SDK sets no timeout of its own: a stalled call would hold the invocation until Lambda
    // kills it (after the charge, with nothing logged). DynamoDB answers in milliseconds; a
    // call is given 1 s per attempt and 3 s with its retries, well within the function's 10 s
    // (template.yaml), so that a failure is answered and logged. The idempotency store bounds
    // its own calls as well.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(3))
        .build();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(AwsSdkSpans)
            .timeout_config(timeouts)
            .build(),
    );
    let store = DynamoDbStore::new(dynamodb.clone(), idempotency_table)?;
    let (order_idempotency, payment_idempotency) = api::idempotency(store)?;
    let app = App {
        orders: OrdersTable::DynamoDb {
            client: dynamodb,
            table: orders_table,
        },
        payments: PaymentProvider::default(),
        payment_idempotency,
        catalogue: Catalogue::bakery(),
    };
    // Sequential by default; with `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) as
    // many invocations at once as it says, each with its own logs, metrics, span and records.
    powertools::run_concurrent(api::service(&powertools, order_idempotency, app)?).await
}

fn required_env(name: &str, what: &str) -> Result<String, lambda_runtime::Error> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            format!("{name} is not set: set it to the name of the {what} (template.yaml sets it for the deployed function)").into()
        })
}
