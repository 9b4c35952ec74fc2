//! Push delivery against a local receiver: signature, retries with backoff on the manual
//! clock, dead-lettering after max_retries, SSRF refusal at delivery, restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{KeyInit, Mac};
use qgate::core::model::{DEFAULT_GROUP, NewMessage, SubscriptionRecord};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A push target: records what it receives, fails the first `fail` requests with 500.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<(HeaderMap, String)>,
}

#[derive(Clone)]
struct RecvState {
    tx: mpsc::UnboundedSender<(HeaderMap, String)>,
    fail: Arc<AtomicU32>,
}

async fn hook(State(st): State<RecvState>, headers: HeaderMap, body: String) -> StatusCode {
    let _ = st.tx.send((headers, body));
    let failing = st.fail.load(Ordering::SeqCst);
    if failing > 0 {
        st.fail.store(failing - 1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver(fail: u32) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let st = RecvState { tx, fail: Arc::new(AtomicU32::new(fail)) };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, rx }
}

impl Receiver {
    async fn next(&mut self) -> (HeaderMap, Value) {
        let (h, b) =
            tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await.expect("a delivery came").unwrap();
        (h, serde_json::from_str(&b).unwrap())
    }

    /// Advances the server clock in 100 ms steps until the next delivery arrives; returns how
    /// far the clock moved and the delivery. (The worker reads the clock when it starts its
    /// backoff, so the test cannot jump straight to the deadline.)
    async fn advance_until_next(&mut self, s: &TestServer) -> (u64, Value) {
        let mut moved = 0;
        for _ in 0..1000 {
            if let Ok(Some((_, b))) = tokio::time::timeout(Duration::from_millis(20), self.rx.recv()).await {
                return (moved, serde_json::from_str(&b).unwrap());
            }
            s.clock.advance(Duration::from_millis(100));
            moved += 100;
        }
        panic!("no delivery came");
    }

    async fn none_within(&mut self, ms: u64) {
        assert!(tokio::time::timeout(Duration::from_millis(ms), self.rx.recv()).await.is_err(), "no delivery expected");
    }
}

/// Independent check of the signature (not the server's signing code).
fn expected_signature(secret: &str, ts: &str, body: &str) -> String {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

async fn subscribe(s: &TestServer, queue: &str, body: Value) -> String {
    let r = client()
        .post(s.url(&format!("/v1/queue/push_subscribe/{queue}")))
        .header("authorization", "Bearer ifr_test")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["subscription_id"].as_str().unwrap().to_string()
}

async fn create(s: &TestServer, name: &str) -> Arc<qgate::core::Queue> {
    s.state.broker.create_queue("t", name, qgate::core::model::QueueConfig::default(), None).await.unwrap();
    s.state.broker.queue("t", name).await.unwrap()
}

async fn settled(s: &TestServer, q: &qgate::core::Queue) -> qgate::core::model::GroupStats {
    // The ack follows the receiver's answer asynchronously: wait (in real time) until settled.
    for _ in 0..200 {
        let st = s.state.broker.stats(q, DEFAULT_GROUP).await.unwrap();
        if st.in_flight == 0 {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the delivery never settled");
}

#[tokio::test]
async fn delivers_signed_messages_and_acks_on_2xx() {
    let s = TestServer::start().await;
    let mut rcv = receiver(0).await;
    let q = create(&s, "q").await;
    let sub = subscribe(&s, "q", json!({"url": rcv.url, "secret": "top-secret"})).await;
    let id = s.state.broker.publish(&q, vec![NewMessage::json(br#"{"order":1}"#.to_vec())]).await.unwrap()[0].id;

    let (h, body) = rcv.next().await;
    let ts = h["x-qgate-timestamp"].to_str().unwrap().to_string();
    assert_eq!(ts, (T0 / 1000).to_string(), "the timestamp is the server clock's");
    let raw = body.to_string();
    assert_eq!(h["x-qgate-signature"].to_str().unwrap(), expected_signature("top-secret", &ts, &raw));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(body["subscription_id"], sub.as_str());
    assert_eq!(body["queue"], "q");
    assert_eq!(body["message_id"], id.to_string().as_str());
    assert_eq!(body["payload"], json!({"order": 1}));
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["enqueued_at"], "2024-01-01T00:00:00Z");
    let st = settled(&s, &q).await;
    assert_eq!((st.ready, st.produced), (0, 0), "acked after the 2xx");
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let s = TestServer::start().await;
    let mut rcv = receiver(0).await;
    let q = create(&s, "q").await;
    subscribe(&s, "q", json!({"forward_to": rcv.url})).await;
    s.state.broker.publish(&q, vec![NewMessage::text("plain text")]).await.unwrap();
    let (h, body) = rcv.next().await;
    assert!(h.get("x-qgate-signature").is_none());
    assert_eq!(body["payload"], "plain text");
}

#[tokio::test]
async fn retries_with_backoff_then_dead_letters() {
    let s = TestServer::start().await;
    let mut rcv = receiver(u32::MAX).await;
    let q = create(&s, "q").await;
    let dlq = create(&s, "q-dlq").await;
    subscribe(&s, "q", json!({"url": rcv.url, "max_retries": 2, "dead_letter_queue": "q-dlq"})).await;
    s.state.broker.publish(&q, vec![NewMessage::text("doomed")]).await.unwrap();

    assert_eq!(rcv.next().await.1["attempts"], 1);
    // Backoff 1 s (base), then 2 s: nothing before the clock moves that far.
    rcv.none_within(200).await;
    let (moved, body) = rcv.advance_until_next(&s).await;
    assert_eq!(body["attempts"], 2);
    assert!(moved >= 1_000, "retried after {moved} ms");
    let (moved, body) = rcv.advance_until_next(&s).await;
    assert_eq!(body["attempts"], 3);
    assert!(moved >= 2_000, "the backoff doubled: retried after {moved} ms");
    // Out of retries: dead-lettered into the subscription's DLQ, not redelivered.
    let st = settled(&s, &q).await;
    assert_eq!((st.ready, st.produced), (0, 0));
    assert_eq!(s.state.broker.stats(&dlq, DEFAULT_GROUP).await.unwrap().ready, 1);
    let page = s.state.broker.dead_letters(&q, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].body.body, b"doomed");
    s.clock.advance(Duration::from_secs(60));
    rcv.none_within(200).await;
}

#[tokio::test]
async fn a_recovering_target_gets_the_message_on_retry() {
    let s = TestServer::start().await;
    let mut rcv = receiver(1).await;
    let q = create(&s, "q").await;
    subscribe(&s, "q", json!({"url": rcv.url, "max_retries": 3})).await;
    s.state.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap();
    rcv.next().await;
    assert_eq!(rcv.advance_until_next(&s).await.1["attempts"], 2);
    let st = settled(&s, &q).await;
    assert_eq!((st.produced, st.dead), (0, 0));
}

#[tokio::test]
async fn delivery_refuses_private_targets_even_if_stored() {
    let s = TestServer::start().await;
    let q = create(&s, "q").await;
    // Bypass the subscribe-time check (as a record restored from an older config would).
    let rec = SubscriptionRecord {
        id: uuid::Uuid::new_v4(),
        namespace: "t".into(),
        queue_id: q.id(),
        url: "http://10.255.255.1/hook".into(),
        secret: None,
        max_retries: 1,
        visibility_timeout_secs: 30,
        dead_letter_queue: None,
        created_at: T0,
    };
    s.state.push.subscribe(rec).await.unwrap();
    s.state.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap();
    // Attempt 1 fails at the SSRF check; after the 1 s backoff, attempt 2 too: dead letter.
    for _ in 0..200 {
        s.clock.advance(Duration::from_millis(100));
        if s.state.broker.stats(&q, DEFAULT_GROUP).await.unwrap().dead == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a private target was never given up on");
}

#[tokio::test]
async fn subscriptions_survive_a_restart() {
    let s = TestServer::start().await;
    let mut rcv = receiver(0).await;
    create(&s, "q").await;
    subscribe(&s, "q", json!({"url": rcv.url})).await;
    let (r, dir, clock) = s.stop_keep().await;
    r.unwrap();
    let s = TestServer::start_in(dir, clock, |_| {}).await;
    let q = s.state.broker.queue("t", "q").await.unwrap();
    s.state.broker.publish(&q, vec![NewMessage::text("after restart")]).await.unwrap();
    assert_eq!(rcv.next().await.1["payload"], "after restart");
}
