//! X-Ray annotations on the invocation span.
//!
//! Through OTLP, X-Ray makes every span attribute metadata (shown, not indexed) except those
//! whose keys the span lists in its `aws.xray.annotations` attribute, which become annotations
//! (indexed: `annotation.ColdStart = true` filters traces). The invocation span lists `ColdStart`
//! and `Service`, as Powertools' Tracer annotates them, and the keys given to [`annotate`].
//!
//! The keys and values [`annotate`] adds are kept in the invocation's OpenTelemetry context (the
//! context its handler runs in, and that its `tracing` spans derive theirs from), never in a
//! global, so that concurrent invocations each have theirs; the layer writes them once, when the
//! invocation ends, past the span's attribute limit (a handler's own attributes cannot push the
//! list of indexed keys off the span).

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

use opentelemetry::trace::{SpanId, TraceContextExt};
use opentelemetry::{Array, Context, Key, KeyValue, StringValue, Value};

/// The span attribute listing the keys X-Ray indexes as annotations.
pub(crate) const XRAY_ANNOTATIONS: &str = "aws.xray.annotations";
/// The most keys [`annotate`] records per invocation: X-Ray indexes 50 annotations per trace,
/// two of them the layer's (`ColdStart`, `Service`); the annotations are added to the span past
/// its attribute limit.
pub(crate) const MAX_ANNOTATIONS: usize = 48;
/// The longest key [`annotate`] records, in bytes. X-Ray keeps a segment under 64 KB: a key and
/// value at these bounds add about 700 bytes (the key twice, in `aws.xray.annotations` too),
/// before JSON escaping, instead of whatever an event held.
pub(crate) const MAX_KEY_BYTES: usize = 100;
/// The most bytes of a string value [`annotate`] records: a longer one is cut on a character
/// boundary (an annotation is for filtering; a value taken from an event must not be able to
/// push the invocation span past X-Ray's segment limit, which would lose the whole span).
pub(crate) const MAX_VALUE_BYTES: usize = 500;
/// The annotations the layer sets on every invocation span.
pub(crate) const COLD_START: &str = "ColdStart";
pub(crate) const SERVICE: &str = "Service";
/// The keys of the attributes the layer sets on an invocation span, which [`annotate`] refuses:
/// the span would carry two values for one key, and list the layer's as an annotation.
/// (`attack::annotate_refuses_every_key_the_layer_sets_and_keeps_within_fifty_annotations`
/// checks every key of an HTTP invocation's span against it.)
const LAYER_KEYS: &[&str] = &[
    COLD_START,
    SERVICE,
    XRAY_ANNOTATIONS,
    "faas.invocation_id",
    "faas.trigger",
    "faas.coldstart",
    "faas.tenant_id",
    "messaging.system",
    "messaging.operation.type",
    "cloud.account.id",
    "cloud.resource_id",
    "aws.lambda.invoked_arn",
    "http.request.method",
    "url.path",
    "http.route",
    "http.response.status_code",
    "powertools.response",
];

/// The groups of semantic-convention keys the layer and the tracer's resource write, which
/// [`annotate`] refuses whole (the resource's `faas.name`, `cloud.region` and `service.name`
/// would be shadowed on the span, and a trigger's other keys are the layer's to set).
const LAYER_GROUPS: &[&str] = &["faas.", "cloud.", "http.", "service.", "telemetry."];

/// A value X-Ray accepts for an annotation: a string, a number or a boolean. [`annotate`]
/// refuses a NaN or an infinite number (JSON, and so X-Ray, cannot hold them) and cuts a string
/// to its first 500 bytes.
///
/// It converts from `bool`, every integer type up to 64 bits (`usize` too; one past `i64::MAX`
/// is written as a double, as X-Ray reads every number), `f32`, `f64`, `String`, `&String`,
/// `&str` and `Cow<str>`.
///
/// ```
/// use powertools_tracing::AnnotationValue;
///
/// let order_id = String::from("o-42");
/// let items = vec!["loaf", "bun"];
/// let values: [AnnotationValue; 5] =
///     [(&order_id).into(), items.len().into(), 3_u64.into(), 9.5.into(), true.into()];
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
    // An integer past `i64` is still a number: a double, as X-Ray reads every number.
    u64 => |value| i64::try_from(value).map_or(Value::F64(value as f64), Value::I64),
    usize => |value| i64::try_from(value).map_or(Value::F64(value as f64), Value::I64),
    isize => |value| i64::try_from(value).map_or(Value::F64(value as f64), Value::I64),
    String => |value| Value::String(value.into()),
    &String => |value| Value::String(value.clone().into()),
    &str => |value| Value::String(value.to_owned().into()),
    std::borrow::Cow<'_, str> => |value| Value::String(value.into_owned().into()),
}

/// The annotations given to [`annotate`] during one invocation, in the invocation's context;
/// `None` once they are written on the span (the invocation ended: a task that outlives it
/// records nothing, and is told so).
#[derive(Debug)]
pub(crate) struct Annotations {
    annotations: Mutex<Option<Vec<KeyValue>>>,
    /// The kinds of refusal [`annotate`] warned about in this invocation, a bit each.
    warned: std::sync::atomic::AtomicU8,
    /// How many attributes the layer started the span with: any after them but those it adds
    /// as the invocation ends ([`LAYER_END_KEYS`]) are the handler's.
    layer_attributes: usize,
}

impl Default for Annotations {
    fn default() -> Self {
        Annotations::new(0)
    }
}

/// The attributes the layer adds to the invocation span as it ends.
const LAYER_END_KEYS: &[&str] = &["http.response.status_code", "powertools.response"];

impl Annotations {
    /// The annotations of a span the layer started with `layer_attributes` attributes.
    pub(crate) fn new(layer_attributes: usize) -> Self {
        Annotations {
            annotations: Mutex::new(Some(Vec::new())),
            warned: std::sync::atomic::AtomicU8::new(0),
            layer_attributes,
        }
    }

    /// Whether `refusal` is the first of its kind in this invocation (then marked, so that the
    /// next is not).
    fn first_of_its_kind(&self, refusal: Refusal) -> bool {
        self.warned
            .fetch_or(refusal.bit(), std::sync::atomic::Ordering::Relaxed)
            & refusal.bit()
            == 0
    }

    /// Sets `key`; annotating a key again replaces its value. Why not, when it is refused: the
    /// invocation ended, or it has its 48 keys.
    fn set(&self, key: Key, value: Value) -> Result<(), (Key, Refusal)> {
        let mut annotations = self
            .annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(annotations) = annotations.as_mut() else {
            return Err((key, Refusal::Ended));
        };
        let full = annotations.len() >= MAX_ANNOTATIONS;
        match annotations
            .iter_mut()
            .find(|annotation| annotation.key == key)
        {
            Some(annotation) => annotation.value = value,
            None if full => return Err((key, Refusal::Full)),
            None => annotations.push(KeyValue::new(key, value)),
        }
        Ok(())
    }

    /// The annotations, closing the set: later calls to `set` record nothing.
    fn take(&self) -> Vec<KeyValue> {
        self.annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }
}

/// Records `key = value` on the current invocation's span as an X-Ray annotation (indexed, for
/// filter expressions such as `annotation.order_id = "o-42"`), as Powertools' `put_annotation`
/// does. Call it anywhere inside the handler, in child spans too: the annotation goes on the
/// invocation span of the [`TracingLayer`](crate::TracingLayer), which lists the key in
/// `aws.xray.annotations`. Annotating a key again replaces its value. Concurrent invocations each
/// annotate their own span.
///
/// Returns `false`, recording nothing, outside a traced invocation (tracing off, a task the
/// invocation spawned without its context: neither `.in_current_span()` in the logging layer's
/// or the runtime's span nor `opentelemetry::context::FutureExt::with_current_context`, or one
/// that runs on after the invocation ended), for the keys of the attributes the layer sets
/// (`ColdStart`, `Service`, `aws.xray.annotations`, `faas.*`, `cloud.*`,
/// `aws.lambda.invoked_arn`, `http.*`, `url.path`, `messaging.system`, the resource's
/// `service.*` and `telemetry.*`,
/// `messaging.operation.type`, `powertools.response`; each whatever the trigger), and for a new key past
/// the 48th of the invocation: X-Ray indexes at most 50 annotations per trace, and `ColdStart`
/// and `Service` are two. It also refuses an empty key, a key longer than 100 bytes and a NaN
/// or infinite number (JSON cannot hold them), and records at most the first 500 bytes of a
/// string (cut on a character boundary): a value taken from an event adds at most about 600
/// bytes to the span, not megabytes past X-Ray's 64 KB segment limit, which would lose the whole
/// span. X-Ray only filters on keys of letters, digits and underscores (the AWS
/// exporters replace other characters: `order.id` becomes `order_id`). In an invocation that
/// Lambda did not sample (`Sampled=0`) it returns `true` (the invocation is traced) and nothing
/// is exported, as for the span itself.
///
/// The first refusal of each kind in a traced invocation is also logged as a warning (target
/// `powertools_tracing`) with the key, cut to 100 bytes, and why, as Powertools for Python logs
/// a key it cannot index (later ones of that kind in the invocation are not: a loop is one
/// line); outside one (tracing off, say) a refusal is a debug line, which is not a mistake to
/// warn about in every invocation. A refusal inside a subscriber that is recording one of
/// these lines is not logged.
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
    let checked = checked(&key, value.into());
    let outcome = Context::map_current(|context| {
        let Some(annotations) = context.get::<Annotations>() else {
            return Err((key, None));
        };
        let (key, refusal) = match checked {
            Ok(value) => match annotations.set(key, value) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            },
            Err(refusal) => (key, refusal),
        };
        // Marked only when it is logged: one made in silence while another is logged (a
        // subscriber's) must not use up the kind's warning (found by a review).
        let first = !powertools_core::reentry::is_entered(&SAYING_REFUSAL)
            && annotations.first_of_its_kind(refusal);
        Err((key, Some((refusal, first))))
    });
    match outcome {
        Ok(()) => true,
        Err((key, refusal)) => {
            say_refused(&key, refusal);
            false
        }
    }
}

/// Why [`annotate`] did not record an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    EmptyKey,
    LongKey,
    LayerKey,
    NotFinite,
    Full,
    Ended,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::EmptyKey => "an empty key",
            Refusal::LongKey => "a key longer than 100 bytes",
            Refusal::LayerKey => {
                "a key of the layer's own attributes (ColdStart, Service, faas.*, cloud.*, http.*, …)"
            }
            Refusal::NotFinite => "a NaN or infinite number, which JSON cannot hold",
            Refusal::Full => {
                "the invocation has 48 annotations already (X-Ray indexes 50 per trace, ColdStart \
                 and Service are two)"
            }
            Refusal::Ended => {
                "the invocation ended (a task that outlived it): its span was exported"
            }
        }
    }

    /// Its bit in [`Annotations`]' record of the kinds it warned about.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// `value` as recorded for `key` (a long string cut), or why neither can be.
fn checked(key: &Key, value: AnnotationValue) -> Result<Value, Refusal> {
    let key = key.as_str();
    if key.is_empty() {
        return Err(Refusal::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Refusal::LongKey);
    }
    if LAYER_KEYS.contains(&key) || LAYER_GROUPS.iter().any(|group| key.starts_with(group)) {
        return Err(Refusal::LayerKey);
    }
    Ok(match value {
        AnnotationValue(Value::F64(number)) if !number.is_finite() => {
            return Err(Refusal::NotFinite);
        }
        AnnotationValue(Value::String(text)) if text.as_str().len() > MAX_VALUE_BYTES => {
            let text = text.as_str();
            Value::String(
                text[..text.floor_char_boundary(MAX_VALUE_BYTES)]
                    .to_owned()
                    .into(),
            )
        }
        AnnotationValue(value) => value,
    })
}

thread_local! {
    /// Set while this thread logs a refusal: a subscriber that annotates as it records events
    /// (to mark the traces that logged a warning, say) is refused in silence there, instead of
    /// logging again, and again, until the stack overflows (found by a review).
    static SAYING_REFUSAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Says that `key` was not recorded: `refusal` inside a traced invocation, with whether it is
/// the first of its kind there; `None` outside one. As Python's Tracer logs a key it cannot
/// index: the caller's `false` is easy to ignore, and the annotation would be missing from
/// X-Ray's filters without a word. A warning for the first refusal of each kind in an
/// invocation, so that a loop refused 10,000 times logs once; a debug line outside one
/// (tracing off, or no `TracingLayer`: not a mistake to warn about in every invocation).
fn say_refused(key: &Key, refusal: Option<(Refusal, bool)>) {
    if refusal.is_some_and(|(_, first)| !first) {
        return;
    }
    let _ = powertools_core::reentry::unless_reentered(&SAYING_REFUSAL, || match refusal {
        Some((refusal, _)) => tracing::warn!(
            target: "powertools_tracing",
            annotation = %bounded_key(key),
            reason = refusal.reason(),
            "annotate: the annotation was not recorded (later refusals of this kind in this \
             invocation are not logged)"
        ),
        None => tracing::debug!(
            target: "powertools_tracing",
            annotation = %bounded_key(key),
            "annotate: no traced invocation here (tracing off, outside a TracingLayer, or a task \
             spawned without the invocation's OpenTelemetry context): not recorded"
        ),
    });
}

/// `key` as a warning quotes it: at most its first 100 bytes (a key taken from an event may be
/// megabytes).
fn bounded_key(key: &Key) -> &str {
    let key = key.as_str();
    &key[..key.floor_char_boundary(MAX_KEY_BYTES)]
}

/// An invocation's annotations and the list of the keys X-Ray indexes, as the span ends.
pub(crate) struct Ending {
    annotations: Vec<KeyValue>,
    list: KeyValue,
    /// How many attributes the layer started the span with.
    layer_attributes: usize,
}

impl Ending {
    /// Adds the annotations and their list to the ended invocation span's `attributes`. When
    /// the handler set attributes of its own (`set_attribute` on the invocation span), a key set
    /// twice keeps its last value only, as the OpenTelemetry specification says of
    /// `set_attribute` (the SDK appends; OTLP requires unique keys): the handler's over the
    /// layer's first attributes, the layer's last ones and annotation list over the handler's, an
    /// annotation over an attribute. Without attributes of the handler's (most invocations: one
    /// look at the few attributes past the layer's first ones) no key can repeat: the layer's
    /// keys are distinct, and `annotate` refuses them.
    pub(crate) fn add_to(self, attributes: &mut Vec<KeyValue>) {
        // Past the layer's first attributes: the handler's, and the layer's last ones (each set
        // once). A key of another name, or one of those twice (the handler's and the layer's),
        // means the handler set some.
        let tail = attributes.get(self.layer_attributes..).unwrap_or_default();
        let handler_set = tail.iter().enumerate().any(|(index, attribute)| {
            !LAYER_END_KEYS.contains(&attribute.key.as_str())
                || tail[..index]
                    .iter()
                    .any(|before| before.key == attribute.key)
        });
        attributes.extend(self.annotations);
        attributes.push(self.list);
        if handler_set {
            keep_last_of_each_key(attributes);
        }
    }
}

/// Removes every attribute whose key comes again later, keeping the order of the others.
fn keep_last_of_each_key(attributes: &mut Vec<KeyValue>) {
    let mut index = 0;
    while index < attributes.len() {
        let repeated = attributes[index + 1..]
            .iter()
            .any(|later| later.key == attributes[index].key);
        if repeated {
            attributes.remove(index);
        } else {
            index += 1;
        }
    }
}

thread_local! {
    /// The annotations of the invocation span this thread is ending, for the tracer's queue:
    /// the span is ended (and handed to the queue) on the thread that wrote them.
    static ENDING: RefCell<Option<(SpanId, Ending)>> = const { RefCell::new(None) };
}

/// Writes the invocation's annotations and the list of their keys after `ColdStart` and
/// `Service`, once, as the invocation ends: they are handed to the tracer's span processor (see
/// [`take_ending`]), which adds them to the ended span past its attribute limit (128), so that a
/// handler that sets more attributes than that does not push its indexed annotations off.
pub(crate) fn write(context: &Context) {
    let span = context.span();
    let (annotations, layer_attributes) = context
        .get::<Annotations>()
        .map(|annotations| (annotations.take(), annotations.layer_attributes))
        .unwrap_or_default();
    let mut keys = Vec::with_capacity(2 + annotations.len());
    keys.push(StringValue::from(COLD_START));
    keys.push(StringValue::from(SERVICE));
    for annotation in &annotations {
        keys.push(StringValue::from(annotation.key.as_str().to_owned()));
    }
    let list = KeyValue::new(XRAY_ANNOTATIONS, Value::Array(Array::String(keys)));
    let span_id = span.span_context().span_id();
    let ending = Ending {
        annotations,
        list,
        layer_attributes,
    };
    // `try_with`: an invocation's future may be dropped as its thread exits, this thread-local
    // gone (a panic in a thread-local's destructor aborts the process); the span then ends
    // without its annotations.
    let _ = ENDING.try_with(|slot| *slot.borrow_mut() = Some((span_id, ending)));
}

/// The annotations [`write`] left for the span `span_id`, which is ending on this thread.
pub(crate) fn take_ending(span_id: SpanId) -> Option<Ending> {
    ENDING
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match &*slot {
                Some((id, _)) if *id == span_id => slot.take().map(|(_, ending)| ending),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Forgets what [`write`] left, once the span has ended (an unsampled span reaches no queue).
pub(crate) fn forget_ending() {
    let _ = ENDING.try_with(|slot| slot.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What a handler has at hand converts as it reads: a borrowed `String` (`&order.id`), a
    /// count (`items.len()`), a `u64` (which did not compile: found by a new user writing from
    /// the docs). An integer past `i64` is a number still, as X-Ray reads numbers: a double.
    #[test]
    fn a_borrowed_string_a_length_and_any_integer_are_values() {
        let id = String::from("o-42");
        let cases: [(AnnotationValue, Value); 9] = [
            ((&id).into(), Value::String("o-42".into())),
            (
                std::borrow::Cow::Borrowed("o-42").into(),
                Value::String("o-42".into()),
            ),
            (3_usize.into(), Value::I64(3)),
            ((-3_isize).into(), Value::I64(-3)),
            (u64::from(u32::MAX).into(), Value::I64(4_294_967_295)),
            ((i64::MAX as u64).into(), Value::I64(i64::MAX)),
            (
                (i64::MAX as u64 + 1).into(),
                Value::F64(9_223_372_036_854_775_808.0),
            ),
            (u64::MAX.into(), Value::F64(18_446_744_073_709_551_615.0)),
            (usize::MAX.into(), Value::F64(usize::MAX as f64)),
        ];
        for (converted, expected) in cases {
            assert_eq!(converted.0, expected);
        }
    }

    /// The level and fields of each event logged while installed.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0
                .lock()
                .expect("not poisoned")
                .push((*event.metadata().level(), fields.0));
        }
    }

    /// Every annotation `annotate` refuses inside a traced invocation is said in a warning with
    /// its key and why (it returned `false` without a word, easy to ignore: the README's own
    /// example did; found by an attack from the docs). Outside one (tracing off) only a debug
    /// line: not a mistake to warn about in every invocation.
    #[test]
    fn a_refused_annotation_is_warned_about_with_its_key_and_why() {
        let captured = Captured::default();
        let _subscriber = powertools_tests::set_test_default(
            tracing_subscriber::registry().with(captured.clone()),
        );
        let warnings = || {
            captured
                .0
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|(level, _)| *level == tracing::Level::WARN)
                .map(|(_, fields)| fields.clone())
                .collect::<Vec<_>>()
        };
        assert!(!annotate("order_id", "o-1"));
        assert!(
            warnings().is_empty(),
            "outside an invocation: {:?}",
            warnings()
        );
        let context = Context::new().with_value(Annotations::default());
        let _attached = context.clone().attach();
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let refusals: [(bool, &str, &str); 4] = [
            (annotate("", 1_i64), "annotation= ", "empty"),
            (
                annotate(long_key.clone(), 1_i64),
                "kkkk",
                "longer than 100 bytes",
            ),
            (annotate(COLD_START, true), "ColdStart", "layer's own"),
            (annotate("amount", f64::NAN), "amount", "NaN"),
        ];
        for key in 0..MAX_ANNOTATIONS {
            assert!(annotate(format!("key_{key}"), 1_i64));
        }
        assert!(!annotate("one_more", 1_i64));
        context
            .get::<Annotations>()
            .map(Annotations::take)
            .unwrap_or_default();
        assert!(!annotate("late", 1_i64));
        let warnings = warnings();
        assert_eq!(warnings.len(), 6, "{warnings:#?}");
        for ((recorded, key, reason), warning) in refusals.iter().zip(&warnings) {
            assert!(!recorded);
            assert!(
                warning.contains(key) && warning.contains(reason),
                "{key} {reason}: {warning}"
            );
        }
        assert!(
            !warnings[1].contains(&long_key),
            "a long key is quoted cut: {}",
            warnings[1]
        );
        assert!(warnings[4].contains("one_more") && warnings[4].contains("48"));
        assert!(warnings[5].contains("late") && warnings[5].contains("ended"));
    }

    /// A refusal of a kind the invocation warned about already is not logged again (a loop of
    /// 10,000 refused keys logged 10,000 warnings), and one outside a traced invocation (tracing
    /// off) is a debug line, whatever its kind (an empty key was a warning there too). Found by
    /// a review.
    #[test]
    fn each_kind_of_refusal_warns_once_per_invocation_and_outside_one_only_at_debug() {
        let captured = Captured::default();
        let _subscriber = powertools_tests::set_test_default(
            tracing_subscriber::registry().with(captured.clone()),
        );
        let levels = || {
            captured
                .0
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(level, _)| *level)
                .collect::<Vec<_>>()
        };
        assert!(!annotate("", 1_i64));
        assert!(!annotate(COLD_START, true));
        assert_eq!(
            levels(),
            [tracing::Level::DEBUG; 2],
            "outside an invocation"
        );
        let _attached = Context::new().with_value(Annotations::default()).attach();
        for key in 0..MAX_ANNOTATIONS {
            assert!(annotate(format!("key_{key}"), 1_i64));
        }
        for extra in 0..10_000 {
            assert!(!annotate(format!("extra_{extra}"), 1_i64));
            assert!(!annotate("", 1_i64));
        }
        assert_eq!(
            levels()[2..],
            [tracing::Level::WARN; 2],
            "one warning per kind: {:?}",
            captured.0.lock().expect("not poisoned")
        );
    }

    #[test]
    fn an_invocation_records_forty_eight_keys_and_replaces_their_values_after_that() {
        let _attached = Context::new().with_value(Annotations::default()).attach();
        for key in 0..MAX_ANNOTATIONS {
            assert!(annotate(format!("key_{key}"), 1_i64), "key {key}");
        }
        assert!(!annotate("one_more", 1_i64));
        assert!(annotate("key_0", 2_i64), "a known key's value is replaced");
        let annotations = Context::current()
            .get::<Annotations>()
            .map(Annotations::take)
            .unwrap_or_default();
        assert_eq!(annotations.len(), MAX_ANNOTATIONS);
        assert_eq!(annotations[0].value, Value::I64(2));
    }

    #[test]
    fn keys_past_a_hundred_bytes_and_numbers_json_cannot_hold_are_refused_and_long_text_is_cut() {
        let _attached = Context::new().with_value(Annotations::default()).attach();
        assert!(!annotate("k".repeat(MAX_KEY_BYTES + 1), 1_i64));
        assert!(annotate("k".repeat(MAX_KEY_BYTES), 1_i64));
        for number in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(!annotate("amount", number), "{number}");
        }
        assert!(!annotate("ratio", f32::NAN));
        assert!(annotate("amount", -0.5));
        // 499 bytes of `a`, then a two-byte character across the bound: cut before it.
        let long = format!(
            "{}é{}",
            "a".repeat(MAX_VALUE_BYTES - 1),
            "b".repeat(1_000_000)
        );
        assert!(annotate("order_note", long));
        assert!(annotate("short", "é".repeat(250)));
        let annotations = Context::current()
            .get::<Annotations>()
            .map(Annotations::take)
            .unwrap_or_default();
        let value = |key: &str| {
            annotations
                .iter()
                .find(|annotation| annotation.key.as_str() == key)
                .map(|annotation| annotation.value.clone())
        };
        assert_eq!(value("amount"), Some(Value::F64(-0.5)));
        assert_eq!(value("ratio"), None);
        assert_eq!(
            value("order_note"),
            Some(Value::String("a".repeat(MAX_VALUE_BYTES - 1).into()))
        );
        assert_eq!(value("short"), Some(Value::String("é".repeat(250).into())));
        assert_eq!(annotations.len(), 4);
    }
}
