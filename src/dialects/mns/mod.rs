//! The Aliyun MNS queue dialect: XML under `/queues`, `Authorization: MNS id:signature`
//! (`dialects/mns/README.md` records what is implemented and every deliberate difference from
//! the real service).
//!
//! MNS picks the operation from method, path *and* query (`?metaoverride=true`,
//! `?peekonly=true`, `?numOfMessages=`, a `ReceiptHandle` or an XML body), so one handler serves
//! the three path shapes: it reads the body, authenticates over the raw request target
//! ([`sign`]), then dispatches to [`queues`] or [`messages`]. Every response carries
//! `x-mns-request-id` and `x-mns-version`; every failure is [`error::MnsError`] XML.

pub mod account;
pub mod error;
pub mod messages;
pub mod notify;
pub mod properties;
pub mod publish;
pub mod queues;
pub mod sign;
pub mod subscriptions;
pub mod topics;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::HOST as HOST_HEADER;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;

use crate::auth::Tenant;
use crate::http::{BodyError, Operation, parse_query, read_body, request_id, set_operation};
use crate::state::AppState;
use error::{HOST, MnsError};

/// The dialect's name in logs and metrics.
pub const NAME: &str = "mns";
/// The API version every response announces.
pub const VERSION: &str = "2015-06-06";
/// Largest request body read (a full 16-message batch is far below it).
const MAX_REQUEST: u64 = 2 * 1024 * 1024;

/// Whether a path belongs to MNS (for the server's fallbacks).
/// `/` too: the account attributes (`?accountmeta=true`) live there.
pub fn owns(path: &str) -> bool {
    path == "/"
        || path == "/queues"
        || path.starts_with("/queues/")
        || path == "/topics"
        || path.starts_with("/topics/")
        || path == notify::CERT_PATH
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", any(handle))
        .route("/queues", any(handle))
        .route("/queues/{queue}", any(handle))
        .route("/queues/{queue}/messages", any(handle))
        .route("/topics", any(handle))
        .route("/topics/{topic}", any(handle))
        .route("/topics/{topic}/messages", any(handle))
        .route("/topics/{topic}/subscriptions", any(handle))
        .route("/topics/{topic}/subscriptions/{subscription}", any(handle))
        .route(notify::CERT_PATH, axum::routing::get(certificate))
}

/// The certificate HTTP notifications are verified with: public, so no signature.
async fn certificate(State(st): State<AppState>, req: Request) -> Response {
    operation("GetSigningCertificate");
    let host = endpoint(req.headers().get(HOST_HEADER));
    HOST.scope(host, async move {
        let resp = match notify::certificate(&st).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        stamp(resp)
    })
    .await
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

fn endpoint(host: Option<&HeaderValue>) -> String {
    let host = host.and_then(|v| v.to_str().ok()).filter(|h| !h.is_empty()).unwrap_or("localhost");
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
pub fn reject(headers: &HeaderMap) -> Response {
    set_operation(Operation::new(NAME, "unknown"));
    HOST.sync_scope(endpoint(headers.get(HOST_HEADER)), || stamp(MnsError::invalid_url().into_response()))
}

/// Renders MNS's internal error (a handler that failed without an answer); `host` is the
/// request's Host header, which HostId echoes.
pub fn internal_error(host: Option<&HeaderValue>) -> Response {
    HOST.sync_scope(endpoint(host), || stamp(MnsError::internal().into_response()))
}

/// The MNS entry point.
pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let host = endpoint(req.headers().get(HOST_HEADER));
    HOST.scope(host, async move {
        let resp = match serve(st, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        stamp(resp)
    })
    .await
}

/// The operations, from method, path and query. The batch and peek forms share their single
/// form's route; their handlers tell them apart (by body or query) and rename the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ListQueue,
    CreateQueue(String),
    SetQueueAttributes(String),
    GetQueueAttributes(String),
    DeleteQueue(String),
    SendMessage(String),
    ReceiveMessage(String),
    DeleteMessage(String),
    ChangeMessageVisibility(String),
    GetAccountAttributes,
    SetAccountAttributes,
    ListTopic,
    CreateTopic(String),
    SetTopicAttributes(String),
    GetTopicAttributes(String),
    DeleteTopic(String),
    PublishMessage(String),
    ListSubscriptionByTopic(String),
    Subscribe(String, String),
    SetSubscriptionAttributes(String, String),
    GetSubscriptionAttributes(String, String),
    Unsubscribe(String, String),
}

impl Route {
    /// The route of a request: decoded path segments, method, and whether `?metaoverride=true`.
    fn of(segments: &[String], method: &Method, meta_override: bool, account_meta: bool) -> Option<Route> {
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let name = |n: &str| n.to_string();
        Some(match (segs.as_slice(), method) {
            ([""], &Method::GET) if account_meta => Route::GetAccountAttributes,
            ([""], &Method::PUT) if account_meta => Route::SetAccountAttributes,
            (["topics"], &Method::GET) => Route::ListTopic,
            (["topics", t], &Method::PUT) if meta_override => Route::SetTopicAttributes(name(t)),
            (["topics", t], &Method::PUT) => Route::CreateTopic(name(t)),
            (["topics", t], &Method::GET) => Route::GetTopicAttributes(name(t)),
            (["topics", t], &Method::DELETE) => Route::DeleteTopic(name(t)),
            (["topics", t, "messages"], &Method::POST) => Route::PublishMessage(name(t)),
            (["topics", t, "subscriptions"], &Method::GET) => Route::ListSubscriptionByTopic(name(t)),
            (["topics", t, "subscriptions", s], &Method::PUT) if meta_override => {
                Route::SetSubscriptionAttributes(name(t), name(s))
            }
            (["topics", t, "subscriptions", s], &Method::PUT) => Route::Subscribe(name(t), name(s)),
            (["topics", t, "subscriptions", s], &Method::GET) => Route::GetSubscriptionAttributes(name(t), name(s)),
            (["topics", t, "subscriptions", s], &Method::DELETE) => Route::Unsubscribe(name(t), name(s)),
            (["queues"], &Method::GET) => Route::ListQueue,
            (["queues", q], &Method::PUT) if meta_override => Route::SetQueueAttributes(name(q)),
            (["queues", q], &Method::PUT) => Route::CreateQueue(name(q)),
            (["queues", q], &Method::GET) => Route::GetQueueAttributes(name(q)),
            (["queues", q], &Method::DELETE) => Route::DeleteQueue(name(q)),
            (["queues", q, "messages"], &Method::POST) => Route::SendMessage(name(q)),
            (["queues", q, "messages"], &Method::GET) => Route::ReceiveMessage(name(q)),
            (["queues", q, "messages"], &Method::DELETE) => Route::DeleteMessage(name(q)),
            (["queues", q, "messages"], &Method::PUT) => Route::ChangeMessageVisibility(name(q)),
            _ => return None,
        })
    }

    /// The operation's name as the vendor spells it.
    fn name(&self) -> &'static str {
        match self {
            Route::ListQueue => "ListQueue",
            Route::CreateQueue(_) => "CreateQueue",
            Route::SetQueueAttributes(_) => "SetQueueAttributes",
            Route::GetQueueAttributes(_) => "GetQueueAttributes",
            Route::DeleteQueue(_) => "DeleteQueue",
            Route::SendMessage(_) => "SendMessage",
            Route::ReceiveMessage(_) => "ReceiveMessage",
            Route::DeleteMessage(_) => "DeleteMessage",
            Route::ChangeMessageVisibility(_) => "ChangeMessageVisibility",
            Route::GetAccountAttributes => "GetAccountAttributes",
            Route::SetAccountAttributes => "SetAccountAttributes",
            Route::ListTopic => "ListTopic",
            Route::CreateTopic(_) => "CreateTopic",
            Route::SetTopicAttributes(_) => "SetTopicAttributes",
            Route::GetTopicAttributes(_) => "GetTopicAttributes",
            Route::DeleteTopic(_) => "DeleteTopic",
            Route::PublishMessage(_) => "PublishMessage",
            Route::ListSubscriptionByTopic(_) => "ListSubscriptionByTopic",
            Route::Subscribe(..) => "Subscribe",
            Route::SetSubscriptionAttributes(..) => "SetSubscriptionAttributes",
            Route::GetSubscriptionAttributes(..) => "GetSubscriptionAttributes",
            Route::Unsubscribe(..) => "Unsubscribe",
        }
    }
}

/// Names the current request's operation (a handler refining its route's name).
pub fn operation(name: &'static str) {
    set_operation(Operation::new(NAME, name));
}

async fn serve(st: AppState, req: Request) -> Result<Response, MnsError> {
    let (parts, body) = req.into_parts();
    let query: Vec<(String, String)> = parse_query(parts.uri.query().unwrap_or(""), false)
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
    let meta_override = query.iter().any(|(k, v)| k == "metaoverride" && v.eq_ignore_ascii_case("true"));
    let account_meta = query.iter().any(|(k, v)| k == "accountmeta" && v.eq_ignore_ascii_case("true"));
    // Named before anything can fail, so refused requests are named too; an unknown route is
    // refused only after authentication, as the service does.
    let route = Route::of(&segments, &parts.method, meta_override, account_meta);
    operation(route.as_ref().map_or("unknown", Route::name));
    // The signature covers headers only: checked before the body is read, so an
    // unauthenticated client cannot make the server buffer a body; Content-MD5 after it.
    let auth = st.auth.load();
    let tenant = sign::authenticate_headers(&parts, st.broker.now(), |id| auth.access_key(id))?;
    crate::http::set_tenant(&tenant.name);
    if let Some(name) = segments.get(1).filter(|_| segments.len() > 1 && !segments[1].is_empty()) {
        crate::http::set_queue(name);
    }
    let body = read_body(body, MAX_REQUEST).await.map_err(|e| match e {
        BodyError::TooLarge => MnsError::invalid(format!("The request body exceeds {MAX_REQUEST} bytes.")),
        BodyError::Io(m) => MnsError::invalid(format!("The request body could not be read: {m}")),
    })?;
    sign::check_content_md5(&parts.headers, &body)?;
    let route = route.ok_or_else(MnsError::invalid_url)?;
    let ctx = Ctx { st, tenant, method: parts.method, headers: parts.headers, query, body };
    match &route {
        Route::ListQueue => queues::list(&ctx).await,
        Route::CreateQueue(q) => queues::create(&ctx, q).await,
        Route::SetQueueAttributes(q) => queues::set_attributes(&ctx, q).await,
        Route::GetQueueAttributes(q) => queues::get_attributes(&ctx, q).await,
        Route::DeleteQueue(q) => queues::delete(&ctx, q).await,
        Route::SendMessage(q) => messages::send(&ctx, q).await,
        Route::ReceiveMessage(q) => messages::receive(&ctx, q).await,
        Route::DeleteMessage(q) => messages::delete(&ctx, q).await,
        Route::ChangeMessageVisibility(q) => messages::change_visibility(&ctx, q).await,
        Route::GetAccountAttributes => account::get_attributes(&ctx).await,
        Route::SetAccountAttributes => account::set_attributes(&ctx).await,
        Route::ListTopic => topics::list(&ctx).await,
        Route::CreateTopic(t) => topics::create(&ctx, t).await,
        Route::SetTopicAttributes(t) => topics::set_attributes(&ctx, t).await,
        Route::GetTopicAttributes(t) => topics::get_attributes(&ctx, t).await,
        Route::DeleteTopic(t) => topics::delete(&ctx, t).await,
        Route::PublishMessage(t) => publish::publish(&ctx, t).await,
        Route::ListSubscriptionByTopic(t) => subscriptions::list(&ctx, t).await,
        Route::Subscribe(t, s) => subscriptions::subscribe(&ctx, t, s).await,
        Route::SetSubscriptionAttributes(t, s) => subscriptions::set_attributes(&ctx, t, s).await,
        Route::GetSubscriptionAttributes(t, s) => subscriptions::get_attributes(&ctx, t, s).await,
        Route::Unsubscribe(t, s) => subscriptions::unsubscribe(&ctx, t, s).await,
    }
}

/// A response with no body (201 CreateQueue, 204s): Node would try to parse anything else.
pub fn empty(status: axum::http::StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_names() {
        let r = |path: &str, m: Method, meta: bool| {
            let segs: Vec<String> = path.split('/').skip(1).map(str::to_string).collect();
            Route::of(&segs, &m, meta, false).map(|r| r.name())
        };
        assert_eq!(r("/queues", Method::GET, false), Some("ListQueue"));
        assert_eq!(r("/queues/q", Method::PUT, false), Some("CreateQueue"));
        assert_eq!(r("/queues/q", Method::PUT, true), Some("SetQueueAttributes"));
        assert_eq!(r("/queues/q", Method::GET, true), Some("GetQueueAttributes"));
        assert_eq!(r("/queues/q", Method::DELETE, false), Some("DeleteQueue"));
        assert_eq!(r("/queues/q/messages", Method::POST, false), Some("SendMessage"));
        assert_eq!(r("/queues/q/messages", Method::GET, false), Some("ReceiveMessage"));
        assert_eq!(r("/queues/q/messages", Method::DELETE, false), Some("DeleteMessage"));
        assert_eq!(r("/queues/q/messages", Method::PUT, false), Some("ChangeMessageVisibility"));
        assert_eq!(r("/topics", Method::GET, false), Some("ListTopic"));
        assert_eq!(r("/topics/t", Method::PUT, false), Some("CreateTopic"));
        assert_eq!(r("/topics/t", Method::PUT, true), Some("SetTopicAttributes"));
        assert_eq!(r("/topics/t", Method::GET, false), Some("GetTopicAttributes"));
        assert_eq!(r("/topics/t", Method::DELETE, false), Some("DeleteTopic"));
        assert_eq!(r("/topics/t/messages", Method::POST, false), Some("PublishMessage"));
        assert_eq!(r("/topics/t/subscriptions", Method::GET, false), Some("ListSubscriptionByTopic"));
        assert_eq!(r("/topics/t/subscriptions/s", Method::PUT, false), Some("Subscribe"));
        assert_eq!(r("/topics/t/subscriptions/s", Method::PUT, true), Some("SetSubscriptionAttributes"));
        assert_eq!(r("/topics/t/subscriptions/s", Method::GET, false), Some("GetSubscriptionAttributes"));
        assert_eq!(r("/topics/t/subscriptions/s", Method::DELETE, false), Some("Unsubscribe"));
        assert_eq!(r("/", Method::GET, false), None, "the root is only the account");
        let segs = vec![String::new()];
        assert_eq!(Route::of(&segs, &Method::GET, false, true).map(|r| r.name()), Some("GetAccountAttributes"));
        assert_eq!(Route::of(&segs, &Method::PUT, false, true).map(|r| r.name()), Some("SetAccountAttributes"));
        assert_eq!(r("/queues", Method::POST, false), None);
        assert_eq!(r("/queues/q/other", Method::GET, false), None);
    }
}
