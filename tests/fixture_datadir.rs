//! A data directory written by an earlier qgate (fixtures/datadir-v1, written by commit
//! 50db321 through HTTP only) opens with today's embedded engine and serves what it held: every
//! queue, every message body and attribute in its state (ready, delayed, leased, dead letter,
//! per consumer group), a receipt handle minted back then, the idempotency record and the push
//! subscription. The expected values come from fixtures/datadir-v1/MANIFEST.json, which was
//! recorded from the old server's answers, never from the code under test.

mod common;

use std::path::Path;
use std::sync::Arc;

use qgate::config::Config;
use qgate::core::model::DEFAULT_GROUP;
use qgate::core::{Broker, ManualClock, Queue, RedriveSelector};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/datadir-v1");

fn manifest() -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("MANIFEST.json")).expect("MANIFEST.json");
    serde_json::from_str(&text).expect("the manifest is JSON")
}

/// Copies the fixture (opening a data dir writes to it; the fixture must stay as written).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn config(m: &Value, dir: &Path) -> Config {
    let toml = m["written_by"]["config_toml"].as_str().expect("config_toml");
    let toml: String =
        toml.lines().filter(|l| !l.starts_with("listen") && !l.starts_with("data_dir")).collect::<Vec<_>>().join("\n");
    let mut cfg = Config::from_toml(&toml).expect("the fixture's config parses");
    cfg.data_dir = dir.to_path_buf();
    cfg
}

struct Opened {
    broker: Arc<Broker>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let _ = self.broker.engine().close();
    }
}

async fn open(m: &Value) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    // Inside the window where every state the manifest records still holds.
    let from = m["clock"]["state_valid_from_ms"].as_u64().unwrap();
    let clock = ManualClock::new(from + 1_000);
    let opened =
        qgate::server::open(config(m, dir.path()), Arc::new(clock.clone())).await.expect("the old data dir opens");
    Opened { broker: opened.state.broker.clone(), clock, _dir: dir }
}

fn queue_spec<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["queues"].as_array().unwrap().iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("{name} in manifest"))
}

fn messages<'a>(spec: &'a Value, state: &str) -> Vec<&'a Value> {
    spec["messages"].as_array().unwrap().iter().filter(|msg| msg["state"]["state"] == state).collect()
}

async fn q(b: &Broker, name: &str) -> Arc<Queue> {
    b.queue("fx", name).await.unwrap_or_else(|e| panic!("queue {name}: {e}"))
}

#[tokio::test]
async fn every_queue_opens_with_its_id_and_counts() {
    let m = manifest();
    let o = open(&m).await;
    let names: Vec<String> =
        o.broker.queues("fx").await.unwrap().iter().map(|q| q.name().to_string()).collect::<Vec<_>>();
    let mut expected: Vec<String> =
        m["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap().to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    for spec in m["queues"].as_array().unwrap() {
        let name = spec["name"].as_str().unwrap();
        let queue = q(&o.broker, name).await;
        assert_eq!(queue.id().to_string(), spec["queue_id"].as_str().unwrap(), "{name}");
        assert_eq!(queue.config().retention_secs, spec["config"]["retention_secs"].as_u64().unwrap(), "{name}");
        assert_eq!(
            queue.config().visibility_timeout_secs,
            spec["config"]["visibility_timeout_secs"].as_u64().unwrap(),
            "{name}"
        );
        let s = o.broker.stats(&queue, DEFAULT_GROUP).await.unwrap();
        let want = &spec["infrai_stats_default_group"];
        assert_eq!(
            (s.ready, s.in_flight, s.delayed, s.dead),
            (
                want["available"].as_u64().unwrap(),
                want["in_flight"].as_u64().unwrap(),
                want["delayed"].as_u64().unwrap(),
                want["dlq"].as_u64().unwrap()
            ),
            "{name}: (ready, in flight, delayed, dead)"
        );
    }
}

#[tokio::test]
async fn ready_messages_keep_their_bodies_attributes_and_order() {
    let m = manifest();
    let o = open(&m).await;
    for name in ["plain", "delayed", "leased", "orders", "orders-dlq", "fifo"] {
        let spec = queue_spec(&m, name);
        let queue = q(&o.broker, name).await;
        let peeked = o.broker.peek(&queue, DEFAULT_GROUP, 100).await.unwrap();
        let got: Vec<(String, String)> =
            peeked.iter().map(|p| (p.meta.id.to_string(), String::from_utf8(p.body.body.clone()).unwrap())).collect();
        let mut want: Vec<(String, String)> = messages(spec, "ready")
            .iter()
            .map(|msg| {
                (msg["message_id"].as_str().unwrap().to_string(), msg["body_text"].as_str().unwrap().to_string())
            })
            .collect();
        if name != "plain" {
            want.sort();
        }
        let mut got_cmp = got.clone();
        if name != "plain" {
            got_cmp.sort();
        }
        // plain: the manifest lists its messages in the old server's peek order (priority first).
        assert_eq!(got_cmp, want, "{name}");
        for msg in messages(spec, "ready") {
            let p = peeked.iter().find(|p| p.meta.id.to_string() == msg["message_id"].as_str().unwrap()).unwrap();
            let attrs: Vec<(String, String)> = p.body.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let want_attrs: Vec<(String, String)> = msg["attributes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(attrs, want_attrs, "{}", msg["label"]);
            assert_eq!(p.meta.priority as u64, msg["priority"]["core"].as_u64().unwrap(), "{}", msg["label"]);
        }
    }
    // The FIFO queue still blocks behind its leased head.
    let fifo = q(&o.broker, "fifo").await;
    let opts = qgate::core::ReceiveOptions { wait_ms: Some(0), ..qgate::core::ReceiveOptions::new(10) };
    assert!(o.broker.receive(&fifo, DEFAULT_GROUP, opts).await.unwrap().is_empty());
    for absent in m["absent_messages"].as_array().unwrap() {
        let queue = q(&o.broker, absent["queue"].as_str().unwrap()).await;
        let peeked = o.broker.peek(&queue, DEFAULT_GROUP, 100).await.unwrap();
        assert!(peeked.iter().all(|p| p.meta.id.to_string() != absent["message_id"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn an_old_receipt_handle_acks_and_leases_and_delays_end_on_time() {
    let m = manifest();
    let o = open(&m).await;
    let spec = queue_spec(&m, "leased");
    let queue = q(&o.broker, "leased").await;
    let leased = messages(spec, "leased");
    let mns = leased.iter().find(|msg| msg["state"]["receipt_handle"].is_string()).expect("a recorded handle");
    o.broker.ack(&queue, mns["state"]["receipt_handle"].as_str().unwrap()).await.expect("the old handle acks");
    assert_eq!(o.broker.stats(&queue, DEFAULT_GROUP).await.unwrap().in_flight, 1);

    // The other lease ends when the manifest says, and the message comes back with its count.
    let other = leased.iter().find(|msg| !msg["state"]["receipt_handle"].is_string()).unwrap();
    let until = other["state"]["lease_until_ms"].as_u64().unwrap();
    o.clock.set(until - 1);
    o.broker.tick().await;
    assert_eq!(o.broker.stats(&queue, DEFAULT_GROUP).await.unwrap().in_flight, 1, "not before its end");
    o.clock.set(until + 1);
    o.broker.tick().await;
    let back = o.broker.peek(&queue, DEFAULT_GROUP, 10).await.unwrap();
    let p = back.iter().find(|p| p.meta.id.to_string() == other["message_id"].as_str().unwrap()).expect("redelivered");
    assert_eq!(p.deliveries, 1);

    // Delayed messages were due an hour at most after the run: by now all are ready.
    let delayed = q(&o.broker, "delayed").await;
    let s = o.broker.stats(&delayed, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.delayed), (3, 0));
}

#[tokio::test]
async fn dead_letters_groups_idempotency_and_subscriptions_survive() {
    let m = manifest();
    let o = open(&m).await;
    // A dead letter moved to orders-dlq still lists under orders and redrives home.
    let orders = q(&o.broker, "orders").await;
    let moved = &queue_spec(&m, "orders-dlq")["messages"][0];
    let page = o.broker.dead_letters(&orders, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].meta.id.to_string(), moved["message_id"].as_str().unwrap());
    assert_eq!(String::from_utf8(page.items[0].body.body.clone()).unwrap(), moved["body_text"].as_str().unwrap());
    assert_eq!(o.broker.redrive(&orders, RedriveSelector::All, 10).await.unwrap(), 1);
    assert_eq!(o.broker.stats(&orders, DEFAULT_GROUP).await.unwrap().ready, 3);

    // Dead letters in a queue's own store.
    let selfdlq = q(&o.broker, "selfdlq").await;
    let mut ids: Vec<String> =
        o.broker.dead_letters(&selfdlq, None, 10).await.unwrap().items.iter().map(|d| d.meta.id.to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = messages(queue_spec(&m, "selfdlq"), "dead_letter")
        .iter()
        .map(|msg| msg["message_id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids, want);

    // Consumer groups: ids, names, and the dead letter in billing's own store.
    let spec = queue_spec(&m, "dms-events");
    let events = q(&o.broker, "dms-events").await;
    let groups = o.broker.groups(&events).await.unwrap();
    let got: Vec<(String, String)> = groups.iter().map(|g| (g.record.id.clone(), g.record.name.clone())).collect();
    let want: Vec<(String, String)> = spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_string(), g["name"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got, want);
    for (g, spec_g) in groups.iter().zip(spec["groups"].as_array().unwrap()) {
        let c = &spec_g["counters"];
        assert_eq!(g.stats.dead, c["available_deadletters"].as_u64().unwrap(), "{}", g.record.name);
        assert_eq!(g.stats.acked, c["consumed_messages"].as_u64().unwrap(), "{}", g.record.name);
        assert_eq!(g.stats.produced, c["produced_messages"].as_u64().unwrap(), "{}", g.record.name);
    }
    let billing = o.broker.group_no(&events, "billing").await.unwrap();
    let dead = o.broker.receive_dead(&events, billing, 10, 30_000, 0, None).await.unwrap();
    let e2 = &spec["messages"][1];
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].meta.id.to_string(), e2["message_id"].as_str().unwrap());
    assert_eq!(dead[0].body.attributes.get("trace").map(String::as_str), Some("\"t-2\""));

    // The idempotency record replays the recorded answer.
    let idem = &m["idempotency"][0];
    let (_, status, body) = o
        .broker
        .idempotency_lookup("fx", idem["capability"].as_str().unwrap(), idem["key"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the idempotency record survived");
    assert_eq!(status as u64, idem["answer_status"].as_u64().unwrap());
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message_id"], idem["answer_body"]["message_id"]);

    // The push subscription.
    let sub = &m["push_subscriptions"][0];
    let subs = o.broker.subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].id.to_string(), sub["answer"]["subscription_id"].as_str().unwrap());
    assert_eq!(subs[0].url, sub["request"]["url"].as_str().unwrap());
}
