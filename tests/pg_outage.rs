//! PostgreSQL stopped hard (`pg_ctl -m immediate`: no checkpoint, as a crash) under publish
//! through two nodes, then started again: requests meanwhile get the dialect's 503, the nodes
//! reconnect by themselves, and every publish that was answered is delivered afterwards.
//!
//! It stops the database every other test uses, so it is a test binary of its own (cargo runs
//! test binaries one after another). It needs the server `scripts/with-postgres` started
//! (`QGATE_TEST_PG_DATA`, `QGATE_TEST_PG_BIN`, `QGATE_TEST_PG_RUNAS`).

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use serde_json::json;

fn pg_ctl(args: &[&str]) {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run the tests through scripts/with-postgres"))
    };
    let (data, bin, user) = (var("QGATE_TEST_PG_DATA"), var("QGATE_TEST_PG_BIN"), var("QGATE_TEST_PG_RUNAS"));
    let ctl = format!("{bin}/pg_ctl");
    let mut cmd = if user.is_empty() || user == std::env::var("USER").unwrap_or_default() {
        Command::new(&ctl)
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", &user, "--", &ctl]);
        c
    };
    let out = cmd.args(["-D", &data]).args(args).stdin(std::process::Stdio::null()).output().expect("run pg_ctl");
    assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_database_stop_loses_no_answered_publish_and_the_nodes_reconnect() {
    let c = Cluster::start(2).await;
    c.api(0).create("survive", json!({})).await;
    let answered = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let unavailable = Arc::new(parking_lot::Mutex::new(0u32));
    let other = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..4 {
        let api = c.api(p % 2);
        let (answered, unavailable, other, stop) = (answered.clone(), unavailable.clone(), other.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let (s, b) =
                    api.post("/v1/queue/publish", json!({"queue": "survive", "payload": {"p": p, "i": i}})).await;
                match s {
                    201 => {
                        answered.lock().insert(b["message_id"].as_str().unwrap().to_string());
                    }
                    503 => {
                        assert_eq!(b["error"]["code"], "UNAVAILABLE", "{b}");
                        *unavailable.lock() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => other.lock().push(format!("{s} {b}")),
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = answered.lock().len();
    pg_ctl(&["-m", "immediate", "stop"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // With its log file: a server started without one keeps pg_ctl's output pipe open.
    let log = std::env::var("QGATE_TEST_PG_LOG").unwrap_or_else(|_| "/dev/null".into());
    pg_ctl(&["-w", "-l", &log, "start"]);
    // The nodes come back by themselves: publishes through both succeed again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = answered.lock().len();
    while answered.lock().len() < back + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().clone();
    assert!(before > 20, "publishes ran before the stop: {before}");
    assert!(answered.len() >= back + 100, "publishes succeed again after the restart");
    assert!(*unavailable.lock() > 0, "requests during the outage were answered 503");
    assert!(other.lock().is_empty(), "only 201 and 503: {:?}", other.lock());
    for (i, node) in c.bases.iter().enumerate() {
        let r = common::client().get(format!("{node}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "node {i} is ready again");
    }

    let mut got = HashSet::new();
    loop {
        let (s, msgs) = c.api(got.len() % 2).consume("survive", 100, 0, 60).await;
        assert_eq!(s, 200);
        if msgs.is_empty() {
            break;
        }
        for m in &msgs {
            let id = m["message_id"].as_str().unwrap().to_string();
            assert_eq!(c.api(0).ack("survive", &id).await, 200);
            got.insert(id);
        }
    }
    let lost: Vec<_> = answered.difference(&got).collect();
    assert!(lost.is_empty(), "{} of {} answered publishes lost: {lost:?}", lost.len(), answered.len());
}
