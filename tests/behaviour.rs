//! One behaviour suite, run through every dialect's client — infrai, MNS, CTYun, DMS — so the four
//! stay consistent: ordering, leases and redelivery, failures, dead letters, long polling.
//! MNS and infrai consume the default group; CTYun and DMS a named group. Time is the server's
//! manual clock.

mod common;

use std::time::Duration;

use common::ctyun::CtClient;
use common::dms::DmsClient;
use common::mns::MnsClient;
use common::*;
use serde_json::{Value, json};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const LEASE: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dialect {
    Infrai,
    Mns,
    Ctyun,
    Dms,
}

/// A queue set up through one dialect (plus its consumer group where the dialect has them).
#[derive(Clone)]
struct Q {
    name: String,
    id: String,
    group: String,
}

/// One received message: its body text and the token that settles it.
#[derive(Debug, Clone)]
struct Got {
    body: String,
    token: String,
}

struct Env {
    s: TestServer,
}

impl Env {
    fn infrai(&self) -> reqwest::Client {
        client()
    }
    fn mns(&self) -> MnsClient {
        MnsClient::new(&self.s.base, "test-ak", "test-sk", &self.s.clock)
    }
    fn ct(&self) -> CtClient {
        CtClient::new(&self.s.base, "test-ak", "test-sk", &self.s.clock)
    }
    fn dms(&self) -> DmsClient {
        DmsClient::new(&self.s.base, "test-ak", "test-sk", PROJECT, &self.s.clock)
    }

    async fn infrai_call(&self, path: &str, body: Value) -> Value {
        let r = self
            .infrai()
            .post(self.s.url(path))
            .header("authorization", "Bearer ifr_test")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(status < 300, "{path}: {status} {v}");
        v
    }

    /// Creates a queue; `max_failures` enables dead letters where the dialect has them.
    async fn setup(&self, d: Dialect, name: &str, max_failures: Option<u32>) -> Q {
        match d {
            Dialect::Infrai => {
                let mut b = json!({"name": name, "visibility_timeout_default": LEASE});
                if let Some(m) = max_failures {
                    b["max_retries"] = json!(m - 1);
                }
                self.infrai_call("/v1/queue/create", b).await;
                Q { name: name.into(), id: String::new(), group: String::new() }
            }
            Dialect::Mns => {
                let r = self.mns().create(name, &format!("<VisibilityTimeout>{LEASE}</VisibilityTimeout>")).await;
                assert_eq!(r.status, 201, "{}", r.body);
                Q { name: name.into(), id: String::new(), group: String::new() }
            }
            Dialect::Ctyun => {
                let mut info = json!({"regionId": "r", "name": name});
                if let Some(m) = max_failures {
                    info["redrivePolicy"] = json!("enable");
                    info["maxConsumeCount"] = json!(m);
                }
                let r = self.ct().post("createQueue", &[("createQueueInfo", info)]).await;
                let id = serde_json::from_str::<Value>(r.body["returnObj"].as_str().unwrap()).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let g = self
                    .ct()
                    .post(
                        "createConsumeGroup",
                        &[("regionId", json!("r")), ("queueId", json!(id)), ("groups", json!([{"name": "g"}]))],
                    )
                    .await;
                Q { name: name.into(), id, group: g.body["consumerGroupId"].as_str().unwrap().into() }
            }
            Dialect::Dms => {
                let mut b = json!({"name": name});
                if let Some(m) = max_failures {
                    b["redrive_policy"] = json!("enable");
                    b["max_consume_count"] = json!(m);
                }
                let r = self.dms().call("POST", "/queues", &[], Some(&b)).await;
                let id = r.body["id"].as_str().unwrap_or_else(|| panic!("{}", r.body)).to_string();
                let g = self
                    .dms()
                    .call("POST", &format!("/queues/{id}/groups"), &[], Some(&json!({"groups": [{"name": "g"}]})))
                    .await;
                Q { name: name.into(), id, group: g.body["groups"][0]["id"].as_str().unwrap().into() }
            }
        }
    }

    async fn send(&self, d: Dialect, q: &Q, body: &str) {
        match d {
            Dialect::Infrai => {
                self.infrai_call("/v1/queue/publish", json!({"queue": q.name, "payload": body})).await;
            }
            Dialect::Mns => assert_eq!(self.mns().send_msg(&q.name, body).await.status, 201),
            Dialect::Ctyun => {
                let r = self
                    .ct()
                    .post(
                        "sendSpecifyQueueMessage",
                        &[("regionId", json!("r")), ("queueId", json!(q.id)), ("messages", json!([{"body": body}]))],
                    )
                    .await;
                assert_eq!(r.code(), 800, "{}", r.body);
            }
            Dialect::Dms => {
                let r = self
                    .dms()
                    .call(
                        "POST",
                        &format!("/queues/{}/messages", q.id),
                        &[],
                        Some(&json!({"messages": [{"body": body}]})),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
            }
        }
    }

    /// Receives up to `max`, long-polling `wait` seconds (≥ 1: the dialects with a minimum).
    async fn receive(&self, d: Dialect, q: &Q, max: usize, wait: u64) -> Vec<Got> {
        match d {
            Dialect::Infrai => {
                let v = self.infrai_call("/v1/queue/consume", json!({"queue": q.name, "max_messages": max, "wait_seconds": wait, "visibility_timeout": LEASE})).await;
                v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| Got {
                        body: m["payload"].as_str().unwrap().into(),
                        token: m["message_id"].as_str().unwrap().into(),
                    })
                    .collect()
            }
            Dialect::Mns => {
                let r = self
                    .mns()
                    .get(&format!("/queues/{}/messages?numOfMessages={max}&waitseconds={wait}", q.name))
                    .await;
                if r.status == 404 {
                    assert_eq!(r.error_code(), "MessageNotExist");
                    return Vec::new();
                }
                r.root()
                    .children
                    .iter()
                    .map(|m| Got { body: m.text_of("MessageBody"), token: m.text_of("ReceiptHandle") })
                    .collect()
            }
            Dialect::Ctyun => {
                let info = json!({"regionId": "r", "queueId": q.id, "consumerGroupId": q.group, "maxMsgs": max, "timeWait": wait.max(1), "ackWait": LEASE});
                let r = self.ct().get("consumptionMessage", &[("consumerQueueInfo", info)]).await;
                r.inner()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| Got {
                        body: m["message"]["body"].as_str().unwrap().into(),
                        token: m["handler"].as_str().unwrap().into(),
                    })
                    .collect()
            }
            Dialect::Dms => {
                let (max, wait, lease) = (max.to_string(), wait.max(1).to_string(), LEASE.to_string());
                let r = self
                    .dms()
                    .call(
                        "GET",
                        &format!("/queues/{}/groups/{}/messages", q.id, q.group),
                        &[("max_msgs", &max), ("time_wait", &wait), ("ack_wait", &lease)],
                        None,
                    )
                    .await;
                r.body
                    .as_array()
                    .unwrap_or_else(|| panic!("{}", r.body))
                    .iter()
                    .map(|m| Got {
                        body: m["message"]["body"].as_str().unwrap().into(),
                        token: m["handler"].as_str().unwrap().into(),
                    })
                    .collect()
            }
        }
    }

    /// A receive expected to come back empty: the wait runs on the manual clock.
    async fn receive_nothing(self: &std::sync::Arc<Self>, d: Dialect, q: &Q) {
        let me = self.clone();
        let q2 = q.clone();
        let got = drive(&self.s.clock, async move { me.receive(d, &q2, 10, 1).await }).await;
        assert!(got.is_empty(), "{d:?}: expected nothing, got {got:?}");
    }

    async fn settle(&self, d: Dialect, q: &Q, g: &Got, success: bool) {
        match d {
            Dialect::Infrai => {
                let path = if success { "/v1/queue/ack" } else { "/v1/queue/nack" };
                self.infrai_call(path, json!({"queue": q.name, "message_id": g.token})).await;
            }
            Dialect::Mns => {
                if success {
                    let r = self
                        .mns()
                        .call("DELETE", &format!("/queues/{}/messages?ReceiptHandle={}", q.name, g.token), None, &[])
                        .await;
                    assert_eq!(r.status, 204, "{}", r.body);
                } else {
                    // MNS has no nack: a consumer gives a message back by making it visible again.
                    let r = self
                        .mns()
                        .call(
                            "PUT",
                            &format!("/queues/{}/messages?ReceiptHandle={}&VisibilityTimeout=1", q.name, g.token),
                            None,
                            &[],
                        )
                        .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    self.s.clock.advance(Duration::from_secs(1));
                }
            }
            Dialect::Ctyun => {
                let status = if success { "success" } else { "fail" };
                let r = self
                    .ct()
                    .post(
                        "confirmConsumedSpecifiedMessage",
                        &[
                            ("regionId", json!("r")),
                            ("queueId", json!(q.id)),
                            ("consumerGroupId", json!(q.group)),
                            ("message", json!([{"handler": g.token, "status": status}])),
                        ],
                    )
                    .await;
                assert_eq!(r.inner()["success"], if success { 1 } else { 0 });
            }
            Dialect::Dms => {
                let status = if success { "success" } else { "fail" };
                let r = self
                    .dms()
                    .call(
                        "POST",
                        &format!("/queues/{}/groups/{}/ack", q.id, q.group),
                        &[],
                        Some(&json!({"message": [{"handler": g.token, "status": status}]})),
                    )
                    .await;
                assert_eq!(r.body["success"], if success { 1 } else { 0 }, "{}", r.body);
            }
        }
    }

    /// The bodies of the queue's dead letters (None where the dialect has none).
    async fn dead_letters(&self, d: Dialect, q: &Q) -> Option<Vec<String>> {
        match d {
            Dialect::Mns => None,
            Dialect::Infrai => {
                let r = self
                    .infrai()
                    .get(self.s.url(&format!("/v1/queue/dlq/list/{}", q.name)))
                    .header("authorization", "Bearer ifr_test")
                    .send()
                    .await
                    .unwrap();
                let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                Some(
                    v["items"].as_array().unwrap().iter().map(|i| i["payload"].as_str().unwrap().to_string()).collect(),
                )
            }
            Dialect::Ctyun => {
                let info = json!({"regionId": "r", "queueId": q.id, "consumerGroupId": q.group, "timeWait": 1});
                let r = self.ct().get("consumeDeadlettersMessage", &[("consumedMessageInfo", info)]).await;
                Some(
                    r.inner()
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["message"]["body"].as_str().unwrap().to_string())
                        .collect(),
                )
            }
            Dialect::Dms => {
                let r = self
                    .dms()
                    .call(
                        "GET",
                        &format!("/queues/{}/groups/{}/deadletters", q.id, q.group),
                        &[("time_wait", "1")],
                        None,
                    )
                    .await;
                Some(
                    r.body
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["message"]["body"].as_str().unwrap().to_string())
                        .collect(),
                )
            }
        }
    }
}

fn bodies(g: &[Got]) -> Vec<&str> {
    g.iter().map(|x| x.body.as_str()).collect()
}

async fn suite(d: Dialect) {
    let env = std::sync::Arc::new(Env { s: TestServer::start().await });
    let clock = env.s.clock.clone();

    // Ordering: send order, a batch at once.
    let q = env.setup(d, "order", None).await;
    for b in ["a", "b", "c", "d", "e"] {
        env.send(d, &q, b).await;
    }
    let got = env.receive(d, &q, 10, 1).await;
    assert_eq!(bodies(&got), ["a", "b", "c", "d", "e"], "{d:?}: order");

    // Lease: invisible while leased, back after the lease, gone after an ack.
    let q = env.setup(d, "lease", None).await;
    env.send(d, &q, "x").await;
    let first = env.receive(d, &q, 1, 1).await;
    assert_eq!(bodies(&first), ["x"], "{d:?}");
    env.receive_nothing(d, &q).await;
    clock.advance(Duration::from_secs(LEASE));
    let again = env.receive(d, &q, 1, 1).await;
    assert_eq!(bodies(&again), ["x"], "{d:?}: redelivered after the lease");
    env.settle(d, &q, &again[0], true).await;
    env.receive_nothing(d, &q).await;
    clock.advance(Duration::from_secs(LEASE));
    env.receive_nothing(d, &q).await;

    // A failure makes it deliverable again at once.
    let q = env.setup(d, "fail", None).await;
    env.send(d, &q, "y").await;
    let got = env.receive(d, &q, 1, 1).await;
    env.settle(d, &q, &got[0], false).await;
    assert_eq!(bodies(&env.receive(d, &q, 1, 1).await), ["y"], "{d:?}: after a failure");

    // Dead letters after the configured number of failures (the dialects that have them).
    let q = env.setup(d, "dead", Some(2)).await;
    env.send(d, &q, "z").await;
    env.send(d, &q, "ok").await;
    for _ in 0..2 {
        let got = env.receive(d, &q, 1, 1).await;
        assert_eq!(bodies(&got), ["z"], "{d:?}");
        env.settle(d, &q, &got[0], false).await;
    }
    if let Some(dead) = env.dead_letters(d, &q).await {
        assert_eq!(dead, ["z"], "{d:?}: dead-lettered at the second failure");
        assert_eq!(bodies(&env.receive(d, &q, 10, 1).await), ["ok"], "{d:?}: the rest flows on");
    }

    // Long polling: a send wakes a waiting receive; an empty wait ends empty.
    let q = env.setup(d, "poll", None).await;
    let (e2, q2) = (env.clone(), q.clone());
    let mut waiter = tokio::spawn(async move { e2.receive(d, &q2, 1, 10).await });
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "{d:?}: waiting");
    env.send(d, &q, "wake").await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken by the send").unwrap();
    assert_eq!(bodies(&got), ["wake"], "{d:?}");
    env.receive_nothing(d, &q).await;
}

#[tokio::test]
async fn infrai_behaves() {
    suite(Dialect::Infrai).await;
}

#[tokio::test]
async fn mns_behaves() {
    suite(Dialect::Mns).await;
}

#[tokio::test]
async fn ctyun_behaves() {
    suite(Dialect::Ctyun).await;
}

#[tokio::test]
async fn dms_behaves() {
    suite(Dialect::Dms).await;
}
