//! Idempotency keys: a mutating call with a key replays its first answer for 24 hours.
//!
//! The engine maps (namespace, capability, key) to the request's fingerprint and the answer the
//! dialect rendered (status and body bytes: replays are byte-identical), durably. Requests with
//! the same key are serialised from [`Broker::idempotency_begin`] to
//! [`Broker::idempotency_finish`] by whatever the [`IdempotencyTicket`] holds (an engine's
//! lock), so two concurrent retries cannot both act.

use std::any::Any;

use super::broker::Broker;
use super::clock::Millis;
use super::error::Result;
use super::model::IdempotencyRecord;

/// How long an answer is replayed.
pub const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 3600 * 1000;

/// What an idempotent request should do.
pub enum Idempotent {
    /// First time (or expired): act, then [`Broker::idempotency_finish`] with the answer.
    Proceed(IdempotencyTicket),
    /// Seen with the same fingerprint: answer this.
    Replay { status: u16, body: Vec<u8> },
    /// Seen with a different fingerprint.
    Mismatch,
}

/// Permission to act on a fresh key; holds the key (whatever the engine needs for that, e.g.
/// a lock guard) until finished or dropped.
pub struct IdempotencyTicket {
    pub namespace: String,
    pub capability: String,
    pub key: String,
    pub fingerprint: [u8; 32],
    pub hold: Box<dyn Any + Send + Sync>,
}

impl Broker {
    /// Looks a key up, serialising concurrent requests with the same key.
    pub async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Idempotent> {
        self.engine.idempotency_begin(ns, capability, key, fingerprint, self.now()).await
    }

    /// Looks a key up without taking its lock (per-message keys inside a batch).
    pub async fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
    ) -> Result<Option<([u8; 32], u16, Vec<u8>)>> {
        self.engine.idempotency_lookup(ns, capability, key, self.now()).await
    }

    /// Records an answer without a ticket (per-message keys inside a batch).
    pub async fn idempotency_record(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        status: u16,
        body: Vec<u8>,
    ) -> Result<()> {
        let rec = IdempotencyRecord {
            namespace: ns.to_string(),
            capability: capability.to_string(),
            key: key.to_string(),
            fingerprint,
            status,
            body,
            created_at: self.now(),
        };
        self.engine.idempotency_record(rec).await
    }

    /// Remembers the answer of a fresh idempotent request (durably) and releases the key.
    pub async fn idempotency_finish(&self, ticket: IdempotencyTicket, status: u16, body: Vec<u8>) -> Result<()> {
        let r = self
            .idempotency_record(&ticket.namespace, &ticket.capability, &ticket.key, ticket.fingerprint, status, body)
            .await;
        drop(ticket);
        r
    }
}
