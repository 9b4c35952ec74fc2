//! Request extraction for infrai: bearer auth, JSON bodies, path and query parameters, each
//! failing with infrai's own error (never axum's plain-text rejections).
//!
//! The bearer check itself is [`authenticate`], a pure function of the headers and a key
//! lookup, so the extractor and the benchmarks run the very same code.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::auth::Tenant;
use crate::http::{BodyError, Operation, parse_query, read_body, set_operation};
use crate::state::AppState;

/// Authenticates `Authorization: Bearer <key>` (scheme in any case); `key_owner` says whom a key
/// belongs to. Every failure is a 401 whose message says what was wrong, never which keys exist.
pub fn authenticate<C>(headers: &HeaderMap, key_owner: impl FnOnce(&str) -> Option<C>) -> Result<C, ApiError> {
    let header =
        headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <key>"))?;
    let text = header.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?.trim();
    let (scheme, key) = text.split_once(' ').ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(ApiError::unauthorized("Authorization must be a Bearer key"));
    }
    key_owner(key.trim()).ok_or_else(|| ApiError::unauthorized("unknown API key"))
}

/// The tenant of the request's bearer key.
pub struct Caller(pub Arc<Tenant>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        set_operation(Operation::new(super::NAME, super::operation_name(&parts.method, parts.uri.path())));
        let auth = st.auth.load();
        let caller = authenticate(&parts.headers, |key| auth.bearer(key)).map(Caller)?;
        crate::http::set_tenant(&caller.0.name);
        Ok(caller)
    }
}

/// The `{queue}` path parameter.
pub struct QueuePath(pub String);

impl FromRequestParts<AppState> for QueuePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, st)
            .await
            .map_err(|_| ApiError::invalid("queue: the path segment is not valid UTF-8"))?;
        params
            .iter()
            .find(|(k, _)| *k == "queue")
            .map(|(_, v)| QueuePath(v.to_string()))
            .ok_or_else(ApiError::route_not_found)
    }
}

/// A path parameter other than the queue.
pub fn path_param(parts: &RawPathParams, name: &str) -> Option<String> {
    parts.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

/// The decoded query string, by name (the last occurrence wins).
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl FromRequestParts<AppState> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(QueryParams(parse_query(parts.uri.query().unwrap_or(""), true)))
    }
}

/// A JSON object body. An empty body is `MALFORMED_JSON` unless the capability's body is
/// optional ([`OptionalBody`]).
pub struct Body(pub Map<String, Value>);

/// Like [`Body`], but an empty body is an empty object (purge, redrive, delete).
pub struct OptionalBody(pub Map<String, Value>);

async fn object(req: Request, st: &AppState, optional: bool) -> Result<Map<String, Value>, ApiError> {
    let limit = st.config.infrai.max_request_bytes;
    let bytes = read_body(req.into_body(), limit).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::too_large(format!("request body exceeds {limit} bytes")),
        BodyError::Io(m) => ApiError::malformed(format!("cannot read the body: {m}")),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(Map::new())
        } else {
            Err(ApiError::malformed("the request body must be a JSON object"))
        };
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::malformed("the request body must be a JSON object")),
        Err(e) => Err(ApiError::malformed(format!("the request body is not valid JSON: {e}"))),
    }
}

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        object(req, st, false).await.map(Body)
    }
}

impl FromRequest<AppState> for OptionalBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        object(req, st, true).await.map(OptionalBody)
    }
}

/// Typed access to body fields with infrai's errors (the message names the field).
pub trait Fields {
    fn map(&self) -> &Map<String, Value>;

    /// A present, non-null field.
    fn field(&self, name: &str) -> Option<&Value> {
        self.map().get(name).filter(|v| !v.is_null())
    }

    fn req_str(&self, name: &str) -> Result<&str, ApiError> {
        match self.field(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(ApiError::invalid(format!("{name} must not be empty"))),
            Some(_) => Err(ApiError::invalid(format!("{name} must be a string"))),
            None => Err(ApiError::invalid(format!("{name} is required"))),
        }
    }

    fn opt_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.field(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(format!("{name} must be a string"))),
            None => Ok(None),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.field(name) {
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(format!("{name} must be a boolean"))),
            None => Ok(None),
        }
    }

    /// An integer field within `lo..=hi` (integral floats such as `30.0` are accepted).
    fn opt_int(&self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.field(name) else {
            return Ok(None);
        };
        let n = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
            .ok_or_else(|| ApiError::invalid(format!("{name} must be an integer")))?;
        if n < lo || n > hi {
            return Err(ApiError::invalid(format!("{name} must be between {lo} and {hi}")));
        }
        Ok(Some(n))
    }

    /// A number field within `lo..=hi`.
    fn opt_num(&self, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.field(name) else {
            return Ok(None);
        };
        let n = v.as_f64().ok_or_else(|| ApiError::invalid(format!("{name} must be a number")))?;
        if !(lo..=hi).contains(&n) {
            return Err(ApiError::invalid(format!("{name} must be between {lo} and {hi}")));
        }
        Ok(Some(n))
    }
}

impl Fields for Map<String, Value> {
    fn map(&self) -> &Map<String, Value> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys() {
        let owner = |k: &str| (k == "ifr_demo").then_some("demo");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(authenticate(&with("Bearer ifr_demo"), owner).unwrap(), "demo");
        assert_eq!(authenticate(&with("  bearer   ifr_demo "), owner).unwrap(), "demo");
        for bad in ["Bearer ifr_other", "Basic ifr_demo", "Bearer", "Bearer  ", "ifr_demo"] {
            let e = authenticate(&with(bad), owner).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (401, "UNAUTHORIZED"), "{bad}");
        }
        assert_eq!(authenticate(&HeaderMap::new(), owner).unwrap_err().code, "UNAUTHORIZED");
    }
}
