//! A tracer that keeps its spans in memory, and readers of what they carry.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::{Array, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use powertools_core::env::Env;
use powertools_tracing::Tracer;

/// Keeps every exported span.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl Recorder {
    /// The spans exported so far.
    pub(crate) fn spans(&self) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The one exported span named `name`.
    pub(crate) fn span(&self, name: &str) -> SpanData {
        let spans = self.spans();
        let mut named = spans.iter().filter(|span| span.name == name);
        let span = named
            .next()
            .unwrap_or_else(|| panic!("no span {name} in {:?}", names(&spans)));
        assert!(named.next().is_none(), "two spans {name}");
        span.clone()
    }

    /// Forgets the spans exported so far.
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

/// A tracer of the service `orders` exporting to `recorder`, with an empty environment.
pub(crate) fn tracer(recorder: &Recorder) -> Tracer {
    Tracer::builder()
        .service("orders")
        .env(Env::empty())
        .span_exporter(recorder.clone())
        .build()
        .expect("valid tracer settings")
}

pub(crate) fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|span| span.name.to_string()).collect()
}

/// The value of attribute `key`, if the span has it (the last one, if it has several).
pub(crate) fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .rev()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| attribute.value.clone())
}

/// How many times the span carries attribute `key`.
pub(crate) fn attribute_count(span: &SpanData, key: &str) -> usize {
    span.attributes
        .iter()
        .filter(|attribute| attribute.key.as_str() == key)
        .count()
}

pub(crate) fn text(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

/// The string list in attribute `key` (`aws.xray.annotations`).
pub(crate) fn strings(span: &SpanData, key: &str) -> Option<Vec<String>> {
    match attribute(span, key)? {
        Value::Array(Array::String(values)) => Some(
            values
                .iter()
                .map(|value| value.as_str().to_owned())
                .collect(),
        ),
        other => panic!("{key} is not a string array: {other:?}"),
    }
}

/// The attributes of the span's `exception` event.
pub(crate) fn exception(span: &SpanData) -> Option<(String, String)> {
    let event = span.events.iter().find(|event| event.name == "exception")?;
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == key)
            .map(|attribute| attribute.value.as_str().into_owned())
            .unwrap_or_default()
    };
    Some((get("exception.type"), get("exception.message")))
}
