//! Dead letters on PostgreSQL: listing and redrive (own store and dead-letter queues), and
//! claiming and settling a group's own store.
//!
//! A dead letter kept in a dead-letter queue is an ordinary message there whose `origin_queue`
//! names the queue it died in; listing and redrive of that queue find it by that column.

use super::refresh::{MSG_COLS, meta_of, reason_of};
use super::schema::DEAD_ACKED;
use super::{Fx, PResult, PgEngine, Tx, esc, ms, transaction};
use crate::core::clock::Millis;
use crate::core::deadletters::{DeadPage, RedriveSelector};
use crate::core::engine::{Claim, Claimed, LeaseOf, Queue};
use crate::core::error::{CoreError, Result};
use crate::core::model::{DeadLetter, MessageId, QueueRecord};

/// One pending dead letter of a queue, wherever kept.
struct DeadRef {
    letter: DeadLetter,
    /// The queue holding it (the source itself for the own store).
    holder: uuid::Uuid,
    own: bool,
}

impl PgEngine {
    /// Every pending dead letter of the default group, by (death time, id).
    async fn dead_refs(&self, tx: &Tx<'_>, rec: &QueueRecord) -> PResult<Vec<DeadRef>> {
        let own = tx
            .prepare_cached(&format!(
                "SELECT d.died_at, d.reason, d.deliveries, d.failures, {MSG_COLS} FROM qg_dead d \
                 JOIN qg_message m ON m.queue_id = d.queue_id AND m.seq = d.seq \
                 WHERE d.queue_id = $1 AND d.grp = 0 AND d.state IN (0, 1)"
            ))
            .await?;
        let foreign = tx
            .prepare_cached(&format!(
                "SELECT m.queue_id, {MSG_COLS} FROM qg_message m JOIN qg_queue h ON h.id = m.queue_id AND h.ns = $2 \
                 WHERE m.origin_queue = $1 AND m.queue_id <> $1"
            ))
            .await?;
        let ns = esc(&rec.namespace).into_owned();
        let (own, foreign) = tokio::try_join!(async { tx.query(&own, &[&rec.id]).await }, async {
            tx.query(&foreign, &[&rec.id, &ns]).await
        })?;
        let mut refs = Vec::with_capacity(own.len() + foreign.len());
        for r in &own {
            let (meta, body) = meta_of(r, 4)?;
            refs.push(DeadRef {
                letter: DeadLetter {
                    first_enqueued_at: meta.enqueued_at,
                    meta,
                    body,
                    source_queue: rec.id,
                    died_at: r.get::<_, i64>(0) as u64,
                    reason: reason_of(r.get(1)),
                    deliveries: r.get::<_, i32>(2) as u32,
                    failures: r.get::<_, i32>(3) as u32,
                },
                holder: rec.id,
                own: true,
            });
        }
        for r in &foreign {
            let (meta, body) = meta_of(r, 1)?;
            let Some(o) = meta.origin.clone() else { continue };
            refs.push(DeadRef {
                letter: DeadLetter {
                    meta,
                    body,
                    source_queue: rec.id,
                    died_at: o.died_at,
                    reason: o.reason,
                    deliveries: o.deliveries,
                    failures: o.failures,
                    first_enqueued_at: o.first_enqueued_at,
                },
                holder: r.get(0),
                own: false,
            });
        }
        refs.sort_by_key(|r| (r.letter.died_at, r.letter.meta.id));
        Ok(refs)
    }

    pub(crate) async fn dead_letters(
        &self,
        q: &Queue,
        after: Option<(Millis, MessageId)>,
        limit: usize,
        now: Millis,
    ) -> Result<DeadPage> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let refs = self.dead_refs(&tx, &rec).await?;
            let mut items: Vec<DeadLetter> = Vec::new();
            let mut next = None;
            for r in refs.into_iter().filter(|r| after.is_none_or(|a| (r.letter.died_at, r.letter.meta.id) > a)) {
                if items.len() == limit {
                    next = items.last().map(|d| (d.died_at, d.meta.id));
                    break;
                }
                items.push(r.letter);
            }
            Ok(DeadPage { items, next })
        })
    }

    pub(crate) async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize, now: Millis) -> Result<u64> {
        transaction!(self, true, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let refs: Vec<DeadRef> = self
                .dead_refs(&tx, &rec)
                .await?
                .into_iter()
                .filter(|r| match sel {
                    RedriveSelector::One(id) => r.letter.meta.id == id,
                    RedriveSelector::Since(t) => r.letter.died_at >= t,
                    RedriveSelector::All => true,
                })
                .take(max)
                .collect();
            if refs.is_empty() && matches!(sel, RedriveSelector::One(_)) {
                return Err(CoreError::MessageNotFound.into());
            }
            let own = tx
                .prepare_cached("DELETE FROM qg_dead WHERE queue_id = $1 AND seq = $2 AND grp = 0 AND state IN (0, 1)")
                .await?;
            let ready = tx
                .prepare_cached(
                    "INSERT INTO qg_lane (queue_id, grp, seq, state, pkey) VALUES ($1, 0, $2, 0, $3) \
                     ON CONFLICT (queue_id, seq, grp) DO UPDATE SET state = 0, pkey = $3, visible_at = 0, lease = 0, \
                     deliveries = 0, failures = 0, first_at = 0",
                )
                .await?;
            let back = tx
                .prepare_cached(
                    "INSERT INTO qg_message (queue_id, seq, id, kind, priority, enqueued_at, not_before, size, tags, \
                     okey, attrs, body) \
                     SELECT $1, nextval('qg_seq'), id, kind, priority, $4, $4, size, tags, okey, attrs, body \
                     FROM qg_message WHERE queue_id = $2 AND seq = $3 RETURNING seq",
                )
                .await?;
            let mut moved = 0u64;
            for r in refs {
                let seq = r.letter.meta.seq as i64;
                if r.own {
                    if tx.execute(&own, &[&rec.id, &seq]).await? > 0 {
                        let pkey: i16 = if super::pkey_on(&rec.config) { r.letter.meta.priority as i16 } else { 0 };
                        tx.execute(&ready, &[&rec.id, &seq, &pkey]).await?;
                        moved += 1;
                    }
                    continue;
                }
                // Out of the holder, into this queue, in this transaction.
                let holder_lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
                tx.execute(&holder_lock, &[&super::lock_keys(r.holder).1]).await?;
                let Some(row) = tx.query_opt(&back, &[&rec.id, &r.holder, &seq, &ms(now)]).await? else {
                    continue;
                };
                let new_seq: i64 = row.get(0);
                self.insert_lanes(&tx, &rec, &[new_seq], now).await?;
                self.delete_messages(&tx, r.holder, &[seq]).await?;
                moved += 1;
            }
            if moved > 0 {
                fx.wake.push(rec.id);
            }
            Ok(moved)
        })
    }

    pub(crate) async fn claim_dead(
        &self,
        q: &Queue,
        group: u32,
        max: usize,
        lease_ms: u64,
        max_bytes: Option<u64>,
        now: Millis,
    ) -> Result<Claim> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            self.group_row(&tx, rec.id, group).await?;
            let g = group as i32;
            let cand = tx
                .prepare_cached(
                    "SELECT d.seq, m.size FROM qg_dead d JOIN qg_message m ON m.queue_id = d.queue_id AND m.seq = d.seq \
                     WHERE d.queue_id = $1 AND d.grp = $2 AND d.state = 0 ORDER BY d.seq LIMIT $3",
                )
                .await?;
            let rows = tx.query(&cand, &[&rec.id, &g, &(max as i64)]).await?;
            let mut chosen: Vec<i64> = Vec::new();
            let mut bytes = 0u64;
            for r in &rows {
                if !super::messages::fits(max_bytes, chosen.len(), &mut bytes, r.get::<_, i32>(1) as u64) {
                    break;
                }
                chosen.push(r.get(0));
            }
            let mut items = Vec::new();
            if !chosen.is_empty() {
                let until = now.saturating_add(lease_ms);
                let lease = tx
                    .prepare_cached(&format!(
                        "WITH u AS (UPDATE qg_dead SET state = 1, until = $4, lease = nextval('qg_lease') \
                         WHERE queue_id = $1 AND seq = ANY($3) AND grp = $2 AND state = 0 \
                         RETURNING seq, lease, deliveries, failures, first_at) \
                         SELECT u.lease, u.deliveries, u.failures, u.first_at, {MSG_COLS} FROM u \
                         JOIN qg_message m ON m.queue_id = $1 AND m.seq = u.seq ORDER BY u.seq"
                    ))
                    .await?;
                for r in &tx.query(&lease, &[&rec.id, &g, &chosen, &ms(until)]).await? {
                    let (meta, body) = meta_of(r, 4)?;
                    items.push(Claimed {
                        meta,
                        body,
                        group,
                        lease: LeaseOf { lease: r.get::<_, i64>(0) as u64, until },
                        deliveries: r.get::<_, i32>(1) as u32,
                        failures: r.get::<_, i32>(2) as u32,
                        first_delivered_at: r.get::<_, i64>(3) as u64,
                        dead: true,
                    });
                }
            }
            let next_due = if items.is_empty() { Some(self.next_due_of(&tx, &rec, now).await?) } else { None };
            Ok(Claim { items, next_due })
        })
    }

    /// Settles a leased dead letter: consumed, or ready again. False when the lease is not live.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn settle_dead_in(
        &self,
        tx: &Tx<'_>,
        rec: &QueueRecord,
        grp: u32,
        seq: u64,
        lease: u64,
        success: bool,
        fx: &mut Fx,
    ) -> PResult<bool> {
        let stmt = tx
            .prepare_cached(
                "UPDATE qg_dead SET state = CASE WHEN $5 THEN $6::int2 ELSE 0 END, lease = 0, until = 0 \
                 WHERE queue_id = $1 AND seq = $2 AND grp = $3 AND state = 1 AND lease = $4",
            )
            .await?;
        let n =
            tx.execute(&stmt, &[&rec.id, &(seq as i64), &(grp as i32), &(lease as i64), &success, &DEAD_ACKED]).await?;
        if n == 0 {
            return Ok(false);
        }
        if success {
            self.maybe_remove(tx, rec, seq).await?;
        } else {
            fx.wake.push(rec.id);
        }
        Ok(true)
    }

    pub(crate) async fn settle_dead(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        success: bool,
        now: Millis,
    ) -> Result<()> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            if !self.settle_dead_in(&tx, &rec, group, seq, lease, success, fx).await? {
                return Err(CoreError::ReceiptStale.into());
            }
            Ok(())
        })
    }
}
