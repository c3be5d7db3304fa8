//! Propagating the current trace to the services a handler calls.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Adds the current span's context to outgoing HTTP headers, as W3C `traceparent` (and
/// `tracestate`) and as `X-Amzn-Trace-Id`, so that the service called joins the trace whether it
/// speaks OpenTelemetry or X-Ray. Does nothing outside a traced span.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// powertools_tracing::inject_trace_headers(&mut headers);
/// // Outside a traced invocation there is nothing to propagate.
/// assert!(headers.is_empty());
/// ```
pub fn inject_trace_headers(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    if !opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .is_valid()
    {
        return;
    }
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    XrayPropagator::default().inject_context(&context, &mut HeaderInjector(headers));
}
