//! The infrai JSON REST dialect under `/v1/queue` (`dialects/infrai/README.md` records what is
//! implemented and every deliberate difference from the vendor page).
//!
//! Handlers read *decode → core call → encode*: extractors ([`extract`]) authenticate the bearer
//! key and parse the body with infrai's errors, the handler validates fields and calls the
//! broker, [`wire`] renders the records, [`error::ApiError`] renders failures. Mutating
//! capabilities run through [`idempotency::once`].

pub mod dlq;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod messages;
pub mod push;
pub mod queues;
pub mod wire;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};

use crate::state::AppState;

/// The dialect's name in logs and metrics.
pub const NAME: &str = "infrai";
/// Path prefix of the dialect.
pub const PREFIX: &str = "/v1/queue";

/// The operation a request names (the route's capability), for logs and metrics. Named by the
/// [`extract::Caller`] extractor, the first a handler runs, so a refused request is named too.
pub fn operation_name(method: &axum::http::Method, path: &str) -> &'static str {
    let rest = path.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')).unwrap_or("");
    let mut segs = rest.split('/');
    match (segs.next().unwrap_or(""), segs.next(), segs.next(), segs.next()) {
        ("create", None, ..) => "create",
        ("get", Some(_), None, _) => "get",
        ("list", None, ..) => "list",
        ("update", Some(_), None, _) => "update",
        ("delete", Some(_), None, _) => "delete",
        ("purge", Some(_), None, _) => "purge",
        ("stats", Some(_), None, _) => "stats",
        ("publish", None, ..) => "publish",
        ("publish_batch", None, ..) => "publish_batch",
        ("consume", None, ..) => "consume",
        ("ack", None, ..) => "ack",
        ("nack", None, ..) => "nack",
        ("dlq", Some("list"), Some(_), None) => "dlq.list",
        ("dlq", Some("redrive"), Some(_), None) => "dlq.redrive",
        ("push_subscribe", Some(_), None, _) if method == axum::http::Method::GET => "push_subscribe.list",
        ("push_subscribe", Some(_), None, _) => "push_subscribe",
        ("push_subscribe", Some(_), Some(_), None) => "push_subscribe.delete",
        _ => "unknown",
    }
}

/// The dialect's routes, each named by its capability (unknown routes and methods fall to the
/// server's fallbacks, which render [`error::ApiError`] for paths under [`PREFIX`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/queue/create", post(queues::create))
        .route("/v1/queue/get/{queue}", get(queues::get))
        .route("/v1/queue/list", get(queues::list))
        .route("/v1/queue/update/{queue}", patch(queues::update))
        .route("/v1/queue/delete/{queue}", delete(queues::delete))
        .route("/v1/queue/purge/{queue}", post(queues::purge))
        .route("/v1/queue/stats/{queue}", get(queues::stats_of))
        .route("/v1/queue/publish", post(messages::publish))
        .route("/v1/queue/publish_batch", post(messages::publish_batch))
        .route("/v1/queue/consume", post(messages::consume))
        .route("/v1/queue/ack", post(messages::ack))
        .route("/v1/queue/nack", post(messages::nack))
        .route("/v1/queue/dlq/list/{queue}", get(dlq::list))
        .route("/v1/queue/dlq/redrive/{queue}", post(dlq::redrive))
        .route("/v1/queue/push_subscribe/{queue}", post(push::subscribe).merge(get(push::list)))
        .route("/v1/queue/push_subscribe/{queue}/{subscription}", delete(push::unsubscribe))
}

/// Renders the dialect's internal error (a handler that failed without an answer).
pub fn internal_error() -> Response {
    error::ApiError::internal().into_response()
}
