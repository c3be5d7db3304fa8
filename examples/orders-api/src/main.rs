//! `orders-api`: the bakery's order function.
//!
//! Deployed, it runs under the Lambda Runtime API (`lambda_runtime::run`). With the argument
//! `demo` it runs offline instead: it invokes the same handler over the sample events in
//! `events/` with realistic Lambda contexts and prints what a deployed function would answer.
//!
//! ```text
//! cargo run -p orders-api -- demo
//! ```

mod demo;
mod order;

use lambda_runtime::service_fn;
use powertools_core::PowertoolsConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Read once at init: a malformed POWERTOOLS_* or Lambda variable stops the function here,
    // with a message naming the variable, before any request is accepted.
    let config = PowertoolsConfig::from_env()?;
    if std::env::args().nth(1).as_deref() == Some("demo") {
        return demo::run(&config).await;
    }
    lambda_runtime::run(service_fn(order::handle_order)).await
}
