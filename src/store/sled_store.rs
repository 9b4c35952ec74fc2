//! The sled implementation of [`Store`]: a write-ahead log with group commit in front, an applier
//! thread that writes sled in large batches behind.
//!
//! Why not write sled directly: a small sled batch plus a sled flush per request costs more than
//! the rest of a request put together. Here a mutating call only encodes its operation, appends
//! it to the log buffer and the applier's queue, and returns — without waking anyone, which at
//! tens of thousands of calls a second would itself be the bottleneck (a futex call each).
//! Threads do the rest:
//!
//! * the **committer** writes the log buffer to the current segment and `fdatasync`s it when a
//!   caller waits in [`Store::sync`] — one write and one fsync for everything buffered so far,
//!   however many callers wait (group commit) — and otherwise at least every 200 ms;
//! * the **applier** lets operations collect for a short window (10 ms, less when much is
//!   queued), takes them all at once, drops what cancels out (a message appended and removed in
//!   the same set never touches sled) and applies the rest to sled in order, in atomic batches
//!   that also record the last applied lsn under key `L`;
//! * the **checkpointer** flushes sled every few seconds; the committer then deletes the log
//!   segments sled holds durably.
//!
//! At open, log frames with an lsn above sled's `L` are applied (the log is replayed exactly
//! once, a segment at a time), sled is flushed and the log emptied. Reads of a message appended
//! but not yet applied are served from memory (the body is shared with the queued operation, not
//! copied). A sync also waits while the applier lags too far behind — in operations or in bytes
//! — which keeps that memory bounded (backpressure on publishers).
//!
//! Key layout (integers big-endian, so sled's byte order is numeric order):
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
//! | `L` | — | lsn of the last applied log operation |

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::wal::{Wal, frame};
use super::{QueueSnapshot, Snapshot, Store, StoreError, StoreResult, SyncFuture};
use crate::core::model::{
    DEFAULT_GROUP, DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord,
    SubscriptionRecord,
};

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Directory of the database and its log (created if missing).
    pub path: PathBuf,
    /// sled's page cache, bytes. sled's own default is 1 GiB, far too much for a sidecar queue.
    pub cache_bytes: u64,
    /// Background flush period of sled itself, ms.
    pub flush_every_ms: u64,
}

impl SledOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions { path: path.into(), cache_bytes: 64 * 1024 * 1024, flush_every_ms: 1000 }
    }
}

/// Largest sled batch the applier writes (in operations on keys, roughly).
const MAX_BATCH_OPS: usize = 512;
/// Most operations the applier may lag behind before syncs wait for it.
const MAX_LAG: u64 = 200_000;
/// Most bytes of logged operations the applier may lag behind before syncs wait for it: what
/// bounds the memory held for unapplied operations (their bodies above all).
const MAX_LAG_BYTES: u64 = 32 * 1024 * 1024;
/// The applier lets operations collect this long before it takes them, unless this many bytes
/// are queued first: larger sled batches, and more messages appended and removed within one
/// set (a consumer keeping up), which then never touch sled at all.
const APPLY_WINDOW: Duration = Duration::from_millis(10);
const APPLY_EARLY_BYTES: u64 = 4 * 1024 * 1024;
/// The most the applier takes at once (in logged bytes), so that under backpressure syncs are
/// released a slice at a time rather than all after one long apply.
const APPLY_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// How often the applier checkpoints (flushes sled, drops applied log segments).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Lazy operations reach the disk (fdatasync) at least this often.
const LAZY_SYNC_EVERY: Duration = Duration::from_millis(200);

/// One store operation, as logged and applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    PutQueue(QueueRecord),
    DeleteQueue(Uuid),
    PutGroup(GroupRecord),
    DeleteGroup(Uuid, u32),
    /// Bodies are shared with the pipeline's read map until applied (no second copy).
    Append(Uuid, Vec<(MessageMeta, Arc<MessageBody>)>),
    Remove(Uuid, Vec<u64>),
    Transfer {
        from: Uuid,
        from_seq: u64,
        to: Uuid,
        meta: MessageMeta,
        keep_source: bool,
    },
    SetDelivery(Uuid, u32, Vec<(u64, DeliveryRecord)>),
    ClearDelivery(Uuid, u32, Vec<u64>),
    PutIdempotency(IdempotencyRecord),
    DeleteIdempotency(Vec<(String, String, String)>),
    PutSubscription(SubscriptionRecord),
    DeleteSubscription(Uuid),
    /// Raises a queue's sequence high-water mark (what is left of appends coalescing removed).
    HighWater(Uuid, u64),
}

/// Write-behind coalescing: a message appended and removed within one set of pending operations
/// (consumed before the applier got to it) never needs to touch sled — its append, its delivery
/// records and its removal all drop out; only the sequence high-water mark stays. Messages that
/// are the source of a transfer in the same set are kept (the transfer reads their body).
fn coalesce(ops: &mut [(u64, Op)]) {
    use std::collections::HashSet;
    let mut appended: HashSet<(Uuid, u64)> = HashSet::new();
    let mut removed: HashSet<(Uuid, u64)> = HashSet::new();
    let mut sources: HashSet<(Uuid, u64)> = HashSet::new();
    for (_, op) in ops.iter() {
        match op {
            Op::Append(q, m) => appended.extend(m.iter().map(|(meta, _)| (*q, meta.seq))),
            Op::Remove(q, seqs) => removed.extend(seqs.iter().map(|s| (*q, *s))),
            Op::Transfer { from, from_seq, .. } => {
                sources.insert((*from, *from_seq));
            }
            _ => {}
        }
    }
    let gone: HashSet<(Uuid, u64)> =
        appended.intersection(&removed).filter(|k| !sources.contains(k)).copied().collect();
    if gone.is_empty() {
        return;
    }
    for (_, op) in ops.iter_mut() {
        match op {
            Op::Append(q, m) => {
                let q = *q;
                let high = m.iter().map(|(meta, _)| meta.seq).max().unwrap_or(0);
                m.retain(|(meta, _)| !gone.contains(&(q, meta.seq)));
                if m.is_empty() {
                    *op = Op::HighWater(q, high);
                }
            }
            Op::Remove(q, seqs) => {
                let q = *q;
                seqs.retain(|s| !gone.contains(&(q, *s)));
            }
            Op::SetDelivery(q, _, e) => {
                let q = *q;
                e.retain(|(s, _)| !gone.contains(&(q, *s)));
            }
            Op::ClearDelivery(q, _, seqs) => {
                let q = *q;
                seqs.retain(|s| !gone.contains(&(q, *s)));
            }
            _ => {}
        }
    }
}

impl Op {
    /// Roughly how many keys applying it touches.
    fn weight(&self) -> usize {
        match self {
            Op::Append(_, m) => 2 * m.len() + 1,
            Op::Remove(_, s) | Op::ClearDelivery(_, _, s) => 3 * s.len(),
            Op::SetDelivery(_, _, e) => e.len(),
            Op::DeleteIdempotency(k) => k.len(),
            Op::HighWater(..) => 1,
            _ => 1,
        }
    }
}

type Waiter = tokio::sync::oneshot::Sender<StoreResult<()>>;

/// The pipeline between callers, the committer and the applier.
#[derive(Default)]
struct Pipeline {
    next_lsn: u64,
    /// Operations not yet applied to sled.
    ops: VecDeque<(u64, Op, u32)>,
    /// Frames not yet written to the log, and the lsn of their first.
    wal_buf: Vec<u8>,
    wal_first: u64,
    written_lsn: u64,
    synced_lsn: u64,
    applied_lsn: u64,
    waiters: Vec<(u64, Waiter)>,
    /// Bodies appended but not yet applied (reads must still find them).
    bodies: HashMap<(Uuid, u64), Arc<MessageBody>>,
    /// Logged bytes of `ops`, and of the operations the applier is applying now.
    queued_bytes: u64,
    applying_bytes: u64,
    /// When the oldest operation in `ops` was queued.
    queued_since: Option<Instant>,
    /// Whether the committer / the applier sleeps waiting for work: only then is a wake-up
    /// (a futex call) worth making.
    committer_idle: bool,
    applier_idle: bool,
    closing: bool,
    error: Option<StoreError>,
}

impl Pipeline {
    /// Whether the applier is too far behind for a sync to be answered (backpressure).
    fn lagging(&self, lsn: u64) -> bool {
        lsn > self.applied_lsn + MAX_LAG || self.queued_bytes + self.applying_bytes > MAX_LAG_BYTES
    }
}

struct Shared {
    db: sled::Db,
    pipe: Mutex<Pipeline>,
    /// Wakes the committer (a sync waits) and the applier (work queued, shutdown).
    commit_cv: Condvar,
    apply_cv: Condvar,
    /// Signalled after every applied set of operations (flush_blocking waits on it).
    applied_cv: Condvar,
    /// Wakes the checkpoint thread at shutdown.
    checkpoint_cv: Condvar,
    flushes: AtomicU64,
    syncs: AtomicU64,
    /// The lsn sled held durably at the applier's last checkpoint: log segments up to it can go.
    checkpointed: AtomicU64,
    /// Held by the committer around each write+fsync; tests take it to make batching observable.
    gate: Mutex<()>,
}

/// The embedded store.
pub struct SledStore {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
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

/// Applies operations to sled in order, in as few atomic batches as possible.
struct Applier {
    db: sled::Db,
    /// Group numbers per queue, so removing a message needs no scan for its delivery records.
    groups: HashMap<Uuid, BTreeSet<u32>>,
    /// The sequence high-water mark per queue (kept here so transfers need no read).
    high: HashMap<Uuid, u64>,
}

impl Applier {
    fn new(db: sled::Db) -> StoreResult<Applier> {
        let mut groups: HashMap<Uuid, BTreeSet<u32>> = HashMap::new();
        let mut high = HashMap::new();
        for kv in db.scan_prefix([b'Q']) {
            let (k, _) = kv?;
            groups.entry(uuid_at(&k, 1)?).or_default().insert(DEFAULT_GROUP);
        }
        for kv in db.scan_prefix([b'G']) {
            let (k, _) = kv?;
            groups.entry(uuid_at(&k, 1)?).or_default().insert(u32_at(&k, 17)?);
        }
        for kv in db.scan_prefix([b'S']) {
            let (k, v) = kv?;
            high.insert(uuid_at(&k, 1)?, u64_at(&v, 0)?);
        }
        Ok(Applier { db, groups, high })
    }

    fn commit(&self, batch: &mut sled::Batch, lsn: u64) -> StoreResult<()> {
        batch.insert(&b"L"[..], &lsn.to_be_bytes());
        self.db.apply_batch(std::mem::take(batch))?;
        Ok(())
    }

    fn remove_message(&self, batch: &mut sled::Batch, q: Uuid, seq: u64) {
        batch.remove(mkey(b'M', q, seq));
        batch.remove(mkey(b'B', q, seq));
        if let Some(gs) = self.groups.get(&q) {
            for g in gs {
                batch.remove(dkey(q, seq, *g));
            }
        }
    }

    fn raise(&mut self, batch: &mut sled::Batch, q: Uuid, seq: u64) {
        let h = self.high.entry(q).or_insert(0);
        if seq > *h {
            *h = seq;
            batch.insert(qkey(b'S', q), &seq.to_be_bytes());
        }
    }

    /// Applies operations in order. Operations that must read sled first get the batch so far
    /// committed before they read.
    fn apply(&mut self, ops: &[(u64, Op)]) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        let mut pending = false;
        // The lsn of the last operation in `batch`: what a commit records as applied.
        let mut prev = 0;
        let mut size = 0;
        for (lsn, op) in ops {
            // sled holds a whole batch in memory and writes it as one log entry: keep them small.
            if pending && size >= MAX_BATCH_OPS {
                self.commit(&mut batch, prev)?;
                pending = false;
                size = 0;
            }
            match op {
                Op::PutQueue(r) => {
                    batch.insert(qkey(b'Q', r.id), encode(r));
                    self.groups.entry(r.id).or_default().insert(DEFAULT_GROUP);
                }
                Op::DeleteQueue(q) => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    // In chunks; until the last one is committed `L` stays at the previous
                    // operation, so a crash midway replays the whole deletion.
                    for prefix in [b'Q', b'G', b'S', b'M', b'B', b'D'] {
                        for kv in self.db.scan_prefix(qkey(prefix, *q)) {
                            batch.remove(kv?.0);
                            size += 1;
                            if size >= MAX_BATCH_OPS {
                                self.commit(&mut batch, prev)?;
                                size = 0;
                            }
                        }
                    }
                    self.groups.remove(q);
                    self.high.remove(q);
                }
                Op::PutGroup(g) => {
                    batch.insert(key(b'G', &[g.queue_id.as_bytes(), &g.no.to_be_bytes()]), encode(g));
                    self.groups.entry(g.queue_id).or_default().insert(g.no);
                }
                Op::DeleteGroup(q, no) => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    batch.remove(key(b'G', &[q.as_bytes(), &no.to_be_bytes()]));
                    for kv in self.db.scan_prefix(qkey(b'D', *q)) {
                        let (k, _) = kv?;
                        if u32_at(&k, 25)? == *no {
                            batch.remove(k);
                            size += 1;
                            if size >= MAX_BATCH_OPS {
                                self.commit(&mut batch, prev)?;
                                size = 0;
                            }
                        }
                    }
                    if let Some(gs) = self.groups.get_mut(q) {
                        gs.remove(no);
                    }
                }
                Op::Append(q, msgs) => {
                    for (meta, body) in msgs {
                        batch.insert(mkey(b'M', *q, meta.seq), encode(meta));
                        batch.insert(mkey(b'B', *q, meta.seq), encode(&**body));
                    }
                    if let Some((m, _)) = msgs.last() {
                        self.raise(&mut batch, *q, m.seq);
                    }
                }
                Op::Remove(q, seqs) => {
                    for seq in seqs {
                        self.remove_message(&mut batch, *q, *seq);
                    }
                }
                Op::Transfer { from, from_seq, to, meta, keep_source } => {
                    if pending {
                        self.commit(&mut batch, prev)?;
                        size = 0;
                    }
                    match self.db.get(mkey(b'B', *from, *from_seq))? {
                        Some(body) => {
                            if !keep_source {
                                self.remove_message(&mut batch, *from, *from_seq);
                            }
                            batch.insert(mkey(b'M', *to, meta.seq), encode(meta));
                            batch.insert(mkey(b'B', *to, meta.seq), body);
                            self.raise(&mut batch, *to, meta.seq);
                        }
                        None => {
                            tracing::error!(queue = %from, seq = from_seq, "transfer of a message sled does not have")
                        }
                    }
                }
                Op::SetDelivery(q, g, entries) => {
                    for (seq, rec) in entries {
                        batch.insert(dkey(*q, *seq, *g), encode(rec));
                    }
                    self.groups.entry(*q).or_default().insert(*g);
                }
                Op::ClearDelivery(q, g, seqs) => {
                    for seq in seqs {
                        batch.remove(dkey(*q, *seq, *g));
                    }
                }
                Op::PutIdempotency(r) => batch.insert(ikey(&r.namespace, &r.capability, &r.key), encode(r)),
                Op::DeleteIdempotency(keys) => {
                    for (ns, cap, k) in keys {
                        batch.remove(ikey(ns, cap, k));
                    }
                }
                Op::PutSubscription(s) => batch.insert(qkey(b'U', s.id), encode(s)),
                Op::DeleteSubscription(id) => batch.remove(qkey(b'U', *id)),
                Op::HighWater(q, seq) => self.raise(&mut batch, *q, *seq),
            }
            prev = *lsn;
            pending = true;
            size += op.weight();
        }
        if pending {
            self.commit(&mut batch, prev)?;
        }
        Ok(())
    }
}

impl SledStore {
    /// Opens (or creates) the store, replaying whatever the log holds beyond sled's state.
    pub fn open(opts: &SledOptions) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(opts.path.join("sled"))
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(Some(opts.flush_every_ms.max(1)))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let mut applier = Applier::new(db.clone())?;
        let applied = match db.get(b"L")? {
            Some(v) => u64_at(&v, 0)?,
            None => 0,
        };
        let mut wal = Wal::open(&opts.path.join("wal"))?;
        let mut last = applied;
        let mut replayed = 0;
        for i in 0..wal.segment_count() {
            let mut replay = Vec::new();
            for (lsn, payload) in wal.read_segment(i)? {
                if lsn > applied {
                    replay.push((lsn, decode::<Op>(&payload, "log operation")?));
                }
                last = last.max(lsn);
            }
            replayed += replay.len();
            applier.apply(&replay)?;
        }
        if replayed > 0 {
            tracing::info!(operations = replayed, "replayed the write-ahead log");
        }
        db.flush()?;
        wal.clear()?;
        let shared = Arc::new(Shared {
            db,
            pipe: Mutex::new(Pipeline {
                next_lsn: last,
                written_lsn: last,
                synced_lsn: last,
                applied_lsn: last,
                ..Pipeline::default()
            }),
            commit_cv: Condvar::new(),
            apply_cv: Condvar::new(),
            applied_cv: Condvar::new(),
            checkpoint_cv: Condvar::new(),
            flushes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
            gate: Mutex::new(()),
        });
        let committer = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("qgate-commit".into())
                .spawn(move || committer(s, wal))
                .map_err(|e| StoreError(format!("cannot start the commit thread: {e}")))?
        };
        let applier_thread = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("qgate-apply".into())
                .spawn(move || apply_loop(s, applier))
                .map_err(|e| StoreError(format!("cannot start the apply thread: {e}")))?
        };
        let checkpointer = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("qgate-checkpoint".into())
                .spawn(move || checkpoint_loop(s))
                .map_err(|e| StoreError(format!("cannot start the checkpoint thread: {e}")))?
        };
        Ok(SledStore { shared, threads: Mutex::new(vec![committer, applier_thread, checkpointer]) })
    }

    /// Number of log fsyncs done for syncs (group-commit observability).
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// Number of `sync` calls answered.
    pub fn sync_count(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Blocks the committer until the guard is dropped (tests: makes batching deterministic).
    pub fn hold_commits(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }

    /// Bytes on disk as sled reports them.
    pub fn size_on_disk(&self) -> u64 {
        self.shared.db.size_on_disk().unwrap_or(0)
    }

    /// Waits until everything submitted is applied and logged, then flushes sled (shutdown).
    pub fn flush_blocking(&self) -> StoreResult<()> {
        let mut p = self.shared.pipe.lock();
        while p.error.is_none() && (p.applied_lsn < p.next_lsn || p.written_lsn < p.next_lsn) {
            self.shared.commit_cv.notify_one();
            self.shared.apply_cv.notify_one();
            self.shared.applied_cv.wait_for(&mut p, Duration::from_millis(20));
        }
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        drop(p);
        self.shared.db.flush()?;
        Ok(())
    }

    fn submit(&self, op: Op) -> StoreResult<()> {
        self.submit_with(op, None)
    }

    /// Submits an operation; `body` is a message body it makes readable before it is applied
    /// (a transfer's target).
    ///
    /// Nobody is woken here unless the applier sleeps with nothing to do or much is queued:
    /// the committer writes when a sync asks (or lazily), the applier collects for a window.
    fn submit_with(&self, op: Op, body: Option<((Uuid, u64), Arc<MessageBody>)>) -> StoreResult<()> {
        let payload = encode(&op);
        let mut p = self.shared.pipe.lock();
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        p.next_lsn += 1;
        let lsn = p.next_lsn;
        if p.wal_buf.is_empty() {
            p.wal_first = lsn;
        }
        frame(&mut p.wal_buf, lsn, &payload);
        if let Op::Append(q, msgs) = &op {
            for (meta, body) in msgs {
                p.bodies.insert((*q, meta.seq), body.clone());
            }
        }
        if let Some((k, b)) = body {
            p.bodies.insert(k, b);
        }
        p.ops.push_back((lsn, op, payload.len() as u32));
        p.queued_bytes += payload.len() as u64;
        if p.queued_since.is_none() {
            p.queued_since = Some(Instant::now());
        }
        let wake =
            p.applier_idle && (p.ops.len() == 1 || p.queued_bytes >= APPLY_EARLY_BYTES || p.lagging(lsn) || p.closing);
        drop(p);
        if wake {
            self.shared.apply_cv.notify_one();
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Fails every waiter with `e` and remembers it.
fn fail(p: &mut Pipeline, e: StoreError) {
    tracing::error!(error = %e, "the store failed");
    for (_, w) in p.waiters.drain(..) {
        let _ = w.send(Err(e.clone()));
    }
    p.error = Some(e);
}

fn committer(shared: Arc<Shared>, mut wal: Wal) {
    let mut last_sync = Instant::now();
    let mut truncated = 0;
    loop {
        let (buf, first, last) = {
            let mut p = shared.pipe.lock();
            loop {
                if p.error.is_some() {
                    return;
                }
                // Every write is synced, so what is unsynced is what is unwritten.
                let unsynced = !p.wal_buf.is_empty();
                let lazy_due = unsynced && last_sync.elapsed() >= LAZY_SYNC_EVERY;
                if lazy_due || (p.closing && unsynced) || (!p.waiters.is_empty() && unsynced) {
                    break;
                }
                if p.closing {
                    return;
                }
                // Waiters blocked only by the applier are answered when it moves on.
                complete(&mut p, &shared);
                // Segments sled holds durably (the applier's last checkpoint) can go.
                let checkpoint = shared.checkpointed.load(Ordering::Relaxed);
                if checkpoint > truncated {
                    truncated = checkpoint;
                    if let Err(e) = wal.truncate(checkpoint) {
                        fail(&mut p, e);
                        return;
                    }
                }
                p.committer_idle = true;
                shared.commit_cv.wait_for(&mut p, LAZY_SYNC_EVERY);
                p.committer_idle = false;
            }
            // Written and synced together, for a sync waiter, shutdown or the lazy timer.
            (std::mem::take(&mut p.wal_buf), p.wal_first, p.next_lsn)
        };
        let _held = shared.gate.lock();
        let result = wal.write(first, &buf).and_then(|()| wal.sync());
        drop(buf);
        last_sync = Instant::now();
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        let mut p = shared.pipe.lock();
        match result {
            Ok(()) => {
                p.written_lsn = p.written_lsn.max(last);
                p.synced_lsn = p.synced_lsn.max(last);
                complete(&mut p, &shared);
            }
            Err(e) => fail(&mut p, e),
        }
    }
}

/// Answers every waiter that can be answered now.
fn complete(p: &mut Pipeline, shared: &Shared) {
    let synced = p.synced_lsn;
    let mut i = 0;
    while i < p.waiters.len() {
        let lsn = p.waiters[i].0;
        if lsn <= synced && !p.lagging(lsn) {
            let (_, w) = p.waiters.swap_remove(i);
            shared.syncs.fetch_add(1, Ordering::Relaxed);
            let _ = w.send(Ok(()));
        } else {
            i += 1;
        }
    }
}

fn apply_loop(shared: Arc<Shared>, mut applier: Applier) {
    loop {
        let (ops, bytes) = {
            let mut p = shared.pipe.lock();
            loop {
                // Closing: what is not applied yet is in the log and is replayed at the next
                // open; sled is left alone (a graceful shutdown applies everything first, see
                // flush_blocking).
                if p.closing || p.error.is_some() {
                    return;
                }
                let due = match p.queued_since {
                    None => None,
                    Some(since) => {
                        let urgent = p.queued_bytes >= APPLY_EARLY_BYTES
                            || !p.waiters.is_empty() && p.lagging(p.next_lsn)
                            || since.elapsed() >= APPLY_WINDOW;
                        if urgent { None } else { Some(APPLY_WINDOW.saturating_sub(since.elapsed())) }
                    }
                };
                if p.queued_since.is_some() && due.is_none() {
                    break;
                }
                p.applier_idle = true;
                match due {
                    Some(d) => {
                        shared.apply_cv.wait_for(&mut p, d);
                    }
                    None => shared.apply_cv.wait(&mut p),
                }
                p.applier_idle = false;
            }
            let mut ops = Vec::new();
            let mut bytes = 0;
            while bytes < APPLY_CHUNK_BYTES
                && let Some((lsn, op, size)) = p.ops.pop_front()
            {
                ops.push((lsn, op));
                bytes += u64::from(size);
            }
            p.queued_bytes -= bytes;
            p.applying_bytes = bytes;
            // What is left over is due at once.
            p.queued_since =
                (!p.ops.is_empty()).then(|| Instant::now().checked_sub(APPLY_WINDOW).unwrap_or_else(Instant::now));
            (ops, bytes)
        };
        if !ops.is_empty() {
            let mut ops = ops;
            let last = ops.last().map_or(0, |(l, _)| *l);
            // Bodies held in memory for these operations: readable from sled once applied.
            let held: Vec<(Uuid, u64)> = ops
                .iter()
                .flat_map(|(_, op)| match op {
                    Op::Append(q, msgs) => msgs.iter().map(|(m, _)| (*q, m.seq)).collect::<Vec<_>>(),
                    Op::Transfer { to, meta, .. } => vec![(*to, meta.seq)],
                    _ => Vec::new(),
                })
                .collect();
            coalesce(&mut ops);
            let started = Instant::now();
            let result = applier.apply(&ops);
            if started.elapsed() > Duration::from_secs(1) {
                tracing::info!(
                    operations = ops.len(),
                    bytes,
                    millis = started.elapsed().as_millis() as u64,
                    "slow apply"
                );
            }
            drop(ops);
            let mut p = shared.pipe.lock();
            match result {
                Ok(()) => {
                    p.applied_lsn = last;
                    p.applying_bytes -= bytes;
                    for k in &held {
                        p.bodies.remove(k);
                    }
                    // Syncs held back by the lag can go now.
                    complete(&mut p, &shared);
                }
                Err(e) => {
                    fail(&mut p, e);
                    return;
                }
            }
            drop(p);
            shared.applied_cv.notify_all();
        }
    }
}

/// Every few seconds: flushes sled and publishes the lsn it now holds durably, so the committer
/// can drop the log segments below it. Its own thread, because a flush of a large dirty cache can
/// take seconds, and the applier must not stall (and hold back every sync) meanwhile.
fn checkpoint_loop(shared: Arc<Shared>) {
    loop {
        {
            let mut p = shared.pipe.lock();
            if p.closing || p.error.is_some() {
                return;
            }
            shared.checkpoint_cv.wait_for(&mut p, CHECKPOINT_EVERY);
            if p.closing || p.error.is_some() {
                return;
            }
        }
        // Everything applied before the flush starts is durable once it returns.
        let applied = shared.pipe.lock().applied_lsn;
        if applied <= shared.checkpointed.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = shared.db.flush() {
            fail(&mut shared.pipe.lock(), e.into());
            return;
        }
        shared.checkpointed.store(applied, Ordering::Relaxed);
    }
}

impl Store for SledStore {
    fn load(&self) -> StoreResult<Snapshot> {
        self.flush_blocking()?;
        let db = &self.shared.db;
        let mut queues: HashMap<Uuid, QueueSnapshot> = HashMap::new();
        let mut snap = Snapshot::default();
        for kv in db.iter() {
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
        self.submit(Op::PutQueue(queue.clone()))
    }

    fn delete_queue(&self, queue: Uuid) -> StoreResult<()> {
        self.submit(Op::DeleteQueue(queue))
    }

    fn put_group(&self, group: &GroupRecord) -> StoreResult<()> {
        self.submit(Op::PutGroup(group.clone()))
    }

    fn delete_group(&self, queue: Uuid, group: u32) -> StoreResult<()> {
        self.submit(Op::DeleteGroup(queue, group))
    }

    fn append(&self, queue: Uuid, messages: &[(MessageMeta, MessageBody)]) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.submit(Op::Append(queue, messages.iter().map(|(m, b)| (m.clone(), Arc::new(b.clone()))).collect()))
    }

    fn body(&self, queue: Uuid, seq: u64) -> StoreResult<Option<MessageBody>> {
        if let Some(b) = self.shared.pipe.lock().bodies.get(&(queue, seq)).cloned() {
            return Ok(Some((*b).clone()));
        }
        match self.shared.db.get(mkey(b'B', queue, seq))? {
            Some(v) => Ok(Some(decode(&v, "body")?)),
            None => Ok(None),
        }
    }

    fn remove(&self, queue: Uuid, seqs: &[u64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.submit(Op::Remove(queue, seqs.to_vec()))
    }

    fn transfer(&self, from: Uuid, from_seq: u64, to: Uuid, meta: &MessageMeta, keep_source: bool) -> StoreResult<()> {
        // The applier copies the body from sled when it gets there; until then reads of the
        // target find it in memory.
        let Some(body) = self.body(from, from_seq)? else {
            return Err(StoreError(format!("transfer of missing message {from}/{from_seq}")));
        };
        self.submit_with(
            Op::Transfer { from, from_seq, to, meta: meta.clone(), keep_source },
            Some(((to, meta.seq), Arc::new(body))),
        )
    }

    fn lease(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.submit(Op::SetDelivery(queue, group, vec![(seq, record.clone())]))
    }

    fn release(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()> {
        self.submit(Op::SetDelivery(queue, group, vec![(seq, record.clone())]))
    }

    fn settle(&self, queue: Uuid, group: u32, entries: &[(u64, DeliveryRecord)]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.submit(Op::SetDelivery(queue, group, entries.to_vec()))
    }

    fn forget(&self, queue: Uuid, group: u32, seqs: &[u64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.submit(Op::ClearDelivery(queue, group, seqs.to_vec()))
    }

    fn put_idempotency(&self, record: &IdempotencyRecord) -> StoreResult<()> {
        self.submit(Op::PutIdempotency(record.clone()))
    }

    fn delete_idempotency(&self, keys: &[(String, String, String)]) -> StoreResult<()> {
        self.submit(Op::DeleteIdempotency(keys.to_vec()))
    }

    fn put_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()> {
        self.submit(Op::PutSubscription(sub.clone()))
    }

    fn delete_subscription(&self, id: Uuid) -> StoreResult<()> {
        self.submit(Op::DeleteSubscription(id))
    }

    /// Stops both threads (the committer first writes and syncs what is buffered; what the
    /// applier had not applied is replayed from the log at the next open), then lets sled write
    /// its own state, so a restart in the same process can reopen the database at once.
    fn close(&self) -> StoreResult<()> {
        let threads: Vec<_> = {
            let mut p = self.shared.pipe.lock();
            p.closing = true;
            self.threads.lock().drain(..).collect()
        };
        if threads.is_empty() {
            return Ok(());
        }
        self.shared.commit_cv.notify_all();
        self.shared.apply_cv.notify_all();
        self.shared.checkpoint_cv.notify_all();
        for t in threads {
            let _ = t.join();
        }
        let mut p = self.shared.pipe.lock();
        if p.error.is_none() {
            p.error = Some(StoreError("the store is closed".into()));
            drop(p);
            // After an I/O error sled's flush can wait forever; the log holds what matters anyway.
            self.shared.db.flush()?;
        }
        Ok(())
    }

    fn sync(&self) -> SyncFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut p = self.shared.pipe.lock();
            match &p.error {
                Some(e) => {
                    let _ = tx.send(Err(e.clone()));
                }
                None if p.synced_lsn >= p.next_lsn && !p.lagging(p.next_lsn) => {
                    let _ = tx.send(Ok(()));
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let lsn = p.next_lsn;
                    p.waiters.push((lsn, tx));
                    // A busy committer looks at the waiters again when its write is done.
                    if p.committer_idle {
                        self.shared.commit_cv.notify_one();
                    }
                }
            }
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(StoreError("the store is closed".into()))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{BodyKind, DeliveryState, MessageId};

    fn meta(seq: u64) -> MessageMeta {
        MessageMeta {
            seq,
            id: MessageId(seq as u128),
            kind: BodyKind::Text,
            priority: 8,
            enqueued_at: 0,
            not_before: 0,
            size: 1,
            tags: vec![],
            origin: None,
        }
    }

    fn body() -> Arc<MessageBody> {
        Arc::new(MessageBody { body: b"x".to_vec(), attributes: Default::default() })
    }

    #[test]
    fn appended_then_removed_messages_never_reach_sled() {
        let q = Uuid::new_v4();
        let rec = DeliveryRecord { deliveries: 1, failures: 0, first_delivered_at: 0, state: DeliveryState::Acked };
        let mut ops = vec![
            (1, Op::Append(q, vec![(meta(1), body()), (meta(2), body())])),
            (2, Op::SetDelivery(q, 0, vec![(1, rec.clone()), (2, rec.clone())])),
            (3, Op::Append(q, vec![(meta(3), body())])),
            (4, Op::Transfer { from: q, from_seq: 3, to: q, meta: meta(9), keep_source: true }),
            (5, Op::Remove(q, vec![1, 3, 7])),
        ];
        coalesce(&mut ops);
        match &ops[0].1 {
            Op::Append(_, m) => assert_eq!(m.iter().map(|(m, _)| m.seq).collect::<Vec<_>>(), vec![2]),
            other => panic!("{other:?}"),
        }
        match &ops[1].1 {
            Op::SetDelivery(_, _, e) => assert_eq!(e.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&ops[2].1, Op::Append(_, m) if m.len() == 1), "a transfer source stays");
        match &ops[4].1 {
            Op::Remove(_, s) => assert_eq!(s, &vec![3, 7], "7 was appended earlier, 3 is a transfer source"),
            other => panic!("{other:?}"),
        }
        let mut all_gone = vec![(1, Op::Append(q, vec![(meta(5), body())])), (2, Op::Remove(q, vec![5]))];
        coalesce(&mut all_gone);
        assert!(matches!(all_gone[0].1, Op::HighWater(_, 5)));
    }
}
