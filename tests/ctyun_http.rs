//! CTYun through the real router: signing failures, malformed calls, quotas, groups, tag rules,
//! confirms, dead letters, reset, namespaces, and the same queue through MNS and infrai.

mod common;

use std::time::Duration;

use common::ctyun::{CtClient, content_md5, request_date};
use common::mns::MnsClient;
use common::*;
use serde_json::{Value, json};

fn ct(s: &TestServer) -> CtClient {
    CtClient::new(&s.base, "test-ak", "test-sk", &s.clock)
}

async fn create(c: &CtClient, name: &str, extra: Value) -> String {
    let mut info = json!({"regionId": "cn-snxy1", "name": name});
    for (k, v) in extra.as_object().unwrap() {
        info[k] = v.clone();
    }
    let r = c.post("createQueue", &[("createQueueInfo", info)]).await;
    assert_eq!(r.code(), 800, "{}", r.body);
    let inner: Value = serde_json::from_str(r.body["returnObj"].as_str().unwrap()).unwrap();
    inner["id"].as_str().unwrap().to_string()
}

async fn group(c: &CtClient, queue: &str, name: &str) -> String {
    let r = c
        .post(
            "createConsumeGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(queue)), ("groups", json!([{"name": name}]))],
        )
        .await;
    assert_eq!(r.code(), 800, "{}", r.body);
    r.body["consumerGroupId"].as_str().unwrap().to_string()
}

async fn send(c: &CtClient, queue: &str, messages: Value) -> Value {
    let r = c
        .post(
            "sendSpecifyQueueMessage",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(queue)), ("messages", messages)],
        )
        .await;
    r.body
}

async fn consume(c: &CtClient, queue: &str, group: &str, extra: Value) -> Vec<Value> {
    let mut info = json!({"regionId": "cn-snxy1", "queueId": queue, "consumerGroupId": group, "timeWait": "1"});
    for (k, v) in extra.as_object().unwrap() {
        info[k] = v.clone();
    }
    // An empty answer waits timeWait on the server's manual clock: drive it.
    let c2 = CtClient::new(&c.base, &c.ak, &c.sk, &c.clock);
    let r = drive(&c.clock, async move { c2.get("consumptionMessage", &[("consumerQueueInfo", info)]).await }).await;
    assert_eq!(r.code(), 800, "{}", r.body);
    r.inner().as_array().unwrap().clone()
}

async fn confirm(c: &CtClient, queue: &str, group: &str, entries: Value) -> Value {
    let r = c
        .post(
            "confirmConsumedSpecifiedMessage",
            &[
                ("regionId", json!("cn-snxy1")),
                ("queueId", json!(queue)),
                ("consumerGroupId", json!(group)),
                ("message", entries),
            ],
        )
        .await;
    assert_eq!(r.code(), 800, "{}", r.body);
    r.inner()
}

fn bodies(items: &[Value]) -> Vec<Value> {
    items.iter().map(|i| i["message"]["body"].clone()).collect()
}

#[tokio::test]
async fn signing_failures_and_malformed_calls() {
    let s = TestServer::start().await;
    let c = ct(&s);
    let http = client();
    let url = s.url("/apiproxy/v3/queue/queryQuota");
    let now = request_date(s.clock_now());
    // Missing auth headers: 400 envelope with HTTP 400.
    let r = CtClient::finish(http.get(&url).header("regionId", "r")).await;
    assert_eq!((r.status, r.code(), r.error_code().as_str()), (400, 400, "Openapi.Parameter.Error"));
    // An unreadable requestDate: 400.
    let r = CtClient::finish(
        http.get(&url)
            .header("accessKey", "test-ak")
            .header("contentMD5", "x")
            .header("requestDate", "someday")
            .header("Hmac", "x"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, 400));
    // Stale date, unknown key, bad Hmac: 900 with HTTP 200.
    let old = request_date(s.clock_now() - 16 * 60 * 1000);
    let r = CtClient::finish(
        http.get(&url)
            .header("accessKey", "test-ak")
            .header("contentMD5", "x")
            .header("requestDate", &old)
            .header("Hmac", "x"),
    )
    .await;
    assert_eq!((r.status, r.code(), r.error_code().as_str()), (200, 900, "Openapi.RequestDate.Expired"));
    let r = CtClient::finish(
        http.get(&url)
            .header("accessKey", "nobody")
            .header("contentMD5", "x")
            .header("requestDate", &now)
            .header("Hmac", "x"),
    )
    .await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "Openapi.AccessKey.Invalid"));
    let r = CtClient::new(&s.base, "test-ak", "wrong", &s.clock).get("queryQuota", &[("regionId", json!("r"))]).await;
    assert_eq!((r.status, r.code(), r.error_code().as_str()), (200, 900, "Openapi.Signature.Error"));
    // The same instant in CST is accepted (and signed as written).
    let cst = jiff::Timestamp::from_millisecond(s.clock_now() as i64 + 8 * 3600 * 1000)
        .unwrap()
        .strftime("%a, %-d %b %Y %H:%M:%S CST")
        .to_string();
    let md5 = content_md5(&["r".to_string()]);
    let h = common::ctyun::hmac("test-sk", &md5, &cst, "/apiproxy/v3/queue/queryQuota");
    let r = CtClient::finish(
        http.get(&url)
            .header("accessKey", "test-ak")
            .header("contentMD5", &md5)
            .header("requestDate", &cst)
            .header("hmac", &h)
            .header("regionId", "r"),
    )
    .await;
    assert_eq!(r.code(), 800, "{}", r.body);

    // Unknown operation: 404; wrong method: 400; missing / malformed parameters: 400.
    let r = c.get("noSuchOperation", &[]).await;
    assert_eq!((r.status, r.code()), (404, 404));
    let r = CtClient::finish(http.get(s.url("/apiproxy/v3/other/thing"))).await;
    assert_eq!((r.status, r.code()), (404, 404));
    let r = c.post("queryQuota", &[("regionId", json!("r"))]).await;
    assert_eq!((r.status, r.code()), (400, 400));
    let r = c.get("queryQuota", &[]).await;
    assert_eq!((r.status, r.code()), (400, 400), "regionId is required");
    let r = c.post("createQueue", &[]).await;
    assert_eq!((r.status, r.code()), (400, 400));
    let r = c.post("createQueue", &[("createQueueInfo", json!(5))]).await;
    assert_eq!((r.status, r.code()), (400, 400), "wrong type");
    let r = c.raw("GET", "consumptionMessage", &["{bad".into()], &[("consumerQueueInfo", "{bad")], None).await;
    assert_eq!((r.status, r.code()), (400, 400), "bad JSON in a header");
    let r = c.raw("POST", "createQueue", &[], &[], Some("{not json")).await;
    assert_eq!((r.status, r.code()), (400, 400), "bad JSON body");
    let r = c
        .post("sendSpecifyQueueMessage", &[("regionId", json!("r")), ("queueId", json!("x")), ("messages", json!([]))])
        .await;
    assert_eq!((r.status, r.code()), (400, 400), "no messages");
    // Signed for other parameters: refused by default (content_md5 = "permissive").
    let r = c.raw("GET", "queryQuota", &["something else".into()], &[("regionId", "r")], None).await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "Openapi.ContentMD5.Mismatch"));
}

/// A captured removeQueue replayed with another queueId: its contentMD5 covers the first id, so
/// the default binding refuses it and the other queue survives. Parameters hashed in another
/// order (as some public clients do) are accepted; MD5("") over parameters (what two public
/// clients send) binds nothing: accepted by default, refused by `bound`; `warn` accepts anything.
#[tokio::test]
async fn a_replayed_signature_with_other_parameters_is_refused() {
    use qgate::config::Md5Mode;
    let remove = |id: &str| json!({"regionId": "cn-snxy1", "queueId": id}).to_string();
    let s = TestServer::start().await;
    let c = ct(&s);
    let a = create(&c, "victim-a", json!({})).await;
    let b = create(&c, "victim-b", json!({})).await;
    let signed_for_a: Vec<String> = vec!["cn-snxy1".into(), a.clone()];
    let r = c.raw("POST", "removeQueue", &signed_for_a, &[], Some(&remove(&b))).await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "Openapi.ContentMD5.Mismatch"));
    let r = c.get("querySpecifyQueue", &[("regionId", json!("cn-snxy1")), ("queueId", json!(b))]).await;
    assert_eq!(r.code(), 800, "queue b survived: {:?}", r.body);
    // The parameters hashed in another order than the document's: bound all the same.
    let reordered: Vec<String> = vec![a.clone(), "cn-snxy1".into()];
    let r = c.raw("POST", "removeQueue", &reordered, &[], Some(&remove(&a))).await;
    assert_eq!(r.code(), 800, "{:?}", r.body);
    s.stop().await.unwrap();

    for (mode, empty_ok, other_ok) in
        [(Md5Mode::Permissive, true, false), (Md5Mode::Bound, false, false), (Md5Mode::Warn, true, true)]
    {
        let s = TestServer::start_with(|cfg| cfg.ctyun.content_md5 = mode).await;
        let c = ct(&s);
        let (a, b) = (create(&c, "a", json!({})).await, create(&c, "b", json!({})).await);
        let other: Vec<String> = vec!["cn-snxy1".into(), a.clone()];
        let r = c.raw("POST", "removeQueue", &other, &[], Some(&remove(&b))).await;
        assert_eq!(r.code() == 800, other_ok, "{mode:?}: signed for a, sent for b");
        let r = c.raw("POST", "removeQueue", &[String::new()], &[], Some(&remove(&a))).await;
        assert_eq!(r.code() == 800, empty_ok, "{mode:?}: MD5(\"\") over parameters");
        s.stop().await.unwrap();
    }
}

trait Now {
    fn clock_now(&self) -> u64;
}
impl Now for TestServer {
    fn clock_now(&self) -> u64 {
        qgate::core::Clock::now(&self.clock)
    }
}

#[tokio::test]
async fn strict_content_md5_and_mirrored_status_lines() {
    let s = TestServer::start_with(|c| {
        c.ctyun.content_md5 = qgate::config::Md5Mode::Strict;
        c.ctyun.http_status = qgate::config::HttpStatusMode::Mirror;
    })
    .await;
    let c = ct(&s);
    let r = c.raw("GET", "queryQuota", &["something else".into()], &[("regionId", "r")], None).await;
    assert_eq!((r.status, r.code(), r.error_code().as_str()), (900, 900, "Openapi.ContentMD5.Mismatch"));
    let r = c.get("queryQuota", &[("regionId", json!("r"))]).await;
    assert_eq!((r.status, r.code()), (800, 800), "mirror puts 800 in the status line");
}

#[tokio::test]
async fn quotas_refuse_and_create_nothing() {
    let s = TestServer::start().await;
    let c = ct(&s);
    for i in 0..5 {
        create(&c, &format!("q{i}"), json!({})).await;
    }
    let r = c.post("createQueue", &[("createQueueInfo", json!({"regionId": "cn-snxy1", "name": "q5"}))]).await;
    assert_eq!((r.status, r.code(), r.error_code().as_str()), (200, 900, "DMS.QueueQuotaExceeded"));
    let quota = c.get("queryQuota", &[("regionId", json!("cn-snxy1"))]).await;
    assert_eq!(quota.body["quotas"]["resources"][0]["used"], 5);
    assert_eq!(quota.body["returnObj"]["quotas"]["resources"][0]["quota"], 5);
    // Duplicates and bad values are 900 too.
    let r = c.post("createQueue", &[("createQueueInfo", json!({"regionId": "cn-snxy1", "name": "q0"}))]).await;
    assert_eq!(r.error_code(), "DMS.QueueNameDuplicate");

    // A sub-tenant (customInfo type 2) is a namespace of its own, with its own quota.
    let mut sub = ct(&s);
    sub.custom_info = Some(json!({"name": "张鹏", "type": 2, "identity": {"crmBizId": "", "accountId": "tenant-42"}}));
    let q = create(&sub, "q0", json!({"redrivePolicy": "enable", "maxConsumeCount": 7})).await;
    let listed = sub.get("queryQueue", &[("regionId", json!("cn-snxy1")), ("includeDeadletter", json!("true"))]).await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["queues"][0]["max_consume_count"], 7);
    let r = c.get("querySpecifyQueue", &[("regionId", json!("cn-snxy1")), ("queueId", json!(q))]).await;
    assert_eq!(r.error_code(), "DMS.QueueNotFound", "the parent namespace does not see the sub-tenant's queue");
    let r = sub.post("createQueue", &[("createQueueInfo", json!({"regionId": "cn-snxy1", "name": "q1"}))]).await;
    assert_eq!(r.code(), 800);
    let bad =
        sub.post("createQueue", &[("createQueueInfo", json!({"regionId": "cn-snxy1", "name": "has space"}))]).await;
    assert_eq!(bad.error_code(), "DMS.InvalidValue");
    let bad = sub
        .post("createQueue", &[("createQueueInfo", json!({"regionId": "cn-snxy1", "name": "m", "queueMode": "LIFO"}))])
        .await;
    assert_eq!(bad.error_code(), "DMS.InvalidValue");
    let bad = sub
        .post(
            "createQueue",
            &[(
                "createQueueInfo",
                json!({"regionId": "cn-snxy1", "name": "m", "redrivePolicy": "enable", "maxConsumeCount": 101}),
            )],
        )
        .await;
    assert_eq!(bad.error_code(), "DMS.InvalidValue");
    // Another tenant's key does not reach tenant A's queues.
    let other = CtClient::new(&s.base, "other-ak", "other-sk", &s.clock);
    let r = other.get("querySpecifyQueue", &[("regionId", json!("cn-snxy1")), ("queueId", json!(q))]).await;
    assert_eq!(r.error_code(), "DMS.QueueNotFound");

    // Groups: three per queue, all or none.
    let gq = create(&sub, "groups", json!({})).await;
    let r = sub
        .post(
            "createConsumeGroup",
            &[
                ("regionId", json!("cn-snxy1")),
                ("queueId", json!(gq)),
                ("groups", json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}])),
            ],
        )
        .await;
    assert_eq!(r.error_code(), "DMS.GroupQuotaExceeded");
    let r = sub
        .post(
            "createConsumeGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(gq)), ("groups", json!(["a", "b"]))],
        )
        .await;
    assert_eq!(r.body["groups"].as_array().unwrap().len(), 2);
    let r = sub
        .post(
            "createConsumeGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(gq)), ("groups", json!([{"name": "a"}]))],
        )
        .await;
    assert_eq!(r.error_code(), "DMS.GroupNameDuplicate");
    // 512 KB per send.
    let big = json!([{"body": "x".repeat(512 * 1024)}]);
    let r = send(&sub, &gq, big).await;
    assert_eq!(r["errorCode"], "DMS.MessageTooLarge");
    let r = send(&sub, &gq, json!([{"body": 1}, {"nobody": 2}])).await;
    assert_eq!(r["errorCode"], "DMS.InvalidValue");
    let l =
        sub.get("querySpecifyQueueAllConsumerGroup", &[("regionId", json!("cn-snxy1")), ("queueId", json!(gq))]).await;
    assert_eq!(l.body["groups"][0]["produced_messages"], 0, "a failed send stores nothing");
}

#[tokio::test]
async fn fan_out_tag_rules_confirms_and_redelivery() {
    let s = TestServer::start().await;
    let c = ct(&s);
    let q = create(&c, "orders", json!({})).await;
    let g1 = group(&c, &q, "billing").await;
    let g2 = group(&c, &q, "audit").await;
    let sent = send(
        &c,
        &q,
        json!([{"body": {"n": 1}, "tags": ["red"]}, {"body": {"n": 2}, "tags": ["blue"]}, {"body": "three"}]),
    )
    .await;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);

    // g1 filters on red; g2 takes everything: fan-out.
    let a = consume(&c, &q, &g1, json!({"tags": ["red"], "tagType": "or"})).await;
    assert_eq!(bodies(&a), [json!({"n": 1})]);
    assert_eq!(a[0]["message"]["tags"], json!(["red"]));
    let b = consume(&c, &q, &g2, json!({})).await;
    assert_eq!(bodies(&b), [json!({"n": 1}), json!({"n": 2}), json!("three")]);
    // The rule is fixed.
    let r = c
        .get(
            "consumptionMessage",
            &[("consumerQueueInfo", json!({"queueId": q, "consumerGroupId": g1, "tags": ["blue"], "timeWait": 1}))],
        )
        .await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "DMS.TagRuleChanged"));

    // In-order confirm: [success, fail, success] → 1 success, 2 fail; the 2nd and 3rd come back.
    let res = confirm(&c, &q, &g2, json!([{"handler": b[0]["handler"], "status": "success"}, {"handler": b[1]["handler"], "status": "fail"}, {"handler": b[2]["handler"], "status": "success"}])).await;
    assert_eq!(res, json!({"success": 1, "fail": 2}));
    let again = consume(&c, &q, &g2, json!({})).await;
    assert_eq!(bodies(&again), [json!({"n": 2}), json!("three")]);
    // Handlers of another group, stale ones and garbage count as failed and change nothing.
    let res = confirm(&c, &q, &g2, json!([{"handler": a[0]["handler"], "status": "success"}])).await;
    assert_eq!(res, json!({"success": 0, "fail": 1}));
    let res = confirm(
        &c,
        &q,
        &g2,
        json!([{"handler": "garbage", "status": "success"}, {"handler": again[0]["handler"], "status": "success"}]),
    )
    .await;
    assert_eq!(res, json!({"success": 0, "fail": 2}), "everything after the first failure fails");
    // ackWait ends: redelivered (timeWait long-polls on the server clock).
    let res = confirm(&c, &q, &g1, json!({"message": [{"handler": a[0]["handler"], "status": "success"}]})).await;
    assert_eq!(res, json!({"success": 1, "fail": 0}));
    // The message failed by the cascade is back now; "three" is still leased (30 s default).
    let leased = consume(&c, &q, &g2, json!({"ackWait": 15})).await;
    assert_eq!(bodies(&leased), [json!({"n": 2})]);
    s.clock.advance(Duration::from_secs(30));
    assert_eq!(consume(&c, &q, &g2, json!({})).await.len(), 2, "both redelivered once their ackWait ran out");

    // Counters.
    let l = c
        .get(
            "querySpecifyQueueAllConsumerGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(q)), ("includeDeadletter", json!("true"))],
        )
        .await;
    let g = &l.body["groups"];
    assert_eq!(
        (g[0]["name"].clone(), g[0]["consumed_messages"].clone(), g[0]["available_messages"].clone()),
        (json!("billing"), json!(1), json!(0))
    );
    assert_eq!((g[1]["consumed_messages"].clone(), g[1]["available_messages"].clone()), (json!(1), json!(2)));
    assert_eq!(l.body["redrive_policy"], "disable");
    // Removing a group: by name.
    let r = c
        .post(
            "removeSpecifyConsumerGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(q)), ("groups", json!([{"name": "billing"}]))],
        )
        .await;
    assert_eq!(r.code(), 800);
    let r = c
        .post(
            "removeSpecifyConsumerGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(q)), ("groups", json!([{"name": "billing"}]))],
        )
        .await;
    assert_eq!(r.error_code(), "DMS.GroupNotFound");
}

#[tokio::test]
async fn dead_letters_reset_and_fifo() {
    let s = TestServer::start().await;
    let c = ct(&s);
    let q = create(&c, "dl", json!({"redrivePolicy": "enable", "maxConsumeCount": "2"})).await;
    let g = group(&c, &q, "g").await;
    send(&c, &q, json!([{"body": "poison"}, {"body": "good"}])).await;
    for _ in 0..2 {
        let got = consume(&c, &q, &g, json!({"maxMsgs": 1})).await;
        assert_eq!(bodies(&got), [json!("poison")]);
        confirm(&c, &q, &g, json!([{"handler": got[0]["handler"], "status": "fail"}])).await;
    }
    let next = consume(&c, &q, &g, json!({})).await;
    assert_eq!(bodies(&next), [json!("good")], "poison went to the dead letters at maxConsumeCount");
    confirm(&c, &q, &g, json!([{"handler": next[0]["handler"], "status": "success"}])).await;
    let info = json!({"regionId": "cn-snxy1", "consumerGroupId": g, "timeWait": 1});
    let r = c.get("consumeDeadlettersMessage", &[("consumedMessageInfo", info.clone())]).await;
    let dl = r.inner();
    assert!(!dl.as_array().unwrap().is_empty());
    assert_eq!(bodies(dl.as_array().unwrap()), [json!("poison")], "queueId may be omitted");
    let handler = dl[0]["handler"].clone();
    // A dead-letter handler is not a message handler.
    let res = confirm(&c, &q, &g, json!([{"handler": handler, "status": "success"}])).await;
    assert_eq!(res["fail"], 1);
    let r = c.post("confirmConsumeDeadlettersMessage", &[("consumedMessageInfo", json!({"regionId": "cn-snxy1", "queueId": q, "consumerGroupId": g, "message": {"message": [{"handler": handler, "status": "false"}]}}))]).await;
    assert_eq!(r.inner(), json!({"success": 0, "fail": 1}));
    let dl = c.get("consumeDeadlettersMessage", &[("consumedMessageInfo", info.clone())]).await.inner();
    assert_eq!(dl.as_array().unwrap().len(), 1, "a failed dead-letter confirm makes it available again");
    let r = c.post("confirmConsumeDeadlettersMessage", &[("consumedMessageInfo", json!({"regionId": "cn-snxy1", "consumerGroupId": g, "message": [{"handler": dl[0]["handler"], "status": "success"}]}))]).await;
    assert_eq!(r.inner(), json!({"success": 1, "fail": 0}));
    let l = c
        .get(
            "querySpecifyQueueAllConsumerGroup",
            &[("regionId", json!("cn-snxy1")), ("queueId", json!(q)), ("includeDeadletter", json!("true"))],
        )
        .await;
    assert_eq!(
        (l.body["groups"][0]["produced_deadletters"].clone(), l.body["groups"][0]["available_deadletters"].clone()),
        (json!(1), json!(0))
    );

    // Reset to earliest replays everything retained, acked included.
    let reset = |ts: Value, force: bool| {
        let c = &c;
        let g = g.clone();
        async move {
            c.post(
                "consumeReset",
                &[(
                    "consumedMessageInfo",
                    json!({"regionId": "cn-snxy1", "consumerGroupId": g, "config": {"timestamp": ts, "force": force}}),
                )],
            )
            .await
        }
    };
    assert_eq!(reset(json!("earliest"), false).await.inner(), json!({"status": "success"}));
    let replay = consume(&c, &q, &g, json!({})).await;
    assert_eq!(bodies(&replay), [json!("poison"), json!("good")]);
    let r = reset(json!("latest"), false).await;
    assert_eq!(r.error_code(), "DMS.GroupConsuming", "in flight and no force");
    assert_eq!(reset(json!("1"), true).await.code(), 800);
    assert!(consume(&c, &q, &g, json!({})).await.is_empty());
    let r = reset(json!((s.clock_now() / 1000 + 3600).to_string()), true).await;
    assert_eq!(r.error_code(), "DMS.InvalidTimestamp", "a time in the future");
    assert_eq!(reset(json!(request_date(s.clock_now() - 60_000)), true).await.code(), 800);
    assert_eq!(consume(&c, &q, &g, json!({})).await.len(), 2, "everything sent since a minute ago");

    // FIFO: nothing after a leased head; a failed head first.
    let f = create(&c, "fifo", json!({"queueMode": "FIFO"})).await;
    let fg = group(&c, &f, "g").await;
    send(&c, &f, json!([{"body": 1}, {"body": 2}, {"body": 3}])).await;
    let head = consume(&c, &f, &fg, json!({"maxMsgs": 1})).await;
    assert_eq!(bodies(&head), [json!(1)]);
    assert!(consume(&c, &f, &fg, json!({})).await.is_empty());
    confirm(&c, &f, &fg, json!([{"handler": head[0]["handler"], "status": "fail"}])).await;
    assert_eq!(bodies(&consume(&c, &f, &fg, json!({})).await), [json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn one_queue_through_ctyun_mns_and_infrai() {
    let s = TestServer::start().await;
    let c = ct(&s);
    let mns = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    let http = client();
    let q = create(&c, "shared", json!({})).await;
    let g = group(&c, &q, "g").await;
    // MNS sends into the CTYun queue (by name); the named group and the default group both get it.
    let r = mns.send_msg("shared", "from mns").await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(bodies(&consume(&c, &q, &g, json!({})).await), [json!("from mns")]);
    let r = http
        .post(s.url("/v1/queue/consume"))
        .header("authorization", "Bearer ifr_test")
        .body(json!({"queue": "shared"}).to_string())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["messages"][0]["payload"], "from mns");
    // CTYun sends; MNS receives the JSON text.
    send(&c, &q, json!([{"body": {"k": 1}, "attributes": {"a": "b"}}])).await;
    let got = mns.get("/queues/shared/messages?waitseconds=1").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(serde_json::from_str::<Value>(&got.root().text_of("MessageBody")).unwrap(), json!({"k": 1}));

    // The reverse: an infrai queue is visible to CTYun and consumable by a named group.
    let r = http
        .post(s.url("/v1/queue/create"))
        .header("authorization", "Bearer ifr_test")
        .body(json!({"name": "from-infrai"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let listed = c.get("queryQueue", &[("regionId", json!("cn-snxy1"))]).await;
    let ids: Vec<Value> = listed.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"] == "from-infrai")
        .map(|q| q["id"].clone())
        .collect();
    assert_eq!(ids.len(), 1);
    let fid = ids[0].as_str().unwrap().to_string();
    let fg = group(&c, &fid, "reader").await;
    http.post(s.url("/v1/queue/publish"))
        .header("authorization", "Bearer ifr_test")
        .body(json!({"queue": "from-infrai", "payload": {"x": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bodies(&consume(&c, &fid, &fg, json!({})).await), [json!({"x": 1})]);
    // Removing through CTYun removes it for everyone.
    assert_eq!(c.post("removeQueue", &[("regionId", json!("cn-snxy1")), ("queueId", json!(fid))]).await.code(), 800);
    let r =
        http.get(s.url("/v1/queue/get/from-infrai")).header("authorization", "Bearer ifr_test").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The signature is checked before the body is read: an unauthenticated oversized body is a
/// signature error (nothing about the body is revealed or buffered); an authenticated one is
/// `DMS.MessageTooLarge`.
#[tokio::test]
async fn an_oversized_body_is_judged_only_after_the_signature() {
    let s = TestServer::start().await;
    let big = format!("{{\"regionId\": \"r\", \"pad\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let stranger = CtClient::new(&s.base, "test-ak", "not-the-secret", &s.clock);
    let r = stranger.raw("POST", "sendSpecifyQueueMessage", &[], &[], Some(&big)).await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "Openapi.Signature.Error"));
    let r = ct(&s).raw("POST", "sendSpecifyQueueMessage", &[], &[], Some(&big)).await;
    assert_eq!((r.code(), r.error_code().as_str()), (900, "DMS.MessageTooLarge"));
}
