//! Exporting after the response: a Lambda internal extension in the function's own process.
//!
//! Lambda freezes the execution environment once the runtime has asked for its next event *and*
//! every registered extension has asked for its own. [`Tracer::register_extension`] registers an
//! internal extension for `INVOKE` events: when an invocation ends, the layer hands its spans to
//! the extension and returns at once; the runtime sends the response; the extension exports the
//! spans and only then asks for its next event. The caller never waits for the export, and the
//! spans are out before the freeze.
//!
//! With concurrent invocations (`lambda_runtime::run_concurrent` on Lambda Managed Instances,
//! `AWS_LAMBDA_MAX_CONCURRENCY` above 1) the environment is not frozen per invocation: the spans
//! are exported in the background, every export interval or sooner when a batch is waiting, and
//! the extension subscribes to no event. In both modes, a registered extension makes Lambda send
//! the process `SIGTERM` before it shuts the environment down: the tracer exports what is left,
//! within 400 ms of the 500 ms Lambda allows, and exits.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use lambda_runtime_api_client::PooledClient;
use lambda_runtime_api_client::body::Body;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Error;
use crate::tracer::{FlushMode, Tracer};

/// The internal extension's name (unique among a function's extensions).
pub const EXTENSION_NAME: &str = "powertools-tracing";
/// How long the extension waits for an invocation it was told of to reach the layer. One that
/// never does (an event the runtime could not deserialize never reaches a handler) is left after
/// this; if it reaches the layer later, its spans are exported with the next invocation's (or at
/// shutdown), so that its caller does not wait for them either.
const START_GRACE: Duration = Duration::from_millis(200);
/// How long before the invocation's deadline an export gives up: the time to ask for the next
/// event before Lambda times the invocation out (the function timeout covers the extensions'
/// work after the response too).
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(50);
/// How long the export at `SIGTERM` may take in all. With an internal extension registered,
/// Lambda gives the runtime 500 ms after `SIGTERM`, then kills it (`SIGKILL`): a flush that took
/// its whole flush timeout (2 s) would be cut short with the spans it had not exported, and
/// without the warning that counts them. This leaves 100 ms to write it and exit.
pub(crate) const EXIT_BUDGET: Duration = Duration::from_millis(400);
/// When, after `SIGTERM`, the tracer exits the process if nothing else has: a function's own
/// shutdown hook (`lambda_runtime::spawn_graceful_shutdown_handler`, which exits when its hook
/// is done) gets until then to finish, and Lambda's kill at 500 ms is still 50 ms away.
const EXIT_AT: Duration = Duration::from_millis(450);
/// How long before the deadline (and its margin) the extension stops waiting for an
/// invocation still running, to export the spans that have ended: one that runs into its timeout
/// never hands its spans over, and Lambda resets the environment at the deadline with them.
const TIMEOUT_EXPORT_RESERVE: Duration = Duration::from_millis(250);
/// How many times the extension yields to the runtime's tasks before exporting.
const RESPONSE_FIRST_YIELDS: usize = 4;
/// The most invocations tracked at once (one in the sequential mode, in practice).
const MAX_TRACKED: usize = 64;
/// Lambda's longest timeout: how long the extension waits for the layer without a deadline.
const LONGEST_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// How long after a warning about a failed poll the first failure of the next streak is not
/// warned about.
const QUIET_AFTER_WARNING: Duration = Duration::from_secs(60);

/// How long the registration may take. Lambda answers it at once; a Runtime API that accepts
/// the connection and never answers would otherwise hold the function's init phase (10 s) until
/// Lambda fails it. Half of it leaves the init time to the function.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5);

const MODE_NONE: u8 = 0;
const MODE_AFTER_RESPONSE: u8 = 1;
const MODE_BACKGROUND: u8 = 2;

/// Where an invocation is, as the layer and the extension see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The layer has the invocation.
    Started,
    /// The layer has returned; its spans are queued for the extension.
    Done,
    /// The extension stopped waiting for it: its spans go with the next flush.
    Abandoned,
}

/// The Runtime API's base URI from `AWS_LAMBDA_RUNTIME_API`: Lambda sets a host and port
/// (`127.0.0.1:9001`); emulators may give the scheme too.
fn runtime_api_uri(runtime_api: &str) -> Result<http::Uri, Error> {
    let endpoint = if runtime_api.contains("://") {
        runtime_api.to_owned()
    } else {
        format!("http://{runtime_api}")
    };
    endpoint
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.host().is_some_and(|host| !host.is_empty()))
        .ok_or_else(|| {
            Error::Extension(format!(
                "AWS_LAMBDA_RUNTIME_API={runtime_api:?} is not a host and port"
            ))
        })
}

/// The hand-over of each invocation's spans from the layer to the extension.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    mode: AtomicU8,
    /// Set while an extension is registered or being registered: `register_extension` called
    /// twice at once registers once.
    registering: AtomicBool,
    /// The extension's task was dropped before its loop ended ([`Stopped`]): said at the next
    /// invocation the layer flushes itself, not when it happened, which is also how a process
    /// that ends its runtime ends (a test's, or `main` returning).
    stopped_unexpectedly: AtomicBool,
    invocations: Mutex<VecDeque<(String, Stage)>>,
    changed: Notify,
}

/// Hands the export back to the layer when the extension's loop ends, or when its task is
/// dropped before it ends: the runtime it was registered on was dropped (registered in a runtime
/// of its own, the function run in another), and the layer went on handing it spans that were
/// neither exported nor counted, without a word (found by an attack from the docs). The next
/// invocation says so ([`Handoff::finish`]).
struct Stopped {
    tracer: Tracer,
    /// The loop ended (a `SHUTDOWN`): nothing to warn about.
    ended: bool,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let handoff = &self.tracer.inner.handoff;
        handoff.mode.store(MODE_NONE, Ordering::Release);
        handoff.registering.store(false, Ordering::Release);
        if !self.ended {
            handoff.stopped_unexpectedly.store(true, Ordering::Release);
        }
    }
}

impl Handoff {
    fn invocations(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Stage)>> {
        self.invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stage(&self, request_id: &str) -> Option<Stage> {
        self.invocations()
            .iter()
            .find(|(id, _)| id == request_id)
            .map(|(_, stage)| *stage)
    }

    /// Sets the invocation's stage, returning the one it had.
    fn set(&self, request_id: &str, stage: Stage) -> Option<Stage> {
        let mut invocations = self.invocations();
        let previous = match invocations.iter_mut().find(|(id, _)| id == request_id) {
            Some((_, current)) => Some(std::mem::replace(current, stage)),
            None => {
                Self::track(&mut invocations, request_id, stage);
                None
            }
        };
        drop(invocations);
        self.changed.notify_waiters();
        previous
    }

    /// Tracks `request_id` at `stage`, forgetting the oldest invocation past the bound.
    fn track(invocations: &mut VecDeque<(String, Stage)>, request_id: &str, stage: Stage) {
        while invocations.len() >= MAX_TRACKED {
            invocations.pop_front();
        }
        invocations.push_back((request_id.to_owned(), stage));
    }

    fn forget(&self, request_id: &str) {
        self.invocations().retain(|(id, _)| id != request_id);
    }

    /// The layer has the invocation. `Some(request id)` when the extension exports after the
    /// response and so must be told when the invocation ends.
    pub(crate) fn start(&self, request_id: &str) -> Option<String> {
        if self.mode.load(Ordering::Acquire) != MODE_AFTER_RESPONSE {
            return None;
        }
        let mut invocations = self.invocations();
        if !invocations.iter().any(|(id, _)| id == request_id) {
            Self::track(&mut invocations, request_id, Stage::Started);
            drop(invocations);
            self.changed.notify_waiters();
        }
        Some(request_id.to_owned())
    }

    /// The layer is done with the invocation, its span ended. `true` when the extension or the
    /// background exporter exports its spans; `false` when the layer must flush them itself.
    pub(crate) fn finish(&self, request_id: Option<&str>) -> bool {
        match (self.mode.load(Ordering::Acquire), request_id) {
            (MODE_BACKGROUND, _) => true,
            (MODE_AFTER_RESPONSE, Some(request_id)) => {
                if self.set(request_id, Stage::Done) == Some(Stage::Abandoned) {
                    self.forget(request_id);
                    // Exporting now would make the caller wait, the one thing the extension is
                    // there to avoid: the spans stay queued for the next flush.
                    static LATE: std::sync::Once = std::sync::Once::new();
                    LATE.call_once(|| {
                        tracing::warn!(
                            target: "powertools_tracing",
                            grace_ms = START_GRACE.as_millis(),
                            "an invocation reached the tracing layer after the extension had \
                             stopped waiting for it (a slow layer before it, or a large event \
                             on a small function): its spans are exported with the next \
                             invocation's, or at shutdown (warned once)"
                        );
                    });
                }
                true
            }
            _ => {
                // A load first: the swap's write would cost every invocation that flushes.
                if self.stopped_unexpectedly.load(Ordering::Acquire)
                    && self.stopped_unexpectedly.swap(false, Ordering::AcqRel)
                {
                    tracing::warn!(
                        target: "powertools_tracing",
                        "the tracer's extension stopped: its task was dropped (the Tokio runtime \
                         it was registered on was dropped?). The layer exports before each \
                         invocation returns from now on. Under Lambda, register the extension on \
                         the runtime that runs the function: Lambda waits for a registered \
                         extension before each invocation"
                    );
                }
                false
            }
        }
    }

    /// Waits until `ready` holds for the invocation's stage, or `deadline`; returns the stage.
    async fn wait(
        &self,
        request_id: &str,
        ready: impl Fn(Option<Stage>) -> bool,
        deadline: Instant,
    ) -> Option<Stage> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let stage = self.stage(request_id);
            if ready(stage) {
                return stage;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return self.stage(request_id),
            }
        }
    }

    /// The extension's part of an invocation: wait for the layer to hand its spans over, bounded
    /// by the grace for an invocation that never reaches the layer and by its deadline (`None`:
    /// one Lambda could not have sent, as emulators do; then by the longest invocation).
    async fn after_invocation(&self, tracer: &Tracer, request_id: &str, deadline: Option<Instant>) {
        let export_by = deadline;
        let deadline = deadline.unwrap_or_else(|| Instant::now() + LONGEST_INVOCATION);
        // Invocations are one at a time here: every earlier one has ended by the time Lambda
        // sends this one (one that reached the layer late has finished, and been forgotten), so
        // an invocation still marked abandoned never reached the layer. Forgotten now, or a retry
        // of its event (Lambda retries an asynchronous invocation under the same request id)
        // would look as if it had reached the layer, and the extension would wait for it until
        // its deadline.
        self.invocations()
            .retain(|(_, stage)| *stage != Stage::Abandoned);
        let grace = (Instant::now() + START_GRACE).min(deadline);
        let reached_layer = self
            .wait(request_id, |stage| stage.is_some(), grace)
            .await
            .is_some()
            // Still not there: abandon it, unless it arrives at this very moment.
            || {
                let mut invocations = self.invocations();
                let arrived = invocations.iter().any(|(id, _)| id == request_id);
                if !arrived {
                    Self::track(&mut invocations, request_id, Stage::Abandoned);
                    drop(invocations);
                    static NEVER_REACHED: std::sync::Once = std::sync::Once::new();
                    NEVER_REACHED.call_once(|| {
                        // The invocation's id under the name of `lambda_runtime`'s span, which
                        // the logging layer writes as `function_request_id`, as on the
                        // invocation's own lines (a field of the line's own was `request_id`).
                        // Not exported: a span for the log line, not a unit of work.
                        let _invocation = tracing::warn_span!(
                            target: crate::tracer::LOG_SCOPE_TARGET,
                            "invocation",
                            requestId = request_id
                        )
                        .entered();
                        tracing::warn!(
                            target: "powertools_tracing",
                            grace_ms = START_GRACE.as_millis(),
                            "an invocation did not reach TracingLayer within the grace: the \
                             extension waited for it, then let it go (should it reach the \
                             layer after all, its spans leave with the next export). An event \
                             the runtime cannot read does that (it has no span); so does \
                             one that takes the runtime longer than the grace to read (a \
                             large event, a debug build); a handler that is not behind \
                             TracingLayer does it on every invocation, each held that long: \
                             register the extension only with the layer (warned once)"
                        );
                    });
                }
                arrived
            };
        if reached_layer {
            // Until shortly before a deadline Lambda sent, so that an invocation that times out
            // still has the spans that ended exported (its own span, still open, cannot be;
            // should it end after all, it leaves with the next export). With less than that
            // left, until the deadline.
            let stop_waiting = export_by
                .and_then(|deadline| deadline.checked_sub(TIMEOUT_EXPORT_RESERVE + DEADLINE_MARGIN))
                .filter(|at| *at > Instant::now())
                .unwrap_or(deadline);
            self.wait(request_id, |stage| stage == Some(Stage::Done), stop_waiting)
                .await;
            self.forget(request_id);
            // The layer has just returned: let the runtime's task and its connection send the
            // response before the export takes the worker (a woken task runs next on it).
            for _ in 0..RESPONSE_FIRST_YIELDS {
                tokio::task::yield_now().await;
            }
        }
        // This invocation's spans, and any left by an earlier one, before the deadline.
        let limit = export_by.map_or(Duration::MAX, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        });
        tracer.flush_within(limit).await;
    }
}

/// An event of the Extensions API.
#[derive(Debug)]
enum Event {
    Invoke {
        request_id: String,
        /// `None` when it is missing or not a number (Lambda always sends one).
        deadline_ms: Option<u64>,
    },
    Shutdown,
    /// An event the extension does not know (a type Lambda added, an emulator's own), or one it
    /// cannot read: asked past, never a reason to stop.
    Other(String),
}

impl Event {
    /// Reads an event loosely: only an `INVOKE` without a request id, among the events the
    /// extension knows, does not read.
    fn read(body: &[u8]) -> Event {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields {
            event_type: Option<serde_json::Value>,
            request_id: Option<serde_json::Value>,
            deadline_ms: Option<serde_json::Value>,
        }
        let Ok(fields) = serde_json::from_slice::<Fields>(body) else {
            return Event::Other(format!(
                "a body that is not a JSON object ({} bytes)",
                body.len()
            ));
        };
        match fields
            .event_type
            .as_ref()
            .and_then(serde_json::Value::as_str)
        {
            Some("INVOKE") => match fields
                .request_id
                .as_ref()
                .and_then(serde_json::Value::as_str)
            {
                Some(request_id) => Event::Invoke {
                    request_id: request_id.to_owned(),
                    deadline_ms: fields
                        .deadline_ms
                        .as_ref()
                        .and_then(serde_json::Value::as_u64),
                },
                None => Event::Other("an INVOKE event without a requestId".to_owned()),
            },
            Some("SHUTDOWN") => Event::Shutdown,
            Some(other) => Event::Other(format!(
                "an event of type {:?}",
                other.chars().take(64).collect::<String>()
            )),
            None => Event::Other("an event without an eventType".to_owned()),
        }
    }
}

/// The pause before the extension polls again after `failures` polls in a row failed: from
/// 10 ms, doubling, at most 1 s.
fn poll_pause(failures: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1 << failures.saturating_sub(1).min(7)))
        .min(Duration::from_secs(1))
}

/// Registers the internal extension for `events` with the Extensions API, through the runtime's
/// own client (`AWS_LAMBDA_RUNTIME_API`); returns its identifier.
async fn register(client: &PooledClient, address: &str, events: &[&str]) -> Result<String, Error> {
    let failed = |error: &dyn std::fmt::Display| Error::Extension(error.to_string());
    let request = http::Request::post("/2020-01-01/extension/register")
        .header("Lambda-Extension-Name", EXTENSION_NAME)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({ "events": events }).to_string(),
        ))
        .map_err(|error| failed(&error))?;
    // With the error's causes: the client's own message is `client error (Connect)` alone.
    let response = client.call(request).await.map_err(|error| {
        Error::Extension(format!(
            "the Runtime API at {address}: {}",
            powertools_core::error_chain::message_chain(error.as_ref())
        ))
    })?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes());
        let body = body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        return Err(Error::Extension(format!(
            "Lambda answered {status}: {body}"
        )));
    }
    response
        .headers()
        .get("Lambda-Extension-Identifier")
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| failed(&"no Lambda-Extension-Identifier in Lambda's answer"))
}

/// Waits for the extension's next event; asking for it tells Lambda the extension is done with
/// the previous one.
async fn next_event(
    client: &PooledClient,
    id: &str,
) -> Result<Event, lambda_runtime_api_client::BoxError> {
    let request = http::Request::get("/2020-01-01/extension/event/next")
        .header("Lambda-Extension-Identifier", id)
        .body(Body::empty())?;
    let response = client.call(request).await?;
    if !response.status().is_success() {
        return Err(format!("Lambda answered {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Event::read(&body))
}

/// The invocation's deadline (epoch milliseconds) on tokio's clock; `None` for one Lambda could
/// not have sent (`powertools_core::trusted_time_left`).
fn deadline(deadline_ms: Option<u64>) -> Option<Instant> {
    powertools_core::trusted_time_left(deadline_ms?, SystemTime::now())
        .map(|left| Instant::now() + left)
}

impl Tracer {
    /// Registers the tracer's internal Lambda extension, so that spans are exported after the
    /// response is sent instead of before; call it in `main`, before `lambda_runtime::run` (an
    /// extension must register during the function's init).
    ///
    /// ```no_run
    /// use lambda_runtime::{LambdaEvent, service_fn, tower::ServiceBuilder};
    /// use powertools_tracing::{Tracer, TracingLayer};
    /// use serde_json::{Value, json};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), lambda_runtime::Error> {
    ///     let tracer = Tracer::from_env()?;
    ///     tracing::subscriber::set_global_default(tracer.subscriber())?;
    ///     // Spans leave after the response: the caller never waits for the collector.
    ///     tracer.register_extension().await?;
    ///     let handler = ServiceBuilder::new()
    ///         .layer(TracingLayer::new(tracer))
    ///         .service(service_fn(|_event: LambdaEvent<Value>| async {
    ///             Ok::<_, lambda_runtime::Error>(json!({"accepted": true}))
    ///         }));
    ///     lambda_runtime::run(handler).await
    /// }
    /// ```
    ///
    /// In the sequential mode (`lambda_runtime::run`, or `run_concurrent` without
    /// `AWS_LAMBDA_MAX_CONCURRENCY` above 1) the extension subscribes to `INVOKE`: after each
    /// invocation it exports the spans, then lets Lambda freeze the environment. With concurrent
    /// invocations it subscribes to nothing and the spans are exported in the background, every
    /// [`export_interval`](crate::TracerBuilder::export_interval). Either way Lambda then sends
    /// `SIGTERM` before shutting the environment down: the tracer exports what is left within
    /// 400 ms (Lambda kills the runtime 500 ms after `SIGTERM`; what it cannot export by then is
    /// counted and reported in a warning), then exits the process, as Lambda expects, 450 ms
    /// after the signal unless something else exited it first: a shutdown hook of the
    /// function's own (`lambda_runtime::spawn_graceful_shutdown_handler`, which exits when its
    /// hook is done) has until then to finish.
    ///
    /// Does nothing, and the layer flushes before returning, outside Lambda (no
    /// `AWS_LAMBDA_RUNTIME_API`), with tracing off, with a caller's
    /// [`span_exporter`](crate::TracerBuilder::span_exporter), or with
    /// [`FlushMode::BeforeReturn`]. Calling it again does nothing.
    ///
    /// Register it on the Tokio runtime that runs the function: its tasks run there. Should
    /// that runtime be dropped (the extension registered in a runtime of its own), the layer
    /// exports before returning again, with a warning.
    ///
    /// # Errors
    /// [`Error::Extension`] when Lambda refuses the registration (after the init phase, or a
    /// second extension of this name), or does not answer it within 5 s, or when called outside
    /// a Tokio runtime; the layer then flushes before returning, as without it.
    pub async fn register_extension(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let Some(exporter) = inner.exporter.clone() else {
            return Ok(());
        };
        let Some(runtime_api) = inner.lambda.runtime_api.as_deref() else {
            return Ok(());
        };
        // Its tasks and timers are Tokio's: outside a runtime, an error rather than a panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Extension(
                "the extension needs a Tokio runtime (lambda_runtime's, or #[tokio::main]): \
                 register it from inside one; the layer flushes before returning meanwhile"
                    .to_owned(),
            ));
        }
        if inner.flush_mode == FlushMode::BeforeReturn
            || inner.handoff.mode.load(Ordering::Acquire) != MODE_NONE
        {
            return Ok(());
        }
        // The check above and the mode stored below are a registration's round trip apart: two
        // calls at once both passed it and registered two extensions.
        if inner.handoff.registering.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let concurrent = inner.lambda.max_concurrency > 1;
        let events: &[&str] = if concurrent { &[] } else { &["INVOKE"] };
        let registered = async {
            // The address the tracer read (the builder's `Env`): the client's own default reads
            // the process environment, and panics when the variable is not there.
            let endpoint = runtime_api_uri(runtime_api)?;
            let client = lambda_runtime_api_client::PooledClient::builder()
                .with_endpoint(endpoint)
                .build();
            let registering = crate::export::timeout_here(
                REGISTRATION_TIMEOUT,
                register(&client, runtime_api, events),
            )
            .ok_or_else(|| {
                Error::Extension(
                    "the extension needs a Tokio runtime with timers (lambda_runtime's, or \
                     #[tokio::main]): register it from inside one; the layer flushes before \
                     returning meanwhile"
                        .to_owned(),
                )
            })?;
            let id = registering.await.map_err(|_| {
                Error::Extension(format!(
                    "the Runtime API at {runtime_api} did not answer the extension's \
                         registration within {} s",
                    REGISTRATION_TIMEOUT.as_secs()
                ))
            })??;
            Ok::<_, Error>((client, id))
        }
        .await;
        let (client, id) = match registered {
            Ok(registered) => registered,
            Err(error) => {
                inner.handoff.registering.store(false, Ordering::Release);
                return Err(error);
            }
        };
        if concurrent {
            tokio::spawn(exporter.export_in_background(inner.export_interval));
            inner.handoff.mode.store(MODE_BACKGROUND, Ordering::Release);
        } else {
            inner
                .handoff
                .mode
                .store(MODE_AFTER_RESPONSE, Ordering::Release);
        }
        // Made here, not in the task: a task never polled before its runtime was dropped drops
        // it too.
        let stopped = Stopped {
            tracer: self.clone(),
            ended: false,
        };
        tokio::spawn(self.clone().run_extension(client, id, stopped));
        #[cfg(unix)]
        {
            let tracer = self.clone();
            let terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|error| Error::Extension(format!("SIGTERM handler: {error}")))?;
            tokio::spawn(tracer.export_on_sigterm(terminate));
        }
        Ok(())
    }

    /// The extension's loop: ask for the next event, export after each invocation.
    ///
    /// A poll that fails (no answer, an error status) is made again, after a pause that grows to
    /// a second, for as long as it takes: Lambda ends an invocation only once every extension
    /// subscribed to `INVOKE` has asked for its next event, so an extension that stopped asking
    /// would hold the next invocation until its timeout (found by an attack: one answer of 500
    /// ended the loop). Meanwhile the layer flushes before returning. An event the extension
    /// cannot read is asked past, paced as failed polls are.
    async fn run_extension(self, client: PooledClient, id: String, mut stopped: Stopped) {
        let handoff = &self.inner.handoff;
        let mode = handoff.mode.load(Ordering::Acquire);
        // Polls in a row that failed, and that were answered with an event the extension does
        // not read: both paced, so that an API that answers at once is never polled in a tight
        // loop (found by a review: 5,533 unreadable answers in 2 s).
        let (mut failures, mut unread): (u32, u32) = (0, 0);
        // When a failed poll was last warned about: a streak's first failure is warned about
        // at most once a minute, so that an API failing a poll per invocation does not write a
        // warning per invocation.
        let mut last_warned: Option<Instant> = None;
        loop {
            let event = match next_event(&client, &id).await {
                Ok(event) => event,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    // The layer exports itself while the extension cannot say when (in the
                    // background mode, the background export goes on).
                    if failures == 1 && mode == MODE_AFTER_RESPONSE {
                        handoff.mode.store(MODE_NONE, Ordering::Release);
                    }
                    let quiet = failures == 1
                        && last_warned.is_some_and(|at| at.elapsed() < QUIET_AFTER_WARNING);
                    if failures.is_power_of_two() && !quiet {
                        last_warned = Some(Instant::now());
                        tracing::warn!(
                            target: "powertools_tracing",
                            %error,
                            failures,
                            "the tracer's extension could not get its next event from the \
                             Extensions API: it asks again{} (warned at the 1st, 2nd, 4th, … \
                             failure in a row)",
                            if mode == MODE_AFTER_RESPONSE {
                                ", and the layer flushes before each invocation returns until it \
                                 gets one"
                            } else {
                                ""
                            }
                        );
                    }
                    tokio::time::sleep(poll_pause(failures)).await;
                    continue;
                }
            };
            if failures > 0 {
                handoff.mode.store(mode, Ordering::Release);
                if failures > 1 {
                    tracing::warn!(
                        target: "powertools_tracing",
                        failures,
                        "the tracer's extension got its next event again after failed polls"
                    );
                }
                failures = 0;
            }
            match event {
                Event::Invoke {
                    request_id,
                    deadline_ms,
                } => {
                    unread = 0;
                    handoff
                        .after_invocation(&self, &request_id, deadline(deadline_ms))
                        .await;
                }
                // Only external extensions get it; exported all the same.
                Event::Shutdown => {
                    self.flush().await;
                    break;
                }
                Event::Other(what) => {
                    static UNREAD: std::sync::Once = std::sync::Once::new();
                    UNREAD.call_once(|| {
                        tracing::warn!(
                            target: "powertools_tracing",
                            event = %what,
                            "the tracer's extension got an event it does not read: it asks for \
                             the next one (warned once)"
                        );
                    });
                    unread = unread.saturating_add(1);
                    tokio::time::sleep(poll_pause(unread)).await;
                }
            }
        }
        // Without its extension, the layer flushes before returning again (`Stopped`).
        stopped.ended = true;
    }

    #[cfg(unix)]
    async fn export_on_sigterm(self, mut terminate: tokio::signal::unix::Signal) {
        if terminate.recv().await.is_some() {
            let received = Instant::now();
            self.flush_before_exit(EXIT_BUDGET).await;
            // Another handler of the signal (the function's shutdown hook) may still be at
            // work, and exits the process when it is done: exiting as soon as this flush is
            // over cut it short.
            tokio::time::sleep_until(received + EXIT_AT).await;
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_loosely() {
        let read = |body: &str| Event::read(body.as_bytes());
        assert!(matches!(
            read(r#"{"eventType":"INVOKE","requestId":"r-1","deadlineMs":1700000000000,"new":1}"#),
            Event::Invoke { request_id, deadline_ms: Some(1_700_000_000_000) } if request_id == "r-1"
        ));
        assert!(matches!(
            read(r#"{"eventType":"INVOKE","requestId":"r-1","deadlineMs":"soon"}"#),
            Event::Invoke {
                deadline_ms: None,
                ..
            }
        ));
        assert!(matches!(
            read(r#"{"eventType":"SHUTDOWN","shutdownReason":"SPINDOWN"}"#),
            Event::Shutdown
        ));
        for unread in [
            r#"{"eventType":"RESTORE"}"#,
            r#"{"eventType":"INVOKE"}"#,
            r#"{"eventType":7}"#,
            "{}",
            "[]",
            "",
            "not json",
        ] {
            assert!(matches!(read(unread), Event::Other(_)), "{unread:?}");
        }
        let Event::Other(what) = read(&format!(r#"{{"eventType":"{}"}}"#, "X".repeat(10_000)))
        else {
            panic!("an unknown type");
        };
        assert!(what.len() < 100, "{what}");
    }

    #[test]
    fn polls_that_fail_pause_from_10_ms_doubling_up_to_a_second() {
        let pauses: Vec<u128> = [1, 2, 3, 7, 8, 9, 100, u32::MAX]
            .into_iter()
            .map(|failures| poll_pause(failures).as_millis())
            .collect();
        assert_eq!(pauses, [10, 20, 40, 640, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn the_runtime_api_is_a_host_and_port_with_or_without_a_scheme() {
        let lambda = runtime_api_uri("127.0.0.1:9001").unwrap();
        assert_eq!(lambda.to_string(), "http://127.0.0.1:9001/");
        let emulator = runtime_api_uri("http://127.0.0.1:9000/.rt").unwrap();
        assert_eq!(emulator.to_string(), "http://127.0.0.1:9000/.rt");
        for bad in ["", "http://", "not a uri", "http:///x"] {
            let error = runtime_api_uri(bad).unwrap_err().to_string();
            assert!(error.contains("AWS_LAMBDA_RUNTIME_API"), "{bad:?}: {error}");
        }
    }

    fn handoff(mode: u8) -> Handoff {
        let handoff = Handoff::default();
        handoff.mode.store(mode, Ordering::SeqCst);
        handoff
    }

    #[test]
    fn without_an_extension_the_layer_flushes_itself() {
        let handoff = handoff(MODE_NONE);
        assert_eq!(handoff.start("r-1"), None);
        assert!(!handoff.finish(None));
    }

    #[test]
    fn in_the_background_mode_nothing_is_tracked_and_the_layer_never_flushes() {
        let handoff = handoff(MODE_BACKGROUND);
        assert_eq!(handoff.start("r-1"), None);
        assert!(handoff.finish(None));
        assert!(handoff.invocations().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_extension_waits_for_the_layer_to_hand_the_invocation_over() {
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = std::sync::Arc::new(handoff(MODE_AFTER_RESPONSE));
        let id = handoff.start("r-1").unwrap();
        let extension = {
            let handoff = std::sync::Arc::clone(&handoff);
            let tracer = tracer.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                handoff
                    .after_invocation(&tracer, "r-1", Some(deadline))
                    .await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!extension.is_finished(), "the handler is still running");
        assert!(handoff.finish(Some(&id)), "the extension takes the spans");
        let done = extension.await.unwrap();
        assert!(done.elapsed() < Duration::from_millis(1));
        assert!(handoff.invocations().is_empty());
    }

    /// A collector that never answers.
    #[derive(Debug)]
    struct Hangs;

    impl opentelemetry_sdk::trace::SpanExporter for Hangs {
        async fn export(
            &self,
            _batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_export_after_the_response_gives_up_before_the_invocation_s_deadline() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        // Given a collector that hangs, a flush timeout of 2 s, and an invocation that ended
        // 300 ms before its deadline
        let tracer = Tracer::builder()
            .queued_exporter(Hangs)
            .flush_timeout(Duration::from_secs(2))
            .env(powertools_core::env::Env::empty())
            .build()
            .unwrap();
        let handoff = handoff(MODE_AFTER_RESPONSE);
        let id = handoff.start("r-late").unwrap();
        tracer
            .inner
            .sdk_tracer
            .as_ref()
            .unwrap()
            .start("invocation")
            .end();
        assert!(handoff.finish(Some(&id)));

        // When the extension exports its spans
        let start = Instant::now();
        handoff
            .after_invocation(&tracer, "r-late", Some(start + Duration::from_millis(300)))
            .await;

        // Then it gave up in time to ask for its next event before the deadline (past it,
        // Lambda would time the invocation out and reset the environment), the span is
        // counted as dropped, and export is suspended: the next invocation's deadline may be as
        // near
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(300) - DEADLINE_MARGIN
        );
        assert_eq!(tracer.dropped_spans(), 1);
        assert!(tracer.inner.exporter.as_ref().unwrap().is_suspended());
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_that_never_reaches_the_layer_is_left_after_the_grace() {
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = handoff(MODE_AFTER_RESPONSE);
        let start = Instant::now();
        // An event the runtime could not deserialize: the layer never sees it.
        handoff
            .after_invocation(&tracer, "r-bad", Some(start + Duration::from_secs(900)))
            .await;
        assert_eq!(start.elapsed(), START_GRACE, "not the 15-minute deadline");
        // Had it reached the layer late after all (a slow layer before it), the layer would
        // not export before returning: its caller does not wait for the spans either, which go
        // with the next invocation's
        assert_eq!(handoff.start("r-bad").as_deref(), Some("r-bad"));
        assert!(handoff.finish(Some("r-bad")));
        assert!(handoff.invocations().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_of_an_event_that_never_reached_the_layer_is_left_after_the_grace_too() {
        // Given an event the runtime could not deserialize, left after the grace
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = handoff(MODE_AFTER_RESPONSE);
        let deadline = Instant::now() + Duration::from_secs(900);
        handoff
            .after_invocation(&tracer, "r-retried", Some(deadline))
            .await;

        // When Lambda retries it under the same request id (an asynchronous invocation's
        // retry), and it does not reach the layer this time either
        let start = Instant::now();
        handoff
            .after_invocation(&tracer, "r-retried", Some(deadline))
            .await;

        // Then the extension lets it go after the grace again, not at its deadline
        assert_eq!(start.elapsed(), START_GRACE, "not the 15-minute deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_that_reaches_the_layer_is_exported_after_it_ends() {
        // Given an event left after the grace (a layer before this one rejected it, say)
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = std::sync::Arc::new(handoff(MODE_AFTER_RESPONSE));
        let deadline = Instant::now() + Duration::from_secs(900);
        handoff
            .after_invocation(&tracer, "r-retried", Some(deadline))
            .await;

        // When its retry reaches the layer, even before the extension is told of it
        for layer_first in [false, true] {
            let id = layer_first.then(|| handoff.start("r-retried").unwrap());
            let extension = {
                let (handoff, tracer) = (std::sync::Arc::clone(&handoff), tracer.clone());
                tokio::spawn(async move {
                    handoff
                        .after_invocation(&tracer, "r-retried", Some(deadline))
                        .await;
                    Instant::now()
                })
            };
            tokio::task::yield_now().await;
            let id = id.unwrap_or_else(|| handoff.start("r-retried").unwrap());
            tokio::time::sleep(Duration::from_secs(5)).await;

            // Then the extension waits for the handler, past the grace, and exports as the
            // layer returns
            assert!(!extension.is_finished(), "layer first: {layer_first}");
            assert!(handoff.finish(Some(&id)));
            let done = extension.await.unwrap();
            assert!(done.elapsed() < Duration::from_millis(1));
            assert!(handoff.invocations().is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn invocations_that_never_reach_the_layer_are_tracked_within_the_bound() {
        // Events that never reach the layer (they do not deserialize, or a layer before it
        // rejects them), one after the other
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = handoff(MODE_AFTER_RESPONSE);
        for n in 0..1000 {
            let deadline = Instant::now() + Duration::from_secs(60);
            handoff
                .after_invocation(&tracer, &format!("never-reached-{n}"), Some(deadline))
                .await;
        }
        // Each is forgotten when the next is sent: only the last is still tracked
        assert_eq!(handoff.invocations().len(), 1);
        // And the tracking still works for an invocation that does reach the layer
        let id = handoff.start("reached").unwrap();
        assert!(handoff.finish(Some(&id)));
        assert!(handoff.invocations().len() <= MAX_TRACKED);
    }

    #[test]
    fn a_deadline_lambda_could_not_have_sent_is_no_deadline() {
        // `cargo lambda watch` sends a deadline relative to its start, years in the past:
        // taken as is, the extension would leave every invocation at once
        assert_eq!(deadline(Some(3_000)), None);
        assert_eq!(deadline(Some(0)), None);
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let in_three_seconds = u64::try_from(now_ms).unwrap() + 3_000;
        let left = deadline(Some(in_three_seconds)).unwrap() - Instant::now();
        assert!(
            left <= Duration::from_secs(3) && left > Duration::from_secs(2),
            "{left:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_the_extension_still_waits_for_the_layer() {
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = std::sync::Arc::new(handoff(MODE_AFTER_RESPONSE));
        let id = handoff.start("r-1").unwrap();
        let extension = {
            let handoff = std::sync::Arc::clone(&handoff);
            let tracer = tracer.clone();
            tokio::spawn(async move { handoff.after_invocation(&tracer, "r-1", None).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!extension.is_finished(), "the handler is still running");
        assert!(handoff.finish(Some(&id)));
        extension.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_that_ended_before_the_extension_heard_of_it_is_exported_at_once() {
        let tracer = Tracer::builder().disabled(true).build().unwrap();
        let handoff = handoff(MODE_AFTER_RESPONSE);
        let id = handoff.start("r-2").unwrap();
        assert!(handoff.finish(Some(&id)));
        let start = Instant::now();
        handoff
            .after_invocation(&tracer, "r-2", Some(start + Duration::from_secs(60)))
            .await;
        assert!(start.elapsed().is_zero());
    }
}
