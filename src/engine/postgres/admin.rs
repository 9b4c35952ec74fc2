//! Whole-queue operations on PostgreSQL: purge, a group's counts, the queue's info.

use uuid::Uuid;

use super::{PResult, PgEngine, Tx, ms, transaction};
use crate::core::clock::Millis;
use crate::core::engine::Queue;
use crate::core::error::Result;
use crate::core::model::{DEFAULT_GROUP, GroupStats, QueueInfo};

impl PgEngine {
    pub(crate) async fn purge(&self, q: &Queue, now: Millis) -> Result<u64> {
        transaction!(self, true, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let active = tx
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT DISTINCT seq FROM qg_lane WHERE queue_id = $1 AND state IN (0, 1, 2, 4)) a",
                )
                .await?;
            let n: i64 = tx.query_one(&active, &[&rec.id]).await?.get(0);
            // Dead letters stay: those of the own store, and those kept here for other queues.
            let lanes = tx.prepare_cached("DELETE FROM qg_lane WHERE queue_id = $1 AND state IN (0, 1, 2, 4)").await?;
            tx.execute(&lanes, &[&rec.id]).await?;
            let gone = tx
                .prepare_cached(
                    "SELECT m.seq FROM qg_message m WHERE m.queue_id = $1 AND m.origin IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM qg_dead d WHERE d.queue_id = $1 AND d.seq = m.seq AND d.state IN (0, 1))",
                )
                .await?;
            let seqs: Vec<i64> = tx.query(&gone, &[&rec.id]).await?.iter().map(|r| r.get(0)).collect();
            self.delete_messages(&tx, rec.id, &seqs).await?;
            Ok(n as u64)
        })
    }

    /// A group's live counts (the queue is locked and refreshed).
    pub(crate) async fn stats_in(&self, tx: &Tx<'_>, qid: Uuid, grp: u32, now: Millis) -> PResult<GroupStats> {
        let stmt = tx
            .prepare_cached(
                "SELECT \
                 (SELECT count(*) FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND state = 0), \
                 (SELECT count(*) FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND state = 1), \
                 (SELECT count(*) FROM qg_message WHERE queue_id = $1 AND not_before > $3), \
                 (SELECT count(*) FROM qg_dead WHERE queue_id = $1 AND grp = $2 AND state IN (0, 1)), \
                 (SELECT count(*) FROM qg_dead WHERE queue_id = $1 AND grp = $2), \
                 (SELECT count(*) FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND state = 3), \
                 (SELECT count(*) FROM qg_message WHERE queue_id = $1), \
                 (SELECT m.enqueued_at FROM qg_message m WHERE m.queue_id = $1 AND m.seq = ( \
                    SELECT min(s) FROM ( \
                      SELECT min(seq) AS s FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND state IN (0, 1) \
                      UNION ALL SELECT min(seq) FROM qg_message WHERE queue_id = $1 AND not_before > $3) x)), \
                 CASE WHEN $2 = 0 THEN (SELECT count(*) FROM qg_message WHERE origin_queue = $1 AND queue_id <> $1) \
                 ELSE 0 END",
            )
            .await?;
        let r = tx.query_one(&stmt, &[&qid, &(grp as i32), &ms(now)]).await?;
        let n = |i: usize| r.get::<_, i64>(i) as u64;
        Ok(GroupStats {
            ready: n(0),
            in_flight: n(1),
            delayed: n(2),
            dead: n(3) + n(8),
            dead_total: n(4),
            acked: n(5),
            produced: n(6),
            oldest_enqueued_at: r.get::<_, Option<i64>>(7).map(|v| v as u64),
        })
    }

    pub(crate) async fn stats(&self, q: &Queue, group: u32, now: Millis) -> Result<crate::core::model::GroupStats> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            self.group_row(&tx, rec.id, group).await?;
            self.stats_in(&tx, rec.id, group, now).await
        })
    }

    pub(crate) async fn info(&self, q: &Queue, now: Millis) -> Result<QueueInfo> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stats = self.stats_in(&tx, rec.id, DEFAULT_GROUP, now).await?;
            let s = tx.prepare_cached("SELECT count(*) FROM qg_group WHERE queue_id = $1 AND no <> 0").await?;
            let groups: i64 = tx.query_one(&s, &[&rec.id]).await?.get(0);
            Ok(QueueInfo { record: (*rec).clone(), group_count: groups as usize, stored: stats.produced, stats })
        })
    }
}
