//! The middleware every request passes through, over real connections: each request is named by
//! its dialect and operation (seen by a test layer above the real router, as the `Operation`
//! response extension), and a handler's panic answers its dialect's internal error, with the
//! request id, on a connection that stays usable.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::Response;
use axum::routing::{any, get, post};
use common::ctyun::CtClient;
use common::dms::DmsClient;
use common::mns::MnsClient;
use common::*;
use qgate::core::ManualClock;
use qgate::http::{Operation, set_operation};
use qgate::state::AppState;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The real router on a free port, with a layer above it that records each response's operation.
struct Server {
    base: String,
    clock: ManualClock,
    state: AppState,
    seen: Arc<Mutex<Vec<Operation>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.state.broker.engine().close();
    }
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let opened = qgate::server::open(test_config(dir.path()), Arc::new(clock.clone())).await.unwrap();
        let state = opened.state.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = qgate::server::app(state.clone()).layer(axum::middleware::map_response(move |resp: Response| {
            let log = log.clone();
            async move {
                let op = resp.extensions().get::<Operation>().copied();
                log.lock().unwrap().push(op.expect("every response carries its operation"));
                resp
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        Server { base, clock, state, seen, _dir: dir }
    }

    /// The operation of the last answered request.
    fn last(&self) -> (&'static str, &'static str) {
        let op = *self.seen.lock().unwrap().last().expect("a request was answered");
        (op.dialect, op.name)
    }
}

#[tokio::test]
async fn every_request_is_named_by_dialect_and_operation() {
    let s = Server::start().await;
    let c = client();

    // infrai: named by capability, before the bearer check.
    let infrai = |path: &str| c.post(s.url_of(path)).header("authorization", "Bearer ifr_test");
    infrai("/v1/queue/create").body(json!({"name": "q"}).to_string()).send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "create"));
    infrai("/v1/queue/publish").body(json!({"queue": "q", "payload": 1}).to_string()).send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "publish"));
    infrai("/v1/queue/consume").body(json!({"queue": "q", "wait_seconds": 0}).to_string()).send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "consume"));
    let r = c
        .post(s.url_of("/v1/queue/publish"))
        .body(json!({"queue": "q", "payload": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), s.last()), (401, ("infrai", "publish")), "refused, still named");
    c.get(s.url_of("/v1/queue/push_subscribe/q")).header("authorization", "Bearer ifr_test").send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "push_subscribe.list"));
    c.get(s.url_of("/v1/queue/nothing")).send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "unknown"));
    c.get(s.url_of("/v1/queue/publish")).send().await.unwrap();
    assert_eq!(s.last(), ("infrai", "unknown"), "a method the route lacks");

    // MNS: the vendor's names, batch and peek forms included.
    let m = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    m.create("mq", "").await;
    assert_eq!(s.last(), ("mns", "CreateQueue"));
    m.send_msg("mq", "hello").await;
    assert_eq!(s.last(), ("mns", "SendMessage"));
    let batch = "<Messages xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><Message><MessageBody>a</MessageBody></Message></Messages>";
    m.call("POST", "/queues/mq/messages", Some(batch), &[]).await;
    assert_eq!(s.last(), ("mns", "BatchSendMessage"));
    m.get("/queues/mq/messages?peekonly=true").await;
    assert_eq!(s.last(), ("mns", "PeekMessage"));
    m.get("/queues/mq/messages?numOfMessages=2&waitseconds=0").await;
    assert_eq!(s.last(), ("mns", "BatchReceiveMessage"));
    m.get("/queues/mq").await;
    assert_eq!(s.last(), ("mns", "GetQueueAttributes"));
    MnsClient::new(&s.base, "test-ak", "wrong", &s.clock).get("/queues").await;
    assert_eq!(s.last(), ("mns", "ListQueue"), "refused, still named");
    m.get("/queues/mq/other").await;
    assert_eq!(s.last(), ("mns", "unknown"));

    // CTYun: the operation as its path names it.
    let ct = CtClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    let info = json!({"regionId": "r1", "name": "cq"});
    let created = ct.post("createQueue", &[("createQueueInfo", info)]).await;
    assert_eq!((created.code(), s.last()), (800, ("ctyun", "createQueue")));
    ct.get("queryQuota", &[("regionId", json!("r1"))]).await;
    assert_eq!(s.last(), ("ctyun", "queryQuota"));
    CtClient::new(&s.base, "nobody", "x", &s.clock).get("queryQueue", &[("regionId", json!("r1"))]).await;
    assert_eq!(s.last(), ("ctyun", "queryQueue"), "refused, still named");
    ct.get("deleteEverything", &[]).await;
    assert_eq!(s.last(), ("ctyun", "unknown"));

    // DMS: the vendor SDK's request names.
    let d = DmsClient::new(&s.base, "test-ak", "test-sk", "0123456789abcdef0123456789abcdef", &s.clock);
    let q = d.call("POST", "/queues", &[], Some(&json!({"name": "dq"}))).await;
    assert_eq!((q.status, s.last()), (201, ("dms", "CreateQueue")));
    let id = q.body["id"].as_str().unwrap().to_string();
    d.call("GET", "/queues", &[], None).await;
    assert_eq!(s.last(), ("dms", "ListQueues"));
    d.call("POST", &format!("/queues/{id}/messages"), &[], Some(&json!({"messages": [{"body": 1}]}))).await;
    assert_eq!(s.last(), ("dms", "SendMessages"));
    d.call("GET", &format!("/queues/{id}/groups"), &[], None).await;
    assert_eq!(s.last(), ("dms", "ListConsumerGroups"));
    d.call("PUT", "/queues", &[], None).await;
    assert_eq!(s.last(), ("dms", "unknown"), "a method the path lacks");
    d.call("GET", "/nothing", &[], None).await;
    assert_eq!(s.last(), ("dms", "unknown"));

    // Outside every dialect.
    c.get(s.url_of("/healthz")).send().await.unwrap();
    assert_eq!(s.last(), ("none", "healthz"));
    c.get(s.url_of("/nothing")).send().await.unwrap();
    assert_eq!(s.last(), ("none", "unknown"));
}

impl Server {
    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A handler that names its operation, then panics (after an await, like a real handler).
async fn boom(dialect: &'static str) -> Response {
    set_operation(Operation::new(dialect, "Boom"));
    tokio::task::yield_now().await;
    panic!("deliberate test panic in {dialect}");
}

/// One HTTP/1.1 exchange on an open connection: (status, lower-case headers, body).
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, HashMap<String, String>, String) {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: qgate.test\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "the connection answered: {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let Some((k, v)) = line.trim_end().split_once(':') else { break };
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers["content-length"].parse().unwrap();
    let mut buf = vec![0; len];
    conn.read_exact(&mut buf).await.unwrap();
    (status, headers, String::from_utf8(buf).unwrap())
}

#[tokio::test]
async fn a_panicking_handler_answers_its_dialects_internal_error_and_the_connection_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let opened = qgate::server::open(test_config(dir.path()), Arc::new(ManualClock::new(T0))).await.unwrap();
    let state = opened.state.clone();
    // Test-only routes under each dialect's prefix, behind the production middleware.
    let routes = Router::new()
        .route("/v1/queue/boom", post(|| boom("infrai")))
        .route("/queues/boom/messages", get(|| boom("mns")))
        .route("/apiproxy/v3/queue/boom", any(|| boom("ctyun")))
        .route("/v2/{project}/boom", get(|| boom("dms")))
        .route("/boom", get(|| boom("none")))
        .route("/healthz", get(|| async { "ok" }));
    let app = qgate::server::layers(routes, &state).with_state(state.clone()).layer(axum::middleware::map_response(
        |resp: Response| async move {
            let op = resp.extensions().get::<Operation>().copied().expect("the operation survives the panic");
            let mut resp = resp;
            resp.headers_mut().insert("x-test-operation", format!("{}/{}", op.dialect, op.name).parse().unwrap());
            resp
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });

    let cases = [
        ("POST", "/v1/queue/boom", "{}", "infrai"),
        ("GET", "/queues/boom/messages", "", "mns"),
        ("POST", "/apiproxy/v3/queue/boom", "{}", "ctyun"),
        ("GET", "/v2/0123456789abcdef0123456789abcdef/boom", "", "dms"),
        ("GET", "/boom", "", "none"),
    ];
    for (method, path, body, dialect) in cases {
        let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let (status, headers, text) = exchange(&mut conn, method, path, body).await;
        let id = headers["x-request-id"].clone();
        assert_eq!(headers["x-test-operation"], format!("{dialect}/Boom"), "{path}");
        match dialect {
            "infrai" => {
                assert_eq!(status, 500);
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["error"]["code"], "INTERNAL");
                assert_eq!(v["error"]["request_id"], id.as_str());
            }
            "mns" => {
                assert_eq!(status, 500);
                let root = common::mns::parse(&text);
                assert_eq!(root.name, "Error");
                assert_eq!(root.text_of("Code"), "InternalError");
                assert_eq!(root.text_of("RequestId"), id);
                assert_eq!(root.text_of("HostId"), "http://qgate.test");
                assert_eq!(headers["x-mns-request-id"], id);
            }
            "ctyun" => {
                // A 900 envelope like every CTYun refusal (HTTP 200 unless http_status = "mirror").
                assert_eq!(status, 200);
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!((v["statusCode"].clone(), v["errorCode"].clone()), (json!(900), json!("DMS.InternalError")));
            }
            "dms" => {
                assert_eq!(status, 500);
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["error_code"], "10250002");
                assert_eq!(v["request_id"], id.as_str());
            }
            _ => {
                assert_eq!(status, 500);
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["error"]["request_id"], id.as_str());
            }
        }
        assert_ne!(headers.get("connection").map(String::as_str), Some("close"), "{path}");
        // The same connection serves the next request.
        let (status, headers, text) = exchange(&mut conn, "GET", "/healthz", "").await;
        assert_eq!((status, text.as_str()), (200, "ok"), "{path}: the connection survived");
        assert_ne!(headers["x-request-id"], id);
    }
    let _ = state.broker.engine().close();
}

/// Reads one response's status line, headers and body from an open connection.
async fn response(conn: &mut BufReader<TcpStream>) -> Option<(u16, HashMap<String, String>, String)> {
    let mut line = String::new();
    if conn.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status = line.get(9..12)?.parse().ok()?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.ok()?;
        let Some((k, v)) = line.trim_end().split_once(':') else { break };
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    let mut buf = vec![0; headers.get("content-length")?.parse().ok()?];
    conn.read_exact(&mut buf).await.ok()?;
    Some((status, headers, String::from_utf8_lossy(&buf).into_owned()))
}

/// A request refused before its body is read (unknown route, bad credentials, unknown CTYun
/// operation) must not leave the connection to die under the client: a small body is drained
/// and the connection serves the next request; a large one is answered with `Connection: close`
/// so the client knows to open a new one.
#[tokio::test]
async fn a_request_refused_before_its_body_keeps_the_connection_or_says_close() {
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let cases = [
        ("PUT", "/nowhere/at/all", "", 1_000usize),
        ("PUT", "/queues/q/unknown-thing", "", 1_000),
        ("POST", "/v1/queue/publish", "Authorization: Bearer wrong\r\n", 1_000),
        ("POST", "/apiproxy/v3/queue/noSuchOperation", "", 1_000),
        ("PUT", "/nowhere/at/all", "", 300_000),
    ];
    for (method, path, extra, len) in cases {
        let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
        // The head first, the body a moment later: the server answers before it has the body.
        let head = format!("{method} {path} HTTP/1.1\r\nHost: qgate.test\r\n{extra}Content-Length: {len}\r\n\r\n");
        conn.get_mut().write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = conn.get_mut().write_all(&vec![b'x'; len]).await;
        let (status, headers, _) = response(&mut conn).await.expect("an answer");
        assert!(status >= 200, "{path}");
        let close = headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if len > 64 * 1024 {
            assert!(close, "{path} with {len} bytes: says Connection: close");
            continue;
        }
        assert!(!close, "{path}: a small body is drained, the connection kept");
        conn.get_mut().write_all(b"GET /healthz HTTP/1.1\r\nHost: qgate.test\r\n\r\n").await.unwrap();
        let next = response(&mut conn).await;
        assert_eq!(next.map(|(st, _, body)| (st, body)), Some((200, "ok".to_string())), "{path}: the next request");
    }
}

/// A client stalled in the middle of a request (its body never comes) does not hold shutdown
/// hostage: after the grace period shutdown carries on, the engine's final flush runs, and the
/// server returns Ok (the process then exits, closing what is left).
#[tokio::test]
async fn a_stalled_client_does_not_block_shutdown_past_the_grace_period() {
    let s = TestServer::start_with(|c| c.shutdown_grace_secs = 1).await;
    let c = client();
    let r = c.post(s.url("/v1/queue/create")).bearer_auth("ifr_test").body(r#"{"name": "kept"}"#).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(s.url("/v1/queue/publish"))
        .bearer_auth("ifr_test")
        .body(r#"{"queue": "kept", "payload": "answered"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut stalled = TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap();
    stalled
        .write_all(b"POST /v1/queue/publish HTTP/1.1\r\nHost: qgate.test\r\nAuthorization: Bearer ifr_test\r\nContent-Length: 100\r\n\r\n{\"queue\"")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), s.stop_keep()).await;
    let (result, _dir, _clock) = stopped.expect("shutdown finished despite the stalled client");
    result.expect("a clean stop, final flush included");
    drop(stalled);
}
