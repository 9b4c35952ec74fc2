//! Message operations: publish, receive (with long polling), peek, ack, nack, change
//! visibility, purge, stats.
//!
//! Handles are checked in two steps: [`ReceiptKey::open`](super::receipt::ReceiptKey::open)
//! rejects anything this server did not mint for this queue (malformed), then the queue state
//! decides whether the named delivery is still live (stale).

use std::sync::Arc;

use super::broker::{Broker, Queue};
use super::clock::Millis;
use super::error::{CoreError, Result};
use super::model::{DEFAULT_GROUP, Delivery, GroupStats, MessageId, MessageMeta, NewMessage, Peeked};
use super::queue::{Picked, ReceiveOptions};
use super::receipt::Receipt;

impl Broker {
    /// Appends messages (all or none) and returns once they are durable.
    pub async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>) -> Result<Vec<MessageMeta>> {
        if self.is_shutting_down() {
            return Err(CoreError::ShuttingDown);
        }
        let metas = self.with_state(q, |st, cx| st.publish(msgs, cx))?;
        self.store.sync().await?;
        Ok(metas)
    }

    /// Leases up to `opts.max` messages of group `group`, waiting up to the poll wait for one
    /// to become deliverable. An empty answer means nothing came in time (or shutdown began).
    pub async fn receive(&self, q: &Arc<Queue>, group: u32, opts: ReceiveOptions) -> Result<Vec<Delivery>> {
        let wait_ms = match opts.wait_ms {
            Some(w) => w,
            None => q.record().config.polling_wait_secs * 1000,
        };
        self.wait_for(q, wait_ms, |st, cx| st.receive(group, &opts, cx)).await
    }

    /// Runs `pick` until it returns something or `wait_ms` passes. Waiters sleep until a
    /// notification (publish, redrive, nack, …), the queue's next timed event (delay or lease
    /// end), shutdown, or the deadline — never in a polling loop.
    pub(crate) async fn wait_for(
        &self,
        q: &Arc<Queue>,
        wait_ms: u64,
        mut pick: impl FnMut(&mut super::queue::QueueState, &mut super::queue::Cx) -> Result<Vec<Picked>>,
    ) -> Result<Vec<Delivery>> {
        let deadline = self.clock.now().saturating_add(wait_ms);
        loop {
            // Register for wake-ups before looking, so nothing published in between is missed.
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let stop = self.shutdown_notify.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if self.is_shutting_down() {
                return Ok(Vec::new());
            }
            let (picked, next) = self.with_state(q, |st, cx| {
                let picked = pick(st, cx)?;
                Ok((picked, st.next_event()))
            })?;
            if !picked.is_empty() {
                return Ok(self.deliveries(q, picked));
            }
            let now = self.clock.now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next.map_or(deadline, |n| n.clamp(now + 1, deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = &mut stop => {}
                _ = self.clock.sleep_until(wake) => {}
            }
        }
    }

    /// Reads the bodies of picked messages (outside the lock) and mints their handles.
    pub(crate) fn deliveries(&self, q: &Queue, picked: Vec<Picked>) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(picked.len());
        for p in picked {
            let body = match self.store.body(q.id, p.meta.seq) {
                Ok(Some(b)) => b,
                // Removed meanwhile (purge, retention, queue deletion): nothing to deliver.
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "reading a message body failed");
                    continue;
                }
            };
            let handle = self.receipts.mint(&Receipt {
                queue_salt: q.salt,
                group: p.group,
                seq: p.meta.seq,
                lease: p.lease.lease,
                dead: p.dead,
            });
            out.push(Delivery {
                meta: p.meta,
                body,
                handle,
                lease_until: p.lease.until,
                deliveries: p.info.deliveries,
                failures: p.info.failures,
                first_delivered_at: p.info.first_at,
            });
        }
        out
    }

    /// Looks at up to `max` deliverable messages without leasing them.
    pub async fn peek(&self, q: &Queue, group: u32, max: usize) -> Result<Vec<Peeked>> {
        let metas = self.with_state(q, |st, _| st.peek(group, max))?;
        let mut out = Vec::with_capacity(metas.len());
        for (meta, info) in metas {
            if let Some(body) = self.store.body(q.id, meta.seq)? {
                out.push(Peeked {
                    meta,
                    body,
                    deliveries: info.deliveries,
                    first_delivered_at: (info.deliveries > 0).then_some(info.first_at),
                });
            }
        }
        Ok(out)
    }

    /// Opens a handle minted for this queue (normal or dead-letter lease as `dead` says, and for
    /// `group` when one is given).
    pub(crate) fn open_handle(&self, q: &Queue, handle: &str, dead: bool, group: Option<u32>) -> Result<Receipt> {
        let r = self.receipts.open(handle)?;
        if r.queue_salt != q.salt || r.dead != dead || group.is_some_and(|g| g != r.group) {
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
        let r = self.open_handle(q, handle, false, group)?;
        self.with_state(q, |st, cx| st.ack(r.group, r.seq, r.lease, cx))
    }

    /// The delivery failed: requeue it (counting a failure) or, with `dead_now`, dead-letter
    /// it. Returns whether it went back to the queue.
    pub async fn nack(&self, q: &Queue, handle: &str, dead_now: bool) -> Result<bool> {
        self.nack_in(q, None, handle, dead_now).await
    }

    /// [`Broker::nack`] for a handle that must belong to `group`.
    pub async fn nack_in(&self, q: &Queue, group: Option<u32>, handle: &str, dead_now: bool) -> Result<bool> {
        let r = self.open_handle(q, handle, false, group)?;
        self.with_state(q, |st, cx| st.nack(r.group, r.seq, r.lease, dead_now, cx))
    }

    /// Settles a consumer's batch confirm in order (DMS and CTYun consumer groups). Each entry
    /// is a handle (`None` when the dialect already refused it) and whether the consumer
    /// succeeded. Entries count as successes while each is a success naming a live delivery;
    /// the first entry that failed or names no live delivery, and every entry after it, count
    /// as failures, and the live deliveries among them are released as failed (redelivered,
    /// or dead-lettered at the group's limit; a dead letter, with `dead`, is available again).
    /// Returns the number of successes; only a vanished queue is an error.
    pub async fn confirm(&self, q: &Queue, group: u32, dead: bool, entries: &[(Option<&str>, bool)]) -> Result<u64> {
        let mut success = 0u64;
        let mut failed = false;
        for (handle, ok) in entries {
            if !failed && *ok {
                let done = match handle {
                    Some(h) if dead => self.settle_dead_in(q, Some(group), h, true).await,
                    Some(h) => self.ack_in(q, Some(group), h).await,
                    None => Err(CoreError::ReceiptMalformed),
                };
                match done {
                    Ok(()) => {
                        success += 1;
                        continue;
                    }
                    Err(CoreError::QueueNotFound) => return Err(CoreError::QueueNotFound),
                    Err(_) => {}
                }
            }
            failed = true;
            if let Some(h) = handle {
                // Only live deliveries change; stale or foreign handles just count as failed.
                let _ = if dead {
                    self.settle_dead_in(q, Some(group), h, false).await
                } else {
                    self.nack_in(q, Some(group), h, false).await.map(|_| ())
                };
            }
        }
        Ok(success)
    }

    /// Ack by message id (infrai): valid only while the message is leased in the group.
    pub async fn ack_id(&self, q: &Queue, group: u32, id: MessageId) -> Result<()> {
        self.with_state(q, |st, cx| {
            let (seq, lease) = st.lease_by_id(group, id)?;
            st.ack(group, seq, lease.lease, cx)
        })
    }

    /// Nack by message id (infrai). Returns whether the message went back to the queue.
    pub async fn nack_id(&self, q: &Queue, group: u32, id: MessageId, dead_now: bool) -> Result<bool> {
        self.with_state(q, |st, cx| {
            let (seq, lease) = st.lease_by_id(group, id)?;
            st.nack(group, seq, lease.lease, dead_now, cx)
        })
    }

    /// Replaces the lease of a live delivery with one ending `lease_ms` from now. Returns the new
    /// handle (the old one dies) and the new end of the lease.
    pub async fn change_visibility(&self, q: &Queue, handle: &str, lease_ms: u64) -> Result<(String, Millis)> {
        let r = self.open_handle(q, handle, false, None)?;
        let (lease, _, _) =
            self.with_state(q, |st, cx| st.extend(r.group, r.seq, r.lease, cx.now.saturating_add(lease_ms), cx))?;
        let handle = self.receipts.mint(&Receipt { lease: lease.lease, ..r });
        Ok((handle, lease.until))
    }

    /// Dead-letters a live delivery now (push subscriptions out of retries): into queue
    /// `target` when given, else where the queue's policy says.
    pub async fn dead_letter_delivery(&self, q: &Queue, handle: &str, target: Option<uuid::Uuid>) -> Result<()> {
        let r = self.open_handle(q, handle, false, None)?;
        self.with_state(q, |st, cx| st.dead_letter_delivery(r.group, r.seq, r.lease, target, cx))
    }

    /// Removes every ready, delayed and in-flight message; dead letters stay. Returns the count.
    pub async fn purge(&self, q: &Queue) -> Result<u64> {
        let n = self.with_state(q, |st, cx| Ok(st.purge(cx)))?;
        self.store.sync().await?;
        Ok(n)
    }

    /// Live counts of a group. For the default group, `dead` includes the queue's dead letters
    /// kept in other queues.
    pub async fn stats(&self, q: &Queue, group: u32) -> Result<GroupStats> {
        let mut s = self.with_state(q, |st, _| st.stats(group))?;
        if group == DEFAULT_GROUP {
            s.dead += self.dead_elsewhere(q);
        }
        Ok(s)
    }
}
