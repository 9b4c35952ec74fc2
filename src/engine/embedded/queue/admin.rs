//! Whole-queue operations: purge, stats, consume reset, adding groups, priority re-keying.

use super::*;

impl QueueState {
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
    pub(super) fn first_seq_at(&self, t: Millis) -> u64 {
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
            g.ready = g.ready.iter().map(|(_, s)| (keys.get(&s).copied().unwrap_or(0), s)).collect();
        }
    }
}
