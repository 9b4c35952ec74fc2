//! MNS message properties and group ids through the real router: UserProperties and
//! SystemProperties round trip and are DMS attributes (and back), bad ones are refused,
//! default priorities meet across dialects, and MessageGroupId orders delivery per group.

mod common;

use std::time::Duration;

use common::mns::{MnsClient, XmlResp};
use common::*;

const NS: &str = "xmlns=\"http://mns.aliyuncs.com/doc/v1/\"";

fn mns(s: &TestServer) -> MnsClient {
    MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock)
}

async fn receive(m: &MnsClient, queue: &str) -> XmlResp {
    m.get(&format!("/queues/{queue}/messages")).await
}

#[tokio::test]
async fn properties_and_group_ids_round_trip_and_cross_dialects() {
    let s = TestServer::start().await;
    let m = mns(&s);
    assert_eq!(m.create("props", "").await.status, 201);
    let doc = format!(
        "<Message {NS}><MessageBody>body</MessageBody><MessageGroupId>g1</MessageGroupId><UserProperties><PropertyValue><Name>n</Name><Value>7</Value><Type>NUMBER</Type></PropertyValue><PropertyValue><Name>flag</Name><Value>true</Value><Type>BOOLEAN</Type></PropertyValue><PropertyValue><Name>bin</Name><Value>eHl6</Value><Type>BINARY</Type></PropertyValue><PropertyValue><Name>s</Name><Value>str</Value><Type>STRING</Type></PropertyValue></UserProperties><SystemProperties><SystemPropertyValue><Name>traceparent</Name><Value>00-abc-def-01</Value><Type>STRING</Type></SystemPropertyValue></SystemProperties></Message>"
    );
    let r = m.call("POST", "/queues/props/messages", Some(&doc), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let peek = m.get("/queues/props/messages?peekonly=true").await;
    assert!(
        peek.body.contains("<PropertyValue><Name>n</Name><Value>7</Value><Type>NUMBER</Type></PropertyValue>"),
        "{}",
        peek.body
    );
    assert!(peek.body.contains("<SystemPropertyValue><Name>traceparent</Name><Value>00-abc-def-01</Value><Type>STRING</Type></SystemPropertyValue>"));
    let r = receive(&m, "props").await;
    let msg = r.root();
    assert_eq!(msg.text_of("MessageGroupId"), "g1");
    assert!(r.body.contains("<Name>bin</Name><Value>eHl6</Value><Type>BINARY</Type>"), "{}", r.body);
    assert!(r.body.contains("<Name>flag</Name><Value>true</Value><Type>BOOLEAN</Type>"));
    assert!(r.body.contains("<Name>s</Name><Value>str</Value><Type>STRING</Type>"));
    // Through DMS the properties are the message's typed attributes, and a DMS attribute comes
    // back through MNS typed.
    let dms = common::dms::DmsClient::new(&s.base, "test-ak", "test-sk", "0123456789abcdef0123456789abcdef", &s.clock);
    let list = dms.call("GET", "/queues", &[], None).await;
    let qid = list.body["queues"].as_array().unwrap().iter().find(|q| q["name"] == "props").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g = dms
        .call("POST", &format!("/queues/{qid}/groups"), &[], Some(&serde_json::json!({"groups": [{"name": "g"}]})))
        .await;
    let gid = g.body["groups"][0]["id"].as_str().unwrap().to_string();
    let dms_send =
        serde_json::json!({"messages": [{"body": "from dms", "attributes": {"count": 3, "ok": false, "who": "dms"}}]});
    assert_eq!(dms.call("POST", &format!("/queues/{qid}/messages"), &[], Some(&dms_send)).await.status, 201);
    let got = dms.call("GET", &format!("/queues/{qid}/groups/{gid}/messages"), &[("max_msgs", "10")], None).await;
    let first = &got.body[0]["message"]["attributes"];
    assert_eq!(first["n"], 7, "{}", got.body);
    assert_eq!(first["flag"], true);
    assert_eq!(first["s"], "str");
    assert_eq!(first["bin"], serde_json::json!({"$binary": "eHl6"}));
    assert_eq!(first["mns.system.traceparent"], "00-abc-def-01");
    // A bad property is refused with nothing stored.
    let bad = format!(
        "<Message {NS}><MessageBody>b</MessageBody><UserProperties><PropertyValue><Name>n</Name><Value>x</Value><Type>NUMBER</Type></PropertyValue></UserProperties></Message>"
    );
    assert_eq!(m.call("POST", "/queues/props/messages", Some(&bad), &[]).await.error_code(), "InvalidArgument");

    // Through infrai the same message's properties are attributes.
    let c = client();
    let r = c
        .post(s.url("/v1/queue/publish"))
        .header("authorization", "Bearer ifr_test")
        .header("content-type", "application/json")
        .body(serde_json::json!({"queue": "props", "payload": {"k": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Priorities: infrai's default (8) is MNS's default (8).
    s.clock.advance(Duration::from_secs(31));
    let r = m.get("/queues/props/messages?numOfMessages=16").await;
    let seen: Vec<(String, String)> =
        r.root().children.iter().map(|c| (c.text_of("MessageBody"), c.text_of("Priority"))).collect();
    assert_eq!(
        seen,
        [("body".into(), "8".into()), ("\"from dms\"".into(), "8".into()), ("{\"k\":1}".into(), "8".into())],
        "in send order, every default priority 8"
    );
    assert!(r.body.contains("<Name>count</Name><Value>3</Value><Type>NUMBER</Type>"), "{}", r.body);
    assert!(r.body.contains("<Name>ok</Name><Value>false</Value><Type>BOOLEAN</Type>"));
    assert!(r.body.contains("<Name>who</Name><Value>dms</Value><Type>STRING</Type>"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn message_group_ids_order_delivery_per_group() {
    let s = TestServer::start().await;
    let m = mns(&s);
    assert_eq!(m.create("ordered", "").await.status, 201);
    for (b, g) in [("g1-first", "g1"), ("g1-second", "g1"), ("g2-first", "g2")] {
        let doc = format!("<Message {NS}><MessageBody>{b}</MessageBody><MessageGroupId>{g}</MessageGroupId></Message>");
        assert_eq!(m.call("POST", "/queues/ordered/messages", Some(&doc), &[]).await.status, 201);
    }
    let r = m.get("/queues/ordered/messages?numOfMessages=16").await;
    let msgs: Vec<(String, String, String)> = r
        .root()
        .children
        .iter()
        .map(|c| (c.text_of("MessageBody"), c.text_of("MessageGroupId"), c.text_of("ReceiptHandle")))
        .collect();
    assert_eq!(
        msgs.iter().map(|(b, g, _)| (b.as_str(), g.as_str())).collect::<Vec<_>>(),
        [("g1-first", "g1"), ("g2-first", "g2")],
        "one message per group at a time"
    );
    assert_eq!(receive(&m, "ordered").await.error_code(), "MessageNotExist");
    let handle = &msgs[0].2;
    assert_eq!(
        m.call("DELETE", &format!("/queues/ordered/messages?ReceiptHandle={handle}"), None, &[]).await.status,
        204
    );
    let r = receive(&m, "ordered").await;
    assert_eq!(
        (r.root().text_of("MessageBody"), r.root().text_of("MessageGroupId")),
        ("g1-second".into(), "g1".into())
    );
    // Peek shows every message and no group id (as the service's peek).
    let r = m.get("/queues/ordered/messages?peekonly=true&numOfMessages=16").await;
    assert!(r.status == 404 || !r.body.contains("MessageGroupId"), "{}", r.body);
    s.stop().await.unwrap();
}
