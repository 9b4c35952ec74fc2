//! The sled implementation of [`Store`]: a write-ahead log with group commit in front — which is
//! also where message bodies stay — and an applier thread that writes sled in large batches
//! behind.
//!
//! Why not write sled directly: a small sled batch plus a sled flush per request costs more than
//! the rest of a request put together, and sled's cost grows with the bytes it holds. Here a
//! mutating call only encodes its operation, appends it to the log buffer and the applier's
//! queue, and returns — without waking anyone, which at tens of thousands of calls a second
//! would itself be a bottleneck (a futex call each). Threads do the rest:
//!
//! * the **committer** writes the log buffer and `fdatasync`s it when a caller waits in
//!   [`Store::sync`] — one write and one fsync for everything buffered so far, however many
//!   callers wait (group commit) — when the applier needs it written, and otherwise at least
//!   every 200 ms;
//! * the **applier** lets operations collect for a short window (10 ms, less when much is
//!   queued), takes what the log already holds, drops what cancels out (a message appended and
//!   removed in the same set never touches sled) and applies the rest to sled in order, in
//!   atomic batches that also record the last applied lsn under key `L`. A message's body is
//!   not copied into sled: its meta is stored with the body's place in the log ([`wal`]);
//! * the **checkpointer** flushes sled every few seconds, then deletes the log segments that
//!   sled holds durably and no stored message points into; about once a minute it compacts:
//!   bodies still in use in segments that are mostly dead are copied to the end of the log
//!   (an ordinary logged operation) and their messages repointed, so those segments go too.
//!
//! At open, log frames with an lsn above sled's `L` are applied (the log is replayed exactly
//! once, a segment at a time) and sled is flushed. Reads of a message appended but not yet
//! applied are served from memory (the body is shared with the queued operation, not copied).
//! A sync also waits while the applier lags too far behind — in operations or in bytes — which
//! keeps that memory bounded (backpressure on publishers).
//!
//! Keys and values in sled: see [`apply`](super::apply).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::apply::{Applier, SegmentUse, loc_of, mkey, stored_meta, u32_at, u64_at, uuid_at};
use super::codec::decode;
use super::ops::{AppendEntry, BodyLoc, Move, Op, coalesce};
use super::wal::{HEADER, SEGMENT_BYTES, Segments, Wal, frame, frames};
use super::{QueueSnapshot, Snapshot, Store, StoreError, StoreResult, SyncFuture};
use crate::core::model::{
    DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord, SubscriptionRecord,
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
    /// Size at which the log starts a new segment file.
    pub segment_bytes: u64,
}

impl SledOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions {
            path: path.into(),
            cache_bytes: 64 * 1024 * 1024,
            flush_every_ms: 1000,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// How far the applier may lag behind before syncs wait for it (backpressure on publishers):
/// in sled keys to write (about a second of work, which bounds how stale sled is and how long a
/// shutdown takes) and in logged bytes (which bounds the memory held for unapplied operations,
/// their bodies above all).
const MAX_LAG_KEYS: u64 = 50_000;
const MAX_LAG_BYTES: u64 = 32 * 1024 * 1024;
/// The applier lets operations collect this long before it takes them, unless this much is
/// queued first: larger sled batches, and more messages appended and removed within one set
/// (a consumer keeping up), which then never touch sled at all.
const APPLY_WINDOW: Duration = Duration::from_millis(10);
const APPLY_EARLY_KEYS: u64 = 4096;
const APPLY_EARLY_BYTES: u64 = 4 * 1024 * 1024;
/// The most the applier takes at once, so that under backpressure syncs are released a slice
/// at a time rather than all after one long apply.
const APPLY_CHUNK_KEYS: u64 = 8192;
const APPLY_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Keys of deleted queues removed at a time, between sets of operations.
const SWEEP_KEYS: usize = 2048;
/// How often the checkpointer flushes sled and drops dead log segments.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Compaction runs every this many checkpoints (it scans every stored message's location), and
/// moves at most this many bodies per run, this many per logged operation.
const COMPACT_EVERY: u32 = 12;
const COMPACT_MAX_MOVES: usize = 50_000;
const MOVES_PER_OP: usize = 256;
/// Lazy operations reach the disk (fdatasync) at least this often.
const LAZY_SYNC_EVERY: Duration = Duration::from_millis(200);
/// Group commit: how long the committer waits for as many callers as its last sync answered
/// before writing (measured on 2 cores at 64 connections: ~10% more durable publishes per
/// second than syncing at the first caller, p99 unchanged; a lone caller never waits).
const GATHER: Duration = Duration::from_micros(300);

type Waiter = tokio::sync::oneshot::Sender<StoreResult<()>>;

/// The pipeline between callers, the committer and the applier.
#[derive(Default)]
struct Pipeline {
    next_lsn: u64,
    /// Operations not yet applied to sled, with their logged size and their weight (sled keys).
    ops: VecDeque<(u64, Op, u32, u32)>,
    /// Frames not yet written to the log: (segment id, bytes), oldest first.
    unwritten: Vec<(u64, Vec<u8>)>,
    /// The segment new frames go to (0: none yet), and its length so far, buffered included.
    segment: u64,
    segment_len: u64,
    written_lsn: u64,
    synced_lsn: u64,
    applied_lsn: u64,
    waiters: Vec<(u64, Waiter)>,
    /// Bodies appended but not yet applied (reads must still find them).
    bodies: HashMap<(Uuid, u64), Arc<MessageBody>>,
    /// Logged bytes and weight of `ops`, and of the operations the applier is applying now.
    queued: Load,
    applying: Load,
    /// When the oldest operation in `ops` was queued.
    queued_since: Option<Instant>,
    /// Whether the committer / the applier sleeps waiting for work: only then is a wake-up
    /// (a futex call) worth making.
    committer_idle: bool,
    applier_idle: bool,
    /// While the committer gathers callers for a group commit: wake it once this many wait.
    gather_target: usize,
    /// The applier waits for the log to be written (it applies only what the log holds, so
    /// that sled never points at bytes that are not there).
    write_wanted: bool,
    /// Per log segment, the messages in sled whose bodies are in it, as of `applied_lsn`.
    uses: HashMap<u64, SegmentUse>,
    /// Whether deleted queues' keys are still being removed, and how many slices were.
    sweeping: bool,
    swept: u64,
    /// Deleted queues (their messages must read as gone before they are swept).
    gone: HashSet<Uuid>,
    closing: bool,
    error: Option<StoreError>,
}

impl Pipeline {
    /// Whether the applier is too far behind for a sync to be answered (backpressure).
    fn lagging(&self) -> bool {
        self.queued.keys + self.applying.keys > MAX_LAG_KEYS || self.queued.bytes + self.applying.bytes > MAX_LAG_BYTES
    }
}

/// An amount of unapplied work.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    bytes: u64,
    keys: u64,
}

impl Load {
    fn at_least(self, bytes: u64, keys: u64) -> bool {
        self.bytes >= bytes || self.keys >= keys
    }
}

struct Shared {
    db: sled::Db,
    segments: Arc<Segments>,
    pipe: Mutex<Pipeline>,
    /// Wake the committer (a sync waits, the applier wants the log written), the applier (work
    /// queued, shutdown) and the checkpointer (shutdown).
    commit_cv: Condvar,
    apply_cv: Condvar,
    checkpoint_cv: Condvar,
    /// Signalled after every applied set of operations (flush_blocking waits on it).
    applied_cv: Condvar,
    flushes: AtomicU64,
    syncs: AtomicU64,
    /// Held by the committer around each write+fsync; tests take it to make batching observable.
    gate: Mutex<()>,
    /// The applied lsn and sweep count of the last completed checkpoint.
    durable: AtomicU64,
    durable_swept: AtomicU64,
    /// Size at which the log starts a new segment.
    segment_bytes: u64,
}

/// The embedded store.
pub struct SledStore {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Deletes the log segments no stored message points into and whose operations sled holds
/// durably (all below `durable`, the lsn of a completed flush). `next` is the id the segment
/// after the last one on disk has or will have.
fn drop_dead_segments(
    segments: &Segments,
    uses: &HashMap<u64, SegmentUse>,
    durable: u64,
    next: u64,
) -> StoreResult<usize> {
    let mut ids = segments.ids();
    ids.push(next);
    let mut dropped = 0;
    for w in ids.windows(2) {
        let (id, following) = (w[0], w[1]);
        // Every operation in `id` has an lsn below `following`.
        if following <= durable + 1 && following > id && !uses.contains_key(&id) {
            segments.delete(id)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

impl SledStore {
    /// Opens (or creates) the store, replaying whatever the log holds beyond sled's state.
    pub fn open(opts: &SledOptions) -> StoreResult<Self> {
        let config = sled::Config::new()
            .path(opts.path.join("sled"))
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(Some(opts.flush_every_ms.max(1)))
            .mode(sled::Mode::HighThroughput);
        // Reopened in the same process right after a close, sled's I/O threads may still hold
        // its file lock for a moment: wait for them (up to 2 s) rather than fail.
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let mut applier = Applier::new(db.clone())?;
        let applied = match db.get(b"L")? {
            Some(v) => u64_at(&v, 0)?,
            None => 0,
        };
        let segments = Segments::open(&opts.path.join("wal"))?;
        let mut last = applied;
        let mut replayed = 0;
        for id in segments.ids() {
            let bytes = segments.read_segment(id)?;
            let mut replay = Vec::new();
            for f in frames(&bytes) {
                if f.lsn > applied {
                    replay.push((f.lsn, Op::decode(f.payload, id, f.offset)?));
                }
                last = last.max(f.lsn);
            }
            replayed += replay.len();
            applier.apply(&replay)?;
        }
        if replayed > 0 {
            tracing::info!(operations = replayed, "replayed the write-ahead log");
        }
        db.flush()?;
        // New frames go to a new segment whose id is above `last`.
        drop_dead_segments(&segments, applier.uses(), last, last + 1)?;
        let shared = Arc::new(Shared {
            db,
            segments: segments.clone(),
            pipe: Mutex::new(Pipeline {
                next_lsn: last,
                written_lsn: last,
                synced_lsn: last,
                applied_lsn: last,
                uses: applier.uses().clone(),
                sweeping: applier.sweeping(),
                gone: applier.swept_queues(),
                ..Pipeline::default()
            }),
            commit_cv: Condvar::new(),
            apply_cv: Condvar::new(),
            checkpoint_cv: Condvar::new(),
            applied_cv: Condvar::new(),
            flushes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            gate: Mutex::new(()),
            durable: AtomicU64::new(last),
            durable_swept: AtomicU64::new(0),
            segment_bytes: opts.segment_bytes,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError(format!("cannot start the {name} thread: {e}")))
        };
        let wal = Wal::new(segments);
        let threads = vec![
            spawn("qgate-commit", {
                let s = shared.clone();
                Box::new(move || committer(s, wal))
            })?,
            spawn("qgate-apply", {
                let s = shared.clone();
                Box::new(move || apply_loop(s, applier))
            })?,
            spawn("qgate-checkpoint", {
                let s = shared.clone();
                Box::new(move || checkpoint_loop(s))
            })?,
        ];
        Ok(SledStore { shared, threads: Mutex::new(threads) })
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

    /// Log segments on disk (tests: segments are dropped once dead).
    pub fn log_segments(&self) -> usize {
        self.shared.segments.ids().len()
    }

    /// Applies everything (deleted queues swept too), then checkpoints at once: flushes sled and
    /// drops the log segments no longer needed (tests; the checkpointer does this every few
    /// seconds).
    pub fn checkpoint_now(&self) -> StoreResult<()> {
        loop {
            self.flush_blocking()?;
            let mut p = self.shared.pipe.lock();
            if !p.sweeping {
                break;
            }
            self.shared.apply_cv.notify_one();
            self.shared.applied_cv.wait_for(&mut p, Duration::from_millis(20));
        }
        checkpoint(&self.shared)
    }

    /// Compacts sparse log segments at once, then checkpoints so the emptied ones go (tests;
    /// the checkpointer compacts every minute or so). Returns how many bodies moved.
    pub fn compact_now(&self) -> StoreResult<usize> {
        self.checkpoint_now()?;
        let moved = compact(&self.shared)?;
        self.checkpoint_now()?;
        Ok(moved)
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
        self.shared.submit(op, None)
    }
}

impl Shared {
    /// Submits an operation; `body` is a message body it makes readable before it is applied
    /// (a transfer's target).
    ///
    /// Nobody is woken here unless the applier sleeps with nothing to do or much is queued:
    /// the committer writes when a sync asks (or lazily), the applier collects for a window.
    fn submit(&self, mut op: Op, body: Option<((Uuid, u64), Arc<MessageBody>)>) -> StoreResult<()> {
        let enc = op.encode();
        let mut p = self.pipe.lock();
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        p.next_lsn += 1;
        let lsn = p.next_lsn;
        if p.segment == 0 || p.segment_len >= self.segment_bytes {
            p.segment = lsn;
            p.segment_len = 0;
        }
        let (segment, payload_at) = (p.segment, p.segment_len + HEADER as u64);
        match p.unwritten.last_mut() {
            Some((id, buf)) if *id == segment => frame(buf, lsn, &enc.payload),
            _ => {
                let mut buf = Vec::with_capacity(enc.payload.len() + HEADER);
                frame(&mut buf, lsn, &enc.payload);
                p.unwritten.push((segment, buf));
            }
        }
        p.segment_len += (HEADER + enc.payload.len()) as u64;
        if let Op::Append(q, entries) = &mut op {
            for (e, (at, len)) in entries.iter_mut().zip(&enc.bodies) {
                e.loc = BodyLoc { segment, offset: payload_at + u64::from(*at), len: *len };
                if let Some(b) = &e.body {
                    p.bodies.insert((*q, e.meta.seq), b.clone());
                }
            }
        }
        if let Op::Relocate(moves) = &mut op {
            for (m, (at, len)) in moves.iter_mut().zip(&enc.bodies) {
                m.loc = BodyLoc { segment, offset: payload_at + u64::from(*at), len: *len };
                // Logged; until applied, reads still find the body at its old place.
                m.bytes = None;
            }
        }
        if let Some((k, b)) = body {
            p.bodies.insert(k, b);
        }
        let weight = op.weight() as u32;
        p.ops.push_back((lsn, op, enc.payload.len() as u32, weight));
        p.queued.bytes += enc.payload.len() as u64;
        p.queued.keys += u64::from(weight);
        if p.queued_since.is_none() {
            p.queued_since = Some(Instant::now());
        }
        let wake = p.applier_idle
            && (p.ops.len() == 1 || p.queued.at_least(APPLY_EARLY_BYTES, APPLY_EARLY_KEYS) || p.lagging());
        drop(p);
        if wake {
            self.apply_cv.notify_one();
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
    let mut last_batch = 0usize;
    loop {
        let (chunks, last) = {
            let mut p = shared.pipe.lock();
            loop {
                if p.error.is_some() {
                    return;
                }
                // Every write is synced, so what is unsynced is what is unwritten.
                let unwritten = !p.unwritten.is_empty();
                let lazy_due = last_sync.elapsed() >= LAZY_SYNC_EVERY;
                if unwritten && (lazy_due || p.closing || p.write_wanted || !p.waiters.is_empty()) {
                    // Group commit: when callers are arriving concurrently (the last sync
                    // answered several), give the rest of them a moment to join this sync.
                    if last_batch > 1 && !p.waiters.is_empty() && p.waiters.len() < last_batch && !p.closing {
                        let until = Instant::now() + GATHER;
                        p.gather_target = last_batch;
                        while p.waiters.len() < last_batch && !p.closing {
                            if shared.commit_cv.wait_until(&mut p, until).timed_out() {
                                break;
                            }
                        }
                        p.gather_target = 0;
                    }
                    last_batch = p.waiters.len();
                    break;
                }
                if p.closing {
                    return;
                }
                // Waiters blocked only by the applier are answered when it moves on.
                complete(&mut p, &shared);
                p.committer_idle = true;
                shared.commit_cv.wait_for(&mut p, LAZY_SYNC_EVERY);
                p.committer_idle = false;
            }
            (std::mem::take(&mut p.unwritten), p.next_lsn)
        };
        let _held = shared.gate.lock();
        let mut result = Ok(());
        for (segment, bytes) in &chunks {
            result = wal.write(*segment, bytes);
            if result.is_err() {
                break;
            }
        }
        drop(chunks);
        let result = result.and_then(|()| wal.sync());
        last_sync = Instant::now();
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        let mut p = shared.pipe.lock();
        match result {
            Ok(()) => {
                p.written_lsn = p.written_lsn.max(last);
                p.synced_lsn = p.synced_lsn.max(last);
                complete(&mut p, &shared);
                if std::mem::take(&mut p.write_wanted) {
                    shared.apply_cv.notify_one();
                }
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
        if lsn <= synced && !p.lagging() {
            let (_, w) = p.waiters.swap_remove(i);
            shared.syncs.fetch_add(1, Ordering::Relaxed);
            let _ = w.send(Ok(()));
        } else {
            i += 1;
        }
    }
}

fn apply_loop(shared: Arc<Shared>, mut applier: Applier) {
    // Sweeping deleted queues takes at most a quarter of the applier's time: it is cleanup,
    // and on a small machine it competes with serving.
    let mut next_sweep = Instant::now();
    loop {
        let (ops, load) = {
            let mut p = shared.pipe.lock();
            loop {
                // Closing: what is not applied yet is in the log and is replayed at the next
                // open; sled is left alone (a graceful shutdown applies everything first, see
                // flush_blocking).
                if p.closing || p.error.is_some() {
                    return;
                }
                let wait = match p.queued_since {
                    None => None,
                    Some(since) => {
                        let urgent = p.queued.at_least(APPLY_EARLY_BYTES, APPLY_EARLY_KEYS)
                            || !p.waiters.is_empty() && p.lagging()
                            || since.elapsed() >= APPLY_WINDOW;
                        if urgent { Some(Duration::ZERO) } else { Some(APPLY_WINDOW.saturating_sub(since.elapsed())) }
                    }
                };
                if wait == Some(Duration::ZERO) {
                    if p.ops.front().is_some_and(|(lsn, ..)| *lsn <= p.written_lsn) {
                        break;
                    }
                    // Only what the log holds can be applied: ask for it to be written.
                    p.write_wanted = true;
                    if p.committer_idle {
                        shared.commit_cv.notify_one();
                    }
                    let sweep_in = next_sweep.saturating_duration_since(Instant::now());
                    if applier.sweeping() && sweep_in.is_zero() {
                        break;
                    }
                    p.applier_idle = true;
                    let nap = if applier.sweeping() { sweep_in.min(LAZY_SYNC_EVERY) } else { LAZY_SYNC_EVERY };
                    shared.apply_cv.wait_for(&mut p, nap);
                    p.applier_idle = false;
                    continue;
                }
                let sweep_in = next_sweep.saturating_duration_since(Instant::now());
                if applier.sweeping() && sweep_in.is_zero() {
                    // Nothing due: meanwhile, remove a slice of a deleted queue's keys.
                    break;
                }
                p.applier_idle = true;
                let wait = if applier.sweeping() { Some(wait.map_or(sweep_in, |w| w.min(sweep_in))) } else { wait };
                match wait {
                    Some(d) => {
                        shared.apply_cv.wait_for(&mut p, d);
                    }
                    None => shared.apply_cv.wait(&mut p),
                }
                p.applier_idle = false;
            }
            let mut ops = Vec::new();
            let mut load = Load::default();
            let written = p.written_lsn;
            while !load.at_least(APPLY_CHUNK_BYTES, APPLY_CHUNK_KEYS)
                && p.ops.front().is_some_and(|(lsn, ..)| *lsn <= written)
            {
                let (lsn, op, bytes, keys) = p.ops.pop_front().expect("a front operation");
                ops.push((lsn, op));
                load.bytes += u64::from(bytes);
                load.keys += u64::from(keys);
            }
            p.queued.bytes -= load.bytes;
            p.queued.keys -= load.keys;
            p.applying = load;
            // What is left over is due at once.
            p.queued_since =
                (!p.ops.is_empty()).then(|| Instant::now().checked_sub(APPLY_WINDOW).unwrap_or_else(Instant::now));
            (ops, load)
        };
        if ops.is_empty() {
            let started = Instant::now();
            let result = applier.sweep(SWEEP_KEYS);
            next_sweep = Instant::now() + 3 * started.elapsed();
            let mut p = shared.pipe.lock();
            match result {
                Ok(finished) => {
                    p.uses.clone_from(applier.uses());
                    p.sweeping = applier.sweeping();
                    p.swept += 1;
                    // Its messages are no longer in sled at all.
                    if let Some(q) = finished {
                        p.gone.remove(&q);
                    }
                }
                Err(e) => {
                    fail(&mut p, e);
                    return;
                }
            }
            drop(p);
            shared.applied_cv.notify_all();
            continue;
        }
        let mut ops = ops;
        let last = ops.last().map_or(0, |(l, _)| *l);
        // Bodies held in memory for these operations: readable through sled once applied.
        let held: Vec<(Uuid, u64)> = ops
            .iter()
            .flat_map(|(_, op)| match op {
                Op::Append(q, entries) => entries.iter().map(|e| (*q, e.meta.seq)).collect::<Vec<_>>(),
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
                keys = load.keys,
                millis = started.elapsed().as_millis() as u64,
                "slow apply"
            );
        }
        drop(ops);
        let mut p = shared.pipe.lock();
        match result {
            Ok(()) => {
                p.applied_lsn = last;
                p.applying = Load::default();
                p.uses.clone_from(applier.uses());
                p.sweeping = applier.sweeping();
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

/// Flushes sled, then deletes the log segments it no longer needs.
fn checkpoint(shared: &Shared) -> StoreResult<()> {
    let (applied, swept, uses, next) = {
        let p = shared.pipe.lock();
        // The uses as of `applied_lsn`: what sled holds durably after the flush.
        let next = if p.segment == 0 { p.next_lsn + 1 } else { p.segment };
        (p.applied_lsn, p.swept, p.uses.clone(), next)
    };
    if applied <= shared.durable.load(Ordering::Relaxed) && swept <= shared.durable_swept.load(Ordering::Relaxed) {
        return Ok(());
    }
    // Everything applied before the flush starts is durable once it returns.
    shared.db.flush()?;
    shared.durable.fetch_max(applied, Ordering::Relaxed);
    shared.durable_swept.fetch_max(swept, Ordering::Relaxed);
    drop_dead_segments(&shared.segments, &uses, applied, next)?;
    Ok(())
}

/// Compaction: the bodies still in use in sparse log segments (stored messages point at less
/// than half of the segment) are copied to the end of the log and their messages repointed, so
/// the old segments can go. Without it, one long-lived message would keep a whole segment of
/// otherwise dead bodies. Returns how many bodies it moved.
fn compact(shared: &Shared) -> StoreResult<usize> {
    let (uses, current) = {
        let p = shared.pipe.lock();
        (p.uses.clone(), p.segment)
    };
    let durable = shared.durable.load(Ordering::Relaxed);
    let ids = shared.segments.ids();
    let mut sparse = HashSet::new();
    for w in ids.windows(2) {
        let (id, following) = (w[0], w[1]);
        // Closed, and every operation in it applied and flushed.
        if id == current || following > durable + 1 {
            continue;
        }
        if let Some(u) = uses.get(&id)
            && u.bytes * 2 < shared.segments.size(id)
        {
            sparse.insert(id);
        }
    }
    if sparse.is_empty() {
        return Ok(0);
    }
    let mut found = Vec::new();
    for kv in shared.db.scan_prefix([b'M']) {
        let (k, v) = kv?;
        let loc = loc_of(&v)?;
        if sparse.contains(&loc.segment) {
            found.push((uuid_at(&k, 1)?, u64_at(&k, 17)?, loc));
            if found.len() >= COMPACT_MAX_MOVES {
                break;
            }
        }
    }
    for chunk in found.chunks(MOVES_PER_OP) {
        let mut moves = Vec::with_capacity(chunk.len());
        for &(queue, seq, from) in chunk {
            if let Some(bytes) = shared.segments.read_at(from.segment, from.offset, from.len)? {
                moves.push(Move { queue, seq, from, bytes: Some(bytes), loc: from });
            }
        }
        if !moves.is_empty() {
            shared.submit(Op::Relocate(moves), None)?;
        }
    }
    Ok(found.len())
}

/// Every few seconds, a checkpoint; every minute or so, a compaction. Its own thread, because a
/// flush of a large dirty cache can take seconds, and the applier must not stall (and hold back
/// every sync) meanwhile.
fn checkpoint_loop(shared: Arc<Shared>) {
    let mut rounds = 0u32;
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
        if let Err(e) = checkpoint(&shared) {
            fail(&mut shared.pipe.lock(), e);
            return;
        }
        rounds += 1;
        if rounds.is_multiple_of(COMPACT_EVERY)
            && let Err(e) = compact(&shared)
        {
            fail(&mut shared.pipe.lock(), e);
            return;
        }
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
                    queues.entry(q).or_default().messages.push(stored_meta(&v)?.meta);
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
        self.submit(Op::DeleteQueue(queue))?;
        self.shared.pipe.lock().gone.insert(queue);
        Ok(())
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
        let entries = messages
            .iter()
            .map(|(meta, body)| AppendEntry {
                meta: meta.clone(),
                body: Some(Arc::new(body.clone())),
                loc: BodyLoc { segment: 0, offset: 0, len: 0 },
            })
            .collect();
        self.submit(Op::Append(queue, entries))
    }

    fn body(&self, queue: Uuid, seq: u64) -> StoreResult<Option<MessageBody>> {
        {
            let p = self.shared.pipe.lock();
            if p.gone.contains(&queue) {
                return Ok(None);
            }
            if let Some(b) = p.bodies.get(&(queue, seq)).cloned() {
                drop(p);
                return Ok(Some((*b).clone()));
            }
        }
        // Applied: sled knows where in the log it is (and the log has it: only written
        // operations are applied).
        let Some(v) = self.shared.db.get(mkey(queue, seq))? else { return Ok(None) };
        let loc = loc_of(&v)?;
        match self.shared.segments.read_at(loc.segment, loc.offset, loc.len)? {
            Some(bytes) => Ok(Some(decode(&bytes, "body")?)),
            // Removed and its segment dropped since the lookup.
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
        // The copy shares the source's body in the log; until the applier gets there, reads of
        // the copy find the body in memory.
        let Some(body) = self.body(from, from_seq)? else {
            return Err(StoreError(format!("transfer of missing message {from}/{from_seq}")));
        };
        self.shared.submit(
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
    fn flush(&self) -> StoreResult<()> {
        self.flush_blocking()
    }

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
                None if p.synced_lsn >= p.next_lsn && !p.lagging() => {
                    let _ = tx.send(Ok(()));
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let lsn = p.next_lsn;
                    p.waiters.push((lsn, tx));
                    // A busy committer looks at the waiters again when its write is done.
                    if p.committer_idle || p.gather_target > 0 && p.waiters.len() >= p.gather_target {
                        self.shared.commit_cv.notify_one();
                    }
                }
            }
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(StoreError("the store is closed".into()))) })
    }
}
