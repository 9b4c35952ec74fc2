//! Idempotency keys: a mutating call with a key replays its first answer for 24 hours.
//!
//! The table maps (namespace, capability, key) to the request's fingerprint and the answer the
//! dialect rendered (status and body bytes: replays are byte-identical). Records are persisted,
//! so keys survive restarts. Requests with the same key are serialised by a striped async lock
//! held from [`Broker::idempotency_begin`] to [`IdempotencyTicket::finish`], so two concurrent
//! retries cannot both act.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

use super::broker::Broker;
use super::clock::Millis;
use super::error::Result;
use super::model::IdempotencyRecord;
use crate::store::Store;

/// How long an answer is replayed.
pub const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 3600 * 1000;
const STRIPES: usize = 64;

type Key = (String, String, String);

pub(crate) struct IdempotencyTable {
    records: Mutex<HashMap<Key, IdempotencyRecord>>,
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl IdempotencyTable {
    pub fn new(records: Vec<IdempotencyRecord>, now: Millis) -> Self {
        let records = records
            .into_iter()
            .filter(|r| r.created_at + IDEMPOTENCY_WINDOW_MS > now)
            .map(|r| ((r.namespace.clone(), r.capability.clone(), r.key.clone()), r))
            .collect();
        IdempotencyTable {
            records: Mutex::new(records),
            stripes: (0..STRIPES).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect(),
            hasher: Default::default(),
        }
    }

    fn get(&self, k: &Key, now: Millis) -> Option<IdempotencyRecord> {
        self.records.lock().get(k).filter(|r| r.created_at + IDEMPOTENCY_WINDOW_MS > now).cloned()
    }

    pub fn sweep(&self, now: Millis, store: &dyn Store) {
        let mut gone = Vec::new();
        self.records.lock().retain(|k, r| {
            let keep = r.created_at + IDEMPOTENCY_WINDOW_MS > now;
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        if !gone.is_empty() {
            super::queue::lazy("idempotency sweep", store.delete_idempotency(&gone));
        }
    }
}

/// What an idempotent request should do.
pub enum Idempotent {
    /// First time (or expired): act, then [`IdempotencyTicket::finish`] with the answer.
    Proceed(IdempotencyTicket),
    /// Seen with the same fingerprint: answer this.
    Replay { status: u16, body: Vec<u8> },
    /// Seen with a different fingerprint.
    Mismatch,
}

/// Permission to act on a fresh key; holds the key's stripe lock until finished or dropped.
pub struct IdempotencyTicket {
    key: Key,
    fingerprint: [u8; 32],
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Broker {
    /// Looks a key up, serialising concurrent requests with the same key.
    pub async fn idempotency_begin(&self, ns: &str, capability: &str, key: &str, fingerprint: [u8; 32]) -> Idempotent {
        let k: Key = (ns.to_string(), capability.to_string(), key.to_string());
        let stripe = self.idempotency.stripes[self.idempotency.hasher.hash_one(&k) as usize % STRIPES].clone();
        let guard = stripe.lock_owned().await;
        match self.idempotency.get(&k, self.clock.now()) {
            Some(r) if r.fingerprint == fingerprint => Idempotent::Replay { status: r.status, body: r.body },
            Some(_) => Idempotent::Mismatch,
            None => Idempotent::Proceed(IdempotencyTicket { key: k, fingerprint, _guard: guard }),
        }
    }

    /// Looks a key up without taking its lock (per-message keys inside a batch).
    pub async fn idempotency_lookup(&self, ns: &str, capability: &str, key: &str) -> Option<([u8; 32], u16, Vec<u8>)> {
        let k: Key = (ns.to_string(), capability.to_string(), key.to_string());
        self.idempotency.get(&k, self.clock.now()).map(|r| (r.fingerprint, r.status, r.body))
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
            created_at: self.clock.now(),
        };
        self.store.put_idempotency(&rec)?;
        self.idempotency.records.lock().insert((rec.namespace.clone(), rec.capability.clone(), rec.key.clone()), rec);
        self.store.sync().await?;
        Ok(())
    }

    /// Remembers the answer of a fresh idempotent request (durably) and releases the key.
    pub async fn idempotency_finish(&self, ticket: IdempotencyTicket, status: u16, body: Vec<u8>) -> Result<()> {
        let (ns, cap, key) = &ticket.key;
        self.idempotency_record(ns, cap, key, ticket.fingerprint, status, body).await
    }
}
