//! The embedded engine: every queue's state in this process's memory, made durable by a
//! [`Store`] (sled behind a write-ahead log) — qgate's default, with nothing to set up.
//!
//! Each queue is a [`QueueState`](queue::QueueState) under its own mutex (no global lock on
//! the message path; the directory is a read-mostly `RwLock` touched only to look queues up),
//! and every operation runs as *lock → refresh → act → unlock → finish*:
//!
//! * `refresh` applies whatever became due at the caller's `now` (retention, delay ends, lease
//!   ends) before the operation looks at the queue;
//! * the operation changes the indexes and writes the matching domain operation to the store;
//! * `finish` carries out what needs another queue (moving dead letters) and wakes long-poll
//!   waiters, after the lock is gone, so no thread ever holds two queue locks;
//! * publishes, configuration changes and other answers that promise durability await the
//!   store's group-committed `sync` outside any lock.
//!
//! The in-memory state is authoritative while the process runs; the store is written as the
//! state changes and read back once, at [`EmbeddedEngine::open`]. That is why this engine serves
//! one process only: two processes on one store would hold diverging copies.
//!
//! Layout: this file (the engine, its directory, `with_state`/`finish`), [`engine_impl`] (the
//! [`Engine`](crate::core::Engine) trait, by delegation), one file per operation family
//! ([`messages`], [`groups`], [`deadletters`], [`idempotency`], [`subscriptions`]), the queue
//! state machine in [`queue`] (over [`group`] and [`ready`]), and [`store`].

mod deadletters;
mod engine_impl;
mod group;
mod groups;
mod idempotency;
mod messages;
pub(crate) mod queue;
mod ready;
pub mod store;
mod subscriptions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use self::idempotency::IdempotencyTable;
use self::queue::{Cx, Effects, QueueState};
use self::store::Store;
use crate::core::clock::Millis;
use crate::core::engine::{CreateOutcome, Queue};
use crate::core::error::{CoreError, Quota, Result};
use crate::core::model::{DeadLetterTarget, DeliveryState, QueueConfig, QueueRecord, SubscriptionRecord};
use crate::core::wakeups::Wakeups;

/// A queue of the directory: its identity, its state, and the handle lookups give out (made
/// again when the record changes, so a lookup costs a reference count, not a copy).
pub(crate) struct Cell {
    pub id: Uuid,
    pub namespace: String,
    pub name: String,
    pub state: Mutex<QueueState>,
    handle: RwLock<Arc<Queue>>,
}

impl Cell {
    fn new(state: QueueState) -> Cell {
        let record = state.record.clone();
        Cell {
            id: record.id,
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            state: Mutex::new(state),
            handle: RwLock::new(Arc::new(Queue::new(record))),
        }
    }

    fn handle(&self) -> Arc<Queue> {
        self.handle.read().clone()
    }
}

#[derive(Default)]
struct Directory {
    by_id: HashMap<Uuid, Arc<Cell>>,
    /// namespace → name → id; BTreeMap so listings come out in name order.
    by_name: HashMap<String, BTreeMap<String, Uuid>>,
}

/// The embedded engine. See the module docs.
pub struct EmbeddedEngine {
    pub(crate) store: Arc<dyn Store>,
    dir: RwLock<Directory>,
    holders: queue::Holders,
    next_lease: AtomicU64,
    pub(crate) idempotency: IdempotencyTable,
    pub(crate) subs: Mutex<BTreeMap<Uuid, SubscriptionRecord>>,
    wakeups: Wakeups,
    closed: AtomicBool,
}

impl EmbeddedEngine {
    /// Loads everything from the store and rebuilds the in-memory indexes. `now` is the clock's
    /// time at start (lease ids are seeded from it).
    pub fn open(store: Arc<dyn Store>, now: Millis) -> Result<EmbeddedEngine> {
        let snap = store.load()?;
        let mut max_lease = 0u64;
        for q in &snap.queues {
            for (_, _, d) in &q.deliveries {
                if let DeliveryState::Leased { lease, .. } = d.state {
                    max_lease = max_lease.max(lease);
                }
                if let DeliveryState::Dead { dl: crate::core::model::DeadState::Leased { lease, .. }, .. } = d.state {
                    max_lease = max_lease.max(lease);
                }
            }
        }
        let mut dir = Directory::default();
        let holders = queue::Holders::default();
        for qs in snap.queues {
            let st = QueueState::from_snapshot(qs, now, holders.clone());
            let cell = Arc::new(Cell::new(st));
            dir.by_name.entry(cell.namespace.clone()).or_default().insert(cell.name.clone(), cell.id);
            dir.by_id.insert(cell.id, cell);
        }
        let subs = snap.subscriptions.into_iter().map(|s| (s.id, s)).collect();
        // Lease ids must never repeat, across restarts too: start above both the clock (in
        // ms << 20, room for a million leases per ms) and every lease id restored.
        let seed = (now << 20).max(max_lease + 1);
        Ok(EmbeddedEngine {
            store,
            dir: RwLock::new(dir),
            holders,
            next_lease: AtomicU64::new(seed),
            idempotency: IdempotencyTable::new(snap.idempotency, now),
            subs: Mutex::new(subs),
            wakeups: Wakeups::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The live cell of a queue handle.
    pub(crate) fn cell(&self, q: &Queue) -> Result<Arc<Cell>> {
        self.dir.read().by_id.get(&q.id()).cloned().ok_or(CoreError::QueueNotFound)
    }

    fn cells(&self) -> Vec<Arc<Cell>> {
        self.dir.read().by_id.values().cloned().collect()
    }

    /// The cells of a namespace, by name.
    fn cells_of(&self, ns: &str) -> Vec<Arc<Cell>> {
        let dir = self.dir.read();
        dir.by_name
            .get(ns)
            .map(|m| m.values().filter_map(|id| dir.by_id.get(id).cloned()).collect())
            .unwrap_or_default()
    }

    /// Runs `f` on the queue's state after a refresh at `now`, then finishes its effects.
    pub(crate) fn with_state<T>(
        &self,
        c: &Cell,
        now: Millis,
        f: impl FnOnce(&mut QueueState, &mut Cx) -> Result<T>,
    ) -> Result<T> {
        let mut cx = self.cx(now);
        let out = {
            let mut st = c.state.lock();
            if st.deleted {
                return Err(CoreError::QueueNotFound);
            }
            st.refresh(&mut cx);
            f(&mut st, &mut cx)
        };
        self.finish(c, cx.fx, now);
        out
    }

    pub(crate) fn cx(&self, now: Millis) -> Cx<'_> {
        Cx { now, store: &*self.store, leases: &self.next_lease, fx: Effects::default() }
    }

    /// Carries out effects outside the source queue's lock: wakes waiters, moves dead letters.
    pub(crate) fn finish(&self, c: &Cell, fx: Effects, now: Millis) {
        if fx.notify {
            self.wakeups.wake(c.id);
        }
        for mv in fx.moves {
            let target = self.dir.read().by_id.get(&mv.target).cloned();
            let moved = target.filter(|t| t.namespace == c.namespace).and_then(|t| {
                let mut st = t.state.lock();
                if st.deleted {
                    return None;
                }
                let mut meta = mv.meta.clone();
                meta.seq = st.last_seq + 1;
                match self.store.transfer(mv.source, mv.from_seq, t.id, &meta, mv.keep_source) {
                    Ok(()) => {
                        st.insert_meta(meta);
                        drop(st);
                        self.wakeups.wake(t.id);
                        Some(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "dead-letter transfer failed; keeping it in the source queue");
                        None
                    }
                }
            });
            if moved.is_none() {
                // The target is gone (or the write failed): keep the dead letter at home.
                let mut cx = self.cx(now);
                let mut st = c.state.lock();
                if !st.deleted {
                    st.restore_as_dead(mv.meta.clone(), &mv, &mut cx);
                }
            }
        }
    }

    // ----- directory -------------------------------------------------------------------------

    pub(crate) async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
        now: Millis,
    ) -> Result<CreateOutcome> {
        let record = {
            let mut dir = self.dir.write();
            if let Some(id) = dir.by_name.get(ns).and_then(|m| m.get(name)) {
                let existing = dir.by_id[id].state.lock().record.clone();
                return Ok(CreateOutcome::Exists(existing));
            }
            if let Some(max) = max_queues
                && Self::count_in(&dir, ns, config.region.as_deref()) >= max
            {
                return Err(CoreError::QuotaExceeded(Quota::Queues));
            }
            Self::check_dead_letter_target(&dir, ns, None, &config)?;
            let record = QueueRecord {
                id: Uuid::new_v4(),
                namespace: ns.to_string(),
                name: name.to_string(),
                config,
                created_at: now,
                modified_at: now,
            };
            self.store.put_queue(&record)?;
            let cell = Arc::new(Cell::new(QueueState::new(record.clone(), self.holders.clone())));
            dir.by_name.entry(ns.to_string()).or_default().insert(name.to_string(), cell.id);
            dir.by_id.insert(cell.id, cell);
            record
        };
        self.store.sync().await?;
        Ok(CreateOutcome::Created(record))
    }

    fn check_dead_letter_target(dir: &Directory, ns: &str, this: Option<Uuid>, config: &QueueConfig) -> Result<()> {
        if let Some(p) = &config.dead_letter
            && let DeadLetterTarget::Queue(t) = p.target
        {
            if Some(t) == this {
                return Err(CoreError::InvalidArgument(
                    "dead_letter_queue: a queue cannot be its own dead-letter queue".into(),
                ));
            }
            if dir.by_id.get(&t).is_none_or(|q| q.namespace != ns) {
                return Err(CoreError::QueueNotFound);
            }
        }
        Ok(())
    }

    pub(crate) fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        let dir = self.dir.read();
        dir.by_name
            .get(ns)
            .and_then(|m| m.get(name))
            .and_then(|id| dir.by_id.get(id))
            .map(|c| c.handle())
            .ok_or(CoreError::QueueNotFound)
    }

    pub(crate) fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        self.dir.read().by_id.get(&id).filter(|c| c.namespace == ns).map(|c| c.handle()).ok_or(CoreError::QueueNotFound)
    }

    pub(crate) fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<Queue>>, bool) {
        let dir = self.dir.read();
        let Some(m) = dir.by_name.get(ns) else {
            return (Vec::new(), false);
        };
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (name, id) in m.range((start, std::ops::Bound::Unbounded)) {
            if !name.starts_with(prefix) {
                if name.as_str() > prefix {
                    break;
                }
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            if let Some(c) = dir.by_id.get(id) {
                out.push(c.handle());
            }
        }
        (out, more)
    }

    pub(crate) fn queue_count_in(&self, ns: &str, region: Option<&str>) -> usize {
        Self::count_in(&self.dir.read(), ns, region)
    }

    fn count_in(dir: &Directory, ns: &str, region: Option<&str>) -> usize {
        let Some(names) = dir.by_name.get(ns) else { return 0 };
        match region {
            None => names.len(),
            Some(r) => names
                .values()
                .filter_map(|id| dir.by_id.get(id))
                .filter(|q| q.state.lock().record.config.region.as_deref().is_none_or(|qr| qr == r))
                .count(),
        }
    }

    pub(crate) async fn update_queue(&self, q: &Queue, cfg: QueueConfig, now: Millis) -> Result<QueueRecord> {
        let c = self.cell(q)?;
        Self::check_dead_letter_target(&self.dir.read(), &c.namespace, Some(c.id), &cfg)?;
        let rec = self.with_state(&c, now, |st, cx| {
            let mut rec = st.record.clone();
            let rekey = rec.config.priority != cfg.priority;
            rec.config = cfg;
            rec.modified_at = cx.now;
            self.store.put_queue(&rec)?;
            st.record = rec.clone();
            *c.handle.write() = Arc::new(Queue::new(rec.clone()));
            if rekey {
                st.rekey();
            }
            cx.fx.notify = true;
            Ok(rec)
        })?;
        self.store.sync().await?;
        Ok(rec)
    }

    pub(crate) async fn delete_queue(&self, q: &Queue) -> Result<()> {
        let c = {
            let mut dir = self.dir.write();
            let Some(c) = dir.by_id.remove(&q.id()) else {
                return Err(CoreError::QueueNotFound);
            };
            if let Some(m) = dir.by_name.get_mut(&c.namespace) {
                m.remove(&c.name);
                if m.is_empty() {
                    dir.by_name.remove(&c.namespace);
                }
            }
            c
        };
        c.state.lock().deleted = true;
        self.wakeups.forget(c.id);
        let subs: Vec<Uuid> = self.subs.lock().values().filter(|s| s.queue_id == c.id).map(|s| s.id).collect();
        for id in subs {
            self.subs.lock().remove(&id);
            self.store.delete_subscription(id)?;
        }
        let store = self.store.clone();
        let id = c.id;
        tokio::task::spawn_blocking(move || store.delete_queue(id))
            .await
            .map_err(|e| CoreError::Storage(crate::core::StoreError::new(format!("delete task: {e}"))))??;
        self.store.sync().await?;
        Ok(())
    }

    /// Applies everything due in every queue and forgets expired idempotency records.
    pub(crate) fn sweep(&self, now: Millis) {
        for c in self.cells() {
            let _ = self.with_state(&c, now, |_, _| Ok(()));
        }
        self.idempotency.sweep(now, &*self.store);
    }

    pub(crate) fn next_due(&self) -> Option<Millis> {
        self.cells().iter().filter_map(|c| c.state.lock().next_event()).min()
    }

    /// Dead letters that came from `c` and are kept in other queues of its namespace.
    pub(crate) fn dead_elsewhere(&self, c: &Cell) -> u64 {
        let holders: Vec<Uuid> = self.holders.lock().iter().copied().filter(|id| *id != c.id).collect();
        let cells: Vec<Arc<Cell>> = {
            let dir = self.dir.read();
            holders.iter().filter_map(|id| dir.by_id.get(id)).filter(|t| t.namespace == c.namespace).cloned().collect()
        };
        cells.iter().map(|t| t.state.lock().foreign_dead.get(&c.id).map_or(0, |s| s.len() as u64)).sum()
    }
}
