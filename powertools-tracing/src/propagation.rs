//! Propagating the current trace to the services a handler calls.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
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

/// The flag `XrayPropagator` gives a trace whose sampling is not decided (`Sampled=?` or none).
const DEFERRED: TraceFlags = TraceFlags::new(0x02);

/// The span context of an X-Ray trace header (`Root=1-…-…;Parent=…;Sampled=…`), read exactly as
/// `opentelemetry_aws::XrayPropagator` reads it (the tests compare the two on well-formed and
/// malformed headers) but without its maps, vectors and strings: this runs on every invocation.
pub(crate) fn parse_xray_header(header: &str) -> Option<SpanContext> {
    let mut trace_id = TraceId::INVALID;
    let mut parent = SpanId::INVALID;
    let mut flags = DEFERRED;
    let mut others = Vec::new();
    for pair in header.trim().split_terminator(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim_start_matches('=');
        match key {
            "Root" => trace_id = xray_trace_id(value)?,
            "Parent" => parent = SpanId::from_hex(value).unwrap_or(SpanId::INVALID),
            "Sampled" => {
                flags = match value {
                    "0" => TraceFlags::default(),
                    "1" => TraceFlags::SAMPLED,
                    _ => DEFERRED,
                }
            }
            _ => others.push((key.to_ascii_lowercase(), value.to_owned())),
        }
    }
    let trace_state = TraceState::from_key_value(others).ok()?;
    (trace_id != TraceId::INVALID)
        .then(|| SpanContext::new(trace_id, parent, flags, true, trace_state))
}

/// `1-<epoch>-<unique>` as one 128-bit id; the two parts are parsed as one hex number, as the
/// propagator does, from a stack buffer.
fn xray_trace_id(root: &str) -> Option<TraceId> {
    let mut parts = root.split_terminator('-');
    let (Some(_version), Some(epoch), Some(unique), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let mut buffer = [0_u8; 64];
    let length = epoch.len() + unique.len();
    let id = if length <= buffer.len() {
        buffer[..epoch.len()].copy_from_slice(epoch.as_bytes());
        buffer[epoch.len()..length].copy_from_slice(unique.as_bytes());
        TraceId::from_hex(std::str::from_utf8(&buffer[..length]).ok()?)
    } else {
        TraceId::from_hex(&format!("{epoch}{unique}"))
    };
    id.ok().filter(|id| *id != TraceId::INVALID)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn an_x_ray_header_reads_as_the_propagator_reads_it() {
        let headers = [
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "  Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1;  ",
            "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8",
            "Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            "Root==1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
            "Root=1-00000000-000000000000000000000000;Sampled=1",
            "Root=1-5759e988-bd862e3fe1be46a994272793-extra",
            "Root=1-5759e988;Sampled=1",
            "Root=1-+5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a9942727930000000000000000000000000000000000000000000000",
            "Root=1-0000000000000000000000000000000000000000-0000000000000000000000000000000000001",
            "Sampled=1;Parent=53995c3f42cd8ad8",
            "garbage",
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Foo=bar;baz",
        ];
        for header in headers {
            let carrier = HashMap::from([("x-amzn-trace-id".to_owned(), header.to_owned())]);
            let context = XrayPropagator::default().extract(&carrier);
            let theirs = context.span().span_context().clone();
            let theirs = theirs.is_valid().then_some(theirs);
            let ours = parse_xray_header(header).filter(SpanContext::is_valid);
            assert_eq!(ours, theirs, "{header:?}");
        }
    }
}
