//! The Huawei DMS queue dialect under `/v1.0/{project_id}/…` and `/v2/{project_id}/…` (the same
//! handlers for both), signed with APIG SDK-HMAC-SHA256 (`dialects/dms/README.md` records the
//! contract as implemented).
//!
//! A request is routed from its raw path ([`Route`]), then its signature is checked over the raw
//! request ([`sign`]), then the path's project id must be the caller's tenant's, then the
//! operation runs: [`queues`] (queues, quotas, resource tags), [`groups`], [`messages`].

pub mod error;
pub mod groups;
pub mod messages;
pub mod queues;
pub mod sign;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Tenant;
use crate::core::Queue;
use crate::http::{BodyError, Operation, parse_query, read_body, set_operation};
use crate::state::AppState;
use error::DmsError;

/// The dialect's name in logs and metrics.
pub const NAME: &str = "dms";
/// Largest request body read (sends are limited to 512 KB of messages).
const MAX_REQUEST: u64 = 2 * 1024 * 1024;

pub fn owns(path: &str) -> bool {
    path.starts_with("/v2/") || path.starts_with("/v1.0/")
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/{*rest}", any(handle)).route("/v1.0/{*rest}", any(handle))
}

/// The operations, by path shape.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Queues,
    Queue(String),
    Groups(String),
    Group(String, String),
    Send(String),
    Consume(String, String),
    Ack(String, String),
    DeadLetters(String, String),
    DeadLetterAck(String, String),
    Quotas,
    QueueTagAction(String),
    QueueTags(String),
    ProjectTags,
}

fn route(rest: &[String]) -> Option<Route> {
    let s: Vec<&str> = rest.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        ["queues"] => Route::Queues,
        ["queues", q] => Route::Queue(q.to_string()),
        ["queues", q, "groups"] => Route::Groups(q.to_string()),
        ["queues", q, "groups", g] => Route::Group(q.to_string(), g.to_string()),
        ["queues", q, "messages"] => Route::Send(q.to_string()),
        ["queues", q, "groups", g, "messages"] => Route::Consume(q.to_string(), g.to_string()),
        ["queues", q, "groups", g, "ack"] => Route::Ack(q.to_string(), g.to_string()),
        ["queues", q, "groups", g, "deadletters"] => Route::DeadLetters(q.to_string(), g.to_string()),
        ["queues", q, "groups", g, "deadletters", "ack"] => Route::DeadLetterAck(q.to_string(), g.to_string()),
        ["quotas"] | ["quotas", "dms"] => Route::Quotas,
        ["queue", "tags"] => Route::ProjectTags,
        ["queue", q, "tags", "action"] => Route::QueueTagAction(q.to_string()),
        ["queue", q, "tags"] => Route::QueueTags(q.to_string()),
        _ => return None,
    })
}

/// The operations: a path shape and a method. Names are the vendor SDK's request names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    CreateQueue,
    ListQueues,
    ShowQueue(String),
    DeleteQueue(String),
    ShowQuotas,
    BatchCreateOrDeleteQueueTag(String),
    ShowQueueTags(String),
    ShowQueueProjectTags,
    CreateConsumerGroup(String),
    ListConsumerGroups(String),
    DeleteSpecifiedConsumerGroup(String, String),
    SendMessages(String),
    ConsumeMessages(String, String),
    ConsumeDeadlettersMessage(String, String),
    ConfirmConsumptionMessages(String, String),
    ConfirmDeadLettersMessages(String, String),
}

impl Op {
    /// The operation a method selects on a path shape; `None`: the path has no such method.
    fn of(route: Route, m: &Method) -> Option<Op> {
        use Route as R;
        Some(match (route, m) {
            (R::Queues, &Method::POST) => Op::CreateQueue,
            (R::Queues, &Method::GET) => Op::ListQueues,
            (R::Queue(q), &Method::GET) => Op::ShowQueue(q),
            (R::Queue(q), &Method::DELETE) => Op::DeleteQueue(q),
            (R::Quotas, &Method::GET) => Op::ShowQuotas,
            (R::QueueTagAction(q), &Method::POST) => Op::BatchCreateOrDeleteQueueTag(q),
            (R::QueueTags(q), &Method::GET) => Op::ShowQueueTags(q),
            (R::ProjectTags, &Method::GET) => Op::ShowQueueProjectTags,
            (R::Groups(q), &Method::POST) => Op::CreateConsumerGroup(q),
            (R::Groups(q), &Method::GET) => Op::ListConsumerGroups(q),
            (R::Group(q, g), &Method::DELETE) => Op::DeleteSpecifiedConsumerGroup(q, g),
            (R::Send(q), &Method::POST) => Op::SendMessages(q),
            (R::Consume(q, g), &Method::GET) => Op::ConsumeMessages(q, g),
            (R::DeadLetters(q, g), &Method::GET) => Op::ConsumeDeadlettersMessage(q, g),
            (R::Ack(q, g), &Method::POST) => Op::ConfirmConsumptionMessages(q, g),
            (R::DeadLetterAck(q, g), &Method::POST) => Op::ConfirmDeadLettersMessages(q, g),
            _ => return None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Op::CreateQueue => "CreateQueue",
            Op::ListQueues => "ListQueues",
            Op::ShowQueue(_) => "ShowQueue",
            Op::DeleteQueue(_) => "DeleteQueue",
            Op::ShowQuotas => "ShowQuotas",
            Op::BatchCreateOrDeleteQueueTag(_) => "BatchCreateOrDeleteQueueTag",
            Op::ShowQueueTags(_) => "ShowQueueTags",
            Op::ShowQueueProjectTags => "ShowQueueProjectTags",
            Op::CreateConsumerGroup(_) => "CreateConsumerGroup",
            Op::ListConsumerGroups(_) => "ListConsumerGroups",
            Op::DeleteSpecifiedConsumerGroup(..) => "DeleteSpecifiedConsumerGroup",
            Op::SendMessages(_) => "SendMessages",
            Op::ConsumeMessages(..) => "ConsumeMessages",
            Op::ConsumeDeadlettersMessage(..) => "ConsumeDeadlettersMessage",
            Op::ConfirmConsumptionMessages(..) => "ConfirmConsumptionMessages",
            Op::ConfirmDeadLettersMessages(..) => "ConfirmDeadLettersMessages",
        }
    }
}

/// A decoded, authenticated DMS request.
pub struct Ctx {
    pub st: AppState,
    pub tenant: Arc<Tenant>,
    /// Decoded query pairs in order (`tag` may repeat).
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Ctx {
    /// A query parameter (the last one of that name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object (`code` names the error of an unreadable body).
    pub fn json(&self, code: &'static str) -> Result<Value, DmsError> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(DmsError::bad(code, "The request body is not a JSON object.")),
        }
    }

    /// The queue a path id names in the caller's project.
    pub async fn queue(&self, id: &str) -> Result<Arc<Queue>, DmsError> {
        let id = Uuid::parse_str(id.trim()).map_err(|_| DmsError::bad("10240015", "The queue ID is invalid."))?;
        Ok(self.st.broker.queue_by_id(&self.tenant.name, id).await?)
    }

    /// A consumer group of `q` by its id.
    pub async fn group(&self, q: &Queue, id: &str) -> Result<u32, DmsError> {
        if !id.starts_with("g-") && Uuid::parse_str(id).is_err() {
            return Err(DmsError::bad("10240016", "The consumer group ID is invalid."));
        }
        Ok(self.st.broker.group_no(q, id).await?)
    }
}

/// The DMS entry point.
pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    match serve(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Renders the dialect's error for paths no route serves.
pub fn reject() -> Response {
    set_operation(Operation::new(NAME, "unknown"));
    DmsError::url_not_found().into_response()
}

/// Renders the dialect's internal error (a handler that failed without an answer).
pub fn internal_error() -> Response {
    DmsError::internal().into_response()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

async fn serve(st: AppState, req: Request) -> Result<Response, DmsError> {
    let (parts, body) = req.into_parts();
    let segs = segments(parts.uri.path());
    // Named before anything can fail, so refused requests are named too. An unknown path is
    // refused at once, a known path with a method it lacks only after authentication.
    let op = segs.get(2..).and_then(route).map(|r| Op::of(r, &parts.method));
    set_operation(Operation::new(NAME, op.as_ref().and_then(|o| o.as_ref()).map_or("unknown", Op::name)));
    let op = op.ok_or_else(DmsError::url_not_found)?;
    // What needs no body (the access key, the signed headers, the date) is checked before the
    // body is read, so an unknown or stale client cannot make the server buffer one.
    let skew_ms = st.config.dms.max_clock_skew_secs * 1000;
    let auth = st.auth.load();
    let pre = sign::precheck(&parts, st.broker.now(), skew_ms, |ak| auth.access_key(ak))?;
    let body = read_body(body, MAX_REQUEST).await.map_err(|e| match e {
        BodyError::TooLarge => DmsError::bad("10540011", "The request body is too large."),
        BodyError::Io(m) => DmsError::bad("10540010", format!("The request body could not be read: {m}")),
    })?;
    let tenant = pre.with_body(&parts, &body)?;
    crate::http::set_tenant(&tenant.name);
    if segs.get(2).is_some_and(|s| s == "queues")
        && let Some(q) = segs.get(3)
    {
        crate::http::set_queue(q);
    }
    let project = &segs[1];
    if !tenant.project_id.eq_ignore_ascii_case(project) {
        if project.len() != 32 || !project.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DmsError::bad("10240005", "The project ID is invalid."));
        }
        return Err(DmsError::new(
            StatusCode::FORBIDDEN,
            "10240309",
            "The project ID does not belong to these credentials.",
        ));
    }
    let ctx = Ctx { st, tenant, query: parse_query(parts.uri.query().unwrap_or(""), false), body };
    match op.ok_or_else(DmsError::method_not_allowed)? {
        Op::CreateQueue => queues::create(&ctx).await,
        Op::ListQueues => queues::list(&ctx).await,
        Op::ShowQueue(q) => queues::show(&ctx, &q).await,
        Op::DeleteQueue(q) => queues::delete(&ctx, &q).await,
        Op::ShowQuotas => queues::quotas(&ctx).await,
        Op::BatchCreateOrDeleteQueueTag(q) => queues::tag_action(&ctx, &q).await,
        Op::ShowQueueTags(q) => queues::tags(&ctx, &q).await,
        Op::ShowQueueProjectTags => queues::project_tags(&ctx).await,
        Op::CreateConsumerGroup(q) => groups::create(&ctx, &q).await,
        Op::ListConsumerGroups(q) => groups::list(&ctx, &q).await,
        Op::DeleteSpecifiedConsumerGroup(q, g) => groups::delete(&ctx, &q, &g).await,
        Op::SendMessages(q) => messages::send(&ctx, &q).await,
        Op::ConsumeMessages(q, g) => messages::consume(&ctx, &q, &g, false).await,
        Op::ConsumeDeadlettersMessage(q, g) => messages::consume(&ctx, &q, &g, true).await,
        Op::ConfirmConsumptionMessages(q, g) => messages::ack(&ctx, &q, &g, false).await,
        Op::ConfirmDeadLettersMessages(q, g) => messages::ack(&ctx, &q, &g, true).await,
    }
}

/// A JSON answer with the documented status.
pub fn json(status: StatusCode, v: Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json;charset=UTF-8")], v.to_string()).into_response()
}

/// 204 with no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |p: &str| route(&segments(p)[2..]);
        assert_eq!(r("/v2/p/queues"), Some(Route::Queues));
        assert_eq!(r("/v2/p/queues/"), Some(Route::Queues));
        assert_eq!(r("/v1.0/p/queues/q/groups/g/deadletters/ack"), Some(Route::DeadLetterAck("q".into(), "g".into())));
        assert_eq!(r("/v1.0/p/quotas/dms"), Some(Route::Quotas));
        assert_eq!(r("/v2/p/queue/tags"), Some(Route::ProjectTags));
        assert_eq!(r("/v2/p/queue/q/tags/action"), Some(Route::QueueTagAction("q".into())));
        assert_eq!(r("/v2/p/nothing"), None);
    }

    #[test]
    fn operations() {
        let op = |p: &str, m: Method| route(&segments(p)[2..]).and_then(|r| Op::of(r, &m)).map(|o| o.name());
        assert_eq!(op("/v2/p/queues", Method::POST), Some("CreateQueue"));
        assert_eq!(op("/v2/p/queues", Method::GET), Some("ListQueues"));
        assert_eq!(op("/v2/p/queues", Method::DELETE), None);
        assert_eq!(op("/v1.0/p/queues/q/groups/g/messages", Method::GET), Some("ConsumeMessages"));
        assert_eq!(op("/v2/p/queues/q/groups/g/deadletters/ack", Method::POST), Some("ConfirmDeadLettersMessages"));
        assert_eq!(op("/v2/p/queue/q/tags/action", Method::POST), Some("BatchCreateOrDeleteQueueTag"));
        assert_eq!(op("/v2/p/queue/tags", Method::GET), Some("ShowQueueProjectTags"));
    }
}
