//! The broker: the core's public face, and what the dialects call.
//!
//! It holds an [`Engine`] (which keeps and decides everything about queues) and adds what is
//! the same whatever the engine: the clock (each call reads `now` once and hands it down), the
//! receipt key (handles are sealed here and opened here, so engines see only
//! `(group, seq, lease)`), long polling (waiters sleep on [`Wakeups`] between claims), and
//! shutdown (new waits refused, waiting polls answered empty, new publishes refused).
//!
//! The operations live in sibling modules by family: [`super::messages`] (publish, receive,
//! ack, …), [`super::deadletters`], [`super::groups`], [`super::idempotency`],
//! [`super::subscriptions`]; this file holds the directory and the lifecycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use uuid::Uuid;

use super::clock::{Clock, Millis};
use super::engine::{CreateOutcome, Engine, Queue};
use super::error::{CoreError, Result};
use super::model::{QueueConfig, QueueInfo, QueueRecord};
use super::receipt::ReceiptKey;

/// The queue core.
pub struct Broker {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) receipts: ReceiptKey,
    shutting_down: AtomicBool,
    pub shutdown_notify: Notify,
    /// What happened to each queue since the process started (metrics, the admin API).
    pub counters: super::counters::Counters,
    /// Long polls waiting right now.
    pub waiting: std::sync::atomic::AtomicI64,
}

impl Broker {
    /// A broker over an opened engine.
    pub fn new(engine: Arc<dyn Engine>, clock: Arc<dyn Clock>, receipts: ReceiptKey) -> Arc<Broker> {
        Arc::new(Broker {
            engine,
            clock,
            receipts,
            shutting_down: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            counters: Default::default(),
            waiting: Default::default(),
        })
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ends every long poll (they answer empty) and refuses new waits and publishes.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_notify.notify_waiters();
        self.engine.wakeups().wake_all();
    }

    /// Makes everything durable and stops the engine (after [`Broker::shutdown`]).
    pub async fn close(&self) -> Result<()> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.close())
            .await
            .map_err(|e| CoreError::Storage(super::StoreError::new(format!("close task: {e}"))))?
    }

    // ----- directory -------------------------------------------------------------------------

    /// Creates a queue, or reports the existing one of that name. `max_queues` is a dialect's
    /// quota, checked atomically with the insert: it counts the namespace's queues in the new
    /// queue's region (see [`Broker::queue_count_in`]).
    pub async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
    ) -> Result<CreateOutcome> {
        self.engine.create_queue(ns, name, config, max_queues, self.now()).await
    }

    /// The queue of that name in the namespace.
    pub async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        self.engine.queue(ns, name).await
    }

    /// The queue of that name for message traffic: possibly a cached handle (see
    /// [`Engine::queue_cached`](super::engine::Engine::queue_cached)); only the message
    /// operations that retry with a fresh one ([`Broker::publish`], [`Broker::receive`], acks,
    /// nacks, [`Broker::change_visibility`]) may be given it.
    pub async fn queue_cached(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        self.engine.queue_cached(ns, name).await
    }

    /// After a message operation failed with `e` on handle `q`: the queue looked up afresh by
    /// name when it is not the one the handle knew (another id, or a newer record), so that
    /// the caller tries once more with it; else `e` stands.
    pub(crate) async fn retry_fresh(&self, q: &Queue, e: CoreError) -> Result<Arc<Queue>> {
        if !matches!(e, CoreError::QueueNotFound | CoreError::ReceiptMalformed) {
            return Err(e);
        }
        let fresh = self.engine.queue(q.namespace(), q.name()).await?;
        if fresh.id() == q.id() && fresh.version() == q.version() {
            return Err(e);
        }
        Ok(fresh)
    }

    /// The queue with that id, if it belongs to the namespace.
    pub async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>> {
        self.engine.queue_by_id(ns, id).await
    }

    /// The namespace's queues, by name.
    pub async fn queues(&self, ns: &str) -> Result<Vec<Arc<Queue>>> {
        Ok(self.list_queues(ns, "", None, usize::MAX).await?.0)
    }

    /// The namespace's queues with names after `after` (exclusive), starting with `prefix`, at
    /// most `limit`, by name; plus whether more follow.
    pub async fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Arc<Queue>>, bool)> {
        self.engine.list_queues(ns, prefix, after, limit).await
    }

    pub async fn queue_count(&self, ns: &str) -> Result<usize> {
        self.engine.queue_count_in(ns, None).await
    }

    /// The namespace's queues that count in `region`: those created there and those without a
    /// region (made through dialects that have none). `None` counts every queue.
    pub async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> Result<usize> {
        self.engine.queue_count_in(ns, region).await
    }

    /// Whether a queue belongs to `region` for listings (no region: every region).
    pub fn in_region(q: &Queue, region: &str) -> bool {
        q.config().region.as_deref().is_none_or(|r| r == region)
    }

    /// Opens a receipt handle without looking at any queue (dialects that must check what a
    /// handle names against their own token, e.g. CTYun's offset and group).
    pub fn open_receipt(&self, handle: &str) -> Result<super::receipt::Receipt> {
        self.receipts.open(handle)
    }

    /// The queue's record and its default group's live counts.
    pub async fn info(&self, q: &Queue) -> Result<QueueInfo> {
        self.engine.info(q, self.now()).await
    }

    /// Changes a queue's configuration through `f` (which validates and edits a copy of the
    /// current one).
    pub async fn update_queue(&self, q: &Queue, f: impl FnOnce(&mut QueueConfig) -> Result<()>) -> Result<QueueRecord> {
        let current = self.engine.queue_by_id(q.namespace(), q.id()).await?;
        let mut cfg = current.record().config;
        f(&mut cfg)?;
        self.engine.update_queue(q, cfg, self.now()).await
    }

    /// Deletes a queue with its messages, groups, dead letters and subscriptions. Waiters on it
    /// end with [`CoreError::QueueNotFound`].
    pub async fn delete_queue(&self, q: &Queue) -> Result<()> {
        self.engine.delete_queue(q).await?;
        self.counters.forget(q.id());
        Ok(())
    }

    /// Every namespace that has a queue, by name, including the internal ones (whose names
    /// hold a control character: see [`Broker::is_internal`]).
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        self.engine.namespaces().await
    }

    /// Whether a namespace is one a dialect keeps for itself (MNS topics and subscriptions,
    /// signing keys) rather than a tenant's queues.
    pub fn is_internal(ns: &str) -> bool {
        ns.chars().any(char::is_control)
    }

    /// Every queue of a namespace whose name starts with `prefix`, by name.
    pub async fn all_queues_of(&self, ns: &str, prefix: &str) -> Result<Vec<Arc<Queue>>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = self.engine.list_queues(ns, prefix, after.as_deref(), 1000).await?;
            after = page.last().map(|q| q.name().to_string());
            out.extend(page);
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Applies everything due (retention, delay ends, lease ends) in every queue, and forgets
    /// expired idempotency records. The server runs it periodically; tests call it after
    /// advancing a manual clock.
    pub async fn tick(&self) {
        if let Err(e) = self.engine.sweep(self.now()).await {
            tracing::error!(error = %e, "sweeping due changes failed");
        }
    }

    /// Whether the engine can store writes now (see [`Engine::readiness`]); `/readyz`.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.is_shutting_down() {
            return Err("shutting down".into());
        }
        self.engine.readiness()
    }

    /// The earliest instant a queue changes by itself (for the maintenance loop).
    pub async fn next_event(&self) -> Option<Millis> {
        self.engine.next_due().await
    }

    /// Fails with [`CoreError::ShuttingDown`] once shutdown began.
    pub(crate) fn check_running(&self) -> Result<()> {
        if self.is_shutting_down() { Err(CoreError::ShuttingDown) } else { Ok(()) }
    }
}
