//! `payment`: "don't charge twice". A payment step (invoked by an order workflow, a queue, or a
//! retrying client) charges a card through a slow provider that sometimes fails. The step is
//! idempotent on the payment id: a duplicate gets the first charge's receipt without a second
//! charge, a changed amount under the same payment id is refused, and a failed charge leaves
//! no record behind, so the retry charges.
//!
//! A request is checked before its idempotency claim: a missing or malformed payment id, order
//! id or customer id, a currency that is not an ISO 4217 code, or an amount out of range is
//! refused (`InvalidPaymentRequest`), recorded nowhere and never charged. Ids are 1 to 64
//! characters of `A-Z a-z 0-9 - _`, so a receipt (which repeats the payment id and the
//! currency) never grows with the request.
//!
//! Deployed, it runs under the Lambda Runtime API with the idempotency table named by
//! `IDEMPOTENCY_TABLE`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use lambda_runtime::tower::layer::layer_fn;
use lambda_runtime::tower::util::BoxCloneService;
use lambda_runtime::tower::{Service, ServiceBuilder};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer, IdempotencyStore};
use powertools::metrics::Unit;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest payment, order or customer id accepted, in characters.
const MAX_ID_CHARS: usize = 64;

/// The largest amount accepted, in the currency's minor unit (a million in a currency of two
/// decimals).
const MAX_AMOUNT_CENTS: u64 = 100_000_000;

/// The currencies of ISO 4217's active list as of 2026, sorted: the codes of money a card can be
/// charged in. Not the list's other codes: precious metals (`XAU`, …), fund and settlement
/// units (`BOV`, `XDR`, …), `XTS` (for tests) and `XXX` (no currency); nor withdrawn ones
/// (`HRK`, `ANG`, `SLL`, `BGN`, …). Update it with the standard's amendments.
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The ISO 4217 currencies whose minor unit is not a hundredth: none (the yen, the won, …) or a
/// thousandth (the Bahraini, Kuwaiti and Jordanian dinars, …).
const NO_DECIMALS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
const THREE_DECIMALS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// `minor` units of `currency` in its main unit (`AmountCharged`): 1250 cents are 12.5 euros,
/// 1250 yen are 1250 yen, 1250 fils are 1.25 dinars.
fn in_main_unit(minor: u64, currency: &str) -> f64 {
    let per_unit = if NO_DECIMALS.contains(&currency) {
        1.0
    } else if THREE_DECIMALS.contains(&currency) {
        1000.0
    } else {
        100.0
    };
    minor as f64 / per_unit
}

const AMOUNT_RULE: &str = "an integer from 1 to 100000000, without a decimal point";
const CURRENCY_RULE: &str = "the ISO 4217 code of a currency in use, such as EUR";

/// What the workflow asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PaymentRequest {
    payment_id: String,
    order_id: String,
    customer_id: String,
    amount_cents: u64,
    currency: String,
}

/// Why a request is refused before its idempotency claim: nothing is recorded or charged. The
/// message names the field and the rule, never the value.
#[derive(Debug, thiserror::Error)]
#[error("invalid payment request: {field} must be {rule}")]
struct InvalidRequest {
    field: &'static str,
    rule: &'static str,
}

/// The event as sent: its JSON, and the names of its fields given more than once. serde_json's
/// `Value` keeps the last of them, where a validator in front of the function may keep the
/// first: `{"amount_cents": 5, …, "amount_cents": 1250}` would be checked there as 5 and charged
/// here as 1250. The function refuses such a request instead.
#[derive(Debug, Clone, Default, PartialEq)]
struct PaymentEvent {
    json: Value,
    repeated: Vec<String>,
}

impl From<Value> for PaymentEvent {
    fn from(json: Value) -> Self {
        PaymentEvent {
            json,
            repeated: Vec::new(),
        }
    }
}

/// As its JSON (for the layers that log or search the event).
impl Serialize for PaymentEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// From the event's text, read twice: as JSON, and for the names of its top-level fields.
impl<'de> Deserialize<'de> for PaymentEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let json = serde_json::from_str(text.get()).map_err(serde::de::Error::custom)?;
        // Not an object: no names (the checks refuse it as it is).
        let repeated = serde_json::from_str::<RepeatedNames>(text.get())
            .map(|names| names.0)
            .unwrap_or_default();
        Ok(PaymentEvent { json, repeated })
    }
}

/// The names an object gives more than once.
struct RepeatedNames(Vec<String>);

impl<'de> Deserialize<'de> for RepeatedNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = RepeatedNames;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RepeatedNames, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut repeated = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    // A payment field in another spelling is that field to a reader that
                    // ignores case (Go's `encoding/json`, Jackson or System.Text.Json set so).
                    let name = payment_field_spelled(&name).map_or(name, str::to_owned);
                    if !seen.insert(name.clone()) && !repeated.contains(&name) {
                        repeated.push(name);
                    }
                }
                Ok(RepeatedNames(repeated))
            }
        }
        deserializer.deserialize_map(Names)
    }
}

/// The payment field `name` spells in any case, with `_`, `-` or no separators between its
/// words (`Amount_Cents`, `amountCents`), if it spells one.
fn payment_field_spelled(name: &str) -> Option<&'static str> {
    // Folded as Go's `strings.EqualFold` folds (Unicode's simple case folding): the long s `ſ`
    // and the Kelvin sign are `s` and `k` to it (found by a review: `amount_centſ` passed), but
    // not the dotless `ı`, nor a ligature whose capital is two letters (`ﬆ`: a second review).
    let fold = |c: char| -> char {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(single), None) if !matches!(c, 'ı' | 'İ') => {
                single.to_lowercase().next().unwrap_or(c)
            }
            _ => c,
        }
    };
    let letters = |text: &str| -> String {
        text.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(fold)
            .collect()
    };
    let name = letters(name);
    FIELDS.into_iter().find(|field| letters(field) == name)
}

/// The fields of a payment request.
const FIELDS: [&str; 5] = [
    "payment_id",
    "order_id",
    "customer_id",
    "amount_cents",
    "currency",
];

impl PaymentRequest {
    /// The request an event holds, read field by field so that a refusal names the field and
    /// the rule, never the value (serde's own errors quote it: a card number sent as an amount
    /// would reach the error message and the logs). A field given twice is refused. Then every
    /// field is checked against its bounds.
    fn from_event(event: &PaymentEvent) -> Result<Self, InvalidRequest> {
        const ID_RULE: &str = "a string of 1 to 64 characters from A-Z, a-z, 0-9, '-' and '_'";
        if let Some(field) = FIELDS
            .into_iter()
            .find(|field| event.repeated.iter().any(|name| name == field))
        {
            return Err(InvalidRequest {
                field,
                rule: "given once (the request repeats it)",
            });
        }
        let event = &event.json;
        let Some(fields) = event.as_object() else {
            return Err(InvalidRequest {
                field: "the request",
                rule: "a JSON object with payment_id, order_id, customer_id, amount_cents and \
                       currency",
            });
        };
        let text = |field: &'static str, rule: &'static str| {
            fields
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(InvalidRequest { field, rule })
        };
        let request = PaymentRequest {
            payment_id: text("payment_id", ID_RULE)?,
            order_id: text("order_id", ID_RULE)?,
            customer_id: text("customer_id", ID_RULE)?,
            amount_cents: fields.get("amount_cents").and_then(Value::as_u64).ok_or(
                InvalidRequest {
                    field: "amount_cents",
                    rule: AMOUNT_RULE,
                },
            )?,
            currency: text("currency", CURRENCY_RULE)?,
        };
        request.validate()?;
        Ok(request)
    }

    /// Checks every field against its bounds.
    fn validate(&self) -> Result<(), InvalidRequest> {
        const ID_RULE: &str = "1 to 64 characters from A-Z, a-z, 0-9, '-' and '_'";
        for (field, id) in [
            ("payment_id", &self.payment_id),
            ("order_id", &self.order_id),
            ("customer_id", &self.customer_id),
        ] {
            let valid = (1..=MAX_ID_CHARS).contains(&id.len())
                && id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
            if !valid {
                return Err(InvalidRequest {
                    field,
                    rule: ID_RULE,
                });
            }
        }
        if !(1..=MAX_AMOUNT_CENTS).contains(&self.amount_cents) {
            return Err(InvalidRequest {
                field: "amount_cents",
                rule: AMOUNT_RULE,
            });
        }
        if CURRENCIES.binary_search(&self.currency.as_str()).is_err() {
            return Err(InvalidRequest {
                field: "currency",
                rule: CURRENCY_RULE,
            });
        }
        Ok(())
    }
}

/// What the step answers: the provider's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Receipt {
    payment_id: String,
    charged_cents: u64,
    currency: String,
    provider_reference: String,
}

/// The provider did not charge.
#[derive(Debug, thiserror::Error)]
enum PaymentFailed {
    /// The provider failed (a timeout): nothing was charged, and a retry charges.
    #[error("the payment provider failed for {payment_id}: {reason}")]
    Provider {
        payment_id: String,
        reason: &'static str,
    },
    /// The provider refused the payment id, its idempotency key, used for a charge with other
    /// details: the conflict the idempotency record refuses within its window, reached after it
    /// expired. Never charged under this id, so a retry is no use.
    #[error(
        "the provider refused payment {payment_id}: its id was used for a charge with other \
         details (amount, currency, customer or order), and it is never charged under it"
    )]
    Conflict { payment_id: String },
}

impl PaymentFailed {
    fn diagnostic(&self) -> Diagnostic {
        let error_type = match self {
            PaymentFailed::Provider { .. } => "PaymentFailed",
            PaymentFailed::Conflict { .. } => "PaymentConflict",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: self.to_string(),
        }
    }
}

impl From<PaymentFailed> for Diagnostic {
    fn from(failed: PaymentFailed) -> Self {
        failed.diagnostic()
    }
}

/// Why the step did not answer with a receipt.
#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Refused before the idempotency claim.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The charge failed, or the idempotency protocol answered instead of it (a duplicate with
    /// another amount, one in progress, the store down, …).
    #[error(transparent)]
    Charge(#[from] powertools::idempotency::Error<PaymentFailed>),
}

impl StepError {
    /// What Lambda reports for this error, by reference: the failure line and the span name it
    /// so too (`PowertoolsLayer::error_diagnostic`), not by the variant's name.
    fn diagnostic(&self) -> Diagnostic {
        match self {
            StepError::Invalid(invalid) => Diagnostic {
                error_type: "InvalidPaymentRequest".to_owned(),
                error_message: invalid.to_string(),
            },
            StepError::Charge(error) => error.diagnostic_with(PaymentFailed::diagnostic),
        }
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Self {
        error.diagnostic()
    }
}

/// The card provider, simulated: each charge takes a while, and a payment id ending in `-flaky`
/// times out on its first attempt. It counts what it charges.
///
/// Like card providers (Stripe's `Idempotency-Key`, Adyen's), it takes an idempotency key with
/// each charge, here the payment id: a charge repeated with the same key and details is answered
/// with the first one's receipt, not charged again, and one with other details is refused. That
/// is the second guard: the idempotency record cannot cover a charge that went through when the
/// store then failed to record it (`IdempotencyPersistenceLayerError`, the record left in
/// progress until the deadline, after which a retry runs the handler again).
#[derive(Debug, Clone, Default)]
struct Provider {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    charged: Arc<Mutex<Vec<String>>>,
    by_key: Arc<Mutex<HashMap<String, (PaymentRequest, Receipt)>>>,
}

/// What the provider answered a charge with.
#[derive(Debug)]
struct Charged {
    receipt: Receipt,
    /// The charge went through on an earlier attempt: the provider answered with its receipt
    /// and charged nothing now.
    repeated: bool,
}

impl Provider {
    // The payment id as text, as the appended key is: a `Display` value that names a masked
    // key (`pay-token-1`) is masked whole, and would differ from the id on the other lines.
    #[tracing::instrument(skip_all, fields(payment_id = request.payment_id.as_str()))]
    async fn charge(&self, request: &PaymentRequest) -> Result<Charged, PaymentFailed> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            let attempt = attempts.entry(request.payment_id.clone()).or_insert(0);
            *attempt += 1;
            *attempt
        };
        if request.payment_id.ends_with("-flaky") && attempt == 1 {
            tracing::warn!(attempt, "the provider timed out");
            return Err(PaymentFailed::Provider {
                payment_id: request.payment_id.clone(),
                reason: "timeout",
            });
        }
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((first, receipt)) = by_key.get(&request.payment_id) {
            if first != request {
                return Err(PaymentFailed::Conflict {
                    payment_id: request.payment_id.clone(),
                });
            }
            tracing::warn!(
                reference = %receipt.provider_reference,
                "the provider answered a repeated charge with its first receipt: not charged again"
            );
            return Ok(Charged {
                receipt: receipt.clone(),
                repeated: true,
            });
        }
        let mut charged = self.charged.lock().unwrap_or_else(PoisonError::into_inner);
        charged.push(request.payment_id.clone());
        let receipt = Receipt {
            payment_id: request.payment_id.clone(),
            charged_cents: request.amount_cents,
            currency: request.currency.clone(),
            provider_reference: format!("ch_{:05}", charged.len()),
        };
        by_key.insert(
            request.payment_id.clone(),
            (request.clone(), receipt.clone()),
        );
        Ok(Charged {
            receipt,
            repeated: false,
        })
    }
}

async fn pay(
    provider: Provider,
    event: LambdaEvent<PaymentRequest>,
) -> Result<Receipt, PaymentFailed> {
    let request = event.payload;
    // A failure is the invocation's: the logging layer writes its one ERROR line, named as
    // Lambda reports it. Nothing was charged, so the retry charges.
    let Charged { receipt, repeated } = provider.charge(&request).await?;
    if repeated {
        // Charged and counted by an earlier attempt, whose completion was lost: the receipt
        // is the answer, and nothing is counted or logged as charged again.
        return Ok(receipt);
    }
    // Each call stands alone, so one refused value never costs the others (a currency
    // CloudWatch refuses as a dimension value is kept as metadata by the library).
    let outcomes = [
        powertools::metrics::add_dimension("currency", &request.currency),
        powertools::metrics::add_metric("PaymentsCharged", 1.0, Unit::Count),
        powertools::metrics::add_metric(
            "AmountCharged",
            in_main_unit(request.amount_cents, &request.currency),
            Unit::None,
        ),
    ];
    for error in outcomes.into_iter().filter_map(Result::err) {
        tracing::warn!(%error, "a payment metric was not recorded");
    }
    tracing::info!(reference = %receipt.provider_reference, "charged");
    Ok(receipt)
}

/// Checks each request before the idempotency layer claims its payment id: a refused request
/// is answered here and leaves no record.
#[derive(Debug, Clone)]
struct ValidateFirst<S> {
    inner: S,
}

impl<S> Service<LambdaEvent<PaymentEvent>> for ValidateFirst<S>
where
    S: Service<
            LambdaEvent<PaymentRequest>,
            Response = Receipt,
            Error = powertools::idempotency::Error<PaymentFailed>,
        >,
    S::Future: Send + 'static,
{
    type Response = Receipt;
    type Error = StepError;
    type Future = Pin<Box<dyn Future<Output = Result<Receipt, StepError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), StepError>> {
        self.inner.poll_ready(cx).map_err(StepError::Charge)
    }

    fn call(&mut self, event: LambdaEvent<PaymentEvent>) -> Self::Future {
        // A refusal is an error of the invocation: the logging layer writes its ERROR line, with
        // the invocation's context.
        let request = match PaymentRequest::from_event(&event.payload) {
            Ok(request) => request,
            Err(invalid) => return Box::pin(std::future::ready(Err(invalid.into()))),
        };
        // Every log line of this payment says which one it is, the idempotency layer's
        // refusals (a duplicate with another amount, one in progress) and the metrics' included.
        for (key, value) in [
            ("payment_id", &request.payment_id),
            ("order_id", &request.order_id),
        ] {
            if let Err(error) = powertools::logging::append_key(key, value) {
                tracing::warn!(%error, key, "a log key was not added");
            }
        }
        let charged = self.inner.call(LambdaEvent::new(request, event.context));
        Box::pin(async move { charged.await.map_err(StepError::Charge) })
    }
}

type Step = BoxCloneService<
    LambdaEvent<PaymentEvent>,
    Receipt,
    powertools::metrics::ServiceError<StepError>,
>;

/// The step: the Powertools stack, the checks of the request, then idempotency keyed on the
/// payment id and validated on the amount, currency, customer and order (so the same payment id
/// with another amount, or for another order, is refused, and another customer never gets this
/// receipt), then the charge.
fn step<St: IdempotencyStore + Clone>(
    powertools: &Powertools,
    idempotency: Idempotency<St>,
    provider: Provider,
) -> Step {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(powertools.layer().error_diagnostic(StepError::diagnostic))
            .layer(layer_fn(|inner| ValidateFirst { inner }))
            .layer(
                IdempotencyLayer::new(idempotency)
                    .key_from(|request: &PaymentRequest| Some(request.payment_id.clone()))
                    .validate_from(|request: &PaymentRequest| {
                        Some((
                            request.amount_cents,
                            request.currency.clone(),
                            request.customer_id.clone(),
                            request.order_id.clone(),
                        ))
                    }),
            )
            .service(service_fn(move |event| pay(provider.clone(), event))),
    )
}

/// The idempotency of charges: keyed on the payment id, which must be there (a request without
/// one is refused, never charged without protection).
fn idempotency<St: IdempotencyStore>(
    store: St,
) -> Result<Idempotency<St>, powertools::idempotency::Error> {
    Idempotency::builder(store)
        .key_prefix("payment.charge")
        .raise_on_missing_key(true)
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        // The message, which names the setting and the fix (not a Debug dump), in the log and,
        // under Lambda, in the answer to the invocation that started the function.
        Err(error) => powertools::init_failed(&*error).await,
    }
}

/// The deployed function: settings from the environment, once, then the Runtime API.
async fn run() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::builder()
        .metrics(|metrics| metrics.capture_cold_start_metric(true))
        .build()?;
    powertools.init()?;
    // Spans leave after the response (an in-process Lambda extension): callers never wait for
    // the collector.
    powertools.register_extension().await?;
    let table = std::env::var("IDEMPOTENCY_TABLE")
        .ok()
        .filter(|table| !table.is_empty())
        .ok_or(
            "IDEMPOTENCY_TABLE is not set: set it to the name of the idempotency table \
             (template.yaml sets it for the deployed function)",
        )?;
    // Not `aws_config::load_from_env()`, which panics on an invalid `AWS_MAX_ATTEMPTS` or
    // `AWS_RETRY_MODE`: an error naming it, which Lambda reports as the start's.
    let aws = powertools::load_aws_config().await?;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(powertools::tracing::AwsSdkSpans)
            .build(),
    );
    let idempotency = idempotency(DynamoDbStore::new(dynamodb, table)?)?;
    // Sequential by default; with `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) as
    // many invocations at once as it says, each with its own logs, metrics, span and records.
    powertools::run_concurrent(step(&powertools, idempotency, Provider::default())).await
}

#[cfg(test)]
mod tests {
    /// The list is searched by halves, so it must be sorted; every currency with its own
    /// minor unit is one that is accepted.
    #[test]
    fn the_currencies_are_sorted_and_hold_those_with_other_minor_units() {
        assert!(super::CURRENCIES.windows(2).all(|pair| pair[0] < pair[1]));
        for code in super::NO_DECIMALS.iter().chain(super::THREE_DECIMALS) {
            assert!(super::CURRENCIES.contains(code), "{code}");
        }
    }

    /// `AmountCharged` is in the currency's main unit, whatever its minor unit: it was the
    /// amount over 100 for every currency, so a charge of 1250 yen counted as 12.5.
    #[test]
    fn amounts_charged_are_counted_in_each_currency_s_main_unit() {
        assert_eq!(super::in_main_unit(1250, "EUR"), 12.5);
        assert_eq!(super::in_main_unit(1250, "JPY"), 1250.0);
        assert_eq!(super::in_main_unit(1250, "KWD"), 1.25);
        assert_eq!(super::in_main_unit(1, "USD"), 0.01);
    }

    use lambda_runtime::tower::ServiceExt;
    use powertools::core::env::Env;
    use powertools::core::testing::TestContext;
    use powertools::idempotency::{Error, InMemoryStore};
    use powertools::logging::MemoryLogs;
    use powertools::metrics::ServiceError;
    use powertools_tests::emf::CheckedSink;
    use powertools_tests::idempotency::FailingStore;
    use serde_json::json;

    use super::*;

    fn json(request: PaymentRequest) -> PaymentEvent {
        serde_json::to_value(request).unwrap().into()
    }

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
            .metrics(|metrics| metrics.sink(CheckedSink::new()))
            .build()
            .unwrap();
        let idempotency = idempotency(InMemoryStore::new()).unwrap();
        let provider = Provider::default();
        (step(&powertools, idempotency, provider.clone()), provider)
    }

    fn with_payment_id(payment_id: &str) -> PaymentRequest {
        let mut request = sample(include_str!("../events/payment.json"));
        request.payment_id = payment_id.to_owned();
        request
    }

    #[tokio::test]
    async fn a_payment_without_an_id_is_refused_and_never_charged() {
        let (step, provider) = fixture();
        for attempt in 0..2 {
            let answer = step
                .clone()
                .oneshot(TestContext::new().event(json(with_payment_id(""))))
                .await;
            let error = answer.map(|receipt| format!("{receipt:?}")).unwrap_err();
            assert_eq!(
                Diagnostic::from(error).error_type,
                "InvalidPaymentRequest",
                "attempt {attempt}"
            );
        }
        assert!(
            provider.charged.lock().unwrap().is_empty(),
            "charged without a key"
        );
    }

    #[tokio::test]
    async fn the_idempotency_settings_refuse_to_charge_without_a_key() {
        // Behind the checks, the settings are a second guard: no key, no charge.
        let charged = Provider::default();
        let provider = charged.clone();
        let unchecked = ServiceBuilder::new()
            .layer(
                IdempotencyLayer::new(idempotency(InMemoryStore::new()).unwrap())
                    .key_from(|request: &PaymentRequest| Some(request.payment_id.clone())),
            )
            .service(service_fn(move |event| pay(provider.clone(), event)));
        let error = unchecked
            .oneshot(TestContext::new().event(with_payment_id("")))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::KeyMissing { .. }), "{error:?}");
        assert!(charged.charged.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn ids_and_currency_are_bounded_and_an_error_never_echoes_them() {
        let (step, provider) = fixture();
        let long = "p".repeat(100_000);
        let mut bad_currency = with_payment_id("pay-7001");
        bad_currency.currency = "G".repeat(100_000);
        let mut long_order = with_payment_id("pay-7002");
        long_order.order_id = long.clone();
        let mut nothing = with_payment_id("pay-7003");
        nothing.amount_cents = 0;
        // The module's docs: "a currency that is not an ISO 4217 code ... is refused". Three
        // capital letters are not enough: `ZZZ` is no code, `XXX` means "no currency", `XAU` is
        // gold, `XTS` is for tests, and the kuna was withdrawn in 2023.
        let with_currency = |id: &str, code: &str| {
            let mut request = with_payment_id(id);
            request.currency = code.to_owned();
            request
        };
        let cases = [
            (
                "a currency that is no code",
                with_currency("pay-7004", "ZZZ"),
            ),
            ("no currency (XXX)", with_currency("pay-7005", "XXX")),
            ("gold (XAU)", with_currency("pay-7006", "XAU")),
            ("the testing code (XTS)", with_currency("pay-7007", "XTS")),
            (
                "a withdrawn currency (HRK)",
                with_currency("pay-7008", "HRK"),
            ),
            ("a lower-case code", with_currency("pay-7009", "eur")),
            ("a 100 kB payment id", with_payment_id(&long)),
            ("a payment id with a slash", with_payment_id("pay/../7000")),
            ("a payment id with a space", with_payment_id("pay 7000")),
            ("a 100 kB currency", bad_currency),
            ("a 100 kB order id", long_order),
            ("no amount", nothing),
        ];
        for (what, request) in cases {
            let answer = step
                .clone()
                .oneshot(TestContext::new().event(json(request)))
                .await;
            let Err(error) = answer else {
                panic!("{what}: accepted");
            };
            let diagnostic = Diagnostic::from(error);
            assert_eq!(diagnostic.error_type, "InvalidPaymentRequest", "{what}");
            assert!(
                diagnostic.error_message.len() < 300,
                "{what}: {}",
                diagnostic.error_message
            );
        }
        assert!(provider.charged.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_duplicate_gets_the_first_receipt_and_is_not_charged_again() {
        let (step, provider) = fixture();
        let request = sample(include_str!("../events/payment.json"));
        let first = step
            .clone()
            .oneshot(TestContext::new().event(json(request.clone())))
            .await
            .unwrap();
        let again = step
            .clone()
            .oneshot(TestContext::new().event(json(request)))
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(provider.charged.lock().unwrap().len(), 1);

        let changed = sample(include_str!("../events/changed-amount.json"));
        let error = step
            .clone()
            .oneshot(TestContext::new().event(json(changed)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ServiceError::Handler(StepError::Charge(Error::PayloadMismatch { .. }))
            ),
            "{error:?}"
        );
        assert_eq!(
            provider.charged.lock().unwrap().len(),
            1,
            "not charged for another amount"
        );

        let mut someone_else = sample(include_str!("../events/payment.json"));
        someone_else.customer_id = "cust-99".to_owned();
        let error = step
            .oneshot(TestContext::new().event(json(someone_else)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ServiceError::Handler(StepError::Charge(Error::PayloadMismatch { .. }))
            ),
            "another customer never gets the first receipt: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_charge_leaves_no_record_so_the_retry_charges() {
        let (step, provider) = fixture();
        let request = sample(include_str!("../events/flaky-payment.json"));
        let error = step
            .clone()
            .oneshot(TestContext::new().event(json(request.clone())))
            .await
            .unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "PaymentFailed");
        let receipt = step
            .oneshot(TestContext::new().event(json(request)))
            .await
            .unwrap();
        assert_eq!(receipt.charged_cents, 880);
        assert_eq!(
            provider.charged.lock().unwrap().as_slice(),
            ["pay-5002-flaky"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_concurrent_identical_payments_charge_once() {
        let (step, provider) = fixture();
        let request = sample(include_str!("../events/payment.json"));
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let (step, request) = (step.clone(), request.clone());
                let context = TestContext::new().with_request_id(format!("req-{i}"));
                tokio::spawn(step.oneshot(context.event(json(request))))
            })
            .collect();
        let mut receipts = Vec::new();
        for call in calls {
            match call.await.unwrap() {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => assert_eq!(
                    Diagnostic::from(error).error_type,
                    "IdempotencyAlreadyInProgressError"
                ),
            }
        }
        assert!(!receipts.is_empty());
        assert!(
            receipts.iter().all(|receipt| *receipt == receipts[0]),
            "one receipt"
        );
        assert_eq!(provider.charged.lock().unwrap().len(), 1, "charged once");
    }

    fn fixture_with_logs<St: IdempotencyStore + Clone>(
        store: St,
    ) -> (Step, Provider, MemoryLogs, Powertools) {
        let (step, provider, logs, powertools, _) = fixture_with_metrics(store);
        (step, provider, logs, powertools)
    }

    fn fixture_with_metrics<St: IdempotencyStore + Clone>(
        store: St,
    ) -> (Step, Provider, MemoryLogs, Powertools, CheckedSink) {
        let logs = MemoryLogs::new();
        let sink = CheckedSink::new();
        let powertools = Powertools::builder()
            .service("payments")
            .env(Env::from_pairs([
                ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
                ("POWERTOOLS_TRACE_DISABLED", "true"),
            ]))
            .logger(|logger| logger.writer(logs.clone()))
            .metrics(|metrics| metrics.sink(sink.clone()))
            .build()
            .unwrap();
        let provider = Provider::default();
        let step = step(&powertools, idempotency(store).unwrap(), provider.clone());
        (step, provider, logs, powertools, sink)
    }

    #[tokio::test]
    async fn a_charge_whose_record_was_not_completed_is_not_charged_again_by_the_retry() {
        // Given a charge that goes through, then the store fails to complete its record
        let store = FailingStore::completions(powertools::idempotency::DEFAULT_LAYER_OPERATION, 1);
        let (step, provider, logs, powertools, sink) = fixture_with_metrics(store.clone());
        let _guard = powertools_tests::set_test_default(powertools.subscriber());
        let request = json(sample(include_str!("../events/payment.json")));
        // Long enough for the charge on a loaded machine (at 200 ms a busy CI run reached the
        // deadline inside the charge once, before its "charged" line).
        let short = || TestContext::new().with_remaining_time(Duration::from_millis(1_000));
        let error = step
            .clone()
            .oneshot(short().event(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            Diagnostic::from(error).error_type,
            "IdempotencyPersistenceLayerError"
        );

        // When the workflow retries after the record's in-progress deadline (the retry runs the
        // handler again, as the library documents)
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let receipt = step
            .oneshot(TestContext::new().event(request))
            .await
            .unwrap();

        // Then the provider, given the payment id as its idempotency key, answers with the first
        // charge's receipt: charged once
        assert_eq!(receipt.provider_reference, "ch_00001");
        assert_eq!(provider.charged.lock().unwrap().len(), 1, "charged once");
        assert_eq!(store.failures_left(), 0, "the completion did fail");

        // And counted once: the retry's answer from the provider is no charge (found by an
        // attack: both invocations counted `PaymentsCharged` and `AmountCharged`, doubling the
        // revenue metric, and both logged "charged").
        assert_counted_once(&sink, &logs);
    }

    /// The very same payment after the idempotency window (its record expired, an hour-late
    /// redelivery): the provider answers with the first receipt, charging nothing, and nothing
    /// is counted again (found by a review of a version that counted every completed record).
    #[tokio::test]
    async fn the_same_payment_after_the_window_is_not_counted_again() {
        let (step, provider, logs, powertools, sink) = fixture_with_metrics(InMemoryStore::new());
        let _guard = powertools_tests::set_test_default(powertools.subscriber());
        let request = sample(include_str!("../events/payment.json"));
        let first = step
            .oneshot(TestContext::new().event(json(request.clone())))
            .await
            .unwrap();
        // The record expired: another step on a fresh store, the same provider and metrics.
        let after_the_window = super::step(
            &powertools,
            idempotency(InMemoryStore::new()).unwrap(),
            provider.clone(),
        );
        let again = after_the_window
            .oneshot(TestContext::new().event(json(request)))
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(provider.charged.lock().unwrap().len(), 1);
        assert_counted_once(&sink, &logs);
    }

    /// One `PaymentsCharged` document and one `charged` line over everything written.
    fn assert_counted_once(sink: &CheckedSink, logs: &MemoryLogs) {
        let counted: Vec<_> = sink
            .documents()
            .into_iter()
            .filter(|document| document.get("PaymentsCharged").is_some())
            .collect();
        assert_eq!(counted.len(), 1, "{counted:?}");
        let charged_lines = logs
            .json()
            .into_iter()
            .filter(|line| line["message"] == "charged")
            .count();
        assert_eq!(charged_lines, 1);
    }

    /// After the idempotency window (the record expired), the same payment id with another
    /// amount reaches the provider, which refuses its key: that is the same conflict the record
    /// refused within the window, never to be retried. It was a `PaymentFailed`, which the
    /// caller retries, forever (found by an attack).
    #[tokio::test]
    async fn another_amount_after_the_window_is_a_conflict_never_a_failure_to_retry() {
        let (within_the_window, provider) = fixture();
        let first = sample(include_str!("../events/payment.json"));
        within_the_window
            .oneshot(TestContext::new().event(json(first.clone())))
            .await
            .unwrap();
        // The record expired: another step on a fresh store, the same provider.
        let (_, _, _, powertools, _) = fixture_with_metrics(InMemoryStore::new());
        let after_the_window = step(
            &powertools,
            idempotency(InMemoryStore::new()).unwrap(),
            provider.clone(),
        );
        let mut other_amount = first;
        other_amount.amount_cents += 1;
        let error = after_the_window
            .oneshot(TestContext::new().event(json(other_amount)))
            .await
            .unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "PaymentConflict", "{diagnostic:?}");
        assert!(
            diagnostic.error_message.contains("other details"),
            "{diagnostic:?}"
        );
        assert_eq!(provider.charged.lock().unwrap().len(), 1);
    }

    /// A payment id that names a masked key (`pay-token-1-flaky`) is the same on every line:
    /// the provider's span recorded it as a `Display` value, which the logger masks whole when
    /// it names a masked key, so its lines said `"payment_id":"*****"` beside lines with the
    /// id in clear (found by an attack): a search by payment id missed them, and the mask hid
    /// nothing. It is recorded as text, as the appended key is.
    #[tokio::test]
    async fn a_payment_id_naming_a_masked_key_is_the_same_on_every_line() {
        let (step, _, logs, powertools) = fixture_with_logs(InMemoryStore::new());
        let _guard = powertools_tests::set_test_default(powertools.subscriber());
        let request = with_payment_id("pay-token-1-flaky");
        step.oneshot(
            TestContext::new()
                .with_request_id("req-token")
                .event(json(request)),
        )
        .await
        .unwrap_err();
        let lines: Vec<Value> = logs
            .json()
            .into_iter()
            .filter(|line| line["function_request_id"] == "req-token")
            .collect();
        assert!(lines.len() >= 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["payment_id"], "pay-token-1-flaky", "{line}");
        }
    }

    #[tokio::test]
    async fn the_same_payment_id_for_another_order_is_refused_not_answered_with_its_receipt() {
        let (step, provider) = fixture();
        let first = sample(include_str!("../events/payment.json"));
        step.clone()
            .oneshot(TestContext::new().event(json(first.clone())))
            .await
            .unwrap();
        let mut other_order = first;
        other_order.order_id = "ord-9999".to_owned();
        let error = step
            .oneshot(TestContext::new().event(json(other_order)))
            .await
            .unwrap_err();
        assert_eq!(
            Diagnostic::from(error).error_type,
            "IdempotencyValidationError"
        );
        assert_eq!(provider.charged.lock().unwrap().len(), 1);
    }

    /// A field given twice (`{"amount_cents": 5, …, "amount_cents": 1250}`) is refused: a
    /// validator in front of the function may have kept the first, and the charge would not be
    /// the amount checked there (found by an attack). Read from the text, as the runtime reads
    /// the event.
    #[tokio::test]
    async fn a_field_given_twice_is_an_invalid_request_never_charged() {
        let (step, provider) = fixture();
        let text = r#"{"payment_id": "pay-1", "order_id": "ord-1", "customer_id": "cust-1",
            "currency": "EUR", "amount_cents": 5, "amount_cents": 1250}"#;
        let event: PaymentEvent = serde_json::from_str(text).unwrap();
        assert_eq!(event.repeated, ["amount_cents"]);
        let error = step
            .clone()
            .oneshot(TestContext::new().event(event))
            .await
            .unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "InvalidPaymentRequest");
        assert!(
            diagnostic.error_message.contains("amount_cents")
                && !diagnostic.error_message.contains("1250"),
            "{}",
            diagnostic.error_message
        );
        assert!(provider.charged.lock().unwrap().is_empty());
        // A field of no meaning here given twice is no refusal; nor are names repeated inside
        // a nested object, nor an event that is not an object (refused as it is).
        let text = r#"{"payment_id": "pay-2", "order_id": "ord-2", "customer_id": "cust-2",
            "currency": "EUR", "amount_cents": 1250, "note": 1, "note": 2,
            "meta": {"a": 1, "a": 2}}"#;
        let event: PaymentEvent = serde_json::from_str(text).unwrap();
        assert_eq!(event.repeated, ["note"]);
        step.clone()
            .oneshot(TestContext::new().event(event))
            .await
            .expect("charged");
        let array: PaymentEvent = serde_json::from_str("[1, 1]").unwrap();
        assert!(array.repeated.is_empty());
        assert_eq!(provider.charged.lock().unwrap().len(), 1);
    }

    /// A payment field spelled in another case or with other separators (`Amount_Cents`,
    /// `amountCents`) is that field to a reader that ignores case (Go's `encoding/json`,
    /// Jackson or System.Text.Json set so), which keeps the last: given beside the field, the
    /// validator in front may have checked it and not the amount charged. Refused as a field
    /// given twice (found by an attack: charged 1250 with `"Amount_Cents": 5` after it).
    #[tokio::test]
    async fn a_payment_field_in_another_spelling_beside_it_is_refused() {
        let (step, provider) = fixture();
        for spelling in [
            "Amount_Cents",
            "AMOUNT_CENTS",
            "amountCents",
            "amount-cents",
            // Go folds the long s as `s` (a review found it passed)
            "amount_centſ",
            "AMOUNT_CENTſ",
        ] {
            let text = format!(
                r#"{{"payment_id": "pay-1", "order_id": "ord-1", "customer_id": "cust-1",
                "currency": "EUR", "amount_cents": 1250, "{spelling}": 5}}"#
            );
            let event: PaymentEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(event.repeated, ["amount_cents"], "{spelling}");
            let error = step
                .clone()
                .oneshot(TestContext::new().event(event))
                .await
                .unwrap_err();
            let diagnostic = Diagnostic::from(error);
            assert_eq!(diagnostic.error_type, "InvalidPaymentRequest", "{spelling}");
        }
        assert!(provider.charged.lock().unwrap().is_empty());
        // Go does not fold the dotless ı or a ligature into a field's letters: no refusal.
        assert_eq!(payment_field_spelled("payment_ıd"), None);
        assert_eq!(payment_field_spelled("cuﬆomer_id"), None);
        assert_eq!(payment_field_spelled("amount_centſ"), Some("amount_cents"));
        // Names that are no payment field's, in any spelling, are no refusal.
        let text = r#"{"payment_id": "pay-2", "order_id": "ord-2", "customer_id": "cust-2",
            "currency": "EUR", "amount_cents": 1250, "Note": 1, "note": 2}"#;
        let event: PaymentEvent = serde_json::from_str(text).unwrap();
        assert!(event.repeated.is_empty(), "{:?}", event.repeated);
    }

    #[tokio::test]
    async fn wrongly_typed_fields_are_invalid_requests_that_never_show_the_value() {
        let (step, provider) = fixture();
        let valid = json(sample(include_str!("../events/payment.json"))).json;
        let with = |field: &str, value: Value| {
            let mut event = valid.clone();
            event[field] = value;
            event
        };
        let cases = [
            ("a negative amount", with("amount_cents", json!(-4_111_222))),
            ("a fractional amount", with("amount_cents", json!(4111.5))),
            (
                "an amount as text",
                with("amount_cents", json!("4111111111111111")),
            ),
            (
                "a numeric customer id",
                with("customer_id", json!(4_111_111_111_111_111u64)),
            ),
            ("a null order id", with("order_id", Value::Null)),
            ("no currency", {
                let mut event = valid.clone();
                event.as_object_mut().unwrap().remove("currency");
                event
            }),
            ("an array", json!(["4111111111111111"])),
        ];
        for (what, event) in cases {
            let error = step
                .clone()
                .oneshot(TestContext::new().event(PaymentEvent::from(event)))
                .await
                .unwrap_err();
            let diagnostic = Diagnostic::from(error);
            assert_eq!(diagnostic.error_type, "InvalidPaymentRequest", "{what}");
            assert!(
                !diagnostic.error_message.contains("4111"),
                "{what}: {}",
                diagnostic.error_message
            );
        }
        assert!(provider.charged.lock().unwrap().is_empty());
    }

    /// Each failed invocation writes one ERROR line, which names the error as Lambda reports it
    /// (`errorType` and `errorMessage`), so a Logs Insights query on `exception_name` finds
    /// what the caller was told.
    #[tokio::test]
    async fn a_failure_line_names_the_error_as_lambda_reports_it_once() {
        let (step, _, logs, powertools) = fixture_with_logs(InMemoryStore::new());
        let _guard = powertools_tests::set_test_default(powertools.subscriber());
        let mut invalid = json(sample(include_str!("../events/payment.json")));
        invalid.json["amount_cents"] = json!(0);
        for (request_id, event) in [
            (
                "flaky",
                json(sample(include_str!("../events/flaky-payment.json"))),
            ),
            ("invalid", invalid),
            (
                "first",
                json(sample(include_str!("../events/payment.json"))),
            ),
            (
                "changed",
                json(sample(include_str!("../events/changed-amount.json"))),
            ),
        ] {
            let outcome = step
                .clone()
                .oneshot(TestContext::new().with_request_id(request_id).event(event))
                .await;
            let lines: Vec<Value> = logs
                .json()
                .into_iter()
                .filter(|line| line["function_request_id"] == request_id)
                .filter(|line| line["level"] == "ERROR")
                .collect();
            let Err(error) = outcome else {
                assert!(lines.is_empty(), "{request_id}: {lines:?}");
                continue;
            };
            let diagnostic = Diagnostic::from(error);
            assert_eq!(lines.len(), 1, "{request_id}: one ERROR line: {lines:?}");
            assert_eq!(
                lines[0]["exception_name"], diagnostic.error_type,
                "{request_id}: {}",
                lines[0]
            );
            assert_eq!(
                lines[0]["exception"], diagnostic.error_message,
                "{request_id}: {}",
                lines[0]
            );
        }
    }

    #[tokio::test]
    async fn every_log_line_of_a_refused_duplicate_names_the_payment() {
        let (step, _, logs, powertools) = fixture_with_logs(InMemoryStore::new());
        let _guard = powertools_tests::set_test_default(powertools.subscriber());
        step.clone()
            .oneshot(TestContext::new().event(json(sample(include_str!("../events/payment.json")))))
            .await
            .unwrap();
        let changed = sample(include_str!("../events/changed-amount.json"));
        let (payment_id, order_id) = (changed.payment_id.clone(), changed.order_id.clone());
        step.oneshot(TestContext::new().event(json(changed)))
            .await
            .unwrap_err();
        let lines = logs.json();
        let refused: Vec<_> = lines
            .iter()
            .skip_while(|line| line["message"] != "charged")
            .skip(1)
            .collect();
        assert!(
            refused.iter().any(|line| line["level"] == "ERROR"),
            "the refusal's failure line: {lines:?}"
        );
        for line in refused {
            assert_eq!(line["payment_id"], json!(payment_id), "{line}");
            assert_eq!(line["order_id"], json!(order_id), "{line}");
        }
    }
}
