//! Text that displays as nothing: names that must be seen (an idempotency operation, an order's
//! location) are refused when made of it alone; and text cut on a character boundary.

/// Whether `c` is white space, one of Unicode's default-ignorable code points (zero-width spaces
/// and joiners, the byte order mark, variation selectors, fillers, tags, …: what a renderer draws
/// as nothing), or a blank drawn as empty space (the braille blank, the interlinear annotation
/// marks).
///
/// ```
/// use powertools_core::text::is_invisible;
///
/// assert!(is_invisible('\u{200b}') && is_invisible('\u{3164}') && is_invisible(' '));
/// assert!(!is_invisible('a'));
/// ```
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// Whether `c` is one of Unicode's bidirectional formatting characters (the embeddings,
/// overrides and isolates, U+202A–U+202E and U+2066–U+2069, and the marks U+200E, U+200F and
/// U+061C): invisible themselves, they reorder the text around them on screen, so that a name
/// holding one reads as another in a log line (the "Trojan Source" characters).
///
/// ```
/// use powertools_core::text::is_bidi_control;
///
/// assert!(is_bidi_control('\u{202e}') && is_bidi_control('\u{2066}'));
/// assert!(!is_bidi_control('\u{200b}') && !is_bidi_control('a'));
/// ```
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `text` displays as empty: every character [`is_invisible`] (the empty text too).
///
/// ```
/// use powertools_core::text::displays_as_empty;
///
/// assert!(displays_as_empty("") && displays_as_empty(" \u{feff}\u{2060}"));
/// assert!(!displays_as_empty("charge\u{200b}"));
/// ```
pub fn displays_as_empty(text: &str) -> bool {
    text.chars().all(is_invisible)
}

/// The largest index at most `index` that is a character boundary of `text` (`text.len()` past
/// its end): where to cut it to at most `index` bytes. `str::floor_char_boundary`, which is newer
/// than this crate's oldest Rust.
///
/// ```
/// use powertools_core::text::floor_char_boundary;
///
/// assert_eq!(floor_char_boundary("Zürich", 2), 1);
/// assert_eq!(floor_char_boundary("Zürich", 3), 3);
/// assert_eq!(floor_char_boundary("Zürich", 99), 7);
/// ```
pub fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut end = index;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}
