//! CTYun request decoding: the signature check (`dialects::ctyun::sign::authenticate`, with the
//! clock at the request's own requestDate so the window passes), the parameters read from
//! headers, query and body (`dialects::ctyun::params::Params::collect` and every accessor the
//! handlers use), and the contentMD5 binding under each policy.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use qgate::config::Md5Mode;
use qgate::dialects::ctyun::params::{self, Params};
use qgate::dialects::ctyun::sign;

fuzz_target!(|data: &[u8]| {
    let Some((parts, body)) = common::request(data) else { return };
    let now = common::header(&parts, "requestdate").and_then(sign::parse_request_date).unwrap_or(0);
    let _ = sign::authenticate(&parts, now, 900_000, |key| (key == "ak").then_some(((), "sk")));
    let query = parts.uri.query().unwrap_or("");
    let Ok(p) = Params::collect(&parts.method, &parts.headers, query, &body) else { return };
    for name in ["queueId", "queueName", "groupName", "groups", "msgs", "maxMsgs", "tags", "receiptHandles"] {
        let _ = p.has(name);
        let _ = p.text(name);
        let _ = p.json(name);
        let _ = p.req_json_or_text(name);
        if let Ok(Some(v)) = p.json(name) {
            let _ = params::field_text(&v, &["name", "id"]);
            let _ = params::clamped(&v, &["n", "maxMsgs"], 1, 10, 3);
        }
        let _ = params::boolean(p.text(name).ok().flatten(), name);
    }
    let texts = p.md5_texts(&["queueId", "msgs", "groups"]);
    let md5 = common::header(&parts, "contentmd5").unwrap_or("");
    for mode in [Md5Mode::Strict, Md5Mode::Bound, Md5Mode::Permissive, Md5Mode::Warn] {
        let _ = sign::md5_matches(mode, md5, &texts);
    }
});
