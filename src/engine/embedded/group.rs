//! One consumer group's view of a queue: ready set, leases, counts, acks, own dead letters.
//!
//! The default group (number 0) is what MNS and infrai consume from; named groups (DMS, CTYun)
//! each see every message (fan-out) with their own copy of this state. The structures are
//! indexes over the queue's message map, keyed by sequence number:
//!
//! * `ready`: deliverable now, ordered by (priority key, seq) — the priority key is 0 when the
//!   queue ignores priorities, which makes the order plain FIFO;
//! * `leases` / `expiries`: in-flight deliveries, by seq and by lease end;
//! * `info`: delivery counts of messages delivered at least once;
//! * `acked`: retained messages this group finished (log-mode queues keep them);
//! * `dead` / `dead_expiries`: the group's own dead-letter store and its leases.
//!
//! A message that is in none of these sets is *done* for the group: acked (work mode), skipped by
//! a reset, filtered out by the group's tag rule, or moved to a dead-letter queue.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ready::ReadySet;
use crate::core::model::{DeadReason, DeadState, DeliveryRecord, DeliveryState, GroupRecord, Millis, TagRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lease {
    pub until: Millis,
    pub lease: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Info {
    pub deliveries: u32,
    pub failures: u32,
    pub first_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dead {
    pub died_at: Millis,
    pub reason: DeadReason,
    pub state: DeadState,
    pub info: Info,
}

impl Dead {
    pub fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            deliveries: self.info.deliveries,
            failures: self.info.failures,
            first_delivered_at: self.info.first_at,
            state: DeliveryState::Dead { died_at: self.died_at, reason: self.reason, dl: self.state },
        }
    }

    pub fn pending(&self) -> bool {
        !matches!(self.state, DeadState::Acked)
    }
}

#[derive(Debug)]
pub(crate) struct GroupState {
    pub record: GroupRecord,
    pub ready: ReadySet,
    pub leases: HashMap<u64, Lease>,
    pub expiries: BTreeSet<(Millis, u64)>,
    pub info: HashMap<u64, Info>,
    pub acked: BTreeSet<u64>,
    pub dead: BTreeMap<u64, Dead>,
    pub dead_expiries: BTreeSet<(Millis, u64)>,
}

impl GroupState {
    pub fn new(record: GroupRecord) -> Self {
        GroupState {
            record,
            ready: ReadySet::new(),
            leases: HashMap::new(),
            expiries: BTreeSet::new(),
            info: HashMap::new(),
            acked: BTreeSet::new(),
            dead: BTreeMap::new(),
            dead_expiries: BTreeSet::new(),
        }
    }

    pub fn no(&self) -> u32 {
        self.record.no
    }

    /// Delayed messages with a sequence below this are skipped when their delay ends (a reset
    /// passed over them).
    pub fn floor(&self) -> u64 {
        self.record.reset_floor
    }

    /// Whether a message with these tags is for this group (no rule yet: everything is).
    pub fn accepts(&self, tags: &[String]) -> bool {
        self.record.rule.as_ref().is_none_or(|r: &TagRule| r.matches(tags))
    }

    pub fn info_of(&self, seq: u64) -> Info {
        self.info.get(&seq).copied().unwrap_or_default()
    }

    /// The persisted form of a message's state in this group, given its new state.
    pub fn record_of(&self, seq: u64, state: DeliveryState) -> DeliveryRecord {
        let i = self.info_of(seq);
        DeliveryRecord { deliveries: i.deliveries, failures: i.failures, first_delivered_at: i.first_at, state }
    }

    /// Whether the group still has something to do with the message.
    pub fn holds(&self, pkey: u8, seq: u64) -> bool {
        self.ready.contains(&(pkey, seq))
            || self.leases.contains_key(&seq)
            || self.dead.get(&seq).is_some_and(Dead::pending)
    }

    /// Ends a lease (whatever the reason) and returns it.
    pub fn take_lease(&mut self, seq: u64) -> Option<Lease> {
        let l = self.leases.remove(&seq)?;
        self.expiries.remove(&(l.until, seq));
        Some(l)
    }

    pub fn put_lease(&mut self, seq: u64, l: Lease) {
        if let Some(old) = self.leases.insert(seq, l) {
            self.expiries.remove(&(old.until, seq));
        }
        self.expiries.insert((l.until, seq));
    }

    pub fn set_dead_state(&mut self, seq: u64, state: DeadState) {
        if let Some(d) = self.dead.get_mut(&seq) {
            if let DeadState::Leased { until, .. } = d.state {
                self.dead_expiries.remove(&(until, seq));
            }
            if let DeadState::Leased { until, .. } = state {
                self.dead_expiries.insert((until, seq));
            }
            d.state = state;
        }
    }

    /// Drops every trace of a message (it is leaving the queue).
    pub fn forget_message(&mut self, pkey: u8, seq: u64) {
        self.ready.remove(&(pkey, seq));
        self.take_lease(seq);
        self.info.remove(&seq);
        self.acked.remove(&seq);
        if let Some(d) = self.dead.remove(&seq)
            && let DeadState::Leased { until, .. } = d.state
        {
            self.dead_expiries.remove(&(until, seq));
        }
    }

    /// Smallest leased sequence (FIFO head-of-line check).
    pub fn min_leased(&self) -> Option<u64> {
        self.leases.keys().copied().min()
    }

    /// Smallest ready sequence, whatever its priority key.
    pub fn min_ready(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        // At most 17 priority keys: take the first entry of each.
        let mut from = (0u8, 0u64);
        while let Some((p, s)) = self.ready.iter_from(from).next() {
            best = Some(best.map_or(s, |b| b.min(s)));
            if p == u8::MAX {
                break;
            }
            from = (p + 1, 0);
        }
        best
    }
}
