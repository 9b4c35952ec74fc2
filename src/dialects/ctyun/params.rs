//! Where CTYun business parameters come from, and how they are read (`dialects/ctyun/README.md`,
//! Parameters).
//!
//! GET operations carry their parameters as headers (JSON-typed ones as raw JSON text), with the
//! query string and then a body as fallbacks; POST operations carry a JSON or form body, with
//! headers and the query as fallbacks. Names match case-insensitively. Each parameter keeps the
//! text it was transmitted as, because contentMD5 is computed over exactly that text.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use serde_json::Value;
use serde_json::value::RawValue;

use super::envelope::CtError;
use super::sign::ParamText;
use crate::http::decode_component;

/// One parameter as received.
#[derive(Debug, Clone)]
enum Val {
    /// A header or query value (already percent-decoded when it came encoded).
    Text(String),
    /// A form field: decoded and raw text (some clients send JSON unencoded).
    Form { decoded: String, raw: String },
    /// A member of a JSON body, as its JSON text.
    Json(Box<RawValue>),
}

/// The parameters of one request, by lower-cased name.
#[derive(Debug, Default)]
pub struct Params {
    vals: HashMap<String, Val>,
}

/// A header's value: percent-encoded JSON (some clients encode JSON headers) is decoded, and the
/// text as sent is kept beside it, since a client may have signed either.
fn header_val(v: &axum::http::HeaderValue) -> Val {
    let bytes = v.as_bytes();
    let s = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        // Latin-1: every byte is the code point of the same value.
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    };
    let s = s.trim().to_string();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("%7b") || lower.starts_with("%5b") || lower.contains("%22") {
        Val::Form { decoded: decode_component(&s, false), raw: s }
    } else {
        Val::Text(s)
    }
}

fn parse_form(body: &str) -> Vec<(String, Val)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                decode_component(k, true).trim().to_string(),
                Val::Form { decoded: decode_component(v, true), raw: v.to_string() },
            )
        })
        .collect()
}

fn parse_json_body(body: &[u8]) -> Result<Vec<(String, Val)>, CtError> {
    let map: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| CtError::malformed(format!("请求体不是合法的 JSON 对象: {e}")))?;
    Ok(map.into_iter().map(|(k, v)| (k.trim().to_string(), Val::Json(v))).collect())
}

impl Params {
    /// Collects the parameters of a request, in the priority its method gives the sources.
    pub fn collect(method: &Method, headers: &HeaderMap, query: &str, body: &[u8]) -> Result<Params, CtError> {
        let from_headers: Vec<(String, Val)> =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), header_val(v))).collect();
        let from_query: Vec<(String, Val)> = crate::http::parse_query(query, true)
            .into_iter()
            .map(|(k, v)| (k.trim().to_string(), Val::Text(v)))
            .collect();
        let from_body = if body.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
            let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
            if ctype.contains("json") || (!ctype.contains("x-www-form-urlencoded") && first == Some(b'{')) {
                parse_json_body(body)?
            } else {
                let text = std::str::from_utf8(body).map_err(|_| CtError::malformed("请求体不是 UTF-8"))?;
                parse_form(text)
            }
        };
        let order = if *method == Method::GET {
            [from_headers, from_query, from_body]
        } else {
            [from_body, from_headers, from_query]
        };
        let mut vals = HashMap::new();
        for source in order {
            for (k, v) in source {
                vals.entry(k.to_ascii_lowercase()).or_insert(v);
            }
        }
        Ok(Params { vals })
    }

    fn get(&self, name: &str) -> Option<&Val> {
        self.vals.get(&name.to_ascii_lowercase())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A string-typed parameter (numbers and booleans are taken as their text), trimmed.
    pub fn text(&self, name: &str) -> Result<Option<String>, CtError> {
        match self.get(name) {
            None => Ok(None),
            Some(Val::Text(s)) | Some(Val::Form { decoded: s, .. }) => Ok(Some(s.trim().to_string())),
            Some(Val::Json(raw)) => match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Ok(Value::Number(n)) => Ok(Some(n.to_string())),
                Ok(Value::Bool(b)) => Ok(Some(b.to_string())),
                Ok(Value::Null) => Ok(None),
                _ => Err(CtError::malformed(format!("参数 {name} 应为字符串"))),
            },
        }
    }

    /// A required string-typed parameter.
    pub fn req_text(&self, name: &str) -> Result<String, CtError> {
        self.text(name)?.filter(|s| !s.is_empty()).ok_or_else(|| CtError::malformed(format!("缺少必填参数 {name}")))
    }

    /// A JSON-typed parameter (a JSON value, or a string holding JSON text).
    pub fn json(&self, name: &str) -> Result<Option<Value>, CtError> {
        let bad = || CtError::malformed(format!("参数 {name} 不是合法的 JSON"));
        let parsed = match self.get(name) {
            None => return Ok(None),
            Some(Val::Text(s)) => serde_json::from_str::<Value>(s).map_err(|_| bad())?,
            Some(Val::Form { decoded, raw }) => serde_json::from_str::<Value>(decoded)
                .or_else(|_| serde_json::from_str::<Value>(raw))
                .map_err(|_| bad())?,
            Some(Val::Json(raw)) => serde_json::from_str::<Value>(raw.get()).map_err(|_| bad())?,
        };
        match parsed {
            Value::String(inner) => serde_json::from_str::<Value>(&inner).map(Some).map_err(|_| bad()),
            Value::Null => Ok(None),
            v => Ok(Some(v)),
        }
    }

    /// A JSON-typed parameter that may also be a bare (non-JSON) string, returned as a JSON
    /// string (`groups: "solo"`).
    pub fn req_json_or_text(&self, name: &str) -> Result<Value, CtError> {
        match self.req_json(name) {
            Ok(v) => Ok(v),
            Err(e) => match self.text(name) {
                Ok(Some(s)) if !s.is_empty() && !s.starts_with(['{', '[']) => Ok(Value::String(s)),
                _ => Err(e),
            },
        }
    }

    /// A required JSON-typed parameter.
    pub fn req_json(&self, name: &str) -> Result<Value, CtError> {
        self.json(name)?.ok_or_else(|| CtError::malformed(format!("缺少必填参数 {name}")))
    }

    /// The transmitted texts of the named parameters that are present, in the given order (for
    /// the contentMD5 check).
    pub fn md5_texts(&self, names: &[&str]) -> Vec<ParamText> {
        names
            .iter()
            .filter_map(|n| {
                let v = self.get(n)?;
                let (raw, decoded) = match v {
                    Val::Text(s) => (s.clone(), None),
                    Val::Form { decoded, raw } => (raw.clone(), Some(decoded.clone())),
                    Val::Json(r) => match serde_json::from_str::<Value>(r.get()) {
                        Ok(Value::String(s)) => (s, None),
                        _ => (r.get().to_string(), None),
                    },
                };
                Some(ParamText { raw, decoded, is_custom_info: n.eq_ignore_ascii_case("customInfo") })
            })
            .collect()
    }
}

/// Reads a field of a JSON object as a trimmed string (numbers and booleans as their text).
pub fn field_text(obj: &Value, names: &[&str]) -> Option<String> {
    let m = obj.as_object()?;
    for n in names {
        let found = m.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(n)).map(|(_, v)| v);
        match found {
            Some(Value::String(s)) => return Some(s.trim().to_string()),
            Some(Value::Number(x)) => return Some(x.to_string()),
            Some(Value::Bool(b)) => return Some(b.to_string()),
            _ => {}
        }
    }
    None
}

/// A field of a JSON object by (trimmed, case-insensitive) name.
pub fn field<'a>(obj: &'a Value, names: &[&str]) -> Option<&'a Value> {
    let m = obj.as_object()?;
    names
        .iter()
        .find_map(|n| m.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(n)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// A numeric field (number or numeric string) clamped into `lo..=hi`, else `default`.
pub fn clamped(obj: &Value, names: &[&str], lo: u64, hi: u64, default: u64) -> Result<u64, CtError> {
    match field_text(obj, names) {
        None => Ok(default),
        Some(s) if s.is_empty() => Ok(default),
        Some(s) => {
            let s = s.trim_end_matches(['s', 'S']);
            let n: f64 = s.parse().map_err(|_| CtError::malformed(format!("参数 {} 应为数字", names[0])))?;
            Ok((n.max(0.0) as u64).clamp(lo, hi))
        }
    }
}

/// A boolean given as a JSON boolean or a `"true"`/`"false"` string.
pub fn boolean(text: Option<String>, name: &str) -> Result<bool, CtError> {
    match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(CtError::malformed(format!("参数 {name} 应为 true 或 false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_parameters_come_from_headers_first() {
        let mut h = HeaderMap::new();
        h.insert("regionid", "cn-snxy1".parse().unwrap());
        h.insert("consumerqueueinfo", r#"{"queueId":" abc ","maxMsgs":"5"}"#.parse().unwrap());
        let p = Params::collect(&Method::GET, &h, "regionId=other&includeDeadletter=true", b"").unwrap();
        assert_eq!(p.text("regionId").unwrap().unwrap(), "cn-snxy1");
        assert_eq!(p.text("includedeadletter").unwrap().unwrap(), "true");
        let cqi = p.req_json("consumerQueueInfo").unwrap();
        assert_eq!(field_text(&cqi, &["queueId"]).unwrap(), "abc");
        assert_eq!(clamped(&cqi, &["maxMsgs"], 1, 10, 10).unwrap(), 5);
        assert_eq!(clamped(&cqi, &["timeWait"], 1, 60, 3).unwrap(), 3);
    }

    #[test]
    fn percent_encoded_header_json_is_decoded() {
        let mut h = HeaderMap::new();
        h.insert("consumerqueueinfo", "%7B%22queueId%22%3A%22q%22%7D".parse().unwrap());
        let p = Params::collect(&Method::GET, &h, "", b"").unwrap();
        assert_eq!(field_text(&p.req_json("consumerQueueInfo").unwrap(), &["queueId"]).unwrap(), "q");
    }

    #[test]
    fn post_bodies_json_form_and_json_strings() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        let p = Params::collect(&Method::POST, &h, "", br#"{" regionId ":"r","groups":"[{\"name\":\"g\"}]","n":5}"#)
            .unwrap();
        assert_eq!(p.text("regionId").unwrap().unwrap(), "r");
        assert_eq!(p.req_json("groups").unwrap()[0]["name"], "g");
        assert_eq!(p.text("n").unwrap().unwrap(), "5");
        let texts = p.md5_texts(&["regionId", "groups", "absent"]);
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[0].raw, "r");
        let form = Params::collect(
            &Method::POST,
            &HeaderMap::new(),
            "",
            b"regionId=cn+x&groups=%5B%7B%22name%22%3A%22g%22%7D%5D",
        )
        .unwrap();
        assert_eq!(form.text("regionId").unwrap().unwrap(), "cn x");
        assert_eq!(form.req_json("groups").unwrap()[0]["name"], "g");
        let raw_form = Params::collect(&Method::POST, &HeaderMap::new(), "", br#"groups=[{"name":"a+b"}]"#).unwrap();
        assert_eq!(raw_form.req_json("groups").unwrap()[0]["name"], "a b", "decoded first");
        assert!(Params::collect(&Method::POST, &h, "", b"{bad").is_err());
        assert!(p.req_json("n").is_ok());
        let bad = Params::collect(&Method::POST, &h, "", br#"{"groups":"not json"}"#).unwrap();
        assert!(bad.req_json("groups").is_err());
        assert!(bad.req_text("missing").is_err());
    }
}
