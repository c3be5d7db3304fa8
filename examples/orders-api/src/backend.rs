//! What the function talks to: the orders table and the card payment provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::order::Order;

/// Orders kept in memory, with their totals (the demo's and the tests' table).
pub(crate) type SavedOrders = Arc<Mutex<Vec<(Order, u64)>>>;

/// Where accepted orders are written: a DynamoDB table, or memory for the offline demo.
#[derive(Debug, Clone)]
pub(crate) enum OrdersTable {
    DynamoDb {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
    InMemory(SavedOrders),
}

/// The table could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the order could not be saved: {0}")]
pub(crate) struct SaveError(String);

impl OrdersTable {
    #[tracing::instrument(skip_all, fields(order_id = %order.order_id))]
    pub(crate) async fn save(&self, order: &Order, total_cents: u64) -> Result<(), SaveError> {
        match self {
            OrdersTable::DynamoDb { client, table } => {
                let items = serde_json::to_string(&order.items)
                    .map_err(|error| SaveError(error.to_string()))?;
                client
                    .put_item()
                    .table_name(table)
                    .item("order_id", AttributeValue::S(order.order_id.clone()))
                    .item("customer_id", AttributeValue::S(order.customer_id.clone()))
                    .item("location", AttributeValue::S(order.location.clone()))
                    .item("items", AttributeValue::S(items))
                    .item("total_cents", AttributeValue::N(total_cents.to_string()))
                    .send()
                    .await
                    .map_err(|error| SaveError(format!("{error:?}")))?;
            }
            OrdersTable::InMemory(orders) => orders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((order.clone(), total_cents)),
        }
        Ok(())
    }
}

/// A charge on the customer's card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Charge {
    pub(crate) payment_id: String,
    pub(crate) customer_id: String,
    pub(crate) amount_cents: u64,
}

/// What the provider answers for a successful charge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Receipt {
    pub(crate) payment_id: String,
    pub(crate) charged_cents: u64,
    pub(crate) provider_reference: String,
}

/// The provider failed; nothing was charged and the charge can be retried.
#[derive(Debug, thiserror::Error)]
#[error("the payment provider failed for {payment_id}: {reason}")]
pub(crate) struct PaymentFailed {
    pub(crate) payment_id: String,
    pub(crate) reason: &'static str,
}

/// The card payment provider, simulated: every charge takes a while, and customers whose id ends
/// in `-flaky` see their first attempt at each payment time out, as a real provider sometimes
/// does. It counts the charges it makes, so that the demo and the tests can show that nobody is
/// charged twice.
#[derive(Debug, Clone, Default)]
pub(crate) struct PaymentProvider {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    charges: Arc<Mutex<Vec<Charge>>>,
}

impl PaymentProvider {
    #[tracing::instrument(skip_all, fields(payment_id = %charge.payment_id, amount_cents = charge.amount_cents))]
    pub(crate) async fn charge(&self, charge: Charge) -> Result<Receipt, PaymentFailed> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            let attempt = attempts.entry(charge.payment_id.clone()).or_insert(0);
            *attempt += 1;
            *attempt
        };
        if charge.customer_id.ends_with("-flaky") && attempt == 1 {
            tracing::warn!(attempt, "the payment provider timed out");
            return Err(PaymentFailed {
                payment_id: charge.payment_id,
                reason: "timeout",
            });
        }
        let mut charges = self.charges.lock().unwrap_or_else(PoisonError::into_inner);
        charges.push(charge.clone());
        Ok(Receipt {
            provider_reference: format!("ch_{:04}", charges.len()),
            payment_id: charge.payment_id,
            charged_cents: charge.amount_cents,
        })
    }

    /// The charges made so far.
    pub(crate) fn charges(&self) -> Vec<Charge> {
        self.charges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
