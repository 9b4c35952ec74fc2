//! Push subscriptions: delivering a queue's messages to an HTTPS endpoint.
//!
//! Each subscription has a worker task. It is an ordinary competing consumer of the queue's
//! default group: it leases up to `concurrency` messages (long-polling while the queue is
//! empty) and POSTs each as
//! `{subscription_id, queue, message_id, payload, attempts, enqueued_at}` with
//! `x-qgate-timestamp: <unix seconds>` and, when the subscription has a secret,
//! `x-qgate-signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
//! A 2xx acks the message. Anything else (status, timeout, connection error, SSRF refusal) is
//! retried with exponential backoff while the worker keeps the lease extended; after
//! `max_retries` retries the message is dead-lettered (the subscription's dead-letter queue,
//! else the queue's). Backoff waits on the core's clock, so tests drive retries without sleeping.
//!
//! The worker holds no state of its own: a restart re-reads the durable subscription records
//! and any message leased at the time comes back when its lease ends.
//!
//! Several nodes on a shared engine: every node runs a supervisor ([`PushManager::supervise`])
//! that finds subscriptions and relays made on other nodes, and each worker only receives while
//! its node owns the job ([`Engine::claim_owner`](crate::core::Engine::claim_owner), renewed
//! every [`RENEW`]); when the owner dies its ownership lapses after [`OWNER_TTL_MS`] and
//! another node's worker takes over.

pub mod relay;
pub mod signing;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::Url;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::auth::crypto::hmac_sha256;
use crate::config::PushConfig;
use crate::core::model::{DEFAULT_GROUP, Delivery, SubscriptionRecord};
use crate::core::{Broker, CoreError, Queue, ReceiveOptions};
use crate::json::{body_value, rfc3339};
use ssrf::{GuardedResolver, SsrfPolicy};

/// Pushes that reached their endpoint (2xx), and attempts that failed, since the process
/// started — push subscriptions and relays (MNS HTTP notifications) alike. For metrics.
pub static DELIVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one push attempt's outcome.
fn count(ok: bool) {
    let c = if ok { &DELIVERED } else { &FAILED };
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `deliver` for each delivery in a task of its own holding a slot: the first delivery
/// takes `first` (the slot the receive waited for), the others the slots free now; deliveries
/// beyond those are left alone (their leases end and they come back).
fn spawn_each<Fut>(
    first: tokio::sync::OwnedSemaphorePermit,
    slots: &Arc<Semaphore>,
    got: Vec<Delivery>,
    deliver: impl Fn(Delivery) -> Fut,
) where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut first = Some(first);
    for d in got {
        let permit = match first.take() {
            Some(p) => p,
            None => match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let work = deliver(d);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}

/// Long-poll wait of a worker's receive.
const POLL_MS: u64 = 20_000;
/// How long a node's ownership of a worker lasts without renewal.
pub const OWNER_TTL_MS: u64 = 10_000;
/// How often the supervisor renews ownerships and looks for new jobs.
pub const RENEW: Duration = Duration::from_secs(2);

/// Runs and supervises the subscription workers.
pub struct PushManager {
    broker: Arc<Broker>,
    cfg: PushConfig,
    policy: Arc<SsrfPolicy>,
    client: Result<reqwest::Client, String>,
    workers: Mutex<HashMap<Uuid, JoinHandle<()>>>,
    /// Relay workers by queue id (see [`relay`]).
    relays: Mutex<HashMap<Uuid, JoinHandle<()>>>,
    /// The RSA key pushed requests are signed with, loaded on first use.
    signer: tokio::sync::OnceCell<Arc<signing::RsaSigner>>,
    /// This node, as owner of jobs; the jobs (subscription ids, relay queue ids) it owns.
    node: Uuid,
    owned: Mutex<std::collections::HashSet<Uuid>>,
}

impl PushManager {
    pub fn new(broker: Arc<Broker>, cfg: PushConfig) -> Arc<Self> {
        // reqwest is built without a default crypto provider; install ring's (once per process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(SsrfPolicy::new(&cfg.allow_targets));
        // Without the system's CA certificates (a minimal container) the client cannot be built:
        // the server still runs, and pushes fail (and are retried) with the reason.
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .user_agent(concat!("qgate-push/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                let why = format!("no push HTTP client (are the system's CA certificates installed?): {e}");
                tracing::error!("{why}");
                why
            });
        Arc::new(PushManager {
            broker,
            cfg,
            policy,
            client,
            workers: Mutex::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            signer: tokio::sync::OnceCell::new(),
            node: Uuid::new_v4(),
            owned: Mutex::new(Default::default()),
        })
    }

    /// Whether this node runs job `id` now (taking it when nobody else holds it).
    pub(crate) async fn owns(&self, id: Uuid) -> bool {
        if self.owned.lock().contains(&id) {
            return true;
        }
        let now = self.broker.now();
        let mine = self.broker.engine().claim_owner(&id.simple().to_string(), self.node, now + OWNER_TTL_MS, now).await;
        if matches!(mine, Ok(true)) {
            self.owned.lock().insert(id);
            return true;
        }
        false
    }

    /// Waits while another node owns job `id`; false when shutting down.
    pub(crate) async fn wait_until_owner(&self, id: Uuid) -> bool {
        while !self.owns(id).await {
            if self.broker.is_shutting_down() {
                return false;
            }
            tokio::time::sleep(RENEW).await;
        }
        !self.broker.is_shutting_down()
    }

    /// Renews this node's jobs every [`RENEW`], drops the ones it lost, and every fifth round
    /// runs `discover` (start workers for jobs made on other nodes). Runs until shutdown.
    pub async fn supervise<F, Fut>(self: Arc<Self>, discover: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut round = 0u64;
        while !self.broker.is_shutting_down() {
            tokio::time::sleep(RENEW).await;
            round += 1;
            let ids: Vec<Uuid> = self.owned.lock().iter().copied().collect();
            for id in ids {
                let now = self.broker.now();
                let key = id.simple().to_string();
                match self.broker.engine().claim_owner(&key, self.node, now + OWNER_TTL_MS, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(job = %id, "another node took this push job over");
                        self.owned.lock().remove(&id);
                    }
                    // Unknown (database unreachable): stop, as another node may take over.
                    Err(_) => {
                        self.owned.lock().remove(&id);
                    }
                }
            }
            if round.is_multiple_of(5) {
                discover().await;
            }
        }
    }

    /// Starts a worker for every stored subscription that has none running (server start, and
    /// the supervisor's rounds: subscriptions made on other nodes).
    pub async fn start_all(self: &Arc<Self>) {
        match self.broker.subscriptions().await {
            Ok(subs) => subs.into_iter().for_each(|sub| {
                let running = self.workers.lock().get(&sub.id).is_some_and(|h| !h.is_finished());
                if !running {
                    self.spawn(sub);
                }
            }),
            Err(e) => tracing::error!(error = %e, "cannot list push subscriptions; none started"),
        }
    }

    /// Checks a target URL against the SSRF rules (subscribe time).
    pub async fn check_target(&self, url: &str) -> Result<(), String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        self.policy.check(&parsed).await
    }

    /// Checks a relay target at subscribe time: http or https, addresses against the SSRF
    /// rules, host names left to each delivery (which resolves them through the guard).
    pub async fn check_relay_target(&self, url: &str) -> Result<(), String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        self.policy.check_with(&parsed, ssrf::Scheme::HttpAndHttps, false).await
    }

    /// Stores a subscription and starts delivering it.
    pub async fn subscribe(self: &Arc<Self>, rec: SubscriptionRecord) -> Result<(), CoreError> {
        self.broker.subscribe(rec.clone()).await?;
        self.spawn(rec);
        Ok(())
    }

    /// Stops and removes a subscription; false when there was none.
    pub async fn unsubscribe(&self, id: Uuid) -> Result<bool, CoreError> {
        if let Some(h) = self.workers.lock().remove(&id) {
            h.abort();
        }
        self.broker.unsubscribe(id).await
    }

    /// Stops the workers of subscriptions whose queue is gone.
    pub async fn forget_queue(&self, _ns: &str, _name: &str) {
        let Ok(subs) = self.broker.subscriptions().await else {
            // Unknown: keep every worker (a gone subscription's worker stops by itself).
            return;
        };
        let live: Vec<Uuid> = subs.iter().map(|s| s.id).collect();
        self.workers.lock().retain(|id, h| {
            let keep = live.contains(id);
            if !keep {
                h.abort();
            }
            keep
        });
    }

    /// The shared RSA signing key (loaded, or created, on first use).
    pub async fn rsa_signer(&self) -> Result<Arc<signing::RsaSigner>, CoreError> {
        self.signer
            .get_or_try_init(|| async { signing::RsaSigner::load_or_create(&self.broker).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// Stops every worker (shutdown).
    pub fn shutdown(&self) {
        for (_, h) in self.workers.lock().drain() {
            h.abort();
        }
        for (_, h) in self.relays.lock().drain() {
            h.abort();
        }
    }

    fn spawn(self: &Arc<Self>, sub: SubscriptionRecord) {
        let me = self.clone();
        let id = sub.id;
        let handle = tokio::spawn(async move { me.run(sub).await });
        if let Some(old) = self.workers.lock().insert(id, handle) {
            old.abort();
        }
    }

    async fn run(self: Arc<Self>, sub: SubscriptionRecord) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        loop {
            if self.broker.is_shutting_down() || matches!(self.broker.subscription(sub.id).await, Ok(None)) {
                return;
            }
            if !self.wait_until_owner(sub.id).await {
                return;
            }
            let Ok(q) = self.broker.subscription_queue(&sub).await else {
                return;
            };
            let Ok(first) = slots.clone().acquire_owned().await else {
                return;
            };
            let opts = ReceiveOptions {
                lease_ms: Some(sub.visibility_timeout_secs * 1000),
                wait_ms: Some(POLL_MS),
                ..ReceiveOptions::new(1 + slots.available_permits())
            };
            let got = match self.broker.receive(&q, DEFAULT_GROUP, opts).await {
                Ok(g) => g,
                Err(CoreError::QueueNotFound) => return,
                Err(e) => {
                    tracing::warn!(error = %e, subscription = %sub.id, "push receive failed");
                    let _ = self.broker.clock().sleep_until(self.broker.now() + 1000).await;
                    continue;
                }
            };
            spawn_each(first, &slots, got, |d| {
                let (me, sub, q) = (self.clone(), sub.clone(), q.clone());
                async move { me.deliver(&sub, &q, d).await }
            });
        }
    }

    /// Delivers one message until it is acked or dead-lettered.
    async fn deliver(&self, sub: &SubscriptionRecord, q: &Arc<Queue>, d: Delivery) {
        let mut handle = d.handle.clone();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.post(sub, q, &d, d.deliveries + attempt - 1).await {
                Ok(()) => {
                    if let Err(e) = self.broker.ack(q, &handle).await {
                        tracing::warn!(error = %e, subscription = %sub.id, "push ack failed");
                    }
                    return;
                }
                Err(why) => {
                    tracing::info!(subscription = %sub.id, message = %d.meta.id, attempt, reason = %why, "push delivery failed");
                }
            }
            if attempt > sub.max_retries {
                if let Err(e) = self.broker.dead_letter_delivery(q, &handle, sub.dead_letter_queue).await {
                    tracing::warn!(error = %e, subscription = %sub.id, "push dead-letter failed");
                }
                return;
            }
            let shift = (attempt - 1).min(20);
            let backoff = self.cfg.backoff_base_ms.saturating_mul(1 << shift).min(self.cfg.backoff_max_ms);
            // Keep the message ours while we wait and retry.
            let hold = backoff + self.cfg.timeout_ms + sub.visibility_timeout_secs * 1000;
            match self.broker.change_visibility(q, &handle, hold).await {
                Ok((h, _)) => handle = h,
                Err(_) => return, // the lease is gone (queue deleted, shutdown): it will come back
            }
            let clock = self.broker.clock().clone();
            clock.sleep_until(self.broker.now().saturating_add(backoff)).await;
            if self.broker.is_shutting_down() {
                return;
            }
        }
    }

    /// One POST. Ok only for a 2xx answer.
    async fn post(&self, sub: &SubscriptionRecord, q: &Queue, d: &Delivery, attempts: u32) -> Result<(), String> {
        let url = Url::parse(&sub.url).map_err(|e| e.to_string())?;
        self.policy.check(&url).await?;
        let body = json!({
            "subscription_id": sub.id.to_string(),
            "queue": q.name(),
            "message_id": d.meta.id.to_string(),
            "payload": body_value(d.meta.kind, &d.body.body),
            "attempts": attempts,
            "enqueued_at": rfc3339(d.meta.enqueued_at),
        })
        .to_string();
        let ts = (self.broker.now() / 1000).to_string();
        let mut req = self
            .client
            .as_ref()
            .map_err(Clone::clone)?
            .post(url)
            .header("content-type", "application/json")
            .header("x-qgate-timestamp", &ts);
        if let Some(secret) = &sub.secret {
            let sig = hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes());
            req = req.header("x-qgate-signature", format!("sha256={}", hex::encode(sig)));
        }
        let resp = req.body(body).send().await.map_err(|e| e.to_string());
        let ok = resp.as_ref().is_ok_and(|r| r.status().is_success());
        count(ok);
        let resp = resp?;
        if ok { Ok(()) } else { Err(format!("status {}", resp.status())) }
    }
}
