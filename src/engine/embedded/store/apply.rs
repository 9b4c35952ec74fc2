//! Applying logged operations to sled, and the key layout they are applied to.
//!
//! Key layout (integers big-endian, so sled's byte order is numeric order):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `Q` | queue id | [`QueueRecord`](crate::core::model::QueueRecord) |
//! | `G` | queue id, group no (u32) | [`GroupRecord`](crate::core::model::GroupRecord) |
//! | `S` | queue id | highest sequence ever appended (u64) |
//! | `M` | queue id, seq (u64) | [`StoredMeta`]: where the body is in the log, and the meta |
//! | `D` | queue id, seq, group no | [`DeliveryRecord`](crate::core::model::DeliveryRecord) |
//! | `I` | namespace, 0, capability, 0, key | [`IdempotencyRecord`](crate::core::model::IdempotencyRecord) |
//! | `U` | subscription id | [`SubscriptionRecord`](crate::core::model::SubscriptionRecord) |
//! | `L` | — | lsn of the last applied log operation |
//!
//! The applier also counts, per log segment, the stored messages whose bodies are in it: a
//! segment nobody points into can be deleted once sled's state is durable.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, decode_prefix, encode};
use super::ops::{BodyLoc, Op};
use super::{StoreError, StoreResult};
use crate::core::model::{DEFAULT_GROUP, MessageMeta};

/// Largest sled batch the applier writes (in operations on keys, roughly).
const MAX_BATCH_OPS: usize = 512;

/// The value under an `M` key. The location comes first so it can be decoded alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMeta {
    pub loc: BodyLoc,
    pub meta: MessageMeta,
}

#[derive(Deserialize)]
struct LocOnly {
    loc: BodyLoc,
}

/// The location recorded in an `M` value.
pub fn loc_of(value: &[u8]) -> StoreResult<BodyLoc> {
    Ok(decode_prefix::<LocOnly>(value, "message")?.loc)
}

pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn qkey(prefix: u8, q: Uuid) -> Vec<u8> {
    key(prefix, &[q.as_bytes()])
}

pub fn mkey(q: Uuid, seq: u64) -> Vec<u8> {
    key(b'M', &[q.as_bytes(), &seq.to_be_bytes()])
}

fn dkey(q: Uuid, seq: u64, group: u32) -> Vec<u8> {
    key(b'D', &[q.as_bytes(), &seq.to_be_bytes(), &group.to_be_bytes()])
}

fn ikey(ns: &str, cap: &str, k: &str) -> Vec<u8> {
    key(b'I', &[ns.as_bytes(), &[0], cap.as_bytes(), &[0], k.as_bytes()])
}

pub fn uuid_at(k: &[u8], at: usize) -> StoreResult<Uuid> {
    k.get(at..at + 16).and_then(|b| Uuid::from_slice(b).ok()).ok_or_else(|| StoreError::new("corrupt key"))
}

pub fn u64_at(k: &[u8], at: usize) -> StoreResult<u64> {
    k.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| StoreError::new("corrupt key"))
}

pub fn u32_at(k: &[u8], at: usize) -> StoreResult<u32> {
    k.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| StoreError::new("corrupt key"))
}

/// Stored messages pointing into one log segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentUse {
    pub messages: u64,
    pub bytes: u64,
}

/// Applies operations to sled in order, in as few atomic batches as possible.
pub struct Applier {
    db: sled::Db,
    /// Group numbers per queue, so removing a message needs no scan for its delivery records.
    groups: HashMap<Uuid, BTreeSet<u32>>,
    /// The sequence high-water mark per queue (kept here so transfers need no read).
    high: HashMap<Uuid, u64>,
    /// Per log segment, the messages in sled whose bodies are in it.
    uses: HashMap<u64, SegmentUse>,
    /// Locations of the messages inserted by the batch not yet committed (a removal in the same
    /// batch cannot read them from sled).
    unwritten: HashMap<(Uuid, u64), BodyLoc>,
    /// Deleted queues whose keys are still to be removed.
    sweep: VecDeque<Uuid>,
}

impl Applier {
    pub fn new(db: sled::Db) -> StoreResult<Applier> {
        let mut groups: HashMap<Uuid, BTreeSet<u32>> = HashMap::new();
        let mut high = HashMap::new();
        let mut uses: HashMap<u64, SegmentUse> = HashMap::new();
        let mut live: HashSet<Uuid> = HashSet::new();
        for kv in db.scan_prefix([b'Q']) {
            let (k, _) = kv?;
            live.insert(uuid_at(&k, 1)?);
            groups.entry(uuid_at(&k, 1)?).or_default().insert(DEFAULT_GROUP);
        }
        for kv in db.scan_prefix([b'G']) {
            let (k, _) = kv?;
            groups.entry(uuid_at(&k, 1)?).or_default().insert(u32_at(&k, 17)?);
        }
        for kv in db.scan_prefix([b'S']) {
            let (k, v) = kv?;
            high.insert(uuid_at(&k, 1)?, u64_at(&v, 0)?);
        }
        // Queues with keys but no record: deleted, their sweep interrupted by a restart.
        let mut orphans: BTreeSet<Uuid> = BTreeSet::new();
        let mut last_queue = None;
        for kv in db.scan_prefix([b'M']) {
            let (k, v) = kv?;
            let loc = loc_of(&v)?;
            let u = uses.entry(loc.segment).or_default();
            u.messages += 1;
            u.bytes += u64::from(loc.len);
            let q = uuid_at(&k, 1)?;
            if last_queue != Some(q) {
                last_queue = Some(q);
                if !live.contains(&q) {
                    orphans.insert(q);
                }
            }
        }
        for prefix in [b'G', b'S'] {
            for kv in db.scan_prefix([prefix]) {
                let q = uuid_at(&kv?.0, 1)?;
                if !live.contains(&q) {
                    orphans.insert(q);
                }
            }
        }
        groups.retain(|q, _| live.contains(q));
        high.retain(|q, _| live.contains(q));
        Ok(Applier { db, groups, high, uses, unwritten: HashMap::new(), sweep: orphans.into_iter().collect() })
    }

    /// Deleted queues whose keys are still to be removed.
    pub fn swept_queues(&self) -> std::collections::HashSet<Uuid> {
        self.sweep.iter().copied().collect()
    }

    /// Whether deleted queues still have keys to remove.
    pub fn sweeping(&self) -> bool {
        !self.sweep.is_empty()
    }

    /// Removes up to about `budget` keys of deleted queues (delivery records first, then
    /// messages, groups, the high-water mark: a queue is recognised as deleted by its messages,
    /// groups or high-water mark until the very end, also across a restart).
    /// Returns the queue it finished, if it did.
    pub fn sweep(&mut self, budget: usize) -> StoreResult<Option<Uuid>> {
        let Some(&q) = self.sweep.front() else { return Ok(None) };
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for prefix in [b'D', b'M', b'G', b'S'] {
            for kv in self.db.scan_prefix(qkey(prefix, q)) {
                let (k, v) = kv?;
                if prefix == b'M' {
                    self.drop_use(loc_of(&v)?);
                }
                batch.remove(k);
                n += 1;
                if n >= budget {
                    self.db.apply_batch(batch)?;
                    return Ok(None);
                }
            }
        }
        self.db.apply_batch(batch)?;
        Ok(self.sweep.pop_front())
    }

    /// Per log segment, the stored messages whose bodies are in it (as of the last apply).
    pub fn uses(&self) -> &HashMap<u64, SegmentUse> {
        &self.uses
    }

    fn commit(&mut self, batch: &mut sled::Batch, lsn: u64) -> StoreResult<()> {
        batch.insert(&b"L"[..], &lsn.to_be_bytes());
        self.db.apply_batch(std::mem::take(batch))?;
        self.unwritten.clear();
        Ok(())
    }

    fn add_use(&mut self, loc: BodyLoc) {
        let u = self.uses.entry(loc.segment).or_default();
        u.messages += 1;
        u.bytes += u64::from(loc.len);
    }

    fn drop_use(&mut self, loc: BodyLoc) {
        if let Some(u) = self.uses.get_mut(&loc.segment) {
            u.messages = u.messages.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(u64::from(loc.len));
            if u.messages == 0 {
                self.uses.remove(&loc.segment);
            }
        }
    }

    /// Stores a message's meta and location. (Every operation is applied exactly once — `L`
    /// commits with the batch — so a message is never counted twice.)
    fn put_message(&mut self, batch: &mut sled::Batch, q: Uuid, meta: &MessageMeta, loc: BodyLoc) {
        batch.insert(mkey(q, meta.seq), encode(&StoredMeta { loc, meta: meta.clone() }));
        self.unwritten.insert((q, meta.seq), loc);
        self.add_use(loc);
    }

    /// Where a stored message's body is (`None`: no such message).
    fn location(&self, q: Uuid, seq: u64) -> StoreResult<Option<BodyLoc>> {
        if let Some(loc) = self.unwritten.get(&(q, seq)) {
            return Ok(Some(*loc));
        }
        match self.db.get(mkey(q, seq))? {
            Some(v) => Ok(Some(loc_of(&v)?)),
            None => Ok(None),
        }
    }

    fn remove_message(&mut self, batch: &mut sled::Batch, q: Uuid, seq: u64) -> StoreResult<()> {
        if let Some(loc) = self.location(q, seq)? {
            self.drop_use(loc);
            self.unwritten.remove(&(q, seq));
        }
        batch.remove(mkey(q, seq));
        if let Some(gs) = self.groups.get(&q) {
            for g in gs {
                batch.remove(dkey(q, seq, *g));
            }
        }
        Ok(())
    }

    fn raise(&mut self, batch: &mut sled::Batch, q: Uuid, seq: u64) {
        let h = self.high.entry(q).or_insert(0);
        if seq > *h {
            *h = seq;
            batch.insert(qkey(b'S', q), &seq.to_be_bytes());
        }
    }

    /// Applies operations in order. Operations that must read sled first get the batch so far
    /// committed before they read.
    pub fn apply(&mut self, ops: &[(u64, Op)]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        let mut pending = false;
        // The lsn of the last operation in `batch`: what a commit records as applied.
        let mut prev = 0;
        let mut size = 0;
        for (lsn, op) in ops {
            // sled holds a whole batch in memory and writes it as one log entry: keep them small.
            if pending && size >= MAX_BATCH_OPS {
                self.commit(&mut batch, prev)?;
                pending = false;
                size = 0;
            }
            match op {
                Op::PutQueue(r) => {
                    batch.insert(qkey(b'Q', r.id), encode(r));
                    self.groups.entry(r.id).or_default().insert(DEFAULT_GROUP);
                }
                Op::DeleteQueue(q) => {
                    // The queue record goes now; its other keys (a million messages, maybe)
                    // are swept behind, a slice at a time, so that the operations after this
                    // one are not held up. `load` ignores records of a queue that is gone.
                    batch.remove(qkey(b'Q', *q));
                    self.groups.remove(q);
                    self.high.remove(q);
                    if !self.sweep.contains(q) {
                        self.sweep.push_back(*q);
                    }
                }
                Op::PutGroup(g) => {
                    batch.insert(key(b'G', &[g.queue_id.as_bytes(), &g.no.to_be_bytes()]), encode(g));
                    self.groups.entry(g.queue_id).or_default().insert(g.no);
                }
                Op::DeleteGroup(q, no) => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    batch.remove(key(b'G', &[q.as_bytes(), &no.to_be_bytes()]));
                    for kv in self.db.scan_prefix(qkey(b'D', *q)) {
                        let (k, _) = kv?;
                        if u32_at(&k, 25)? == *no {
                            batch.remove(k);
                            size += 1;
                            if size >= MAX_BATCH_OPS {
                                self.commit(&mut batch, prev)?;
                                size = 0;
                            }
                        }
                    }
                    if let Some(gs) = self.groups.get_mut(q) {
                        gs.remove(no);
                    }
                }
                Op::Append(q, entries) => {
                    for e in entries {
                        self.put_message(&mut batch, *q, &e.meta, e.loc);
                    }
                    if let Some(e) = entries.last() {
                        self.raise(&mut batch, *q, e.meta.seq);
                    }
                }
                Op::Remove(q, seqs) => {
                    for seq in seqs {
                        self.remove_message(&mut batch, *q, *seq)?;
                    }
                }
                // Operations that read a message first commit the batch so far, so they see
                // every earlier operation (a removal in the batch is not in sled yet).
                Op::Transfer { from, from_seq, to, meta, keep_source } => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    match self.location(*from, *from_seq)? {
                        Some(loc) => {
                            if !keep_source {
                                self.remove_message(&mut batch, *from, *from_seq)?;
                            }
                            self.put_message(&mut batch, *to, meta, loc);
                            self.raise(&mut batch, *to, meta.seq);
                        }
                        None => {
                            tracing::error!(queue = %from, seq = from_seq, "transfer of a message sled does not have")
                        }
                    }
                }
                Op::SetDelivery(q, g, entries) => {
                    for (seq, rec) in entries {
                        batch.insert(dkey(*q, *seq, *g), encode(rec));
                    }
                    self.groups.entry(*q).or_default().insert(*g);
                }
                Op::ClearDelivery(q, g, seqs) => {
                    for seq in seqs {
                        batch.remove(dkey(*q, *seq, *g));
                    }
                }
                Op::PutIdempotency(r) => batch.insert(ikey(&r.namespace, &r.capability, &r.key), encode(r)),
                Op::DeleteIdempotency(keys) => {
                    for (ns, cap, k) in keys {
                        batch.remove(ikey(ns, cap, k));
                    }
                }
                Op::PutSubscription(s) => batch.insert(qkey(b'U', s.id), encode(s)),
                Op::DeleteSubscription(id) => batch.remove(qkey(b'U', *id)),
                Op::HighWater(q, seq) => self.raise(&mut batch, *q, *seq),
                Op::Relocate(moves) => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    for m in moves {
                        let k = mkey(m.queue, m.seq);
                        // Gone, or moved again since: nothing to do (the copy is dead bytes).
                        let Some(v) = self.db.get(&k)? else { continue };
                        let mut stored = stored_meta(&v)?;
                        if stored.loc != m.from {
                            continue;
                        }
                        stored.loc = m.loc;
                        batch.insert(k, encode(&stored));
                        self.unwritten.insert((m.queue, m.seq), m.loc);
                        self.drop_use(m.from);
                        self.add_use(m.loc);
                    }
                }
            }
            prev = *lsn;
            pending = true;
            size += op.weight();
        }
        if pending {
            self.commit(&mut batch, prev)?;
        }
        Ok(())
    }
}

/// Decodes an `M` value.
pub fn stored_meta(value: &[u8]) -> StoreResult<StoredMeta> {
    decode(value, "message")
}
