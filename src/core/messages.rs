//! Message operations: publish, receive (with long polling), peek, ack, nack, change
//! visibility, the in-order batch confirm, purge, stats.
//!
//! Handles are checked in two steps: [`ReceiptKey::open`](super::receipt::ReceiptKey::open)
//! rejects anything this server did not mint for this queue (malformed), then the engine
//! decides whether the named delivery is still live (stale).

use std::future::Future;

use super::broker::Broker;
use super::clock::Millis;
use super::engine::{Claim, Claimed, Queue, Target};
use super::error::{CoreError, Result};
use super::model::{
    Delivery, GroupStats, MAX_TAGS, MessageId, MessageMeta, NewMessage, Peeked, QueueConfig, RESERVED_TAG,
};
use super::options::ReceiveOptions;
use super::receipt::Receipt;

/// What every engine checks of messages before publishing them (all or none): size, tags (at
/// most three, none reserved), priority 1–16.
pub fn check_new(cfg: &QueueConfig, msgs: &[NewMessage]) -> Result<()> {
    for (i, m) in msgs.iter().enumerate() {
        if m.body.len() as u64 > cfg.max_message_bytes {
            return Err(CoreError::TooLarge(format!(
                "message {i} has {} bytes, the queue allows {}",
                m.body.len(),
                cfg.max_message_bytes
            )));
        }
        if m.tags.len() > MAX_TAGS {
            return Err(CoreError::InvalidArgument(format!("message {i} has more than {MAX_TAGS} tags")));
        }
        if m.tags.iter().any(|t| t.starts_with(RESERVED_TAG)) {
            return Err(CoreError::InvalidArgument(format!("message {i} has a tag starting with a control character")));
        }
        if let Some(p) = m.priority
            && !(1..=16).contains(&p)
        {
            return Err(CoreError::InvalidArgument(format!("message {i} has priority {p} (1-16)")));
        }
    }
    Ok(())
}

impl Broker {
    /// Appends messages (all or none) and returns once they are durable.
    pub async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>) -> Result<Vec<MessageMeta>> {
        self.check_running()?;
        // The copy is for the retry with a fresh handle (a cached one may be out of date).
        match self.publish_with(q, msgs.clone()).await {
            Err(e) => self.publish_with(&*self.retry_fresh(q, e).await?, msgs).await,
            ok => ok,
        }
    }

    async fn publish_with(&self, q: &Queue, msgs: Vec<NewMessage>) -> Result<Vec<MessageMeta>> {
        let metas = self.engine.publish(q, msgs, self.now()).await?;
        self.counters.add(q.id(), |c| &c.published, metas.len() as u64);
        Ok(metas)
    }

    /// Leases up to `opts.max` messages of group `group`, waiting up to the poll wait for one
    /// to become deliverable. An empty answer means nothing came in time (or shutdown began).
    pub async fn receive(&self, q: &Queue, group: u32, opts: ReceiveOptions) -> Result<Vec<Delivery>> {
        match self.receive_with(q, group, &opts).await {
            Err(e) => self.receive_with(&*self.retry_fresh(q, e).await?, group, &opts).await,
            ok => ok,
        }
    }

    async fn receive_with(&self, q: &Queue, group: u32, opts: &ReceiveOptions) -> Result<Vec<Delivery>> {
        let wait_ms = opts.wait_ms.unwrap_or(q.config().polling_wait_secs * 1000);
        self.wait_for(q, wait_ms, |now| self.engine.claim(q, group, opts, now)).await
    }

    /// Runs `claim` until it returns something or `wait_ms` passes. Waiters sleep until a
    /// wake-up (publish, redrive, nack, …), the queue's next timed event (delay or lease end),
    /// shutdown, or the deadline — never in a polling loop.
    pub(crate) async fn wait_for<'a, F, Fut>(&'a self, q: &Queue, wait_ms: u64, mut claim: F) -> Result<Vec<Delivery>>
    where
        F: FnMut(Millis) -> Fut,
        Fut: Future<Output = Result<Claim>> + 'a,
    {
        let deadline = self.clock.now().saturating_add(wait_ms);
        let waiters = (wait_ms > 0).then(|| self.engine.wakeups().listen(q.id()));
        let _counted = waiters.as_ref().map(|_| Waiting::new(&self.waiting));
        loop {
            // Register for wake-ups before looking, so nothing published in between is missed.
            let notified = waiters.as_ref().map(|w| w.notified());
            let mut notified = std::pin::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let stop = self.shutdown_notify.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if self.is_shutting_down() {
                return Ok(Vec::new());
            }
            let now = self.clock.now();
            let got = claim(now).await?;
            if !got.items.is_empty() {
                let again = got.items.iter().filter(|c| c.deliveries > 1).count() as u64;
                self.counters.add(q.id(), |c| &c.delivered, got.items.len() as u64);
                self.counters.add(q.id(), |c| &c.redelivered, again);
                return Ok(self.deliveries(q, got.items));
            }
            let now = self.clock.now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = got.next_due.map_or(deadline, |n| n.clamp(now + 1, deadline));
            let woken = async {
                match notified.as_mut().as_pin_mut() {
                    Some(n) => n.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = &mut stop => {}
                _ = self.clock.sleep_until(wake) => {}
            }
        }
    }

    /// Mints the handles of claimed deliveries.
    fn deliveries(&self, q: &Queue, claimed: Vec<Claimed>) -> Vec<Delivery> {
        claimed
            .into_iter()
            .map(|c| {
                let handle = self.receipts.mint(&Receipt {
                    queue_salt: q.salt(),
                    group: c.group,
                    seq: c.meta.seq,
                    lease: c.lease.lease,
                    dead: c.dead,
                });
                Delivery {
                    meta: c.meta,
                    body: c.body,
                    handle,
                    lease_until: c.lease.until,
                    deliveries: c.deliveries,
                    failures: c.failures,
                    first_delivered_at: c.first_delivered_at,
                }
            })
            .collect()
    }

    /// Looks at up to `max` deliverable messages without leasing them.
    pub async fn peek(&self, q: &Queue, group: u32, max: usize) -> Result<Vec<Peeked>> {
        self.engine.peek(q, group, max, self.now()).await
    }

    /// Opens a handle minted for this queue (normal or dead-letter lease as `dead` says, and for
    /// `group` when one is given).
    pub(crate) fn open_handle(&self, q: &Queue, handle: &str, dead: bool, group: Option<u32>) -> Result<Receipt> {
        let r = self.receipts.open(handle)?;
        if r.queue_salt != q.salt() || r.dead != dead || group.is_some_and(|g| g != r.group) {
            return Err(CoreError::ReceiptMalformed);
        }
        Ok(r)
    }

    /// The consumer is done with the delivery the handle names.
    pub async fn ack(&self, q: &Queue, handle: &str) -> Result<()> {
        self.ack_in(q, None, handle).await
    }

    /// [`Broker::ack`] for a handle that must belong to `group` (dialects that name the group).
    pub async fn ack_in(&self, q: &Queue, group: Option<u32>, handle: &str) -> Result<()> {
        match self.ack_with(q, group, handle).await {
            Err(e) => self.ack_with(&*self.retry_fresh(q, e).await?, group, handle).await,
            ok => ok,
        }
    }

    async fn ack_with(&self, q: &Queue, group: Option<u32>, handle: &str) -> Result<()> {
        let r = self.open_handle(q, handle, false, group)?;
        self.engine.ack(q, r.group, Target::Lease { seq: r.seq, lease: r.lease }, self.now()).await?;
        self.counters.add(q.id(), |c| &c.acked, 1);
        Ok(())
    }

    /// The delivery failed: requeue it (counting a failure) or, with `dead_now`, dead-letter
    /// it. Returns whether it went back to the queue.
    pub async fn nack(&self, q: &Queue, handle: &str, dead_now: bool) -> Result<bool> {
        self.nack_in(q, None, handle, dead_now).await
    }

    /// [`Broker::nack`] for a handle that must belong to `group`.
    pub async fn nack_in(&self, q: &Queue, group: Option<u32>, handle: &str, dead_now: bool) -> Result<bool> {
        match self.nack_with(q, group, handle, dead_now).await {
            Err(e) => self.nack_with(&*self.retry_fresh(q, e).await?, group, handle, dead_now).await,
            ok => ok,
        }
    }

    async fn nack_with(&self, q: &Queue, group: Option<u32>, handle: &str, dead_now: bool) -> Result<bool> {
        let r = self.open_handle(q, handle, false, group)?;
        let back =
            self.engine.nack(q, r.group, Target::Lease { seq: r.seq, lease: r.lease }, dead_now, self.now()).await?;
        self.count_nack(q, back);
        Ok(back)
    }

    fn count_nack(&self, q: &Queue, back: bool) {
        if !back {
            self.counters.add(q.id(), |c| &c.dead_lettered, 1);
        }
    }

    /// Settles a consumer's batch confirm in order (DMS and CTYun consumer groups). Each entry
    /// is a handle (`None` when the dialect already refused it) and whether the consumer
    /// succeeded. Entries count as successes while each is a success naming a live delivery;
    /// the first entry that failed or names no live delivery, and every entry after it, count
    /// as failures, and the live deliveries among them are released as failed (redelivered,
    /// or dead-lettered at the group's limit; a dead letter, with `dead`, is available again).
    /// Returns the number of successes; only a vanished queue is an error.
    pub async fn confirm(&self, q: &Queue, group: u32, dead: bool, entries: &[(Option<&str>, bool)]) -> Result<u64> {
        let opened: Vec<(Option<(u64, u64)>, bool)> = entries
            .iter()
            .map(|(h, ok)| {
                let r = h.and_then(|h| self.open_handle(q, h, dead, Some(group)).ok());
                (r.map(|r| (r.seq, r.lease)), *ok)
            })
            .collect();
        let ok = self.engine.confirm(q, group, dead, &opened, self.now()).await?;
        if !dead {
            self.counters.add(q.id(), |c| &c.acked, ok);
        }
        Ok(ok)
    }

    /// Ack by message id (infrai): valid only while the message is leased in the group.
    pub async fn ack_id(&self, q: &Queue, group: u32, id: MessageId) -> Result<()> {
        match self.ack_id_with(q, group, id).await {
            Err(e) => self.ack_id_with(&*self.retry_fresh(q, e).await?, group, id).await,
            ok => ok,
        }
    }

    async fn ack_id_with(&self, q: &Queue, group: u32, id: MessageId) -> Result<()> {
        self.engine.ack(q, group, Target::Message(id), self.now()).await?;
        self.counters.add(q.id(), |c| &c.acked, 1);
        Ok(())
    }

    /// Nack by message id (infrai). Returns whether the message went back to the queue.
    pub async fn nack_id(&self, q: &Queue, group: u32, id: MessageId, dead_now: bool) -> Result<bool> {
        match self.nack_id_with(q, group, id, dead_now).await {
            Err(e) => self.nack_id_with(&*self.retry_fresh(q, e).await?, group, id, dead_now).await,
            ok => ok,
        }
    }

    async fn nack_id_with(&self, q: &Queue, group: u32, id: MessageId, dead_now: bool) -> Result<bool> {
        let back = self.engine.nack(q, group, Target::Message(id), dead_now, self.now()).await?;
        self.count_nack(q, back);
        Ok(back)
    }

    /// Replaces the lease of a live delivery with one ending `lease_ms` from now. Returns the new
    /// handle (the old one dies) and the new end of the lease.
    pub async fn change_visibility(&self, q: &Queue, handle: &str, lease_ms: u64) -> Result<(String, Millis)> {
        match self.change_visibility_with(q, handle, lease_ms).await {
            Err(e) => self.change_visibility_with(&*self.retry_fresh(q, e).await?, handle, lease_ms).await,
            ok => ok,
        }
    }

    async fn change_visibility_with(&self, q: &Queue, handle: &str, lease_ms: u64) -> Result<(String, Millis)> {
        let r = self.open_handle(q, handle, false, None)?;
        let now = self.now();
        let lease =
            self.engine.change_visibility(q, r.group, r.seq, r.lease, now.saturating_add(lease_ms), now).await?;
        let handle = self.receipts.mint(&Receipt { lease: lease.lease, ..r });
        Ok((handle, lease.until))
    }

    /// Dead-letters a live delivery now (push subscriptions out of retries): into queue
    /// `target` when given, else where the queue's policy says.
    pub async fn dead_letter_delivery(&self, q: &Queue, handle: &str, target: Option<uuid::Uuid>) -> Result<()> {
        let r = self.open_handle(q, handle, false, None)?;
        self.engine.dead_letter_delivery(q, r.group, r.seq, r.lease, target, self.now()).await?;
        self.counters.add(q.id(), |c| &c.dead_lettered, 1);
        Ok(())
    }

    /// Removes every ready, delayed and in-flight message; dead letters stay. Returns the count.
    pub async fn purge(&self, q: &Queue) -> Result<u64> {
        self.engine.purge(q, self.now()).await
    }

    /// Live counts of a group. For the default group, `dead` includes the queue's dead letters
    /// kept in other queues.
    pub async fn stats(&self, q: &Queue, group: u32) -> Result<GroupStats> {
        self.engine.stats(q, group, self.now()).await
    }
}

/// Counts a long poll as waiting while it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> Waiting<'a> {
    fn new(n: &'a std::sync::atomic::AtomicI64) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
