//! AWS SDK calls as child spans, through an SDK interceptor.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use opentelemetry::trace::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// An AWS SDK interceptor that records each operation as a client span, a child of the span
/// the call is made in, with `rpc.system = aws-api`, `rpc.service` and `rpc.method` (for example
/// `DynamoDB` / `PutItem`) and the HTTP status code, so that the idempotency store's DynamoDB
/// calls show up in the invocation's trace.
///
/// Each request made in a traced invocation's context (the handler, its spans, a task it
/// spawned with `.in_current_span()`) carries the trace on in `X-Amzn-Trace-Id`, as Powertools
/// for Python's patched botocore does: the invocation's trace, the call's span as the parent,
/// Lambda's sampling decision and the header's other fields (`Lineage`, which Lambda's
/// recursive-loop detection reads). Without it the SDK sends Lambda's own header, whose parent
/// is the caller's segment, and only under `lambda_runtime::run` (under `run_concurrent` the
/// runtime sets no `_X_AMZN_TRACE_ID`, and the SDK sends none). A call outside that context (the
/// init phase, a task spawned without it) keeps the SDK's header, Lambda's under `run`: its span
/// begins a trace of its own, which would otherwise replace `Lineage` and the sampling decision.
///
/// It implements the SDK's `Intercept` trait from `aws-smithy-runtime-api` 1.x, the stable crate
/// every `aws-sdk-*` 1.x client uses, so it fits any SDK client of that major version; nothing
/// of a 0.x crate appears in this part of the API.
///
/// ```
/// let config = aws_sdk_dynamodb::config::Builder::new()
///     .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
///     .interceptor(powertools_tracing::AwsSdkSpans)
///     .build();
/// let client = aws_sdk_dynamodb::Client::from_conf(config);
/// # drop(client);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsSdkSpans;

/// The call's span, and whether the call was made in a traced invocation's context (its
/// header is then the call's own).
#[derive(Debug)]
struct CallSpan(tracing::Span, bool);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsSdkSpans {
    fn name(&self) -> &'static str {
        "powertools-tracing"
    }

    // Not `read_before_execution`: the operation's name is in the config bag only once the
    // operation's configuration has been applied, which happens after it.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|metadata| (metadata.service().to_owned(), metadata.name().to_owned()))
            .unwrap_or_else(|| ("unknown".to_owned(), "unknown".to_owned()));
        let span = tracing::info_span!(
            target: "powertools_tracing::aws_sdk",
            "aws_sdk_call",
            otel.name = format!("{service}.{operation}"),
            otel.kind = "client",
            rpc.system = "aws-api",
            rpc.service = service.as_str(),
            rpc.method = operation.as_str(),
        );
        // Outside an invocation's context (a task spawned without it, the init phase) the
        // call's span begins a trace of its own: its header would replace the one the SDK copies
        // from `_X_AMZN_TRACE_ID`, with a new sampled trace and no `Lineage` (found by an attack
        // and a review).
        let in_invocation = crate::carry::in_invocation();
        cfg.interceptor_state()
            .store_put(CallSpan(span, in_invocation));
        Ok(())
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(CallSpan(span, true)) = cfg.interceptor_state().load::<CallSpan>() else {
            return Ok(());
        };
        // Replaces the one the SDK's recursion detection copies from `_X_AMZN_TRACE_ID`, whichever
        // runs first. A value that is no header value (trace state a caller set, with control
        // characters) leaves the SDK's: `insert` would panic.
        if let Some(header) = crate::propagation::x_ray_header(span.context()) {
            let _not_a_header_value = context
                .request_mut()
                .headers_mut()
                .try_insert("x-amzn-trace-id", header);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(span) = cfg
            .interceptor_state()
            .load::<CallSpan>()
            .map(|call| call.0.clone())
        else {
            return Ok(());
        };
        if let Some(response) = context.response() {
            span.set_attribute(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            );
        }
        if let Some(Err(error)) = context.output_or_error() {
            let message = match error.as_operation_error() {
                Some(service_error) => status_message(service_error),
                None => status_message(error),
            };
            span.set_status(Status::error(message));
        }
        // Ending the span: the stored handle goes with the config bag.
        cfg.interceptor_state().unset::<CallSpan>();
        drop(span);
        Ok(())
    }
}

/// The span status message of a failed call: the service's error (`ResourceNotFoundException:
/// Requested resource not found`), or for a call that never got an answer the error and its
/// sources (`dispatch failure: io error: connection refused`). Debug would dump the SDK's
/// internals (and the raw response) into the trace.
fn status_message(error: &(dyn std::error::Error + 'static)) -> String {
    powertools_core::error_chain::message_chain(error)
}

#[cfg(test)]
mod tests {
    use powertools_core::error_chain::fixtures::{FailingDisplay, OwnSource};

    use super::status_message;

    #[test]
    fn the_status_of_an_error_that_is_its_own_source_names_it_once() {
        assert_eq!(status_message(&OwnSource), "loops");
    }

    #[test]
    fn the_status_of_an_error_whose_display_fails_is_written_instead_of_panicking() {
        assert_eq!(status_message(&FailingDisplay), "half<formatting failed>");
    }
}
