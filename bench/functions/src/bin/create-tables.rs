//! Creates the benchmark's two tables on the DynamoDB endpoint in `AWS_ENDPOINT_URL_DYNAMODB`
//! (moto, under `scripts/with-test-services`) and prints their names as one JSON line:
//! `{"orders_table": …, "idempotency_table": …}`.

use powertools_tests::{
    DYNAMODB_ENDPOINT_VAR, create_idempotency_table, create_orders_table, dynamodb_client,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = dynamodb_client().await.ok_or_else(|| {
        format!("no DynamoDB at {DYNAMODB_ENDPOINT_VAR}: run through scripts/with-test-services")
    })?;
    let orders_table = create_orders_table(&client).await;
    let idempotency_table = create_idempotency_table(&client).await;
    println!(
        "{}",
        serde_json::json!({
            "orders_table": orders_table,
            "idempotency_table": idempotency_table,
        })
    );
    Ok(())
}
