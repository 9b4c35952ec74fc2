//! The vendor dialects. Each owns its paths, its authentication, its wire types and its error
//! rendering; all of them call the same [`crate::core::Broker`].
//!
//! Paths never collide, so one router serves them all. Requests that match no route (or no
//! method of a route) still get their dialect's error format: [`not_found`] and
//! [`method_not_allowed`] pick the dialect by path prefix.
//!
//! Each dialect names the operation a request is ([`crate::http::set_operation`]) as soon as
//! its dispatcher knows it, with the API's own operation names, and `unknown` for what no
//! operation serves.

pub mod ctyun;
pub mod dms;
pub mod infrai;
pub mod mns;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::{Operation, request_id, set_operation};

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
