//! Durable state behind the embedded engine's in-memory queues: a journal, not a database.
//!
//! [`Store`] speaks the queue model's domain (append, lease, ack, dead-letter, transfer, …), not
//! key/value, but it decides nothing: the engine's in-memory state is authoritative while it
//! runs, writes every change here, and reads it all back once, at start ([`Store::load`]), plus
//! message bodies on delivery ([`Store::body`]). That is why a `Store` cannot be shared by
//! several processes (each would hold its own diverging copy of every queue); an engine that
//! serves several nodes implements [`crate::core::Engine`] instead. [`SledStore`] is the
//! implementation: sled behind a write-ahead log that also keeps the bodies.
//!
//! # Contract
//!
//! * **Ordering.** Every method applies its change atomically (all of it or none of it, also
//!   across a crash) and in call order: a later call observes an earlier one.
//! * **Durability.** A change is durable once a [`Store::sync`] that *started after it returned*
//!   has completed (for sled: its write-ahead log is fsynced; sled itself is written behind).
//!   The engine awaits `sync` before answering a publish (and any other call a dialect
//!   promises is durable), so an answered publish survives `kill -9` and power loss.
//!   Everything else (leases, acks, releases, dead-lettering) may become durable lazily: after a
//!   crash those changes may be missing, which turns into redelivery (at-least-once), never loss.
//! * **Group commit.** Concurrent `sync` calls share flushes: an implementation must not flush
//!   once per caller when callers overlap.
//! * **Messages** are stored as a small [`MessageMeta`] (loaded into memory at start) and a
//!   [`MessageBody`] read on delivery. The store also keeps each queue's highest sequence ever
//!   appended, so sequences (and the message ids derived from them) are never reused, even after
//!   every message is gone.
//! * **Delivery records** hold the state of one message in one group; a message with no record
//!   in a group is ready and was never delivered there. Records belong to groups that exist (the
//!   default group, number 0, always does). `remove` and `delete_queue` drop the records of the
//!   messages they remove; `delete_group` drops the group's.
//! * **Load** returns everything written (and, after a crash, everything durable) so the engine can
//!   rebuild its indexes: queues, groups, message metas, delivery records, idempotency records,
//!   subscriptions.
//! * Records are encoded with a version byte ([`codec`]); a store refuses records newer than it
//!   knows instead of misreading them.
//!
//! # Faults
//!
//! A write or fsync that fails (a full disk, an I/O error) does not fail the store for good.
//! While it lasts, [`Store::sync`] fails at once with an *unavailable* [`StoreError`] (dialects
//! answer 503-class "retry later"), [`Store::append`] refuses new messages (nothing is half
//! stored: the caller has changed nothing yet), and every other change is kept in memory, in
//! order, to be written when the store recovers — which it tries by itself every second. A
//! failed fsync is never trusted for what it covered: the log is cut back to the last length
//! an fsync confirmed and written again from memory (PostgreSQL's "fsyncgate" lesson), so what
//! was answered durable is exactly what a successful fsync covered. [`Store::readiness`] says
//! whether the store is in such a fault.

mod apply;
mod codec;
pub mod faults;
mod ops;
mod sled_store;
mod wal;

pub use sled_store::{SledOptions, SledStore};

/// The decoders of what the store reads back from disk, for the fuzz targets in `fuzz/` (see
/// FUZZING.md); not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::codec::{decode, encode};
    use super::*;

    /// Splits a log segment into frames (stopping at the first bad one) and decodes each
    /// frame's operation; returns how many frames there were.
    pub fn log_segment(bytes: &[u8]) -> usize {
        let frames = wal::frames(bytes);
        for f in &frames {
            let _ = ops::Op::decode(f.payload, 1, f.offset);
        }
        frames.len()
    }

    /// Decodes a stored value as every kind of record the store keeps; whatever decodes must
    /// encode and decode again to the same record.
    pub fn record(bytes: &[u8]) {
        fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
            if let Ok(v) = decode::<T>(bytes, "fuzzed") {
                let again: T = decode(&encode(&v), "re-encoded").expect("a decoded record encodes and decodes");
                assert_eq!(again, v, "a record survives a round trip");
            }
        }
        round_trip::<QueueRecord>(bytes);
        round_trip::<GroupRecord>(bytes);
        round_trip::<DeliveryRecord>(bytes);
        round_trip::<IdempotencyRecord>(bytes);
        round_trip::<SubscriptionRecord>(bytes);
        let _ = apply::stored_meta(bytes);
        let _ = apply::loc_of(bytes);
    }
}

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::core::model::{
    DeliveryRecord, GroupRecord, IdempotencyRecord, MessageBody, MessageMeta, QueueRecord, SubscriptionRecord,
};

pub use crate::core::StoreError;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            // A full disk or a failing device: the store recovers (see "Faults").
            sled::Error::Io(e) => faults::io_error("sled", e),
            e => StoreError::new(format!("sled: {e}")),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A future returned by [`Store::sync`].
pub type SyncFuture = Pin<Box<dyn Future<Output = StoreResult<()>> + Send>>;

/// Everything persisted about one queue.
#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    pub record: Option<QueueRecord>,
    pub groups: Vec<GroupRecord>,
    /// Highest sequence ever appended (0 when none).
    pub last_seq: u64,
    /// In sequence order.
    pub messages: Vec<MessageMeta>,
    /// (group, seq, record), in (group, seq) order.
    pub deliveries: Vec<(u32, u64, DeliveryRecord)>,
}

/// Everything persisted, as read at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub queues: Vec<QueueSnapshot>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// Domain-level durable operations of the queue core. See the module docs for the contract.
pub trait Store: Send + Sync + 'static {
    /// Reads everything (start-up).
    fn load(&self) -> StoreResult<Snapshot>;

    /// Creates a queue or replaces its record (configuration change).
    fn put_queue(&self, queue: &QueueRecord) -> StoreResult<()>;
    /// Deletes a queue with all its groups, messages and delivery records.
    fn delete_queue(&self, queue: Uuid) -> StoreResult<()>;
    /// Creates or replaces a named group.
    fn put_group(&self, group: &GroupRecord) -> StoreResult<()>;
    /// Deletes a named group and its delivery records (its leases and dead letters).
    fn delete_group(&self, queue: Uuid, group: u32) -> StoreResult<()>;

    /// Appends messages (sequences ascending, above every earlier one).
    fn append(&self, queue: Uuid, messages: &[(MessageMeta, MessageBody)]) -> StoreResult<()>;
    /// Reads a message's body and attributes.
    fn body(&self, queue: Uuid, seq: u64) -> StoreResult<Option<MessageBody>>;
    /// Removes messages with all their delivery records (acked by every group, purged, expired).
    fn remove(&self, queue: Uuid, seqs: &[u64]) -> StoreResult<()>;
    /// Moves one message to another queue (dead-lettering to a target queue, or redrive back),
    /// body and attributes included, as `meta` (its new sequence and origin). One atomic step.
    /// With `keep_source` the source message stays (other groups still need it): a copy.
    fn transfer(&self, from: Uuid, from_seq: u64, to: Uuid, meta: &MessageMeta, keep_source: bool) -> StoreResult<()>;

    /// A delivery was leased, or its lease changed (extend / change-visibility).
    fn lease(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()>;
    /// A delivery ended without success (nack, lease expiry, failed confirm): ready again, with
    /// its counts kept.
    fn release(&self, queue: Uuid, group: u32, seq: u64, record: &DeliveryRecord) -> StoreResult<()>;
    /// The group is done with these messages (acked, or skipped by a reset), or a dead letter of
    /// the group's own store changed state: the record says which.
    fn settle(&self, queue: Uuid, group: u32, entries: &[(u64, DeliveryRecord)]) -> StoreResult<()>;
    /// Forgets the group's state of these messages: ready and never delivered again (redrive,
    /// reset to a position).
    fn forget(&self, queue: Uuid, group: u32, seqs: &[u64]) -> StoreResult<()>;

    /// Remembers an idempotent answer.
    fn put_idempotency(&self, record: &IdempotencyRecord) -> StoreResult<()>;
    /// Forgets expired idempotent answers.
    fn delete_idempotency(&self, keys: &[(String, String, String)]) -> StoreResult<()>;
    /// Creates or replaces a push subscription.
    fn put_subscription(&self, sub: &SubscriptionRecord) -> StoreResult<()>;
    fn delete_subscription(&self, id: Uuid) -> StoreResult<()>;

    /// Makes every change that returned before this call durable. Concurrent calls share flushes.
    fn sync(&self) -> SyncFuture;

    /// Waits until every change submitted so far is in the store proper (not only in its log),
    /// so the next start has little to replay. Blocking.
    fn flush(&self) -> StoreResult<()>;

    /// Stops the store: every change submitted so far becomes durable, background work ends,
    /// and later calls fail. Blocking; idempotent.
    fn close(&self) -> StoreResult<()>;

    /// `Err(reason)` while the store cannot make writes durable (disk full, I/O errors being
    /// retried). See "Faults" in the module docs.
    fn readiness(&self) -> Result<(), String>;
    /// Counters and sizes for metrics.
    fn metrics(&self) -> Vec<crate::core::engine::StorageMetric> {
        Vec::new()
    }
}
