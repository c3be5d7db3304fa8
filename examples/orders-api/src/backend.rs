//! What the function talks to: the orders table and the card payment provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use crate::order::Order;

/// Orders kept in memory, with their totals and payment references (the demo's and the tests'
/// table).
pub(crate) type SavedOrders = Arc<Mutex<Vec<(Order, u64, String)>>>;

/// An order as the table holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SavedOrder {
    pub(crate) order: Order,
    pub(crate) total_cents: u64,
    /// The provider's reference of its charge; `None` for an order saved without one (by a
    /// version before it was kept).
    pub(crate) payment: Option<String>,
}

/// Where accepted orders are written: a DynamoDB table, or memory for the offline demo.
#[derive(Debug, Clone)]
pub(crate) enum OrdersTable {
    DynamoDb {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
    InMemory(SavedOrders),
}

/// The order could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    /// The table could not be read: nothing was charged or saved yet.
    #[error("the saved order could not be read: {0}")]
    Read(String),
    /// Another order with the same id, with other contents, is saved already; it is kept.
    #[error("order {order_id} already exists with other contents; it was not replaced")]
    Conflict { order_id: String },
    /// The table could not be written.
    #[error("the order could not be saved: {0}")]
    Store(String),
    /// The save's outcome is unknown (no answer: a timeout, a lost connection; or DynamoDB's
    /// 5xx or throttling, after attempts whose answers may have been lost): it may have landed.
    /// A retry answers the order as placed, and it is counted by no invocation.
    #[error(
        "the order's save got no answer it can be sure of, so it may have been saved (a retry \
         answers it as placed, not counted in OrdersPlaced): {0}"
    )]
    Unanswered(String),
}

/// What saving an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    /// This request's write saved it (its first attempt, or the SDK's retry of it after a lost
    /// answer): this request counts it.
    Placed,
    /// The very same order was saved already, by another request (the same order under
    /// another key, at the same moment): nothing was written, and that request counts it.
    Already,
}

impl OrdersTable {
    /// The order saved under `order_id`, read with strong consistency.
    ///
    /// `time_left` is the invocation's (`None`: no deadline to keep): the call ends
    /// [`DEADLINE_MARGIN`] before it.
    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    pub(crate) async fn find(
        &self,
        order_id: &str,
        time_left: Option<Duration>,
    ) -> Result<Option<SavedOrder>, SaveError> {
        match self {
            OrdersTable::DynamoDb { client, table } => {
                let call = client
                    .get_item()
                    .table_name(table)
                    .key("order_id", AttributeValue::S(order_id.to_owned()))
                    .consistent_read(true)
                    .send();
                let output = before_the_deadline(time_left, "GetItem", table, call)
                    .await
                    .map_err(SaveError::Read)?
                    .map_err(|error| SaveError::Read(failed_call("GetItem", table, &error)))?;
                output
                    .item()
                    // An item the function cannot read is a failed read, before any charge.
                    .map(|item| saved_order(order_id, item).map_err(SaveError::Read))
                    .transpose()
            }
            OrdersTable::InMemory(orders) => Ok(orders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|(saved, _, _)| saved.order_id == order_id)
                .map(|(order, total_cents, payment)| SavedOrder {
                    order: order.clone(),
                    total_cents: *total_cents,
                    payment: Some(payment.clone()),
                })),
        }
    }

    /// Saves the order with its payment and `placed_by` (the saving request's id), unless an
    /// order with the same id exists, which is never overwritten: the very same order is
    /// [`Saved::Already`] (or [`Saved::Placed`] when its `placed_by` is this request's: the
    /// SDK's retry of this write after its answer was lost), a different one a
    /// [`SaveError::Conflict`]. `time_left` bounds the call as in [`find`](Self::find).
    #[tracing::instrument(skip_all, fields(order_id = order.order_id.as_str()))]
    pub(crate) async fn save(
        &self,
        order: &Order,
        total_cents: u64,
        payment: &str,
        placed_by: &str,
        time_left: Option<Duration>,
    ) -> Result<Saved, SaveError> {
        match self {
            OrdersTable::DynamoDb { client, table } => {
                let items = serde_json::to_string(&order.items)
                    .map_err(|error| SaveError::Store(error.to_string()))?;
                let fields = [
                    ("customer_id", AttributeValue::S(order.customer_id.clone())),
                    ("location", AttributeValue::S(order.location.clone())),
                    ("items", AttributeValue::S(items)),
                    ("total_cents", AttributeValue::N(total_cents.to_string())),
                ];
                // One conditional write of a new id; what holds the id already comes back with
                // the refusal, to be compared. (A write that let the very same order through
                // could not tell which request saved it: two requests of one order under two
                // keys both counted it, found by an attack.)
                let mut put = client
                    .put_item()
                    .table_name(table)
                    .item("order_id", AttributeValue::S(order.order_id.clone()))
                    .item("payment", AttributeValue::S(payment.to_owned()))
                    .item("placed_by", AttributeValue::S(placed_by.to_owned()))
                    .condition_expression("attribute_not_exists(order_id)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    );
                for (name, value) in fields {
                    put = put.item(name, value);
                }
                let answer = before_the_deadline(time_left, "PutItem", table, put.send())
                    .await
                    .map_err(SaveError::Unanswered)?;
                let error = match answer {
                    Ok(_) => return Ok(Saved::Placed),
                    Err(error) => error,
                };
                let Some(PutItemError::ConditionalCheckFailedException(refused)) =
                    error.as_service_error()
                else {
                    let described = failed_call("PutItem", table, &error);
                    return Err(match error {
                        SdkError::ServiceError(_) if outcome_unknown(&error) => {
                            SaveError::Unanswered(described)
                        }
                        SdkError::ServiceError(_) | SdkError::ConstructionFailure(_) => {
                            SaveError::Store(described)
                        }
                        _ => SaveError::Unanswered(described),
                    });
                };
                let Some(item) = refused.item() else {
                    return Err(SaveError::Conflict {
                        order_id: order.order_id.clone(),
                    });
                };
                // Written meanwhile, and unreadable: a read failure too.
                let saved = saved_order(&order.order_id, item).map_err(SaveError::Read)?;
                if saved.order != *order || saved.total_cents != total_cents {
                    return Err(SaveError::Conflict {
                        order_id: order.order_id.clone(),
                    });
                }
                return Ok(match item.get("placed_by") {
                    Some(AttributeValue::S(by)) if by == placed_by => Saved::Placed,
                    _ => Saved::Already,
                });
            }
            OrdersTable::InMemory(orders) => {
                let mut orders = orders.lock().unwrap_or_else(PoisonError::into_inner);
                // In memory no answer is lost: a write is placed or refused.
                match orders
                    .iter()
                    .find(|(saved, _, _)| saved.order_id == order.order_id)
                {
                    Some((saved, saved_total, _))
                        if saved == order && *saved_total == total_cents =>
                    {
                        Ok(Saved::Already)
                    }
                    Some(_) => Err(SaveError::Conflict {
                        order_id: order.order_id.clone(),
                    }),
                    None => {
                        orders.push((order.clone(), total_cents, payment.to_owned()));
                        Ok(Saved::Placed)
                    }
                }
            }
        }
    }
}

/// How long before the invocation's deadline a call of the table gives up: time for the
/// idempotency layer to delete the order's claim (its calls end 100 ms before the deadline, so
/// a `DeleteItem` round trip needs more than that), then to log the failure and answer it.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// `call`, ended [`DEADLINE_MARGIN`] before the invocation's deadline. The SDK bounds each call
/// (3 s with its retries, `main.rs`), but calls in a row (the order read, the charge's records,
/// the order saved) can outlast the invocation, which Lambda then ends with nothing logged and
/// nothing answered.
async fn before_the_deadline<F: Future>(
    time_left: Option<Duration>,
    operation: &str,
    table: &str,
    call: F,
) -> Result<F::Output, String> {
    within_the_deadline(time_left, call)
        .await
        .map_err(|time_left| {
            format!(
                "DynamoDB {operation} on table {table} got no answer before the invocation's \
                 deadline ({} ms left when it was sent, less {} ms to delete the order's claim and answer)",
                time_left.as_millis(),
                DEADLINE_MARGIN.as_millis()
            )
        })
}

/// `call`, ended [`DEADLINE_MARGIN`] before the invocation's deadline (`time_left`, the
/// invocation's; `None`: no deadline to keep). `Err` holds the time that was left.
pub(crate) async fn within_the_deadline<F: Future>(
    time_left: Option<Duration>,
    call: F,
) -> Result<F::Output, Duration> {
    let Some(time_left) = time_left else {
        return Ok(call.await);
    };
    tokio::time::timeout(time_left.saturating_sub(DEADLINE_MARGIN), call)
        .await
        .map_err(|_| time_left)
}

/// What a failed call says, as the idempotency store says it: the call, the table, DynamoDB's
/// error code and message, or the cause of a call that got no answer (a timeout, a refused
/// connection). Not the SDK's `Debug` text, which holds the whole HTTP response.
fn failed_call<E, R>(
    operation: &str,
    table: &str,
    error: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let cause = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => powertools::core::error_chain::message_chain(error),
    };
    format!("DynamoDB {operation} on table {table} failed: {cause}")
}

/// Whether a write DynamoDB answered with `error` may have landed all the same: a 5xx (an
/// `InternalServerError` may or may not have been processed, DynamoDB's documentation says), or
/// throttling, which the SDK retries, so an earlier attempt whose answer was lost may have landed
/// (found by an attack: a save cut after it landed, then answered 500, said "could not be saved"
/// of an order the table held). Any other refusal (a missing table, a validation error) wrote
/// nothing.
fn outcome_unknown(
    error: &SdkError<PutItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    const THROTTLING: [&str; 4] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
    ];
    let server_error = matches!(error, SdkError::ServiceError(service)
        if service.raw().status().is_server_error());
    server_error || error.code().is_some_and(|code| THROTTLING.contains(&code))
}

/// The order of a table item, as [`OrdersTable::save`] writes it, or what the item lacks.
fn saved_order(
    order_id: &str,
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<SavedOrder, String> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(format!(
            "the saved order {order_id} has no text attribute `{name}`"
        )),
    };
    let total_cents = match item.get("total_cents") {
        Some(AttributeValue::N(number)) => number.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("the saved order {order_id} has no total_cents number"))?;
    let items = serde_json::from_str(&text("items")?)
        .map_err(|error| format!("the saved order {order_id}'s items: {error}"))?;
    Ok(SavedOrder {
        order: Order {
            order_id: order_id.to_owned(),
            customer_id: text("customer_id")?,
            location: text("location")?,
            items,
        },
        total_cents,
        // Orders saved before payments were recorded have none.
        payment: match item.get("payment") {
            Some(AttributeValue::S(payment)) => Some(payment.clone()),
            _ => None,
        },
    })
}

/// A charge on the customer's card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Charge {
    pub(crate) payment_id: String,
    pub(crate) customer_id: String,
    pub(crate) amount_cents: u64,
    /// What is charged for, priced (a provider's description or metadata): a retry of an
    /// order charged but not saved is saved as it was charged, whatever the catalogue says by
    /// then ([`PaymentProvider::charged`]).
    pub(crate) order: Order,
}

/// What the provider answers for a successful charge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Receipt {
    pub(crate) payment_id: String,
    pub(crate) charged_cents: u64,
    pub(crate) provider_reference: String,
}

/// The provider failed, or gave no answer before the invocation's deadline: the charge can be
/// retried, and charges at most once (the provider is keyed on the payment id).
#[derive(Debug, thiserror::Error)]
#[error("the payment provider failed for {payment_id}: {reason}")]
pub(crate) struct PaymentFailed {
    pub(crate) payment_id: String,
    pub(crate) reason: &'static str,
}

/// Why the provider did not charge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChargeRefused {
    /// It failed (a timeout): a retry charges, once.
    #[error(transparent)]
    Failed(#[from] PaymentFailed),
    /// The payment id, its idempotency key, was used for a charge with other details: never
    /// charged under it, so a retry is no use.
    #[error(
        "the provider refused payment {payment_id}: its id was used for a charge with other \
         details"
    )]
    KeyReused { payment_id: String },
}

/// The card payment provider, simulated: every charge takes a while, and customers whose id ends
/// in `-flaky` see their first attempt at each payment time out, as a real provider sometimes
/// does. It counts the charges it makes, so that the demo and the tests can show that nobody is
/// charged twice.
///
/// Like card providers (Stripe's `Idempotency-Key`), it takes the payment id as an idempotency
/// key: a charge repeated with the same details is answered with the first receipt, one with
/// other details is refused. That guards the one case idempotency records cannot: the charge
/// went through, then the store failed to complete its record, and a retry after the record's
/// in-progress deadline runs the charge again.
#[derive(Debug, Clone, Default)]
pub(crate) struct PaymentProvider {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    charges: Arc<Mutex<Vec<Charge>>>,
    by_key: Arc<Mutex<HashMap<String, (Charge, Receipt)>>>,
    /// How long a charge takes beyond the usual (tests: a provider slower than the invocation).
    #[cfg(test)]
    delay: Arc<Mutex<Duration>>,
}

impl PaymentProvider {
    // Ids as text, as the appended keys are: a `Display` value that names a masked key
    // (`ord-token-1`) is masked whole, and would differ from the id on the other lines.
    #[tracing::instrument(skip_all, fields(payment_id = charge.payment_id.as_str(), amount_cents = charge.amount_cents))]
    pub(crate) async fn charge(&self, charge: Charge) -> Result<Receipt, ChargeRefused> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        #[cfg(test)]
        {
            let delay = *self.delay.lock().unwrap_or_else(PoisonError::into_inner);
            tokio::time::sleep(delay).await;
        }
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
            }
            .into());
        }
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((first, receipt)) = by_key.get(&charge.payment_id) {
            if *first != charge {
                return Err(ChargeRefused::KeyReused {
                    payment_id: charge.payment_id,
                });
            }
            tracing::warn!(
                reference = %receipt.provider_reference,
                "the provider answered a repeated charge with its first receipt: not charged again"
            );
            return Ok(receipt.clone());
        }
        let mut charges = self.charges.lock().unwrap_or_else(PoisonError::into_inner);
        charges.push(charge.clone());
        let receipt = Receipt {
            provider_reference: format!("ch_{:04}", charges.len()),
            payment_id: charge.payment_id.clone(),
            charged_cents: charge.amount_cents,
        };
        by_key.insert(charge.payment_id.clone(), (charge, receipt.clone()));
        Ok(receipt)
    }

    /// The charge made under `payment_id`, if any, as a provider answers a lookup by the id a
    /// payment was made with (its idempotency key, a merchant reference).
    pub(crate) fn charged(&self, payment_id: &str) -> Option<Charge> {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(payment_id)
            .map(|(charge, _)| charge.clone())
    }

    /// Makes every later charge take `delay` longer.
    #[cfg(test)]
    pub(crate) fn slow_down(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// The charges made so far.
    pub(crate) fn charges(&self) -> Vec<Charge> {
        self.charges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
