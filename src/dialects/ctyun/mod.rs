//! The CTYun DMS apiproxy v3 dialect: `/apiproxy/v3/queue/<operation>`, signed headers,
//! 800/900 envelopes (`dialects/ctyun/README.md` records the decisions taken where the vendor
//! document is silent or ambiguous, and every difference from it).
//!
//! Every request goes through the same steps, in this order: known operation → auth headers
//! present → requestDate readable → fresh → access key known → Hmac → parameters → contentMD5
//! policy → method → operation. So a correctly signed malformed call is a 400, and a badly signed
//! call never reaches parameter parsing. Operations live by family in [`queues`], [`groups`]
//! and [`messages`]; they return a [`envelope::Reply`] or a [`envelope::CtError`].

pub mod envelope;
pub mod groups;
pub mod handler;
pub mod messages;
pub mod params;
pub mod queues;
pub mod sign;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::any;
use uuid::Uuid;

use crate::auth::Tenant;
use crate::config::{CustomInfoMode, HttpStatusMode, Md5Mode, derived_project_id};
use crate::core::Queue;
use crate::http::{BodyError, Operation, read_body, set_operation};
use crate::state::AppState;
use envelope::{CtError, Reply, failure, success};
use params::{Params, field, field_text};

/// The dialect's name in logs and metrics.
pub const NAME: &str = "ctyun";
/// Path prefix of the dialect.
pub const PREFIX: &str = "/apiproxy/";
/// Largest request body read.
const MAX_REQUEST: u64 = 4 * 1024 * 1024;

pub fn owns(path: &str) -> bool {
    path.starts_with(PREFIX)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/apiproxy/v3/queue/{op}", any(handle))
}

/// The operations, one per `<operation>` path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    CreateQueue,
    QueryQueue,
    QuerySpecifyQueue,
    RemoveQueue,
    QueryQuota,
    CreateConsumeGroup,
    QuerySpecifyQueueAllConsumerGroup,
    RemoveSpecifyConsumerGroup,
    ConsumeReset,
    SendSpecifyQueueMessage,
    ConsumptionMessage,
    ConfirmConsumedSpecifiedMessage,
    ConsumeDeadlettersMessage,
    ConfirmConsumeDeadlettersMessage,
}

impl Route {
    /// Every operation (what [`Route::parse`] searches).
    pub const ALL: [Route; 14] = [
        Route::CreateQueue,
        Route::QueryQueue,
        Route::QuerySpecifyQueue,
        Route::RemoveQueue,
        Route::QueryQuota,
        Route::CreateConsumeGroup,
        Route::QuerySpecifyQueueAllConsumerGroup,
        Route::RemoveSpecifyConsumerGroup,
        Route::ConsumeReset,
        Route::SendSpecifyQueueMessage,
        Route::ConsumptionMessage,
        Route::ConfirmConsumedSpecifiedMessage,
        Route::ConsumeDeadlettersMessage,
        Route::ConfirmConsumeDeadlettersMessage,
    ];

    /// The operation a path's last segment names; clients differ in its case, so any case.
    pub fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name().eq_ignore_ascii_case(name))
    }

    /// The operation's name as the vendor spells it.
    pub fn name(self) -> &'static str {
        match self {
            Route::CreateQueue => "createQueue",
            Route::QueryQueue => "queryQueue",
            Route::QuerySpecifyQueue => "querySpecifyQueue",
            Route::RemoveQueue => "removeQueue",
            Route::QueryQuota => "queryQuota",
            Route::CreateConsumeGroup => "createConsumeGroup",
            Route::QuerySpecifyQueueAllConsumerGroup => "querySpecifyQueueAllConsumerGroup",
            Route::RemoveSpecifyConsumerGroup => "removeSpecifyConsumerGroup",
            Route::ConsumeReset => "consumeReset",
            Route::SendSpecifyQueueMessage => "sendSpecifyQueueMessage",
            Route::ConsumptionMessage => "consumptionMessage",
            Route::ConfirmConsumedSpecifiedMessage => "confirmConsumedSpecifiedMessage",
            Route::ConsumeDeadlettersMessage => "consumeDeadlettersMessage",
            Route::ConfirmConsumeDeadlettersMessage => "confirmConsumeDeadlettersMessage",
        }
    }

    /// The one method the operation accepts: reads are GET, changes POST.
    pub fn method(self) -> Method {
        match self {
            Route::QueryQueue
            | Route::QuerySpecifyQueue
            | Route::QueryQuota
            | Route::QuerySpecifyQueueAllConsumerGroup
            | Route::ConsumptionMessage
            | Route::ConsumeDeadlettersMessage => Method::GET,
            Route::CreateQueue
            | Route::RemoveQueue
            | Route::CreateConsumeGroup
            | Route::RemoveSpecifyConsumerGroup
            | Route::ConsumeReset
            | Route::SendSpecifyQueueMessage
            | Route::ConfirmConsumedSpecifiedMessage
            | Route::ConfirmConsumeDeadlettersMessage => Method::POST,
        }
    }

    /// The business parameters in the order contentMD5 joins them (the vendor document's order).
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Route::CreateQueue => &["createQueueInfo", "customInfo"],
            Route::QueryQueue => &["regionId", "includeDeadletter", "customInfo"],
            Route::QuerySpecifyQueue => &["regionId", "queueId", "includeDeadletter", "customInfo"],
            Route::RemoveQueue => &["regionId", "queueId", "customInfo"],
            Route::QueryQuota => &["regionId", "customInfo"],
            Route::CreateConsumeGroup => &["regionId", "queueId", "groups", "customInfo"],
            Route::QuerySpecifyQueueAllConsumerGroup => &["regionId", "queueId", "includeDeadletter", "customInfo"],
            Route::RemoveSpecifyConsumerGroup => &["regionId", "queueId", "groups", "customInfo"],
            Route::ConsumeReset => &["consumedMessageInfo", "customInfo"],
            Route::SendSpecifyQueueMessage => &["regionId", "queueId", "messages", "customInfo"],
            Route::ConsumptionMessage => &["consumerQueueInfo", "customInfo"],
            Route::ConfirmConsumedSpecifiedMessage => {
                &["regionId", "queueId", "consumerGroupId", "message", "customInfo"]
            }
            Route::ConsumeDeadlettersMessage => &["consumedMessageInfo", "customInfo"],
            Route::ConfirmConsumeDeadlettersMessage => &["consumedMessageInfo", "customInfo"],
        }
    }
}

/// A decoded, authenticated CTYun request.
pub struct Ctx {
    pub st: AppState,
    pub tenant: Arc<Tenant>,
    /// The namespace the request acts in (the tenant, or a customInfo sub-tenant).
    pub ns: String,
    pub project_id: String,
    pub params: Params,
}

impl Ctx {
    /// The queue a `queueId` names in this namespace (unknown or malformed: 900 not found).
    pub async fn queue(&self, id: &str) -> Result<Arc<Queue>, CtError> {
        let id = Uuid::parse_str(id.trim()).map_err(|_| CtError::from(crate::core::CoreError::QueueNotFound))?;
        Ok(self.st.broker.queue_by_id(&self.ns, id).await?)
    }

    /// A named group of `q` by id (or name).
    pub async fn group(&self, q: &Queue, id: &str) -> Result<u32, CtError> {
        Ok(self.st.broker.group_no(q, id).await?)
    }

    /// Finds the queue owning a group id when no queueId was given.
    pub async fn queue_of_group(&self, group_id: &str) -> Result<Arc<Queue>, CtError> {
        for q in self.st.broker.queues(&self.ns).await? {
            if self.st.broker.group_no(&q, group_id).await.is_ok() {
                return Ok(q);
            }
        }
        Err(CtError::from(crate::core::CoreError::GroupNotFound))
    }

    /// The (queue, group) of a `consumerQueueInfo`/`consumedMessageInfo` object.
    pub async fn queue_and_group(&self, info: &serde_json::Value) -> Result<(Arc<Queue>, u32, String), CtError> {
        let gid = field_text(info, &["consumerGroupId"])
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CtError::malformed("缺少必填参数 consumerGroupId"))?;
        let q = match field_text(info, &["queueId"]).filter(|s| !s.is_empty()) {
            Some(qid) => self.queue(&qid).await?,
            None => self.queue_of_group(&gid).await?,
        };
        let no = self.group(&q, &gid).await?;
        Ok((q, no, gid))
    }
}

/// The CTYun entry point.
pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let mirror = st.config.ctyun.http_status == HttpStatusMode::Mirror;
    match serve(st, req).await {
        Ok(reply) => success(reply, mirror),
        Err(e) => failure(e, mirror),
    }
}

/// Renders the dialect's 404 for a path no operation serves.
pub fn reject(mirror: bool) -> Response {
    set_operation(Operation::new(NAME, "unknown"));
    failure(CtError::unknown_operation(), mirror)
}

/// Renders the dialect's internal error (a handler that failed without an answer).
pub fn internal_error(mirror: bool) -> Response {
    failure(CtError::internal(), mirror)
}

async fn serve(st: AppState, req: Request) -> Result<Reply, CtError> {
    let (parts, body) = req.into_parts();
    let name = parts.uri.path().rsplit('/').next().unwrap_or("");
    let route = Route::parse(name);
    // Named before anything can fail, so refused requests are named too.
    set_operation(Operation::new(NAME, route.map_or("unknown", Route::name)));
    let route = route.ok_or_else(CtError::unknown_operation)?;
    // The signature covers headers only (contentMD5, requestDate, path): checked before the
    // body is read, so an unauthenticated client can neither make the server buffer a body nor
    // learn anything about it (its size included).
    let cfg = &st.config.ctyun;
    let auth = st.auth.load();
    let signed = sign::authenticate(&parts, st.broker.now(), cfg.max_clock_skew_secs * 1000, |ak| auth.access_key(ak))?;
    let body = read_body(body, MAX_REQUEST).await.map_err(|e| match e {
        BodyError::TooLarge => CtError::business("DMS.MessageTooLarge", "请求体过大"),
        BodyError::Io(m) => CtError::malformed(format!("无法读取请求体: {m}")),
    })?;
    let params = Params::collect(&parts.method, &parts.headers, parts.uri.query().unwrap_or(""), &body)?;
    if !sign::md5_matches(cfg.content_md5, signed.content_md5, &params.md5_texts(route.params())) {
        if cfg.content_md5 == Md5Mode::Warn {
            tracing::warn!(
                op = route.name(),
                access_key = signed.access_key,
                "contentMD5 does not match the parameters (accepted: content_md5 = warn)"
            );
        } else {
            return Err(CtError::business("Openapi.ContentMD5.Mismatch", "contentMD5 与请求参数不符"));
        }
    }
    if parts.method != route.method() {
        return Err(CtError::malformed(format!("{} 只接受 {} 请求", route.name(), route.method())));
    }
    let tenant = signed.credential;
    let (ns, project_id) = namespace(&st, &tenant, &params)?;
    crate::http::set_tenant(&ns);
    let ctx = Ctx { st, tenant, ns, project_id, params };
    match route {
        Route::CreateQueue => queues::create(&ctx).await,
        Route::QueryQueue => queues::list(&ctx).await,
        Route::QuerySpecifyQueue => queues::show(&ctx).await,
        Route::RemoveQueue => queues::remove(&ctx).await,
        Route::QueryQuota => queues::quota(&ctx).await,
        Route::CreateConsumeGroup => groups::create(&ctx).await,
        Route::QuerySpecifyQueueAllConsumerGroup => groups::list(&ctx).await,
        Route::RemoveSpecifyConsumerGroup => groups::remove(&ctx).await,
        Route::ConsumeReset => groups::reset(&ctx).await,
        Route::SendSpecifyQueueMessage => messages::send(&ctx).await,
        Route::ConsumptionMessage => messages::consume(&ctx).await,
        Route::ConfirmConsumedSpecifiedMessage => messages::confirm(&ctx).await,
        Route::ConsumeDeadlettersMessage => messages::consume_dead(&ctx).await,
        Route::ConfirmConsumeDeadlettersMessage => messages::confirm_dead(&ctx).await,
    }
}

/// The namespace a request acts in: the key's tenant, or the sub-tenant its customInfo selects
/// (`type` 1 → `/crm:<crmBizId>`, 2 → `/acct:<accountId>`), and that namespace's project id.
fn namespace(st: &AppState, tenant: &Tenant, params: &Params) -> Result<(String, String), CtError> {
    let base = || Ok((tenant.name.clone(), tenant.project_id.clone()));
    if st.config.ctyun.custom_info == CustomInfoMode::Ignore {
        return base();
    }
    let Some(ci) = params.json("customInfo")? else { return base() };
    let kind = field_text(&ci, &["type"]).unwrap_or_default();
    let identity = field(&ci, &["identity"]).cloned().unwrap_or_default();
    let sub = match kind.as_str() {
        "" | "0" => return base(),
        "1" => format!("crm:{}", field_text(&identity, &["crmBizId"]).unwrap_or_default()),
        "2" => format!("acct:{}", field_text(&identity, &["accountId"]).unwrap_or_default()),
        other => return Err(CtError::malformed(format!("customInfo.type {other} 无效"))),
    };
    if sub.ends_with(':') {
        return Err(CtError::malformed("customInfo.identity 缺少 crmBizId / accountId"));
    }
    // Control characters are reserved for internal namespaces (see the tenant name rule).
    if sub.chars().any(char::is_control) {
        return Err(CtError::malformed("customInfo.identity 含有控制字符"));
    }
    let ns = format!("{}/{sub}", tenant.name);
    let pid = derived_project_id(&ns);
    Ok((ns, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        for r in Route::ALL {
            assert_eq!(Route::parse(r.name()), Some(r));
            assert_eq!(Route::parse(&r.name().to_ascii_uppercase()), Some(r), "any case");
            assert_eq!(r.params().last(), Some(&"customInfo"), "{}: customInfo is always last", r.name());
        }
        let mut names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Route::ALL.len());
        assert_eq!(Route::parse("sendspecifyqueuemessage"), Some(Route::SendSpecifyQueueMessage));
        assert_eq!(Route::SendSpecifyQueueMessage.method(), Method::POST);
        assert_eq!(Route::ConsumptionMessage.method(), Method::GET);
        assert_eq!(Route::parse("deleteEverything"), None);
        assert_eq!(Route::parse(""), None);
    }
}
