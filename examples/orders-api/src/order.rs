//! The order handler: validates an order and prices it.

use lambda_runtime::{Diagnostic, LambdaEvent};
use powertools_core::Invocation;
use serde::{Deserialize, Serialize};

/// An order placed by a customer at one of the bakery's locations.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Order {
    pub(crate) order_id: String,
    pub(crate) customer_id: String,
    pub(crate) location: String,
    pub(crate) items: Vec<LineItem>,
}

/// One line of the basket.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct LineItem {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
    pub(crate) unit_price_cents: u64,
}

/// What the function answers for an accepted order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrderAccepted {
    pub(crate) order_id: String,
    pub(crate) status: &'static str,
    pub(crate) total_cents: u64,
    pub(crate) request_id: String,
    pub(crate) cold_start: bool,
}

/// Why an order was refused; Lambda reports the variant as the `errorType`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
    #[error("order {0} has an empty basket")]
    EmptyBasket(String),
    #[error("order {order_id}: {sku} has quantity 0")]
    ZeroQuantity { order_id: String, sku: String },
    #[error("order {0}: the total does not fit in 64 bits")]
    TotalOverflow(String),
}

impl From<OrderError> for Diagnostic {
    fn from(error: OrderError) -> Self {
        let error_type = match error {
            OrderError::EmptyBasket(_) => "EmptyBasket",
            OrderError::ZeroQuantity { .. } => "ZeroQuantity",
            OrderError::TotalOverflow(_) => "TotalOverflow",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// Accepts a valid order and answers with its total.
pub(crate) async fn handle_order(event: LambdaEvent<Order>) -> Result<OrderAccepted, OrderError> {
    let (order, context) = event.into_parts();
    let invocation = Invocation::new(&context);
    if order.items.is_empty() {
        return Err(OrderError::EmptyBasket(order.order_id));
    }
    let mut total_cents: u64 = 0;
    for item in &order.items {
        if item.quantity == 0 {
            return Err(OrderError::ZeroQuantity {
                order_id: order.order_id,
                sku: item.sku.clone(),
            });
        }
        total_cents = item
            .unit_price_cents
            .checked_mul(u64::from(item.quantity))
            .and_then(|line| total_cents.checked_add(line))
            .ok_or_else(|| OrderError::TotalOverflow(order.order_id.clone()))?;
    }
    Ok(OrderAccepted {
        order_id: order.order_id,
        status: "accepted",
        total_cents,
        request_id: invocation.request_id().to_owned(),
        cold_start: invocation.cold_start(),
    })
}

#[cfg(test)]
mod tests {
    use lambda_runtime::service_fn;
    use lambda_runtime::tower::{Service, ServiceExt};
    use powertools_core::testing::TestContext;

    use super::*;

    fn sample(name: &str) -> Order {
        let text = match name {
            "first-order" => include_str!("../events/first-order.json"),
            "empty-basket" => include_str!("../events/empty-basket.json"),
            other => panic!("no sample event {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn a_valid_order_is_accepted_with_its_total() {
        let mut handler = service_fn(handle_order);
        let event = TestContext::new()
            .with_request_id("req-1")
            .event(sample("first-order"));
        let accepted = handler.ready().await.unwrap().call(event).await.unwrap();
        assert_eq!(accepted.order_id, "ord-1001");
        assert_eq!(accepted.total_cents, 2 * 450 + 6 * 275);
        assert_eq!(accepted.request_id, "req-1");
    }

    #[tokio::test]
    async fn an_empty_basket_is_refused_with_its_own_error_type() {
        let error = handle_order(TestContext::new().event(sample("empty-basket")))
            .await
            .unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "EmptyBasket");
        assert_eq!(
            diagnostic.error_message,
            "order ord-1003 has an empty basket"
        );
    }

    #[tokio::test]
    async fn a_total_that_overflows_is_refused_not_wrapped() {
        let mut order = sample("first-order");
        order.items[0].unit_price_cents = u64::MAX;
        let error = handle_order(TestContext::new().event(order))
            .await
            .unwrap_err();
        assert!(matches!(error, OrderError::TotalOverflow(_)));
    }
}
