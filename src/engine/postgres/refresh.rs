//! Time-driven changes and failures on PostgreSQL: `refresh` applies what became due at `now`
//! (retention, delay ends, lease ends — each a failure — and dead-letter lease ends) before an
//! operation looks at a queue; `dead_letter` moves a delivery to the group's own store or into
//! the dead-letter queue, in the same transaction (a copy never exists twice, never zero
//! times). Shared row helpers live here too.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::schema::{ACKED, DEAD_READY};
use super::{Fx, PResult, PgEngine, Tx, esc, ms, pkey_on, storage, unesc};
use crate::core::clock::Millis;
use crate::core::model::{
    BodyKind, DeadLetterTarget, DeadReason, MessageBody, MessageId, MessageMeta, Origin, QueueRecord, RetentionMode,
};

/// The message columns every read takes, in [`meta_of`]'s order (table alias `m`).
pub(crate) const MSG_COLS: &str =
    "m.seq, m.id, m.kind, m.priority, m.enqueued_at, m.not_before, m.size, m.tags, m.origin, m.attrs, m.body";

/// Rows of `MSG_COLS` starting at column `at`: the meta and the body.
pub(crate) fn meta_of(row: &tokio_postgres::Row, at: usize) -> PResult<(MessageMeta, MessageBody)> {
    let id: Uuid = row.get(at + 1);
    let kind: i16 = row.get(at + 2);
    let tags: Vec<String> = row.get::<_, Vec<String>>(at + 7).iter().map(|t| unesc(t)).collect();
    let origin: Option<&[u8]> = row.get(at + 8);
    let origin = match origin {
        Some(o) => {
            Some(Box::new(serde_json::from_slice::<Origin>(o).map_err(|e| storage(format!("a stored origin: {e}")))?))
        }
        None => None,
    };
    let attrs: &[u8] = row.get(at + 9);
    let attributes: BTreeMap<String, String> =
        serde_json::from_slice(attrs).map_err(|e| storage(format!("stored attributes: {e}")))?;
    Ok((
        MessageMeta {
            seq: row.get::<_, i64>(at) as u64,
            id: MessageId(id.as_u128()),
            kind: if kind == 0 { BodyKind::Json } else { BodyKind::Text },
            priority: row.get::<_, i16>(at + 3) as u8,
            enqueued_at: row.get::<_, i64>(at + 4) as u64,
            not_before: row.get::<_, i64>(at + 5) as u64,
            size: row.get::<_, i32>(at + 6) as u32,
            tags,
            origin,
        },
        MessageBody { body: row.get(at + 10), attributes },
    ))
}

pub(crate) fn kind_code(k: BodyKind) -> i16 {
    match k {
        BodyKind::Json => 0,
        BodyKind::Text => 1,
    }
}

pub(crate) fn reason_code(r: DeadReason) -> i16 {
    match r {
        DeadReason::Nacked => 0,
        DeadReason::MaxDeliveries => 1,
    }
}

pub(crate) fn reason_of(c: i16) -> DeadReason {
    if c == 0 { DeadReason::Nacked } else { DeadReason::MaxDeliveries }
}

/// Lease ends ($1 queue, $2 now, $3 the failure limit): ready again with a failure counted, or
/// dying at the limit.
pub(crate) const LEASE_ENDS: &str = "UPDATE qg_lane SET state = CASE WHEN failures + 1 >= $3 THEN 4 ELSE 0 END, \
     lease = 0, failures = failures + 1 WHERE queue_id = $1 AND state = 1 AND visible_at <= $2";

/// The queue's failure limit for SQL (no policy: never reached).
pub(crate) fn max_failures(rec: &QueueRecord) -> i32 {
    rec.config.dead_letter.as_ref().map_or(i32::MAX, |p| p.max_failures.min(i32::MAX as u32) as i32)
}

/// The condition "group `g` accepts message `m`" (no rule yet, an empty rule, or a match).
pub(crate) const ACCEPTS: &str = "(g.rule_tags IS NULL OR cardinality(g.rule_tags) = 0 \
     OR (g.rule_and AND m.tags @> g.rule_tags) OR (NOT g.rule_and AND m.tags && g.rule_tags))";

impl PgEngine {
    /// Applies everything due at `now` in queue `rec` (locked exclusively).
    pub(crate) async fn refresh(&self, tx: &Tx<'_>, rec: &QueueRecord, now: Millis, fx: &mut Fx) -> PResult<()> {
        let id = rec.id;
        let retention = rec.config.retention_secs.saturating_mul(1000);
        let cutoff: i64 = if now >= retention { ms(now - retention) } else { -1 };
        let expire = tx
            .prepare_cached(
                "WITH m AS (DELETE FROM qg_message WHERE queue_id = $1 AND enqueued_at <= $2 RETURNING seq), \
                 l AS (DELETE FROM qg_lane x USING m WHERE x.queue_id = $1 AND x.seq = m.seq), \
                 d AS (DELETE FROM qg_dead x USING m WHERE x.queue_id = $1 AND x.seq = m.seq) \
                 SELECT count(*) FROM m",
            )
            .await?;
        let delays = tx
            .prepare_cached("UPDATE qg_lane SET state = 0 WHERE queue_id = $1 AND state = 2 AND visible_at <= $2")
            .await?;
        let leases = tx.prepare_cached(LEASE_ENDS).await?;
        let dying = tx.prepare_cached("SELECT grp, seq FROM qg_lane WHERE queue_id = $1 AND state = 4").await?;
        let dead = tx
            .prepare_cached(
                "UPDATE qg_dead SET state = 0, lease = 0, until = 0 WHERE state = 1 AND until <= $2 AND queue_id = $1",
            )
            .await?;
        let now_i = ms(now);
        let max = max_failures(rec);
        let (_, delayed, ended, dead_ended, dying) = tokio::try_join!(
            async { tx.query_one(&expire, &[&id, &cutoff]).await },
            async { tx.execute(&delays, &[&id, &now_i]).await },
            async { tx.execute(&leases, &[&id, &now_i, &max]).await },
            async { tx.execute(&dead, &[&id, &now_i]).await },
            async { tx.query(&dying, &[&id]).await },
        )?;
        if delayed > 0 || dead_ended > 0 || ended > 0 {
            fx.wake.push(id);
        }
        let dying: Vec<(u32, u64)> =
            dying.iter().map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64)).collect();
        self.bury(tx, rec, &dying, DeadReason::MaxDeliveries, now, fx).await
    }

    /// Dead-letters dying lanes (per the policy, else into the own store), each only if it is
    /// still dying: whoever locks it first moves it, once.
    pub(crate) async fn bury(
        &self,
        tx: &Tx<'_>,
        rec: &QueueRecord,
        dying: &[(u32, u64)],
        reason: DeadReason,
        now: Millis,
        fx: &mut Fx,
    ) -> PResult<()> {
        if dying.is_empty() {
            return Ok(());
        }
        let guard = tx
            .prepare_cached(
                "SELECT 1 FROM qg_lane WHERE queue_id = $1 AND seq = $2 AND grp = $3 AND state = 4 FOR UPDATE",
            )
            .await?;
        let target = rec.config.dead_letter.as_ref().map(|p| p.target);
        for (grp, seq) in dying {
            if tx.query_opt(&guard, &[&rec.id, &(*seq as i64), &(*grp as i32)]).await?.is_some() {
                self.dead_letter(tx, rec, *grp, *seq, reason, target, now, fx).await?;
            }
        }
        Ok(())
    }

    /// Inserts the lanes of messages `seqs` of queue `rec` for every group that accepts them.
    pub(crate) async fn insert_lanes(&self, tx: &Tx<'_>, rec: &QueueRecord, seqs: &[i64], now: Millis) -> PResult<()> {
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO qg_lane (queue_id, grp, seq, state, pkey, visible_at) \
                 SELECT m.queue_id, g.no, m.seq, CASE WHEN m.not_before > $3 THEN 2 ELSE 0 END, \
                 CASE WHEN $4 THEN m.priority ELSE 0 END, m.not_before \
                 FROM qg_message m JOIN qg_group g ON g.queue_id = m.queue_id \
                 WHERE m.queue_id = $1 AND m.seq = ANY($2) AND {ACCEPTS}"
            ))
            .await?;
        tx.execute(&stmt, &[&rec.id, &seqs, &ms(now), &pkey_on(&rec.config)]).await?;
        Ok(())
    }

    /// Deletes messages with every lane and dead-letter row of theirs; returns how many.
    pub(crate) async fn delete_messages(&self, tx: &Tx<'_>, queue: Uuid, seqs: &[i64]) -> PResult<u64> {
        let stmt = tx
            .prepare_cached(
                "WITH m AS (DELETE FROM qg_message WHERE queue_id = $1 AND seq = ANY($2) RETURNING seq), \
                 l AS (DELETE FROM qg_lane x USING m WHERE x.queue_id = $1 AND x.seq = m.seq), \
                 d AS (DELETE FROM qg_dead x USING m WHERE x.queue_id = $1 AND x.seq = m.seq) \
                 SELECT count(*) FROM m",
            )
            .await?;
        let n: i64 = tx.query_one(&stmt, &[&queue, &seqs]).await?.get(0);
        Ok(n as u64)
    }

    /// In a work queue, a message no group still holds (ready, leased, delayed, or a pending
    /// dead letter) is gone.
    pub(crate) async fn maybe_remove(&self, tx: &Tx<'_>, rec: &QueueRecord, seq: u64) -> PResult<bool> {
        if rec.config.mode != RetentionMode::WorkQueue {
            return Ok(false);
        }
        let stmt = tx
            .prepare_cached(
                "WITH m AS (DELETE FROM qg_message WHERE queue_id = $1 AND seq = $2 \
                   AND NOT EXISTS (SELECT 1 FROM qg_lane WHERE queue_id = $1 AND seq = $2 AND state IN (0, 1, 2, 4)) \
                   AND NOT EXISTS (SELECT 1 FROM qg_dead WHERE queue_id = $1 AND seq = $2 AND state IN (0, 1)) \
                   RETURNING seq), \
                 l AS (DELETE FROM qg_lane x USING m WHERE x.queue_id = $1 AND x.seq = m.seq), \
                 d AS (DELETE FROM qg_dead x USING m WHERE x.queue_id = $1 AND x.seq = m.seq) \
                 SELECT count(*) FROM m",
            )
            .await?;
        let n: i64 = tx.query_one(&stmt, &[&rec.id, &(seq as i64)]).await?.get(0);
        Ok(n > 0)
    }

    /// Moves message `seq` of group `grp` to `target` (the group's own store when `None`, when
    /// it is this queue, or when the target queue is gone).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn dead_letter(
        &self,
        tx: &Tx<'_>,
        rec: &QueueRecord,
        grp: u32,
        seq: u64,
        reason: DeadReason,
        target: Option<DeadLetterTarget>,
        now: Millis,
        fx: &mut Fx,
    ) -> PResult<()> {
        let (qid, g, s) = (rec.id, grp as i32, seq as i64);
        let take = tx
            .prepare_cached(
                "DELETE FROM qg_lane WHERE queue_id = $1 AND seq = $2 AND grp = $3 RETURNING deliveries, failures, first_at",
            )
            .await?;
        if let Some(DeadLetterTarget::Queue(t)) = target
            && t != qid
            && let Some(trec) = self.lock_target(tx, t, &rec.namespace).await?
        {
            let info = tx.query_opt(&take, &[&qid, &s, &g]).await?;
            let (deliveries, failures) = info.as_ref().map_or((0, 0), |r| (r.get::<_, i32>(0), r.get::<_, i32>(1)));
            let read = tx
                .prepare_cached("SELECT enqueued_at, origin FROM qg_message WHERE queue_id = $1 AND seq = $2")
                .await?;
            let Some(row) = tx.query_opt(&read, &[&qid, &s]).await? else {
                return Ok(());
            };
            let enqueued_at: i64 = row.get(0);
            let old: Option<&[u8]> = row.get(1);
            let first_enqueued_at = old
                .and_then(|o| serde_json::from_slice::<Origin>(o).ok())
                .map_or(enqueued_at as u64, |o| o.first_enqueued_at);
            let origin = Origin {
                queue_id: qid,
                reason,
                died_at: now,
                deliveries: deliveries as u32,
                failures: failures as u32,
                first_enqueued_at,
            };
            let origin = serde_json::to_vec(&origin).map_err(|e| storage(e.to_string()))?;
            let copy = tx
                .prepare_cached(
                    "INSERT INTO qg_message (queue_id, seq, id, kind, priority, enqueued_at, not_before, size, tags, \
                     okey, origin, origin_queue, attrs, body) \
                     SELECT $3, nextval('qg_seq'), id, kind, priority, $4, $4, size, tags, okey, $5, $1, attrs, body \
                     FROM qg_message WHERE queue_id = $1 AND seq = $2 RETURNING seq",
                )
                .await?;
            let new_seq: i64 = tx.query_one(&copy, &[&qid, &s, &t, &ms(now), &origin]).await?.get(0);
            self.insert_lanes(tx, &trec, &[new_seq], now).await?;
            let others = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM qg_lane WHERE queue_id = $1 AND seq = $2 AND grp <> $3 AND state IN (0, 1, 2, 4)) \
                     OR EXISTS (SELECT 1 FROM qg_dead WHERE queue_id = $1 AND seq = $2 AND grp <> $3 AND state IN (0, 1))",
                )
                .await?;
            let keep_source: bool = tx.query_one(&others, &[&qid, &s, &g]).await?.get(0);
            if keep_source {
                // Other groups still need it: this group is done with it.
                let acked = tx
                    .prepare_cached(
                        "INSERT INTO qg_lane (queue_id, grp, seq, state, pkey) VALUES ($1, $3, $2, $4, 0) \
                         ON CONFLICT (queue_id, seq, grp) DO UPDATE SET state = $4, lease = 0, deliveries = 0, \
                         failures = 0, first_at = 0",
                    )
                    .await?;
                tx.execute(&acked, &[&qid, &s, &g, &ACKED]).await?;
            } else {
                self.delete_messages(tx, qid, &[s]).await?;
            }
            fx.wake.push(t);
            return Ok(());
        }
        let info = tx.query_opt(&take, &[&qid, &s, &g]).await?;
        let (d, f, first) =
            info.as_ref().map_or((0, 0, 0), |r| (r.get::<_, i32>(0), r.get::<_, i32>(1), r.get::<_, i64>(2)));
        let own = tx
            .prepare_cached(
                "INSERT INTO qg_dead (queue_id, grp, seq, died_at, reason, state, deliveries, failures, first_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (queue_id, seq, grp) DO UPDATE SET died_at = $4, reason = $5, state = $6, until = 0, \
                 lease = 0, deliveries = $7, failures = $8, first_at = $9",
            )
            .await?;
        tx.execute(&own, &[&qid, &g, &s, &ms(now), &reason_code(reason), &DEAD_READY, &d, &f, &first]).await?;
        Ok(())
    }

    /// Locks a dead-letter or redrive target for inserting (shared, as a publish does); `None`
    /// when it is gone or in another namespace.
    pub(crate) async fn lock_target(
        &self,
        tx: &Tx<'_>,
        t: Uuid,
        ns: &str,
    ) -> PResult<Option<std::sync::Arc<QueueRecord>>> {
        match self.lock(tx, t, false).await {
            Ok(r) if r.namespace == ns => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(super::PgError::Core(crate::core::CoreError::QueueNotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Escaped tags for the `tags` column.
pub(crate) fn tags_col(tags: &[String]) -> Vec<String> {
    tags.iter().map(|t| esc(t).into_owned()).collect()
}
