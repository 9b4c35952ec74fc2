//! Relays: a queue whose messages are requests prepared for an HTTP endpoint.
//!
//! A dialect that pushes in its own wire format (MNS topic subscriptions) stores each
//! notification, already rendered, as a message of a queue of its own and registers a relay
//! for that queue with a [`Target`] that turns a delivery into a request (URL, headers, body —
//! read from the queue's *current* record, so a changed retry strategy applies at once) and
//! says when to retry. The relay is a competing consumer of the queue's default group: a 2xx
//! acks the message; a failure moves its lease to the next attempt (`change_visibility`), so
//! the schedule is the queue's own state and survives a restart; when the target gives up the
//! message is acked and logged. Requests pass the same SSRF guard as push subscriptions.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::PushManager;
use crate::core::model::{DEFAULT_GROUP, Delivery, QueueRecord};
use crate::core::{CoreError, Millis, ReceiveOptions};

/// Long-poll wait of a relay's receive.
const POLL_MS: u64 = 20_000;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a dialect decides for its relays.
pub trait Target: Send + Sync + 'static {
    /// The request for a delivery, from the queue's current record; `None` drops the message
    /// (the record no longer describes an HTTP endpoint).
    fn request(&self, rec: &QueueRecord, d: &Delivery, now: Millis) -> Option<Outgoing>;
    /// Milliseconds until the next attempt after `attempts` failed ones; `None` gives up.
    fn retry_after(&self, rec: &QueueRecord, attempts: u32) -> Option<u64>;
}

impl PushManager {
    /// Starts relaying queue `queue_id` of namespace `ns` (idempotent: a running relay of the
    /// queue is replaced). The relay stops by itself once the queue is deleted.
    pub fn relay(self: &Arc<Self>, ns: String, queue_id: Uuid, target: Arc<dyn Target>) {
        let me = self.clone();
        let handle = tokio::spawn(async move { me.run_relay(ns, queue_id, target).await });
        if let Some(old) = self.relays.lock().insert(queue_id, handle) {
            old.abort();
        }
    }

    /// Whether a relay of the queue runs.
    pub fn relaying(&self, queue_id: Uuid) -> bool {
        self.relays.lock().get(&queue_id).is_some_and(|h| !h.is_finished())
    }

    async fn run_relay(self: Arc<Self>, ns: String, queue_id: Uuid, target: Arc<dyn Target>) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        loop {
            if self.broker.is_shutting_down() {
                return;
            }
            if !self.wait_until_owner(queue_id).await {
                return;
            }
            let q = match self.broker.queue_by_id(&ns, queue_id).await {
                Ok(q) => q,
                Err(CoreError::QueueNotFound) => {
                    self.relays.lock().remove(&queue_id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %queue_id, "relay lookup failed");
                    let _ = self.broker.clock().sleep_until(self.broker.now() + 1000).await;
                    continue;
                }
            };
            let Ok(first) = slots.clone().acquire_owned().await else { return };
            let opts = ReceiveOptions { wait_ms: Some(POLL_MS), ..ReceiveOptions::new(1 + slots.available_permits()) };
            let got = match self.broker.receive(&q, DEFAULT_GROUP, opts).await {
                Ok(g) => g,
                Err(CoreError::QueueNotFound) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, queue = %queue_id, "relay receive failed");
                    let _ = self.broker.clock().sleep_until(self.broker.now() + 1000).await;
                    continue;
                }
            };
            super::spawn_each(first, &slots, got, |d| {
                let (me, target, q) = (self.clone(), target.clone(), q.clone());
                async move { me.relay_one(&q, target.as_ref(), d).await }
            });
        }
    }

    /// One attempt: ack on success, else schedule the next attempt or give up.
    async fn relay_one(&self, q: &crate::core::Queue, target: &dyn Target, d: Delivery) {
        // The record as it is now (a strategy changed since the lookup applies).
        let rec = match self.broker.info(q).await {
            Ok(info) => info.record,
            Err(_) => return, // gone or failing: the lease ends and it comes back
        };
        let outcome = match target.request(&rec, &d, self.broker.now()) {
            None => Ok(()),
            Some(req) => self.send(req).await,
        };
        match outcome {
            Ok(()) => {
                if let Err(e) = self.broker.ack(q, &d.handle).await {
                    tracing::warn!(error = %e, queue = %rec.name, "relay ack failed");
                }
            }
            Err(why) => match target.retry_after(&rec, d.deliveries) {
                Some(wait) => {
                    tracing::info!(queue = %rec.name, message = %d.meta.id, attempt = d.deliveries, reason = %why, retry_in_ms = wait, "notification failed");
                    if let Err(e) = self.broker.change_visibility(q, &d.handle, wait.max(1)).await {
                        tracing::warn!(error = %e, queue = %rec.name, "relay reschedule failed");
                    }
                }
                None => {
                    tracing::warn!(queue = %rec.name, message = %d.meta.id, attempts = d.deliveries, reason = %why, "notification given up after its last retry");
                    if let Err(e) = self.broker.ack(q, &d.handle).await {
                        tracing::warn!(error = %e, queue = %rec.name, "relay ack failed");
                    }
                }
            },
        }
    }

    /// One POST through the SSRF guard. Ok only for a 2xx answer.
    async fn send(&self, req: Outgoing) -> Result<(), String> {
        let url = Url::parse(&req.url).map_err(|e| e.to_string())?;
        self.policy.check_with(&url, super::ssrf::Scheme::HttpAndHttps, true).await?;
        let mut r =
            self.client.as_ref().map_err(Clone::clone)?.post(url).timeout(Duration::from_millis(self.cfg.timeout_ms));
        for (k, v) in &req.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        let resp = r.body(req.body).send().await.map_err(|e| e.to_string());
        let ok = resp.as_ref().is_ok_and(|r| r.status().is_success());
        super::count(ok);
        let resp = resp?;
        if ok { Ok(()) } else { Err(format!("status {}", resp.status())) }
    }
}
