//! Keeping every line within what CloudWatch Logs accepts for one event.
//!
//! A line over the limit is read back into its members, and the largest value is cut, with a
//! visible marker, until the line fits: a string keeps its beginning, a structure keeps its shape
//! and has its largest string cut (or, when no string is large enough, becomes its own JSON text,
//! cut). `truncated_keys` lists the members that were cut. A line that still does not fit after a
//! few rounds (thousands of small members) keeps only its standard keys.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::json::{RESERVED_KEYS, write_str};

/// CloudWatch Logs takes at most 256 KiB (262,144 bytes) per event, 26 of them its own overhead;
/// the default limit leaves 2 KiB of room below that.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 - 2 * 1024;

/// The smallest limit that can be configured: room for the standard keys and a cut message.
pub const MIN_MAX_LINE_BYTES: usize = 1024;

/// The key that lists the members a line had cut.
pub(crate) const TRUNCATED_KEYS: &str = "truncated_keys";

/// How many values are cut before the line falls back to its standard keys.
const MAX_ROUNDS: usize = 16;

/// A member of a line: its key and value.
type Member = (String, Value);

/// The members of a line, in order, and the keys of those whose value nests deeper than
/// serde_json reads into a value (128 levels): each such value is its JSON text instead, as a
/// structure that is cut becomes. Each member is read apart from the others (a raw value is
/// scanned without a depth limit), so that one deep member does not take the line's other
/// members with it: the whole line failed to read, and was written as `{}`, every standard key
/// lost (found by an attack: a logged event 127 levels deep and over the line limit).
struct Members(Vec<Member>, Vec<String>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(24));
                let mut as_text = Vec::new();
                while let Some((key, raw)) =
                    map.next_entry::<String, Box<serde_json::value::RawValue>>()?
                {
                    let value = serde_json::from_str::<Value>(raw.get()).unwrap_or_else(|_| {
                        as_text.push(key.clone());
                        Value::String(raw.get().to_owned())
                    });
                    members.push((key, value));
                }
                Ok(Members(members, as_text))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// `line` (one JSON object and a newline) within `max` bytes, newline included.
pub(crate) fn bound(line: &[u8], max: usize) -> Cow<'_, [u8]> {
    if line.len() <= max {
        return Cow::Borrowed(line);
    }
    Cow::Owned(shrink(line, max))
}

/// The length of `text` as a JSON string, quotes included.
fn json_len(text: &str) -> usize {
    2 + text.chars().map(escaped_len).sum::<usize>()
}

fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn value_len(value: &Value) -> usize {
    match value {
        Value::String(text) => json_len(text),
        other => serde_json::to_vec(other).map_or(0, |json| json.len()),
    }
}

/// The beginning of `text` and a marker, at most `budget` bytes as a JSON string.
fn cut(text: &str, budget: usize) -> String {
    if json_len(text) <= budget {
        return text.to_owned();
    }
    let removed = |kept: usize| format!("...[truncated {} bytes]", text.len() - kept);
    // The marker is at most this long, whatever is removed.
    let marker_room = removed(0).len();
    let room = budget.saturating_sub(2 + marker_room);
    let mut kept = 0;
    let mut used = 0;
    for (index, c) in text.char_indices() {
        let width = escaped_len(c);
        if used + width > room {
            break;
        }
        used += width;
        kept = index + c.len_utf8();
    }
    let mut out = String::with_capacity(kept + marker_room);
    out.push_str(&text[..kept]);
    out.push_str(&removed(kept));
    out
}

/// Makes `value` at least `excess` bytes shorter (as JSON). `false` if it cannot be shortened.
fn shorten(value: &mut Value, excess: usize) -> bool {
    let size = value_len(value);
    match value {
        Value::String(text) => {
            let shorter = cut(text, size.saturating_sub(excess));
            // A value shorter than the marker cannot be shortened by cutting it.
            if json_len(&shorter) >= size {
                return false;
            }
            *text = shorter;
            true
        }
        Value::Object(_) | Value::Array(_) => {
            // Cut the largest string inside when that alone is enough, keeping the structure.
            if let Some(largest) = largest_string(value)
                && json_len(largest.as_str().unwrap_or_default()) > excess + 64
            {
                return shorten(largest, excess);
            }
            let text = serde_json::to_string(value).unwrap_or_default();
            let budget = size.saturating_sub(excess);
            *value = Value::String(cut(&text, budget));
            true
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => false,
    }
}

/// The longest string anywhere inside `value`.
fn largest_string(value: &mut Value) -> Option<&mut Value> {
    match value {
        Value::String(_) => Some(value),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(largest_string)
            .max_by_key(|found| value_len(found)),
        Value::Object(fields) => fields
            .values_mut()
            .filter_map(largest_string)
            .max_by_key(|found| value_len(found)),
        _ => None,
    }
}

fn member_len(key: &str, value_len: usize) -> usize {
    // `"key":value` and its comma.
    json_len(key) + 1 + value_len + 1
}

fn render(members: &[(String, Value)], truncated: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    for (index, (key, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(&mut out, key);
        out.push(b':');
        // Writing a JSON value into memory cannot fail.
        let _ = serde_json::to_writer(&mut out, value);
    }
    if !truncated.is_empty() {
        if !members.is_empty() {
            out.push(b',');
        }
        write_str(&mut out, TRUNCATED_KEYS);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, truncated);
    }
    out.extend_from_slice(b"}\n");
    out
}

/// Whether a member's value may be cut: not `level` or `timestamp` (Lambda reads them), a
/// string or a structure, and longer than its [`floor`].
fn cuttable(key: &str, value: &Value) -> bool {
    !matches!(key, "level" | "timestamp")
        && matches!(value, Value::String(_) | Value::Object(_) | Value::Array(_))
        && value_len(value) > floor(key)
}

/// The JSON length a standard key's value is never cut below (other than `message`'s): the
/// 128 bytes the last resort keeps of it, and its quotes. A line's business values are cut to
/// their markers before the ids that join it to its invocation and trace are touched (found by an
/// attack: thousands of appended keys had the request id cut to one character).
const STANDARD_FLOOR: usize = 128 + 2;

/// How short a member's value may be cut, as JSON: [`STANDARD_FLOOR`] for a standard key other
/// than `message`, nothing for the others.
fn floor(key: &str) -> usize {
    if key != "message" && is_standard(key) {
        STANDARD_FLOOR
    } else {
        0
    }
}

/// The size every cuttable value is cut to so that the line fits, sharing the room fairly: values
/// under it are kept whole, each value over it keeps the same length. `None` when even the
/// members that cannot be cut do not fit.
fn fair_cap(members: &[(String, Value)], sizes: &[usize], max: usize) -> Option<usize> {
    // `{`, `}`, the newline, `truncated_keys` with every cuttable key named in it, every key.
    let mut fixed = 3 + member_len(TRUNCATED_KEYS, 2);
    let mut cut_sizes = Vec::with_capacity(members.len());
    for ((key, value), size) in members.iter().zip(sizes) {
        let value_size = size - member_len(key, 0);
        fixed += member_len(key, 0);
        if cuttable(key, value) {
            fixed += json_len(key) + 1;
            cut_sizes.push(value_size);
        } else {
            fixed += value_size;
        }
    }
    let mut room = max.checked_sub(fixed)?;
    cut_sizes.sort_unstable();
    let count = cut_sizes.len();
    for (index, size) in cut_sizes.iter().enumerate() {
        let left = count - index;
        if size * left <= room {
            room -= size;
        } else {
            return Some(room / left);
        }
    }
    None
}

fn shrink(line: &[u8], max: usize) -> Vec<u8> {
    let (mut members, as_text) = match serde_json::from_slice::<Members>(line) {
        Ok(Members(members, as_text)) => (members, as_text),
        Err(_) => (Vec::new(), Vec::new()),
    };
    // The members the last resort keeps, as they are before any is cut: a round may cut the
    // invocation's ids to nothing when thousands of members share the room, and the last resort
    // has room for them whole.
    let mut sizes: Vec<usize> = members
        .iter()
        .map(|(key, value)| member_len(key, value_len(value)))
        .collect();
    let standard: Vec<Member> = members
        .iter()
        .filter(|(key, _)| is_standard(key))
        .cloned()
        .collect();
    // The other members the last resort may keep whole: only the small ones are copied (a large
    // one is only named), measured once with the rest.
    let others: Vec<Other> = members
        .iter()
        .zip(&sizes)
        .filter(|((key, _), _)| !is_standard(key) && key != TRUNCATED_KEYS)
        .map(|((key, value), size)| {
            if *size <= SMALL_MEMBER {
                Other::Small((key.clone(), value.clone()), *size)
            } else {
                Other::Large(name_cut(key, NAME_BYTES))
            }
        })
        .collect();
    // A value written as its text has been changed already: named, as a cut one is.
    let mut truncated: Vec<String> = as_text;
    // First every value over the fair share is cut to it; then, since structures turned into
    // text and markers are only estimated, the largest value is cut again until the line fits.
    if let Some(cap) = fair_cap(&members, &sizes, max) {
        for ((key, value), size) in members.iter_mut().zip(sizes.iter_mut()) {
            let value_size = *size - member_len(key, 0);
            let cap = cap.max(floor(key));
            if cuttable(key, value) && value_size > cap && shorten(value, value_size - cap) {
                if !truncated.contains(key) {
                    truncated.push(key.clone());
                }
                *size = member_len(key, value_len(value));
            }
        }
    }
    // `{`, `}`, the newline, and room for `truncated_keys`.
    let overhead = 3 + member_len(TRUNCATED_KEYS, 2);
    for _ in 0..MAX_ROUNDS {
        let names: usize = truncated.iter().map(|name| json_len(name) + 1).sum();
        let total = overhead + names + sizes.iter().sum::<usize>();
        if total <= max {
            let out = render(&members, &truncated);
            if out.len() <= max {
                return out;
            }
        }
        let Some((index, _)) = sizes
            .iter()
            .enumerate()
            .filter(|(index, _)| cuttable(&members[*index].0, &members[*index].1))
            .max_by_key(|(_, size)| **size)
        else {
            break;
        };
        let (key, value) = &mut members[index];
        // The marker and the key's name in `truncated_keys` take room too; a standard key is cut
        // no shorter than its floor (the next round takes the next largest value).
        let excess = (total.saturating_sub(max).max(1) + json_len(key) + 1)
            .min(value_len(value).saturating_sub(floor(key)));
        if !shorten(value, excess) {
            break;
        }
        if !truncated.contains(key) {
            truncated.push(key.clone());
        }
        sizes[index] = member_len(key, value_len(value));
    }
    last_resort(standard, others, max)
}

/// Whether the last resort keeps `key`: the message and the standard keys, `location` among
/// them (a standard key of Powertools' too; it comes after the fields, and thousands of them
/// pushed it out: found by an attack), and what a failure line says failed, `exception_name` and
/// `exception` (hundreds of appended keys left a failure line without them: found by an attack
/// from the docs). `stack_trace`, which can be long, is cut as the business values are.
fn is_standard(key: &str) -> bool {
    matches!(key, "message" | "location" | "exception_name" | "exception")
        || (RESERVED_KEYS.contains(&key) && key != TRUNCATED_KEYS)
}

/// The last resort: the standard keys, each short, then the line's other small members whole, in
/// order, within a quarter of the limit (a business key such as `order_id` survives thousands of
/// others, or one key with a huge name), and as much of the message as fits. `truncated_keys`
/// names the members left out (names cut to 64 bytes), the standard values cut to 128 bytes, and
/// `message` if it was cut, or is `["*"]` when they are too many to name.
fn last_resort(standard: Vec<Member>, others: Vec<Other>, max: usize) -> Vec<u8> {
    let mut extra: Vec<Member> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    let mut extra_room = max / 4;
    for other in others {
        match other {
            Other::Small(member, size) if size <= extra_room => {
                extra_room -= size;
                extra.push(member);
            }
            Other::Small((key, _), _) => left_out.push(name_cut(&key, NAME_BYTES)),
            Other::Large(name) => left_out.push(name),
        }
    }
    let mut kept: Vec<Member> = Vec::new();
    let mut message = String::new();
    for (key, value) in standard {
        if key == "message" {
            message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else if key != TRUNCATED_KEYS {
            let value = match value {
                // Named as every cut value is (a 600-byte `service` was cut without a word;
                // found by an audit from the docs).
                Value::String(text) if text.len() > 128 => {
                    left_out.push(name_cut(&key, NAME_BYTES));
                    Value::String(cut(&text, 128))
                }
                other => other,
            };
            kept.push((key, value));
        }
    }
    if !kept.iter().any(|(key, _)| key == "level") {
        kept.insert(0, ("level".to_owned(), Value::String("INFO".to_owned())));
    }
    let all = vec![ALL_KEYS_TRUNCATED.to_owned()];
    // The names, `message` last (it may be cut), or `*` when they would take too much room.
    let named = |left_out: &[String]| {
        let mut names = left_out.to_vec();
        names.push("message".to_owned());
        let room: usize = names.iter().map(|name| json_len(name) + 1).sum();
        if room <= max / 8 { names } else { all.clone() }
    };
    let mut truncated = named(&left_out);
    // Drop the other members, then standard keys from the end, until the message has some room,
    // then fill it.
    loop {
        let mut line = kept.clone();
        line.extend(extra.iter().cloned());
        let base = render(&line, &truncated).len() + member_len("message", 0);
        if base + 48 <= max || kept.len() <= 1 {
            let position = usize::from(line.first().is_some_and(|(key, _)| key == "level"));
            let budget = max.saturating_sub(base);
            let kept_message = cut(&message, budget);
            if kept_message == message && truncated.last().is_some_and(|name| name == "message") {
                // The message is whole: not named.
                truncated.pop();
            }
            line.insert(
                position,
                ("message".to_owned(), Value::String(kept_message)),
            );
            let out = render(&line, &truncated);
            if out.len() <= max {
                return out;
            }
            if kept.len() <= 1 {
                // Only a limit below MIN_MAX_LINE_BYTES gets here; the builder refuses those.
                return render(
                    &[("level".to_owned(), Value::String("WARN".to_owned()))],
                    &all,
                );
            }
        }
        if extra.is_empty() {
            kept.pop();
            truncated.clone_from(&all);
        } else {
            for (key, _) in extra.drain(..) {
                left_out.push(name_cut(&key, NAME_BYTES));
            }
            truncated = named(&left_out);
        }
    }
}

/// The largest member (key, value and comma) the last resort keeps whole.
const SMALL_MEMBER: usize = 1024;

/// How much of a left-out member's name `truncated_keys` gives.
const NAME_BYTES: usize = 64;

/// A member that is not a standard key, as the last resort sees it.
enum Other {
    /// Small enough to keep whole: the member and its size.
    Small(Member, usize),
    /// Too large to keep: its name, cut.
    Large(String),
}

/// `name` cut at a character boundary to at most `bytes` bytes.
fn name_cut(name: &str, bytes: usize) -> String {
    name[..powertools_core::text::floor_char_boundary(name, bytes)].to_owned()
}

/// A `truncated_keys` value naming every member: the line kept only its standard keys.
pub(crate) const ALL_KEYS_TRUNCATED: &str = "*";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    /// A member nested deeper than serde_json reads into a value (a logged event 127 levels
    /// deep is one level deeper in the line) no longer takes the line with it when the line is
    /// cut: it was written as `{}`, every standard key lost (found by an attack). Its value is
    /// its text, cut and named, and the other members are kept.
    #[test]
    fn a_member_nested_too_deep_to_read_back_keeps_the_line_s_keys() {
        let deep = format!("{}\"leaf\"{}", "[".repeat(140), "]".repeat(140));
        let line = format!(
            "{{\"level\":\"INFO\",\"timestamp\":\"2026-12-06T08:00:00.000Z\",\
             \"message\":\"order received\",\"function_request_id\":\"r-1\",\
             \"event\":{{\"deep\":{deep},\"note\":\"{}\"}},\"order_id\":\"o-1\"}}\n",
            "n".repeat(300_000)
        );
        let out = bound(line.as_bytes(), 4096);
        assert!(out.len() <= 4096, "{}", out.len());
        let value = parsed(&out);
        for (key, expected) in [
            ("level", "INFO"),
            ("message", "order received"),
            ("function_request_id", "r-1"),
            ("order_id", "o-1"),
        ] {
            assert_eq!(value[key], expected, "{value}");
        }
        assert!(value["event"].is_string(), "{value}");
        assert_eq!(value["truncated_keys"], json!(["event"]), "{value}");
    }

    #[test]
    fn a_line_within_the_limit_is_left_as_it_is() {
        let line = b"{\"level\":\"INFO\",\"message\":\"ok\"}\n";
        assert!(matches!(bound(line, 1024), Cow::Borrowed(_)));
    }

    #[test]
    fn the_largest_value_is_cut_with_a_marker_and_named() {
        let blob = "é".repeat(100_000);
        let line = render(
            &[
                ("level".into(), json!("INFO")),
                ("message".into(), json!("refund issued")),
                ("order_id".into(), json!("o-1")),
                ("blob".into(), json!(blob)),
            ],
            &[],
        );
        let out = bound(&line, 4096);
        assert!(out.len() <= 4096, "{}", out.len());
        let value = parsed(&out);
        assert_eq!(value["message"], "refund issued");
        assert_eq!(value["order_id"], "o-1");
        let cut = value["blob"].as_str().unwrap();
        assert!(cut.starts_with("éé"), "{cut}");
        assert!(
            cut.ends_with(" bytes]") && cut.contains("...[truncated "),
            "{cut}"
        );
        assert_eq!(value[TRUNCATED_KEYS], json!(["blob"]));
    }

    #[test]
    fn two_large_values_share_the_room() {
        let big = "a".repeat(50_000);
        let line = render(
            &[
                ("level".into(), json!("INFO")),
                ("message".into(), json!(big)),
                ("document".into(), json!(big)),
                ("order_id".into(), json!("o-1")),
            ],
            &[],
        );
        let out = bound(&line, 10_000);
        assert!(out.len() <= 10_000);
        let value = parsed(&out);
        let (message, document) = (
            value["message"].as_str().unwrap(),
            value["document"].as_str().unwrap(),
        );
        assert!(
            message.len() > 4_000 && document.len() > 4_000,
            "{} {}",
            message.len(),
            document.len()
        );
        assert_eq!(value["order_id"], "o-1");
        assert_eq!(value[TRUNCATED_KEYS], json!(["message", "document"]));
    }

    #[test]
    fn a_structure_keeps_its_shape_and_has_its_largest_string_cut() {
        let event =
            json!({"requestContext": {"http": {"method": "POST"}}, "body": "x".repeat(50_000)});
        let line = render(
            &[("level".into(), json!("INFO")), ("event".into(), event)],
            &[],
        );
        let value = parsed(&bound(&line, 2048));
        assert_eq!(value["event"]["requestContext"]["http"]["method"], "POST");
        assert!(
            value["event"]["body"]
                .as_str()
                .unwrap()
                .contains("...[truncated")
        );
        assert_eq!(value[TRUNCATED_KEYS], json!(["event"]));
    }

    /// A standard value the last resort cuts (to 128 bytes) is named in `truncated_keys`, as
    /// every cut value is: a 600-byte `service` and a long `correlation_id` were cut without a
    /// word (found by an audit from the docs).
    #[test]
    fn the_last_resort_names_the_standard_values_it_cuts() {
        let members = vec![
            ("level".to_owned(), json!("INFO")),
            ("message".to_owned(), json!("order received")),
            ("service".to_owned(), json!("s".repeat(600))),
            ("correlation_id".to_owned(), json!("c".repeat(300))),
            ("function_name".to_owned(), json!("orders")),
            ("n".repeat(5_000), json!(1)),
        ];
        let line = render(&members, &[]);
        let out = bound(&line, 4_096);
        assert!(out.len() <= 4_096);
        let value = parsed(&out);
        let named = value[TRUNCATED_KEYS].as_array().expect("names").clone();
        for cut in ["service", "correlation_id"] {
            assert!(named.contains(&json!(cut)), "{cut}: {value}");
        }
        assert!(!named.contains(&json!("function_name")), "{value}");
        assert_eq!(value["function_name"], "orders");
    }

    /// One member with a huge name (which no cut can shorten) or thousands of members made the
    /// line keep its standard keys alone: the business keys and `location` went, and
    /// `truncated_keys` said `["*"]`, naming nothing. The small members are kept now, and what
    /// was left out is named.
    #[test]
    fn the_last_resort_keeps_the_small_members_and_names_what_it_left_out() {
        let huge_name = "n".repeat(270_000);
        let members = vec![
            ("level".to_owned(), json!("INFO")),
            ("message".to_owned(), json!("order received")),
            ("timestamp".to_owned(), json!("2026-11-27T09:15:02.127Z")),
            ("service".to_owned(), json!("orders")),
            ("order_id".to_owned(), json!("o-1")),
            (huge_name.clone(), json!(1)),
            ("small".to_owned(), json!({"a": 1})),
            ("location".to_owned(), json!("orders_api::api:120")),
        ];
        let line = render(&members, &[]);
        let out = bound(&line, DEFAULT_MAX_LINE_BYTES);
        assert!(out.len() <= DEFAULT_MAX_LINE_BYTES);
        let value = parsed(&out);
        assert_eq!(value["order_id"], "o-1");
        assert_eq!(value["small"], json!({"a": 1}));
        assert_eq!(value["location"], "orders_api::api:120");
        assert_eq!(value["message"], "order received");
        assert_eq!(value[TRUNCATED_KEYS], json!([&huge_name[..64]]));

        // Thousands of members: those that fit in a quarter of the line are kept, in order.
        let mut members = vec![
            ("level".to_owned(), json!("INFO")),
            ("message".to_owned(), json!("many keys")),
            ("order_id".to_owned(), json!("o-2")),
        ];
        members.extend((0..12_000).map(|index| (format!("k{index}"), json!("value-value-value"))));
        members.push(("location".to_owned(), json!("orders_api::api:120")));
        let line = render(&members, &[]);
        let out = bound(&line, DEFAULT_MAX_LINE_BYTES);
        assert!(out.len() <= DEFAULT_MAX_LINE_BYTES);
        let value = parsed(&out);
        assert_eq!(value["order_id"], "o-2");
        assert_eq!(
            value["location"], "orders_api::api:120",
            "the code's location is a standard key, kept after thousands of others"
        );
        assert_eq!(value["k0"], "value-value-value");
        assert_eq!(
            value[TRUNCATED_KEYS],
            json!([ALL_KEYS_TRUNCATED]),
            "too many to name"
        );
    }

    /// A failure line that needs the last resort keeps what failed: `exception_name` and
    /// `exception` (cut to 128 bytes) come with the standard keys, before the business keys (500
    /// appended keys left a failure line of 1,207 bytes under a 2,048-byte limit without its
    /// `exception` while `key0`..`key13` were kept: found by an attack from the docs).
    #[test]
    fn a_failure_line_in_the_last_resort_keeps_what_failed() {
        for max in [MIN_MAX_LINE_BYTES, 2_048, 4_096] {
            let mut members = vec![
                ("level".to_owned(), json!("ERROR")),
                ("message".to_owned(), json!("Invocation failed")),
                ("timestamp".to_owned(), json!("2026-11-27T09:15:02.127Z")),
                ("service".to_owned(), json!("orders")),
                ("function_request_id".to_owned(), json!("req-1")),
            ];
            members.extend((0..500).map(|index| (format!("key{index}"), json!("value-value"))));
            members.push(("exception_name".to_owned(), json!("PaymentDeclined")));
            members.push((
                "exception".to_owned(),
                json!(format!("card declined: {}", "d".repeat(5_000))),
            ));
            members.push(("location".to_owned(), json!("payment::charge:42")));
            let line = render(&members, &[]);
            let out = bound(&line, max);
            assert!(out.len() <= max, "{max}: {}", out.len());
            let value = parsed(&out);
            assert_eq!(value["exception_name"], "PaymentDeclined", "{max}: {value}");
            let exception = value["exception"].as_str().expect("exception kept");
            assert!(
                exception.starts_with("card declined: ddd"),
                "{max}: {value}"
            );
            assert_eq!(value["message"], "Invocation failed");
            assert_eq!(value["function_request_id"], "req-1");
            assert_eq!(value["location"], "payment::charge:42", "{max}: {value}");
        }
    }

    #[test]
    fn thousands_of_small_members_leave_the_standard_keys() {
        let mut members = vec![
            ("level".to_owned(), json!("WARN")),
            ("message".to_owned(), json!("many keys")),
            ("timestamp".to_owned(), json!("2026-11-27T09:15:02.127Z")),
        ];
        members.extend((0..5_000).map(|index| (format!("key_{index}"), json!(index))));
        let line = render(&members, &[]);
        let out = bound(&line, 1024);
        assert!(out.len() <= 1024);
        let value = parsed(&out);
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["message"], "many keys");
        assert_eq!(value[TRUNCATED_KEYS], json!([ALL_KEYS_TRUNCATED]));
    }

    #[test]
    fn the_last_resort_keeps_the_standard_values_whole_not_as_the_rounds_cut_them() {
        // Thousands of small string members: the rounds cut every string to a few bytes, the
        // invocation's ids included, and still the line does not fit
        let request_id = "4ac1a1d3-1b2c-4d5e-8f90-123456789abc";
        let trace_id = "1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a";
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders";
        for (keys, max) in [
            (20_000, DEFAULT_MAX_LINE_BYTES),
            (5_000, 1024),
            (2_000, 4096),
        ] {
            let mut members = vec![
                ("level".to_owned(), json!("INFO")),
                ("message".to_owned(), json!("many keys")),
                ("function_arn".to_owned(), json!(arn)),
                ("function_request_id".to_owned(), json!(request_id)),
                ("xray_trace_id".to_owned(), json!(trace_id)),
            ];
            members.extend((0..keys).map(|index| (format!("k{index}"), json!("value-value"))));
            let line = render(&members, &[]);
            let out = bound(&line, max);
            assert!(out.len() <= max);
            let value = parsed(&out);
            // Then the ids that tie the line to its invocation are whole
            assert_eq!(
                value["function_request_id"], request_id,
                "{keys} keys, {max}"
            );
            assert_eq!(value["xray_trace_id"], trace_id, "{keys} keys, {max}");
            assert_eq!(value["message"], "many keys");
            assert_eq!(value[TRUNCATED_KEYS], json!([ALL_KEYS_TRUNCATED]));
            if max > 1024 {
                assert_eq!(value["function_arn"], arn);
            }
        }
    }

    #[test]
    fn the_rounds_cut_business_values_not_the_invocation_s_ids() {
        // (Found by an attack from the docs.) 6,000 appended keys of 100 bytes: cutting every
        // value to its marker fits the line, and the rounds cut the request id, the trace id and
        // the ARN to one character with them, so the line no longer joined its invocation
        let request_id = "4ac1a1d3-6b0e-4c63-a8f0-4e4d0c1a8b7e";
        let trace_id = "1-67a8f0e1-3f0c2b9d8e7a6b5c4d3e2f1a";
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders";
        for keys in [1_500, 3_000, 6_000] {
            let mut members = vec![
                ("level".to_owned(), json!("INFO")),
                ("message".to_owned(), json!("many keys")),
                ("service".to_owned(), json!("orders")),
                ("function_arn".to_owned(), json!(arn)),
                ("function_request_id".to_owned(), json!(request_id)),
                ("xray_trace_id".to_owned(), json!(trace_id)),
                ("correlation_id".to_owned(), json!("c".repeat(5_000))),
            ];
            members.extend((0..keys).map(|index| (format!("k{index}"), json!("v".repeat(100)))));
            let line = render(&members, &[]);
            let out = bound(&line, DEFAULT_MAX_LINE_BYTES);
            assert!(out.len() <= DEFAULT_MAX_LINE_BYTES);
            let value = parsed(&out);
            assert_eq!(value["function_request_id"], request_id, "{keys} keys");
            assert_eq!(value["xray_trace_id"], trace_id, "{keys} keys");
            assert_eq!(value["function_arn"], arn, "{keys} keys");
            assert_eq!(value["service"], "orders", "{keys} keys");
            assert_eq!(value["message"], "many keys", "{keys} keys");
            // A long standard value is cut no shorter than the last resort keeps it
            let correlation = value["correlation_id"].as_str().unwrap();
            assert!(
                correlation.starts_with(&"c".repeat(100)),
                "{keys} keys: {correlation}"
            );
        }
    }

    #[test]
    fn escapes_are_never_split() {
        let text = "\"\\\n\u{1}".repeat(10_000);
        let line = render(&[("message".into(), json!(text))], &[]);
        for max in [1024, 1025, 1026, 1027, 1028, 1029, 2000] {
            let out = bound(&line, max);
            assert!(out.len() <= max);
            assert!(parsed(&out)["message"].is_string());
        }
    }
}
