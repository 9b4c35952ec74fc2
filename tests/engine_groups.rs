//! Named consumer groups in the core: fan-out, tag rules, per-group dead letters, consume
//! reset. (No infrai endpoint reaches these; the CTYun and DMS dialects expose them.)

mod common;

use common::*;
use qgate::core::model::{DEFAULT_GROUP, Delivery, NewMessage, TagMode, TagRule};
use qgate::core::{CoreError, Queue, ReceiveOptions, ResetPosition};

fn opts(n: usize) -> ReceiveOptions {
    ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(n) }
}

fn with_rule(n: usize, tags: &[&str], mode: TagMode) -> ReceiveOptions {
    ReceiveOptions { rule: Some(TagRule::new(tags.iter().map(|t| t.to_string()), mode)), ..opts(n) }
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| String::from_utf8(d.body.body.clone()).unwrap()).collect()
}

fn tagged(body: &str, tags: &[&str]) -> NewMessage {
    NewMessage { tags: tags.iter().map(|t| t.to_string()).collect(), ..NewMessage::text(body) }
}

async fn groups(env: &Env, q: &Queue, names: &[&str]) -> Vec<u32> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    env.broker.create_groups(q, &names, Some(3)).await.unwrap().iter().map(|g| g.no).collect()
}

async fn every_group_gets_every_message(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(None)).await;
    let g = groups(&env, &q, &["billing", "audit"]).await;
    env.broker.publish(&q, ["1", "2", "3"].iter().map(|b| NewMessage::text(*b)).collect()).await.unwrap();

    let a = env.broker.receive(&q, g[0], opts(10)).await.unwrap();
    let b = env.broker.receive(&q, g[1], opts(10)).await.unwrap();
    assert_eq!(bodies(&a), ["1", "2", "3"]);
    assert_eq!(bodies(&b), ["1", "2", "3"]);
    for d in &a {
        env.broker.ack(&q, &d.handle).await.unwrap();
    }
    // Group B's leases are its own: A's acks did not touch them.
    env.broker.nack(&q, &b[0].handle, false).await.unwrap();
    assert_eq!(bodies(&env.broker.receive(&q, g[1], opts(10)).await.unwrap()), ["1"]);
    assert!(env.broker.receive(&q, g[0], opts(10)).await.unwrap().is_empty());

    let infos = env.broker.groups(&q).await.unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!((infos[0].stats.produced, infos[0].stats.acked), (3, 3), "log mode keeps acked messages");
    assert_eq!(infos[1].stats.in_flight, 3);
    // Group ids are g-<uuid> and lookups work by id or name.
    assert!(infos[0].record.id.starts_with("g-"));
    assert_eq!(env.broker.group_no(&q, &infos[0].record.id.to_uppercase()).await.unwrap(), g[0]);
    assert_eq!(env.broker.group_no(&q, "audit").await.unwrap(), g[1]);
}

async fn group_quota_and_duplicates_create_nothing(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(None)).await;
    groups(&env, &q, &["a", "b"]).await;
    let two = vec!["c".to_string(), "d".to_string()];
    assert!(matches!(env.broker.create_groups(&q, &two, Some(3)).await, Err(CoreError::QuotaExceeded(_))));
    let dup = vec!["c".to_string(), "a".to_string()];
    assert!(matches!(env.broker.create_groups(&q, &dup, Some(3)).await, Err(CoreError::GroupExists)));
    assert_eq!(env.broker.groups(&q).await.unwrap().len(), 2);
    let no = env.broker.group_no(&q, "b").await.unwrap();
    env.broker.delete_groups(&q, &[no]).await.unwrap();
    assert!(matches!(env.broker.group_no(&q, "b").await, Err(CoreError::GroupNotFound)));
    assert!(matches!(env.broker.delete_groups(&q, &[no]).await, Err(CoreError::GroupNotFound)));
}

async fn tag_rules_filter_and_are_fixed_by_the_first_consume(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(None)).await;
    let g = groups(&env, &q, &["or", "and", "none"]).await;
    env.broker
        .publish(
            &q,
            vec![
                tagged("red", &["red"]),
                tagged("red-big", &["red", "big"]),
                tagged("blue", &["blue"]),
                tagged("plain", &[]),
            ],
        )
        .await
        .unwrap();
    let or = env.broker.receive(&q, g[0], with_rule(10, &["red", "blue"], TagMode::Or)).await.unwrap();
    assert_eq!(bodies(&or), ["red", "red-big", "blue"], "or: any tag in common; untagged never matches");
    let and = env.broker.receive(&q, g[1], with_rule(10, &["big", "red"], TagMode::And)).await.unwrap();
    assert_eq!(bodies(&and), ["red-big"], "and: every filter tag present");
    let all = env.broker.receive(&q, g[2], with_rule(10, &[], TagMode::And)).await.unwrap();
    assert_eq!(bodies(&all).len(), 4, "no tags means everything");

    // The same rule again (order and mode spelling aside) is fine; another one is refused.
    env.broker.receive(&q, g[0], with_rule(10, &["blue", "red", "red"], TagMode::Or)).await.unwrap();
    assert!(matches!(
        env.broker.receive(&q, g[0], with_rule(10, &["red"], TagMode::Or)).await,
        Err(CoreError::TagRuleChanged)
    ));
    assert!(matches!(
        env.broker.receive(&q, g[1], with_rule(10, &["big", "red"], TagMode::Or)).await,
        Err(CoreError::TagRuleChanged)
    ));
    assert!(
        matches!(
            env.broker.receive(&q, g[2], with_rule(10, &["x"], TagMode::Or)).await,
            Err(CoreError::TagRuleChanged)
        ),
        "\"no tags\" is a rule too"
    );

    // The rule applies to later messages as well.
    env.broker.publish(&q, vec![tagged("blue-2", &["blue"]), tagged("green", &["green"])]).await.unwrap();
    assert_eq!(
        bodies(&env.broker.receive(&q, g[0], with_rule(10, &["red", "blue"], TagMode::Or)).await.unwrap()),
        ["blue-2"]
    );
}

async fn group_dead_letters_after_max_failures_and_can_be_consumed(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(Some(2))).await;
    let g = groups(&env, &q, &["g"]).await[0];
    env.broker.publish(&q, vec![NewMessage::text("poison"), NewMessage::text("fine")]).await.unwrap();

    // Failure 1: a nack. Failure 2: a lease that runs out.
    let d = env.broker.receive(&q, g, opts(1)).await.unwrap().remove(0);
    assert!(env.broker.nack(&q, &d.handle, false).await.unwrap());
    let d = env.broker.receive(&q, g, ReceiveOptions { lease_ms: Some(30_000), ..opts(1) }).await.unwrap().remove(0);
    assert_eq!(d.deliveries, 2);
    env.advance(secs(30));
    let next = env.broker.receive(&q, g, opts(10)).await.unwrap();
    assert_eq!(bodies(&next), ["fine"], "the poison message was dead-lettered at the second failure");
    let s = env.broker.stats(&q, g).await.unwrap();
    assert_eq!((s.dead, s.dead_total), (1, 1));

    // Dead letters have their own leases and handles.
    let dl = env.broker.receive_dead(&q, g, 10, 30_000, 0, None).await.unwrap();
    assert_eq!(bodies(&dl), ["poison"]);
    assert!(
        matches!(env.broker.ack(&q, &dl[0].handle).await, Err(CoreError::ReceiptMalformed)),
        "a dead-letter handle is not a message handle"
    );
    assert!(matches!(env.broker.settle_dead(&q, &next[0].handle, true).await, Err(CoreError::ReceiptMalformed)));
    assert!(env.broker.receive_dead(&q, g, 10, 30_000, 0, None).await.unwrap().is_empty());
    // A failed dead-letter confirm makes it available again (it is never re-dead-lettered).
    env.broker.settle_dead(&q, &dl[0].handle, false).await.unwrap();
    let dl = env.broker.receive_dead(&q, g, 10, 30_000, 0, None).await.unwrap();
    assert_eq!(dl.len(), 1);
    env.broker.settle_dead(&q, &dl[0].handle, true).await.unwrap();
    assert!(matches!(env.broker.settle_dead(&q, &dl[0].handle, true).await, Err(CoreError::ReceiptStale)));
    let s = env.broker.stats(&q, g).await.unwrap();
    assert_eq!((s.dead, s.dead_total), (0, 1));
}

async fn reset_to_earliest_latest_and_a_time(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(None)).await;
    let g = groups(&env, &q, &["g"]).await[0];
    env.broker.publish(&q, vec![NewMessage::text("t0-a"), NewMessage::text("t0-b")]).await.unwrap();
    env.advance(secs(60));
    env.broker.publish(&q, vec![NewMessage::text("t60")]).await.unwrap();
    for d in env.broker.receive(&q, g, opts(10)).await.unwrap() {
        env.broker.ack(&q, &d.handle).await.unwrap();
    }
    assert!(env.broker.receive(&q, g, opts(10)).await.unwrap().is_empty());

    env.broker.reset(&q, g, ResetPosition::Earliest, false).await.unwrap();
    let replay = env.broker.receive(&q, g, opts(10)).await.unwrap();
    assert_eq!(bodies(&replay), ["t0-a", "t0-b", "t60"], "earliest replays acked messages");
    assert!(replay.iter().all(|d| d.deliveries == 1), "counts start over");

    // Without force, a group with messages in flight refuses; with force their handles die.
    assert!(matches!(env.broker.reset(&q, g, ResetPosition::Latest, false).await, Err(CoreError::GroupBusy)));
    env.broker.reset(&q, g, ResetPosition::Time(T0 + 30_000), true).await.unwrap();
    assert!(matches!(env.broker.ack(&q, &replay[0].handle).await, Err(CoreError::ReceiptStale)));
    assert_eq!(bodies(&env.broker.receive(&q, g, opts(10)).await.unwrap()), ["t60"], "a time: from there on");

    env.broker.reset(&q, g, ResetPosition::Latest, true).await.unwrap();
    assert!(env.broker.receive(&q, g, opts(10)).await.unwrap().is_empty(), "latest skips everything there is");
    env.broker.publish(&q, vec![NewMessage::text("new")]).await.unwrap();
    assert_eq!(bodies(&env.broker.receive(&q, g, opts(10)).await.unwrap()), ["new"]);
    // The default group was never touched by any of this.
    assert_eq!(env.broker.stats(&q, DEFAULT_GROUP).await.unwrap().ready, 4);
}

async fn a_new_group_starts_at_the_earliest_retained_message(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(None)).await;
    env.broker.publish(&q, vec![NewMessage::text("before")]).await.unwrap();
    let g = groups(&env, &q, &["late"]).await[0];
    env.broker.publish(&q, vec![NewMessage::text("after")]).await.unwrap();
    assert_eq!(bodies(&env.broker.receive(&q, g, opts(10)).await.unwrap()), ["before", "after"]);
}

async fn groups_rules_and_resets_survive_a_restart(engine: Engine) {
    let env = Env::new(engine).await;
    let q = env.queue("q", log_queue(Some(1))).await;
    let g = groups(&env, &q, &["g", "h"]).await;
    env.broker.publish(&q, vec![tagged("a", &["x"]), tagged("b", &["y"]), NewMessage::text("c")]).await.unwrap();
    let got = env.broker.receive(&q, g[0], with_rule(1, &["x", "y"], TagMode::Or)).await.unwrap();
    env.broker.nack(&q, &got[0].handle, false).await.unwrap(); // max 1: dead at once
    env.broker.reset(&q, g[1], ResetPosition::Latest, false).await.unwrap();
    let env = env.restart().await;
    let q = env.broker.queue("t", "q").await.unwrap();
    assert!(matches!(
        env.broker.receive(&q, g[0], with_rule(1, &["z"], TagMode::Or)).await,
        Err(CoreError::TagRuleChanged)
    ));
    assert_eq!(bodies(&env.broker.receive(&q, g[0], with_rule(10, &["y", "x"], TagMode::Or)).await.unwrap()), ["b"]);
    assert_eq!(env.broker.stats(&q, g[0]).await.unwrap().dead, 1);
    assert!(env.broker.receive(&q, g[1], opts(10)).await.unwrap().is_empty(), "the reset position survived");
}

engine_tests!(
    every_group_gets_every_message,
    group_quota_and_duplicates_create_nothing,
    tag_rules_filter_and_are_fixed_by_the_first_consume,
    group_dead_letters_after_max_failures_and_can_be_consumed,
    reset_to_earliest_latest_and_a_time,
    a_new_group_starts_at_the_earliest_retained_message,
    groups_rules_and_resets_survive_a_restart,
);
