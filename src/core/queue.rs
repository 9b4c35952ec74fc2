//! One queue's in-memory state and the operations on it.
//!
//! [`QueueState`] is the queue core proper: every method runs under the queue's mutex, reads the
//! injected time as `now`, updates the indexes (see [`super::group`]) and writes the matching
//! domain operation to the store. Writes that must be durable before an answer (publish, config
//! changes) are synced by the broker after the lock is released; lease/ack/release writes are
//! lazy (a failure is logged: the in-memory state stays authoritative while running, and a crash
//! only brings back an earlier state, i.e. redelivery).
//!
//! Work that needs a second queue (dead-lettering into a target queue) is returned as
//! [`PendingMove`]s in [`Effects`] so no thread ever holds two queue locks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::error::{CoreError, Result};
use super::group::{Dead, GroupState, Info, Lease};
use super::model::{
    DEFAULT_GROUP, DEFAULT_PRIORITY, DeadLetterTarget, DeadReason, DeadState, DeliveryRecord, DeliveryState,
    GroupRecord, GroupStats, MAX_TAGS, MessageBody, MessageId, MessageMeta, Millis, NewMessage, Origin, QueueKind,
    QueueRecord, RetentionMode, TagRule,
};
use crate::store::{QueueSnapshot, Store, StoreResult};

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
    /// A lease id never used before (see `Broker::open` for why it is unique across restarts).
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

/// How a consume reset positions a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPosition {
    Earliest,
    Latest,
    /// Messages enqueued at or after this instant become deliverable.
    Time(Millis),
}

/// What a receive wants.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub max: usize,
    /// Lease length; `None` uses the queue's visibility timeout.
    pub lease_ms: Option<u64>,
    /// Long-poll wait; `None` uses the queue's polling wait.
    pub wait_ms: Option<u64>,
    /// The group's tag rule (named groups): fixed by the first receive that gives one.
    pub rule: Option<TagRule>,
    /// Stop adding messages once their bodies would exceed this many bytes (at least one is
    /// always returned).
    pub max_bytes: Option<u64>,
}

impl ReceiveOptions {
    pub fn new(max: usize) -> Self {
        ReceiveOptions { max, lease_ms: None, wait_ms: None, rule: None, max_bytes: None }
    }
}

pub(crate) struct QueueState {
    pub record: QueueRecord,
    pub salt: u64,
    pub msgs: BTreeMap<u64, MessageMeta>,
    pub delayed: BTreeSet<(Millis, u64)>,
    pub delayed_seqs: BTreeSet<u64>,
    pub groups: BTreeMap<u32, GroupState>,
    /// Messages whose id is not derived from their sequence here (dead letters, redriven).
    pub aliases: HashMap<MessageId, u64>,
    /// Dead letters kept here that died in another queue: source queue → seqs.
    pub foreign_dead: HashMap<Uuid, BTreeSet<u64>>,
    pub last_seq: u64,
    pub deleted: bool,
}

pub(crate) fn salt_of(id: Uuid) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")) ^ u64::from_be_bytes(b[8..16].try_into().expect("8 bytes"))
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

impl QueueState {
    pub fn new(record: QueueRecord) -> Self {
        let salt = salt_of(record.id);
        let mut groups = BTreeMap::new();
        groups.insert(DEFAULT_GROUP, GroupState::new(default_group_record(record.id, record.created_at)));
        QueueState {
            record,
            salt,
            msgs: BTreeMap::new(),
            delayed: BTreeSet::new(),
            delayed_seqs: BTreeSet::new(),
            groups,
            aliases: HashMap::new(),
            foreign_dead: HashMap::new(),
            last_seq: 0,
            deleted: false,
        }
    }

    /// Rebuilds the indexes from what the store returned at start-up.
    pub fn from_snapshot(snap: QueueSnapshot, now: Millis) -> Self {
        let record = snap.record.expect("snapshot with a record");
        let mut st = QueueState::new(record);
        st.last_seq = snap.last_seq;
        for g in snap.groups {
            st.groups.insert(g.no, GroupState::new(g));
        }
        let mut deliveries: HashMap<(u32, u64), DeliveryRecord> =
            snap.deliveries.into_iter().map(|(g, s, r)| ((g, s), r)).collect();
        for meta in snap.messages {
            st.index_meta(&meta);
            let seq = meta.seq;
            let delayed = meta.not_before > now;
            let pkey = st.pkey(&meta);
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
            st.msgs.insert(seq, meta);
        }
        st
    }

    fn index_meta(&mut self, meta: &MessageMeta) {
        if meta.id != MessageId::new(self.salt, meta.seq) {
            self.aliases.insert(meta.id, meta.seq);
        }
        if let Some(o) = &meta.origin {
            self.foreign_dead.entry(o.queue_id).or_default().insert(meta.seq);
        }
    }

    fn unindex_meta(&mut self, meta: &MessageMeta) {
        if meta.id != MessageId::new(self.salt, meta.seq) {
            self.aliases.remove(&meta.id);
        }
        if let Some(o) = &meta.origin
            && let Some(set) = self.foreign_dead.get_mut(&o.queue_id)
        {
            set.remove(&meta.seq);
            if set.is_empty() {
                self.foreign_dead.remove(&o.queue_id);
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

    fn group_mut(&mut self, no: u32) -> Result<&mut GroupState> {
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

    // ----- time-driven changes ---------------------------------------------------------------

    /// Applies everything that became due by `now`: retention, delay ends, lease ends.
    pub fn refresh(&mut self, cx: &mut Cx) {
        // Retention: sequences are assigned in time order, so expired messages are a prefix.
        let retention = self.record.config.retention_secs.saturating_mul(1000);
        let mut expired = Vec::new();
        for (seq, m) in &self.msgs {
            if m.enqueued_at.saturating_add(retention) > cx.now {
                break;
            }
            expired.push(*seq);
        }
        if !expired.is_empty() {
            for &seq in &expired {
                self.drop_message(seq);
            }
            lazy("expire", cx.store.remove(self.id(), &expired));
        }

        // Delay ends.
        while let Some(&(t, seq)) = self.delayed.first() {
            if t > cx.now {
                break;
            }
            self.delayed.pop_first();
            self.delayed_seqs.remove(&seq);
            if let Some(meta) = self.msgs.get(&seq) {
                let pkey = self.pkey(meta);
                for g in self.groups.values_mut() {
                    if seq >= g.floor() && g.accepts(&meta.tags) {
                        g.ready.insert((pkey, seq));
                    }
                }
                cx.fx.notify = true;
            }
        }

        // Lease ends: a failure each.
        let nos: Vec<u32> = self.groups.keys().copied().collect();
        for no in nos {
            loop {
                let g = self.groups.get_mut(&no).expect("group listed");
                let Some(&(until, seq)) = g.expiries.first() else {
                    break;
                };
                if until > cx.now {
                    break;
                }
                g.take_lease(seq);
                self.fail(no, seq, None, cx);
            }
            let g = self.groups.get_mut(&no).expect("group listed");
            let mut changed = Vec::new();
            while let Some(&(until, seq)) = g.dead_expiries.first() {
                if until > cx.now {
                    break;
                }
                g.set_dead_state(seq, DeadState::Ready);
                if let Some(d) = g.dead.get(&seq) {
                    changed.push((seq, d.record()));
                }
            }
            if !changed.is_empty() {
                lazy("dead-letter lease end", cx.store.settle(self.record.id, no, &changed));
                cx.fx.notify = true;
            }
        }
    }

    /// A delivery of `seq` in group `no` failed (nack, failed confirm, lease end). Counts the
    /// failure; dead-letters when the policy says so (or `force` gives a reason); else ready.
    fn fail(&mut self, no: u32, seq: u64, force: Option<DeadReason>, cx: &mut Cx) -> bool {
        let Some(meta) = self.msgs.get(&seq) else {
            return false;
        };
        let pkey = self.pkey(meta);
        let policy = self.record.config.dead_letter.clone();
        let g = self.groups.get_mut(&no).expect("group exists");
        let info = g.info.entry(seq).or_default();
        info.failures += 1;
        let info = *info;
        let reason = force
            .or_else(|| policy.as_ref().filter(|p| info.failures >= p.max_failures).map(|_| DeadReason::MaxDeliveries));
        match reason {
            Some(reason) => {
                self.dead_letter(no, seq, reason, cx);
                false
            }
            None => {
                g.ready.insert((pkey, seq));
                lazy("release", cx.store.release(self.record.id, no, seq, &g.record_of(seq, DeliveryState::Ready)));
                cx.fx.notify = true;
                true
            }
        }
    }

    /// Moves a message of group `no` to the dead letters its policy names (own store when none).
    fn dead_letter(&mut self, no: u32, seq: u64, reason: DeadReason, cx: &mut Cx) {
        let target = self.record.config.dead_letter.as_ref().map(|p| p.target);
        self.dead_letter_to(no, seq, reason, target, cx)
    }

    /// Moves a message of group `no` to `target` (own store when `None`).
    fn dead_letter_to(&mut self, no: u32, seq: u64, reason: DeadReason, target: Option<DeadLetterTarget>, cx: &mut Cx) {
        let now = cx.now;
        let qid = self.record.id;
        match target {
            Some(DeadLetterTarget::Queue(target)) if target != qid => {
                let meta = self.msgs.get(&seq).expect("message exists").clone();
                let pkey = self.pkey(&meta);
                let g = self.groups.get_mut(&no).expect("group exists");
                let info = g.info.remove(&seq).unwrap_or_default();
                let keep_source = self.groups.values().any(|other| other.no() != no && other.holds(pkey, seq));
                let first_enqueued_at = meta.origin.as_ref().map_or(meta.enqueued_at, |o| o.first_enqueued_at);
                let moved = MessageMeta {
                    origin: Some(Box::new(Origin {
                        queue_id: qid,
                        reason,
                        died_at: now,
                        deliveries: info.deliveries,
                        failures: info.failures,
                        first_enqueued_at,
                    })),
                    enqueued_at: now,
                    not_before: now,
                    ..meta
                };
                if keep_source {
                    let g = self.groups.get_mut(&no).expect("group exists");
                    g.acked.insert(seq);
                    lazy(
                        "dead-letter copy",
                        cx.store.settle(qid, no, &[(seq, g.record_of(seq, DeliveryState::Acked))]),
                    );
                } else {
                    self.drop_message(seq);
                }
                cx.fx.moves.push(PendingMove {
                    source: qid,
                    group: no,
                    from_seq: seq,
                    target,
                    meta: moved,
                    keep_source,
                    info,
                    reason,
                    died_at: now,
                });
            }
            _ => self.dead_letter_own(no, seq, reason, now, None, cx),
        }
    }

    /// Puts a message into group `no`'s own dead-letter store.
    pub fn dead_letter_own(
        &mut self,
        no: u32,
        seq: u64,
        reason: DeadReason,
        died_at: Millis,
        info: Option<Info>,
        cx: &mut Cx,
    ) {
        let g = self.groups.get_mut(&no).expect("group exists");
        let info = info.or_else(|| g.info.remove(&seq)).unwrap_or_default();
        g.info.remove(&seq);
        let d = Dead { died_at, reason, state: DeadState::Ready, info };
        g.dead.insert(seq, d);
        lazy("dead-letter", cx.store.settle(self.record.id, no, &[(seq, d.record())]));
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
    fn maybe_remove(&mut self, seq: u64, cx: &mut Cx) -> bool {
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

    // ----- publish ---------------------------------------------------------------------------

    /// Appends messages (all or none). The caller syncs the store before answering.
    pub fn publish(&mut self, msgs: Vec<NewMessage>, cx: &mut Cx) -> Result<Vec<MessageMeta>> {
        let now = cx.now;
        let cfg = &self.record.config;
        for (i, m) in msgs.iter().enumerate() {
            if m.body.len() as u64 > cfg.max_message_bytes {
                return Err(CoreError::TooLarge(format!(
                    "message {i} has {} bytes, the queue allows {}",
                    m.body.len(),
                    cfg.max_message_bytes
                )));
            }
            if m.tags.len() > MAX_TAGS {
                return Err(CoreError::InvalidArgument(format!("message {i} has more than {MAX_TAGS} tags")));
            }
            if let Some(p) = m.priority
                && !(1..=16).contains(&p)
            {
                return Err(CoreError::InvalidArgument(format!("message {i} has priority {p} (1-16)")));
            }
        }
        let mut seq = self.last_seq;
        let mut records = Vec::with_capacity(msgs.len());
        for m in msgs {
            seq += 1;
            let delay = m.delay_ms.unwrap_or(cfg.delay_secs.saturating_mul(1000));
            let meta = MessageMeta {
                seq,
                id: MessageId::new(self.salt, seq),
                kind: m.kind,
                priority: m.priority.unwrap_or(DEFAULT_PRIORITY),
                enqueued_at: now,
                not_before: now.saturating_add(delay),
                size: m.body.len() as u32,
                tags: m.tags,
                origin: None,
            };
            records.push((meta, MessageBody { body: m.body, attributes: m.attributes }));
        }
        cx.store.append(self.record.id, &records)?;
        self.last_seq = seq;
        let mut out = Vec::with_capacity(records.len());
        for (meta, _) in records {
            self.insert_meta(meta.clone());
            out.push(meta);
        }
        cx.fx.notify = true;
        Ok(out)
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

    // ----- receive ---------------------------------------------------------------------------

    /// Fixes or checks group `no`'s tag rule.
    fn apply_rule(&mut self, no: u32, rule: &TagRule, cx: &mut Cx) -> Result<()> {
        let g = self.groups.get(&no).ok_or(CoreError::GroupNotFound)?;
        match &g.record.rule {
            Some(r) if r == rule => Ok(()),
            Some(_) => Err(CoreError::TagRuleChanged),
            None => {
                let mut rec = g.record.clone();
                rec.rule = Some(rule.clone());
                cx.store.put_group(&rec)?;
                let msgs = &self.msgs;
                let g = self.groups.get_mut(&no).expect("group exists");
                g.record = rec;
                g.ready.retain(|(_, seq)| msgs.get(seq).is_some_and(|m| rule.matches(&m.tags)));
                Ok(())
            }
        }
    }

    /// Leases up to `opts.max` deliverable messages of group `no`.
    pub fn receive(&mut self, no: u32, opts: &ReceiveOptions, cx: &mut Cx) -> Result<Vec<Picked>> {
        let now = cx.now;
        self.group(no)?;
        if let Some(rule) = &opts.rule {
            self.apply_rule(no, rule, cx)?;
        }
        let lease_ms = opts.lease_ms.unwrap_or(self.record.config.visibility_timeout_secs * 1000);
        let fifo = self.record.config.kind == QueueKind::Fifo;
        let g = self.groups.get(&no).expect("group exists");
        let block = if fifo {
            let delayed_head = self
                .delayed_seqs
                .iter()
                .find(|s| **s >= g.floor() && self.msgs.get(s).is_some_and(|m| g.accepts(&m.tags)))
                .copied();
            [g.min_leased(), delayed_head].into_iter().flatten().min()
        } else {
            None
        };
        let mut chosen = Vec::new();
        let mut bytes = 0u64;
        for &(pkey, seq) in &g.ready {
            if chosen.len() >= opts.max {
                break;
            }
            if block.is_some_and(|b| seq > b) {
                break;
            }
            let size = self.msgs.get(&seq).map_or(0, |m| m.size as u64);
            if let Some(limit) = opts.max_bytes
                && !chosen.is_empty()
                && bytes + size > limit
            {
                break;
            }
            bytes += size;
            chosen.push((pkey, seq));
        }
        let qid = self.record.id;
        let g = self.groups.get_mut(&no).expect("group exists");
        let mut out = Vec::with_capacity(chosen.len());
        for (pkey, seq) in chosen {
            g.ready.remove(&(pkey, seq));
            let lease = Lease { until: now.saturating_add(lease_ms), lease: cx.lease_id() };
            g.put_lease(seq, lease);
            let info = g.info.entry(seq).or_default();
            info.deliveries += 1;
            if info.first_at == 0 {
                info.first_at = now;
            }
            let info = *info;
            let rec = g.record_of(seq, DeliveryState::Leased { until: lease.until, lease: lease.lease });
            lazy("lease", cx.store.lease(qid, no, seq, &rec));
            out.push(Picked {
                meta: self.msgs.get(&seq).expect("ready message exists").clone(),
                group: no,
                lease,
                info,
                dead: false,
            });
        }
        Ok(out)
    }

    /// Looks at up to `max` deliverable messages of group `no` without leasing them.
    pub fn peek(&self, no: u32, max: usize) -> Result<Vec<(MessageMeta, Info)>> {
        let g = self.group(no)?;
        Ok(g.ready
            .iter()
            .take(max)
            .filter_map(|(_, seq)| self.msgs.get(seq).map(|m| (m.clone(), g.info_of(*seq))))
            .collect())
    }

    // ----- settle deliveries -----------------------------------------------------------------

    /// Checks that `lease` is the live lease of `seq` in group `no`.
    fn live_lease(&self, no: u32, seq: u64, lease: u64) -> Result<Lease> {
        let g = self.groups.get(&no).ok_or(CoreError::ReceiptStale)?;
        match g.leases.get(&seq) {
            Some(l) if l.lease == lease => Ok(*l),
            _ => Err(CoreError::ReceiptStale),
        }
    }

    /// The live lease of a message addressed by id (infrai ack/nack).
    pub fn lease_by_id(&self, no: u32, id: MessageId) -> Result<(u64, Lease)> {
        let seq = self.seq_of(id).ok_or(CoreError::MessageNotFound)?;
        let g = self.group(no)?;
        g.leases.get(&seq).map(|l| (seq, *l)).ok_or(CoreError::NotInFlight)
    }

    /// Success: the group is done with the message.
    pub fn ack(&mut self, no: u32, seq: u64, lease: u64, cx: &mut Cx) -> Result<()> {
        self.live_lease(no, seq, lease)?;
        let qid = self.record.id;
        let g = self.group_mut(no)?;
        g.take_lease(seq);
        if !self.maybe_remove(seq, cx) {
            let g = self.group_mut(no)?;
            g.acked.insert(seq);
            let rec = g.record_of(seq, DeliveryState::Acked);
            lazy("ack", cx.store.settle(qid, no, &[(seq, rec)]));
        }
        Ok(())
    }

    /// Failure: counts it and requeues or dead-letters. Returns whether it was requeued.
    pub fn nack(&mut self, no: u32, seq: u64, lease: u64, dead_now: bool, cx: &mut Cx) -> Result<bool> {
        self.live_lease(no, seq, lease)?;
        self.group_mut(no)?.take_lease(seq);
        let force = dead_now.then_some(DeadReason::Nacked);
        Ok(self.fail(no, seq, force, cx))
    }

    /// A new lease for a live delivery (change-visibility); the old handle dies.
    pub fn extend(
        &mut self,
        no: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        cx: &mut Cx,
    ) -> Result<(Lease, MessageMeta, Info)> {
        self.live_lease(no, seq, lease)?;
        let qid = self.record.id;
        let meta = self.msgs.get(&seq).cloned().ok_or(CoreError::ReceiptStale)?;
        let g = self.group_mut(no)?;
        let l = Lease { until, lease: cx.lease_id() };
        g.put_lease(seq, l);
        let rec = g.record_of(seq, DeliveryState::Leased { until, lease: l.lease });
        lazy("extend", cx.store.lease(qid, no, seq, &rec));
        Ok((l, meta, g.info_of(seq)))
    }

    /// Dead-letters a live delivery at once (push subscriptions past their retries), to
    /// `target` or else where the queue's policy says.
    pub fn dead_letter_delivery(
        &mut self,
        no: u32,
        seq: u64,
        lease: u64,
        target: Option<Uuid>,
        cx: &mut Cx,
    ) -> Result<()> {
        self.live_lease(no, seq, lease)?;
        self.group_mut(no)?.take_lease(seq);
        let info = self.group_mut(no)?.info.entry(seq).or_default();
        info.failures += 1;
        let target = match target {
            Some(t) => Some(DeadLetterTarget::Queue(t)),
            None => self.record.config.dead_letter.as_ref().map(|p| p.target),
        };
        self.dead_letter_to(no, seq, DeadReason::MaxDeliveries, target, cx);
        Ok(())
    }

    // ----- dead letters of the own store -----------------------------------------------------

    /// Leases up to `max` ready dead letters of group `no`.
    pub fn receive_dead(
        &mut self,
        no: u32,
        max: usize,
        lease_ms: u64,
        max_bytes: Option<u64>,
        cx: &mut Cx,
    ) -> Result<Vec<Picked>> {
        let now = cx.now;
        let qid = self.record.id;
        let msgs = &self.msgs;
        let g = self.groups.get_mut(&no).ok_or(CoreError::GroupNotFound)?;
        let mut chosen = Vec::new();
        let mut bytes = 0;
        for (seq, d) in &g.dead {
            if chosen.len() >= max {
                break;
            }
            if d.state != DeadState::Ready {
                continue;
            }
            let size = msgs.get(seq).map_or(0, |m| m.size as u64);
            if let Some(limit) = max_bytes
                && !chosen.is_empty()
                && bytes + size > limit
            {
                break;
            }
            bytes += size;
            chosen.push(*seq);
        }
        let mut out = Vec::new();
        let mut changed = Vec::new();
        for seq in chosen {
            let lease = Lease { until: now.saturating_add(lease_ms), lease: cx.lease_id() };
            g.set_dead_state(seq, DeadState::Leased { until: lease.until, lease: lease.lease });
            let d = g.dead[&seq];
            changed.push((seq, d.record()));
            if let Some(meta) = msgs.get(&seq) {
                out.push(Picked { meta: meta.clone(), group: no, lease, info: d.info, dead: true });
            }
        }
        if !changed.is_empty() {
            lazy("dead-letter lease", cx.store.settle(qid, no, &changed));
        }
        Ok(out)
    }

    /// Settles a leased dead letter: consumed, or back to ready (never dead-lettered again).
    pub fn settle_dead(&mut self, no: u32, seq: u64, lease: u64, success: bool, cx: &mut Cx) -> Result<()> {
        let qid = self.record.id;
        let g = self.groups.get_mut(&no).ok_or(CoreError::ReceiptStale)?;
        match g.dead.get(&seq).map(|d| d.state) {
            Some(DeadState::Leased { lease: l, .. }) if l == lease => {}
            _ => return Err(CoreError::ReceiptStale),
        }
        g.set_dead_state(seq, if success { DeadState::Acked } else { DeadState::Ready });
        let rec = g.dead[&seq].record();
        lazy("dead-letter settle", cx.store.settle(qid, no, &[(seq, rec)]));
        if success {
            self.maybe_remove(seq, cx);
        } else {
            cx.fx.notify = true;
        }
        Ok(())
    }

    /// Returns an own-store dead letter of group `no` to the group's ready set, counts reset.
    pub fn redrive_own(&mut self, no: u32, seq: u64, cx: &mut Cx) -> bool {
        let Some(meta) = self.msgs.get(&seq) else {
            return false;
        };
        let pkey = self.pkey(meta);
        let Some(g) = self.groups.get_mut(&no) else {
            return false;
        };
        let Some(d) = g.dead.get(&seq).copied() else {
            return false;
        };
        if !d.pending() {
            return false;
        }
        g.set_dead_state(seq, DeadState::Ready);
        g.dead.remove(&seq);
        g.info.remove(&seq);
        g.ready.insert((pkey, seq));
        lazy("redrive", cx.store.forget(self.record.id, no, &[seq]));
        cx.fx.notify = true;
        true
    }

    // ----- whole-queue operations ------------------------------------------------------------

    /// Removes every message that is ready, delayed or in flight; dead letters stay.
    pub fn purge(&mut self, cx: &mut Cx) -> u64 {
        let mut removed = Vec::new();
        let mut purged = 0u64;
        let seqs: Vec<u64> = self.msgs.keys().copied().collect();
        for seq in seqs {
            let meta = &self.msgs[&seq];
            let pkey = self.pkey(meta);
            let delayed = self.delayed_seqs.contains(&seq);
            let active =
                delayed || self.groups.values().any(|g| g.ready.contains(&(pkey, seq)) || g.leases.contains_key(&seq));
            let has_dead =
                self.groups.values().any(|g| g.dead.get(&seq).is_some_and(|d| d.pending())) || meta.origin.is_some();
            if has_dead {
                if active {
                    purged += 1;
                    if delayed {
                        self.delayed_seqs.remove(&seq);
                        self.delayed.remove(&(meta.not_before, seq));
                    }
                    for g in self.groups.values_mut() {
                        g.ready.remove(&(pkey, seq));
                        g.take_lease(seq);
                    }
                }
            } else {
                if active {
                    purged += 1;
                }
                self.drop_message(seq);
                removed.push(seq);
            }
        }
        lazy("purge", cx.store.remove(self.record.id, &removed));
        purged
    }

    pub fn stats(&self, no: u32) -> Result<GroupStats> {
        let g = self.group(no)?;
        let mut oldest_seq = [g.min_ready(), g.leases.keys().copied().min()].into_iter().flatten().min();
        if let Some(&d) = self.delayed_seqs.first() {
            oldest_seq = Some(oldest_seq.map_or(d, |o| o.min(d)));
        }
        Ok(GroupStats {
            ready: g.ready.len() as u64,
            in_flight: g.leases.len() as u64,
            delayed: self.delayed_seqs.len() as u64,
            dead: g.dead.values().filter(|d| d.pending()).count() as u64,
            dead_total: g.dead.len() as u64,
            acked: g.acked.len() as u64,
            produced: self.msgs.len() as u64,
            oldest_enqueued_at: oldest_seq.and_then(|s| self.msgs.get(&s)).map(|m| m.enqueued_at),
        })
    }

    /// Sequence of the first message enqueued at or after `t` (or past the end).
    fn first_seq_at(&self, t: Millis) -> u64 {
        self.msgs.values().find(|m| m.enqueued_at >= t).map_or(self.last_seq + 1, |m| m.seq)
    }

    /// Repositions a named group: messages from the position on are deliverable (counts reset),
    /// earlier ones are skipped. Dead letters are untouched.
    pub fn reset(&mut self, no: u32, pos: ResetPosition, force: bool, cx: &mut Cx) -> Result<()> {
        let floor = match pos {
            ResetPosition::Earliest => 0,
            ResetPosition::Latest => self.last_seq + 1,
            ResetPosition::Time(t) => self.first_seq_at(t),
        };
        let g = self.group(no)?;
        if !force && !g.leases.is_empty() {
            return Err(CoreError::GroupBusy);
        }
        let qid = self.record.id;
        let entries: Vec<(u64, u8, bool, bool)> = self
            .msgs
            .values()
            .map(|m| (m.seq, self.pkey(m), self.delayed_seqs.contains(&m.seq), g.accepts(&m.tags)))
            .collect();
        let g = self.groups.get_mut(&no).expect("group exists");
        let leased: Vec<u64> = g.leases.keys().copied().collect();
        for seq in leased {
            g.take_lease(seq);
        }
        let mut forget = Vec::new();
        let mut skip = Vec::new();
        for (seq, pkey, delayed, accepts) in entries {
            // Dead letters themselves stay as they are; the message they came from is replayed
            // like every other one from the position on.
            if seq >= floor {
                g.acked.remove(&seq);
                g.info.remove(&seq);
                if !delayed && accepts {
                    g.ready.insert((pkey, seq));
                }
                forget.push(seq);
            } else if !g.acked.contains(&seq) && !g.dead.contains_key(&seq) {
                g.ready.remove(&(pkey, seq));
                g.info.remove(&seq);
                skip.push((
                    seq,
                    DeliveryRecord { deliveries: 0, failures: 0, first_delivered_at: 0, state: DeliveryState::Skipped },
                ));
            }
        }
        let mut rec = g.record.clone();
        rec.reset_floor = floor;
        g.record = rec.clone();
        cx.store.put_group(&rec)?;
        cx.store.forget(qid, no, &forget)?;
        cx.store.settle(qid, no, &skip)?;
        cx.fx.notify = true;
        Ok(())
    }

    /// Adds a named group starting at the earliest retained message.
    pub fn add_group(&mut self, rec: GroupRecord) {
        let mut g = GroupState::new(rec);
        for m in self.msgs.values() {
            if !self.delayed_seqs.contains(&m.seq) {
                g.ready.insert((self.pkey(m), m.seq));
            }
        }
        self.groups.insert(g.no(), g);
    }

    /// Rebuilds ready-set keys after the priority setting changed.
    pub fn rekey(&mut self) {
        let keys: HashMap<u64, u8> = self.msgs.values().map(|m| (m.seq, self.pkey(m))).collect();
        for g in self.groups.values_mut() {
            g.ready = g.ready.iter().map(|(_, s)| (keys.get(s).copied().unwrap_or(0), *s)).collect();
        }
    }

    /// Seqs of the messages here that died in queue `source`.
    pub fn foreign_dead_from(&self, source: Uuid) -> Vec<u64> {
        self.foreign_dead.get(&source).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Removes a foreign dead letter (redrive back to its source) and returns its meta.
    pub fn take_foreign(&mut self, seq: u64) -> Option<MessageMeta> {
        self.drop_message(seq)
    }

    /// Puts a message back after a failed transfer-in elsewhere: into group `no`'s own store.
    pub fn restore_as_dead(&mut self, mut meta: MessageMeta, mv: &PendingMove, cx: &mut Cx) {
        if !self.msgs.contains_key(&mv.from_seq) {
            meta.seq = mv.from_seq;
            meta.origin = None;
            self.index_meta(&meta);
            self.msgs.insert(mv.from_seq, meta);
        }
        if self.groups.contains_key(&mv.group) {
            self.groups.get_mut(&mv.group).expect("exists").acked.remove(&mv.from_seq);
            self.dead_letter_own(mv.group, mv.from_seq, mv.reason, mv.died_at, Some(mv.info), cx);
        }
    }
}
