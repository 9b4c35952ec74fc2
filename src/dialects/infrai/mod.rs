//! The infrai JSON REST dialect under `/v1/queue` (specs/infrai.md; `dialects/infrai/` in the
//! repository records what is implemented and every deliberate difference).
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
use axum::routing::{delete, get, patch, post};

use crate::state::AppState;

/// Path prefix of the dialect.
pub const PREFIX: &str = "/v1/queue";

/// The dialect's routes (unknown routes and methods fall to the server's fallbacks, which
/// render [`error::ApiError`] for paths under [`PREFIX`]).
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
        .route("/v1/queue/push_subscribe/{queue}", post(push::subscribe).get(push::list))
        .route("/v1/queue/push_subscribe/{queue}/{subscription}", delete(push::unsubscribe))
}
