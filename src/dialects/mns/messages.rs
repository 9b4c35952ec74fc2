//! Message operations on `/queues/{name}/messages`: SendMessage, BatchSendMessage,
//! ReceiveMessage, BatchReceiveMessage, PeekMessage, BatchPeekMessage, DeleteMessage,
//! BatchDeleteMessage, ChangeMessageVisibility.

use axum::http::StatusCode;
use axum::response::Response;

use super::error::{MnsError, xml_response};
use super::queues::lookup;
use base64::Engine as _;

use super::properties;
use super::xml::{Element, Writer, parse};
use super::{Ctx, empty};
use crate::core::model::{DEFAULT_GROUP, Delivery, NewMessage, Peeked};
use crate::core::{CoreError, ReceiveOptions};

/// The queue for message traffic: a handle this node may have cached (see
/// `Broker::queue_cached`); the broker's message operations retry when it is out of date.
async fn traffic(ctx: &Ctx, name: &str) -> Result<std::sync::Arc<crate::core::Queue>, MnsError> {
    ctx.st.broker.queue_cached(&ctx.tenant.name, name).await.map_err(MnsError::from)
}

/// Most messages in one batch call.
const MAX_BATCH: usize = 16;
/// Longest a receive is held: under the Node SDK's 30 s idle-socket timeout.
const MAX_POLL_MS: u64 = 29_500;
/// Most message-body bytes in one BatchSendMessage.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Upper-case hex MD5 of the body text, as MNS reports it.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode_upper(crate::auth::crypto::md5(body))
}

/// One `<Message>` of a send request, validated against the queue's limits. With base64
/// bodies (the tenant's `mns_body_encoding`), a body that decodes is stored decoded.
fn message_of(e: &Element, max_size: u64, base64_bodies: bool) -> Result<NewMessage, MnsError> {
    let body = e.child("MessageBody").map(|b| b.text.as_str()).unwrap_or("");
    if body.is_empty() || body.len() as u64 > max_size {
        return Err(MnsError::range("MessageBody", 1, max_size, "bytes"));
    }
    let num = |name: &str, lo: u64, hi: u64, unit: &str| -> Result<Option<u64>, MnsError> {
        match e.child(name) {
            None => Ok(None),
            Some(c) => match c.text.trim().parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(MnsError::range(name, lo, hi, unit)),
            },
        }
    };
    let delay = num("DelaySeconds", 0, 604_800, "seconds")?;
    let priority = num("Priority", 1, 16, "")?;
    let attributes = properties::read(e)?;
    let order_key = properties::group_id(e)?;
    let stored = if base64_bodies { decode_body(body) } else { body.as_bytes().to_vec() };
    Ok(NewMessage {
        priority: priority.map(|p| p as u8),
        delay_ms: delay.map(|d| d * 1000),
        attributes,
        order_key,
        ..NewMessage::text(stored)
    })
}

/// A body the SDK base64-encoded, decoded; one that does not decode is kept as sent (and is
/// encoded again on the way out, so MNS consumers still get back what was sent).
fn decode_body(body: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_else(|_| body.as_bytes().to_vec())
}

/// The MessageBody text of a stored body.
fn body_text(body: &[u8], base64_bodies: bool) -> String {
    if base64_bodies {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// `POST` — `<Message>` (SendMessage) or `<Messages>` (BatchSendMessage).
pub async fn send(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let mut q = traffic(ctx, name).await?;
    let root = parse(&ctx.body).map_err(MnsError::malformed)?;
    // A cached handle's size limit may be older than the queue's: a body over it is judged by
    // the current record (a body's text is never shorter than what it decodes to).
    let over = |e: &Element| e.child("MessageBody").is_some_and(|b| b.text.len() as u64 > q.config().max_message_bytes);
    if over(&root) || root.children_named("Message").any(over) {
        q = lookup(ctx, name).await?;
    }
    let max_size = q.record().config.max_message_bytes;
    match root.name.as_str() {
        "Message" => {
            let msg = message_of(&root, max_size, ctx.tenant.mns_base64_bodies)?;
            let md5 = body_md5(body_of(&root).as_bytes());
            let meta = ctx.st.broker.publish(&q, vec![msg]).await?.remove(0);
            let mut w = Writer::new("Message");
            w.leaf("MessageId", meta.id.to_string()).leaf("MessageBodyMD5", md5);
            Ok(xml_response(StatusCode::CREATED, w.finish()))
        }
        "Messages" => {
            super::operation("BatchSendMessage");
            batch_send(ctx, &q, &root, max_size).await
        }
        other => Err(MnsError::malformed(format!("unexpected root element {other}"))),
    }
}

async fn batch_send(ctx: &Ctx, q: &crate::core::Queue, root: &Element, max_size: u64) -> Result<Response, MnsError> {
    let entries: Vec<&Element> = root.children_named("Message").collect();
    if entries.is_empty() || entries.len() > MAX_BATCH {
        return Err(MnsError::range("the number of messages", 1, MAX_BATCH as u64, ""));
    }
    let total: usize = entries.iter().map(|e| e.child("MessageBody").map_or(0, |b| b.text.len())).sum();
    if total > MAX_BATCH_BYTES {
        return Err(MnsError::range("the total size of the message bodies", 1, MAX_BATCH_BYTES as u64, "bytes"));
    }
    // Valid entries are sent (together, atomically); invalid ones are reported in place.
    let b64 = ctx.tenant.mns_base64_bodies;
    let checked: Vec<Result<NewMessage, MnsError>> = entries.iter().map(|e| message_of(e, max_size, b64)).collect();
    let good: Vec<NewMessage> = checked.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let md5s: Vec<String> =
        entries.iter().zip(&checked).filter(|(_, r)| r.is_ok()).map(|(e, _)| body_md5(body_of(e).as_bytes())).collect();
    let metas = if good.is_empty() { Vec::new() } else { ctx.st.broker.publish(q, good).await? };
    let mut sent = metas.iter().zip(md5s);
    let mut w = Writer::new("Messages");
    let mut failed = false;
    for r in &checked {
        w.open("Message");
        match r {
            Ok(_) => {
                let (meta, md5) = sent.next().expect("one meta per valid entry");
                w.leaf("MessageId", meta.id.to_string()).leaf("MessageBodyMD5", md5);
            }
            Err(e) => {
                failed = true;
                w.leaf("ErrorCode", e.code).leaf("ErrorMessage", &e.message);
            }
        }
        w.close();
    }
    let status = if failed { StatusCode::BAD_REQUEST } else { StatusCode::CREATED };
    Ok(xml_response(status, w.finish()))
}

/// The MessageBody text of a request entry, as sent.
fn body_of(e: &Element) -> &str {
    e.child("MessageBody").map(|b| b.text.as_str()).unwrap_or("")
}

fn write_delivery(w: &mut Writer, d: &Delivery, b64: bool) {
    let body = body_text(&d.body.body, b64);
    w.leaf("MessageId", d.meta.id.to_string())
        .leaf("ReceiptHandle", &d.handle)
        .leaf("MessageBodyMD5", body_md5(body.as_bytes()))
        .leaf("MessageBody", &body)
        .leaf("EnqueueTime", d.meta.enqueued_at.to_string())
        .leaf("NextVisibleTime", d.lease_until.to_string())
        .leaf("FirstDequeueTime", d.first_delivered_at.to_string())
        .leaf("DequeueCount", d.deliveries.to_string())
        .leaf("Priority", d.meta.priority.to_string())
        .leaf("MessageGroupId", d.meta.order_key().unwrap_or_default());
    properties::write(w, &d.body.attributes);
}

fn write_peeked(w: &mut Writer, p: &Peeked, b64: bool) {
    let body = body_text(&p.body.body, b64);
    w.leaf("MessageId", p.meta.id.to_string())
        .leaf("MessageBodyMD5", body_md5(body.as_bytes()))
        .leaf("MessageBody", &body)
        .leaf("EnqueueTime", p.meta.enqueued_at.to_string())
        .leaf("FirstDequeueTime", p.first_delivered_at.unwrap_or(p.meta.enqueued_at).to_string())
        .leaf("DequeueCount", p.deliveries.to_string())
        .leaf("Priority", p.meta.priority.to_string());
    properties::write(w, &p.body.attributes);
}

/// `GET` — receive (`waitseconds`), batch receive (`numOfMessages`), peek (`peekonly=true`).
pub async fn receive(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let batch = match ctx.param("numOfMessages") {
        None => None,
        Some(n) => match n.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_BATCH).contains(&n) => Some(n),
            _ => return Err(MnsError::range("numOfMessages", 1, MAX_BATCH as u64, "")),
        },
    };
    let peek = match ctx.param("peekonly") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(MnsError::invalid("The value of peekonly should be true or false.")),
    };
    super::operation(match (peek, batch.is_some()) {
        (false, false) => "ReceiveMessage",
        (false, true) => "BatchReceiveMessage",
        (true, false) => "PeekMessage",
        (true, true) => "BatchPeekMessage",
    });
    let wait = match ctx.param("waitseconds") {
        None => None,
        Some(w) => match w.trim().parse::<u64>() {
            Ok(w) if w <= 30 => Some(w * 1000),
            _ => return Err(MnsError::range("waitseconds", 0, 30, "seconds")),
        },
    };
    // The queue's own poll wait, or a peek, needs its current record; otherwise a cached handle
    // does (the broker retries with a fresh one when it is out of date).
    let q = if peek || wait.is_none() { lookup(ctx, name).await? } else { traffic(ctx, name).await? };
    // The Node SDK gives up on a socket idle for 30 s: answer a 30 s poll a little earlier.
    let wait = Some(wait.unwrap_or(q.record().config.polling_wait_secs * 1000).min(MAX_POLL_MS));
    let n = batch.unwrap_or(1);
    let b64 = ctx.tenant.mns_base64_bodies;
    if peek {
        let got = ctx.st.broker.peek(&q, DEFAULT_GROUP, n).await?;
        if got.is_empty() {
            return Err(MnsError::message_not_exist());
        }
        return Ok(if batch.is_some() {
            let mut w = Writer::new("Messages");
            for p in &got {
                w.open("Message");
                write_peeked(&mut w, p, b64);
                w.close();
            }
            xml_response(StatusCode::OK, w.finish())
        } else {
            let mut w = Writer::new("Message");
            write_peeked(&mut w, &got[0], b64);
            xml_response(StatusCode::OK, w.finish())
        });
    }
    let opts = ReceiveOptions { wait_ms: wait, ..ReceiveOptions::new(n) };
    let got = ctx.st.broker.receive(&q, DEFAULT_GROUP, opts).await?;
    if got.is_empty() {
        return Err(MnsError::message_not_exist());
    }
    Ok(if batch.is_some() {
        let mut w = Writer::new("Messages");
        for d in &got {
            w.open("Message");
            write_delivery(&mut w, d, b64);
            w.close();
        }
        xml_response(StatusCode::OK, w.finish())
    } else {
        let mut w = Writer::new("Message");
        write_delivery(&mut w, &got[0], b64);
        xml_response(StatusCode::OK, w.finish())
    })
}

fn missing_handle() -> MnsError {
    MnsError::new(StatusCode::BAD_REQUEST, "MissingReceiptHandle", "The receipt handle is missing.")
}

/// `DELETE` — `?ReceiptHandle=` (DeleteMessage) or a `<ReceiptHandles>` body (BatchDeleteMessage).
pub async fn delete(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let single = ctx.param("ReceiptHandle");
    let has_body = !ctx.body.iter().all(u8::is_ascii_whitespace);
    if single.is_none() && has_body {
        super::operation("BatchDeleteMessage");
        return batch_delete(ctx, name).await;
    }
    let handle = single.filter(|h| !h.is_empty()).ok_or_else(missing_handle)?;
    let q = traffic(ctx, name).await?;
    ctx.st.broker.ack(&q, handle).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn batch_delete(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let root = parse(&ctx.body).map_err(MnsError::malformed)?;
    if root.name != "ReceiptHandles" {
        return Err(MnsError::malformed(format!("unexpected root element {}", root.name)));
    }
    let handles: Vec<&str> = root.children_named("ReceiptHandle").map(|e| e.text.trim()).collect();
    if handles.is_empty() || handles.len() > MAX_BATCH {
        return Err(MnsError::range("the number of receipt handles", 1, MAX_BATCH as u64, ""));
    }
    let q = traffic(ctx, name).await?;
    // Every valid handle is deleted; only the failures are listed.
    let mut w = Writer::new("Errors");
    let mut failed = false;
    for h in handles {
        let result = if h.is_empty() { Err(CoreError::ReceiptMalformed) } else { ctx.st.broker.ack(&q, h).await };
        match result {
            Ok(()) => {}
            Err(CoreError::QueueNotFound) => return Err(MnsError::queue_not_exist()),
            Err(e) => {
                failed = true;
                let e = MnsError::from(e);
                w.open("Error")
                    .leaf("ErrorCode", e.code)
                    .leaf("ErrorMessage", &e.message)
                    .leaf("ReceiptHandle", h)
                    .close();
            }
        }
    }
    if !failed {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    Ok(xml_response(StatusCode::NOT_FOUND, w.finish()))
}

/// `PUT ?ReceiptHandle=&VisibilityTimeout=` — a new handle; the old one dies.
pub async fn change_visibility(ctx: &Ctx, name: &str) -> Result<Response, MnsError> {
    let handle = ctx.param("ReceiptHandle").filter(|h| !h.is_empty()).ok_or_else(missing_handle)?;
    let secs = ctx.param("VisibilityTimeout").filter(|v| !v.is_empty()).ok_or_else(|| {
        MnsError::new(StatusCode::BAD_REQUEST, "MissingVisibilityTimeout", "The visibility timeout is missing.")
    })?;
    let secs = match secs.trim().parse::<u64>() {
        Ok(s) if (1..=43_200).contains(&s) => s,
        _ => return Err(MnsError::range("VisibilityTimeout", 1, 43_200, "seconds")),
    };
    let q = traffic(ctx, name).await?;
    let (new_handle, until) = ctx.st.broker.change_visibility(&q, handle, secs * 1000).await?;
    let mut w = Writer::new("ChangeVisibility");
    w.leaf("ReceiptHandle", new_handle).leaf("NextVisibleTime", until.to_string());
    Ok(xml_response(StatusCode::OK, w.finish()))
}
