//! Several real qgate processes on one PostgreSQL schema (the postgres engine), for the tests
//! that check what holds across nodes. Clients talk to the nodes directly.

use std::time::Duration;

use serde_json::{Value, json};

use super::process::{self, Server};

pub const BEARER: &str = "ifr_test";

/// The nodes, the schema they share, and their data directories (kept for the run).
pub struct Cluster {
    pub nodes: Vec<Option<Server>>,
    pub url: String,
    pub bases: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

pub fn config(dir: &std::path::Path, url: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{}"
shutdown_grace_secs = 2
[store]
engine = "postgres"
url = "{url}"
pool_size = 8
[ctyun]
max_queues = 5
[[tenants]]
name = "t"
bearer_keys = ["{BEARER}"]
project_id = "0123456789abcdef0123456789abcdef"
[[tenants.access_keys]]
id = "test-ak"
secret = "test-sk"
"#,
        dir.join("data").display()
    )
}

impl Cluster {
    /// `n` nodes on a fresh schema of `QGATE_TEST_PG`.
    pub async fn start(n: usize) -> Cluster {
        let url = super::pg::fresh_schema().await;
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        let mut bases = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let s = process::start(dir.path(), &config(dir.path(), &url));
            bases.push(s.base.clone());
            nodes.push(Some(s));
            dirs.push(dir);
        }
        Cluster { nodes, url, bases, _dirs: dirs }
    }

    pub fn api(&self, i: usize) -> Api {
        Api { c: super::client(), base: self.bases[i].clone() }
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// An infrai client of one node.
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
    pub base: String,
}

impl Api {
    /// A call; `(0, Null)` when the node cannot be reached.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .c
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(BEARER)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn create(&self, name: &str, extra: Value) {
        let mut b = json!({"name": name});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (s, body) = self.post("/v1/queue/create", b).await;
        assert_eq!(s, 201, "{body}");
    }

    /// Leases up to `max` messages: `(status, messages)`.
    pub async fn consume(&self, queue: &str, max: u32, wait: u32, visibility: u32) -> (u16, Vec<Value>) {
        let (s, b) = self
            .post(
                "/v1/queue/consume",
                json!({"queue": queue, "max_messages": max, "wait_seconds": wait, "visibility_timeout": visibility}),
            )
            .await;
        (s, b["messages"].as_array().cloned().unwrap_or_default())
    }

    pub async fn ack(&self, queue: &str, id: &str) -> u16 {
        self.post("/v1/queue/ack", json!({"queue": queue, "message_id": id})).await.0
    }

    pub async fn stats(&self, queue: &str) -> Value {
        self.call("GET", &format!("/v1/queue/stats/{queue}"), None).await.1
    }
}
