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

/// Whether spans of `metadata` stand for one invocation without being exported: the logging
/// layer's invocation span and the runtime's invoke span, by name, not the runtime's
/// long-lived `worker` span (entered around every invocation of its worker, it kept the first
/// one's context for good: found by a review).
pub(crate) fn carries(metadata: &tracing::Metadata<'_>) -> bool {
    // The name first, then a prefix comparison (a split on `:` cost about 200 instructions).
    let of = |krate: &str| {
        let target = metadata.target();
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    };
    match metadata.name() {
        "lambda_invocation" => of("powertools_logging"),
        // Its trace layer's span, and its OpenTelemetry layer's (`OpenTelemetryLayer`).
        "Lambda runtime invoke" | "Lambda function invocation" => of("lambda_runtime"),
        _ => false,
    }
}

/// The layer that keeps the invocation's context on [`carries`]' spans and attaches it while
/// they are entered. Filtered to them by [`CarriedSpans`], so its callbacks see no other span.
pub(crate) struct ContextCarrier;

/// [`ContextCarrier`]'s filter: [`carries`]' spans, decided once per callsite, so that no other
/// span or event is enabled for it (an unfiltered layer enabled every span and event of every
/// crate, at every level, in a subscriber whose other layers are filtered).
pub(crate) struct CarriedSpans;

impl<S> tracing_subscriber::layer::Filter<S> for CarriedSpans {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: &LayerContext<'_, S>) -> bool {
        metadata.is_span() && carries(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.is_span() && carries(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

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
        detach(id);
    }

    fn on_close(&self, id: Id, _ctx: LayerContext<'_, S>) {
        // A span closed while entered (a guard leaked): its context goes with it.
        detach(&id);
    }
}

/// Detaches the context the innermost entering of span `id` on this thread attached.
fn detach(id: &Id) {
    // Taken out of the stack before it is dropped: dropping it detaches the context, which must
    // not happen with the stack borrowed.
    let guard = ATTACHED.with(|attached| {
        let mut attached = attached.borrow_mut();
        let at = attached.iter().rposition(|(entered, _)| entered == id)?;
        Some(attached.remove(at))
    });
    drop(guard);
}

/// Whether the current OpenTelemetry context is a traced invocation's.
pub(crate) fn in_invocation() -> bool {
    Context::map_current(|context| context.get::<Annotations>().is_some())
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
    // The current span's id and metadata without a `Span` handle, whose clone and drop count
    // references in the registry (about 600 instructions an invocation).
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let (Some(id), Some(metadata)) = (current.id(), current.metadata()) else {
            return;
        };
        if !carries(metadata) {
            return;
        }
        let Some(span) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<Carried>().is_none() {
            extensions.insert(Carried(context.clone()));
        }
    });
}
