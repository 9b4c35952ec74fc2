//! The own dead-letter store of each group (consumed and confirmed through DMS/CTYun) and
//! redrive; dead letters kept for other queues.

use super::*;

impl QueueState {
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
