//! Consumer groups on PostgreSQL: create (a lane per retained message for each new group),
//! list with counts, look up, delete, and the consume reset.

use super::{PResult, PgEngine, Tx, esc, ms, transaction, unesc};
use crate::core::clock::Millis;
use crate::core::engine::Queue;
use crate::core::error::{CoreError, Quota, Result};
use crate::core::model::{DEFAULT_GROUP, GroupInfo, GroupRecord, RetentionMode, TagMode, TagRule};
use crate::core::options::ResetPosition;

const SELECT: &str = "SELECT queue_id, no, ext_id, name, rule_tags, rule_and, created_at, reset_floor FROM qg_group";

fn group_of(row: &tokio_postgres::Row) -> GroupRecord {
    let tags: Option<Vec<String>> = row.get(4);
    let and: bool = row.get(5);
    GroupRecord {
        queue_id: row.get(0),
        no: row.get::<_, i32>(1) as u32,
        id: row.get(2),
        name: unesc(row.get(3)),
        rule: tags.map(|t| TagRule::new(t.iter().map(|s| unesc(s)), if and { TagMode::And } else { TagMode::Or })),
        created_at: row.get::<_, i64>(6) as u64,
        reset_floor: row.get::<_, i64>(7) as u64,
    }
}

impl PgEngine {
    pub(crate) async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
        now: Millis,
    ) -> Result<Vec<GroupRecord>> {
        transaction!(self, true, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stmt = tx.prepare_cached("SELECT name, no FROM qg_group WHERE queue_id = $1").await?;
            let rows = tx.query(&stmt, &[&rec.id]).await?;
            let existing: Vec<String> =
                rows.iter().filter(|r| r.get::<_, i32>(1) != 0).map(|r| unesc(r.get(0))).collect();
            let first_no = rows.iter().map(|r| r.get::<_, i32>(1)).max().unwrap_or(0) + 1;
            for (i, n) in names.iter().enumerate() {
                if existing.contains(n) || names[..i].contains(n) {
                    return Err(CoreError::GroupExists.into());
                }
            }
            if let Some(max) = max_groups
                && existing.len() + names.len() > max
            {
                return Err(CoreError::QuotaExceeded(Quota::Groups).into());
            }
            let insert = tx
                .prepare_cached(
                    "INSERT INTO qg_group (queue_id, no, ext_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .await?;
            let mut out = Vec::new();
            let mut nos = Vec::new();
            for (no, n) in (first_no..).zip(names) {
                let rec = GroupRecord {
                    queue_id: rec.id,
                    no: no as u32,
                    id: format!("g-{}", uuid::Uuid::new_v4()),
                    name: n.clone(),
                    rule: None,
                    created_at: now,
                    reset_floor: 0,
                };
                tx.execute(&insert, &[&rec.queue_id, &no, &rec.id, &esc(n).as_ref(), &ms(now)]).await?;
                nos.push(no);
                out.push(rec);
            }
            let lanes = tx
                .prepare_cached(
                    "INSERT INTO qg_lane (queue_id, grp, seq, state, pkey, visible_at) \
                     SELECT m.queue_id, g, m.seq, CASE WHEN m.not_before > $3 THEN 2 ELSE 0 END, \
                     CASE WHEN $4 THEN m.priority ELSE 0 END, m.not_before \
                     FROM qg_message m, unnest($2::int4[]) AS g WHERE m.queue_id = $1",
                )
                .await?;
            tx.execute(&lanes, &[&rec.id, &nos, &ms(now), &super::pkey_on(&rec.config)]).await?;
            Ok(out)
        })
    }

    pub(crate) async fn groups(&self, q: &Queue, now: Millis) -> Result<Vec<GroupInfo>> {
        transaction!(self, false, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stmt = tx.prepare_cached(&format!("{SELECT} WHERE queue_id = $1 AND no <> 0 ORDER BY no")).await?;
            let rows = tx.query(&stmt, &[&rec.id]).await?;
            let mut out = Vec::new();
            for r in &rows {
                let g = group_of(r);
                let stats = self.stats_in(&tx, rec.id, g.no, now).await?;
                out.push(GroupInfo { record: g, stats });
            }
            Ok(out)
        })
    }

    async fn exists(tx: &Tx<'_>, q: &Queue) -> PResult<()> {
        let stmt = tx.prepare_cached("SELECT 1 FROM qg_queue WHERE id = $1").await?;
        tx.query_opt(&stmt, &[&q.id()]).await?.ok_or(CoreError::QueueNotFound)?;
        Ok(())
    }

    pub(crate) async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32> {
        let key = id_or_name.trim();
        transaction!(self, false, |tx, fx| {
            Self::exists(&tx, q).await?;
            let stmt = tx
                .prepare_cached(
                    "SELECT no FROM qg_group WHERE queue_id = $1 AND no <> 0 AND lower(ext_id) = lower($2) \
                     UNION ALL SELECT no FROM qg_group WHERE queue_id = $1 AND no <> 0 AND name = $3",
                )
                .await?;
            let rows = tx.query(&stmt, &[&q.id(), &key, &esc(key).as_ref()]).await?;
            let row = rows.first().ok_or(CoreError::GroupNotFound)?;
            Ok(row.get::<_, i32>(0) as u32)
        })
    }

    pub(crate) async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord> {
        transaction!(self, false, |tx, fx| {
            Self::exists(&tx, q).await?;
            let stmt = tx.prepare_cached(&format!("{SELECT} WHERE queue_id = $1 AND no = $2")).await?;
            let row = tx.query_opt(&stmt, &[&q.id(), &(no as i32)]).await?.ok_or(CoreError::GroupNotFound)?;
            Ok(group_of(&row))
        })
    }

    pub(crate) async fn delete_groups(&self, q: &Queue, nos: &[u32], now: Millis) -> Result<()> {
        let nos: Vec<i32> = nos.iter().map(|n| *n as i32).collect();
        transaction!(self, true, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let stmt = tx.prepare_cached("SELECT count(*) FROM qg_group WHERE queue_id = $1 AND no = ANY($2)").await?;
            let found: i64 = tx.query_one(&stmt, &[&rec.id, &nos]).await?.get(0);
            let distinct = nos.iter().collect::<std::collections::HashSet<_>>().len() as i64;
            if nos.contains(&(DEFAULT_GROUP as i32)) || found != distinct {
                return Err(CoreError::GroupNotFound.into());
            }
            for sql in [
                "DELETE FROM qg_lane WHERE queue_id = $1 AND grp = ANY($2)",
                "DELETE FROM qg_dead WHERE queue_id = $1 AND grp = ANY($2)",
                "DELETE FROM qg_group WHERE queue_id = $1 AND no = ANY($2)",
            ] {
                let stmt = tx.prepare_cached(sql).await?;
                tx.execute(&stmt, &[&rec.id, &nos]).await?;
            }
            if rec.config.mode == RetentionMode::WorkQueue {
                // Messages only the deleted groups still held are finished now.
                let stmt = tx
                    .prepare_cached(
                        "SELECT m.seq FROM qg_message m WHERE m.queue_id = $1 AND m.not_before <= $2 \
                         AND NOT EXISTS (SELECT 1 FROM qg_lane l WHERE l.queue_id = $1 AND l.seq = m.seq AND l.state IN (0, 1, 2, 4)) \
                         AND NOT EXISTS (SELECT 1 FROM qg_dead d WHERE d.queue_id = $1 AND d.seq = m.seq AND d.state IN (0, 1))",
                    )
                    .await?;
                let seqs: Vec<i64> = tx.query(&stmt, &[&rec.id, &ms(now)]).await?.iter().map(|r| r.get(0)).collect();
                self.delete_messages(&tx, rec.id, &seqs).await?;
            }
            Ok(())
        })
    }

    pub(crate) async fn reset(
        &self,
        q: &Queue,
        group: u32,
        pos: ResetPosition,
        force: bool,
        now: Millis,
    ) -> Result<()> {
        transaction!(self, true, |tx, fx| {
            let rec = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &rec, now, fx).await?;
            let (qid, g) = (rec.id, group as i32);
            let floor: i64 = match pos {
                ResetPosition::Earliest => 0,
                ResetPosition::Latest => {
                    let s = tx
                        .prepare_cached("SELECT coalesce(max(seq), 0) + 1 FROM qg_message WHERE queue_id = $1")
                        .await?;
                    tx.query_one(&s, &[&qid]).await?.get(0)
                }
                ResetPosition::Time(t) => {
                    let s = tx
                        .prepare_cached(
                            "SELECT coalesce((SELECT min(seq) FROM qg_message WHERE queue_id = $1 AND enqueued_at >= $2), \
                             (SELECT coalesce(max(seq), 0) + 1 FROM qg_message WHERE queue_id = $1))",
                        )
                        .await?;
                    tx.query_one(&s, &[&qid, &ms(t)]).await?.get(0)
                }
            };
            self.group_row(&tx, qid, group).await?;
            if !force {
                let s = tx
                    .prepare_cached("SELECT 1 FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND state = 1 LIMIT 1")
                    .await?;
                if tx.query_opt(&s, &[&qid, &g]).await?.is_some() {
                    return Err(CoreError::GroupBusy.into());
                }
            }
            // From the floor on: every message again, counts cleared (dead letters stay as
            // they are). Before it: skipped, unless acked or dead already.
            let clear = tx.prepare_cached("DELETE FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND seq >= $3").await?;
            let skip = tx
                .prepare_cached("DELETE FROM qg_lane WHERE queue_id = $1 AND grp = $2 AND seq < $3 AND state <> 3")
                .await?;
            let lanes = tx
                .prepare_cached(&format!(
                    "INSERT INTO qg_lane (queue_id, grp, seq, state, pkey, visible_at) \
                     SELECT m.queue_id, g.no, m.seq, CASE WHEN m.not_before > $4 THEN 2 ELSE 0 END, \
                     CASE WHEN $5 THEN m.priority ELSE 0 END, m.not_before \
                     FROM qg_message m JOIN qg_group g ON g.queue_id = m.queue_id AND g.no = $2 \
                     WHERE m.queue_id = $1 AND m.seq >= $3 AND {}",
                    super::refresh::ACCEPTS
                ))
                .await?;
            let set = tx.prepare_cached("UPDATE qg_group SET reset_floor = $3 WHERE queue_id = $1 AND no = $2").await?;
            tx.execute(&clear, &[&qid, &g, &floor]).await?;
            tx.execute(&skip, &[&qid, &g, &floor]).await?;
            tx.execute(&lanes, &[&qid, &g, &floor, &ms(now), &super::pkey_on(&rec.config)]).await?;
            tx.execute(&set, &[&qid, &g, &floor]).await?;
            fx.wake.push(qid);
            Ok(())
        })
    }
}
