//! Message capabilities: publish, publish_batch, consume, ack, nack.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::extract::{Body, Caller, Fields};
use super::idempotency::{fingerprint, once};
use super::wire::{delivered, to_core_priority};
use crate::core::model::{DEFAULT_GROUP, MessageId, NewMessage};
use crate::core::{Queue, ReceiveOptions};
use crate::state::AppState;

const PUBLISH: &str = "queue.publish";
/// infrai's default priority (on its 16-is-first scale).
const DEFAULT_PRIORITY: i64 = 8;

/// One message of a publish body (or of a batch entry), validated.
struct Outgoing {
    msg: NewMessage,
    key: Option<String>,
    fingerprint: [u8; 32],
}

fn outgoing(st: &AppState, queue: &str, m: &Map<String, Value>, at: &str) -> Result<Outgoing, ApiError> {
    let payload = m.get("payload").ok_or_else(|| ApiError::invalid(format!("{at}payload is required")))?;
    let body = serde_json::to_vec(payload).map_err(|e| ApiError::invalid(format!("{at}payload: {e}")))?;
    let limit = st.config.infrai.max_payload_bytes;
    if body.len() as u64 > limit {
        return Err(ApiError::too_large(format!("{at}payload is {} bytes, the limit is {limit}", body.len())));
    }
    let delay = m.opt_num("delay_seconds", 0.0, 900.0).map_err(|e| ApiError::invalid(format!("{at}{}", e.message)))?;
    let priority = m
        .opt_int("priority", 1, 16)
        .map_err(|e| ApiError::invalid(format!("{at}{}", e.message)))?
        .unwrap_or(DEFAULT_PRIORITY);
    let key = match m.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid(format!("{at}idempotency_key must be a string of 1-255 characters")));
        }
    };
    // The fingerprint of a batch entry equals that of the same single publish, so a batch retry
    // of a single publish (or the reverse) is recognised.
    let mut canon = m.clone();
    canon.insert("queue".into(), json!(queue));
    Ok(Outgoing {
        msg: NewMessage {
            priority: Some(to_core_priority(priority)),
            delay_ms: Some(delay.map_or(0, |d| (d * 1000.0).round() as u64)),
            ..NewMessage::json(body)
        },
        key,
        fingerprint: fingerprint(PUBLISH, "", &canon),
    })
}

async fn queue_of(
    st: &AppState,
    ns: &str,
    b: &Map<String, Value>,
) -> Result<(String, std::sync::Arc<Queue>), ApiError> {
    let name = b.req_str("queue")?.to_string();
    let q = st.broker.queue_cached(ns, &name).await.map_err(|e| ApiError::core(e, &name))?;
    Ok((name, q))
}

/// `POST /v1/queue/publish`
pub async fn publish(
    State(st): State<AppState>,
    Caller(t): Caller,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let name = b.req_str("queue")?.to_string();
    let out = outgoing(&st, &name, &b, "")?;
    let q = st.broker.queue_cached(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    Ok(once(&st, &t.name, PUBLISH, "", &b, &headers, || async {
        let metas = st.broker.publish(&q, vec![out.msg]).await.map_err(|e| ApiError::core(e, &name))?;
        Ok((StatusCode::CREATED, json!({"message_id": metas[0].id.to_string()})))
    })
    .await)
}

/// `POST /v1/queue/publish_batch` — 1-100 messages, all or nothing, ids in request order.
pub async fn publish_batch(
    State(st): State<AppState>,
    Caller(t): Caller,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let name = b.req_str("queue")?.to_string();
    let entries = match b.field("messages") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::invalid("messages must be an array")),
        None => return Err(ApiError::invalid("messages is required")),
    };
    if entries.is_empty() || entries.len() > 100 {
        return Err(ApiError::invalid("messages must hold 1 to 100 messages"));
    }
    let mut outs = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Value::Object(m) = e else {
            return Err(ApiError::invalid(format!("messages[{i}] must be an object")));
        };
        outs.push(outgoing(&st, &name, m, &format!("messages[{i}].")).map_err(|mut e| {
            if e.code == "INVALID_ARGUMENT" && !e.message.starts_with("messages[") {
                e.message = format!("messages[{i}].{}", e.message);
            }
            e
        })?);
    }
    let q = st.broker.queue_cached(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    Ok(once(&st, &t.name, "queue.publish_batch", "", &b, &headers, || async {
        // Entries whose own key was seen before keep their first id; the rest publish together.
        let mut ids: Vec<Option<String>> = vec![None; outs.len()];
        let mut fresh = Vec::new();
        for (i, o) in outs.iter().enumerate() {
            if let Some(k) = &o.key
                && let Some((fp, _, body)) =
                    st.broker.idempotency_lookup(&t.name, PUBLISH, k).await.map_err(|e| ApiError::core(e, &name))?
            {
                if fp != o.fingerprint {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "IDEMPOTENCY_KEY_REUSED",
                        format!("messages[{i}].idempotency_key '{k}' was used with a different message"),
                    ));
                }
                let id = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["message_id"].as_str().map(str::to_string));
                if id.is_some() {
                    ids[i] = id;
                    continue;
                }
            }
            fresh.push(i);
        }
        let msgs: Vec<NewMessage> = fresh.iter().map(|&i| outs[i].msg.clone()).collect();
        let metas = if msgs.is_empty() {
            Vec::new()
        } else {
            st.broker.publish(&q, msgs).await.map_err(|e| ApiError::core(e, &name))?
        };
        for (&i, meta) in fresh.iter().zip(&metas) {
            let id = meta.id.to_string();
            if let Some(k) = &outs[i].key {
                let body = json!({"message_id": id}).to_string().into_bytes();
                st.broker
                    .idempotency_record(&t.name, PUBLISH, k, outs[i].fingerprint, 201, body)
                    .await
                    .map_err(ApiError::from)?;
            }
            ids[i] = Some(id);
        }
        let ids: Vec<String> = ids.into_iter().map(Option::unwrap_or_default).collect();
        Ok((StatusCode::CREATED, json!({"message_ids": ids})))
    })
    .await)
}

/// `POST /v1/queue/consume`
pub async fn consume(State(st): State<AppState>, Caller(t): Caller, Body(b): Body) -> Result<Response, ApiError> {
    let (name, q) = queue_of(&st, &t.name, &b).await?;
    let max = b.opt_int("max_messages", 1, 100)?.unwrap_or(1) as usize;
    let lease = b.opt_int("visibility_timeout", 1, 43_200)?;
    let wait = b.opt_int("wait_seconds", 0, 20)?.unwrap_or(0);
    let opts = ReceiveOptions {
        lease_ms: lease.map(|s| s as u64 * 1000),
        wait_ms: Some(wait as u64 * 1000),
        ..ReceiveOptions::new(max)
    };
    let got = st.broker.receive(&q, DEFAULT_GROUP, opts).await.map_err(|e| ApiError::core(e, &name))?;
    let messages: Vec<Value> = got.iter().map(delivered).collect();
    Ok(axum::Json(json!({"messages": messages})).into_response())
}

fn message_id(b: &Map<String, Value>) -> Result<(String, Option<MessageId>), ApiError> {
    let raw = b.req_str("message_id")?.to_string();
    let id = MessageId::parse(&raw);
    Ok((raw, id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND", format!("message '{id}' does not exist"))
}

/// `POST /v1/queue/ack`
pub async fn ack(
    State(st): State<AppState>,
    Caller(t): Caller,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let (name, q) = queue_of(&st, &t.name, &b).await?;
    let (raw, id) = message_id(&b)?;
    Ok(once(&st, &t.name, "queue.ack", "", &b, &headers, || async {
        let id = id.ok_or_else(|| not_found(&raw))?;
        st.broker.ack_id(&q, DEFAULT_GROUP, id).await.map_err(|e| match e {
            crate::core::CoreError::MessageNotFound => not_found(&raw),
            e => ApiError::core(e, &name),
        })?;
        Ok((StatusCode::OK, json!({"message_id": raw, "acked": true})))
    })
    .await)
}

/// `POST /v1/queue/nack` — `requeue` (default true) puts it back; false dead-letters it.
pub async fn nack(
    State(st): State<AppState>,
    Caller(t): Caller,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let (name, q) = queue_of(&st, &t.name, &b).await?;
    let (raw, id) = message_id(&b)?;
    let requeue = b.opt_bool("requeue")?.unwrap_or(true);
    Ok(once(&st, &t.name, "queue.nack", "", &b, &headers, || async {
        let id = id.ok_or_else(|| not_found(&raw))?;
        let requeued = st.broker.nack_id(&q, DEFAULT_GROUP, id, !requeue).await.map_err(|e| match e {
            crate::core::CoreError::MessageNotFound => not_found(&raw),
            e => ApiError::core(e, &name),
        })?;
        Ok((StatusCode::OK, json!({"message_id": raw, "nacked": true, "requeued": requeued})))
    })
    .await)
}
