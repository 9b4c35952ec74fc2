//! Time-driven changes (retention, delay ends, lease ends) and what a failure does: count it,
//! requeue, or dead-letter into the own store or a target queue.

use super::*;

impl QueueState {
    /// Applies everything that became due by `now`: retention, delay ends, lease ends.
    pub fn refresh(&mut self, cx: &mut Cx) {
        // Retention: sequences are assigned in time order, so expired messages are a prefix.
        let retention = self.record.config.retention_secs.saturating_mul(1000);
        let mut expired = Vec::new();
        for (seq, m) in self.msgs.iter() {
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
    pub(super) fn fail(&mut self, no: u32, seq: u64, force: Option<DeadReason>, cx: &mut Cx) -> bool {
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
    pub(super) fn dead_letter(&mut self, no: u32, seq: u64, reason: DeadReason, cx: &mut Cx) {
        let target = self.record.config.dead_letter.as_ref().map(|p| p.target);
        self.dead_letter_to(no, seq, reason, target, cx)
    }

    /// Moves a message of group `no` to `target` (own store when `None`).
    pub(super) fn dead_letter_to(
        &mut self,
        no: u32,
        seq: u64,
        reason: DeadReason,
        target: Option<DeadLetterTarget>,
        cx: &mut Cx,
    ) {
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
}
