//! One connection: its state as the listener sees it (requests in the service, when a request
//! head began to arrive, since when it is idle), the service that hands requests to the router,
//! and the task that serves it and enforces the header and idle timeouts.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;
use tower_service::Service;

use super::Limits;
use super::io::Watched;

/// What the listener knows of one connection. Times are milliseconds since `base`.
pub struct ConnState {
    base: Instant,
    /// Requests in the service now (a long poll counts until it answers).
    active: AtomicUsize,
    /// Requests handed to the service, and final response heads written for them.
    calls: AtomicU64,
    heads: AtomicU64,
    /// When the first byte of a request head arrived while no request was in the service
    /// (0: none pending).
    head_since: AtomicU64,
    /// When the connection last became idle.
    idle_since: AtomicU64,
    /// Asks the connection to close once its requests in progress are answered.
    pub(super) close: Notify,
}

impl ConnState {
    pub fn new() -> Self {
        ConnState {
            base: Instant::now(),
            active: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(1),
            close: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Bytes arrived: with no request in the service, they start a request head.
    pub fn bytes_read(&self) {
        if self.active.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A final response head is being written: true if it answers a request the service got
    /// (false: hyper answers on its own).
    pub fn claim_response_head(&self) -> bool {
        let calls = self.calls.load(Ordering::Acquire);
        let heads = self.heads.load(Ordering::Acquire);
        if heads < calls {
            self.heads.store(heads + 1, Ordering::Release);
            true
        } else {
            false
        }
    }

    fn begin(self: &Arc<Self>) -> InService {
        self.calls.fetch_add(1, Ordering::AcqRel);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
        InService(self.clone())
    }

    /// Whether no request is in the service and none is arriving, and for how long (ms).
    pub fn idle_for(&self) -> Option<u64> {
        if self.active.load(Ordering::Acquire) > 0 || self.head_since.load(Ordering::Relaxed) != 0 {
            return None;
        }
        Some(self.now().saturating_sub(self.idle_since.load(Ordering::Relaxed)))
    }

    /// How long a request head has been arriving (ms), if one is.
    fn head_for(&self) -> Option<u64> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.now().saturating_sub(since)),
        }
    }
}

/// A request in the service; dropped when its response is ready.
struct InService(Arc<ConnState>);

impl Drop for InService {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hands each request of a connection to the router.
#[derive(Clone)]
struct Svc {
    app: Router,
    state: Arc<ConnState>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Svc {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let guard = self.state.begin();
        let mut app = self.app.clone();
        Box::pin(async move {
            let resp = app.call(req.map(Body::new)).await;
            drop(guard);
            resp
        })
    }
}

/// Serves one connection until it ends, the client stalls a request head past the header
/// timeout (closed at once: there is no request to answer), it idles past the idle timeout or
/// the listener asks it to close (closed gracefully: requests in progress are answered first).
pub async fn serve<S>(stream: S, app: Router, state: Arc<ConnState>, limits: Limits)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(stream, state.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header timeout is enforced here, from the first byte of a head: hyper's own starts
    // when it begins waiting for one, which would also cut keep-alive connections idle for
    // that long.
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    let conn = builder.serve_connection(io, Svc { app, state: state.clone() });
    let mut conn = std::pin::pin!(conn);
    let header_ms = limits.header_timeout.as_millis() as u64;
    let idle_ms = limits.idle_timeout.as_millis() as u64;
    let tick = Duration::from_millis((header_ms.min(idle_ms) / 4).clamp(10, 1000));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = state.close.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if state.head_for().is_some_and(|ms| ms >= header_ms) {
                    tracing::debug!("request head not received within the header timeout: connection closed");
                    return;
                }
                if !closing && state.idle_for().is_some_and(|ms| ms >= idle_ms) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
