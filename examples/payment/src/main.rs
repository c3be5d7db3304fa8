//! `payment`: "don't charge twice". A payment step (invoked by an order workflow, a queue, or a
//! retrying client) charges a card through a slow provider that sometimes fails. The step is
//! idempotent on the payment id: a duplicate gets the first charge's receipt without a second
//! charge, a changed amount under the same payment id is refused, and a failed charge leaves
//! no record behind, so the retry charges.
//!
//! Deployed, it runs under the Lambda Runtime API with the idempotency table named by
//! `IDEMPOTENCY_TABLE`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lambda_runtime::tower::ServiceBuilder;
use lambda_runtime::tower::util::BoxCloneService;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer, IdempotencyStore};
use powertools::metrics::Unit;
use serde::{Deserialize, Serialize};

/// What the workflow asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PaymentRequest {
    payment_id: String,
    order_id: String,
    customer_id: String,
    amount_cents: u64,
    currency: String,
}

/// What the step answers: the provider's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Receipt {
    payment_id: String,
    charged_cents: u64,
    currency: String,
    provider_reference: String,
}

/// The provider failed; nothing was charged.
#[derive(Debug, thiserror::Error)]
#[error("the payment provider failed for {payment_id}: {reason}")]
struct PaymentFailed {
    payment_id: String,
    reason: &'static str,
}

impl From<PaymentFailed> for Diagnostic {
    fn from(failed: PaymentFailed) -> Self {
        Diagnostic {
            error_type: "PaymentFailed".to_owned(),
            error_message: failed.to_string(),
        }
    }
}

/// The card provider, simulated: each charge takes a while, and a payment id ending in `-flaky`
/// times out on its first attempt. It counts what it charges.
#[derive(Debug, Clone, Default)]
struct Provider {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    charged: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    #[tracing::instrument(skip_all, fields(payment_id = %request.payment_id))]
    async fn charge(&self, request: &PaymentRequest) -> Result<Receipt, PaymentFailed> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            let attempt = attempts.entry(request.payment_id.clone()).or_insert(0);
            *attempt += 1;
            *attempt
        };
        if request.payment_id.ends_with("-flaky") && attempt == 1 {
            tracing::warn!(attempt, "the provider timed out");
            return Err(PaymentFailed {
                payment_id: request.payment_id.clone(),
                reason: "timeout",
            });
        }
        let mut charged = self.charged.lock().unwrap_or_else(PoisonError::into_inner);
        charged.push(request.payment_id.clone());
        Ok(Receipt {
            payment_id: request.payment_id.clone(),
            charged_cents: request.amount_cents,
            currency: request.currency.clone(),
            provider_reference: format!("ch_{:05}", charged.len()),
        })
    }
}

async fn pay(
    provider: Provider,
    event: LambdaEvent<PaymentRequest>,
) -> Result<Receipt, PaymentFailed> {
    let request = event.payload;
    // Every log line of this payment says which one it is.
    let _ = powertools::logging::append_key("payment_id", &request.payment_id);
    let _ = powertools::logging::append_key("order_id", &request.order_id);
    let receipt = provider
        .charge(&request)
        .await
        .inspect_err(|failed| tracing::error!(%failed, "charge failed; the retry will charge"))?;
    // Each call stands alone, so one refused value never costs the others (a currency
    // CloudWatch refuses as a dimension value is kept as metadata by the library).
    let outcomes = [
        powertools::metrics::add_dimension("currency", &request.currency),
        powertools::metrics::add_metric("PaymentsCharged", 1.0, Unit::Count),
        powertools::metrics::add_metric(
            "AmountCharged",
            request.amount_cents as f64 / 100.0,
            Unit::None,
        ),
    ];
    for error in outcomes.into_iter().filter_map(Result::err) {
        tracing::warn!(%error, "a payment metric was not recorded");
    }
    tracing::info!(reference = %receipt.provider_reference, "charged");
    Ok(receipt)
}

type Step = BoxCloneService<
    LambdaEvent<PaymentRequest>,
    Receipt,
    powertools::metrics::ServiceError<powertools::idempotency::Error<PaymentFailed>>,
>;

/// The step: the Powertools stack, then idempotency keyed on the payment id and validated on
/// the amount and currency, then the charge.
fn step<St: IdempotencyStore + Clone>(
    powertools: &Powertools,
    idempotency: Idempotency<St>,
    provider: Provider,
) -> Step {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(powertools.layer())
            .layer(
                IdempotencyLayer::new(idempotency)
                    .key_from(|request: &PaymentRequest| Some(request.payment_id.clone()))
                    .validate_from(|request: &PaymentRequest| {
                        Some((request.amount_cents, request.currency.clone()))
                    }),
            )
            .service(service_fn(move |event| pay(provider.clone(), event))),
    )
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::from_env()?;
    powertools.init()?;
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(powertools::tracing::AwsSdkSpans)
            .build(),
    );
    let table = std::env::var("IDEMPOTENCY_TABLE").map_err(|_| "set IDEMPOTENCY_TABLE")?;
    let idempotency = Idempotency::builder(DynamoDbStore::new(dynamodb, table)?)
        .key_prefix("payment.charge")
        .build()?;
    lambda_runtime::run(step(&powertools, idempotency, Provider::default())).await
}

#[cfg(test)]
mod tests {
    use lambda_runtime::tower::ServiceExt;
    use powertools::core::env::Env;
    use powertools::core::testing::TestContext;
    use powertools::idempotency::{Error, InMemoryStore};
    use powertools::metrics::{MemorySink, ServiceError};

    use super::*;

    fn sample(text: &str) -> PaymentRequest {
        serde_json::from_str(text).unwrap()
    }

    fn fixture() -> (Step, Provider) {
        let powertools = Powertools::builder()
            .service("payments")
            .env(Env::from_pairs([
                ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
                ("POWERTOOLS_TRACE_DISABLED", "true"),
            ]))
            .metrics(|metrics| metrics.sink(MemorySink::new()))
            .build()
            .unwrap();
        let idempotency = Idempotency::builder(InMemoryStore::new())
            .key_prefix("payment.charge")
            .build()
            .unwrap();
        let provider = Provider::default();
        (step(&powertools, idempotency, provider.clone()), provider)
    }

    #[tokio::test]
    async fn a_duplicate_gets_the_first_receipt_and_is_not_charged_again() {
        let (step, provider) = fixture();
        let request = sample(include_str!("../events/payment.json"));
        let first = step
            .clone()
            .oneshot(TestContext::new().event(request.clone()))
            .await
            .unwrap();
        let again = step
            .clone()
            .oneshot(TestContext::new().event(request))
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(provider.charged.lock().unwrap().len(), 1);

        let changed = sample(include_str!("../events/changed-amount.json"));
        let error = step
            .oneshot(TestContext::new().event(changed))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ServiceError::Handler(Error::PayloadMismatch { .. })),
            "{error:?}"
        );
        assert_eq!(
            provider.charged.lock().unwrap().len(),
            1,
            "not charged for another amount"
        );
    }

    #[tokio::test]
    async fn a_failed_charge_leaves_no_record_so_the_retry_charges() {
        let (step, provider) = fixture();
        let request = sample(include_str!("../events/flaky-payment.json"));
        let error = step
            .clone()
            .oneshot(TestContext::new().event(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "PaymentFailed");
        let receipt = step
            .oneshot(TestContext::new().event(request))
            .await
            .unwrap();
        assert_eq!(receipt.charged_cents, 880);
        assert_eq!(
            provider.charged.lock().unwrap().as_slice(),
            ["pay-5002-flaky"]
        );
    }
}
