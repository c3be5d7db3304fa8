//! The event as Lambda sent it, for `POWERTOOLS_LOGGER_LOG_EVENT`.
//!
//! `lambda_runtime` deserializes the event into the handler's type before any tower layer around
//! the handler sees it, and that type keeps only the fields it knows (and may default others:
//! an API Gateway v2 request read as a REST one has no `httpMethod`, which becomes `GET`). The
//! runtime's own layers (`Runtime::layer`) see the bytes Lambda sent. [`RawEventLayer`] is one of
//! them: it keeps the body while the runtime calls the handler's service, which it does before
//! that call returns, so [`LoggingLayer`](crate::LoggingLayer) finds the body of its own
//! invocation (checked by request id) and logs it, parsed, with secrets masked.

use std::cell::RefCell;
use std::task::{Context as TaskContext, Poll};

use lambda_runtime::LambdaInvocation;
use tower::{Layer, Service};

thread_local! {
    /// The body of the invocation being handed to the handler's service on this thread.
    static RECEIVED: RefCell<Option<Received>> = const { RefCell::new(None) };
}

struct Received {
    request_id: String,
    body: bytes::Bytes,
}

/// Keeps each invocation's event as Lambda sent it, so that
/// [`LoggingLayer`](crate::LoggingLayer) logs it as received (`POWERTOOLS_LOGGER_LOG_EVENT`)
/// rather than as the handler's event type would write it again.
///
/// A layer of the runtime itself, for [`lambda_runtime::Runtime::layer`]; `powertools::run`
/// adds it for you. Without it, only events of type `serde_json::Value` are logged (a `Value`
/// holds every field of the event); for other event types the logger warns once.
///
/// ```no_run
/// use lambda_runtime::{LambdaEvent, Runtime, layers::TracingLayer, service_fn, tower::ServiceBuilder};
/// use powertools_logging::{Logger, LoggingLayer, RawEventLayer};
///
/// # async fn handler(event: LambdaEvent<aws_lambda_events::apigw::ApiGatewayV2httpRequest>) -> Result<(), lambda_runtime::Error> { Ok(()) }
/// #[tokio::main]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     let logger = powertools_logging::init()?; // POWERTOOLS_LOGGER_LOG_EVENT=true
///     let handler = ServiceBuilder::new().layer(LoggingLayer::new(logger)).service(service_fn(handler));
///     Runtime::new(handler).layer(TracingLayer::new()).layer(RawEventLayer::new()).run().await
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEventLayer {
    _private: (),
}

impl RawEventLayer {
    /// The layer.
    pub const fn new() -> Self {
        RawEventLayer { _private: () }
    }
}

impl<S> Layer<S> for RawEventLayer {
    type Service = RawEventService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RawEventService { inner }
    }
}

/// The service built by [`RawEventLayer`].
#[derive(Debug, Clone)]
pub struct RawEventService<S> {
    inner: S,
}

impl<S> RawEventService<S> {
    powertools_core::inner_service_accessors!(S);
}

/// Forgets the kept body when the call returns, even by unwinding.
struct Forget;

impl Drop for Forget {
    fn drop(&mut self) {
        let _ = RECEIVED.try_with(|slot| slot.borrow_mut().take());
    }
}

impl<S> Service<LambdaInvocation> for RawEventService<S>
where
    S: Service<LambdaInvocation>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let received = Received {
            request_id: invocation.context.request_id.clone(),
            // A reference count, not a copy.
            body: invocation.body.clone(),
        };
        let _ = RECEIVED.try_with(|slot| *slot.borrow_mut() = Some(received));
        let _forget = Forget;
        self.inner.call(invocation)
    }
}

/// The body Lambda sent for `request_id`, if a [`RawEventLayer`] is handing it to the handler's
/// service on this thread now.
pub(crate) fn take(request_id: &str) -> Option<bytes::Bytes> {
    RECEIVED
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_ref() {
                Some(received) if received.request_id == request_id => {
                    slot.take().map(|received| received.body)
                }
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// The body Lambda sent for the invocation `request_id`, while [`RawEventLayer`] is handing it to
/// the handler's service on this thread (from the service's `call`, before its future is first
/// polled): the bytes as received, before the runtime read them into the handler's event type (a
/// reference count, not a copy). `None` elsewhere, or for another invocation.
///
/// For what needs the event as sent rather than as its type reads it: `powertools::run` reads an
/// event that does not fit the handler's type again, to say where it went wrong.
///
/// ```
/// assert!(powertools_logging::received_body("req-1").is_none(), "outside the runtime");
/// ```
pub fn received_body(request_id: &str) -> Option<bytes::Bytes> {
    RECEIVED
        .try_with(|slot| match slot.borrow().as_ref() {
            Some(received) if received.request_id == request_id => Some(received.body.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}
