//! Where the first byte a JSON string cannot hold as it is falls, for the crates that write
//! JSON text by hand (the log line, the EMF document): `"`, `\`, the C0 controls, and DEL when
//! asked. Eight bytes are checked at a time with one test per word (SWAR), and the tail too.
//!
//! Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
//!
//! ```
//! use powertools_core::json_escape::first_escape;
//!
//! assert_eq!(first_escape::<false>(b"plain text, no escape"), None);
//! assert_eq!(first_escape::<false>(b"say \"hi\""), Some(4));
//! assert_eq!(first_escape::<false>(b"del\x7f"), None);
//! assert_eq!(first_escape::<true>(b"del\x7f"), Some(3));
//! ```

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
/// What the bytes after the end of a short string are taken to be: spaces need no escape.
const PADDING: u64 = ONES * 0x20;

/// The index of the first byte of `bytes` that needs escaping in a JSON string: `"`, `\` or a
/// byte below 0x20, and DEL (0x7f) too when `ESCAPE_DELETE`. Bytes of 0x80 and above (UTF-8
/// sequences) never do.
#[inline]
pub fn first_escape<const ESCAPE_DELETE: bool>(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut checked = 0;
    for chunk in words.by_ref() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        if let Some(index) = first_in_word::<ESCAPE_DELETE>(u64::from_le_bytes(word)) {
            return Some(checked + index);
        }
        checked += 8;
    }
    let tail = words.remainder();
    if tail.is_empty() {
        return None;
    }
    // The tail as one word, without copying it byte by byte into a padded buffer (a call to
    // `memcpy`, its length known only at run time): `front` bytes from the start of the string,
    // then bytes that end where the string ends (their last at `back_end - 1` in the word), then
    // padding. The two parts may overlap, which repeats bytes but never reorders a hit before
    // an earlier one: a hit in the front part is found first.
    let length = bytes.len();
    let (word, front, back_end) = match tail.len() {
        // After a full word: its last eight bytes, all clean before the tail.
        _ if length >= 8 => (load::<8>(&bytes[length - 8..]), 0, 8),
        4.. => (
            load::<4>(tail) | load::<4>(&tail[tail.len() - 4..]) << 32,
            4,
            8,
        ),
        2.. => (
            load::<2>(tail) | load::<2>(&tail[tail.len() - 2..]) << 16 | PADDING << 32,
            2,
            4,
        ),
        _ => (u64::from(tail[0]) | PADDING << 8, 1, 1),
    };
    first_in_word::<ESCAPE_DELETE>(word).map(|index| {
        if index < front {
            index
        } else {
            length + index - back_end
        }
    })
}

/// `N` bytes from the start of `bytes` as a little-endian number.
#[inline]
fn load<const N: usize>(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word[..N].copy_from_slice(&bytes[..N]);
    u64::from_le_bytes(word)
}

/// The first flagged byte of a little-endian word.
///
/// Each test is the zero-byte trick, `(x - 0x01…) & !x & 0x80…`, on `word ^ c` for each
/// character `c`, and `word - 0x20…` for the controls. A borrow only runs towards later bytes,
/// and only out of a byte that is itself a hit, so the lowest flagged byte is always a true hit
/// (later ones may be false, and are never looked at). `!x` has the same high bits for every
/// test (each `c` is below 0x80), so the tests share it and one branch.
#[inline]
fn first_in_word<const ESCAPE_DELETE: bool>(word: u64) -> Option<usize> {
    let control = word.wrapping_sub(ONES * 0x20);
    let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    let mut flagged = control | quote | backslash;
    if ESCAPE_DELETE {
        flagged |= (word ^ (ONES * 0x7f)).wrapping_sub(ONES);
    }
    let flagged = flagged & !word & HIGH;
    // At most 7 (a bit index below 64, divided by 8): the cast cannot truncate.
    (flagged != 0).then(|| (flagged.trailing_zeros() / 8) as usize)
}

#[cfg(test)]
mod tests {
    use super::first_escape;

    fn needs_escape(byte: u8, escape_delete: bool) -> bool {
        byte < 0x20 || byte == b'"' || byte == b'\\' || (escape_delete && byte == 0x7f)
    }

    fn reference(bytes: &[u8], escape_delete: bool) -> Option<usize> {
        bytes
            .iter()
            .position(|&byte| needs_escape(byte, escape_delete))
    }

    fn both(bytes: &[u8]) {
        assert_eq!(
            first_escape::<false>(bytes),
            reference(bytes, false),
            "{bytes:x?}"
        );
        assert_eq!(
            first_escape::<true>(bytes),
            reference(bytes, true),
            "{bytes:x?}"
        );
    }

    #[test]
    fn every_byte_is_found_at_every_position_of_every_length_up_to_three_words() {
        for length in 0..=24 {
            both(&vec![b'a'; length]);
            for position in 0..length {
                for byte in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; length];
                    bytes[position] = byte;
                    both(&bytes);
                }
            }
        }
    }

    #[test]
    fn the_first_of_two_flagged_bytes_is_found_whatever_follows_it() {
        // A borrow out of the first hit may flag a later byte falsely: the first is what counts.
        let interesting = [
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', b'\\', 0x7e, 0x7f, 0x80, 0xff,
        ];
        for length in 1..=17 {
            for first in 0..length {
                for second in first..length {
                    for &a in &interesting {
                        for &b in &interesting {
                            let mut bytes = vec![b'x'; length];
                            bytes[first] = a;
                            bytes[second] = b;
                            both(&bytes);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pseudo_random_strings_agree_with_the_byte_by_byte_scan() {
        // xorshift: reproducible, with every byte value and mostly plain runs.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let length = usize::try_from(next() % 70).unwrap_or_default();
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    let roll = next();
                    if roll % 16 == 0 {
                        roll.to_le_bytes()[1]
                    } else {
                        b'a' + (roll % 26).to_le_bytes()[0]
                    }
                })
                .collect();
            both(&bytes);
        }
    }
}
