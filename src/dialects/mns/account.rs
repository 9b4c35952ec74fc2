//! Account attributes: GetAccountAttributes and SetAccountAttributes (`/?accountmeta=true`).
//!
//! The one attribute is LoggingBucket (where the service would ship its logs; stored and
//! echoed, nothing ships). It is kept like topics are (see [`super::topics`]): as the labels of
//! one queue record, `account`, in an internal namespace of the tenant, so it is durable and
//! shared by every node with no record type of its own.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::{MnsError, xml_response};
use super::xml::{Writer, parse};
use super::{Ctx, empty};
use crate::core::CoreError;
use crate::core::model::QueueConfig;

const RECORD: &str = "account";

fn account_ns(tenant: &str) -> String {
    format!("{tenant}\u{0}mns-account")
}

/// `GET /?accountmeta=true`
pub async fn get_attributes(ctx: &Ctx) -> Result<Response, MnsError> {
    let bucket = match ctx.st.broker.queue(&account_ns(&ctx.tenant.name), RECORD).await {
        Ok(q) => ctx.st.broker.info(&q).await?.record.config.labels.get("logging_bucket").cloned(),
        Err(CoreError::QueueNotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let mut w = Writer::new("Account");
    // Present even when unset: the Python SDK requires the element (an empty one reads as "").
    w.leaf_kept("LoggingBucket", bucket.unwrap_or_default());
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// `PUT /?accountmeta=true` with `<Account><LoggingBucket>…</LoggingBucket></Account>`; an
/// empty LoggingBucket clears it.
pub async fn set_attributes(ctx: &Ctx) -> Result<Response, MnsError> {
    let root = parse(&ctx.body).map_err(MnsError::malformed)?;
    if root.name != "Account" {
        return Err(MnsError::malformed(format!("the root element must be Account, not {}", root.name)));
    }
    let Some(bucket) = root.child("LoggingBucket").map(|e| e.text.trim().to_string()) else {
        return Ok(empty(StatusCode::NO_CONTENT));
    };
    if bucket.len() > 63 || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(MnsError::invalid("LoggingBucket must be a bucket name: lower-case letters, digits and -."));
    }
    let ns = account_ns(&ctx.tenant.name);
    let q = match ctx.st.broker.queue(&ns, RECORD).await {
        Ok(q) => q,
        Err(CoreError::QueueNotFound) => {
            let cfg = QueueConfig { labels: BTreeMap::new(), ..QueueConfig::default() };
            let rec = match ctx.st.broker.create_queue(&ns, RECORD, cfg, None).await? {
                crate::core::CreateOutcome::Created(r) | crate::core::CreateOutcome::Exists(r) => r,
            };
            ctx.st.broker.queue_by_id(&ns, rec.id).await?
        }
        Err(e) => return Err(e.into()),
    };
    ctx.st
        .broker
        .update_queue(&q, |c| {
            if bucket.is_empty() {
                c.labels.remove("logging_bucket");
            } else {
                c.labels.insert("logging_bucket".into(), bucket.clone());
            }
            Ok(())
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
