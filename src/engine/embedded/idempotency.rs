//! Idempotency records of the embedded engine.
//!
//! A table in memory maps (namespace, capability, key) to the request's fingerprint and the
//! answer; records are persisted, so keys survive restarts. Requests with the same key are
//! serialised by a striped async lock: the ticket of a fresh key holds the key's stripe until
//! it is finished or dropped, so two concurrent retries cannot both act.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

use super::EmbeddedEngine;
use super::store::Store;
use crate::core::clock::Millis;
use crate::core::error::Result;
use crate::core::idempotency::{IDEMPOTENCY_WINDOW_MS, IdempotencyTicket, Idempotent};
use crate::core::model::IdempotencyRecord;

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

impl EmbeddedEngine {
    pub(crate) async fn idempotency_begin(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Millis,
    ) -> Idempotent {
        let k: Key = (ns.to_string(), capability.to_string(), key.to_string());
        let stripe = self.idempotency.stripes[self.idempotency.hasher.hash_one(&k) as usize % STRIPES].clone();
        let guard = stripe.lock_owned().await;
        match self.idempotency.get(&k, now) {
            Some(r) if r.fingerprint == fingerprint => Idempotent::Replay { status: r.status, body: r.body },
            Some(_) => Idempotent::Mismatch,
            None => {
                let (namespace, capability, key) = k;
                Idempotent::Proceed(IdempotencyTicket {
                    namespace,
                    capability,
                    key,
                    fingerprint,
                    hold: Box::new(guard),
                })
            }
        }
    }

    pub(crate) fn idempotency_lookup(
        &self,
        ns: &str,
        capability: &str,
        key: &str,
        now: Millis,
    ) -> Option<([u8; 32], u16, Vec<u8>)> {
        let k: Key = (ns.to_string(), capability.to_string(), key.to_string());
        self.idempotency.get(&k, now).map(|r| (r.fingerprint, r.status, r.body))
    }

    pub(crate) async fn idempotency_record(&self, rec: IdempotencyRecord) -> Result<()> {
        self.store.put_idempotency(&rec)?;
        self.idempotency.records.lock().insert((rec.namespace.clone(), rec.capability.clone(), rec.key.clone()), rec);
        self.store.sync().await?;
        Ok(())
    }
}
