//! The committer thread: writes the log buffer and fdatasyncs it, for everything buffered so
//! far however many callers wait (group commit).
//!
//! A failed write or fsync (a full disk, an I/O error) puts the store in a log fault: the
//! callers waiting are answered "unavailable", what was not confirmed by an fsync goes back to
//! the front of the buffer, and the committer tries again every [`RETRY_EVERY`] (the log cuts
//! itself back to its last confirmed length first, see [`Wal`]). The first success ends the
//! fault.

use super::pipeline::{complete, fail_waiters};
use super::*;

/// How often a failed log write is tried again.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

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
                // In a fault, wait for the next retry (or the close, which tries once more).
                if p.log_fault.is_some() && !p.closing && last_sync.elapsed() < RETRY_EVERY {
                    fail_waiters(&mut p);
                    shared.commit_cv.wait_for(&mut p, RETRY_EVERY.saturating_sub(last_sync.elapsed()));
                    continue;
                }
                // Every write is synced, so what is unsynced is what is unwritten.
                let unwritten = !p.unwritten.is_empty();
                let lazy_due = last_sync.elapsed() >= LAZY_SYNC_EVERY || p.log_fault.is_some();
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
                if p.log_fault.is_some() {
                    // Nothing left to write: the log is healthy again.
                    recovered(&mut p);
                    continue;
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
        let (result, durable) = write_out(&mut wal, &chunks);
        last_sync = Instant::now();
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        let mut p = shared.pipe.lock();
        match result {
            Ok(()) => {
                p.written_lsn = p.written_lsn.max(last);
                p.synced_lsn = p.synced_lsn.max(last);
                if p.log_fault.is_some() {
                    recovered(&mut p);
                }
                complete(&mut p, &shared);
                if std::mem::take(&mut p.write_wanted) {
                    shared.apply_cv.notify_one();
                }
            }
            Err(e) => {
                if p.log_fault.is_none() {
                    tracing::error!(error = %e, "the log cannot be written: writes are refused until it can");
                }
                p.log_fault = Some(e);
                put_back(&mut p, chunks, durable);
                fail_waiters(&mut p);
                if p.closing {
                    // The close tried once more; what is lost is only what no caller was told
                    // is durable (see flush_blocking).
                    return;
                }
            }
        }
    }
}

/// Writes and fsyncs `chunks`; on failure also returns how many of them are durable anyway
/// (those in segments closed, and synced, before the failure).
fn write_out(wal: &mut Wal, chunks: &[(u64, Vec<u8>)]) -> (StoreResult<()>, usize) {
    let mut durable = 0;
    for (i, (segment, bytes)) in chunks.iter().enumerate() {
        if wal.segment().is_some_and(|s| s != *segment) {
            // A segment is complete and durable before the next one begins.
            if let Err(e) = wal.sync() {
                return (Err(e), durable);
            }
            durable = i;
        }
        if let Err(e) = wal.write(*segment, bytes) {
            return (Err(e), durable);
        }
    }
    match wal.sync() {
        Ok(()) => (Ok(()), chunks.len()),
        Err(e) => (Err(e), durable),
    }
}

/// Puts what a failed write did not make durable back in front of what was buffered since (the
/// same bytes for the same places in the log).
fn put_back(p: &mut Pipeline, chunks: Vec<(u64, Vec<u8>)>, durable: usize) {
    let mut again: Vec<(u64, Vec<u8>)> = chunks.into_iter().skip(durable).collect();
    for (segment, bytes) in std::mem::take(&mut p.unwritten) {
        match again.last_mut() {
            Some((s, buf)) if *s == segment => buf.extend_from_slice(&bytes),
            _ => again.push((segment, bytes)),
        }
    }
    p.unwritten = again;
}

fn recovered(p: &mut Pipeline) {
    if let Some(e) = p.log_fault.take() {
        tracing::warn!(was = %e, "the log is writable again");
    }
}
