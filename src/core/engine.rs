//! The engine seam: what the broker asks of whatever keeps the queues.
//!
//! An [`Engine`] owns every mutable fact of the queue model — the directory of queues, messages,
//! per-group delivery state, leases, dead letters, groups, idempotency records, subscriptions —
//! and its operations *decide*: `claim` chooses which messages a consumer gets and leases them,
//! `ack` checks the lease is still live before settling, `create_queue` checks the quota in the
//! same step as the insert. Nothing above the seam keeps queue state, so an engine whose state is
//! shared (a database several qgate nodes use) gives the same answers on every node.
//!
//! Above the seam the [`Broker`](super::Broker) keeps what is per node and independent of where
//! the state lives: the clock (every operation gets `now` from it, so tests on a manual clock
//! drive any engine), receipt handles (sealed and opened with the broker's key; the engine sees
//! only `(group, seq, lease)`), long polling (waiters registered in [`Wakeups`] and woken by the
//! engine when something may have become deliverable), and shutdown.
//!
//! The engines: `crate::engine::embedded` (the in-memory state machine on sled and a
//! write-ahead log, one process). A new engine implements this trait and runs the engine
//! conformance suite (`tests/engine_*.rs`), which every engine must pass unchanged.
//!
//! Errors: operations return [`CoreError`](super::CoreError); an engine's own failures are
//! [`CoreError::Storage`](super::CoreError::Storage), which dialects answer as their internal
//! error, or [`CoreError::Unavailable`](super::CoreError::Unavailable) while storage cannot take
//! writes for a while (disk full, I/O errors being retried), answered as "service unavailable";
//! [`Engine::readiness`] tells the same to health checks.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::clock::Millis;
use super::deadletters::{DeadPage, RedriveSelector};
use super::error::Result;
use super::idempotency::Idempotent;
use super::model::{
    GroupInfo, GroupRecord, GroupStats, IdempotencyRecord, MessageBody, MessageId, MessageMeta, NewMessage, Peeked,
    QueueConfig, QueueInfo, QueueRecord, SubscriptionRecord, queue_salt,
};
use super::wakeups::Wakeups;
use super::{ReceiveOptions, ResetPosition};

/// A queue as the engine named it when it was looked up: its record at that moment. Cheap to
/// pass around; every operation on it goes back to the engine, which answers
/// [`CoreError::QueueNotFound`](super::CoreError::QueueNotFound) once the queue is deleted.
#[derive(Clone)]
pub struct Queue {
    record: QueueRecord,
    salt: u64,
    version: u64,
}

impl Queue {
    pub fn new(record: QueueRecord) -> Self {
        Queue::at_version(record, 0)
    }

    /// A handle to the record as of `version`, the engine's count of the queue's changes (an
    /// engine that keeps handles current needs none and says 0).
    pub fn at_version(record: QueueRecord, version: u64) -> Self {
        Queue { salt: queue_salt(record.id), record, version }
    }

    /// The engine's version of the record this handle holds.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn namespace(&self) -> &str {
        &self.record.namespace
    }

    /// The queue's record (configuration) as of the lookup that produced this handle.
    pub fn record(&self) -> QueueRecord {
        self.record.clone()
    }

    /// The record without a copy.
    pub fn config(&self) -> &QueueConfig {
        &self.record.config
    }

    /// Derived from the queue id: binds receipt handles and message ids to this queue.
    pub fn salt(&self) -> u64 {
        self.salt
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({}/{})", self.record.namespace, self.record.name)
    }
}

/// Result of a create: the dialects answer differently for an existing queue.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created(QueueRecord),
    Exists(QueueRecord),
}

/// Which delivery an acknowledgement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The lease a receipt handle carries: valid only while that very lease is live.
    Lease { seq: u64, lease: u64 },
    /// A message by id (infrai): valid while the message is leased in the group, whatever
    /// the lease; [`CoreError::NotInFlight`](super::CoreError::NotInFlight) otherwise.
    Message(MessageId),
}

/// A live lease: its id (unique for the queue, never reused) and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOf {
    pub lease: u64,
    pub until: Millis,
}

/// One delivery a claim leased: the message, the lease, and the counts after this delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub meta: MessageMeta,
    pub body: MessageBody,
    pub group: u32,
    pub lease: LeaseOf,
    pub deliveries: u32,
    pub failures: u32,
    pub first_delivered_at: Millis,
    /// A dead letter of the group's own store (settled with `settle_dead`).
    pub dead: bool,
}

/// What a claim found, and when the queue next changes by itself (a delay or lease end), so a
/// long poll that found nothing knows when to look again without being woken.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub items: Vec<Claimed>,
    pub next_due: Option<Millis>,
}

/// One number an engine reports about its storage, for the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageMetric {
    /// Without the `qgate_store_` prefix, e.g. `fsyncs_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
    /// A counter (only grows) rather than a gauge.
    pub counter: bool,
}

/// Everything that keeps queues. See the module docs.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Where the engine signals that a queue may have something deliverable (publish, nack,
    /// redrive, a dead letter moved in) or is gone (deletion).
    fn wakeups(&self) -> &Wakeups;

    // ----- directory ---------------------------------------------------------------------------

    /// Creates a queue, or reports the existing one of that name. `max_queues` is checked in the
    /// same step as the insert; it counts the namespace's queues in the new queue's region
    /// (those without a region count everywhere). A dead-letter target must exist in the
    /// namespace and not be the queue itself.
    async fn create_queue(
        &self,
        ns: &str,
        name: &str,
        config: QueueConfig,
        max_queues: Option<usize>,
        now: Millis,
    ) -> Result<CreateOutcome>;
    /// Replaces a queue's configuration (durably).
    async fn update_queue(&self, q: &Queue, config: QueueConfig, now: Millis) -> Result<QueueRecord>;
    /// Deletes a queue with its messages, groups, dead letters and subscriptions (durably).
    async fn delete_queue(&self, q: &Queue) -> Result<()>;
    async fn queue(&self, ns: &str, name: &str) -> Result<Arc<Queue>>;
    /// A handle for message traffic (publish, receive, ack, change visibility, nack), which an
    /// engine may serve from a cache. Such a handle may be out of date: those operations then
    /// answer `QueueNotFound` (or, opening a receipt, `ReceiptMalformed`) and the broker looks
    /// the queue up afresh and tries once more (see `Broker::retry_fresh`).
    async fn queue_cached(&self, ns: &str, name: &str) -> Result<Arc<Queue>> {
        self.queue(ns, name).await
    }
    async fn queue_by_id(&self, ns: &str, id: Uuid) -> Result<Arc<Queue>>;
    /// Queues of the namespace named after `after` (exclusive) and starting with `prefix`, by
    /// name, at most `limit`; and whether more follow.
    async fn list_queues(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Arc<Queue>>, bool)>;
    /// How many queues count in `region` (see `create_queue`); `None` counts all.
    async fn queue_count_in(&self, ns: &str, region: Option<&str>) -> Result<usize>;
    /// Every namespace that has a queue, by name (operators' views across tenants).
    async fn namespaces(&self) -> Result<Vec<String>>;

    // ----- messages ----------------------------------------------------------------------------

    /// Appends messages, all or none, and returns once they are durable.
    async fn publish(&self, q: &Queue, msgs: Vec<NewMessage>, now: Millis) -> Result<Vec<MessageMeta>>;
    /// Leases up to `opts.max` deliverable messages of a group (never waits).
    async fn claim(&self, q: &Queue, group: u32, opts: &ReceiveOptions, now: Millis) -> Result<Claim>;
    /// Leases up to `max` pending dead letters of a group's own store (never waits).
    async fn claim_dead(
        &self,
        q: &Queue,
        group: u32,
        max: usize,
        lease_ms: u64,
        max_bytes: Option<u64>,
        now: Millis,
    ) -> Result<Claim>;
    /// The group is done with a leased message.
    async fn ack(&self, q: &Queue, group: u32, target: Target, now: Millis) -> Result<()>;
    /// A leased message failed: ready again with a failure counted (dead-lettered at the
    /// queue's limit), or dead-lettered now. Returns whether it went back to the queue.
    async fn nack(&self, q: &Queue, group: u32, target: Target, dead_now: bool, now: Millis) -> Result<bool>;
    /// Replaces a live lease with a new one ending at `until`.
    async fn change_visibility(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        until: Millis,
        now: Millis,
    ) -> Result<LeaseOf>;
    /// Dead-letters a live delivery now: into queue `target` when given, else per the policy.
    async fn dead_letter_delivery(
        &self,
        q: &Queue,
        group: u32,
        seq: u64,
        lease: u64,
        target: Option<Uuid>,
        now: Millis,
    ) -> Result<()>;
    /// Settles a leased dead letter of a group's own store: consumed, or available again.
    async fn settle_dead(&self, q: &Queue, group: u32, seq: u64, lease: u64, success: bool, now: Millis) -> Result<()>;
    /// An in-order batch confirm (see `Broker::confirm`); entries are `(seq, lease)` of
    /// handles the broker could open (`None`: refused) and whether the consumer succeeded.
    /// Returns the number of successes.
    async fn confirm(
        &self,
        q: &Queue,
        group: u32,
        dead: bool,
        entries: &[(Option<(u64, u64)>, bool)],
        now: Millis,
    ) -> Result<u64>;
    /// Up to `max` deliverable messages of a group, not leased.
    async fn peek(&self, q: &Queue, group: u32, max: usize, now: Millis) -> Result<Vec<Peeked>>;
    /// Removes every ready, delayed and in-flight message (durably); dead letters stay.
    async fn purge(&self, q: &Queue, now: Millis) -> Result<u64>;
    /// Live counts of a group; the default group's `dead` includes dead letters of this queue
    /// kept in other queues.
    async fn stats(&self, q: &Queue, group: u32, now: Millis) -> Result<GroupStats>;
    /// The current record, the default group's counts, the number of named groups and of
    /// stored messages.
    async fn info(&self, q: &Queue, now: Millis) -> Result<QueueInfo>;

    // ----- consumer groups ---------------------------------------------------------------------

    /// Creates named groups, all or none (durably): an existing or repeated name is
    /// `GroupExists`; more than `max_groups` named groups is `QuotaExceeded`.
    async fn create_groups(
        &self,
        q: &Queue,
        names: &[String],
        max_groups: Option<usize>,
        now: Millis,
    ) -> Result<Vec<GroupRecord>>;
    /// The named groups with their counts, oldest first.
    async fn groups(&self, q: &Queue, now: Millis) -> Result<Vec<GroupInfo>>;
    /// A named group by id (`g-…`, case-insensitive) or by name.
    async fn group_no(&self, q: &Queue, id_or_name: &str) -> Result<u32>;
    async fn group(&self, q: &Queue, no: u32) -> Result<GroupRecord>;
    /// Deletes named groups, all or none (durably), with their leases and dead letters.
    async fn delete_groups(&self, q: &Queue, nos: &[u32], now: Millis) -> Result<()>;
    /// Repositions a group (durably); without `force`, deliveries in flight are `GroupBusy`.
    async fn reset(&self, q: &Queue, group: u32, pos: ResetPosition, force: bool, now: Millis) -> Result<()>;

    // ----- dead letters ------------------------------------------------------------------------

    /// The default group's pending dead letters wherever kept, by (death time, id), after the
    /// cursor, at most `limit`.
    async fn dead_letters(
        &self,
        q: &Queue,
        after: Option<(Millis, MessageId)>,
        limit: usize,
        now: Millis,
    ) -> Result<DeadPage>;
    /// Returns selected dead letters to the queue with their counts reset (durably).
    async fn redrive(&self, q: &Queue, sel: RedriveSelector, max: usize, now: Millis) -> Result<u64>;

    // ----- idempotency -------------------------------------------------------------------------

    /// Looks a key up; a fresh key is held (concurrent requests with it wait) until the ticket
    /// is finished or dropped.
    async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Millis,
    ) -> Result<Idempotent>;
    /// Looks a key up without holding it: (fingerprint, status, body).
    async fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<([u8; 32], u16, Vec<u8>)>>;
    /// Remembers an answer (durably).
    async fn idempotency_record(&self, record: IdempotencyRecord) -> Result<()>;

    // ----- push subscriptions ------------------------------------------------------------------

    /// Stores a subscription of an existing queue (durably).
    async fn subscribe(&self, rec: SubscriptionRecord) -> Result<()>;
    /// Removes a subscription (durably); false when there was none.
    async fn unsubscribe(&self, id: Uuid) -> Result<bool>;
    async fn subscription(&self, id: Uuid) -> Result<Option<SubscriptionRecord>>;
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>>;
    /// A queue's subscriptions, oldest first.
    async fn subscriptions_of(&self, queue: Uuid) -> Result<Vec<SubscriptionRecord>>;

    /// Takes or renews this node's ownership of a background job (a push subscription's
    /// worker, say) until `until`; false while another node's ownership is live. Engines one
    /// process owns alone keep no record: always true.
    async fn claim_owner(&self, _key: &str, _node: Uuid, _until: Millis, _now: Millis) -> Result<bool> {
        Ok(true)
    }

    // ----- time and lifecycle ------------------------------------------------------------------

    /// Applies everything due at `now` in every queue (retention, delay and lease ends) and
    /// forgets expired idempotency records.
    async fn sweep(&self, now: Millis) -> Result<()>;
    /// The earliest instant something changes by itself, for the maintenance loop.
    async fn next_due(&self) -> Option<Millis>;
    /// Whether writes can be stored now: `Err(reason)` while storage is full or failing (the
    /// engine retries by itself and writes answer [`CoreError::Unavailable`](super::CoreError::Unavailable)).
    /// Health checks (`/readyz`) report it so that a load balancer sends writes elsewhere.
    fn readiness(&self) -> std::result::Result<(), String>;
    /// What the engine's storage reports for metrics (fsyncs, commits, log size, …).
    fn storage_metrics(&self) -> Vec<StorageMetric> {
        Vec::new()
    }
    /// Makes everything durable and stops; later calls fail. Idempotent. Blocking: async code
    /// calls [`Broker::close`](super::Broker::close).
    fn close(&self) -> Result<()>;
}
