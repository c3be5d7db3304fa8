//! The bakery's domain: an order, its basket, its price.

use serde::{Deserialize, Serialize};

/// An order placed by a customer at one of the bakery's locations.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub(crate) struct Order {
    pub(crate) order_id: String,
    pub(crate) customer_id: String,
    pub(crate) location: String,
    pub(crate) items: Vec<LineItem>,
}

/// One line of the basket.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub(crate) struct LineItem {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
    pub(crate) unit_price_cents: u64,
}

/// Why an order cannot be priced; the API answers 400 with the message.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum OrderError {
    #[error("order {0} has an empty basket")]
    EmptyBasket(String),
    #[error("order {order_id}: {sku} has quantity 0")]
    ZeroQuantity { order_id: String, sku: String },
    #[error("order {0}: the total does not fit in 64 bits")]
    TotalOverflow(String),
}

impl OrderError {
    /// A stable code for API clients.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            OrderError::EmptyBasket(_) => "EmptyBasket",
            OrderError::ZeroQuantity { .. } => "ZeroQuantity",
            OrderError::TotalOverflow(_) => "TotalOverflow",
        }
    }
}

impl Order {
    /// The total in cents, or why the order cannot be accepted.
    pub(crate) fn total_cents(&self) -> Result<u64, OrderError> {
        if self.items.is_empty() {
            return Err(OrderError::EmptyBasket(self.order_id.clone()));
        }
        self.items.iter().try_fold(0u64, |total, item| {
            if item.quantity == 0 {
                return Err(OrderError::ZeroQuantity {
                    order_id: self.order_id.clone(),
                    sku: item.sku.clone(),
                });
            }
            item.unit_price_cents
                .checked_mul(u64::from(item.quantity))
                .and_then(|line| total.checked_add(line))
                .ok_or_else(|| OrderError::TotalOverflow(self.order_id.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: Vec<LineItem>) -> Order {
        Order {
            order_id: "ord-1".into(),
            customer_id: "cust-1".into(),
            location: "camden".into(),
            items,
        }
    }

    fn item(sku: &str, quantity: u32, unit_price_cents: u64) -> LineItem {
        LineItem {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    #[test]
    fn the_total_is_the_sum_of_the_lines() {
        let basket = order(vec![item("loaf", 2, 450), item("bun", 6, 275)]);
        assert_eq!(basket.total_cents(), Ok(2 * 450 + 6 * 275));
    }

    #[test]
    fn an_empty_basket_a_zero_quantity_and_an_overflow_are_refused() {
        assert_eq!(
            order(vec![]).total_cents().unwrap_err().code(),
            "EmptyBasket"
        );
        assert_eq!(
            order(vec![item("loaf", 0, 450)])
                .total_cents()
                .unwrap_err()
                .code(),
            "ZeroQuantity"
        );
        assert_eq!(
            order(vec![item("loaf", 2, u64::MAX)])
                .total_cents()
                .unwrap_err()
                .code(),
            "TotalOverflow"
        );
    }
}
