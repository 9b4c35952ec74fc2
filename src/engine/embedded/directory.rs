//! The broker: the core's public face. It owns the queue directory, hands out queue handles,
//! and runs every operation as *lock → refresh → act → unlock → finish*:
//!
//! * one mutex per queue (no global lock on the message path; the directory is a read-mostly
//!   `RwLock` touched only to look queues up);
//! * `refresh` applies whatever became due by the injected clock's `now` (retention, delay ends,
//!   lease ends) before the operation looks at the queue;
//! * `finish` carries out what needs another queue (moving dead letters) and wakes long-poll
//!   waiters, after the lock is gone;
//! * publishes, configuration changes and other answers that promise durability await the
//!   store's group-committed `sync` outside any lock.
//!
//! The operations themselves live in sibling modules by family: [`super::messages`] (publish,
//! receive, ack, …), [`super::deadletters`], [`super::groups`], [`super::idempotency`],
//! [`super::subscriptions`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use uuid::Uuid;

use super::clock::{Clock, Millis};
use super::error::{CoreError, Quota, Result};
use super::idempotency::IdempotencyTable;
use super::model::{DEFAULT_GROUP, DeadLetterTarget, QueueConfig, QueueInfo, QueueRecord, SubscriptionRecord};
use super::queue::{Cx, Effects, QueueState};
use super::receipt::ReceiptKey;
use crate::store::Store;

/// A queue of the directory. Cheap to clone (`Arc`); operations go through [`Broker`].
pub struct Queue {
    pub(crate) id: Uuid,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) salt: u64,
    pub(crate) state: Mutex<QueueState>,
    /// Wakes long-poll waiters when something may have become deliverable.
    pub(crate) notify: Notify,
}

impl Queue {
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The queue's current record (configuration).
    pub fn record(&self) -> QueueRecord {
        self.state.lock().record.clone()
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({}/{})", self.namespace, self.name)
    }
}

#[derive(Default)]
struct Directory {
    by_id: HashMap<Uuid, Arc<Queue>>,
    /// namespace → name → id; BTreeMap so listings come out in name order.
    by_name: HashMap<String, BTreeMap<String, Uuid>>,
}

/// Result of a create: the dialects answer differently for an existing queue.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created(QueueRecord),
    Exists(QueueRecord),
}

/// The queue core.
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) receipts: ReceiptKey,
    dir: RwLock<Directory>,
    next_lease: AtomicU64,
    shutting_down: AtomicBool,
    pub(crate) shutdown_notify: Notify,
    pub(crate) idempotency: IdempotencyTable,
    pub(crate) subs: Mutex<BTreeMap<Uuid, SubscriptionRecord>>,
}

impl Broker {
    /// Loads everything from the store and rebuilds the in-memory indexes.
    pub fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, receipts: ReceiptKey) -> Result<Arc<Broker>> {
        let snap = store.load()?;
        let now = clock.now();
        let mut max_lease = 0u64;
        for q in &snap.queues {
            for (_, _, d) in &q.deliveries {
                if let super::model::DeliveryState::Leased { lease, .. } = d.state {
                    max_lease = max_lease.max(lease);
                }
                if let super::model::DeliveryState::Dead { dl: super::model::DeadState::Leased { lease, .. }, .. } =
                    d.state
                {
                    max_lease = max_lease.max(lease);
                }
            }
        }
        let mut dir = Directory::default();
        for qs in snap.queues {
            let st = QueueState::from_snapshot(qs, now);
            let q = Arc::new(Queue {
                id: st.record.id,
                namespace: st.record.namespace.clone(),
                name: st.record.name.clone(),
                salt: st.salt,
                state: Mutex::new(st),
                notify: Notify::new(),
            });
            dir.by_name.entry(q.namespace.clone()).or_default().insert(q.name.clone(), q.id);
            dir.by_id.insert(q.id, q);
        }
        let subs = snap.subscriptions.into_iter().map(|s| (s.id, s)).collect();
        // Lease ids must never repeat, across restarts too: start above both the clock (in
        // ms << 20, room for a million leases per ms) and every lease id restored.
        let seed = (now << 20).max(max_lease + 1);
        Ok(Arc::new(Broker {
            store,
            clock,
            receipts,
            dir: RwLock::new(dir),
            next_lease: AtomicU64::new(seed),
            shutting_down: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            idempotency: IdempotencyTable::new(snap.idempotency, now),
            subs: Mutex::new(subs),
        }))
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ends every long poll (they answer empty) and refuses new waits.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_notify.notify_waiters();
        for q in self.dir.read().by_id.values() {
            q.notify.notify_waiters();
        }
    }

    /// Runs `f` on the queue's state after a refresh, then finishes its effects.
    pub(crate) fn with_state<T>(&self, q: &Queue, f: impl FnOnce(&mut QueueState, &mut Cx) -> Result<T>) -> Result<T> {
        let mut cx = self.cx();
        let out = {
            let mut st = q.state.lock();
            if st.deleted {
                return Err(CoreError::QueueNotFound);
            }
            cx.now = self.clock.now();
            st.refresh(&mut cx);
            f(&mut st, &mut cx)
        };
        self.finish(q, cx.fx);
        out
    }

    pub(crate) fn cx(&self) -> Cx<'_> {
        Cx { now: self.clock.now(), store: &*self.store, leases: &self.next_lease, fx: Effects::default() }
    }

    /// Carries out effects outside the source queue's lock: wakes waiters, moves dead letters.
    pub(crate) fn finish(&self, q: &Queue, fx: Effects) {
        if fx.notify {
            q.notify.notify_waiters();
        }
        for mv in fx.moves {
            let target = self.dir.read().by_id.get(&mv.target).cloned();
            let moved = target.filter(|t| t.namespace == q.namespace).and_then(|t| {
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
                        t.notify.notify_waiters();
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
                let mut cx = self.cx();
                let mut st = q.state.lock();
                if !st.deleted {
                    st.restore_as_dead(mv.meta.clone(), &mv, &mut cx);
                }
            }
        }
    }

    // ----- directory -------------------------------------------------------------------------

    /// Creates a queue, or reports the existing one of that name. `max_queues` is a dialect's
    /// quota, checked atomically with the insert: it counts the namespace's queues in the new
    /// queue's region (see [`Broker::queue_count_in`]).
    pub async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
    ) -> Result<CreateOutcome> {
        let record = {
            let mut dir = self.dir.write();
            if let Some(id) = dir.by_name.get(ns).and_then(|m| m.get(name)) {
                let existing = dir.by_id[id].record();
                return Ok(CreateOutcome::Exists(existing));
            }
            if let Some(max) = max_queues
                && Self::count_in(&dir, ns, config.region.as_deref()) >= max
            {
                return Err(CoreError::QuotaExceeded(Quota::Queues));
            }
            self.check_dead_letter_target(&dir, ns, None, &config)?;
            let now = self.clock.now();
            let record = QueueRecord {
                id: Uuid::new_v4(),
                namespace: ns.to_string(),
                name: name.to_string(),
                config,
                created_at: now,
                modified_at: now,
            };
            self.store.put_queue(&record)?;
            let st = QueueState::new(record.clone());
            let q = Arc::new(Queue {
                id: record.id,
                namespace: ns.to_string(),
                name: name.to_string(),
                salt: st.salt,
                state: Mutex::new(st),
                notify: Notify::new(),
            });
            dir.by_name.entry(ns.to_string()).or_default().insert(name.to_string(), q.id);
            dir.by_id.insert(q.id, q);
            record
        };
        self.store.sync().await?;
        Ok(CreateOutcome::Created(record))
    }

    fn check_dead_letter_target(
        &self,
        dir: &Directory,
        ns: &str,
        this: Option<Uuid>,
        config: &QueueConfig,
    ) -> Result<()> {
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

    /// The queue of that name in the namespace.
    pub async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        let dir = self.dir.read();
        dir.by_name
            .get(ns)
            .and_then(|m| m.get(name))
            .and_then(|id| dir.by_id.get(id))
            .cloned()
            .ok_or(CoreError::QueueNotFound)
    }

    /// The queue with that id, if it belongs to the namespace.
    pub async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        self.dir.read().by_id.get(&id).filter(|q| q.namespace == ns).cloned().ok_or(CoreError::QueueNotFound)
    }

    /// The namespace's queues, by name.
    pub async fn queues(&self, ns: &str) -> Vec<Arc<Queue>> {
        self.queues_now(ns)
    }

    pub(crate) fn queues_now(&self, ns: &str) -> Vec<Arc<Queue>> {
        let dir = self.dir.read();
        dir.by_name
            .get(ns)
            .map(|m| m.values().filter_map(|id| dir.by_id.get(id).cloned()).collect())
            .unwrap_or_default()
    }

    /// The namespace's queues with names after `after` (exclusive), starting with `prefix`, at
    /// most `limit`, by name; plus whether more follow.
    pub async fn list_queues(
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
            if let Some(q) = dir.by_id.get(id) {
                out.push(q.clone());
            }
        }
        (out, more)
    }

    pub async fn queue_count(&self, ns: &str) -> usize {
        self.dir.read().by_name.get(ns).map_or(0, |m| m.len())
    }

    /// The namespace's queues that count in `region`: those created there and those without a
    /// region (made through dialects that have none). `None` counts every queue.
    pub async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> usize {
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

    /// Whether a queue belongs to `region` for listings (no region: every region).
    pub fn in_region(q: &Queue, region: &str) -> bool {
        q.state.lock().record.config.region.as_deref().is_none_or(|r| r == region)
    }

    /// Opens a receipt handle without looking at any queue (dialects that must check what a
    /// handle names against their own token, e.g. CTYun's offset and group).
    pub fn open_receipt(&self, handle: &str) -> Result<super::receipt::Receipt> {
        self.receipts.open(handle)
    }

    /// The queue's record and its default group's live counts.
    pub async fn info(&self, q: &Queue) -> Result<QueueInfo> {
        let (record, mut stats, group_count, stored) = self.with_state(q, |st, _| {
            Ok((st.record.clone(), st.stats(DEFAULT_GROUP)?, st.groups.len() - 1, st.msgs.len() as u64))
        })?;
        stats.dead += self.dead_elsewhere(q);
        Ok(QueueInfo { record, stats, group_count, stored })
    }

    /// Changes a queue's configuration through `f` (which validates and edits a copy).
    pub async fn update_queue(&self, q: &Queue, f: impl FnOnce(&mut QueueConfig) -> Result<()>) -> Result<QueueRecord> {
        let mut cfg = q.record().config;
        f(&mut cfg)?;
        {
            let dir = self.dir.read();
            self.check_dead_letter_target(&dir, &q.namespace, Some(q.id), &cfg)?;
        }
        let rec = self.with_state(q, |st, cx| {
            let mut rec = st.record.clone();
            let rekey = rec.config.priority != cfg.priority;
            rec.config = cfg;
            rec.modified_at = cx.now;
            self.store.put_queue(&rec)?;
            st.record = rec.clone();
            if rekey {
                st.rekey();
            }
            cx.fx.notify = true;
            Ok(rec)
        })?;
        self.store.sync().await?;
        Ok(rec)
    }

    /// Deletes a queue with its messages, groups, dead letters and subscriptions. Waiters on it
    /// end with [`CoreError::QueueNotFound`].
    pub async fn delete_queue(&self, q: &Queue) -> Result<()> {
        {
            let mut dir = self.dir.write();
            if dir.by_id.remove(&q.id).is_none() {
                return Err(CoreError::QueueNotFound);
            }
            if let Some(m) = dir.by_name.get_mut(&q.namespace) {
                m.remove(&q.name);
                if m.is_empty() {
                    dir.by_name.remove(&q.namespace);
                }
            }
        }
        q.state.lock().deleted = true;
        q.notify.notify_waiters();
        let subs: Vec<Uuid> = self.subs.lock().values().filter(|s| s.queue_id == q.id).map(|s| s.id).collect();
        for id in subs {
            self.subs.lock().remove(&id);
            self.store.delete_subscription(id)?;
        }
        let store = self.store.clone();
        let id = q.id;
        tokio::task::spawn_blocking(move || store.delete_queue(id))
            .await
            .map_err(|e| CoreError::Storage(crate::store::StoreError(format!("delete task: {e}"))))??;
        self.store.sync().await?;
        Ok(())
    }

    /// Applies everything due (retention, delay ends, lease ends) in every queue, and forgets
    /// expired idempotency records. The server runs it periodically; tests call it after
    /// advancing a manual clock.
    pub async fn tick(&self) {
        let queues: Vec<Arc<Queue>> = self.dir.read().by_id.values().cloned().collect();
        for q in queues {
            let _ = self.with_state(&q, |_, _| Ok(()));
        }
        self.idempotency.sweep(self.clock.now(), &*self.store);
    }

    /// The earliest instant a queue changes by itself (for the maintenance loop).
    pub async fn next_event(&self) -> Option<Millis> {
        let queues: Vec<Arc<Queue>> = self.dir.read().by_id.values().cloned().collect();
        queues.iter().filter_map(|q| q.state.lock().next_event()).min()
    }

    /// Dead letters that came from `q` and are kept in other queues of its namespace.
    pub(crate) fn dead_elsewhere(&self, q: &Queue) -> u64 {
        self.queues_now(&q.namespace)
            .iter()
            .filter(|t| t.id != q.id)
            .map(|t| t.state.lock().foreign_dead.get(&q.id).map_or(0, |s| s.len() as u64))
            .sum()
    }
}
