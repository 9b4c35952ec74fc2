//! One queue's in-memory state and the operations on it.
//!
//! [`QueueState`] is the embedded engine's queue state machine: every method runs under the
//! queue's mutex, reads the caller's time as `now`, updates the indexes (see [`super::group`])
//! and writes the matching domain operation to the store. Writes that must be durable before an
//! answer (publish, config changes) are synced by the engine after the lock is released; lease/ack/release writes are
//! lazy (a failure is logged: the in-memory state stays authoritative while running, and a crash
//! only brings back an earlier state, i.e. redelivery).
//!
//! Work that needs a second queue (dead-lettering into a target queue) is returned as
//! [`PendingMove`]s in [`Effects`] so no thread ever holds two queue locks.
//!
//! This file holds the state and its indexes; the operations are grouped by family in
//! [`expiry`] (time-driven changes, failures, dead-lettering), [`delivery`] (publish, receive,
//! ack, nack, change visibility), [`deadletter`] (the own dead-letter store, redrive) and
//! [`admin`] (purge, stats, reset, groups). Messages are held in a [`MessageMap`] (dense chunks
//! by sequence).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::group::{Dead, GroupState, Info, Lease};
use super::store::{QueueSnapshot, Store, StoreResult};
use crate::core::error::{CoreError, Result};
use crate::core::model::{
    DEFAULT_GROUP, DEFAULT_PRIORITY, DeadLetterTarget, DeadReason, DeadState, DeliveryRecord, DeliveryState,
    GroupRecord, GroupStats, MessageBody, MessageId, MessageMeta, Millis, NewMessage, ORDER_TAG, Origin, QueueKind,
    QueueRecord, RetentionMode, TagRule,
};

mod admin;
mod deadletter;
mod delivery;
mod expiry;
mod msgmap;

pub(crate) use msgmap::MessageMap;

/// Logs a failed lazy write; see the module docs for why it does not fail the operation.
pub(crate) fn lazy(what: &str, r: StoreResult<()>) {
    if let Err(e) = r {
        tracing::error!(error = %e, op = what, "lazy store write failed");
    }
}

/// A message leaving its queue for a dead-letter queue, to be finished without the source lock.
#[derive(Debug, Clone)]
pub(crate) struct PendingMove {
    pub source: Uuid,
    pub group: u32,
    pub from_seq: u64,
    pub target: Uuid,
    /// The meta as it will be in the target (seq assigned there).
    pub meta: MessageMeta,
    /// Whether other groups still need the message (then it is copied, not moved).
    pub keep_source: bool,
    pub info: Info,
    pub reason: DeadReason,
    pub died_at: Millis,
}

/// Side effects of an operation, carried out by the broker after the lock is released.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Something became deliverable: wake the queue's waiters.
    pub notify: bool,
    pub moves: Vec<PendingMove>,
}

/// What every state operation needs besides the state: the time it runs at, the store, the
/// broker's lease-id counter, and the effects it leaves for the broker to finish.
pub(crate) struct Cx<'a> {
    pub now: Millis,
    pub store: &'a dyn Store,
    pub leases: &'a AtomicU64,
    pub fx: Effects,
}

impl Cx<'_> {
    /// A lease id never used before (see `EmbeddedEngine::open` for why it is unique across restarts).
    pub fn lease_id(&self) -> u64 {
        self.leases.fetch_add(1, Ordering::Relaxed)
    }
}

/// A delivery chosen under the lock; its body is read after.
#[derive(Debug, Clone)]
pub(crate) struct Picked {
    pub meta: MessageMeta,
    pub group: u32,
    pub lease: Lease,
    pub info: Info,
    pub dead: bool,
}

pub(crate) use crate::core::options::{ReceiveOptions, ResetPosition};

pub(crate) struct QueueState {
    pub record: QueueRecord,
    pub salt: u64,
    pub msgs: MessageMap,
    pub delayed: BTreeSet<(Millis, u64)>,
    pub delayed_seqs: BTreeSet<u64>,
    pub groups: BTreeMap<u32, GroupState>,
    /// Messages whose id is not derived from their sequence here (dead letters, redriven).
    pub aliases: HashMap<MessageId, u64>,
    /// Dead letters kept here that died in another queue: source queue → seqs.
    pub foreign_dead: HashMap<Uuid, BTreeSet<u64>>,
    /// The engine's set of queues that keep other queues' dead letters (this one is in it
    /// while `foreign_dead` is not empty), so counting a queue's dead letters kept elsewhere
    /// looks at those queues only, not at every queue of the namespace.
    pub holders: Holders,
    pub last_seq: u64,
    pub deleted: bool,
}

pub(crate) fn default_group_record(queue_id: Uuid, created_at: Millis) -> GroupRecord {
    GroupRecord {
        queue_id,
        no: DEFAULT_GROUP,
        id: "default".into(),
        name: "default".into(),
        rule: None,
        created_at,
        reset_floor: 0,
    }
}

/// See [`QueueState::holders`]. A leaf lock: nothing else is taken while it is held.
pub(crate) type Holders = std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<Uuid>>>;

impl QueueState {
    pub fn new(record: QueueRecord, holders: Holders) -> Self {
        let salt = crate::core::model::queue_salt(record.id);
        let mut groups = BTreeMap::new();
        groups.insert(DEFAULT_GROUP, GroupState::new(default_group_record(record.id, record.created_at)));
        QueueState {
            record,
            salt,
            msgs: MessageMap::new(),
            delayed: BTreeSet::new(),
            delayed_seqs: BTreeSet::new(),
            groups,
            aliases: HashMap::new(),
            foreign_dead: HashMap::new(),
            holders,
            last_seq: 0,
            deleted: false,
        }
    }

    /// Rebuilds the indexes from what the store returned at start-up.
    pub fn from_snapshot(snap: QueueSnapshot, now: Millis, holders: Holders) -> Self {
        let record = snap.record.expect("snapshot with a record");
        let mut st = QueueState::new(record, holders);
        st.last_seq = snap.last_seq;
        for g in snap.groups {
            st.groups.insert(g.no, GroupState::new(g));
        }
        let mut deliveries: HashMap<(u32, u64), DeliveryRecord> =
            snap.deliveries.into_iter().map(|(g, s, r)| ((g, s), r)).collect();
        for meta in &snap.messages {
            st.index_meta(meta);
            let seq = meta.seq;
            let delayed = meta.not_before > now;
            let pkey = st.pkey(meta);
            if delayed {
                st.delayed.insert((meta.not_before, seq));
                st.delayed_seqs.insert(seq);
            }
            for g in st.groups.values_mut() {
                let rec = deliveries.remove(&(g.no(), seq));
                let Some(rec) = rec else {
                    if !delayed && g.accepts(&meta.tags) {
                        g.ready.insert((pkey, seq));
                    }
                    continue;
                };
                let info =
                    Info { deliveries: rec.deliveries, failures: rec.failures, first_at: rec.first_delivered_at };
                if info.deliveries > 0 || info.failures > 0 {
                    g.info.insert(seq, info);
                }
                match rec.state {
                    DeliveryState::Ready => {
                        if !delayed && g.accepts(&meta.tags) {
                            g.ready.insert((pkey, seq));
                        }
                    }
                    DeliveryState::Leased { until, lease } => g.put_lease(seq, Lease { until, lease }),
                    DeliveryState::Acked => {
                        g.acked.insert(seq);
                    }
                    DeliveryState::Skipped => {}
                    DeliveryState::Dead { died_at, reason, dl } => {
                        g.info.remove(&seq);
                        g.dead.insert(seq, Dead { died_at, reason, state: DeadState::Ready, info });
                        g.set_dead_state(seq, dl);
                    }
                }
            }
        }
        // Built in bulk from sorted input: every chunk of the map is one exact allocation.
        st.msgs = snap.messages.into_iter().collect();
        st
    }

    pub(super) fn index_meta(&mut self, meta: &MessageMeta) {
        if meta.id != MessageId::new(self.salt, meta.seq) {
            self.aliases.insert(meta.id, meta.seq);
        }
        if let Some(o) = &meta.origin {
            if self.foreign_dead.is_empty() {
                self.holders.lock().insert(self.record.id);
            }
            self.foreign_dead.entry(o.queue_id).or_default().insert(meta.seq);
        }
    }

    pub(super) fn unindex_meta(&mut self, meta: &MessageMeta) {
        if meta.id != MessageId::new(self.salt, meta.seq) {
            self.aliases.remove(&meta.id);
        }
        if let Some(o) = &meta.origin
            && let Some(set) = self.foreign_dead.get_mut(&o.queue_id)
        {
            set.remove(&meta.seq);
            if set.is_empty() {
                self.foreign_dead.remove(&o.queue_id);
                if self.foreign_dead.is_empty() {
                    self.holders.lock().remove(&self.record.id);
                }
            }
        }
    }

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    /// Ordering key: the message priority when the queue honours priorities, else 0.
    pub fn pkey(&self, meta: &MessageMeta) -> u8 {
        if self.record.config.priority && self.record.config.kind == QueueKind::Standard { meta.priority } else { 0 }
    }

    pub fn seq_of(&self, id: MessageId) -> Option<u64> {
        if let Some(&s) = self.aliases.get(&id) {
            return Some(s);
        }
        let (salt, seq) = id.parts();
        (salt == self.salt && self.msgs.get(&seq).is_some_and(|m| m.id == id)).then_some(seq)
    }

    pub fn group(&self, no: u32) -> Result<&GroupState> {
        self.groups.get(&no).ok_or(CoreError::GroupNotFound)
    }

    pub(super) fn group_mut(&mut self, no: u32) -> Result<&mut GroupState> {
        self.groups.get_mut(&no).ok_or(CoreError::GroupNotFound)
    }

    /// The earliest instant something in this queue changes by itself (delay end, lease end,
    /// retention), for long-poll waiters and the maintenance tick.
    pub fn next_event(&self) -> Option<Millis> {
        let mut next = self.delayed.first().map(|(t, _)| *t);
        let mut consider = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        for g in self.groups.values() {
            if let Some((t, _)) = g.expiries.first() {
                consider(*t);
            }
            if let Some((t, _)) = g.dead_expiries.first() {
                consider(*t);
            }
        }
        if let Some(m) = self.msgs.values().next() {
            consider(m.enqueued_at.saturating_add(self.record.config.retention_secs * 1000));
        }
        next
    }

    /// Removes a message from memory (all groups, all indexes). The caller writes the store.
    pub fn drop_message(&mut self, seq: u64) -> Option<MessageMeta> {
        let meta = self.msgs.remove(&seq)?;
        let pkey = self.pkey(&meta);
        if self.delayed_seqs.remove(&seq) {
            self.delayed.remove(&(meta.not_before, seq));
        }
        for g in self.groups.values_mut() {
            g.forget_message(pkey, seq);
        }
        self.unindex_meta(&meta);
        Some(meta)
    }

    /// After group `no` finished with `seq`: in a work queue, a message no group holds is gone.
    pub(super) fn maybe_remove(&mut self, seq: u64, cx: &mut Cx) -> bool {
        if self.record.config.mode != RetentionMode::WorkQueue {
            return false;
        }
        let Some(meta) = self.msgs.get(&seq) else {
            return false;
        };
        if self.delayed_seqs.contains(&seq) {
            return false;
        }
        let pkey = self.pkey(meta);
        if self.groups.values().any(|g| g.holds(pkey, seq)) {
            return false;
        }
        self.drop_message(seq);
        lazy("remove", cx.store.remove(self.record.id, &[seq]));
        true
    }

    /// Indexes a message that is already in the store (publish, transfer in).
    pub fn insert_meta(&mut self, meta: MessageMeta) {
        let seq = meta.seq;
        self.last_seq = self.last_seq.max(seq);
        self.index_meta(&meta);
        if meta.not_before > meta.enqueued_at {
            self.delayed.insert((meta.not_before, seq));
            self.delayed_seqs.insert(seq);
        } else {
            let pkey = self.pkey(&meta);
            for g in self.groups.values_mut() {
                if g.accepts(&meta.tags) {
                    g.ready.insert((pkey, seq));
                }
            }
        }
        self.msgs.insert(seq, meta);
    }
}
