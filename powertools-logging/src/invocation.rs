//! What one invocation adds to its lines.

use std::sync::{Mutex, MutexGuard, PoisonError};

use powertools_core::Invocation;
use serde_json::Value;

use crate::buffer::LogBuffer;
use crate::json::write_str;

/// The per-invocation state: read by every line the invocation writes, from any task. Its keys
/// are in its [`Scope`](crate::scope::Scope)s.
#[derive(Debug)]
pub(crate) struct InvocationState {
    /// The Lambda context keys, rendered once as JSON members (`"key":value,…`).
    pub(crate) lambda_members: Vec<u8>,
    /// Where the request id's text is in `lambda_members` (escaped, without its quotes), for
    /// [`is_for`](Self::is_for) without a copy of it.
    request_id: std::ops::Range<usize>,
    /// Whether this invocation was drawn for `DEBUG` by the sampling rate.
    pub(crate) debug_sampled: bool,
    pub(crate) buffer: Option<Mutex<LogBuffer>>,
    /// The incoming event, when `log_event` is on, for the invocation-event line.
    pub(crate) event: Option<Value>,
}

/// JSON members written one after the other, comma-separated.
struct LambdaMembers(Vec<u8>);

impl LambdaMembers {
    /// `"key":json`; `key` is one of the fixed names below, which need no escaping.
    fn raw(&mut self, key: &str, json: &str) {
        if !self.0.is_empty() {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
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
        // Sized for what is written, so that it is never copied to grow: the fixed keys and
        // punctuation take under 200 bytes, and the values seldom need escaping.
        let values = [
            invocation.function_name(),
            invocation.function_arn(),
            invocation.request_id(),
            invocation.function_version(),
            invocation.xray_trace_header().unwrap_or_default(),
            invocation.tenant_id().unwrap_or_default(),
        ];
        let capacity = 200 + values.iter().map(|value| value.len()).sum::<usize>();
        let mut members = LambdaMembers(Vec::with_capacity(capacity));
        members.raw("cold_start", if cold_start { "true" } else { "false" });
        members.text("function_name", invocation.function_name());
        if let Some(memory) = invocation.memory_size_mb() {
            members.raw("function_memory_size", itoa::Buffer::new().format(memory));
        }
        members.text("function_arn", invocation.function_arn());
        members.raw("function_request_id", "");
        // The id's text, between the quotes `write_str` puts around it.
        let id_start = members.0.len() + 1;
        write_str(&mut members.0, invocation.request_id());
        let request_id = id_start..members.0.len() - 1;
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
            request_id,
            debug_sampled,
            buffer: buffer_bytes.map(|bytes| Mutex::new(LogBuffer::new(bytes))),
            event,
        }
    }

    /// Whether this is the invocation of `request_id` (a request id that needs escaping in JSON,
    /// which Lambda's never do, is never found).
    pub(crate) fn is_for(&self, request_id: &str) -> bool {
        self.lambda_members.get(self.request_id.clone()) == Some(request_id.as_bytes())
    }

    pub(crate) fn buffer(&self) -> Option<MutexGuard<'_, LogBuffer>> {
        self.buffer
            .as_ref()
            .map(|buffer| buffer.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
