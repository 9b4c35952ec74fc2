//! Core delivery semantics on the manual clock: leases, handles, ordering, delay, FIFO, long
//! polling. No test sleeps to let time pass; the clock is advanced instead.

mod common;

use std::time::Duration;

use common::*;
use qgate::core::model::{DEFAULT_GROUP, NewMessage};
use qgate::core::{CoreError, ReceiveOptions};

fn one() -> ReceiveOptions {
    ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) }
}

fn many(n: usize) -> ReceiveOptions {
    ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(n) }
}

fn body(d: &qgate::core::model::Delivery) -> String {
    String::from_utf8(d.body.body.clone()).unwrap()
}

async fn lease_expiry_redelivers_with_a_new_handle(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let id = env.broker.publish(&q, vec![NewMessage::text("hello")]).await.unwrap()[0].id;

    let first =
        env.broker.receive(&q, DEFAULT_GROUP, ReceiveOptions { lease_ms: Some(30_000), ..one() }).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].meta.id, id);
    assert_eq!(first[0].deliveries, 1);
    assert_eq!(first[0].lease_until, T0 + 30_000);

    // Leased: invisible to everyone else until the lease ends.
    assert!(env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().is_empty());
    env.advance(secs(29));
    assert!(env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().is_empty());
    env.advance(secs(1));

    let second = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].meta.id, id);
    assert_eq!(second[0].deliveries, 2, "dequeue count grows");
    assert_eq!(second[0].failures, 1, "an expired lease is a failure");
    assert_eq!(second[0].first_delivered_at, T0, "first delivery time is kept");
    assert_ne!(second[0].handle, first[0].handle);

    // The first handle died with its lease; the second one acks.
    assert!(matches!(env.broker.ack(&q, &first[0].handle).await, Err(CoreError::ReceiptStale)));
    env.broker.ack(&q, &second[0].handle).await.unwrap();
    assert!(matches!(env.broker.ack(&q, &second[0].handle).await, Err(CoreError::ReceiptStale)));
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.produced), (0, 0, 0), "an acked work-queue message is gone");
}

async fn forged_foreign_and_stale_handles_are_told_apart(engine: Engine) {
    let env = Env::new(engine).await;
    let a = env.queue("a", work()).await;
    let b = env.queue("b", work()).await;
    env.broker.publish(&a, vec![NewMessage::text("x")]).await.unwrap();
    let d = env.broker.receive(&a, DEFAULT_GROUP, one()).await.unwrap().remove(0);

    for forged in [
        "",
        "not-a-handle",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1-ODU4OTkzNDU5My0xNDMyNzI3ODI3LTItOA==",
    ] {
        assert!(matches!(env.broker.ack(&a, forged).await, Err(CoreError::ReceiptMalformed)), "{forged:?}");
    }
    // A real handle presented to another queue is foreign: malformed there.
    assert!(matches!(env.broker.ack(&b, &d.handle).await, Err(CoreError::ReceiptMalformed)));
    // One changed character breaks the seal.
    let mut tampered = d.handle.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        env.broker.ack(&a, std::str::from_utf8(&tampered).unwrap()).await,
        Err(CoreError::ReceiptMalformed)
    ));

    // Change-visibility issues a new handle and kills the old one.
    let (new_handle, until) = env.broker.change_visibility(&a, &d.handle, 60_000).await.unwrap();
    assert_eq!(until, T0 + 60_000);
    assert!(matches!(env.broker.ack(&a, &d.handle).await, Err(CoreError::ReceiptStale)));
    assert!(matches!(env.broker.change_visibility(&a, &d.handle, 5_000).await, Err(CoreError::ReceiptStale)));
    // The new lease really is 60 s: not visible at 59 s.
    env.advance(secs(59));
    assert!(env.broker.receive(&a, DEFAULT_GROUP, one()).await.unwrap().is_empty());
    env.broker.ack(&a, &new_handle).await.unwrap();
}

async fn priority_then_sequence_order(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let msgs = [("p8-a", 8), ("p1-a", 1), ("p16", 16), ("p1-b", 1), ("p8-b", 8)]
        .iter()
        .map(|(b, p)| NewMessage { priority: Some(*p), ..NewMessage::text(*b) })
        .collect();
    env.broker.publish(&q, msgs).await.unwrap();
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    let order: Vec<String> = got.iter().map(body).collect();
    assert_eq!(order, ["p1-a", "p1-b", "p8-a", "p8-b", "p16"]);
}

async fn priority_ignored_when_the_queue_disables_it(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", qgate::core::model::QueueConfig { priority: false, ..work() }).await;
    let msgs = [("a", 16), ("b", 1), ("c", 8)]
        .iter()
        .map(|(b, p)| NewMessage { priority: Some(*p), ..NewMessage::text(*b) })
        .collect();
    env.broker.publish(&q, msgs).await.unwrap();
    let order: Vec<String> = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap().iter().map(body).collect();
    assert_eq!(order, ["a", "b", "c"]);
}

async fn delay_keeps_a_message_invisible_until_due(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", qgate::core::model::QueueConfig { delay_secs: 5, ..work() }).await;
    env.broker
        .publish(
            &q,
            vec![
                NewMessage { delay_ms: Some(10_000), ..NewMessage::text("late") },
                NewMessage::text("queue-default"),
                NewMessage { delay_ms: Some(0), ..NewMessage::text("explicit-zero") },
            ],
        )
        .await
        .unwrap();
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.delayed), (1, 2));
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["explicit-zero"], "explicit 0 overrides the queue delay");
    env.advance(secs(5));
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["queue-default"]);
    env.advance(Duration::from_millis(4_999));
    assert!(env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap().is_empty());
    env.advance(Duration::from_millis(1));
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["late"]);
}

async fn fifo_blocks_behind_a_leased_head_and_retries_it_first(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", fifo()).await;
    env.broker.publish(&q, ["1", "2", "3"].iter().map(|b| NewMessage::text(*b)).collect()).await.unwrap();
    let head = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert_eq!(body(&head), "1");
    // Head-of-line: nothing after 1 while it is leased.
    assert!(env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap().is_empty());
    // A failed head is retried before its successors.
    assert!(env.broker.nack(&q, &head.handle, false).await.unwrap());
    let again = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert_eq!((body(&again).as_str(), again.deliveries), ("1", 2));
    env.broker.ack(&q, &again.handle).await.unwrap();
    // A batch takes the in-order prefix.
    let rest = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(rest.iter().map(body).collect::<Vec<_>>(), ["2", "3"]);
}

async fn fifo_blocks_behind_a_delayed_head_and_ignores_priority(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", fifo()).await;
    env.broker
        .publish(
            &q,
            vec![
                NewMessage { delay_ms: Some(3_000), ..NewMessage::text("1") },
                NewMessage { priority: Some(1), ..NewMessage::text("2") },
            ],
        )
        .await
        .unwrap();
    assert!(env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap().is_empty());
    env.advance(secs(3));
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["1", "2"]);
}

async fn nack_counts_failures_and_peek_changes_nothing(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    env.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap();
    let peeked = env.broker.peek(&q, DEFAULT_GROUP, 10).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].deliveries, 0);
    assert_eq!(peeked[0].first_delivered_at, None);
    let d = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert_eq!(d.deliveries, 1);
    assert!(env.broker.peek(&q, DEFAULT_GROUP, 10).await.unwrap().is_empty(), "peek sees only active messages");
    assert!(env.broker.nack(&q, &d.handle, false).await.unwrap());
    let d2 = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert_eq!((d2.deliveries, d2.failures), (2, 1));
    // By id (infrai): only while leased.
    env.broker.ack_id(&q, DEFAULT_GROUP, d2.meta.id).await.unwrap();
    assert!(matches!(env.broker.ack_id(&q, DEFAULT_GROUP, d2.meta.id).await, Err(CoreError::MessageNotFound)));
    env.broker.publish(&q, vec![NewMessage::text("n")]).await.unwrap();
    let id = env.broker.peek(&q, DEFAULT_GROUP, 1).await.unwrap()[0].meta.id;
    assert!(matches!(env.broker.ack_id(&q, DEFAULT_GROUP, id).await, Err(CoreError::NotInFlight)));
}

async fn batch_receive_respects_max_and_bytes(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    env.broker.publish(&q, (0..10).map(|i| NewMessage::text(vec![b'x'; 100 + i])).collect()).await.unwrap();
    assert_eq!(env.broker.receive(&q, DEFAULT_GROUP, many(3)).await.unwrap().len(), 3);
    let capped =
        env.broker.receive(&q, DEFAULT_GROUP, ReceiveOptions { max_bytes: Some(250), ..many(10) }).await.unwrap();
    assert_eq!(capped.len(), 2, "103 + 104 fit in 250, a third does not");
    let tiny = env.broker.receive(&q, DEFAULT_GROUP, ReceiveOptions { max_bytes: Some(1), ..many(10) }).await.unwrap();
    assert_eq!(tiny.len(), 1, "at least one message is always returned");
}

async fn publish_limits_are_all_or_nothing(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", qgate::core::model::QueueConfig { max_message_bytes: 10, ..work() }).await;
    let r = env.broker.publish(&q, vec![NewMessage::text("ok"), NewMessage::text("this is too long")]).await;
    assert!(matches!(r, Err(CoreError::TooLarge(_))));
    let r = env
        .broker
        .publish(
            &q,
            vec![NewMessage { tags: vec!["a".into(), "b".into(), "c".into(), "d".into()], ..NewMessage::text("x") }],
        )
        .await;
    assert!(matches!(r, Err(CoreError::InvalidArgument(_))));
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().produced, 0, "nothing of a failed batch is stored");
}

async fn long_poll_wakes_on_publish_without_time_passing(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let b = env.broker.clone();
    let q2 = q.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q2, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(20_000), ..ReceiveOptions::new(1) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "waiting on an empty queue");
    env.broker.publish(&q, vec![NewMessage::text("wake")]).await.unwrap();
    let got = tokio::time::timeout(secs(10), waiter).await.expect("the waiter was woken").unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(env.clock_now(), T0, "no time passed: the publish woke it");
}

trait ClockNow {
    fn clock_now(&self) -> u64;
}

impl ClockNow for Env {
    fn clock_now(&self) -> u64 {
        qgate::core::Clock::now(&self.clock)
    }
}

async fn long_poll_waits_its_full_time_then_answers_empty(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let b = env.broker.clone();
    let q2 = q.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q2, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(10_000), ..ReceiveOptions::new(1) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "waiting");
    env.advance(secs(9));
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "still waiting at 9 s");
    env.advance(secs(1));
    let got = tokio::time::timeout(secs(10), waiter).await.expect("answered at the deadline").unwrap().unwrap();
    assert!(got.is_empty());
}

async fn long_poll_wakes_when_a_lease_or_delay_ends(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    env.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap();
    env.broker.receive(&q, DEFAULT_GROUP, ReceiveOptions { lease_ms: Some(5_000), ..one() }).await.unwrap();
    env.broker.publish(&q, vec![NewMessage { delay_ms: Some(8_000), ..NewMessage::text("d") }]).await.unwrap();
    let b = env.broker.clone();
    let q2 = q.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q2, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(20_000), ..ReceiveOptions::new(5) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err());
    env.advance(secs(5));
    let got = tokio::time::timeout(secs(10), &mut waiter).await.expect("woken by the lease end").unwrap().unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m"]);

    let b = env.broker.clone();
    let q2 = q.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q2, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(20_000), ..ReceiveOptions::new(5) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "waiting");
    env.advance(secs(3));
    let got = tokio::time::timeout(secs(10), waiter).await.expect("woken by the delay end").unwrap().unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["d"]);
}

async fn queue_deletion_and_shutdown_end_waits(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let b = env.broker.clone();
    let q2 = q.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q2, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(20_000), ..ReceiveOptions::new(1) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "waiting");
    env.broker.delete_queue(&q).await.unwrap();
    let r = tokio::time::timeout(secs(10), waiter).await.expect("deletion ends the wait").unwrap();
    assert!(matches!(r, Err(CoreError::QueueNotFound)));

    let q = env.queue("p", work()).await;
    let b = env.broker.clone();
    let mut waiter = tokio::spawn(async move {
        b.receive(&q, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(20_000), ..ReceiveOptions::new(1) }).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err(), "waiting");
    env.broker.shutdown();
    let r = tokio::time::timeout(secs(10), waiter).await.expect("shutdown ends the wait").unwrap().unwrap();
    assert!(r.is_empty());
}

/// Messages with the same ordering key go one at a time, in order; other keys and unkeyed
/// messages are not held up; the key survives a restart and never shows as a client tag.
async fn ordering_keys_deliver_one_at_a_time_in_order(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let keyed =
        |b: &str, k: Option<&str>| NewMessage { order_key: k.map(str::to_string), ..NewMessage::text(b.to_string()) };
    env.broker
        .publish(
            &q,
            vec![
                keyed("a1", Some("A")),
                keyed("a2", Some("A")),
                keyed("b1", Some("B")),
                keyed("free", None),
                keyed("a3", Some("A")),
            ],
        )
        .await
        .unwrap();
    let got = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    let bodies: Vec<String> = got.iter().map(body).collect();
    assert_eq!(bodies, ["a1", "b1", "free"]);
    assert_eq!(got[0].meta.order_key(), Some("A"));
    assert!(got[0].meta.user_tags().is_empty(), "the key is not a client tag");
    // Nothing more while a1 and b1 are out.
    assert!(env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap().is_empty());
    env.broker.ack(&q, &got[0].handle).await.unwrap();
    let next = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(next.iter().map(body).collect::<Vec<_>>(), ["a2"]);
    // An expired lease puts a2 back first: order holds across redelivery and a restart.
    let env = env.restart().await;
    let q = env.broker.queue("t", "q").await.unwrap();
    env.advance(secs(31));
    let again = env.broker.receive(&q, DEFAULT_GROUP, many(10)).await.unwrap();
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["a2", "b1", "free"], "a3 still waits behind a2");
    // A client cannot set the reserved tag itself.
    let forged = NewMessage { tags: vec!["\u{1}order:A".into()], ..NewMessage::text("x") };
    assert!(matches!(env.broker.publish(&q, vec![forged]).await, Err(CoreError::InvalidArgument(_))));
}

engine_tests!(
    ordering_keys_deliver_one_at_a_time_in_order,
    lease_expiry_redelivers_with_a_new_handle,
    forged_foreign_and_stale_handles_are_told_apart,
    priority_then_sequence_order,
    priority_ignored_when_the_queue_disables_it,
    delay_keeps_a_message_invisible_until_due,
    fifo_blocks_behind_a_leased_head_and_retries_it_first,
    fifo_blocks_behind_a_delayed_head_and_ignores_priority,
    nack_counts_failures_and_peek_changes_nothing,
    batch_receive_respects_max_and_bytes,
    publish_limits_are_all_or_nothing,
    long_poll_wakes_on_publish_without_time_passing,
    long_poll_waits_its_full_time_then_answers_empty,
    long_poll_wakes_when_a_lease_or_delay_ends,
    queue_deletion_and_shutdown_end_waits,
);
