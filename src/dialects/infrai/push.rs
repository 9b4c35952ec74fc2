//! Push subscriptions: `push_subscribe`, plus listing (`GET` on the same path) and
//! unsubscribing (`DELETE …/{subscription_id}`) as extensions.

use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Body, Caller, Fields, QueuePath, path_param};
use super::idempotency::once;
use crate::core::model::SubscriptionRecord;
use crate::json::rfc3339;
use crate::state::AppState;

/// `POST /v1/queue/push_subscribe/{queue}` — `url` (alias `forward_to`), `secret`,
/// `max_retries` (default 5), `visibility_timeout` (default 30), `dead_letter_queue`.
pub async fn subscribe(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let url = match (b.opt_str("url")?, b.opt_str("forward_to")?) {
        (Some(u), _) | (None, Some(u)) if !u.is_empty() => u.to_string(),
        _ => return Err(ApiError::invalid("url is required")),
    };
    let secret = b.opt_str("secret")?.filter(|s| !s.is_empty()).map(str::to_string);
    let max_retries = b.opt_int("max_retries", 0, 100)?.unwrap_or(5) as u32;
    let visibility = b.opt_int("visibility_timeout", 1, 43_200)?.unwrap_or(30) as u64;
    let dlq = match b.opt_str("dead_letter_queue")?.filter(|s| !s.is_empty()) {
        Some(d) if d == name => {
            return Err(ApiError::invalid("dead_letter_queue must not be the queue itself"));
        }
        Some(d) => Some(
            st.broker
                .queue(&t.name, d)
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "QUEUE_NOT_FOUND",
                        format!("dead_letter_queue '{d}' does not exist"),
                    )
                })?
                .id(),
        ),
        None => None,
    };
    st.push
        .check_target(&url)
        .await
        .map_err(|why| ApiError::invalid(format!("url is not an allowed push target: {why}")))?;
    Ok(once(&st, &t.name, "queue.push_subscribe", &name, &b, &headers, || async {
        let rec = SubscriptionRecord {
            id: Uuid::new_v4(),
            namespace: t.name.clone(),
            queue_id: q.id(),
            url: url.clone(),
            secret,
            max_retries,
            visibility_timeout_secs: visibility,
            dead_letter_queue: dlq,
            created_at: st.broker.now(),
        };
        st.push.subscribe(rec.clone()).await.map_err(|e| ApiError::core(e, &name))?;
        Ok((StatusCode::CREATED, json!({"subscription_id": rec.id.to_string(), "queue": name, "url": url})))
    })
    .await)
}

/// `GET /v1/queue/push_subscribe/{queue}` — the queue's subscriptions (secrets not shown).
pub async fn list(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let mut items: Vec<Value> = Vec::new();
    for s in st.broker.subscriptions_of(&q).await.map_err(|e| ApiError::core(e, &name))? {
        let mut v = json!({
            "subscription_id": s.id.to_string(),
            "queue": name,
            "url": s.url,
            "max_retries": s.max_retries,
            "visibility_timeout": s.visibility_timeout_secs,
            "signed": s.secret.is_some(),
            "created_at": rfc3339(s.created_at),
        });
        if let Some(id) = s.dead_letter_queue
            && let Ok(d) = st.broker.queue_by_id(&t.name, id).await
        {
            v["dead_letter_queue"] = json!(d.name());
        }
        items.push(v);
    }
    Ok(axum::Json(json!({"items": items})).into_response())
}

/// `DELETE /v1/queue/push_subscribe/{queue}/{subscription_id}`
pub async fn unsubscribe(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let raw = path_param(&params, "subscription").unwrap_or_default();
    let subs = st.broker.subscriptions_of(&q).await.map_err(|e| ApiError::core(e, &name))?;
    let id = Uuid::parse_str(&raw).ok().filter(|id| subs.iter().any(|s| s.id == *id));
    let deleted = match id {
        Some(id) => st.push.unsubscribe(id).await.map_err(|e| ApiError::core(e, &name))?,
        None => false,
    };
    Ok(axum::Json(json!({"subscription_id": raw, "deleted": deleted})).into_response())
}
