//! The offline demo: the real function, with in-memory stores, over the sample events.
//!
//! What it prints is what the function writes in Lambda: JSON log lines and EMF documents on
//! stdout, with the spans printed as they end (instead of being exported over OTLP), then a
//! summary of what happened and why.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use lambda_runtime::tower::{Service, ServiceExt};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::idempotency::InMemoryStore;
use serde_json::{Value, json};

use crate::api::App;

/// A span as the demo prints it.
#[derive(serde::Serialize)]
struct SpanLine<'a> {
    span: &'a str,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    duration_us: u64,
    status: String,
}

/// Prints each span as one JSON line when it ends.
#[derive(Debug)]
struct PrintSpans;

impl SpanExporter for PrintSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        for span in batch {
            let duration = span
                .end_time
                .duration_since(span.start_time)
                .unwrap_or_default();
            // A struct, not `json!` (whose map sorts its keys): `span` first, as the banner says.
            let line = SpanLine {
                span: &span.name,
                trace_id: span.span_context.trace_id().to_string(),
                span_id: span.span_context.span_id().to_string(),
                parent_span_id: span.parent_span_id.to_string(),
                duration_us: duration.as_micros() as u64,
                status: match &span.status {
                    opentelemetry::trace::Status::Unset => "Unset".to_owned(),
                    opentelemetry::trace::Status::Ok => "Ok".to_owned(),
                    // An HTTP 5xx has no description: the status code says it.
                    opentelemetry::trace::Status::Error { description }
                        if description.is_empty() =>
                    {
                        "Error".to_owned()
                    }
                    opentelemetry::trace::Status::Error { description } => {
                        format!("Error: {description}")
                    }
                },
            };
            let line = serde_json::to_string(&line).map_err(|error| {
                opentelemetry_sdk::error::OTelSdkError::InternalFailure(error.to_string())
            })?;
            println!("{line}");
        }
        Ok(())
    }
}

const STEPS: [(&str, &str, &str); 11] = [
    (
        "first-order.json",
        include_str!("../events/first-order.json"),
        "a first order",
    ),
    (
        "first-order.json",
        include_str!("../events/first-order.json"),
        "the same request retried (a lost response, a double tap)",
    ),
    (
        "same-key-other-basket.json",
        include_str!("../events/same-key-other-basket.json"),
        "the same Idempotency-Key with another basket",
    ),
    (
        "same-order-new-key.json",
        include_str!("../events/same-order-new-key.json"),
        "the same order id under a new Idempotency-Key, with a bigger basket",
    ),
    (
        "flaky-payment.json",
        include_str!("../events/flaky-payment.json"),
        "an order whose payment provider times out",
    ),
    (
        "flaky-payment.json",
        include_str!("../events/flaky-payment.json"),
        "the client's retry of that order",
    ),
    (
        "refused-order.json",
        include_str!("../events/refused-order.json"),
        "an order with a negative price",
    ),
    (
        "refused-order-corrected.json",
        include_str!("../events/refused-order-corrected.json"),
        "the corrected order, retried with the same Idempotency-Key",
    ),
    (
        "empty-basket.json",
        include_str!("../events/empty-basket.json"),
        "an order with an empty basket",
    ),
    (
        "missing-key.json",
        include_str!("../events/missing-key.json"),
        "an order without an Idempotency-Key",
    ),
    (
        "malformed-body.json",
        include_str!("../events/malformed-body.json"),
        "a body that is not JSON",
    ),
];

pub(crate) async fn run() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([(
            "POWERTOOLS_METRICS_NAMESPACE",
            "Bakery",
        )]))
        .tracer(|tracer| tracer.span_exporter(PrintSpans))
        .build()?;
    powertools.init()?;

    let (order_idempotency, payment_idempotency) = crate::api::idempotency(InMemoryStore::new())?;
    let (app, saved, payments) = App::in_memory(payment_idempotency);
    let mut function = crate::api::service(&powertools, order_idempotency, app)?;

    println!("orders-api demo: the deployed function's code, offline, with in-memory stores.");
    println!(
        "Lines starting with {{\"level\" are logs, {{\"_aws\" EMF metrics, {{\"span\" spans.\n"
    );
    let mut summary = Vec::new();
    for (step, (file, text, what)) in STEPS.iter().enumerate() {
        let request: ApiGatewayV2httpRequest = serde_json::from_str(text)?;
        let key = request
            .headers
            .get(crate::request::IDEMPOTENCY_KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("(none)")
            .to_owned();
        let event = TestContext::new()
            .with_function_name("orders-api")
            .with_memory_size_mb(256)
            .event(request);
        println!(
            "=== {}. {what}: POST /orders with events/{file}, Idempotency-Key {key}",
            step + 1
        );
        let (orders_before, charges_before) = (count(&saved), payments.charges().len());
        let response = function
            .ready()
            .await
            .map_err(|e| e.to_string())?
            .call(event)
            .await;
        let (status, body) = match response {
            Ok(response) => {
                let body: Value = match response.body {
                    Some(Body::Text(text)) => serde_json::from_str(&text)?,
                    _ => Value::Null,
                };
                (response.status_code, body)
            }
            Err(error) => (500, json!({"error": error.to_string()})),
        };
        println!("<- {status} {body}\n");
        let ran = count(&saved) > orders_before;
        let charged = payments.charges().len() > charges_before;
        summary.push(explain(step + 1, what, status, &body, ran, charged));
    }

    println!("Summary");
    for line in summary {
        println!("  {line}");
    }
    println!(
        "  In all, over {} requests: {} orders saved, {} card charges.",
        STEPS.len(),
        count(&saved),
        payments.charges().len(),
    );
    Ok(())
}

fn count(saved: &crate::backend::SavedOrders) -> usize {
    saved.lock().map_or(0, |orders| orders.len())
}

fn explain(step: usize, what: &str, status: i64, body: &Value, ran: bool, charged: bool) -> String {
    let why = match (status, body["error"].as_str()) {
        (201, _) if ran && charged => format!(
            "the handler ran: {} cents charged ({}), order saved",
            body["total_cents"], body["payment"]
        ),
        (201, _) => format!(
            "replayed from the idempotency record: same answer ({}), handler not run, nobody charged again",
            body["payment"]
        ),
        (422, Some("IdempotencyKeyReused")) => {
            "refused: the key's stored payload differs (payload validation), nothing ran".to_owned()
        }
        (409, Some("PaymentConflict")) => {
            "refused: the order id was used already, for another total or customer (the saved \
             order is read before any charge); nobody charged again, the saved order untouched"
                .to_owned()
        }
        (502, Some("PaymentFailed")) => {
            "the provider timed out; the idempotency record was released so that a retry can run"
                .to_owned()
        }
        (400, Some(code)) => format!(
            "refused before the idempotency claim ({code}): nothing recorded, so the fixed request \
             can reuse its key"
        ),
        _ => format!("unexpected: {body}"),
    };
    format!("{step}. {what} -> {status}: {why}")
}
