use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::Context;
use powertools_core::env::Env;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{DEFAULT_LOCAL_CACHE_MAX_ITEMS, POWERTOOLS_IDEMPOTENCY_DISABLED, Settings};
use crate::engine::{Claim, Engine};
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
/// let first: String = idempotency.run(&context, "pay-1".to_owned(), charge).await?;
/// let replay: String = idempotency
///     .run(&context, "pay-1".to_owned(), |_: String| async { unreachable!("not charged twice") })
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
    /// The key is the argument's canonical JSON; `context` gives the in-progress deadline and the
    /// tenant.
    ///
    /// # Errors
    /// The function's own error as [`Error::Handler`], or what the idempotency protocol found
    /// (already in progress, store failure, …).
    pub async fn run<A, R, E, F, Fut>(
        &self,
        context: &Context,
        argument: A,
        function: F,
    ) -> Result<R, Error<E>>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let key_data = to_json(&argument, "argument").map_err(Error::into_handler_error)?;
        self.run_keyed(context, key_data, None, || function(argument))
            .await
    }

    /// Runs `function` at most once per `key_data` within the window, with optional payload
    /// validation data (a duplicate whose validation data differs gets
    /// [`Error::PayloadMismatch`]).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_keyed<R, E, F, Fut>(
        &self,
        context: &Context,
        key_data: Value,
        validation_data: Option<Value>,
        function: F,
    ) -> Result<R, Error<E>>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let claim = Claim {
            key_data: Some(key_data),
            validation_data,
        };
        self.engine.run(context, claim, function).await
    }

    /// The idempotency key that `key_data` gets in `context`'s invocation (for inspecting or
    /// seeding records; the layer and [`run`](Self::run) compute it themselves).
    pub fn key_for(&self, context: &Context, key_data: &Value) -> String {
        self.engine.key_for(context, key_data.clone())
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.engine.store
    }
}

/// Builder of [`Idempotency`].
#[derive(Debug)]
#[must_use]
pub struct IdempotencyBuilder<St> {
    store: St,
    settings: Settings,
    env: Env,
}

impl<St: IdempotencyStore> IdempotencyBuilder<St> {
    /// How long a completed response is replayed (default one hour).
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

    /// Sets the key prefix explicitly, so that renaming the function or the handler never changes
    /// the keys (default: the function name, then `.handler_name` if set).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = Some(prefix.into());
        self
    }

    /// Adds a handler name to the default key prefix (`<function name>.<handler name>`), so that
    /// two idempotent operations in one function never share keys.
    pub fn handler_name(mut self, name: impl Into<String>) -> Self {
        self.settings.handler_name = Some(name.into());
        self
    }

    /// Keeps completed records in an in-memory LRU of `max_items` (Powertools' default is 256:
    /// [`DEFAULT_LOCAL_CACHE_MAX_ITEMS`]), so a duplicate in the same execution environment is
    /// answered with no store call. Zero turns the cache off.
    pub fn local_cache(mut self, max_items: usize) -> Self {
        self.settings.local_cache_max_items = Some(max_items);
        self
    }

    /// Turns the local cache on with [`DEFAULT_LOCAL_CACHE_MAX_ITEMS`] items.
    pub fn use_local_cache(self) -> Self {
        self.local_cache(DEFAULT_LOCAL_CACHE_MAX_ITEMS)
    }

    /// Runs `hook` on replays only, on the stored response as JSON before it is deserialized
    /// (for example to add an `x-idempotent-replay` header to an HTTP response).
    pub fn on_replay(
        mut self,
        hook: impl Fn(&mut Value, &DataRecord) + Send + Sync + 'static,
    ) -> Self {
        self.settings.replay_hook = Some(Arc::new(hook));
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
    /// [`Error::Config`] when `POWERTOOLS_IDEMPOTENCY_DISABLED` is malformed.
    pub fn build(mut self) -> Result<Idempotency<St>, Error> {
        let disabled = self
            .env
            .bool(POWERTOOLS_IDEMPOTENCY_DISABLED)
            .map_err(|error| Error::Config(error.to_string()))?
            .unwrap_or(false);
        if disabled {
            tracing::warn!(
                "{POWERTOOLS_IDEMPOTENCY_DISABLED} is set: handlers run without idempotency. \
                 This is intended for development environments only."
            );
        }
        self.settings.disabled = disabled;
        Ok(Idempotency {
            engine: Engine::new(self.store, self.settings),
        })
    }
}
