//! Retention, purge, idempotency and restart in the core.

mod common;

use common::*;
use qgate::core::model::{
    DEFAULT_GROUP, DeadLetterPolicy, DeadLetterTarget, NewMessage, QueueConfig, SubscriptionRecord,
};
use qgate::core::{Idempotent, ReceiveOptions};

fn all() -> ReceiveOptions {
    ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(100) }
}

async fn retention_expires_messages_whatever_their_state(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", QueueConfig { retention_secs: 60, ..work() }).await;
    env.broker.publish(&q, vec![NewMessage::text("old-leased"), NewMessage::text("old-ready")]).await.unwrap();
    let leased = env
        .broker
        .receive(&q, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) })
        .await
        .unwrap();
    env.advance(secs(30));
    env.broker.publish(&q, vec![NewMessage::text("young")]).await.unwrap();
    env.advance(secs(30));
    env.broker.tick().await;
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.produced, s.ready, s.in_flight), (1, 1, 0));
    assert!(matches!(env.broker.ack(&q, &leased[0].handle).await, Err(qgate::core::CoreError::ReceiptStale)));
    let got = env.broker.receive(&q, DEFAULT_GROUP, all()).await.unwrap();
    assert_eq!(got[0].body.body, b"young");
    // And it is gone from disk: a restart does not bring it back.
    drop(got);
    let env = env.restart().await;
    let q = env.broker.queue("t", "q").await.unwrap();
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().produced, 1);
}

async fn purge_removes_live_messages_but_keeps_dead_letters(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env
        .queue(
            "q",
            QueueConfig {
                dead_letter: Some(DeadLetterPolicy { max_failures: 1, target: DeadLetterTarget::Own }),
                ..work()
            },
        )
        .await;
    env.broker
        .publish(&q, vec![NewMessage::text("dead"), NewMessage::text("leased"), NewMessage::text("ready")])
        .await
        .unwrap();
    env.broker.publish(&q, vec![NewMessage { delay_ms: Some(60_000), ..NewMessage::text("delayed") }]).await.unwrap();
    let d = env
        .broker
        .receive(&q, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) })
        .await
        .unwrap();
    env.broker.nack(&q, &d[0].handle, false).await.unwrap();
    env.broker.receive(&q, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) }).await.unwrap();
    assert_eq!(env.broker.purge(&q).await.unwrap(), 3);
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.delayed, s.dead), (0, 0, 0, 1));
    env.advance(secs(61));
    assert!(env.broker.receive(&q, DEFAULT_GROUP, all()).await.unwrap().is_empty());
}

async fn idempotency_replays_for_a_day_and_survives_restart(engine: Engine) {
    let env = Env::new(engine).await;
    let fp = [1u8; 32];
    let Idempotent::Proceed(t) = env.broker.idempotency_begin("t", "queue.publish", "k1", fp).await.unwrap() else {
        panic!("a new key proceeds");
    };
    env.broker.idempotency_finish(t, 201, b"{\"message_id\":\"X\"}".to_vec()).await.unwrap();
    match env.broker.idempotency_begin("t", "queue.publish", "k1", fp).await.unwrap() {
        Idempotent::Replay { status, body } => {
            assert_eq!((status, body.as_slice()), (201, &b"{\"message_id\":\"X\"}"[..]))
        }
        _ => panic!("same key, same fingerprint: replay"),
    }
    assert!(matches!(
        env.broker.idempotency_begin("t", "queue.publish", "k1", [2; 32]).await.unwrap(),
        Idempotent::Mismatch
    ));
    // Scoped per namespace and capability.
    assert!(matches!(
        env.broker.idempotency_begin("u", "queue.publish", "k1", [2; 32]).await.unwrap(),
        Idempotent::Proceed(_)
    ));
    assert!(matches!(
        env.broker.idempotency_begin("t", "queue.create", "k1", [2; 32]).await.unwrap(),
        Idempotent::Proceed(_)
    ));

    let env = env.restart().await;
    assert!(matches!(
        env.broker.idempotency_begin("t", "queue.publish", "k1", fp).await.unwrap(),
        Idempotent::Replay { .. }
    ));
    env.advance(secs(24 * 3600));
    env.broker.tick().await;
    assert!(
        matches!(
            env.broker.idempotency_begin("t", "queue.publish", "k1", [3; 32]).await.unwrap(),
            Idempotent::Proceed(_)
        ),
        "forgotten after 24 h"
    );
}

async fn restart_restores_queues_messages_leases_dead_letters_and_subscriptions(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env
        .queue(
            "q",
            QueueConfig {
                dead_letter: Some(DeadLetterPolicy { max_failures: 1, target: DeadLetterTarget::Own }),
                ..work()
            },
        )
        .await;
    let metas = env
        .broker
        .publish(&q, vec![NewMessage::text("dead"), NewMessage::text("leased"), NewMessage::text("ready")])
        .await
        .unwrap();
    env.broker.publish(&q, vec![NewMessage { delay_ms: Some(60_000), ..NewMessage::text("delayed") }]).await.unwrap();
    let one = || ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) };
    let d = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    env.broker.nack(&q, &d.handle, false).await.unwrap();
    let leased = env
        .broker
        .receive(&q, DEFAULT_GROUP, ReceiveOptions { lease_ms: Some(120_000), ..one() })
        .await
        .unwrap()
        .remove(0);
    let sub = SubscriptionRecord {
        id: uuid::Uuid::new_v4(),
        namespace: "t".into(),
        queue_id: q.id(),
        url: "https://example.com/hook".into(),
        secret: Some("s".into()),
        max_retries: 3,
        visibility_timeout_secs: 30,
        dead_letter_queue: None,
        created_at: T0,
    };
    env.broker.subscribe(sub.clone()).await.unwrap();
    let qid = q.id();
    drop(q);

    let env = env.restart().await;
    let q = env.broker.queue("t", "q").await.unwrap();
    assert_eq!(q.id(), qid);
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.delayed, s.dead), (1, 1, 1, 1));
    assert_eq!(env.broker.subscriptions().await.unwrap(), vec![sub]);
    // The lease and its handle survived: still invisible, and the old handle acks.
    let got = env.broker.receive(&q, DEFAULT_GROUP, all()).await.unwrap();
    assert_eq!(got.iter().map(|d| d.meta.id).collect::<Vec<_>>(), [metas[2].id]);
    env.broker.ack(&q, &leased.handle).await.unwrap();
    // New messages get new ids (sequences are never reused).
    let m = env.broker.publish(&q, vec![NewMessage::text("after")]).await.unwrap();
    assert!(metas.iter().all(|old| old.id != m[0].id));
}

async fn sequences_are_not_reused_after_the_queue_empties(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let first = env.broker.publish(&q, vec![NewMessage::text("a")]).await.unwrap()[0].id;
    let d = env.broker.receive(&q, DEFAULT_GROUP, all()).await.unwrap();
    env.broker.ack(&q, &d[0].handle).await.unwrap();
    drop(q);
    let env = env.restart().await;
    let q = env.broker.queue("t", "q").await.unwrap();
    let second = env.broker.publish(&q, vec![NewMessage::text("b")]).await.unwrap()[0].id;
    assert_ne!(first, second);
}

async fn work_queue_forgets_acked_messages_log_queue_keeps_them(engine: Engine) {
    let env = Env::new(engine).await;
    let w = env.queue("w", work()).await;
    let l = env.queue("l", log_queue(None)).await;
    for q in [&w, &l] {
        env.broker.publish(q, vec![NewMessage::text("m")]).await.unwrap();
        let d = env.broker.receive(q, DEFAULT_GROUP, all()).await.unwrap();
        env.broker.ack(q, &d[0].handle).await.unwrap();
    }
    assert_eq!(env.broker.stats(&w, DEFAULT_GROUP).await.unwrap().produced, 0);
    let s = env.broker.stats(&l, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.produced, s.acked, s.ready), (1, 1, 0));
}

async fn create_reports_an_existing_queue_and_updates_persist(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    match env.broker.create_queue("t", "q", QueueConfig { delay_secs: 9, ..work() }, None).await.unwrap() {
        qgate::core::CreateOutcome::Exists(rec) => assert_eq!(rec.config.delay_secs, 0),
        _ => panic!("exists"),
    }
    // Quotas count the namespace's queues.
    assert!(matches!(
        env.broker.create_queue("t", "r", work(), Some(1)).await,
        Err(qgate::core::CoreError::QuotaExceeded(_))
    ));
    env.broker.create_queue("other", "q", work(), Some(1)).await.unwrap();
    env.advance(secs(5));
    env.broker
        .update_queue(&q, |c| {
            c.visibility_timeout_secs = 99;
            Ok(())
        })
        .await
        .unwrap();
    drop(q);
    let env = env.restart().await;
    let rec = env.broker.queue("t", "q").await.unwrap().record();
    assert_eq!((rec.config.visibility_timeout_secs, rec.modified_at, rec.created_at), (99, T0 + 5_000, T0));
    let (names, more) = env.broker.list_queues("t", "", None, 10).await.unwrap();
    assert_eq!((names.len(), more), (1, false));
}

engine_tests!(
    retention_expires_messages_whatever_their_state,
    purge_removes_live_messages_but_keeps_dead_letters,
    idempotency_replays_for_a_day_and_survives_restart,
    restart_restores_queues_messages_leases_dead_letters_and_subscriptions,
    sequences_are_not_reused_after_the_queue_empties,
    work_queue_forgets_acked_messages_log_queue_keeps_them,
    create_reports_an_existing_queue_and_updates_persist,
);
