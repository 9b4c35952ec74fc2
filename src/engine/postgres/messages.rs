//! Delivering under the queue's lock on PostgreSQL: the locked claim (refresh, choose, lease in
//! one transaction, with FIFO head-of-line blocking, ordering keys and byte limits), tag rules,
//! peek; and publish validation. The unlocked hot path is in [`super::fast`].

use std::collections::HashSet;

use uuid::Uuid;

use super::refresh::{MSG_COLS, meta_of, tags_col};
use super::{PResult, PgEngine, Tx, ms, transaction};
use crate::core::clock::Millis;
use crate::core::engine::{Claim, Claimed, LeaseOf, Queue};
use crate::core::error::{CoreError, Result};
use crate::core::model::{Peeked, QueueKind, QueueRecord, TagMode, TagRule};
use crate::core::options::ReceiveOptions;

/// Most messages of busy ordering keys one receive passes over before it stops looking.
const MAX_PASSED_OVER: i64 = 10_000;
/// A waiter with nothing due looks again after this long, whatever it heard (see `notify`).
pub(crate) const FALLBACK_POLL_MS: u64 = 1000;

/// When a queue next changes by itself ($1 queue, $2 retention ms): a delay, lease or
/// dead-letter lease end, or the oldest message's retention.
pub(crate) const NEXT_DUE: &str = "SELECT least((SELECT min(visible_at) FROM qg_lane WHERE queue_id = $1 \
     AND state IN (1, 2)), (SELECT min(until) FROM qg_dead WHERE queue_id = $1 AND state = 1), \
     (SELECT min(enqueued_at) FROM qg_message WHERE queue_id = $1) + $2)";

/// The next-due instant a waiter gets: at most [`FALLBACK_POLL_MS`] away.
pub(crate) fn due_within_fallback(next: Option<i64>, now: Millis) -> Millis {
    let cap = now.saturating_add(FALLBACK_POLL_MS);
    next.map_or(cap, |n| (n.max(0) as u64).min(cap))
}

/// Adds a message of `size` bytes to a choice of `taken` so far unless it would pass `limit`
/// (the first always fits).
pub(crate) fn fits(limit: Option<u64>, taken: usize, bytes: &mut u64, size: u64) -> bool {
    if let Some(limit) = limit
        && taken > 0
        && *bytes + size > limit
    {
        return false;
    }
    *bytes += size;
    true
}

/// A group's row: its tag rule and reset floor.
pub(crate) struct GroupRow {
    pub rule: Option<TagRule>,
}

impl PgEngine {
    /// The group's row, or `GroupNotFound`.
    pub(crate) async fn group_row(&self, tx: &Tx<'_>, qid: Uuid, grp: u32) -> PResult<GroupRow> {
        let stmt =
            tx.prepare_cached("SELECT rule_tags, rule_and FROM qg_group WHERE queue_id = $1 AND no = $2").await?;
        let row = tx.query_opt(&stmt, &[&qid, &(grp as i32)]).await?.ok_or(CoreError::GroupNotFound)?;
        let tags: Option<Vec<String>> = row.get(0);
        let and: bool = row.get(1);
        Ok(GroupRow {
            rule: tags
                .map(|t| TagRule::new(t.iter().map(|s| super::unesc(s)), if and { TagMode::And } else { TagMode::Or })),
        })
    }

    /// Fixes or checks group `grp`'s tag rule; fixing it drops the ready and delayed lanes it
    /// does not accept.
    pub(crate) async fn apply_rule(
        &self,
        tx: &Tx<'_>,
        qid: Uuid,
        grp: u32,
        row: &GroupRow,
        rule: &TagRule,
    ) -> PResult<()> {
        match &row.rule {
            Some(r) if r == rule => Ok(()),
            Some(_) => Err(CoreError::TagRuleChanged.into()),
            None => {
                let tags = tags_col(&rule.tags);
                let and = rule.mode == TagMode::And;
                let set = tx
                    .prepare_cached("UPDATE qg_group SET rule_tags = $3, rule_and = $4 WHERE queue_id = $1 AND no = $2")
                    .await?;
                let drop = tx
                    .prepare_cached(&format!(
                        "DELETE FROM qg_lane l USING qg_message m, qg_group g \
                         WHERE l.queue_id = $1 AND l.grp = $2 AND l.state IN (0, 2) AND m.queue_id = $1 \
                         AND m.seq = l.seq AND g.queue_id = $1 AND g.no = $2 AND NOT {}",
                        super::refresh::ACCEPTS
                    ))
                    .await?;
                tx.execute(&set, &[&qid, &(grp as i32), &tags, &and]).await?;
                tx.execute(&drop, &[&qid, &(grp as i32)]).await?;
                Ok(())
            }
        }
    }

    /// A claim under the queue's lock (FIFO queues, ordering keys, byte limits, a group's first
    /// rule): the embedded engine's rules, step by step.
    pub(crate) async fn claim_locked(
        &self,
        q: &Queue,
        group: u32,
        opts: &ReceiveOptions,
        now: Millis,
    ) -> Result<Claim> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let row = self.group_row(&tx, rec.id, group).await?;
            if let Some(rule) = &opts.rule {
                self.apply_rule(&tx, rec.id, group, &row, rule).await?;
            }
            let lease_ms = opts.lease_ms.unwrap_or(rec.config.visibility_timeout_secs.saturating_mul(1000));
            let items = self.lease_ready(&tx, &rec, group, opts, now.saturating_add(lease_ms), now).await?;
            let next_due = if items.is_empty() { Some(self.next_due_of(&tx, &rec, now).await?) } else { None };
            Ok(Claim { items, next_due })
        })
    }

    /// Chooses and leases up to `opts.max` ready messages of a group (the queue is locked).
    async fn lease_ready(
        &self,
        tx: &Tx<'_>,
        rec: &QueueRecord,
        group: u32,
        opts: &ReceiveOptions,
        until: Millis,
        now: Millis,
    ) -> PResult<Vec<Claimed>> {
        if opts.max == 0 {
            return Ok(Vec::new());
        }
        let fifo = rec.config.kind == QueueKind::Fifo;
        let block = if fifo {
            " AND l.seq < coalesce((SELECT min(b.seq) FROM qg_lane b WHERE b.queue_id = $1 AND b.grp = $2 \
             AND b.state IN (1, 2, 4)), 9223372036854775807)"
        } else {
            ""
        };
        let cand = tx
            .prepare_cached(&format!(
                "SELECT l.seq, m.size, m.okey FROM qg_lane l JOIN qg_message m ON m.queue_id = l.queue_id \
                 AND m.seq = l.seq WHERE l.queue_id = $1 AND l.grp = $2 AND l.state = 0{block} \
                 ORDER BY l.pkey, l.seq LIMIT $3"
            ))
            .await?;
        let (qid, g) = (rec.id, group as i32);
        let mut rows = tx.query(&cand, &[&qid, &g, &(opts.max as i64)]).await?;
        let keyed = rows.iter().any(|r| r.get::<_, Option<&str>>(2).is_some());
        let mut busy: HashSet<String> = HashSet::new();
        if keyed {
            rows = tx.query(&cand, &[&qid, &g, &(opts.max as i64 + MAX_PASSED_OVER)]).await?;
            let keys = tx
                .prepare_cached(
                    "SELECT DISTINCT m.okey FROM qg_lane l JOIN qg_message m ON m.queue_id = l.queue_id \
                     AND m.seq = l.seq WHERE l.queue_id = $1 AND l.grp = $2 AND l.state = 1 AND m.okey IS NOT NULL",
                )
                .await?;
            busy = tx.query(&keys, &[&qid, &g]).await?.iter().map(|r| r.get::<_, String>(0)).collect();
        }
        let mut chosen: Vec<i64> = Vec::new();
        let mut bytes = 0u64;
        for r in &rows {
            if chosen.len() >= opts.max {
                break;
            }
            if let Some(key) = r.get::<_, Option<String>>(2)
                && !busy.insert(key)
            {
                continue;
            }
            if !fits(opts.max_bytes, chosen.len(), &mut bytes, r.get::<_, i32>(1) as u64) {
                break;
            }
            chosen.push(r.get(0));
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let lease = tx
            .prepare_cached(&format!(
                "WITH u AS (UPDATE qg_lane SET state = 1, visible_at = $4, lease = nextval('qg_lease'), \
                 deliveries = deliveries + 1, first_at = CASE WHEN first_at = 0 THEN $5 ELSE first_at END \
                 WHERE queue_id = $1 AND seq = ANY($3) AND grp = $2 AND state = 0 \
                 RETURNING seq, lease, deliveries, failures, first_at) \
                 SELECT u.lease, u.deliveries, u.failures, u.first_at, {MSG_COLS} FROM u \
                 JOIN qg_message m ON m.queue_id = $1 AND m.seq = u.seq"
            ))
            .await?;
        let rows = tx.query(&lease, &[&qid, &g, &chosen, &ms(until), &ms(now)]).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let (meta, body) = meta_of(r, 4)?;
            items.push(Claimed {
                meta,
                body,
                group,
                lease: LeaseOf { lease: r.get::<_, i64>(0) as u64, until },
                deliveries: r.get::<_, i32>(1) as u32,
                failures: r.get::<_, i32>(2) as u32,
                first_delivered_at: r.get::<_, i64>(3) as u64,
                dead: false,
            });
        }
        items.sort_by_key(|c| chosen.iter().position(|s| *s as u64 == c.meta.seq));
        Ok(items)
    }

    /// When queue `rec` next changes by itself (a delay, lease or retention end), at most
    /// [`FALLBACK_POLL_MS`] away.
    pub(crate) async fn next_due_of(&self, tx: &Tx<'_>, rec: &QueueRecord, now: Millis) -> PResult<Millis> {
        let stmt = tx.prepare_cached(NEXT_DUE).await?;
        let retention = ms(rec.config.retention_secs.saturating_mul(1000));
        let next: Option<i64> = tx.query_one(&stmt, &[&rec.id, &retention]).await?.get(0);
        Ok(due_within_fallback(next, now))
    }

    pub(crate) async fn peek(&self, q: &Queue, group: u32, max: usize, now: Millis) -> Result<Vec<Peeked>> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            self.group_row(&tx, rec.id, group).await?;
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT l.deliveries, l.first_at, {MSG_COLS} FROM qg_lane l JOIN qg_message m \
                     ON m.queue_id = l.queue_id AND m.seq = l.seq WHERE l.queue_id = $1 AND l.grp = $2 \
                     AND l.state = 0 ORDER BY l.pkey, l.seq LIMIT $3"
                ))
                .await?;
            let rows = tx.query(&stmt, &[&rec.id, &(group as i32), &(max.min(i64::MAX as usize) as i64)]).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let (meta, body) = meta_of(r, 2)?;
                let deliveries = r.get::<_, i32>(0) as u32;
                out.push(Peeked {
                    meta,
                    body,
                    deliveries,
                    first_delivered_at: (deliveries > 0).then(|| r.get::<_, i64>(1) as u64),
                });
            }
            Ok(out)
        })
    }
}
