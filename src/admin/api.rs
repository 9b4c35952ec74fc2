//! The JSON admin API (`/api/v1`): tenants, queues across tenants with depth and counters, one
//! queue's attributes and consumer groups, peek, purge, delete, and dead letters (list,
//! redrive, purge). Tenants are the namespaces that have queues (the configured ones and CTYun
//! sub-tenants); internal namespaces (MNS topics and subscriptions) are not shown.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, http::StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminError;
use crate::core::model::{DEFAULT_GROUP, DeadLetterTarget, DeadReason, QueueKind, QueueRecord};
use crate::core::{Broker, Queue, RedriveSelector};
use crate::json::rfc3339;
use crate::state::AppState;

type ApiResult = Result<Json<Value>, AdminError>;

/// Longest body preview.
const PREVIEW_CHARS: usize = 256;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/overview", get(overview))
        .route("/tenants", get(tenants))
        .route("/queues", get(queues))
        .route("/queues/{tenant}/{name}", get(queue).delete(delete_queue))
        .route("/queues/{tenant}/{name}/messages", get(peek))
        .route("/queues/{tenant}/{name}/purge", post(purge))
        .route("/queues/{tenant}/{name}/deadletters", get(dead_letters))
        .route("/queues/{tenant}/{name}/deadletters/redrive", post(redrive))
        .route("/queues/{tenant}/{name}/deadletters/purge", post(purge_dead))
}

/// Every tenant namespace with its queues, by name.
async fn all(broker: &Broker) -> Result<Vec<(String, Vec<Arc<Queue>>)>, AdminError> {
    let mut out = Vec::new();
    for ns in broker.namespaces().await? {
        if Broker::is_internal(&ns) {
            continue;
        }
        let qs = broker.all_queues_of(&ns, "").await?;
        out.push((ns, qs));
    }
    Ok(out)
}

/// A queue's list entry: depth by state and this process's counters.
async fn entry(broker: &Broker, q: &Queue) -> Result<Value, AdminError> {
    let info = broker.info(q).await?;
    let s = &info.stats;
    let c = broker.counters.get(q.id());
    let age = crate::metrics::oldest_ready_age(s.oldest_enqueued_at, broker.now(), s.ready);
    Ok(json!({
        "tenant": q.namespace(),
        "name": q.name(),
        "id": q.id(),
        "kind": if info.record.config.kind == QueueKind::Fifo { "fifo" } else { "standard" },
        "ready": s.ready,
        "in_flight": s.in_flight,
        "delayed": s.delayed,
        "dead": s.dead,
        "groups": info.group_count,
        "published_total": c.published,
        "delivered_total": c.delivered,
        "acked_total": c.acked,
        "redelivered_total": c.redelivered,
        "dead_lettered_total": c.dead_lettered,
        "oldest_ready_age_secs": age,
        "created_at": rfc3339(info.record.created_at),
    }))
}

async fn overview(State(st): State<AppState>) -> ApiResult {
    let all = all(&st.broker).await?;
    let (mut ready, mut in_flight, mut delayed, mut dead, mut queues) = (0, 0, 0, 0, 0);
    for (_, qs) in &all {
        for q in qs {
            if let Ok(info) = st.broker.info(q).await {
                ready += info.stats.ready;
                in_flight += info.stats.in_flight;
                delayed += info.stats.delayed;
                dead += info.stats.dead;
                queues += 1;
            }
        }
    }
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.metrics.uptime().as_secs(),
        "tenants": tenant_names(&st, &all).len(),
        "queues": queues,
        "messages": {"ready": ready, "in_flight": in_flight, "delayed": delayed, "dead": dead},
        "ready": st.broker.readiness().is_ok(),
    })))
}

/// Configured tenants and every namespace that has queues.
fn tenant_names(st: &AppState, all: &[(String, Vec<Arc<Queue>>)]) -> Vec<(String, usize)> {
    let mut names: std::collections::BTreeMap<String, usize> =
        st.config.tenants.iter().map(|t| (t.name.clone(), 0)).collect();
    for (ns, qs) in all {
        names.insert(ns.clone(), qs.len());
    }
    names.into_iter().collect()
}

async fn tenants(State(st): State<AppState>) -> ApiResult {
    let all = all(&st.broker).await?;
    let list: Vec<Value> =
        tenant_names(&st, &all).into_iter().map(|(name, queues)| json!({"name": name, "queues": queues})).collect();
    Ok(Json(json!({"tenants": list})))
}

#[derive(Deserialize)]
struct QueuesQuery {
    tenant: Option<String>,
}

async fn queues(State(st): State<AppState>, Query(q): Query<QueuesQuery>) -> ApiResult {
    let mut out = Vec::new();
    for (ns, qs) in all(&st.broker).await? {
        if q.tenant.as_ref().is_some_and(|t| *t != ns) {
            continue;
        }
        for queue in qs {
            match entry(&st.broker, &queue).await {
                Ok(v) => out.push(v),
                Err(e) if e.status == StatusCode::NOT_FOUND => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Json(json!({"queues": out})))
}

async fn lookup(st: &AppState, tenant: &str, name: &str) -> Result<Arc<Queue>, AdminError> {
    Ok(st.broker.queue(tenant, name).await?)
}

/// The name of a queue's dead-letter queue (its id when it is gone).
async fn queue_name(broker: &Broker, ns: &str, id: uuid::Uuid) -> String {
    broker.queue_by_id(ns, id).await.map(|q| q.name().to_string()).unwrap_or_else(|_| id.to_string())
}

async fn config_of(broker: &Broker, rec: &QueueRecord) -> Value {
    let c = &rec.config;
    let dead_letter = match &c.dead_letter {
        None => Value::Null,
        Some(p) => {
            let target = match p.target {
                DeadLetterTarget::Own => "own".to_string(),
                DeadLetterTarget::Queue(id) => queue_name(broker, &rec.namespace, id).await,
            };
            json!({"max_failures": p.max_failures, "target": target})
        }
    };
    json!({
        "visibility_timeout_secs": c.visibility_timeout_secs,
        "delay_secs": c.delay_secs,
        "max_message_bytes": c.max_message_bytes,
        "retention_secs": c.retention_secs,
        "polling_wait_secs": c.polling_wait_secs,
        "dead_letter": dead_letter,
        "priority": c.priority,
        "mode": format!("{:?}", c.mode).to_lowercase(),
    })
}

async fn queue(State(st): State<AppState>, Path((tenant, name)): Path<(String, String)>) -> ApiResult {
    let q = lookup(&st, &tenant, &name).await?;
    let mut v = entry(&st.broker, &q).await?;
    let rec = st.broker.info(&q).await?.record;
    v["config"] = config_of(&st.broker, &rec).await;
    let groups: Vec<Value> = st
        .broker
        .groups(&q)
        .await?
        .into_iter()
        .map(|g| {
            let s = g.stats;
            json!({
                "id": g.record.id,
                "name": g.record.name,
                "ready": s.ready,
                "in_flight": s.in_flight,
                "delayed": s.delayed,
                "dead": s.dead,
                "backlog": s.ready + s.in_flight + s.delayed,
            })
        })
        .collect();
    Ok(Json(json!({"queue": v, "groups": groups})))
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(PREVIEW_CHARS).collect()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

fn limit(l: Option<usize>) -> Result<usize, AdminError> {
    match l {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(AdminError::invalid("limit must be 1 to 100")),
    }
}

async fn peek(
    State(st): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(l): Query<Limit>,
) -> ApiResult {
    let n = limit(l.limit)?;
    let q = lookup(&st, &tenant, &name).await?;
    let got = st.broker.peek(&q, DEFAULT_GROUP, n).await?;
    let list: Vec<Value> = got
        .iter()
        .map(|p| {
            json!({
                "id": p.meta.id.to_string(),
                "preview": preview(&p.body.body),
                "size": p.meta.size,
                "priority": p.meta.priority,
                "enqueued_at": rfc3339(p.meta.enqueued_at),
                "deliveries": p.deliveries,
                "attributes": crate::json::attributes_value(&p.body.attributes),
            })
        })
        .collect();
    Ok(Json(json!({"messages": list})))
}

async fn purge(State(st): State<AppState>, Path((tenant, name)): Path<(String, String)>) -> ApiResult {
    let q = lookup(&st, &tenant, &name).await?;
    let n = st.broker.purge(&q).await?;
    tracing::info!(tenant = %tenant, queue = %name, purged = n, "admin purge");
    Ok(Json(json!({"purged": n})))
}

async fn delete_queue(State(st): State<AppState>, Path((tenant, name)): Path<(String, String)>) -> ApiResult {
    let q = lookup(&st, &tenant, &name).await?;
    st.broker.delete_queue(&q).await?;
    st.push.forget_queue(&tenant, &name).await;
    tracing::info!(tenant = %tenant, queue = %name, "admin delete");
    Ok(Json(json!({"deleted": true})))
}

async fn dead_letters(
    State(st): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    Query(l): Query<Limit>,
) -> ApiResult {
    let n = limit(l.limit)?;
    let q = lookup(&st, &tenant, &name).await?;
    let page = st.broker.dead_letters(&q, None, n).await?;
    let kept_in = match q.config().dead_letter.as_ref().map(|p| p.target) {
        Some(DeadLetterTarget::Queue(id)) => queue_name(&st.broker, q.namespace(), id).await,
        _ => q.name().to_string(),
    };
    let list: Vec<Value> = page
        .items
        .iter()
        .map(|d| {
            json!({
                "id": d.meta.id.to_string(),
                "preview": preview(&d.body.body),
                "size": d.meta.size,
                "reason": match d.reason { DeadReason::Nacked => "nacked", DeadReason::MaxDeliveries => "max_deliveries" },
                "died_at": rfc3339(d.died_at),
                "deliveries": d.deliveries,
                "kept_in": kept_in,
            })
        })
        .collect();
    Ok(Json(json!({"dead_letters": list, "more": page.next.is_some()})))
}

#[derive(Deserialize)]
struct RedriveBody {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

async fn redrive(
    State(st): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    body: Result<Json<RedriveBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(b) = body.map_err(|e| AdminError::invalid(e.body_text()))?;
    let q = lookup(&st, &tenant, &name).await?;
    let mut n = 0;
    let mut not_found = Vec::new();
    if b.all {
        n = st.broker.redrive(&q, RedriveSelector::All, usize::MAX).await?;
    } else {
        if b.ids.is_empty() {
            return Err(AdminError::invalid("give ids or all: true"));
        }
        let ids = b
            .ids
            .iter()
            .map(|id| {
                crate::core::model::MessageId::parse(id)
                    .ok_or_else(|| AdminError::invalid(format!("{id} is not a message id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Each id on its own: one that is no longer a dead letter (redriven or purged meanwhile)
        // is reported, and the others still go back.
        for (id, text) in ids.into_iter().zip(&b.ids) {
            match st.broker.redrive(&q, RedriveSelector::One(id), 1).await {
                Ok(k) => n += k,
                Err(crate::core::CoreError::MessageNotFound) => not_found.push(text.clone()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    tracing::info!(tenant = %tenant, queue = %name, redriven = n, "admin redrive");
    Ok(Json(json!({"redriven": n, "not_found": not_found})))
}

/// Consumes every dead letter of the queue's own stores (the default group's and each named
/// group's). Dead letters kept in a dead-letter queue are that queue's messages: purge it.
async fn purge_dead(State(st): State<AppState>, Path((tenant, name)): Path<(String, String)>) -> ApiResult {
    let q = lookup(&st, &tenant, &name).await?;
    let mut n = 0u64;
    let mut groups = vec![DEFAULT_GROUP];
    for g in st.broker.groups(&q).await? {
        if let Ok(no) = st.broker.group_no(&q, &g.record.id).await {
            groups.push(no);
        }
    }
    for g in groups {
        loop {
            let got = match st.broker.receive_dead(&q, g, 100, 60_000, 0, None).await {
                Ok(got) => got,
                Err(_) => break,
            };
            if got.is_empty() {
                break;
            }
            for d in got {
                if st.broker.settle_dead_in(&q, Some(g), &d.handle, true).await.is_ok() {
                    n += 1;
                }
            }
        }
    }
    tracing::info!(tenant = %tenant, queue = %name, purged = n, "admin dead-letter purge");
    Ok(Json(json!({"purged": n})))
}
