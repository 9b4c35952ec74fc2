//! Idempotency for infrai's mutating capabilities.
//!
//! The key comes from the body's `idempotency_key` (or an `Idempotency-Key` header). The
//! fingerprint is SHA-256 over the capability, the path's queue and the canonical JSON of the
//! body without the key (serde_json maps are sorted, so field order does not matter). Only
//! successful answers are remembered, so a call that failed can be retried with the same key.

use std::future::Future;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::Fields;
use crate::auth::crypto::sha256;
use crate::core::Idempotent;
use crate::state::AppState;

/// The request's idempotency key, if any.
pub fn key_of(body: &Map<String, Value>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(k) = body.opt_str("idempotency_key")? {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::invalid("idempotency_key must be 1-255 characters"));
        }
        return Ok(Some(k.to_string()));
    }
    Ok(headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_string))
}

/// Fingerprint of a request: what "the same body" means.
pub fn fingerprint(capability: &str, scope: &str, body: &Map<String, Value>) -> [u8; 32] {
    let mut b = body.clone();
    b.remove("idempotency_key");
    let text = format!("{capability}\n{scope}\n{}", Value::Object(b));
    sha256(text.as_bytes())
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `act` once per key: replays the first successful answer, refuses a reused key with a
/// different body.
pub async fn once<F, Fut>(
    st: &AppState,
    ns: &str,
    capability: &str,
    scope: &str,
    body: &Map<String, Value>,
    headers: &HeaderMap,
    act: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let key = match key_of(body, headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let Some(key) = key else {
        return match act().await {
            Ok((status, v)) => json_response(status, v.to_string().into_bytes()),
            Err(e) => e.into_response(),
        };
    };
    let fp = fingerprint(capability, scope, body);
    let begun = match st.broker.idempotency_begin(ns, capability, &key, fp).await {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match begun {
        Idempotent::Replay { status, body } => {
            json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
        }
        Idempotent::Mismatch => ApiError::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_KEY_REUSED",
            format!("idempotency key '{key}' was used with a different request"),
        )
        .into_response(),
        Idempotent::Proceed(ticket) => match act().await {
            Ok((status, v)) => {
                let bytes = v.to_string().into_bytes();
                if let Err(e) = st.broker.idempotency_finish(ticket, status.as_u16(), bytes.clone()).await {
                    return ApiError::from(e).into_response();
                }
                json_response(status, bytes)
            }
            Err(e) => e.into_response(),
        },
    }
}
