//! Abuse: a real server (the release binary) against clients that stall, trickle, hoard
//! connections or send what hyper cannot parse. Each test configures short timeouts so that a
//! stalled client is cut in about a second; what it checks is that the server cut it (the
//! socket reads end-of-file, or the dialect's own error arrives), never how fast.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::{Server, start, start_with};
use serde_json::{Value, json};

fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nshutdown_grace_secs = 1\n{extra}\n[[tenants]]\nname = \"t\"\nbearer_keys = [\"ifr_k\"]\n[[tenants.access_keys]]\nid = \"ak\"\nsecret = \"sk\"\n",
        dir.join("data").display()
    )
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until the server closes the connection; panics if it does not within the read
/// timeout (20 s, far above the configured limits).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "the server did not close the connection: {e} (read so far: {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// A response read off a raw socket: status and JSON body.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}")))
}

async fn healthz(server: &Server) -> u16 {
    let c = common::client();
    let r = tokio::time::timeout(Duration::from_secs(20), c.get(format!("{}/healthz", server.base)).send())
        .await
        .expect("/healthz answered");
    r.unwrap().status().as_u16()
}

/// Slowloris: request heads that never finish — sent at once and stalled, or trickled a byte
/// at a time — are cut at the header timeout (counted from their first byte), and the server
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_heads_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(dir.path(), "[http]\nheader_timeout_secs = 1\nidle_timeout_secs = 60"));
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"POST /v1/queue/publish HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer ifr_k\r\n").unwrap();
            s
        })
        .collect();
    let addr = server.addr.clone();
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = b"GET /healthz HTTP/1.1\r\nHost: q\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        for b in head {
            if s.write_all(&[*b]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    for s in &mut stalled {
        assert!(read_to_close(s).is_empty(), "a stalled head gets no answer, only a closed socket");
    }
    assert!(trickler.join().unwrap().is_some(), "a head trickled a byte per 100 ms was never cut");
    assert_eq!(healthz(&server).await, 200);
}

/// A body that stops arriving is answered with the dialect's own error at the body timeout
/// (and the connection closed: the rest of the body would otherwise be read as a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_are_answered_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(dir.path(), "[http]\nbody_timeout_secs = 1"));
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"POST /v1/queue/create HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer ifr_k\r\nContent-Length: 100000\r\n\r\n{\"name\": \"x")
                .unwrap();
            s
        })
        .collect();
    for s in &mut stalled {
        let (status, body) = parse_response(&read_to_close(s));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("did not arrive"), "{body}");
        assert!(body["error"]["request_id"].is_string());
    }
    assert_eq!(healthz(&server).await, 200);
}

/// Unauthenticated clients sending large bodies and stalling hold no memory: the signature is
/// checked on the headers and the request refused before the body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_large_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(dir.path(), ""));
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
    };
    let before = rss(server.child.id());
    let chunk = vec![b'a'; 256 * 1024];
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = connect(&server);
        let path = if i % 2 == 0 { "/apiproxy/v3/queue/createQueue" } else { "/queues/q/messages" };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: q\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\nAuthorization: MNS ak:forged\r\nDate: Fri, 04 Dec 2026 10:00:00 GMT\r\nctyun-eop-request-id: x\r\nEop-date: 20261204T100000Z\r\nEop-Authorization: forged\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        let _ = s.write_all(&chunk);
        conns.push(s);
    }
    for s in &mut conns {
        let raw = read_to_close(s);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 "), "an answer, not a dropped connection: {text:?}");
    }
    let after = rss(server.child.id());
    assert!(after < before + 200, "RSS went from {before} MiB to {after} MiB with 200 unauthenticated 4 MiB bodies");
    assert_eq!(healthz(&server).await, 200);
}

/// With fewer file descriptors than clients hoarding idle connections, the server closes the
/// longest-idle ones to make room: a new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarded_idle_connections_do_not_lock_out_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &config(dir.path(), "[http]\nidle_timeout_secs = 600"), Some(256));
    let mut hoard: Vec<TcpStream> = Vec::new();
    for _ in 0..400 {
        let mut s = connect(&server);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: q\r\n\r\n").unwrap();
        hoard.push(s);
    }
    assert_eq!(healthz(&server).await, 200, "a new client is served while 400 connections idle");
    let mut closed = 0;
    for s in &mut hoard {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    assert!(closed > 0, "no idle connection was closed to make room");
    assert!(server.log_text().contains("connection cap reached"), "{}", server.log_text());
}

/// Keep-alive connections idle past the idle timeout are closed; a long poll longer than the
/// idle timeout is not (it is a request in progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_long_polls_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(dir.path(), "[http]\nidle_timeout_secs = 1"));
    let c = common::client();
    let r = c
        .post(format!("{}/v1/queue/create", server.base))
        .bearer_auth("ifr_k")
        .body(json!({"name": "lp"}).to_string())
        .send();
    assert_eq!(r.await.unwrap().status(), 201);

    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: q\r\n\r\n").unwrap();
    let raw = read_to_close(&mut idle);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"), "answered, then closed when idle");

    let mut poll = connect(&server);
    let body = json!({"queue": "lp", "wait_seconds": 3}).to_string();
    poll.write_all(
        format!(
            "POST /v1/queue/consume HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer ifr_k\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let raw = read_to_close(&mut poll);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "the long poll is answered, not cut: {text:?}");
    assert!(text.contains("\"messages\":[]"), "{text}");
}

/// hyper's own answers to what it cannot parse carry a neutral JSON error with a request id
/// (hyper alone sends them with an empty body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_requests_get_a_neutral_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(dir.path(), ""));
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400, "BadRequest"),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: q\r\n{many_headers}\r\n").into_bytes(),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (format!("GET /{} HTTP/1.1\r\nHost: q\r\n\r\n", "a".repeat(70_000)).into_bytes(), 414, "URITooLong"),
    ];
    for (request, status, code) in cases {
        let mut s = connect(&server);
        s.write_all(&request).unwrap();
        let raw = read_to_close(&mut s);
        let (got, body) = parse_response(&raw);
        assert_eq!((got, body["error"]["code"].as_str().unwrap()), (status, code), "{body}");
        let id = body["error"]["request_id"].as_str().unwrap();
        assert!(String::from_utf8_lossy(&raw).contains(&format!("x-request-id: {id}")));
    }
    // A dialect's own errors pass untouched.
    let r = common::client().get(format!("{}/v1/queue/list", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "UNAUTHORIZED", "{v}");
}

/// SIGTERM with clients stalled mid-head and mid-body and a long poll waiting: the long poll
/// is answered, the stalled connections are closed after the grace period, the process exits
/// 0 after its final flush, and what was answered is there at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_forever_for_stalled_clients() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[http]\nheader_timeout_secs = 600\nbody_timeout_secs = 600");
    let mut server = start(dir.path(), &cfg);
    let c = common::client();
    let post = |path: &str, body: Value| {
        c.post(format!("{}{path}", server.base)).bearer_auth("ifr_k").body(body.to_string()).send()
    };
    assert_eq!(post("/v1/queue/create", json!({"name": "s"})).await.unwrap().status(), 201);
    assert_eq!(post("/v1/queue/publish", json!({"queue": "s", "payload": "kept"})).await.unwrap().status(), 201);
    assert_eq!(post("/v1/queue/create", json!({"name": "empty"})).await.unwrap().status(), 201);

    let mut head = connect(&server);
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: q\r\n").unwrap();
    let mut body = connect(&server);
    body.write_all(
        b"POST /v1/queue/create HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer ifr_k\r\nContent-Length: 1000\r\n\r\n{",
    )
    .unwrap();
    let long_poll = post("/v1/queue/consume", json!({"queue": "empty", "wait_seconds": 20}));
    let long_poll = tokio::spawn(long_poll);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.terminate();
    let polled = long_poll.await.unwrap().expect("the long poll is answered at shutdown");
    assert_eq!(polled.status(), 200);
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0), "{}", server.log_text());
    read_to_close(&mut head);
    read_to_close(&mut body);
    drop(server);

    let server = start(dir.path(), &cfg);
    let r = common::client()
        .post(format!("{}/v1/queue/consume", server.base))
        .bearer_auth("ifr_k")
        .body(json!({"queue": "s"}).to_string())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["messages"][0]["payload"], "kept", "{v}");
}
