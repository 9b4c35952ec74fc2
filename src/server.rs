//! The server: opens the data directory, builds the broker and the one router every dialect
//! shares, runs the maintenance loop, and shuts down gracefully.
//!
//! Shutdown order: stop accepting → end long polls (they answer empty) → let in-flight requests
//! finish → stop push workers → flush the store → return.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::{Auth, Credentials};
use crate::config::Config;
use crate::core::{Broker, Clock, ReceiptKey};
use crate::dialects;
use crate::engine;
use crate::listener::tls::Tls;
use crate::listener::{self, Limits, connection_cap};
use crate::push::PushManager;
pub use crate::state::{AppState, Shared};

/// A running qgate minus the listener.
pub struct Opened {
    pub state: AppState,
    /// The admin listener (metrics, admin API, console), when one is bound.
    pub admin: Option<TcpListener>,
}

/// Reads the receipt key from the data dir, creating it (mode 0600) on first start.
fn receipt_key(dir: &Path) -> Result<ReceiptKey, String> {
    let path = dir.join("qgate.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|_| format!("{} is not a 32-byte key", path.display()))?;
            Ok(ReceiptKey::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            f.write_all(&key)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(ReceiptKey::new(key))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The receipt key every node of a shared engine uses: kept through the engine (the label of
/// one record in an internal namespace); the first node creates it, a concurrent creator adopts
/// the winner's.
async fn shared_receipt_key(engine: &dyn crate::core::Engine, now: crate::core::Millis) -> Result<ReceiptKey, String> {
    use base64::Engine as _;
    const NS: &str = "\u{0}receipt-key";
    const NAME: &str = "key";
    const LABEL: &str = "key";
    let parse = |r: &crate::core::model::QueueRecord| -> Result<ReceiptKey, String> {
        let b64 = r.config.labels.get(LABEL).ok_or("the shared receipt key record has no key")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "the shared receipt key is not 32 bytes".to_string())?;
        Ok(ReceiptKey::new(key))
    };
    match engine.queue(NS, NAME).await {
        Ok(q) => parse(&q.record()),
        Err(crate::core::CoreError::QueueNotFound) => {
            let key: [u8; 32] = rand::random();
            let mut cfg = crate::core::model::QueueConfig::default();
            cfg.labels.insert(LABEL.into(), base64::engine::general_purpose::STANDARD.encode(key));
            match engine.create_queue(NS, NAME, cfg, None, now).await.map_err(|e| format!("the receipt key: {e}"))? {
                crate::core::CreateOutcome::Created(r) | crate::core::CreateOutcome::Exists(r) => parse(&r),
            }
        }
        Err(e) => Err(format!("cannot read the shared receipt key: {e}")),
    }
}

/// Opens the data directory and the engine, and builds everything but the listener.
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Opened, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let engine = engine::open(&config, clock.now()).await?;
    let key = match config.store.engine {
        crate::config::EngineKind::Embedded => receipt_key(&config.data_dir)?,
        crate::config::EngineKind::Postgres => shared_receipt_key(&*engine, clock.now()).await?,
    };
    let broker = Broker::new(engine, clock, key);
    let push = PushManager::new(broker.clone(), config.push.clone());
    let load_tls = |t: &Option<crate::config::TlsConfig>| -> Result<Option<Arc<Tls>>, String> {
        t.as_ref().map(|t| Tls::load(&t.cert, &t.key).map(Arc::new)).transpose()
    };
    let tls = load_tls(&config.tls)?;
    let admin_tls = load_tls(&config.admin.tls)?;
    let state = AppState(Arc::new(Shared {
        broker,
        auth: Arc::new(Credentials::new(Auth::from_config(&config))),
        tls,
        admin_tls,
        config: Arc::new(config),
        push,
        metrics: Default::default(),
    }));
    Ok(Opened { state, admin: None })
}

/// Liveness: the process serves requests. Stays "ok" while storage is full — restarting the
/// process would not help, and a start on a full disk may not even succeed.
async fn healthz() -> &'static str {
    crate::http::set_operation(crate::http::Operation::new(crate::http::Operation::NO_DIALECT, "healthz"));
    "ok"
}

/// Readiness: whether writes can be stored now. 503 while storage is full or failing (the
/// engine recovers by itself) or the server is shutting down, so a load balancer sends traffic
/// to another node meanwhile.
async fn readyz(State(state): State<AppState>) -> Response {
    crate::http::set_operation(crate::http::Operation::new(crate::http::Operation::NO_DIALECT, "readyz"));
    match state.broker.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({"ready": true}))).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason}))).into_response()
        }
    }
}

/// The router of every dialect.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(dialects::infrai::router())
        .merge(dialects::mns::router())
        .merge(dialects::ctyun::router())
        .merge(dialects::dms::router())
        .fallback(dialects::not_found)
        .method_not_allowed_fallback(dialects::method_not_allowed);
    layers(routes, &state).with_state(state)
}

/// The middleware every request passes through, outermost first: the request context (id,
/// operation, log line), then panic recovery (inside it, so a panic's answer and log carry the
/// id and operation). Public so tests can wrap routes of their own exactly as [`app`] does.
pub fn layers(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.layer(middleware::from_fn_with_state(state.clone(), dialects::serve))
}

/// Applies due changes (lease ends, delays, retention, idempotency expiry) at least every
/// second, so stats stay live and disk is reclaimed even when nobody calls.
async fn maintenance(broker: Arc<Broker>) {
    while !broker.is_shutting_down() {
        let now = broker.now();
        let next = broker.next_event().await.map_or(now + 1000, |n| n.clamp(now + 10, now + 1000));
        tokio::select! {
            _ = broker.clock().sleep_until(next) => {}
            _ = broker.shutdown_notify.notified() => return,
        }
        broker.tick().await;
    }
}

/// Reads the configuration file again and puts its tenants and keys in force, and reads the
/// TLS certificates and keys again; connections stay open. What else changed in the file needs
/// a restart (it is reported). A file that does not load keeps the running configuration.
pub fn reload(state: &AppState) -> Result<String, String> {
    let mut done = Vec::new();
    // Everything is read before anything changes: a bad file changes nothing.
    let fresh = state.config.source.as_ref().map(|p| Config::load(Some(p), |_| None)).transpose()?;
    for (what, tls) in [("TLS certificate", &state.tls), ("admin TLS certificate", &state.admin_tls)] {
        if let Some(t) = tls {
            t.reload()?;
            done.push(what.to_string());
        }
    }
    if let (Some(fresh), Some(path)) = (fresh, &state.config.source) {
        state.auth.replace(Auth::from_config(&fresh));
        done.insert(0, format!("{} tenants and their keys from {}", fresh.tenants.len(), path.display()));
    }
    if done.is_empty() {
        return Err("nothing to reload: no configuration file and no TLS".into());
    }
    Ok(format!("reloaded {}", done.join(", ")))
}

#[cfg(unix)]
async fn reload_on_sighup(state: AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        match reload(&state) {
            Ok(what) => tracing::info!("SIGHUP: {what}"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; the running configuration stays"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_state: AppState) {}

/// Serves until `shutdown` resolves, then shuts down gracefully.
pub async fn run(
    opened: Opened,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let Opened { state, admin } = opened;
    state.push.start_all().await;
    dialects::mns::notify::start_all(&state).await;
    let broker = state.broker.clone();
    let push = state.push.clone();
    let st = state.clone();
    let supervisor = tokio::spawn(push.clone().supervise(move || {
        let st = st.clone();
        async move {
            st.push.start_all().await;
            dialects::mns::notify::start_all(&st).await;
        }
    }));
    let maint = tokio::spawn(maintenance(broker.clone()));
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let http = &state.config.http;
    crate::http::set_body_timeout(Duration::from_secs(http.body_timeout_secs));
    let limits = Limits {
        header_timeout: Duration::from_secs(http.header_timeout_secs),
        idle_timeout: Duration::from_secs(http.idle_timeout_secs),
        max_connections: connection_cap(http.max_connections),
    };
    // The admin listener stops with the vendor one (its own small connection cap: operators).
    let admin_stop = Arc::new(tokio::sync::Notify::new());
    let admin_task = admin.map(|l| {
        let app = crate::admin::router(state.clone());
        let stop = admin_stop.clone();
        let limits = Limits { max_connections: 256, ..limits };
        let tls = state.admin_tls.clone();
        tokio::spawn(
            async move { listener::serve(l, app, limits, tls, grace, async move { stop.notified().await }).await },
        )
    });
    let reloader = tokio::spawn(reload_on_sighup(state.clone()));
    let tls = state.tls.clone();
    let app = app(state);
    let stop_broker = broker.clone();
    // Graceful, but not forever: a client that stalls mid-request would keep the process alive
    // until an orchestrator kills it, losing the final flush. The listener closes what is left
    // after the grace period.
    let stop_admin = admin_stop.clone();
    listener::serve(listener, app, limits, tls, grace, async move {
        shutdown.await;
        tracing::info!("shutting down: ending long polls, finishing requests");
        stop_broker.shutdown();
        stop_admin.notify_one();
    })
    .await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    reloader.abort();
    push.shutdown();
    maint.abort();
    supervisor.abort();
    let _ = supervisor.await;
    broker.close().await.map_err(|e| format!("final flush failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}
