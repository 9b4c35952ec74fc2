//! The engines: what keeps the queues behind [`crate::core::Engine`].
//!
//! * [`embedded`] — every queue in this process's memory, durable through sled and a
//!   write-ahead log in the data directory. The default; needs nothing.
//! * [`postgres`] — every queue in a PostgreSQL database that any number of qgate nodes share.
//!
//! [`open`] builds the engine the configuration names.

pub mod embedded;
pub mod postgres;

use std::sync::Arc;

use crate::config::{Config, EngineKind};
use crate::core::{Engine, Millis};

/// Opens the configured engine. `now` is the clock's time at start.
pub async fn open(config: &Config, now: Millis) -> Result<Arc<dyn Engine>, String> {
    match config.store.engine {
        EngineKind::Embedded => {
            let mut opts = embedded::store::SledOptions::new(config.data_dir.join("store"));
            opts.cache_bytes = config.store.cache_mb.max(1) * 1024 * 1024;
            opts.flush_every_ms = config.store.flush_every_ms;
            let store =
                Arc::new(embedded::store::SledStore::open(&opts).map_err(|e| format!("cannot open the store: {e}"))?);
            let engine =
                embedded::EmbeddedEngine::open(store, now).map_err(|e| format!("cannot load the store: {e}"))?;
            Ok(Arc::new(engine))
        }
        EngineKind::Postgres => {
            let url = config.store.url.as_deref().ok_or("[store] engine = \"postgres\" needs `url`")?;
            Ok(Arc::new(postgres::PgEngine::open(url, config.store.pool_size).await?))
        }
    }
}
