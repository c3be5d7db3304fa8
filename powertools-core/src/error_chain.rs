//! An error's chain of sources, walked so that a hostile or buggy error cannot hang or panic the
//! code that describes it: a `source()` that returns the error itself (or loops through a few
//! errors) would otherwise be followed forever, and `to_string()` panics when a `Display`
//! returns `Err`.
//!
//! Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
//!
//! ```
//! use powertools_core::error_chain;
//!
//! let error = std::io::Error::other("charge failed");
//! assert_eq!(error_chain::message_chain(&error), "charge failed");
//! assert_eq!(error_chain::sources(&error).count(), 0);
//! ```

use std::error::Error;
use std::fmt::{self, Write};

/// The most sources followed after the error itself. Real chains are a handful deep (the AWS
/// SDK's are the deepest, at four or five); a longer one is almost always a cycle
/// ([`is_cut_short`] tells the two apart).
pub const MAX_SOURCES: usize = 32;

/// The error's sources, nearest first, at most [`MAX_SOURCES`] of them.
pub fn sources<'e>(
    error: &'e (dyn Error + 'static),
) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    unbounded_sources(error).take(MAX_SOURCES)
}

/// Every source, nearest first, without end when the chain loops.
fn unbounded_sources<'e>(
    error: &'e (dyn Error + 'static),
) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    std::iter::successors(error.source(), |&cause| cause.source())
}

/// Whether `error`'s chain goes on past the [`MAX_SOURCES`] that [`sources`] yields: a chain
/// deeper than the bound, whose rest a description leaves out and should say so. A chain that
/// loops (back to the error itself or to one of the sources walked) is not cut short: its rest
/// repeats what was walked. The same error means the same address *and* type (`ptr::eq` on the
/// trait objects): a wrapper and the source it holds as its first field share an address, and
/// messages may repeat in a chain that does not loop.
pub fn is_cut_short(error: &(dyn Error + 'static)) -> bool {
    let Some(past) = unbounded_sources(error).nth(MAX_SOURCES) else {
        return false;
    };
    !std::iter::once(error)
        .chain(sources(error))
        .any(|walked| std::ptr::eq(walked, past))
}

/// The text a panic carries (`panic!("…")` gives a `&str` or a `String`), if it is text.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// What a panic's payload says: its text, or, for a payload that is an error
/// (`panic_any(io_error)`, a boxed error such as `lambda_runtime::Error`), its [`message_chain`];
/// `None` for any other payload, which cannot be read.
///
/// ```
/// use powertools_core::error_chain::panic_description;
///
/// assert_eq!(panic_description(&"oven on fire").as_deref(), Some("oven on fire"));
/// assert_eq!(panic_description(&std::io::Error::other("disk full")).as_deref(), Some("disk full"));
/// assert_eq!(panic_description(&42_u8), None);
/// ```
pub fn panic_description(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    if let Some(text) = panic_text(payload) {
        return Some(text.to_owned());
    }
    let error: &(dyn Error + 'static) =
        if let Some(boxed) = payload.downcast_ref::<Box<dyn Error + Send + Sync>>() {
            boxed.as_ref()
        } else if let Some(boxed) = payload.downcast_ref::<Box<dyn Error + Send>>() {
            boxed.as_ref()
        } else {
            payload.downcast_ref::<std::io::Error>()?
        };
    // The error's own `Display` runs here, where a layer describes a panic it caught before it
    // cleans up (the idempotency layer frees its claim after): one that panics must not stop
    // that (found by a review: the claim stayed in progress).
    Some(
        crate::failure::catch_quiet_panic(|| message_chain(error))
            .unwrap_or_else(|_| "an error whose Display panicked".to_owned()),
    )
}

/// What a panic whose payload [`panic_description`] cannot read is described as.
pub const UNREADABLE_PANIC: &str = "a payload that is neither text nor an error";

/// `text` on one line, each line trimmed and joined to the next by a space: an error's
/// `Display` is read as one line (Lambda's `errorMessage`, a log line's `message`), where the
/// AWS SDK's "no credentials found in chain" lists each provider on a line of its own and
/// `aws_config`'s retry-mode message lists its options in `{:#?}`.
///
/// ```
/// use powertools_core::error_chain::one_line;
///
/// assert_eq!(one_line("valid options are: [\n    Standard,\n]".into()), "valid options are: [ Standard, ]");
/// assert_eq!(one_line("already one line".into()), "already one line");
/// ```
pub fn one_line(text: String) -> String {
    if !text.contains(['\n', '\r']) {
        return text;
    }
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `value`'s `Display`, or what it wrote and `<formatting failed>` when it returned `Err`
/// (where `to_string` would panic).
pub fn display_text(value: &dyn fmt::Display) -> String {
    let mut text = String::new();
    if write!(text, "{value}").is_err() {
        text.push_str("<formatting failed>");
    }
    text
}

/// The error's message, then each source's, joined by `": "` (`charge failed: timed out`); when
/// none has a message, its type, read off its `Debug` (`the error has no message (its type:
/// Declined)`). A
/// source with an empty message, or one the chain already holds as a part of its own (a
/// `Display` that prints its source: `connect failed: refused`, `failed (refused)`), is left
/// out; a message that is only a word of the chain's (`lock` in `timed out waiting for lock`)
/// is not.
pub fn message_chain(error: &(dyn Error + 'static)) -> String {
    let mut chain = display_text(&error);
    for cause in sources(error) {
        let message = display_text(&cause);
        if !message.is_empty() && !holds_part(&chain, &message) {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&message);
        }
    }
    if chain.trim().is_empty() {
        // Nothing to read: its type says what it is (`Declined`), where `""` said nothing. Not
        // its whole `Debug`, which holds what its `Display` held back (a card number in a
        // field: found by a review), and is written only as far as the type's name.
        return match type_name(error) {
            Some(name) => format!("the error has no message (its type: {name})"),
            None => "the error has no message".to_owned(),
        };
    }
    chain
}

/// The name of `error`'s type or variant, as [`error_type_name`](crate::failure::error_type_name)
/// reads it (`Declined` for `Declined("card")`, `std::io::Error`); `None` for an error whose
/// `Debug` names none (a boxed `String`'s is the quoted text). Only the first
/// 256 bytes of its `Debug` are written (it may hold megabytes, or what its
/// `Display` held back); a `Debug` that panics names nothing (its payload is leaked, not dropped).
///
/// ```
/// use powertools_core::error_chain::type_name;
///
/// let boxed: Box<dyn std::error::Error + Send + Sync> = "card declined".into();
/// assert_eq!(type_name(boxed.as_ref()), None);
/// let io = std::io::Error::other("disk full");
/// assert_eq!(type_name(&io).as_deref(), Some("std::io::Error"));
/// ```
pub fn type_name(error: &(dyn Error + 'static)) -> Option<String> {
    let debug = bounded_debug(error, MAX_DEBUG_CHARS)?;
    match crate::failure::error_type_name(error, &debug.text) {
        Some(name) => Some(name.to_owned()),
        // Cut short: its close is past what was read. A serde_json error's message can be long:
        // its end is read apart, as far as [`MAX_TAIL_READ`].
        None if debug.cut => match crate::failure::json_error_wrappers(&debug.text) {
            Some(wrappers)
                if debug_tail(error)
                    .is_some_and(|tail| crate::failure::json_error_tail(&tail, wrappers)) =>
            {
                Some("serde_json::Error".to_owned())
            }
            _ => crate::failure::cut_error_type_name(&debug.text).map(str::to_owned),
        },
        None => None,
    }
}

/// The most bytes of a `Debug` text [`debug_tail`] goes through for its end.
const MAX_TAIL_READ: usize = 1 << 20;

/// The bytes an end read by [`debug_tail`] keeps.
const TAIL_BYTES: usize = 128;

/// The last bytes of `error`'s `Debug` text (about [`TAIL_BYTES`]), when the text is at most
/// [`MAX_TAIL_READ`] bytes and its `Debug` does not panic (quietly, its payload leaked).
fn debug_tail(error: &(dyn Error + 'static)) -> Option<String> {
    struct Tail {
        kept: String,
        read: usize,
    }
    impl fmt::Write for Tail {
        fn write_str(&mut self, part: &str) -> fmt::Result {
            self.read += part.len();
            if self.read > MAX_TAIL_READ {
                return Err(fmt::Error);
            }
            self.kept.push_str(part);
            if self.kept.len() > 2 * TAIL_BYTES {
                let mut from = self.kept.len() - TAIL_BYTES;
                while !self.kept.is_char_boundary(from) {
                    from += 1;
                }
                self.kept.drain(..from);
            }
            Ok(())
        }
    }
    let mut tail = Tail {
        kept: String::new(),
        read: 0,
    };
    let written = crate::failure::catch_quiet_panic(|| write!(tail, "{error:?}"));
    match written {
        Ok(Ok(())) => Some(tail.kept),
        Ok(Err(_)) => None,
        Err(payload) => {
            std::mem::forget(payload);
            None
        }
    }
}

/// `error`'s `Debug` text, at most `limit` bytes of it (cut short: [`BoundedText::cut`]); `None`
/// when that `Debug` panics, quietly (the panic's message may quote what it was writing; its
/// payload is leaked, not dropped: a payload whose `Drop` panics would unwind from here).
pub(crate) fn bounded_debug(error: &(dyn Error + 'static), limit: usize) -> Option<BoundedText> {
    let mut debug = BoundedText {
        text: String::new(),
        cut: false,
        limit,
    };
    let written = crate::failure::catch_quiet_panic(|| {
        let _ = write!(debug, "{error:?}");
    });
    if let Err(payload) = written {
        std::mem::forget(payload);
        return None;
    }
    Some(debug)
}

/// Text written up to `limit` bytes, then refused (`Err`), so that a `Debug` of megabytes stops
/// there.
pub(crate) struct BoundedText {
    pub(crate) text: String,
    /// Whether writing went past the bound.
    pub(crate) cut: bool,
    limit: usize,
}

impl fmt::Write for BoundedText {
    fn write_str(&mut self, part: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if part.len() <= room {
            self.text.push_str(part);
            return Ok(());
        }
        self.text
            .push_str(&part[..crate::text::floor_char_boundary(part, room)]);
        self.cut = true;
        Err(fmt::Error)
    }
}

/// The most bytes of an error's `Debug` that [`type_name`] reads.
const MAX_DEBUG_CHARS: usize = 256;

/// Whether `chain` holds `message` as a part of its own: all of it, or where a part begins and
/// ends. A part begins at the start, after `: `, `; `, ` - `, `(`, a line break, or an opening
/// `"` (after a space or at the start), and ends at the end, before `:`, `;`, `,`, `)`, `"`, a
/// line break, ` (` or ` -`, or before a `.` that ends the text or a sentence. A description
/// that already says a cause need not repeat it; one that holds its message only inside a phrase
/// or a word (`lock` in `waiting for lock`, `west-1` in `eu-west-1`, `timeout` in `key=timeout`)
/// does not say it.
pub fn holds_part(chain: &str, message: &str) -> bool {
    chain.match_indices(message).any(|(at, _)| {
        let before = &chain[..at];
        let after = &chain[at + message.len()..];
        let opening_quote = before
            .strip_suffix('"')
            .is_some_and(|before| before.is_empty() || before.ends_with(' '));
        let begins = before.is_empty()
            || [": ", "; ", " - ", "(", "\n"]
                .iter()
                .any(|opening| before.ends_with(opening))
            || opening_quote;
        let ends = after.is_empty()
            || after.starts_with([':', ';', ',', ')', '"', '\n'])
            || after.starts_with(" (")
            || after.starts_with(" -")
            || after
                .strip_prefix('.')
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        begins && ends
    })
}

/// The message of an error known only by its `Display`, with its causes when it is a boxed
/// error (`lambda_runtime::Error`, `Box<dyn Error + Send>`, `Box<dyn Error>`) or an I/O error,
/// whose sources can be walked: [`message_chain`] then, else [`display_text`]. (A generic `E: Display` cannot
/// reach `source()` of a concrete error type; a boxed one names its type at run time.)
///
/// ```
/// use powertools_core::error_chain::display_chain;
///
/// let error: Box<dyn std::error::Error + Send + Sync> =
///     Box::new(std::io::Error::other("timed out"));
/// assert_eq!(display_chain(&error), "timed out");
/// assert_eq!(display_chain(&"no loaves"), "no loaves");
/// ```
pub fn display_chain<E: fmt::Display + 'static>(error: &E) -> String {
    let any: &dyn std::any::Any = error;
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return message_chain(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return message_chain(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return message_chain(boxed.as_ref());
    }
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return message_chain(io);
    }
    display_text(error)
}

/// Errors that misbehave, for the tests of the code that describes errors.
#[cfg(any(test, feature = "testing"))]
pub mod fixtures {
    use std::error::Error;
    use std::fmt;

    /// An error whose `source()` is itself; its message is `loops`.
    #[derive(Debug)]
    pub struct OwnSource;

    impl fmt::Display for OwnSource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loops")
        }
    }

    impl Error for OwnSource {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self)
        }
    }

    /// An error whose `Display` writes `half` and then returns `Err`.
    #[derive(Debug)]
    pub struct FailingDisplay;

    impl fmt::Display for FailingDisplay {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("half")?;
            Err(fmt::Error)
        }
    }

    impl Error for FailingDisplay {}

    /// One error of [`deep_chain`].
    #[derive(Debug)]
    pub struct Link(usize);

    /// How many errors [`deep_chain`] holds.
    pub const DEEP_CHAIN_LENGTH: usize = super::MAX_SOURCES + 8;

    static LINKS: [Link; DEEP_CHAIN_LENGTH] = {
        let mut links = [const { Link(0) }; DEEP_CHAIN_LENGTH];
        let mut index = 0;
        while index < DEEP_CHAIN_LENGTH {
            links[index] = Link(index);
            index += 1;
        }
        links
    };

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cause {}", self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            LINKS
                .get(self.0 + 1)
                .map(|link| link as &(dyn Error + 'static))
        }
    }

    /// A chain of [`DEEP_CHAIN_LENGTH`] errors with distinct messages (`cause 0`, `cause 1`, …),
    /// deeper than [`MAX_SOURCES`](super::MAX_SOURCES).
    pub fn deep_chain() -> &'static (dyn Error + 'static) {
        &LINKS[0]
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{FailingDisplay, OwnSource};
    use super::*;

    /// A `Debug` that panics names nothing, quietly: its message may quote what it was writing
    /// (a plain `catch_unwind` let the panic hook print it; found by a review).
    #[test]
    fn a_debug_that_panics_names_nothing_and_its_panic_is_quiet() {
        struct Loud;
        impl fmt::Debug for Loud {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                QUIET.set(crate::failure::panics_are_quiet());
                panic!("card 4111");
            }
        }
        impl fmt::Display for Loud {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("loud")
            }
        }
        impl Error for Loud {}
        std::thread_local! {
            static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        assert_eq!(type_name(&Loud), None);
        assert!(QUIET.get(), "the panic was not quiet");
    }

    /// A chain `depth` errors deep, each with its own message.
    #[derive(Debug)]
    struct Deep(usize);

    impl fmt::Display for Deep {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "level {}", self.0)
        }
    }

    impl Error for Deep {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            // Leaked: a test's chain of boxes that lives as long as the test binary.
            (self.0 > 0).then(|| &*Box::leak(Box::new(Deep(self.0 - 1))) as &(dyn Error + 'static))
        }
    }

    /// Two errors that are each other's source, with different messages.
    #[derive(Debug)]
    struct Ping;
    #[derive(Debug)]
    struct Pong;
    static PING: Ping = Ping;
    static PONG: Pong = Pong;

    impl fmt::Display for Ping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ping")
        }
    }

    impl fmt::Display for Pong {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("pong")
        }
    }

    impl Error for Ping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&PONG)
        }
    }

    impl Error for Pong {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&PING)
        }
    }

    /// A chain `depth` errors deep whose messages are all empty.
    #[derive(Debug)]
    struct Silent(usize);

    impl fmt::Display for Silent {
        fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
            Ok(())
        }
    }

    impl Error for Silent {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            // Leaked, as `Deep`'s.
            (self.0 > 0)
                .then(|| &*Box::leak(Box::new(Silent(self.0 - 1))) as &(dyn Error + 'static))
        }
    }

    /// An error that holds its source inline as its first field: both at one address.
    #[derive(Debug)]
    struct Nest<T>(T);

    impl<T> fmt::Display for Nest<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nested")
        }
    }

    impl<T: Error + 'static> Error for Nest<T> {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn wrappers_that_share_their_source_s_address_and_message_are_not_a_loop() {
        // 34 wrappers deep, every one at the address of the innermost and with the same message.
        let nested = Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(
            Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(
                Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(Nest(
                    Nest(std::io::Error::other("the bottom")),
                ))))))))))),
            ))))))))))),
        )))))))))));
        let chain: Vec<&(dyn Error + 'static)> = sources(&nested).collect();
        assert!(
            chain
                .iter()
                .all(|cause| std::ptr::addr_eq(*cause, chain[0])),
            "the fixture's wrappers share one address"
        );
        assert!(is_cut_short(&nested));
        assert!(!is_cut_short(&Nest(Nest(std::io::Error::other("short")))));
    }

    #[test]
    fn a_chain_is_cut_short_when_it_is_deeper_than_the_bound_not_when_it_loops() {
        assert!(is_cut_short(fixtures::deep_chain()));
        assert!(is_cut_short(&Deep(MAX_SOURCES + 1)));
        // Messages play no part: empty ones are cut short too.
        assert!(is_cut_short(&Silent(MAX_SOURCES + 1)));
        assert!(!is_cut_short(&Deep(MAX_SOURCES)));
        assert!(!is_cut_short(&OwnSource));
        assert!(!is_cut_short(&PING));
        assert!(!is_cut_short(&std::io::Error::other("alone")));
    }

    #[test]
    fn an_error_that_is_its_own_source_is_described_once() {
        assert_eq!(sources(&OwnSource).count(), MAX_SOURCES);
        assert_eq!(message_chain(&OwnSource), "loops");
    }

    #[test]
    fn a_chain_deeper_than_the_bound_stops_at_it() {
        let error = Deep(1000);
        assert_eq!(sources(&error).count(), MAX_SOURCES);
        let chain = message_chain(&error);
        assert!(chain.starts_with("level 1000: level 999: "), "{chain}");
        assert!(chain.ends_with(": level 968"), "{chain}");
    }

    #[test]
    fn a_display_that_fails_is_described_instead_of_panicking() {
        assert_eq!(message_chain(&FailingDisplay), "half<formatting failed>");
    }

    #[test]
    fn empty_and_repeated_messages_are_left_out() {
        let inner = std::io::Error::other("timed out");
        let outer = std::io::Error::other(inner);
        // io::Error's Display prints its inner error: the source's message is already there.
        assert_eq!(message_chain(&outer), "timed out");
    }

    /// An error whose chain says nothing is described by its `Debug` (found by an attack: an
    /// error with an empty `Display` was reported as `""` to Lambda and on the failure line).
    #[test]
    fn a_chain_with_no_message_is_described_by_its_debug() {
        #[derive(Debug)]
        struct Declined {
            #[allow(dead_code)]
            code: u16,
        }
        impl fmt::Display for Declined {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Ok(())
            }
        }
        impl Error for Declined {}
        assert_eq!(
            message_chain(&Declined { code: 402 }),
            "the error has no message (its type: Declined)"
        );
        assert_eq!(
            message_chain(&std::io::Error::other(" ")),
            "the error has no message (its type: std::io::Error)"
        );
        // Not the values its `Debug` holds (a review found a card number written so)
        #[derive(Debug)]
        struct Card {
            #[allow(dead_code)]
            number: String,
        }
        impl fmt::Display for Card {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Ok(())
            }
        }
        impl Error for Card {}
        let card = Card {
            number: "4111111111111111".repeat(100_000),
        };
        assert_eq!(
            message_chain(&card),
            "the error has no message (its type: Card)"
        );
    }

    /// An error with a message and a source of its own.
    #[derive(Debug)]
    struct Because(&'static str, Option<Box<Because>>);

    impl fmt::Display for Because {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Because {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    fn because(messages: &[&'static str]) -> Because {
        let (first, rest) = messages.split_first().expect("a message");
        Because(first, (!rest.is_empty()).then(|| Box::new(because(rest))))
    }

    #[test]
    fn a_cause_whose_message_is_a_word_of_the_chain_is_kept() {
        // Found by a review: `lock` was left out as "already in" `timed out waiting for lock`.
        assert_eq!(
            message_chain(&because(&["timed out waiting for lock", "lock"])),
            "timed out waiting for lock: lock"
        );
        assert_eq!(
            message_chain(&because(&["no such table orders-v2", "orders"])),
            "no such table orders-v2: orders"
        );
        // A `Display` that prints its source, after `: ` or in parentheses, is still left out.
        assert_eq!(
            message_chain(&because(&["connect failed: refused", "refused"])),
            "connect failed: refused"
        );
        assert_eq!(
            message_chain(&because(&["connect failed (refused), retrying", "refused"])),
            "connect failed (refused), retrying"
        );
        assert_eq!(
            message_chain(&because(&["a: b: c", "b: c", "c"])),
            "a: b: c"
        );
        // And after other punctuation, as a review found them repeated.
        for (chain, cause) in [
            ("connect failed - refused", "refused"),
            (
                "upload failed: connection reset (after 3 retries)",
                "connection reset",
            ),
            ("upload failed: timed out.", "timed out"),
            (
                "read failed: permission denied; using defaults",
                "permission denied",
            ),
            ("failed: \"refused\"", "refused"),
        ] {
            assert_eq!(message_chain(&because(&[chain, cause])), chain, "{chain}");
        }
        // But a piece of a word or of a value is not a part: the cause is kept (a review found
        // these dropped).
        for (chain, cause) in [
            ("no route to eu-west-1", "west-1"),
            ("invalid key=timeout", "timeout"),
            ("lookup of 'db' failed: not found", "db"),
            ("bad input: can't", "t"),
            ("version 1.2 refused", "2"),
        ] {
            assert_eq!(
                message_chain(&because(&[chain, cause])),
                format!("{chain}: {cause}"),
                "{chain}"
            );
        }
    }
}
