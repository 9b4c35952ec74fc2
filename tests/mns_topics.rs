//! MNS topics through the real router: topic and subscription operations with their errors,
//! fan-out to queue endpoints in each notification format with FilterTag, pushes to an HTTP
//! endpoint (headers, RSA signature checked independently against the served certificate,
//! retries on the manual clock, restart) and account attributes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::mns::{MnsClient, XmlResp};
use common::*;
use md5::Digest as _;
use qgate::core::Clock as _;
use tokio::sync::mpsc;

const NS: &str = "xmlns=\"http://mns.aliyuncs.com/doc/v1/\"";

fn mns(s: &TestServer) -> MnsClient {
    MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock)
}

fn topic_doc(inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Topic {NS}>{inner}</Topic>")
}

fn sub_doc(inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Subscription {NS}>{inner}</Subscription>")
}

fn publish_doc(body: &str, tag: Option<&str>) -> String {
    let tag = tag.map(|t| format!("<MessageTag>{t}</MessageTag>")).unwrap_or_default();
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Message {NS}><MessageBody>{body}</MessageBody>{tag}</Message>")
}

async fn put(m: &MnsClient, path: &str, doc: &str) -> XmlResp {
    m.call("PUT", path, Some(doc), &[]).await
}

/// The tenant's derived MNS account id, as the server answers it.
async fn account_of(m: &MnsClient) -> String {
    put(m, "/topics/acct-probe", &topic_doc("")).await;
    let r =
        put(m, "/topics/acct-probe/subscriptions/p", &sub_doc("<Endpoint>acs:mns:cn-hangzhou:1:queues/x</Endpoint>"))
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = m.get("/topics/acct-probe/subscriptions/p").await;
    let owner = r.root().text_of("TopicOwner");
    m.call("DELETE", "/topics/acct-probe", None, &[]).await;
    owner
}

async fn receive(m: &MnsClient, queue: &str) -> XmlResp {
    m.get(&format!("/queues/{queue}/messages")).await
}

#[tokio::test]
async fn topic_operations_and_errors() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let r = put(
        &m,
        "/topics/t1",
        &topic_doc("<MaximumMessageSize>1024</MaximumMessageSize><LoggingEnabled>True</LoggingEnabled>"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.headers["location"].to_str().unwrap().ends_with("/topics/t1"));
    assert!(r.body.is_empty());
    // Same attributes: 204; different: 409 TopicAlreadyExist; none given: the same topic.
    let r = put(&m, "/topics/t1", &topic_doc("<MaximumMessageSize>1024</MaximumMessageSize>")).await;
    assert_eq!(r.status, 204);
    assert_eq!(put(&m, "/topics/t1", &topic_doc("")).await.status, 204);
    let r = put(&m, "/topics/t1", &topic_doc("<MaximumMessageSize>2048</MaximumMessageSize>")).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "TopicAlreadyExist"));

    let r = m.get("/topics/t1").await;
    assert_eq!(r.status, 200);
    let t = r.root();
    assert_eq!(t.name, "Topic");
    assert_eq!(t.text_of("TopicName"), "t1");
    assert_eq!(t.text_of("MaximumMessageSize"), "1024");
    assert_eq!(t.text_of("MessageRetentionPeriod"), "86400");
    assert_eq!(t.text_of("MessageCount"), "0");
    assert_eq!(t.text_of("LoggingEnabled"), "True");
    assert_eq!(t.text_of("CreateTime"), (s.clock.now() / 1000).to_string());

    s.clock.advance(Duration::from_secs(5));
    let r = m
        .call(
            "PUT",
            "/topics/t1?metaoverride=true",
            Some(&topic_doc("<MaximumMessageSize>4096</MaximumMessageSize>")),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let t = m.get("/topics/t1").await.root();
    assert_eq!(t.text_of("MaximumMessageSize"), "4096");
    assert_eq!(t.text_of("LoggingEnabled"), "True", "attributes not in the request stay");
    assert_eq!(t.text_of("LastModifyTime"), (s.clock.now() / 1000).to_string());

    // Bad input.
    for (path, doc, code) in [
        ("/topics/bad_name", topic_doc(""), "InvalidTopicName"),
        ("/topics/t2", topic_doc("<MaximumMessageSize>10</MaximumMessageSize>"), "InvalidArgument"),
        ("/topics/t2", "<Topic>".to_string(), "MalformedXML"),
    ] {
        let r = put(&m, path, &doc).await;
        assert_eq!((r.status, r.error_code().as_str()), (400, code), "{path} {doc}");
    }
    let r = put(&m, &format!("/topics/{}", "a".repeat(257)), &topic_doc("")).await;
    assert_eq!(r.error_code(), "TopicNameLengthError");
    // A message over the topic's limit.
    let r = m.call("POST", "/topics/t1/messages", Some(&publish_doc(&"x".repeat(4097), None)), &[]).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "InvalidArgument"));

    // Listing: prefix, paging by marker, NextMarker only when more follow; with meta.
    for n in ["t2", "t3", "u1"] {
        assert_eq!(put(&m, &format!("/topics/{n}"), &topic_doc("")).await.status, 201);
    }
    let r = m.call("GET", "/topics", None, &[("x-mns-prefix", "t"), ("x-mns-ret-number", "2")]).await;
    let root = r.root();
    assert_eq!(root.name, "Topics");
    let urls: Vec<String> = root.children.iter().filter(|c| c.name == "Topic").map(|c| c.text_of("TopicURL")).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].ends_with("/topics/t1") && urls[1].ends_with("/topics/t2"), "{urls:?}");
    assert_eq!(root.text_of("NextMarker"), "t2");
    let r = m
        .call("GET", "/topics", None, &[("x-mns-prefix", "t"), ("x-mns-marker", "t2"), ("x-mns-with-meta", "true")])
        .await;
    let root = r.root();
    let topics: Vec<_> = root.children.iter().filter(|c| c.name == "Topic").collect();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].text_of("TopicName"), "t3");
    assert_eq!(topics[0].text_of("MessageRetentionPeriod"), "86400");
    assert!(root.child("NextMarker").is_none(), "{}", r.body);
    // Topics are not queues, in any dialect.
    let r = m.get("/queues").await;
    assert!(!r.body.contains("t1"), "{}", r.body);

    let r = m.call("DELETE", "/topics/t1", None, &[]).await;
    assert_eq!(r.status, 204);
    for r in [
        m.get("/topics/t1").await,
        m.call("DELETE", "/topics/t1", None, &[]).await,
        m.call("POST", "/topics/t1/messages", Some(&publish_doc("x", None)), &[]).await,
        put(&m, "/topics/t1/subscriptions/s", &sub_doc("<Endpoint>http://127.0.0.1/x</Endpoint>")).await,
        m.get("/topics/t1/subscriptions").await,
    ] {
        assert_eq!((r.status, r.error_code().as_str()), (404, "TopicNotExist"), "{}", r.body);
    }
    // Another tenant does not see this tenant's topics.
    let other = MnsClient::new(&s.base, "other-ak", "other-sk", &s.clock);
    assert_eq!(other.get("/topics/t2").await.error_code(), "TopicNotExist");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn subscriptions_fan_out_to_queues_in_each_format_with_filter_tags() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let account = account_of(&m).await;
    assert_eq!(account.len(), 16, "{account}");
    for q in ["qx", "qs", "qj"] {
        assert_eq!(m.create(q, "").await.status, 201);
    }
    assert_eq!(put(&m, "/topics/news", &topic_doc("")).await.status, 201);
    let ep = |q: &str| format!("acs:mns:cn-hangzhou:{account}:queues/{q}");
    let r = put(&m, "/topics/news/subscriptions/sx", &sub_doc(&format!("<Endpoint>{}</Endpoint>", ep("qx")))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.headers["location"].to_str().unwrap().ends_with("/topics/news/subscriptions/sx"));
    let r = put(
        &m,
        "/topics/news/subscriptions/ss",
        &sub_doc(&format!(
            "<NotifyStrategy>EXPONENTIAL_DECAY_RETRY</NotifyStrategy><Endpoint>{}</Endpoint><FilterTag>important</FilterTag><NotifyContentFormat>SIMPLIFIED</NotifyContentFormat>",
            ep("qs")
        )),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = put(
        &m,
        "/topics/news/subscriptions/sj",
        &sub_doc(&format!("<Endpoint>{}</Endpoint><NotifyContentFormat>JSON</NotifyContentFormat>", ep("qj"))),
    )
    .await;
    assert_eq!(r.status, 201);

    // Subscribe again: same attributes 204, different 409.
    let again = sub_doc(&format!("<Endpoint>{}</Endpoint>", ep("qx")));
    assert_eq!(put(&m, "/topics/news/subscriptions/sx", &again).await.status, 204);
    let r = put(&m, "/topics/news/subscriptions/sx", &sub_doc(&format!("<Endpoint>{}</Endpoint>", ep("qj")))).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "SubscriptionAlreadyExist"));
    for (doc, code) in [
        (sub_doc("<Endpoint>mail:directmail:a@example.com</Endpoint>"), "InvalidArgument"),
        (sub_doc("<Endpoint>ftp://x</Endpoint>"), "InvalidArgument"),
        (sub_doc(""), "InvalidArgument"),
        (
            sub_doc(&format!("<Endpoint>{}</Endpoint><NotifyContentFormat>YAML</NotifyContentFormat>", ep("qx"))),
            "InvalidArgument",
        ),
        (sub_doc("<Endpoint>http://169.254.169.254/latest</Endpoint>"), "InvalidArgument"),
    ] {
        let r = put(&m, "/topics/news/subscriptions/bad", &doc).await;
        assert_eq!((r.status, r.error_code().as_str()), (400, code), "{doc}: {}", r.body);
    }

    // Attributes.
    let r = m.get("/topics/news/subscriptions/ss").await;
    let a = r.root();
    assert_eq!(a.name, "Subscription");
    assert_eq!(a.text_of("SubscriptionName"), "ss");
    assert_eq!(a.text_of("TopicName"), "news");
    assert_eq!(a.text_of("TopicOwner"), account);
    assert_eq!(a.text_of("Subscriber"), account);
    assert_eq!(a.text_of("Endpoint"), ep("qs"));
    assert_eq!(a.text_of("NotifyStrategy"), "EXPONENTIAL_DECAY_RETRY");
    assert_eq!(a.text_of("NotifyContentFormat"), "SIMPLIFIED");
    assert_eq!(a.text_of("FilterTag"), "important");
    let r = m
        .call(
            "PUT",
            "/topics/news/subscriptions/ss?metaoverride=true",
            Some(&sub_doc("<NotifyStrategy>BACKOFF_RETRY</NotifyStrategy>")),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(m.get("/topics/news/subscriptions/ss").await.root().text_of("NotifyStrategy"), "BACKOFF_RETRY");

    // Listing with paging.
    let r = m.call("GET", "/topics/news/subscriptions", None, &[("x-mns-ret-number", "2")]).await;
    let root = r.root();
    assert_eq!(root.name, "Subscriptions");
    let urls: Vec<String> =
        root.children.iter().filter(|c| c.name == "Subscription").map(|c| c.text_of("SubscriptionURL")).collect();
    assert!(urls[0].ends_with("/topics/news/subscriptions/sj") && urls[1].ends_with("/subscriptions/ss"), "{urls:?}");
    assert_eq!(root.text_of("NextMarker"), "ss");
    let r = m.call("GET", "/topics/news/subscriptions", None, &[("x-mns-marker", "ss")]).await;
    let root = r.root();
    assert_eq!(root.children.iter().filter(|c| c.name == "Subscription").count(), 1);
    assert!(root.child("NextMarker").is_none());

    // Publish: untagged reaches sx and sj, not ss (FilterTag); tagged reaches all three.
    let r = m.call("POST", "/topics/news/messages", Some(&publish_doc("hello &lt;world&gt;", None)), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pub1 = r.root();
    let id1 = pub1.text_of("MessageId");
    assert_eq!(pub1.text_of("MessageBodyMD5"), hex::encode_upper(md5::Md5::digest(b"hello <world>")));
    let r = m.call("POST", "/topics/news/messages", Some(&publish_doc("urgent", Some("important"))), &[]).await;
    assert_eq!(r.status, 201);

    // XML notification in qx.
    let n = receive(&m, "qx").await.root();
    let note = common::mns::parse(&n.text_of("MessageBody"));
    assert_eq!(note.name, "Notification");
    assert_eq!(note.text_of("TopicOwner"), account);
    assert_eq!(note.text_of("TopicName"), "news");
    assert_eq!(note.text_of("Subscriber"), account);
    assert_eq!(note.text_of("SubscriptionName"), "sx");
    assert_eq!(note.text_of("MessageId"), id1);
    assert_eq!(note.text_of("Message"), "hello <world>");
    assert_eq!(note.text_of("MessageMD5"), pub1.text_of("MessageBodyMD5"));
    assert_eq!(note.text_of("PublishTime"), s.clock.now().to_string());
    assert!(note.child("MessageTag").is_none());
    let n2 = common::mns::parse(&receive(&m, "qx").await.root().text_of("MessageBody"));
    assert_eq!((n2.text_of("Message"), n2.text_of("MessageTag")), ("urgent".to_string(), "important".to_string()));
    // SIMPLIFIED in qs: only the tagged message, body alone.
    let r = receive(&m, "qs").await;
    assert_eq!(r.root().text_of("MessageBody"), "urgent");
    assert_eq!(receive(&m, "qs").await.error_code(), "MessageNotExist");
    // JSON in qj.
    let j: serde_json::Value = serde_json::from_str(&receive(&m, "qj").await.root().text_of("MessageBody")).unwrap();
    assert_eq!(j["Message"], "hello <world>");
    assert_eq!(j["SubscriptionName"], "sj");
    assert_eq!(j["MessageId"], id1.as_str());
    assert_eq!(j["PublishTime"], s.clock.now().to_string());

    // A queue endpoint that does not exist drops its notification; the publish succeeds.
    assert_eq!(
        put(&m, "/topics/news/subscriptions/gone", &sub_doc(&format!("<Endpoint>{}</Endpoint>", ep("nope"))))
            .await
            .status,
        201
    );
    assert_eq!(m.call("POST", "/topics/news/messages", Some(&publish_doc("x", None)), &[]).await.status, 201);

    // Unsubscribe: 204, then SubscriptionNotExist; the queue gets nothing more.
    while receive(&m, "qx").await.status == 200 {}
    assert_eq!(m.call("DELETE", "/topics/news/subscriptions/sx", None, &[]).await.status, 204);
    for r in [
        m.get("/topics/news/subscriptions/sx").await,
        m.call("DELETE", "/topics/news/subscriptions/sx", None, &[]).await,
        m.call(
            "PUT",
            "/topics/news/subscriptions/sx?metaoverride=true",
            Some(&sub_doc("<NotifyStrategy>BACKOFF_RETRY</NotifyStrategy>")),
            &[],
        )
        .await,
    ] {
        assert_eq!((r.status, r.error_code().as_str()), (404, "SubscriptionNotExist"), "{}", r.body);
    }
    assert_eq!(m.call("POST", "/topics/news/messages", Some(&publish_doc("y", None)), &[]).await.status, 201);
    assert_eq!(receive(&m, "qx").await.error_code(), "MessageNotExist");

    // Deleting the topic deletes its subscriptions: a new topic of that name has none.
    assert_eq!(m.call("DELETE", "/topics/news", None, &[]).await.status, 204);
    assert_eq!(put(&m, "/topics/news", &topic_doc("")).await.status, 201);
    let r = m.get("/topics/news/subscriptions").await;
    assert!(r.root().children.is_empty(), "{}", r.body);
    s.stop().await.unwrap();
}

/// An HTTP endpoint: records requests (headers, path with query, body) and fails the first
/// `fail` with 500.
struct Endpoint {
    url: String,
    rx: mpsc::UnboundedReceiver<(HeaderMap, String, String)>,
}

#[derive(Clone)]
struct EpState {
    tx: mpsc::UnboundedSender<(HeaderMap, String, String)>,
    fail: Arc<AtomicU32>,
}

async fn endpoint_hook(State(st): State<EpState>, uri: OriginalUri, headers: HeaderMap, body: String) -> StatusCode {
    let _ = st.tx.send((headers, uri.0.to_string(), body));
    if st.fail.load(Ordering::SeqCst) > 0 {
        st.fail.fetch_sub(1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        // The SDK's sample endpoint answers 201: any 2xx is delivered.
        StatusCode::CREATED
    }
}

async fn endpoint(fail: u32) -> Endpoint {
    let (tx, rx) = mpsc::unbounded_channel();
    let st = EpState { tx, fail: Arc::new(AtomicU32::new(fail)) };
    let app = axum::Router::new().route("/notify", axum::routing::post(endpoint_hook)).with_state(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify?src=qgate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Endpoint { url, rx }
}

impl Endpoint {
    /// Advances the server clock in 500 ms steps until the next request arrives; returns how
    /// far the clock moved.
    async fn next(&mut self, s: &TestServer) -> (u64, HeaderMap, String, String) {
        let mut moved = 0;
        for _ in 0..2000 {
            if let Ok(Some((h, p, b))) = tokio::time::timeout(Duration::from_millis(20), self.rx.recv()).await {
                return (moved, h, p, b);
            }
            s.clock.advance(Duration::from_millis(500));
            moved += 500;
        }
        panic!("no notification came");
    }
}

/// Checks the RSA-SHA1 signature of a notification independently: the string-to-sign built
/// here from the documented rule, the public key from the certificate the server serves.
async fn verify(s: &TestServer, h: &HeaderMap, path: &str) {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    use x509_cert::der::{DecodePem, Encode};
    let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let cert_url =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(get("x-mns-signing-cert-url")).unwrap())
            .unwrap();
    assert!(cert_url.starts_with(&s.base) && cert_url.ends_with(".pem"), "{cert_url}");
    let pem = client().get(&cert_url).send().await.unwrap().text().await.unwrap();
    let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).unwrap();
    let spki = cert.tbs_certificate().subject_public_key_info().to_der().unwrap();
    let key = rsa::PublicKey::from_public_key_der(&spki).unwrap();
    let mut mns: Vec<(String, String)> = h
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-mns-"))
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    mns.sort();
    let mut to_sign = format!("POST\n{}\n{}\n{}\n", get("content-md5"), get("content-type"), get("date"));
    for (k, v) in mns {
        to_sign.push_str(&format!("{k}:{v}\n"));
    }
    to_sign.push_str(path);
    let sig = base64::engine::general_purpose::STANDARD.decode(get("authorization")).unwrap();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key);
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
    verifier.verify(to_sign.as_bytes(), &sig).expect("the notification's signature verifies");
}

#[tokio::test]
async fn http_endpoints_get_signed_notifications_with_retries_that_survive_a_restart() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let mut ep = endpoint(1).await;
    assert_eq!(put(&m, "/topics/alerts", &topic_doc("")).await.status, 201);
    let r = put(&m, "/topics/alerts/subscriptions/hook", &sub_doc(&format!("<Endpoint>{}</Endpoint>", ep.url))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = m.call("POST", "/topics/alerts/messages", Some(&publish_doc("disk &amp; fire", Some("sev1"))), &[]).await;
    assert_eq!(r.status, 201);
    let id = r.root().text_of("MessageId");

    // First attempt fails (500); the retry comes 10–20 s later on the server clock.
    let (_, h, path, body) = ep.next(&s).await;
    assert_eq!(path, "/notify?src=qgate");
    verify(&s, &h, &path).await;
    let (waited, h, path, body2) = ep.next(&s).await;
    assert!((10_000..=20_500).contains(&waited), "retried after {waited} ms");
    assert_eq!(body, body2);
    verify(&s, &h, &path).await;
    assert_eq!(h["content-type"], "text/xml;charset=utf-8");
    assert_eq!(h["x-mns-message-id"].to_str().unwrap(), id);
    assert_eq!(h["x-mns-message-tag"], "sev1");
    assert_eq!(h["x-mns-topic-name"], "alerts");
    assert_eq!(h["x-mns-subscription-name"], "hook");
    assert_eq!(h["x-mns-version"], "2015-06-06");
    let expected_md5 = base64::engine::general_purpose::STANDARD.encode(hex::encode(md5::Md5::digest(body.as_bytes())));
    assert_eq!(h["content-md5"].to_str().unwrap(), expected_md5);
    let note = common::mns::parse(&body);
    assert_eq!(note.text_of("Message"), "disk & fire");
    assert_eq!(note.text_of("MessageTag"), "sev1");
    assert_eq!(note.text_of("SubscriptionName"), "hook");
    // Delivered (201): nothing more, and the topic has no message waiting.
    assert!(tokio::time::timeout(Duration::from_millis(300), ep.rx.recv()).await.is_err());
    assert_eq!(m.get("/topics/alerts").await.root().text_of("MessageCount"), "0");

    // A notification pending across a restart is delivered after it.
    let r = put(
        &m,
        "/topics/alerts/subscriptions/hook2",
        &sub_doc(&format!("<Endpoint>{}</Endpoint><NotifyContentFormat>SIMPLIFIED</NotifyContentFormat>", ep.url)),
    )
    .await;
    assert_eq!(r.status, 201);
    m.call("DELETE", "/topics/alerts/subscriptions/hook", None, &[]).await;
    // Make the endpoint fail for a while so the notification is pending at the restart.
    let mut ep_fail = endpoint(1000).await;
    let r =
        put(&m, "/topics/alerts/subscriptions/down", &sub_doc(&format!("<Endpoint>{}</Endpoint>", ep_fail.url))).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        m.call("POST", "/topics/alerts/messages", Some(&publish_doc("plain text", None)), &[]).await.status,
        201
    );
    let (_, h, _, body) = ep.next(&s).await;
    assert_eq!(body, "plain text");
    assert_eq!(h["content-type"], "text/plain;charset=utf-8");
    let _ = ep_fail.next(&s).await;
    assert_eq!(m.get("/topics/alerts").await.root().text_of("MessageCount"), "1");
    let (r, dir, clock) = s.stop_keep().await;
    r.unwrap();
    let s = TestServer::start_in(dir, clock, |_| {}).await;
    let (waited, _, _, body) = ep_fail.next(&s).await;
    assert!(body.contains("plain text"), "{body}");
    assert!(waited <= 61_000, "the pending notification came back after {waited} ms");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn account_attributes() {
    let s = TestServer::start().await;
    let m = mns(&s);
    let r = m.get("/?accountmeta=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.root().name, "Account");
    assert!(r.body.contains("<LoggingBucket></LoggingBucket>"), "the SDK requires the element: {}", r.body);
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Account {NS}><LoggingBucket>my-bucket</LoggingBucket></Account>"
    );
    assert_eq!(m.call("PUT", "/?accountmeta=true", Some(&doc), &[]).await.status, 204);
    assert_eq!(m.get("/?accountmeta=true").await.root().text_of("LoggingBucket"), "my-bucket");
    let bad = format!("<Account {NS}><LoggingBucket>No_Such Bucket</LoggingBucket></Account>");
    assert_eq!(m.call("PUT", "/?accountmeta=true", Some(&bad), &[]).await.error_code(), "InvalidArgument");
    // The root without accountmeta is not an operation.
    assert_eq!(m.get("/").await.error_code(), "InvalidRequestURL");
    // Another tenant has its own.
    let other = MnsClient::new(&s.base, "other-ak", "other-sk", &s.clock);
    assert!(!other.get("/?accountmeta=true").await.body.contains("my-bucket"));
    s.stop().await.unwrap();
}
