//! Consumer groups: create (≤ 3 per queue, all or none), list (with counters, optional paging),
//! delete.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::DmsError;
use super::queues::flag;
use super::{Ctx, json, no_content};
use crate::json::group_object;

/// `POST P/queues/{id}/groups` — `{"groups": [{"name"}]}` → 201 `{"groups": [{id, name}]}`.
pub async fn create(ctx: &Ctx, queue: &str) -> Result<Response, DmsError> {
    let body = ctx.json("10240009")?;
    let entries = match body.get("groups") {
        Some(Value::Array(g)) if !g.is_empty() => g.clone(),
        _ => return Err(DmsError::bad("10540010", "groups must be a non-empty array of {name}.")),
    };
    let mut names = Vec::with_capacity(entries.len());
    for e in &entries {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(DmsError::bad("10240012", "A consumer group name is 1 to 32 letters, digits, '_' or '-'."));
        }
        names.push(name.to_string());
    }
    let q = ctx.queue(queue).await?;
    let created = ctx.st.broker.create_groups(&q, &names, Some(ctx.st.config.dms.max_groups)).await?;
    let groups: Vec<Value> = created.iter().map(|g| json!({"id": g.id, "name": g.name})).collect();
    Ok(json(StatusCode::CREATED, json!({"groups": groups})))
}

/// `GET P/queues/{id}/groups?include_deadletter=&page_size=&current_page=`
pub async fn list(ctx: &Ctx, queue: &str) -> Result<Response, DmsError> {
    let with_dl = flag(ctx, "include_deadletter")?;
    flag(ctx, "include_messages_num")?;
    // A paging parameter that is given must be a positive integer (not silently ignored).
    let page = |n: &str| match ctx.param(n).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(p) if p >= 1 => Ok(Some(p)),
            _ => Err(DmsError::bad("10540014", format!("The URL parameter {n} must be a positive integer."))),
        },
    };
    let (size, current) = (page("page_size")?, page("current_page")?);
    let q = ctx.queue(queue).await?;
    let infos = ctx.st.broker.groups(&q).await?;
    let mut groups: Vec<Value> = infos.iter().map(|g| group_object(g, with_dl)).collect();
    // Paging only when both parameters are given; otherwise every group.
    if let (Some(size), Some(current)) = (size, current) {
        groups = groups.into_iter().skip(size.saturating_mul(current - 1)).take(size).collect();
    }
    let mut v = json!({"queue_id": q.id().to_string(), "queue_name": q.name(), "groups": groups});
    if with_dl {
        v["redrive_policy"] = json!(if q.record().config.dead_letter.is_some() { "enable" } else { "disable" });
    }
    Ok(json(StatusCode::OK, v))
}

/// `DELETE P/queues/{id}/groups/{group}` → 204.
pub async fn delete(ctx: &Ctx, queue: &str, group: &str) -> Result<Response, DmsError> {
    let q = ctx.queue(queue).await?;
    let no = ctx.group(&q, group).await?;
    ctx.st.broker.delete_groups(&q, &[no]).await?;
    Ok(no_content())
}
