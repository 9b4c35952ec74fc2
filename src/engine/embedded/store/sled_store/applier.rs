//! The applier thread: applies logged operations to sled behind the log, in large ordered
//! batches, and sweeps the keys of deleted queues.

use super::pipeline::complete;
use super::recover::{held_bodies, reopen, sled_failed};
use super::*;

pub(super) fn apply_loop(shared: Arc<Shared>, mut applier: Applier) {
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
                // A checkpoint found sled failed.
                if p.sled_fault.is_some() {
                    drop(p);
                    match reopen(&shared, applier, Vec::new()) {
                        Some(a) => applier = a,
                        None => return,
                    }
                    p = shared.pipe.lock();
                    continue;
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
            let result = faults::check(shared.faults.as_deref(), Point::Sled).and_then(|()| applier.sweep(SWEEP_KEYS));
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
                    drop(p);
                    sled_failed(&shared, e);
                    match reopen(&shared, applier, Vec::new()) {
                        Some(a) => applier = a,
                        None => return,
                    }
                    continue;
                }
            }
            drop(p);
            shared.applied_cv.notify_all();
            continue;
        }
        let mut ops = ops;
        let last = ops.last().map_or(0, |(l, _)| *l);
        // Bodies held in memory for these operations: readable through sled once applied.
        let held = held_bodies(&ops);
        coalesce(&mut ops);
        let started = Instant::now();
        let result = faults::check(shared.faults.as_deref(), Point::Sled).and_then(|()| applier.apply(&ops));
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
                drop(p);
                sled_failed(&shared, e);
                match reopen(&shared, applier, held) {
                    Some(a) => applier = a,
                    None => return,
                }
                continue;
            }
        }
        drop(p);
        shared.applied_cv.notify_all();
    }
}
