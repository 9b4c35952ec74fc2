//! Durability: every publish qgate answered survives `kill -9`.
//!
//! Starts the real binary (`QGATE_BIN`, else the one cargo built for this test run; the test
//! script points it at the release build), publishes from many concurrent clients, kills the
//! process with SIGKILL while they are still publishing, restarts it on the same data dir and
//! reads everything back.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

fn binary() -> String {
    std::env::var("QGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_qgate").to_string())
}

/// Starts qgate on a free port; returns the child and its base URL.
fn start(dir: &Path) -> (Child, String) {
    let cfg = dir.join("qgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[tenants]]\nname = \"t\"\nbearer_keys = [\"ifr_k\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qgate");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines.next().expect("qgate exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("qgate: listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

async fn call(c: &reqwest::Client, base: &str, path: &str, body: Value) -> Result<(u16, Value), reqwest::Error> {
    let r =
        c.post(format!("{base}{path}")).header("authorization", "Bearer ifr_k").body(body.to_string()).send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answered_publishes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path());
    let c = common::client();
    assert_eq!(call(&c, &base, "/v1/queue/create", json!({"name": "d"})).await.unwrap().0, 201);

    let answered = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (c, base, answered, count) = (c.clone(), base.clone(), answered.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                match call(&c, &base, "/v1/queue/publish", json!({"queue": "d", "payload": {"w": w, "i": i}})).await {
                    Ok((201, v)) => {
                        answered.lock().push(v["message_id"].as_str().unwrap().to_string());
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((s, v)) => panic!("publish answered {s}: {v}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill mid-stream, once a good number of publishes were answered.
    while count.load(Ordering::SeqCst) < 1500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let answered: HashSet<String> = answered.lock().drain(..).collect();
    assert!(answered.len() >= 1500);

    let (mut child, base) = start(dir.path());
    let mut found = HashSet::new();
    loop {
        let (s, v) = call(
            &c,
            &base,
            "/v1/queue/consume",
            json!({"queue": "d", "max_messages": 100, "visibility_timeout": 3600}),
        )
        .await
        .unwrap();
        assert_eq!(s, 200);
        let msgs = v["messages"].as_array().unwrap();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            found.insert(m["message_id"].as_str().unwrap().to_string());
        }
    }
    let lost: Vec<&String> = answered.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered publishes were lost, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
