//! The vendor dialects. Each owns its paths, its authentication, its wire types and its error
//! rendering; all of them call the same [`crate::core::Broker`].
//!
//! Paths never collide, so one router serves them all. Requests that match no route (or no
//! method of a route) still get their dialect's error format: [`not_found`] and
//! [`method_not_allowed`] pick the dialect by path prefix. So does [`serve`], the middleware
//! that turns a handler's panic into the dialect's internal error instead of a dropped
//! connection.
//!
//! Each dialect names the operation a request is ([`crate::http::set_operation`]) as soon as
//! its dispatcher knows it, with the API's own operation names, and `unknown` for what no
//! operation serves.

pub mod ctyun;
pub mod dms;
pub mod infrai;
pub mod mns;

use std::any::Any;
use std::panic::AssertUnwindSafe;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde_json::json;

use crate::config::HttpStatusMode;
use crate::http::{Operation, operation, request_id, set_operation};
use crate::state::AppState;

/// Which dialect a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Infrai,
    Mns,
    Ctyun,
    Dms,
    Other,
}

impl Dialect {
    /// The name logs and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Infrai => infrai::NAME,
            Dialect::Mns => mns::NAME,
            Dialect::Ctyun => ctyun::NAME,
            Dialect::Dms => dms::NAME,
            Dialect::Other => Operation::NO_DIALECT,
        }
    }
}

pub fn dialect_of(path: &str) -> Dialect {
    if path == infrai::PREFIX || path.starts_with("/v1/queue/") {
        Dialect::Infrai
    } else if mns::owns(path) {
        Dialect::Mns
    } else if ctyun::owns(path) {
        Dialect::Ctyun
    } else if dms::owns(path) {
        Dialect::Dms
    } else {
        Dialect::Other
    }
}

fn generic(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "request_id": request_id()}})))
        .into_response()
}

/// Fallback for paths no dialect serves.
pub async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let dialect = dialect_of(uri.path());
    set_operation(Operation::new(dialect.name(), "unknown"));
    match dialect {
        Dialect::Infrai => infrai::error::ApiError::route_not_found().into_response(),
        Dialect::Mns => mns::reject(&headers),
        Dialect::Ctyun => ctyun::reject(false),
        Dialect::Dms => dms::reject(),
        Dialect::Other => generic(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// Fallback for a known path with a method it does not serve.
pub async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    let dialect = dialect_of(uri.path());
    set_operation(Operation::new(dialect.name(), "unknown"));
    match dialect {
        Dialect::Infrai => infrai::error::ApiError::method_not_allowed().into_response(),
        Dialect::Mns => mns::reject(&headers),
        Dialect::Ctyun => ctyun::reject(false),
        Dialect::Dms => dms::error::DmsError::method_not_allowed().into_response(),
        Dialect::Other => generic(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// The server's one middleware: the request context ([`crate::http::with_context`]: id,
/// operation, log line) around panic recovery. One layer instead of two: each `from_fn` layer costs
/// a boxed future and a service clone per request.
pub async fn serve(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let resp = crate::http::with_context(req, |req| recover_in(&st, req, next)).await;
    let op = resp.extensions().get::<Operation>().copied().unwrap_or(Operation::UNKNOWN);
    st.metrics.record(op, resp.status().as_u16(), started.elapsed());
    resp
}

/// Panic recovery: a handler that panics answers its dialect's internal error (the one a storage
/// failure gets, with the request id) and the panic is logged at error level with its message,
/// dialect, operation and request id. Without it the panic would unwind into the connection
/// task and drop the connection, keep-alive and all; with it the connection carries on.
///
/// `AssertUnwindSafe`: a panic leaves shared state as it leaves it whether or not it is caught
/// here (uncaught, it would only unwind the connection's task instead); catching it changes what
/// the client and the log see, nothing else. The locks in the core and store do not poison
/// (parking_lot's and tokio's), so later requests are not refused because of one.
async fn recover_in(st: &AppState, req: Request, next: Next) -> Response {
    // Kept before the request moves on: all a panic's answer needs from it.
    let dialect = dialect_of(req.uri().path());
    let host = if dialect == Dialect::Mns { req.headers().get(HOST).cloned() } else { None };
    let panic = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => return resp,
        Err(panic) => panic,
    };
    let op = operation().unwrap_or(Operation::new(dialect.name(), "unknown"));
    set_operation(op);
    tracing::error!(
        request_id = %request_id(),
        dialect = op.dialect,
        operation = op.name,
        panic = %panic_message(panic.as_ref()),
        "handler panicked"
    );
    match dialect {
        Dialect::Infrai => infrai::internal_error(),
        Dialect::Mns => mns::internal_error(host.as_ref()),
        Dialect::Ctyun => ctyun::internal_error(st.config.ctyun.http_status == HttpStatusMode::Mirror),
        Dialect::Dms => dms::internal_error(),
        Dialect::Other => generic(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// The text a panic was raised with (`panic!` with a literal gives `&str`, with a format `String`).
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
