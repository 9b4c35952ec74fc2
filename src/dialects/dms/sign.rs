//! APIG "SDK-HMAC-SHA256" request signing, as pure functions (the client's side is described in
//! `dialects/dms/README.md`).
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//! StringToSign     = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(SHA256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(SK, StringToSign))
//! ```
//! The canonical URI decodes the raw path once, re-encodes each segment (RFC 3986 unreserved
//! kept) and ends with `/`; the canonical query decodes each pair (`+` stays `+`), sorts by key
//! then value and re-encodes. Headers are the ones the client lists in SignedHeaders, lower-case,
//! values trimmed — taken from the raw bytes, since the SDK may send UTF-8 in User-Agent.
//! Tested against the six vectors the SDK's own signer produced (`fixtures/dms/sig-vectors.json`).
//!
//! [`authenticate`] is the whole check of a received request as one pure function of the
//! request, the clock and a credential lookup, so the handler and the benchmarks run the very
//! same code.

use axum::http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::error::DmsError;
use crate::auth::crypto::{ct_eq, hmac_sha256, sha256_hex};
use crate::core::Millis;

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// SHA-256 of nothing.
pub const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 unreserved characters are kept; everything else is `%XX`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn dec(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// `SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b>, Signature=<hex>`; anything else is `None`.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.trim().strip_prefix(ALGORITHM)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut access = None;
    let mut signed = None;
    let mut sig = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Access" => access = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => sig = Some(v.trim()),
            _ => return None,
        }
    }
    let (access, signed, sig) = (access?, signed?, sig?);
    if access.is_empty() || signed.is_empty() || sig.is_empty() || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Authorization { access, signed_headers: signed.split(';').collect(), signature: sig })
}

/// The canonical URI of a raw path.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = dec(raw_path);
    let mut out = decoded.split('/').map(enc).collect::<Vec<_>>().join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query of a raw query string.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// What a signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    /// (lower-case name, value) for each signed header, in SignedHeaders order.
    pub headers: Vec<(String, String)>,
    pub signed_headers: &'a str,
    /// hex SHA-256 of the body (or the X-Sdk-Content-Sha256 value).
    pub payload_hash: &'a str,
}

pub fn canonical_request(r: &Request) -> String {
    let mut headers = String::new();
    for (k, v) in &r.headers {
        headers.push_str(k);
        headers.push(':');
        headers.push_str(v.trim());
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        canonical_uri(r.raw_path),
        canonical_query(r.raw_query),
        headers,
        r.signed_headers,
        r.payload_hash
    )
}

pub fn string_to_sign(date: &str, canonical: &str) -> String {
    format!("{ALGORITHM}\n{date}\n{}", sha256_hex(canonical.as_bytes()))
}

pub fn signature(sk: &str, string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(sk.as_bytes(), string_to_sign.as_bytes()))
}

/// Constant-time comparison of a presented hex signature (either case).
pub fn verify(sk: &str, string_to_sign: &str, presented: &str) -> bool {
    ct_eq(signature(sk, string_to_sign).as_bytes(), presented.to_ascii_lowercase().as_bytes())
}

/// `X-Sdk-Date` (`YYYYMMDDTHHMMSSZ`) to ms since the epoch.
pub fn parse_sdk_date(s: &str) -> Option<u64> {
    let s = s.trim();
    // `get`, not indexing: the header arrives as raw bytes and may hold non-ASCII text, where
    // byte 8 need not be a character boundary (found by fuzzing: it panicked).
    if s.len() != 16 || s.get(8..9) != Some("T") || !s.ends_with('Z') {
        return None;
    }
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i16>().ok();
    let dt = jiff::civil::DateTime::new(
        num(0, 4)?,
        num(4, 6)? as i8,
        num(6, 8)? as i8,
        num(9, 11)? as i8,
        num(11, 13)? as i8,
        num(13, 15)? as i8,
        0,
    )
    .ok()?;
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    u64::try_from(ts.as_millisecond()).ok()
}

/// What a signed `X-Sdk-Content-Sha256` says when the signature covers no body.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Authenticates a received request: the Authorization header, the access key (`credentials`
/// returns what it stands for and its secret), `host` and `x-sdk-date` among the signed headers
/// and every signed header present, the date within `max_skew_ms` of `now` (0 disables the
/// window), and the signature over the canonical request. The body hash in it is the hash of
/// `body`, always computed here: a client's `X-Sdk-Content-Sha256` is accepted only when it is
/// that hash, or when it is the literal `UNSIGNED-PAYLOAD` *and* among the signed headers (the
/// SDK's way to sign no body, as APIG allows). Trusting any other value would let a captured
/// request be replayed with another body. Every failure is APIG's one 401.
pub fn authenticate<'s, C>(
    parts: &Parts,
    body: &[u8],
    now: Millis,
    max_skew_ms: u64,
    credentials: impl FnOnce(&str) -> Option<(C, &'s str)>,
) -> Result<C, DmsError> {
    precheck(parts, now, max_skew_ms, credentials)?.with_body(parts, body)
}

/// What [`precheck`] found: everything but the body hash, which the signature also covers.
pub struct Prechecked<'s, C> {
    who: C,
    secret: &'s str,
    values: Vec<(String, String)>,
    signed: Vec<String>,
    date: String,
    signature: String,
}

/// The checks of [`authenticate`] that need no body — the Authorization header, the access key,
/// the signed headers, the date window — so the server makes them before reading (and
/// buffering) a body.
pub fn precheck<'s, C>(
    parts: &Parts,
    now: Millis,
    max_skew_ms: u64,
    credentials: impl FnOnce(&str) -> Option<(C, &'s str)>,
) -> Result<Prechecked<'s, C>, DmsError> {
    let headers = &parts.headers;
    let authz = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(DmsError::auth)?;
    let a = parse_authorization(authz).ok_or_else(DmsError::auth)?;
    let (who, secret) = credentials(a.access).ok_or_else(DmsError::auth)?;
    let signed: Vec<String> = a.signed_headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    if !signed.iter().any(|h| h == "host") || !signed.iter().any(|h| h == "x-sdk-date") {
        return Err(DmsError::auth());
    }
    let mut values = Vec::with_capacity(signed.len());
    for h in &signed {
        // Raw bytes, not `to_str`: the SDK may send UTF-8 in User-Agent. Repeated headers join.
        let all: Vec<String> = headers
            .get_all(h.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .collect();
        if all.is_empty() {
            return Err(DmsError::auth());
        }
        values.push((h.clone(), all.join(",")));
    }
    let date = values.iter().find(|(k, _)| k == "x-sdk-date").map(|(_, v)| v.clone()).unwrap_or_default();
    let when = parse_sdk_date(&date).ok_or_else(DmsError::auth)?;
    if max_skew_ms > 0 && now.abs_diff(when) > max_skew_ms {
        return Err(DmsError::auth());
    }
    Ok(Prechecked { who, secret, values, signed, date, signature: a.signature.to_string() })
}

impl<C> Prechecked<'_, C> {
    /// The signature over the canonical request with the body's hash: the rest of
    /// [`authenticate`].
    pub fn with_body(self, parts: &Parts, body: &[u8]) -> Result<C, DmsError> {
        let Prechecked { who, secret, values, signed, date, signature } = self;
        let headers = &parts.headers;
        let body_hash = if body.is_empty() { EMPTY_HASH.to_string() } else { sha256_hex(body) };
        let payload_hash = match headers.get("x-sdk-content-sha256") {
            None => body_hash,
            Some(v) => {
                let claimed = v.to_str().map_err(|_| DmsError::auth())?.trim();
                if claimed == UNSIGNED_PAYLOAD && signed.iter().any(|h| h == "x-sdk-content-sha256") {
                    UNSIGNED_PAYLOAD.to_string()
                } else if claimed.eq_ignore_ascii_case(&body_hash) {
                    body_hash
                } else {
                    return Err(DmsError::auth());
                }
            }
        };
        let signed_list = signed.join(";");
        let req = Request {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers: values,
            signed_headers: &signed_list,
            payload_hash: &payload_hash,
        };
        let sts = string_to_sign(&date, &canonical_request(&req));
        if !verify(secret, &sts, &signature) {
            return Err(DmsError::auth());
        }
        Ok(who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dms/sig-vectors.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_sdk_vectors() {
        let vs = vectors();
        assert_eq!(vs.len(), 6);
        for v in vs {
            let name = v["name"].as_str().unwrap();
            let auth = parse_authorization(v["authorization"].as_str().unwrap()).unwrap();
            let target = v["request_target"].as_str().unwrap();
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let hmap = v["headers"].as_object().unwrap();
            let headers = auth
                .signed_headers
                .iter()
                .map(|h| {
                    let value = hmap.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)).unwrap().1.as_str().unwrap();
                    (h.to_string(), value.to_string())
                })
                .collect();
            let body = v["body_utf8"].as_str().unwrap();
            let hash = sha256_hex(body.as_bytes());
            assert_eq!(hash, v["body_sha256"].as_str().unwrap(), "{name}: body hash");
            let signed = auth.signed_headers.join(";");
            let req = Request {
                method: v["method"].as_str().unwrap(),
                raw_path: path,
                raw_query: query,
                headers,
                signed_headers: &signed,
                payload_hash: &hash,
            };
            let canonical = canonical_request(&req);
            assert_eq!(canonical, v["canonical_request"].as_str().unwrap(), "{name}: canonical request");
            let date = hmap["X-Sdk-Date"].as_str().unwrap();
            let sts = string_to_sign(date, &canonical);
            assert_eq!(sts, v["string_to_sign"].as_str().unwrap(), "{name}: string to sign");
            let sk = v["sk"].as_str().unwrap();
            assert!(verify(sk, &sts, auth.signature), "{name}: signature");
            assert!(!verify("wrong", &sts, auth.signature));
            assert_eq!(auth.access, v["ak"].as_str().unwrap());
        }
    }

    #[test]
    fn authorization_parsing_and_dates() {
        let a =
            parse_authorization("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=ab12").unwrap();
        assert_eq!((a.access, a.signed_headers.clone(), a.signature), ("AK", vec!["host", "x-sdk-date"], "ab12"));
        for bad in [
            "",
            "SDK-HMAC-SM3 Access=AK, SignedHeaders=host, Signature=ab",
            "SDK-HMAC-SHA256Access=AK, SignedHeaders=host, Signature=ab",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=xyz",
            "V11-HMAC-SHA256 Credential=ak/20240101/r/dms, SignedHeaders=host, Signature=ab",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_sdk_date("20240102T030405Z"), Some(1_704_164_645_000));
        // Found by fuzzing: non-ASCII where the `T` goes made the slice panic.
        for bad in ["", "2024-01-02T03:04:05Z", "20241302T030405Z", "20240102T030405", "2024010\u{3e7}000000Z"] {
            assert_eq!(parse_sdk_date(bad), None, "{bad}");
        }
        assert_eq!(canonical_uri("/v2/p/queues"), "/v2/p/queues/");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("t=a+b"), "t=a%2Bb", "+ is a literal plus");
    }

    /// A vector as the request the server receives.
    fn received(v: &Value) -> (Parts, Vec<u8>) {
        let mut b = axum::http::Request::builder()
            .method(v["method"].as_str().unwrap())
            .uri(v["request_target"].as_str().unwrap())
            .header("authorization", v["authorization"].as_str().unwrap());
        for (k, val) in v["headers"].as_object().unwrap() {
            b = b.header(k.as_str(), val.as_str().unwrap());
        }
        (b.body(()).unwrap().into_parts().0, v["body_utf8"].as_str().unwrap().as_bytes().to_vec())
    }

    #[test]
    fn authenticate_accepts_the_sdk_vectors_as_received_requests() {
        for v in vectors() {
            let name = v["name"].as_str().unwrap();
            let (ak, sk) = (v["ak"].as_str().unwrap(), v["sk"].as_str().unwrap());
            let lookup = |id: &str| (id == ak).then_some((name, sk));
            let (parts, body) = received(&v);
            let now = parse_sdk_date(v["headers"]["X-Sdk-Date"].as_str().unwrap()).unwrap();
            assert_eq!(authenticate(&parts, &body, now, 900_000, lookup).unwrap(), name);
            assert!(authenticate(&parts, &body, now + 3_600_000, 0, lookup).is_ok(), "{name}: no window");

            // Every way to fail is the same 401.
            let refused =
                |r: Result<&str, DmsError>| r.is_err_and(|e| e.status.as_u16() == 401 && e.code == "APIGW.0301");
            assert!(refused(authenticate(&parts, &body, now + 900_001, 900_000, lookup)), "{name}: stale");
            assert!(refused(
                authenticate(&parts, &body, now, 900_000, |id: &str| (id == ak).then_some((name, "wrong")))
            ));
            assert!(
                refused(authenticate(&parts, &body, now, 900_000, |_: &str| None::<(&str, &str)>)),
                "{name}: unknown"
            );
            let mut tampered = body.clone();
            tampered.push(b' ');
            let unsigned_hash = parts.headers.contains_key("x-sdk-content-sha256");
            if !unsigned_hash {
                assert!(refused(authenticate(&parts, &tampered, now, 900_000, lookup)), "{name}: body changed");
            }
            let mut no_authz = parts.clone();
            no_authz.headers.remove("authorization");
            assert!(refused(authenticate(&no_authz, &body, now, 900_000, lookup)), "{name}: no Authorization");
        }
    }
}
