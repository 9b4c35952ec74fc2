//! A real full disk under a real server: the data directory on a small tmpfs that the test
//! mounts (it runs as root, as CI does; without root it fails and says so), filled up with a
//! file while clients publish and ack, then freed.
//!
//! What must hold: publishes answer the dialect's own 503 "unavailable" while the disk is full
//! (never a generic 500), `/readyz` says not ready (and `/healthz` stays ok), acks answered
//! meanwhile are kept, service comes back by itself when space returns, SIGTERM exits 0, every
//! answered publish is there after a restart — and a start attempted on the full disk does not
//! keep the store from opening once space is freed.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{Started, start, try_start};
use serde_json::{Value, json};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(mb: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("mnt");
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at, dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system with `path` until a write fails for lack of space.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
}

fn config(data: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[tenants]]\nname = \"t\"\nbearer_keys = [\"ifr_k\"]\n",
        data.display()
    )
}

async fn call(c: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{base}{path}"))
        .header("authorization", "Bearer ifr_k")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} answered {status} with non-JSON: {text}")))
}

async fn get(c: &reqwest::Client, base: &str, path: &str) -> (u16, String) {
    let r = c.get(format!("{base}{path}")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn wait_ready(c: &reqwest::Client, base: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = get(c, base, "/readyz").await;
        if s == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {s} ({body}), waited for {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_service_and_loses_nothing() {
    let fs = Tmpfs::mount(24);
    let data = fs.0.join("data");
    let filler = fs.0.join("filler");
    let c = common::client();
    let mut server = start(&fs.0, &config(&data));
    let base = server.base.clone();

    assert_eq!(call(&c, &base, "/v1/queue/create", json!({"name": "d"})).await.0, 201);
    let mut answered = HashSet::new();
    for i in 0..20 {
        let (s, v) = call(&c, &base, "/v1/queue/publish", json!({"queue": "d", "payload": {"i": i}})).await;
        assert_eq!(s, 201, "{v}");
        answered.insert(v["message_id"].as_str().unwrap().to_string());
    }
    let (s, v) =
        call(&c, &base, "/v1/queue/consume", json!({"queue": "d", "max_messages": 5, "visibility_timeout": 3600}))
            .await;
    assert_eq!(s, 200);
    let leased: Vec<String> =
        v["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(leased.len(), 5);
    assert_eq!(get(&c, &base, "/readyz").await.0, 200);

    fill(&filler);
    // Publishing on a full disk: the dialect's own 503, soon (a write may still fit).
    let mut refused = 0;
    for i in 0..200 {
        let (s, v) = call(
            &c,
            &base,
            "/v1/queue/publish",
            json!({"queue": "d", "payload": {"full": i, "pad": "x".repeat(2000)}}),
        )
        .await;
        match s {
            201 => {
                answered.insert(v["message_id"].as_str().unwrap().to_string());
            }
            503 => {
                assert_eq!(v["error"]["code"], "UNAVAILABLE", "{v}");
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("publish on a full disk answered {other}: {v}"),
        }
    }
    assert!(refused >= 3, "publishes on a full disk were never refused");
    let reason = wait_ready(&c, &base, 503).await;
    assert!(reason.contains("storage full"), "/readyz: {reason}");
    assert_eq!(get(&c, &base, "/healthz").await, (200, "ok".to_string()), "liveness stays ok");
    // Acks meanwhile are answered and kept.
    for id in &leased {
        let (s, v) = call(&c, &base, "/v1/queue/ack", json!({"queue": "d", "message_id": id})).await;
        assert_eq!(s, 200, "ack on a full disk: {v}");
    }

    std::fs::remove_file(&filler).unwrap();
    wait_ready(&c, &base, 200).await;
    let (s, v) = call(&c, &base, "/v1/queue/publish", json!({"queue": "d", "payload": "after"})).await;
    assert_eq!(s, 201, "after space returns: {v}");
    answered.insert(v["message_id"].as_str().unwrap().to_string());

    server.terminate();
    assert_eq!(
        server.wait_exit(Duration::from_secs(20)),
        Some(0),
        "SIGTERM after a disk-full episode:\n{}",
        server.log_text()
    );
    drop(server);

    // A start attempted while the disk is full (a Restart=always loop does this) must not
    // keep the store from opening once space is back.
    fill(&filler);
    match try_start(&fs.0, &config(&data)) {
        Started::Listening(mut s) => {
            s.terminate();
            s.wait_exit(Duration::from_secs(20));
        }
        Started::Exited { .. } => {}
    }
    std::fs::remove_file(&filler).unwrap();

    let server = start(&fs.0, &config(&data));
    let base = server.base.clone();
    let mut found = HashSet::new();
    loop {
        let (s, v) = call(
            &c,
            &base,
            "/v1/queue/consume",
            json!({"queue": "d", "max_messages": 100, "visibility_timeout": 3600}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let msgs = v["messages"].as_array().unwrap();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            found.insert(m["message_id"].as_str().unwrap().to_string());
        }
    }
    for id in &leased {
        assert!(!found.contains(id), "{id} was acked on the full disk and came back");
    }
    let lost: Vec<_> = answered.iter().filter(|id| !found.contains(*id) && !leased.contains(*id)).collect();
    assert!(lost.is_empty(), "{} answered publishes lost: {lost:?}", lost.len());
}
