//! PublishMessage: a topic's fan-out.
//!
//! A published message becomes one notification per subscription whose FilterTag admits it,
//! rendered in the subscription's NotifyContentFormat. A queue endpoint's notification is sent
//! into that queue; an HTTP endpoint's is stored in the subscription's own record queue, from
//! which [`super::notify`] pushes it. Every notification is published before the answer, and
//! each publish returns once durable, so an answered PublishMessage is in every queue endpoint
//! and scheduled, durably, for every HTTP endpoint. The publishes run concurrently: on the
//! embedded engine they share one group commit.

use axum::http::StatusCode;
use axum::response::Response;
use futures_util::future::join_all;
use serde_json::json;

use super::Ctx;
use super::error::{MnsError, xml_response};
use super::messages::body_md5;
use super::subscriptions::{Endpoint, Format, Subscription, all_records};
use super::topics::{self, topic_error};
use super::xml::{Element, Writer, parse};
use crate::core::model::NewMessage;
use crate::core::{CoreError, Millis};

/// Longest MessageTag.
const MAX_TAG: usize = 16;

/// A message as published to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub body: String,
    pub md5: String,
    pub tag: Option<String>,
    pub at: Millis,
}

/// The fields of a notification besides the message.
pub struct Context<'a> {
    pub account: &'a str,
    pub topic: &'a str,
    pub subscription: &'a str,
}

/// A notification body in a subscription's format, and its content type.
pub fn render(format: Format, cx: &Context<'_>, m: &Published) -> (String, &'static str) {
    match format {
        Format::Simplified => (m.body.clone(), "text/plain;charset=utf-8"),
        Format::Xml => {
            let mut w = Writer::new("Notification");
            w.leaf("TopicOwner", cx.account)
                .leaf("TopicName", cx.topic)
                .leaf("Subscriber", cx.account)
                .leaf("SubscriptionName", cx.subscription)
                .leaf("MessageId", &m.id)
                .leaf("Message", &m.body)
                .leaf("MessageMD5", &m.md5)
                .leaf("MessageTag", m.tag.as_deref().unwrap_or(""))
                .leaf("PublishTime", m.at.to_string());
            (w.finish(), "text/xml;charset=utf-8")
        }
        Format::Json => {
            let mut v = json!({
                "TopicOwner": cx.account,
                "TopicName": cx.topic,
                "Subscriber": cx.account,
                "SubscriptionName": cx.subscription,
                "MessageId": m.id,
                "MessageMD5": m.md5,
                "Message": m.body,
                // A string, as the service writes it.
                "PublishTime": m.at.to_string(),
            });
            if let Some(t) = &m.tag {
                v["MessageTag"] = json!(t);
            }
            (v.to_string(), "application/json;charset=utf-8")
        }
    }
}

/// Reads a `<Message>` of PublishMessage against the topic's size limit.
pub fn parse_message(root: &Element, max_size: u64) -> Result<(String, Option<String>), MnsError> {
    if root.name != "Message" {
        return Err(MnsError::malformed(format!("the root element must be Message, not {}", root.name)));
    }
    let body = root.child("MessageBody").map(|b| b.text.clone()).unwrap_or_default();
    if body.is_empty() || body.len() as u64 > max_size {
        return Err(MnsError::range("MessageBody", 1, max_size, "bytes"));
    }
    let tag = root.child("MessageTag").map(|t| t.text.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = &tag
        && t.chars().count() > MAX_TAG
    {
        return Err(MnsError::range("MessageTag length", 1, MAX_TAG as u64, "characters"));
    }
    Ok((body, tag))
}

/// `POST /topics/{name}/messages`
pub async fn publish(ctx: &Ctx, topic_name: &str) -> Result<Response, MnsError> {
    let topic = topics::lookup(ctx, topic_name).await?;
    let root = parse(&ctx.body).map_err(MnsError::malformed)?;
    let (body, tag) = parse_message(&root, topic.config().max_message_bytes)?;
    let m = Published {
        id: uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase(),
        md5: body_md5(body.as_bytes()),
        body,
        tag,
        at: ctx.st.broker.now(),
    };
    let broker = &ctx.st.broker;
    let tenant = &ctx.tenant;
    let subs = all_records(broker, &tenant.name, &topic).await.map_err(topic_error)?;
    let mut sends = Vec::new();
    for rec in subs {
        let Some(sub) = Subscription::of(&rec.record(), &tenant.mns_account) else { continue };
        if !sub.accepts(m.tag.as_deref()) {
            continue;
        }
        let cx = Context { account: &tenant.mns_account, topic: topic_name, subscription: &sub.name };
        let (text, content_type) = render(sub.format, &cx, &m);
        let m = &m;
        sends.push(async move {
            match &sub.endpoint {
                Endpoint::Queue(name) => {
                    let q = match broker.queue(&tenant.name, name).await {
                        Ok(q) => q,
                        // The service drops notifications for a queue that is gone.
                        Err(CoreError::QueueNotFound) => {
                            tracing::info!(topic = topic_name, subscription = %sub.name, queue = %name, "queue endpoint does not exist; notification dropped");
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    };
                    broker.publish(&q, vec![NewMessage::text(text.into_bytes())]).await.map(|_| ())
                }
                Endpoint::Http(_) => {
                    let mut n = NewMessage::text(text.into_bytes());
                    n.attributes.insert("message_id".into(), m.id.clone());
                    n.attributes.insert("content_type".into(), content_type.into());
                    n.attributes.insert("publish_time".into(), m.at.to_string());
                    if let Some(t) = &m.tag {
                        n.attributes.insert("message_tag".into(), t.clone());
                    }
                    match broker.publish(&rec, vec![n]).await {
                        // Unsubscribed meanwhile: nothing to deliver to.
                        Err(CoreError::QueueNotFound) => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
            }
        });
    }
    for r in join_all(sends).await {
        r?;
    }
    let mut w = Writer::new("Message");
    w.leaf("MessageId", &m.id).leaf("MessageBodyMD5", &m.md5);
    Ok(xml_response(StatusCode::CREATED, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Published {
        Published {
            id: "ID1".into(),
            body: "a<b".into(),
            md5: "MD5".into(),
            tag: Some("t".into()),
            at: 1_449_556_920_975,
        }
    }

    #[test]
    fn notification_formats() {
        let cx = Context { account: "1234", topic: "top", subscription: "sub" };
        let (xml, ct) = render(Format::Xml, &cx, &sample());
        assert_eq!(ct, "text/xml;charset=utf-8");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Notification xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><TopicOwner>1234</TopicOwner><TopicName>top</TopicName><Subscriber>1234</Subscriber><SubscriptionName>sub</SubscriptionName><MessageId>ID1</MessageId><Message>a&lt;b</Message><MessageMD5>MD5</MessageMD5><MessageTag>t</MessageTag><PublishTime>1449556920975</PublishTime></Notification>"
        );
        let (simple, _) = render(Format::Simplified, &cx, &sample());
        assert_eq!(simple, "a<b");
        let (j, _) = render(Format::Json, &cx, &sample());
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["Message"], "a<b");
        assert_eq!(v["MessageTag"], "t");
        assert_eq!(v["PublishTime"], "1449556920975");
        assert_eq!(v["TopicOwner"], "1234");
    }

    #[test]
    fn publish_documents() {
        let root = parse(b"<Message><MessageBody>hi</MessageBody><MessageTag>tag</MessageTag></Message>").unwrap();
        assert_eq!(parse_message(&root, 10).unwrap(), ("hi".to_string(), Some("tag".to_string())));
        let big = parse(b"<Message><MessageBody>0123456789A</MessageBody></Message>").unwrap();
        assert_eq!(parse_message(&big, 10).unwrap_err().code, "InvalidArgument");
        let empty = parse(b"<Message><MessageBody></MessageBody></Message>").unwrap();
        assert!(parse_message(&empty, 10).is_err());
        let long_tag =
            parse(b"<Message><MessageBody>x</MessageBody><MessageTag>12345678901234567</MessageTag></Message>")
                .unwrap();
        assert!(parse_message(&long_tag, 10).is_err());
    }
}
