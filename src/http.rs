//! HTTP plumbing shared by the dialects: request ids, the operation a request is, request
//! logging, body limits, raw query parsing.
//!
//! Each request gets an id (24 upper-case hex digits, the shape MNS clients expect) before any
//! dialect code runs. It is held in a task-local for the request's lifetime, so an error
//! rendered anywhere in a dialect can carry it without threading it through every function,
//! and it is sent back as `x-request-id` on every response. The same task-local has a slot for
//! the request's [`Operation`] (dialect and operation name), which each dialect's dispatcher
//! fills as soon as it knows it, before authentication, so even a refused or failed request is
//! named. Logs carry the id, method, path and operation (never the query, headers or body: they
//! hold signatures and secrets), and the operation goes on with the response as an extension
//! for any layer above (metrics, tests).

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// Which operation of which dialect a request is: `mns`/`ReceiveMessage`, `infrai`/`publish`,
/// `ctyun`/`createQueue`, `dms`/`SendMessages`… Names are each API's own; a request no
/// operation serves is `unknown` in its dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation {
    pub dialect: &'static str,
    pub name: &'static str,
}

impl Operation {
    /// The dialect of a request outside every dialect (`/healthz`, unknown paths).
    pub const NO_DIALECT: &'static str = "none";
    /// What a request is when nothing named it (only paths outside every dialect and route).
    pub const UNKNOWN: Operation = Operation { dialect: Operation::NO_DIALECT, name: "unknown" };

    pub const fn new(dialect: &'static str, name: &'static str) -> Self {
        Operation { dialect, name }
    }
}

/// What the middleware keeps for the length of one request.
struct RequestScope {
    id: String,
    operation: Cell<Option<Operation>>,
    /// The tenant and queue the request acts on, once its dialect knows them (the access log).
    subject: std::cell::RefCell<(Option<String>, Option<String>)>,
}

/// Whether every request is logged at info level (`log_format = "json"`: the access log a log
/// shipper wants); otherwise each request is a debug line.
pub static ACCESS_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Names the tenant the current request acts for (its credentials' tenant, or a sub-tenant).
pub fn set_tenant(name: &str) {
    let _ = REQUEST.try_with(|r| r.subject.borrow_mut().0 = Some(name.to_string()));
}

/// Names the queue (or topic) the current request acts on.
pub fn set_queue(name: &str) {
    let _ = REQUEST.try_with(|r| r.subject.borrow_mut().1 = Some(name.to_string()));
}

tokio::task_local! {
    static REQUEST: RequestScope;
}

/// A fresh request id: 24 upper-case hex digits.
pub fn new_request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode_upper(bytes)
}

/// The current request's id (a fresh one outside a request).
pub fn request_id() -> String {
    REQUEST.try_with(|r| r.id.clone()).unwrap_or_else(|_| new_request_id())
}

/// Names the current request's operation (the last call wins: a dispatcher names what the
/// request line says, a handler may refine it, e.g. to a batch form). No-op outside a request.
pub fn set_operation(op: Operation) {
    let _ = REQUEST.try_with(|r| r.operation.set(Some(op)));
}

/// The current request's operation, if one was named.
pub fn operation() -> Option<Operation> {
    REQUEST.try_with(|r| r.operation.get()).ok().flatten()
}

/// Runs one request in its context: assigns the request id, logs the request with its operation, adds
/// `x-request-id` and the [`Operation`] extension.
///
/// The per-request span is at debug level: at the default `info` level it costs nothing, where an
/// enabled span (its fields formatted, registered and closed on every request) cost several
/// percent of a small request. Server errors are always logged, with the id, method, path and
/// operation.
///
/// `handle` is the rest of the request's handling (the server's one middleware runs panic
/// recovery inside it, so a panic's answer and log carry the id and operation).
pub async fn with_context<F, Fut>(req: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let (req, body_read) = track_body(req);
    let id = new_request_id();
    let started = Instant::now();
    let span = tracing::debug_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let scope = RequestScope { id: id.clone(), operation: Cell::new(None), subject: Default::default() };
    let (mut resp, op, (tenant, queue)) = REQUEST
        .scope(scope, async {
            let resp = handle(req).instrument(span.clone()).await;
            let subject = REQUEST.with(|r| r.subject.take());
            (resp, operation().unwrap_or(Operation::UNKNOWN), subject)
        })
        .await;
    let micros = started.elapsed().as_micros() as u64;
    if ACCESS_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        // Never headers or query strings: credentials, signatures and receipt handles live there.
        tracing::info!(
            target: "qgate::access",
            request_id = %id,
            method = %method,
            path = %uri.path(),
            dialect = op.dialect,
            operation = op.name,
            tenant = tenant.as_deref().unwrap_or(""),
            queue = queue.as_deref().unwrap_or(""),
            status = resp.status().as_u16(),
            latency_ms = micros as f64 / 1000.0,
            "request"
        );
    } else {
        span.in_scope(|| {
            tracing::debug!(
                dialect = op.dialect,
                operation = op.name,
                tenant = tenant.as_deref().unwrap_or(""),
                queue = queue.as_deref().unwrap_or(""),
                status = resp.status().as_u16(),
                micros,
                "done"
            );
        });
    }
    if resp.status().is_server_error() {
        tracing::warn!(
            request_id = %id,
            %method,
            path = %uri.path(),
            dialect = op.dialect,
            operation = op.name,
            status = resp.status().as_u16(),
            "request failed"
        );
    }
    resp.extensions_mut().insert(op);
    if let Some(rest) = body_read
        && !drain(rest).await
    {
        // Answered without reading the whole body (refused early: unknown route, credentials,
        // too large) and the rest is large or slow: it would be read as the next request, so
        // hyper closes the connection. Say so, and the client opens a new one instead of
        // writing into a socket about to close ("broken pipe" on its next call).
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().entry("x-request-id").or_insert(v);
    }
    resp
}

/// The part of a request body its handler left unread, shared with the middleware.
type Unread = Arc<parking_lot::Mutex<Option<Body>>>;

/// Most of an unread body the middleware reads (and discards) to keep the connection, and how
/// long it waits for it: a small body a handler refused is drained; a large or stalled one
/// closes the connection instead.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Wraps a request's body (when it has one) so the middleware can read what the handler left.
fn track_body(req: Request) -> (Request, Option<Unread>) {
    if http_body::Body::is_end_stream(req.body()) {
        return (req, None);
    }
    let (parts, inner) = req.into_parts();
    let unread: Unread = Arc::new(parking_lot::Mutex::new(Some(inner)));
    let body = Body::new(Tracked { unread: unread.clone() });
    (Request::from_parts(parts, body), Some(unread))
}

/// Reads what is left of a body, within [`DRAIN_BYTES`] and [`DRAIN_WAIT`]; whether it ended.
async fn drain(unread: Unread) -> bool {
    let Some(rest) = unread.lock().take() else { return true };
    if http_body::Body::is_end_stream(&rest) {
        return true;
    }
    matches!(tokio::time::timeout(DRAIN_WAIT, Limited::new(rest, DRAIN_BYTES).collect()).await, Ok(Ok(_)))
}

/// A request body whose remainder stays reachable by the middleware ([`Unread`]); `None` there
/// once it has been read to its end.
struct Tracked {
    unread: Unread,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let mut slot = self.unread.lock();
        let Some(body) = slot.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            *slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.unread.lock().as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.unread.lock().as_ref().map_or_else(|| http_body::SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Io(String),
}

/// How long a request body may take to arrive, ms (`[http] body_timeout_secs`; set once at
/// start).
static BODY_TIMEOUT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Sets the body timeout (server start).
pub fn set_body_timeout(d: std::time::Duration) {
    BODY_TIMEOUT_MS.store(d.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// Reads a whole body, refusing more than `limit` bytes, and failing if it has not arrived
/// within the body timeout (a stalled client holds no buffer for longer).
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, BodyError> {
    let timeout = std::time::Duration::from_millis(BODY_TIMEOUT_MS.load(Ordering::Relaxed));
    match tokio::time::timeout(timeout, Limited::new(body, limit as usize).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Io(e.to_string())),
        Err(_) => Err(BodyError::Io(format!("the body did not arrive within {} s", timeout.as_secs()))),
    }
}

/// Percent-decodes one query component. `plus_is_space` follows HTML forms; MNS needs it off
/// (receipt handles arrive with raw `+`).
pub fn decode_component(s: &str, plus_is_space: bool) -> String {
    let replaced;
    let s = if plus_is_space && s.contains('+') {
        replaced = s.replace('+', " ");
        replaced.as_str()
    } else {
        s
    };
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Splits a raw query string into decoded (name, value) pairs, in order.
pub fn parse_query(query: &str, plus_is_space: bool) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k, plus_is_space), decode_component(v, plus_is_space))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("ReceiptHandle=1-AB+c/d==&x=a%20b&flag&&y=", false);
        assert_eq!(q[0], ("ReceiptHandle".into(), "1-AB+c/d==".into()));
        assert_eq!(q[1], ("x".into(), "a b".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert_eq!(q[3], ("y".into(), "".into()));
        assert_eq!(parse_query("a=b+c", true)[0].1, "b c");
        let id = new_request_id();
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    }
}
