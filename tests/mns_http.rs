//! MNS through the real router: authentication failures, bad input, queue attributes, receive
//! semantics on the manual clock, and the same queue used through infrai.

mod common;

use std::time::Duration;

use common::mns::{MnsClient, http_date, sign};
use common::*;
use serde_json::{Value, json};

fn mns(s: &TestServer) -> MnsClient {
    MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock)
}

fn msg(body: &str, extra: &str) -> String {
    format!("<Message xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MessageBody>{body}</MessageBody>{extra}</Message>")
}

#[tokio::test]
async fn authentication_failures_get_mns_errors() {
    let s = TestServer::start().await;
    let m = mns(&s);
    assert_eq!(m.create("q", "").await.status, 201);
    let c = client();
    let url = s.url("/queues/q");
    let now = http_date(s.clock.now_ms());
    let r = MnsClient::finish(c.get(&url).header("date", &now)).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "MissingAuthorizationHeader"));
    for garbled in ["MNS", "Bearer abc", "MNS test-ak", "MNS :x"] {
        let r = MnsClient::finish(c.get(&url).header("date", &now).header("authorization", garbled)).await;
        assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidAuthorizationHeader"), "{garbled}");
    }
    let r = MnsClient::finish(c.get(&url).header("authorization", "MNS test-ak:abc")).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "MissingDateHeader"));
    let r = MnsClient::finish(c.get(&url).header("date", "yesterday").header("authorization", "MNS test-ak:abc")).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidDateHeader"));

    // A correctly signed request 16 minutes old: TimeExpired.
    let old = http_date(s.clock.now_ms() - 16 * 60 * 1000);
    let sig = sign("test-sk", "GET", "", "", &old, &[("x-mns-version".into(), "2015-06-06".into())], "/queues/q");
    let r = MnsClient::finish(
        c.get(&url)
            .header("date", &old)
            .header("x-mns-version", "2015-06-06")
            .header("authorization", format!("MNS test-ak:{sig}")),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (408, "TimeExpired"));
    // 14 minutes is fine.
    let ok = http_date(s.clock.now_ms() - 14 * 60 * 1000);
    let sig = sign("test-sk", "GET", "", "", &ok, &[("x-mns-version".into(), "2015-06-06".into())], "/queues/q");
    let r = MnsClient::finish(
        c.get(&url)
            .header("date", &ok)
            .header("x-mns-version", "2015-06-06")
            .header("authorization", format!("MNS test-ak:{sig}")),
    )
    .await;
    assert_eq!(r.status, 200);

    let r = MnsClient::new(&s.base, "nobody", "x", &s.clock).get("/queues/q").await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "InvalidAccessKeyId"));
    let r = MnsClient::new(&s.base, "test-ak", "wrong-secret", &s.clock).get("/queues/q").await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "SignatureDoesNotMatch"));
    // Other tenants do not see the queue.
    let r = MnsClient::new(&s.base, "other-ak", "other-sk", &s.clock).get("/queues/q").await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "QueueNotExist"));

    // x-mns-date instead of Date (signed as an x-mns header, like the Node SDK).
    let d = http_date(s.clock.now_ms());
    let mns_h = vec![("x-mns-date".to_string(), d.clone()), ("x-mns-version".to_string(), "2015-06-06".to_string())];
    let sig = sign("test-sk", "GET", "", "", &d, &mns_h, "/queues/q");
    let r = MnsClient::finish(
        c.get(&url)
            .header("x-mns-date", &d)
            .header("x-mns-version", "2015-06-06")
            .header("authorization", format!("MNS test-ak:{sig}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A wrong Content-MD5 (signed, so only the digest check can catch it).
    let body = msg("x", "");
    let bad_md5 = "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U=";
    let sig = sign(
        "test-sk",
        "POST",
        bad_md5,
        "text/xml",
        &d,
        &[("x-mns-version".into(), "2015-06-06".into())],
        "/queues/q/messages",
    );
    let r = MnsClient::finish(
        c.post(s.url("/queues/q/messages"))
            .header("date", &d)
            .header("x-mns-version", "2015-06-06")
            .header("content-md5", bad_md5)
            .header("content-type", "text/xml")
            .header("authorization", format!("MNS test-ak:{sig}"))
            .body(body),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidDegist"));
}

trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for qgate::core::ManualClock {
    fn now_ms(&self) -> u64 {
        qgate::core::Clock::now(self)
    }
}

#[tokio::test]
async fn bad_input_gets_mns_errors() {
    let s = TestServer::start().await;
    let m = mns(&s);
    m.create("q", "").await;
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("PUT", "/queues/q%20x".into(), None, 400, "InvalidQueueName"),
        ("PUT", "/queues/bad_name".into(), None, 400, "InvalidQueueName"),
        ("PUT", format!("/queues/{}", "a".repeat(257)), None, 400, "QueueNameLengthError"),
        (
            "PUT",
            "/queues/z".into(),
            Some("<Queue><VisibilityTimeout>0</VisibilityTimeout></Queue>".into()),
            400,
            "InvalidArgument",
        ),
        (
            "PUT",
            "/queues/z".into(),
            Some("<Queue><DelaySeconds>x</DelaySeconds></Queue>".into()),
            400,
            "InvalidArgument",
        ),
        ("PUT", "/queues/z".into(), Some("<Queue><DelaySeconds>".into()), 400, "MalformedXML"),
        ("POST", "/queues/q/messages".into(), Some("not xml".into()), 400, "MalformedXML"),
        ("POST", "/queues/q/messages".into(), Some(msg("a & b", "")), 400, "MalformedXML"),
        ("POST", "/queues/q/messages".into(), Some(msg("", "")), 400, "InvalidArgument"),
        ("POST", "/queues/q/messages".into(), Some(msg("x", "<Priority>0</Priority>")), 400, "InvalidArgument"),
        ("POST", "/queues/q/messages".into(), Some(msg("x", "<Priority>17</Priority>")), 400, "InvalidArgument"),
        (
            "POST",
            "/queues/q/messages".into(),
            Some(msg("x", "<DelaySeconds>604801</DelaySeconds>")),
            400,
            "InvalidArgument",
        ),
        ("POST", "/queues/q/messages".into(), Some(msg(&"x".repeat(65537), "")), 400, "InvalidArgument"),
        ("POST", "/queues/q/messages".into(), Some("<Messages></Messages>".into()), 400, "InvalidArgument"),
        (
            "POST",
            "/queues/q/messages".into(),
            Some(format!("<Messages>{}</Messages>", msg("x", "").repeat(17))),
            400,
            "InvalidArgument",
        ),
        (
            "POST",
            "/queues/q/messages".into(),
            Some(format!("<Messages>{}</Messages>", msg(&"x".repeat(5000), "").repeat(14))),
            400,
            "InvalidArgument",
        ),
        ("POST", "/queues/nope/messages".into(), Some(msg("x", "")), 404, "QueueNotExist"),
        ("GET", "/queues/q/messages?waitseconds=31".into(), None, 400, "InvalidArgument"),
        ("GET", "/queues/q/messages?waitseconds=abc".into(), None, 400, "InvalidArgument"),
        ("GET", "/queues/q/messages?numOfMessages=0".into(), None, 400, "InvalidArgument"),
        ("GET", "/queues/q/messages?numOfMessages=17".into(), None, 400, "InvalidArgument"),
        ("GET", "/queues/q/messages?numofmessages=x".into(), None, 400, "InvalidArgument"),
        ("GET", "/queues/q/messages?peekonly=maybe".into(), None, 400, "InvalidArgument"),
        ("DELETE", "/queues/q/messages".into(), None, 400, "MissingReceiptHandle"),
        ("DELETE", "/queues/q/messages?ReceiptHandle=garbage".into(), None, 400, "ReceiptHandleError"),
        ("DELETE", "/queues/q/messages?ReceiptHandle=1-AB+c/d==".into(), None, 400, "ReceiptHandleError"),
        (
            "DELETE",
            "/queues/q/messages".into(),
            Some("<ReceiptHandles></ReceiptHandles>".into()),
            400,
            "InvalidArgument",
        ),
        (
            "DELETE",
            "/queues/q/messages".into(),
            Some(format!("<ReceiptHandles>{}</ReceiptHandles>", "<ReceiptHandle>x</ReceiptHandle>".repeat(17))),
            400,
            "InvalidArgument",
        ),
        ("PUT", "/queues/q/messages?ReceiptHandle=x".into(), None, 400, "MissingVisibilityTimeout"),
        ("PUT", "/queues/q/messages?VisibilityTimeout=10".into(), None, 400, "MissingReceiptHandle"),
        ("PUT", "/queues/q/messages?ReceiptHandle=x&VisibilityTimeout=0".into(), None, 400, "InvalidArgument"),
        ("PUT", "/queues/q/messages?ReceiptHandle=x&VisibilityTimeout=43201".into(), None, 400, "InvalidArgument"),
        (
            "PUT",
            "/queues/q/messages?ReceiptHandle=garbage&VisibilityTimeout=10".into(),
            None,
            400,
            "ReceiptHandleError",
        ),
        ("GET", "/queues?x=1".into(), None, 200, ""),
        ("POST", "/queues/q".into(), None, 400, "InvalidRequestURL"),
        ("PATCH", "/queues/q/messages".into(), None, 400, "InvalidRequestURL"),
        ("GET", "/queues/q/messages/extra".into(), None, 400, "InvalidRequestURL"),
        ("POST", "/topics".into(), None, 400, "InvalidRequestURL"),
        ("GET", "/topics/t/messages".into(), None, 400, "InvalidRequestURL"),
        ("DELETE", "/queues/nope".into(), None, 404, "QueueNotExist"),
        ("PUT", "/queues/nope?metaoverride=true".into(), Some("<Queue/>".into()), 404, "QueueNotExist"),
    ];
    for (method, path, body, status, code) in cases {
        let r = m.call(method, &path, body.as_deref(), &[]).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        if !code.is_empty() {
            assert_eq!(r.error_code(), code, "{method} {path}");
        }
        assert_eq!(r.headers["x-mns-version"], "2015-06-06");
    }
    let r = m.call("GET", "/queues", None, &[("x-mns-ret-number", "0")]).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidArgument"));
    let r = m.call("GET", "/queues", None, &[("x-mns-ret-number", "1001")]).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidArgument"));
    // Unsigned requests to unknown MNS routes still get MNS XML.
    let r = MnsClient::finish(client().delete(s.url("/queues/q/messages/x/y"))).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidRequestURL"));
    // Nothing above changed the queue.
    let a = m.get("/queues/q").await.root();
    assert_eq!(a.text_of("ActiveMessages"), "0");
}

#[tokio::test]
async fn create_set_get_list_and_delete_queues() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let r = m.create("q1", "<VisibilityTimeout>30</VisibilityTimeout><MaximumMessageSize>2048</MaximumMessageSize><MessageRetentionPeriod>86400</MessageRetentionPeriod><DelaySeconds>0</DelaySeconds><PollingWaitSeconds>0</PollingWaitSeconds>").await;
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["location"], format!("{}/queues/q1", s.base).as_str());
    let same = m.create("q1", "<MaximumMessageSize>2048</MaximumMessageSize>").await;
    assert_eq!((same.status, same.body.as_str()), (204, ""), "same attributes: 204");
    let other = m.create("q1", "<MaximumMessageSize>4096</MaximumMessageSize>").await;
    assert_eq!((other.status, other.error_code().as_str()), (409, "QueueAlreadyExist"));
    assert_eq!(m.create("q1", "").await.status, 204, "no attributes given: nothing differs");

    s.clock.advance(Duration::from_secs(7));
    let r = m
        .call(
            "PUT",
            "/queues/q1?metaOverride=true",
            Some("<Queue><DelaySeconds>5</DelaySeconds><LoggingEnabled>true</LoggingEnabled></Queue>"),
            &[],
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let a = m.get("/queues/q1").await.root();
    let names: Vec<&str> = a.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(a.text_of("QueueName"), "q1");
    assert_eq!(a.text_of("CreateTime"), (T0 / 1000).to_string(), "seconds");
    assert_eq!(a.text_of("LastModifyTime"), (T0 / 1000 + 7).to_string());
    assert_eq!(a.text_of("DelaySeconds"), "5");
    assert_eq!(a.text_of("MaximumMessageSize"), "2048");
    assert_eq!(a.text_of("MessageRetentionPeriod"), "86400");
    assert_eq!(a.text_of("LoggingEnabled"), "True");

    for n in ["q2", "q3", "x1"] {
        m.create(n, "").await;
    }
    let page = m.call("GET", "/queues", None, &[("x-mns-prefix", "q"), ("x-mns-ret-number", "2")]).await.root();
    assert_eq!(page.name, "Queues");
    let urls: Vec<String> = page.children.iter().filter(|c| c.name == "Queue").map(|c| c.text_of("QueueURL")).collect();
    assert_eq!(urls, [format!("{}/queues/q1", s.base), format!("{}/queues/q2", s.base)]);
    let marker = page.text_of("NextMarker");
    let page2 = m
        .call("GET", "/queues", None, &[("x-mns-prefix", "q"), ("x-mns-ret-number", "2"), ("x-mns-marker", &marker)])
        .await
        .root();
    let urls: Vec<String> =
        page2.children.iter().filter(|c| c.name == "Queue").map(|c| c.text_of("QueueURL")).collect();
    assert_eq!(urls, [format!("{}/queues/q3", s.base)]);
    assert!(page2.child("NextMarker").is_none(), "no NextMarker on the last page");
    let meta = m.call("GET", "/queues", None, &[("x-mns-prefix", "x"), ("x-mns-with-meta", "true")]).await.root();
    assert_eq!(meta.children[0].text_of("QueueName"), "x1");

    let r = m.call("DELETE", "/queues/q2", None, &[]).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(m.get("/queues/q2").await.error_code(), "QueueNotExist");
}

#[tokio::test]
async fn receive_semantics_on_the_clock() {
    let s = TestServer::start().await;
    let m = mns(&s);
    m.create("q", "<VisibilityTimeout>10</VisibilityTimeout><DelaySeconds>3</DelaySeconds>").await;
    m.call(
        "POST",
        "/queues/q/messages",
        Some(&msg("p16", "<Priority>16</Priority><DelaySeconds>0</DelaySeconds>")),
        &[],
    )
    .await;
    m.call("POST", "/queues/q/messages", Some(&msg("p1", "<Priority>1</Priority><DelaySeconds>0</DelaySeconds>")), &[])
        .await;
    m.call("POST", "/queues/q/messages", Some(&msg("delayed", "")), &[]).await;
    let a = m.get("/queues/q").await.root();
    assert_eq!((a.text_of("ActiveMessages"), a.text_of("DelayMessages")), ("2".into(), "1".into()));

    let first = m.get("/queues/q/messages").await.root();
    assert_eq!(first.text_of("MessageBody"), "p1", "priority 1 first");
    assert_eq!(first.text_of("NextVisibleTime"), (T0 + 10_000).to_string());
    assert_eq!(first.text_of("EnqueueTime"), T0.to_string());
    assert_eq!(first.text_of("FirstDequeueTime"), T0.to_string());
    assert_eq!(m.get("/queues/q/messages").await.root().text_of("MessageBody"), "p16");
    let a = m.get("/queues/q").await.root();
    assert_eq!(
        (a.text_of("ActiveMessages"), a.text_of("InactiveMessages"), a.text_of("DelayMessages")),
        ("0".into(), "2".into(), "1".into())
    );
    s.clock.advance(Duration::from_secs(3));
    assert_eq!(m.get("/queues/q/messages").await.root().text_of("MessageBody"), "delayed");

    // p1 comes back after its visibility timeout with DequeueCount 2 and a new handle.
    s.clock.advance(Duration::from_secs(7));
    let again = m.get("/queues/q/messages").await.root();
    assert_eq!(again.text_of("MessageId"), first.text_of("MessageId"));
    assert_eq!(again.text_of("DequeueCount"), "2");
    assert_eq!(again.text_of("FirstDequeueTime"), T0.to_string());
    assert_ne!(again.text_of("ReceiptHandle"), first.text_of("ReceiptHandle"));
    let stale = m
        .call("DELETE", &format!("/queues/q/messages?ReceiptHandle={}", first.text_of("ReceiptHandle")), None, &[])
        .await;
    assert_eq!((stale.status, stale.error_code().as_str()), (404, "MessageNotExist"));
    // Query names are case-insensitive (the Node SDK sends receiptHandle / visibilityTimeout).
    let r = m
        .call(
            "PUT",
            &format!("/queues/q/messages?receiptHandle={}&visibilityTimeout=100", again.text_of("ReceiptHandle")),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.root().text_of("NextVisibleTime"), (T0 + 110_000).to_string());
}

#[tokio::test]
async fn long_poll_returns_on_send_and_waits_the_full_time() {
    let s = TestServer::start().await;
    let m = mns(&s);
    m.create("q", "<PollingWaitSeconds>5</PollingWaitSeconds>").await;
    let m2 = mns(&s);
    let mut waiter = tokio::spawn(async move { m2.get("/queues/q/messages?waitseconds=20").await });
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "waiting");
    m.send_msg("q", "wake").await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(r.root().text_of("MessageBody"), "wake");

    // Without waitseconds the queue's PollingWaitSeconds (5) applies.
    let m3 = mns(&s);
    let mut waiter = tokio::spawn(async move { m3.get("/queues/q/messages").await });
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "waiting");
    s.clock.advance(Duration::from_secs(4));
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "still waiting at 4 s");
    s.clock.advance(Duration::from_secs(1));
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (404, "MessageNotExist"));

    // Deleting the queue ends a wait with QueueNotExist.
    let m4 = mns(&s);
    let mut waiter = tokio::spawn(async move { m4.get("/queues/q/messages?waitseconds=30").await });
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut waiter).await.is_err(), "waiting");
    m.call("DELETE", "/queues/q", None, &[]).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (404, "QueueNotExist"));
}

#[tokio::test]
async fn bodies_round_trip_escaped_and_raw() {
    let s = TestServer::start().await;
    let m = mns(&s);
    m.create("q", "").await;
    let text = "a & b < c > d \"quoted\" 中文 +/=";
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let sent = m.send_msg("q", &escaped).await.root();
    let md5 = hex::encode_upper(<md5::Md5 as md5::Digest>::digest(text.as_bytes()));
    assert_eq!(sent.text_of("MessageBodyMD5"), md5, "MD5 of the body as sent, after unescaping");
    let got = m.get("/queues/q/messages").await;
    assert!(got.body.contains("a &amp; b &lt; c &gt; d"), "escaped on output: {}", got.body);
    assert_eq!(got.root().text_of("MessageBody"), text);
    assert_eq!(got.root().text_of("MessageBodyMD5"), md5);
}

#[tokio::test]
async fn a_queue_is_the_tenants_across_dialects() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let c = client();
    let infrai = |path: &str, body: Value| {
        let req = c.post(s.url(path)).header("authorization", "Bearer ifr_test").body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap())
        }
    };
    // Created through MNS, published through infrai (JSON), received and deleted through MNS.
    m.create("shared", "").await;
    let (st, v) = infrai("/v1/queue/publish", json!({"queue": "shared", "payload": {"k": [1, 2]}})).await;
    assert_eq!(st, 201);
    let got = m.get("/queues/shared/messages").await.root();
    assert_eq!(got.text_of("MessageId"), v["message_id"].as_str().unwrap());
    assert_eq!(
        serde_json::from_str::<Value>(&got.text_of("MessageBody")).unwrap(),
        json!({"k": [1, 2]}),
        "JSON arrives as its text"
    );
    let del = m
        .call("DELETE", &format!("/queues/shared/messages?ReceiptHandle={}", got.text_of("ReceiptHandle")), None, &[])
        .await;
    assert_eq!(del.status, 204);

    // Sent through MNS (text), consumed and acked through infrai as a JSON string.
    let sent = m.send_msg("shared", "aGVsbG8=").await.root();
    let (_, v) = infrai("/v1/queue/consume", json!({"queue": "shared"})).await;
    assert_eq!(v["messages"][0]["payload"], "aGVsbG8=");
    assert_eq!(v["messages"][0]["message_id"], sent.text_of("MessageId").as_str());
    let (st, _) = infrai("/v1/queue/ack", json!({"queue": "shared", "message_id": sent.text_of("MessageId")})).await;
    assert_eq!(st, 200);
    assert_eq!(m.get("/queues/shared").await.root().text_of("ActiveMessages"), "0");

    // Created through infrai, visible through MNS with its attributes.
    infrai("/v1/queue/create", json!({"name": "made-by-infrai", "visibility_timeout_default": 45})).await;
    let a = m.get("/queues/made-by-infrai").await.root();
    assert_eq!(a.text_of("VisibilityTimeout"), "45");
}

/// The signature is checked before the body is read: an unauthenticated oversized body is a
/// signature error (nothing about the body is revealed or buffered); an authenticated one is
/// refused as too large.
#[tokio::test]
async fn an_oversized_body_is_judged_only_after_the_signature() {
    let s = TestServer::start().await;
    let big = msg(&"x".repeat(3 * 1024 * 1024), "");
    let stranger = MnsClient::new(&s.base, "test-ak", "not-the-secret", &s.clock);
    let r = stranger.call("POST", "/queues/q/messages", Some(&big), &[]).await;
    assert_eq!((r.status, r.error_code()), (403, "SignatureDoesNotMatch".to_string()));
    let r = mns(&s).call("POST", "/queues/q/messages", Some(&big), &[]).await;
    assert_eq!((r.status, r.error_code()), (400, "InvalidArgument".to_string()));
}
