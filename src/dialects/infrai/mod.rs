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
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};

use crate::http::{Operation, set_operation};
use crate::state::AppState;

/// The dialect's name in logs and metrics.
pub const NAME: &str = "infrai";
/// Path prefix of the dialect.
pub const PREFIX: &str = "/v1/queue";

/// A route's handler, naming its operation before anything (the bearer check included) runs.
fn op(name: &'static str, handler: MethodRouter<AppState>) -> MethodRouter<AppState> {
    handler.layer(from_fn(move |req: Request, next: Next| async move {
        set_operation(Operation::new(NAME, name));
        next.run(req).await
    }))
}

/// The dialect's routes, each named by its capability (unknown routes and methods fall to the
/// server's fallbacks, which render [`error::ApiError`] for paths under [`PREFIX`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/queue/create", op("create", post(queues::create)))
        .route("/v1/queue/get/{queue}", op("get", get(queues::get)))
        .route("/v1/queue/list", op("list", get(queues::list)))
        .route("/v1/queue/update/{queue}", op("update", patch(queues::update)))
        .route("/v1/queue/delete/{queue}", op("delete", delete(queues::delete)))
        .route("/v1/queue/purge/{queue}", op("purge", post(queues::purge)))
        .route("/v1/queue/stats/{queue}", op("stats", get(queues::stats_of)))
        .route("/v1/queue/publish", op("publish", post(messages::publish)))
        .route("/v1/queue/publish_batch", op("publish_batch", post(messages::publish_batch)))
        .route("/v1/queue/consume", op("consume", post(messages::consume)))
        .route("/v1/queue/ack", op("ack", post(messages::ack)))
        .route("/v1/queue/nack", op("nack", post(messages::nack)))
        .route("/v1/queue/dlq/list/{queue}", op("dlq.list", get(dlq::list)))
        .route("/v1/queue/dlq/redrive/{queue}", op("dlq.redrive", post(dlq::redrive)))
        .route(
            "/v1/queue/push_subscribe/{queue}",
            op("push_subscribe", post(push::subscribe)).merge(op("push_subscribe.list", get(push::list))),
        )
        .route(
            "/v1/queue/push_subscribe/{queue}/{subscription}",
            op("push_subscribe.delete", delete(push::unsubscribe)),
        )
}

/// Renders the dialect's internal error (a handler that failed without an answer).
pub fn internal_error() -> Response {
    error::ApiError::internal().into_response()
}
