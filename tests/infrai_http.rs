//! infrai through the real router and a real socket: every capability, its errors, and the
//! vendor page's own curl examples verbatim. Time is the server's manual clock.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

struct Api {
    s: TestServer,
    c: reqwest::Client,
    key: &'static str,
}

struct Resp {
    status: u16,
    body: Value,
    request_id: String,
}

impl Api {
    async fn new() -> Self {
        Api { s: TestServer::start().await, c: client(), key: "ifr_test" }
    }

    async fn raw(&self, method: &str, path: &str, body: Option<String>, key: Option<&str>) -> Resp {
        let mut req = self.c.request(method.parse().unwrap(), self.s.url(path));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let request_id = r.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
        Resp { status, body, request_id }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.raw(method, path, body.map(|b| b.to_string()), Some(self.key)).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    fn advance(&self, s: u64) {
        self.s.clock.advance(Duration::from_secs(s));
    }
}

/// Asserts an infrai error with its code and a request id matching the header.
fn err(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(r.body["error"]["request_id"], r.request_id.as_str());
}

#[tokio::test]
async fn the_seed_curl_examples_work_verbatim() {
    let api = Api::new().await;
    assert_eq!(api.post("/v1/queue/create", json!({"name": "orders"})).await.status, 201);
    let r = api
        .post("/v1/queue/publish", json!({"queue": "orders", "payload": {"order_id": "o_123"}, "priority": 5}))
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body["message_id"].as_str().is_some());
    assert_eq!(api.get("/v1/queue/get/orders").await.status, 200);
    assert_eq!(api.get("/v1/queue/list").await.status, 200);
    assert_eq!(api.call("PATCH", "/v1/queue/update/orders", Some(json!({}))).await.status, 200);
    assert_eq!(api.get("/v1/queue/stats/orders").await.status, 200);
    let r = api.post("/v1/queue/publish_batch", json!({"queue": "orders", "messages": [{"payload": {"n": 1}}]})).await;
    assert_eq!(r.status, 201);
    let r = api.post("/v1/queue/consume", json!({"queue": "orders"})).await;
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 1);
    let id = r.body["messages"][0]["message_id"].as_str().unwrap().to_string();
    assert_eq!(api.post("/v1/queue/ack", json!({"queue": "orders", "message_id": id})).await.status, 200);
    let r = api.post("/v1/queue/consume", json!({"queue": "orders"})).await;
    let id = r.body["messages"][0]["message_id"].as_str().unwrap().to_string();
    assert_eq!(api.post("/v1/queue/nack", json!({"queue": "orders", "message_id": id})).await.status, 200);
    assert_eq!(api.get("/v1/queue/dlq/list/orders").await.status, 200);
    let r = api.post("/v1/queue/dlq/redrive/orders", json!({"queue": "orders", "max_messages": 100})).await;
    assert_eq!((r.status, &r.body), (200, &json!({"queue": "orders", "redriven": 0})));
    let r = api
        .post(
            "/v1/queue/push_subscribe/orders",
            json!({"queue": "orders", "forward_to": "https://127.0.0.1:9/order-handler"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["url"], "https://127.0.0.1:9/order-handler");
    let r = api.post("/v1/queue/purge/orders", json!({"queue": "..."})).await;
    assert_eq!((r.status, r.body["purged"].as_u64()), (200, Some(1)));
    let r = api.call("DELETE", "/v1/queue/delete/orders", None).await;
    assert_eq!(r.body, json!({"queue": "orders", "deleted": true}));
}

#[tokio::test]
async fn queue_records_defaults_update_list_and_delete() {
    let api = Api::new().await;
    let r = api.post("/v1/queue/create", json!({"name": "jobs"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["queue"], "jobs");
    assert_eq!(r.body["type"], "standard");
    assert_eq!(r.body["max_retries"], 5);
    assert_eq!(r.body["visibility_timeout_default"], 30);
    assert_eq!(r.body["message_retention_days"], 4);
    assert_eq!(r.body["enable_priority"], false);
    assert_eq!(r.body["created_at"], "2024-01-01T00:00:00Z");
    assert!(r.body.get("dead_letter_queue").is_none());

    api.post("/v1/queue/create", json!({"name": "jobs-dlq"})).await;
    let r = api
        .call(
            "PATCH",
            "/v1/queue/update/jobs",
            Some(json!({"dead_letter_queue": "jobs-dlq", "max_retries": 2, "visibility_timeout_default": 60, "message_retention_days": 7, "enable_priority": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["dead_letter_queue"],
            &r.body["max_retries"],
            &r.body["visibility_timeout_default"],
            &r.body["message_retention_days"],
            &r.body["enable_priority"]
        ),
        (&json!("jobs-dlq"), &json!(2), &json!(60), &json!(7), &json!(true))
    );
    assert_eq!(api.get("/v1/queue/get/jobs").await.body, r.body);
    err(&api.call("PATCH", "/v1/queue/update/jobs", Some(json!({"type": "fifo"}))).await, 400, "INVALID_ARGUMENT");
    err(
        &api.call("PATCH", "/v1/queue/update/jobs", Some(json!({"dead_letter_queue": "jobs"}))).await,
        400,
        "INVALID_ARGUMENT",
    );
    err(&api.call("PATCH", "/v1/queue/update/nope", Some(json!({}))).await, 404, "QUEUE_NOT_FOUND");

    // Paging by name with an opaque cursor; no next_cursor on the last page.
    for n in ["a", "b", "c"] {
        api.post("/v1/queue/create", json!({"name": n})).await;
    }
    let p1 = api.get("/v1/queue/list?limit=2").await;
    let names: Vec<&str> = p1.body["items"].as_array().unwrap().iter().map(|i| i["queue"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    let cur = p1.body["next_cursor"].as_str().unwrap();
    let p2 = api.get(&format!("/v1/queue/list?limit=2&cursor={cur}")).await;
    let names: Vec<&str> = p2.body["items"].as_array().unwrap().iter().map(|i| i["queue"].as_str().unwrap()).collect();
    assert_eq!(names, ["c", "jobs"]);
    let p3 = api.get(&format!("/v1/queue/list?limit=2&cursor={}", p2.body["next_cursor"].as_str().unwrap())).await;
    assert_eq!(p3.body["items"].as_array().unwrap().len(), 1);
    assert!(p3.body.get("next_cursor").is_none());
    err(&api.get("/v1/queue/list?limit=0").await, 400, "INVALID_ARGUMENT");
    err(&api.get("/v1/queue/list?limit=1001").await, 400, "INVALID_ARGUMENT");
    err(&api.get("/v1/queue/list?cursor=!!!").await, 400, "INVALID_ARGUMENT");

    // Delete is idempotent.
    assert_eq!(api.call("DELETE", "/v1/queue/delete/a", None).await.body, json!({"queue": "a", "deleted": true}));
    let again = api.call("DELETE", "/v1/queue/delete/a", None).await;
    assert_eq!((again.status, again.body), (200, json!({"queue": "a", "deleted": false})));
    err(&api.get("/v1/queue/get/a").await, 404, "QUEUE_NOT_FOUND");
}

#[tokio::test]
async fn create_validation_and_idempotency() {
    let api = Api::new().await;
    err(&api.post("/v1/queue/create", json!({})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/create", json!({"name": 5})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/create", json!({"name": "bad name"})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/create", json!({"name": "q", "type": "lifo"})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/create", json!({"name": "q", "max_retries": "3"})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/create", json!({"name": "q", "max_retries": -1})).await, 400, "INVALID_ARGUMENT");
    err(
        &api.post("/v1/queue/create", json!({"name": "q", "message_retention_days": 15})).await,
        400,
        "INVALID_ARGUMENT",
    );
    err(
        &api.post("/v1/queue/create", json!({"name": "q", "visibility_timeout_default": 0})).await,
        400,
        "INVALID_ARGUMENT",
    );
    err(&api.post("/v1/queue/create", json!({"name": "q", "enable_priority": "yes"})).await, 400, "INVALID_ARGUMENT");
    err(
        &api.post("/v1/queue/create", json!({"name": "q", "dead_letter_queue": "missing"})).await,
        404,
        "QUEUE_NOT_FOUND",
    );
    err(&api.post("/v1/queue/create", json!({"name": "q", "dead_letter_queue": "q"})).await, 400, "INVALID_ARGUMENT");
    assert_eq!(api.get("/v1/queue/list").await.body["items"], json!([]), "nothing was created");

    let body = json!({"name": "q", "type": "fifo", "idempotency_key": "create-q"});
    let first = api.post("/v1/queue/create", body.clone()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["type"], "fifo");
    let replay = api.post("/v1/queue/create", body).await;
    assert_eq!((replay.status, &replay.body), (201, &first.body), "same key, same body: the first answer");
    err(
        &api.post("/v1/queue/create", json!({"name": "q", "idempotency_key": "create-q"})).await,
        409,
        "IDEMPOTENCY_KEY_REUSED",
    );
    err(&api.post("/v1/queue/create", json!({"name": "q"})).await, 409, "QUEUE_ALREADY_EXISTS");
    err(
        &api.post("/v1/queue/create", json!({"name": "q", "idempotency_key": "other"})).await,
        409,
        "QUEUE_ALREADY_EXISTS",
    );
}

#[tokio::test]
async fn publish_consume_ack_and_lease_expiry() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "q", "visibility_timeout_default": 10})).await;
    let id =
        api.post("/v1/queue/publish", json!({"queue": "q", "payload": {"hello": "world"}})).await.body["message_id"]
            .clone();
    let r = api.post("/v1/queue/consume", json!({"queue": "q", "max_messages": 5})).await;
    let m = &r.body["messages"][0];
    assert_eq!(m["message_id"], id);
    assert_eq!(m["payload"], json!({"hello": "world"}));
    assert_eq!((m["attempts"].as_u64(), m["priority"].as_u64()), (Some(1), Some(8)));
    assert_eq!(m["enqueued_at"], "2024-01-01T00:00:00Z");
    assert_eq!(m["lease_expires_at"], "2024-01-01T00:00:10Z");
    let s = api.get("/v1/queue/stats/q").await.body;
    assert_eq!((s["available"].as_u64(), s["in_flight"].as_u64(), s["dlq"].as_u64()), (Some(0), Some(1), Some(0)));

    // Invisible while leased; back with attempts 2 after the lease.
    assert_eq!(api.post("/v1/queue/consume", json!({"queue": "q"})).await.body["messages"], json!([]));
    api.advance(10);
    let r = api.post("/v1/queue/consume", json!({"queue": "q", "visibility_timeout": 100})).await;
    assert_eq!(r.body["messages"][0]["attempts"], 2);
    assert_eq!(r.body["messages"][0]["lease_expires_at"], "2024-01-01T00:01:50Z");
    let r = api.post("/v1/queue/ack", json!({"queue": "q", "message_id": id})).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"message_id": id, "acked": true})));
    err(&api.post("/v1/queue/ack", json!({"queue": "q", "message_id": id})).await, 404, "MESSAGE_NOT_FOUND");
    let s = api.get("/v1/queue/stats/q").await.body;
    assert_eq!(s, json!({"queue": "q", "available": 0, "in_flight": 0, "delayed": 0, "dlq": 0}));

    // Ack of a message that is not leased.
    let id = api.post("/v1/queue/publish", json!({"queue": "q", "payload": 1})).await.body["message_id"].clone();
    err(&api.post("/v1/queue/ack", json!({"queue": "q", "message_id": id})).await, 409, "MESSAGE_NOT_IN_FLIGHT");
    err(&api.post("/v1/queue/nack", json!({"queue": "q", "message_id": id})).await, 409, "MESSAGE_NOT_IN_FLIGHT");
    err(&api.post("/v1/queue/ack", json!({"queue": "q", "message_id": "garbage"})).await, 404, "MESSAGE_NOT_FOUND");
    err(&api.post("/v1/queue/ack", json!({"queue": "q"})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/ack", json!({"queue": "nope", "message_id": id})).await, 404, "QUEUE_NOT_FOUND");
    api.advance(30);
    let s = api.get("/v1/queue/stats/q").await.body;
    assert_eq!(s["oldest_age_seconds"], 30);
}

#[tokio::test]
async fn nack_retries_dead_letters_and_redrive() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "dlq"})).await;
    api.post("/v1/queue/create", json!({"name": "q", "max_retries": 1, "dead_letter_queue": "dlq"})).await;
    api.post("/v1/queue/create", json!({"name": "own", "max_retries": 0})).await;

    let id = api.post("/v1/queue/publish", json!({"queue": "q", "payload": "p"})).await.body["message_id"].clone();
    let nack = |q: &'static str| {
        let api = &api;
        let id = id.clone();
        async move {
            api.post("/v1/queue/consume", json!({"queue": q})).await;
            api.post("/v1/queue/nack", json!({"queue": q, "message_id": id})).await
        }
    };
    assert_eq!(nack("q").await.body, json!({"message_id": id, "nacked": true, "requeued": true}));
    api.advance(5);
    assert_eq!(nack("q").await.body["requeued"], false, "failures exceeded max_retries");
    // Kept in the DLQ queue as an ordinary message, listed under its source.
    assert_eq!(api.get("/v1/queue/stats/dlq").await.body["available"], 1);
    assert_eq!(api.get("/v1/queue/stats/q").await.body["dlq"], 1);
    let l = api.get("/v1/queue/dlq/list/q").await.body;
    let item = &l["items"][0];
    assert_eq!(
        (&item["message_id"], &item["payload"], &item["reason"], &item["attempts"]),
        (&id, &json!("p"), &json!("max_retries"), &json!(2))
    );
    assert_eq!(item["dead_lettered_at"], "2024-01-01T00:00:05Z");
    assert!(l.get("next_cursor").is_none());
    err(
        &api.post("/v1/queue/dlq/redrive/q", json!({"message_id": "00000000000000000000000000000000"})).await,
        404,
        "MESSAGE_NOT_FOUND",
    );
    err(&api.post("/v1/queue/dlq/redrive/q", json!({"since": "yesterday"})).await, 400, "INVALID_ARGUMENT");
    let r = api.post("/v1/queue/dlq/redrive/q", json!({"message_id": id})).await;
    assert_eq!(r.body, json!({"queue": "q", "redriven": 1}));
    let m = api.post("/v1/queue/consume", json!({"queue": "q"})).await.body;
    assert_eq!((&m["messages"][0]["message_id"], &m["messages"][0]["attempts"]), (&id, &json!(1)), "attempts reset");

    // requeue:false dead-letters at once into the queue's own store.
    let a = api.post("/v1/queue/publish", json!({"queue": "own", "payload": 1})).await.body["message_id"].clone();
    let b = api.post("/v1/queue/publish", json!({"queue": "own", "payload": 2})).await.body["message_id"].clone();
    api.post("/v1/queue/consume", json!({"queue": "own", "max_messages": 2})).await;
    assert_eq!(
        api.post("/v1/queue/nack", json!({"queue": "own", "message_id": a, "requeue": false})).await.body["requeued"],
        false
    );
    api.advance(60);
    api.post("/v1/queue/nack", json!({"queue": "own", "message_id": b, "requeue": false})).await;
    let l = api.get("/v1/queue/dlq/list/own?limit=1").await.body;
    assert_eq!(l["items"][0]["reason"], "nacked");
    let l2 =
        api.get(&format!("/v1/queue/dlq/list/own?limit=1&cursor={}", l["next_cursor"].as_str().unwrap())).await.body;
    assert_eq!(l2["items"][0]["message_id"], b);
    let r = api.post("/v1/queue/dlq/redrive/own", json!({"since": "2024-01-01T08:00:30+08:00"})).await;
    assert_eq!(r.body["redriven"], 1, "since is RFC 3339 with any offset (08:00:30+08:00 = 00:00:30Z)");
    assert_eq!(api.call("POST", "/v1/queue/dlq/redrive/own", None).await.body["redriven"], 1, "no body: all");
    assert_eq!(api.get("/v1/queue/stats/own").await.body["available"], 2);
}

#[tokio::test]
async fn priority_fifo_and_delay() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "p", "enable_priority": true})).await;
    api.post("/v1/queue/create", json!({"name": "plain"})).await;
    for (q, prios) in [("p", [1, 16, 8]), ("plain", [1, 16, 8])] {
        for pr in prios {
            api.post("/v1/queue/publish", json!({"queue": q, "payload": pr, "priority": pr})).await;
        }
    }
    let order =
        |v: Value| v["messages"].as_array().unwrap().iter().map(|m| m["payload"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        order(api.post("/v1/queue/consume", json!({"queue": "p", "max_messages": 10})).await.body),
        [16, 8, 1],
        "higher first"
    );
    assert_eq!(
        order(api.post("/v1/queue/consume", json!({"queue": "plain", "max_messages": 10})).await.body),
        [1, 16, 8],
        "enqueue order"
    );
    err(
        &api.post("/v1/queue/publish", json!({"queue": "p", "payload": 1, "priority": 17})).await,
        400,
        "INVALID_ARGUMENT",
    );

    api.post("/v1/queue/create", json!({"name": "f", "type": "fifo"})).await;
    for i in 1..=3 {
        api.post("/v1/queue/publish", json!({"queue": "f", "payload": i})).await;
    }
    let first = api.post("/v1/queue/consume", json!({"queue": "f"})).await.body;
    assert_eq!(order(first.clone()), [1]);
    assert_eq!(
        order(api.post("/v1/queue/consume", json!({"queue": "f", "max_messages": 10})).await.body),
        Vec::<i64>::new(),
        "head-of-line"
    );
    api.post("/v1/queue/nack", json!({"queue": "f", "message_id": first["messages"][0]["message_id"]})).await;
    assert_eq!(
        order(api.post("/v1/queue/consume", json!({"queue": "f", "max_messages": 10})).await.body),
        [1, 2, 3],
        "the failed head first"
    );

    api.post("/v1/queue/create", json!({"name": "d"})).await;
    api.post("/v1/queue/publish", json!({"queue": "d", "payload": "later", "delay_seconds": 90})).await;
    api.post("/v1/queue/publish", json!({"queue": "d", "payload": "sooner", "delay_seconds": 0.5})).await;
    let s = api.get("/v1/queue/stats/d").await.body;
    assert_eq!(s["delayed"], 2);
    assert_eq!(api.post("/v1/queue/consume", json!({"queue": "d"})).await.body["messages"], json!([]));
    api.s.clock.advance(Duration::from_millis(500));
    assert_eq!(api.post("/v1/queue/consume", json!({"queue": "d"})).await.body["messages"][0]["payload"], "sooner");
    api.advance(90);
    assert_eq!(api.post("/v1/queue/consume", json!({"queue": "d"})).await.body["messages"][0]["payload"], "later");
    err(
        &api.post("/v1/queue/publish", json!({"queue": "d", "payload": 1, "delay_seconds": 901})).await,
        400,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn publish_batch_is_all_or_nothing_and_ordered() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "q"})).await;
    let bad = json!({"queue": "q", "messages": [{"payload": 1}, {"payload": 2, "priority": 99}]});
    err(&api.post("/v1/queue/publish_batch", bad).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/publish_batch", json!({"queue": "q", "messages": []})).await, 400, "INVALID_ARGUMENT");
    let many: Vec<Value> = (0..101).map(|i| json!({"payload": i})).collect();
    err(&api.post("/v1/queue/publish_batch", json!({"queue": "q", "messages": many})).await, 400, "INVALID_ARGUMENT");
    err(
        &api.post("/v1/queue/publish_batch", json!({"queue": "q", "messages": [{"nopayload": 1}]})).await,
        400,
        "INVALID_ARGUMENT",
    );
    err(&api.post("/v1/queue/publish_batch", json!({"queue": "q", "messages": "x"})).await, 400, "INVALID_ARGUMENT");
    assert_eq!(api.get("/v1/queue/stats/q").await.body["available"], 0, "a failed batch writes nothing");

    let ok: Vec<Value> = (0..100).map(|i| json!({"payload": {"i": i}})).collect();
    let r = api.post("/v1/queue/publish_batch", json!({"queue": "q", "messages": ok})).await;
    assert_eq!(r.status, 201);
    let ids = r.body["message_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 100);
    let got = api.post("/v1/queue/consume", json!({"queue": "q", "max_messages": 100})).await.body;
    let got_ids: Vec<&Value> = got["messages"].as_array().unwrap().iter().map(|m| &m["message_id"]).collect();
    assert_eq!(got_ids, ids.iter().collect::<Vec<_>>(), "ids in request order");

    // Per-message keys dedupe against single publishes with the same key.
    let single =
        api.post("/v1/queue/publish", json!({"queue": "q", "payload": "x", "idempotency_key": "m1"})).await.body;
    let batch = api
        .post(
            "/v1/queue/publish_batch",
            json!({"queue": "q", "messages": [{"payload": "x", "idempotency_key": "m1"}, {"payload": "y"}]}),
        )
        .await
        .body;
    assert_eq!(batch["message_ids"][0], single["message_id"]);
    assert_eq!(api.get("/v1/queue/stats/q").await.body["available"], 2, "x once, y once");
    err(
        &api.post(
            "/v1/queue/publish_batch",
            json!({"queue": "q", "messages": [{"payload": "z", "idempotency_key": "m1"}]}),
        )
        .await,
        409,
        "IDEMPOTENCY_KEY_REUSED",
    );
    // A replayed publish returns the same id without a second message.
    let again = api.post("/v1/queue/publish", json!({"queue": "q", "payload": "x", "idempotency_key": "m1"})).await;
    assert_eq!((again.status, &again.body), (201, &single));
    assert_eq!(api.get("/v1/queue/stats/q").await.body["available"], 2);
}

#[tokio::test]
async fn consume_long_polls_until_a_publish() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "q"})).await;
    let c = api.c.clone();
    let url = api.s.url("/v1/queue/consume");
    let mut waiter = tokio::spawn(async move {
        c.post(url)
            .header("authorization", "Bearer ifr_test")
            .body(json!({"queue": "q", "wait_seconds": 20}).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str::<Value>(&t).unwrap())
            .unwrap()
    });
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "it waits");
    api.post("/v1/queue/publish", json!({"queue": "q", "payload": "wake"})).await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(got["messages"][0]["payload"], "wake");
    err(&api.post("/v1/queue/consume", json!({"queue": "q", "wait_seconds": 21})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/consume", json!({"queue": "q", "max_messages": 101})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/consume", json!({"queue": "q", "visibility_timeout": 0})).await, 400, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn bad_input_gets_infrai_errors() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "q"})).await;
    err(&api.raw("POST", "/v1/queue/publish", Some("{}".into()), None).await, 401, "UNAUTHORIZED");
    err(&api.raw("POST", "/v1/queue/publish", Some("{}".into()), Some("ifr_wrong")).await, 401, "UNAUTHORIZED");
    let r = api.c.post(api.s.url("/v1/queue/list")).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = api.c.get(api.s.url("/v1/queue/list")).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(r.status(), 401);
    err(&api.raw("POST", "/v1/queue/publish", Some("{not json".into()), Some("ifr_test")).await, 400, "MALFORMED_JSON");
    err(&api.raw("POST", "/v1/queue/publish", Some("[1,2]".into()), Some("ifr_test")).await, 400, "MALFORMED_JSON");
    err(&api.raw("POST", "/v1/queue/publish", Some("".into()), Some("ifr_test")).await, 400, "MALFORMED_JSON");
    err(
        &api.raw("POST", "/v1/queue/publish", Some("\u{0}\u{1}".into()), Some("ifr_test")).await,
        400,
        "MALFORMED_JSON",
    );
    err(&api.post("/v1/queue/publish", json!({"queue": "q"})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/publish", json!({"queue": 7, "payload": 1})).await, 400, "INVALID_ARGUMENT");
    err(&api.post("/v1/queue/publish", json!({"queue": "nope", "payload": 1})).await, 404, "QUEUE_NOT_FOUND");
    err(
        &api.post("/v1/queue/publish", json!({"queue": "q", "payload": "x".repeat(256 * 1024)})).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    err(
        &api.raw(
            "POST",
            "/v1/queue/publish",
            Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024))),
            Some("ifr_test"),
        )
        .await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    err(&api.get("/v1/queue/nope").await, 404, "ROUTE_NOT_FOUND");
    err(&api.get("/v1/queue/get/").await, 404, "ROUTE_NOT_FOUND");
    err(&api.get("/v1/queue/get/a/b").await, 404, "ROUTE_NOT_FOUND");
    err(&api.call("DELETE", "/v1/queue/publish", None).await, 405, "METHOD_NOT_ALLOWED");
    err(&api.call("PUT", "/v1/queue/create", None).await, 405, "METHOD_NOT_ALLOWED");
    err(&api.get("/v1/queue/get/%FF").await, 400, "INVALID_ARGUMENT");
    // The payload limit counts the serialized payload: just under it passes.
    let ok = api.post("/v1/queue/publish", json!({"queue": "q", "payload": "x".repeat(256 * 1024 - 2)})).await;
    assert_eq!(ok.status, 201);
    // Unknown fields are ignored.
    assert_eq!(api.post("/v1/queue/publish", json!({"queue": "q", "payload": 1, "whatever": [1]})).await.status, 201);
    // Other tenants' queues do not exist for you.
    let other = api.raw("GET", "/v1/queue/get/q", None, Some("ifr_other")).await;
    err(&other, 404, "QUEUE_NOT_FOUND");
    // Success responses carry a request id too.
    let r = api.get("/v1/queue/get/q").await;
    assert_eq!(r.request_id.len(), 24);
}

#[tokio::test]
async fn push_subscribe_validates_targets_and_lists() {
    let api = Api::new().await;
    api.post("/v1/queue/create", json!({"name": "q"})).await;
    for bad in [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254/",
        "https://10.0.0.1/hook",
        "https://[::1]/hook",
        "https://does-not-exist.invalid/hook",
        "ftp://127.0.0.1/x",
        "not a url",
    ] {
        err(&api.post("/v1/queue/push_subscribe/q", json!({"url": bad})).await, 400, "INVALID_ARGUMENT");
    }
    err(&api.post("/v1/queue/push_subscribe/q", json!({})).await, 400, "INVALID_ARGUMENT");
    err(
        &api.post("/v1/queue/push_subscribe/nope", json!({"url": "http://127.0.0.1:1/"})).await,
        404,
        "QUEUE_NOT_FOUND",
    );
    err(
        &api.post("/v1/queue/push_subscribe/q", json!({"url": "http://127.0.0.1:1/", "dead_letter_queue": "missing"}))
            .await,
        404,
        "QUEUE_NOT_FOUND",
    );
    err(
        &api.post("/v1/queue/push_subscribe/q", json!({"url": "http://127.0.0.1:1/", "max_retries": 101})).await,
        400,
        "INVALID_ARGUMENT",
    );
    let r = api.post("/v1/queue/push_subscribe/q", json!({"url": "http://127.0.0.1:1/hook", "secret": "s3"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["subscription_id"].as_str().unwrap().to_string();
    let l = api.get("/v1/queue/push_subscribe/q").await.body;
    assert_eq!(l["items"][0]["subscription_id"], id.as_str());
    assert_eq!(l["items"][0]["signed"], true);
    assert!(l["items"][0].get("secret").is_none(), "secrets are never echoed");
    let d = api.call("DELETE", &format!("/v1/queue/push_subscribe/q/{id}"), None).await.body;
    assert_eq!(d, json!({"subscription_id": id, "deleted": true}));
    assert_eq!(api.get("/v1/queue/push_subscribe/q").await.body["items"], json!([]));
}

#[tokio::test]
async fn healthz_and_other_paths() {
    let api = Api::new().await;
    let r = api.c.get(api.s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = api.c.get(api.s.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    api.s.stop().await.unwrap();
}
