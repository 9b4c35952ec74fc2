//! Per-queue activity counters of this process: messages published, delivered (and of those,
//! redelivered), acknowledged and dead-lettered since the process started.
//!
//! They are counted where the broker hands a call to the engine, so every engine and dialect
//! counts the same way; they live in memory (a restart starts them at zero, as Prometheus
//! counters do) and a queue's counters go when the queue is deleted, so metric labels exist only
//! for queues that exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use uuid::Uuid;

/// One queue's counters.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub redelivered: AtomicU64,
    pub acked: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// A snapshot of [`QueueCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
}

/// Every queue's counters, by queue id.
#[derive(Debug, Default)]
pub struct Counters {
    queues: RwLock<HashMap<Uuid, Arc<QueueCounters>>>,
}

impl Counters {
    /// The counters of a queue (created on first use).
    pub fn of(&self, id: Uuid) -> Arc<QueueCounters> {
        if let Some(c) = self.queues.read().get(&id) {
            return c.clone();
        }
        self.queues.write().entry(id).or_default().clone()
    }

    pub fn add(&self, id: Uuid, f: impl FnOnce(&QueueCounters) -> &AtomicU64, n: u64) {
        if n > 0 {
            f(&self.of(id)).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A queue's counts (zero for a queue nothing happened to).
    pub fn get(&self, id: Uuid) -> Counts {
        match self.queues.read().get(&id) {
            None => Counts::default(),
            Some(c) => Counts {
                published: c.published.load(Ordering::Relaxed),
                delivered: c.delivered.load(Ordering::Relaxed),
                redelivered: c.redelivered.load(Ordering::Relaxed),
                acked: c.acked.load(Ordering::Relaxed),
                dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            },
        }
    }

    /// Drops a deleted queue's counters.
    pub fn forget(&self, id: Uuid) {
        self.queues.write().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_go_with_the_queue() {
        let c = Counters::default();
        let q = Uuid::new_v4();
        assert_eq!(c.get(q), Counts::default());
        c.add(q, |x| &x.published, 3);
        c.add(q, |x| &x.acked, 1);
        c.add(q, |x| &x.acked, 0);
        assert_eq!(c.get(q), Counts { published: 3, acked: 1, ..Counts::default() });
        c.forget(q);
        assert_eq!(c.get(q), Counts::default());
    }
}
