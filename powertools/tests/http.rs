//! The stack around an HTTP function: `lambda_http`'s adapter, whose event type is not
//! `Serialize`, under `powertools.layer()` and `powertools::run`.

use lambda_http::{Adapter, Body, IntoResponse, Request, Response};
use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::logging::MemoryLogs;
use powertools_tests::emf::CheckedSink;
use serde_json::{Value, json};

/// An API Gateway HTTP API (v2) request, as Lambda sends it.
fn api_request(method: &str, path: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "curl"},
            "requestId": "api-req-1",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "27/Nov/2026:09:15:02 +0000",
            "timeEpoch": 1_795_770_902_127_u64
        },
        "body": "{\"loaves\":2}",
        "isBase64Encoded": false
    })
}

async fn orders(request: Request) -> Result<Response<Body>, lambda_runtime::Error> {
    powertools::logging::append_key("route", request.uri().path())?;
    tracing::info!(method = request.method().as_str(), "order request");
    if request.uri().path() == "/broken" {
        return Err("the oven is offline".into());
    }
    Ok(json!({"accepted": true}).into_response().await)
}

#[tokio::test]
async fn the_stack_wraps_lambda_http_s_adapter_and_logs_with_its_requests() {
    // Given the whole stack around lambda_http's adapter
    let (logs, documents) = (MemoryLogs::new(), CheckedSink::new());
    let powertools = Powertools::builder()
        .service("orders")
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
        ]))
        .logger(|logger| logger.writer(logs.clone()))
        .metrics(|metrics| metrics.sink(documents.clone()))
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(powertools.subscriber());
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(Adapter::from(service_fn(orders)));

    // When a POST and a failing request arrive, as the runtime hands them over
    for (request_id, path, succeeds) in [
        ("req-post", "/orders", true),
        ("req-broken", "/broken", false),
    ] {
        let request: lambda_http::request::LambdaRequest =
            serde_json::from_value(api_request("POST", path)).unwrap();
        let event: LambdaEvent<_> = TestContext::new()
            .with_request_id(request_id)
            .event(request);
        let outcome = service.clone().oneshot(event).await;
        assert_eq!(outcome.is_ok(), succeeds, "{path}");
    }

    // Then the handler's lines carry the invocation, and the failure has its line
    let lines = logs.json();
    let post = lines
        .iter()
        .find(|line| line["function_request_id"] == "req-post")
        .unwrap();
    assert_eq!(post["message"], "order request");
    assert_eq!(post["method"], "POST");
    assert_eq!(post["route"], "/orders");
    let failure = lines
        .iter()
        .find(|line| line["message"] == "Invocation failed")
        .unwrap();
    assert_eq!(failure["function_request_id"], "req-broken");
    assert_eq!(failure["route"], "/broken");
    assert_eq!(failure["exception"], "the oven is offline");
}

/// Type-checks the deployed shape of an HTTP function; never called (the runtime needs Lambda).
#[allow(dead_code)]
async fn an_http_function_runs_through_powertools_run() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::from_env()?;
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(Adapter::from(service_fn(orders)));
    powertools::run(service).await
}
