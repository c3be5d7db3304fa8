use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::record::DataRecord;

/// Name of the kill switch variable: when truthy, handlers run without idempotency, and the first
/// invocation through each built [`Idempotency`](crate::Idempotency) logs a warning that says so.
pub const POWERTOOLS_IDEMPOTENCY_DISABLED: &str = "POWERTOOLS_IDEMPOTENCY_DISABLED";

/// The default idempotency window.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(3600);

/// The default number of records the local cache holds.
pub const DEFAULT_LOCAL_CACHE_MAX_ITEMS: usize = 256;

/// The largest record the engine writes: DynamoDB's item size limit (400 KB).
pub const MAX_ITEM_SIZE: usize = 400 * 1024;

/// The in-progress window used when the invocation's deadline cannot be trusted: Lambda's
/// maximum timeout, so no invocation can still be running when it ends.
pub const DEFAULT_IN_PROGRESS_FALLBACK: Duration = Duration::from_secs(15 * 60);

/// The longest time one call to the store may take before the invocation fails with
/// [`Error::Persistence`](crate::Error::Persistence). With a deadline from Lambda, each call is
/// also bounded by the invocation's remaining time, which is the bound that usually applies;
/// this one covers long invocations and deadlines that can't be trusted.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The operation name of [`IdempotencyLayer`](crate::IdempotencyLayer) unless
/// [`operation`](crate::IdempotencyLayer::operation) names another.
pub const DEFAULT_LAYER_OPERATION: &str = "handler";

/// A typed replay hook: runs on replays whose response type is `R`.
pub(crate) struct ReplayHook {
    /// `Box<dyn Fn(&mut R, &DataRecord) + Send + Sync>` for one `R`.
    hook: Box<dyn Any + Send + Sync>,
    pub(crate) type_id: std::any::TypeId,
    response_type: &'static str,
}

type HookFn<R> = dyn Fn(&mut R, &DataRecord) + Send + Sync;
type TypedHook<R> = Box<HookFn<R>>;

impl ReplayHook {
    pub(crate) fn new<R: 'static>(
        hook: impl Fn(&mut R, &DataRecord) + Send + Sync + 'static,
    ) -> Self {
        let typed: TypedHook<R> = Box::new(hook);
        ReplayHook {
            hook: Box::new(typed),
            type_id: std::any::TypeId::of::<R>(),
            response_type: std::any::type_name::<R>(),
        }
    }

    /// The hook, if it is for responses of type `R`.
    pub(crate) fn for_type<R: 'static>(&self) -> Option<&HookFn<R>> {
        self.hook.downcast_ref::<TypedHook<R>>().map(|hook| &**hook)
    }
}

/// Settings shared by the layer and the function-level API.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) expires_after: Duration,
    pub(crate) raise_on_missing_key: bool,
    pub(crate) key_prefix: Option<String>,
    pub(crate) local_cache_max_items: Option<usize>,
    /// One hook per response type: the latest registered for a type replaces the earlier.
    pub(crate) replay_hooks: Vec<Arc<ReplayHook>>,
    pub(crate) in_progress_fallback: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) disabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expires_after: DEFAULT_EXPIRES_AFTER,
            raise_on_missing_key: false,
            key_prefix: None,
            local_cache_max_items: None,
            replay_hooks: Vec::new(),
            in_progress_fallback: DEFAULT_IN_PROGRESS_FALLBACK,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            disabled: false,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("expires_after", &self.expires_after)
            .field("raise_on_missing_key", &self.raise_on_missing_key)
            .field("key_prefix", &self.key_prefix)
            .field("local_cache_max_items", &self.local_cache_max_items)
            .field(
                "replay_hooks",
                &self
                    .replay_hooks
                    .iter()
                    .map(|hook| hook.response_type)
                    .collect::<Vec<_>>(),
            )
            .field("in_progress_fallback", &self.in_progress_fallback)
            .field("store_timeout", &self.store_timeout)
            .field("disabled", &self.disabled)
            .finish()
    }
}
