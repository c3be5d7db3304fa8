//! Buffers a thread keeps between uses: a log line's text, an EMF document, a serialized
//! response. Each is written, used and dropped at once, so the next one can reuse its memory
//! instead of allocating again.
//!
//! Internal to the powertools-rs crates: hidden from the docs and outside the semver promise.
//!
//! ```
//! use std::cell::Cell;
//!
//! use powertools_core::thread_buffer;
//!
//! thread_local! {
//!     static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
//! }
//!
//! let mut line = thread_buffer::take(&SPARE, 512);
//! line.extend_from_slice(b"{}");
//! let reused = line.as_ptr();
//! thread_buffer::keep(&SPARE, line, 16 * 1024);
//!
//! let next = thread_buffer::take(&SPARE, 512);
//! assert!(next.is_empty());
//! assert_eq!(next.as_ptr(), reused);
//! ```

use std::cell::Cell;
use std::thread::LocalKey;

/// The buffer `spare` keeps, empty; or, when it keeps none, a new one with room for `capacity`
/// items. Also a new one once the thread's locals are gone (a use from another local's
/// destructor).
pub fn take<T: 'static>(spare: &'static LocalKey<Cell<Vec<T>>>, capacity: usize) -> Vec<T> {
    let mut buffer = spare.try_with(Cell::take).unwrap_or_default();
    if buffer.capacity() == 0 {
        buffer.reserve(capacity);
    }
    buffer
}

/// Keeps `buffer`, emptied, in `spare` for the thread's next [`take`]; frees it instead when it
/// has room for more than `max_capacity` items, so that one large use does not stay with the
/// thread, or when the thread's locals are gone.
pub fn keep<T: 'static>(
    spare: &'static LocalKey<Cell<Vec<T>>>,
    mut buffer: Vec<T>,
    max_capacity: usize,
) {
    if buffer.capacity() <= max_capacity {
        buffer.clear();
        let _ = spare.try_with(|kept| kept.set(buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SPARE: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    }

    #[test]
    fn a_kept_buffer_comes_back_empty_and_a_large_one_is_freed() {
        let first = take(&SPARE, 8);
        assert!(first.capacity() >= 8);

        let mut used = first;
        used.extend([1, 2, 3]);
        let reused = used.as_ptr();
        keep(&SPARE, used, 64);
        let again = take(&SPARE, 8);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), reused);

        let mut large = again;
        large.extend(0..100);
        keep(&SPARE, large, 64);
        let fresh = take(&SPARE, 8);
        assert!(fresh.is_empty());
        assert!(fresh.capacity() < 100, "the large buffer was not kept");
    }
}
