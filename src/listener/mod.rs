//! The HTTP listener: accepts TCP connections and serves each with hyper's HTTP/1 connection.
//!
//! It replaces `axum::serve` for what a server facing untrusted clients needs and that does not
//! offer: a **header timeout** (a request head must arrive within it, counted from its first
//! byte: slowloris), an **idle timeout** for keep-alive connections, a **connection cap** below
//! the open-file limit (when it is reached, the longest-idle keep-alive connections are closed
//! to make room — as nginx does — and new ones wait in the kernel's backlog rather than fail),
//! and a **graceful shutdown with a deadline**: idle connections close at once, requests in
//! progress get the grace period, then whatever is left is closed. The body timeout is applied
//! where bodies are read ([`crate::http::read_body`]). hyper's own answers to unparsable
//! requests get a neutral JSON error body ([`io`]).

mod conn;
mod io;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use self::conn::ConnState;

/// The listener's limits (from `[http]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// How many idle connections are closed at once when the cap is reached.
const REAP_AT_ONCE: usize = 32;

/// The connections being served, so the listener can ask some (the cap) or all (shutdown) to
/// close.
#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Arc<ConnState>>,
}

impl Registry {
    /// Asks the `n` longest-idle connections to close; returns how many it asked.
    fn reap_idle(&self, n: usize) -> usize {
        let mut idle: Vec<(u64, &Arc<ConnState>)> =
            self.conns.values().filter_map(|c| c.idle_for().map(|ms| (ms, c))).collect();
        idle.sort_by_key(|(ms, _)| std::cmp::Reverse(*ms));
        idle.truncate(n);
        for (_, c) in &idle {
            c.close.notify_one();
        }
        idle.len()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then closes idle connections, lets
/// requests in progress finish for up to `grace`, and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<tls::Tls>>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut full_warned = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !full_warned {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached: closing idle connections"
                    );
                    full_warned = true;
                }
                registry.lock().reap_idle(REAP_AT_ONCE);
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = tasks.join_next(), if !tasks.is_empty() => continue,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: the connections we have go on; try again soon.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        full_warned = false;
        let state = Arc::new(ConnState::new());
        let id = {
            let mut r = registry.lock();
            r.next += 1;
            let id = r.next;
            r.conns.insert(id, state.clone());
            id
        };
        let (app, registry) = (app.clone(), registry.clone());
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let _ = stream.set_nodelay(true);
        tasks.spawn(async move {
            match acceptor {
                None => conn::serve(stream, app, state, limits).await,
                Some(acceptor) => {
                    // The handshake is part of the head: it gets the header timeout.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn::serve(tls, app, state, limits).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake not done within the header timeout"),
                    }
                }
            }
            registry.lock().conns.remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    for c in registry.lock().conns.values() {
        c.close.notify_one();
    }
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            left = tasks.len(),
            "shutdown grace period over: closing the connections left"
        );
        tasks.shutdown().await;
    }
}

/// The connection cap for `wanted`: at most the open-file limit (raised to its hard limit
/// first) minus a reserve for the store's files and outgoing push connections.
pub fn connection_cap(wanted: usize) -> usize {
    const RESERVE: u64 = 128;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let cap = limit.saturating_sub(RESERVE).max(16);
            let cap = usize::try_from(cap).unwrap_or(usize::MAX).min(wanted);
            if cap < wanted {
                tracing::info!(
                    max_connections = cap,
                    open_files = limit,
                    "connection cap lowered to fit the open-file limit"
                );
            }
            cap
        }
        Err(_) => wanted,
    }
}
