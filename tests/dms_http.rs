//! DMS through the real router: signatures, project checks, bad input, limits, and both path
//! prefixes.

mod common;

use common::dms::DmsClient;
use common::*;
use serde_json::{Value, json};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn dms(s: &TestServer) -> DmsClient {
    DmsClient::new(&s.base, "test-ak", "test-sk", PROJECT, &s.clock)
}

async fn queue(c: &DmsClient, name: &str, extra: Value) -> String {
    let mut b = json!({"name": name});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    let r = c.call("POST", "/queues", &[], Some(&b)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn signatures_projects_and_routes() {
    let s = TestServer::start().await;
    let c = dms(&s);
    assert_eq!(c.call("GET", "/queues", &[], None).await.status, 200);
    for (ak, sk) in [("test-ak", "wrong"), ("nobody", "x")] {
        let r = DmsClient::new(&s.base, ak, sk, PROJECT, &s.clock).call("GET", "/queues", &[], None).await;
        assert_eq!((r.status, r.code().as_str()), (401, "APIGW.0301"));
        assert!(r.body["request_id"].as_str().is_some_and(|id| id.len() == 24));
    }
    let r = client().get(s.url(&format!("/v2/{PROJECT}/queues"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(s.url(&format!("/v2/{PROJECT}/queues")))
        .header("authorization", "SDK-HMAC-SM3 Access=a, SignedHeaders=host, Signature=ab")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A date 16 minutes off is refused.
    let skewed = DmsClient::new(&s.base, "test-ak", "test-sk", PROJECT, &s.clock);
    let late = qgate::core::ManualClock::new(qgate::core::Clock::now(&s.clock) - 16 * 60 * 1000);
    let old = DmsClient { clock: late, ..skewed };
    assert_eq!(old.call("GET", "/queues", &[], None).await.status, 401);
    // The path's project must be the caller's.
    let other = DmsClient::new(&s.base, "other-ak", "other-sk", PROJECT, &s.clock);
    let r = other.call("GET", "/queues", &[], None).await;
    assert_eq!((r.status, r.code().as_str()), (403, "10240309"));
    let r = c.call("GET", "/v2/%7Bproject_id%7D/queues", &[], None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "10240005"));
    // Unknown URLs and methods.
    let r = c.call("GET", "/nothing/here", &[], None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "10240406"));
    let r = c.call("PUT", "/queues", &[], None).await;
    assert_eq!(r.status, 405);
    // Both prefixes and both quota paths.
    let q = queue(&c, "both", json!({})).await;
    let r = c.call("GET", &format!("/v1.0/{PROJECT}/queues/{q}"), &[], None).await;
    assert_eq!(r.body["name"], "both");
    for p in [format!("/v2/{PROJECT}/quotas"), format!("/v1.0/{PROJECT}/quotas/dms")] {
        let r = c.call("GET", &p, &[], None).await;
        assert_eq!(r.body["quotas"]["resources"][0]["used"], 1, "{p}");
        assert_eq!(r.body["quotas"]["resources"][0]["quota"], 30);
    }
}

#[tokio::test]
async fn bad_input_gets_dms_codes() {
    let s = TestServer::start().await;
    let c = dms(&s);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": ""}), 400, "10240011"),
        (json!({"name": "x".repeat(65)}), 400, "10240011"),
        (json!({"name": "bad name"}), 400, "10240007"),
        (json!({"name": "q", "description": "<b>"}), 400, "10240010"),
        (json!({"name": "q", "description": "d".repeat(161)}), 400, "10240013"),
        (json!({"name": "q", "redrive_policy": "enable"}), 400, "10240022"),
        (json!({"name": "q", "redrive_policy": "enable", "max_consume_count": 101}), 400, "10240022"),
        (json!({"name": "q", "retention_hours": 10}), 400, "10240028"),
        (json!({"name": "q", "queue_mode": "KAFKA_HA", "retention_hours": 73}), 400, "10240027"),
    ];
    for (body, status, code) in cases {
        let r = c.call("POST", "/queues", &[], Some(&body)).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{body}");
    }
    let r = c.call("POST", "/queues", &[], Some(&json!("not an object"))).await;
    assert_eq!(r.code(), "10240009");
    let q = queue(&c, "q", json!({"redrive_policy": "enable", "max_consume_count": 2})).await;
    assert_eq!(c.call("POST", "/queues", &[], Some(&json!({"name": "q"}))).await.code(), "10240017");
    let r = c.call("GET", &format!("/queues/{}", uuid::Uuid::new_v4()), &[], None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "10240401"));
    assert_eq!(c.call("GET", "/queues/not-a-uuid", &[], None).await.code(), "10240015");
    assert_eq!(c.call("GET", "/queues", &[("include_deadletter", "maybe")], None).await.code(), "10540014");

    let g = c.call("POST", &format!("/queues/{q}/groups"), &[], Some(&json!({"groups": [{"name": "g"}]}))).await.body["groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.call(
            "POST",
            &format!("/queues/{q}/groups"),
            &[],
            Some(&json!({"groups": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}))
        )
        .await
        .code(),
        "10240019"
    );
    assert_eq!(
        c.call("POST", &format!("/queues/{q}/groups"), &[], Some(&json!({"groups": [{"name": "g"}]}))).await.code(),
        "10240018"
    );
    assert_eq!(
        c.call("POST", &format!("/queues/{q}/groups"), &[], Some(&json!({"groups": [{"name": "x y"}]}))).await.code(),
        "10240012"
    );
    assert_eq!(
        c.call("DELETE", &format!("/queues/{q}/groups/g-{}", uuid::Uuid::new_v4()), &[], None).await.code(),
        "10240405"
    );

    let send = |msgs: Value| {
        let c = &c;
        let q = q.clone();
        async move { c.call("POST", &format!("/queues/{q}/messages"), &[], Some(&json!({"messages": msgs}))).await }
    };
    assert_eq!(send(json!([])).await.code(), "10540010");
    assert_eq!(send(json!((0..11).map(|i| json!({"body": i})).collect::<Vec<_>>())).await.code(), "10540010");
    assert_eq!(send(json!([{"body": 1, "tags": ["a", "b", "c", "d"]}])).await.code(), "10540001");
    assert_eq!(send(json!([{"body": 1, "tags": ["bad tag"]}])).await.code(), "10540001");
    assert_eq!(send(json!([{"attributes": {}}])).await.code(), "10540001");
    assert_eq!(send(json!([{"body": 1, "delay_time": 604_800_001u64}])).await.code(), "10540010");
    assert_eq!(send(json!([{"body": "x".repeat(512 * 1024)}])).await.code(), "10540011");

    let consume = |params: Vec<(&'static str, &'static str)>| {
        let c = &c;
        let path = format!("/queues/{q}/groups/{g}/messages");
        async move { c.call("GET", &path, &params, None).await }
    };
    assert_eq!(consume(vec![("max_msgs", "0")]).await.code(), "10240014");
    assert_eq!(consume(vec![("max_msgs", "11")]).await.code(), "10240014");
    assert_eq!(consume(vec![("time_wait", "61")]).await.code(), "10240021");
    assert_eq!(consume(vec![("ack_wait", "14")]).await.code(), "10542206");
    assert_eq!(consume(vec![("tag", "a,b,c,d")]).await.code(), "10540001");
    assert_eq!(consume(vec![("tag_type", "xor")]).await.code(), "10540014");

    // A refused ack (bad status) acts on nothing: the handler still works afterwards.
    send(json!([{"body": {"k": 1}, "tags": ["t"]}])).await;
    let got = consume(vec![("tag", "t")]).await;
    let h = got.body[0]["handler"].as_str().unwrap().to_string();
    assert_eq!(got.body[0]["tags"], json!(["t"]));
    assert_eq!(got.body[0]["message"]["tags"], json!(["t"]));
    let ack = |entries: Value| {
        let c = &c;
        let path = format!("/queues/{q}/groups/{g}/ack");
        async move { c.call("POST", &path, &[], Some(&json!({"message": entries}))).await }
    };
    assert_eq!(ack(json!([{"handler": h, "status": "maybe"}])).await.code(), "10540003");
    assert_eq!(ack(json!([{"handler": h}])).await.body, json!({"success": 1, "fail": 0}), "status defaults to success");
    assert_eq!(ack(json!([{"handler": h}])).await.body, json!({"success": 0, "fail": 1}), "a used handler fails");
    // The rule is fixed: a different filter later is refused.
    assert_eq!(consume(vec![("tag", "other")]).await.code(), "10542204");
    let same = DmsClient::new(&s.base, "test-ak", "test-sk", PROJECT, &s.clock);
    let path = format!("/queues/{q}/groups/{g}/messages");
    let r = drive(&s.clock, async move {
        same.call("GET", &path, &[("tag", "t"), ("tag_type", "or"), ("time_wait", "1")], None).await
    })
    .await;
    assert_eq!((r.status, r.body), (200, json!([])), "the same rule; nothing left");
}

/// A captured signed request replayed with another body: the body hash is computed, never taken
/// from the client (an `X-Sdk-Content-Sha256` must match the body, or be a signed
/// `UNSIGNED-PAYLOAD` as the SDK sends for bodies it does not sign).
#[tokio::test]
async fn a_replayed_signature_with_another_body_is_refused() {
    let s = TestServer::start().await;
    let c = dms(&s);
    let id = queue(&c, "replay", json!({})).await;
    let path = format!("/queues/{id}/messages");
    let good = json!({"messages": [{"body": "genuine"}]}).to_string();
    let evil = json!({"messages": [{"body": "tampered"}]}).to_string();
    let sha = |b: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b.as_bytes()));
    let send = |signed: &str, sent: &str, header: Option<(&str, bool)>| {
        let (signed, sent) = (signed.to_string(), sent.to_string());
        let (c, path) = (&c, path.clone());
        let header = header.map(|(v, s)| (v.to_string(), s));
        async move {
            c.send("POST", &path, &[], Some(&signed), Some(&sent), header.as_ref().map(|(v, s)| (v.as_str(), *s))).await
        }
    };

    // The genuine request, and the same body with its true hash in the header.
    assert_eq!(send(&good, &good, None).await.status, 201);
    assert_eq!(send(&good, &good, Some((&sha(&good), false))).await.status, 201);
    // Replays with another body: plain, with the signed body's hash added, or with the hash of
    // the new body (the signature no longer matches), or an unsigned UNSIGNED-PAYLOAD.
    for (header, what) in [
        (None, "plain replay"),
        (Some((sha(&good), false)), "old body's hash in an unsigned header"),
        (Some((sha(&evil), false)), "new body's hash"),
        (Some(("UNSIGNED-PAYLOAD".to_string(), false)), "UNSIGNED-PAYLOAD not signed"),
    ] {
        let r = send(&good, &evil, header.as_ref().map(|(v, s)| (v.as_str(), *s))).await;
        assert_eq!((r.status, r.code()), (401, "APIGW.0301".to_string()), "{what}: {}", r.body);
    }
    // A signed UNSIGNED-PAYLOAD covers no body: accepted, as APIG does.
    assert_eq!(send(&good, &good, Some(("UNSIGNED-PAYLOAD", true))).await.status, 201);

    // Exactly the three accepted sends were stored, none of them tampered.
    let got = s.state.broker.queue_by_id("t", id.parse().unwrap()).await.unwrap();
    let peeked = s.state.broker.peek(&got, 0, 10).await.unwrap();
    let bodies: Vec<String> = peeked.iter().map(|p| String::from_utf8_lossy(&p.body.body).into_owned()).collect();
    assert_eq!(bodies, vec!["\"genuine\""; 3]);
}

/// Paging parameters that are given must be positive integers: a malformed one is DMS's 400,
/// not silently ignored.
#[tokio::test]
async fn malformed_paging_parameters_are_refused() {
    let s = TestServer::start().await;
    let c = dms(&s);
    let id = queue(&c, "paged", json!({})).await;
    let r = c
        .call("POST", &format!("/queues/{id}/groups"), &[], Some(&json!({"groups": [{"name": "g1"}, {"name": "g2"}]})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/queues/{id}/groups");
    for (k, v) in [("page_size", "abc"), ("page_size", "0"), ("current_page", "-1"), ("current_page", "1.5")] {
        let r = c.call("GET", &path, &[(k, v)], None).await;
        assert_eq!((r.status, r.code()), (400, "10540014".to_string()), "{k}={v}: {}", r.body);
    }
    let r = c.call("GET", &path, &[("page_size", "1"), ("current_page", "2")], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["groups"][0]["name"], "g2");
}

/// The access key and date are checked before the body is read: an unknown client's oversized
/// body is APIG's 401 (nothing buffered, nothing about the body revealed); a known client's is
/// refused as too large.
#[tokio::test]
async fn an_oversized_body_is_judged_only_after_the_access_key() {
    let s = TestServer::start().await;
    let big = json!({"messages": [{"body": "x".repeat(3 * 1024 * 1024)}]});
    let stranger = DmsClient::new(&s.base, "unknown-ak", "test-sk", PROJECT, &s.clock);
    let path = "/queues/00000000-0000-0000-0000-000000000000/messages";
    let r = stranger.call("POST", path, &[], Some(&big)).await;
    assert_eq!((r.status, r.code()), (401, "APIGW.0301".to_string()), "{}", r.body);
    let r = dms(&s).call("POST", path, &[], Some(&big)).await;
    assert_eq!((r.status, r.code()), (400, "10540011".to_string()), "{}", r.body);
}
