//! infrai records as JSON: `QueueRecord`, `QueueMessage`, stats, and the conversions between
//! infrai's scales and the core's (priority, retention days); bodies and times come from
//! [`crate::json`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::core::model::{
    DEFAULT_PRIORITY, DeadLetter, DeadLetterTarget, DeadReason, Delivery, GroupStats, QueueKind, QueueRecord,
};
use crate::core::{Broker, Millis};
use crate::json::{body_value, rfc3339};

/// infrai priority (16 first) → core priority (1 first): mirrored, except that the two
/// defaults meet (infrai 8 is core 8, the MNS default), so a message sent with one dialect's
/// default priority shows the other's default. The price: infrai 9 is core 8 too.
pub fn to_core_priority(p: i64) -> u8 {
    if p == 8 { DEFAULT_PRIORITY } else { (17 - p) as u8 }
}

/// core priority → infrai priority; core 8 (the MNS default) is infrai 8 (its default), and
/// core 9 shows as 8 too.
pub fn from_core_priority(p: u8) -> i64 {
    if p == DEFAULT_PRIORITY { 8 } else { 17 - p as i64 }
}

/// Retention in days as infrai shows it (a whole number when it is one).
fn days(secs: u64) -> Value {
    if secs.is_multiple_of(86_400) { json!(secs / 86_400) } else { json!(secs as f64 / 86_400.0) }
}

/// `QueueRecord`.
pub async fn queue_record(broker: &Broker, rec: &QueueRecord) -> Value {
    let c = &rec.config;
    let mut m = Map::new();
    m.insert("queue".into(), json!(rec.name));
    m.insert("type".into(), json!(if c.kind == QueueKind::Fifo { "fifo" } else { "standard" }));
    if let Some(p) = &c.dead_letter
        && let DeadLetterTarget::Queue(id) = p.target
        && let Ok(q) = broker.queue_by_id(&rec.namespace, id).await
    {
        m.insert("dead_letter_queue".into(), json!(q.name()));
    }
    // A queue without a dead-letter policy (made through another dialect) retries forever.
    m.insert(
        "max_retries".into(),
        c.dead_letter.as_ref().map_or(Value::Null, |p| json!(p.max_failures.saturating_sub(1))),
    );
    m.insert("visibility_timeout_default".into(), json!(c.visibility_timeout_secs));
    m.insert("message_retention_days".into(), days(c.retention_secs));
    m.insert("enable_priority".into(), json!(c.priority && c.kind == QueueKind::Standard));
    m.insert("created_at".into(), json!(rfc3339(rec.created_at)));
    Value::Object(m)
}

/// `QueueMessage` of a consume.
pub fn delivered(d: &Delivery) -> Value {
    json!({
        "message_id": d.meta.id.to_string(),
        "payload": body_value(d.meta.kind, &d.body.body),
        "priority": from_core_priority(d.meta.priority),
        "attempts": d.deliveries,
        "enqueued_at": rfc3339(d.meta.enqueued_at),
        "lease_expires_at": rfc3339(d.lease_until),
    })
}

/// `QueueMessage` of a dlq.list.
pub fn dead_letter(d: &DeadLetter) -> Value {
    json!({
        "message_id": d.meta.id.to_string(),
        "payload": body_value(d.meta.kind, &d.body.body),
        "priority": from_core_priority(d.meta.priority),
        "attempts": d.deliveries,
        "enqueued_at": rfc3339(d.first_enqueued_at),
        "dead_lettered_at": rfc3339(d.died_at),
        "reason": match d.reason {
            DeadReason::Nacked => "nacked",
            DeadReason::MaxDeliveries => "max_retries",
        },
    })
}

/// `QueueStats`.
pub fn stats(name: &str, s: &GroupStats, now: Millis) -> Value {
    let mut v = json!({
        "queue": name,
        "available": s.ready,
        "in_flight": s.in_flight,
        "delayed": s.delayed,
        "dlq": s.dead,
    });
    if let Some(t) = s.oldest_enqueued_at {
        v["oldest_age_seconds"] = json!(now.saturating_sub(t) / 1000);
    }
    v
}

/// Opaque cursors: base64url of a text position.
pub fn encode_cursor(pos: &str) -> String {
    URL_SAFE_NO_PAD.encode(pos)
}

pub fn decode_cursor(c: &str) -> Option<String> {
    URL_SAFE_NO_PAD.decode(c).ok().and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_meet_and_order_is_kept() {
        assert_eq!(to_core_priority(8), DEFAULT_PRIORITY);
        assert_eq!(from_core_priority(DEFAULT_PRIORITY), 8);
        assert_eq!((to_core_priority(16), to_core_priority(1)), (1, 16));
        assert_eq!((from_core_priority(1), from_core_priority(16)), (16, 1));
        // Higher infrai priority is never later in the core.
        for p in 1..16 {
            assert!(to_core_priority(p + 1) <= to_core_priority(p), "{p}");
            assert!(from_core_priority(p as u8 + 1) <= from_core_priority(p as u8), "{p}");
        }
    }
}
