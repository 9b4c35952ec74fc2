//! Queue capabilities: create, get, list, update, delete, purge, stats.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::extract::{Body, Caller, Fields, OptionalBody, QueryParams, QueuePath};
use super::idempotency::once;
use super::wire::{decode_cursor, encode_cursor, queue_record, stats};
use crate::core::model::{DEFAULT_GROUP, DeadLetterPolicy, DeadLetterTarget, QueueConfig, QueueKind, RetentionMode};
use crate::core::{Broker, CoreError, CreateOutcome};
use crate::state::AppState;

/// Queue names: 1-128 of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

const DEFAULT_MAX_RETRIES: i64 = 5;

/// Resolves a dead-letter queue name to a target in the tenant.
async fn dlq_target(broker: &Broker, ns: &str, this: Option<&str>, name: &str) -> Result<DeadLetterTarget, ApiError> {
    if Some(name) == this {
        return Err(ApiError::invalid("dead_letter_queue must not be the queue itself"));
    }
    let q = broker.queue(ns, name).await.map_err(|_| {
        ApiError::new(StatusCode::NOT_FOUND, "QUEUE_NOT_FOUND", format!("dead_letter_queue '{name}' does not exist"))
    })?;
    Ok(DeadLetterTarget::Queue(q.id()))
}

/// Applies the tunable fields of a create/update body to a configuration.
async fn apply_fields(
    broker: &Broker,
    ns: &str,
    this: &str,
    b: &Map<String, Value>,
    cfg: &mut QueueConfig,
) -> Result<(), ApiError> {
    let mut policy = cfg
        .dead_letter
        .clone()
        .unwrap_or(DeadLetterPolicy { max_failures: DEFAULT_MAX_RETRIES as u32 + 1, target: DeadLetterTarget::Own });
    if let Some(r) = b.opt_int("max_retries", 0, 1000)? {
        policy.max_failures = r as u32 + 1;
    }
    match b.get("dead_letter_queue") {
        Some(Value::Null) => policy.target = DeadLetterTarget::Own,
        Some(Value::String(s)) if s.is_empty() => policy.target = DeadLetterTarget::Own,
        Some(Value::String(s)) => policy.target = dlq_target(broker, ns, Some(this), s).await?,
        Some(_) => return Err(ApiError::invalid("dead_letter_queue must be a string")),
        None => {}
    }
    cfg.dead_letter = Some(policy);
    if let Some(d) = b.opt_num("message_retention_days", 1.0, 14.0)? {
        cfg.retention_secs = (d * 86_400.0).round() as u64;
    }
    if let Some(v) = b.opt_int("visibility_timeout_default", 1, 43_200)? {
        cfg.visibility_timeout_secs = v as u64;
    }
    if let Some(p) = b.opt_bool("enable_priority")? {
        cfg.priority = p;
    }
    Ok(())
}

fn kind_of(b: &Map<String, Value>) -> Result<Option<QueueKind>, ApiError> {
    match b.opt_str("type")? {
        None => Ok(None),
        Some(t) if t.eq_ignore_ascii_case("standard") => Ok(Some(QueueKind::Standard)),
        Some(t) if t.eq_ignore_ascii_case("fifo") => Ok(Some(QueueKind::Fifo)),
        Some(t) => Err(ApiError::invalid(format!("type must be \"standard\" or \"fifo\", not \"{t}\""))),
    }
}

/// `POST /v1/queue/create`
pub async fn create(
    State(st): State<AppState>,
    Caller(t): Caller,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let name = b.req_str("name")?.to_string();
    if !valid_name(&name) {
        return Err(ApiError::invalid(
            "name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    let mut cfg = QueueConfig {
        kind: kind_of(&b)?.unwrap_or(QueueKind::Standard),
        mode: RetentionMode::WorkQueue,
        max_message_bytes: st.config.infrai.max_payload_bytes,
        priority: false,
        ..QueueConfig::default()
    };
    apply_fields(&st.broker, &t.name, &name, &b, &mut cfg).await?;
    Ok(once(&st, &t.name, "queue.create", "", &b, &headers, || async {
        match st.broker.create_queue(&t.name, &name, cfg, None).await {
            Ok(CreateOutcome::Created(rec)) => Ok((StatusCode::CREATED, queue_record(&st.broker, &rec).await)),
            Ok(CreateOutcome::Exists(_)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "QUEUE_ALREADY_EXISTS",
                format!("queue '{name}' already exists"),
            )),
            Err(CoreError::QueueNotFound) => Err(ApiError::invalid("dead_letter_queue does not exist")),
            Err(e) => Err(e.into()),
        }
    })
    .await)
}

/// `GET /v1/queue/get/{queue}`
pub async fn get(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    Ok(axum::Json(queue_record(&st.broker, &q.record()).await).into_response())
}

/// `GET /v1/queue/list?cursor=&limit=`
pub async fn list(State(st): State<AppState>, Caller(t): Caller, query: QueryParams) -> Result<Response, ApiError> {
    let limit = parse_limit(query.get("limit"), 100)?;
    let after = match query.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor is not valid"))?),
        None => None,
    };
    let (queues, more) = st.broker.list_queues(&t.name, "", after.as_deref(), limit).await?;
    let mut items: Vec<Value> = Vec::with_capacity(queues.len());
    for q in &queues {
        items.push(queue_record(&st.broker, &q.record()).await);
    }
    let mut out = json!({"items": items});
    if more && let Some(last) = queues.last() {
        out["next_cursor"] = json!(encode_cursor(last.name()));
    }
    Ok(axum::Json(out).into_response())
}

/// A `limit` query parameter: 1-1000.
pub fn parse_limit(v: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid("limit must be an integer between 1 and 1000")),
        },
    }
}

/// `PATCH /v1/queue/update/{queue}`
pub async fn update(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    headers: HeaderMap,
    Body(b): Body,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    if let Some(n) = b.opt_str("name")?
        && n != name
    {
        return Err(ApiError::invalid("name cannot be changed"));
    }
    let current = q.record().config;
    if let Some(k) = kind_of(&b)?
        && k != current.kind
    {
        return Err(ApiError::invalid("type cannot be changed"));
    }
    let mut cfg = current;
    apply_fields(&st.broker, &t.name, &name, &b, &mut cfg).await?;
    Ok(once(&st, &t.name, "queue.update", &name, &b, &headers, || async {
        let rec = st
            .broker
            .update_queue(&q, |c| {
                *c = cfg;
                Ok(())
            })
            .await
            .map_err(|e| ApiError::core(e, &name))?;
        Ok((StatusCode::OK, queue_record(&st.broker, &rec).await))
    })
    .await)
}

/// `DELETE /v1/queue/delete/{queue}` — idempotent: a missing queue is `deleted: false`.
pub async fn delete(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    query: QueryParams,
    headers: HeaderMap,
    OptionalBody(mut b): OptionalBody,
) -> Response {
    if let Some(k) = query.get("idempotency_key") {
        b.entry("idempotency_key").or_insert_with(|| json!(k));
    }
    once(&st, &t.name, "queue.delete", &name, &b, &headers, || async {
        let deleted = match st.broker.queue(&t.name, &name).await {
            Ok(q) => match st.broker.delete_queue(&q).await {
                Ok(()) => true,
                Err(CoreError::QueueNotFound) => false,
                Err(e) => return Err(e.into()),
            },
            Err(_) => false,
        };
        if deleted {
            st.push.forget_queue(&t.name, &name).await;
        }
        Ok((StatusCode::OK, json!({"queue": name, "deleted": deleted})))
    })
    .await
}

/// `POST /v1/queue/purge/{queue}`
pub async fn purge(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
    headers: HeaderMap,
    OptionalBody(b): OptionalBody,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    Ok(once(&st, &t.name, "queue.purge", &name, &b, &headers, || async {
        let n = st.broker.purge(&q).await.map_err(|e| ApiError::core(e, &name))?;
        Ok((StatusCode::OK, json!({"queue": name, "purged": n})))
    })
    .await)
}

/// `GET /v1/queue/stats/{queue}`
pub async fn stats_of(
    State(st): State<AppState>,
    Caller(t): Caller,
    QueuePath(name): QueuePath,
) -> Result<Response, ApiError> {
    let q = st.broker.queue(&t.name, &name).await.map_err(|e| ApiError::core(e, &name))?;
    let s = st.broker.stats(&q, DEFAULT_GROUP).await.map_err(|e| ApiError::core(e, &name))?;
    Ok(axum::Json(stats(&name, &s, st.broker.now())).into_response())
}
