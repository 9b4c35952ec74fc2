//! Message operations: sendSpecifyQueueMessage, consumptionMessage,
//! confirmConsumedSpecifiedMessage, consumeDeadlettersMessage, confirmConsumeDeadlettersMessage.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Ctx;
use super::envelope::{CtError, Reply};
use super::handler::{self, Minted};
use super::params::{clamped, field, field_text};
use crate::core::model::{Delivery, MAX_TAGS, NewMessage, TagMode, TagRule};
use crate::core::{Queue, ReceiveOptions};
use crate::json::{attributes_text, attributes_value, body_value};

/// Validates one outgoing message (`{body, attributes?, tags?}`).
pub fn outgoing(m: &Value, i: usize) -> Result<NewMessage, CtError> {
    if !m.is_object() {
        return Err(CtError::malformed(format!("messages[{i}] 应为 JSON 对象")));
    }
    let body = field(m, &["body"]).ok_or_else(|| CtError::invalid(format!("messages[{i}] 缺少 body")))?;
    let attributes = match field(m, &["attributes"]) {
        None => BTreeMap::new(),
        Some(Value::Object(a)) => attributes_text(a),
        Some(_) => return Err(CtError::invalid(format!("messages[{i}].attributes 应为 JSON 对象"))),
    };
    let tags: Vec<String> = match field(m, &["tags"]) {
        None => Vec::new(),
        Some(Value::Array(t)) => t
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| CtError::invalid(format!("messages[{i}].tags 应为字符串数组")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CtError::invalid(format!("messages[{i}].tags 应为字符串数组"))),
    };
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.chars().count() > 64) {
        return Err(CtError::invalid(format!("messages[{i}].tags 最多 3 个, 每个 1-64 个字符")));
    }
    Ok(NewMessage { attributes, tags, ..NewMessage::json(body.to_string().into_bytes()) })
}

/// `sendSpecifyQueueMessage` — all messages or none; envelope D with a state per message.
pub async fn send(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let queue_id = ctx.params.req_text("queueId")?;
    let messages = ctx.params.req_json("messages")?;
    let list = match &messages {
        Value::Array(a) if !a.is_empty() => a.clone(),
        Value::Array(_) => return Err(CtError::malformed("messages 不能为空")),
        Value::Object(_) => vec![messages.clone()],
        _ => return Err(CtError::malformed("messages 应为 JSON 数组")),
    };
    let raw_len = ctx.params.md5_texts(&["messages"]).first().map_or(0, |p| p.raw.len()) as u64;
    let limit = ctx.st.config.ctyun.max_message_bytes;
    if raw_len.max(messages.to_string().len() as u64) > limit {
        return Err(CtError::business("DMS.MessageTooLarge", format!("消息总大小超过 {limit} 字节")));
    }
    let msgs = list.iter().enumerate().map(|(i, m)| outgoing(m, i)).collect::<Result<Vec<_>, _>>()?;
    let q = ctx.queue(&queue_id).await?;
    let n = msgs.len();
    ctx.st.broker.publish(&q, msgs).await?;
    let states: Vec<Value> = (0..n).map(|_| json!({"error": null, "error_code": null, "state": 0})).collect();
    let mut m = Map::new();
    m.insert("messages".into(), Value::Array(states));
    Ok(Reply::D(m))
}

/// The tag list of a consume filter: `tags` / `tag` / `tagList`, an array or a comma list.
fn filter_tags(info: &Value) -> Result<Vec<String>, CtError> {
    let raw = field(info, &["tags", "tag", "tagList"]);
    let tags: Vec<String> = match raw {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            a.iter().filter_map(|t| t.as_str()).flat_map(|s| s.split(',')).map(|s| s.trim().to_string()).collect()
        }
        Some(Value::String(s)) => s.split(',').map(|s| s.trim().to_string()).collect(),
        Some(_) => return Err(CtError::malformed("tags 应为字符串数组")),
    };
    let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.chars().count() > 64) {
        return Err(CtError::invalid("过滤标签最多 3 个, 每个不超过 64 个字符"));
    }
    Ok(tags)
}

fn tag_mode(info: &Value) -> Result<TagMode, CtError> {
    match field_text(info, &["tagType"]).unwrap_or_default().to_ascii_lowercase().as_str() {
        "" | "or" => Ok(TagMode::Or),
        "and" => Ok(TagMode::And),
        other => Err(CtError::invalid(format!("tagType {other} 无效, 应为 and 或 or"))),
    }
}

/// Renders deliveries as `[{handler, message: {body, attributes, tags}}]`.
fn items(ctx: &Ctx, q: &Queue, group_id: &str, rule: Option<&TagRule>, got: &[Delivery], dead: bool) -> Value {
    let no_tags = Vec::new();
    let (tags, mode) = match rule {
        Some(r) => (&r.tags, if r.mode == TagMode::And { "and" } else { "or" }),
        None => (&no_tags, "or"),
    };
    let qid = q.id().to_string();
    Value::Array(
        got.iter()
            .map(|d| {
                let h = handler::mint(&Minted {
                    project_id: &ctx.project_id,
                    queue_id: &qid,
                    group_id,
                    receipt: &d.handle,
                    dead,
                    offset: d.meta.seq,
                    tags,
                    tag_type: mode,
                    redeliver_times: d.failures,
                });
                json!({
                    "handler": h,
                    "message": {
                        "body": body_value(d.meta.kind, &d.body.body),
                        "attributes": attributes_value(&d.body.attributes),
                        "tags": d.meta.user_tags(),
                    },
                })
            })
            .collect(),
    )
}

/// `consumptionMessage` — `consumerQueueInfo: {regionId, queueId?, consumerGroupId, maxMsgs,
/// tagType, tags, timeWait, ackWait}` (out-of-range numbers are clamped); envelope B.
pub async fn consume(ctx: &Ctx) -> Result<Reply, CtError> {
    let info = ctx.params.req_json("consumerQueueInfo")?;
    if !info.is_object() {
        return Err(CtError::malformed("consumerQueueInfo 应为 JSON 对象"));
    }
    let max = clamped(&info, &["maxMsgs"], 1, 10, 10)? as usize;
    let wait = clamped(&info, &["timeWait"], 1, 60, 3)?;
    let ack_wait = clamped(&info, &["ackWait"], 15, 300, 30)?;
    let rule = TagRule::new(filter_tags(&info)?, tag_mode(&info)?);
    let (q, no, gid) = ctx.queue_and_group(&info).await?;
    let opts = ReceiveOptions {
        lease_ms: Some(ack_wait * 1000),
        wait_ms: Some(wait * 1000),
        rule: Some(rule.clone()),
        max_bytes: Some(ctx.st.config.ctyun.max_message_bytes),
        ..ReceiveOptions::new(max)
    };
    let got = ctx.st.broker.receive(&q, no, opts).await?;
    Ok(Reply::B(items(ctx, &q, &gid, Some(&rule), &got, false)))
}

/// The `{handler, status}` entries of a confirm, from an array, `{"message": [...]}` or one object.
fn confirm_entries(v: &Value) -> Result<Vec<(String, bool)>, CtError> {
    let list: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        Value::Object(_) => match field(v, &["message"]) {
            Some(Value::Array(a)) => a.clone(),
            Some(inner @ Value::Object(_)) => vec![inner.clone()],
            Some(_) => return Err(CtError::malformed("message 格式无效")),
            None => vec![v.clone()],
        },
        _ => return Err(CtError::malformed("message 应为 JSON 数组")),
    };
    list.iter()
        .map(|e| {
            let h = field_text(e, &["handler"]).ok_or_else(|| CtError::malformed("message 中的每一项需要 handler"))?;
            let ok = field_text(e, &["status"]).is_some_and(|s| s.eq_ignore_ascii_case("success"));
            Ok((h, ok))
        })
        .collect()
}

/// Applies a confirm batch with the in-order rule: the first entry that is not a success or
/// whose handler is not live, and every entry after it, count as failed; live deliveries among
/// those are failures (redelivered or dead-lettered; dead letters become available again).
async fn apply_confirm(
    ctx: &Ctx,
    q: &Queue,
    no: u32,
    entries: Vec<(String, bool)>,
    dead: bool,
) -> Result<Value, CtError> {
    let group_id = ctx.st.broker.group(q, no).await?.id;
    // The token's offset and group must be what its receipt names: an edited token is refused.
    let receipts: Vec<(Option<String>, bool)> = entries
        .iter()
        .map(|(h, ok)| {
            let receipt = handler::open(h)
                .filter(|o| o.dead == dead)
                .filter(|o| o.group.as_deref().is_none_or(|g| g.eq_ignore_ascii_case(&group_id)))
                .filter(|o| {
                    o.offset.is_none_or(|off| ctx.st.broker.open_receipt(&o.receipt).is_ok_and(|r| r.seq == off))
                })
                .map(|o| o.receipt);
            (receipt, *ok)
        })
        .collect();
    let refs: Vec<(Option<&str>, bool)> = receipts.iter().map(|(r, ok)| (r.as_deref(), *ok)).collect();
    let success = ctx.st.broker.confirm(q, no, dead, &refs).await?;
    Ok(json!({"success": success, "fail": entries.len() as u64 - success}))
}

/// `confirmConsumedSpecifiedMessage` — `regionId, queueId, consumerGroupId, message:
/// [{handler, status}]`; envelope B `{success, fail}`.
pub async fn confirm(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let queue_id = ctx.params.req_text("queueId")?;
    let gid = ctx.params.req_text("consumerGroupId")?;
    let entries = confirm_entries(&ctx.params.req_json("message")?)?;
    let q = ctx.queue(&queue_id).await?;
    let no = ctx.group(&q, &gid).await?;
    Ok(Reply::B(apply_confirm(ctx, &q, no, entries, false).await?))
}

/// `consumeDeadlettersMessage` — `consumedMessageInfo: {regionId, queueId?, consumerGroupId,
/// maxMsgs, timeWait, ackWait}`; a queue without redrive has none; envelope B.
pub async fn consume_dead(ctx: &Ctx) -> Result<Reply, CtError> {
    let info = ctx.params.req_json("consumedMessageInfo")?;
    if !info.is_object() {
        return Err(CtError::malformed("consumedMessageInfo 应为 JSON 对象"));
    }
    let max = clamped(&info, &["maxMsgs"], 1, 10, 10)? as usize;
    let wait = clamped(&info, &["timeWait"], 1, 60, 3)?;
    let ack_wait = clamped(&info, &["ackWait"], 15, 300, 30)?;
    let (q, no, gid) = ctx.queue_and_group(&info).await?;
    if q.record().config.dead_letter.is_none() {
        return Ok(Reply::B(json!([])));
    }
    let limit = Some(ctx.st.config.ctyun.max_message_bytes);
    let got = ctx.st.broker.receive_dead(&q, no, max, ack_wait * 1000, wait * 1000, limit).await?;
    Ok(Reply::B(items(ctx, &q, &gid, None, &got, true)))
}

/// `confirmConsumeDeadlettersMessage` — `consumedMessageInfo: {regionId, queueId?,
/// consumerGroupId, message}`; envelope B `{success, fail}`.
pub async fn confirm_dead(ctx: &Ctx) -> Result<Reply, CtError> {
    let info = ctx.params.req_json("consumedMessageInfo")?;
    let message = field(&info, &["message"]).ok_or_else(|| CtError::malformed("缺少必填参数 message"))?;
    let entries = confirm_entries(message)?;
    let (q, no, _) = ctx.queue_and_group(&info).await?;
    Ok(Reply::B(apply_confirm(ctx, &q, no, entries, true).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_confirm_shapes() {
        let m = outgoing(&json!({"body": {"a": 1}, "attributes": {"k": "v", "n": 2}, "tags": ["x"]}), 0).unwrap();
        assert_eq!(m.body, br#"{"a":1}"#);
        assert_eq!(m.attributes["k"], "\"v\"");
        assert_eq!(attributes_value(&m.attributes), json!({"k": "v", "n": 2}));
        assert_eq!(outgoing(&json!({"attributes": {}}), 0).unwrap_err().code, "DMS.InvalidValue");
        assert_eq!(
            outgoing(&json!({"body": 1, "tags": ["a", "b", "c", "d"]}), 0).unwrap_err().code,
            "DMS.InvalidValue"
        );
        assert_eq!(outgoing(&json!(5), 0).unwrap_err().code, "Openapi.Parameter.Error");
        let e = confirm_entries(
            &json!({"message": [{"handler": "h", "status": "SUCCESS"}, {"handler": "i", "status": "fail"}]}),
        )
        .unwrap();
        assert_eq!(e, vec![("h".into(), true), ("i".into(), false)]);
        assert_eq!(confirm_entries(&json!({"handler": "h", "status": "success"})).unwrap().len(), 1);
        assert_eq!(filter_tags(&json!({"tag": "a, b"})).unwrap(), vec!["a", "b"]);
        assert_eq!(filter_tags(&json!({"tagList": ["a"]})).unwrap(), vec!["a"]);
        assert!(filter_tags(&json!({"tags": ["a", "b", "c", "d"]})).is_err());
    }
}
