//! The HTTP server attributes of invocations triggered by API Gateway (REST and HTTP APIs), a
//! function URL or an Application Load Balancer.

use std::any::Any;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// A hook of the caller's, erased: `Some` when the event is of the hook's type.
pub(crate) type HttpHook = Arc<dyn Fn(&dyn Any) -> Option<Option<HttpRequest>> + Send + Sync>;

/// The HTTP request an invocation serves, recorded on its span with the OpenTelemetry HTTP server
/// conventions: `http.request.method`, `url.path` and, when the trigger routes by a template,
/// `http.route`.
///
/// [`TracingLayer`](crate::TracingLayer) reads it from the event by itself for
/// `serde_json::Value` events and, with the `aws-lambda-events` feature, for the
/// `aws_lambda_events` request types; [`TracingLayer::http_request`](crate::TracingLayer::http_request)
/// reads it from an event type of your own.
///
/// ```
/// use powertools_tracing::HttpRequest;
/// use serde_json::json;
///
/// let event = json!({
///     "version": "2.0",
///     "routeKey": "GET /orders/{id}",
///     "rawPath": "/orders/42",
///     "requestContext": {"http": {"method": "GET", "path": "/orders/42"}},
/// });
/// let request = HttpRequest::from_json(&event).unwrap();
/// assert_eq!(request.method, "GET");
/// assert_eq!(request.path.as_deref(), Some("/orders/42"));
/// assert_eq!(request.route.as_deref(), Some("/orders/{id}"));
/// assert_eq!(HttpRequest::from_json(&json!({"Records": []})), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The request method (`http.request.method`), for example `GET`.
    pub method: String,
    /// The path requested (`url.path`), for example `/orders/42`.
    pub path: Option<String>,
    /// The route template that matched (`http.route`), for example `/orders/{id}`.
    pub route: Option<String>,
}

impl HttpRequest {
    /// A request with `method`, no path and no route.
    pub fn new(method: impl Into<String>) -> Self {
        HttpRequest {
            method: method.into(),
            path: None,
            route: None,
        }
    }

    /// Sets the path requested.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the route template that matched.
    #[must_use]
    pub fn with_route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// The request of an event in the JSON shape Lambda receives from API Gateway REST APIs
    /// (payload 1.0: `httpMethod`, `path`, `resource`), HTTP APIs and function URLs (payload 2.0:
    /// `requestContext.http.method`, `rawPath`, `routeKey`), or an Application Load Balancer
    /// (`httpMethod`, `path`, `requestContext.elb`). `None` for any other event; an event without
    /// a `requestContext` is told apart with one lookup.
    pub fn from_json(event: &Value) -> Option<Self> {
        let event = event.as_object()?;
        let context = event.get("requestContext")?.as_object()?;
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        if let Some(http) = context.get("http").and_then(Value::as_object) {
            // Payload 2.0: HTTP API or function URL.
            let method = http.get("method")?.as_str()?;
            let route = event
                .get("routeKey")
                .or_else(|| context.get("routeKey"))
                .and_then(Value::as_str)
                .and_then(route_of_key);
            return Some(HttpRequest {
                method: method.to_owned(),
                path: text(event.get("rawPath")).or_else(|| text(http.get("path"))),
                route: route.map(str::to_owned),
            });
        }
        // Payload 1.0 (REST API) or ALB; a WebSocket API event has neither field.
        let method = event.get("httpMethod")?.as_str()?;
        Some(HttpRequest {
            method: method.to_owned(),
            path: text(event.get("path")),
            route: text(event.get("resource")).or_else(|| text(context.get("resourcePath"))),
        })
    }
}

/// The route of an HTTP API route key: `GET /orders/{id}` gives `/orders/{id}`; `$default` (a
/// catch-all, and every function URL's) has none.
fn route_of_key(key: &str) -> Option<&str> {
    let (_method, route) = key.split_once(' ')?;
    route.starts_with('/').then_some(route)
}

/// The HTTP request of an event: the caller's hook first, then the types known here.
pub(crate) fn request_of<T: 'static>(event: &T, hook: Option<&HttpHook>) -> Option<HttpRequest> {
    let any: &dyn Any = event;
    if let Some(request) = hook.and_then(|hook| hook(any)) {
        return request;
    }
    if let Some(json) = any.downcast_ref::<Value>() {
        return HttpRequest::from_json(json);
    }
    #[cfg(feature = "aws-lambda-events")]
    if let Some(request) = events::request_of(any) {
        return Some(request);
    }
    #[cfg(feature = "lambda-http")]
    if let Some(request) = any.downcast_ref::<lambda_http::request::LambdaRequest>() {
        return lambda_http_request_of(request);
    }
    None
}

/// The HTTP request inside `lambda_http`'s event: each variant holds the `aws_lambda_events`
/// type read above. WebSocket and VPC Lattice events are not HTTP server requests here.
#[cfg(feature = "lambda-http")]
fn lambda_http_request_of(request: &lambda_http::request::LambdaRequest) -> Option<HttpRequest> {
    use lambda_http::request::LambdaRequest;
    if let LambdaRequest::ApiGatewayV2(event) = request {
        return events::request_of(event);
    }
    if let LambdaRequest::ApiGatewayV1(event) = request {
        return events::request_of(event);
    }
    if let LambdaRequest::Alb(event) = request {
        return events::request_of(event);
    }
    None
}

/// The status code of an HTTP invocation's response: its `statusCode`.
pub(crate) fn status_code_of<R: Serialize + 'static>(response: &R) -> Option<i64> {
    let any: &dyn Any = response;
    #[cfg(feature = "aws-lambda-events")]
    if let Some(status) = events::status_code_of(any) {
        return Some(status);
    }
    match any.downcast_ref::<Value>() {
        Some(json) => status_in(json),
        // A response type of the handler's own: only HTTP invocations pay for this.
        None => status_in(&serde_json::to_value(response).ok()?),
    }
}

fn status_in(response: &Value) -> Option<i64> {
    match response.get("statusCode")? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(feature = "aws-lambda-events")]
mod events {
    use std::any::Any;

    use aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
    use aws_lambda_events::apigw::{
        ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
        ApiGatewayV2httpResponse,
    };
    use aws_lambda_events::lambda_function_urls::{
        LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
    };

    use super::{HttpRequest, route_of_key};

    pub(super) fn request_of(event: &dyn Any) -> Option<HttpRequest> {
        if let Some(event) = event.downcast_ref::<ApiGatewayV2httpRequest>() {
            let http = &event.request_context.http;
            let route = event
                .route_key
                .as_deref()
                .or(event.request_context.route_key.as_deref())
                .and_then(route_of_key);
            return Some(HttpRequest {
                method: http.method.as_str().to_owned(),
                path: event.raw_path.clone().or_else(|| http.path.clone()),
                route: route.map(str::to_owned),
            });
        }
        if let Some(event) = event.downcast_ref::<ApiGatewayProxyRequest>() {
            return Some(HttpRequest {
                method: event.http_method.as_str().to_owned(),
                path: event.path.clone(),
                route: event
                    .resource
                    .clone()
                    .or_else(|| event.request_context.resource_path.clone()),
            });
        }
        if let Some(event) = event.downcast_ref::<LambdaFunctionUrlRequest>() {
            let http = &event.request_context.http;
            return Some(HttpRequest {
                method: http.method.clone()?,
                path: event.raw_path.clone().or_else(|| http.path.clone()),
                route: None,
            });
        }
        if let Some(event) = event.downcast_ref::<AlbTargetGroupRequest>() {
            return Some(HttpRequest {
                method: event.http_method.as_str().to_owned(),
                path: event.path.clone(),
                route: None,
            });
        }
        None
    }

    pub(super) fn status_code_of(response: &dyn Any) -> Option<i64> {
        if let Some(response) = response.downcast_ref::<ApiGatewayV2httpResponse>() {
            return Some(response.status_code);
        }
        if let Some(response) = response.downcast_ref::<ApiGatewayProxyResponse>() {
            return Some(response.status_code);
        }
        if let Some(response) = response.downcast_ref::<LambdaFunctionUrlResponse>() {
            return Some(response.status_code);
        }
        if let Some(response) = response.downcast_ref::<AlbTargetGroupResponse>() {
            return Some(response.status_code);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn route_keys_give_their_path_template() {
        assert_eq!(route_of_key("GET /orders/{id}"), Some("/orders/{id}"));
        assert_eq!(route_of_key("ANY /{proxy+}"), Some("/{proxy+}"));
        assert_eq!(route_of_key("$default"), None);
        assert_eq!(route_of_key(""), None);
    }

    #[test]
    fn events_of_other_triggers_are_not_http() {
        for event in [
            json!({"Records": [{"eventSource": "aws:sqs"}]}),
            json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
            // A WebSocket API message: a request context, no HTTP method.
            json!({"requestContext": {"routeKey": "$connect", "eventType": "CONNECT"}}),
            json!({"requestContext": "text"}),
            json!([1, 2]),
            json!(null),
        ] {
            assert_eq!(HttpRequest::from_json(&event), None, "{event}");
        }
    }

    #[test]
    fn a_status_code_is_read_as_a_number_or_numeric_text() {
        assert_eq!(status_code_of(&json!({"statusCode": 201})), Some(201));
        assert_eq!(status_code_of(&json!({"statusCode": "502"})), Some(502));
        assert_eq!(status_code_of(&json!({"body": "{}"})), None);

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Reply {
            status_code: u16,
        }
        assert_eq!(status_code_of(&Reply { status_code: 409 }), Some(409));
    }

    #[cfg(feature = "lambda-http")]
    #[test]
    fn lambda_http_events_are_http_requests() {
        use lambda_http::request::LambdaRequest;
        let v2: LambdaRequest = serde_json::from_value(serde_json::json!({
            "version": "2.0",
            "routeKey": "POST /orders",
            "rawPath": "/orders",
            "rawQueryString": "",
            "headers": {},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1",
                         "sourceIp": "1.2.3.4", "userAgent": "curl"},
                "requestId": "r-1", "routeKey": "POST /orders", "stage": "$default",
                "time": "01/Dec/2026:09:15:02 +0000", "timeEpoch": 1_796_116_502_000_u64
            },
            "isBase64Encoded": false
        }))
        .unwrap();
        let request = request_of(&v2, None).expect("an HTTP API request");
        assert_eq!(request.method, "POST");
        assert_eq!(request.path.as_deref(), Some("/orders"));
        assert_eq!(request.route.as_deref(), Some("/orders"));

        let alb: LambdaRequest = serde_json::from_value(serde_json::json!({
            "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/t/1"}},
            "httpMethod": "GET", "path": "/health", "queryStringParameters": {},
            "headers": {}, "body": "", "isBase64Encoded": false
        }))
        .unwrap();
        let request = request_of(&alb, None).expect("an ALB request");
        assert_eq!(
            (request.method.as_str(), request.path.as_deref()),
            ("GET", Some("/health"))
        );
    }
}
