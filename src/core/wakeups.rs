//! Long-poll wake-ups: one [`Notify`] per queue that has (or had) waiters.
//!
//! The broker's waiters register with [`Wakeups::listen`] *before* they ask the engine for
//! messages, so a publish between the look and the sleep is never missed; engines call
//! [`Wakeups::wake`] when something may have become deliverable. A wake-up is a hint, never a
//! promise: the waiter asks the engine again, which decides. Queues nobody waits on have no
//! entry, so a publish to them costs one read-locked lookup.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Default)]
pub struct Wakeups {
    queues: RwLock<HashMap<Uuid, Arc<Notify>>>,
}

impl Wakeups {
    pub fn new() -> Self {
        Self::default()
    }

    /// The notifier of a queue's waiters (created on first use).
    pub fn listen(&self, queue: Uuid) -> Arc<Notify> {
        if let Some(n) = self.queues.read().get(&queue) {
            return n.clone();
        }
        self.queues.write().entry(queue).or_default().clone()
    }

    /// Wakes every waiter of a queue.
    pub fn wake(&self, queue: Uuid) {
        if let Some(n) = self.queues.read().get(&queue) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter of every queue (shutdown).
    pub fn wake_all(&self) {
        for n in self.queues.read().values() {
            n.notify_waiters();
        }
    }

    /// Wakes a deleted queue's waiters (they find it gone) and drops its entry.
    pub fn forget(&self, queue: Uuid) {
        if let Some(n) = self.queues.write().remove(&queue) {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_registered_waiter_is_woken_and_others_are_not() {
        let w = Wakeups::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let na = w.listen(a);
        let nb = w.listen(b);
        let fa = na.notified();
        let fb = nb.notified();
        tokio::pin!(fa, fb);
        fa.as_mut().enable();
        fb.as_mut().enable();
        w.wake(a);
        assert!(fa.as_mut().now_or_never().is_some());
        assert!(fb.as_mut().now_or_never().is_none());
        w.forget(b);
        assert!(fb.as_mut().now_or_never().is_some());
        // A forgotten queue has no entry: waking it is a no-op, listening makes a new one.
        w.wake(b);
        assert!(!Arc::ptr_eq(&nb, &w.listen(b)));
    }
}
