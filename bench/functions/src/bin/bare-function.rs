//! The bare function of the cold-start, size and memory comparison: `lambda_runtime` and the
//! DynamoDB client, no logging and no Powertools. It writes the order into the table named by
//! `ORDERS_TABLE` and answers with the receipt, as `full-stack-function` does behind the stack.

use lambda_runtime::{LambdaEvent, service_fn};
use powertools_bench::{Order, Receipt, accept, save_order};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = std::env::var("ORDERS_TABLE").map_err(|_| "set ORDERS_TABLE")?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Order>| {
        let dynamodb = dynamodb.clone();
        let table = table.clone();
        async move {
            let order = event.payload;
            save_order(&dynamodb, &table, &order).await?;
            Ok::<Receipt, lambda_runtime::Error>(accept(&order))
        }
    }))
    .await
}
