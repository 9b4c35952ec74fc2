//! The checkpointer thread: flushes sled every few seconds, deletes the log segments sled
//! holds durably and no message points into, and now and then compacts mostly-dead segments.

use super::faults::Step;
use super::recover::sled_failed;
use super::*;

/// Deletes the log segments no stored message points into and whose operations sled holds
/// durably (all below `durable`, the lsn of a completed flush). `next` is the id the segment
/// after the last one on disk has or will have.
pub(super) fn drop_dead_segments(
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

/// Flushes sled, then deletes the log segments it no longer needs.
pub(super) fn checkpoint(shared: &Shared) -> StoreResult<()> {
    shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    let (applied, swept, uses, next) = {
        let p = shared.pipe.lock();
        // The uses as of `applied_lsn`: what sled holds durably after the flush.
        let next = if p.segment == 0 { p.next_lsn + 1 } else { p.segment };
        (p.applied_lsn, p.swept, p.uses.clone(), next)
    };
    if applied <= shared.durable.load(Ordering::Relaxed) && swept <= shared.durable_swept.load(Ordering::Relaxed) {
        return Ok(());
    }
    let step = |s| {
        if let Some(f) = &shared.faults {
            f.step(s);
        }
    };
    step(Step::BeforeFlush);
    // Everything applied before the flush starts is durable once it returns.
    let flushed = shared.db().and_then(|db| {
        faults::check(shared.faults.as_deref(), Point::Sled)?;
        Ok(db.flush()?)
    });
    if let Err(e) = flushed {
        // sled keeps its first I/O error: the applier reopens it.
        sled_failed(shared, e.clone());
        return Err(e);
    }
    shared.durable.fetch_max(applied, Ordering::Relaxed);
    shared.durable_swept.fetch_max(swept, Ordering::Relaxed);
    step(Step::Flushed);
    drop_dead_segments(&shared.segments, &uses, applied, next)?;
    step(Step::Dropped);
    Ok(())
}

/// Compaction: the bodies still in use in sparse log segments (stored messages point at less
/// than half of the segment) are copied to the end of the log and their messages repointed, so
/// the old segments can go. Without it, one long-lived message would keep a whole segment of
/// otherwise dead bodies. Returns how many bodies it moved.
pub(super) fn compact(shared: &Shared) -> StoreResult<usize> {
    shared.compactions.fetch_add(1, Ordering::Relaxed);
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
    for kv in shared.db()?.scan_prefix([b'M']) {
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
pub(super) fn checkpoint_loop(shared: Arc<Shared>) {
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
            // The applier is reopening sled; nothing to flush meanwhile.
            if p.sled_fault.is_some() {
                continue;
            }
        }
        // A failed checkpoint is tried again at the next round (a failed sled flush also puts
        // the store in a sled fault, which the applier repairs); nothing is lost meanwhile: the
        // log keeps every segment sled does not hold durably.
        if let Err(e) = checkpoint(&shared) {
            tracing::warn!(error = %e, "checkpoint failed");
            continue;
        }
        rounds += 1;
        if rounds.is_multiple_of(COMPACT_EVERY)
            && let Err(e) = compact(&shared)
        {
            tracing::warn!(error = %e, "log compaction failed");
        }
    }
}
