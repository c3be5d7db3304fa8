//! Which invocation of a process is its cold start, as every powertools-rs layer reports it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use lambda_runtime::Context;

use crate::env::vars;

/// Decides which invocation of a process is its cold start.
///
/// The first invocation to ask claims the cold start, identified by its request id and deadline
/// (Lambda reuses the request id when it retries an invocation, the deadline differs). Every later
/// question about the same invocation gets the same answer, so logs, metrics and spans agree
/// whichever layer asks first, and exactly one invocation wins even when `lambda_runtime` runs
/// many at once (`concurrency-tokio`, Lambda Managed Instances).
///
/// Layers use the process-wide tracker through [`is_cold_start`]; tests create their own.
///
/// ```
/// use lambda_runtime::Context;
/// use powertools_core::ColdStart;
///
/// let tracker = ColdStart::new();
/// let mut first = Context::default();
/// first.request_id = "first".into();
/// let mut second = Context::default();
/// second.request_id = "second".into();
///
/// assert!(tracker.claim(&first));
/// assert!(!tracker.claim(&second));
/// assert!(tracker.claim(&first), "asking again about the cold invocation gives the same answer");
/// ```
#[derive(Debug, Default)]
pub struct ColdStart {
    claimed_by: OnceLock<InvocationKey>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct InvocationKey {
    request_id: Box<str>,
    deadline_ms: u64,
}

impl InvocationKey {
    fn of(context: &Context) -> Self {
        InvocationKey {
            request_id: context.request_id.as_str().into(),
            deadline_ms: context.deadline,
        }
    }

    fn is(&self, context: &Context) -> bool {
        *self.request_id == *context.request_id && self.deadline_ms == context.deadline
    }
}

impl ColdStart {
    /// A tracker on which no invocation has claimed the cold start yet.
    pub const fn new() -> Self {
        ColdStart {
            claimed_by: OnceLock::new(),
        }
    }

    /// The tracker shared by every layer of this process.
    pub fn process() -> &'static ColdStart {
        static PROCESS: ColdStart = ColdStart::new();
        &PROCESS
    }

    /// Whether `context`'s invocation is the first one this tracker has seen, claiming the cold
    /// start for it if no invocation has yet.
    pub fn claim(&self, context: &Context) -> bool {
        self.claimed_by
            .get_or_init(|| InvocationKey::of(context))
            .is(context)
    }

    /// Whether some invocation has claimed the cold start.
    pub fn is_claimed(&self) -> bool {
        self.claimed_by.get().is_some()
    }
}

/// The answers tests gave in advance for their own invocations
/// ([`TestContext::with_cold_start`](crate::testing::TestContext::with_cold_start)).
///
/// Tests of one binary share a process, so which of them invokes first would otherwise decide
/// which one sees the cold start. A declared answer is keyed by its invocation (request id and
/// deadline), so tests running in parallel cannot take each other's.
struct Declared {
    /// Set once anything is declared: a deployed function only ever pays this load.
    any: AtomicBool,
    answers: Mutex<Option<HashMap<InvocationKey, bool>>>,
}

static DECLARED: Declared = Declared {
    any: AtomicBool::new(false),
    answers: Mutex::new(None),
};

/// Declares whether `context`'s invocation is to be reported as the cold start; see
/// `TestContext::with_cold_start` (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn declare(context: &Context, cold: bool) {
    DECLARED
        .answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(InvocationKey::of(context), cold);
    DECLARED.any.store(true, Ordering::Release);
}

fn declared(context: &Context) -> Option<bool> {
    if !DECLARED.any.load(Ordering::Acquire) {
        return None;
    }
    let key = InvocationKey::of(context);
    DECLARED
        .answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|answers| answers.get(&key).copied())
}

/// Whether `context`'s invocation is this process's cold start, as every powertools-rs layer
/// reports it.
///
/// An environment started by provisioned concurrency (`AWS_LAMBDA_INITIALIZATION_TYPE =
/// provisioned-concurrency`) has no cold start, as in Powertools for Python and TypeScript: it was
/// initialised before any request waited for it.
///
/// A test can decide the answer for its own invocations with `TestContext::with_cold_start`
/// (the `testing` feature); such an invocation does not claim the process's cold start.
pub fn is_cold_start(context: &Context) -> bool {
    static COUNTS_COLD_STARTS: OnceLock<bool> = OnceLock::new();
    if let Some(answer) = declared(context) {
        return answer;
    }
    let claimed = ColdStart::process().claim(context);
    claimed
        && *COUNTS_COLD_STARTS.get_or_init(|| {
            std::env::var_os(vars::AWS_LAMBDA_INITIALIZATION_TYPE)
                .is_none_or(|value| value != "provisioned-concurrency")
        })
}

/// Set when the cold start's invocation ended before any layer saw it
/// ([`note_unseen_invocation`]): a deployed function whose first event read pays this load.
static ANY_UNSEEN_COLD_START: AtomicBool = AtomicBool::new(false);

/// The invocation that writes the `ColdStart` metric of a cold start no layer saw
/// ([`claim_unseen_cold_start`]).
static UNSEEN_COLD_START_CLAIMANT: OnceLock<InvocationKey> = OnceLock::new();

/// Whether `context`'s invocation is the cold start ([`is_cold_start`]), noting, when it is,
/// that it ended before any powertools-rs layer saw it: its event did not read as the
/// handler's type, and `powertools::run` answered it. The next invocation that reaches the
/// layers then writes its `ColdStart` metric ([`claim_unseen_cold_start`],
/// [`writes_unseen_cold_start`]), as Powertools for Python's next invocation does; without
/// this, no invocation wrote it (found by an attack from the docs).
///
/// ```
/// use powertools_core::testing::TestContext;
/// use powertools_core::cold_start::{
///     claim_unseen_cold_start, note_unseen_invocation, writes_unseen_cold_start,
/// };
///
/// let cold = TestContext::new().with_cold_start(true).build();
/// assert!(note_unseen_invocation(&cold));
/// let next = TestContext::new().with_request_id("next").build();
/// let later = TestContext::new().with_request_id("later").build();
/// claim_unseen_cold_start(&next); // before its layers
/// assert!(writes_unseen_cold_start(&next), "in each of its metrics layers");
/// claim_unseen_cold_start(&later);
/// assert!(!writes_unseen_cold_start(&later), "and in no later invocation");
/// ```
pub fn note_unseen_invocation(context: &Context) -> bool {
    let cold = is_cold_start(context);
    if cold {
        ANY_UNSEEN_COLD_START.store(true, Ordering::Release);
    }
    cold
}

/// Claims the `ColdStart` metric of a cold start no layer saw ([`note_unseen_invocation`]) for
/// `context`'s invocation if it is the first to come after it: called for each invocation
/// before any layer sees it (`powertools::run`'s event reader does), so that every metrics
/// layer of one invocation gives the same answer (a claim made by the first layer to ask could
/// fall between two layers of one invocation and give it to the inner one only: a review).
pub fn claim_unseen_cold_start(context: &Context) {
    if ANY_UNSEEN_COLD_START.load(Ordering::Acquire) {
        UNSEEN_COLD_START_CLAIMANT.get_or_init(|| InvocationKey::of(context));
    }
}

/// Whether `context`'s invocation writes the `ColdStart` metric of a cold start no layer saw
/// ([`claim_unseen_cold_start`]): a metrics layer that captures the cold start asks, for each
/// invocation, besides [`is_cold_start`]. No lock is taken (one atomic load for a function
/// whose first event read).
pub fn writes_unseen_cold_start(context: &Context) -> bool {
    ANY_UNSEEN_COLD_START.load(Ordering::Acquire)
        && UNSEEN_COLD_START_CLAIMANT
            .get()
            .is_some_and(|claimant| claimant.is(context))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::TestContext;

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn exactly_one_of_200_concurrent_invocations_is_the_cold_start() {
        // Given one tracker and 200 invocations started at once
        let tracker = Arc::new(ColdStart::new());
        let cold = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (tracker, cold, barrier) = (tracker.clone(), cold.clone(), barrier.clone());
                tokio::spawn(async move {
                    let context = TestContext::new().build();
                    barrier.wait().await;
                    // When every layer of the invocation asks, in any order
                    let answers: Vec<bool> = (0..3).map(|_| tracker.claim(&context)).collect();
                    assert!(
                        answers.iter().all(|answer| *answer == answers[0]),
                        "layers disagree"
                    );
                    if answers[0] {
                        cold.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Then exactly one invocation was cold
        assert_eq!(cold.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_declared_answer_wins_without_claiming_the_process_cold_start() {
        // Given invocations whose tests declared their cold start, and one that did not
        let cold = TestContext::new().with_cold_start(true).build();
        let warm = TestContext::new().with_cold_start(false).build();
        let undeclared = TestContext::new().build();
        // Then each declared one gets its answer, every time, whatever ran before it
        for _ in 0..3 {
            assert!(is_cold_start(&cold));
            assert!(!is_cold_start(&warm));
        }
        // And the undeclared one still gets the process's answer: the same one each time
        let answer = is_cold_start(&undeclared);
        assert_eq!(is_cold_start(&undeclared), answer);
        // A retry of the declared invocation (a new deadline) is not declared
        let mut retry = cold.clone();
        retry.deadline += 60_000;
        assert_eq!(declared(&retry), None);
    }

    #[test]
    fn a_retry_with_the_same_request_id_is_not_cold_again() {
        let tracker = ColdStart::new();
        let first = TestContext::new().with_request_id("retried").build();
        let mut retry = first.clone();
        retry.deadline += 60_000;
        assert!(!tracker.is_claimed());
        assert!(tracker.claim(&first));
        assert!(tracker.is_claimed());
        assert!(!tracker.claim(&retry));
    }

    /// An invocation that reached the layers before the cold start was noted unseen is not the
    /// one that writes its metric, in any of its layers; the next one is, in all of them (a
    /// claim by the first layer to ask gave it to an inner layer only: a review). The only test
    /// of this binary that claims: the claimant is the process's.
    #[test]
    fn the_invocation_after_an_unseen_cold_start_writes_its_metric_in_every_layer() {
        let earlier = TestContext::new().with_request_id("earlier").build();
        let cold = TestContext::new()
            .with_request_id("cold")
            .with_cold_start(true)
            .build();
        let next = TestContext::new().with_request_id("next").build();
        claim_unseen_cold_start(&earlier);
        assert!(note_unseen_invocation(&cold));
        // The earlier invocation's layers, asking after the note: none writes it.
        assert!(!writes_unseen_cold_start(&earlier));
        assert!(!writes_unseen_cold_start(&earlier));
        claim_unseen_cold_start(&next);
        assert!(writes_unseen_cold_start(&next));
        assert!(writes_unseen_cold_start(&next));
        claim_unseen_cold_start(&earlier);
        assert!(!writes_unseen_cold_start(&earlier), "claimed once");
    }
}
