//! A CTYun apiproxy client for tests, with its own signer written from the algorithm in
//! `dialects/ctyun/README.md` (it must not share signing code with the server).
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use md5::Digest;
use qgate::core::{Clock, ManualClock};
use serde_json::Value;

pub struct CtClient {
    pub c: reqwest::Client,
    pub base: String,
    pub ak: String,
    pub sk: String,
    pub clock: ManualClock,
    /// Sent as the last business parameter when set (selects a sub-tenant).
    pub custom_info: Option<Value>,
}

#[derive(Debug)]
pub struct CtResp {
    pub status: u16,
    pub body: Value,
}

impl CtResp {
    pub fn code(&self) -> i64 {
        self.body["statusCode"].as_i64().unwrap_or_else(|| panic!("no statusCode: {}", self.body))
    }

    /// `returnObj` of envelope B, parsed from its inner JSON string.
    pub fn inner(&self) -> Value {
        let s = self.body["returnObj"]["returnObj"].as_str().unwrap_or_else(|| panic!("not envelope B: {}", self.body));
        serde_json::from_str(s).unwrap()
    }

    pub fn error_code(&self) -> String {
        assert_eq!(self.body["succeed"], false, "{}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        self.body["errorCode"].as_str().unwrap().to_string()
    }
}

pub fn content_md5(values: &[String]) -> String {
    STANDARD.encode(md5::Md5::digest(values.join("\n").as_bytes()))
}

pub fn hmac(sk: &str, md5: &str, date: &str, path: &str) -> String {
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
    m.update(format!("{md5}\n{date}\n{path}").as_bytes());
    STANDARD.encode(m.finalize().into_bytes())
}

/// `Tue, 5 Mar 2024 08:00:00 GMT` (the format the public Java clients send).
pub fn request_date(ms: u64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms as i64).unwrap();
    t.strftime("%a, %-d %b %Y %H:%M:%S GMT").to_string()
}

/// The text a parameter is hashed as: strings as themselves, JSON as compact text.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl CtClient {
    pub fn new(base: &str, ak: &str, sk: &str, clock: &ManualClock) -> Self {
        CtClient {
            c: super::client(),
            base: base.into(),
            ak: ak.into(),
            sk: sk.into(),
            clock: clock.clone(),
            custom_info: None,
        }
    }

    fn params(&self, params: &[(&str, Value)]) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if let Some(ci) = &self.custom_info {
            out.push(("customInfo".into(), ci.clone()));
        }
        out
    }

    fn signed(&self, req: reqwest::RequestBuilder, op: &str, values: &[String], date: &str) -> reqwest::RequestBuilder {
        let md5 = content_md5(values);
        let path = format!("/apiproxy/v3/queue/{op}");
        req.header("accessKey", &self.ak)
            .header("contentMD5", &md5)
            .header("requestDate", date)
            .header("Hmac", hmac(&self.sk, &md5, date, &path))
            .header("platform", "3")
    }

    /// A GET with its parameters as headers, in the document's order. HTTP drops the spaces
    /// around a header value in transit, so what is signed is the value as the server gets it.
    pub async fn get(&self, op: &str, params: &[(&str, Value)]) -> CtResp {
        let params = self.params(params);
        let date = request_date(self.clock.now());
        let values: Vec<String> = params.iter().map(|(_, v)| text_of(v).trim().to_string()).collect();
        let mut req = self.c.get(format!("{}/apiproxy/v3/queue/{op}", self.base));
        for (k, v) in &params {
            req = req.header(k.as_str(), text_of(v));
        }
        Self::finish(self.signed(req, op, &values, &date)).await
    }

    /// A POST with a JSON body, members in the document's order.
    pub async fn post(&self, op: &str, params: &[(&str, Value)]) -> CtResp {
        let params = self.params(params);
        let date = request_date(self.clock.now());
        let values: Vec<String> = params.iter().map(|(_, v)| text_of(v)).collect();
        let body = format!(
            "{{{}}}",
            params.iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v)).collect::<Vec<_>>().join(",")
        );
        let req = self
            .c
            .post(format!("{}/apiproxy/v3/queue/{op}", self.base))
            .header("content-type", "application/json")
            .body(body);
        Self::finish(self.signed(req, op, &values, &date)).await
    }

    /// Any request, signed over the given contentMD5 values (for malformed-call tests).
    pub async fn raw(
        &self,
        method: &str,
        op: &str,
        md5_values: &[String],
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> CtResp {
        let date = request_date(self.clock.now());
        let mut req = self.c.request(method.parse().unwrap(), format!("{}/apiproxy/v3/queue/{op}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        Self::finish(self.signed(req, op, md5_values, &date)).await
    }

    pub async fn finish(req: reqwest::RequestBuilder) -> CtResp {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        CtResp { status, body }
    }
}
