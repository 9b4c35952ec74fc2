//! [`MessageMap`]: a queue's messages by sequence number, stored densely.
//!
//! A queue holds up to millions of [`MessageMeta`]s, keyed by a sequence that grows with every
//! publish. A `BTreeMap<u64, MessageMeta>` fed in ascending order leaves its nodes about half
//! full (each split keeps half a node behind), which at a million messages costs ~100 MB of
//! slack. Here messages live in fixed ranges of 64 sequences ("chunks"), each a sorted
//! `VecDeque` of exactly the messages present in that range: a full chunk is one allocation of
//! 64 metas, the front of a draining queue is popped without shifting, and a chunk that empties
//! is freed. Sparse chunks (messages left behind by a consumer that skipped them) shrink their
//! allocation, so a mostly-acked range does not pin its memory.
//!
//! The API follows the subset of `BTreeMap` the queue uses: ordered iteration, `get`,
//! `insert`, `remove`, `len`. The key is always the meta's own `seq`.

use std::collections::{BTreeMap, VecDeque};

use crate::core::model::MessageMeta;

const CHUNK_BITS: u32 = 6;

#[derive(Debug, Default)]
pub(crate) struct MessageMap {
    chunks: BTreeMap<u64, VecDeque<MessageMeta>>,
    len: usize,
}

fn chunk_of(seq: u64) -> u64 {
    seq >> CHUNK_BITS
}

impl MessageMap {
    pub fn new() -> Self {
        MessageMap::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, seq: &u64) -> Option<&MessageMeta> {
        let chunk = self.chunks.get(&chunk_of(*seq))?;
        chunk.binary_search_by_key(seq, |m| m.seq).ok().map(|i| &chunk[i])
    }

    pub fn contains_key(&self, seq: &u64) -> bool {
        self.get(seq).is_some()
    }

    /// Stores `meta` under its sequence (`seq` must equal `meta.seq`); returns what it replaced.
    pub fn insert(&mut self, seq: u64, meta: MessageMeta) -> Option<MessageMeta> {
        debug_assert_eq!(seq, meta.seq, "a message is keyed by its own sequence");
        let chunk = self.chunks.entry(chunk_of(seq)).or_default();
        // Publishes append: check the back before searching.
        if chunk.back().is_none_or(|m| m.seq < seq) {
            chunk.push_back(meta);
            self.len += 1;
            return None;
        }
        match chunk.binary_search_by_key(&seq, |m| m.seq) {
            Ok(i) => Some(std::mem::replace(&mut chunk[i], meta)),
            Err(i) => {
                chunk.insert(i, meta);
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, seq: &u64) -> Option<MessageMeta> {
        let key = chunk_of(*seq);
        let chunk = self.chunks.get_mut(&key)?;
        let i = chunk.binary_search_by_key(seq, |m| m.seq).ok()?;
        let meta = chunk.remove(i).expect("index found by search");
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(&key);
        } else if chunk.len() * 4 <= chunk.capacity() && chunk.capacity() > 8 {
            chunk.shrink_to(chunk.len() * 2);
        }
        Some(meta)
    }

    /// Messages in sequence order.
    pub fn values(&self) -> impl Iterator<Item = &MessageMeta> {
        self.chunks.values().flatten()
    }

    /// Sequences in order.
    pub fn keys(&self) -> impl Iterator<Item = &u64> {
        self.values().map(|m| &m.seq)
    }

    /// `(seq, meta)` pairs in sequence order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &MessageMeta)> {
        self.values().map(|m| (&m.seq, m))
    }
}

impl std::ops::Index<&u64> for MessageMap {
    type Output = MessageMeta;

    fn index(&self, seq: &u64) -> &MessageMeta {
        self.get(seq).expect("message present")
    }
}

/// Built from messages in any order; sorted input (a store snapshot) fills each chunk with one
/// exact allocation.
impl FromIterator<MessageMeta> for MessageMap {
    fn from_iter<I: IntoIterator<Item = MessageMeta>>(iter: I) -> Self {
        let mut metas: Vec<MessageMeta> = iter.into_iter().collect();
        if !metas.is_sorted_by(|a, b| a.seq < b.seq) {
            // As with a map, the last of equal sequences wins: reversed, a stable sort puts it
            // first among its equals, and `dedup` keeps the first.
            metas.reverse();
            metas.sort_by_key(|m| m.seq);
            metas.dedup_by_key(|m| m.seq);
        }
        // Count each chunk first so every chunk is allocated once, at its exact size.
        let mut sizes: Vec<(u64, usize)> = Vec::new();
        for m in &metas {
            match sizes.last_mut() {
                Some((key, n)) if *key == chunk_of(m.seq) => *n += 1,
                _ => sizes.push((chunk_of(m.seq), 1)),
            }
        }
        let mut map = MessageMap { chunks: BTreeMap::new(), len: metas.len() };
        let mut metas = metas.into_iter();
        for (key, n) in sizes {
            let mut chunk = VecDeque::with_capacity(n);
            chunk.extend(metas.by_ref().take(n));
            map.chunks.insert(key, chunk);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{BodyKind, MessageId};

    fn meta(seq: u64) -> MessageMeta {
        MessageMeta {
            seq,
            id: MessageId::new(7, seq),
            kind: BodyKind::Text,
            priority: 0,
            enqueued_at: seq,
            not_before: seq,
            size: 1,
            tags: Vec::new(),
            origin: None,
        }
    }

    /// The map behaves as the ordered map it replaces, under a mixed workload across chunks.
    #[test]
    fn matches_a_btreemap() {
        let mut ours = MessageMap::new();
        let mut model = BTreeMap::new();
        // A deterministic mix: ascending appends, out-of-order re-inserts, scattered removals.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = match x % 4 {
                0 | 1 => step,
                2 => x % (step + 1),
                _ => {
                    let seq = x % (step + 1);
                    assert_eq!(ours.remove(&seq).map(|m| m.seq), model.remove(&seq).map(|m: MessageMeta| m.seq));
                    continue;
                }
            };
            let replaced = ours.insert(seq, meta(seq)).map(|m| m.seq);
            assert_eq!(replaced, model.insert(seq, meta(seq)).map(|m| m.seq));
        }
        assert_eq!(ours.len(), model.len());
        assert!(ours.keys().copied().eq(model.keys().copied()));
        assert!(ours.iter().map(|(k, m)| (*k, m.seq)).eq(model.iter().map(|(k, m)| (*k, m.seq))));
        for seq in 0..20_000 {
            assert_eq!(ours.get(&seq).map(|m| m.seq), model.get(&seq).map(|m| m.seq));
        }
        for seq in model.keys() {
            ours.remove(seq);
        }
        assert_eq!(ours.len(), 0);
        assert!(ours.chunks.is_empty(), "emptied chunks are freed");
    }

    #[test]
    fn sparse_chunks_give_memory_back() {
        let mut map: MessageMap = (0..64).map(meta).collect();
        assert_eq!(map.chunks[&0].capacity(), 64);
        for seq in 1..63 {
            map.remove(&seq);
        }
        assert_eq!(map.len(), 2);
        assert!(map.chunks[&0].capacity() <= 8, "capacity {}", map.chunks[&0].capacity());
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![0, 63]);
    }

    #[test]
    fn collects_unsorted_input() {
        let mut late = meta(3);
        late.size = 2;
        let map: MessageMap = [meta(200), meta(3), meta(70), late, meta(1)].into_iter().collect();
        assert_eq!(map.len(), 4);
        assert_eq!(map[&3].size, 2, "the last of equal sequences wins, as in a map");
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![1, 3, 70, 200]);
        assert_eq!(map[&70].seq, 70);
    }
}
