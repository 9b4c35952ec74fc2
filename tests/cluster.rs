//! Several qgate nodes on one PostgreSQL database (the postgres engine): what one node writes,
//! every node serves at once. Real processes, real database (`QGATE_TEST_PG`, which the test
//! command starts); clients talk to the nodes directly. The tests take turns: each starts its
//! own nodes on a schema of its own, and two clusters at once would only slow both down.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::mns::MnsClient;
use qgate::core::ManualClock;
use serde_json::{Value, json};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());

fn wall() -> ManualClock {
    ManualClock::new(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64)
}

fn id_of(m: &Value) -> String {
    m["message_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_nodes_and_a_long_poll_wakes_on_another_nodes_publish() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(3).await;
    let (a, b, cc) = (c.api(0), c.api(1), c.api(2));
    a.create("orders", json!({})).await;
    // Created on A, used on B in the next request.
    let (s, _) = b.post("/v1/queue/publish", json!({"queue": "orders", "payload": {"n": 1}})).await;
    assert_eq!(s, 201);
    let (_, got) = cc.consume("orders", 10, 0, 30).await;
    assert_eq!(got.len(), 1);
    assert_eq!(a.ack("orders", &id_of(&got[0])).await, 200, "a lease taken on C is acked on A");

    // A long poll on B, then a publish on A: B answers with it.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.consume("orders", 1, 20, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, sent) = a.post("/v1/queue/publish", json!({"queue": "orders", "payload": {"n": 2}})).await;
    assert_eq!(s, 201);
    let (s, got) = waiter.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(got.len(), 1, "the waiter on B got A's message");
    assert_eq!(id_of(&got[0]), sent["message_id"].as_str().unwrap());
    assert_eq!(cc.ack("orders", &id_of(&got[0])).await, 200);
    let st = b.stats("orders").await;
    assert_eq!((st["available"].as_u64(), st["in_flight"].as_u64()), (Some(0), Some(0)), "{st}");

    // MNS: receive on A, change visibility on B with A's handle, delete on C with B's.
    let clock = wall();
    let m: Vec<MnsClient> = c.bases.iter().map(|base| MnsClient::new(base, "test-ak", "test-sk", &clock)).collect();
    assert_eq!(m[0].create("mq", "").await.status, 201);
    assert_eq!(m[1].send_msg("mq", "hello").await.status, 201);
    let r = m[2].get("/queues/mq/messages?waitseconds=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let handle = r.root().text_of("ReceiptHandle");
    let r =
        m[0].call("PUT", &format!("/queues/mq/messages?receiptHandle={handle}&visibilityTimeout=60"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let handle2 = r.root().text_of("ReceiptHandle");
    let r = m[1].call("DELETE", &format!("/queues/mq/messages?ReceiptHandle={handle}"), None, &[]).await;
    assert_eq!(r.error_code(), "MessageNotExist", "the first handle died with the change: {}", r.body);
    let r = m[2].call("DELETE", &format!("/queues/mq/messages?ReceiptHandle={handle2}"), None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_served_when_its_nodes_listening_connection_is_killed() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(2).await;
    let (a, b) = (c.api(0), c.api(1));
    a.create("q", json!({})).await;
    // Every node's LISTEN connection goes; the nodes reconnect by themselves.
    let (pg, conn) = tokio_postgres::connect(&common::pg::url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let killed = pg
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'", &[])
        .await
        .unwrap();
    assert!(!killed.is_empty(), "the nodes listen");
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.consume("q", 1, 20, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'", &[]).await.unwrap();
    let (s, _) = a.post("/v1/queue/publish", json!({"queue": "q", "payload": 1})).await;
    assert_eq!(s, 201);
    let (s, got) = waiter.await.unwrap();
    assert_eq!((s, got.len()), (200, 1), "delivered within the 20 s wait although no notification arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_knows_a_queue_sees_changes_made_on_another_at_once() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(2).await;
    let clock = wall();
    let m: Vec<MnsClient> = c.bases.iter().map(|base| MnsClient::new(base, "test-ak", "test-sk", &clock)).collect();
    assert_eq!(m[0].create("cfg", "<MaximumMessageSize>4096</MaximumMessageSize>").await.status, 201);
    let big = "x".repeat(2000);
    // B has served the queue (and may keep its handle for message traffic).
    assert_eq!(m[1].send_msg("cfg", "small").await.status, 201);
    assert_eq!(m[1].send_msg("cfg", &big).await.status, 201);
    let set = |size: u32| {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Queue xmlns=\"http://mns.aliyuncs.com/doc/v1/\">\
             <MaximumMessageSize>{size}</MaximumMessageSize></Queue>"
        );
        let a = &m[0];
        async move { a.call("PUT", "/queues/cfg?metaoverride=true", Some(&doc), &[]).await.status }
    };
    // Lowered on A: the next send on B is held to it.
    assert_eq!(set(1024).await, 204);
    let r = m[1].send_msg("cfg", &big).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Raised on A: the next send on B may use it.
    assert_eq!(set(4096).await, 204);
    assert_eq!(m[1].send_msg("cfg", &big).await.status, 201);

    // infrai: deleted and made again on A; B publishes into, consumes from and acks in the new one.
    let (a, b) = (c.api(0), c.api(1));
    a.create("again", json!({})).await;
    assert_eq!(b.post("/v1/queue/publish", json!({"queue": "again", "payload": 1})).await.0, 201);
    let (_, old) = b.consume("again", 1, 0, 30).await;
    assert_eq!(old.len(), 1);
    assert_eq!(a.call("DELETE", "/v1/queue/delete/again", None).await.0, 200);
    a.create("again", json!({})).await;
    let (s, sent) = b.post("/v1/queue/publish", json!({"queue": "again", "payload": 2})).await;
    assert_eq!(s, 201, "{sent}");
    assert_eq!(a.stats("again").await["available"].as_u64(), Some(1), "B's message is in the new queue");
    let (s, got) = b.consume("again", 10, 0, 30).await;
    assert_eq!((s, got.len()), (200, 1));
    assert_eq!(id_of(&got[0]), id_of(&sent));
    assert_eq!(b.ack("again", &id_of(&got[0])).await, 200);
    // The old queue's message is gone with it.
    assert_eq!(b.ack("again", &id_of(&old[0])).await, 404);
    // Deleted on A and not made again: B says so.
    assert_eq!(a.call("DELETE", "/v1/queue/delete/again", None).await.0, 200);
    assert_eq!(b.post("/v1/queue/publish", json!({"queue": "again", "payload": 3})).await.0, 404);
    assert_eq!(b.consume("again", 1, 0, 30).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_ends_waits_on_other_nodes() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(2).await;
    let (a, b) = (c.api(0), c.api(1));
    a.create("doomed", json!({})).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.consume("doomed", 1, 20, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.call("DELETE", "/v1/queue/delete/doomed", None).await.0, 200);
    let (s, _) = waiter.await.unwrap();
    assert_eq!(s, 404, "the wait on B ended with the queue (a 20 s timeout would answer 200)");
    let (s, _) = c.api(1).post("/v1/queue/publish", json!({"queue": "doomed", "payload": 1})).await;
    assert_eq!(s, 404, "publishes through another node fail at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_order_is_strict_across_three_nodes_and_sixteen_receivers_each() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(3).await;
    c.api(0).create("f", json!({"type": "fifo"})).await;
    const N: usize = 150;
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let msgs: Vec<Value> = chunk.iter().map(|i| json!({"payload": {"n": i}})).collect();
        let (s, _) = c.api(1).post("/v1/queue/publish_batch", json!({"queue": "f", "messages": msgs})).await;
        assert_eq!(s, 201);
    }
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for node in 0..3 {
        for _ in 0..16 {
            let (api, order) = (c.api(node), order.clone());
            tasks.push(tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    let (s, got) = api.consume("f", 1, 1, 30).await;
                    assert_eq!(s, 200);
                    if got.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    // Recorded while leased: nothing after it can be delivered until the ack.
                    order.lock().push(got[0]["payload"]["n"].as_u64().unwrap() as usize);
                    assert_eq!(api.ack("f", &id_of(&got[0])).await, 200);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), (0..N).collect::<Vec<_>>(), "received strictly in publish order, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_idempotent_requests_across_nodes_make_one_message() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(3).await;
    c.api(0).create("idem", json!({})).await;
    let body = json!({"queue": "idem", "payload": {"order": 7}, "idempotency_key": "order-7"});
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (api, body) = (c.api(i % 3), body.clone());
        tasks.push(tokio::spawn(async move { api.post("/v1/queue/publish", body).await }));
    }
    let mut answers = HashSet::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, 201, "{b}");
        answers.insert(b.to_string());
    }
    assert_eq!(answers.len(), 1, "every request got the same answer: {answers:?}");
    assert_eq!(c.api(2).stats("idem").await["available"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_across_nodes_respect_the_ctyun_queue_quota() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(3).await;
    let clock = wall();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let ct = common::ctyun::CtClient::new(&c.bases[i % 3], "test-ak", "test-sk", &clock);
        tasks.push(tokio::spawn(async move {
            let info = json!({"regionId": "cn-snxy1", "name": format!("quota{i}")});
            ct.post("createQueue", &[("createQueueInfo", info)]).await.code()
        }));
    }
    let mut codes = HashMap::new();
    for t in tasks {
        *codes.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(codes.get(&800), Some(&5), "exactly the quota of 5 was created: {codes:?}");
    let (_, list) = c.api(0).call("GET", "/v1/queue/list", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5, "{list}");
}

/// Messages of the no-double-lease check (the 100,000 unless `QGATE_CLUSTER_MESSAGES`).
fn messages() -> usize {
    std::env::var("QGATE_CLUSTER_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_and_96_consumers_never_lease_one_message_twice() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(3).await;
    c.api(0).create("load", json!({})).await;
    let n = messages();
    // Publish in batches of 100 through every node.
    let published = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    let per = n.div_ceil(100);
    for p in 0..6 {
        let (api, published) = (c.api(p % 3), published.clone());
        tasks.push(tokio::spawn(async move {
            for b in (p..per).step_by(6) {
                let count = 100.min(n - b * 100);
                let msgs: Vec<Value> = (0..count).map(|i| json!({"payload": {"n": b * 100 + i}})).collect();
                let (s, body) = api.post("/v1/queue/publish_batch", json!({"queue": "load", "messages": msgs})).await;
                assert_eq!(s, 201, "{body}");
                let ids = body["message_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string());
                published.lock().extend(ids);
            }
        }));
    }
    for t in tasks.drain(..) {
        t.await.unwrap();
    }
    assert_eq!(published.lock().len(), n);

    // 32 consumers per node; a lease far longer than the run, so a message leased twice can
    // only be a double lease.
    let seen: Arc<parking_lot::Mutex<HashMap<String, u32>>> = Default::default();
    for node in 0..3 {
        for _ in 0..32 {
            let (api, seen) = (c.api(node), seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut idle = 0;
                while idle < 2 {
                    let (s, got) = api.consume("load", 10, 1, 3600).await;
                    assert_eq!(s, 200);
                    if got.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    for m in &got {
                        let id = id_of(m);
                        *seen.lock().entry(id.clone()).or_default() += 1;
                        assert_eq!(api.ack("load", &id).await, 200, "every lease is acked exactly once");
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().clone();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "leased twice: {twice:?}");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), *published.lock(), "every message delivered");
    let st = c.api(1).stats("load").await;
    assert_eq!((st["available"].as_u64(), st["in_flight"].as_u64()), (Some(0), Some(0)), "{st}");
    eprintln!("{n} messages consumed and acked by 96 consumers on 3 nodes in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_publish_loses_nothing_and_its_leases_come_back() {
    let _turn = TURN.lock().await;
    let mut c = Cluster::start(3).await;
    c.api(0).create("k", json!({"visibility_timeout_default": 2})).await;
    // Node A leases some messages and never acks them.
    for i in 0..20 {
        assert_eq!(c.api(0).post("/v1/queue/publish", json!({"queue": "k", "payload": {"pre": i}})).await.0, 201);
    }
    let (_, leased) = c.api(0).consume("k", 20, 0, 2).await;
    assert_eq!(leased.len(), 20);
    let leased: HashSet<String> = leased.iter().map(id_of).collect();

    let answered = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..6 {
        let (api, answered, stop) = (c.api(p % 3), answered.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, b) = api.post("/v1/queue/publish", json!({"queue": "k", "payload": {"p": p, "i": i}})).await;
                if s == 201 {
                    answered.lock().insert(b["message_id"].as_str().unwrap().to_string());
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().clone();
    assert!(answered.len() > 50, "publishes went on: {}", answered.len());

    // Everything answered is delivered by the survivors; A's leases come back after 2 s.
    let mut got = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(answered.is_subset(&got) && leased.is_subset(&got)) && Instant::now() < deadline {
        let (s, msgs) = c.api(1 + got.len() % 2).consume("k", 100, 1, 60).await;
        assert_eq!(s, 200);
        for m in &msgs {
            let id = id_of(m);
            assert_eq!(c.api(1).ack("k", &id).await, 200);
            got.insert(id);
        }
    }
    let lost: Vec<_> = answered.difference(&got).collect();
    assert!(lost.is_empty(), "{} answered publishes lost: {lost:?}", lost.len());
    assert!(leased.is_subset(&got), "the killed node's leases came back");
}
