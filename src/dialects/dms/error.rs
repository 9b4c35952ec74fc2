//! DMS errors: `{"error_code", "error_msg", "code", "message", "request_id"}` with the numeric codes
//! of Huawei's public DMS error reference (as strings in `error_code`, numbers in `code`; the ones
//! qgate uses are in `dialects/dms/README.md`), and APIG's `APIGW.0301` for every signature
//! failure. The mapping from core errors is exhaustive.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::{CoreError, Quota};
use crate::http::request_id;

#[derive(Debug, Clone)]
pub struct DmsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl DmsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        DmsError { status, code, message: message.into() }
    }

    /// 400 with a DMS code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        DmsError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Every authentication failure (APIG answers them all alike).
    pub fn auth() -> Self {
        DmsError::new(
            StatusCode::UNAUTHORIZED,
            "APIGW.0301",
            "Incorrect IAM authentication information: verify aksk signature fail",
        )
    }

    /// The service's 500, for a failure the client cannot act on (storage, a handler's panic).
    pub fn internal() -> Self {
        DmsError::new(StatusCode::INTERNAL_SERVER_ERROR, "10250002", "Internal error.")
    }

    pub fn url_not_found() -> Self {
        DmsError::new(StatusCode::NOT_FOUND, "10240406", "The URL does not exist.")
    }

    pub fn method_not_allowed() -> Self {
        DmsError::new(StatusCode::METHOD_NOT_ALLOWED, "10240406", "The method is not allowed for this URL.")
    }
}

impl From<CoreError> for DmsError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::QueueNotFound => DmsError::new(S::NOT_FOUND, "10240401", "The queue does not exist."),
            CoreError::QueueExists { .. } => DmsError::bad("10240017", "The queue name already exists."),
            CoreError::GroupNotFound => DmsError::new(S::NOT_FOUND, "10240405", "The consumer group does not exist."),
            CoreError::GroupExists => DmsError::bad("10240018", "The consumer group name already exists."),
            CoreError::MessageNotFound
            | CoreError::NotInFlight
            | CoreError::ReceiptMalformed
            | CoreError::ReceiptStale => DmsError::bad("10542209", "The handler is invalid, expired or already used."),
            CoreError::InvalidArgument(m) => DmsError::bad("10540010", m),
            CoreError::TooLarge(m) => DmsError::bad("10540011", m),
            CoreError::QuotaExceeded(Quota::Groups) => {
                DmsError::bad("10240019", "The number of consumer groups exceeds the limit of 3.")
            }
            CoreError::QuotaExceeded(Quota::Queues) => {
                DmsError::bad("10240020", "The number of queues exceeds the quota.")
            }
            CoreError::TagRuleChanged => {
                DmsError::bad("10542204", "Consume failed: the consumer group's tag rule cannot change.")
            }
            CoreError::GroupBusy => DmsError::bad("10540010", "The consumer group has messages in flight."),
            CoreError::ShuttingDown => {
                DmsError::new(S::SERVICE_UNAVAILABLE, "10250003", "The service is shutting down.")
            }
            CoreError::Unavailable(cause) => {
                tracing::warn!(request_id = %crate::http::request_id(), error = %cause, "storage unavailable");
                DmsError::new(
                    S::SERVICE_UNAVAILABLE,
                    "10250003",
                    "The service cannot store requests right now (storage full or failing); retry later.",
                )
            }
            CoreError::Storage(cause) => {
                tracing::error!(request_id = %crate::http::request_id(), error = %cause, "storage failure");
                DmsError::internal()
            }
        }
    }
}

impl IntoResponse for DmsError {
    fn into_response(self) -> Response {
        let mut body = json!({"error_code": self.code, "error_msg": self.message, "request_id": request_id()});
        if let Ok(n) = self.code.parse::<u64>() {
            body["code"] = json!(n);
            body["message"] = json!(self.message);
        }
        (self.status, [(axum::http::header::CONTENT_TYPE, "application/json;charset=UTF-8")], body.to_string())
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::StoreError;

    #[test]
    fn every_core_error_has_a_dms_code() {
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (CoreError::QueueNotFound, 404, "10240401"),
            (CoreError::QueueExists { same: true }, 400, "10240017"),
            (CoreError::GroupNotFound, 404, "10240405"),
            (CoreError::GroupExists, 400, "10240018"),
            (CoreError::MessageNotFound, 400, "10542209"),
            (CoreError::NotInFlight, 400, "10542209"),
            (CoreError::ReceiptMalformed, 400, "10542209"),
            (CoreError::ReceiptStale, 400, "10542209"),
            (CoreError::InvalidArgument("x".into()), 400, "10540010"),
            (CoreError::TooLarge("x".into()), 400, "10540011"),
            (CoreError::QuotaExceeded(Quota::Queues), 400, "10240020"),
            (CoreError::QuotaExceeded(Quota::Groups), 400, "10240019"),
            (CoreError::TagRuleChanged, 400, "10542204"),
            (CoreError::GroupBusy, 400, "10540010"),
            (CoreError::ShuttingDown, 503, "10250003"),
            (CoreError::Unavailable(StoreError::unavailable("disk full")), 503, "10250003"),
            (CoreError::Storage(StoreError::new("disk")), 500, "10250002"),
        ];
        for (e, status, code) in cases {
            let d = DmsError::from(e);
            assert_eq!((d.status.as_u16(), d.code), (status, code));
            assert!(!d.message.contains("disk"));
        }
    }
}
