//! The MNS request signature (V1, `Authorization: MNS id:signature`), as a pure function.
//!
//! ```text
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedMNSHeaders CanonicalizedResource
//! Signature    = base64(HMAC-SHA1(secret, StringToSign))
//! ```
//! CanonicalizedMNSHeaders are the `x-mns-*` headers, names lower-cased, values trimmed, sorted,
//! each `name:value\n`. CanonicalizedResource is the request target **exactly as sent**: raw path
//! and query, not decoded, not re-encoded, not sorted (the SDKs put receipt handles with `+ / =`
//! into URLs unescaped and sign what they send). Tested against fixed vectors the official Python
//! SDK's signer produced and the Node SDK's agrees with (listed in `dialects/mns/README.md`).
//!
//! [`authenticate`] is the whole check of a received request (header, date, key, signature,
//! Content-MD5) as one pure function of the request, the clock and a credential lookup, so the
//! handler and the benchmarks run the very same code.

use axum::http::StatusCode;
use axum::http::request::Parts;

use super::error::MnsError;
use crate::auth::crypto::{base64, ct_eq, hmac_sha1, md5};
use crate::core::Millis;

/// Allowed distance between the request's Date and the server clock (the service's 15 minutes).
pub const MAX_SKEW_MS: u64 = 15 * 60 * 1000;

/// What the signature covers, taken from a request.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub method: &'a str,
    pub content_md5: &'a str,
    pub content_type: &'a str,
    pub date: &'a str,
    /// (name, value) of every header; non-`x-mns-` ones are ignored.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The raw request target (origin form).
    pub resource: &'a str,
}

/// The string to sign.
pub fn string_to_sign(s: &Signed) -> String {
    let mut mns: Vec<(String, &str)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-mns-"))
        .collect();
    mns.sort();
    let mut out = String::with_capacity(128 + s.resource.len());
    for part in [s.method, s.content_md5, s.content_type, s.date] {
        out.push_str(part);
        out.push('\n');
    }
    for (k, v) in mns {
        out.push_str(&k);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out.push_str(s.resource);
    out
}

/// base64(HMAC-SHA1(secret, string to sign)).
pub fn signature(secret: &str, s: &Signed) -> String {
    base64(&hmac_sha1(secret.as_bytes(), string_to_sign(s).as_bytes()))
}

/// Splits `MNS id:signature` (at the last `:`; base64 has none). None when malformed.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.trim().strip_prefix("MNS ")?.trim_start();
    let (id, sig) = rest.rsplit_once(':')?;
    (!id.is_empty() && !sig.is_empty() && !id.contains(char::is_whitespace)).then_some((id, sig.trim()))
}

/// Constant-time check of a presented signature.
pub fn verify(secret: &str, s: &Signed, presented: &str) -> bool {
    ct_eq(signature(secret, s).as_bytes(), presented.as_bytes())
}

/// Authenticates a received request: the Authorization header, the date (`Date`, or
/// `x-mns-date` as the Node SDK sends it) within [`MAX_SKEW_MS`] of `now`, the access key
/// (`credentials` returns what the key stands for and its secret), the signature over the raw
/// request target, then Content-MD5 against `body` when one is given. Checked in that order, so
/// each failure has the service's code: a stale request is `TimeExpired` even when its key is
/// unknown.
///
/// Content-MD5 is accepted in the form every SDK sends (base64 of the lower-case hex digest),
/// and in the forms a hand-written client might choose (upper-case hex inside the base64, the
/// RFC 1864 base64 of the raw digest, bare hex).
pub fn authenticate<'s, C>(
    parts: &Parts,
    body: &[u8],
    now: Millis,
    credentials: impl FnOnce(&str) -> Option<(C, &'s str)>,
) -> Result<C, MnsError> {
    let who = authenticate_headers(parts, now, credentials)?;
    check_content_md5(&parts.headers, body)?;
    Ok(who)
}

/// [`authenticate`] without the body: everything the signature covers is in the headers, so
/// the server checks it before reading (and buffering) a body.
pub fn authenticate_headers<'s, C>(
    parts: &Parts,
    now: Millis,
    credentials: impl FnOnce(&str) -> Option<(C, &'s str)>,
) -> Result<C, MnsError> {
    use StatusCode as S;
    let headers = &parts.headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authz = headers.get("authorization").ok_or_else(|| {
        MnsError::new(S::BAD_REQUEST, "MissingAuthorizationHeader", "The Authorization header is missing.")
    })?;
    let bad_authz =
        || MnsError::new(S::BAD_REQUEST, "InvalidAuthorizationHeader", "The Authorization header is invalid.");
    let (id, sig) = authz.to_str().ok().and_then(parse_authorization).ok_or_else(bad_authz)?;
    let date = text("date")
        .or_else(|| text("x-mns-date"))
        .ok_or_else(|| MnsError::new(S::BAD_REQUEST, "MissingDateHeader", "The Date header is missing."))?;
    let when = httpdate::parse_http_date(date.trim())
        .map_err(|_| MnsError::new(S::BAD_REQUEST, "InvalidDateHeader", "The Date header is invalid."))?;
    let when_ms = when.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    if now.abs_diff(when_ms) > MAX_SKEW_MS {
        return Err(MnsError::new(S::REQUEST_TIMEOUT, "TimeExpired", "The http request you sent is expired."));
    }
    let (who, secret) = credentials(id)
        .ok_or_else(|| MnsError::new(S::FORBIDDEN, "InvalidAccessKeyId", "The access Id you provided is not exist."))?;
    let signed = Signed {
        method: parts.method.as_str(),
        content_md5: text("content-md5").unwrap_or(""),
        content_type: text("content-type").unwrap_or(""),
        date,
        headers: headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))).collect(),
        resource: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    if !verify(secret, &signed, sig) {
        return Err(MnsError::new(
            S::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(who)
}

/// The body against its Content-MD5 header, when one is given (after [`authenticate_headers`]).
pub fn check_content_md5(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<(), MnsError> {
    let given = headers.get("content-md5").and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    if let Some(given) = given {
        let digest = md5(body);
        let hex = hex::encode(digest);
        let accepted = [base64(hex.as_bytes()), base64(hex.to_uppercase().as_bytes()), base64(&digest), hex.clone()];
        if !accepted.iter().any(|a| a == given) && !given.eq_ignore_ascii_case(&hex) {
            return Err(MnsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidDegist",
                "The Content-MD5 you specified is not valid.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Thu, 17 Mar 2012 18:49:58 GMT";
    const ID: &str = "qgate-test-id";
    const SECRET: &str = "qgate-test-secret";

    fn auth(method: &str, resource: &str, md5: &str, ctype: &str, extra: &[(&str, &str)]) -> String {
        let mut headers = vec![("x-mns-version", "2015-06-06"), ("Host", "127.0.0.1:8080"), ("user-agent", "x")];
        headers.extend_from_slice(extra);
        let s = Signed { method, content_md5: md5, content_type: ctype, date: DATE, headers, resource };
        format!("MNS {ID}:{}", signature(SECRET, &s))
    }

    #[test]
    fn sdk_vectors() {
        assert_eq!(
            auth("GET", "/queues/q1/messages?waitseconds=10", "", "", &[]),
            "MNS qgate-test-id:PY58CX/SBq7YRAVomklh6/2FDgk="
        );
        assert_eq!(
            auth(
                "POST",
                "/queues/q1/messages",
                "M2E5NzY1YjgxNGRlNTBjMjg3ZjRhZWQzY2RkOTc0ZjM=",
                "text/xml;charset=UTF-8",
                &[]
            ),
            "MNS qgate-test-id:JTWgVRX1OqKlkjr4Xta2Li7gIWE="
        );
        assert_eq!(
            auth(
                "GET",
                "/queues",
                "",
                "",
                &[("x-mns-prefix", "pre"), ("X-MNS-Ret-Number", "10"), ("x-mns-marker", " q-05 ")]
            ),
            "MNS qgate-test-id:y/oYxYOC7wiXtsJ10cpWEqWcwPo="
        );
        assert_eq!(
            auth("DELETE", "/queues/q1/messages?ReceiptHandle=1-AB+c/d==", "", "", &[]),
            "MNS qgate-test-id:HG+/8e1aGEdIBihtvh27M4j6B2Y="
        );
        assert_eq!(
            auth(
                "PUT",
                "/queues/q1/messages?receiptHandle=1-AB+c/d==&visibilityTimeout=10",
                "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U=",
                "text/xml",
                &[("x-mns-date", DATE)]
            ),
            "MNS qgate-test-id:Pa8q8cJejFct2NXAbb6JkGW5XtI="
        );
        // The upstream Node SDK's own test vector (its requests always carry x-mns-version).
        let s = Signed {
            method: "PUT",
            content_md5: "574683b3684e3cff610afa155cc2506d",
            content_type: "text/xml",
            date: "Tue, 11 Apr 2017 10:09:19 GMT",
            headers: vec![("x-mns-version", "2015-06-06")],
            resource: "/",
        };
        assert_eq!(signature("ACCESS_KEY_SECRET", &s), "A9zehggaYHHujmuRMxGIDrhWwx8=");
    }

    #[test]
    fn string_to_sign_is_the_documented_layout() {
        let s = Signed {
            method: "GET",
            content_md5: "",
            content_type: "",
            date: DATE,
            headers: vec![
                ("x-mns-version", "2015-06-06"),
                ("x-mns-prefix", "pre"),
                ("x-mns-ret-number", "10"),
                ("x-mns-marker", "q-05"),
            ],
            resource: "/queues",
        };
        assert_eq!(
            string_to_sign(&s),
            "GET\n\n\nThu, 17 Mar 2012 18:49:58 GMT\nx-mns-marker:q-05\nx-mns-prefix:pre\nx-mns-ret-number:10\nx-mns-version:2015-06-06\n/queues"
        );
    }

    #[test]
    fn authorization_header_parsing() {
        assert_eq!(parse_authorization("MNS id:abc/def+=="), Some(("id", "abc/def+==")));
        assert_eq!(parse_authorization("MNS a:b:c"), Some(("a:b", "c")));
        for bad in ["", "MNS", "MNS :sig", "MNS id:", "Bearer x", "MNS idsig", "mns id:sig"] {
            assert_eq!(parse_authorization(bad), None, "{bad}");
        }
    }

    /// The body of vector V2 (its Content-MD5 is the one V2 signs).
    const V2_BODY: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Message xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MessageBody>aGVsbG8=</MessageBody><DelaySeconds>3</DelaySeconds><Priority>2</Priority></Message>";
    /// The vectors' date with its true weekday (17 March 2012 was a Saturday).
    const SAT: &str = "Sat, 17 Mar 2012 18:49:58 GMT";

    fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = axum::http::Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn date_ms(d: &str) -> Millis {
        httpdate::parse_http_date(d).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    fn lookup(id: &str) -> Option<(&'static str, &'static str)> {
        (id == ID).then_some(("tenant", SECRET))
    }

    /// A request of one of the vectors' shapes as a client sends it: signed (by [`signature`],
    /// which the vectors pin) at `date`, with `x-mns-version` and `extra` headers.
    fn signed(method: &str, target: &str, date: &str, extra: &[(&str, &str)]) -> Parts {
        let text = |n: &str| extra.iter().find(|(k, _)| *k == n).map_or("", |(_, v)| *v);
        let mut headers = vec![("x-mns-version", "2015-06-06")];
        headers.extend_from_slice(extra);
        let s = Signed {
            method,
            content_md5: text("content-md5"),
            content_type: text("content-type"),
            date,
            headers: headers.clone(),
            resource: target,
        };
        let authz = format!("MNS {ID}:{}", signature(SECRET, &s));
        headers.push(("authorization", &authz));
        if text("x-mns-date").is_empty() {
            headers.push(("date", date));
        }
        parts(method, target, &headers)
    }

    #[test]
    fn authenticate_with_the_upstream_vector() {
        // The Node SDK's own vector, as a received request: date, key and signature pass, and
        // its Content-MD5 (bare hex, one of the accepted forms) names a body we do not have.
        let h = [
            ("date", "Tue, 11 Apr 2017 10:09:19 GMT"),
            ("x-mns-version", "2015-06-06"),
            ("content-md5", "574683b3684e3cff610afa155cc2506d"),
            ("content-type", "text/xml"),
            ("authorization", "MNS ACCESS_KEY_ID:A9zehggaYHHujmuRMxGIDrhWwx8="),
        ];
        let now = date_ms("Tue, 11 Apr 2017 10:09:19 GMT");
        let keys = |secret: &'static str| move |id: &str| (id == "ACCESS_KEY_ID").then_some(((), secret));
        let e = authenticate(&parts("PUT", "/", &h), b"another body", now, keys("ACCESS_KEY_SECRET")).unwrap_err();
        assert_eq!(e.code, "InvalidDegist", "everything before the body check passed");
        let e = authenticate(&parts("PUT", "/", &h), b"another body", now, keys("other")).unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        // The table's vectors carry a date whose weekday is wrong: refused as a date, before
        // any key or signature is looked at.
        let v1 = [
            ("date", DATE),
            ("x-mns-version", "2015-06-06"),
            ("authorization", "MNS qgate-test-id:PY58CX/SBq7YRAVomklh6/2FDgk="),
        ];
        let e = authenticate(&parts("GET", "/queues/q1/messages?waitseconds=10", &v1), b"", date_ms(SAT), lookup);
        assert_eq!(e.unwrap_err().code, "InvalidDateHeader");
    }

    #[test]
    fn authenticate_accepts_the_vectors_shapes() {
        let now = date_ms(SAT);
        let v2 = [
            ("content-md5", "M2E5NzY1YjgxNGRlNTBjMjg3ZjRhZWQzY2RkOTc0ZjM="),
            ("content-type", "text/xml;charset=UTF-8"),
        ];
        let v3 = [("x-mns-prefix", "pre"), ("x-mns-ret-number", "10"), ("x-mns-marker", "q-05")];
        let v5 = [
            ("content-md5", "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U="),
            ("content-type", "text/xml"),
            ("x-mns-date", SAT),
        ];
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 5] = [
            ("GET", "/queues/q1/messages?waitseconds=10", &[], ""),
            ("POST", "/queues/q1/messages", &v2, V2_BODY),
            ("GET", "/queues", &v3, ""),
            ("DELETE", "/queues/q1/messages?ReceiptHandle=1-AB+c/d==", &[], ""),
            ("PUT", "/queues/q1/messages?receiptHandle=1-AB+c/d==&visibilityTimeout=10", &v5, ""),
        ];
        for (method, target, extra, body) in cases {
            let p = signed(method, target, SAT, extra);
            assert_eq!(authenticate(&p, body.as_bytes(), now, lookup).unwrap(), "tenant", "{method} {target}");
            assert!(authenticate(&p, body.as_bytes(), now + MAX_SKEW_MS, lookup).is_ok(), "at the edge of the window");
        }
    }

    #[test]
    fn authenticate_fails_with_the_service_codes() {
        let now = date_ms(SAT);
        let target = "/queues/q1/messages?waitseconds=10";
        let good = signed("GET", target, SAT, &[]);
        let code = |p: &Parts, now: Millis, body: &[u8]| {
            let e = authenticate(p, body, now, lookup).unwrap_err();
            (e.status.as_u16(), e.code)
        };
        let without = |name: &str| {
            let mut p = good.clone();
            p.headers.remove(name);
            p
        };
        let with = |name: &'static str, value: &'static str| {
            let mut p = good.clone();
            p.headers.insert(name, value.parse().unwrap());
            p
        };
        assert_eq!(code(&without("authorization"), now, b""), (400, "MissingAuthorizationHeader"));
        assert_eq!(code(&with("authorization", "MNS nocolon"), now, b""), (400, "InvalidAuthorizationHeader"));
        assert_eq!(code(&without("date"), now, b""), (400, "MissingDateHeader"));
        assert_eq!(code(&with("date", "yesterday"), now, b""), (400, "InvalidDateHeader"));
        assert_eq!(code(&good, now + MAX_SKEW_MS + 1, b""), (408, "TimeExpired"));
        assert_eq!(code(&good, now - MAX_SKEW_MS - 1, b""), (408, "TimeExpired"));
        let stranger = with("authorization", "MNS someone-else:PY58CX/SBq7YRAVomklh6/2FDgk=");
        assert_eq!(code(&stranger, now, b""), (403, "InvalidAccessKeyId"));
        assert_eq!(code(&without("x-mns-version"), now, b""), (403, "SignatureDoesNotMatch"), "x-mns-* are signed");
        // Signed with V2's Content-MD5, sent with another body.
        let v2 = [
            ("content-md5", "M2E5NzY1YjgxNGRlNTBjMjg3ZjRhZWQzY2RkOTc0ZjM="),
            ("content-type", "text/xml;charset=UTF-8"),
        ];
        let p = signed("POST", "/queues/q1/messages", SAT, &v2);
        assert_eq!(code(&p, now, b"<Message/>"), (400, "InvalidDegist"));
    }
}
