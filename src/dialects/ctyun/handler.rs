//! Message handlers: what CTYun consumers get with each message and confirm with.
//!
//! A handler is standard base64 (padded) of compact JSON with the fields the vendor document's
//! own handlers decode to: `{"topic","group","partition","consumerId","consumerVersion",
//! "offset","tagList","tagType","redeliverTimes"}`. `consumerId` carries the core's receipt
//! handle (prefixed `dl-` for a dead letter), which is what the server checks; the other fields
//! are informative and never trusted. Decoding is lenient: URL-safe alphabet, missing padding,
//! and spaces where form decoding turned `+` into a space.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::{Value, json};

/// What a handler is minted from.
pub struct Minted<'a> {
    pub project_id: &'a str,
    pub queue_id: &'a str,
    pub group_id: &'a str,
    pub receipt: &'a str,
    pub dead: bool,
    pub offset: u64,
    pub tags: &'a [String],
    pub tag_type: &'a str,
    pub redeliver_times: u32,
}

pub fn mint(m: &Minted) -> String {
    let consumer = if m.dead { format!("dl-{}", m.receipt) } else { m.receipt.to_string() };
    let v = json!({
        "topic": format!("q-{}-{}", m.project_id, m.queue_id),
        "group": m.group_id,
        "partition": 0,
        "consumerId": consumer,
        "consumerVersion": 2,
        "offset": m.offset,
        "tagList": m.tags,
        "tagType": m.tag_type,
        "redeliverTimes": m.redeliver_times,
    });
    STANDARD.encode(v.to_string())
}

/// What a handler claims. The server checks `receipt` against its state and `offset` and
/// `group` against what the receipt names, so an edited token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub receipt: String,
    pub dead: bool,
    pub offset: Option<u64>,
    pub group: Option<String>,
}

/// Reads a handler; `None` if it is not one.
pub fn open(handler: &str) -> Option<Opened> {
    let cleaned: String = handler.trim().chars().map(|c| if c == ' ' { '+' } else { c }).collect();
    let unpadded = cleaned.trim_end_matches('=');
    let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
    let bytes = STANDARD.decode(&padded).or_else(|_| URL_SAFE.decode(&padded)).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let consumer = v.get("consumerId")?.as_str()?;
    let (receipt, dead) = match consumer.strip_prefix("dl-") {
        Some(r) => (r.to_string(), true),
        None => (consumer.to_string(), false),
    };
    Some(Opened {
        receipt,
        dead,
        offset: v.get("offset").and_then(Value::as_u64),
        group: v.get("group").and_then(Value::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leniency() {
        let tags = vec!["red".to_string()];
        let h = mint(&Minted {
            project_id: "p",
            queue_id: "q",
            group_id: "g-1",
            receipt: "AbC_-x",
            dead: true,
            offset: 7,
            tags: &tags,
            tag_type: "or",
            redeliver_times: 2,
        });
        let want = Opened { receipt: "AbC_-x".into(), dead: true, offset: Some(7), group: Some("g-1".into()) };
        assert_eq!(open(&h), Some(want.clone()));
        let v: Value = serde_json::from_slice(&STANDARD.decode(&h).unwrap()).unwrap();
        assert_eq!(v["topic"], "q-p-q");
        assert_eq!(v["offset"], 7);
        assert_eq!(open(h.trim_end_matches('=')), Some(want.clone()));
        assert_eq!(open(&h.replace('+', " ")), Some(want));
        // The document's own sample handler decodes (its consumerId is not ours, so it is refused later).
        let doc = STANDARD.encode(r#"{"topic":"t","group":"g","partition":0,"consumerId":"c","consumerVersion":2,"offset":1,"tagList":[],"tagType":"or","redeliverTimes":0}"#);
        assert_eq!(open(&doc).unwrap().receipt, "c");
        assert_eq!(open("not base64 !!!"), None);
        assert_eq!(open(&STANDARD.encode("[1,2]")), None);
    }
}
