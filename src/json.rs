//! JSON renderings of core records that more than one JSON-speaking front end needs: a message
//! body as a JSON value, message attributes both ways, a consumer group with its counters, and
//! RFC 3339 times.
//!
//! They live here, outside any dialect, so that dialects never import each other and the push
//! deliverer (which is no dialect at all) needs none of them. What is here is the *shared* shape
//! only; anything one API spells its own way stays in that API's module.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::core::Millis;
use crate::core::model::{BodyKind, GroupInfo};

/// A message body as a JSON value: a JSON body as itself, a text body (sent through an API
/// whose bodies are text) as a JSON string. A body stored as JSON that no longer parses is
/// never expected, but is shown as a string rather than dropped.
pub fn body_value(kind: BodyKind, bytes: &[u8]) -> Value {
    match kind {
        BodyKind::Json => {
            serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        }
        BodyKind::Text => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// Attributes as they are stored: each value as its JSON text, so a number stays a number when
/// it is read back through a JSON API.
pub fn attributes_text(attrs: &Map<String, Value>) -> BTreeMap<String, String> {
    attrs.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

/// Stored attributes as a JSON object: the inverse of [`attributes_text`]. A value that is not
/// JSON text (set through an API whose attributes are plain strings) becomes a JSON string.
pub fn attributes_value(attrs: &BTreeMap<String, String>) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))))
            .collect(),
    )
}

/// A consumer group and its counters, in snake_case. "Available" counts every message the
/// group has not acknowledged yet (ready, leased or delayed); the dead-letter counters are
/// added only on request, as the listings that show them make them optional.
pub fn group_object(g: &GroupInfo, include_dead_letter: bool) -> Value {
    let s = &g.stats;
    let mut v = json!({
        "id": g.record.id,
        "name": g.record.name,
        "produced_messages": s.produced,
        "consumed_messages": s.acked,
        "available_messages": s.ready + s.in_flight + s.delayed,
    });
    if include_dead_letter {
        v["produced_deadletters"] = json!(s.dead_total);
        v["available_deadletters"] = json!(s.dead);
    }
    v
}

/// Milliseconds since the epoch as RFC 3339 in UTC (`2024-01-01T00:00:00Z`, with a fraction
/// only when there is one).
pub fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map(|t| t.to_string()).unwrap_or_default()
}

/// Parses RFC 3339 with any offset to milliseconds since the epoch; `None` for anything else
/// or for a time before the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t: jiff::Timestamp = s.trim().parse().ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{GroupRecord, GroupStats};

    #[test]
    fn bodies() {
        assert_eq!(body_value(BodyKind::Json, br#"{"a":[1,2]}"#), json!({"a": [1, 2]}));
        assert_eq!(body_value(BodyKind::Json, b"7"), json!(7));
        assert_eq!(body_value(BodyKind::Json, b"{broken"), json!("{broken"));
        // Text stays text even when it happens to look like JSON or base64.
        assert_eq!(body_value(BodyKind::Text, b"aGk="), json!("aGk="));
        assert_eq!(body_value(BodyKind::Text, b"123"), json!("123"));
    }

    #[test]
    fn attributes_both_ways() {
        let Value::Object(given) = json!({"k": "v", "n": 2, "o": {"x": true}}) else { unreachable!() };
        let stored = attributes_text(&given);
        assert_eq!(stored["k"], "\"v\"");
        assert_eq!(stored["n"], "2");
        assert_eq!(attributes_value(&stored), Value::Object(given));
        // Plain strings stored by a text API come back as strings.
        let plain = BTreeMap::from([("k".to_string(), "not json".to_string())]);
        assert_eq!(attributes_value(&plain), json!({"k": "not json"}));
    }

    #[test]
    fn groups() {
        let g = GroupInfo {
            record: GroupRecord {
                queue_id: uuid::Uuid::nil(),
                no: 1,
                id: "g-1".into(),
                name: "billing".into(),
                rule: None,
                created_at: 0,
                reset_floor: 0,
            },
            stats: GroupStats {
                produced: 10,
                acked: 4,
                ready: 3,
                in_flight: 2,
                delayed: 1,
                dead: 1,
                dead_total: 2,
                ..GroupStats::default()
            },
        };
        let plain = group_object(&g, false);
        assert_eq!(
            plain,
            json!({"id": "g-1", "name": "billing", "produced_messages": 10, "consumed_messages": 4, "available_messages": 6})
        );
        let with_dl = group_object(&g, true);
        assert_eq!(
            (with_dl["produced_deadletters"].clone(), with_dl["available_deadletters"].clone()),
            (json!(2), json!(1))
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(1_704_067_200_000), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200_250), "2024-01-01T00:00:00.25Z");
        assert_eq!(parse_rfc3339("2024-01-01T08:00:00+08:00"), Some(1_704_067_200_000));
        assert_eq!(parse_rfc3339(" 2024-01-01T00:00:00.25Z "), Some(1_704_067_200_250));
        assert_eq!(parse_rfc3339(&rfc3339(1_704_067_200_123)), Some(1_704_067_200_123));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
