//! Dead-letter capabilities: dlq.list and dlq.redrive.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Caller, Fields, OptionalBody, QueryParams, QueuePath};
use super::idempotency::once;
use super::queues::parse_limit;
use super::wire::{dead_letter, decode_cursor, encode_cursor};
use crate::core::model::MessageId;
use crate::core::{CoreError, RedriveSelector};
use crate::json::parse_rfc3339;
use crate::state::AppState;

/// `GET /v1/queue/dlq/list/{queue}?cursor=&limit=` — the queue's dead letters wherever kept,
/// oldest death first.
pub async fn list(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let limit = parse_limit(query.get("limit"), 100)?;
    let after = match query.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => {
            let text = decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor is not valid"))?;
            let (at, id) = text.split_once(':').ok_or_else(|| ApiError::invalid("cursor is not valid"))?;
            Some((
                at.parse().map_err(|_| ApiError::invalid("cursor is not valid"))?,
                MessageId::parse(id).ok_or_else(|| ApiError::invalid("cursor is not valid"))?,
            ))
        }
        None => None,
    };
    let page = st.broker.dead_letters(&q, after, limit).await.map_err(|e| ApiError::core(e, &name))?;
    let items: Vec<Value> = page.items.iter().map(dead_letter).collect();
    let mut out = json!({"items": items});
    if let Some((at, id)) = page.next {
        out["next_cursor"] = json!(encode_cursor(&format!("{at}:{id}")));
    }
    Ok(axum::Json(out).into_response())
}

/// `POST /v1/queue/dlq/redrive/{queue}` — one (`message_id`), since a time (`since`), or all,
/// up to `max_messages` (default 1000).
pub async fn redrive(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    headers: HeaderMap,
    OptionalBody(b): OptionalBody,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let max = b.opt_int("max_messages", 1, 100_000)?.unwrap_or(1000) as usize;
    let sel = if let Some(id) = b.opt_str("message_id")? {
        let parsed = MessageId::parse(id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND", format!("dead letter '{id}' does not exist"))
        })?;
        RedriveSelector::One(parsed)
    } else if let Some(since) = b.opt_str("since")? {
        RedriveSelector::Since(parse_rfc3339(since).ok_or_else(|| ApiError::invalid("since must be an RFC 3339 time"))?)
    } else {
        RedriveSelector::All
    };
    Ok(once(&st, &t.name, "queue.dlq.redrive", &name, &b, &headers, || async {
        let n = st.broker.redrive(&q, sel, max).await.map_err(|e| match e {
            CoreError::MessageNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND", "no such dead letter")
            }
            e => ApiError::core(e, &name),
        })?;
        Ok((StatusCode::OK, json!({"queue": name, "redriven": n})))
    })
    .await)
}
