//! Topic operations: CreateTopic, SetTopicAttributes, GetTopicAttributes, DeleteTopic, ListTopic.
//!
//! A topic needs no model of its own: it is a queue record in an internal namespace of the
//! tenant ([`topics_ns`]) that never holds a message, and each of its subscriptions is a queue
//! record in another ([`subs_ns`], named `{topic id}/{subscription}`) whose labels hold the
//! endpoint, filter tag, strategy and format, and which holds the notifications waiting for an
//! HTTP endpoint. So topics and subscriptions are durable, listed in name order with markers and
//! shared by every node exactly like queues, on any engine. Internal namespaces end in a
//! control character no tenant name may contain, so no other dialect ever lists them.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{MnsError, host_url, xml_response};
use super::queues::{check_resource_name, list_params};
use super::xml::{Element, Writer, parse};
use super::{Ctx, empty};
use crate::core::model::{QueueConfig, QueueRecord, RetentionMode};
use crate::core::{CoreError, CreateOutcome, Queue};

/// How long a topic's notifications wait for an HTTP endpoint (the service's fixed 1 day).
pub const TOPIC_RETENTION_SECS: u64 = 86_400;

/// The namespace of a tenant's topics.
pub fn topics_ns(tenant: &str) -> String {
    format!("{tenant}\u{0}mns-topics")
}

/// The namespace of a tenant's subscriptions.
pub fn subs_ns(tenant: &str) -> String {
    format!("{tenant}\u{0}mns-subscriptions")
}

/// Attributes a `<Topic>` request document may set; `None` = not in the request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicAttrs {
    pub max_size: Option<u64>,
    pub logging: Option<bool>,
}

/// `True`/`False` in any case.
pub fn boolean(root: &Element, name: &str) -> Result<Option<bool>, MnsError> {
    match root.child(name) {
        None => Ok(None),
        Some(e) if e.text.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(e) if e.text.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(MnsError::invalid(format!("The value of {name} should be True or False."))),
    }
}

/// Parses a `<Topic>` body (empty body: nothing set).
pub fn parse_attrs(body: &[u8]) -> Result<TopicAttrs, MnsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TopicAttrs::default());
    }
    let root = parse(body).map_err(MnsError::malformed)?;
    if root.name != "Topic" {
        return Err(MnsError::malformed(format!("the root element must be Topic, not {}", root.name)));
    }
    let max_size = match root.child("MaximumMessageSize") {
        None => None,
        Some(e) => match e.text.trim().parse::<u64>() {
            Ok(n) if (1024..=65_536).contains(&n) => Some(n),
            _ => return Err(MnsError::range("MaximumMessageSize", 1024, 65_536, "bytes")),
        },
    };
    Ok(TopicAttrs { max_size, logging: boolean(&root, "LoggingEnabled")? })
}

impl TopicAttrs {
    fn apply(&self, c: &mut QueueConfig) {
        if let Some(v) = self.max_size {
            c.max_message_bytes = v;
        }
        if let Some(v) = self.logging {
            c.logging = v;
        }
    }

    fn matches(&self, c: &QueueConfig) -> bool {
        self.max_size.is_none_or(|v| v == c.max_message_bytes) && self.logging.is_none_or(|v| v == c.logging)
    }
}

/// The record a new topic starts from.
fn topic_defaults() -> QueueConfig {
    QueueConfig {
        mode: RetentionMode::WorkQueue,
        max_message_bytes: 65_536,
        retention_secs: TOPIC_RETENTION_SECS,
        priority: false,
        ..QueueConfig::default()
    }
}

/// Topic names follow the queue rules: letters, digits and `-`, 1–256 characters.
pub fn check_topic_name(name: &str) -> Result<(), MnsError> {
    check_resource_name(name, "TopicNameLengthError", "InvalidTopicName", "topic")
}

pub fn topic_url(name: &str) -> String {
    format!("{}/topics/{name}", host_url())
}

/// `TopicNotExist` for a topic that is not there.
pub fn topic_not_exist() -> MnsError {
    MnsError::new(StatusCode::NOT_FOUND, "TopicNotExist", "The topic you provided does not exist.")
}

/// Core errors about the topic's record, as topic errors.
pub fn topic_error(e: CoreError) -> MnsError {
    match e {
        CoreError::QueueNotFound => topic_not_exist(),
        CoreError::QueueExists { .. } => topic_already_exist(),
        other => other.into(),
    }
}

fn topic_already_exist() -> MnsError {
    MnsError::new(StatusCode::CONFLICT, "TopicAlreadyExist", "The topic you want to create already exists.")
}

/// Looks a topic up in the caller's tenant.
pub async fn lookup(ctx: &Ctx, name: &str) -> Result<Arc<Queue>, MnsError> {
    ctx.st.broker.queue(&topics_ns(&ctx.tenant.name), name).await.map_err(topic_error)
}

fn with_location(mut resp: Response, url: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(url) {
        resp.headers_mut().insert("location", v);
    }
    resp
}

/// `PUT /topics/{name}` — 201 new, 204 same attributes, 409 different ones.
pub async fn create(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    check_topic_name(name)?;
    let attrs = parse_attrs(&ctx.body)?;
    let mut cfg = topic_defaults();
    attrs.apply(&mut cfg);
    let url = topic_url(name);
    match ctx.st.broker.create_queue(&topics_ns(&ctx.tenant.name), name, cfg, None).await.map_err(topic_error)? {
        CreateOutcome::Created(_) => Ok(with_location(empty(StatusCode::CREATED), &url)),
        CreateOutcome::Exists(rec) if attrs.matches(&rec.config) => {
            Ok(with_location(empty(StatusCode::NO_CONTENT), &url))
        }
        CreateOutcome::Exists(_) => Err(topic_already_exist()),
    }
}

/// `PUT /topics/{name}?metaoverride=true` — only the attributes present change.
pub async fn set_attributes(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let t = lookup(ctx, name).await?;
    let attrs = parse_attrs(&ctx.body)?;
    ctx.st
        .broker
        .update_queue(&t, |c| {
            attrs.apply(c);
            Ok(())
        })
        .await
        .map_err(topic_error)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Notifications of the topic still waiting for an HTTP endpoint (its MessageCount).
async fn pending(ctx: &Ctx, topic: &Queue) -> Result<u64, MnsError> {
    let mut total = 0;
    for sub in super::subscriptions::all_of(ctx, topic).await? {
        if let Ok(info) = ctx.st.broker.info(&sub).await {
            total += info.stats.ready + info.stats.in_flight + info.stats.delayed;
        }
    }
    Ok(total)
}

/// The attribute elements GetTopicAttributes (and ListTopic with meta) carry.
fn write_attributes(w: &mut Writer, rec: &QueueRecord, message_count: u64) {
    let c = &rec.config;
    w.leaf("TopicName", &rec.name)
        .leaf("CreateTime", (rec.created_at / 1000).to_string())
        .leaf("LastModifyTime", (rec.modified_at / 1000).to_string())
        .leaf("MaximumMessageSize", c.max_message_bytes.to_string())
        .leaf("MessageRetentionPeriod", c.retention_secs.to_string())
        .leaf("MessageCount", message_count.to_string())
        .leaf("LoggingEnabled", if c.logging { "True" } else { "False" });
}

/// `GET /topics/{name}`
pub async fn get_attributes(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let t = lookup(ctx, name).await?;
    // The record as of now, not as of the lookup's cache.
    let rec = ctx.st.broker.info(&t).await.map_err(topic_error)?.record;
    let count = pending(ctx, &t).await?;
    let mut w = Writer::new("Topic");
    write_attributes(&mut w, &rec, count);
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// `DELETE /topics/{name}` — the topic and every subscription of it (with the notifications
/// still waiting for an HTTP endpoint).
pub async fn delete(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let t = lookup(ctx, name).await?;
    // The topic first: a publish racing with the deletion then finds no topic rather than
    // subscriptions half gone. Its subscriptions are named by the topic's id, so a topic created
    // later with the same name never inherits one left behind by a failure here.
    let subs = super::subscriptions::all_of(ctx, &t).await?;
    ctx.st.broker.delete_queue(&t).await.map_err(topic_error)?;
    for s in subs {
        match ctx.st.broker.delete_queue(&s).await {
            Ok(()) | Err(CoreError::QueueNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /topics` with `x-mns-prefix`, `x-mns-marker`, `x-mns-ret-number`, `x-mns-with-meta`.
pub async fn list(ctx: &Ctx) -> Result<Response, MnsError> {
    let p = list_params(ctx)?;
    let ns = topics_ns(&ctx.tenant.name);
    let (topics, more) = ctx.st.broker.list_queues(&ns, &p.prefix, p.marker.as_deref(), p.limit).await?;
    let mut w = Writer::new("Topics");
    for t in &topics {
        w.open("Topic").leaf("TopicURL", topic_url(t.name()));
        if p.with_meta
            && let Ok(info) = ctx.st.broker.info(t).await
        {
            let count = pending(ctx, t).await.unwrap_or(0);
            write_attributes(&mut w, &info.record, count);
        }
        w.close();
    }
    if more && let Some(last) = topics.last() {
        w.leaf("NextMarker", last.name());
    }
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_documents_parse_and_compare() {
        let a = parse_attrs(b"<Topic xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MaximumMessageSize>2048</MaximumMessageSize><LoggingEnabled>true</LoggingEnabled></Topic>").unwrap();
        assert_eq!(a, TopicAttrs { max_size: Some(2048), logging: Some(true) });
        let mut c = topic_defaults();
        assert!(!a.matches(&c));
        a.apply(&mut c);
        assert!(a.matches(&c));
        assert!(TopicAttrs::default().matches(&topic_defaults()));
        assert_eq!(parse_attrs(b"  ").unwrap(), TopicAttrs::default());
        assert_eq!(
            parse_attrs(b"<Topic><MaximumMessageSize>1023</MaximumMessageSize></Topic>").unwrap_err().code,
            "InvalidArgument"
        );
        assert_eq!(
            parse_attrs(b"<Topic><LoggingEnabled>yes</LoggingEnabled></Topic>").unwrap_err().code,
            "InvalidArgument"
        );
        assert_eq!(parse_attrs(b"<Queue/>").unwrap_err().code, "MalformedXML");
    }

    #[test]
    fn internal_namespaces_cannot_be_tenant_names() {
        assert!(topics_ns("t").chars().any(char::is_control));
        assert!(subs_ns("t").chars().any(char::is_control));
        assert_ne!(topics_ns("t"), subs_ns("t"));
    }
}
