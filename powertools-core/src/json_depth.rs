//! How deep a JSON value nests, against what JSON readers take: the logging crate's appended
//! keys and the metrics crate's metadata are refused past [`MAX_VALUE_DEPTH`].
//!
//! Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
//!
//! ```
//! use powertools_core::json_depth::nests_deeper_than;
//!
//! let value = serde_json::json!({"a": [[1]]});
//! assert!(nests_deeper_than(&value, 2) && !nests_deeper_than(&value, 3));
//! ```

use serde_json::Value;

/// The deepest a value in a JSON document that is an object (a log line, an EMF document) may
/// nest: serde_json reads documents nested at most 127 levels deep (`recursion limit exceeded`
/// at 128), and the document's own object is one of them. An appended log key nested 127 levels
/// made a line that `serde_json` (and every tool built on it) could not read (found by an
/// attack from the docs: the limit was 128, counted with the line left out).
pub const MAX_VALUE_DEPTH: usize = 126;

/// Whether `value` nests arrays and objects more than `limit` levels deep (an empty one counts:
/// `[[]]` is two). Walked without recursion.
pub fn nests_deeper_than(value: &Value, limit: usize) -> bool {
    /// The values an array or an object holds, without an allocation per level (the walk runs
    /// on each logged event).
    enum Children<'v> {
        Array(std::slice::Iter<'v, Value>),
        Object(serde_json::map::Values<'v>),
    }
    impl<'v> Iterator for Children<'v> {
        type Item = &'v Value;
        fn next(&mut self) -> Option<&'v Value> {
            match self {
                Children::Array(items) => items.next(),
                Children::Object(members) => members.next(),
            }
        }
    }
    fn children(value: &Value) -> Option<Children<'_>> {
        match value {
            Value::Array(items) => Some(Children::Array(items.iter())),
            Value::Object(members) => Some(Children::Object(members.values())),
            _ => None,
        }
    }
    let Some(top) = children(value) else {
        return false;
    };
    if limit == 0 {
        return true;
    }
    // One iterator per open level: the stack's length is the depth of the values it yields.
    let mut open = vec![top];
    while let Some(level) = open.last_mut() {
        match level.next() {
            Some(child) => {
                if let Some(grandchildren) = children(child) {
                    if open.len() >= limit {
                        return true;
                    }
                    open.push(grandchildren);
                }
            }
            None => {
                open.pop();
            }
        }
    }
    false
}
