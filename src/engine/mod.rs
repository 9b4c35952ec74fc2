//! The engines: what keeps the queues behind [`crate::core::Engine`].
//!
//! * [`embedded`] — every queue in this process's memory, durable through sled and a
//!   write-ahead log in the data directory. The default; needs nothing.
//!
//! [`open`] builds the engine the configuration names.

pub mod embedded;

use std::sync::Arc;

use crate::config::Config;
use crate::core::{Engine, Millis};

/// Opens the configured engine over the data directory. `now` is the clock's time at start.
pub fn open(config: &Config, now: Millis) -> Result<Arc<dyn Engine>, String> {
    let mut opts = embedded::store::SledOptions::new(config.data_dir.join("store"));
    opts.cache_bytes = config.store.cache_mb.max(1) * 1024 * 1024;
    opts.flush_every_ms = config.store.flush_every_ms;
    let store = Arc::new(embedded::store::SledStore::open(&opts).map_err(|e| format!("cannot open the store: {e}"))?);
    let engine = embedded::EmbeddedEngine::open(store, now).map_err(|e| format!("cannot load the store: {e}"))?;
    Ok(Arc::new(engine))
}
