//! The rest of the PostgreSQL engine: idempotency records, push subscriptions, sweeping what
//! became due, and the lifecycle (readiness, metrics, close).
//!
//! Idempotency across nodes: the first request with a key inserts a *pending* row (status 0)
//! owned by a random token; a concurrent request with the key — on this node or another —
//! finds it pending and waits (polling, holding no connection) until the answer is recorded or
//! the pending row goes away (the owner's request failed: its ticket deletes the row when
//! dropped) or grows stale (its node died: after [`PENDING_STALE_MS`] another request takes
//! the key over).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::{PgEngine, esc, ms, storage, transaction};
use crate::core::clock::Millis;
use crate::core::engine::StorageMetric;
use crate::core::error::{CoreError, Result};
use crate::core::idempotency::{IDEMPOTENCY_WINDOW_MS, IdempotencyTicket, Idempotent};
use crate::core::model::{IdempotencyRecord, SubscriptionRecord};

/// A pending key whose owner has not answered for this long is taken over.
pub const PENDING_STALE_MS: Millis = 60_000;

/// What a ticket holds: the local lock of the key and the pending row to remove if the
/// request ends without an answer.
struct Hold {
    pool: deadpool_postgres::Pool,
    key: (String, String, String),
    owner: Uuid,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let pool = self.pool.clone();
        let (ns, cap, key) = self.key.clone();
        let owner = self.owner;
        // Only a row still pending and still ours: after an answer was recorded it stays.
        rt.spawn(async move {
            if let Ok(c) = pool.get().await {
                let _ = c
                    .execute(
                        "DELETE FROM qg_idem WHERE ns = $1 AND cap = $2 AND key = $3 AND status = 0 AND owner = $4",
                        &[&ns, &cap, &key, &owner],
                    )
                    .await;
            }
        });
    }
}

impl PgEngine {
    pub(crate) async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Millis,
    ) -> Result<Idempotent> {
        let k = (esc(ns).into_owned(), esc(capability).into_owned(), esc(key).into_owned());
        // Same-node requests with the key queue here, without touching the database.
        let local = self.idem_stripe(&k).lock_owned().await;
        let owner = Uuid::new_v4();
        let fp = fingerprint.to_vec();
        let mut waited = 0u64;
        loop {
            let outcome = transaction!(self, true, |tx, fx| {
                let claim = tx
                    .prepare_cached(
                        "INSERT INTO qg_idem (ns, cap, key, fingerprint, status, body, created_at, owner) \
                         VALUES ($1, $2, $3, $4, 0, '', $5, $6) ON CONFLICT (ns, cap, key) DO UPDATE \
                         SET fingerprint = $4, status = 0, body = '', created_at = $5, owner = $6 \
                         WHERE qg_idem.created_at + $7 <= $5 OR (qg_idem.status = 0 AND qg_idem.created_at + $8 <= $5) \
                         RETURNING owner",
                    )
                    .await?;
                let window = ms(IDEMPOTENCY_WINDOW_MS);
                let stale = ms(PENDING_STALE_MS);
                let won = tx.query_opt(&claim, &[&k.0, &k.1, &k.2, &fp, &ms(now), &owner, &window, &stale]).await?;
                if won.is_some() {
                    return Ok(None);
                }
                let read = tx
                    .prepare_cached(
                        "SELECT fingerprint, status, body FROM qg_idem WHERE ns = $1 AND cap = $2 AND key = $3",
                    )
                    .await?;
                Ok(tx
                    .query_opt(&read, &[&k.0, &k.1, &k.2])
                    .await?
                    .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i32>(1), r.get::<_, Vec<u8>>(2))))
            })?;
            match outcome {
                None => {
                    let (namespace, capability, key) = (ns.to_string(), capability.to_string(), key.to_string());
                    let hold = Hold { pool: self.pool.clone(), key: k, owner, _local: local };
                    return Ok(Idempotent::Proceed(IdempotencyTicket {
                        namespace,
                        capability,
                        key,
                        fingerprint,
                        hold: Box::new(hold),
                    }));
                }
                Some((_, 0, _)) => {
                    // Another node's request with this key is under way: wait for its answer.
                    waited += 1;
                    tokio::time::sleep(Duration::from_millis(if waited < 50 { 10 } else { 50 })).await;
                }
                Some((f, status, body)) => {
                    return Ok(if f == fingerprint {
                        Idempotent::Replay { status: status as u16, body }
                    } else {
                        Idempotent::Mismatch
                    });
                }
            }
        }
    }

    fn idem_stripe(&self, k: &(String, String, String)) -> Arc<tokio::sync::Mutex<()>> {
        use std::hash::BuildHasher;
        let i = self.idem.1.hash_one(k) as usize % self.idem.0.len();
        self.idem.0[i].clone()
    }

    pub(crate) async fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<([u8; 32], u16, Vec<u8>)>> {
        let row = transaction!(self, false, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT fingerprint, status, body FROM qg_idem WHERE ns = $1 AND cap = $2 AND key = $3 \
                     AND status <> 0 AND created_at + $4 > $5",
                )
                .await?;
            Ok(tx
                .query_opt(
                    &stmt,
                    &[
                        &esc(ns).as_ref(),
                        &esc(capability).as_ref(),
                        &esc(key).as_ref(),
                        &ms(IDEMPOTENCY_WINDOW_MS),
                        &ms(now),
                    ],
                )
                .await?)
        })?;
        let Some(r) = row else { return Ok(None) };
        let fp: Vec<u8> = r.get(0);
        let fp: [u8; 32] = fp.try_into().map_err(|_| storage("a stored fingerprint is not 32 bytes"))?;
        Ok(Some((fp, r.get::<_, i32>(1) as u16, r.get(2))))
    }

    pub(crate) async fn idempotency_record(&self, rec: IdempotencyRecord) -> Result<()> {
        transaction!(self, true, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO qg_idem (ns, cap, key, fingerprint, status, body, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (ns, cap, key) DO UPDATE \
                     SET fingerprint = $4, status = $5, body = $6, created_at = $7, owner = NULL",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &esc(&rec.namespace).as_ref(),
                    &esc(&rec.capability).as_ref(),
                    &esc(&rec.key).as_ref(),
                    &rec.fingerprint.as_slice(),
                    &(rec.status.max(1) as i32),
                    &rec.body,
                    &ms(rec.created_at),
                ],
            )
            .await?;
            Ok(())
        })
    }

    // ----- subscriptions ------------------------------------------------------------------------

    pub(crate) async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()> {
        let bytes = serde_json::to_vec(&rec).map_err(|e| storage(e.to_string()))?;
        transaction!(self, true, |tx, fx| {
            let q = tx.prepare_cached("SELECT 1 FROM qg_queue WHERE id = $1 AND ns = $2").await?;
            tx.query_opt(&q, &[&rec.queue_id, &esc(&rec.namespace).as_ref()]).await?.ok_or(CoreError::QueueNotFound)?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO qg_subscription (id, queue_id, created_at, record) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET record = $4",
                )
                .await?;
            tx.execute(&stmt, &[&rec.id, &rec.queue_id, &ms(rec.created_at), &bytes]).await?;
            Ok(())
        })
    }

    pub(crate) async fn unsubscribe(&self, id: Uuid) -> Result<bool> {
        transaction!(self, true, |tx, fx| {
            let stmt = tx.prepare_cached("DELETE FROM qg_subscription WHERE id = $1").await?;
            Ok(tx.execute(&stmt, &[&id]).await? > 0)
        })
    }

    async fn subscriptions_where(&self, sql: &'static str, id: Option<Uuid>) -> Result<Vec<SubscriptionRecord>> {
        let rows = transaction!(self, false, |tx, fx| {
            let stmt = tx.prepare_cached(sql).await?;
            Ok(match id {
                Some(id) => tx.query(&stmt, &[&id]).await?,
                None => tx.query(&stmt, &[]).await?,
            })
        })?;
        rows.iter()
            .map(|r| {
                serde_json::from_slice::<SubscriptionRecord>(r.get(0))
                    .map_err(|e| storage(format!("a stored subscription: {e}")))
            })
            .collect()
    }

    pub(crate) async fn subscription(&self, id: Uuid) -> Result<Option<SubscriptionRecord>> {
        Ok(self.subscriptions_where("SELECT record FROM qg_subscription WHERE id = $1", Some(id)).await?.pop())
    }

    pub(crate) async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.subscriptions_where("SELECT record FROM qg_subscription ORDER BY created_at, id", None).await
    }

    pub(crate) async fn subscriptions_of(&self, queue: Uuid) -> Result<Vec<SubscriptionRecord>> {
        self.subscriptions_where(
            "SELECT record FROM qg_subscription WHERE queue_id = $1 ORDER BY created_at, id",
            Some(queue),
        )
        .await
    }

    pub(crate) async fn claim_owner(&self, key: &str, node: Uuid, until: Millis, now: Millis) -> Result<bool> {
        transaction!(self, false, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO qg_owner (key, node, until) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE \
                     SET node = $2, until = $3 WHERE qg_owner.node = $2 OR qg_owner.until <= $4 RETURNING node",
                )
                .await?;
            Ok(tx.query_opt(&stmt, &[&esc(key).as_ref(), &node, &ms(until), &ms(now)]).await?.is_some())
        })
    }

    // ----- time and lifecycle -------------------------------------------------------------------

    /// Refreshes every queue with something due (skipping those another node is working on) and
    /// forgets expired idempotency records.
    pub(crate) async fn sweep(&self, now: Millis) -> Result<()> {
        let ids: Vec<Uuid> = transaction!(self, false, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT queue_id FROM qg_lane WHERE state IN (1, 2) AND visible_at <= $1 \
                     UNION SELECT DISTINCT queue_id FROM qg_lane WHERE state = 4 \
                     UNION SELECT DISTINCT queue_id FROM qg_dead WHERE state = 1 AND until <= $1 \
                     UNION SELECT q.id FROM qg_queue q WHERE EXISTS (SELECT 1 FROM qg_message m \
                       WHERE m.queue_id = q.id AND m.enqueued_at <= $1 - q.retention_ms)",
                )
                .await?;
            Ok(tx.query(&stmt, &[&ms(now)]).await?.iter().map(|r| r.get(0)).collect())
        })?;
        for id in ids {
            transaction!(self, false, |tx, fx| {
                let lock = tx.prepare_cached("SELECT pg_try_advisory_xact_lock($1)").await?;
                let key = crate::core::model::queue_salt(id) as i64;
                if !tx.query_one(&lock, &[&key]).await?.get::<_, bool>(0) {
                    return Ok(());
                }
                let v = tx.prepare_cached("SELECT version FROM qg_queue WHERE id = $1").await?;
                let Some(row) = tx.query_opt(&v, &[&id]).await? else { return Ok(()) };
                let rec = self.record_at(&tx, id, row.get(0)).await?;
                self.refresh(&tx, &rec, now, fx).await
            })?;
        }
        transaction!(self, false, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM qg_idem WHERE created_at + $2 <= $1 OR (status = 0 AND created_at + $3 <= $1)",
                )
                .await?;
            tx.execute(&stmt, &[&ms(now), &ms(IDEMPOTENCY_WINDOW_MS), &ms(PENDING_STALE_MS)]).await?;
            Ok(())
        })
    }

    pub(crate) async fn next_due(&self) -> Option<Millis> {
        let r: Result<Option<i64>> = transaction!(self, false, |tx, fx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT least((SELECT min(visible_at) FROM qg_lane WHERE state IN (1, 2)), \
                     (SELECT min(until) FROM qg_dead WHERE state = 1))",
                )
                .await?;
            Ok(tx.query_one(&stmt, &[]).await?.get(0))
        });
        r.ok().flatten().map(|v| v.max(0) as u64)
    }

    pub(crate) fn readiness(&self) -> std::result::Result<(), String> {
        match &*self.down.lock() {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn storage_metrics(&self) -> Vec<StorageMetric> {
        let status = self.pool.status();
        let m = &self.metrics;
        vec![
            StorageMetric {
                name: "pg_transactions_total",
                help: "Transactions started on the database",
                value: m.transactions.load(Ordering::Relaxed),
                counter: true,
            },
            StorageMetric {
                name: "pg_retries_total",
                help: "Transactions retried after a deadlock",
                value: m.retries.load(Ordering::Relaxed),
                counter: true,
            },
            StorageMetric {
                name: "pg_errors_total",
                help: "Database errors (unreachable database included)",
                value: m.errors.load(Ordering::Relaxed),
                counter: true,
            },
            StorageMetric {
                name: "pg_pool_connections",
                help: "Connections the pool holds",
                value: status.size as u64,
                counter: false,
            },
            StorageMetric {
                name: "pg_pool_idle_connections",
                help: "Connections idle in the pool",
                value: status.available as u64,
                counter: false,
            },
            StorageMetric {
                name: "pg_listening",
                help: "1 while the node listens for other nodes' changes",
                value: self.notifier.listening.load(Ordering::Relaxed) as u64,
                counter: false,
            },
        ]
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.notifier.stop();
        self.pool.close();
        Ok(())
    }
}
