//! The MNS request signature (V1, `Authorization: MNS id:signature`), as a pure function.
//!
//! ```text
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedMNSHeaders CanonicalizedResource
//! Signature    = base64(HMAC-SHA1(secret, StringToSign))
//! ```
//! CanonicalizedMNSHeaders are the `x-mns-*` headers, names lower-cased, values trimmed, sorted,
//! each `name:value\n`. CanonicalizedResource is the request target **exactly as sent**: raw path
//! and query, not decoded, not re-encoded, not sorted (the SDKs put receipt handles with `+ / =`
//! into URLs unescaped and sign what they send). Tested against the vectors of specs/mns.md §4.2.

use crate::auth::crypto::{base64, ct_eq, hmac_sha1};

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
    fn spec_vectors() {
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
}
