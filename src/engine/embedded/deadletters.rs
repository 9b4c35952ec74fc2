//! Dead letters in the embedded engine: listing and redrive, and claiming and settling a
//! group's own dead-letter store.
//!
//! A dead letter lives in one of two places. In the *own store* it stays where it was, marked
//! dead in its group. In a *target queue* it is an ordinary message there whose meta remembers
//! its origin; listing and redrive of the source queue find it through the target queue's
//! `foreign_dead` index.

use std::sync::Arc;

use super::{Cell, EmbeddedEngine};
use crate::core::clock::Millis;
use crate::core::deadletters::{DeadPage, RedriveSelector};
use crate::core::engine::{Claim, Queue};
use crate::core::error::{CoreError, Result};
use crate::core::model::{DEFAULT_GROUP, DeadLetter, DeadReason, MessageId, MessageMeta};

/// Where one dead letter of a source queue is, before its body is read.
struct DeadRef {
    holder: Arc<Cell>,
    meta: MessageMeta,
    died_at: Millis,
    reason: DeadReason,
    deliveries: u32,
    failures: u32,
    first_enqueued_at: Millis,
    own: bool,
}

impl EmbeddedEngine {
    /// Every pending dead letter of `q`'s default group, wherever kept, by (death time, id).
    fn dead_refs(&self, q: &Arc<Cell>, now: Millis) -> Result<Vec<DeadRef>> {
        let mut refs = self.with_state(q, now, |st, _| {
            let g = st.group(DEFAULT_GROUP)?;
            Ok(g.dead
                .iter()
                .filter(|(_, d)| d.pending())
                .filter_map(|(seq, d)| {
                    let meta = st.msgs.get(seq)?.clone();
                    Some(DeadRef {
                        holder: q.clone(),
                        first_enqueued_at: meta.enqueued_at,
                        meta,
                        died_at: d.died_at,
                        reason: d.reason,
                        deliveries: d.info.deliveries,
                        failures: d.info.failures,
                        own: true,
                    })
                })
                .collect::<Vec<_>>())
        })?;
        for t in self.cells_of(&q.namespace) {
            if t.id == q.id {
                continue;
            }
            let st = t.state.lock();
            for seq in st.foreign_dead_from(q.id) {
                if let Some(meta) = st.msgs.get(&seq)
                    && let Some(o) = &meta.origin
                {
                    refs.push(DeadRef {
                        holder: t.clone(),
                        died_at: o.died_at,
                        reason: o.reason,
                        deliveries: o.deliveries,
                        failures: o.failures,
                        first_enqueued_at: o.first_enqueued_at,
                        meta: meta.clone(),
                        own: false,
                    });
                }
            }
        }
        refs.sort_by_key(|r| (r.died_at, r.meta.id));
        Ok(refs)
    }

    /// Lists `q`'s dead letters after the cursor, at most `limit`.
    pub(crate) fn dead_letters(
        &self,
        q: &Queue,
        after: Option<(Millis, MessageId)>,
        limit: usize,
        now: Millis,
    ) -> Result<DeadPage> {
        let c = self.cell(q)?;
        let refs = self.dead_refs(&c, now)?;
        let mut items = Vec::new();
        let mut next = None;
        for r in refs.into_iter().filter(|r| after.is_none_or(|a| (r.died_at, r.meta.id) > a)) {
            if items.len() == limit {
                next = items.last().map(|d: &DeadLetter| (d.died_at, d.meta.id));
                break;
            }
            let Some(body) = self.store.body(r.holder.id, r.meta.seq)? else {
                continue;
            };
            items.push(DeadLetter {
                meta: r.meta,
                body,
                source_queue: c.id,
                died_at: r.died_at,
                reason: r.reason,
                deliveries: r.deliveries,
                failures: r.failures,
                first_enqueued_at: r.first_enqueued_at,
            });
        }
        Ok(DeadPage { items, next })
    }

    pub(crate) async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize, now: Millis) -> Result<u64> {
        let q = &self.cell(q)?;
        let refs: Vec<DeadRef> = self
            .dead_refs(q, now)?
            .into_iter()
            .filter(|r| match sel {
                RedriveSelector::One(id) => r.meta.id == id,
                RedriveSelector::Since(t) => r.died_at >= t,
                RedriveSelector::All => true,
            })
            .take(max)
            .collect();
        if refs.is_empty() && matches!(sel, RedriveSelector::One(_)) {
            return Err(CoreError::MessageNotFound);
        }
        let mut moved = 0u64;
        for r in refs {
            if r.own {
                if self.with_state(q, now, |st, cx| Ok(st.redrive_own(DEFAULT_GROUP, r.meta.seq, cx)))? {
                    moved += 1;
                }
                continue;
            }
            // Take it out of the holder first, then put it into the source: never two locks.
            let taken = {
                let mut st = r.holder.state.lock();
                if st.deleted { None } else { st.take_foreign(r.meta.seq) }
            };
            let Some(meta) = taken else { continue };
            let res = self.with_state(q, now, |st, cx| {
                let back = MessageMeta {
                    seq: st.last_seq + 1,
                    origin: None,
                    enqueued_at: cx.now,
                    not_before: cx.now,
                    ..meta.clone()
                };
                cx.store.transfer(r.holder.id, meta.seq, q.id, &back, false)?;
                st.insert_meta(back);
                cx.fx.notify = true;
                Ok(())
            });
            match res {
                Ok(()) => moved += 1,
                Err(e) => {
                    // Nothing was written: put it back where it was.
                    let mut st = r.holder.state.lock();
                    if !st.deleted {
                        st.insert_meta(meta);
                    }
                    if matches!(e, CoreError::Storage(_) | CoreError::Unavailable(_)) {
                        return Err(e);
                    }
                }
            }
        }
        self.store.sync().await?;
        Ok(moved)
    }

    pub(crate) fn claim_dead(
        &self,
        q: &Queue,
        group: u32,
        max: usize,
        lease_ms: u64,
        max_bytes: Option<u64>,
        now: Millis,
    ) -> Result<Claim> {
        let c = self.cell(q)?;
        self.claim_with(&c, now, |st, cx| st.receive_dead(group, max, lease_ms, max_bytes, cx))
    }

    pub(crate) fn settle_dead(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        success: bool,
        now: Millis,
    ) -> Result<()> {
        let c = self.cell(q)?;
        self.with_state(&c, now, |st, cx| st.settle_dead(group, seq, lease, success, cx))
    }
}
