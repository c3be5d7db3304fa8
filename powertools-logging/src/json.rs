//! Writing one log line: JSON escaping, flat keys written once, redaction, `tracing` field values.

use std::cell::Cell;
use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};

use powertools_core::error_chain::{self, display_text};
use powertools_core::json_escape::first_escape;
use powertools_core::thread_buffer;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use tracing::field::{Field, Visit};

/// What a redacted value is replaced with, as in Powertools' data masking.
pub const REDACTED: &str = "*****";

/// The keys whose values are masked by default, wherever they appear in a line (a field, a
/// business key, a key nested in a logged event). Compared without case and without `-` and
/// `_`, so that each spelling of the words is masked: `card_number`, `card-number`,
/// `cardNumber`.
pub const DEFAULT_REDACTED_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "x_api_key",
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    // The session token of a SigV4-signed request, and the AWS credentials' own names.
    "x_amz_security_token",
    "aws_session_token",
    "aws_secret_access_key",
    // HTTP API (v2) events and function URLs carry the request's cookies here, not in a header.
    "cookies",
    "card_number",
    "cvv",
    "cvc",
];

/// The keys the line itself writes. A field (of the event or of a span) with one of these names
/// is written as [`RESERVED_PREFIX`] + its name (`extra_level`), so that neither is lost;
/// [`append_key`](crate::append_key) refuses them. `location` is not among them: a business
/// `location` (a shop, a region) replaces the code location, as Powertools for Python lets it.
pub(crate) const RESERVED_KEYS: &[&str] = &[
    "level",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "function_version",
    "xray_trace_id",
    "tenant_id",
    "correlation_id",
    "sampling_rate",
    crate::truncate::TRUNCATED_KEYS,
];

/// The keys of an invocation's failure line (`exception_name`, `exception`, `stack_trace`):
/// refused as appended and persistent keys, which would put them on every line (a Logs Insights
/// query for failures, `ispresent(exception)`, would match them all) and hide the real exception
/// on the failure line. An event's field of that name is written as it is (`error!(exception =
/// …)` is how a handler logs one); a span's is prefixed, as it is on every line in the span.
pub(crate) const FAILURE_KEYS: &[&str] = &["exception_name", "exception", "stack_trace"];

/// What a field named like a standard key is written under: `level` becomes `extra_level`.
pub const RESERVED_PREFIX: &str = "extra_";

/// Decides which keys are masked.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    /// The keys as whole keys are compared: [`normalize`]d (`cardnumber`).
    keys: Vec<String>,
    /// The keys as text is searched for them: lowercase, `-` as `_` (`card_number`), where a
    /// `_` stands for any run of separators or none, and nothing else may come between letters
    /// (`recv_count` does not name `cvc`).
    spelled: Vec<String>,
    /// The first bytes of the keys, one bit per byte value's low six bits: a key whose first
    /// letter has no bit is no masked key, which most of a line's keys are told by one test.
    first_bytes: u64,
    /// The longest masked key, in bytes as compared (`awssecretaccesskey`): a dotted name's
    /// trailing parts are compared only up to a few times this long.
    longest: usize,
    /// The masked keys among [`DEFAULT_REDACTED_KEYS`], which also mask a name whose last words
    /// they are ([`masks`](Self::masks)); `None` when there are none.
    by_last_words: Option<Box<Redactor>>,
    /// The last two letters of the keys, as compared: bit `last % 32` of entry
    /// `second_last % 32`. A name whose folded end has no bit ends in no masked key, which
    /// most names (`order_id`, `status`, `created_at`) are told by one test.
    last_pairs: [u32; 32],
}

impl Redactor {
    /// The redactor that masks nothing.
    pub(crate) fn none() -> Self {
        Redactor::new(std::iter::empty::<&str>())
    }

    pub(crate) fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Self {
        let mut redactor = Redactor::matching(keys);
        let defaults: Vec<&str> = DEFAULT_REDACTED_KEYS
            .iter()
            .copied()
            .filter(|default| redactor.keys.contains(&normalize(default)))
            .collect();
        if !defaults.is_empty() {
            redactor.by_last_words = Some(Box::new(Redactor::matching(defaults)));
        }
        redactor
    }

    /// A redactor of `keys`, none of which masks by last words.
    fn matching<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Self {
        // A key of separators alone would match every key of separators alone: left out.
        let (keys, spelled): (Vec<String>, Vec<String>) = keys
            .into_iter()
            .map(|key| (normalize(key.as_ref()), spelled(key.as_ref())))
            .filter(|(key, _)| !key.is_empty())
            .unzip();
        let first_bytes = keys
            .iter()
            .filter_map(|key| key.bytes().next())
            .fold(0, |bits, byte| bits | first_byte_bit(byte));
        let longest = keys.iter().map(String::len).max().unwrap_or(0);
        let mut last_pairs = [0_u32; 32];
        for key in &keys {
            if let [.., second_last, last] = key.as_bytes() {
                last_pairs[usize::from(second_last % 32)] |= 1 << (last % 32);
            }
        }
        Redactor {
            keys,
            spelled,
            first_bytes,
            longest,
            by_last_words: None,
            last_pairs,
        }
    }

    /// Whether `key`'s value is masked: `key` is a masked key in any spelling, or a dotted name
    /// (`tracing`'s nesting, OpenTelemetry's conventions: `db.password`,
    /// `http.request.header.authorization`, `payment.card.number`) whose last parts are one, or a
    /// name whose last words, joined by `_`, `-` or a capital, are one of the default keys
    /// (`db_password`, `stripe_api_key`, `userPassword`: found by an attack from the docs,
    /// written in clear). Not a key the caller added: `id` would mask every `order_id`.
    pub(crate) fn masks(&self, key: &str) -> bool {
        self.masks_whole(key)
            || self
                .trailing_parts(key)
                .any(|parts| self.masks_whole(parts))
            || self
                .by_last_words
                .as_deref()
                .is_some_and(|defaults| defaults.masks_last_words(key))
    }

    /// Whether `key`'s last words ([`trailing_words`](Self::trailing_words)) are a masked key.
    /// An ASCII name's end is folded once, from its last byte back, and compared at each word's
    /// start (each line asks it of each of its keys: comparing every trailing word whole cost
    /// about 600 instructions per invocation); a name beyond ASCII there compares each word as
    /// a whole key is compared, in Unicode's lowercase.
    fn masks_last_words(&self, key: &str) -> bool {
        let bytes = key.as_bytes();
        let lowest = self.lowest_word_start(bytes);
        let mut reversed = [0_u8; 64];
        if bytes.len() <= lowest
            || bytes.len() - lowest > reversed.len()
            || !bytes[lowest - 1..].is_ascii()
        {
            return self
                .trailing_words(key)
                .any(|words| self.masks_whole(words));
        }
        // The folded end's last two letters first: most names end in no masked key.
        let mut letters = bytes
            .iter()
            .rev()
            .filter(|byte| !is_key_separator(**byte))
            .map(u8::to_ascii_lowercase);
        let (Some(last), Some(second_last)) = (letters.next(), letters.next()) else {
            // Every masked key has at least three letters.
            return false;
        };
        if self.last_pairs[usize::from(second_last % 32)] & (1 << (last % 32)) == 0 {
            return false;
        }
        let mut len = 0;
        for start in (lowest..bytes.len()).rev() {
            let byte = bytes[start];
            if !is_key_separator(byte) {
                reversed[len] = byte.to_ascii_lowercase();
                len += 1;
            }
            if len > 0
                && is_word_start(bytes, start)
                && self.keys.iter().any(|masked| {
                    masked.len() == len && masked.bytes().rev().eq(reversed[..len].iter().copied())
                })
            {
                return true;
            }
        }
        false
    }

    /// The trailing parts of a dotted name that could spell a masked key (`card.number` of
    /// `payment.card.number`): after each dot, from the last, while no longer than twice the
    /// longest masked key and its separators. A name of thousands of dots (an attacker's JSON
    /// key) is not compared suffix by suffix in full (found by a review: 100 KB took 23 s).
    fn trailing_parts<'k>(&self, key: &'k str) -> impl Iterator<Item = &'k str> {
        let bound = self.longest_suffix();
        key.rmatch_indices('.')
            .map(move |(dot, _)| &key[dot + 1..])
            .take_while(move |parts| parts.len() <= bound)
    }

    /// The most bytes a trailing part or word that could spell a masked key has: twice the
    /// longest masked key and its separators.
    fn longest_suffix(&self) -> usize {
        2 * self.longest + 8
    }

    /// Where in `bytes` (a name) the last words that could spell a masked key may start: within
    /// [`longest_suffix`](Self::longest_suffix) of its end, and never at its first byte (a
    /// word's start is told by the byte before it).
    fn lowest_word_start(&self, bytes: &[u8]) -> usize {
        bytes.len().saturating_sub(self.longest_suffix()).max(1)
    }

    /// The trailing words of a name that could spell a masked key (`api_key` of
    /// `stripe_api_key`, `Password` of `userPassword` and of `DBPassword`): from each word's
    /// start (after a `.`, `_` or `-`; a capital after a small letter, a digit or a letter
    /// beyond ASCII; the last capital of a run of them before a small letter), from the last,
    /// while no longer than twice the longest masked key and its separators, as
    /// [`trailing_parts`](Self::trailing_parts).
    fn trailing_words<'k>(&self, key: &'k str) -> impl Iterator<Item = &'k str> {
        let bytes = key.as_bytes();
        let lowest = self.lowest_word_start(bytes);
        (lowest..bytes.len())
            .rev()
            .filter(move |&start| is_word_start(bytes, start))
            .map(move |start| &key[start..])
    }

    /// Whether `key`, its dots read as separators, is a masked key in any spelling.
    fn masks_whole(&self, key: &str) -> bool {
        !self.keys.is_empty()
            && (self.masks_ascii_spelling(key.as_bytes())
                // A key that is not ASCII, in Unicode's lowercase: `contraseña` for a masked
                // `CONTRASEÑA`, and `token` for an ASCII masked key spelled with the Kelvin
                // sign (U+212A), whose lowercase is `k`.
                || (!key.is_ascii() && {
                    let key = normalize(key);
                    self.keys.contains(&key)
                }))
    }

    /// Whether `key`, its ASCII letters lowercase and its separators left out, is a masked key.
    /// Every line asks it of each of its keys: a key up to 64 bytes is folded once onto the
    /// stack and compared whole with each masked key (most differ in length), a longer one
    /// compared letter by letter.
    fn masks_ascii_spelling(&self, key: &[u8]) -> bool {
        let first = key.iter().copied().find(|&byte| !is_key_separator(byte));
        if first
            .is_some_and(|byte| self.first_bytes & first_byte_bit(byte.to_ascii_lowercase()) == 0)
        {
            return false;
        }
        let mut folded = [0_u8; 64];
        if key.len() > folded.len() {
            return self
                .keys
                .iter()
                .any(|masked| same_key(masked.as_bytes(), key));
        }
        let mut len = 0;
        for &byte in key {
            folded[len] = byte.to_ascii_lowercase();
            len += usize::from(!is_key_separator(byte));
        }
        let folded = &folded[..len];
        self.keys.iter().any(|masked| masked.as_bytes() == folded)
    }

    /// Whether `text` holds a key spelled in another Unicode case than the key's (`CONTRASEÑA`
    /// for `contraseña`), which the byte search does not see.
    fn mentioned_in_unicode_case(&self, text: &[u8]) -> bool {
        // Any text that is not ASCII: its Unicode lowercase may spell an ASCII key too (the
        // Kelvin sign lowercases to `k`).
        if text.is_ascii() {
            return false;
        }
        let lowercase: String = String::from_utf8_lossy(text)
            .chars()
            .flat_map(char::to_lowercase)
            .collect();
        self.spelled
            .iter()
            .any(|key| find_spelled(lowercase.as_bytes(), key.as_bytes()).is_some())
    }
}

/// A key as it is compared: lowercase (Unicode's), without `-` and `_` (the words of
/// `card_number`, `card-number` and `cardNumber` alike). For an ASCII key, what
/// `Redactor::masks_ascii_spelling` folds it into.
fn normalize(key: &str) -> String {
    key.chars()
        .flat_map(char::to_lowercase)
        .filter(|&c| c != '-' && c != '_' && c != '.')
        .collect()
}

/// `byte`'s bit in [`Redactor::first_bytes`]: byte values 64 apart share one, which only lets
/// more keys on to the comparison.
fn first_byte_bit(byte: u8) -> u64 {
    1 << (byte & 63)
}

fn is_separator(byte: u8) -> bool {
    byte == b'-' || byte == b'_'
}

/// Whether a word of a name starts at `start` (at least 1): after a `.`, `_` or `-`; at a
/// capital after a small letter, a digit or a letter beyond ASCII; at the last capital of a run
/// of them before a small letter (`DBPassword`, `CSRFToken`: found by a review). `start` follows
/// an ASCII byte or is one: a character boundary either way.
fn is_word_start(bytes: &[u8], start: usize) -> bool {
    let (before, at) = (bytes[start - 1], bytes[start]);
    matches!(before, b'.' | b'_' | b'-')
        || (at.is_ascii_uppercase()
            && (before.is_ascii_lowercase()
                || before.is_ascii_digit()
                || !before.is_ascii()
                || (before.is_ascii_uppercase()
                    && bytes.get(start + 1).is_some_and(u8::is_ascii_lowercase))))
}

/// A separator between a key's words as keys are compared: `-`, `_`, and the dots of a dotted
/// name (`aws.session_token` is `aws_session_token`). Text is searched with [`is_separator`].
fn is_key_separator(byte: u8) -> bool {
    is_separator(byte) || byte == b'.'
}

/// A key as text is searched for it: lowercase (Unicode's), its words parted by `_` where it
/// has `-`, `_` or a capital that begins a word: after a small letter or a digit, or the last of
/// capitals before a small letter (`ibanCode` and `IBANCode` are `iban_code`, `APIKey` is
/// `api_key`).
fn spelled(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut spelled = String::with_capacity(key.len() + 4);
    for (at, &c) in chars.iter().enumerate() {
        if c == '-' || c == '_' {
            spelled.push('_');
            continue;
        }
        let before = at.checked_sub(1).map(|before| chars[before]);
        let after = chars.get(at + 1);
        let begins_word = c.is_uppercase()
            && before.is_some_and(|before| {
                before.is_lowercase()
                    || before.is_ascii_digit()
                    || (before.is_uppercase() && after.is_some_and(|after| after.is_lowercase()))
            });
        if begins_word {
            spelled.push('_');
        }
        spelled.extend(c.to_lowercase());
    }
    spelled
}

/// The first mention of `key` (as [`spelled`]) in `text` (its ASCII letters lowercase), as the
/// offsets where it begins and ends: the key's letters in a row, with any run of separators, or
/// none, where the key has a `_` (`card_number`, `card-number`, `cardnumber` and, lowercased,
/// `cardNumber`), and nothing else between them (`recv_count` does not name `cvc`).
fn find_spelled(text: &[u8], key: &[u8]) -> Option<(usize, usize)> {
    let first = key.iter().position(|&byte| byte != b'_')?;
    (0..text.len()).find_map(|start| {
        // Most starts are told by their first byte.
        if first == 0 && text[start] != key[0] {
            return None;
        }
        let mut at = start;
        for &expected in key {
            if expected == b'_' {
                while at < text.len() && is_separator(text[at]) {
                    at += 1;
                }
            } else if text.get(at) == Some(&expected) {
                at += 1;
            } else {
                return None;
            }
        }
        Some((start, at))
    })
}

fn same_key(normalized: &[u8], key: &[u8]) -> bool {
    // Separators only make a key longer than its words.
    if key.len() < normalized.len() {
        return false;
    }
    let mut letters = key
        .iter()
        .filter(|&&byte| !is_key_separator(byte))
        .map(u8::to_ascii_lowercase);
    normalized
        .iter()
        .all(|&expected| letters.next() == Some(expected))
        && letters.next().is_none()
}

/// FNV-1a: a few instructions per byte, plenty for telling a line's keys apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |hash, &byte| fnv1a_step(hash, byte))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

const fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// One of the four members every line opens with, with the hash of its quoted name (what
/// [`Line::key`] records) computed when compiling rather than on every line.
pub(crate) struct OpeningKey {
    name: &'static str,
    hash: u64,
}

impl OpeningKey {
    const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        let mut hash = fnv1a_step(FNV_OFFSET, b'"');
        let mut index = 0;
        while index < bytes.len() {
            hash = fnv1a_step(hash, bytes[index]);
            index += 1;
        }
        OpeningKey {
            name,
            hash: fnv1a_step(hash, b'"'),
        }
    }
}

/// `level`, the first member of every line.
pub(crate) const LEVEL: OpeningKey = OpeningKey::new("level");
/// `message`, the second.
pub(crate) const MESSAGE: OpeningKey = OpeningKey::new("message");
/// `timestamp`, the third.
pub(crate) const TIMESTAMP: OpeningKey = OpeningKey::new("timestamp");
/// `service`, the fourth.
pub(crate) const SERVICE: OpeningKey = OpeningKey::new("service");

/// Appends `text` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    // Copy runs of plain bytes in one go: most strings have nothing to escape.
    // DEL too (as `\u007f`), which is invisible where lines are read.
    while let Some(offset) = first_escape::<true>(&bytes[start..]) {
        let index = start + offset;
        out.extend_from_slice(&bytes[start..index]);
        let byte = bytes[index];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `time` as a JSON string in RFC 3339 UTC with milliseconds (`"2026-12-02T03:04:05.678Z"`),
/// written in place: what `to_rfc3339_opts(SecondsFormat::Millis, true)` gives, without its
/// string and formatting machinery, on every line (`tests::timestamps_match_chrono`). Years
/// outside 0000–9999 and leap seconds go through chrono.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, time: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let nanos = time.nanosecond();
    let year = match u32::try_from(time.year()) {
        Ok(year) if year <= 9999 && nanos < 1_000_000_000 => year,
        _ => {
            return write_str(
                out,
                &time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
    };
    let mut text = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut digits = |at: usize, width: usize, mut value: u32| {
        for index in (at..at + width).rev() {
            // A digit: always below 10.
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(1, 4, year);
    digits(6, 2, time.month());
    digits(9, 2, time.day());
    digits(12, 2, time.hour());
    digits(15, 2, time.minute());
    digits(18, 2, time.second());
    digits(21, 3, nanos / 1_000_000);
    out.extend_from_slice(&text);
}

/// One JSON object being written: each key at most once, the first writer wins.
pub(crate) struct Line<'r> {
    pub(crate) out: Vec<u8>,
    /// Where each key is in `out`, with a hash of it: most keys differ in their hash, so the
    /// duplicate check rarely compares bytes.
    keys: Vec<(u64, usize, usize)>,
    /// Past [`INDEXED_KEYS`] keys, the keys again, for the duplicate check: a line of thousands
    /// of keys (appended from a caller's map) checked each against every key before it took
    /// time growing with the square of their number (found by an attack from the docs: 0.87 s
    /// a line for 20,000 keys in a debug build). Hashed with the standard library's keyed
    /// hash, so that keys chosen to share the line's own hash are no slower.
    index: Option<HashSet<Box<[u8]>>>,
    /// The fields written under another name: (their name, the name written), `level` written
    /// as `extra_level`. A later field named like either moves on instead of being lost, or
    /// loses to the first of its name.
    moved: Vec<(String, String)>,
    redactor: &'r Redactor,
}

thread_local! {
    /// The buffer of the last line this thread wrote, emptied, for its next line: a line is
    /// written and dropped at once, so each line then allocates nothing for its text.
    static SPARE_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The key index of the last line this thread finished, emptied, for its next line.
    static SPARE_KEY_INDEX: Cell<Vec<(u64, usize, usize)>> = const { Cell::new(Vec::new()) };
}

/// The largest line buffer kept for the next line (a larger one is freed).
const SPARE_LINE_BYTES: usize = 16 * 1024;
/// The largest key index kept for the next line, in keys (a larger one is freed).
const SPARE_KEYS: usize = 256;
/// How many keys a line checks for a duplicate one by one, before it indexes them: a line
/// mostly has 15 to 25, which the scan of their hashes checks faster than a hash set.
const INDEXED_KEYS: usize = 64;

/// A line to keep (in a log buffer) in memory of its own size, its buffer given back for this
/// thread's next line: a buffer counts lines by their length, so a line must not hold on to a
/// larger buffer an earlier line grew.
pub(crate) fn keep_line(line: Vec<u8>) -> Vec<u8> {
    let kept = line.as_slice().to_vec();
    recycle_line(line);
    kept
}

/// Gives a written line's buffer back for this thread's next line.
pub(crate) fn recycle_line(line: Vec<u8>) {
    thread_buffer::keep(&SPARE_OUT, line, SPARE_LINE_BYTES);
}

impl<'r> Line<'r> {
    pub(crate) fn new(redactor: &'r Redactor) -> Self {
        let mut out = thread_buffer::take(&SPARE_OUT, 512);
        out.push(b'{');
        Line {
            out,
            keys: thread_buffer::take(&SPARE_KEY_INDEX, 24),
            index: None,
            moved: Vec::new(),
            redactor,
        }
    }

    /// Starts the member `name` unless it was written already; `false` means skip its value.
    pub(crate) fn key(&mut self, name: &str) -> bool {
        let mark = self.out.len();
        if mark > 1 {
            self.out.push(b',');
        }
        // Written in place, then taken back if the line has it already: no copy for the
        // usual case of a new key.
        let start = self.out.len();
        write_str(&mut self.out, name);
        let end = self.out.len();
        let candidate = &self.out[start..end];
        let hash = fnv1a(candidate);
        let seen = match &mut self.index {
            Some(index) => !index.insert(candidate.into()),
            None => self.keys.iter().any(|&(seen, written, until)| {
                #[cfg(test)]
                crate::scope::KEYS_COMPARED.with(|compared| compared.set(compared.get() + 1));
                seen == hash && &self.out[written..until] == candidate
            }),
        };
        if seen {
            self.out.truncate(mark);
            return false;
        }
        self.keys.push((hash, start, end));
        if self.index.is_none() && self.keys.len() > INDEXED_KEYS {
            let out = &self.out;
            self.index = Some(
                self.keys
                    .iter()
                    .map(|&(_, written, until)| out[written..until].into())
                    .collect(),
            );
        }
        self.out.push(b':');
        true
    }

    /// Writes `location` as `module:line`, with no intermediate string.
    pub(crate) fn location_member(&mut self, module: &str, line: u32) {
        if self.key("location") {
            write_str(&mut self.out, module);
            // Reopen the string to append `:line`.
            self.out.pop();
            self.out.push(b':');
            self.out
                .extend_from_slice(itoa::Buffer::new().format(line).as_bytes());
            self.out.push(b'"');
        }
    }

    /// Starts a member the line writes itself (a span's `message` as `span_message`, the
    /// failure keys): under the first free name from `name` on, one [`RESERVED_PREFIX`] at a
    /// time, and recorded so that a field named like it later moves on instead of being lost
    /// (it is not the same field). `false` when the line wrote its own `name` already (a parent
    /// span's `message` after its child's: the first wins).
    pub(crate) fn own_key(&mut self, name: &str) -> bool {
        let mut own = String::with_capacity(1 + name.len());
        own.push('\0');
        own.push_str(name);
        if self.moved.iter().any(|(original, _)| *original == own) {
            return false;
        }
        self.moved_key(own, name.to_owned());
        true
    }

    /// Starts the member `original` is written under: `candidate`, or the first free name from
    /// it on, one [`RESERVED_PREFIX`] at a time (each try finds a name a key already on the line
    /// holds, so a free one comes before the line's keys run out); recorded as moved.
    fn moved_key(&mut self, original: String, mut candidate: String) {
        while !self.key(&candidate) {
            candidate.insert_str(0, RESERVED_PREFIX);
        }
        self.moved.push((original, candidate));
    }

    /// Starts the member of a field given again under the same name in one event or span
    /// (`info!(a = 1, a = 2)`): under [`RESERVED_PREFIX`] + its name, or the first free name
    /// from it on, as a field named like a standard key, so that no value is lost.
    pub(crate) fn repeated_key(&mut self, name: &str) {
        let mut original = String::with_capacity(1 + name.len());
        original.push('\u{1}');
        original.push_str(name);
        let mut prefixed = String::with_capacity(RESERVED_PREFIX.len() + name.len());
        prefixed.push_str(RESERVED_PREFIX);
        prefixed.push_str(name);
        self.moved_key(original, prefixed);
    }

    /// Starts a user key, unless one of that name was written already (the first wins); a
    /// reserved name is written as [`RESERVED_PREFIX`] + the name, and a name that a moved field
    /// took is moved on in turn, one prefix at a time until a free name: no field is lost
    /// (`level`, `extra_level`, `extra_extra_level` in any order all stay).
    pub(crate) fn user_key(&mut self, name: &str) -> bool {
        self.user_key_moving(name, false)
    }

    /// [`user_key`](Self::user_key) for a span's field: the failure keys are reserved too, since
    /// a span's field is on every line in the span, as an appended key (which may not take
    /// them) would be (found by an attack from the docs: every line in a span with an
    /// `exception` field posed as an exception).
    pub(crate) fn span_key(&mut self, name: &str) -> bool {
        self.user_key_moving(name, FAILURE_KEYS.contains(&name))
    }

    /// [`user_key`](Self::user_key), moving the name whatever it is when `reserved`.
    fn user_key_moving(&mut self, name: &str, reserved: bool) -> bool {
        // This name was written already, under another name: the first wins.
        if self.moved.iter().any(|(original, _)| original == name) {
            return false;
        }
        let moves = reserved
            || RESERVED_KEYS.contains(&name)
            || self.moved.iter().any(|(_, written)| written == name);
        if !moves {
            return self.key(name);
        }
        let mut prefixed = String::with_capacity(2 * RESERVED_PREFIX.len() + name.len());
        prefixed.push_str(RESERVED_PREFIX);
        prefixed.push_str(name);
        self.moved_key(name.to_owned(), prefixed);
        true
    }

    /// Writes a member whose value is JSON already, unless one of that name was written.
    pub(crate) fn raw_member(&mut self, name: &str, json: &[u8]) {
        if self.key(name) {
            self.out.extend_from_slice(json);
        }
    }

    /// Starts the member `name`, one of the four every line opens with (`level`, `message`,
    /// `timestamp`, `service`): a plain ASCII name written as is, and no duplicate check, since
    /// nothing comes before them. Recorded like any key, so a later key of that name is still
    /// refused. Every line writes four, so this skips the escaping scan and the comparisons.
    pub(crate) fn opening_key(&mut self, key: &OpeningKey) {
        let OpeningKey { name, hash } = *key;
        debug_assert!(
            name.bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
            "{name} is not a plain key"
        );
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        let start = self.out.len();
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'"');
        let end = self.out.len();
        debug_assert_eq!(hash, fnv1a(&self.out[start..end]));
        debug_assert!(
            !self.keys.iter().any(|&(seen, ..)| seen == hash),
            "{name} is not among the first keys of the line"
        );
        self.keys.push((hash, start, end));
        if let Some(index) = &mut self.index {
            index.insert(self.out[start..end].into());
        }
        self.out.push(b':');
    }

    /// [`opening_key`](Self::opening_key) with a string value.
    pub(crate) fn opening_str_member(&mut self, key: &OpeningKey, value: &str) {
        self.opening_key(key);
        write_str(&mut self.out, value);
    }

    /// Writes a string member.
    pub(crate) fn str_member(&mut self, name: &str, value: &str) {
        if self.key(name) {
            write_str(&mut self.out, value);
        }
    }

    /// Appends members already rendered (`"key":value,…`) whose keys are reserved ones, which
    /// no field or business key can take and which this run holds once each, so they are not
    /// checked against the line's other keys.
    pub(crate) fn reserved_members(&mut self, members: &[u8]) {
        if members.is_empty() {
            return;
        }
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(members);
    }

    /// Writes a user key with a JSON value, masking it (or keys inside it) as configured.
    pub(crate) fn value_member(&mut self, name: &str, value: &Value) {
        if self.user_key(name) {
            write_value(&mut self.out, name, value, self.redactor);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out.push(b'\n');
        thread_buffer::keep(&SPARE_KEY_INDEX, std::mem::take(&mut self.keys), SPARE_KEYS);
        self.out
    }
}

/// Writes `value` (the value of `name`), masked if `name` is redacted, with redacted keys masked
/// inside it.
pub(crate) fn write_value(out: &mut Vec<u8>, name: &str, value: &Value, redactor: &Redactor) {
    if redactor.masks(name) {
        write_str(out, REDACTED);
        return;
    }
    // Writing a JSON value into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, &Masked { value, redactor });
}

/// An event too deep for a line to hold as a value, as the text it is logged as: masked first
/// by the rules the event itself is masked by (a base64 `body`, `rawQueryString`), which a
/// string's masking does not apply (found by a review: a base64 body naming a masked key was
/// written in clear in an event 127 levels deep).
pub(crate) fn masked_event_text(event: &Value, redactor: &Redactor) -> String {
    if redactor.masks("event") {
        return REDACTED.to_owned();
    }
    serde_json::to_string(&Masked {
        value: event,
        redactor,
    })
    .unwrap_or_else(|_| REDACTED.to_owned())
}

/// A JSON value serialized with the values of redacted keys masked, at any depth.
struct Masked<'a> {
    value: &'a Value,
    redactor: &'a Redactor,
}

impl Serialize for Masked<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    if self.redactor.masks(key)
                        || (key == "body" && body_names_masked_key(fields, value, self.redactor))
                    {
                        map.serialize_entry(key, REDACTED)?;
                    } else if key == "rawQueryString"
                        && let Value::String(query) = value
                        && let Some(masked) = masked_query(query, self.redactor)
                    {
                        map.serialize_entry(key, &masked)?;
                    } else {
                        map.serialize_entry(
                            key,
                            &Masked {
                                value,
                                redactor: self.redactor,
                            },
                        )?;
                    }
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&Masked {
                        value,
                        redactor: self.redactor,
                    })?;
                }
                seq.end()
            }
            Value::String(text) => match masked_json_text(text, self.redactor) {
                Some(masked) => serializer.serialize_str(&masked),
                None => serializer.serialize_str(text),
            },
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Whether an event's `body` that cannot be opened as JSON names a masked key: a form or text
/// body, or one the event says is base64 (`isBase64Encoded`: API Gateway, ALB, function URLs),
/// decoded. Masked whole, as other text that can't be opened is. A JSON body is left to
/// [`masked_json_text`], which masks inside it.
fn body_names_masked_key(
    event: &serde_json::Map<String, Value>,
    body: &Value,
    redactor: &Redactor,
) -> bool {
    let Value::String(text) = body else {
        return false;
    };
    if redactor.keys.is_empty() {
        return false;
    }
    let base64 = match event.get("isBase64Encoded") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(flag)) => flag.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if base64 && let Some(decoded) = decode_base64(text) {
        return match inflated(&decoded) {
            Some(Ok(inflated)) => mentions_redacted_key_in(&inflated, redactor),
            // gzip that does not inflate, or past the bound: it cannot be checked.
            Some(Err(())) => true,
            None => mentions_redacted_key_in(&decoded, redactor),
        };
    }
    // Not base64 (or not really): checked as text.
    !opens_as_json(text) && mentions_redacted_key(text, redactor)
}

/// A query string as sent (`rawQueryString` of HTTP API events and function URLs) with the values
/// of its masked keys masked; `None` when it has none. Each key is compared decoded
/// (`API%5FKEY` is `api_key`); everything else stays as sent.
fn masked_query(query: &str, redactor: &Redactor) -> Option<String> {
    if redactor.keys.is_empty() {
        return None;
    }
    let mut masked = String::with_capacity(query.len());
    let mut changed = false;
    for (n, pair) in query.split('&').enumerate() {
        if n > 0 {
            masked.push('&');
        }
        match pair.split_once('=') {
            Some((key, value))
                if !value.is_empty()
                    && form_urlencoded::parse(key.as_bytes())
                        .next()
                        .is_some_and(|(name, _)| redactor.masks(&name)) =>
            {
                masked.push_str(key);
                masked.push('=');
                masked.push_str(REDACTED);
                changed = true;
            }
            _ => masked.push_str(pair),
        }
    }
    changed.then_some(masked)
}

/// `text` as base64 in any of the forms senders use: padded or not, the standard or the
/// URL-safe alphabet, split into lines.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ANY_PADDING: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, ANY_PADDING);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, ANY_PADDING);
    let compact: std::borrow::Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| URL_SAFE.decode(compact.as_bytes()))
        .ok()
}

/// The most a gzip body is inflated to be checked (a Lambda event is at most 6 MB; a body that
/// inflates past this is masked rather than checked).
const MAX_INFLATED_BYTES: u64 = 32 << 20;

/// `bytes` inflated when they are gzip (its magic number): `Some(Err)` when they do not inflate
/// within [`MAX_INFLATED_BYTES`]; `None` when they are not gzip.
fn inflated(bytes: &[u8]) -> Option<Result<Vec<u8>, ()>> {
    use std::io::Read as _;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut inflated = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut inflated);
    Some(match read {
        Ok(_) if inflated.len() as u64 <= MAX_INFLATED_BYTES => Ok(inflated),
        _ => Err(()),
    })
}

/// How deep string-encoded JSON is opened (JSON in a string in JSON…).
const MAX_ENCODED_DEPTH: usize = 4;

/// When `text` is JSON (an API Gateway `body`, a queue message) holding a key that is masked,
/// its text with those values masked; `None` when there is nothing to mask in it.
pub(crate) fn masked_json_text(text: &str, redactor: &Redactor) -> Option<String> {
    masked_json_text_at(text, redactor, 0, Strings::Data).or_else(|| {
        // JSON text is masked from its parsed form, where its strings' pairs are found: never
        // as a whole, which would take the rest of the text for a pair's value.
        (!opens_as_json(text))
            .then(|| masked_pairs(text, redactor))
            .flatten()
    })
}

/// `text` with the value of each `key=value` pair whose key is a masked key masked, wherever
/// the pair is (a URL's query string or fragment, a form, `a=1;b=2`); `None` when it has none.
/// A pair begins at the start of the text or after white space or one of ``?&#;"',(<>|:/[{``;
/// white space may stand around its `=`. Its key is compared percent-decoded, a bracketed one by
/// its last named brackets (`user[password]`, `user%5Bpassword%5D`; `password[]` and
/// `password[0]` by the name before them; a quoted key by what its quotes hold). A value that
/// opens with a quote is the whole quoted word ([`quoted_word_len`]); another ends at `&`, `#`,
/// `;`, white space, a quote or `,`; a header's (`authorization`, `cookie`) runs to `&`, a quote
/// or the end of the line, as it holds spaces and `;`. A value of another key that is itself percent-encoded pairs (a URL in
/// a `next=` parameter) is masked whole when one of those is a masked key's.
fn masked_pairs(text: &str, redactor: &Redactor) -> Option<String> {
    masked_pairs_at(text, redactor, 0)
}

/// Whether `c` may be part of a pair's key.
fn is_pair_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%' | '[' | ']' | '+')
}

/// Whether a pair may begin after `c`.
fn begins_a_pair(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '?' | '&'
                | '#'
                | ';'
                | '"'
                | '\''
                | ','
                | '('
                | '<'
                | '>'
                | '|'
                | ':'
                | '/'
                | '['
                | '{'
        )
}

/// Whether `c` ends a pair's value.
fn ends_a_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '#' | ';' | '"' | '\'' | ',')
}

/// [`masked_pairs`], `depth` levels of percent-encoding down.
fn masked_pairs_at(text: &str, redactor: &Redactor, depth: usize) -> Option<String> {
    if redactor.keys.is_empty() || !text.contains('=') {
        return None;
    }
    let mut masked = String::with_capacity(text.len());
    let mut written = 0;
    for (equals, _) in text.match_indices('=') {
        if equals < written {
            continue;
        }
        // The key, before any spaces in front of the `=`; a quoted one (`"password"=…`, found
        // by a review) by what its quotes hold.
        let before = text[..equals].trim_end_matches([' ', '\t']);
        let (name_start, key_start, key_end) = match quoted_key(before) {
            Some(found) => found,
            None => {
                let name_start = before
                    .char_indices()
                    .rev()
                    .take_while(|(_, c)| is_pair_key_char(*c))
                    .last()
                    .map_or(before.len(), |(at, _)| at);
                (name_start, name_start, before.len())
            }
        };
        let at_boundary = text[..name_start]
            .chars()
            .next_back()
            .is_none_or(begins_a_pair);
        if key_start == key_end || !at_boundary {
            continue;
        }
        let decoded = percent_decoded(&text[key_start..key_end]);
        let key = pair_key(&decoded);
        let after = &text[equals + 1..];
        let value_start = equals + 1 + (after.len() - after.trim_start_matches([' ', '\t']).len());
        let rest = &text[value_start..];
        let value_len = if redactor.masks(key) {
            // A quoted value (logfmt, `--password="…"`, `authorization="Bearer …"`): the whole
            // word, its quoted parts and what a shell joins to them, masked with its quotes.
            if opens_a_quote(rest) {
                quoted_word_len(rest)
            } else {
                let header = matches!(
                    normalize(key).as_str(),
                    "authorization" | "proxyauthorization" | "cookie" | "setcookie" | "cookies"
                );
                if header {
                    rest.find(['&', '"', '\'', '\n', '\r'])
                        .unwrap_or(rest.len())
                } else {
                    rest.find(ends_a_value).unwrap_or(rest.len())
                }
            }
        } else {
            // Another key's value: masked whole when it is percent-encoded pairs holding one.
            // Read up to the next `=` too, which percent-encoded pairs hold as `%3D`: each
            // stretch of the text is read once (`a=a=a=…` stays linear).
            let plain_len = rest
                .find(|c: char| ends_a_value(c) || c == '=')
                .unwrap_or(rest.len());
            let value = &rest[..plain_len];
            let encoded_pairs = depth < MAX_ENCODED_DEPTH
                && (value.contains("%3D") || value.contains("%3d"))
                && masked_pairs_at(&percent_decoded(value), redactor, depth + 1).is_some();
            if !encoded_pairs {
                continue;
            }
            plain_len
        };
        if value_len == 0 {
            continue;
        }
        masked.push_str(&text[written..value_start]);
        masked.push_str(REDACTED);
        written = value_start + value_len;
    }
    if written == 0 {
        return None;
    }
    masked.push_str(&text[written..]);
    Some(masked)
}

/// The quotes that may close a value opened with `open`, in the styles languages write them
/// (`"…"`, `“…”`, German `„…“`, Swedish `”…”`, `«…»`, `»…«`, …); `None` when `open` is not a
/// quote.
fn closing_quotes(open: char) -> Option<&'static [char]> {
    Some(match open {
        '"' => &['"'],
        '\'' => &['\''],
        '`' => &['`'],
        '\u{201c}' => &['\u{201d}', '\u{201c}'],
        '\u{201e}' => &['\u{201c}', '\u{201d}'],
        '\u{201d}' => &['\u{201d}'],
        '\u{2018}' => &['\u{2019}', '\u{2018}'],
        '\u{201a}' => &['\u{2018}', '\u{2019}'],
        '\u{2019}' => &['\u{2019}'],
        '\u{ab}' => &['\u{bb}'],
        '\u{bb}' => &['\u{ab}', '\u{bb}'],
        '\u{2039}' => &['\u{203a}'],
        '\u{203a}' => &['\u{2039}', '\u{203a}'],
        _ => return None,
    })
}

/// The quotes that may open a key that `close` ends (the pairs of [`closing_quotes`] read
/// backwards); `None` when `close` is not a quote.
fn opening_quotes(close: char) -> Option<&'static [char]> {
    Some(match close {
        '"' => &['"'],
        '\'' => &['\''],
        '`' => &['`'],
        '\u{201d}' => &['\u{201c}', '\u{201e}', '\u{201d}'],
        '\u{201c}' => &['\u{201e}', '\u{201c}'],
        '\u{2019}' => &['\u{2018}', '\u{201a}', '\u{2019}'],
        '\u{2018}' => &['\u{201a}', '\u{2018}'],
        '\u{bb}' => &['\u{ab}', '\u{bb}'],
        '\u{ab}' => &['\u{bb}'],
        '\u{203a}' => &['\u{2039}', '\u{203a}'],
        '\u{2039}' => &['\u{203a}'],
        _ => return None,
    })
}

/// Whether `rest`, a pair's value, opens with a quote, after backslashes or not (JSON text
/// written into a string, once or more: `--password=\"…\"`, `\\\"…`).
fn opens_a_quote(rest: &str) -> bool {
    rest.trim_start_matches('\\')
        .chars()
        .next()
        .is_some_and(|c| closing_quotes(c).is_some())
}

/// The length of a value that opens with a quote: the whole word, its quoted parts and what is
/// joined to them (`""secret`, `"a"b`, `'it''s'`, as a shell joins them: found by a review),
/// each quoted part up to its closing quote behind as many backslashes as its opening one
/// (`\"a\\\"b\"` is one part: a quote escaped deeper is inside it); all of `rest` when a
/// quote is not closed. Each character is read once.
fn quoted_word_len(rest: &str) -> usize {
    let mut at = 0;
    while let Some(c) = rest[at..].chars().next() {
        let tail = &rest[at..];
        let depth = tail.len() - tail.trim_start_matches('\\').len();
        let quoted = tail[depth..]
            .chars()
            .next()
            .and_then(|open| Some((open, closing_quotes(open)?)));
        if let Some((open, closes)) = quoted {
            let inner_start = depth + open.len_utf8();
            match closing_at_depth(&tail[inner_start..], closes, depth) {
                Some(after) => at += inner_start + after,
                None => return rest.len(),
            }
        } else if ends_a_value(c) {
            return at;
        } else {
            // An unquoted part joined to the word, up to its end or the next quote.
            let len = tail[c.len_utf8()..]
                .find(|c: char| ends_a_value(c) || closing_quotes(c).is_some() || c == '\\')
                .map_or(tail.len(), |end| c.len_utf8() + end);
            at += len.max(depth);
        }
    }
    rest.len()
}

/// Where, in `inner`, a quoted part ends just after its closing quote: the first of `closes`
/// behind exactly `depth` backslashes; `None` when none does.
fn closing_at_depth(inner: &str, closes: &[char], depth: usize) -> Option<usize> {
    let mut backslashes = 0;
    for (at, c) in inner.char_indices() {
        if c == '\\' {
            backslashes += 1;
            continue;
        }
        if backslashes == depth && closes.contains(&c) {
            return Some(at + c.len_utf8());
        }
        backslashes = 0;
    }
    None
}

/// A quoted key before a pair's `=` (`"password"` in `"password"="…"`, also in escaped,
/// typographic, angle or backtick quotes: found by reviews): where the key begins (its opening
/// quote, or the backslashes before it), and where what its quotes hold begins and ends; `None`
/// for an unquoted key. Looked for within the 256 bytes before the `=`, which any key's name
/// fits in, so that the search stays linear.
fn quoted_key(before: &str) -> Option<(usize, usize, usize)> {
    let close = before.chars().next_back()?;
    let opens = opening_quotes(close)?;
    let inner_end = before[..before.len() - close.len_utf8()]
        .trim_end_matches('\\')
        .len();
    let mut window = inner_end.saturating_sub(256);
    while !before.is_char_boundary(window) {
        window += 1;
    }
    let opening = window + before[window..inner_end].rfind(opens)?;
    let open_len = before[opening..].chars().next().map_or(1, char::len_utf8);
    let name_start = before[..opening].trim_end_matches('\\').len();
    Some((name_start, opening + open_len, inner_end))
}

/// `text` percent-decoded as a form decodes it (`+` as a space), invalid UTF-8 replaced.
fn percent_decoded(text: &str) -> String {
    form_urlencoded::parse(text.as_bytes())
        .next()
        .map(|(decoded, _)| decoded.into_owned())
        .unwrap_or_default()
}

/// The key a form's field name stands for: the last named brackets (`user[password]` is
/// `password`), after leaving out empty and numeric ones (`password[]`, `password[0]`).
fn pair_key(name: &str) -> &str {
    let mut base = name;
    while let Some(open) = base.strip_suffix(']').and_then(|inside| inside.rfind('[')) {
        let inner = &base[open + 1..base.len() - 1];
        if inner.is_empty() || inner.bytes().all(|byte| byte.is_ascii_digit()) {
            base = &base[..open];
        } else {
            return inner;
        }
    }
    base
}

/// What the text values of opened JSON are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strings {
    /// Data (an event's, a field's): written as they are, unless they are JSON to open.
    Data,
    /// Error prose (inside an error message that is JSON): masked after a masked key's word,
    /// as the message itself would be.
    Prose,
}

fn masked_json_text_at(
    text: &str,
    redactor: &Redactor,
    depth: usize,
    strings: Strings,
) -> Option<String> {
    if redactor.keys.is_empty() {
        return None;
    }
    let json = json_start(text);
    if !matches!(json.as_bytes().first(), Some(b'{' | b'[')) {
        return None;
    }
    // Fail closed: JSON-looking text that can't be opened (nested deeper than the limit, or
    // refused by serde_json: `1e999`, a lone surrogate, deep arrays) is masked whole when it
    // mentions a redacted key, rather than written in clear.
    if depth >= MAX_ENCODED_DEPTH {
        return mentions_redacted_key(text, redactor).then(|| REDACTED.to_owned());
    }
    let Ok(mut value) = serde_json::from_str::<Value>(json) else {
        return mentions_redacted_key(text, redactor).then(|| REDACTED.to_owned());
    };
    mask_in_place(&mut value, redactor, depth, strings).then(|| value.to_string())
}

/// Where JSON text in `text` would begin: after white space and a byte order mark, which bodies
/// from some Windows and .NET clients begin with (found by an attack: such text was neither
/// opened nor masked whole).
fn json_start(text: &str) -> &str {
    text.trim_start()
        .trim_start_matches('\u{feff}')
        .trim_start()
}

/// Whether `text` opens as JSON text does (an object or an array, after [`json_start`]).
fn opens_as_json(text: &str) -> bool {
    matches!(json_start(text).as_bytes().first(), Some(b'{' | b'['))
}

/// Whether `text` holds a redacted key's name anywhere, spelled in any case, with or without
/// `-` and `_`.
fn mentions_redacted_key(text: &str, redactor: &Redactor) -> bool {
    mentions_redacted_key_in(text.as_bytes(), redactor)
}

/// [`mentions_redacted_key`] in bytes that may not be UTF-8 (a decoded body).
fn mentions_redacted_key_in(bytes: &[u8], redactor: &Redactor) -> bool {
    let folded = bytes.to_ascii_lowercase();
    redactor
        .spelled
        .iter()
        .any(|key| find_spelled(&folded, key.as_bytes()).is_some())
        || redactor.mentioned_in_unicode_case(bytes)
}

/// Where an error message stops being written in clear: after the first mention of a redacted
/// key (spelled in any case, with or without `-` and `_`) and the letters that continue its word
/// (`ExpiredTokenException`, `Passwords`); `None` when it names none.
fn clear_until(text: &str, redactor: &Redactor) -> Option<usize> {
    let folded = text.as_bytes().to_ascii_lowercase();
    let mention = redactor
        .spelled
        .iter()
        .filter_map(|key| find_spelled(&folded, key.as_bytes()))
        .min();
    // Named (before the first mention found, or at all) only in another Unicode case, where the
    // lowercase text's offsets are not the text's: masked whole.
    let before = mention.map_or(text, |(at, _)| &text[..at]);
    if redactor.mentioned_in_unicode_case(before.as_bytes()) {
        return Some(0);
    }
    // The key is UTF-8 matched against UTF-8 whose ASCII letters alone were folded, so the
    // mention begins and ends on character boundaries.
    let (_, after) = mention?;
    Some(
        text[after..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .map_or(text.len(), |letters| after + letters),
    )
}

/// An error's message (or a panic's) with redaction failing closed: JSON text with redacted keys
/// masked; other text that names a redacted key is written up to the end of the word naming it
/// and masked from there (`login failed: password*****`), so that the cause before it (an error
/// code such as `ExpiredTokenException`, an id) stays readable and the value after it does not.
/// An error message is prose, not JSON to open: `password=…` in it is a secret.
pub(crate) fn redacted_message<'t>(
    text: &'t str,
    redactor: &Redactor,
) -> std::borrow::Cow<'t, str> {
    match masked_json_text_at(text, redactor, 0, Strings::Prose) {
        Some(masked) => std::borrow::Cow::Owned(masked),
        None => match clear_until(text, redactor) {
            Some(end) => std::borrow::Cow::Owned(format!("{}{REDACTED}", &text[..end])),
            None => std::borrow::Cow::Borrowed(text),
        },
    }
}

/// Masks the values of redacted keys in `value`, string-encoded JSON included; whether any was.
fn mask_in_place(value: &mut Value, redactor: &Redactor, depth: usize, strings: Strings) -> bool {
    match value {
        Value::Object(fields) => {
            let mut masked = false;
            for (key, value) in fields.iter_mut() {
                if redactor.masks(key) {
                    *value = Value::String(REDACTED.to_owned());
                    masked = true;
                } else {
                    masked |= mask_in_place(value, redactor, depth, strings);
                }
            }
            masked
        }
        Value::Array(items) => items.iter_mut().fold(false, |masked, item| {
            mask_in_place(item, redactor, depth, strings) | masked
        }),
        Value::String(text) => {
            let masked = masked_json_text_at(text, redactor, depth + 1, strings).or_else(|| {
                if opens_as_json(text) {
                    return None;
                }
                match strings {
                    Strings::Prose => {
                        clear_until(text, redactor).map(|end| format!("{}{REDACTED}", &text[..end]))
                    }
                    // A URL or a form in a value of JSON text: its pairs, as a field's.
                    Strings::Data => masked_pairs(text, redactor),
                }
            });
            match masked {
                Some(masked) => {
                    *text = masked;
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// Formats `value` with `Debug`, never panicking: a `Debug` impl that fails leaves a marker.
pub(crate) fn debug_text(value: &dyn fmt::Debug) -> String {
    let mut text = String::new();
    if write!(text, "{value:?}").is_err() {
        text.push_str("<Debug formatting failed>");
    }
    text
}

/// The error's kind, read off its `Debug` form (`EmptyBasket`): Rust has no run-time type name
/// for a `dyn Error`. An I/O error, whose `Debug` begins with its private representation (`Os`,
/// `Custom`), is found by its type: `std::io::Error`.
fn error_type<'d>(error: &(dyn StdError + 'static), debug: &'d str) -> &'d str {
    if error.is::<std::io::Error>() {
        return "std::io::Error";
    }
    let end = debug
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(debug.len());
    match &debug[..end] {
        "" => "Error",
        name => name,
    }
}

/// Writes an error as `{"type", "message", "sources"}` (the `source()` chain's messages).
pub(crate) fn write_error(
    out: &mut Vec<u8>,
    error: &(dyn StdError + 'static),
    redactor: &Redactor,
) {
    let debug = debug_text(&error);
    out.extend_from_slice(b"{\"type\":");
    write_str(out, error_type(error, &debug));
    out.extend_from_slice(b",\"message\":");
    write_str(out, &redacted_message(&display_text(&error), redactor));
    out.extend_from_slice(b",\"sources\":[");
    // Bounded: a cyclic chain would otherwise be followed forever.
    for (index, cause) in error_chain::sources(error).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, &redacted_message(&display_text(&cause), redactor));
    }
    out.extend_from_slice(b"]}");
}

/// Writes a `tracing` field value as JSON, keeping numbers and booleans.
pub(crate) struct FieldValue<'o, 'r> {
    pub(crate) out: &'o mut Vec<u8>,
    pub(crate) redactor: &'r Redactor,
}

impl FieldValue<'_, '_> {
    pub(crate) fn write(&mut self, field: &Field, value: Recorded<'_>) {
        if self.redactor.masks(field.name()) {
            write_str(self.out, REDACTED);
            return;
        }
        match value {
            // The text of an `error` field, and of the failure line's `exception`, is an error
            // message, which fails closed.
            Recorded::Str(text) if is_error_message(field.name()) => {
                write_str(self.out, &redacted_message(text, self.redactor));
            }
            Recorded::Debug(value) if is_error_message(field.name()) => {
                write_str(
                    self.out,
                    &redacted_message(&debug_text(value), self.redactor),
                );
            }
            Recorded::Str(text) => match masked_json_text(text, self.redactor) {
                Some(masked) => write_str(self.out, &masked),
                None => write_str(self.out, text),
            },
            Recorded::Bool(flag) => {
                self.out
                    .extend_from_slice(if flag { b"true" } else { b"false" })
            }
            Recorded::I64(number) => {
                let _ = write!(Utf8(self.out), "{number}");
            }
            Recorded::U64(number) => {
                let _ = write!(Utf8(self.out), "{number}");
            }
            Recorded::I128(number) => {
                let _ = write!(Utf8(self.out), "{number}");
            }
            Recorded::U128(number) => {
                let _ = write!(Utf8(self.out), "{number}");
            }
            Recorded::F64(number) if number.is_finite() => {
                let _ = serde_json::to_writer(&mut *self.out, &number);
            }
            // JSON has no NaN or infinity: keep the information as text.
            Recorded::F64(number) => write_str(self.out, &number.to_string()),
            Recorded::Error(error) => write_error(self.out, error, self.redactor),
            Recorded::Debug(value) => {
                let text = debug_text(value);
                // Debug text is not JSON to open: when it names a redacted key, mask it whole.
                if mentions_redacted_key(&text, self.redactor) {
                    write_str(self.out, REDACTED);
                } else {
                    write_str(self.out, &text);
                }
            }
        }
    }
}

/// A value as `tracing` hands it to a visitor.
pub(crate) enum Recorded<'a> {
    Str(&'a str),
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Error(&'a (dyn StdError + 'static)),
    Debug(&'a dyn fmt::Debug),
}

/// Lets `write!` append to a byte buffer (numbers only ever write ASCII).
struct Utf8<'a>(&'a mut Vec<u8>);

impl fmt::Write for Utf8<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// Collects fields as `(name, JSON)` pairs.
pub(crate) struct FieldCollector<'r> {
    pub(crate) fields: Vec<(&'static str, Vec<u8>)>,
    pub(crate) redactor: &'r Redactor,
    /// The `message` field, kept apart: it is written as the line's `message`.
    pub(crate) message: Option<String>,
    /// Whether the event carries the marker of the invocation-event line.
    pub(crate) event_marker: bool,
    /// Whether the event carries the marker of the failure line.
    pub(crate) failure_marker: bool,
    /// `exception_name` and `exception`, from a field named `error`.
    pub(crate) exception: Option<(Option<String>, String)>,
    /// Whether the line is the library's own ([`LIBRARY_TARGET`]).
    library_line: bool,
    /// Whether a name is in [`fields`](Self::fields) more than once: a field given twice in
    /// one event or span (`info!(a = 1, a = 2)`), each value kept (see [`Line::repeated_key`]).
    pub(crate) repeated: bool,
}

/// The standard keys a failure line written outside any invocation's scope gives as fields
/// (`powertools::run`'s for an event the handler's type cannot hold): the invocation's, written
/// under their own names and never masked, as on every other line. `function_request_id` comes
/// from the runtime's span.
pub(crate) const OUTSIDE_INVOCATION_KEYS: [&str; 7] = [
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_version",
    "xray_trace_id",
    "tenant_id",
];

/// The target of the library's own lines (the failure line; the invocation-event line's is its
/// module's, below it): only they carry the markers (another target's marker field is a field
/// as any other, so that a line of the application's cannot pass for a failure line and write
/// the standard keys).
pub(crate) const LIBRARY_TARGET: &str = "powertools_logging";

pub(crate) const EVENT_MARKER: &str = "powertools_logging.invocation_event";
pub(crate) const FAILURE_MARKER: &str = "powertools_logging.failure";

/// The field whose value is written as Powertools' `exception` keys too.
const ERROR_FIELD: &str = "error";

/// The fields whose text is an error message, redacted as one ([`redacted_message`]): `err` is
/// where the AWS SDK's warnings give their cause.
const ERROR_MESSAGE_FIELDS: [&str; 3] = [ERROR_FIELD, "exception", "err"];

/// Whether `name` holds an error message (the batch utility's failure line gives a record's
/// error as `exception`, as Powertools for Python does; a caller's own `reason` is data, as any
/// field).
fn is_error_message(name: &str) -> bool {
    ERROR_MESSAGE_FIELDS.contains(&name)
}

impl<'r> FieldCollector<'r> {
    pub(crate) fn new(redactor: &'r Redactor) -> Self {
        FieldCollector {
            fields: Vec::new(),
            redactor,
            message: None,
            event_marker: false,
            failure_marker: false,
            exception: None,
            library_line: false,
            repeated: false,
        }
    }

    /// The collector of a line of `target`'s: the library's own lines may carry its markers.
    pub(crate) fn for_target(redactor: &'r Redactor, target: &str) -> Self {
        FieldCollector {
            library_line: target
                .strip_prefix(LIBRARY_TARGET)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::")),
            ..FieldCollector::new(redactor)
        }
    }

    fn record(&mut self, field: &Field, value: Recorded<'_>) {
        // From the first `error` field, the one written under that name (a later one is
        // `extra_error`).
        if field.name() == ERROR_FIELD
            && !self.redactor.masks(ERROR_FIELD)
            && !self.fields.iter().any(|(name, _)| *name == ERROR_FIELD)
        {
            // An error's message, its Debug or Display text, and the field's text: fail closed.
            let message = |text: &str| redacted_message(text, self.redactor).into_owned();
            self.exception = match &value {
                Recorded::Error(error) => {
                    let failure = crate::failure::from_error(*error);
                    Some((Some(failure.name), message(&failure.message)))
                }
                Recorded::Str(text) => Some((None, message(text))),
                Recorded::Debug(value) => Some((None, message(&debug_text(*value)))),
                _ => None,
            };
        }
        match field.name() {
            // `tracing` records the format string first, as `message`: a field of that name
            // beside it (`info!(message = …, "…")`) comes after, and is kept as any field named
            // like a standard key (`extra_message`) instead of replacing it.
            "message" if self.message.is_none() => {
                self.message = Some(match value {
                    Recorded::Str(text) => text.to_owned(),
                    Recorded::Debug(value) => debug_text(value),
                    Recorded::Error(error) => display_text(&error),
                    other => {
                        let mut out = Vec::new();
                        FieldValue {
                            out: &mut out,
                            redactor: self.redactor,
                        }
                        .write(field, other);
                        String::from_utf8_lossy(&out).into_owned()
                    }
                });
            }
            EVENT_MARKER if self.library_line => self.event_marker = true,
            FAILURE_MARKER if self.library_line => self.failure_marker = true,
            name => {
                let mut out = Vec::new();
                // The Lambda context keys of the library's failure line are never masked, as on
                // every other line (masked there only, a query on one missed the line; found by
                // a review).
                let unmasked;
                let redactor = if self.library_line && OUTSIDE_INVOCATION_KEYS.contains(&name) {
                    unmasked = Redactor::none();
                    &unmasked
                } else {
                    self.redactor
                };
                FieldValue {
                    out: &mut out,
                    redactor,
                }
                .write(field, value);
                // A name given twice is kept twice, in order: the line writes the later value
                // under `extra_` + its name (it kept only the last value, without a word: found
                // by an attack from the docs).
                self.repeated |= self.fields.iter().any(|(existing, _)| *existing == name);
                self.fields.push((name, out));
            }
        }
    }
}

impl Visit for FieldCollector<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, Recorded::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, Recorded::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, Recorded::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.record(field, Recorded::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.record(field, Recorded::U128(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, Recorded::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Recorded::Str(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        self.record(field, Recorded::Error(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Recorded::Debug(value));
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat, TimeZone, Timelike, Utc};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn chrono_text(time: DateTime<Utc>) -> Vec<u8> {
        let mut out = Vec::new();
        write_str(&mut out, &time.to_rfc3339_opts(SecondsFormat::Millis, true));
        out
    }

    fn written(time: DateTime<Utc>) -> Vec<u8> {
        let mut out = Vec::new();
        write_timestamp(&mut out, time);
        out
    }

    proptest! {
        /// The in-place timestamp against chrono's `to_rfc3339_opts`, over chrono's whole range.
        #[test]
        fn timestamps_match_chrono(
            millis in DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis(),
            sub_millis in 0u32..1_000_000,
        ) {
            let time = DateTime::from_timestamp_millis(millis).expect("in range")
                + chrono::Duration::nanoseconds(i64::from(sub_millis));
            prop_assert_eq!(written(time), chrono_text(time));
        }

        #[test]
        fn timestamps_of_this_era_match_chrono(millis in 0i64..253_402_300_800_000) {
            let time = DateTime::from_timestamp_millis(millis).expect("in range");
            prop_assert_eq!(written(time), chrono_text(time));
        }
    }

    /// A written line's buffer serves the thread's next line, which starts empty; a large one is
    /// not kept.
    #[test]
    fn a_written_lines_buffer_serves_the_next_line_which_starts_empty() {
        let redactor = Redactor::new(Vec::<String>::new());
        let mut first = Line::new(&redactor);
        first.str_member("order", &"x".repeat(1000));
        let first = first.finish();
        let reused = first.as_ptr();
        recycle_line(first);

        let mut second = Line::new(&redactor);
        second.str_member("order", "o-2");
        assert!(second.key("status"), "the key index starts empty too");
        write_str(&mut second.out, "paid");
        let second = second.finish();
        assert_eq!(second.as_ptr(), reused);
        assert_eq!(second, b"{\"order\":\"o-2\",\"status\":\"paid\"}\n");
        recycle_line(second);

        let mut large = Line::new(&redactor);
        large.str_member("order", &"x".repeat(SPARE_LINE_BYTES + 1));
        recycle_line(large.finish());
        assert!(Line::new(&redactor).out.capacity() < SPARE_LINE_BYTES);

        // Nor a large key index (found by a reviewer: 20,000 keys kept 589 KB per thread).
        let mut many = Line::new(&redactor);
        for index in 0..SPARE_KEYS * 4 {
            assert!(many.key(&format!("k{index}")));
            many.out.push(b'0');
        }
        recycle_line(many.finish());
        assert!(Line::new(&redactor).keys.capacity() <= SPARE_KEYS);
    }

    /// A line of thousands of keys (appended from a caller's map, say) checks each for a
    /// duplicate against an index, not against every key before it: 20,000 keys cost 0.87 s a
    /// line in a debug build, time growing with the square of their number (found by an
    /// attack from the docs). Keys chosen to share a hash are no slower.
    #[test]
    fn a_line_of_many_keys_finds_duplicates_without_comparing_each_with_all() {
        let redactor = Redactor::new(Vec::<String>::new());
        for name in [
            (|index: usize| format!("key_{index}")) as fn(usize) -> String,
            // FNV-1a is not keyed: these differ, but an attacker can find keys that collide;
            // the index must not depend on the line's own hash.
            |index: usize| format!("{index:0>12}"),
        ] {
            let mut line = Line::new(&redactor);
            let keys = 5_000;
            for index in 0..keys {
                assert!(line.key(&name(index)));
                line.out.push(b'0');
            }
            for index in 0..keys {
                assert!(!line.key(&name(index)), "written already");
            }
            let written: Value = serde_json::from_slice(&line.finish()).unwrap();
            assert_eq!(written.as_object().unwrap().len(), keys);
            let compared = crate::scope::KEYS_COMPARED.with(Cell::take);
            assert!(
                compared < 8 * keys,
                "{compared} keys compared for {} checks",
                2 * keys
            );
        }
    }

    /// A line kept in a log buffer holds memory of its own size, not the larger buffer an
    /// earlier line grew (found by a reviewer: a 20 KB log buffer held 600 KB), and that
    /// buffer serves the thread's next line.
    #[test]
    fn a_kept_line_holds_its_own_size_and_gives_its_buffer_back() {
        let redactor = Redactor::new(Vec::<String>::new());
        let mut written = Line::new(&redactor);
        written.str_member("blob", &"x".repeat(8000));
        recycle_line(written.finish());

        let mut buffered = Line::new(&redactor);
        buffered.str_member("n", "1");
        let line = buffered.finish();
        let grown = line.as_ptr();
        assert!(
            line.capacity() >= 8000,
            "it was written into the grown buffer"
        );
        let kept = keep_line(line);
        assert_eq!(kept, b"{\"n\":\"1\"}\n");
        assert_eq!(kept.capacity(), kept.len());
        assert_eq!(Line::new(&redactor).out.as_ptr(), grown);
    }

    /// The opening members are written and recorded exactly as `str_member` writes and records
    /// them: the same bytes, and a later key of the same name refused either way.
    #[test]
    fn opening_members_are_what_str_member_writes() {
        let redactor = Redactor::new(Vec::<String>::new());
        let values = [
            "INFO",
            "order \"placed\"\n\u{7f}é",
            "2026-12-02T03:04:05.678Z",
            "",
        ];
        let names = ["level", "message", "timestamp", "service"];
        let keys = [LEVEL, MESSAGE, TIMESTAMP, SERVICE];
        let mut opened = Line::new(&redactor);
        let mut general = Line::new(&redactor);
        for ((name, key), value) in names.into_iter().zip(&keys).zip(values) {
            assert_eq!(key.name, name);
            opened.opening_str_member(key, value);
            general.str_member(name, value);
        }
        for name in names {
            assert!(!opened.key(name), "{name} accepted twice");
            assert!(!general.key(name));
        }
        assert!(opened.key("order_id"));
        assert!(general.key("order_id"));
        assert_eq!(
            String::from_utf8(opened.finish()).unwrap(),
            String::from_utf8(general.finish()).unwrap()
        );
    }

    #[test]
    fn timestamps_at_the_edges_match_chrono() {
        let leap = Utc
            .with_ymd_and_hms(2016, 12, 31, 23, 59, 59)
            .single()
            .and_then(|time| time.with_nanosecond(1_500_000_000))
            .expect("a leap second");
        for time in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
            leap,
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("valid"),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0)
                .single()
                .expect("valid"),
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59)
                .single()
                .expect("valid"),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0)
                .single()
                .expect("valid"),
        ] {
            assert_eq!(written(time), chrono_text(time), "{time:?}");
        }
        assert_eq!(
            written(DateTime::UNIX_EPOCH),
            br#""1970-01-01T00:00:00.000Z""#
        );
    }

    #[test]
    fn every_byte_is_escaped_wherever_it_falls_in_a_word() {
        for byte in 0_u8..=0x7f {
            for offset in 0..17 {
                let text = format!("{}{}tail", "a".repeat(offset), char::from(byte));
                let mut out = Vec::new();
                write_str(&mut out, &text);
                let parsed: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(parsed, text, "byte {byte:#x} at {offset}");
                assert!(
                    out.iter()
                        .all(|&written| written >= 0x20 && written != 0x7f),
                    "byte {byte:#x} at {offset}: {}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = Vec::new();
        write_str(
            &mut out,
            "quote \" slash \\ line\nreturn\r tab\t nul\u{0} bell\u{7} del\u{7f} é 🥐",
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            serde_json::from_str::<String>(&text).unwrap(),
            "quote \" slash \\ line\nreturn\r tab\t nul\u{0} bell\u{7} del\u{7f} é 🥐"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn keys_are_written_once_and_reserved_names_are_prefixed_as_user_keys() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        let mut line = Line::new(&redactor);
        line.str_member("level", "INFO");
        line.str_member("level", "ERROR");
        line.value_member("level", &json!("gold"));
        line.value_member("order_id", &json!("o-1"));
        line.value_member("order_id", &json!("o-2"));
        line.value_member("weird\"key", &json!(1));
        let parsed: Value = serde_json::from_slice(&line.finish()).unwrap();
        assert_eq!(
            parsed,
            json!({"level": "INFO", "extra_level": "gold", "order_id": "o-1", "weird\"key": 1})
        );
    }

    #[test]
    fn redacted_keys_are_masked_inside_string_encoded_json() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        let mut line = Line::new(&redactor);
        let body = r#"{"customer":"c-7","password":"hunter2","payment":{"card_number":"4111"},"note":"{\"token\":\"t-1\"}"}"#;
        line.value_member(
            "event",
            &json!({"body": body, "plain": "{not json", "list": "[1,2]"}),
        );
        let text = String::from_utf8(line.finish()).unwrap();
        for secret in ["hunter2", "4111", "t-1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let inner: Value = serde_json::from_str(parsed["event"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(inner["customer"], "c-7");
        assert_eq!(inner["password"], REDACTED);
        assert_eq!(inner["payment"]["card_number"], REDACTED);
        let note: Value = serde_json::from_str(inner["note"].as_str().unwrap()).unwrap();
        assert_eq!(note["token"], REDACTED);
        assert_eq!(
            parsed["event"]["plain"], "{not json",
            "not JSON: left as it is"
        );
        assert_eq!(
            parsed["event"]["list"], "[1,2]",
            "nothing to mask: left as it is"
        );
    }

    #[test]
    fn redacted_keys_are_masked_at_any_depth_whatever_their_case() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        let mut line = Line::new(&redactor);
        line.value_member("Password", &json!("hunter2"));
        line.value_member(
            "request",
            &json!({"headers": {"Authorization": "Bearer x", "X-Api-Key": "k"},
                    "payment": [{"card_number": "4111", "amount": 5}]}),
        );
        let text = String::from_utf8(line.finish()).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("Bearer") && !text.contains("4111"));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["Password"], REDACTED);
        assert_eq!(parsed["request"]["headers"]["Authorization"], REDACTED);
        assert_eq!(parsed["request"]["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(parsed["request"]["payment"][0]["card_number"], REDACTED);
        assert_eq!(parsed["request"]["payment"][0]["amount"], 5);
    }

    /// `tracing` spells nested names with dots, as OpenTelemetry's conventions do
    /// (`http.request.header.authorization`, `db.password`): a dotted name is masked when its
    /// last part is a masked key, or when it is one with its dots as separators
    /// (`aws.session_token`). Found by an attack from the docs: they were written in clear.
    #[test]
    fn dotted_names_are_masked_by_their_last_part_or_whole() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        for key in [
            "db.password",
            "http.request.header.authorization",
            "http.response.header.set-cookie",
            "aws.session_token",
            "aws.secret.access.key",
            "user.cardNumber",
            ".password",
        ] {
            assert!(redactor.masks(key), "{key}");
        }
        for key in ["password.hint", "db.name", "token.count", "db.", "."] {
            assert!(!redactor.masks(key), "{key}");
        }
    }

    /// A name whose last words, joined by `_`, `-` or a capital, are a masked key is masked as a
    /// dotted one is (found by an attack from the docs: `db_password`, `stripe_api_key` and
    /// `userPassword` were written in clear); words before or inside a masked key are not.
    #[test]
    fn the_folded_last_words_answer_as_each_word_compared_whole() {
        // The fast path (one fold of the name's end) against comparing each trailing word as a
        // whole key: names built from masked keys' words, other words, separators and cases.
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        let defaults = redactor.by_last_words.as_deref().unwrap();
        let words = [
            "password", "Password", "PASSWORD", "api", "Api", "API", "key", "Key", "token",
            "Token", "id", "ID", "db", "DB", "x", "2", "card", "Number", "cvv", "Secret", "access",
            "AWS", "session", "cookie", "s", "é", "",
        ];
        let separators = ["", "_", "-", ".", "__"];
        let mut compared = 0;
        for first in words {
            for separator in separators {
                for second in words {
                    for third in ["", "key", "Token", "_password", "Id", "S"] {
                        let name = format!("{first}{separator}{second}{third}");
                        let whole = defaults
                            .trailing_words(&name)
                            .any(|words| defaults.masks_whole(words));
                        assert_eq!(defaults.masks_last_words(&name), whole, "{name:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 20_000);
        // Long names take the fold's bound as the whole-word path does.
        for name in [
            format!("{}_password", "x".repeat(100)),
            format!("{}Password", "é".repeat(100)),
            format!("{}_awsSecretAccessKey", "y".repeat(60)),
        ] {
            let whole = defaults
                .trailing_words(&name)
                .any(|words| defaults.masks_whole(words));
            assert_eq!(defaults.masks_last_words(&name), whole, "{name:?}");
        }
    }

    #[test]
    fn names_whose_last_words_are_a_masked_key_are_masked() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        for key in [
            "db_password",
            "userPassword",
            "new-password",
            "stripe_api_key",
            "stripeApiKey",
            "session_token",
            "auth_token",
            "csrfToken",
            "card_cvv",
            "billing_card_number",
            "DB_PASSWORD",
            "v2Password",
            "app.db_password",
            // Capitals in a run, and after a letter beyond ASCII (found by a review).
            "DBPassword",
            "SMTPPassword",
            "MySQLPassword",
            "JWTToken",
            "CSRFToken",
            "éPassword",
            "ÉPassword",
        ] {
            assert!(redactor.masks(key), "{key}");
        }
        for key in [
            "password_hint",
            "token_count",
            "tokens",
            "order_id",
            "recv_count",
            "passwords_changed",
            "secretary",
            "DBPASSWORD_hint",
            "PASSWORDHint",
            "TOKENCount",
            "é_name",
            "",
        ] {
            assert!(!redactor.masks(key), "{key}");
        }
        // Bounded as a dotted name is: 50,000 words are not compared one by one.
        let long = format!("{}password", "p_".repeat(50_000));
        assert!(redactor.trailing_words(&long).count() <= redactor.longest + 8);
        assert!(redactor.masks(&long));
        assert!(redactor.masks(&format!("{}é_password", "é".repeat(10_000))));
        // A key the caller added masks itself and dotted names only: `id` masks no `order_id`.
        let added = Redactor::new(["id", "password"]);
        assert!(added.masks("id") && added.masks("db.id") && added.masks("db_password"));
        assert!(!added.masks("order_id") && !added.masks("correlationId"));
    }

    /// A dotted name's trailing parts are compared only while they could spell a masked key:
    /// a name of 50,000 dots is not compared 50,000 times (found by a review: quadratic).
    #[test]
    fn only_short_trailing_parts_of_a_dotted_name_are_compared() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        let long = format!("{}password", "p.".repeat(50_000));
        assert!(redactor.trailing_parts(&long).count() <= redactor.longest + 8);
        assert!(redactor.masks(&long));
        assert!(redactor.masks("config.aws.secret.access.key"));
        assert!(!redactor.masks(&format!("{}é", "p.".repeat(50_000))));
    }

    /// A URL in a field keeps its query string's masked values out, as an event's
    /// `rawQueryString` does (found by an attack: written in clear as a plain string, masked
    /// whole as `%Display`).
    #[test]
    fn a_url_s_query_string_has_its_masked_values_masked() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        assert_eq!(
            masked_json_text(
                "https://api.example.com/cb?access_token=s3cr3t&page=2#top",
                &redactor
            )
            .as_deref(),
            Some("https://api.example.com/cb?access_token=*****&page=2#top")
        );
        assert_eq!(
            masked_json_text("/login?user=ann&Password=hunter2 sent", &redactor).as_deref(),
            Some("/login?user=ann&Password=***** sent")
        );
        for clear in [
            "https://api.example.com/cb?page=2",
            "what is a token?",
            "reset your password? yes=1",
            "no query",
        ] {
            assert_eq!(masked_json_text(clear, &redactor), None, "{clear}");
        }
    }

    /// JSON APIs name keys in camelCase (`cardNumber`, `accessToken`, `apiKey`): the same
    /// words as the masked keys, without their separators. Keys are compared with `-` and `_`
    /// left out, so each spelling of the words is masked, in keys and in error messages.
    #[test]
    fn masked_keys_match_in_camel_case_and_without_separators() {
        let redactor = Redactor::new(DEFAULT_REDACTED_KEYS);
        for key in [
            "cardNumber",
            "CardNumber",
            "card-number",
            "cardnumber",
            "accessToken",
            "xApiKey",
            "X-API-KEY",
            "setCookie",
            "clientSecret",
            "id-token",
            "card__number",
        ] {
            assert!(redactor.masks(key), "{key}");
        }
        for key in [
            "cardNumbers",
            "card",
            "number",
            "tokens",
            "passwordHint",
            "",
            "_",
        ] {
            assert!(!redactor.masks(key), "{key}");
        }
        // A key configured in camelCase finds its words joined in text too (a review found
        // `ibanCode` left `iban_code=…` in clear).
        let camel = Redactor::new(["ibanCode", "cardNumber"]);
        for text in [
            "rejected iban_code=DE89",
            "bad IBAN-CODE DE89",
            "ibanCode=DE89",
        ] {
            assert!(mentions_redacted_key(text, &camel), "{text}");
        }
        // Capitals in a row: the last begins the next word (a review found `IBANCode` and
        // `APIKey` never named by `iban_code` and `api_key`).
        let capitals = Redactor::new(["IBANCode", "APIKey", "userID", "x509Cert"]);
        for text in [
            "iban_code=DE89",
            "IBAN-CODE DE89",
            "api_key=abc",
            "user_id 7",
            "x509_cert",
        ] {
            assert!(mentions_redacted_key(text, &capitals), "{text}");
        }
        assert_eq!(spelled("IBANCode"), "iban_code");
        assert_eq!(spelled("APIKey"), "api_key");
        assert_eq!(spelled("userID"), "user_id");
        assert_eq!(spelled("x509Cert"), "x509_cert");
        assert_eq!(spelled("Password"), "password");
        assert_eq!(
            redacted_message("rejected iban_code=DE89", &camel),
            format!("rejected iban_code{REDACTED}")
        );
        assert!(camel.masks("iban_code") && camel.masks("IBANCODE"));
        assert!(!mentions_redacted_key("a card number", &camel));
        let custom = Redactor::new(["iban-code", "contraseña_nueva"]);
        assert!(custom.masks("ibanCode") && custom.masks("IBAN_CODE") && custom.masks("ibancode"));
        assert!(custom.masks("ContraseñaNueva") && custom.masks("CONTRASEÑA-NUEVA"));
        assert!(!custom.masks("iban"));
        assert_eq!(
            redacted_message("declined: cardNumber=4111 1111", &redactor),
            format!("declined: cardNumber{REDACTED}")
        );
        assert_eq!(
            redacted_message("bad X-Api-Key header", &redactor),
            format!("bad X-Api-Key{REDACTED}")
        );
        assert!(mentions_redacted_key("accessToken=t-1&x=2", &redactor));
        assert!(mentions_redacted_key("ACCESS-TOKEN t-1", &redactor));
        assert!(mentions_redacted_key("card__number 4111", &redactor));
        assert!(!mentions_redacted_key(
            "access denied to the order",
            &redactor
        ));
        // Separators join a key's words, never two words of the text into a key: `recv_count`
        // holds `cvc` only once its `_` is left out (a review found it masked).
        for text in [
            "recv_count mismatch: expected 3",
            "rcv_cnt",
            "spec_vcpus",
            "pass-word",
        ] {
            assert!(!mentions_redacted_key(text, &redactor), "{text}");
            assert_eq!(redacted_message(text, &redactor), text);
        }
        // A key spelled with a character whose Unicode lowercase is ASCII (the Kelvin sign,
        // U+212A, lowercases to `k`) is the key, though every masked key is ASCII.
        let kelvin_token = "to\u{212A}en";
        assert!(redactor.masks(kelvin_token));
        assert!(mentions_redacted_key(
            &format!("bad {kelvin_token}=t-1"),
            &redactor
        ));
        assert_eq!(
            redacted_message(&format!("bad {kelvin_token}=t-1"), &redactor),
            REDACTED
        );
        // A mention in another Unicode case before an ASCII one is not left in clear.
        let both = Redactor::new(["contraseña", "password"]);
        assert_eq!(
            redacted_message("CONTRASEÑA=hunter2 then password=x", &both),
            REDACTED
        );
        assert_eq!(
            redacted_message("bad password, CONTRASEÑA=hunter2", &both),
            format!("bad password{REDACTED}")
        );
        assert_eq!(
            redacted_message("la contraseña=hunter2", &both),
            format!("la contraseña{REDACTED}")
        );
    }

    /// The stack-folded comparison every line makes agrees with the letter-by-letter one, for
    /// keys of any length around the 64-byte buffer, spelled with any case and separators.
    #[test]
    fn the_folded_comparison_agrees_with_the_letter_by_letter_one() {
        let redactor = Redactor::new(["card_number", "x-api-key", &"long_key_".repeat(8)]);
        let spellings = |word: &str| {
            let mut spelled = vec![word.to_owned(), word.to_uppercase()];
            spelled.push(word.replace('_', "-"));
            spelled.push(word.replace(['_', '-'], ""));
            spelled.push(format!("_{word}_"));
            spelled.push(format!("{word}s"));
            spelled.push(format!("{}{word}", "-".repeat(60)));
            spelled
        };
        for word in [
            "card_number",
            "x_api_key",
            &"long_key_".repeat(8),
            "cardnumbe",
            "",
        ] {
            for key in spellings(word) {
                let letter_by_letter = redactor
                    .keys
                    .iter()
                    .any(|masked| same_key(masked.as_bytes(), key.as_bytes()));
                assert_eq!(redactor.masks(&key), letter_by_letter, "{key:?}");
            }
        }
        assert!(redactor.masks(&format!("{}card_number", "_".repeat(70))));
        assert!(redactor.masks(&"LONG-KEY-".repeat(8)));
    }

    #[test]
    fn an_error_is_written_with_its_type_message_and_sources() {
        #[derive(Debug)]
        enum PaymentError {
            Declined(std::io::Error),
        }
        impl fmt::Display for PaymentError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("payment declined")
            }
        }
        impl StdError for PaymentError {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                match self {
                    PaymentError::Declined(cause) => Some(cause),
                }
            }
        }
        let error = PaymentError::Declined(std::io::Error::other("provider timed out"));
        let mut out = Vec::new();
        write_error(&mut out, &error, &Redactor::new(Vec::<String>::new()));
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            json!({"type": "Declined", "message": "payment declined", "sources": ["provider timed out"]})
        );
    }

    #[test]
    fn a_failing_debug_impl_does_not_panic() {
        struct Broken;
        impl fmt::Debug for Broken {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        assert!(debug_text(&Broken).contains("failed"));
    }
}
