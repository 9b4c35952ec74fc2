//! The PostgreSQL engine: every mutable fact in one database that any number of stateless qgate
//! nodes share. A message sent through node A is received on node B and deleted on node C.
//!
//! Model (see [`schema`]): queues, groups and immutable messages in tables; one narrow *lane*
//! row per (group, message) carries the delivery state (ready, leased with lease id and end,
//! delayed, acked) and counts, so a lease or an ack rewrites ~100 bytes, never a body.
//!
//! Concurrency: every operation is one transaction. Operations that *decide* on a queue (claim,
//! ack, nack, reset, …) take the queue's transaction-scoped advisory lock exclusively and run
//! *refresh → act* under it, as the embedded engine does under its queue mutex, so the rules
//! carry over unchanged and no two nodes lease one message to two consumers. Publishes take the
//! same lock *shared*: they run side by side, and a claim waits until the publishes that took
//! sequence numbers before it committed, so a FIFO receiver never passes over a lower sequence
//! that commits late. Advisory locks live in the lock manager (no row writes, no bloat) and go
//! away with the transaction or the session, so a dead node holds nothing.
//!
//! Time: `now` comes from the broker's clock into every statement (never SQL `now()`), so the
//! manual-clock conformance suite runs on this engine too; nodes need synchronised clocks.
//!
//! Durability: publishes, configuration, group and idempotency changes commit synchronously;
//! leases, acks and releases asynchronously (`synchronous_commit = off` is the session default):
//! after a database crash a message may come again, never go missing — the embedded engine's
//! contract.
//!
//! Wake-ups across nodes: [`notify`] — never a NOTIFY inside a publish transaction.
//!
//! Layout: this file (the engine, connections, errors, the transaction loop, the queue lock),
//! [`schema`], [`directory`], [`refresh`] (time-driven changes and failures), [`messages`]
//! (publish, claim, peek), [`settle`] (ack, nack, …), [`admin`] (purge, counts), [`groups`],
//! [`deadletters`], [`misc`] (idempotency, subscriptions, sweeping), [`notify`], [`engine_impl`]
//! (the trait, by delegation).

mod admin;
mod deadletters;
mod directory;
mod engine_impl;
mod fast;
mod groups;
mod messages;
mod misc;
pub mod notify;
mod refresh;
pub mod schema;
mod settle;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use parking_lot::Mutex;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::core::clock::Millis;
use crate::core::error::{CoreError, StoreError};
use crate::core::model::{QueueConfig, QueueKind, QueueRecord, queue_salt};
use crate::core::wakeups::Wakeups;

pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// An error inside a transaction: the core's own, or the database's (retried when it is a
/// deadlock or serialisation failure).
#[derive(Debug)]
pub(crate) enum PgError {
    Core(CoreError),
    Db(tokio_postgres::Error),
}

impl From<CoreError> for PgError {
    fn from(e: CoreError) -> Self {
        PgError::Core(e)
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(e)
    }
}

pub(crate) type PResult<T> = std::result::Result<T, PgError>;

impl PgError {
    fn retryable(&self) -> bool {
        matches!(self, PgError::Db(e) if e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE))
    }
}

/// Whether a database error means "cannot reach the database right now" (answered as
/// unavailable) rather than a failure of the statement.
fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => {
            e.is_closed()
                || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                || e.to_string().contains("timed out")
        }
        Some(c) => {
            let code = c.code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25P03"
        }
    }
}

/// Escapes a string for a text column: PostgreSQL text cannot hold NUL, and internal
/// namespaces contain one. `\` → `\\`, NUL → `\0`; order among ordinary names is kept.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', '\\']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace('\\', "\\\\").replace('\0', "\\0"))
}

pub(crate) fn unesc(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn ms(v: Millis) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub(crate) fn storage(msg: impl Into<String>) -> CoreError {
    CoreError::Storage(StoreError::new(msg))
}

/// The priority key of a message in a queue: its priority where the queue honours them.
pub(crate) fn pkey_on(cfg: &QueueConfig) -> bool {
    cfg.priority && cfg.kind == QueueKind::Standard
}

/// Runs `$body` (an async block's contents using `$tx`) in a transaction on a pooled
/// connection; retries deadlocks; commits synchronously when `$sync`. Evaluates to
/// `Result<T, CoreError>`. Woken queues are collected in `$fx` and woken after the commit.
macro_rules! transaction {
    ($engine:expr, $sync:expr, |$tx:ident, $fx:ident| $body:block) => {{
        let engine: &$crate::engine::postgres::PgEngine = $engine;
        async {
            let mut client = engine.client().await?;
            let mut attempt = 0u32;
            loop {
                let $tx = match client.transaction().await {
                    Ok(t) => t,
                    Err(e) => return Err(engine.failed($crate::engine::postgres::PgError::Db(e))),
                };
                let mut $fx = $crate::engine::postgres::Fx::default();
                #[allow(unused_mut)]
                let r: $crate::engine::postgres::PResult<_> = async {
                    #[allow(unused_variables)]
                    let $fx = &mut $fx;
                    $body
                }
                .await;
                match r {
                    Ok(v) => {
                        let done =
                            if $sync { $crate::engine::postgres::commit_sync($tx).await } else { $tx.commit().await };
                        match done {
                            Ok(()) => {
                                engine.succeeded();
                                engine.apply(&$fx);
                                return Ok(v);
                            }
                            Err(e) => {
                                let e = $crate::engine::postgres::PgError::Db(e);
                                if $crate::engine::postgres::e_retry(&e) && attempt < 8 {
                                    attempt += 1;
                                    engine.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    continue;
                                }
                                return Err(engine.failed(e));
                            }
                        }
                    }
                    Err(e) => {
                        drop($tx);
                        if $crate::engine::postgres::e_retry(&e) && attempt < 8 {
                            attempt += 1;
                            engine.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            continue;
                        }
                        return Err(engine.failed(e));
                    }
                }
            }
        }
        .await
    }};
}
pub(crate) use transaction;

pub(crate) fn e_retry(e: &PgError) -> bool {
    e.retryable()
}

/// Commits synchronously: the session default is asynchronous commit (leases and acks), so a
/// transaction that promises durability turns it on just before its COMMIT, in one round trip.
pub(crate) async fn commit_sync(tx: Tx<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute("SET LOCAL synchronous_commit = on; COMMIT").await?;
    // Committed by the statement above: the handle must not send its ROLLBACK on drop.
    std::mem::forget(tx);
    Ok(())
}

/// What a transaction leaves to do after it commits.
#[derive(Default)]
pub(crate) struct Fx {
    /// Queues that may have something deliverable now.
    pub wake: Vec<Uuid>,
    /// Queues deleted.
    pub gone: Vec<Uuid>,
}

/// The PostgreSQL engine. See the module docs.
pub struct PgEngine {
    pool: Pool,
    wakeups: Arc<Wakeups>,
    notifier: Arc<notify::Notifier>,
    /// Parsed queue records by id, valid while the row's version is the same.
    records: Mutex<HashMap<Uuid, (i64, Arc<QueueRecord>)>>,
    /// Why the database is unreachable, while it is (readiness).
    down: Mutex<Option<String>>,
    closed: AtomicBool,
    pub(crate) metrics: PgMetrics,
    /// Handles for message traffic by (namespace, name), as last looked up on this node (see
    /// `Engine::queue_cached`): the hot statements check the version they carry.
    pub(crate) named: Mutex<HashMap<(String, String), Arc<crate::core::engine::Queue>>>,
    /// Publish batchers by queue and record version (see `fast::publish`).
    pub(crate) batches: Mutex<HashMap<(Uuid, u64), fast::Slot>>,
    /// Striped locks serialising this node's requests with one idempotency key.
    idem: (Vec<Arc<tokio::sync::Mutex<()>>>, std::collections::hash_map::RandomState),
}

/// Counters for the metrics endpoint.
#[derive(Default)]
pub(crate) struct PgMetrics {
    pub transactions: AtomicU64,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
}

impl PgEngine {
    /// Connects, migrates the schema, and starts the cross-node listener. An unreachable
    /// database is an error here (the server exits): a node never starts half-working.
    pub async fn open(url: &str, pool_size: usize) -> Result<PgEngine, String> {
        let mut cfg: tokio_postgres::Config =
            url.parse().map_err(|e| format!("[store] url is not a PostgreSQL URL: {e}"))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        cfg.keepalives_idle(Duration::from_secs(30));
        if cfg.get_application_name().is_none() {
            cfg.application_name("qgate");
        }
        // Leases, acks and releases commit asynchronously; durable answers turn it on (see
        // `commit_sync`).
        //
        // No sequential scans: every statement of ours finds its rows by key. A queue's tables
        // churn (few live rows, many dead ones until vacuum), so a plan made while they looked
        // small would scan them whole. Plans are made once per connection (generic): our
        // statements have one right plan whatever the parameters, and planning each call costs
        // more than the call. No JIT: a deep queue makes the estimates large enough to trigger
        // it, and compiling takes seconds where the statement takes a millisecond.
        let options = cfg.get_options().map(|o| format!("{o} ")).unwrap_or_default();
        cfg.options(format!(
            "{options}-c synchronous_commit=off -c enable_seqscan=off -c plan_cache_mode=force_generic_plan -c jit=off"
        ));

        let (mut client, conn) = cfg.connect(NoTls).await.map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let conn_task = tokio::spawn(conn);
        schema::migrate(&mut client).await?;
        drop(client);
        let _ = conn_task.await;

        let mgr = Manager::from_config(cfg.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(Duration::from_secs(10)),
                create: Some(Duration::from_secs(5)),
                recycle: Some(Duration::from_secs(5)),
            })
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        let wakeups = Arc::new(Wakeups::new());
        let notifier = notify::Notifier::start(cfg, pool.clone(), wakeups.clone());
        Ok(PgEngine {
            pool,
            wakeups,
            notifier,
            records: Mutex::new(HashMap::new()),
            down: Mutex::new(None),
            closed: AtomicBool::new(false),
            metrics: PgMetrics::default(),
            named: Mutex::new(HashMap::new()),
            batches: Mutex::new(HashMap::new()),
            idem: ((0..64).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect(), Default::default()),
        })
    }

    /// A pooled connection, or "unavailable".
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, CoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(CoreError::ShuttingDown);
        }
        self.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        self.pool.get().await.map_err(|e| {
            let msg = format!("database unreachable: {e}");
            *self.down.lock() = Some(msg.clone());
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            CoreError::Unavailable(StoreError::unavailable(msg))
        })
    }

    pub(crate) fn succeeded(&self) {
        if self.down.lock().is_some() {
            *self.down.lock() = None;
        }
    }

    /// Maps a transaction's error to the core's, noting an unreachable database.
    pub(crate) fn failed(&self, e: PgError) -> CoreError {
        match e {
            PgError::Core(c) => c,
            PgError::Db(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                if is_unreachable(&e) {
                    let msg = format!("database unreachable: {e}");
                    *self.down.lock() = Some(msg.clone());
                    CoreError::Unavailable(StoreError::unavailable(msg))
                } else {
                    tracing::error!(error = %e, detail = ?e.as_db_error(), "database statement failed");
                    storage(format!("database: {e}"))
                }
            }
        }
    }

    /// Wakes local waiters and tells the other nodes (coalesced).
    pub(crate) fn apply(&self, fx: &Fx) {
        for id in &fx.wake {
            self.wakeups.wake(*id);
            self.notifier.wake(*id);
        }
        for id in &fx.gone {
            self.records.lock().remove(id);
            self.wakeups.forget(*id);
            self.notifier.gone(*id);
        }
    }

    /// Locks queue `id` for the transaction and returns its current record; `QueueNotFound`
    /// when it is gone. Exclusive: both of the queue's locks (nothing else decides on the queue,
    /// no publish is under way); shared: the publish lock only (see [`lock_keys`]).
    pub(crate) async fn lock(&self, tx: &Tx<'_>, id: Uuid, exclusive: bool) -> PResult<Arc<QueueRecord>> {
        let (publish, ops) = lock_keys(id);
        let version = tx.prepare_cached("SELECT version FROM qg_queue WHERE id = $1").await?;
        let row = if exclusive {
            let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)").await?;
            let (_, row) = tokio::try_join!(async { tx.execute(&lock, &[&publish, &ops]).await }, async {
                tx.query_opt(&version, &[&id]).await
            })?;
            row
        } else {
            let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock_shared($1)").await?;
            let (_, row) = tokio::try_join!(async { tx.execute(&lock, &[&publish]).await }, async {
                tx.query_opt(&version, &[&id]).await
            })?;
            row
        };
        let version: i64 = row.ok_or(CoreError::QueueNotFound)?.get(0);
        self.record_at(tx, id, version).await
    }

    /// The record of a queue at a version (cached).
    pub(crate) async fn record_at(&self, tx: &Tx<'_>, id: Uuid, version: i64) -> PResult<Arc<QueueRecord>> {
        if let Some((v, r)) = self.records.lock().get(&id)
            && *v == version
        {
            return Ok(r.clone());
        }
        let stmt = tx
            .prepare_cached("SELECT id, ns, name, config, created_at, modified_at, version FROM qg_queue WHERE id = $1")
            .await?;
        let row = tx.query_opt(&stmt, &[&id]).await?.ok_or(CoreError::QueueNotFound)?;
        let (rec, v) = record_of(&row)?;
        let rec = Arc::new(rec);
        self.records.lock().insert(id, (v, rec.clone()));
        Ok(rec)
    }
}

/// A queue's two advisory lock keys. The *publish* key: publishes hold it shared through their
/// commit; what must not run beside a publish (FIFO claims, which must see every lower sequence
/// committed; group and configuration changes; deletion) holds it exclusively. The *ops* key:
/// held exclusively by what decides under the queue's lock (FIFO and keyed claims, reset, purge,
/// stats). Standard claims and settles take neither: they compare-and-set lane rows
/// (`FOR UPDATE SKIP LOCKED`, lease ids), so they never wait for a publish's fsync.
pub(crate) fn lock_keys(id: Uuid) -> (i64, i64) {
    let salt = queue_salt(id);
    ((salt ^ 0x7075_626c_6973_6800) as i64, salt as i64)
}

/// A `qg_queue` row (id, ns, name, config, created_at, modified_at, version) as a record.
pub(crate) fn record_of(row: &tokio_postgres::Row) -> PResult<(QueueRecord, i64)> {
    let config: &[u8] = row.get(3);
    let config: QueueConfig =
        serde_json::from_slice(config).map_err(|e| storage(format!("a stored queue configuration: {e}")))?;
    Ok((
        QueueRecord {
            id: row.get(0),
            namespace: unesc(row.get(1)),
            name: unesc(row.get(2)),
            config,
            created_at: row.get::<_, i64>(4) as u64,
            modified_at: row.get::<_, i64>(5) as u64,
        },
        row.get(6),
    ))
}
