//! [`ReadySet`]: a consumer group's deliverable messages as `(priority key, seq)`, in bitmaps.
//!
//! Every queued message sits in the ready set of each group that may still receive it, so at a
//! million messages a `BTreeSet<(u8, u64)>` filled in ascending order (half-full nodes) costs
//! ~32 MB per group. Sequences are dense, so the set is kept as 64-bit words instead: the key
//! `(priority key, seq / 64)` maps to a word whose bit `seq % 64` says whether that message is
//! ready. A full word covers 64 messages in 24 bytes of map entry; an emptied word is removed.
//! Iteration order is the set's order: priority key, then sequence.

use std::collections::BTreeMap;

const WORD_BITS: u64 = 64;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadySet {
    words: BTreeMap<(u8, u64), u64>,
    len: usize,
}

fn split(seq: u64) -> (u64, u64) {
    (seq / WORD_BITS, 1u64 << (seq % WORD_BITS))
}

impl ReadySet {
    pub fn new() -> Self {
        ReadySet::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds an entry; false if it was there.
    pub fn insert(&mut self, (pkey, seq): (u8, u64)) -> bool {
        let (word, bit) = split(seq);
        let w = self.words.entry((pkey, word)).or_insert(0);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.len += 1;
        true
    }

    /// Removes an entry; false if it was not there.
    pub fn remove(&mut self, &(pkey, seq): &(u8, u64)) -> bool {
        let (word, bit) = split(seq);
        let Some(w) = self.words.get_mut(&(pkey, word)) else {
            return false;
        };
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        self.len -= 1;
        if *w == 0 {
            self.words.remove(&(pkey, word));
        }
        true
    }

    pub fn contains(&self, &(pkey, seq): &(u8, u64)) -> bool {
        let (word, bit) = split(seq);
        self.words.get(&(pkey, word)).is_some_and(|w| w & bit != 0)
    }

    /// Entries in order, starting at the first one `>= from`.
    pub fn iter_from(&self, from: (u8, u64)) -> impl Iterator<Item = (u8, u64)> + '_ {
        let (start_word, _) = split(from.1);
        self.words.range((from.0, start_word)..).flat_map(move |(&(pkey, word), &bits)| {
            // In the first word, drop the bits below `from`.
            let bits =
                if (pkey, word) == (from.0, start_word) { bits & (u64::MAX << (from.1 % WORD_BITS)) } else { bits };
            Bits(bits).map(move |b| (pkey, word * WORD_BITS + b))
        })
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        self.iter_from((0, 0))
    }

    /// Keeps only the entries for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&(u8, u64)) -> bool) {
        let mut len = 0;
        self.words.retain(|&(pkey, word), bits| {
            for b in Bits(*bits) {
                if !keep(&(pkey, word * WORD_BITS + b)) {
                    *bits &= !(1u64 << b);
                }
            }
            len += bits.count_ones() as usize;
            *bits != 0
        });
        self.len = len;
    }
}

impl FromIterator<(u8, u64)> for ReadySet {
    fn from_iter<I: IntoIterator<Item = (u8, u64)>>(iter: I) -> Self {
        let mut set = ReadySet::new();
        for e in iter {
            set.insert(e);
        }
        set
    }
}

/// The set bits of a word, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as u64;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The set behaves as the ordered set it replaces, across priority keys and words.
    #[test]
    fn matches_a_btreeset() {
        let mut ours = ReadySet::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = ((x % 3) as u8 * 4, (x >> 8) % 2000);
            if x % 5 < 3 {
                assert_eq!(ours.insert(e), model.insert(e));
            } else {
                assert_eq!(ours.remove(&e), model.remove(&e));
            }
            assert_eq!(ours.contains(&e), model.contains(&e));
        }
        assert_eq!(ours.len(), model.len());
        assert!(ours.iter().eq(model.iter().copied()));
        for from in [(0, 0), (0, 63), (0, 64), (0, 1000), (4, 7), (8, 1999), (8, 2000), (9, 0)] {
            assert!(ours.iter_from(from).eq(model.range(from..).copied()), "from {from:?}");
        }
        ours.retain(|&(p, s)| p == 4 || s % 3 == 0);
        model.retain(|&(p, s)| p == 4 || s % 3 == 0);
        assert_eq!(ours.len(), model.len());
        assert!(ours.iter().eq(model.iter().copied()));
        let rebuilt: ReadySet = model.iter().copied().collect();
        assert_eq!(rebuilt, ours);
        for e in &model {
            assert!(ours.remove(e));
        }
        assert_eq!(ours.len(), 0);
        assert!(ours.words.is_empty(), "emptied words are removed");
    }
}
