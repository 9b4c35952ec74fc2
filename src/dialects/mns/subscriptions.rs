//! Subscription operations: Subscribe, Unsubscribe, GetSubscriptionAttributes,
//! SetSubscriptionAttributes, ListSubscriptionByTopic.
//!
//! A subscription is a queue record of the tenant's subscription namespace named
//! `{topic id}/{name}` (see [`super::topics`]); its labels hold what the request set. Endpoints:
//! a queue of the tenant (`acs:mns:{region}:{account}:queues/{name}`) or an HTTP(S) URL. Mail,
//! SMS and DingTalk endpoints need the vendor's delivery services and are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{MnsError, xml_response};
use super::queues::{check_resource_name, list_params};
use super::topics::{self, subs_ns, topic_url};
use super::xml::{Writer, parse};
use super::{Ctx, empty};
use crate::core::model::{QueueConfig, QueueRecord, RetentionMode};
use crate::core::{CoreError, CreateOutcome, Queue};

/// Most subscriptions one topic may have (the service's limit).
pub const MAX_PER_TOPIC: usize = 100;
/// Longest FilterTag.
const MAX_TAG: usize = 16;

/// How a failed HTTP notification is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// 3 retries, 10–20 s apart.
    Backoff,
    /// 176 retries over a day, waits doubling to 512 s.
    ExponentialDecay,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BACKOFF_RETRY" => Some(Strategy::Backoff),
            "EXPONENTIAL_DECAY_RETRY" => Some(Strategy::ExponentialDecay),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Backoff => "BACKOFF_RETRY",
            Strategy::ExponentialDecay => "EXPONENTIAL_DECAY_RETRY",
        }
    }
}

/// What a notification's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `<Notification>` document.
    Xml,
    /// A JSON object with the same fields.
    Json,
    /// The message body alone.
    Simplified,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "XML" => Some(Format::Xml),
            "JSON" => Some(Format::Json),
            "SIMPLIFIED" => Some(Format::Simplified),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Xml => "XML",
            Format::Json => "JSON",
            Format::Simplified => "SIMPLIFIED",
        }
    }
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A queue of the subscriber's tenant, by name.
    Queue(String),
    /// An HTTP(S) URL, POSTed to.
    Http(String),
}

impl Endpoint {
    /// Parses an `<Endpoint>`: `acs:mns:{region}:{account}:queues/{name}` or `http(s)://…`.
    pub fn parse(s: &str, account: &str) -> Result<Endpoint, MnsError> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = reqwest::Url::parse(s)
                .map_err(|e| MnsError::invalid(format!("The endpoint is not a valid URL: {e}.")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(MnsError::invalid("The endpoint URL has no host."));
            }
            return Ok(Endpoint::Http(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("acs:mns:") {
            // {region}:{account}:queues/{name}
            let mut parts = rest.splitn(3, ':');
            let (_region, acct, res) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let Some(name) = res.strip_prefix("queues/") else {
                return Err(MnsError::invalid(
                    "A queue endpoint has the form acs:mns:{region}:{account}:queues/{name}.",
                ));
            };
            // Any account id: code written for the service names its own account, and a queue
            // endpoint can only reach the subscriber's tenant here anyway.
            if acct.is_empty() || !acct.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MnsError::invalid(format!(
                    "The account id {acct:?} of the queue endpoint is not a number."
                )));
            }
            let _ = account;
            super::queues::check_name(name)?;
            return Ok(Endpoint::Queue(name.to_string()));
        }
        if lower.starts_with("mail:") || lower.starts_with("sms:") || lower.starts_with("dingtalk") {
            return Err(MnsError::invalid(
                "Mail, SMS and DingTalk endpoints are not supported by this server; use a queue or HTTP endpoint.",
            ));
        }
        Err(MnsError::invalid("The endpoint must be a queue (acs:mns:…:queues/{name}) or an http(s) URL."))
    }
}

/// A subscription as stored in its record's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub name: String,
    pub topic: String,
    /// As the subscriber wrote it (echoed back).
    pub endpoint_text: String,
    pub endpoint: Endpoint,
    pub filter_tag: Option<String>,
    pub strategy: Strategy,
    pub format: Format,
    pub created_at: u64,
    pub modified_at: u64,
}

impl Subscription {
    /// Reads a subscription record (None: not one of ours, or damaged).
    pub fn of(rec: &QueueRecord, account: &str) -> Option<Subscription> {
        let l = &rec.config.labels;
        let endpoint_text = l.get("endpoint")?.clone();
        Some(Subscription {
            name: rec.name.split_once('/').map(|(_, n)| n.to_string())?,
            topic: l.get("topic")?.clone(),
            endpoint: Endpoint::parse(&endpoint_text, account).ok()?,
            endpoint_text,
            filter_tag: l.get("filter_tag").cloned(),
            strategy: Strategy::parse(l.get("strategy")?)?,
            format: Format::parse(l.get("format")?)?,
            created_at: rec.created_at,
            modified_at: rec.modified_at,
        })
    }

    /// Whether a message published with `tag` reaches this subscription.
    pub fn accepts(&self, tag: Option<&str>) -> bool {
        match &self.filter_tag {
            None => true,
            Some(f) => tag == Some(f.as_str()),
        }
    }
}

/// The record name of subscription `name` of topic `topic`.
fn record_name(topic: &Queue, name: &str) -> String {
    format!("{}/{name}", topic.id().simple())
}

pub fn subscription_url(topic: &str, name: &str) -> String {
    format!("{}/subscriptions/{name}", topic_url(topic))
}

fn subscription_not_exist() -> MnsError {
    MnsError::new(StatusCode::NOT_FOUND, "SubscriptionNotExist", "The subscription you provided does not exist.")
}

fn subscription_already_exist() -> MnsError {
    MnsError::new(
        StatusCode::CONFLICT,
        "SubscriptionAlreadyExist",
        "The subscription you want to create already exists.",
    )
}

fn sub_error(e: CoreError) -> MnsError {
    match e {
        CoreError::QueueNotFound => subscription_not_exist(),
        CoreError::QueueExists { .. } => subscription_already_exist(),
        other => other.into(),
    }
}

/// What a `<Subscription>` document sets; `None` = not in the request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubAttrs {
    pub endpoint: Option<String>,
    pub filter_tag: Option<String>,
    pub strategy: Option<Strategy>,
    pub format: Option<Format>,
}

pub fn parse_attrs(body: &[u8]) -> Result<SubAttrs, MnsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SubAttrs::default());
    }
    let root = parse(body).map_err(MnsError::malformed)?;
    if root.name != "Subscription" {
        return Err(MnsError::malformed(format!("the root element must be Subscription, not {}", root.name)));
    }
    let text = |n: &str| root.child(n).map(|e| e.text.trim().to_string()).filter(|t| !t.is_empty());
    let filter_tag = text("FilterTag");
    if let Some(t) = &filter_tag
        && t.chars().count() > MAX_TAG
    {
        return Err(MnsError::range("FilterTag length", 1, MAX_TAG as u64, "characters"));
    }
    let strategy = match text("NotifyStrategy") {
        None => None,
        Some(s) => Some(
            Strategy::parse(&s)
                .ok_or_else(|| MnsError::invalid("NotifyStrategy must be BACKOFF_RETRY or EXPONENTIAL_DECAY_RETRY."))?,
        ),
    };
    let format = match text("NotifyContentFormat") {
        None => None,
        Some(s) => Some(
            Format::parse(&s)
                .ok_or_else(|| MnsError::invalid("NotifyContentFormat must be XML, JSON or SIMPLIFIED."))?,
        ),
    };
    Ok(SubAttrs { endpoint: text("Endpoint"), filter_tag, strategy, format })
}

/// Looks a subscription up under a topic.
async fn lookup(ctx: &Ctx, topic: &Queue, name: &str) -> Result<Arc<Queue>, MnsError> {
    ctx.st.broker.queue(&subs_ns(&ctx.tenant.name), &record_name(topic, name)).await.map_err(sub_error)
}

/// Every subscription record of a topic, by name.
pub async fn all_of(ctx: &Ctx, topic: &Queue) -> Result<Vec<Arc<Queue>>, MnsError> {
    all_records(&ctx.st.broker, &ctx.tenant.name, topic).await.map_err(MnsError::from)
}

/// Every subscription record of a topic, by name (the publisher's view).
pub async fn all_records(
    broker: &crate::core::Broker,
    tenant: &str,
    topic: &Queue,
) -> Result<Vec<Arc<Queue>>, CoreError> {
    broker.all_queues_of(&subs_ns(tenant), &format!("{}/", topic.id().simple())).await
}

/// `PUT /topics/{t}/subscriptions/{s}` — 201 new, 204 same attributes, 409 different ones.
pub async fn subscribe(ctx: &Ctx, topic_name: &str, name: &str) -> Result<Response, MnsError> {
    check_resource_name(name, "SubscriptionNameLengthError", "InvalidSubscriptionName", "subscription")?;
    let topic = topics::lookup(ctx, topic_name).await?;
    let attrs = parse_attrs(&ctx.body)?;
    let endpoint_text = attrs.endpoint.clone().ok_or_else(|| MnsError::invalid("The Endpoint is missing."))?;
    let endpoint = Endpoint::parse(&endpoint_text, &ctx.tenant.mns_account)?;
    if let Endpoint::Http(url) = &endpoint {
        ctx.st
            .push
            .check_relay_target(url)
            .await
            .map_err(|why| MnsError::invalid(format!("The endpoint is refused: {why}.")))?;
    }
    let strategy = attrs.strategy.unwrap_or(Strategy::Backoff);
    let format = attrs.format.unwrap_or(Format::Xml);
    let mut labels = BTreeMap::new();
    labels.insert("endpoint".to_string(), endpoint_text.clone());
    labels.insert("topic".to_string(), topic_name.to_string());
    labels.insert("strategy".to_string(), strategy.name().to_string());
    labels.insert("format".to_string(), format.name().to_string());
    if let Some(t) = &attrs.filter_tag {
        labels.insert("filter_tag".to_string(), t.clone());
    }
    if matches!(endpoint, Endpoint::Http(_)) {
        // Notifications name the certificate by the address the subscriber reached us at.
        labels.insert("cert_url".to_string(), format!("{}{}", super::error::host_url(), super::notify::CERT_PATH));
    }
    let cfg = QueueConfig {
        mode: RetentionMode::WorkQueue,
        // One push attempt's lease; the notifier moves it to the next retry on failure.
        visibility_timeout_secs: 60,
        max_message_bytes: 1 << 20,
        retention_secs: topics::TOPIC_RETENTION_SECS,
        priority: false,
        labels,
        ..QueueConfig::default()
    };
    if all_of(ctx, &topic).await?.len() >= MAX_PER_TOPIC {
        let exists = lookup(ctx, &topic, name).await.is_ok();
        if !exists {
            return Err(MnsError::new(
                StatusCode::BAD_REQUEST,
                "SubscriptionOverLimit",
                format!("A topic has at most {MAX_PER_TOPIC} subscriptions."),
            ));
        }
    }
    let url = subscription_url(topic_name, name);
    let ns = subs_ns(&ctx.tenant.name);
    let created = match ctx.st.broker.create_queue(&ns, &record_name(&topic, name), cfg.clone(), None).await {
        Ok(o) => o,
        Err(e) => return Err(sub_error(e)),
    };
    // The topic may have been deleted while we created: leave no subscription behind it.
    if topics::lookup(ctx, topic_name).await.is_err() {
        if let CreateOutcome::Created(rec) = &created
            && let Ok(q) = ctx.st.broker.queue_by_id(&ns, rec.id).await
        {
            let _ = ctx.st.broker.delete_queue(&q).await;
        }
        return Err(topics::topic_not_exist());
    }
    let status = match created {
        CreateOutcome::Created(rec) => {
            if matches!(endpoint, Endpoint::Http(_)) {
                // In the background: the first HTTP subscription creates the signing key, which
                // takes a moment the Subscribe answer need not wait for.
                let (st, tenant, account) = (ctx.st.clone(), ctx.tenant.name.clone(), ctx.tenant.mns_account.clone());
                tokio::spawn(async move { super::notify::start(&st, &tenant, &account, rec.id).await });
            }
            StatusCode::CREATED
        }
        CreateOutcome::Exists(rec) => {
            // Same endpoint, tag and (when given) strategy and format: the same subscription.
            let same = rec.config.labels.get("endpoint") == cfg.labels.get("endpoint")
                && rec.config.labels.get("filter_tag") == cfg.labels.get("filter_tag")
                && (attrs.strategy.is_none() || rec.config.labels.get("strategy") == cfg.labels.get("strategy"))
                && (attrs.format.is_none() || rec.config.labels.get("format") == cfg.labels.get("format"));
            if !same {
                return Err(subscription_already_exist());
            }
            StatusCode::NO_CONTENT
        }
    };
    let mut resp = empty(status);
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

/// `DELETE /topics/{t}/subscriptions/{s}` — 204.
pub async fn unsubscribe(ctx: &Ctx, topic_name: &str, name: &str) -> Result<Response, MnsError> {
    let topic = topics::lookup(ctx, topic_name).await?;
    let sub = lookup(ctx, &topic, name).await?;
    ctx.st.broker.delete_queue(&sub).await.map_err(sub_error)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `PUT /topics/{t}/subscriptions/{s}?metaoverride=true` — NotifyStrategy (the one attribute
/// the service lets change).
pub async fn set_attributes(ctx: &Ctx, topic_name: &str, name: &str) -> Result<Response, MnsError> {
    let topic = topics::lookup(ctx, topic_name).await?;
    let sub = lookup(ctx, &topic, name).await?;
    let attrs = parse_attrs(&ctx.body)?;
    if attrs.endpoint.is_some() || attrs.filter_tag.is_some() || attrs.format.is_some() {
        return Err(MnsError::invalid(
            "Only NotifyStrategy can be changed; Endpoint, FilterTag and NotifyContentFormat are fixed.",
        ));
    }
    if let Some(s) = attrs.strategy {
        ctx.st
            .broker
            .update_queue(&sub, |c| {
                c.labels.insert("strategy".to_string(), s.name().to_string());
                Ok(())
            })
            .await
            .map_err(sub_error)?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

fn write_attributes(w: &mut Writer, s: &Subscription, account: &str) {
    w.leaf("SubscriptionName", &s.name)
        .leaf("Subscriber", account)
        .leaf("TopicOwner", account)
        .leaf("TopicName", &s.topic)
        .leaf("Endpoint", &s.endpoint_text)
        .leaf("NotifyStrategy", s.strategy.name())
        .leaf("NotifyContentFormat", s.format.name())
        .leaf("FilterTag", s.filter_tag.as_deref().unwrap_or(""))
        .leaf("CreateTime", (s.created_at / 1000).to_string())
        .leaf("LastModifyTime", (s.modified_at / 1000).to_string());
}

/// `GET /topics/{t}/subscriptions/{s}`
pub async fn get_attributes(ctx: &Ctx, topic_name: &str, name: &str) -> Result<Response, MnsError> {
    let topic = topics::lookup(ctx, topic_name).await?;
    let sub = lookup(ctx, &topic, name).await?;
    let rec = ctx.st.broker.info(&sub).await.map_err(sub_error)?.record;
    let s = Subscription::of(&rec, &ctx.tenant.mns_account).ok_or_else(MnsError::internal)?;
    let mut w = Writer::new("Subscription");
    write_attributes(&mut w, &s, &ctx.tenant.mns_account);
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// `GET /topics/{t}/subscriptions` with the List headers.
pub async fn list(ctx: &Ctx, topic_name: &str) -> Result<Response, MnsError> {
    let p = list_params(ctx)?;
    let topic = topics::lookup(ctx, topic_name).await?;
    let base = format!("{}/", topic.id().simple());
    let prefix = format!("{base}{}", p.prefix);
    let after = p.marker.as_ref().map(|m| format!("{base}{m}"));
    let ns = subs_ns(&ctx.tenant.name);
    let (subs, more) = ctx.st.broker.list_queues(&ns, &prefix, after.as_deref(), p.limit).await?;
    let mut w = Writer::new("Subscriptions");
    let mut last = None;
    for q in &subs {
        let name = q.name().strip_prefix(&base).unwrap_or(q.name());
        w.open("Subscription").leaf("SubscriptionURL", subscription_url(topic_name, name));
        if p.with_meta
            && let Some(s) = Subscription::of(&q.record(), &ctx.tenant.mns_account)
        {
            write_attributes(&mut w, &s, &ctx.tenant.mns_account);
        }
        w.close();
        last = Some(name.to_string());
    }
    if more && let Some(last) = last {
        w.leaf("NextMarker", last);
    }
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let acct = "1234567890123456";
        assert_eq!(
            Endpoint::parse("acs:mns:cn-hangzhou:1234567890123456:queues/q-1", acct).unwrap(),
            Endpoint::Queue("q-1".into())
        );
        assert_eq!(
            Endpoint::parse("acs:mns:cn-hangzhou:1:queues/bad_name", acct).unwrap_err().code,
            "InvalidQueueName"
        );
        assert_eq!(Endpoint::parse("acs:mns:cn-beijing:999:queues/q", acct).unwrap(), Endpoint::Queue("q".into()));
        assert_eq!(
            Endpoint::parse("http://example.com/x", acct).unwrap(),
            Endpoint::Http("http://example.com/x".into())
        );
        for bad in [
            "acs:mns:cn-hangzhou:abc:queues/q",
            "acs:mns:cn-hangzhou:1234567890123456:topics/t",
            "mail:directmail:a@b.c",
            "ftp://x",
            "http://",
        ] {
            assert_eq!(Endpoint::parse(bad, acct).unwrap_err().code, "InvalidArgument", "{bad}");
        }
    }

    #[test]
    fn subscription_documents() {
        let a = parse_attrs(b"<Subscription><Endpoint>http://h/x</Endpoint><FilterTag>important</FilterTag><NotifyStrategy>EXPONENTIAL_DECAY_RETRY</NotifyStrategy><NotifyContentFormat>SIMPLIFIED</NotifyContentFormat></Subscription>").unwrap();
        assert_eq!(a.endpoint.as_deref(), Some("http://h/x"));
        assert_eq!(a.filter_tag.as_deref(), Some("important"));
        assert_eq!(a.strategy, Some(Strategy::ExponentialDecay));
        assert_eq!(a.format, Some(Format::Simplified));
        assert!(parse_attrs(b"<Subscription><NotifyStrategy>NEVER</NotifyStrategy></Subscription>").is_err());
        assert!(parse_attrs(b"<Subscription><NotifyContentFormat>YAML</NotifyContentFormat></Subscription>").is_err());
        assert!(parse_attrs(b"<Subscription><FilterTag>12345678901234567</FilterTag></Subscription>").is_err());
        assert_eq!(parse_attrs(b"<Topic/>").unwrap_err().code, "MalformedXML");
    }
}
