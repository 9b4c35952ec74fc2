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
//!
//! Faults (see the [`Store`] docs): a failed log write puts the store in a *log fault* that the
//! committer retries; a failed sled call (sled keeps its first I/O error for good) puts it in a
//! *sled fault*: the applier drops the database, opens it again once it can — sled's own
//! recovery — and replays the log beyond what sled holds, exactly as a start does.
//!
//! Files by job: [`pipeline`] (what callers, the committer and the applier share; submitting an
//! operation), [`committer`] (log writes and group commit), [`applier`] (sled written behind),
//! [`checkpoint`] (sled flushes, log segment deletion, compaction), [`recover`] (sled reopened
//! after a failure), [`store_impl`] (the [`Store`] operations); this file opens the store and
//! holds its tunables.

mod applier;
mod checkpoint;
mod committer;
mod pipeline;
mod recover;
mod store_impl;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use uuid::Uuid;

use super::apply::{Applier, SegmentUse, loc_of, mkey, stored_meta, u32_at, u64_at, uuid_at};
use super::codec::decode;
use super::faults::{self, Faults, Point};
use super::ops::{AppendEntry, BodyLoc, Move, Op, coalesce};
use super::wal::{HEADER, SEGMENT_BYTES, Segments, Wal, frame, frames};
use super::{QueueSnapshot, Snapshot, Store, StoreError, StoreResult, SyncFuture};
use crate::core::model::{
    DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord, SubscriptionRecord,
};

use self::applier::apply_loop;
use self::checkpoint::{checkpoint, checkpoint_loop, compact, drop_dead_segments};
use self::committer::committer;
use self::pipeline::{Load, Pipeline, Shared};

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
    /// Faults to inject (tests; `None` in production).
    pub faults: Option<Arc<Faults>>,
}

impl SledOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions {
            path: path.into(),
            cache_bytes: 64 * 1024 * 1024,
            flush_every_ms: 1000,
            segment_bytes: SEGMENT_BYTES,
            faults: None,
        }
    }

    fn sled_config(&self) -> sled::Config {
        sled::Config::new()
            .path(self.path.join("sled"))
            .cache_capacity(self.cache_bytes)
            .flush_every_ms(Some(self.flush_every_ms.max(1)))
            .mode(sled::Mode::HighThroughput)
    }
}

/// Opens sled. First removes the snapshot files sled left unfinished: sled writes a snapshot
/// to `snap.<lsn>.generating` and renames it when complete, but at open it reads the newest
/// `snap.*` file whatever its suffix, so a start on a full disk (which leaves an empty
/// `.generating` file) would make every later start fail with "corrupted data" although the
/// data is intact.
fn open_sled(config: &sled::Config, faults: Option<&Faults>) -> StoreResult<sled::Db> {
    let dir = config.get_path();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                std::fs::remove_file(e.path())
                    .map_err(|err| faults::io_error(&format!("remove the unfinished sled snapshot {name}"), err))?;
                tracing::warn!(file = %name, "removed an unfinished sled snapshot");
            }
        }
    }
    faults::check(faults, Point::Sled)?;
    // Reopened in the same process right after a close, sled's I/O threads may still hold
    // its file lock for a moment: wait for them (up to 2 s) rather than fail.
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(sled::Error::Io(e)) => return Err(faults::io_error("open sled", e)),
            other => return Ok(other?),
        }
    }
}

/// Applies the log frames with an lsn in `after+1 ..= upto` to sled (one segment at a time);
/// returns the highest lsn seen in the log and how many operations were applied.
fn replay(applier: &mut Applier, segments: &Segments, after: u64, upto: u64) -> StoreResult<(u64, usize)> {
    let mut last = after;
    let mut replayed = 0;
    for id in segments.ids() {
        let bytes = segments.read_segment(id)?;
        let mut ops = Vec::new();
        for f in frames(&bytes) {
            if f.lsn > after && f.lsn <= upto {
                ops.push((f.lsn, Op::decode(f.payload, id, f.offset)?));
            }
            last = last.max(f.lsn);
        }
        replayed += ops.len();
        applier.apply(&ops)?;
    }
    Ok((last, replayed))
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
/// How long a flush (at close, say) waits for the store to recover from a fault.
const FAULT_PATIENCE: Duration = Duration::from_secs(5);
/// Lazy operations reach the disk (fdatasync) at least this often.
const LAZY_SYNC_EVERY: Duration = Duration::from_millis(200);
/// Group commit: how long the committer waits for as many callers as its last sync answered
/// before writing (measured on 2 cores at 64 connections: ~10% more durable publishes per
/// second than syncing at the first caller, p99 unchanged; a lone caller never waits).
const GATHER: Duration = Duration::from_micros(300);

/// The embedded store.
pub struct SledStore {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl SledStore {
    /// Opens (or creates) the store, replaying whatever the log holds beyond sled's state.
    pub fn open(opts: &SledOptions) -> StoreResult<Self> {
        let config = opts.sled_config();
        let db = open_sled(&config, opts.faults.as_deref())?;
        let mut applier = Applier::new(db.clone())?;
        let applied = match db.get(b"L")? {
            Some(v) => u64_at(&v, 0)?,
            None => 0,
        };
        let segments = Segments::open(&opts.path.join("wal"))?;
        let (last, replayed) = replay(&mut applier, &segments, applied, u64::MAX)?;
        if replayed > 0 {
            tracing::info!(operations = replayed, "replayed the write-ahead log");
        }
        db.flush()?;
        // New frames go to a new segment whose id is above `last`.
        drop_dead_segments(&segments, applier.uses(), last, last + 1)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db)),
            sled_config: config,
            faults: opts.faults.clone(),
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
            compactions: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            gate: Mutex::new(()),
            durable: AtomicU64::new(last),
            durable_swept: AtomicU64::new(0),
            segment_bytes: opts.segment_bytes,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::new(format!("cannot start the {name} thread: {e}")))
        };
        let wal = Wal::new(segments, opts.faults.clone());
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
    /// In a fault it waits for the store to recover for [`FAULT_PATIENCE`] at most, then
    /// returns the fault.
    pub fn flush_blocking(&self) -> StoreResult<()> {
        let mut p = self.shared.pipe.lock();
        let mut faulted_since: Option<Instant> = None;
        while p.applied_lsn < p.next_lsn || p.written_lsn < p.next_lsn {
            if let Some(e) = p.fault() {
                let since = *faulted_since.get_or_insert_with(Instant::now);
                if p.error.is_some() || since.elapsed() >= FAULT_PATIENCE {
                    return Err(e.clone());
                }
            }
            self.shared.commit_cv.notify_one();
            self.shared.apply_cv.notify_one();
            self.shared.applied_cv.wait_for(&mut p, Duration::from_millis(20));
        }
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        drop(p);
        self.shared.db()?.flush()?;
        Ok(())
    }

    /// The fault the store is in (tests).
    pub fn fault(&self) -> Option<StoreError> {
        self.shared.pipe.lock().fault().cloned()
    }

    fn submit(&self, op: Op) -> StoreResult<()> {
        self.shared.submit(op, None)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
