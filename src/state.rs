//! The state every request handler reaches: the broker, the credentials, the configuration and
//! the push manager.
//!
//! It lives in its own module, apart from the server that builds it, so that the dialects (and
//! the plumbing they share) depend on this small type rather than on the server, which in turn
//! mounts every dialect: the dependency runs one way, server → dialects → state.

use std::sync::Arc;

use crate::auth::Credentials;
use crate::config::Config;
use crate::core::Broker;
use crate::push::PushManager;

/// What every handler can reach: one `Arc`, because axum clones the state for every request
/// (several times, through the middleware) and each clone of shared counters is an atomic
/// operation on a cache line both cores fight over.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    pub broker: Arc<Broker>,
    pub auth: Arc<Credentials>,
    /// TLS of the vendor and admin listeners, when configured (reloaded on SIGHUP).
    pub tls: Option<Arc<crate::listener::tls::Tls>>,
    pub admin_tls: Option<Arc<crate::listener::tls::Tls>>,
    pub config: Arc<Config>,
    pub push: Arc<PushManager>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
