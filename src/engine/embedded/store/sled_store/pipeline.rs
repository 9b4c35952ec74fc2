//! The pipeline between callers, the committer and the applier: the state they share under
//! one mutex, and how an operation enters it.

use super::*;

pub(super) type Waiter = tokio::sync::oneshot::Sender<StoreResult<()>>;

/// The pipeline between callers, the committer and the applier.
#[derive(Default)]
pub(super) struct Pipeline {
    pub(super) next_lsn: u64,
    /// Operations not yet applied to sled, with their logged size and their weight (sled keys).
    pub(super) ops: VecDeque<(u64, Op, u32, u32)>,
    /// Frames not yet written to the log: (segment id, bytes), oldest first.
    pub(super) unwritten: Vec<(u64, Vec<u8>)>,
    /// The segment new frames go to (0: none yet), and its length so far, buffered included.
    pub(super) segment: u64,
    pub(super) segment_len: u64,
    pub(super) written_lsn: u64,
    pub(super) synced_lsn: u64,
    pub(super) applied_lsn: u64,
    pub(super) waiters: Vec<(u64, Waiter)>,
    /// Bodies appended but not yet applied (reads must still find them).
    pub(super) bodies: HashMap<(Uuid, u64), Arc<MessageBody>>,
    /// Logged bytes and weight of `ops`, and of the operations the applier is applying now.
    pub(super) queued: Load,
    pub(super) applying: Load,
    /// When the oldest operation in `ops` was queued.
    pub(super) queued_since: Option<Instant>,
    /// Whether the committer / the applier sleeps waiting for work: only then is a wake-up
    /// (a futex call) worth making.
    pub(super) committer_idle: bool,
    pub(super) applier_idle: bool,
    /// While the committer gathers callers for a group commit: wake it once this many wait.
    pub(super) gather_target: usize,
    /// The applier waits for the log to be written (it applies only what the log holds, so
    /// that sled never points at bytes that are not there).
    pub(super) write_wanted: bool,
    /// Per log segment, the messages in sled whose bodies are in it, as of `applied_lsn`.
    pub(super) uses: HashMap<u64, SegmentUse>,
    /// Whether deleted queues' keys are still being removed, and how many slices were.
    pub(super) sweeping: bool,
    pub(super) swept: u64,
    /// Deleted queues (their messages must read as gone before they are swept).
    pub(super) gone: HashSet<Uuid>,
    pub(super) closing: bool,
    /// A failure nothing recovers from (a corrupt record read back): every call fails.
    pub(super) error: Option<StoreError>,
    /// The log cannot be written (the committer retries), or sled failed (the applier reopens
    /// it): syncs fail at once, appends are refused, other changes wait in memory.
    pub(super) log_fault: Option<StoreError>,
    pub(super) sled_fault: Option<StoreError>,
}

impl Pipeline {
    /// The fault the store is in, if any.
    pub(super) fn fault(&self) -> Option<&StoreError> {
        self.error.as_ref().or(self.log_fault.as_ref()).or(self.sled_fault.as_ref())
    }

    /// Whether the applier is too far behind for a sync to be answered (backpressure).
    pub(super) fn lagging(&self) -> bool {
        self.queued.keys + self.applying.keys > MAX_LAG_KEYS || self.queued.bytes + self.applying.bytes > MAX_LAG_BYTES
    }
}

/// An amount of unapplied work.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Load {
    pub(super) bytes: u64,
    pub(super) keys: u64,
}

impl Load {
    pub(super) fn at_least(self, bytes: u64, keys: u64) -> bool {
        self.bytes >= bytes || self.keys >= keys
    }
}

pub(super) struct Shared {
    /// The database; `None` while it is being reopened after a failure.
    pub(super) db: RwLock<Option<sled::Db>>,
    pub(super) sled_config: sled::Config,
    pub(super) faults: Option<Arc<Faults>>,
    pub(super) segments: Arc<Segments>,
    pub(super) pipe: Mutex<Pipeline>,
    /// Wake the committer (a sync waits, the applier wants the log written), the applier (work
    /// queued, shutdown) and the checkpointer (shutdown).
    pub(super) commit_cv: Condvar,
    pub(super) apply_cv: Condvar,
    pub(super) checkpoint_cv: Condvar,
    /// Signalled after every applied set of operations (flush_blocking waits on it).
    pub(super) applied_cv: Condvar,
    pub(super) flushes: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) checkpoints: AtomicU64,
    /// Held by the committer around each write+fsync; tests take it to make batching observable.
    pub(super) gate: Mutex<()>,
    /// The applied lsn and sweep count of the last completed checkpoint.
    pub(super) durable: AtomicU64,
    pub(super) durable_swept: AtomicU64,
    /// Size at which the log starts a new segment.
    pub(super) segment_bytes: u64,
}

impl Shared {
    /// The database, unless it is being reopened after a failure.
    pub(super) fn db(&self) -> StoreResult<sled::Db> {
        // The read guard is released before the pipeline is locked: the reopening applier
        // takes the write lock while it holds the pipeline.
        let db = self.db.read().clone();
        db.ok_or_else(|| {
            self.pipe
                .lock()
                .fault()
                .cloned()
                .unwrap_or_else(|| StoreError::unavailable("storage failing: the database is being reopened"))
        })
    }

    /// Submits an operation; `body` is a message body it makes readable before it is applied
    /// (a transfer's target).
    ///
    /// Nobody is woken here unless the applier sleeps with nothing to do or much is queued:
    /// the committer writes when a sync asks (or lazily), the applier collects for a window.
    pub(super) fn submit(&self, mut op: Op, body: Option<((Uuid, u64), Arc<MessageBody>)>) -> StoreResult<()> {
        let enc = op.encode();
        let mut p = self.pipe.lock();
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        // New messages are refused in a fault (the caller has changed nothing yet, and a
        // client retrying a publish must not fill memory); every other change is kept, in
        // order, and written when the store recovers.
        if let (Some(e), Op::Append(..)) = (p.fault(), &op) {
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

/// Answers every waiter with the fault the store is in.
pub(super) fn fail_waiters(p: &mut Pipeline) {
    let Some(e) = p.fault().cloned() else { return };
    for (_, w) in p.waiters.drain(..) {
        let _ = w.send(Err(e.clone()));
    }
}

/// Answers every waiter that can be answered now.
pub(super) fn complete(p: &mut Pipeline, shared: &Shared) {
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
