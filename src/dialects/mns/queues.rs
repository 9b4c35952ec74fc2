//! Queue operations: CreateQueue, SetQueueAttributes, GetQueueAttributes, DeleteQueue, ListQueue.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{MnsError, host_url, xml_response};
use super::xml::{Element, Writer, parse};
use super::{Ctx, empty};
use crate::core::model::{QueueConfig, QueueInfo, QueueRecord, RetentionMode};
use crate::core::{CoreError, CreateOutcome, Queue};

/// Attributes a `<Queue>` request document may set; `None` = not in the request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub delay: Option<u64>,
    pub max_size: Option<u64>,
    pub retention: Option<u64>,
    pub visibility: Option<u64>,
    pub polling: Option<u64>,
    pub logging: Option<bool>,
}

fn number(root: &Element, name: &str, lo: u64, hi: u64, unit: &str) -> Result<Option<u64>, MnsError> {
    let Some(e) = root.child(name) else { return Ok(None) };
    let text = e.text.trim();
    let n: u64 = text.parse().map_err(|_| MnsError::range(name, lo, hi, unit))?;
    if n < lo || n > hi {
        return Err(MnsError::range(name, lo, hi, unit));
    }
    Ok(Some(n))
}

/// Parses a `<Queue>` body (empty body: nothing set).
pub fn parse_attrs(body: &[u8]) -> Result<Attrs, MnsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Attrs::default());
    }
    let root = parse(body).map_err(MnsError::malformed)?;
    if root.name != "Queue" {
        return Err(MnsError::malformed(format!("the root element must be Queue, not {}", root.name)));
    }
    let logging = match root.child("LoggingEnabled") {
        None => None,
        Some(e) if e.text.trim().eq_ignore_ascii_case("true") => Some(true),
        Some(e) if e.text.trim().eq_ignore_ascii_case("false") => Some(false),
        Some(_) => return Err(MnsError::invalid("The value of LoggingEnabled should be True or False.")),
    };
    Ok(Attrs {
        delay: number(&root, "DelaySeconds", 0, 604_800, "seconds")?,
        max_size: number(&root, "MaximumMessageSize", 1024, 65_536, "bytes")?,
        // Current docs say 604800; older ones (and the Go SDK) 1296000: accept both.
        retention: number(&root, "MessageRetentionPeriod", 60, 1_296_000, "seconds")?,
        visibility: number(&root, "VisibilityTimeout", 1, 43_200, "seconds")?,
        polling: number(&root, "PollingWaitSeconds", 0, 30, "seconds")?,
        logging,
    })
}

impl Attrs {
    pub fn apply(&self, c: &mut QueueConfig) {
        if let Some(v) = self.delay {
            c.delay_secs = v;
        }
        if let Some(v) = self.max_size {
            c.max_message_bytes = v;
        }
        if let Some(v) = self.retention {
            c.retention_secs = v;
        }
        if let Some(v) = self.visibility {
            c.visibility_timeout_secs = v;
        }
        if let Some(v) = self.polling {
            c.polling_wait_secs = v;
        }
        if let Some(v) = self.logging {
            c.logging = v;
        }
    }

    /// Whether every attribute present in the request equals the queue's.
    pub fn matches(&self, c: &QueueConfig) -> bool {
        self.delay.is_none_or(|v| v == c.delay_secs)
            && self.max_size.is_none_or(|v| v == c.max_message_bytes)
            && self.retention.is_none_or(|v| v == c.retention_secs)
            && self.visibility.is_none_or(|v| v == c.visibility_timeout_secs)
            && self.polling.is_none_or(|v| v == c.polling_wait_secs)
            && self.logging.is_none_or(|v| v == c.logging)
    }
}

/// The configuration of a queue created through MNS before its request attributes apply.
pub fn mns_defaults() -> QueueConfig {
    QueueConfig {
        mode: RetentionMode::WorkQueue,
        visibility_timeout_secs: 30,
        delay_secs: 0,
        max_message_bytes: 65_536,
        retention_secs: 345_600,
        polling_wait_secs: 0,
        priority: true,
        ..QueueConfig::default()
    }
}

/// Queue names: letters, digits and `-`, starting with a letter or digit, 1-256 characters.
pub fn check_name(name: &str) -> Result<(), MnsError> {
    check_resource_name(name, "QueueNameLengthError", "InvalidQueueName", "queue")
}

/// The naming rule queues, topics and subscriptions share, with each kind's error codes.
pub fn check_resource_name(
    name: &str,
    length_code: &'static str,
    invalid_code: &'static str,
    kind: &str,
) -> Result<(), MnsError> {
    if name.is_empty() || name.len() > 256 {
        return Err(MnsError::new(
            StatusCode::BAD_REQUEST,
            length_code,
            format!("The length of {kind} name should be between 1 and 256."),
        ));
    }
    let ok = name.as_bytes()[0].is_ascii_alphanumeric() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(MnsError::new(
            StatusCode::BAD_REQUEST,
            invalid_code,
            format!("The {kind} name you provided is invalid."),
        ));
    }
    Ok(())
}

/// The paging headers of the List operations.
pub struct ListParams {
    pub prefix: String,
    pub marker: Option<String>,
    pub limit: usize,
    pub with_meta: bool,
}

/// Reads `x-mns-prefix`, `x-mns-marker`, `x-mns-ret-number` (1–1000, default 1000) and
/// `x-mns-with-meta`.
pub fn list_params(ctx: &Ctx) -> Result<ListParams, MnsError> {
    let prefix = ctx.header("x-mns-prefix").unwrap_or("").trim().to_string();
    let marker = ctx.header("x-mns-marker").map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
    let limit = match ctx.header("x-mns-ret-number").map(str::trim) {
        None | Some("") => 1000,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(MnsError::range("x-mns-ret-number", 1, 1000, "")),
        },
    };
    let with_meta = ctx.header("x-mns-with-meta").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok(ListParams { prefix, marker, limit, with_meta })
}

fn queue_url(name: &str) -> String {
    format!("{}/queues/{name}", host_url())
}

fn with_location(mut resp: Response, name: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&queue_url(name)) {
        resp.headers_mut().insert("location", v);
    }
    resp
}

/// Looks a queue up in the caller's tenant.
pub async fn lookup(ctx: &Ctx, name: &str) -> Result<std::sync::Arc<Queue>, MnsError> {
    ctx.st.broker.queue(&ctx.tenant.name, name).await.map_err(MnsError::from)
}

/// `PUT /queues/{name}` — 201 new, 204 same attributes, 409 different ones.
pub async fn create(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    check_name(name)?;
    let attrs = parse_attrs(&ctx.body)?;
    let mut cfg = mns_defaults();
    attrs.apply(&mut cfg);
    match ctx.st.broker.create_queue(&ctx.tenant.name, name, cfg, None).await? {
        CreateOutcome::Created(_) => Ok(with_location(empty(StatusCode::CREATED), name)),
        CreateOutcome::Exists(rec) if attrs.matches(&rec.config) => {
            Ok(with_location(empty(StatusCode::NO_CONTENT), name))
        }
        CreateOutcome::Exists(_) => Err(CoreError::QueueExists { same: false }.into()),
    }
}

/// `PUT /queues/{name}?metaoverride=true` — only the attributes present change.
pub async fn set_attributes(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let q = lookup(ctx, name).await?;
    let attrs = parse_attrs(&ctx.body)?;
    ctx.st
        .broker
        .update_queue(&q, |c| {
            attrs.apply(c);
            Ok(())
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The twelve attribute elements GetQueueAttributes (and ListQueue with meta) carry.
fn write_attributes(w: &mut Writer, rec: &QueueRecord, info: &QueueInfo) {
    let c = &rec.config;
    w.leaf("QueueName", &rec.name)
        .leaf("CreateTime", (rec.created_at / 1000).to_string())
        .leaf("LastModifyTime", (rec.modified_at / 1000).to_string())
        .leaf("DelaySeconds", c.delay_secs.to_string())
        .leaf("MaximumMessageSize", c.max_message_bytes.to_string())
        .leaf("MessageRetentionPeriod", c.retention_secs.to_string())
        .leaf("VisibilityTimeout", c.visibility_timeout_secs.to_string())
        .leaf("PollingWaitSeconds", c.polling_wait_secs.to_string())
        .leaf("ActiveMessages", info.stats.ready.to_string())
        .leaf("InactiveMessages", info.stats.in_flight.to_string())
        .leaf("DelayMessages", info.stats.delayed.to_string())
        .leaf("LoggingEnabled", if c.logging { "True" } else { "False" });
}

/// `GET /queues/{name}`
pub async fn get_attributes(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let q = lookup(ctx, name).await?;
    let info = ctx.st.broker.info(&q).await?;
    let mut w = Writer::new("Queue");
    write_attributes(&mut w, &info.record, &info);
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// `DELETE /queues/{name}` — 204; a missing queue is QueueNotExist.
pub async fn delete(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let q = lookup(ctx, name).await?;
    ctx.st.broker.delete_queue(&q).await?;
    ctx.st.push.forget_queue(&ctx.tenant.name, name).await;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /queues` with `x-mns-prefix`, `x-mns-marker`, `x-mns-ret-number`, `x-mns-with-meta`.
pub async fn list(ctx: &Ctx) -> Result<Response, MnsError> {
    let ListParams { prefix, marker, limit, with_meta } = list_params(ctx)?;
    let (queues, more) = ctx.st.broker.list_queues(&ctx.tenant.name, &prefix, marker.as_deref(), limit).await?;
    let mut w = Writer::new("Queues");
    for q in &queues {
        w.open("Queue").leaf("QueueURL", queue_url(q.name()));
        if with_meta && let Ok(info) = ctx.st.broker.info(q).await {
            write_attributes(&mut w, &info.record, &info);
        }
        w.close();
    }
    if more && let Some(last) = queues.last() {
        w.leaf("NextMarker", last.name());
    }
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_sdk_defaults_parse_and_compare() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Queue xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><VisibilityTimeout>30</VisibilityTimeout><MaximumMessageSize>2048</MaximumMessageSize><MessageRetentionPeriod>86400</MessageRetentionPeriod><DelaySeconds>0</DelaySeconds><PollingWaitSeconds>0</PollingWaitSeconds><LoggingEnabled>True</LoggingEnabled></Queue>";
        let a = parse_attrs(body).unwrap();
        assert_eq!(a.max_size, Some(2048));
        assert_eq!(a.logging, Some(true));
        let mut c = mns_defaults();
        assert!(!a.matches(&c));
        a.apply(&mut c);
        assert!(a.matches(&c));
        assert!(Attrs::default().matches(&mns_defaults()));
        assert_eq!(parse_attrs(b"").unwrap(), Attrs::default());
    }

    #[test]
    fn ranges_and_names() {
        for bad in [
            "<Queue><VisibilityTimeout>0</VisibilityTimeout></Queue>",
            "<Queue><MaximumMessageSize>65537</MaximumMessageSize></Queue>",
            "<Queue><PollingWaitSeconds>31</PollingWaitSeconds></Queue>",
            "<Queue><DelaySeconds>-1</DelaySeconds></Queue>",
            "<Queue><DelaySeconds>abc</DelaySeconds></Queue>",
            "<Queue><LoggingEnabled>maybe</LoggingEnabled></Queue>",
        ] {
            assert_eq!(parse_attrs(bad.as_bytes()).unwrap_err().code, "InvalidArgument", "{bad}");
        }
        assert_eq!(parse_attrs(b"<Queue>").unwrap_err().code, "MalformedXML");
        assert_eq!(parse_attrs(b"<Topic/>").unwrap_err().code, "MalformedXML");
        assert!(check_name("q-1").is_ok());
        assert_eq!(check_name("-q").unwrap_err().code, "InvalidQueueName");
        assert_eq!(check_name("a_b").unwrap_err().code, "InvalidQueueName");
        assert_eq!(check_name(&"a".repeat(257)).unwrap_err().code, "QueueNameLengthError");
    }
}
