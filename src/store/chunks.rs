//! A compact set of chunk indexes, kept as sorted, disjoint, half-open ranges.
//!
//! Used to record which chunks of a file transfer are verified, so that an interrupted
//! transfer resumes where it stopped (the `have` list of `FileAccept`).

/// A set of chunk indexes stored as sorted, non-adjacent half-open ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkSet {
    ranges: Vec<(u64, u64)>,
}

impl ChunkSet {
    /// An empty set.
    pub fn new() -> Self {
        ChunkSet::default()
    }

    /// Add one index; returns whether it was new.
    pub fn insert(&mut self, index: u64) -> bool {
        // First range whose end is >= index (could contain or touch it).
        let i = self.ranges.partition_point(|&(_, end)| end < index);
        if let Some(&(s, e)) = self.ranges.get(i) {
            if s <= index && index < e {
                return false;
            }
            if e == index {
                // Extends range i at its end; maybe merges with the next one.
                let new_end = index + 1;
                match self.ranges.get(i + 1) {
                    Some(&(ns, ne)) if ns == new_end => {
                        self.ranges[i].1 = ne;
                        self.ranges.remove(i + 1);
                    }
                    _ => self.ranges[i].1 = new_end,
                }
                return true;
            }
            if s == index + 1 {
                self.ranges[i].0 = index;
                return true;
            }
        }
        self.ranges.insert(i, (index, index + 1));
        true
    }

    /// Add every index of `[start, end)` (nothing if empty), merging with the
    /// ranges it overlaps or touches: O(ranges), not O(end - start).
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Ranges ending before `start` (not touching) stay; so do those
        // starting after `end`.
        let lo = self.ranges.partition_point(|&(_, e)| e < start);
        let hi = self.ranges.partition_point(|&(s, _)| s <= end);
        let (mut s, mut e) = (start, end);
        if lo < hi {
            s = s.min(self.ranges[lo].0);
            e = e.max(self.ranges[hi - 1].1);
        }
        self.ranges.splice(lo..hi, [(s, e)]);
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end <= index);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= index)
    }

    /// Number of indexes in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, sorted, as half-open `(start, end)` pairs.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Encode as 16 bytes per range (start and end, big-endian u64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ranges.len() * 16);
        for (s, e) in &self.ranges {
            out.extend_from_slice(&s.to_be_bytes());
            out.extend_from_slice(&e.to_be_bytes());
        }
        out
    }

    /// Decode [`ChunkSet::to_bytes`]; `None` unless ranges are well-formed, sorted and disjoint.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(16) {
            return None;
        }
        let mut ranges = Vec::with_capacity(bytes.len() / 16);
        let mut prev_end: Option<u64> = None;
        for c in bytes.chunks_exact(16) {
            let s = u64::from_be_bytes(c[..8].try_into().ok()?);
            let e = u64::from_be_bytes(c[8..].try_into().ok()?);
            if s >= e || prev_end.is_some_and(|p| s <= p) {
                return None;
            }
            prev_end = Some(e);
            ranges.push((s, e));
        }
        Some(ChunkSet { ranges })
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges() {
        let mut c = ChunkSet::new();
        for i in [5, 7, 6, 0, 1, 3] {
            assert!(c.insert(i));
        }
        assert!(!c.insert(6));
        assert_eq!(c.ranges(), &[(0, 2), (3, 4), (5, 8)]);
        c.insert(2);
        assert_eq!(c.ranges(), &[(0, 4), (5, 8)]);
        c.insert(4);
        assert_eq!(c.ranges(), &[(0, 8)]);
        assert_eq!(c.len(), 8);
        assert_eq!(ChunkSet::from_bytes(&c.to_bytes()).unwrap(), c);
        assert!(ChunkSet::from_bytes(&[0; 15]).is_none());
        // Adjacent or overlapping ranges are not canonical.
        let bad = [0u64, 2, 2, 4]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<_>>();
        assert!(ChunkSet::from_bytes(&bad).is_none());
    }

    proptest! {
        #[test]
        fn insert_range_matches_inserting_each(
            ranges in proptest::collection::vec((0u64..200, 0u64..20), 0..12)
        ) {
            let mut a = ChunkSet::new();
            let mut b = ChunkSet::new();
            for (s, len) in ranges {
                a.insert_range(s, s + len);
                for i in s..s + len {
                    b.insert(i);
                }
                prop_assert_eq!(&a, &b);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(c) = ChunkSet::from_bytes(&bytes) {
                prop_assert_eq!(c.to_bytes(), bytes);
            }
        }

        #[test]
        fn behaves_like_a_set(xs in proptest::collection::vec(0u64..200, 0..120)) {
            let mut c = ChunkSet::new();
            let mut model = BTreeSet::new();
            for x in &xs {
                prop_assert_eq!(c.insert(*x), model.insert(*x));
            }
            prop_assert_eq!(c.len(), model.len() as u64);
            for i in 0..201 {
                prop_assert_eq!(c.contains(i), model.contains(&i));
            }
            prop_assert_eq!(ChunkSet::from_bytes(&c.to_bytes()), Some(c));
        }
    }
}
