//! Pushing topic notifications to HTTP endpoints, as the service does.
//!
//! Each HTTP subscription's record queue holds its notifications (rendered at publish, see
//! [`super::publish`]); a relay ([`crate::push::relay`]) delivers them. This module is the relay's
//! [`Target`]: a `POST` to the endpoint with `Content-Type`, `Content-MD5` (base64 of the hex
//! digest, as the SDKs write it), `Date`, `x-mns-request-id`, `x-mns-version`,
//! `x-mns-signing-cert-url` (base64 of the certificate's URL, served by this server at
//! [`CERT_PATH`]) and `Authorization`: base64 of the RSA-SHA1 signature of
//! `POST\n{Content-MD5}\n{Content-Type}\n{Date}\n{x-mns-* headers, sorted, name:value\n}{path}`.
//! The message's id, tag and publish time, the subscriber, subscription, topic and owner also
//! travel as `x-mns-*` headers (signed), as the service sends them. Header names go out in
//! lower case (HTTP/1 names are case-insensitive; receivers that look names up case-sensitively
//! must use lower case). Any 2xx within the push timeout is success. Retries follow the
//! subscription's NotifyStrategy: BACKOFF_RETRY retries 3 times 10–20 s apart;
//! EXPONENTIAL_DECAY_RETRY 176 times, waiting 1, 2, 4 … 256 s, then 512 s. Then the notification
//! is dropped (and logged), as the service drops it.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::error::MnsError;
use super::subscriptions::{Endpoint, Strategy, Subscription};
use super::topics::subs_ns;
use crate::auth::crypto::md5;
use crate::core::Millis;
use crate::core::model::{Delivery, QueueRecord};
use crate::push::relay::{Outgoing, Target};
use crate::push::signing::RsaSigner;
use crate::state::AppState;

/// Where this server serves the certificate that verifies its notifications.
pub const CERT_PATH: &str = "/mns-signing-cert.pem";
/// Retries of BACKOFF_RETRY and of EXPONENTIAL_DECAY_RETRY.
const BACKOFF_RETRIES: u32 = 3;
const DECAY_RETRIES: u32 = 176;

/// The relay target of one tenant's HTTP subscriptions.
pub struct Notifier {
    account: String,
    signer: Arc<RsaSigner>,
}

/// The string an HTTP notification's signature covers.
pub fn string_to_sign(
    content_md5: &str,
    content_type: &str,
    date: &str,
    mns_headers: &[(&str, &str)],
    resource: &str,
) -> String {
    let mut headers: Vec<(String, &str)> = mns_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-mns-"))
        .collect();
    headers.sort();
    let mut s = format!("POST\n{content_md5}\n{}\n{date}\n", content_type.to_ascii_lowercase());
    for (k, v) in headers {
        s.push_str(&k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push_str(resource);
    s
}

/// The path and query of a URL, as signed.
fn resource_of(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

impl Target for Notifier {
    fn request(&self, rec: &QueueRecord, d: &Delivery, now: Millis) -> Option<Outgoing> {
        let sub = Subscription::of(rec, &self.account)?;
        let Endpoint::Http(url) = &sub.endpoint else { return None };
        let parsed = reqwest::Url::parse(url).ok()?;
        let body = d.body.body.clone();
        let attr = |k: &str| d.body.attributes.get(k).cloned();
        let content_type = attr("content_type").unwrap_or_else(|| "text/xml;charset=utf-8".into());
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(hex::encode(md5(&body)));
        let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(now));
        let cert_url =
            rec.config.labels.get("cert_url").cloned().unwrap_or_else(|| format!("http://localhost{CERT_PATH}"));
        let cert_header = base64::engine::general_purpose::STANDARD.encode(cert_url);
        let request_id = hex::encode_upper(&uuid::Uuid::new_v4().as_bytes()[..12]);
        let mut mns: Vec<(&str, String)> = vec![
            ("x-mns-request-id", request_id),
            ("x-mns-signing-cert-url", cert_header),
            ("x-mns-version", super::VERSION.to_string()),
        ];
        if let Some(id) = attr("message_id") {
            mns.push(("x-mns-message-id", id));
        }
        if let Some(tag) = attr("message_tag") {
            mns.push(("x-mns-message-tag", tag));
        }
        if let Some(t) = attr("publish_time") {
            mns.push(("x-mns-publish-time", t));
        }
        mns.push(("x-mns-subscriber", self.account.clone()));
        mns.push(("x-mns-subscription-name", sub.name.clone()));
        mns.push(("x-mns-topic-name", sub.topic.clone()));
        mns.push(("x-mns-topic-owner", self.account.clone()));
        let pairs: Vec<(&str, &str)> = mns.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let to_sign = string_to_sign(&content_md5, &content_type, &date, &pairs, &resource_of(&parsed));
        let mut headers = vec![
            ("User-Agent".to_string(), "Aliyun Notification Service Agent".to_string()),
            ("Content-Type".to_string(), content_type),
            ("Content-MD5".to_string(), content_md5),
            ("Date".to_string(), date),
            ("Authorization".to_string(), self.signer.sign(to_sign.as_bytes())),
        ];
        headers.extend(mns.into_iter().map(|(k, v)| (k.to_string(), v)));
        Some(Outgoing { url: url.clone(), headers, body })
    }

    fn retry_after(&self, rec: &QueueRecord, attempts: u32) -> Option<u64> {
        let strategy = rec.config.labels.get("strategy").and_then(|s| Strategy::parse(s)).unwrap_or(Strategy::Backoff);
        retry_after(strategy, attempts)
    }
}

/// Milliseconds before the next attempt after `attempts` failed ones (`None`: give up).
pub fn retry_after(strategy: Strategy, attempts: u32) -> Option<u64> {
    match strategy {
        Strategy::Backoff if attempts <= BACKOFF_RETRIES => Some(rand::random_range(10_000..=20_000)),
        // 1, 2, 4 … 256 s, then 512 s: 176 retries over about a day.
        Strategy::ExponentialDecay if attempts <= DECAY_RETRIES => Some((1u64 << (attempts.max(1) - 1).min(9)) * 1000),
        _ => None,
    }
}

/// Starts pushing an HTTP subscription's notifications (its record queue's id).
pub async fn start(st: &AppState, tenant: &str, account: &str, sub: uuid::Uuid) {
    match st.push.rsa_signer().await {
        Ok(signer) => {
            let target = Arc::new(Notifier { account: account.to_string(), signer });
            st.push.relay(subs_ns(tenant), sub, target);
        }
        Err(e) => tracing::error!(error = %e, "no signing key: HTTP notifications are not pushed"),
    }
}

/// Starts every stored HTTP subscription of every configured tenant that has no relay running
/// (server start, and the push supervisor's rounds: subscriptions made on other nodes).
pub async fn start_all(st: &AppState) {
    for t in &st.config.tenants {
        let account = t.mns_account_id.clone().unwrap_or_else(|| crate::config::derived_mns_account_id(&t.name));
        let subs = match st.broker.all_queues_of(&subs_ns(&t.name), "").await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, tenant = %t.name, "cannot list MNS subscriptions; their HTTP notifications wait");
                continue;
            }
        };
        for q in &subs {
            if let Some(s) = Subscription::of(&q.record(), &account)
                && matches!(s.endpoint, Endpoint::Http(_))
                && !st.push.relaying(q.id())
            {
                start(st, &t.name, &account, q.id()).await;
            }
        }
    }
}

/// `GET /mns-signing-cert.pem` — the certificate of the key notifications are signed with.
pub async fn certificate(st: &AppState) -> Result<Response, MnsError> {
    let signer = st.push.rsa_signer().await?;
    Ok((StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], signer.cert_pem().to_string())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_matches_the_documented_shape() {
        let s = string_to_sign(
            "ZDgxNjY5ZjFlMDQ5MGM0YWMwMWE5ODlmZDVlYmQxYjI=",
            "text/xml;charset=utf-8",
            "Wed, 25 May 2016 10:46:14 GMT",
            &[("x-mns-version", "2015-06-06"), ("x-mns-request-id", "57458276F0E3D56D7C00054B"), ("Content-Type", "x")],
            "/notifications",
        );
        assert_eq!(
            s,
            "POST\nZDgxNjY5ZjFlMDQ5MGM0YWMwMWE5ODlmZDVlYmQxYjI=\ntext/xml;charset=utf-8\nWed, 25 May 2016 10:46:14 GMT\nx-mns-request-id:57458276F0E3D56D7C00054B\nx-mns-version:2015-06-06\n/notifications"
        );
    }

    #[test]
    fn retry_schedules() {
        for a in 1..=3 {
            let w = retry_after(Strategy::Backoff, a).unwrap();
            assert!((10_000..=20_000).contains(&w), "{w}");
        }
        assert_eq!(retry_after(Strategy::Backoff, 4), None);
        assert_eq!(retry_after(Strategy::ExponentialDecay, 1), Some(1_000));
        assert_eq!(retry_after(Strategy::ExponentialDecay, 9), Some(256_000));
        assert_eq!(retry_after(Strategy::ExponentialDecay, 10), Some(512_000));
        let total: u64 = (1..=176).map(|a| retry_after(Strategy::ExponentialDecay, a).unwrap()).sum();
        assert!((86_000_000..=86_400_000).contains(&total), "{total}");
        assert_eq!(retry_after(Strategy::ExponentialDecay, 176), Some(512_000));
        assert_eq!(retry_after(Strategy::ExponentialDecay, 177), None);
    }
}
