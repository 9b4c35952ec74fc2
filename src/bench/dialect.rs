//! How the bench speaks each dialect: building signed requests (with the same signing functions
//! the server verifies with — the bench measures speed; the dialects' correctness is proven by
//! the independent clients in tests/), and reading the answers it needs (receipt handles).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

use super::conn::Req;
use crate::dialects::{ctyun, dms, mns};

mod setup;

/// The dialects the bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Infrai,
    Mns,
    Ctyun,
    Dms,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "infrai" => Some(Kind::Infrai),
            "mns" => Some(Kind::Mns),
            "ctyun" => Some(Kind::Ctyun),
            "dms" => Some(Kind::Dms),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Infrai => "infrai",
            Kind::Mns => "mns",
            Kind::Ctyun => "ctyun",
            Kind::Dms => "dms",
        }
    }

    /// The dialect's largest batch (send, receive, delete).
    pub fn batch(self) -> usize {
        match self {
            Kind::Infrai => 100,
            Kind::Mns => 16,
            Kind::Ctyun | Kind::Dms => 10,
        }
    }
}

/// Credentials of the tenant the bench acts as.
#[derive(Debug, Clone)]
pub struct Creds {
    pub bearer: String,
    pub access_key: String,
    pub secret: String,
    pub project: String,
}

/// A queue set up for one workload, and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub host: String,
    pub creds: Creds,
    pub name: String,
    pub id: String,
    pub group: String,
    /// MNS fan-out: publishes go to this topic (named like the target), whose subscriptions
    /// deliver into the queues `{name}-0`, `{name}-1`, ….
    pub topic_queues: usize,
}

/// The CTYun region the bench's queues live in.
const REGION: &str = "bench";
/// The consumer group the bench consumes through (CTYun, DMS).
const GROUP: &str = "bench";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn request(method: &str, host: &str, target: &str, body: Vec<u8>) -> hyper::http::request::Builder {
    let b = Request::builder().method(method).uri(target).header("host", host);
    if body.is_empty() { b } else { b.header("content-length", body.len()) }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Every `<tag>…</tag>` text in an XML answer.
fn xml_texts(body: &[u8], tag: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// CTYun and DMS consume answers: an array of `{handler, message: {body}}`.
fn handlers_and_bodies(list: &Value) -> Option<Vec<(String, String)>> {
    let pair = |m: &Value| {
        (m["handler"].as_str().unwrap_or("").to_string(), m["message"]["body"].as_str().unwrap_or("").to_string())
    };
    Some(list.as_array()?.iter().map(pair).collect())
}

impl Target {
    fn finish(&self, b: hyper::http::request::Builder, body: Vec<u8>) -> Req {
        b.body(Full::new(Bytes::from(body))).expect("a valid request")
    }

    // ----- signing ------------------------------------------------------------------------------

    fn infrai(&self, method: &str, path: &str, body: Value) -> Req {
        let bytes = body.to_string().into_bytes();
        let b = request(method, &self.host, path, bytes.clone())
            .header("authorization", format!("Bearer {}", self.creds.bearer))
            .header("content-type", "application/json");
        self.finish(b, bytes)
    }

    fn mns(&self, method: &str, target: &str, body: Option<String>) -> Req {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let bytes = body.unwrap_or_default().into_bytes();
        let (md5, ctype) = if bytes.is_empty() {
            (String::new(), String::new())
        } else {
            (
                crate::auth::crypto::base64(hex::encode(crate::auth::crypto::md5(&bytes)).as_bytes()),
                "text/xml;charset=UTF-8".to_string(),
            )
        };
        let signed = mns::sign::Signed {
            method,
            content_md5: &md5,
            content_type: &ctype,
            date: &date,
            headers: vec![("x-mns-version", mns::VERSION)],
            resource: target,
        };
        let sig = mns::sign::signature(&self.creds.secret, &signed);
        let mut b = request(method, &self.host, target, bytes.clone())
            .header("date", &date)
            .header("x-mns-version", mns::VERSION)
            .header("authorization", format!("MNS {}:{sig}", self.creds.access_key));
        if !bytes.is_empty() {
            b = b.header("content-md5", md5).header("content-type", ctype);
        }
        self.finish(b, bytes)
    }

    /// CTYun: `params` in document order; GET sends them as headers, POST as a JSON body.
    fn ctyun(&self, op: &str, params: &[(&str, Value)]) -> Req {
        let get = matches!(
            op,
            "consumptionMessage" | "queryQueue" | "querySpecifyQueue" | "querySpecifyQueueAllConsumerGroup"
        );
        let texts: Vec<String> =
            params.iter().map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let md5 = ctyun::sign::content_md5_of(&refs);
        let date = httpdate::fmt_http_date(SystemTime::now());
        let path = format!("/apiproxy/v3/queue/{op}");
        let hmac = ctyun::sign::hmac(&self.creds.secret, &md5, &date, &path);
        let body = if get {
            Vec::new()
        } else {
            let m: serde_json::Map<String, Value> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            Value::Object(m).to_string().into_bytes()
        };
        let mut b = request(if get { "GET" } else { "POST" }, &self.host, &path, body.clone())
            .header("accessKey", &self.creds.access_key)
            .header("contentMD5", md5)
            .header("requestDate", date)
            .header("Hmac", hmac);
        if get {
            for ((k, _), t) in params.iter().zip(&texts) {
                b = b.header(*k, t.as_str());
            }
        } else {
            b = b.header("content-type", "application/json");
        }
        self.finish(b, body)
    }

    fn dms(&self, method: &str, path: &str, query: &[(&str, String)], body: Option<Value>) -> Req {
        let full = format!("/v2/{}{path}", self.creds.project);
        let q: String = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let date = jiff::Timestamp::from_millisecond(now_ms() as i64)
            .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_default();
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), self.host.clone()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let hash = crate::auth::crypto::sha256_hex(&bytes);
        let signed = "content-type;host;x-sdk-date";
        let canon = dms::sign::canonical_request(&dms::sign::Request {
            method,
            raw_path: &full,
            raw_query: &q,
            headers,
            signed_headers: signed,
            payload_hash: &hash,
        });
        let sig = dms::sign::signature(&self.creds.secret, &dms::sign::string_to_sign(&date, &canon));
        let target = if q.is_empty() { full } else { format!("{full}?{q}") };
        let b = request(method, &self.host, &target, bytes.clone())
            .header("content-type", "application/json")
            .header("x-sdk-date", date)
            .header(
                "authorization",
                format!("SDK-HMAC-SHA256 Access={}, SignedHeaders={signed}, Signature={sig}", self.creds.access_key),
            );
        self.finish(b, bytes)
    }

    // ----- operations ---------------------------------------------------------------------------

    /// Sends `bodies` (one message, or a batch).
    pub fn publish(&self, bodies: &[String]) -> Req {
        match self.kind {
            Kind::Infrai if bodies.len() == 1 => {
                self.infrai("POST", "/v1/queue/publish", json!({"queue": self.name, "payload": bodies[0]}))
            }
            Kind::Infrai => {
                let msgs: Vec<Value> = bodies.iter().map(|b| json!({"payload": b})).collect();
                self.infrai("POST", "/v1/queue/publish_batch", json!({"queue": self.name, "messages": msgs}))
            }
            Kind::Mns => {
                let inner: String = bodies
                    .iter()
                    .map(|b| format!("<Message><MessageBody>{}</MessageBody></Message>", xml_escape(b)))
                    .collect();
                let doc = if bodies.len() == 1 {
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MessageBody>{}</MessageBody></Message>",
                        xml_escape(&bodies[0])
                    )
                } else {
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Messages xmlns=\"http://mns.aliyuncs.com/doc/v1/\">{inner}</Messages>"
                    )
                };
                let path = if self.topic_queues > 0 { "topics" } else { "queues" };
                self.mns("POST", &format!("/{path}/{}/messages", self.name), Some(doc))
            }
            Kind::Ctyun => {
                let msgs: Vec<Value> = bodies.iter().map(|b| json!({"body": b})).collect();
                self.ctyun(
                    "sendSpecifyQueueMessage",
                    &[("regionId", json!(REGION)), ("queueId", json!(self.id)), ("messages", Value::Array(msgs))],
                )
            }
            Kind::Dms => {
                let msgs: Vec<Value> = bodies.iter().map(|b| json!({"body": b})).collect();
                self.dms("POST", &format!("/queues/{}/messages", self.id), &[], Some(json!({"messages": msgs})))
            }
        }
    }

    /// Whether a publish answer is a success.
    pub fn published(&self, status: u16) -> bool {
        status == 201 || (self.kind == Kind::Ctyun && status == 200)
    }

    /// Receives up to `max`, long-polling `wait` seconds (the dialect's minimum applies).
    pub fn receive(&self, max: usize, wait: u64, lease: u64) -> Req {
        match self.kind {
            Kind::Infrai => self.infrai(
                "POST",
                "/v1/queue/consume",
                json!({"queue": self.name, "max_messages": max, "wait_seconds": wait.min(20), "visibility_timeout": lease}),
            ),
            Kind::Mns if max == 1 => self.mns("GET", &format!("/queues/{}/messages?waitseconds={}", self.name, wait.min(30)), None),
            Kind::Mns => self.mns("GET", &format!("/queues/{}/messages?numOfMessages={max}&waitseconds={}", self.name, wait.min(30)), None),
            Kind::Ctyun => {
                let info = json!({"regionId": REGION, "queueId": self.id, "consumerGroupId": self.group, "maxMsgs": max, "timeWait": wait.max(1), "ackWait": lease});
                self.ctyun("consumptionMessage", &[("consumerQueueInfo", info)])
            }
            Kind::Dms => self.dms(
                "GET",
                &format!("/queues/{}/groups/{}/messages", self.id, self.group),
                &[("ack_wait", lease.to_string()), ("max_msgs", max.to_string()), ("time_wait", wait.max(1).to_string())],
                None,
            ),
        }
    }

    /// The tokens (handles / ids) and bodies of a receive answer; empty when nothing came.
    pub fn received(&self, status: u16, body: &[u8]) -> Result<Vec<(String, String)>, String> {
        let bad = || format!("receive answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        match self.kind {
            Kind::Mns if status == 404 && xml_texts(body, "Code").first().is_some_and(|c| c == "MessageNotExist") => {
                Ok(Vec::new())
            }
            Kind::Mns if status == 200 => {
                Ok(xml_texts(body, "ReceiptHandle").into_iter().zip(xml_texts(body, "MessageBody")).collect())
            }
            _ if status != 200 => Err(bad()),
            Kind::Infrai => {
                let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
                Ok(v["messages"]
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|m| {
                        (
                            m["message_id"].as_str().unwrap_or("").to_string(),
                            m["payload"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect())
            }
            Kind::Ctyun => {
                let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
                let inner: Value =
                    serde_json::from_str(v["returnObj"]["returnObj"].as_str().ok_or_else(bad)?).map_err(|_| bad())?;
                handlers_and_bodies(&inner).ok_or_else(bad)
            }
            Kind::Dms => {
                let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
                handlers_and_bodies(&v).ok_or_else(bad)
            }
            Kind::Mns => Err(bad()),
        }
    }

    /// The requests that acknowledge `tokens` (one, or one batch where the dialect has it).
    pub fn ack(&self, tokens: &[String]) -> Vec<Req> {
        match self.kind {
            Kind::Infrai => tokens
                .iter()
                .map(|t| self.infrai("POST", "/v1/queue/ack", json!({"queue": self.name, "message_id": t})))
                .collect(),
            Kind::Mns if tokens.len() == 1 => {
                vec![self.mns("DELETE", &format!("/queues/{}/messages?ReceiptHandle={}", self.name, tokens[0]), None)]
            }
            Kind::Mns => {
                let inner: String = tokens.iter().map(|t| format!("<ReceiptHandle>{t}</ReceiptHandle>")).collect();
                let doc = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ReceiptHandles xmlns=\"http://mns.aliyuncs.com/doc/v1/\">{inner}</ReceiptHandles>"
                );
                vec![self.mns("DELETE", &format!("/queues/{}/messages", self.name), Some(doc))]
            }
            Kind::Ctyun => {
                let entries: Vec<Value> = tokens.iter().map(|t| json!({"handler": t, "status": "success"})).collect();
                vec![self.ctyun(
                    "confirmConsumedSpecifiedMessage",
                    &[
                        ("regionId", json!(REGION)),
                        ("queueId", json!(self.id)),
                        ("consumerGroupId", json!(self.group)),
                        ("message", Value::Array(entries)),
                    ],
                )]
            }
            Kind::Dms => {
                let entries: Vec<Value> = tokens.iter().map(|t| json!({"handler": t, "status": "success"})).collect();
                vec![self.dms(
                    "POST",
                    &format!("/queues/{}/groups/{}/ack", self.id, self.group),
                    &[],
                    Some(json!({"message": entries})),
                )]
            }
        }
    }

    /// Whether an ack answer acknowledged everything it carried.
    pub fn acked(&self, status: u16, body: &[u8]) -> bool {
        match self.kind {
            Kind::Infrai => status == 200,
            Kind::Mns => status == 204,
            Kind::Ctyun => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["returnObj"]["returnObj"].as_str().map(str::to_string))
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .is_some_and(|v| v["fail"] == 0),
            Kind::Dms => status == 200 && serde_json::from_slice::<Value>(body).is_ok_and(|v| v["fail"] == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_scanning() {
        let body = b"<Messages><Message><ReceiptHandle>a</ReceiptHandle><MessageBody>x</MessageBody></Message><Message><ReceiptHandle>b</ReceiptHandle></Message></Messages>";
        assert_eq!(xml_texts(body, "ReceiptHandle"), vec!["a", "b"]);
        assert_eq!(xml_texts(b"<Error><Code>MessageNotExist</Code></Error>", "Code"), vec!["MessageNotExist"]);
        assert!(xml_texts(b"<a>", "a").is_empty());
        assert_eq!(Kind::parse(" MNS "), Some(Kind::Mns));
        assert_eq!(Kind::Infrai.batch(), 100);
    }
}
