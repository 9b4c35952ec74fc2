//! Dead-lettering of the default group (infrai semantics): threshold, own store vs target
//! queue, listing wherever kept, redrive one / since / all.

mod common;

use common::*;
use qgate::core::model::{DEFAULT_GROUP, DeadLetterPolicy, DeadLetterTarget, DeadReason, NewMessage, QueueConfig};
use qgate::core::{CoreError, Queue, ReceiveOptions, RedriveSelector};

fn one() -> ReceiveOptions {
    ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(1) }
}

fn policy(max: u32, target: DeadLetterTarget) -> QueueConfig {
    QueueConfig { dead_letter: Some(DeadLetterPolicy { max_failures: max, target }), ..work() }
}

async fn fail(env: &Env, q: &std::sync::Arc<Queue>) -> bool {
    let d = env.broker.receive(q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    env.broker.nack(q, &d.handle, false).await.unwrap()
}

async fn dead_lettered_exactly_at_the_threshold_into_the_own_store(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", policy(3, DeadLetterTarget::Own)).await;
    let id = env.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap()[0].id;
    assert!(fail(&env, &q).await, "failure 1: requeued");
    assert!(fail(&env, &q).await, "failure 2: requeued");
    assert!(!fail(&env, &q).await, "failure 3 reaches max_failures: dead");
    assert!(env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().is_empty());
    let s = env.broker.stats(&q, DEFAULT_GROUP).await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.dead), (0, 0, 1));
    let page = env.broker.dead_letters(&q, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let dl = &page.items[0];
    assert_eq!((dl.meta.id, dl.reason, dl.deliveries, dl.failures), (id, DeadReason::MaxDeliveries, 3, 3));
    assert_eq!(dl.source_queue, q.id());
}

async fn nack_without_requeue_dead_letters_at_once(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", policy(5, DeadLetterTarget::Own)).await;
    env.broker.publish(&q, vec![NewMessage::text("m")]).await.unwrap();
    let d = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert!(!env.broker.nack(&q, &d.handle, true).await.unwrap());
    let page = env.broker.dead_letters(&q, None, 10).await.unwrap();
    assert_eq!(page.items[0].reason, DeadReason::Nacked);
}

async fn dead_letters_into_a_target_queue_remember_their_origin_and_redrive_home(engine: Engine) {
    let env = Env::new(engine).await;
    let dlq = env.queue("dlq", work()).await;
    let q = env.queue("q", policy(1, DeadLetterTarget::Queue(dlq.id()))).await;
    let ids: Vec<_> = env
        .broker
        .publish(&q, vec![NewMessage::text("a"), NewMessage::text("b")])
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(!fail(&env, &q).await);
    env.advance(secs(10));
    assert!(!fail(&env, &q).await);
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().produced, 0, "moved out of the source");
    // In the target they are ordinary messages that keep their ids.
    let ds = env.broker.stats(&dlq, DEFAULT_GROUP).await.unwrap();
    assert_eq!(ds.ready, 2);
    assert_eq!(
        env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().dead,
        2,
        "the source counts its dead letters kept elsewhere"
    );
    let page = env.broker.dead_letters(&q, None, 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].meta.id, ids[0]);
    let page2 = env.broker.dead_letters(&q, page.next, 1).await.unwrap();
    assert_eq!(page2.items[0].meta.id, ids[1]);
    assert!(page2.next.is_none());

    // Redrive since t=10s takes only the second; then all takes the rest.
    assert_eq!(env.broker.redrive(&q, RedriveSelector::Since(T0 + 10_000), 100).await.unwrap(), 1);
    assert_eq!(env.broker.redrive(&q, RedriveSelector::All, 100).await.unwrap(), 1);
    assert_eq!(env.broker.stats(&dlq, DEFAULT_GROUP).await.unwrap().produced, 0);
    let back = env
        .broker
        .receive(&q, DEFAULT_GROUP, ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(10) })
        .await
        .unwrap();
    let mut got: Vec<_> = back.iter().map(|d| (d.meta.id, d.deliveries)).collect();
    got.sort();
    let mut want = vec![(ids[0], 1), (ids[1], 1)];
    want.sort();
    assert_eq!(got, want, "same ids, attempts reset");
    // Acking a redriven message by its (original) id works.
    env.broker.ack_id(&q, DEFAULT_GROUP, back[0].meta.id).await.unwrap();
}

async fn redrive_one_from_the_own_store(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", policy(1, DeadLetterTarget::Own)).await;
    let metas = env.broker.publish(&q, vec![NewMessage::text("a"), NewMessage::text("b")]).await.unwrap();
    fail(&env, &q).await;
    fail(&env, &q).await;
    assert_eq!(env.broker.redrive(&q, RedriveSelector::One(metas[1].id), 100).await.unwrap(), 1);
    assert!(matches!(
        env.broker.redrive(&q, RedriveSelector::One(metas[1].id), 100).await,
        Err(CoreError::MessageNotFound)
    ));
    let d = env.broker.receive(&q, DEFAULT_GROUP, one()).await.unwrap().remove(0);
    assert_eq!((d.meta.id, d.deliveries), (metas[1].id, 1));
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().dead, 1);
    // max limits a bulk redrive.
    assert_eq!(env.broker.redrive(&q, RedriveSelector::All, 0).await.unwrap(), 0);
}

async fn a_vanished_target_keeps_dead_letters_at_home(engine: Engine) {
    let env = Env::new(engine).await;
    let dlq = env.queue("dlq", work()).await;
    let q = env.queue("q", policy(1, DeadLetterTarget::Queue(dlq.id()))).await;
    env.broker.delete_queue(&dlq).await.unwrap();
    env.broker.publish(&q, vec![NewMessage::text("a")]).await.unwrap();
    fail(&env, &q).await;
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().dead, 1);
    assert_eq!(env.broker.dead_letters(&q, None, 10).await.unwrap().items.len(), 1);
}

async fn dead_letter_target_must_exist_and_not_be_itself(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", work()).await;
    let r = env.broker.update_queue(&q, |c| {
        c.dead_letter = Some(DeadLetterPolicy { max_failures: 1, target: DeadLetterTarget::Queue(q.id()) });
        Ok(())
    });
    assert!(matches!(r.await, Err(CoreError::InvalidArgument(_))));
    let r = env.broker.create_queue("t", "x", policy(1, DeadLetterTarget::Queue(uuid::Uuid::new_v4())), None).await;
    assert!(matches!(r, Err(CoreError::QueueNotFound)));
}

engine_tests!(
    dead_lettered_exactly_at_the_threshold_into_the_own_store,
    nack_without_requeue_dead_letters_at_once,
    dead_letters_into_a_target_queue_remember_their_origin_and_redrive_home,
    redrive_one_from_the_own_store,
    a_vanished_target_keeps_dead_letters_at_home,
    dead_letter_target_must_exist_and_not_be_itself,
);
