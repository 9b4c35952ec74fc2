//! `qgate bench` itself, against an in-process server: that it counts what it did (every row,
//! and what the server holds afterwards) and that it fails loudly (bad credentials, no server,
//! unknown names). No assertion depends on how fast anything ran.
//!
//! The bench signs with the wall clock, so the server's manual clock is kept at wall time by a
//! ticker (the signed dialects reject requests more than 15 minutes off).

mod common;

use std::time::Duration;

use common::*;
use qgate::bench::{BenchArgs, Report, run};
use qgate::core::{Clock, ManualClock, SystemClock};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// A test server whose clock follows the wall clock.
struct Live {
    s: TestServer,
    ticker: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start() -> Self {
        let clock = ManualClock::new(SystemClock.now());
        let s = TestServer::start_in(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
        let ticker = tokio::spawn(async move {
            loop {
                clock.set(SystemClock.now());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Live { s, ticker }
    }

    /// Bench options for this server and tenant "t": short, few connections, quiet.
    fn args(&self, dialects: &[&str], workloads: &[&str]) -> BenchArgs {
        BenchArgs {
            url: self.s.base.clone(),
            connections: 4,
            duration: 0.3,
            body_size: 64,
            dialects: dialects.iter().map(|s| s.to_string()).collect(),
            workloads: workloads.iter().map(|s| s.to_string()).collect(),
            rate: 50.0,
            messages: 100,
            queue: "bench-scale".into(),
            pollers: 4,
            server_pid: None,
            data_dir: None,
            bearer: "ifr_test".into(),
            access_key: "test-ak".into(),
            secret: "test-sk".into(),
            project: Some(PROJECT.into()),
            json: false,
            quiet: true,
        }
    }

    /// (retained messages, ready in the default group) of a queue of tenant "t".
    async fn held(&self, queue: &str) -> (u64, u64) {
        let b = &self.s.state.broker;
        let q = b.queue("t", queue).await.unwrap_or_else(|_| panic!("queue {queue} exists"));
        (b.info(&q).await.unwrap().stored, b.stats(&q, 0).await.unwrap().ready)
    }

    /// The consumer groups of a queue of tenant "t": (id, name, unacknowledged, acknowledged),
    /// where unacknowledged counts ready, in-flight and delayed messages.
    async fn groups(&self, queue: &str) -> Vec<(String, String, u64, u64)> {
        let b = &self.s.state.broker;
        let q = b.queue("t", queue).await.unwrap_or_else(|_| panic!("queue {queue} exists"));
        b.groups(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|g| {
                let s = g.stats;
                (g.record.id, g.record.name, s.ready + s.in_flight + s.delayed, s.acked)
            })
            .collect()
    }

    /// The bench's consumer group of a CTYun / DMS queue (it must be the only one):
    /// (id, unacknowledged, acknowledged).
    async fn bench_group(&self, queue: &str) -> (String, u64, u64) {
        let gs = self.groups(queue).await;
        match gs.as_slice() {
            [(id, name, pending, acked)] if name == "bench" => (id.clone(), *pending, *acked),
            other => panic!("{queue}: expected just the bench group, found {other:?}"),
        }
    }

    async fn stop(self) {
        self.ticker.abort();
        self.s.stop().await.expect("the server stops cleanly");
    }
}

/// The row of `dialect` / `workload`.
fn row<'a>(r: &'a Report, dialect: &str, workload: &str) -> &'a qgate::bench::stats::Row {
    r.rows
        .iter()
        .find(|x| x.dialect == dialect && x.workload == workload)
        .unwrap_or_else(|| panic!("no row {dialect} {workload} in {:#?}", r.rows))
}

fn assert_clean(r: &Report) {
    assert_eq!(r.errors, 0, "{}", qgate::bench::render(r, false));
    for x in &r.rows {
        assert_eq!(x.errors, 0, "{x:?}");
        assert!(x.first_error.is_none(), "{x:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_batch_count_for_every_dialect_and_clean_up() {
    let live = Live::start().await;
    let r = run(live.args(&["infrai", "mns", "ctyun", "dms"], &["publish", "batch"])).await.expect("the bench runs");
    assert_clean(&r);

    // The healthz row comes first and is its own basis.
    let h = &r.rows[0];
    assert_eq!((h.dialect.as_str(), h.workload.as_str()), ("http", "healthz"));
    assert!(h.requests > 0, "{h:?}");
    assert_eq!(h.ratio_to_healthz, 1.0);
    assert_eq!(r.healthz_rps, h.requests_per_sec);

    // Then one row per workload and dialect, in that order.
    let order: Vec<(&str, &str)> = r.rows[1..].iter().map(|x| (x.dialect.as_str(), x.workload.as_str())).collect();
    assert_eq!(
        order,
        [
            ("infrai", "publish"),
            ("mns", "publish"),
            ("ctyun", "publish"),
            ("dms", "publish"),
            ("infrai", "batch"),
            ("mns", "batch"),
            ("ctyun", "batch"),
            ("dms", "batch"),
        ]
    );
    for (dialect, batch) in [("infrai", 100), ("mns", 16), ("ctyun", 10), ("dms", 10)] {
        let p = row(&r, dialect, "publish");
        assert!(p.messages > 0, "{p:?}");
        assert_eq!(p.messages, p.requests, "one message per publish request: {p:?}");
        let b = row(&r, dialect, "batch");
        assert!(b.messages > 0, "{b:?}");
        assert_eq!(b.messages, b.requests * batch, "full batches: {b:?}");
    }
    assert_eq!(r.errors, r.rows.iter().map(|x| x.errors).sum::<u64>());
    assert!(qgate::bench::render(&r, false).ends_with("no errors\n"));

    // Every workload deleted its queue.
    let left: Vec<String> =
        live.s.state.broker.queues("t").await.unwrap().iter().map(|q| q.name().to_string()).collect();
    assert!(left.is_empty(), "queues left behind: {left:?}");
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_then_drain_count_exactly_what_the_server_holds() {
    let live = Live::start().await;
    // Not a multiple of any batch size, so workers race for the last partial batch.
    for (dialect, n, batch) in [("infrai", 250u64, 100u64), ("mns", 70, 16), ("ctyun", 43, 10), ("dms", 57, 10)] {
        // CTYun and DMS address queues by id and consume through the bench's consumer group;
        // their queues keep acknowledged messages until retention (a log), so "empty" there
        // means nothing left for the group.
        let by_id = matches!(dialect, "ctyun" | "dms");
        let queue = format!("bench-fill-{dialect}");
        let mut a = live.args(&[dialect], &["fill"]);
        a.messages = n;
        a.queue = queue.clone();
        let r = run(a.clone()).await.expect("fill runs");
        assert_clean(&r);
        let f = row(&r, dialect, "fill");
        assert_eq!(f.messages, n, "{f:?}");
        assert_eq!(f.requests, n.div_ceil(batch), "{f:?}");
        let group = if by_id {
            assert_eq!(live.held(&queue).await.0, n, "{dialect}: the queue holds what fill reported");
            let (id, pending, acked) = live.bench_group(&queue).await;
            assert_eq!((pending, acked), (n, 0), "{dialect}: the bench group has everything to consume");
            Some(id)
        } else {
            assert_eq!(live.held(&queue).await, (n, n), "{dialect}: the queue holds what fill reported");
            None
        };

        // A second fill into the existing queue adds to it (CTYun / DMS: found by name, the
        // same group reused).
        a.messages = 5;
        let r = run(a.clone()).await.expect("fill runs again");
        assert_clean(&r);
        assert_eq!(row(&r, dialect, "fill").messages, 5);
        if let Some(id) = &group {
            assert_eq!(live.held(&queue).await.0, n + 5);
            assert_eq!(live.bench_group(&queue).await, (id.clone(), n + 5, 0), "{dialect}");
        } else {
            assert_eq!(live.held(&queue).await, (n + 5, n + 5));
        }

        // drain stops at the duration: give it room (it ends as soon as the queue is empty).
        a.workloads = vec!["drain".into()];
        a.duration = 2.0;
        let r = run(a.clone()).await.expect("drain runs");
        assert_clean(&r);
        let d = row(&r, dialect, "drain");
        assert_eq!(d.messages, n + 5, "{d:?}");
        if let Some(id) = &group {
            assert_eq!(live.held(&queue).await.0, n + 5, "{dialect}: a log keeps acknowledged messages");
            assert_eq!(live.bench_group(&queue).await, (id.clone(), 0, n + 5), "{dialect}: drained");

            // Without the bench group, drain creates it; a new group starts at the earliest
            // retained message, so it drains the whole log again.
            let b = &live.s.state.broker;
            let q = b.queue("t", &queue).await.unwrap();
            b.delete_groups(&q, &[b.group_no(&q, id).await.unwrap()]).await.unwrap();
            assert!(live.groups(&queue).await.is_empty());
            let r = run(a).await.expect("drain runs through a new group");
            assert_clean(&r);
            assert_eq!(row(&r, dialect, "drain").messages, n + 5);
            let (new_id, pending, acked) = live.bench_group(&queue).await;
            assert_ne!(&new_id, id, "{dialect}: a new group");
            assert_eq!((pending, acked), (0, n + 5), "{dialect}: drained again");
        } else {
            assert_eq!(live.held(&queue).await, (0, 0), "{dialect}: drained");
        }
    }
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_creates_its_queue_in_the_id_addressed_dialects() {
    let live = Live::start().await;
    for dialect in ["ctyun", "dms"] {
        let queue = format!("bench-fill-{dialect}");
        let mut a = live.args(&[dialect], &["fill"]);
        a.messages = 33;
        a.queue = queue.clone();
        let r = run(a).await.expect("fill runs");
        assert_clean(&r);
        let f = row(&r, dialect, "fill");
        assert_eq!((f.messages, f.requests), (33, 4), "{f:?}");
        assert_eq!(live.held(&queue).await.0, 33, "{dialect}: the queue holds what fill reported");
    }
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_the_run() {
    let live = Live::start().await;
    // A timed workload cannot even create its queue: the run ends with the reason.
    for (dialect, edit) in [
        ("infrai", (|a: &mut BenchArgs| a.bearer = "ifr_wrong".into()) as fn(&mut BenchArgs)),
        ("mns", |a| a.secret = "wrong-sk".into()),
        ("ctyun", |a| a.secret = "wrong-sk".into()),
        ("dms", |a| a.secret = "wrong-sk".into()),
        ("mns", |a| a.access_key = "nobody".into()),
    ] {
        let mut a = live.args(&[dialect], &["publish"]);
        edit(&mut a);
        let e = run(a).await.expect_err(dialect);
        assert!(e.contains("create queue"), "{dialect}: {e}");
    }
    // fill goes on without its setup, so every publish fails: counted as errors, none as
    // messages, with the first answer recorded.
    for (dialect, edit, status) in [
        ("infrai", (|a: &mut BenchArgs| a.bearer = "ifr_wrong".into()) as fn(&mut BenchArgs), "401"),
        ("mns", |a| a.secret = "wrong-sk".into(), "403"),
    ] {
        let mut a = live.args(&[dialect], &["fill"]);
        a.queue = format!("bench-denied-{dialect}");
        edit(&mut a);
        let r = run(a).await.expect("the run itself completes");
        assert!(r.errors > 0, "{r:?}");
        let f = row(&r, dialect, "fill");
        assert!(f.errors > 0 && f.messages == 0, "{f:?}");
        let first = f.first_error.as_deref().expect("the first error is kept");
        assert!(first.contains("publish answered") && first.contains(status), "{first}");
        let text = qgate::bench::render(&r, false);
        assert!(text.contains("first error: publish answered") && text.ends_with("ERRORS: the run failed\n"), "{text}");
        assert!(live.s.state.broker.queue("t", &format!("bench-denied-{dialect}")).await.is_err());
    }
    // CTYun and DMS publish by queue id: a fill that can neither create its queue nor find an
    // existing one fails the run, with both reasons.
    for dialect in ["ctyun", "dms"] {
        let mut a = live.args(&[dialect], &["fill"]);
        a.queue = format!("bench-denied-{dialect}");
        a.secret = "wrong-sk".into();
        let e = run(a).await.expect_err(dialect);
        assert!(e.starts_with(&format!("fill {dialect}: create queue")) && e.contains("list queues"), "{e}");
    }
    assert!(live.s.state.broker.queues("t").await.unwrap().is_empty());
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_and_unknown_names_are_errors() {
    let live = Live::start().await;

    // Nothing listens on a port just released.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let mut a = live.args(&["infrai"], &["publish"]);
    a.url = dead;
    let e = run(a).await.expect_err("no server");
    assert!(e.contains("connect"), "{e}");

    let mut a = live.args(&["infrai"], &["publish"]);
    a.url = live.s.base.replace("http://", "https://");
    assert!(run(a).await.expect_err("https").contains("http://"));

    // CTYun and DMS drain by queue id: an unknown queue is an error, and nothing is created.
    for dialect in ["ctyun", "dms"] {
        let mut a = live.args(&[dialect], &["drain"]);
        a.queue = "bench-missing".into();
        let e = run(a).await.expect_err(dialect);
        assert_eq!(e, format!("drain {dialect}: queue bench-missing not found"));
    }
    assert!(live.s.state.broker.queues("t").await.unwrap().is_empty());

    let e = run(live.args(&["infrai", "sqs"], &["publish"])).await.expect_err("unknown dialect");
    assert_eq!(e, "unknown dialect sqs");

    let e = run(live.args(&["infrai"], &["publish", "nope"])).await.expect_err("unknown workload");
    assert_eq!(e, "unknown workload nope");
    live.stop().await;
}

/// The store the bench wrote through is still healthy afterwards (the teardown deletions and
/// the drains left nothing half-done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_consistent_after_a_cycle_run() {
    let live = Live::start().await;
    let r = run(live.args(&["infrai", "mns", "ctyun", "dms"], &["cycle"])).await.expect("the bench runs");
    assert_clean(&r);
    for d in ["infrai", "mns", "ctyun", "dms"] {
        let c = row(&r, d, "cycle");
        // publish, receive, ack: at least two requests per completed cycle.
        assert!(c.messages > 0 && c.requests >= 2 * c.messages, "{c:?}");
    }
    assert!(live.s.state.broker.queues("t").await.unwrap().is_empty());
    let after = live.s.state.broker.create_queue("t", "after-bench", Default::default(), None).await;
    assert!(matches!(after, Ok(qgate::core::CreateOutcome::Created(_))), "the engine still writes: {after:?}");
    live.stop().await;
}
