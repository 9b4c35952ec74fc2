//! Consumer-group operations: createConsumeGroup, querySpecifyQueueAllConsumerGroup,
//! removeSpecifyConsumerGroup, consumeReset.

use serde_json::{Map, Value, json};

use super::Ctx;
use super::envelope::{CtError, Reply};
use super::params::{boolean, field, field_text};
use super::sign::parse_request_date;
use crate::core::{CoreError, ResetPosition};
use crate::json::group_object;

fn valid_group_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The entries of a `groups` parameter: an array of `{name}`/`{id}` objects or strings, or one
/// of those alone. Returns (key, is_id) pairs.
fn group_entries(v: &Value) -> Result<Vec<(String, bool)>, CtError> {
    let one = |e: &Value| -> Result<(String, bool), CtError> {
        match e {
            Value::String(s) => Ok((s.trim().to_string(), false)),
            Value::Object(_) => {
                if let Some(n) = field_text(e, &["name"]).filter(|s| !s.is_empty()) {
                    Ok((n, false))
                } else if let Some(id) = field_text(e, &["id"]).filter(|s| !s.is_empty()) {
                    Ok((id, true))
                } else {
                    Err(CtError::malformed("groups 中的每一项需要 name"))
                }
            }
            _ => Err(CtError::malformed("groups 格式无效")),
        }
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// `createConsumeGroup` — all or none, at most the quota per queue; envelope D.
pub async fn create(ctx: &Ctx) -> Result<Reply, CtError> {
    let region = ctx.params.req_text("regionId")?;
    let queue_id = ctx.params.req_text("queueId")?;
    let entries = group_entries(&ctx.params.req_json_or_text("groups")?)?;
    if entries.is_empty() {
        return Err(CtError::malformed("groups 不能为空"));
    }
    let q = ctx.queue(&queue_id).await?;
    let names: Vec<String> = entries.into_iter().map(|(n, _)| n).collect();
    if let Some(bad) = names.iter().find(|n| !valid_group_name(n)) {
        return Err(CtError::invalid(format!("消费组名称 {bad} 无效: 只能包含字母、数字、下划线和中划线, 长度 1-32")));
    }
    let created = ctx.st.broker.create_groups(&q, &names, Some(ctx.st.config.ctyun.max_groups)).await?;
    let all: Vec<Value> =
        ctx.st.broker.groups(&q).await?.iter().map(|g| json!({"id": g.record.id, "name": g.record.name})).collect();
    let mut m = Map::new();
    m.insert("regionId".into(), json!(region));
    m.insert("queueId".into(), json!(q.id().to_string()));
    m.insert("consumerGroupId".into(), json!(created[0].id));
    m.insert("maxMsgs".into(), json!("10"));
    m.insert("timeWait".into(), json!("3"));
    m.insert("ackWait".into(), json!("30s"));
    m.insert("groups".into(), Value::Array(all));
    Ok(Reply::D(m))
}

/// `querySpecifyQueueAllConsumerGroup` — every group with its counters; envelope D.
pub async fn list(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let q = ctx.queue(&ctx.params.req_text("queueId")?).await?;
    let with_dl = boolean(ctx.params.text("includeDeadletter")?, "includeDeadletter")?;
    let groups: Vec<Value> = ctx.st.broker.groups(&q).await?.iter().map(|g| group_object(g, with_dl)).collect();
    let mut m = Map::new();
    m.insert("queue_id".into(), json!(q.id().to_string()));
    m.insert("queue_name".into(), json!(q.name()));
    m.insert("groups".into(), Value::Array(groups));
    if with_dl {
        let enabled = q.record().config.dead_letter.is_some();
        m.insert("redrive_policy".into(), json!(if enabled { "enable" } else { "disable" }));
    }
    Ok(Reply::D(m))
}

/// `removeSpecifyConsumerGroup` — by name (or `{id}`), all or none; envelope C.
pub async fn remove(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let queue_id = ctx.params.req_text("queueId")?;
    let entries = group_entries(&ctx.params.req_json_or_text("groups")?)?;
    if entries.is_empty() {
        return Err(CtError::malformed("groups 不能为空"));
    }
    let q = ctx.queue(&queue_id).await?;
    let mut nos = Vec::new();
    for (key, _) in &entries {
        nos.push(ctx.group(&q, key).await?);
    }
    nos.sort_unstable();
    nos.dedup();
    ctx.st.broker.delete_groups(&q, &nos).await?;
    Ok(Reply::C)
}

/// Reads a reset position: earliest/0, latest/1, epoch seconds or ms, or a date.
fn position(ts: &str, now: u64) -> Result<ResetPosition, CtError> {
    let t = ts.trim();
    let lower = t.to_ascii_lowercase();
    let at = match lower.as_str() {
        "earliest" | "0" => return Ok(ResetPosition::Earliest),
        "latest" | "1" => return Ok(ResetPosition::Latest),
        _ if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u64 = t.parse().map_err(|_| CtError::business("DMS.InvalidTimestamp", "timestamp 无效"))?;
            if n >= 100_000_000_000 { n } else { n.saturating_mul(1000) }
        }
        _ => parse_request_date(t)
            .ok_or_else(|| CtError::business("DMS.InvalidTimestamp", format!("timestamp {t} 无法识别")))?,
    };
    if at > now {
        return Err(CtError::business("DMS.InvalidTimestamp", "timestamp 不能晚于当前时间"));
    }
    Ok(ResetPosition::Time(at))
}

/// `consumeReset` — `consumedMessageInfo: {regionId, queueId?, consumerGroupId, config:
/// {timestamp, force}}`; envelope B `{"status":"success"}`.
pub async fn reset(ctx: &Ctx) -> Result<Reply, CtError> {
    let info = ctx.params.req_json("consumedMessageInfo")?;
    let config = field(&info, &["config"]).ok_or_else(|| CtError::malformed("缺少必填参数 config"))?;
    let ts = field_text(config, &["timestamp"])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CtError::malformed("缺少必填参数 config.timestamp"))?;
    let force = boolean(field_text(config, &["force"]), "force")?;
    let (q, no, _) = ctx.queue_and_group(&info).await?;
    let pos = position(&ts, ctx.st.broker.now())?;
    ctx.st.broker.reset(&q, no, pos, force).await.map_err(|e| match e {
        CoreError::GroupBusy => CtError::from(CoreError::GroupBusy),
        e => e.into(),
    })?;
    Ok(Reply::B(json!({"status": "success"})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_positions() {
        let now = 1_709_625_600_000;
        assert_eq!(position("earliest", now).unwrap(), ResetPosition::Earliest);
        assert_eq!(position("0", now).unwrap(), ResetPosition::Earliest);
        assert_eq!(position("LATEST", now).unwrap(), ResetPosition::Latest);
        assert_eq!(position("1", now).unwrap(), ResetPosition::Latest);
        assert_eq!(position("1709625000", now).unwrap(), ResetPosition::Time(1_709_625_000_000));
        assert_eq!(position("1709625000123", now).unwrap(), ResetPosition::Time(1_709_625_000_123));
        assert_eq!(position("Tue, 5 Mar 2024 08:00:00 GMT", now).unwrap(), ResetPosition::Time(1_709_625_600_000));
        assert_eq!(position("2024-03-05T08:00:00Z", now).unwrap(), ResetPosition::Time(now));
        assert_eq!(position("2030-01-01T00:00:00Z", now).unwrap_err().code, "DMS.InvalidTimestamp");
        assert_eq!(position("soon", now).unwrap_err().code, "DMS.InvalidTimestamp");
    }

    #[test]
    fn group_entry_shapes() {
        assert_eq!(
            group_entries(&json!([{"name": "a"}, {"id": "g-1"}, "b"])).unwrap(),
            vec![("a".into(), false), ("g-1".into(), true), ("b".into(), false)]
        );
        assert_eq!(group_entries(&json!({"name": " a "})).unwrap(), vec![("a".into(), false)]);
        assert!(group_entries(&json!([1])).is_err());
        assert!(group_entries(&json!([{"x": 1}])).is_err());
    }
}
