//! Message operations of the embedded engine: publish, claim, ack, nack, change visibility,
//! the in-order confirm, peek, purge, stats.

use super::queue::{Picked, QueueState};
use super::{Cell, EmbeddedEngine};
use crate::core::clock::Millis;
use crate::core::engine::{Claim, Claimed, LeaseOf, Queue, Target};
use crate::core::error::Result;
use crate::core::model::{DEFAULT_GROUP, GroupStats, MessageMeta, NewMessage, Peeked, QueueInfo};
use crate::core::options::ReceiveOptions;

impl EmbeddedEngine {
    pub(crate) async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>, now: Millis) -> Result<Vec<MessageMeta>> {
        let c = self.cell(q)?;
        let metas = self.with_state(&c, now, |st, cx| st.publish(msgs, cx))?;
        self.store.sync().await?;
        Ok(metas)
    }

    pub(crate) fn claim(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Claim> {
        let c = self.cell(q)?;
        self.claim_with(&c, now, |st, cx| st.receive(group, opts, cx))
    }

    /// Picks under the lock, then reads the bodies outside it.
    pub(crate) fn claim_with(
        &self,
        c: &Cell,
        now: Millis,
        pick: impl FnOnce(&mut QueueState, &mut super::queue::Cx) -> Result<Vec<Picked>>,
    ) -> Result<Claim> {
        let (picked, next_due) = self.with_state(c, now, |st, cx| {
            let picked = pick(st, cx)?;
            Ok((picked, st.next_event()))
        })?;
        let mut items = Vec::with_capacity(picked.len());
        for p in picked {
            let body = match self.store.body(c.id, p.meta.seq) {
                Ok(Some(b)) => b,
                // Removed meanwhile (purge, retention, queue deletion): nothing to deliver.
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "reading a message body failed");
                    continue;
                }
            };
            items.push(Claimed {
                meta: p.meta,
                body,
                group: p.group,
                lease: LeaseOf { lease: p.lease.lease, until: p.lease.until },
                deliveries: p.info.deliveries,
                failures: p.info.failures,
                first_delivered_at: p.info.first_at,
                dead: p.dead,
            });
        }
        Ok(Claim { items, next_due })
    }

    pub(crate) fn peek(&self, q: &Queue, group: u32, max: usize, now: Millis) -> Result<Vec<Peeked>> {
        let c = self.cell(q)?;
        let metas = self.with_state(&c, now, |st, _| st.peek(group, max))?;
        let mut out = Vec::with_capacity(metas.len());
        for (meta, info) in metas {
            if let Some(body) = self.store.body(c.id, meta.seq)? {
                out.push(Peeked {
                    meta,
                    body,
                    deliveries: info.deliveries,
                    first_delivered_at: (info.deliveries > 0).then_some(info.first_at),
                });
            }
        }
        Ok(out)
    }

    /// The `(seq, lease)` a target names, under the lock.
    fn resolve(st: &QueueState, group: u32, target: Target) -> Result<(u64, u64)> {
        match target {
            Target::Lease { seq, lease } => Ok((seq, lease)),
            Target::Message(id) => st.lease_by_id(group, id).map(|(seq, l)| (seq, l.lease)),
        }
    }

    pub(crate) fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| {
            let (seq, lease) = Self::resolve(st, group, target)?;
            st.ack(group, seq, lease, cx)
        })
    }

    pub(crate) fn nack(&self, q: &Queue, group: u32, target: Target, dead_now: bool, now: Millis) -> Result<bool> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| {
            let (seq, lease) = Self::resolve(st, group, target)?;
            st.nack(group, seq, lease, dead_now, cx)
        })
    }

    pub(crate) fn change_visibility(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        now: Millis,
    ) -> Result<LeaseOf> {
        let c = self.cell(q)?;
        let (l, _, _) = self.with_state(&c, now, |st, cx| st.extend(group, seq, lease, until, cx))?;
        Ok(LeaseOf { lease: l.lease, until: l.until })
    }

    pub(crate) fn dead_letter_delivery(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        target: Option<uuid::Uuid>,
        now: Millis,
    ) -> Result<()> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| st.dead_letter_delivery(group, seq, lease, target, cx))
    }

    /// The in-order confirm rule, applied under one lock: successes count while each entry is a
    /// success of a live delivery; from the first failure on, live deliveries are released.
    pub(crate) fn confirm(
        &self,
        q: &Queue,
        group: u32,
        dead: bool,
        entries: &[(Option<(u64, u64)>, bool)],
        now: Millis,
    ) -> Result<u64> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| {
            let mut success = 0u64;
            let mut failed = false;
            for (target, ok) in entries {
                if !failed
                    && *ok
                    && let Some((seq, lease)) = *target
                {
                    let done =
                        if dead { st.settle_dead(group, seq, lease, true, cx) } else { st.ack(group, seq, lease, cx) };
                    if done.is_ok() {
                        success += 1;
                        continue;
                    }
                }
                failed = true;
                if let Some((seq, lease)) = *target {
                    // Only live deliveries change; stale or foreign handles just count as failed.
                    let _ = if dead {
                        st.settle_dead(group, seq, lease, false, cx)
                    } else {
                        st.nack(group, seq, lease, false, cx).map(|_| ())
                    };
                }
            }
            Ok(success)
        })
    }

    pub(crate) async fn purge(&self, q: &Queue, now: Millis) -> Result<u64> {
        let c = self.cell(q)?;
        let n = self.with_state(&c, now, |st, cx| Ok(st.purge(cx)))?;
        self.store.sync().await?;
        Ok(n)
    }

    pub(crate) fn stats(&self, q: &Queue, group: u32, now: Millis) -> Result<GroupStats> {
        let c = self.cell(q)?;
        let mut s = self.with_state(&c, now, |st, _| st.stats(group))?;
        if group == DEFAULT_GROUP {
            s.dead += self.dead_elsewhere(&c);
        }
        Ok(s)
    }

    pub(crate) fn info(&self, q: &Queue, now: Millis) -> Result<QueueInfo> {
        let c = self.cell(q)?;
        let (record, mut stats, group_count, stored) = self.with_state(&c, now, |st, _| {
            Ok((st.record.clone(), st.stats(DEFAULT_GROUP)?, st.groups.len() - 1, st.msgs.len() as u64))
        })?;
        stats.dead += self.dead_elsewhere(&c);
        Ok(QueueInfo { record, stats, group_count, stored })
    }
}
