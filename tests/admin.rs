//! The admin listener: token checks, the JSON admin API over queues made through the dialects
//! (peek, purge, delete, dead letters and redrive), `/metrics` (its series and their labels,
//! a deleted queue's series gone), the console's assets, and the `qgate admin` CLI against a
//! running server.

mod common;

use std::time::Duration;

use common::mns::MnsClient;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "adm_test_token_0123456789";

async fn api(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), format!("{}/api/v1{path}", s.admin)).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn infrai(s: &TestServer, path: &str, body: Value) -> Value {
    let r = client()
        .post(s.url(path))
        .header("authorization", "Bearer ifr_test")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let s = TestServer::start().await;
    let c = client();
    for (path, auth) in [
        ("/api/v1/queues", None),
        ("/api/v1/queues", Some("Bearer wrong-token-000000000")),
        ("/api/v1/tenants", Some("adm_test_token_0123456789")),
        ("/metrics", None),
    ] {
        let mut req = c.get(format!("{}{path}", s.admin));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} {auth:?}");
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "UNAUTHORIZED");
    }
    // The console's assets need no token; unknown routes are JSON 404s.
    let r = c.get(format!("{}/", s.admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("/console/app.js"));
    for asset in ["/console/app.js", "/console/style.css"] {
        let r = c.get(format!("{}{asset}", s.admin)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(!r.text().await.unwrap().is_empty());
    }
    let (status, v) = api(&s, "GET", "/nope", None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, v) = api(&s, "PATCH", "/queues", None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")), "{v}");
    // The vendor listener does not serve the admin API.
    let r = c.get(s.url("/api/v1/queues")).bearer_auth(TOKEN).send().await.unwrap();
    assert_ne!(r.status(), 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn queues_peek_purge_delete_and_dead_letters() {
    let s = TestServer::start().await;
    let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    assert_eq!(m.create("orders", "").await.status, 201);
    for b in ["one", "two", "three"] {
        assert_eq!(m.send_msg("orders", b).await.status, 201);
    }
    let r = m.get("/queues/orders/messages").await;
    assert_eq!(r.status, 200);
    let handle = r.root().text_of("ReceiptHandle");
    assert_eq!(
        m.call("DELETE", &format!("/queues/orders/messages?ReceiptHandle={handle}"), None, &[]).await.status,
        204
    );

    let (status, v) = api(&s, "GET", "/queues", None).await;
    assert_eq!(status, 200);
    let q = v["queues"].as_array().unwrap().iter().find(|q| q["name"] == "orders").unwrap().clone();
    assert_eq!(q["tenant"], "t");
    assert_eq!((q["ready"].as_u64(), q["in_flight"].as_u64()), (Some(2), Some(0)));
    assert_eq!(
        (q["published_total"].as_u64(), q["delivered_total"].as_u64(), q["acked_total"].as_u64()),
        (Some(3), Some(1), Some(1))
    );
    let (_, v) = api(&s, "GET", "/tenants", None).await;
    let names: Vec<&str> = v["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"t") && names.contains(&"other"), "{names:?}");
    assert!(!names.iter().any(|n| n.chars().any(char::is_control)), "internal namespaces stay hidden");
    let (_, v) = api(&s, "GET", "/queues?tenant=other", None).await;
    assert_eq!(v["queues"].as_array().unwrap().len(), 0);

    let (status, v) = api(&s, "GET", "/queues/t/orders", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["queue"]["config"]["visibility_timeout_secs"], 30);
    assert_eq!(v["queue"]["config"]["max_message_bytes"], 65536);
    let (_, v) = api(&s, "GET", "/queues/t/orders/messages?limit=10", None).await;
    let previews: Vec<&str> =
        v["messages"].as_array().unwrap().iter().map(|m| m["preview"].as_str().unwrap()).collect();
    assert_eq!(previews, ["two", "three"]);
    assert_eq!(api(&s, "GET", "/queues/t/orders/messages?limit=0", None).await.0, 400);
    // Peeking changed nothing.
    assert_eq!(api(&s, "GET", "/queues/t/orders", None).await.1["queue"]["ready"], 2);

    let (status, v) = api(&s, "POST", "/queues/t/orders/purge", None).await;
    assert_eq!((status, v["purged"].as_u64()), (200, Some(2)));
    assert_eq!(m.get("/queues/orders/messages").await.error_code(), "MessageNotExist");
    assert_eq!(api(&s, "GET", "/queues/t/nope", None).await.0, 404);

    // Dead letters through infrai: a queue with a dead-letter queue, one message nacked dead.
    infrai(&s, "/v1/queue/create", json!({"name": "jobs-dlq"})).await;
    infrai(&s, "/v1/queue/create", json!({"name": "jobs", "dead_letter_queue": "jobs-dlq", "max_retries": 1})).await;
    infrai(&s, "/v1/queue/publish", json!({"queue": "jobs", "payload": {"n": 1}})).await;
    let got = infrai(&s, "/v1/queue/consume", json!({"queue": "jobs", "max_messages": 1})).await;
    let id = got["messages"][0]["message_id"].as_str().expect("a message").to_string();
    let r = infrai(&s, "/v1/queue/nack", json!({"queue": "jobs", "message_id": id, "requeue": false})).await;
    assert!(r.get("error").is_none(), "{r}");
    let (_, v) = api(&s, "GET", "/queues/t/jobs/deadletters", None).await;
    let dead = v["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{v}");
    assert_eq!(dead[0]["preview"], "{\"n\":1}");
    assert_eq!(dead[0]["kept_in"], "jobs-dlq");
    let dead_id = dead[0]["id"].as_str().unwrap().to_string();
    assert_eq!(api(&s, "POST", "/queues/t/jobs/deadletters/redrive", Some(json!({}))).await.0, 400);
    let (status, v) = api(&s, "POST", "/queues/t/jobs/deadletters/redrive", Some(json!({"ids": [dead_id]}))).await;
    assert_eq!((status, v["redriven"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(api(&s, "GET", "/queues/t/jobs", None).await.1["queue"]["ready"], 1);
    assert_eq!(api(&s, "GET", "/queues/t/jobs/deadletters", None).await.1["dead_letters"].as_array().unwrap().len(), 0);

    let (status, v) = api(&s, "DELETE", "/queues/t/orders", None).await;
    assert_eq!((status, v["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(m.get("/queues/orders").await.error_code(), "QueueNotExist");
    let (_, v) = api(&s, "GET", "/overview", None).await;
    assert_eq!(v["queues"], 2);
    assert_eq!(v["messages"]["ready"], 1);
    s.stop().await.unwrap();
}

fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(name) && !l.starts_with('#')).collect()
}

#[tokio::test]
async fn metrics_cover_requests_queues_store_and_process() {
    let s = TestServer::start().await;
    let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    assert_eq!(m.create("metered", "").await.status, 201);
    assert_eq!(m.send_msg("metered", "x").await.status, 201);
    assert_eq!(m.send_msg("metered", "y").await.status, 201);
    assert_eq!(m.get("/queues/nope").await.status, 404);
    let r = client().get(format!("{}/metrics", s.admin)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"));
    let sent: Vec<&str> = series(&text, "qgate_requests_total{")
        .into_iter()
        .filter(|l| {
            l.contains("dialect=\"mns\"") && l.contains("operation=\"SendMessage\"") && l.contains("status=\"2xx\"")
        })
        .collect();
    assert_eq!(sent.len(), 1, "{text}");
    assert!(sent[0].ends_with(" 2"), "{}", sent[0]);
    assert!(
        series(&text, "qgate_requests_total{").iter().any(|l| l.contains("GetQueueAttributes") && l.contains("4xx"))
    );
    assert!(series(&text, "qgate_request_duration_seconds_bucket{").iter().any(|l| l.contains("SendMessage")));
    let ready = series(&text, "qgate_queue_messages{");
    assert!(
        ready.iter().any(|l| l.contains("queue=\"metered\"") && l.contains("state=\"ready\"") && l.ends_with(" 2")),
        "{ready:?}"
    );
    assert!(series(&text, "qgate_queue_published_total{").iter().any(|l| l.contains("metered") && l.ends_with(" 2")));
    let store: &[&str] = if std::env::var("QGATE_TEST_ENGINE").is_ok_and(|e| e == "postgres") {
        &["qgate_store_pg_transactions_total", "qgate_store_pg_pool_connections", "qgate_store_pg_listening"]
    } else {
        &["qgate_store_fsyncs_total", "qgate_store_log_bytes", "qgate_store_data_dir_size_bytes"]
    };
    for name in store.iter().copied().chain([
        "qgate_long_poll_waiters",
        "qgate_push_deliveries_total",
        "qgate_process_resident_memory_bytes",
        "qgate_process_open_fds",
        "qgate_queue_oldest_ready_age_seconds{",
    ]) {
        assert!(!series(&text, name).is_empty(), "{name} missing:\n{text}");
    }
    // A deleted queue's series are gone.
    assert_eq!(m.call("DELETE", "/queues/metered", None, &[]).await.status, 204);
    let text =
        client().get(format!("{}/metrics", s.admin)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("queue=\"metered\""));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_poll_shows_as_waiting() {
    let s = TestServer::start().await;
    let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    assert_eq!(m.create("lp", "").await.status, 201);
    let poll = {
        let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
        tokio::spawn(async move { m.get("/queues/lp/messages?waitseconds=30").await })
    };
    let mut seen = false;
    for _ in 0..100 {
        let text =
            client().get(format!("{}/metrics", s.admin)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
        if series(&text, "qgate_long_poll_waiters").iter().any(|l| l.ends_with(" 1")) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the waiting poll is counted");
    assert_eq!(m.send_msg("lp", "wake").await.status, 201);
    assert_eq!(poll.await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: qgate::admin::cli::AdminArgs,
}

async fn cli(s: &TestServer, words: &[&str]) -> Result<String, String> {
    use clap::Parser;
    let mut argv = vec!["qgate-admin", "--url", &s.admin, "--token", TOKEN];
    argv.extend_from_slice(words);
    qgate::admin::cli::run(Cli::try_parse_from(argv).map_err(|e| e.to_string())?.args).await
}

#[tokio::test]
async fn the_admin_cli_prints_tables_and_json_and_fails_on_errors() {
    let s = TestServer::start().await;
    let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    assert_eq!(m.create("cli-q", "").await.status, 201);
    assert_eq!(m.send_msg("cli-q", "hello cli").await.status, 201);
    let out = cli(&s, &["queues"]).await.unwrap();
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("TENANT  QUEUE"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("t ") && l.contains("cli-q") && l.split_whitespace().nth(2) == Some("1")),
        "{out}"
    );
    let json: Value = serde_json::from_str(&cli(&s, &["--json", "queue", "cli-q"]).await.unwrap()).unwrap();
    assert_eq!(json["queue"]["ready"], 1);
    let peek = cli(&s, &["peek", "t/cli-q"]).await.unwrap();
    assert!(peek.contains("hello cli"), "{peek}");
    assert_eq!(cli(&s, &["purge", "cli-q", "--tenant", "t"]).await.unwrap(), "purged 1 messages\n");
    assert!(cli(&s, &["tenants"]).await.unwrap().contains("other"));
    assert!(cli(&s, &["queue", "no-such-queue"]).await.unwrap_err().contains("no queue named"));
    let bad = {
        use clap::Parser;
        let args =
            Cli::try_parse_from(["x", "--url", &s.admin, "--token", "wrong-token-00000000", "queues"]).unwrap().args;
        qgate::admin::cli::run(args).await
    };
    assert!(bad.unwrap_err().contains("401"));
    s.stop().await.unwrap();
}
