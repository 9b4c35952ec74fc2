//! CTYun apiproxy v3 signing, as pure functions (`dialects/ctyun/README.md`, Signing).
//!
//! ```text
//! contentMD5 = base64(MD5(value1 + "\n" + value2 + …))   business parameter values, doc order
//! Hmac       = base64(HMAC-SHA1(secretKey, contentMD5 + "\n" + requestDate + "\n" + servicePath))
//! ```
//! The Hmac is always verified over the *received* contentMD5 header. Whether contentMD5 must
//! match the parameters is a policy ([`Md5Mode`]): public clients send MD5("") or hash their
//! parameters in map order, so by default a mismatch is only logged. `requestDate` is parsed
//! leniently, as clients write it: English names, 1–2 digit day and hour, zones GMT/UTC/UT/Z, CST
//! (= +08:00, China Standard Time), numeric offsets, `GMT+8`, and RFC 3339.
//!
//! [`authenticate`] is the whole signature check of a received request (headers, date, key,
//! Hmac) as one pure function of the request, the clock and a credential lookup, so the handler
//! and the benchmarks run the very same code. The contentMD5 binding comes later, once the
//! parameters are read ([`md5_matches`]).

use axum::http::request::Parts;

use super::envelope::CtError;
use crate::auth::crypto::{base64, ct_eq, hmac_sha1, md5};
use crate::core::Millis;

pub use crate::config::Md5Mode;

/// base64(MD5(text)).
pub fn content_md5(text: &str) -> String {
    base64(&md5(text.as_bytes()))
}

/// contentMD5 of parameter values in order.
pub fn content_md5_of(values: &[&str]) -> String {
    content_md5(&values.join("\n"))
}

/// The Hmac header value.
pub fn hmac(secret: &str, content_md5: &str, request_date: &str, path: &str) -> String {
    base64(&hmac_sha1(secret.as_bytes(), format!("{content_md5}\n{request_date}\n{path}").as_bytes()))
}

/// Verifies a presented Hmac (padding optional; a path with a trailing `/` also tried without).
pub fn verify_hmac(secret: &str, content_md5: &str, request_date: &str, path: &str, presented: &str) -> bool {
    let presented = presented.trim().trim_end_matches('=');
    let check = |p: &str| {
        let want = hmac(secret, content_md5, request_date, p);
        ct_eq(want.trim_end_matches('=').as_bytes(), presented.as_bytes())
    };
    check(path) || (path.len() > 1 && path.ends_with('/') && check(path.trim_end_matches('/')))
}

/// What [`authenticate`] established about a request.
#[derive(Debug)]
pub struct Verified<'h, C> {
    /// What the access key stands for (as the credential lookup returned it).
    pub credential: C,
    pub access_key: &'h str,
    /// The contentMD5 header as received (the Hmac covers it; [`md5_matches`] judges it).
    pub content_md5: &'h str,
}

/// Authenticates a received request: the four signing headers present (`accessKey`,
/// `contentMD5`, `requestDate`, `Hmac`, any case), `requestDate` readable and within
/// `max_skew_ms` of `now` (0 disables the window), the access key known (`credentials` returns
/// what it stands for and its secret), and the Hmac over contentMD5, requestDate and `path`.
/// Checked in that order, so a stale request is refused as stale even with an unknown key.
pub fn authenticate<'h, 's, C>(
    parts: &'h Parts,
    now: Millis,
    max_skew_ms: u64,
    credentials: impl FnOnce(&str) -> Option<(C, &'s str)>,
) -> Result<Verified<'h, C>, CtError> {
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(access_key), Some(content_md5), Some(request_date), Some(presented)) =
        (header("accesskey"), header("contentmd5"), header("requestdate"), header("hmac"))
    else {
        return Err(CtError::malformed("缺少签名请求头 accessKey / contentMD5 / requestDate / Hmac"));
    };
    let when = parse_request_date(request_date).ok_or_else(|| CtError::malformed("requestDate 格式无法识别"))?;
    if max_skew_ms > 0 && now.abs_diff(when) > max_skew_ms {
        return Err(CtError::business("Openapi.RequestDate.Expired", "请求时间 requestDate 已过期或超前"));
    }
    let (credential, secret) =
        credentials(access_key).ok_or_else(|| CtError::business("Openapi.AccessKey.Invalid", "accessKey 无效"))?;
    if !verify_hmac(secret, content_md5, request_date, parts.uri.path(), presented) {
        return Err(CtError::business("Openapi.Signature.Error", "签名校验失败"));
    }
    Ok(Verified { credential, access_key, content_md5 })
}

/// One business parameter as received: its text as transmitted and, when different, decoded.
#[derive(Debug, Clone)]
pub struct ParamText {
    pub raw: String,
    pub decoded: Option<String>,
    pub is_custom_info: bool,
}

fn permutations(items: &[String], out: &mut Vec<Vec<String>>, cur: &mut Vec<String>, used: &mut Vec<bool>) {
    if cur.len() == items.len() {
        out.push(cur.clone());
        return;
    }
    for i in 0..items.len() {
        if !used[i] {
            used[i] = true;
            cur.push(items[i].clone());
            permutations(items, out, cur, used);
            cur.pop();
            used[i] = false;
        }
    }
}

/// Whether a contentMD5 header is acceptable for these parameters (in doc order) under `mode`.
pub fn md5_matches(mode: Md5Mode, header: &str, params: &[ParamText]) -> bool {
    let header = header.trim();
    let canonical: Vec<&str> = params.iter().map(|p| p.raw.as_str()).collect();
    if content_md5_of(&canonical) == header {
        return true;
    }
    if mode == Md5Mode::Strict {
        return false;
    }
    if mode == Md5Mode::Permissive && header == content_md5("") {
        return true;
    }
    // Every variant a known client produces: with/without customInfo, raw or decoded values,
    // any order (≤ 5 parameters → ≤ 120 orders), joined as is or trimmed.
    let with_ci: Vec<&ParamText> = params.iter().collect();
    let without_ci: Vec<&ParamText> = params.iter().filter(|p| !p.is_custom_info).collect();
    for set in [with_ci, without_ci] {
        if set.len() > 5 {
            continue;
        }
        for decoded in [false, true] {
            let vals: Vec<String> = set
                .iter()
                .map(|p| if decoded { p.decoded.clone().unwrap_or_else(|| p.raw.clone()) } else { p.raw.clone() })
                .collect();
            let mut orders = Vec::new();
            permutations(&vals, &mut orders, &mut Vec::new(), &mut vec![false; vals.len()]);
            for order in orders {
                let joined = order.join("\n");
                if content_md5(&joined) == header || content_md5(joined.trim()) == header {
                    return true;
                }
            }
        }
    }
    false
}

fn month(name: &str) -> Option<u8> {
    let m = name.get(..3)?.to_ascii_lowercase();
    let i = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        .iter()
        .position(|x| *x == m)?;
    Some(i as u8 + 1)
}

/// A zone's offset from UTC in seconds.
fn zone_offset(z: &str) -> Option<i64> {
    let z = z.trim();
    let upper = z.to_ascii_uppercase();
    match upper.as_str() {
        "GMT" | "UTC" | "UT" | "Z" => return Some(0),
        "CST" => return Some(8 * 3600),
        _ => {}
    }
    let rest = upper.strip_prefix("GMT").or_else(|| upper.strip_prefix("UTC")).unwrap_or(&upper);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
        None if digits.len() == 4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        None if !digits.is_empty() && digits.len() <= 2 => (digits.parse().ok()?, 0),
        None => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Parses a requestDate to ms since the epoch. `None` when it cannot be read (→ 400).
pub fn parse_request_date(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_millisecond()).ok();
    }
    // [Wkd,] D Mon YYYY H:MM:SS ZONE
    let s = match s.split_once(',') {
        Some((wkd, rest)) if wkd.chars().all(|c| c.is_ascii_alphabetic()) => rest.trim(),
        _ => s,
    };
    let mut parts = s.split_whitespace();
    let day: i8 = parts.next()?.parse().ok()?;
    let mon = month(parts.next()?)?;
    let year: i16 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let zone = parts.collect::<Vec<_>>().join("");
    let mut hms = time.split(':');
    let h: i8 = hms.next()?.parse().ok()?;
    let mi: i8 = hms.next()?.parse().ok()?;
    let se: i8 = hms.next().unwrap_or("0").parse().ok()?;
    let offset = if zone.is_empty() { 0 } else { zone_offset(&zone)? };
    let dt = jiff::civil::DateTime::new(year, mon as i8, day, h, mi, se, 0).ok()?;
    let utc = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    let ms = utc.as_millisecond() - offset * 1000;
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SK: &str = "qgate-demo-sk-0123456789abcdef";

    #[test]
    fn vector_v1_get_query_specify_queue() {
        let md5 = content_md5_of(&["cn-snxy1", "e99f9718-a61f-4946-a259-5c84ba613e92", "true"]);
        assert_eq!(md5, "Xb+f+baWCLjXRI4G2ZtJew==");
        assert_eq!(
            hmac(SK, &md5, "Mon, 2 Jan 2023 15:04:05 GMT", "/apiproxy/v3/queue/querySpecifyQueue"),
            "idsvOQKFdzlyWp0wUAG57ny2m6k="
        );
        assert_eq!(
            hmac(SK, &md5, "Mon, 2 Jan 2023 23:04:05 CST", "/apiproxy/v3/queue/querySpecifyQueue"),
            "ccL4OXN1wsNfdJimEfelA7tWdJI="
        );
        assert_eq!(
            parse_request_date("Mon, 2 Jan 2023 15:04:05 GMT"),
            parse_request_date("Mon, 2 Jan 2023 23:04:05 CST")
        );
    }

    #[test]
    fn vector_v2_post_create_queue() {
        let member = r#"{"regionId":"cn-snxy1","name":"orders","queueMode":"FIFO","description":"demo","redrivePolicy":"enable","maxConsumeCount":"3"}"#;
        let md5 = content_md5(member);
        assert_eq!(md5, "9NfmNzg26z1WoaywUmDCgw==");
        assert_eq!(
            hmac(SK, &md5, "Tue, 5 Mar 2024 08:00:00 GMT", "/apiproxy/v3/queue/createQueue"),
            "pvyEwmDh2CIWIxIIIhjCho90HOE="
        );
    }

    #[test]
    fn vectors_v3_empty_and_v4_with_custom_info() {
        assert_eq!(content_md5(""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(
            hmac(SK, "1B2M2Y8AsgTpgAmY7PhCfg==", "Tue, 5 Mar 2024 08:00:00 GMT", "/apiproxy/v3/queue/queryQuota"),
            "PgrcbD9g9YSkS5PnfA8EiLKDb/A="
        );
        let cqi = r#"{"regionId":"cn-snxy1","queueId":"7b23784b-d744-46ff-99a0-f2662d0dc430","consumerGroupId":"g-df1be57d-65d3-4d89-911e-404fa864dca5","maxMsgs":"5","tagType":"or","tags":["red"],"timeWait":"1","ackWait":"30"}"#;
        let ci = r#"{"name":"demo","email":"demo@example.com","phone":"10000","type":2,"identity":{"crmBizId":"","accountId":"tenant-42"}}"#;
        let md5 = content_md5_of(&[cqi, ci]);
        assert_eq!(md5, "SiDRxS9EifuhUsr5Jl4+ag==");
        assert_eq!(content_md5(cqi), "gOlcj6Rn/Mqu2P+QUY6oOA==");
        assert_eq!(
            hmac(SK, &md5, "Tue, 5 Mar 2024 08:00:00 GMT", "/apiproxy/v3/queue/consumptionMessage"),
            "4sQvTyEAp7PqoI7uecpWq9vCiWM="
        );
        let params = [
            ParamText { raw: cqi.into(), decoded: None, is_custom_info: false },
            ParamText { raw: ci.into(), decoded: None, is_custom_info: true },
        ];
        assert!(md5_matches(Md5Mode::Strict, "SiDRxS9EifuhUsr5Jl4+ag==", &params));
        assert!(!md5_matches(Md5Mode::Strict, "gOlcj6Rn/Mqu2P+QUY6oOA==", &params));
        assert!(md5_matches(Md5Mode::Permissive, "gOlcj6Rn/Mqu2P+QUY6oOA==", &params), "without customInfo");
        assert!(md5_matches(Md5Mode::Permissive, &content_md5_of(&[ci, cqi]), &params), "other order");
        assert!(md5_matches(Md5Mode::Permissive, "1B2M2Y8AsgTpgAmY7PhCfg==", &params), "MD5 of nothing");
        assert!(!md5_matches(Md5Mode::Permissive, &content_md5("x"), &params));
    }

    #[test]
    fn hmac_verification_is_lenient_about_padding_and_trailing_slash() {
        let h = hmac(SK, "x", "d", "/apiproxy/v3/queue/queryQuota");
        assert!(verify_hmac(SK, "x", "d", "/apiproxy/v3/queue/queryQuota", &h));
        assert!(verify_hmac(SK, "x", "d", "/apiproxy/v3/queue/queryQuota", h.trim_end_matches('=')));
        assert!(verify_hmac(SK, "x", "d", "/apiproxy/v3/queue/queryQuota/", &h));
        assert!(!verify_hmac("other", "x", "d", "/apiproxy/v3/queue/queryQuota", &h));
    }

    #[test]
    fn request_dates_in_every_client_style() {
        let utc = parse_request_date("Mon, 2 Jan 2023 15:04:05 GMT").unwrap();
        assert_eq!(utc, 1_672_671_845_000);
        for same in [
            "Mon, 02 Jan 2023 15:04:05 GMT",
            "Mon, 2 Jan 2023 15:04:05 UTC",
            "Mon, 2 Jan 2023 23:04:05 CST",
            "Mon, 2 Jan 2023 23:04:05 +0800",
            "Mon, 2 Jan 2023 23:04:05 +08:00",
            "Mon, 2 Jan 2023 23:04:05 GMT+8",
            "Mon, 2 Jan 2023 23:04:05 GMT+08:00",
            "2 January 2023 15:04:05 Z",
            "Mon, 2 Jan 2023 10:04:05 -0500",
            "2023-01-02T15:04:05Z",
            "2023-01-02T23:04:05+08:00",
            "Mon, 2 Jan 2023 15:04:05",
        ] {
            assert_eq!(parse_request_date(same), Some(utc), "{same}");
        }
        assert!(parse_request_date("Tue, 5 Sept 2023 08:00:00 GMT").is_some());
        for bad in [
            "",
            "123",
            "yesterday",
            "Mon, 2 Foo 2023 15:04:05 GMT",
            "Mon, 2 Jan 2023 15:04:05 PST",
            "Mon, 32 Jan 2023 15:04:05 GMT",
        ] {
            assert_eq!(parse_request_date(bad), None, "{bad}");
        }
    }

    fn parts(path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = axum::http::Request::builder().method("GET").uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn lookup(ak: &str) -> Option<(&'static str, &'static str)> {
        (ak == "ak").then_some(("tenant", SK))
    }

    #[test]
    fn authenticate_accepts_the_vectors_as_received_requests() {
        let path = "/apiproxy/v3/queue/querySpecifyQueue";
        // V1, in its GMT and its CST spelling.
        for (date, hmac) in [
            ("Mon, 2 Jan 2023 15:04:05 GMT", "idsvOQKFdzlyWp0wUAG57ny2m6k="),
            ("Mon, 2 Jan 2023 23:04:05 CST", "ccL4OXN1wsNfdJimEfelA7tWdJI="),
        ] {
            let h = [
                ("accessKey", "ak"),
                ("contentMD5", "Xb+f+baWCLjXRI4G2ZtJew=="),
                ("requestDate", date),
                ("Hmac", hmac),
            ];
            let now = parse_request_date(date).unwrap();
            let p = parts(path, &h);
            let v = authenticate(&p, now, 900_000, lookup).unwrap();
            assert_eq!((v.credential, v.access_key, v.content_md5), ("tenant", "ak", "Xb+f+baWCLjXRI4G2ZtJew=="));
        }
        // V3 (MD5 of nothing), header names in any case, a trailing slash on the path.
        let date = "Tue, 5 Mar 2024 08:00:00 GMT";
        let h = [
            ("ACCESSKEY", "ak"),
            ("contentmd5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("RequestDate", date),
            ("hmac", "PgrcbD9g9YSkS5PnfA8EiLKDb/A="),
        ];
        let now = parse_request_date(date).unwrap();
        assert!(authenticate(&parts("/apiproxy/v3/queue/queryQuota/", &h), now, 900_000, lookup).is_ok());
        // A clock an hour off is fine when the window is disabled.
        assert!(authenticate(&parts("/apiproxy/v3/queue/queryQuota", &h), now + 3_600_000, 0, lookup).is_ok());
    }

    #[test]
    fn authenticate_fails_in_order() {
        let date = "Tue, 5 Mar 2024 08:00:00 GMT";
        let now = parse_request_date(date).unwrap();
        let path = "/apiproxy/v3/queue/queryQuota";
        let good = [
            ("accessKey", "ak"),
            ("contentMD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("requestDate", date),
            ("Hmac", "PgrcbD9g9YSkS5PnfA8EiLKDb/A="),
        ];
        let code =
            |h: &[(&str, &str)], now: Millis| authenticate(&parts(path, h), now, 900_000, lookup).unwrap_err().code;
        assert_eq!(code(&good[..3], now), "Openapi.Parameter.Error", "a missing header");
        let with = |i: usize, v: &'static str| {
            let mut h = good;
            h[i].1 = v;
            h
        };
        assert_eq!(code(&with(2, "soon"), now), "Openapi.Parameter.Error");
        assert_eq!(code(&good, now + 900_001), "Openapi.RequestDate.Expired");
        assert_eq!(code(&with(0, "stranger"), now + 900_001), "Openapi.RequestDate.Expired", "stale before unknown");
        assert_eq!(code(&with(0, "stranger"), now), "Openapi.AccessKey.Invalid");
        assert_eq!(code(&with(1, "Xb+f+baWCLjXRI4G2ZtJew=="), now), "Openapi.Signature.Error", "contentMD5 is signed");
        assert_eq!(code(&with(3, "idsvOQKFdzlyWp0wUAG57ny2m6k="), now), "Openapi.Signature.Error");
    }
}
