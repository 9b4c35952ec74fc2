//! Messages: send, consume (and consume dead letters), ack (and ack dead letters).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::DmsError;
use super::{Ctx, json};
use crate::core::ReceiveOptions;
use crate::core::model::{Delivery, MAX_TAGS, NewMessage, TagMode, TagRule};
use crate::json::{attributes_text, attributes_value, body_value};

fn valid_tag(t: &str) -> bool {
    (1..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One `SendMessageEntity`.
fn outgoing(m: &Value, i: usize) -> Result<NewMessage, DmsError> {
    let field = |code, what: &str| DmsError::bad(code, format!("messages[{i}]: {what}"));
    let Value::Object(obj) = m else { return Err(field("10540001", "must be an object")) };
    let body = obj.get("body").filter(|b| !b.is_null()).ok_or_else(|| field("10540001", "body is required"))?;
    let attributes: BTreeMap<String, String> = match obj.get("attributes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(a)) => attributes_text(a),
        Some(_) => return Err(field("10540001", "attributes must be an object")),
    };
    let tags: Vec<String> = match obj.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(t)) => t
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| field("10540001", "tags must be strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field("10540001", "tags must be an array")),
    };
    if tags.len() > MAX_TAGS || !tags.iter().all(|t| valid_tag(t)) {
        return Err(field("10540001", "at most 3 tags of 1-64 letters, digits, '_' or '-'"));
    }
    let delay = match obj.get("delay_time") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(d) if (0.0..=604_800_000.0).contains(&d) => Some(d as u64),
            _ => return Err(field("10540010", "delay_time must be 0 to 604800000 ms")),
        },
    };
    Ok(NewMessage { attributes, tags, delay_ms: delay, ..NewMessage::json(body.to_string().into_bytes()) })
}

/// `POST P/queues/{id}/messages` → 201 `{"messages": [{state, error, error_code[, id]}]}`.
pub async fn send(ctx: &Ctx, queue: &str) -> Result<Response, DmsError> {
    let body = ctx.json("10540012")?;
    let return_id = body.get("return_id").or_else(|| body.get("returnId")).and_then(Value::as_bool).unwrap_or(false);
    let list = match body.get("messages").or_else(|| body.get("message")) {
        Some(Value::Array(m)) => m.clone(),
        _ => return Err(DmsError::bad("10540010", "messages must be an array of 1 to 10 messages.")),
    };
    if list.is_empty() || list.len() > 10 {
        return Err(DmsError::bad("10540010", "A send carries 1 to 10 messages."));
    }
    let size = Value::Array(list.clone()).to_string().len() as u64;
    let limit = ctx.st.config.dms.max_message_bytes;
    if size > limit {
        return Err(DmsError::bad("10540011", format!("The messages total {size} bytes; the limit is {limit}.")));
    }
    let msgs = list.iter().enumerate().map(|(i, m)| outgoing(m, i)).collect::<Result<Vec<_>, _>>()?;
    let q = ctx.queue(queue).await?;
    let metas = ctx.st.broker.publish(&q, msgs).await?;
    let results: Vec<Value> = metas
        .iter()
        .map(|m| {
            let mut v = json!({"state": 0, "error": null, "error_code": null});
            if return_id {
                v["id"] = json!(m.id.to_string());
            }
            v
        })
        .collect();
    Ok(json(StatusCode::CREATED, json!({"messages": results})))
}

fn number(ctx: &Ctx, name: &str, lo: u64, hi: u64, default: u64, code: &'static str) -> Result<u64, DmsError> {
    match ctx.param(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(DmsError::bad(code, format!("{name} must be {lo} to {hi}."))),
        },
    }
}

/// The filter of a consume: repeated or comma-joined `tag`, and `tag_type`.
fn rule(ctx: &Ctx) -> Result<TagRule, DmsError> {
    let tags: Vec<String> = ctx
        .query
        .iter()
        .filter(|(k, _)| k == "tag")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > 64) {
        return Err(DmsError::bad("10540001", "A consume filter has at most 3 tags of up to 64 characters."));
    }
    let mode = match ctx.param("tag_type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("or") => TagMode::Or,
        Some("and") => TagMode::And,
        Some(_) => return Err(DmsError::bad("10540014", "tag_type must be and or or.")),
    };
    Ok(TagRule::new(tags, mode))
}

fn items(got: &[Delivery]) -> Value {
    Value::Array(
        got.iter()
            .map(|d| {
                json!({
                    "message": {
                        "body": body_value(d.meta.kind, &d.body.body),
                        "attributes": attributes_value(&d.body.attributes),
                        "tags": d.meta.user_tags(),
                    },
                    "tags": d.meta.user_tags(),
                    "handler": d.handle,
                })
            })
            .collect(),
    )
}

/// `GET P/queues/{id}/groups/{g}/messages` (or `/deadletters` with `dead`) → a bare array.
pub async fn consume(ctx: &Ctx, queue: &str, group: &str, dead: bool) -> Result<Response, DmsError> {
    let max = number(ctx, "max_msgs", 1, 10, 10, "10240014")? as usize;
    let wait = number(ctx, "time_wait", 1, 60, 3, "10240021")?;
    let ack_wait = number(ctx, "ack_wait", 15, 300, 30, "10542206")?;
    let filter = if dead { None } else { Some(rule(ctx)?) };
    let q = ctx.queue(queue).await?;
    let no = ctx.group(&q, group).await?;
    let limit = Some(ctx.st.config.dms.max_message_bytes);
    let got = if dead {
        let cfg = q.record().config;
        if cfg.mode_label.as_deref().is_some_and(|m| m.starts_with("KAFKA")) {
            return Err(DmsError::bad("10540010", "Kafka queues have no dead letters."));
        }
        if cfg.dead_letter.is_none() {
            Vec::new()
        } else {
            ctx.st.broker.receive_dead(&q, no, max, ack_wait * 1000, wait * 1000, limit).await?
        }
    } else {
        let opts = ReceiveOptions {
            lease_ms: Some(ack_wait * 1000),
            wait_ms: Some(wait * 1000),
            rule: filter,
            max_bytes: limit,
            ..ReceiveOptions::new(max)
        };
        ctx.st.broker.receive(&q, no, opts).await?
    };
    Ok(json(StatusCode::OK, items(&got)))
}

/// `POST …/ack` (or `…/deadletters/ack`) — `{"message": [{handler, status}]}` → `{success, fail}`.
///
/// Entries are judged in order; the first that is `fail` or whose handler is not live, and every
/// entry after it, count as failed; live deliveries among them are failures (redelivered, or
/// dead-lettered at max_consume_count; a failed dead letter is available again).
pub async fn ack(ctx: &Ctx, queue: &str, group: &str, dead: bool) -> Result<Response, DmsError> {
    let body = ctx.json("10540010")?;
    let entries = match body.get("message").or_else(|| body.get("messages")) {
        Some(Value::Array(m)) => m.clone(),
        _ => return Err(DmsError::bad("10540010", "message must be an array of {handler, status}.")),
    };
    let mut parsed = Vec::with_capacity(entries.len());
    for e in &entries {
        let handler = e
            .get("handler")
            .and_then(Value::as_str)
            .ok_or_else(|| DmsError::bad("10540010", "Every entry needs a handler."))?;
        let ok = match e.get("status").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            None | Some("success") => true,
            Some("fail") => false,
            Some(other) => return Err(DmsError::bad("10540003", format!("status '{other}' is not success or fail."))),
        };
        parsed.push((handler.to_string(), ok));
    }
    let q = ctx.queue(queue).await?;
    let no = ctx.group(&q, group).await?;
    let refs: Vec<(Option<&str>, bool)> = parsed.iter().map(|(h, ok)| (Some(h.as_str()), *ok)).collect();
    let success = ctx.st.broker.confirm(&q, no, dead, &refs).await?;
    Ok(json(StatusCode::OK, json!({"success": success, "fail": parsed.len() as u64 - success})))
}
