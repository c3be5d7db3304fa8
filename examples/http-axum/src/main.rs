//! `http-axum`: the usual shape of a Rust HTTP function, an axum [`Router`] under `lambda_http`,
//! with the whole powertools-rs stack around it.
//!
//! - `powertools.layer()` wraps `lambda_http::Adapter::from(router)`: one JSON log line per
//!   event with the invocation's context, one EMF document per invocation (and one `ColdStart`),
//!   one span per invocation with the HTTP server attributes.
//! - A small axum middleware takes the correlation id from the request (the `x-correlation-id`
//!   header, else API Gateway's request id), puts it on every log line and returns it as a
//!   header.
//! - `POST /orders` is idempotent on its `Idempotency-Key` header: the route calls
//!   [`Idempotency::run_keyed`] with the header as the key and the basket (the body without
//!   the prices it shows) as validation data, so a retry gets the first answer without placing
//!   the order again, after a price change too, and the same key with another basket is
//!   refused (422). Other routes (`GET /health`) are not idempotent: the
//!   idempotency sits on the route, not around the whole function.
//! - A request refused by validation (no key, a bad body) is answered 400 before the claim,
//!   one the catalogue refuses (a price changed) inside it, which is released: the key stays
//!   free, so the fixed request can use it.
//!
//! Deployed, it runs under the Lambda Runtime API with the idempotency table named by
//! `IDEMPOTENCY_TABLE`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lambda_http::{Adapter, Context, RequestExt, lambda_runtime, request::RequestContext};
use lambda_runtime::tower::util::AndThen;
use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use powertools::Powertools;
use powertools::idempotency::{Error as IdempotencyError, Idempotency, IdempotencyStore};
use powertools::metrics::Unit;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The header that carries the idempotency key, as payment APIs (Stripe's among them) name it.
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header a caller can send its correlation id in; the response repeats it.
const CORRELATION_ID_HEADER: &str = "x-correlation-id";
/// The longest idempotency key or correlation id accepted, in bytes.
const MAX_ID_BYTES: usize = 128;
/// The most items an order may have.
const MAX_ITEMS: usize = 50;
/// The largest total an order may have, in cents.
const MAX_TOTAL_CENTS: u64 = 100_000_000;

/// What the bakery sells, and the price of one, in cents: an order is charged these prices,
/// never a price from the request (deployed: a table or a price service).
const CATALOGUE: &[(&str, u32)] = &[
    ("croissant", 225),
    ("sourdough", 650),
    ("wedding-cake", 45_000),
];

/// The catalogue an order is priced from (deployed: a table or a price service, whose prices
/// change while keys are live; here the bakery's list, which tests change).
struct Catalogue(Mutex<HashMap<String, u32>>);

impl Catalogue {
    /// The bakery's list.
    fn bakery() -> Self {
        Catalogue(Mutex::new(
            CATALOGUE
                .iter()
                .map(|&(sku, price)| (sku.to_owned(), price))
                .collect(),
        ))
    }

    /// The price of one `sku`, in cents, if the bakery sells it.
    fn price_of(&self, sku: &str) -> Option<u32> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .copied()
    }

    /// Sets the price of `sku` (a price change, in tests).
    #[cfg(test)]
    fn set_price(&self, sku: &str, price: u32) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sku.to_owned(), price);
    }

    /// Withdraws `sku` (in tests).
    #[cfg(test)]
    fn remove(&self, sku: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(sku);
    }
}

/// What a client posts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct OrderRequest {
    customer_id: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Item {
    sku: String,
    quantity: u32,
    /// The price the client showed the customer, if it sends one: refused when it is not the
    /// catalogue's (`PriceChanged`), never charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_price_cents: Option<u32>,
}

/// Why an order is refused (nothing recorded): the answer's code and message.
#[derive(Debug)]
struct OrderRefusal {
    code: &'static str,
    message: String,
}

impl OrderRefusal {
    fn invalid(rule: &str) -> Self {
        OrderRefusal {
            code: "InvalidOrder",
            message: rule.to_owned(),
        }
    }
}

/// What the function answers for a placed order (and replays to a retry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PlacedOrder {
    order_id: String,
    customer_id: String,
    total_cents: u64,
}

impl OrderRequest {
    /// The rules that do not depend on the catalogue, checked before the claim (a request
    /// refused here records nothing, so its fixed version can use the same key).
    fn check(&self) -> Result<(), OrderRefusal> {
        if !is_id(&self.customer_id) {
            return Err(OrderRefusal::invalid(
                "customer_id must be 1 to 128 characters from A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(OrderRefusal::invalid("items must hold 1 to 50 items"));
        }
        if self
            .items
            .iter()
            .any(|item| !is_id(&item.sku) || !(1..=1000).contains(&item.quantity))
        {
            return Err(OrderRefusal::invalid(
                "each item needs a valid sku and a quantity from 1 to 1000",
            ));
        }
        Ok(())
    }

    /// What the client asked for, without the prices it showed: the validation data and the
    /// order id's. The same basket with or without its prices is one order, and a retry is the
    /// same request after a price change too (priced, it was another order then: refused as
    /// the key reused, and a client that took a new key was charged twice; found by an attack
    /// from the docs).
    fn basket(&self) -> OrderRequest {
        OrderRequest {
            customer_id: self.customer_id.clone(),
            items: self
                .items
                .iter()
                .map(|item| Item {
                    unit_price_cents: None,
                    ..item.clone()
                })
                .collect(),
        }
    }

    /// Prices the order from the catalogue, inside the claim (a retry of a placed order is
    /// answered with it whatever the catalogue says now): its total, or why the order is
    /// refused. Each item's `unit_price_cents` is the catalogue's after it.
    fn price(&mut self, catalogue: &Catalogue) -> Result<u64, OrderRefusal> {
        let mut total: u64 = 0;
        for item in &mut self.items {
            // The sku passed `check`'s `is_id`: quoting it never echoes unbounded input.
            let Some(price) = catalogue.price_of(&item.sku) else {
                return Err(OrderRefusal {
                    code: "UnknownSku",
                    message: format!("the bakery does not sell {}", item.sku),
                });
            };
            if item.unit_price_cents.is_some_and(|sent| sent != price) {
                return Err(OrderRefusal {
                    code: "PriceChanged",
                    message: format!(
                        "{} costs {price} cents, not the price sent; show the customer the new \
                         price and send the order again",
                        item.sku
                    ),
                });
            }
            item.unit_price_cents = Some(price);
            total += u64::from(item.quantity) * u64::from(price);
        }
        // As the orders-api example bounds it: a total past this is no bakery's (and stays
        // exact in every JSON reader).
        if total > MAX_TOTAL_CENTS {
            return Err(OrderRefusal::invalid(
                "the order's total must be at most 100,000,000 cents",
            ));
        }
        Ok(total)
    }
}

/// Ids and keys: 1 to 128 characters of `A-Z a-z 0-9 - _`, so nothing unbounded is stored or
/// echoed.
fn is_id(text: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A JSON error body: `{"error": <code>, "message": <text>}`.
fn problem(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

/// A refusal of the request, answered with [`problem`] and logged (a `WARN` line with the
/// request's context and correlation id), so that a client's 4xx can be found by its ids.
fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    tracing::warn!(
        code,
        status = status.as_u16(),
        reason = message,
        "the request was refused"
    );
    problem(status, code, message)
}

/// The routes, generic over the idempotency store (DynamoDB deployed, memory in tests).
struct Orders<St> {
    idempotency: Idempotency<St>,
    catalogue: Arc<Catalogue>,
    /// The orders placed, by order id: the orders table, simulated. A real function writes the
    /// order with a conditional put on its id (as the orders-api example does), so that placing
    /// an order twice (see [`place`]) stores it once.
    table: Mutex<HashMap<String, PlacedOrder>>,
}

/// The largest request Lambda takes (6 MB, a synchronous invocation's payload limit).
const LAMBDA_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The router: `POST /orders` (idempotent on its key), `GET /health`, and the correlation id on
/// every route.
fn router<St: IdempotencyStore + 'static>(
    idempotency: Idempotency<St>,
    catalogue: Arc<Catalogue>,
) -> Router {
    Router::new()
        .route("/orders", post(place_order::<St>))
        .route("/health", get(health))
        // Lambda hands over bodies of up to 6 MB, already in memory: axum's own 2 MB limit
        // would answer a larger one 413 in plain text instead of reading it.
        .layer(axum::extract::DefaultBodyLimit::max(LAMBDA_MAX_BODY_BYTES))
        .layer(middleware::from_fn(correlation_id))
        .with_state(Arc::new(Orders {
            idempotency,
            catalogue,
            table: Mutex::default(),
        }))
}

/// Takes the correlation id from the request: the caller's `x-correlation-id` when it is a
/// valid id, else API Gateway's request id. Every log line of the invocation carries it, and
/// the response repeats it.
async fn correlation_id(request: Request, next: Next) -> Response {
    let from_caller = request
        .headers()
        .get(CORRELATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_id(id))
        .map(str::to_owned);
    let from_gateway = || match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    };
    let id = from_caller.or_else(from_gateway);
    if let Some(id) = &id {
        // Only fails outside an invocation, which this middleware never runs in.
        if let Err(error) = powertools::logging::set_correlation_id(id.clone()) {
            tracing::warn!(%error, "the correlation id was not set");
        }
    }
    let mut response = next.run(request).await;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(CORRELATION_ID_HEADER, value);
    }
    response
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `POST /orders`: checks the key and the body, then places the order at most once per key.
async fn place_order<St: IdempotencyStore + 'static>(
    State(orders): State<Arc<Orders<St>>>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Refused before the claim: a request without a usable key, or with a bad body, records
    // nothing, so the client can fix it and retry with the same key.
    let mut keys = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(key) = keys.next() else {
        return refused(
            StatusCode::BAD_REQUEST,
            "MissingIdempotencyKey",
            "send an Idempotency-Key header: 1 to 128 characters from A-Z, a-z, 0-9, '-' and '_'",
        );
    };
    // There but unusable (two headers, which HTTP APIs join with a comma and an ALB passes as
    // two values; too long; not ASCII): said so, without echoing it. Taking the first of two
    // let one request whose headers arrived in the other order place a second order (found by
    // an attack through the emulator). Two spellings of the name in one event (a direct invoke's)
    // are two values in the multi-value shape, and one header, the last, in an HTTP API's
    // `headers`, where `lambda_http` keeps one value per name (see the README).
    let Some(key) = key
        .to_str()
        .ok()
        .filter(|key| is_id(key) && keys.next().is_none())
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            "InvalidIdempotencyKey",
            "the Idempotency-Key header must be one key of 1 to 128 characters from A-Z, a-z, \
             0-9, '-' and '_'",
        );
    };
    let order: OrderRequest = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(error) => {
            // Where and what kind, never serde's message: it quotes the value (a card number
            // in the wrong field, or a megabyte of it, would be copied into the logs).
            tracing::warn!(
                code = "InvalidBody",
                status = 400,
                kind = ?error.classify(),
                line = error.line(),
                column = error.column(),
                "the order body is not a valid order"
            );
            return problem(
                StatusCode::BAD_REQUEST,
                "InvalidBody",
                "the body must be a JSON order: {\"customer_id\", \"items\": [{\"sku\", \"quantity\", and optionally \"unit_price_cents\"}]}",
            );
        }
    };
    if let Err(refusal) = order.check() {
        return refused(StatusCode::BAD_REQUEST, refusal.code, &refusal.message);
    }
    if let Err(error) = powertools::logging::append_key("customer_id", &order.customer_id) {
        tracing::warn!(%error, "the customer id is not on the log lines");
    }

    // The key is the header; the basket is validation data, so the same key with another order
    // is refused instead of answered with the first order's result.
    let validation = serde_json::to_value(order.basket()).ok();
    let order_id = order_id(&orders.idempotency, &context, key, validation.as_ref());
    let placed = orders
        .idempotency
        .run_keyed(&context, "place-order", json!(key), validation, || {
            place(&orders, order_id, order)
        })
        .await;
    match placed {
        Ok(placed) => (StatusCode::CREATED, Json(placed)).into_response(),
        // Refused by the catalogue: the claim is released (a handler error is not stored), so
        // the corrected order can use the same key.
        Err(IdempotencyError::Handler(refusal)) => {
            refused(StatusCode::BAD_REQUEST, refusal.code, &refusal.message)
        }
        Err(IdempotencyError::PayloadMismatch { .. }) => refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IdempotencyKeyReused",
            "this Idempotency-Key was already used for a different order",
        ),
        Err(IdempotencyError::AlreadyInProgress { .. }) => refused(
            StatusCode::CONFLICT,
            "RequestInProgress",
            "a request with this Idempotency-Key is still being processed: retry later",
        ),
        Err(error @ IdempotencyError::Persistence { .. }) => {
            // The store failed before the claim: the handler never ran.
            tracing::error!(error = %error, "the order was not placed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "OrderNotPlaced",
                "the order could not be placed: retry with the same Idempotency-Key",
            )
        }
        // Refused by the catalogue (nothing placed), and releasing the claim failed too: the
        // refusal is the answer, never "may have been placed" (found by an attack through the
        // fault proxy). The key stays claimed until the request's in-progress deadline, so a
        // corrected order under it gets 409 until then.
        Err(IdempotencyError::DeleteFailed { error, source }) => match *error {
            IdempotencyError::Handler(refusal) => {
                tracing::error!(
                    code = refusal.code,
                    release_error = %source,
                    "the order was refused, and releasing its Idempotency-Key failed: the key \
                     is held until the request's in-progress deadline"
                );
                refused(
                    StatusCode::BAD_REQUEST,
                    refusal.code,
                    &format!(
                        "{} (this Idempotency-Key is still held for a while: send the corrected \
                         order with a new key, or retry later)",
                        refusal.message
                    ),
                )
            }
            // A panic or the deadline: the order may have been placed.
            error => not_confirmed(&IdempotencyError::DeleteFailed {
                error: Box::new(error),
                source,
            }),
        },
        Err(error) => not_confirmed(&error),
    }
}

/// The answer when the order may have been placed but its outcome was not recorded.
fn not_confirmed(error: &IdempotencyError<OrderRefusal>) -> Response {
    // The order may have been placed (the store failed to record it, or to read its record
    // back): say so. The retry places nothing twice: the order id is the key's and the order's,
    // and the table stores an order id once.
    tracing::error!(error = %error, "the order's outcome was not recorded");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "OrderNotConfirmed",
        "the order may have been placed, but it could not be confirmed: retry with the same \
         Idempotency-Key (a retry answers with the same order, never a second one)",
    )
}

/// The order id of `key` and the basket: the same for a retry of the request (`ord-` and 24 hex
/// digits of the idempotency key's digest), so that an order placed by an attempt whose record
/// the store failed to complete is found, not placed again, by the retry that runs after the
/// record's in-progress deadline. Another order under the same key (after the window, when the
/// key is free again) gets another id.
fn order_id<St: IdempotencyStore>(
    idempotency: &Idempotency<St>,
    context: &Context,
    key: &str,
    order: Option<&Value>,
) -> String {
    let key = idempotency.key_for(context, "order-id", &json!([key, order]));
    let digest = key.rsplit('#').next().unwrap_or(&key);
    format!("ord-{}", &digest[..digest.len().min(24)])
}

impl std::fmt::Display for OrderRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Places the order: the side effect that must happen once per key (here the order stored in
/// the simulated table and the `OrdersPlaced` metric; a real function would write the order and
/// charge for it), priced from the catalogue as it is now; or why the catalogue refuses it.
///
/// An order id already in the table is answered with the order it holds, not placed again nor
/// priced: the case idempotency records cannot cover, an attempt that placed the order and
/// whose record the store then failed to complete (its retry runs this again after the record's
/// deadline), whatever the catalogue says by then (priced first, that retry was refused
/// `PriceChanged` or `UnknownSku` after a change, for an order placed; found by a review).
async fn place<St>(
    orders: &Orders<St>,
    order_id: String,
    mut order: OrderRequest,
) -> Result<PlacedOrder, OrderRefusal> {
    let mut table = orders.table.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(placed) = table.get(&order_id) {
        tracing::warn!(order_id, "the order was placed already: answered with it");
        return Ok(placed.clone());
    }
    let total_cents = order.price(&orders.catalogue)?;
    let placed = PlacedOrder {
        order_id: order_id.clone(),
        customer_id: order.customer_id,
        total_cents,
    };
    table.insert(order_id.clone(), placed.clone());
    drop(table);
    record(|| powertools::metrics::add_metric("OrdersPlaced", 1.0, Unit::Count));
    #[allow(clippy::cast_precision_loss)] // cents stay far below 2^53
    record(|| {
        powertools::metrics::add_metric("OrderValue", total_cents as f64 / 100.0, Unit::None)
    });
    tracing::info!(order_id, total_cents, "order placed");
    Ok(placed)
}

/// A metric is never worth failing an order for: a refusal is logged instead.
fn record(add: impl FnOnce() -> Result<(), powertools::metrics::Error>) {
    if let Err(error) = add() {
        tracing::warn!(%error, "a metric was not recorded");
    }
}

/// The router with each response's body collected into `lambda_http::Body`.
///
/// `run_concurrent` moves the service between tasks, which `lambda_http` allows only for a
/// response type that is `Sync`, and axum's streaming `Body` is not. Lambda sends a buffered
/// response anyway (this function does not stream), so collecting it here costs nothing extra.
fn buffered(router: Router) -> BufferedRouter {
    ServiceExt::<lambda_http::Request>::and_then(
        router,
        collect_body as fn(Response) -> CollectBody,
    )
}

type CollectBody = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;
type HttpResponse = axum::http::Response<lambda_http::Body>;
type BufferedRouter = AndThen<Router, fn(Response) -> CollectBody>;

fn collect_body(response: Response) -> CollectBody {
    Box::pin(async move {
        let (parts, body) = response.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => lambda_http::Body::from(bytes.to_vec()),
            Err(error) => {
                tracing::error!(%error, "the response body could not be read");
                return Ok(problem_response());
            }
        };
        Ok(HttpResponse::from_parts(parts, body))
    })
}

/// 500 with a JSON error body, for a response whose body failed.
fn problem_response() -> HttpResponse {
    let mut response = HttpResponse::new(lambda_http::Body::from(
        r#"{"error":"InternalError","message":"the response could not be sent"}"#,
    ));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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

/// The idempotency settings: Powertools' defaults, and a request without a key refused rather
/// than run without idempotency (the route checks the header first; this is the backstop).
fn idempotency<St: IdempotencyStore>(store: St) -> Result<Idempotency<St>, IdempotencyError> {
    Idempotency::builder(store)
        .key_prefix("orders-http")
        .raise_on_missing_key(true)
        .build()
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
    let store = powertools::idempotency::dynamodb_store(table).await?;
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(Adapter::from(buffered(router(
            idempotency(store)?,
            Arc::new(Catalogue::bakery()),
        ))));
    // Sequential by default; with `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) as
    // many invocations at once as it says, each with its own logs, metrics, span and records.
    powertools::run_concurrent(service).await
}

#[cfg(test)]
mod tests;
