//! Recovery from a sled failure. sled keeps the first I/O error it meets (a full disk while it
//! writes its own log, say) and fails every later call with it, so the only way back is to drop
//! the database and open it again: sled's own crash recovery. The applier does that, once a
//! second, until it works; then it replays the log beyond what sled holds — as a start does —
//! and carries on. Meanwhile the store is in a *sled fault* (see the `Store` docs): syncs fail
//! at once, appends are refused, reads that need sled fail as unavailable.

use super::committer::RETRY_EVERY;
use super::pipeline::{complete, fail_waiters};
use super::*;

/// Puts the store in a sled fault (the applier notices and reopens sled).
pub(super) fn sled_failed(shared: &Shared, e: StoreError) {
    let mut p = shared.pipe.lock();
    if p.sled_fault.is_none() {
        tracing::error!(error = %e, "sled failed: writes are refused until it is reopened");
        p.sled_fault = Some(e);
    }
    fail_waiters(&mut p);
    drop(p);
    shared.apply_cv.notify_one();
}

/// The bodies that `ops` make readable through sled once applied (until then they are read
/// from memory).
pub(super) fn held_bodies(ops: &[(u64, Op)]) -> Vec<(Uuid, u64)> {
    ops.iter()
        .flat_map(|(_, op)| match op {
            Op::Append(q, entries) => entries.iter().map(|e| (*q, e.meta.seq)).collect::<Vec<_>>(),
            Op::Transfer { to, meta, .. } => vec![(*to, meta.seq)],
            _ => Vec::new(),
        })
        .collect()
}

/// Drops the failed database (`failed` is the applier that held it) and reopens it, trying
/// every second until it works or the store closes (`None`). `held` are the bodies of the
/// operations the failed batch was applying.
pub(super) fn reopen(shared: &Shared, failed: Applier, held: Vec<(Uuid, u64)>) -> Option<Applier> {
    drop(failed);
    *shared.db.write() = None;
    loop {
        {
            let mut p = shared.pipe.lock();
            if p.closing {
                return None;
            }
            shared.apply_cv.wait_for(&mut p, RETRY_EVERY);
            if p.closing {
                return None;
            }
        }
        match try_reopen(shared, &held) {
            Ok(applier) => return Some(applier),
            Err(e) => {
                tracing::debug!(error = %e, "sled cannot be reopened yet");
                let mut p = shared.pipe.lock();
                p.sled_fault = Some(e);
                fail_waiters(&mut p);
            }
        }
    }
}

fn try_reopen(shared: &Shared, held: &[(Uuid, u64)]) -> StoreResult<Applier> {
    let db = open_sled(&shared.sled_config, shared.faults.as_deref())?;
    let mut applier = Applier::new(db.clone())?;
    let applied = match db.get(b"L")? {
        Some(v) => u64_at(&v, 0)?,
        None => 0,
    };
    // Everything the log holds (written and synced) up to here is replayed; what comes after
    // is still queued for the applier.
    let upto = shared.pipe.lock().written_lsn;
    let (_, replayed) = replay(&mut applier, &shared.segments, applied, upto)?;
    faults::check(shared.faults.as_deref(), Point::Sled)?;
    db.flush()?;
    // Readers find the bodies in sled from now on (installed before they leave memory, and
    // before the pipeline is locked: `Shared::db` locks the other way round).
    *shared.db.write() = Some(db);
    let mut p = shared.pipe.lock();
    let mut done = Vec::new();
    while p.ops.front().is_some_and(|(lsn, ..)| *lsn <= upto) {
        let (lsn, op, bytes, keys) = p.ops.pop_front().expect("a front operation");
        p.queued.bytes -= u64::from(bytes);
        p.queued.keys -= u64::from(keys);
        done.push((lsn, op));
    }
    for k in held.iter().chain(&held_bodies(&done)) {
        p.bodies.remove(k);
    }
    p.applying = Load::default();
    p.applied_lsn = p.applied_lsn.max(upto);
    p.uses.clone_from(applier.uses());
    p.sweeping = applier.sweeping();
    p.queued_since = (!p.ops.is_empty()).then(Instant::now);
    if let Some(e) = p.sled_fault.take() {
        tracing::warn!(was = %e, replayed, "sled reopened: writes are accepted again");
    }
    complete(&mut p, shared);
    drop(p);
    shared.applied_cv.notify_all();
    Ok(applier)
}
