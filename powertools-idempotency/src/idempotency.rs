use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use lambda_runtime::Context;
use powertools_core::env::Env;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{
    DEFAULT_LOCAL_CACHE_MAX_ITEMS, POWERTOOLS_IDEMPOTENCY_DISABLED, ReplayHook, Settings,
};
use crate::engine::{Claim, Engine, Prepared};
use crate::error::Error;
use crate::key::to_json;
use crate::persistence::IdempotencyStore;
use crate::record::DataRecord;

/// Idempotency configured once for a function: a store, the window, the key prefix, the local
/// cache. Cheap to clone; clones share the store and the cache.
///
/// Use it through [`IdempotencyLayer`](crate::IdempotencyLayer) for a whole handler, or call
/// [`run`](Self::run) to make any async function idempotent on one of its arguments, such as one
/// record of a batch.
///
/// ```
/// use powertools_core::testing::TestContext;
/// use powertools_idempotency::{Idempotency, InMemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let idempotency = Idempotency::builder(InMemoryStore::new()).key_prefix("charge").build()?;
/// let context = TestContext::new().build();
///
/// let charge = |payment_id: String| async move { Ok::<_, std::io::Error>(format!("charged {payment_id}")) };
/// let first: String = idempotency.run(&context, "charge", "pay-1".to_owned(), charge).await?;
/// let replay: String = idempotency
///     .run(&context, "charge", "pay-1".to_owned(), |_: String| async { unreachable!("not charged twice") })
///     .await
///     .map_err(|error: powertools_idempotency::Error<std::io::Error>| error)?;
/// assert_eq!(first, replay);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Idempotency<St> {
    pub(crate) engine: Arc<Engine<St>>,
}

impl<St> Clone for Idempotency<St> {
    fn clone(&self) -> Self {
        Idempotency {
            engine: self.engine.clone(),
        }
    }
}

impl<St: IdempotencyStore> Idempotency<St> {
    /// A builder on `store` with the Powertools defaults: a one-hour window, the function name as
    /// key prefix, no local cache, a warning (not an error) when the key is missing.
    pub fn builder(store: St) -> IdempotencyBuilder<St> {
        IdempotencyBuilder {
            store,
            settings: Settings::default(),
            env: Env::process(),
        }
    }

    /// Runs `function(argument)` at most once per argument value within the window; a duplicate
    /// gets the first call's response (the same typed value) without running it.
    ///
    /// `operation` names what the function does (`"charge"`, `"send-receipt"`): it is part of the
    /// key, so two operations given the same argument never share a record, and neither does
    /// [`IdempotencyLayer`](crate::IdempotencyLayer) (its operation is
    /// [`DEFAULT_LAYER_OPERATION`](crate::DEFAULT_LAYER_OPERATION) unless renamed). The name is a
    /// string you write, not one derived from the call site or the function's path, so moving or
    /// renaming code never changes keys; change it only to start a new set of records. It must be
    /// non-empty (not white space or invisible characters alone), must hold no control
    /// characters, line separators (U+2028, U+2029) or bidirectional formatting characters, `#`
    /// or `.`, and must not be the layer's default `"handler"`.
    ///
    /// The key is the operation and the argument's canonical JSON; `context` gives the
    /// in-progress deadline and the tenant. An argument that counts as missing (`()`, `null`,
    /// `""`, `{}`, `[]`, a struct whose every field is `None`, see
    /// [`is_missing`](crate::is_missing)) follows the missing-key rule, as
    /// Powertools for Python's `idempotent_function` does: by default the function runs without
    /// idempotency, with a warning; with
    /// [`raise_on_missing_key`](IdempotencyBuilder::raise_on_missing_key) the call is refused
    /// with [`Error::KeyMissing`]. Payments should set it. To run an operation that takes no
    /// argument once per window, pass a constant (its name, say). A float that JSON cannot hold
    /// (NaN, ±Infinity) in the argument is refused with [`Error::Serialization`].
    ///
    /// A replay is the response's JSON read back into `R`: as faithful as `R`'s serde round trip
    /// (floats and 128-bit integers are exact; a type whose JSON loses information, such as
    /// `Option<Option<T>>` or `#[serde(skip)]` fields, replays what its JSON holds).
    ///
    /// The key is computed when `run` is called (the argument serialized, the context read); the
    /// store is called, and `function` run, when the returned future is awaited, which returns
    /// every error, those of the key included. The future borrows only `self`: `context` and
    /// `operation` may be dropped before it is awaited.
    ///
    /// # Errors
    /// The function's own error as [`Error::Handler`], or what the idempotency protocol found
    /// (already in progress, store failure, …); [`Error::Config`] for an invalid operation name.
    ///
    /// # Panics
    /// A panic in `function` (while it builds its future or while that future runs) releases
    /// the in-progress record first, so a retry runs it again. A panic inside the future is returned
    /// as [`Error::HandlerPanicked`]; a panic in the closure itself, before any future exists, is
    /// resumed.
    pub fn run<'a, A, R, E, F, Fut>(
        &'a self,
        context: &Context,
        operation: &str,
        argument: A,
        function: F,
    ) -> impl Future<Output = Result<R, Error<E>>> + use<'a, St, A, R, E, F, Fut>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned + 'static,
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        // The argument is the key: serialized now, its error returned when the future is
        // awaited. The future is the protocol's own, holding `function` and `argument` once.
        let prepared = to_json(&argument, "argument")
            .map_err(Error::into_handler_error)
            .and_then(|key_data| {
                self.prepare_keyed(context, operation, key_data, None, "the argument of `run`")
            });
        Engine::execute(&*self.engine, prepared, move || function(argument)).inspect(report_own)
    }

    fn check_run_operation(operation: &str) -> Result<(), Error> {
        if operation == crate::DEFAULT_LAYER_OPERATION {
            return Err(Error::Config(format!(
                "the operation name {operation:?} is the default of IdempotencyLayer: give this \
                 operation another name, so that its records never mix with the layer's"
            )));
        }
        Ok(())
    }

    /// Runs `function` at most once per `key_data` within the window, with optional payload
    /// validation data (a duplicate whose validation data differs gets
    /// [`Error::PayloadMismatch`]).
    ///
    /// `None` as `validation_data` turns validation off for this call; to validate data that
    /// may be absent, pass `Some(Value::Null)` for it.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_keyed<'a, R, E, F, Fut>(
        &'a self,
        context: &Context,
        operation: &str,
        key_data: Value,
        validation_data: Option<Value>,
        function: F,
    ) -> impl Future<Output = Result<R, Error<E>>> + use<'a, St, R, E, F, Fut>
    where
        R: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let prepared = self.prepare_keyed(
            context,
            operation,
            key_data,
            validation_data,
            "the key data given to `run_keyed`",
        );
        Engine::execute(&*self.engine, prepared, function).inspect(report_own)
    }

    /// What [`run_keyed`](Self::run_keyed) claims, computed when it is called, so that the future
    /// it returns is the protocol's own and holds the function once (an `async fn` here would
    /// keep a copy of it per level). An error is returned when that future is awaited.
    fn prepare_keyed<E>(
        &self,
        context: &Context,
        operation: &str,
        key_data: Value,
        validation_data: Option<Value>,
        looked_in: &'static str,
    ) -> Result<Prepared, Error<E>> {
        Self::check_run_operation(operation).map_err(Error::into_handler_error)?;
        let claim = Claim {
            key_data: Some(key_data),
            validation_data,
        };
        self.engine
            .prepare(context, operation, claim, || looked_in.to_owned())
    }

    /// The idempotency key that `key_data` gets for `operation` in `context`'s invocation (for
    /// inspecting or seeding records; the layer and [`run`](Self::run) compute it themselves).
    /// The layer's operation is [`DEFAULT_LAYER_OPERATION`](crate::DEFAULT_LAYER_OPERATION)
    /// unless renamed.
    ///
    /// The operation name is not checked here: one that [`run`](Self::run) refuses (empty, or
    /// with `#` or `.`) still gets a key, under which no call ever stores or reads a record.
    pub fn key_for(&self, context: &Context, operation: &str, key_data: &Value) -> String {
        self.engine.key_for(context, operation, key_data.clone())
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.engine.store
    }
}

/// The least a store timeout or an in-progress window can be: both are used in milliseconds.
const MILLISECOND: std::time::Duration = std::time::Duration::from_millis(1);

/// Builder of [`Idempotency`].
#[derive(Debug)]
#[must_use]
pub struct IdempotencyBuilder<St> {
    store: St,
    settings: Settings,
    env: Env,
}

impl<St: IdempotencyStore> IdempotencyBuilder<St> {
    /// How long a completed response is replayed (default one hour), in whole seconds, a
    /// fraction rounded up (records expire in seconds, as DynamoDB's TTL reads them): never
    /// shorter than asked. Zero keeps a completed record only until the end of its second;
    /// concurrent duplicates still get [`Error::AlreadyInProgress`] while the first call runs.
    pub fn expires_after(mut self, window: Duration) -> Self {
        self.settings.expires_after = window;
        self
    }

    /// Fails with [`Error::KeyMissing`] instead of running without idempotency when an event has
    /// no key data (default off: a warning is logged).
    pub fn raise_on_missing_key(mut self, raise: bool) -> Self {
        self.settings.raise_on_missing_key = raise;
        self
    }

    /// Sets the key prefix explicitly, so that renaming or redeploying the function under another
    /// name never changes the keys (default: the function name). Keys are
    /// `<prefix>.<operation>#<digest>`.
    ///
    /// The prefix names whose records they are: two functions on one table with one prefix and
    /// one operation (the layer's default, `handler`, in both) share their records, so one
    /// replays the other's response for the same key data. Give each function its own prefix
    /// (or each layer its own [`operation`](crate::IdempotencyLayer::operation)), unless they
    /// are meant to share (a function renamed, both versions live).
    ///
    /// [`build`](Self::build) refuses a prefix of white space or invisible characters alone, and
    /// one holding a control character, a line separator (U+2028, U+2029) or a bidirectional
    /// formatting character, as it refuses such an operation name.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = Some(prefix.into());
        self
    }

    /// How long an in-progress record blocks duplicates when the invocation's deadline cannot be
    /// trusted (default [`DEFAULT_IN_PROGRESS_FALLBACK`](crate::DEFAULT_IN_PROGRESS_FALLBACK),
    /// 15 minutes: Lambda's longest timeout, outside Lambda Managed Instances).
    ///
    /// The in-progress record normally expires at the invocation's deadline, so a retry after a
    /// timeout runs again. A deadline that is missing (`Context::default()`), already more than
    /// a second past when the claim is written, or more than 90 minutes ahead (an emulator's
    /// relative value such as `600000`) would make it expire at once and let concurrent
    /// duplicates all run; this window is used instead, and a warning is logged once per process.
    /// [`build`](Self::build) refuses less than a millisecond.
    pub fn in_progress_fallback(mut self, window: std::time::Duration) -> Self {
        self.settings.in_progress_fallback = window;
        self
    }

    /// The longest one store call may take (default
    /// [`DEFAULT_STORE_TIMEOUT`](crate::DEFAULT_STORE_TIMEOUT), 10 s), SDK retries included.
    /// Each call also ends at least 100 ms before the invocation's deadline (a call with less
    /// time left than that fails at once; the completion after the handler succeeded, 10 ms, as
    /// failing it means the handler runs again), so a hung store fails the invocation with a typed
    /// error before Lambda stops it, however many store calls it makes (the records of a
    /// batch); a deadline that can't be trusted (missing, more than a second past, more than 90
    /// minutes ahead) bounds nothing. Applies to any store, including a
    /// [`DynamoDbStore`](crate::DynamoDbStore) on a client you configured yourself; not outside
    /// a Tokio runtime or in one built without timers, where calls run unbounded rather than
    /// panic.
    /// [`build`](Self::build) refuses less than a millisecond.
    pub fn store_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.settings.store_timeout = timeout;
        self
    }

    /// Keeps completed records in an in-memory LRU of `max_items` (Powertools' default is 256:
    /// [`DEFAULT_LOCAL_CACHE_MAX_ITEMS`]), so a duplicate in the same execution environment is
    /// answered with no store call. Zero turns the cache off; `usize::MAX` puts no bound on it
    /// (memory grows with the keys the environment sees). Nothing is reserved up front.
    pub fn local_cache(mut self, max_items: usize) -> Self {
        self.settings.local_cache_max_items = Some(max_items);
        self
    }

    /// Turns the local cache on with [`DEFAULT_LOCAL_CACHE_MAX_ITEMS`] items.
    pub fn use_local_cache(self) -> Self {
        self.local_cache(DEFAULT_LOCAL_CACHE_MAX_ITEMS)
    }

    /// Runs `hook` on replays only, on the replayed response of type `R` (for example to add an
    /// `x-idempotent-replay` header to an HTTP response). It applies to the operations whose
    /// response type is `R`, and not to others sharing this `Idempotency`. Hooks for several
    /// types can be registered; a second hook for the same type replaces the first.
    ///
    /// Unlike Powertools for Python's `response_hook`, it takes the typed response, not its
    /// JSON, so a replay stays lossless (128-bit integers included) and the compiler checks the
    /// fields it touches.
    ///
    /// ```
    /// use powertools_core::testing::TestContext;
    /// use powertools_idempotency::{Idempotency, InMemoryStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Receipt { id: String, replayed: bool }
    ///
    /// let idempotency = Idempotency::builder(InMemoryStore::new())
    ///     .on_replay(|receipt: &mut Receipt, _record| receipt.replayed = true)
    ///     .build()?;
    /// let context = TestContext::new().build();
    /// let issue = |id: String| async move { Ok::<_, std::io::Error>(Receipt { id, replayed: false }) };
    /// let first = idempotency.run(&context, "receipt", "r-1".to_owned(), issue).await?;
    /// let again = idempotency.run(&context, "receipt", "r-1".to_owned(), issue).await?;
    /// assert!(!first.replayed && again.replayed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_replay<R: 'static>(
        mut self,
        hook: impl Fn(&mut R, &DataRecord) + Send + Sync + 'static,
    ) -> Self {
        let hook = ReplayHook::new(hook);
        self.settings
            .replay_hooks
            .retain(|existing| existing.type_id != hook.type_id);
        self.settings.replay_hooks.push(Arc::new(hook));
        self
    }

    /// Reads `POWERTOOLS_IDEMPOTENCY_DISABLED` from `env` instead of the process environment.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when `POWERTOOLS_IDEMPOTENCY_DISABLED` is malformed, the store timeout
    /// or the in-progress fallback is under a millisecond, or the key prefix is empty.
    pub fn build(mut self) -> Result<Idempotency<St>, Error> {
        let disabled = self
            .env
            .bool(POWERTOOLS_IDEMPOTENCY_DISABLED)
            .map_err(|error| Error::Config(error.to_string()))?
            .unwrap_or(false);
        // Warned about at the first invocation (`Engine::prepare`), not here: `main` builds this
        // before it installs a subscriber, and the warning would reach no log.
        self.settings.disabled = disabled;
        // Both are used in whole milliseconds: less than one is zero.
        let store_timeout = self.settings.store_timeout;
        if store_timeout < MILLISECOND {
            return Err(Error::Config(format!(
                "store_timeout is {store_timeout:?}, under 1 ms (zero where it is used): every \
                 store call that does not answer at once (any DynamoDB call) would fail; give the \
                 store time (default 10 s)"
            )));
        }
        let window = self.settings.in_progress_fallback;
        if window < MILLISECOND {
            return Err(Error::Config(format!(
                "in_progress_fallback is {window:?}, under 1 ms (zero where it is used): without \
                 a trusted deadline (Context::default(), an emulator) every in-progress record \
                 would expire at once and every concurrent duplicate would run; give it the \
                 function's timeout (default 15 minutes)"
            )));
        }
        if self
            .settings
            .key_prefix
            .as_deref()
            // Invisible characters alone are empty too, as for an operation name (found by an
            // attack from the docs: a zero-width space was taken).
            .is_some_and(powertools_core::text::displays_as_empty)
        {
            return Err(Error::Config(
                "key_prefix is empty (or white space and invisible characters alone): keys would \
                 start with `.`, shared by every function with such a prefix in the table; set a \
                 name, or leave it unset for the function's name"
                    .to_owned(),
            ));
        }
        if let Some(prefix) = self
            .settings
            .key_prefix
            .as_deref()
            .filter(|prefix| !crate::engine::readable_in_logs(prefix))
        {
            // Part of every key and of the lines that name one, as an operation name is, which
            // may not hold one either (found by attacks from the docs: `a\nb` was taken, and a
            // bidirectional override).
            return Err(Error::Config(format!(
                "key_prefix {} holds a control character, a line separator or a bidirectional \
                 formatting character: it is part of every key, and of every log line that names one; use printable characters",
                powertools_core::env::shown(prefix)
            )));
        }
        Ok(Idempotency {
            engine: Engine::new(self.store, self.settings),
        })
    }
}

/// Reports what an own error of a call is called (`IdempotencyAlreadyInProgressError`, a panic
/// caught), for what describes it outside without knowing its type: a batch processor whose
/// record handler returns the call's result as it is, a layer whose handler does
/// (`powertools_core::failure::report`). Nothing for a success or the function's own error.
/// [`IdempotencyLayer`](crate::IdempotencyLayer) reports its own the same way.
pub(crate) fn report_own<R, E>(result: &Result<R, Error<E>>) {
    if let Err(error) = result
        && let Some(reported) = error.reported()
    {
        powertools_core::failure::report(reported);
    }
}
