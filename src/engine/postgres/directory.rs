//! The directory on PostgreSQL: create (with the quota checked under the namespace's lock),
//! update, delete, look up and list queues. Lookups read the table every time: a queue created
//! on another node is there in the next request, and a deleted one is gone.

use std::sync::Arc;

use uuid::Uuid;

use super::{PResult, PgEngine, Tx, esc, ms, record_of, storage, transaction};
use crate::core::clock::Millis;
use crate::core::engine::{CreateOutcome, Queue};
use crate::core::error::{CoreError, Quota, Result};
use crate::core::model::{DeadLetterTarget, QueueConfig, QueueRecord};

/// Most names `queue_cached` remembers (the map starts over beyond).
const MAX_NAMED: usize = 10_000;

const SELECT: &str = "SELECT id, ns, name, config, created_at, modified_at, version FROM qg_queue";

/// The namespace's advisory lock key: creates in one namespace are serialised (quota).
fn ns_key(ns: &str) -> i64 {
    // A stable hash (every node must agree): FNV-1a.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ns.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

fn config_bytes(cfg: &QueueConfig) -> PResult<Vec<u8>> {
    serde_json::to_vec(cfg).map_err(|e| storage(format!("encoding a queue configuration: {e}")).into())
}

impl PgEngine {
    async fn check_dead_letter_target(tx: &Tx<'_>, ns: &str, this: Option<Uuid>, cfg: &QueueConfig) -> PResult<()> {
        if let Some(p) = &cfg.dead_letter
            && let DeadLetterTarget::Queue(t) = p.target
        {
            if Some(t) == this {
                return Err(CoreError::InvalidArgument(
                    "dead_letter_queue: a queue cannot be its own dead-letter queue".into(),
                )
                .into());
            }
            let stmt = tx.prepare_cached("SELECT 1 FROM qg_queue WHERE id = $1 AND ns = $2").await?;
            if tx.query_opt(&stmt, &[&t, &esc(ns).as_ref()]).await?.is_none() {
                return Err(CoreError::QueueNotFound.into());
            }
        }
        Ok(())
    }

    async fn count_in(tx: &Tx<'_>, ns: &str, region: Option<&str>) -> PResult<usize> {
        let stmt = tx
            .prepare_cached(
                "SELECT count(*) FROM qg_queue WHERE ns = $1 AND ($2::text IS NULL OR region IS NULL OR region = $2)",
            )
            .await?;
        let n: i64 = tx.query_one(&stmt, &[&esc(ns).as_ref(), &region]).await?.get(0);
        Ok(n as usize)
    }

    pub(crate) async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
        now: Millis,
    ) -> Result<CreateOutcome> {
        let (ens, ename) = (esc(ns), esc(name));
        transaction!(self, true, |tx, fx| {
            let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
            tx.execute(&lock, &[&ns_key(&ens)]).await?;
            let existing = tx.prepare_cached(&format!("{SELECT} WHERE ns = $1 AND name = $2")).await?;
            if let Some(row) = tx.query_opt(&existing, &[&ens.as_ref(), &ename.as_ref()]).await? {
                return Ok(CreateOutcome::Exists(record_of(&row)?.0));
            }
            if let Some(max) = max_queues
                && Self::count_in(&tx, ns, config.region.as_deref()).await? >= max
            {
                return Err(CoreError::QuotaExceeded(Quota::Queues).into());
            }
            Self::check_dead_letter_target(&tx, ns, None, &config).await?;
            let record = QueueRecord {
                id: Uuid::new_v4(),
                namespace: ns.to_string(),
                name: name.to_string(),
                config: config.clone(),
                created_at: now,
                modified_at: now,
            };
            let insert = tx
                .prepare_cached(
                    "INSERT INTO qg_queue (id, ns, name, config, region, retention_ms, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .await?;
            let group = tx
                .prepare_cached(
                    "INSERT INTO qg_group (queue_id, no, ext_id, name, created_at) VALUES ($1, 0, 'default', 'default', $2)",
                )
                .await?;
            let cfg = config_bytes(&record.config)?;
            let retention = ms(record.config.retention_secs.saturating_mul(1000));
            tokio::try_join!(
                async {
                    tx.execute(
                        &insert,
                        &[
                            &record.id,
                            &ens.as_ref(),
                            &ename.as_ref(),
                            &cfg,
                            &record.config.region,
                            &retention,
                            &ms(now),
                        ],
                    )
                    .await
                },
                async { tx.execute(&group, &[&record.id, &ms(now)]).await }
            )?;
            Ok(CreateOutcome::Created(record))
        })
    }

    pub(crate) async fn update_queue(&self, q: &Queue, cfg: QueueConfig, now: Millis) -> Result<QueueRecord> {
        transaction!(self, true, |tx, fx| {
            let old = self.lock(&tx, q.id(), true).await?;
            self.refresh(&tx, &old, now, fx).await?;
            Self::check_dead_letter_target(&tx, &old.namespace, Some(old.id), &cfg).await?;
            let mut rec = (*old).clone();
            let rekey = super::pkey_on(&rec.config) != super::pkey_on(&cfg);
            rec.config = cfg.clone();
            rec.modified_at = now;
            let stmt = tx
                .prepare_cached(
                    "UPDATE qg_queue SET config = $2, region = $3, retention_ms = $4, modified_at = $5, \
                     version = version + 1 WHERE id = $1",
                )
                .await?;
            let retention = ms(rec.config.retention_secs.saturating_mul(1000));
            tx.execute(&stmt, &[&rec.id, &config_bytes(&rec.config)?, &rec.config.region, &retention, &ms(now)])
                .await?;
            if rekey {
                let on = super::pkey_on(&rec.config);
                let stmt = tx
                    .prepare_cached(
                        "UPDATE qg_lane l SET pkey = CASE WHEN $2 THEN m.priority ELSE 0 END FROM qg_message m \
                         WHERE l.queue_id = $1 AND m.queue_id = $1 AND m.seq = l.seq",
                    )
                    .await?;
                tx.execute(&stmt, &[&rec.id, &on]).await?;
            }
            fx.wake.push(rec.id);
            Ok(rec)
        })
    }

    pub(crate) async fn delete_queue(&self, q: &Queue) -> Result<()> {
        transaction!(self, true, |tx, fx| {
            let id = q.id();
            self.lock(&tx, id, true).await?;
            for sql in [
                "DELETE FROM qg_lane WHERE queue_id = $1",
                "DELETE FROM qg_dead WHERE queue_id = $1",
                "DELETE FROM qg_message WHERE queue_id = $1",
                "DELETE FROM qg_group WHERE queue_id = $1",
                "DELETE FROM qg_subscription WHERE queue_id = $1",
                "DELETE FROM qg_queue WHERE id = $1",
            ] {
                let stmt = tx.prepare_cached(sql).await?;
                tx.execute(&stmt, &[&id]).await?;
            }
            fx.gone.push(id);
            Ok(())
        })
    }

    /// The queue as the database has it now; remembered for `queue_cached`.
    pub(crate) async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        let client = self.client().await?;
        let r: PResult<_> = async {
            let stmt = client.prepare_cached(&format!("{SELECT} WHERE ns = $1 AND name = $2")).await?;
            let row = client.query_opt(&stmt, &[&esc(ns).as_ref(), &esc(name).as_ref()]).await?;
            Ok(row)
        }
        .await;
        let row = r.map_err(|e| self.failed(e))?;
        self.succeeded();
        let key = (ns.to_string(), name.to_string());
        let Some(row) = row else {
            self.named.lock().remove(&key);
            return Err(CoreError::QueueNotFound);
        };
        let q = self.handle(&row)?;
        let mut named = self.named.lock();
        // Bounded: handles of queues no longer asked for must not pile up without end.
        if named.len() >= MAX_NAMED && !named.contains_key(&key) {
            named.clear();
        }
        named.insert(key, q.clone());
        Ok(q)
    }

    /// The handle this node last looked up for that name, else a fresh one. Without a
    /// database round trip in the common case; the message statements check its version and
    /// the broker retries with a fresh handle when it is out of date.
    pub(crate) async fn queue_cached(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        if let Some(q) = self.named.lock().get(&(ns.to_string(), name.to_string())) {
            return Ok(q.clone());
        }
        self.queue(ns, name).await
    }

    pub(crate) async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        let client = self.client().await?;
        let r: PResult<_> = async {
            let stmt = client.prepare_cached(&format!("{SELECT} WHERE id = $1 AND ns = $2")).await?;
            Ok(client.query_opt(&stmt, &[&id, &esc(ns).as_ref()]).await?)
        }
        .await;
        let row = r.map_err(|e| self.failed(e))?.ok_or(CoreError::QueueNotFound)?;
        self.handle(&row)
    }

    /// A handle from a row, caching the parsed record by version.
    fn handle(&self, row: &tokio_postgres::Row) -> Result<Arc<Queue>> {
        let id: Uuid = row.get(0);
        let version: i64 = row.get(6);
        if let Some((v, r)) = self.records.lock().get(&id)
            && *v == version
        {
            return Ok(Arc::new(Queue::at_version((**r).clone(), version as u64)));
        }
        let (rec, v) = record_of(row).map_err(|e| self.failed(e))?;
        self.records.lock().insert(id, (v, Arc::new(rec.clone())));
        Ok(Arc::new(Queue::at_version(rec, v as u64)))
    }

    pub(crate) async fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Arc<Queue>>, bool)> {
        let client = self.client().await?;
        let (ens, eprefix) = (esc(ns), esc(prefix));
        let after = after.map(esc);
        let lim = limit.min(i64::MAX as usize - 1) as i64 + 1;
        let r: PResult<_> = async {
            let stmt = client
                .prepare_cached(&format!(
                    "{SELECT} WHERE ns = $1 AND starts_with(name, $2) AND ($3::text IS NULL OR name > $3) \
                     ORDER BY name LIMIT $4"
                ))
                .await?;
            Ok(client.query(&stmt, &[&ens.as_ref(), &eprefix.as_ref(), &after.as_deref(), &lim]).await?)
        }
        .await;
        let rows = r.map_err(|e| self.failed(e))?;
        let more = rows.len() > limit;
        let out = rows.iter().take(limit).map(|row| self.handle(row)).collect::<Result<Vec<_>>>()?;
        Ok((out, more))
    }

    pub(crate) async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> Result<usize> {
        transaction!(self, false, |tx, fx| { Self::count_in(&tx, ns, region).await })
    }

    pub(crate) async fn namespaces(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let r: PResult<_> = async {
            let stmt = client.prepare_cached("SELECT DISTINCT ns FROM qg_queue ORDER BY ns").await?;
            Ok(client.query(&stmt, &[]).await?)
        }
        .await;
        let rows = r.map_err(|e| self.failed(e))?;
        let mut out: Vec<String> = rows.iter().map(|r| super::unesc(r.get(0))).collect();
        out.sort();
        Ok(out)
    }
}
