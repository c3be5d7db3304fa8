use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::{Layer, Service};

use crate::engine::{Claim, Engine};
use crate::error::Error;
use crate::idempotency::Idempotency;
use crate::key::{FromFn, KeyExtractor, NoValidation, WholeEvent};
use crate::persistence::IdempotencyStore;

/// Makes a Lambda handler idempotent: a duplicate event gets the first call's response, and the
/// handler's side effects run once.
///
/// The key is the whole event by default; [`key_from`](Self::key_from) picks part of it with a
/// typed closure, [`key`](Self::key) takes any [`KeyExtractor`], such as a
/// [`JmesPath`](crate::JmesPath) expression read from configuration.
/// [`validate_from`](Self::validate_from) and [`validation`](Self::validation) add payload
/// validation.
///
/// ```
/// use lambda_runtime::{LambdaEvent, service_fn, tower::{Service, ServiceBuilder, ServiceExt}};
/// use powertools_core::testing::TestContext;
/// use powertools_idempotency::{Idempotency, IdempotencyLayer, InMemoryStore};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Payment { payment_id: String, amount_cents: u64 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let idempotency = Idempotency::builder(InMemoryStore::new()).build()?;
/// let mut handler = ServiceBuilder::new()
///     .layer(
///         IdempotencyLayer::new(idempotency)
///             .key_from(|payment: &Payment| Some(payment.payment_id.clone()))
///             .validate_from(|payment: &Payment| Some(payment.amount_cents)),
///     )
///     .service(service_fn(|event: LambdaEvent<Payment>| async move {
///         Ok::<_, lambda_runtime::Error>(format!("charged {}", event.payload.amount_cents))
///     }));
///
/// let payment = Payment { payment_id: "pay-1".into(), amount_cents: 1250 };
/// let first = handler.ready().await?.call(TestContext::new().event(payment.clone())).await?;
/// let retry = handler.ready().await?.call(TestContext::new().event(payment)).await?;
/// assert_eq!(first, retry);
///
/// let tampered = Payment { payment_id: "pay-1".into(), amount_cents: 99 };
/// let error = handler.ready().await?.call(TestContext::new().event(tampered)).await.unwrap_err();
/// assert_eq!(error.error_type(), "IdempotencyValidationError");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct IdempotencyLayer<St, K = WholeEvent, V = NoValidation> {
    idempotency: Idempotency<St>,
    operation: Arc<str>,
    key: K,
    validation: V,
    /// Whether this layer's validation said it found nothing in an event (once per layer, its
    /// clones included).
    warned_validation_found_nothing: Arc<AtomicBool>,
}

impl<St, K: Clone, V: Clone> Clone for IdempotencyLayer<St, K, V> {
    fn clone(&self) -> Self {
        IdempotencyLayer {
            idempotency: self.idempotency.clone(),
            operation: self.operation.clone(),
            key: self.key.clone(),
            validation: self.validation.clone(),
            warned_validation_found_nothing: self.warned_validation_found_nothing.clone(),
        }
    }
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    /// A layer keyed on the whole event, without payload validation, under the operation name
    /// [`DEFAULT_LAYER_OPERATION`](crate::DEFAULT_LAYER_OPERATION).
    pub fn new(idempotency: Idempotency<St>) -> Self {
        IdempotencyLayer {
            idempotency,
            operation: Arc::from(crate::DEFAULT_LAYER_OPERATION),
            key: WholeEvent,
            validation: NoValidation,
            warned_validation_found_nothing: Arc::default(),
        }
    }
}

impl<St, K, V> IdempotencyLayer<St, K, V> {
    /// Names the operation this layer makes idempotent (default
    /// [`DEFAULT_LAYER_OPERATION`](crate::DEFAULT_LAYER_OPERATION), `"handler"`). The name is
    /// part of every key, as the operation name of [`Idempotency::run`] is, so records of this
    /// layer and of `run` calls on the same [`Idempotency`] never mix unless given the same
    /// name (and `run` refuses the default `"handler"`). Non-empty (not white space or invisible
    /// characters alone), without control characters, line separators (U+2028, U+2029) or
    /// bidirectional formatting characters, `#` or `.`
    /// (checked on each call:
    /// [`Error::Config`]).
    pub fn operation(mut self, name: impl Into<String>) -> Self {
        self.operation = Arc::from(name.into());
        self
    }

    /// Keys on what `extractor` finds in the event, for example a [`JmesPath`](crate::JmesPath)
    /// expression: `.key(JmesPath::new("powertools_json(body).order_id")?)`.
    ///
    /// The expression searches the event as the handler's event type serializes it. A typed
    /// API Gateway or ALB event (`ApiGatewayV2httpRequest`, `ApiGatewayProxyRequest`,
    /// `AlbTargetGroupRequest`) writes header names in lowercase, whatever case the client
    /// sent, so name headers in lowercase: `headers."idempotency-key"`. (A header named with
    /// a capital letter finds nothing there; the missing key's warning says so. Inside a
    /// multi-select it reads as `null`, and a warning says so, once.)
    pub fn key<K2>(self, extractor: K2) -> IdempotencyLayer<St, K2, V> {
        IdempotencyLayer {
            idempotency: self.idempotency,
            operation: self.operation,
            key: extractor,
            validation: self.validation,
            warned_validation_found_nothing: self.warned_validation_found_nothing,
        }
    }

    /// Keys on what a typed closure returns for the event; `None` means the key is missing.
    pub fn key_from<F>(self, extract: F) -> IdempotencyLayer<St, FromFn<F>, V> {
        self.key(FromFn(extract))
    }

    /// Validates duplicates against what `extractor` finds in the event.
    pub fn validation<V2>(self, extractor: V2) -> IdempotencyLayer<St, K, V2> {
        IdempotencyLayer {
            idempotency: self.idempotency,
            operation: self.operation,
            key: self.key,
            validation: extractor,
            // A new extractor warns afresh.
            warned_validation_found_nothing: Arc::default(),
        }
    }

    /// Validates duplicates against what a typed closure returns for the event: a duplicate whose
    /// value differs from the first call's gets [`Error::PayloadMismatch`]. `None` is validated
    /// as a value of its own: a duplicate with data never matches a first call without, and the
    /// other way round.
    pub fn validate_from<F>(self, extract: F) -> IdempotencyLayer<St, K, FromFn<F>> {
        self.validation(FromFn(extract))
    }
}

impl<S, St: Clone, K: Clone, V: Clone> Layer<S> for IdempotencyLayer<St, K, V> {
    type Service = IdempotencyService<S, St, K, V>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Whether validation data is nothing found: `null`, or a list or object of `null`s alone (a
/// multi-select of fields that are all absent). An empty string, list or object is data.
fn found_nothing(data: &Value) -> bool {
    match data {
        Value::Null => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_null),
        Value::Object(fields) => !fields.is_empty() && fields.values().all(Value::is_null),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

/// The service built by [`IdempotencyLayer`].
#[derive(Debug, Clone)]
pub struct IdempotencyService<S, St, K = WholeEvent, V = NoValidation> {
    inner: S,
    layer: IdempotencyLayer<St, K, V>,
}

impl<S, St, K, V> IdempotencyService<S, St, K, V> {
    powertools_core::inner_service_accessors!(S);
}

impl<S, St, K, V, T, R> Service<LambdaEvent<T>> for IdempotencyService<S, St, K, V>
where
    S: Service<LambdaEvent<T>, Response = R> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: IdempotencyStore,
    K: KeyExtractor<T>,
    V: KeyExtractor<T>,
    T: Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Response = R;
    type Error = Error<S::Error>;
    // One allocation per invocation: the protocol awaits the store before and after the handler.
    type Future = BoxFuture<'static, Result<R, Error<S::Error>>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Handler)
    }

    fn call(&mut self, event: LambdaEvent<T>) -> Self::Future {
        // Call the instance that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.layer.idempotency.engine.clone();
        let validation = &self.layer.validation;
        let claim = self.layer.key.extract(&event.payload).and_then(|key_data| {
            let validation_data = if validation.is_enabled() {
                let data = validation
                    .extract(&event.payload)
                    .map_err(crate::key::as_validation_error)?
                    .unwrap_or(Value::Null);
                if validation.warns_when_validation_finds_nothing()
                    && found_nothing(&data)
                    && !self
                        .layer
                        .warned_validation_found_nothing
                        .swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        looked_in = validation.describe(),
                        "payload validation found nothing in this event: it and its duplicates \
                         are validated as null, so a duplicate whose payload differs passes \
                         when nothing is found in it either. Check the expression against your \
                         events (said once per layer)"
                    );
                }
                Some(data)
            } else {
                None
            };
            Ok(Claim {
                key_data,
                validation_data,
            })
        });
        let prepared = claim.map_err(Error::into_handler_error).and_then(|claim| {
            engine.prepare(&event.context, &self.layer.operation, claim, || {
                self.layer.key.describe()
            })
        });
        // In the invocation's failure scope; opened here when no layer outside did, marked so,
        // for a logging layer inside to say that replays then write nothing. `inspect`, not an
        // `async` block around it, which would hold the execution twice (as its argument and as
        // what it awaits): for the logging and tracing layers outside, what Lambda reports for
        // the layer's own errors (they see the error as a type they can only `Debug`).
        Box::pin(powertools_core::failure::idempotency_scope(
            Engine::execute(engine, prepared, move || inner.call(event))
                .inspect(crate::idempotency::report_own),
        ))
    }
}
