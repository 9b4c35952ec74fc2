//! Queue operations: create, list, show, delete; quotas; queue resource tags.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::DmsError;
use super::{Ctx, json, no_content};
use crate::core::model::{DeadLetterPolicy, DeadLetterTarget, QueueConfig, QueueInfo, QueueKind, RetentionMode};
use crate::core::{CoreError, CreateOutcome};

fn text<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, DmsError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(DmsError::bad("10540010", format!("{name} must be a string."))),
    }
}

fn int(body: &Value, name: &str, code: &'static str, lo: i64, hi: i64) -> Result<Option<i64>, DmsError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| DmsError::bad(code, format!("{name} must be an integer.")))?;
            if n < lo || n > hi {
                return Err(DmsError::bad(code, format!("{name} must be between {lo} and {hi}.")));
            }
            Ok(Some(n))
        }
    }
}

/// A boolean query parameter (`true`/`false`, any case).
pub fn flag(ctx: &Ctx, name: &str) -> Result<bool, DmsError> {
    match ctx.param(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(DmsError::bad("10540014", format!("The URL parameter {name} must be true or false."))),
    }
}

fn is_kafka(c: &QueueConfig) -> bool {
    c.mode_label.as_deref().is_some_and(|m| m.starts_with("KAFKA"))
}

/// A queue as DMS reports it.
fn queue_object(ctx: &Ctx, info: &QueueInfo, include_dead_letter: bool) -> Value {
    let r = &info.record;
    let c = &r.config;
    let mode = c
        .mode_label
        .as_deref()
        .map(|m| m.replace('-', "_"))
        .unwrap_or_else(|| if c.kind == QueueKind::Fifo { "FIFO".into() } else { "NORMAL".into() });
    let mut v = json!({
        "id": r.id.to_string(),
        "name": r.name,
        "description": c.description,
        "queue_mode": mode,
        "reservation": c.retention_secs / 60,
        "max_msg_size_byte": c.max_message_bytes,
        "produced_messages": info.stored,
        "created": r.created_at,
        "eff_date": r.created_at,
        "group_count": info.group_count,
    });
    if is_kafka(c) {
        v["kafka_topic"] = json!(format!("k-{}-{}", ctx.tenant.project_id, r.id));
    } else if include_dead_letter {
        v["redrive_policy"] = json!(if c.dead_letter.is_some() { "enable" } else { "disable" });
        v["max_consume_count"] = json!(c.dead_letter.as_ref().map_or(0, |p| p.max_failures));
    }
    v
}

/// `POST P/queues` → 201 `{id, name[, kafka_topic]}`.
pub async fn create(ctx: &Ctx) -> Result<Response, DmsError> {
    let body = ctx.json("10240009")?;
    let name = text(&body, "name")?.unwrap_or("");
    if name.is_empty() || name.len() > 64 {
        return Err(DmsError::bad("10240011", "The queue name must be 1 to 64 characters."));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(DmsError::bad("10240007", "The queue name may contain only letters, digits, '_' and '-'."));
    }
    let mode = text(&body, "queue_mode")?.unwrap_or("NORMAL").trim().to_ascii_uppercase().replace('-', "_");
    let (kind, label) = match mode.as_str() {
        "" | "NORMAL" => (QueueKind::Standard, None),
        "FIFO" => (QueueKind::Fifo, None),
        "KAFKA_HA" | "KAFKA_HT" => (QueueKind::Standard, Some(mode.clone())),
        other => {
            return Err(DmsError::bad(
                "10540010",
                format!("queue_mode {other} is not NORMAL, FIFO, KAFKA_HA or KAFKA_HT."),
            ));
        }
    };
    let description = text(&body, "description")?.unwrap_or("").to_string();
    if description.chars().count() > 160 {
        return Err(DmsError::bad("10240013", "The description must not exceed 160 characters."));
    }
    if description.contains(['<', '>']) {
        return Err(DmsError::bad("10240010", "The description must not contain < or >."));
    }
    let redrive = match text(&body, "redrive_policy")?.unwrap_or("disable").to_ascii_lowercase().as_str() {
        "" | "disable" => false,
        "enable" => true,
        other => return Err(DmsError::bad("10540010", format!("redrive_policy {other} is not enable or disable."))),
    };
    let max_consume = int(&body, "max_consume_count", "10240022", 1, 100)?;
    if redrive && max_consume.is_none() {
        return Err(DmsError::bad("10240022", "max_consume_count (1-100) is required when redrive_policy is enable."));
    }
    let retention = int(&body, "retention_hours", "10240027", 1, 72)?;
    if retention.is_some() && label.is_none() {
        return Err(DmsError::bad("10240028", "retention_hours applies to Kafka queues only."));
    }
    let cfg = &ctx.st.config.dms;
    let kafka = label.is_some();
    let config = QueueConfig {
        kind,
        mode: RetentionMode::Log,
        visibility_timeout_secs: 30,
        delay_secs: 0,
        max_message_bytes: cfg.max_message_bytes,
        retention_secs: retention.map_or(cfg.retention_hours, |h| h as u64) * 3600,
        polling_wait_secs: 3,
        dead_letter: (redrive && !kafka)
            .then(|| DeadLetterPolicy { max_failures: max_consume.unwrap_or(3) as u32, target: DeadLetterTarget::Own }),
        priority: false,
        description,
        logging: false,
        region: None,
        labels: BTreeMap::new(),
        mode_label: label,
    };
    match ctx.st.broker.create_queue(&ctx.tenant.name, name, config, Some(cfg.max_queues)).await? {
        CreateOutcome::Created(rec) => {
            let mut v = json!({"id": rec.id.to_string(), "name": rec.name});
            if kafka {
                v["kafka_topic"] = json!(format!("k-{}-{}", ctx.tenant.project_id, rec.id));
            }
            Ok(json(StatusCode::CREATED, v))
        }
        CreateOutcome::Exists(_) => Err(CoreError::QueueExists { same: false }.into()),
    }
}

/// `GET P/queues?include_deadletter=` → `{total, queues}` (oldest first).
pub async fn list(ctx: &Ctx) -> Result<Response, DmsError> {
    let with_dl = flag(ctx, "include_deadletter")?;
    let mut infos: Vec<QueueInfo> = Vec::new();
    for q in ctx.st.broker.queues(&ctx.tenant.name).await? {
        if let Ok(info) = ctx.st.broker.info(&q).await {
            infos.push(info);
        }
    }
    infos.sort_by_key(|i| (i.record.created_at, i.record.name.clone()));
    let queues: Vec<Value> = infos.iter().map(|i| queue_object(ctx, i, with_dl)).collect();
    Ok(json(StatusCode::OK, json!({"total": queues.len(), "queues": queues})))
}

/// `GET P/queues/{id}?include_deadletter=`
pub async fn show(ctx: &Ctx, id: &str) -> Result<Response, DmsError> {
    let with_dl = flag(ctx, "include_deadletter")?;
    let q = ctx.queue(id).await?;
    let info = ctx.st.broker.info(&q).await?;
    Ok(json(StatusCode::OK, queue_object(ctx, &info, with_dl)))
}

/// `DELETE P/queues/{id}` → 204.
pub async fn delete(ctx: &Ctx, id: &str) -> Result<Response, DmsError> {
    let q = ctx.queue(id).await?;
    ctx.st.broker.delete_queue(&q).await?;
    ctx.st.push.forget_queue(&ctx.tenant.name, q.name()).await;
    Ok(no_content())
}

/// `GET /v2/{p}/quotas` and `GET /v1.0/{p}/quotas/dms`.
pub async fn quotas(ctx: &Ctx) -> Result<Response, DmsError> {
    let used = ctx.st.broker.queue_count(&ctx.tenant.name).await?;
    let quota = ctx.st.config.dms.max_queues;
    Ok(json(
        StatusCode::OK,
        json!({"quotas": {"resources": [{"type": "queue", "quota": quota, "used": used, "min": 0, "max": quota.max(500)}]}}),
    ))
}

const MAX_LABELS: usize = 10;

fn check_label(key: &str, value: Option<&str>) -> Result<(), DmsError> {
    let bad = |s: &str| s.chars().any(|c| "=*<>\\,|/".contains(c) || (c as u32) < 32);
    if key.trim().is_empty() || key.chars().count() > 36 || bad(key) {
        return Err(DmsError::bad(
            "10540010",
            format!("Tag key '{key}' is invalid: 1-36 characters, none of = * < > \\ , | /."),
        ));
    }
    if let Some(v) = value
        && (v.chars().count() > 43 || bad(v))
    {
        return Err(DmsError::bad(
            "10540010",
            format!("Tag value '{v}' is invalid: up to 43 characters, none of = * < > \\ , | /."),
        ));
    }
    Ok(())
}

/// `POST P/queue/{id}/tags/action` — `{"action": "create"|"delete", "tags": [{key, value}]}` → 204.
pub async fn tag_action(ctx: &Ctx, id: &str) -> Result<Response, DmsError> {
    let body = ctx.json("10540010")?;
    let action = text(&body, "action")?.unwrap_or("").to_ascii_lowercase();
    let tags = match body.get("tags") {
        Some(Value::Array(t)) => t.clone(),
        _ => return Err(DmsError::bad("10540010", "tags must be an array of {key, value}.")),
    };
    let mut pairs = Vec::new();
    for t in &tags {
        let key =
            t.get("key").and_then(Value::as_str).ok_or_else(|| DmsError::bad("10540010", "Every tag needs a key."))?;
        let value = t.get("value").and_then(Value::as_str);
        check_label(key, value)?;
        pairs.push((key.to_string(), value.map(str::to_string)));
    }
    if action != "create" && action != "delete" {
        return Err(DmsError::bad("10540010", "action must be create or delete."));
    }
    let q = ctx.queue(id).await?;
    ctx.st
        .broker
        .update_queue(&q, |c| {
            for (k, v) in &pairs {
                if action == "create" {
                    c.labels.insert(k.clone(), v.clone().unwrap_or_default());
                } else if v.as_ref().is_none_or(|v| c.labels.get(k) == Some(v)) {
                    c.labels.remove(k);
                }
            }
            if c.labels.len() > MAX_LABELS {
                return Err(CoreError::InvalidArgument(format!("a queue has at most {MAX_LABELS} tags")));
            }
            Ok(())
        })
        .await?;
    Ok(no_content())
}

/// `GET P/queue/{id}/tags` → `{tags: [{key, value}]}`.
pub async fn tags(ctx: &Ctx, id: &str) -> Result<Response, DmsError> {
    let q = ctx.queue(id).await?;
    let tags: Vec<Value> = q.record().config.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(json(StatusCode::OK, json!({"tags": tags})))
}

/// `GET P/queue/tags` → `{tags: [{key, values}]}` over every queue of the project.
pub async fn project_tags(ctx: &Ctx) -> Result<Response, DmsError> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in ctx.st.broker.queues(&ctx.tenant.name).await? {
        for (k, v) in q.record().config.labels {
            let values = all.entry(k).or_default();
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    let tags: Vec<Value> = all.into_iter().map(|(k, v)| json!({"key": k, "values": v})).collect();
    Ok(json(StatusCode::OK, json!({"tags": tags})))
}
