//! The dimension sets of an invocation's documents, searched and measured as they change.
//!
//! Each `add_dimensions` call asks whether its set is there already and how large the sets
//! make every document; answered by walking every set, 10,000 sets took 44 s to add in a debug
//! build (the time grew with the square of their number, up to the 192 KB the sets may take).
//! The sets after the main one are indexed, and their sizes kept as they change: the length of
//! their names always (a sum), their escaped length once a document near the bound asked for it
//! (escaping every name of every invocation cost the per-invocation path about 800
//! instructions, for a bound most functions are far from).

use std::cell::Cell;
use std::collections::HashSet;

use crate::metrics::{Written, escaped_len};

/// `set`'s names in order, for comparing sets whatever the order they were given in.
pub(crate) fn sorted(set: &[String]) -> Vec<String> {
    let mut names = set.to_vec();
    names.sort_unstable();
    names
}

/// Dimension name lists: the first is the main set, which `add_dimension` grows; the others are
/// `add_dimensions`'s, each once.
#[derive(Debug)]
pub(crate) struct DimensionSets {
    sets: Vec<Vec<String>>,
    /// The sets after the main one (which changes in place, so it is compared as it is), each
    /// with its names sorted: one set of names in another order is the same set, since
    /// CloudWatch's metric identity ignores the order, and written twice it would publish each
    /// value twice to one metric (found by an attack from the docs).
    others: HashSet<Vec<String>>,
    /// The escaped length of every name of every set, summed: counted when first asked for,
    /// then kept as the sets grow, until they are replaced.
    escaped_bytes: Cell<Option<usize>>,
    /// The length of every name of every set, summed.
    bytes: usize,
    /// The names of every set, counted.
    names: usize,
}

impl DimensionSets {
    /// The main set alone.
    pub(crate) fn new(main: Vec<String>) -> Self {
        let mut sets = DimensionSets {
            sets: vec![main],
            others: HashSet::new(),
            escaped_bytes: Cell::new(None),
            bytes: 0,
            names: 0,
        };
        sets.measure();
        sets
    }

    /// Every set, the main one first.
    #[cfg(test)]
    pub(crate) fn all(&self) -> &[Vec<String>] {
        &self.sets
    }

    /// The main set.
    pub(crate) fn main(&self) -> &[String] {
        &self.sets[0]
    }

    /// Whether `set` is one of the sets after the main one, in any order (one the same as the
    /// main set is one of them too: see [`written`](Self::written)).
    pub(crate) fn contains(&self, set: &[String]) -> bool {
        self.others.contains(&sorted(set))
    }

    /// Adds `set` after the others, unless it is there already, in any order. One the same as
    /// the main set is kept, since the main set may grow past it (`add_dimension`): it is left
    /// out of the documents only while the two are the same.
    pub(crate) fn push(&mut self, set: Vec<String>) {
        let names = sorted(&set);
        if self.others.contains(&names) {
            return;
        }
        self.count(&set);
        self.others.insert(names);
        self.sets.push(set);
    }

    /// Inserts `name` into the main set at `at`.
    pub(crate) fn insert_into_main(&mut self, at: usize, name: String) {
        self.count(std::slice::from_ref(&name));
        // Counted as a name, not as a set: the main set's brackets are counted already.
        self.sets[0].insert(at, name);
    }

    /// The sets a document writes: every set but one the same as the main set, in any order,
    /// which would publish each value twice to one metric (found by an attack from the docs:
    /// `add_dimensions([("region", …)])`, then `add_dimension("region", …)`, wrote
    /// `[["region"],["region"]]`). Kept all the same, and counted in the sizes: the main set
    /// may grow past it (a review found it dropped then).
    pub(crate) fn written(&self) -> std::borrow::Cow<'_, [Vec<String>]> {
        if self.others.is_empty() {
            return std::borrow::Cow::Borrowed(&self.sets);
        }
        let main = sorted(&self.sets[0]);
        if !self.others.contains(&main) {
            return std::borrow::Cow::Borrowed(&self.sets);
        }
        let mut written = vec![self.sets[0].clone()];
        written.extend(
            self.sets[1..]
                .iter()
                .filter(|set| sorted(set) != main)
                .cloned(),
        );
        std::borrow::Cow::Owned(written)
    }

    /// Drops every set but the main one, which `change` then changes in place.
    pub(crate) fn keep_main(&mut self, change: impl FnOnce(&mut Vec<String>)) {
        // At each invocation's end: most invocations add no set, and their end does no more
        // than it did before the sets were indexed.
        if self.sets.len() > 1 {
            self.sets.truncate(1);
            self.others.clear();
        }
        change(&mut self.sets[0]);
        self.measure();
    }

    /// Replaces every set with what `change` makes of them (the main set first), then indexes
    /// and measures them again.
    pub(crate) fn rebuild(&mut self, change: impl FnOnce(Vec<Vec<String>>) -> Vec<Vec<String>>) {
        let sets = change(std::mem::take(&mut self.sets));
        self.sets = if sets.is_empty() {
            vec![Vec::new()]
        } else {
            sets
        };
        self.others = self.sets[1..].iter().map(|set| sorted(set)).collect();
        self.measure();
    }

    /// The bytes the sets take in a document (each name quoted and followed by a comma, each
    /// set's brackets and the comma after it), each name counted as `written` says.
    pub(crate) fn written_bytes(&self, written: Written) -> usize {
        let names = match written {
            Written::Escaped => match self.escaped_bytes.get() {
                Some(bytes) => bytes,
                None => {
                    let bytes = self
                        .sets
                        .iter()
                        .flatten()
                        .map(|name| escaped_len(name))
                        .sum();
                    self.escaped_bytes.set(Some(bytes));
                    bytes
                }
            },
            Written::AtMost => 6 * self.bytes,
        };
        names + 3 * self.names + 3 * self.sets.len()
    }

    /// How many sets name `name`.
    pub(crate) fn naming(&self, name: &str) -> usize {
        self.sets
            .iter()
            .flatten()
            .filter(|existing| *existing == name)
            .count()
    }

    /// Whether none of the lists has grown past `max` entries (a state that has is not kept for
    /// the next invocation).
    pub(crate) fn is_small(&self, max: usize) -> bool {
        // A hash set keeps an eighth of its table free: 113 sets take a table of 224 (a review
        // found a state of 113 sets no longer recycled, which a list of 128 had been).
        self.sets.capacity() <= max
            && self.others.capacity() <= 2 * max
            && self.sets.iter().all(|set| set.capacity() <= max)
    }

    /// Counts the sizes of every set again, leaving the escaped length to be counted when asked.
    fn measure(&mut self) {
        self.escaped_bytes.set(None);
        self.bytes = self.sets.iter().flatten().map(String::len).sum();
        self.names = self.sets.iter().map(Vec::len).sum();
    }

    /// Adds `names` to the sizes.
    fn count(&mut self, names: &[String]) {
        for name in names {
            self.bytes += name.len();
            self.names += 1;
        }
        if let Some(bytes) = self.escaped_bytes.get() {
            let added: usize = names.iter().map(|name| escaped_len(name)).sum();
            self.escaped_bytes.set(Some(bytes + added));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes kept as the sets change are what walking every set gives.
    fn walked(sets: &DimensionSets, written: Written) -> usize {
        sets.all()
            .iter()
            .map(|set| {
                set.iter()
                    .map(|name| {
                        let len = match written {
                            Written::Escaped => escaped_len(name),
                            Written::AtMost => 6 * name.len(),
                        };
                        len + 3
                    })
                    .sum::<usize>()
                    + 3
            })
            .sum()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn assert_measured(sets: &DimensionSets) {
        for written in [Written::Escaped, Written::AtMost] {
            assert_eq!(sets.written_bytes(written), walked(sets, written));
        }
        // Counted once asked for, then kept as the sets change.
        assert!(sets.escaped_bytes.get().is_some());
        let others: HashSet<Vec<String>> = sets.all()[1..].iter().map(|set| sorted(set)).collect();
        assert_eq!(sets.others, others);
    }

    #[test]
    fn the_sizes_and_the_index_follow_every_change() {
        let mut sets = DimensionSets::new(names(&["env", "service"]));
        assert_measured(&sets);
        sets.push(names(&["env", "tenant"]));
        sets.push(names(&["env", "quo\"ted\u{1}"]));
        // Twice: kept once.
        sets.push(names(&["env", "tenant"]));
        assert_eq!(sets.all().len(), 3);
        assert_measured(&sets);
        assert!(sets.contains(&names(&["env", "tenant"])));
        // In another order, the same set (CloudWatch's metric identity ignores the order).
        assert!(sets.contains(&names(&["tenant", "env"])));
        sets.push(names(&["tenant", "env"]));
        assert_eq!(sets.all().len(), 3);
        // The main set's names as a set: kept, and not written while the main set is the same.
        sets.push(names(&["service", "env"]));
        assert_eq!(sets.all().len(), 4);
        assert_eq!(sets.written().len(), 3);
        sets.insert_into_main(1, "région".to_owned());
        assert_eq!(sets.main(), names(&["env", "région", "service"]));
        assert_eq!(sets.written().len(), 4, "the main set grew past it");
        assert_measured(&sets);
        // The main set grown into another set: that one is not written.
        sets.push(names(&["tier", "service", "région", "env"]));
        sets.insert_into_main(3, "tier".to_owned());
        assert_eq!(sets.main(), names(&["env", "région", "service", "tier"]));
        assert_eq!(sets.all().len(), 5);
        assert_eq!(sets.written().len(), 4);
        assert!(
            !sets.written()[1..]
                .iter()
                .any(|set| sorted(set) == sorted(sets.main()))
        );
        assert_measured(&sets);
        sets.keep_main(|main| main.retain(|name| name != "tier"));
        sets.push(names(&["env", "tenant"]));
        sets.push(names(&["env", "quo\"ted\u{1}"]));
        assert_eq!(sets.all().len(), 3);
        sets.rebuild(|all| {
            all.into_iter()
                .filter(|set| !set.contains(&"tenant".to_owned()))
                .collect()
        });
        assert_eq!(sets.all().len(), 2);
        assert!(!sets.contains(&names(&["env", "tenant"])));
        assert_measured(&sets);
        assert_eq!(sets.naming("env"), 2);
        sets.keep_main(|main| main.retain(|name| name != "région"));
        assert_eq!(sets.all(), [names(&["env", "service"])]);
        assert_measured(&sets);
        // Up to 128 sets, the main one among them, stay small enough to be recycled, as a list
        // of 128 did (the index's table is larger than its sets: a review found 113 no longer
        // recycled).
        for count in [113, 127] {
            let mut grown = DimensionSets::new(names(&["service"]));
            for index in 0..count {
                grown.push(vec![format!("d{index}")]);
            }
            grown.keep_main(|_| {});
            assert!(
                grown.is_small(128),
                "{count} sets: {}",
                grown.others.capacity()
            );
        }
        // Nothing left: an empty main set stays.
        sets.rebuild(|_| Vec::new());
        assert_eq!(sets.all(), [Vec::<String>::new()]);
        assert_measured(&sets);
    }
}
