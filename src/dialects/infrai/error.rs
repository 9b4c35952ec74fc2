//! infrai's error shape and the mapping from core errors.
//!
//! Every failure is `{"error": {"code", "message", "request_id"}}`, each code with its status
//! (the table in `dialects/infrai/README.md`). [`From<CoreError>`] is an exhaustive match: a new
//! core error does not compile until infrai says how to render it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::CoreError;
use crate::http::request_id;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    /// The API's 500, for a failure the client cannot act on (storage, a handler's panic).
    pub fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error")
    }

    pub fn queue_not_found(name: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "QUEUE_NOT_FOUND", format!("queue '{name}' does not exist"))
    }

    pub fn route_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND", "no such route")
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "method not allowed on this route")
    }

    /// A core error met while acting on queue `queue`.
    pub fn core(e: CoreError, queue: &str) -> Self {
        match e {
            CoreError::QueueNotFound => ApiError::queue_not_found(queue),
            other => other.into(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::QueueNotFound => ApiError::new(S::NOT_FOUND, "QUEUE_NOT_FOUND", "queue does not exist"),
            CoreError::QueueExists { .. } => ApiError::new(S::CONFLICT, "QUEUE_ALREADY_EXISTS", "queue already exists"),
            CoreError::GroupNotFound => ApiError::new(S::NOT_FOUND, "ROUTE_NOT_FOUND", "consumer group does not exist"),
            CoreError::GroupExists => {
                ApiError::new(S::CONFLICT, "QUEUE_ALREADY_EXISTS", "consumer group already exists")
            }
            CoreError::MessageNotFound | CoreError::ReceiptMalformed => {
                ApiError::new(S::NOT_FOUND, "MESSAGE_NOT_FOUND", "message does not exist")
            }
            CoreError::NotInFlight | CoreError::ReceiptStale => {
                ApiError::new(S::CONFLICT, "MESSAGE_NOT_IN_FLIGHT", "message is not currently leased")
            }
            CoreError::InvalidArgument(m) => ApiError::invalid(m),
            CoreError::TooLarge(m) => ApiError::too_large(m),
            CoreError::QuotaExceeded(what) => ApiError::invalid(format!("quota of {what} exceeded")),
            CoreError::TagRuleChanged => ApiError::invalid("the consumer group's tag rule cannot change"),
            CoreError::GroupBusy => {
                ApiError::new(S::CONFLICT, "MESSAGE_NOT_IN_FLIGHT", "the group has messages in flight")
            }
            CoreError::ShuttingDown => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the server is shutting down")
            }
            CoreError::Unavailable(cause) => {
                tracing::warn!(request_id = %crate::http::request_id(), error = %cause, "storage unavailable");
                ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "storage is full or failing: nothing was stored, retry later",
                )
            }
            CoreError::Storage(cause) => {
                tracing::error!(request_id = %crate::http::request_id(), error = %cause, "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message, "request_id": request_id()}});
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Quota;
    use crate::core::StoreError;

    /// Every core error has one infrai rendering (the `From` match is exhaustive; this pins them).
    #[test]
    fn core_errors_map_to_infrai_codes() {
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (CoreError::QueueNotFound, 404, "QUEUE_NOT_FOUND"),
            (CoreError::QueueExists { same: true }, 409, "QUEUE_ALREADY_EXISTS"),
            (CoreError::GroupNotFound, 404, "ROUTE_NOT_FOUND"),
            (CoreError::GroupExists, 409, "QUEUE_ALREADY_EXISTS"),
            (CoreError::MessageNotFound, 404, "MESSAGE_NOT_FOUND"),
            (CoreError::ReceiptMalformed, 404, "MESSAGE_NOT_FOUND"),
            (CoreError::NotInFlight, 409, "MESSAGE_NOT_IN_FLIGHT"),
            (CoreError::ReceiptStale, 409, "MESSAGE_NOT_IN_FLIGHT"),
            (CoreError::InvalidArgument("x".into()), 400, "INVALID_ARGUMENT"),
            (CoreError::TooLarge("x".into()), 413, "PAYLOAD_TOO_LARGE"),
            (CoreError::QuotaExceeded(Quota::Queues), 400, "INVALID_ARGUMENT"),
            (CoreError::TagRuleChanged, 400, "INVALID_ARGUMENT"),
            (CoreError::GroupBusy, 409, "MESSAGE_NOT_IN_FLIGHT"),
            (CoreError::ShuttingDown, 503, "UNAVAILABLE"),
            (CoreError::Unavailable(StoreError::unavailable("disk full")), 503, "UNAVAILABLE"),
            (CoreError::Storage(StoreError::new("disk")), 500, "INTERNAL"),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code));
            assert!(!a.message.contains("disk"), "internals never reach the client");
        }
    }
}
