//! The hot path on PostgreSQL, built to take one round trip and no queue-wide lock:
//!
//! * **publish** — `BEGIN`, the publish lock shared, one statement inserting the messages (ids and
//!   sequences made in SQL) and their lanes, `COMMIT` synchronously: sent together, answered
//!   together. Publishes never wait for each other; the commit's fsync is shared (group commit).
//! * **claim** (standard queues) — refresh and `FOR UPDATE SKIP LOCKED` lease in one pipelined
//!   transaction: concurrent claimers on any node step over each other's rows instead of
//!   queueing on a lock. FIFO queues, queues that have seen an ordering key, claims with a byte
//!   limit and a group's first rule take the locked path (`messages::claim_locked`).
//! * **ack**, **change visibility** — one compare-and-set statement on the lane (lease id, still
//!   leased, lease not over at `now`), committed asynchronously; a work queue's message goes with
//!   its last lane in the same statement.
//! * **nack** — the same compare-and-set, then dead-lettering when it is due.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::refresh::{ACCEPTS, MSG_COLS, kind_code, max_failures, meta_of, tags_col};
use super::{Fx, PResult, PgEngine, esc, lock_keys, ms, pkey_on, storage, transaction};
use crate::core::clock::Millis;
use crate::core::engine::{Claim, Claimed, LeaseOf, Queue, Target};
use crate::core::error::{CoreError, Result};
use crate::core::model::{
    DEFAULT_PRIORITY, MessageId, MessageMeta, NewMessage, ORDER_TAG, QueueKind, RetentionMode, TagMode,
};
use crate::core::options::ReceiveOptions;

type Param<'a> = &'a (dyn ToSql + Sync);

/// Most messages one publish transaction takes from the batcher.
const MAX_BATCH: usize = 1000;

/// A publish request waiting in its queue's batcher.
pub(crate) struct Job {
    msgs: Vec<NewMessage>,
    now: Millis,
    tx: tokio::sync::oneshot::Sender<Result<Vec<MessageMeta>>>,
}

/// A queue's batcher on this node: whether a publish transaction is under way, and who waits.
#[derive(Default)]
pub(crate) struct Slot {
    busy: bool,
    waiting: Vec<Job>,
}

/// Ends a leader's turn: the slot is free again; requests left waiting (the leader's future was
/// dropped mid-flush) are answered "unavailable", as their fate is the flush's.
struct Leader<'a> {
    engine: &'a PgEngine,
    key: (Uuid, u64),
    done: bool,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut b = self.engine.batches.lock();
        if let Some(slot) = b.remove(&self.key) {
            drop(slot.waiting);
        }
    }
}

/// The same error for every request of a failed batch.
fn dup(e: &CoreError) -> CoreError {
    match e {
        CoreError::QueueNotFound => CoreError::QueueNotFound,
        CoreError::ShuttingDown => CoreError::ShuttingDown,
        CoreError::Unavailable(s) => CoreError::Unavailable(s.clone()),
        CoreError::Storage(s) => CoreError::Storage(s.clone()),
        other => storage(other.to_string()),
    }
}

const PUBLISH: &str = "WITH u AS (SELECT * FROM unnest($3::int2[], $4::int2[], $5::int8[], $6::int4[], $7::jsonb[], \
     $8::text[], $9::bytea[], $10::bytea[], $2::int8[]) \
     WITH ORDINALITY AS u(kind, priority, nb, size, tags, okey, attrs, body, enq, ord) \
     WHERE EXISTS (SELECT 1 FROM qg_queue WHERE id = $1 AND version = $13)), \
     s AS MATERIALIZED (SELECT u.*, nextval('qg_seq') AS seq FROM (SELECT * FROM u ORDER BY ord) u), \
     m AS (INSERT INTO qg_message (queue_id, seq, id, kind, priority, enqueued_at, not_before, size, tags, okey, attrs, body) \
       SELECT $1, s.seq, (lpad(to_hex($11::bigint), 16, '0') || lpad(to_hex(s.seq), 16, '0'))::uuid, s.kind, \
       s.priority, s.enq, s.nb, s.size, ARRAY(SELECT jsonb_array_elements_text(s.tags)), s.okey, s.attrs, s.body FROM s \
       RETURNING seq, tags, priority, not_before, enqueued_at), \
     l AS (INSERT INTO qg_lane (queue_id, grp, seq, state, pkey, visible_at) \
       SELECT $1, g.no, m.seq, CASE WHEN m.not_before > m.enqueued_at THEN 2 ELSE 0 END, \
       CASE WHEN $12 THEN m.priority ELSE 0 END, m.not_before FROM m JOIN qg_group g ON g.queue_id = $1 AND ";

/// Delay and lease ends of a queue at once ($1 queue, $5 now, $9 the failure limit): delayed
/// lanes become ready; a lease end counts a failure and makes the lane ready, or dying at the
/// limit. Retention and dead-letter lease ends are left to the sweep and the locked paths (a
/// claim passes over expired messages itself).
const DUE: &str = "UPDATE qg_lane SET state = CASE WHEN state = 2 THEN 0 WHEN failures + 1 >= $9 THEN 4 ELSE 0 END, \
     failures = CASE WHEN state = 1 THEN failures + 1 ELSE failures END, \
     lease = 0 WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $5";

/// The fast claim, one statement ($1 queue, $2 group, $3 how many, $4 lease end, $5 now, $6/$7
/// the group's rule as the caller knows it, $8 the retention cutoff, $9 the failure limit, $10
/// the version of the record these come from — nothing happens if the queue's is another):
/// lease ends and delays come due (`d`), ready lanes are picked in order stepping over rows
/// other claimers hold (`p`), leased (`u`) and returned with their messages. Every row carries
/// what `d` changed (arrays, usually empty); with nothing claimed, one row of only those. `p`
/// cannot see what `d` made ready (one snapshot), so when `d` readied lanes of this group, `p`
/// takes nothing and the caller runs the statement again: the order stays the order of all.
fn claim_sql() -> String {
    format!(
        "WITH d AS ({DUE} AND EXISTS (SELECT 1 FROM qg_queue WHERE id = $1 AND version = $10) \
           RETURNING grp, seq, state), \
         dd AS (SELECT array_agg(grp) AS grps, array_agg(seq) AS seqs, array_agg(state) AS states FROM d), \
         p AS (SELECT l.seq FROM qg_lane l WHERE l.queue_id = $1 AND l.grp = $2 AND l.state = 0 \
           AND (SELECT m.enqueued_at FROM qg_message m WHERE m.queue_id = $1 AND m.seq = l.seq) > $8 \
           AND (SELECT NOT keyed AND version = $10 FROM qg_queue WHERE id = $1) \
           AND NOT EXISTS (SELECT 1 FROM d WHERE d.grp = $2 AND d.state = 0) \
           AND ($6::text[] IS NULL OR EXISTS (SELECT 1 FROM qg_group g WHERE g.queue_id = $1 \
             AND g.no = $2 AND g.rule_tags = $6 AND g.rule_and = $7)) \
           ORDER BY l.pkey, l.seq LIMIT $3 FOR UPDATE OF l SKIP LOCKED), \
         u AS (UPDATE qg_lane l SET state = 1, visible_at = $4, lease = nextval('qg_lease'), \
           deliveries = l.deliveries + 1, first_at = CASE WHEN l.first_at = 0 THEN $5 ELSE l.first_at END \
           WHERE l.queue_id = $1 AND l.seq = ANY(ARRAY(SELECT seq FROM p)) AND l.grp = $2 \
           RETURNING l.seq, l.pkey, l.lease, l.deliveries, l.failures, l.first_at), \
         c AS (SELECT u.pkey AS k1, u.seq AS k2, u.lease, u.deliveries, u.failures, u.first_at, {MSG_COLS} FROM u, \
           LATERAL (SELECT * FROM qg_message mm WHERE mm.queue_id = $1 AND mm.seq = u.seq LIMIT 1) m) \
         SELECT dd.grps, dd.seqs, dd.states, c.* FROM dd LEFT JOIN c ON true ORDER BY c.k1, c.k2"
    )
}

/// What the claim's `d` did, as (group, seq, new state): every row of the claim carries it (the
/// aggregate's one row joined to the claimed ones).
fn due_of(rows: &[tokio_postgres::Row]) -> Vec<(i32, i64, i16)> {
    let Some(first) = rows.first() else { return Vec::new() };
    let grps: Option<Vec<i32>> = first.get(0);
    let seqs: Option<Vec<i64>> = first.get(1);
    let states: Option<Vec<i16>> = first.get(2);
    grps.unwrap_or_default()
        .into_iter()
        .zip(seqs.unwrap_or_default())
        .zip(states.unwrap_or_default())
        .map(|((g, s), st)| (g, s, st))
        .collect()
}

impl PgEngine {
    /// Publishes through the queue's batcher: while one transaction of this node publishes to
    /// the queue, the requests that arrive wait and then go together in the next one (each
    /// request all or none, answered when its transaction committed). No added wait: a lone
    /// request goes at once.
    pub(crate) async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>, now: Millis) -> Result<Vec<MessageMeta>> {
        if let Err(e) = crate::core::messages::check_new(q.config(), &msgs) {
            // Refused by the handle's limits: they must be the queue's own.
            return Err(if self.current(q).await? { e } else { CoreError::QueueNotFound });
        }
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        // Requests holding different versions of the record do not share a transaction: each
        // is checked against its own.
        let key = (q.id(), q.version());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut b = self.batches.lock();
            let slot = b.entry(key).or_default();
            slot.waiting.push(Job { msgs, now, tx });
            !std::mem::replace(&mut slot.busy, true)
        };
        if lead {
            // Cleared whatever happens to this future (a client gone mid-flush drops it).
            let mut guard = Leader { engine: self, key, done: false };
            loop {
                let jobs: Vec<Job> = {
                    let mut b = self.batches.lock();
                    let slot = b.get_mut(&key).expect("the leader's slot");
                    if slot.waiting.is_empty() {
                        // Done, under the same lock a newcomer checks `busy` with.
                        b.remove(&key);
                        guard.done = true;
                        break;
                    }
                    let mut n = 0;
                    let take = slot.waiting.iter().take_while(|j| {
                        n += j.msgs.len();
                        n <= MAX_BATCH || n == j.msgs.len()
                    });
                    let k = take.count().max(1).min(slot.waiting.len());
                    slot.waiting.drain(..k).collect()
                };
                let all: Vec<&NewMessage> = jobs.iter().flat_map(|j| j.msgs.iter()).collect();
                let nows: Vec<Millis> = jobs.iter().flat_map(|j| j.msgs.iter().map(|_| j.now)).collect();
                let result = self.publish_rows(q, &all, &nows).await;
                let mut metas = match result {
                    Ok(m) => m.into_iter(),
                    Err(e) => {
                        for j in jobs {
                            let _ = j.tx.send(Err(dup(&e)));
                        }
                        continue;
                    }
                };
                for j in jobs {
                    let mine: Vec<MessageMeta> = metas.by_ref().take(j.msgs.len()).collect();
                    let _ = j.tx.send(Ok(mine));
                }
            }
            drop(guard);
        }
        rx.await.unwrap_or_else(|_| {
            Err(CoreError::Unavailable(crate::core::StoreError::unavailable("the publishing request ended early")))
        })
    }

    /// One publish transaction for messages of several requests (`nows`: each one's time).
    async fn publish_rows(&self, q: &Queue, msgs: &[&NewMessage], nows: &[Millis]) -> Result<Vec<MessageMeta>> {
        let cfg = q.config();
        let (mut kinds, mut prios, mut nbs, mut sizes, mut tags, mut okeys, mut attrs, mut bodies) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut metas = Vec::with_capacity(msgs.len());
        let mut enq = Vec::with_capacity(msgs.len());
        for (m, now) in msgs.iter().zip(nows) {
            let now = *now;
            enq.push(ms(now));
            let mut t = m.tags.clone();
            if let Some(k) = &m.order_key {
                t.push(format!("{ORDER_TAG}{k}"));
            }
            let delay = m.delay_ms.unwrap_or(cfg.delay_secs.saturating_mul(1000));
            let meta = MessageMeta {
                seq: 0,
                id: MessageId(0),
                kind: m.kind,
                priority: m.priority.unwrap_or(DEFAULT_PRIORITY),
                enqueued_at: now,
                not_before: now.saturating_add(delay),
                size: m.body.len() as u32,
                tags: t,
                origin: None,
            };
            kinds.push(kind_code(meta.kind));
            prios.push(meta.priority as i16);
            nbs.push(ms(meta.not_before));
            sizes.push(meta.size as i32);
            tags.push(serde_json::Value::from(tags_col(&meta.tags)));
            okeys.push(m.order_key.as_deref().map(|k| esc(k).into_owned()));
            attrs.push(serde_json::to_vec(&m.attributes).map_err(|e| storage(e.to_string()))?);
            bodies.push(m.body.as_slice());
            metas.push(meta);
        }
        let keyed = okeys.iter().any(Option::is_some);
        let (publish_key, _) = lock_keys(q.id());
        let salt = q.salt() as i64;
        let client = self.client().await?;
        let r: PResult<Vec<tokio_postgres::Row>> = async {
            let lock = client.prepare_cached("SELECT pg_advisory_xact_lock_shared($1)").await?;
            let insert = client.prepare_cached(&format!("{PUBLISH}{ACCEPTS}) SELECT seq, ord FROM s")).await?;
            let mark = client.prepare_cached("UPDATE qg_queue SET keyed = true WHERE id = $1 AND NOT keyed").await?;
            let on = pkey_on(cfg);
            let version = q.version() as i64;
            let params: [Param; 13] =
                [&q.id(), &enq, &kinds, &prios, &nbs, &sizes, &tags, &okeys, &attrs, &bodies, &salt, &on, &version];
            let qid = q.id();
            let p_lock: [Param; 1] = [&publish_key];
            let p_mark: [Param; 1] = [&qid];
            let (_, _, rows, _, _) = tokio::try_join!(
                client.batch_execute("BEGIN"),
                client.execute(&lock, &p_lock),
                client.query(&insert, &params),
                async { if keyed { client.execute(&mark, &p_mark).await.map(|_| ()) } else { Ok(()) } },
                client.batch_execute("SET LOCAL synchronous_commit = on; COMMIT"),
            )?;
            Ok(rows)
        }
        .await;
        let rows = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        if rows.len() != metas.len() {
            return Err(CoreError::QueueNotFound);
        }
        let mut seqs: Vec<(i64, i64)> = rows.iter().map(|r| (r.get::<_, i64>(1), r.get::<_, i64>(0))).collect();
        seqs.sort_unstable();
        for (meta, (_, seq)) in metas.iter_mut().zip(seqs) {
            meta.seq = seq as u64;
            meta.id = MessageId::new(q.salt(), seq as u64);
        }
        self.apply(&Fx { wake: vec![q.id()], gone: Vec::new() });
        Ok(metas)
    }

    pub(crate) async fn claim(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Claim> {
        match self.claim_fast(q, group, opts, now).await? {
            Some(c) => Ok(c),
            None => self.claim_locked(q, group, opts, now).await,
        }
    }

    /// The unlocked claim of a standard queue; `None` sends the caller to the locked path.
    async fn claim_fast(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Option<Claim>> {
        let cfg = q.config();
        if cfg.kind == QueueKind::Fifo || opts.max_bytes.is_some() || opts.max == 0 {
            return Ok(None);
        }
        let (id, g) = (q.id(), group as i32);
        let retention = cfg.retention_secs.saturating_mul(1000);
        let cutoff: i64 = if now >= retention { ms(now - retention) } else { -1 };
        let lease_ms = opts.lease_ms.unwrap_or(cfg.visibility_timeout_secs.saturating_mul(1000));
        let until = now.saturating_add(lease_ms);
        let rec = q.record();
        let max = max_failures(&rec);
        let (rule_tags, rule_and) = match &opts.rule {
            Some(r) => (Some(tags_col(&r.tags)), r.mode == TagMode::And),
            None => (None, false),
        };
        let client = self.client().await?;
        let r: PResult<_> = async {
            let s_claim = client.prepare_cached(&claim_sql()).await?;
            let now_i = ms(now);
            let version = q.version() as i64;
            let claim: [Param; 10] =
                [&id, &g, &(opts.max as i64), &ms(until), &now_i, &rule_tags, &rule_and, &cutoff, &max, &version];
            let mut rows = client.query(&s_claim, &claim).await?;
            let mut due = due_of(&rows);
            // Lanes of this group came due in that very statement, so it claimed nothing: again.
            if due.iter().any(|&(dg, _, st)| dg == g && st == super::schema::READY) {
                rows = client.query(&s_claim, &claim).await?;
                due.extend(due_of(&rows));
            }
            let claimed: Vec<_> = rows.into_iter().filter(|r| r.get::<_, Option<i64>>(5).is_some()).collect();
            if !claimed.is_empty() {
                // Rows mean the queue, the group and its rule were there, and no ordering key.
                return Ok((None, due, claimed, None));
            }
            // Nothing: why (no queue, no group, another path) and when something comes due.
            let s_meta = client
                .prepare_cached(
                    "SELECT q.keyed, g.no IS NOT NULL, g.rule_tags, g.rule_and, q.version FROM qg_queue q \
                     LEFT JOIN qg_group g ON g.queue_id = q.id AND g.no = $2 WHERE q.id = $1",
                )
                .await?;
            let s_next = client.prepare_cached(super::messages::NEXT_DUE).await?;
            let retention_i = ms(retention);
            let p_meta: [Param; 2] = [&id, &g];
            let p_next: [Param; 2] = [&id, &retention_i];
            let (meta, next) =
                tokio::try_join!(client.query_opt(&s_meta, &p_meta), client.query_one(&s_next, &p_next))?;
            Ok((Some(meta), due, claimed, Some(next.get::<_, Option<i64>>(0))))
        }
        .await;
        let (meta, due, claimed, next) = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        // Gone, or changed since the handle was made: the broker looks it up again.
        let meta = match meta {
            Some(Some(m)) if m.get::<_, i64>(4) as u64 == q.version() => Some(m),
            Some(_) => return Err(CoreError::QueueNotFound),
            None => None,
        };
        if meta.as_ref().is_some_and(|m| !m.get::<_, bool>(1)) {
            return Err(CoreError::GroupNotFound);
        }
        let mut fx = Fx::default();
        if !due.is_empty() {
            fx.wake.push(id);
        }
        let dying: Vec<(u32, u64)> =
            due.iter().filter(|d| d.2 == super::schema::DYING).map(|&(g, seq, _)| (g as u32, seq as u64)).collect();
        if !dying.is_empty() {
            let rec = Arc::new(rec.clone());
            transaction!(self, false, |tx, fx2| {
                self.bury(&tx, &rec, &dying, crate::core::model::DeadReason::MaxDeliveries, now, fx2).await
            })?;
        }
        self.apply(&fx);
        if let Some(meta) = meta {
            let keyed: bool = meta.get(0);
            let stored_tags: Option<Vec<String>> = meta.get(2);
            let rule_fixed =
                rule_tags.is_none() || (stored_tags == rule_tags && meta.get::<_, Option<bool>>(3) == Some(rule_and));
            if keyed || !rule_fixed {
                return Ok(None);
            }
        }
        let mut items = Vec::with_capacity(claimed.len());
        for r in &claimed {
            let (meta, body) = meta_of(r, 9).map_err(|e| self.failed(e))?;
            items.push(Claimed {
                meta,
                body,
                group,
                lease: LeaseOf { lease: r.get::<_, i64>(5) as u64, until },
                deliveries: r.get::<_, i32>(6) as u32,
                failures: r.get::<_, i32>(7) as u32,
                first_delivered_at: r.get::<_, i64>(8) as u64,
                dead: false,
            });
        }
        let next_due =
            if items.is_empty() { Some(super::messages::due_within_fallback(next.flatten(), now)) } else { None };
        Ok(Some(Claim { items, next_due }))
    }

    pub(crate) async fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()> {
        let work = q.config().mode == RetentionMode::WorkQueue;
        let (id, g) = (q.id(), group as i32);
        // Only the lane's primary key may serve these (`state + 0`, `visible_at + 0`): on a young
        // table the partial indexes look as cheap to the planner, and a generic plan cached then
        // would go on scanning every in-flight lane of the queue for each ack.
        let (seq_is, lease_is) = match target {
            Target::Lease { .. } => ("$2 AND $6::uuid IS NOT NULL", "lease = $4"),
            Target::Message(_) => (
                "(SELECT mm.seq FROM qg_message mm WHERE mm.queue_id = $1 AND mm.id = $6) AND $2::int8 IS NOT NULL",
                "$4::int8 IS NOT NULL",
            ),
        };
        let verb = if work { "DELETE FROM qg_lane" } else { "UPDATE qg_lane SET state = 3, lease = 0" };
        let take = format!(
            "{verb} WHERE queue_id = $1 AND seq = {seq_is} AND grp = $3 AND state + 0 = 1 AND {lease_is} \
             AND visible_at + 0 > $5 AND EXISTS (SELECT 1 FROM qg_queue WHERE id = $1 AND version = $7) RETURNING seq"
        );
        // A work queue's message goes with its last live lane; each step looks its rows up by key.
        let sql = if work {
            format!(
                "WITH a AS ({take}), \
                 m AS (DELETE FROM qg_message WHERE queue_id = $1 AND seq = (SELECT seq FROM a) \
                   AND NOT EXISTS (SELECT 1 FROM qg_lane o WHERE o.queue_id = $1 AND o.seq = (SELECT seq FROM a) \
                     AND o.grp <> $3 AND o.state + 0 IN (0, 1, 2, 4)) \
                   AND NOT EXISTS (SELECT 1 FROM qg_dead d WHERE d.queue_id = $1 AND d.seq = (SELECT seq FROM a) \
                     AND d.state IN (0, 1)) \
                   RETURNING seq), \
                 o AS (DELETE FROM qg_lane WHERE queue_id = $1 AND seq = (SELECT seq FROM m) AND grp <> $3), \
                 d AS (DELETE FROM qg_dead WHERE queue_id = $1 AND seq = (SELECT seq FROM m)) \
                 SELECT count(*) FROM a"
            )
        } else {
            format!("WITH a AS ({take}) SELECT count(*) FROM a")
        };
        let (seq, lease, mid) = match target {
            Target::Lease { seq, lease } => (seq as i64, lease as i64, Uuid::nil()),
            Target::Message(m) => (0, 0, Uuid::from_u128(m.0)),
        };
        let client = self.client().await?;
        let r: PResult<i64> = async {
            let stmt = client.prepare_cached(&sql).await?;
            let version = q.version() as i64;
            let params: [Param; 7] = [&id, &seq, &g, &lease, &ms(now), &mid, &version];
            Ok(client.query_one(&stmt, &params).await?.get(0))
        }
        .await;
        // The connection goes back first: the reasons below take one of their own.
        drop(client);
        let n = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        if n > 0 {
            return Ok(());
        }
        if !self.current(q).await? {
            return Err(CoreError::QueueNotFound);
        }
        match target {
            Target::Lease { .. } => Err(CoreError::ReceiptStale),
            // Why not: no such message, not leased in the group (an ended lease included).
            Target::Message(_) => {
                let e = transaction!(self, false, |tx, fx| {
                    self.group_row(&tx, id, group).await?;
                    let s = tx.prepare_cached("SELECT 1 FROM qg_message WHERE queue_id = $1 AND id = $2").await?;
                    Ok(if tx.query_opt(&s, &[&id, &mid]).await?.is_some() {
                        CoreError::NotInFlight
                    } else {
                        CoreError::MessageNotFound
                    })
                })?;
                Err(e)
            }
        }
    }

    pub(crate) async fn nack(
        &self,
        q: &Queue,
        group: u32,
        target: Target,
        dead_now: bool,
        now: Millis,
    ) -> Result<bool> {
        if !self.current(q).await? {
            return Err(CoreError::QueueNotFound);
        }
        let rec = q.record();
        transaction!(self, false, |tx, fx| {
            let (seq, lease) = self.resolve(&tx, rec.id, group, target).await?;
            match self.nack_in(&tx, &rec, group, seq, lease, dead_now, now, fx).await? {
                Some(back) => Ok(back),
                None => Err(match target {
                    Target::Lease { .. } => CoreError::ReceiptStale,
                    Target::Message(_) => CoreError::NotInFlight,
                }
                .into()),
            }
        })
    }

    pub(crate) async fn change_visibility(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        now: Millis,
    ) -> Result<LeaseOf> {
        let client = self.client().await?;
        let r: PResult<_> = async {
            let stmt = client
                .prepare_cached(
                    "UPDATE qg_lane SET visible_at = $5, lease = nextval('qg_lease') WHERE queue_id = $1 AND seq = $2 \
                     AND grp = $3 AND state + 0 = 1 AND lease = $4 AND visible_at + 0 > $6 RETURNING lease",
                )
                .await?;
            let params: [Param; 6] = [&q.id(), &(seq as i64), &(group as i32), &(lease as i64), &ms(until), &ms(now)];
            Ok(client.query_opt(&stmt, &params).await?)
        }
        .await;
        drop(client);
        let row = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        match row {
            Some(row) => Ok(LeaseOf { lease: row.get::<_, i64>(0) as u64, until }),
            None if self.current(q).await? => Err(CoreError::ReceiptStale),
            None => Err(CoreError::QueueNotFound),
        }
    }

    /// Whether the handle's record is still the queue's (the same id at the same version): a
    /// handle from `queue_cached` may be older (see `Engine::queue_cached`).
    pub(crate) async fn current(&self, q: &Queue) -> Result<bool> {
        let client = self.client().await?;
        let r: PResult<_> = async {
            let stmt = client.prepare_cached("SELECT version FROM qg_queue WHERE id = $1").await?;
            Ok(client.query_opt(&stmt, &[&q.id()]).await?)
        }
        .await;
        let row = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        Ok(row.is_some_and(|r| r.get::<_, i64>(0) as u64 == q.version()))
    }
}
