//! CTYun response envelopes and errors (`dialects/ctyun/README.md` shows each shape).
//!
//! Success is `statusCode` 800 in one of four shapes the vendor document uses per operation:
//! A (`returnObj` a JSON *string*), B (`returnObj` an object wrapping a JSON string), C (flat),
//! D (payload under `returnObj` and mirrored at the top level). A business failure is 900 with a
//! Chinese `message` and a stable English `errorCode`; a malformed call is 400; an unknown
//! operation 404. The HTTP status line is 200 for 800/900 unless `[ctyun] http_status = "mirror"`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::core::{CoreError, Quota};

/// A successful answer, in the envelope its operation uses.
pub enum Reply {
    /// `returnObj` is the payload's JSON text.
    A(Value),
    /// `returnObj` is `{returnObj: <payload JSON text>, errorMessageString, errorMessageArray, succeed}`.
    B(Value),
    /// No payload.
    C,
    /// The payload object under `returnObj` and its keys at the top level too.
    D(Map<String, Value>),
}

/// What kind of failure: decides `statusCode` and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 900: the call was understood and refused.
    Business,
    /// 400: the call itself is malformed.
    Malformed,
    /// 404: no such operation.
    UnknownOperation,
}

#[derive(Debug, Clone)]
pub struct CtError {
    pub kind: Kind,
    pub code: &'static str,
    /// Chinese, for people; `code` is for programs.
    pub message: String,
}

impl CtError {
    pub fn business(code: &'static str, message: impl Into<String>) -> Self {
        CtError { kind: Kind::Business, code, message: message.into() }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        CtError { kind: Kind::Malformed, code: "Openapi.Parameter.Error", message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CtError::business("DMS.InvalidValue", message)
    }

    /// The dialect's answer to a failure the client cannot act on (storage, a handler's panic):
    /// a 900 like every refusal, with a code of its own.
    pub fn internal() -> Self {
        CtError::business("DMS.InternalError", "内部错误")
    }

    pub fn unknown_operation() -> Self {
        CtError { kind: Kind::UnknownOperation, code: "Openapi.Api.NotFound", message: "接口不存在".into() }
    }
}

impl From<CoreError> for CtError {
    fn from(e: CoreError) -> Self {
        use CtError as E;
        match e {
            CoreError::QueueNotFound => E::business("DMS.QueueNotFound", "队列不存在"),
            CoreError::QueueExists { .. } => E::business("DMS.QueueNameDuplicate", "队列名称已存在"),
            CoreError::GroupNotFound => E::business("DMS.GroupNotFound", "消费组不存在"),
            CoreError::GroupExists => E::business("DMS.GroupNameDuplicate", "消费组名称已存在"),
            CoreError::MessageNotFound
            | CoreError::NotInFlight
            | CoreError::ReceiptMalformed
            | CoreError::ReceiptStale => E::business("DMS.InvalidValue", "消息句柄无效或已过期"),
            CoreError::InvalidArgument(m) => E::invalid(format!("参数值无效: {m}")),
            CoreError::TooLarge(m) => E::business("DMS.MessageTooLarge", format!("消息大小超过限制: {m}")),
            CoreError::QuotaExceeded(Quota::Groups) => E::business("DMS.GroupQuotaExceeded", "消费组数量超过配额"),
            CoreError::QuotaExceeded(Quota::Queues) => E::business("DMS.QueueQuotaExceeded", "队列数量超过配额"),
            CoreError::TagRuleChanged => E::business("DMS.TagRuleChanged", "消费组的标签过滤规则不可更改"),
            CoreError::GroupBusy => E::business("DMS.GroupConsuming", "消费组存在正在消费的消息, 请使用 force 重置"),
            CoreError::ShuttingDown => E::business("DMS.ServiceUnavailable", "服务正在停止"),
            CoreError::Unavailable(cause) => {
                tracing::warn!(request_id = %crate::http::request_id(), error = %cause, "storage unavailable");
                E::business("DMS.ServiceUnavailable", "存储暂不可用(磁盘已满或故障), 请稍后重试")
            }
            CoreError::Storage(cause) => {
                tracing::error!(request_id = %crate::http::request_id(), error = %cause, "storage failure");
                E::internal()
            }
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json;charset=UTF-8")], body.to_string()).into_response()
}

/// The HTTP status for a `statusCode`.
fn status_line(code: u16, mirror: bool) -> StatusCode {
    match code {
        800 | 900 if !mirror => StatusCode::OK,
        c => StatusCode::from_u16(c).unwrap_or(StatusCode::OK),
    }
}

/// Renders a success.
pub fn success(reply: Reply, mirror: bool) -> Response {
    let body = match reply {
        Reply::A(payload) => json!({"statusCode": 800, "returnObj": payload.to_string()}),
        Reply::B(payload) => json!({
            "statusCode": 800,
            "returnObj": {"returnObj": payload.to_string(), "errorMessageString": "", "errorMessageArray": [], "succeed": true},
        }),
        Reply::C => json!({"statusCode": 800, "errorMessageString": "", "errorMessageArray": [], "succeed": true}),
        Reply::D(payload) => {
            let mut m = payload.clone();
            m.insert("statusCode".into(), json!(800));
            m.insert("returnObj".into(), Value::Object(payload));
            Value::Object(m)
        }
    };
    json_response(status_line(800, mirror), body)
}

/// Renders a failure.
pub fn failure(e: CtError, mirror: bool) -> Response {
    let code: u16 = match e.kind {
        Kind::Business => 900,
        Kind::Malformed => 400,
        Kind::UnknownOperation => 404,
    };
    let body = json!({
        "statusCode": code,
        "message": e.message,
        "errorCode": e.code,
        "errorMessageString": e.message,
        "errorMessageArray": [e.message],
        "succeed": false,
        "returnObj": null,
    });
    json_response(status_line(code, mirror), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::StoreError;

    #[test]
    fn every_core_error_is_a_900_with_a_stable_code() {
        let cases: Vec<(CoreError, &str)> = vec![
            (CoreError::QueueNotFound, "DMS.QueueNotFound"),
            (CoreError::QueueExists { same: true }, "DMS.QueueNameDuplicate"),
            (CoreError::GroupNotFound, "DMS.GroupNotFound"),
            (CoreError::GroupExists, "DMS.GroupNameDuplicate"),
            (CoreError::MessageNotFound, "DMS.InvalidValue"),
            (CoreError::NotInFlight, "DMS.InvalidValue"),
            (CoreError::ReceiptMalformed, "DMS.InvalidValue"),
            (CoreError::ReceiptStale, "DMS.InvalidValue"),
            (CoreError::InvalidArgument("x".into()), "DMS.InvalidValue"),
            (CoreError::TooLarge("x".into()), "DMS.MessageTooLarge"),
            (CoreError::QuotaExceeded(Quota::Queues), "DMS.QueueQuotaExceeded"),
            (CoreError::QuotaExceeded(Quota::Groups), "DMS.GroupQuotaExceeded"),
            (CoreError::TagRuleChanged, "DMS.TagRuleChanged"),
            (CoreError::GroupBusy, "DMS.GroupConsuming"),
            (CoreError::ShuttingDown, "DMS.ServiceUnavailable"),
            (CoreError::Unavailable(StoreError::unavailable("disk full")), "DMS.ServiceUnavailable"),
            (CoreError::Storage(StoreError::new("disk")), "DMS.InternalError"),
        ];
        for (e, code) in cases {
            let c = CtError::from(e);
            assert_eq!((c.kind, c.code), (Kind::Business, code));
            assert!(!c.message.contains("disk"));
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(800, false), StatusCode::OK);
        assert_eq!(status_line(900, false), StatusCode::OK);
        assert_eq!(status_line(900, true).as_u16(), 900);
        assert_eq!(status_line(400, false), StatusCode::BAD_REQUEST);
        assert_eq!(status_line(404, true), StatusCode::NOT_FOUND);
    }
}
