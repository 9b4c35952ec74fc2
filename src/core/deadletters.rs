//! Dead letters: listing and redrive (infrai), and consuming a group's own dead-letter store
//! (DMS / CTYun).
//!
//! A dead letter lives in one of two places. In the *own store* it stays where it was, marked
//! dead in its group (so DMS/CTYun can consume it per group). In a *target queue* it is an
//! ordinary message there whose meta remembers its origin; listing and redrive of the source
//! queue find it there too.

use super::broker::Broker;
use super::clock::Millis;
use super::engine::Queue;
use super::error::Result;
use super::model::{DeadLetter, Delivery, MessageId};

/// Which dead letters a redrive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveSelector {
    One(MessageId),
    /// Dead-lettered at or after this instant.
    Since(Millis),
    All,
}

/// One page of a dead-letter listing; `next` is the cursor of the following page.
#[derive(Debug, Clone)]
pub struct DeadPage {
    pub items: Vec<DeadLetter>,
    pub next: Option<(Millis, MessageId)>,
}

impl Broker {
    /// Lists `q`'s dead letters after the cursor, at most `limit`.
    pub async fn dead_letters(&self, q: &Queue, after: Option<(Millis, MessageId)>, limit: usize) -> Result<DeadPage> {
        self.engine.dead_letters(q, after, limit, self.now()).await
    }

    /// Returns dead letters of `q` to it with their counts reset. Returns how many moved; a
    /// selected single message that is not a dead letter of `q` is
    /// [`CoreError::MessageNotFound`](super::CoreError::MessageNotFound).
    pub async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize) -> Result<u64> {
        self.engine.redrive(q, sel, max, self.now()).await
    }

    /// Leases up to `max` dead letters of a named group's own store, waiting up to `wait_ms`.
    pub async fn receive_dead(
        &self,
        q: &Queue,
        group: u32,
        max: usize,
        lease_ms: u64,
        wait_ms: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Delivery>> {
        self.wait_for(q, wait_ms, |now| self.engine.claim_dead(q, group, max, lease_ms, max_bytes, now)).await
    }

    /// Settles a leased dead letter: consumed (`success`) or available again.
    pub async fn settle_dead(&self, q: &Queue, handle: &str, success: bool) -> Result<()> {
        self.settle_dead_in(q, None, handle, success).await
    }

    /// [`Broker::settle_dead`] for a handle that must belong to `group`.
    pub async fn settle_dead_in(&self, q: &Queue, group: Option<u32>, handle: &str, success: bool) -> Result<()> {
        let r = self.open_handle(q, handle, true, group)?;
        self.engine.settle_dead(q, r.group, r.seq, r.lease, success, self.now()).await
    }
}
