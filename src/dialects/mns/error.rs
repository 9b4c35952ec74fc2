//! MNS errors: `<Error>` XML with Code, Message, RequestId and HostId (the Python SDK requires
//! all four), each code with the service's status (the table in `dialects/mns/README.md`), and
//! the exhaustive mapping from core errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::xml::Writer;
use crate::core::CoreError;
use crate::http::request_id;

tokio::task_local! {
    /// `http://{Host}` of the current MNS request, for HostId and queue URLs.
    pub static HOST: String;
}

/// The current request's endpoint as the client addressed it.
pub fn host_url() -> String {
    HOST.try_with(|h| h.clone()).unwrap_or_else(|_| "http://localhost".into())
}

#[derive(Debug, Clone)]
pub struct MnsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl MnsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        MnsError { status, code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        MnsError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    /// `The value of E should between L and H unit.` — the service's wording.
    pub fn range(element: &str, lo: u64, hi: u64, unit: &str) -> Self {
        MnsError::invalid(format!("The value of {element} should between {lo} and {hi} {unit}."))
    }

    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        MnsError::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            format!("The XML you provided was not well-formed: {detail}"),
        )
    }

    pub fn queue_not_exist() -> Self {
        MnsError::new(StatusCode::NOT_FOUND, "QueueNotExist", "The queue name you provided is not exist.")
    }

    pub fn message_not_exist() -> Self {
        MnsError::new(StatusCode::NOT_FOUND, "MessageNotExist", "Message not exist.")
    }

    pub fn receipt_handle_error() -> Self {
        MnsError::new(StatusCode::BAD_REQUEST, "ReceiptHandleError", "The receipt handle you provide is not valid.")
    }

    /// The service's 500, for a failure the client cannot act on (storage, a handler's panic).
    pub fn internal() -> Self {
        MnsError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "Internal error.")
    }

    /// The service's 503 while storage is full or failing: nothing was stored, retry later.
    pub fn storage_unavailable() -> Self {
        MnsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service cannot store requests right now (storage full or failing); retry later.",
        )
    }

    pub fn invalid_url() -> Self {
        MnsError::new(StatusCode::BAD_REQUEST, "InvalidRequestURL", "The request URL is invalid.")
    }
}

impl From<CoreError> for MnsError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::QueueNotFound => MnsError::queue_not_exist(),
            CoreError::QueueExists { .. } => {
                MnsError::new(S::CONFLICT, "QueueAlreadyExist", "The queue you want to create is already exist.")
            }
            CoreError::GroupNotFound | CoreError::GroupExists | CoreError::TagRuleChanged | CoreError::GroupBusy => {
                MnsError::invalid(e.to_string())
            }
            CoreError::MessageNotFound | CoreError::NotInFlight | CoreError::ReceiptStale => {
                MnsError::message_not_exist()
            }
            CoreError::ReceiptMalformed => MnsError::receipt_handle_error(),
            CoreError::InvalidArgument(m) | CoreError::TooLarge(m) => MnsError::invalid(m),
            CoreError::QuotaExceeded(what) => MnsError::invalid(format!("The number of {what} exceeds the quota.")),
            CoreError::ShuttingDown => {
                MnsError::new(S::SERVICE_UNAVAILABLE, "ServiceUnavailable", "The server is shutting down.")
            }
            CoreError::Unavailable(cause) => {
                tracing::warn!(request_id = %crate::http::request_id(), error = %cause, "storage unavailable");
                MnsError::storage_unavailable()
            }
            CoreError::Storage(cause) => {
                tracing::error!(request_id = %crate::http::request_id(), error = %cause, "storage failure");
                MnsError::internal()
            }
        }
    }
}

/// An XML response with the MNS content type.
pub fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "text/xml;charset=utf-8")], body).into_response()
}

impl IntoResponse for MnsError {
    fn into_response(self) -> Response {
        let mut w = Writer::new("Error");
        w.leaf("Code", self.code)
            .leaf("Message", &self.message)
            .leaf("RequestId", request_id())
            .leaf("HostId", host_url());
        xml_response(self.status, w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Quota;
    use crate::core::StoreError;

    /// Every core error has one MNS rendering (the `From` match is exhaustive; this pins the codes).
    #[test]
    fn core_errors_map_to_mns_codes() {
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (CoreError::QueueNotFound, 404, "QueueNotExist"),
            (CoreError::QueueExists { same: false }, 409, "QueueAlreadyExist"),
            (CoreError::GroupNotFound, 400, "InvalidArgument"),
            (CoreError::GroupExists, 400, "InvalidArgument"),
            (CoreError::MessageNotFound, 404, "MessageNotExist"),
            (CoreError::NotInFlight, 404, "MessageNotExist"),
            (CoreError::ReceiptMalformed, 400, "ReceiptHandleError"),
            (CoreError::ReceiptStale, 404, "MessageNotExist"),
            (CoreError::InvalidArgument("x".into()), 400, "InvalidArgument"),
            (CoreError::TooLarge("x".into()), 400, "InvalidArgument"),
            (CoreError::QuotaExceeded(Quota::Queues), 400, "InvalidArgument"),
            (CoreError::TagRuleChanged, 400, "InvalidArgument"),
            (CoreError::GroupBusy, 400, "InvalidArgument"),
            (CoreError::ShuttingDown, 503, "ServiceUnavailable"),
            (CoreError::Unavailable(StoreError::unavailable("disk full")), 503, "ServiceUnavailable"),
            (CoreError::Storage(StoreError::new("disk")), 500, "InternalError"),
        ];
        for (e, status, code) in cases {
            let m = MnsError::from(e);
            assert_eq!((m.status.as_u16(), m.code), (status, code));
            assert!(!m.message.contains("disk"), "internals never reach the client");
        }
    }
}
