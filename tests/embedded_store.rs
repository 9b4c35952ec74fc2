//! The store conformance suite: the contract of `qgate::engine::embedded::store::Store` (see its module docs),
//! written against the trait so that any engine can run it. Every check writes through one
//! store, drops it, opens the same location again and reads back with `load`, so persistence
//! is part of every check. It runs on sled below; a second engine adds one `conformance!` line.

use std::collections::BTreeMap;

use qgate::core::model::*;
use qgate::engine::embedded::store::{SledOptions, SledStore, Store};
use uuid::Uuid;

/// What the suite needs from an engine: open (again) the store at one location.
trait Harness {
    fn open(&self) -> Box<dyn Store>;
}

struct Sled(tempfile::TempDir);

impl Sled {
    fn new() -> Self {
        Sled(tempfile::tempdir().unwrap())
    }
}

impl Harness for Sled {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SledStore::open(&SledOptions::new(self.0.path())).unwrap_or_else(|e| panic!("open: {e}")))
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn queue(ns: &str, name: &str) -> QueueRecord {
    QueueRecord {
        id: Uuid::new_v4(),
        namespace: ns.into(),
        name: name.into(),
        config: QueueConfig::default(),
        created_at: 1,
        modified_at: 1,
    }
}

fn meta(seq: u64, tags: &[&str]) -> MessageMeta {
    MessageMeta {
        seq,
        id: MessageId((7u128 << 64) | seq as u128),
        kind: BodyKind::Text,
        priority: 8,
        enqueued_at: 100 + seq,
        not_before: 100 + seq,
        size: 3,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        origin: None,
    }
}

fn body(s: &str) -> MessageBody {
    let mut attributes = BTreeMap::new();
    attributes.insert("k".to_string(), format!("\"{s}\""));
    MessageBody { body: s.as_bytes().to_vec(), attributes }
}

fn rec(state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord { deliveries: 2, failures: 1, first_delivered_at: 50, state }
}

fn group(q: Uuid, no: u32) -> GroupRecord {
    GroupRecord {
        queue_id: q,
        no,
        id: format!("g-{no}"),
        name: format!("group{no}"),
        rule: Some(TagRule::new(vec!["a".into()], TagMode::And)),
        created_at: 3,
        reset_floor: 4,
    }
}

/// Writes with one store, reopens, returns the reopened store and its snapshot.
fn reopen(h: &dyn Harness, s: Box<dyn Store>) -> (Box<dyn Store>, qgate::engine::embedded::store::Snapshot) {
    block(s.sync()).unwrap();
    drop(s);
    let s = h.open();
    let snap = s.load().unwrap();
    (s, snap)
}

fn queue_records_replace_and_delete(h: &dyn Harness) {
    let s = h.open();
    let mut a = queue("t", "a");
    let b = queue("t", "b");
    s.put_queue(&a).unwrap();
    s.put_queue(&b).unwrap();
    a.config.delay_secs = 5;
    a.modified_at = 9;
    s.put_queue(&a).unwrap();
    s.put_group(&group(a.id, 1)).unwrap();
    s.append(a.id, &[(meta(1, &[]), body("x"))]).unwrap();
    s.append(b.id, &[(meta(1, &[]), body("y"))]).unwrap();
    let (s, snap) = reopen(h, s);
    assert_eq!(snap.queues.len(), 2);
    let qa = snap.queues.iter().find(|q| q.record.as_ref().unwrap().id == a.id).unwrap();
    assert_eq!(qa.record.as_ref().unwrap(), &a, "the last put wins");
    assert_eq!(qa.groups, vec![group(a.id, 1)]);

    s.delete_queue(a.id).unwrap();
    let (s, snap) = reopen(h, s);
    assert_eq!(snap.queues.len(), 1, "only the deleted queue went");
    assert_eq!(snap.queues[0].record.as_ref().unwrap().id, b.id);
    assert_eq!(snap.queues[0].messages.len(), 1);
    assert!(s.body(a.id, 1).unwrap().is_none());
    assert_eq!(s.body(b.id, 1).unwrap(), Some(body("y")));
}

fn append_keeps_order_bodies_and_high_water(h: &dyn Harness) {
    let s = h.open();
    let q = queue("t", "q");
    s.put_queue(&q).unwrap();
    s.append(q.id, &[(meta(1, &["a"]), body("one")), (meta(2, &[]), body("two"))]).unwrap();
    s.append(q.id, &[(meta(3, &["b", "c"]), body("three"))]).unwrap();
    let (s, snap) = reopen(h, s);
    let qs = &snap.queues[0];
    assert_eq!(qs.messages, vec![meta(1, &["a"]), meta(2, &[]), meta(3, &["b", "c"])]);
    assert_eq!(qs.last_seq, 3);
    assert_eq!(s.body(q.id, 2).unwrap(), Some(body("two")));
    assert_eq!(s.body(q.id, 4).unwrap(), None);

    s.remove(q.id, &[1, 2, 3]).unwrap();
    let (s, snap) = reopen(h, s);
    assert!(snap.queues[0].messages.is_empty());
    assert_eq!(snap.queues[0].last_seq, 3, "the high-water mark outlives the messages");
    assert_eq!(s.body(q.id, 1).unwrap(), None);
}

fn delivery_records_round_trip(h: &dyn Harness) {
    let s = h.open();
    let q = queue("t", "q");
    s.put_queue(&q).unwrap();
    s.put_group(&group(q.id, 1)).unwrap();
    s.put_group(&group(q.id, 2)).unwrap();
    s.append(q.id, &[(meta(1, &[]), body("a")), (meta(2, &[]), body("b")), (meta(3, &[]), body("c"))]).unwrap();
    let leased = rec(DeliveryState::Leased { until: 77, lease: 5 });
    let dead = rec(DeliveryState::Dead {
        died_at: 9,
        reason: DeadReason::Nacked,
        dl: DeadState::Leased { until: 8, lease: 6 },
    });
    s.lease(q.id, 0, 1, &leased).unwrap();
    s.lease(q.id, 1, 1, &rec(DeliveryState::Leased { until: 1, lease: 1 })).unwrap();
    s.release(q.id, 1, 1, &rec(DeliveryState::Ready)).unwrap();
    s.settle(q.id, 0, &[(2, rec(DeliveryState::Acked)), (3, dead.clone())]).unwrap();
    s.settle(q.id, 2, &[(2, rec(DeliveryState::Skipped))]).unwrap();
    s.lease(q.id, 2, 3, &leased).unwrap();
    s.forget(q.id, 2, &[3]).unwrap();
    let (s, snap) = reopen(h, s);
    assert_eq!(
        snap.queues[0].deliveries,
        vec![
            (0, 1, leased.clone()),
            (0, 2, rec(DeliveryState::Acked)),
            (0, 3, dead),
            (1, 1, rec(DeliveryState::Ready)),
            (2, 2, rec(DeliveryState::Skipped)),
        ],
        "in (group, seq) order, latest state each, forgotten ones gone"
    );
    // Removing a message drops its records in every group.
    s.remove(q.id, &[1, 2]).unwrap();
    let (_s, snap) = reopen(h, s);
    assert_eq!(snap.queues[0].deliveries.len(), 1);
    assert_eq!(snap.queues[0].deliveries[0].1, 3);
}

fn delete_group_drops_only_its_records(h: &dyn Harness) {
    let s = h.open();
    let q = queue("t", "q");
    s.put_queue(&q).unwrap();
    s.put_group(&group(q.id, 1)).unwrap();
    s.put_group(&group(q.id, 2)).unwrap();
    s.append(q.id, &[(meta(1, &[]), body("a"))]).unwrap();
    s.settle(q.id, 1, &[(1, rec(DeliveryState::Acked))]).unwrap();
    s.settle(q.id, 2, &[(1, rec(DeliveryState::Acked))]).unwrap();
    s.delete_group(q.id, 1).unwrap();
    let (_s, snap) = reopen(h, s);
    assert_eq!(snap.queues[0].groups, vec![group(q.id, 2)]);
    assert_eq!(snap.queues[0].deliveries, vec![(2, 1, rec(DeliveryState::Acked))]);
    assert_eq!(snap.queues[0].messages.len(), 1);
}

fn transfer_moves_or_copies_atomically(h: &dyn Harness) {
    let s = h.open();
    let a = queue("t", "a");
    let b = queue("t", "b");
    s.put_queue(&a).unwrap();
    s.put_queue(&b).unwrap();
    s.append(a.id, &[(meta(1, &[]), body("moved")), (meta(2, &[]), body("copied"))]).unwrap();
    s.lease(a.id, 0, 1, &rec(DeliveryState::Leased { until: 1, lease: 1 })).unwrap();
    let mut m = meta(10, &[]);
    m.origin = Some(Box::new(Origin {
        queue_id: a.id,
        reason: DeadReason::MaxDeliveries,
        died_at: 5,
        deliveries: 3,
        failures: 3,
        first_enqueued_at: 101,
    }));
    s.transfer(a.id, 1, b.id, &m, false).unwrap();
    let mut c = meta(11, &[]);
    c.id = MessageId(2);
    s.transfer(a.id, 2, b.id, &c, true).unwrap();
    let (s, snap) = reopen(h, s);
    let qa = snap.queues.iter().find(|q| q.record.as_ref().unwrap().id == a.id).unwrap();
    let qb = snap.queues.iter().find(|q| q.record.as_ref().unwrap().id == b.id).unwrap();
    assert_eq!(qa.messages, vec![meta(2, &[])], "moved out of a, the copy's source stays");
    assert!(qa.deliveries.is_empty(), "the moved message's records went with it");
    assert_eq!(qb.messages, vec![m, c]);
    assert_eq!(qb.last_seq, 11);
    assert_eq!(s.body(b.id, 10).unwrap(), Some(body("moved")));
    assert_eq!(s.body(b.id, 11).unwrap(), Some(body("copied")));
    assert_eq!(s.body(a.id, 2).unwrap(), Some(body("copied")));
    assert!(s.transfer(a.id, 1, b.id, &meta(12, &[]), false).is_err(), "a missing source is an error");
}

fn idempotency_and_subscriptions(h: &dyn Harness) {
    let s = h.open();
    let rec = |k: &str| IdempotencyRecord {
        namespace: "t".into(),
        capability: "queue.publish".into(),
        key: k.into(),
        fingerprint: [9; 32],
        status: 201,
        body: b"{}".to_vec(),
        created_at: 4,
    };
    s.put_idempotency(&rec("a")).unwrap();
    s.put_idempotency(&rec("b")).unwrap();
    s.delete_idempotency(&[("t".into(), "queue.publish".into(), "a".into())]).unwrap();
    let sub = SubscriptionRecord {
        id: Uuid::new_v4(),
        namespace: "t".into(),
        queue_id: Uuid::new_v4(),
        url: "https://x.example/h".into(),
        secret: None,
        max_retries: 2,
        visibility_timeout_secs: 30,
        dead_letter_queue: Some(Uuid::new_v4()),
        created_at: 1,
    };
    let gone = SubscriptionRecord { id: Uuid::new_v4(), ..sub.clone() };
    s.put_subscription(&sub).unwrap();
    s.put_subscription(&gone).unwrap();
    s.delete_subscription(gone.id).unwrap();
    let (_s, snap) = reopen(h, s);
    assert_eq!(snap.idempotency, vec![rec("b")]);
    assert_eq!(snap.subscriptions, vec![sub]);
}

fn concurrent_syncs_all_complete(h: &dyn Harness) {
    let s: std::sync::Arc<dyn Store> = h.open().into();
    let q = queue("t", "q");
    s.put_queue(&q).unwrap();
    block(async {
        let mut tasks = Vec::new();
        for i in 1..=64u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.append(q.id, &[(meta(i, &[]), body("m"))]).unwrap();
                s.sync().await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    drop(s);
    let snap = h.open().load().unwrap();
    assert_eq!(snap.queues[0].messages.len(), 64);
}

macro_rules! conformance {
    ($engine:ident: $($check:ident),* $(,)?) => {
        $( #[test] fn $check() { super::$check(&super::$engine::new()) } )*
    };
}

mod sled {
    conformance!(Sled:
        queue_records_replace_and_delete,
        append_keeps_order_bodies_and_high_water,
        delivery_records_round_trip,
        delete_group_drops_only_its_records,
        transfer_moves_or_copies_atomically,
        idempotency_and_subscriptions,
        concurrent_syncs_all_complete,
    );

    /// sled-specific: syncs that overlap a flush share the next one (group commit).
    #[test]
    fn group_commit_shares_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let s = qgate::engine::embedded::store::SledStore::open(&qgate::engine::embedded::store::SledOptions::new(
            dir.path(),
        ))
        .unwrap();
        let q = super::queue("t", "q");
        qgate::engine::embedded::store::Store::put_queue(&s, &q).unwrap();
        super::block(qgate::engine::embedded::store::Store::sync(&s)).unwrap();
        let before = s.flush_count();
        let futures: Vec<_> = {
            let _held = s.hold_commits();
            // While the committer is held, 100 callers append and queue up for a sync.
            (1..=100u64)
                .map(|i| {
                    qgate::engine::embedded::store::Store::append(&s, q.id, &[(super::meta(i, &[]), super::body("m"))])
                        .unwrap();
                    qgate::engine::embedded::store::Store::sync(&s)
                })
                .collect()
        };
        super::block(async {
            for f in futures {
                f.await.unwrap();
            }
        });
        let flushes = s.flush_count() - before;
        assert!((1..=2).contains(&flushes), "100 overlapping syncs took {flushes} flushes");
        assert_eq!(s.sync_count(), 101);
    }

    /// sled-specific: message bodies live in the log; a segment stays while any stored message
    /// points into it (across restarts, transfers and replays) and goes once none does.
    #[test]
    fn log_segments_hold_bodies_until_no_message_points_into_them() {
        use qgate::engine::embedded::store::{SledOptions, SledStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let opts = SledOptions { segment_bytes: 2048, ..SledOptions::new(dir.path()) };
        let text = |i: u64| format!("message {i} {}", "x".repeat(100));
        let s = SledStore::open(&opts).unwrap();
        let (q, q2) = (super::queue("t", "q"), super::queue("t", "q2"));
        s.put_queue(&q).unwrap();
        s.put_queue(&q2).unwrap();
        for i in 1..=60u64 {
            s.append(q.id, &[(super::meta(i, &[]), super::body(&text(i)))]).unwrap();
        }
        super::block(s.sync()).unwrap();
        s.checkpoint_now().unwrap();
        let full = s.log_segments();
        assert!(full >= 4, "60 bodies of ~120 bytes in 2 KiB segments: {full} segments");
        assert_eq!(s.body(q.id, 7).unwrap().unwrap().body, text(7).into_bytes(), "read back from the log");

        // The oldest messages go: so do the segments that held only them.
        s.remove(q.id, &(1..=50).collect::<Vec<_>>()).unwrap();
        // A copy into another queue shares the source's body; the source goes.
        s.transfer(q.id, 55, q2.id, &super::meta(1, &[]), false).unwrap();
        s.checkpoint_now().unwrap();
        let after = s.log_segments();
        assert!(after < full && after >= 1, "{full} segments before removing 50 of 60 messages, {after} after");
        assert_eq!(s.body(q2.id, 1).unwrap().unwrap().body, text(55).into_bytes());
        assert_eq!(s.body(q.id, 55).unwrap(), None);
        assert_eq!(s.body(q.id, 3).unwrap(), None);

        // Appended and synced but perhaps not yet applied when the store closes: replayed.
        for i in 61..=70u64 {
            s.append(q.id, &[(super::meta(i, &[]), super::body(&text(i)))]).unwrap();
        }
        super::block(s.sync()).unwrap();
        drop(s);

        let s = SledStore::open(&opts).unwrap();
        let snap = s.load().unwrap();
        let seqs = |id| {
            let qs = snap.queues.iter().find(|x| x.record.as_ref().is_some_and(|r| r.id == id)).unwrap();
            qs.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
        };
        let mut want: Vec<u64> = (51..=70).filter(|i| *i != 55).collect();
        want.sort();
        assert_eq!(seqs(q.id), want);
        assert_eq!(seqs(q2.id), vec![1]);
        for i in want {
            assert_eq!(s.body(q.id, i).unwrap().unwrap().body, text(i).into_bytes(), "body of {i} after restart");
        }
        assert_eq!(s.body(q2.id, 1).unwrap().unwrap().body, text(55).into_bytes());

        // Everything gone (a removal, a queue deletion swept behind): every segment but the one
        // being written can go.
        s.remove(q.id, &(51..=70).collect::<Vec<_>>()).unwrap();
        s.delete_queue(q2.id).unwrap();
        s.checkpoint_now().unwrap();
        assert!(s.log_segments() <= 1, "{} segments left with no message stored", s.log_segments());
        assert_eq!(s.body(q2.id, 1).unwrap(), None);
        drop(s);
        let s = SledStore::open(&opts).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.queues.len(), 1, "the deleted queue stays deleted");
        assert!(snap.queues[0].messages.is_empty());
    }

    /// sled-specific: deleting a queue of many messages is swept behind — later operations do
    /// not wait for it — and a sweep cut short by a restart resumes.
    #[test]
    fn deleted_queues_are_swept_across_restarts() {
        use qgate::engine::embedded::store::{SledOptions, SledStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let opts = SledOptions { segment_bytes: 64 * 1024, ..SledOptions::new(dir.path()) };
        let s = SledStore::open(&opts).unwrap();
        let (big, other) = (super::queue("t", "big"), super::queue("t", "other"));
        s.put_queue(&big).unwrap();
        s.put_queue(&other).unwrap();
        let msgs: Vec<_> = (1..=20_000u64).map(|i| (super::meta(i, &[]), super::body("payload"))).collect();
        for chunk in msgs.chunks(1000) {
            s.append(big.id, chunk).unwrap();
        }
        s.settle(big.id, 0, &[(5, super::rec(qgate::core::model::DeliveryState::Acked))]).unwrap();
        s.checkpoint_now().unwrap();
        s.delete_queue(big.id).unwrap();
        s.append(other.id, &[(super::meta(1, &[]), super::body("after"))]).unwrap();
        super::block(s.sync()).unwrap();
        // Closed at once: the sweep is (most likely) unfinished, and must resume.
        drop(s);
        let s = SledStore::open(&opts).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.queues.len(), 1);
        assert_eq!(snap.queues[0].record.as_ref().unwrap().id, other.id);
        assert_eq!(s.body(other.id, 1).unwrap().unwrap().body, b"after");
        s.checkpoint_now().unwrap();
        assert_eq!(s.body(big.id, 7).unwrap(), None);
        assert!(s.log_segments() <= 2, "{} segments left once the big queue is swept", s.log_segments());
    }

    /// sled-specific: a few long-lived messages do not keep whole log segments of dead bodies:
    /// compaction copies them to the end of the log and the old segments go.
    #[test]
    fn sparse_log_segments_are_compacted() {
        use qgate::engine::embedded::store::{SledOptions, SledStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let opts = SledOptions { segment_bytes: 2048, ..SledOptions::new(dir.path()) };
        let text = |i: u64| format!("message {i} {}", "y".repeat(100));
        let s = SledStore::open(&opts).unwrap();
        let q = super::queue("t", "q");
        s.put_queue(&q).unwrap();
        for i in 1..=60u64 {
            s.append(q.id, &[(super::meta(i, &[]), super::body(&text(i)))]).unwrap();
        }
        super::block(s.sync()).unwrap();
        let keep = [5u64, 20, 35, 50];
        s.remove(q.id, &(1..=60).filter(|i| !keep.contains(i)).collect::<Vec<_>>()).unwrap();
        s.checkpoint_now().unwrap();
        let pinned = s.log_segments();
        assert!(pinned >= 4, "one live message pins each old segment: {pinned} segments");
        let moved = s.compact_now().unwrap();
        assert_eq!(moved, keep.len());
        let after = s.log_segments();
        assert!(after <= 2, "{pinned} segments before compaction, {after} after");
        for i in keep {
            assert_eq!(s.body(q.id, i).unwrap().unwrap().body, text(i).into_bytes(), "{i} after compaction");
        }
        assert_eq!(s.compact_now().unwrap(), 0, "nothing sparse is left");
        drop(s);
        let s = SledStore::open(&opts).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.queues[0].messages.iter().map(|m| m.seq).collect::<Vec<_>>(), keep.to_vec());
        for i in keep {
            assert_eq!(s.body(q.id, i).unwrap().unwrap().body, text(i).into_bytes(), "{i} after restart");
        }
    }
}
