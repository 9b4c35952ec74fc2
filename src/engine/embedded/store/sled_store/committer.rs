//! The committer thread: writes the log buffer and fdatasyncs it, for everything buffered so
//! far however many callers wait (group commit).

use super::pipeline::{complete, fail};
use super::*;

pub(super) fn committer(shared: Arc<Shared>, mut wal: Wal) {
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
