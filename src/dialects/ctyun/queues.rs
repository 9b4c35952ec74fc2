//! Queue operations: createQueue, queryQueue, querySpecifyQueue, removeQueue, queryQuota.

use serde_json::{Map, Value, json};

use super::Ctx;
use super::envelope::{CtError, Reply};
use super::params::{boolean, field_text};
use crate::core::model::{DeadLetterPolicy, DeadLetterTarget, QueueConfig, QueueInfo, QueueKind, RetentionMode};
use crate::core::{CoreError, CreateOutcome};

/// `NORMAL` / `FIFO` / Kafka modes (trimmed, any case, `_` ≡ `-`).
fn parse_mode(s: &str) -> Option<(QueueKind, Option<String>)> {
    match s.trim().to_ascii_uppercase().replace('_', "-").as_str() {
        "" | "NORMAL" => Some((QueueKind::Standard, None)),
        "FIFO" => Some((QueueKind::Fifo, None)),
        m @ ("KAFKA-HA" | "KAFKA-HT") => Some((QueueKind::Standard, Some(m.to_string()))),
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A queue as CTYun reports it.
pub fn queue_object(info: &QueueInfo, include_dead_letter: bool) -> Value {
    let r = &info.record;
    let c = &r.config;
    let mode =
        c.mode_label.clone().unwrap_or_else(|| if c.kind == QueueKind::Fifo { "FIFO".into() } else { "NORMAL".into() });
    let mut v = json!({
        "id": r.id.to_string(),
        "name": r.name,
        "description": c.description,
        "queue_mode": mode,
        "reservation": c.retention_secs / 60,
        "created": r.created_at,
        "max_msg_size_byte": c.max_message_bytes,
        "produced_messages": info.stored,
        "group_count": info.group_count,
    });
    if include_dead_letter {
        v["redrive_policy"] = json!(if c.dead_letter.is_some() { "enable" } else { "disable" });
        v["max_consume_count"] = json!(c.dead_letter.as_ref().map_or(0, |p| p.max_failures));
    }
    v
}

/// `createQueue` — `createQueueInfo: {regionId, name, queueMode, description, redrivePolicy,
/// maxConsumeCount}`; answers envelope A with `{project_id, name, id}`.
pub async fn create(ctx: &Ctx) -> Result<Reply, CtError> {
    let info = ctx.params.req_json("createQueueInfo")?;
    if !info.is_object() {
        return Err(CtError::malformed("createQueueInfo 应为 JSON 对象"));
    }
    let region = field_text(&info, &["regionId"])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CtError::malformed("缺少必填参数 regionId"))?;
    let name = field_text(&info, &["name"])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CtError::malformed("缺少必填参数 name"))?;
    if !valid_name(&name) {
        return Err(CtError::invalid("队列名称只能包含字母、数字、下划线和中划线, 长度 1-64"));
    }
    let mode_text = field_text(&info, &["queueMode", "queueMod"]).unwrap_or_default();
    let (kind, mode_label) =
        parse_mode(&mode_text).ok_or_else(|| CtError::invalid(format!("队列模式 {mode_text} 无效")))?;
    let description = field_text(&info, &["description"]).unwrap_or_default();
    if description.chars().count() > 160 || description.contains(['<', '>']) {
        return Err(CtError::invalid("描述长度不能超过 160 个字符且不能包含 < >"));
    }
    let redrive = match field_text(&info, &["redrivePolicy"]).unwrap_or_default().to_ascii_lowercase().as_str() {
        "" | "disable" => false,
        "enable" => true,
        other => return Err(CtError::invalid(format!("redrivePolicy {other} 无效, 应为 enable 或 disable"))),
    };
    let max_consume = match field_text(&info, &["maxConsumeCount"]).filter(|s| !s.is_empty()) {
        None => 3,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ if !redrive => 3,
            _ => return Err(CtError::invalid("maxConsumeCount 应在 1 到 100 之间")),
        },
    };
    let cfg = &ctx.st.config.ctyun;
    let config = QueueConfig {
        kind,
        mode: RetentionMode::Log,
        visibility_timeout_secs: 30,
        delay_secs: 0,
        max_message_bytes: cfg.max_message_bytes,
        retention_secs: cfg.retention_hours * 3600,
        polling_wait_secs: 3,
        dead_letter: redrive.then_some(DeadLetterPolicy { max_failures: max_consume, target: DeadLetterTarget::Own }),
        priority: false,
        description,
        logging: false,
        region: Some(region),
        labels: Default::default(),
        mode_label,
    };
    match ctx.st.broker.create_queue(&ctx.ns, &name, config, Some(cfg.max_queues)).await? {
        CreateOutcome::Created(rec) => {
            Ok(Reply::A(json!({"project_id": ctx.project_id, "name": rec.name, "id": rec.id.to_string()})))
        }
        CreateOutcome::Exists(_) => Err(CoreError::QueueExists { same: false }.into()),
    }
}

fn include_dead_letter(ctx: &Ctx) -> Result<bool, CtError> {
    boolean(ctx.params.text("includeDeadletter")?, "includeDeadletter")
}

/// `queryQueue` — the namespace's queues in the region (queues made by other dialects have no
/// region and are listed in every region), oldest first; envelope D.
pub async fn list(ctx: &Ctx) -> Result<Reply, CtError> {
    let region = ctx.params.req_text("regionId")?;
    let with_dl = include_dead_letter(ctx)?;
    let mut infos: Vec<QueueInfo> = Vec::new();
    for q in ctx.st.broker.queues(&ctx.ns).await? {
        if crate::core::Broker::in_region(&q, &region)
            && let Ok(info) = ctx.st.broker.info(&q).await
        {
            infos.push(info);
        }
    }
    infos.sort_by_key(|i| (i.record.created_at, i.record.name.clone()));
    let queues: Vec<Value> = infos.iter().map(|i| queue_object(i, with_dl)).collect();
    let mut m = Map::new();
    m.insert("total".into(), json!(queues.len()));
    m.insert("queues".into(), Value::Array(queues));
    Ok(Reply::D(m))
}

/// `querySpecifyQueue` — one queue; envelope B.
pub async fn show(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let queue_id = ctx.params.req_text("queueId")?;
    let with_dl = include_dead_letter(ctx)?;
    let q = ctx.queue(&queue_id).await?;
    let info = ctx.st.broker.info(&q).await?;
    Ok(Reply::B(queue_object(&info, with_dl)))
}

/// `removeQueue` — the queue with its groups, messages and dead letters; envelope C.
pub async fn remove(ctx: &Ctx) -> Result<Reply, CtError> {
    ctx.params.req_text("regionId")?;
    let q = ctx.queue(&ctx.params.req_text("queueId")?).await?;
    ctx.st.broker.delete_queue(&q).await?;
    ctx.st.push.forget_queue(&ctx.ns, q.name()).await;
    Ok(Reply::C)
}

/// `queryQuota` — the queue quota and its live use in the region; envelope D.
pub async fn quota(ctx: &Ctx) -> Result<Reply, CtError> {
    let region = ctx.params.req_text("regionId")?;
    let used = ctx.st.broker.queue_count_in(&ctx.ns, Some(&region)).await?;
    let quota = ctx.st.config.ctyun.max_queues;
    let mut m = Map::new();
    m.insert(
        "quotas".into(),
        json!({"resources": [{"type": "queue", "quota": quota, "used": used, "min": 1, "max": quota.max(20)}]}),
    );
    Ok(Reply::D(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        assert_eq!(parse_mode(" fifo ").unwrap().0, QueueKind::Fifo);
        assert_eq!(parse_mode("kafka_ha").unwrap().1.as_deref(), Some("KAFKA-HA"));
        assert_eq!(parse_mode("").unwrap().0, QueueKind::Standard);
        assert!(parse_mode("LIFO").is_none());
        assert!(valid_name("billing-events_1"));
        assert!(!valid_name("a b") && !valid_name("") && !valid_name(&"a".repeat(65)));
    }
}
