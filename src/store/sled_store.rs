//! The sled implementation of [`Store`]: one tree, prefixed keys, atomic batches, group commit.
//!
//! Key layout (all integers big-endian, so sled's byte order is numeric order):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `Q` | queue id | [`QueueRecord`] |
//! | `G` | queue id, group no (u32) | [`GroupRecord`] |
//! | `S` | queue id | highest sequence ever appended (u64) |
//! | `M` | queue id, seq (u64) | [`MessageMeta`] |
//! | `B` | queue id, seq | [`MessageBody`] |
//! | `D` | queue id, seq, group no | [`DeliveryRecord`] |
//! | `I` | namespace, 0, capability, 0, key | [`IdempotencyRecord`] |
//! | `U` | subscription id | [`SubscriptionRecord`] |
//!
//! Keeping everything in one tree makes every domain operation a single atomic
//! [`sled::Batch`]. Message metas and bodies are separate keys so start-up reads only the small
//! metas. Delivery records are keyed seq-before-group so removing a message drops every group's
//! record with one prefix scan.
//!
//! Group commit: [`Store::sync`] hands a waiter to one committer thread, which takes every
//! waiter queued so far, calls `flush` once, and answers them all. While a flush runs, new
//! waiters queue up for the next one, so N concurrent publishers cost about one flush per
//! flush-duration, not N.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use uuid::Uuid;

use super::codec::{decode, encode};
use super::{QueueSnapshot, Snapshot, Store, StoreError, StoreResult, SyncFuture};
use crate::core::model::{
    DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord, SubscriptionRecord,
};

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Directory of the database (created if missing). Ignored when `temporary`.
    pub path: PathBuf,
    /// sled's page cache, bytes. sled's own default is 1 GiB, far too much for a sidecar queue.
    pub cache_bytes: u64,
    /// Background flush period for lazily durable writes (leases, acks), ms.
    pub flush_every_ms: u64,
    /// A throw-away database (tests).
    pub temporary: bool,
}

impl SledOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions { path: path.into(), cache_bytes: 64 * 1024 * 1024, flush_every_ms: 500, temporary: false }
    }
}

type Waiter = tokio::sync::oneshot::Sender<StoreResult<()>>;

/// The embedded store.
pub struct SledStore {
    db: sled::Db,
    /// `None` only while dropping (so the committer thread sees the channel close).
    commits: Option<mpsc::Sender<Waiter>>,
    committer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CommitStats>,
    /// Held by the committer around each flush; tests take it to make batching observable.
    commit_gate: Arc<parking_lot::Mutex<()>>,
}

#[derive(Default)]
struct CommitStats {
    flushes: AtomicU64,
    syncs: AtomicU64,
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn qkey(prefix: u8, q: Uuid) -> Vec<u8> {
    key(prefix, &[q.as_bytes()])
}

fn mkey(prefix: u8, q: Uuid, seq: u64) -> Vec<u8> {
    key(prefix, &[q.as_bytes(), &seq.to_be_bytes()])
}

fn dkey(q: Uuid, seq: u64, group: u32) -> Vec<u8> {
    key(b'D', &[q.as_bytes(), &seq.to_be_bytes(), &group.to_be_bytes()])
}

fn ikey(ns: &str, cap: &str, k: &str) -> Vec<u8> {
    key(b'I', &[ns.as_bytes(), &[0], cap.as_bytes(), &[0], k.as_bytes()])
}

fn uuid_at(k: &[u8], at: usize) -> StoreResult<Uuid> {
    k.get(at..at + 16).and_then(|b| Uuid::from_slice(b).ok()).ok_or_else(|| StoreError("corrupt key".into()))
}

fn u64_at(k: &[u8], at: usize) -> StoreResult<u64> {
    k.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| StoreError("corrupt key".into()))
}

fn u32_at(k: &[u8], at: usize) -> StoreResult<u32> {
    k.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| StoreError("corrupt key".into()))
}

impl SledStore {
    /// Opens (or creates) the store.
    pub fn open(opts: &SledOptions) -> StoreResult<Self> {
        let mut cfg = sled::Config::new()
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(Some(opts.flush_every_ms.max(1)))
            .mode(sled::Mode::HighThroughput);
        cfg = if opts.temporary { cfg.temporary(true) } else { cfg.path(&opts.path) };
        let db = cfg.open()?;
        let (tx, rx) = mpsc::channel::<Waiter>();
        let stats = Arc::new(CommitStats::default());
        let gate = Arc::new(parking_lot::Mutex::new(()));
        let committer = {
            let db = db.clone();
            let stats = stats.clone();
            let gate = gate.clone();
            std::thread::Builder::new()
                .name("qgate-commit".into())
                .spawn(move || committer(db, rx, stats, gate))
                .map_err(|e| StoreError(format!("cannot start the commit thread: {e}")))?
        };
        Ok(SledStore { db, commits: Some(tx), committer: Some(committer), stats, commit_gate: gate })
    }

    /// Number of flushes the committer has done (group-commit observability).
    pub fn flush_count(&self) -> u64 {
        self.stats.flushes.load(Ordering::Relaxed)
    }

    /// Number of `sync` calls answered.
    pub fn sync_count(&self) -> u64 {
        self.stats.syncs.load(Ordering::Relaxed)
    }

    /// Blocks the committer until the guard is dropped (tests: makes batching deterministic).
    pub fn hold_commits(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.commit_gate.lock()
    }

    /// Bytes on disk as sled reports them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Flushes everything now (shutdown).
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.db.flush()?;
        Ok(())
    }

    fn apply(&self, batch: sled::Batch) -> StoreResult<()> {
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn remove_delivery_records(&self, batch: &mut sled::Batch, q: Uuid, seq: u64) -> StoreResult<()> {
        for kv in self.db.scan_prefix(mkey(b'D', q, seq)) {
            let (k, _) = kv?;
            batch.remove(k);
        }
        Ok(())
    }
}

impl Drop for SledStore {
    /// Stops the committer and waits for it, so the database is closed when this returns (a
    /// restart in the same process can reopen it at once).
    fn drop(&mut self) {
        self.commits.take();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
        let _ = self.db.flush();
    }
}

fn committer(db: sled::Db, rx: mpsc::Receiver<Waiter>, stats: Arc<CommitStats>, gate: Arc<parking_lot::Mutex<()>>) {
    while let Ok(first) = rx.recv() {
        let _held = gate.lock();
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let result = db.flush().map(|_| ()).map_err(StoreError::from);
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.syncs.fetch_add(waiters.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Store for SledStore {
    fn load(&self) -> StoreResult<Snapshot> {
        let mut queues: HashMap<Uuid, QueueSnapshot> = HashMap::new();
        let mut snap = Snapshot::default();
        for kv in self.db.iter() {
            let (k, v) = kv?;
            match k.first() {
                Some(b'Q') => {
                    let rec: QueueRecord = decode(&v, "queue")?;
                    let id = rec.id;
                    queues.entry(id).or_default().record = Some(rec);
                }
                Some(b'G') => {
                    let rec: GroupRecord = decode(&v, "group")?;
                    queues.entry(rec.queue_id).or_default().groups.push(rec);
                }
                Some(b'S') => {
                    let q = uuid_at(&k, 1)?;
                    queues.entry(q).or_default().last_seq = u64_at(&v, 0)?;
                }
                Some(b'M') => {
                    let q = uuid_at(&k, 1)?;
                    let meta: MessageMeta = decode(&v, "message")?;
                    queues.entry(q).or_default().messages.push(meta);
                }
                Some(b'D') => {
                    let q = uuid_at(&k, 1)?;
                    let seq = u64_at(&k, 17)?;
                    let group = u32_at(&k, 25)?;
                    let rec: DeliveryRecord = decode(&v, "delivery")?;
                    queues.entry(q).or_default().deliveries.push((group, seq, rec));
                }
                Some(b'I') => snap.idempotency.push(decode(&v, "idempotency")?),
                Some(b'U') => snap.subscriptions.push(decode(&v, "subscription")?),
                _ => {}
            }
        }
        // Orphans (a record without its queue) can only come from a torn external edit; ignore.
        snap.queues = queues.into_values().filter(|q| q.record.is_some()).collect();
        for q in &mut snap.queues {
            q.deliveries.sort_by_key(|(g, s, _)| (*g, *s));
            if let Some(last) = q.messages.last() {
                q.last_seq = q.last_seq.max(last.seq);
            }
        }
        Ok(snap)
    }

    fn put_queue(&self, queue: &QueueRecord) -> StoreResult<()> {
        self.db.insert(qkey(b'Q', queue.id), encode(queue))?;
        Ok(())
    }

    fn delete_queue(&self, queue: Uuid) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for prefix in [b'Q', b'G', b'S', b'M', b'B', b'D'] {
            for kv in self.db.scan_prefix(qkey(prefix, queue)) {
                let (k, _) = kv?;
                batch.remove(k);
            }
        }
        self.apply(batch)
    }

    fn put_group(&self, group: &GroupRecord) -> StoreResult<()> {
        self.db.insert(key(b'G', &[group.queue_id.as_bytes(), &group.no.to_be_bytes()]), encode(group))?;
        Ok(())
    }

    fn delete_group(&self, queue: Uuid, group: u32) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        batch.remove(key(b'G', &[queue.as_bytes(), &group.to_be_bytes()]));
        for kv in self.db.scan_prefix(qkey(b'D', queue)) {
            let (k, _) = kv?;
            if u32_at(&k, 25)? == group {
                batch.remove(k);
            }
        }
        self.apply(batch)
    }

    fn append(&self, queue: Uuid, messages: &[(MessageMeta, MessageBody)]) -> StoreResult<()> {
        let Some(last) = messages.last() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for (meta, body) in messages {
            batch.insert(mkey(b'M', queue, meta.seq), encode(meta));
            batch.insert(mkey(b'B', queue, meta.seq), encode(body));
        }
        batch.insert(qkey(b'S', queue), &last.0.seq.to_be_bytes());
        self.apply(batch)
    }

    fn body(&self, queue: Uuid, seq: u64) -> StoreResult<Option<MessageBody>> {
        match self.db.get(mkey(b'B', queue, seq))? {
            Some(v) => Ok(Some(decode(&v, "body")?)),
            None => Ok(None),
        }
    }

    fn remove(&self, queue: Uuid, seqs: &[u64]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for &seq in seqs {
            batch.remove(mkey(b'M', queue, seq));
            batch.remove(mkey(b'B', queue, seq));
            self.remove_delivery_records(&mut batch, queue, seq)?;
        }
        self.apply(batch)
    }

    fn transfer(&self, from: Uuid, from_seq: u64, to: Uuid, meta: &MessageMeta, keep_source: bool) -> StoreResult<()> {
        let body = self
            .db
            .get(mkey(b'B', from, from_seq))?
            .ok_or_else(|| StoreError(format!("transfer of missing message {from}/{from_seq}")))?;
        let mut batch = sled::Batch::default();
        if !keep_source {
            batch.remove(mkey(b'M', from, from_seq));
            batch.remove(mkey(b'B', from, from_seq));
            self.remove_delivery_records(&mut batch, from, from_seq)?;
        }
        batch.insert(mkey(b'M', to, meta.seq), encode(meta));
        batch.insert(mkey(b'B', to, meta.seq), body);
        let hw = match self.db.get(qkey(b'S', to))? {
            Some(v) => u64_at(&v, 0)?.max(meta.seq),
            None => meta.seq,
        };
        batch.insert(qkey(b'S', to), &hw.to_be_bytes());
        self.apply(batch)
    }

    fn lease(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.db.insert(dkey(queue, seq, group), encode(record))?;
        Ok(())
    }

    fn release(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.db.insert(dkey(queue, seq, group), encode(record))?;
        Ok(())
    }

    fn settle(&self, queue: Uuid, group: u32, entries: &[(u64, DeliveryRecord)]) -> StoreResult<()> {
        if let [(seq, rec)] = entries {
            self.db.insert(dkey(queue, *seq, group), encode(rec))?;
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (seq, rec) in entries {
            batch.insert(dkey(queue, *seq, group), encode(rec));
        }
        self.apply(batch)
    }

    fn forget(&self, queue: Uuid, group: u32, seqs: &[u64]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for &seq in seqs {
            batch.remove(dkey(queue, seq, group));
        }
        self.apply(batch)
    }

    fn put_idempotency(&self, record: &IdempotencyRecord) -> StoreResult<()> {
        self.db.insert(ikey(&record.namespace, &record.capability, &record.key), encode(record))?;
        Ok(())
    }

    fn delete_idempotency(&self, keys: &[(String, String, String)]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for (ns, cap, k) in keys {
            batch.remove(ikey(ns, cap, k));
        }
        self.apply(batch)
    }

    fn put_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        self.db.insert(qkey(b'U', sub.id), encode(sub))?;
        Ok(())
    }

    fn delete_subscription(&self, id: Uuid) -> StoreResult<()> {
        self.db.remove(qkey(b'U', id))?;
        Ok(())
    }

    fn sync(&self) -> SyncFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Enqueue now, not when first polled: the caller's writes happened before this call, and
        // callers that issue several syncs before awaiting them share one flush.
        let sent = self.commits.as_ref().map(|c| c.send(tx));
        Box::pin(async move {
            if !matches!(sent, Some(Ok(()))) {
                return Err(StoreError("the commit thread has stopped".into()));
            }
            rx.await.unwrap_or_else(|_| Err(StoreError("the commit thread has stopped".into())))
        })
    }
}
