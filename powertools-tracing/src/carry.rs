//! The invocation's OpenTelemetry context, carried on the `tracing` spans that stand for the
//! invocation without being exported: the logging layer's invocation span and the runtime's
//! invoke span.
//!
//! A task spawned with `.in_current_span()` (as the logging docs say, for its log keys) takes
//! the current `tracing` span along, and nothing else: not the OpenTelemetry context the
//! invocation's future attaches on each poll. When that span is one OpenTelemetry does not
//! export, the task's spans had no parent to find and started traces of their own, exported
//! even for an invocation Lambda did not sample, and `annotate` found no invocation (found by a
//! new user writing a function from the docs). So such a span keeps the invocation's context,
//! and entering it attaches the context, wherever it is entered.

use std::cell::RefCell;

use opentelemetry::{Context, ContextGuard};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::annotations::Annotations;

/// A span's carried invocation context, in its extensions.
struct Carried(Context);

thread_local! {
    /// The contexts attached by entering a carrying span on this thread, innermost last, with
    /// the span each belongs to.
    static ATTACHED: RefCell<Vec<(Id, ContextGuard)>> = const { RefCell::new(Vec::new()) };
}

/// Whether spans of `target` stand for an invocation without being exported: the logging
/// layer's invocation span (`powertools_logging`) and the runtime's invoke span
/// (`lambda_runtime`).
pub(crate) fn carries(target: &str) -> bool {
    let krate = target.split(':').next().unwrap_or(target);
    krate == "powertools_logging" || krate == "lambda_runtime"
}

/// The layer that keeps the invocation's context on [`carries`]' spans and attaches it while
/// they are entered. Filtered to those spans, so that no other span pays for it.
pub(crate) struct ContextCarrier;

impl<S> Layer<S> for ContextCarrier
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    /// A span made inside an invocation (the logging layer inside the tracing layer) keeps its
    /// context.
    fn on_new_span(&self, _attributes: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(context) = invocation_context() else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Carried(context));
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Some(context) = span
            .extensions()
            .get::<Carried>()
            .map(|carried| carried.0.clone())
        else {
            return;
        };
        let guard = context.attach();
        ATTACHED.with(|attached| attached.borrow_mut().push((id.clone(), guard)));
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        // Taken out of the stack before it is dropped: dropping it detaches the context, which
        // must not happen with the stack borrowed.
        let guard = ATTACHED.with(|attached| {
            let mut attached = attached.borrow_mut();
            let at = attached.iter().rposition(|(entered, _)| entered == id)?;
            Some(attached.remove(at))
        });
        drop(guard);
    }

    fn on_close(&self, id: Id, _ctx: LayerContext<'_, S>) {
        // A span closed while entered (a guard leaked): its context goes with it.
        let guard = ATTACHED.with(|attached| {
            let mut attached = attached.borrow_mut();
            let at = attached.iter().rposition(|(entered, _)| *entered == id)?;
            Some(attached.remove(at))
        });
        drop(guard);
    }
}

/// The current OpenTelemetry context, when it is a traced invocation's (it holds the
/// invocation's annotations).
fn invocation_context() -> Option<Context> {
    Context::map_current(|context| {
        context
            .get::<Annotations>()
            .is_some()
            .then(|| context.clone())
    })
}

/// Keeps `context` on the current `tracing` span when it is a span [`carries`] names that does
/// not keep one yet: the logging layer's or the runtime's span around the tracing layer, made
/// before the invocation's context was. Only on a subscriber built on
/// `tracing_subscriber::Registry`, as every subscriber of this crate and of the facade is.
pub(crate) fn into_current_span(context: &Context) {
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return;
        };
        let Some(span) = registry.span(id) else {
            return;
        };
        if !carries(span.metadata().target()) {
            return;
        }
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<Carried>().is_none() {
            extensions.insert(Carried(context.clone()));
        }
    });
}
