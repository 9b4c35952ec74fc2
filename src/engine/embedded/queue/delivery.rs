//! Publishing and delivering: publish, receive (with tag rules and FIFO head-of-line), peek,
//! and settling a delivery (ack, nack, change visibility, dead-letter now).

use std::collections::HashSet;

use super::*;

/// Most messages of busy ordering keys one receive passes over before it stops looking.
const MAX_PASSED_OVER: usize = 10_000;

impl QueueState {
    /// Appends messages (all or none). The caller syncs the store before answering.
    pub fn publish(&mut self, msgs: Vec<NewMessage>, cx: &mut Cx) -> Result<Vec<MessageMeta>> {
        let now = cx.now;
        let cfg = &self.record.config;
        crate::core::messages::check_new(cfg, &msgs)?;
        let mut seq = self.last_seq;
        let mut records = Vec::with_capacity(msgs.len());
        for mut m in msgs {
            seq += 1;
            if let Some(k) = m.order_key.take() {
                m.tags.push(format!("{ORDER_TAG}{k}"));
            }
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

    /// Fixes or checks group `no`'s tag rule.
    pub(super) fn apply_rule(&mut self, no: u32, rule: &TagRule, cx: &mut Cx) -> Result<()> {
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
        // Ordering keys with a delivery in flight (or chosen in this pass): their later messages
        // wait. Computed on the first keyed message met, so queues without keys never pay.
        let mut busy: Option<HashSet<&str>> = None;
        let mut passed_over = 0usize;
        for (pkey, seq) in g.ready.iter() {
            if chosen.len() >= opts.max {
                break;
            }
            if block.is_some_and(|b| seq > b) {
                break;
            }
            if let Some(key) = self.msgs.get(&seq).and_then(|m| m.order_key()) {
                let busy = busy.get_or_insert_with(|| {
                    g.leases.keys().filter_map(|s| self.msgs.get(s).and_then(|m| m.order_key())).collect()
                });
                if !busy.insert(key) {
                    // Bounded: a receive never scans a whole deep queue of one busy key.
                    passed_over += 1;
                    if passed_over > MAX_PASSED_OVER {
                        break;
                    }
                    continue;
                }
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
            .filter_map(|(_, seq)| self.msgs.get(&seq).map(|m| (m.clone(), g.info_of(seq))))
            .collect())
    }

    /// Checks that `lease` is the live lease of `seq` in group `no`.
    pub(super) fn live_lease(&self, no: u32, seq: u64, lease: u64) -> Result<Lease> {
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
}
