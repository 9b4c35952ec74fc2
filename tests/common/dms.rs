//! A Huawei DMS client for tests with its own SDK-HMAC-SHA256 signer, written from what the
//! official SDK does (`dialects/dms/README.md`; it must not share signing code with the server).
#![allow(dead_code)]

use hmac::{KeyInit, Mac};
use qgate::core::{Clock, ManualClock};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub struct DmsClient {
    pub c: reqwest::Client,
    pub base: String,
    pub ak: String,
    pub sk: String,
    pub project: String,
    pub clock: ManualClock,
}

#[derive(Debug)]
pub struct DmsResp {
    pub status: u16,
    pub body: Value,
}

impl DmsResp {
    pub fn code(&self) -> String {
        self.body["error_code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error_code ({}): {}", self.status, self.body))
            .to_string()
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl DmsClient {
    pub fn new(base: &str, ak: &str, sk: &str, project: &str, clock: &ManualClock) -> Self {
        DmsClient {
            c: super::client(),
            base: base.into(),
            ak: ak.into(),
            sk: sk.into(),
            project: project.into(),
            clock: clock.clone(),
        }
    }

    /// Sends a signed request like the SDK: `path` below `/v2/{project}` (or a full path starting
    /// with `/v`), `query` as (key, value) pairs.
    pub async fn call(&self, method: &str, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> DmsResp {
        let text = body.map(|b| b.to_string());
        self.send(method, path, query, text.as_deref(), text.as_deref(), None).await
    }

    /// A request whose signature covers `signed_body` but which carries `sent_body` (a replay
    /// with another body), optionally with an `X-Sdk-Content-Sha256` header: `(value, signed)`.
    /// When that header is signed and says `UNSIGNED-PAYLOAD`, the signature covers no body, as
    /// the SDK's signer does.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        signed_body: Option<&str>,
        sent_body: Option<&str>,
        content_sha256: Option<(&str, bool)>,
    ) -> DmsResp {
        let full = if path.starts_with("/v") { path.to_string() } else { format!("/v2/{}{path}", self.project) };
        let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        pairs.sort();
        let cq = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let body_text = signed_body.unwrap_or_default().to_string();
        let date =
            jiff::Timestamp::from_millisecond(self.clock.now() as i64).unwrap().strftime("%Y%m%dT%H%M%SZ").to_string();
        let host = self.base.trim_start_matches("http://").to_string();
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("host", host.clone()),
            ("user-agent", "qgate-test".to_string()),
            ("x-project-id", self.project.clone()),
            ("x-sdk-date", date.clone()),
        ];
        let mut payload_hash = hex_sha256(body_text.as_bytes());
        if let Some((v, true)) = content_sha256 {
            headers.push(("x-sdk-content-sha256", v.to_string()));
            if v == "UNSIGNED-PAYLOAD" {
                payload_hash = v.to_string();
            }
        }
        let signed = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
        // The SDK decodes the path once and re-encodes each segment.
        let decoded = percent_encoding::percent_decode_str(&full).decode_utf8_lossy().into_owned();
        let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
        if !uri.ends_with('/') {
            uri.push('/');
        }
        let canon_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!("{method}\n{uri}\n{cq}\n{canon_headers}\n{signed}\n{payload_hash}");
        let sts = format!("SDK-HMAC-SHA256\n{date}\n{}", hex_sha256(canonical.as_bytes()));
        let mut m = hmac::Hmac::<Sha256>::new_from_slice(self.sk.as_bytes()).unwrap();
        m.update(sts.as_bytes());
        let sig = hex::encode(m.finalize().into_bytes());
        let url = if cq.is_empty() { format!("{}{full}", self.base) } else { format!("{}{full}?{cq}", self.base) };
        let mut req = self.c.request(method.parse().unwrap(), url).header(
            "authorization",
            format!("SDK-HMAC-SHA256 Access={}, SignedHeaders={signed}, Signature={sig}", self.ak),
        );
        for (k, v) in &headers {
            if *k != "host" {
                req = req.header(*k, v);
            }
        }
        if let Some((v, false)) = content_sha256 {
            req = req.header("x-sdk-content-sha256", v);
        }
        if let Some(b) = sent_body {
            req = req.body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        DmsResp { status, body }
    }
}
