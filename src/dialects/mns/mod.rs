//! The Aliyun MNS queue dialect: XML under `/queues`, `Authorization: MNS id:signature`
//! (specs/mns.md; `dialects/mns/` in the repository records what is implemented and every
//! deliberate difference).
//!
//! MNS picks the operation from method, path *and* query (`?metaoverride=true`,
//! `?peekonly=true`, `?numOfMessages=`, a `ReceiptHandle` or an XML body), so one handler serves
//! the three path shapes: it reads the body, authenticates over the raw request target
//! ([`sign`]), then dispatches to [`queues`] or [`messages`]. Every response carries
//! `x-mns-request-id` and `x-mns-version`; every failure is [`error::MnsError`] XML.

pub mod error;
pub mod messages;
pub mod queues;
pub mod sign;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;

use crate::auth::Tenant;
use crate::http::{BodyError, parse_query, read_body, request_id};
use crate::state::AppState;
use error::{HOST, MnsError};

/// The API version every response announces.
pub const VERSION: &str = "2015-06-06";
/// Largest request body read (a full 16-message batch is far below it).
const MAX_REQUEST: u64 = 2 * 1024 * 1024;

/// Whether a path belongs to MNS (for the server's fallbacks).
pub fn owns(path: &str) -> bool {
    path == "/queues" || path.starts_with("/queues/") || path == "/topics" || path.starts_with("/topics/")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/queues", any(handle))
        .route("/queues/{queue}", any(handle))
        .route("/queues/{queue}/messages", any(handle))
}

/// A decoded, authenticated MNS request.
pub struct Ctx {
    pub st: AppState,
    pub tenant: Arc<Tenant>,
    pub method: Method,
    pub headers: HeaderMap,
    /// Query parameters with lower-cased names (MNS matches them case-insensitively), values
    /// percent-decoded with `+` kept.
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Ctx {
    /// A query parameter, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.query.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn endpoint(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok()).filter(|h| !h.is_empty()).unwrap_or("localhost");
    format!("http://{host}")
}

/// Adds the headers every MNS response carries.
fn stamp(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-mns-request-id", v);
    }
    h.insert("x-mns-version", HeaderValue::from_static(VERSION));
    resp
}

/// Renders an MNS error for a request that never reached [`handle`] (unknown route, method).
pub async fn reject(headers: &HeaderMap) -> Response {
    let host = endpoint(headers);
    HOST.scope(host, async { stamp(MnsError::invalid_url().into_response()) }).await
}

/// The MNS entry point.
pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let host = endpoint(req.headers());
    HOST.scope(host, async move {
        let resp = match serve(st, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        stamp(resp)
    })
    .await
}

async fn serve(st: AppState, req: Request) -> Result<Response, MnsError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_REQUEST).await.map_err(|e| match e {
        BodyError::TooLarge => MnsError::invalid(format!("The request body exceeds {MAX_REQUEST} bytes.")),
        BodyError::Io(m) => MnsError::invalid(format!("The request body could not be read: {m}")),
    })?;
    let tenant = sign::authenticate(&parts, &body, st.broker.now(), |id| st.auth.access_key(id))?;
    let query = parse_query(parts.uri.query().unwrap_or(""), false)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let ctx = Ctx { st, tenant, method: parts.method, headers: parts.headers, query, body };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (segs.as_slice(), &ctx.method) {
        (["queues"], &Method::GET) => queues::list(&ctx).await,
        (["queues", name], &Method::PUT)
            if ctx.param("metaoverride").is_some_and(|v| v.eq_ignore_ascii_case("true")) =>
        {
            queues::set_attributes(&ctx, name).await
        }
        (["queues", name], &Method::PUT) => queues::create(&ctx, name).await,
        (["queues", name], &Method::GET) => queues::get_attributes(&ctx, name).await,
        (["queues", name], &Method::DELETE) => queues::delete(&ctx, name).await,
        (["queues", name, "messages"], &Method::POST) => messages::send(&ctx, name).await,
        (["queues", name, "messages"], &Method::GET) => messages::receive(&ctx, name).await,
        (["queues", name, "messages"], &Method::DELETE) => messages::delete(&ctx, name).await,
        (["queues", name, "messages"], &Method::PUT) => messages::change_visibility(&ctx, name).await,
        _ => Err(MnsError::invalid_url()),
    }
}

/// A response with no body (201 CreateQueue, 204s): Node would try to parse anything else.
pub fn empty(status: axum::http::StatusCode) -> Response {
    (status, Body::empty()).into_response()
}
