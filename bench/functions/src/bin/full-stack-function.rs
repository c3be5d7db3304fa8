//! The full-stack function of the cold-start, size and memory comparison: `bare-function`'s
//! handler behind the whole Powertools stack (logs, metrics, traces exported over OTLP, the
//! DynamoDB client's spans, exported after the response by the tracer's internal extension) and
//! idempotency on the order id, stored in the table named by
//! `IDEMPOTENCY_TABLE`. The order goes into the table named by `ORDERS_TABLE`.

use lambda_runtime::tower::ServiceBuilder;
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer};
use powertools_bench::{Order, Receipt, accept_with_powertools, save_order};

fn required_env(name: &str) -> Result<String, lambda_runtime::Error> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::from_env()?;
    powertools.init()?;
    // Spans leave after the response, through the tracer's internal extension (registered now,
    // during init).
    powertools.tracer().register_extension().await?;
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(powertools::tracing::AwsSdkSpans)
            .build(),
    );
    let table = required_env("ORDERS_TABLE")?;
    let store = DynamoDbStore::new(dynamodb.clone(), required_env("IDEMPOTENCY_TABLE")?)?;
    let idempotency = Idempotency::builder(store).key_prefix("orders").build()?;
    let handler = service_fn(move |event: LambdaEvent<Order>| {
        let dynamodb = dynamodb.clone();
        let table = table.clone();
        async move {
            let order = event.payload;
            save_order(&dynamodb, &table, &order).await?;
            Ok::<Receipt, lambda_runtime::Error>(accept_with_powertools(&order))
        }
    });
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .layer(
            IdempotencyLayer::new(idempotency)
                .key_from(|order: &Order| Some(order.order_id.clone())),
        )
        .service(handler);
    lambda_runtime::run(service).await
}
