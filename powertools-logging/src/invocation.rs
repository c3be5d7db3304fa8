//! What one invocation adds to its lines, and how a line finds its invocation.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use powertools_core::Invocation;
use serde_json::Value;

use crate::buffer::LogBuffer;
use crate::json::write_str;

tokio::task_local! {
    static CURRENT: Arc<InvocationState>;
}

/// The name of the span [`LoggingLayer`](crate::LoggingLayer) opens around each invocation; the
/// JSON layer attaches the invocation to it, so a task spawned with `.in_current_span()` logs with
/// the invocation's keys too.
pub(crate) const INVOCATION_SPAN: &str = "lambda_invocation";

/// The per-invocation state: read by every line the invocation writes, from any task.
#[derive(Debug)]
pub(crate) struct InvocationState {
    /// The Lambda context keys, rendered once as JSON members (`"key":value,…`).
    pub(crate) lambda_members: Vec<u8>,
    pub(crate) keys: Mutex<Vec<(String, Value)>>,
    pub(crate) correlation_id: Mutex<Option<String>>,
    /// Whether this invocation was drawn for `DEBUG` by the sampling rate.
    pub(crate) debug_sampled: bool,
    pub(crate) buffer: Option<Mutex<LogBuffer>>,
    /// The incoming event, when `log_event` is on, for the invocation-event line.
    pub(crate) event: Option<Value>,
}

/// JSON members written one after the other, comma-separated.
struct LambdaMembers(Vec<u8>);

impl LambdaMembers {
    fn raw(&mut self, key: &str, json: &str) {
        if !self.0.is_empty() {
            self.0.push(b',');
        }
        write_str(&mut self.0, key);
        self.0.push(b':');
        self.0.extend_from_slice(json.as_bytes());
    }

    fn text(&mut self, key: &str, value: &str) {
        self.raw(key, "");
        write_str(&mut self.0, value);
    }
}

impl InvocationState {
    pub(crate) fn new(
        invocation: &Invocation<'_>,
        cold_start: bool,
        debug_sampled: bool,
        buffer_bytes: Option<usize>,
        event: Option<Value>,
    ) -> Self {
        // Rendered once per invocation, as one run of members that every line copies.
        let mut members = LambdaMembers(Vec::with_capacity(256));
        members.raw("cold_start", if cold_start { "true" } else { "false" });
        members.text("function_name", invocation.function_name());
        if let Some(memory) = invocation.memory_size_mb() {
            members.raw("function_memory_size", itoa::Buffer::new().format(memory));
        }
        members.text("function_arn", invocation.function_arn());
        members.text("function_request_id", invocation.request_id());
        members.text("function_version", invocation.function_version());
        if let Some(trace_id) = invocation.xray_root_trace_id() {
            members.text("xray_trace_id", trace_id);
        }
        if let Some(tenant_id) = invocation.tenant_id() {
            members.text("tenant_id", tenant_id);
        }
        let lambda_members = members.0;
        InvocationState {
            lambda_members,
            keys: Mutex::new(Vec::new()),
            correlation_id: Mutex::new(None),
            debug_sampled,
            buffer: buffer_bytes.map(|bytes| Mutex::new(LogBuffer::new(bytes))),
            event,
        }
    }

    pub(crate) fn keys(&self) -> MutexGuard<'_, Vec<(String, Value)>> {
        // Each critical section is one map operation: a panic cannot leave it half done.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn correlation_id(&self) -> MutexGuard<'_, Option<String>> {
        self.correlation_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn buffer(&self) -> Option<MutexGuard<'_, LogBuffer>> {
        self.buffer
            .as_ref()
            .map(|buffer| buffer.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn current() -> Option<Arc<InvocationState>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    pub(crate) fn with_current<R>(f: impl FnOnce(&InvocationState) -> R) -> Option<R> {
        CURRENT.try_with(|state| f(state)).ok()
    }

    pub(crate) async fn scope<F: Future>(self: Arc<Self>, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    pub(crate) fn in_scope<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}
