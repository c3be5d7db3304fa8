//! X-Ray annotations on the invocation span.
//!
//! Through OTLP, X-Ray makes every span attribute metadata (shown, not indexed) except those
//! whose keys the span lists in its `aws.xray.annotations` attribute, which become annotations
//! (indexed: `annotation.ColdStart = true` filters traces). The invocation span lists `ColdStart`
//! and `Service`, as Powertools' Tracer annotates them, and the keys given to [`annotate`].
//!
//! The keys and values [`annotate`] adds are kept in the invocation span's own extensions in the
//! `tracing-subscriber` registry, never in a global, so that concurrent invocations each have
//! theirs; the layer writes them on the span once, when the invocation ends.

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;
use tracing_subscriber::registry::LookupSpan;

/// The span attribute listing the keys X-Ray indexes as annotations.
pub(crate) const XRAY_ANNOTATIONS: &str = "aws.xray.annotations";
/// The target and name of the invocation span, by which [`annotate`] finds it.
pub(crate) const INVOCATION_TARGET: &str = "powertools_tracing";
pub(crate) const INVOCATION_SPAN: &str = "lambda_invocation";
/// The annotations the layer sets on every invocation span.
pub(crate) const COLD_START: &str = "ColdStart";
pub(crate) const SERVICE: &str = "Service";

/// A value X-Ray accepts for an annotation: a string, a number or a boolean.
///
/// ```
/// use powertools_tracing::AnnotationValue;
///
/// let values: [AnnotationValue; 4] = ["o-42".into(), 3_u32.into(), 9.5.into(), true.into()];
/// # drop(values);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationValue(Value);

macro_rules! annotation_value_from {
    ($($source:ty => $convert:expr),* $(,)?) => {
        $(
            impl From<$source> for AnnotationValue {
                fn from(value: $source) -> Self {
                    let convert: fn($source) -> Value = $convert;
                    AnnotationValue(convert(value))
                }
            }
        )*
    };
}

annotation_value_from! {
    bool => Value::Bool,
    i64 => Value::I64,
    i32 => |value| Value::I64(value.into()),
    i16 => |value| Value::I64(value.into()),
    i8 => |value| Value::I64(value.into()),
    u32 => |value| Value::I64(value.into()),
    u16 => |value| Value::I64(value.into()),
    u8 => |value| Value::I64(value.into()),
    f64 => Value::F64,
    f32 => |value| Value::F64(value.into()),
    String => |value| Value::String(value.into()),
    &str => |value| Value::String(value.to_owned().into()),
}

/// The annotations given to [`annotate`] during one invocation, in the invocation span's
/// extensions.
#[derive(Debug, Default)]
struct Annotations(Vec<KeyValue>);

impl Annotations {
    /// Sets `key`; annotating a key again replaces its value.
    fn set(&mut self, key: Key, value: Value) {
        match self.0.iter_mut().find(|annotation| annotation.key == key) {
            Some(annotation) => annotation.value = value,
            None => self.0.push(KeyValue::new(key, value)),
        }
    }
}

/// Records `key = value` on the current invocation's span as an X-Ray annotation (indexed, for
/// filter expressions such as `annotation.order_id = "o-42"`), as Powertools' `put_annotation`
/// does. Call it anywhere inside the handler, in child spans too: the annotation goes on the
/// invocation span of the [`TracingLayer`](crate::TracingLayer), which lists the key in
/// `aws.xray.annotations`. Annotating a key again replaces its value. Concurrent invocations each
/// annotate their own span.
///
/// Returns `false`, recording nothing, outside a traced invocation (tracing off, or a subscriber
/// that is not a `tracing_subscriber` registry), and for `ColdStart`, `Service` and
/// `aws.xray.annotations`, which the layer sets. X-Ray only filters on keys of letters, digits and
/// underscores (the AWS exporters replace other characters: `order.id` becomes `order_id`), and
/// indexes at most 50 annotations per trace.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{Layer, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_tracing::{Tracer, TracingLayer, annotate};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lambda_runtime::Error> {
/// let tracer = Tracer::builder()
///     .endpoint("http://127.0.0.1:9/v1/traces") // nothing listens here: the flush gives up
///     .flush_timeout(std::time::Duration::from_millis(100))
///     .build()?;
/// let _guard = tracing::subscriber::set_default(tracer.subscriber());
/// let handler = TracingLayer::new(tracer).layer(service_fn(|event: LambdaEvent<Value>| async move {
///     let order = event.payload["order_id"].as_str().unwrap_or_default().to_owned();
///     // Filter with `annotation.order_id = "o-42"` in X-Ray.
///     assert!(annotate("order_id", order));
///     Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
/// }));
/// handler.oneshot(TestContext::new().event(json!({"order_id": "o-42"}))).await?;
/// // Outside an invocation there is no span to annotate.
/// assert!(!annotate("order_id", "o-43"));
/// # Ok(())
/// # }
/// ```
pub fn annotate(key: impl Into<Key>, value: impl Into<AnnotationValue>) -> bool {
    let key = key.into();
    if key.as_str().is_empty() || [COLD_START, SERVICE, XRAY_ANNOTATIONS].contains(&key.as_str()) {
        return false;
    }
    let AnnotationValue(value) = value.into();
    let mut annotation = Some((key, value));
    tracing::dispatcher::get_default(|dispatch| {
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return false;
        };
        let Some(current) = dispatch
            .current_span()
            .id()
            .and_then(|id| registry.span(id))
        else {
            return false;
        };
        let Some(invocation) = current.scope().find(|span| {
            span.name() == INVOCATION_SPAN && span.metadata().target() == INVOCATION_TARGET
        }) else {
            return false;
        };
        let Some((key, value)) = annotation.take() else {
            return false;
        };
        let mut extensions = invocation.extensions_mut();
        match extensions.get_mut::<Annotations>() {
            Some(annotations) => annotations.set(key, value),
            None => extensions.insert(Annotations(vec![KeyValue::new(key, value)])),
        }
        true
    })
}

/// Writes the invocation's annotations on its span, and the list of their keys after `ColdStart`
/// and `Service`, once, as the invocation ends.
pub(crate) fn write(span: &tracing::Span) {
    let annotations = span
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            registry.span(id)?.extensions_mut().remove::<Annotations>()
        })
        .flatten();
    let mut keys = vec![StringValue::from(COLD_START), StringValue::from(SERVICE)];
    if let Some(Annotations(annotations)) = annotations {
        keys.reserve(annotations.len());
        for KeyValue { key, value, .. } in annotations {
            keys.push(StringValue::from(key.as_str().to_owned()));
            span.set_attribute(key, value);
        }
    }
    span.set_attribute(XRAY_ANNOTATIONS, Value::Array(Array::String(keys)));
}
