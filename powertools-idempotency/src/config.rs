use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::record::DataRecord;

/// Name of the kill switch variable: when truthy, handlers run without idempotency.
pub const POWERTOOLS_IDEMPOTENCY_DISABLED: &str = "POWERTOOLS_IDEMPOTENCY_DISABLED";

/// The default idempotency window.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(3600);

/// The default number of records the local cache holds.
pub const DEFAULT_LOCAL_CACHE_MAX_ITEMS: usize = 256;

/// The largest record the engine writes: DynamoDB's item size limit (400 KB).
pub const MAX_ITEM_SIZE: usize = 400 * 1024;

/// A hook that runs on replays only, on the stored response as JSON, before it is deserialized
/// into the handler's response type (for example to add an `x-idempotent-replay` header).
pub type ReplayHook = Arc<dyn Fn(&mut Value, &DataRecord) + Send + Sync>;

/// Settings shared by the layer and the function-level API.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) expires_after: Duration,
    pub(crate) raise_on_missing_key: bool,
    pub(crate) key_prefix: Option<String>,
    pub(crate) handler_name: Option<String>,
    pub(crate) local_cache_max_items: Option<usize>,
    pub(crate) replay_hook: Option<ReplayHook>,
    pub(crate) disabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expires_after: DEFAULT_EXPIRES_AFTER,
            raise_on_missing_key: false,
            key_prefix: None,
            handler_name: None,
            local_cache_max_items: None,
            replay_hook: None,
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
            .field("handler_name", &self.handler_name)
            .field("local_cache_max_items", &self.local_cache_max_items)
            .field("replay_hook", &self.replay_hook.as_ref().map(|_| ".."))
            .field("disabled", &self.disabled)
            .finish()
    }
}
