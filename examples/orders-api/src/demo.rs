//! The offline demo: the handler invoked over the sample events, as Lambda would invoke it.

use lambda_runtime::tower::{Service, ServiceExt};
use lambda_runtime::{Diagnostic, service_fn};
use powertools_core::PowertoolsConfig;
use powertools_core::testing::TestContext;
use serde_json::json;

use crate::order::{Order, handle_order};

const SAMPLE_EVENTS: [(&str, &str); 3] = [
    (
        "first-order.json",
        include_str!("../events/first-order.json"),
    ),
    (
        "second-order.json",
        include_str!("../events/second-order.json"),
    ),
    (
        "empty-basket.json",
        include_str!("../events/empty-basket.json"),
    ),
];

pub(crate) async fn run(config: &PowertoolsConfig) -> Result<(), lambda_runtime::Error> {
    println!(
        "orders-api demo: service {:?}, {} sample events, no AWS services needed\n",
        config.service_name(),
        SAMPLE_EVENTS.len()
    );
    let mut handler = service_fn(handle_order);
    let mut summary = Vec::new();
    for (name, text) in SAMPLE_EVENTS {
        let order: Order = serde_json::from_str(text)?;
        let event = TestContext::new()
            .with_function_name("orders-api")
            .event(order);
        let request_id = event.context.request_id.clone();
        println!("-> invoke with events/{name} (request {request_id})");
        match handler.ready().await?.call(event).await {
            Ok(accepted) => {
                println!("<- {}\n", serde_json::to_string(&accepted)?);
                summary.push(format!(
                    "{name}: accepted {} for {} cents{}",
                    accepted.order_id,
                    accepted.total_cents,
                    if accepted.cold_start {
                        " (cold start: the first invocation of this process)"
                    } else {
                        ""
                    }
                ));
            }
            Err(error) => {
                // The body the Runtime API receives for a failed invocation.
                let diagnostic = Diagnostic::from(error);
                let body = json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message});
                println!("<- error {body}\n");
                summary.push(format!(
                    "{name}: refused with {} ({}), a typed error Lambda reports as errorType",
                    diagnostic.error_type, diagnostic.error_message
                ));
            }
        }
    }
    println!("summary:");
    for line in summary {
        println!("  - {line}");
    }
    Ok(())
}
