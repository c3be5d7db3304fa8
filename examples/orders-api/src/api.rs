//! The HTTP API: placing an order, and the function's stack of layers.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use lambda_runtime::tower::ServiceBuilder;
use lambda_runtime::tower::util::BoxCloneService;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::idempotency::{Idempotency, IdempotencyLayer, IdempotencyStore, JmesPath};
use powertools::logging::correlation_paths;
use powertools::metrics::Unit;
use serde_json::{Value, json};

use crate::backend::{Charge, OrdersTable, PaymentFailed, PaymentProvider, SaveError, SavedOrders};
use crate::order::Order;

/// The header a client sets so that a retried request never places the order twice.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What the handler works with.
#[derive(Debug, Clone)]
pub(crate) struct App<St> {
    pub(crate) orders: OrdersTable,
    pub(crate) payments: PaymentProvider,
    /// Charges are idempotent on their own, keyed on the payment id: even a request with a new
    /// idempotency key never charges an order twice.
    pub(crate) payment_idempotency: Idempotency<St>,
}

impl<St> App<St> {
    /// The app on orders kept in memory (the offline demo and the tests), with the saved orders
    /// and the provider handed back to look at.
    pub(crate) fn in_memory(
        payment_idempotency: Idempotency<St>,
    ) -> (Self, SavedOrders, PaymentProvider) {
        let saved = SavedOrders::default();
        let payments = PaymentProvider::default();
        let app = App {
            orders: OrdersTable::InMemory(saved.clone()),
            payments: payments.clone(),
            payment_idempotency,
        };
        (app, saved, payments)
    }
}

/// A failure that must not be remembered: the idempotency record is deleted, and the client's
/// retry (same key) runs the order again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Payment(#[from] PaymentFailed),
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error("the payment could not be made idempotent: {0}")]
    PaymentIdempotency(String),
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        let error_type = match failure {
            Failure::Payment(_) => "PaymentFailed",
            Failure::Save(_) => "OrderNotSaved",
            Failure::PaymentIdempotency(_) => "PaymentIdempotencyError",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: failure.to_string(),
        }
    }
}

pub(crate) fn json_response(status: i64, body: &Value) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.body = Some(Body::Text(body.to_string()));
    response
}

/// Places the order in the request's body: prices it, charges the card (once), saves it.
async fn place_order<St: IdempotencyStore>(
    app: App<St>,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, Failure> {
    let order: Order = match serde_json::from_str(event.payload.body.as_deref().unwrap_or("")) {
        Ok(order) => order,
        Err(error) => {
            tracing::warn!(%error, "the request body is not an order");
            let body = json!({"error": "InvalidOrder", "message": error.to_string()});
            return Ok(json_response(400, &body));
        }
    };
    // Business context on every log line of this invocation, from here on.
    for (key, value) in [
        ("order_id", &order.order_id),
        ("customer_id", &order.customer_id),
        ("location", &order.location),
    ] {
        if let Err(error) = powertools::logging::append_key(key, value) {
            tracing::warn!(%error, key, "a log key was not added");
        }
    }
    let total_cents = match order.total_cents() {
        Ok(total) => total,
        Err(refused) => {
            tracing::warn!(reason = refused.code(), "order refused");
            let body = json!({"error": refused.code(), "message": refused.to_string()});
            return Ok(json_response(400, &body));
        }
    };

    let charge = Charge {
        payment_id: format!("pay-{}", order.order_id),
        customer_id: order.customer_id.clone(),
        amount_cents: total_cents,
    };
    let payments = app.payments.clone();
    let receipt = app
        .payment_idempotency
        .run(&event.context, "charge", charge, |charge| async move {
            payments.charge(charge).await
        })
        .await
        .map_err(|error| match error {
            powertools::idempotency::Error::Handler(failed) => Failure::Payment(failed),
            other => Failure::PaymentIdempotency(other.to_string()),
        })
        .inspect_err(|failure| tracing::error!(%failure, "the order was not placed"))?;
    app.orders
        .save(&order, total_cents)
        .await
        .inspect_err(|error| tracing::error!(%error, "the order was not saved"))?;

    record_metrics(&order, total_cents);
    tracing::info!(
        total_cents,
        payment = %receipt.provider_reference,
        "order placed"
    );
    let body = json!({
        "order_id": order.order_id,
        "status": "accepted",
        "total_cents": total_cents,
        "payment": receipt.provider_reference,
    });
    Ok(json_response(201, &body))
}

/// `OrdersPlaced` and `OrderValue` by location; the order id is metadata (searchable, not a
/// priced dimension). A location CloudWatch refuses as a dimension costs the dimension, not the
/// order.
fn record_metrics(order: &Order, total_cents: u64) {
    // Each call stands alone, so one refused value never costs the others. A shop name
    // CloudWatch refuses as a dimension value (`Café`) is kept as metadata by the library, and
    // the order is still counted.
    let outcomes = [
        powertools::metrics::add_dimension("location", &order.location),
        powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count),
        powertools::metrics::add_metric("OrderValue", total_cents as f64 / 100.0, Unit::None),
        powertools::metrics::add_metadata("order_id", order.order_id.clone()),
    ];
    for error in outcomes.into_iter().filter_map(Result::err) {
        tracing::warn!(%error, "an order metric was not recorded");
    }
}

fn idempotency_key(request: &ApiGatewayV2httpRequest) -> Option<String> {
    request
        .headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Idempotency outcomes that are answers to the client, not failures of the function.
fn as_response(
    result: Result<ApiGatewayV2httpResponse, powertools::idempotency::Error<Failure>>,
) -> Result<ApiGatewayV2httpResponse, powertools::idempotency::Error<Failure>> {
    use powertools::idempotency::Error;
    let (status, code, message) = match result {
        Err(Error::PayloadMismatch { .. }) => (
            409,
            "IdempotencyKeyReused",
            "this Idempotency-Key was already used for a different order",
        ),
        Err(Error::AlreadyInProgress { .. }) => (
            409,
            "OrderInProgress",
            "the same order is being placed right now; retry in a moment",
        ),
        Err(Error::KeyMissing) => (
            400,
            "MissingIdempotencyKey",
            "set the Idempotency-Key header so that a retry never places the order twice",
        ),
        Err(Error::Handler(Failure::Payment(failed))) => {
            // The record was deleted: the same request, retried, charges again.
            let body =
                json!({"error": "PaymentFailed", "message": failed.to_string(), "retry": true});
            return Ok(json_response(502, &body));
        }
        other => return other,
    };
    Ok(json_response(
        status,
        &json!({"error": code, "message": message}),
    ))
}

/// The function's two idempotency settings on one store: placing an order, keyed on the
/// `Idempotency-Key` header (required), and charging it, keyed on the payment id.
pub(crate) fn idempotency<St: IdempotencyStore + Clone>(
    store: St,
) -> Result<(Idempotency<St>, Idempotency<St>), powertools::idempotency::Error> {
    // One prefix: the operation names ("place_order" on the layer, "charge" on `run`) keep
    // the two kinds of record apart.
    let orders = Idempotency::builder(store.clone())
        .key_prefix("orders-api")
        .raise_on_missing_key(true)
        .use_local_cache()
        .build()?;
    let charges = Idempotency::builder(store)
        .key_prefix("orders-api")
        .build()?;
    Ok((orders, charges))
}

/// Why an invocation of the function failed, as Lambda reports it: the handler's failure or an
/// idempotency error, through the metrics layer.
pub(crate) type FunctionError =
    powertools::metrics::ServiceError<powertools::idempotency::Error<Failure>>;

/// The whole function as one service (boxed, so that its type can be named).
pub(crate) type Function =
    BoxCloneService<LambdaEvent<ApiGatewayV2httpRequest>, ApiGatewayV2httpResponse, FunctionError>;

/// The function: the Powertools stack (logs, metrics, traces), then the idempotency of the whole
/// request on its `Idempotency-Key` header with the body as validation data, then the handler.
pub(crate) fn service<St>(
    powertools: &Powertools,
    order_idempotency: Idempotency<St>,
    app: App<St>,
) -> Result<Function, lambda_runtime::Error>
where
    St: IdempotencyStore + Clone,
{
    let stack = powertools
        .layer()
        .correlation_id_path(correlation_paths::API_GATEWAY_HTTP)?
        .trigger("http");
    Ok(BoxCloneService::new(
        ServiceBuilder::new()
            .layer(stack)
            .map_result(as_response)
            .layer(
                IdempotencyLayer::new(order_idempotency)
                    .operation("place_order")
                    .key_from(idempotency_key)
                    .validation(JmesPath::new("powertools_json(body)")?),
            )
            .service(service_fn(move |event| place_order(app.clone(), event))),
    ))
}

#[cfg(test)]
mod tests {

    use lambda_runtime::tower::ServiceExt;

    use powertools::core::env::Env;
    use powertools::core::testing::TestContext;
    use powertools::idempotency::InMemoryStore;
    use powertools::metrics::MemorySink;

    use super::*;

    fn function() -> (Function, SavedOrders, PaymentProvider) {
        let (function, saved, payments, _) = function_with_metrics();
        (function, saved, payments)
    }

    fn function_with_metrics() -> (Function, SavedOrders, PaymentProvider, MemorySink) {
        let sink = MemorySink::new();
        let powertools = Powertools::builder()
            .service("orders")
            .env(Env::from_pairs([
                ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
                ("POWERTOOLS_TRACE_DISABLED", "true"),
            ]))
            .metrics(|metrics| metrics.sink(sink.clone()))
            .build()
            .unwrap();
        let (orders, payment_idempotency) = idempotency(InMemoryStore::new()).unwrap();
        let (app, saved, payments) = App::in_memory(payment_idempotency);
        (
            service(&powertools, orders, app).unwrap(),
            saved,
            payments,
            sink,
        )
    }

    async fn post(function: &Function, event: &str) -> (i64, Value) {
        let request: ApiGatewayV2httpRequest = serde_json::from_str(event).unwrap();
        let response = function
            .clone()
            .oneshot(TestContext::new().event(request))
            .await
            .unwrap();
        let Some(Body::Text(body)) = response.body else {
            panic!("a text body");
        };
        (response.status_code, serde_json::from_str(&body).unwrap())
    }

    #[tokio::test]
    async fn an_order_is_placed_once_however_often_it_is_sent() {
        let (function, saved, payments) = function();
        let first = post(&function, include_str!("../events/first-order.json")).await;
        assert_eq!(first.0, 201, "{}", first.1);
        assert_eq!(first.1["total_cents"], 2550);
        assert_eq!(
            post(&function, include_str!("../events/first-order.json")).await,
            first
        );
        let reused = post(
            &function,
            include_str!("../events/same-key-other-basket.json"),
        )
        .await;
        assert_eq!(
            (reused.0, reused.1["error"].as_str()),
            (409, Some("IdempotencyKeyReused"))
        );
        assert_eq!(saved.lock().unwrap().len(), 1);
        assert_eq!(payments.charges().len(), 1);
    }

    #[tokio::test]
    async fn an_order_from_a_shop_cloudwatch_cannot_name_is_still_counted() {
        let (function, _, _, sink) = function_with_metrics();
        let event = include_str!("../events/first-order.json").replace("camden", "Café Zürich");
        let placed = post(&function, &event).await;
        assert_eq!(placed.0, 201, "{}", placed.1);
        let document = powertools_tests::emf::valid_lines(&sink.lines())
            .into_iter()
            .find(|document| document.get("OrdersPlaced").is_some())
            .expect("the order is counted");
        assert_eq!(document["OrderValue"], 25.5);
        assert_eq!(document["location"], "Café Zürich", "kept as metadata");
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["service"]])
        );
    }

    #[tokio::test]
    async fn a_failed_payment_is_a_502_and_the_retry_places_the_order() {
        let (function, saved, payments) = function();
        let failed = post(&function, include_str!("../events/flaky-payment.json")).await;
        assert_eq!(
            (failed.0, failed.1["error"].as_str()),
            (502, Some("PaymentFailed"))
        );
        let placed = post(&function, include_str!("../events/flaky-payment.json")).await;
        assert_eq!(placed.0, 201, "{}", placed.1);
        assert_eq!(saved.lock().unwrap().len(), 1);
        assert_eq!(payments.charges().len(), 1);
        let missing = post(&function, include_str!("../events/missing-key.json")).await;
        assert_eq!(
            (missing.0, missing.1["error"].as_str()),
            (400, Some("MissingIdempotencyKey"))
        );
        let empty = post(&function, include_str!("../events/empty-basket.json")).await;
        assert_eq!(
            (empty.0, empty.1["error"].as_str()),
            (400, Some("EmptyBasket"))
        );
    }
}
