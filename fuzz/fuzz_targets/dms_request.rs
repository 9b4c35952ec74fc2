//! The Huawei DMS signature check (`dialects::dms::sign::authenticate`): the Authorization
//! header, signed headers, the canonical URI and query, the body hash, with the clock at the
//! request's own X-Sdk-Date so the window passes.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use qgate::dialects::dms::sign;

fuzz_target!(|data: &[u8]| {
    let Some((parts, body)) = common::request(data) else { return };
    let now = common::header(&parts, "x-sdk-date").and_then(sign::parse_sdk_date).unwrap_or(0);
    let _ = sign::authenticate(&parts, &body, now, 900_000, |key| (key == "ak").then_some(((), "sk")));
    let _ = sign::canonical_uri(parts.uri.path());
    let _ = sign::canonical_query(parts.uri.query().unwrap_or(""));
});
