//! The MNS signature check (`dialects::mns::sign::authenticate`): Authorization and Date
//! parsing, the string to sign, the Content-MD5 forms. The clock is set to the request's own
//! Date (when it parses) so the fuzzer gets past the time window; when the first byte of the
//! input is `S`, the harness signs the request correctly first, so the checks after the
//! signature (Content-MD5) are reached too.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use qgate::dialects::mns::sign;

fuzz_target!(|data: &[u8]| {
    let (sign_it, data) = match data.split_first() {
        Some((b'S', rest)) => (true, rest),
        _ => (false, data),
    };
    let Some((mut parts, body)) = common::request(data) else { return };
    let now = common::header(&parts, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    if sign_it {
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect();
        let text = |n: &str| headers.iter().find(|(k, _)| k == n).map_or("", |(_, v)| v.as_str());
        let resource = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let method = parts.method.as_str().to_string();
        let signed = sign::Signed {
            method: &method,
            content_md5: text("content-md5"),
            content_type: text("content-type"),
            date: text("date"),
            headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            resource: &resource,
        };
        let authz = format!("MNS ak:{}", sign::signature("sk", &signed));
        match http::HeaderValue::from_str(&authz) {
            Ok(v) => {
                parts.headers.insert("authorization", v);
            }
            Err(_) => return,
        }
    }
    let _ = sign::authenticate(&parts, &body, now, |id| (id == "ak").then_some(((), "sk")));
});
