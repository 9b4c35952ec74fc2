//! Micro-benchmarks of qgate's hot paths, below HTTP: `cargo bench --bench hot_paths`.
//!
//! `qgate bench` measures the whole server end to end, where HTTP, JSON/XML and the kernel's
//! socket work dominate; these benchmarks isolate the three pieces of work every message pays
//! for inside the server, so a change to one of them shows up as its own number:
//!
//! * **`lease`** — lease selection: [`Broker::receive`] of 1 and of 16 messages followed by
//!   [`Broker::ack`] of each, on a queue holding 10 000 and 100 000 ready messages (a sled store
//!   in a temporary directory, a [`ManualClock`] that never moves, no long-poll wait). The
//!   depths show whether picking the next deliverable message depends on how many wait behind
//!   it. The queue is topped up (untimed) whenever a quarter of it was consumed, and the store
//!   settled then (`flush_blocking`: every message applied to sled, the applier idle), so each
//!   body is found through sled (its location) and read from the log, as for any backlog older
//!   than a moment. A busy applier slows those reads down (they share the pipeline's lock and
//!   the CPU); that is not measured here.
//! * **`commit`** — the publish durability path: [`SledStore`] `append` + `sync` (write-ahead
//!   log write and `fdatasync`) for one message, for one batch of 16, and for 8 concurrent
//!   publishers of one message each that should share fsyncs (group commit). This is the floor
//!   under every answered publish. After the concurrent run it prints how many fsyncs the
//!   publishes took.
//! * **`verify`** — authenticating one representative request per dialect: MNS (HMAC-SHA1 over
//!   the canonical headers, plus the Content-MD5 check of the body), CTYun (Hmac over
//!   contentMD5/requestDate/path, plus parameter collection and the contentMD5 binding), DMS
//!   (SDK-HMAC-SHA256 over the canonical request, body hash included) and infrai (bearer key
//!   lookup, constant-time over every configured key). Each calls the dialect's own public,
//!   pure `authenticate` (`qgate::dialects::{mns,ctyun,dms}::sign::authenticate`,
//!   `qgate::dialects::infrai::extract::authenticate`) on the request head as the server
//!   receives it (`http::request::Parts`), so what is timed is what the server runs. The
//!   requests are signed by small independent signers copied from
//!   `tests/common/{mns,ctyun,dms}.rs`.
//!
//! Runs are kept short (2 s of measurement, 20 samples per benchmark; well under a minute);
//! `cargo bench --bench hot_paths -- --test` runs each benchmark once as a smoke test.
//! Numbers from the fsync benchmarks depend on the disk under the temporary directory.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qgate::auth::{Auth, Tenant};
use qgate::config::Config;
use qgate::core::model::{BodyKind, MessageBody, MessageId, MessageMeta, NewMessage, QueueConfig, QueueRecord};
use qgate::core::{Broker, CreateOutcome, ManualClock, Queue, ReceiptKey, ReceiveOptions};
use qgate::dialects::ctyun::params::Params;
use qgate::dialects::{ctyun, dms, infrai, mns};
use qgate::engine::embedded::EmbeddedEngine;
use qgate::engine::embedded::store::{SledOptions, SledStore, Store};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2024-01-01T00:00:00Z: the manual clock's start, and the signing time of the verify requests.
const T0: u64 = 1_704_067_200_000;
const BODY_BYTES: usize = 256;
const PUBLISHERS: u64 = 8;

fn body_text() -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..BODY_BYTES).map(|i| ALPHA[(i * 7 + 3) % ALPHA.len()] as char).collect()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

// ----- lease selection ---------------------------------------------------------------------------

/// A broker on a sled store in its own temporary directory, with one queue.
struct CoreEnv {
    broker: Arc<Broker>,
    store: Arc<SledStore>,
    queue: Arc<Queue>,
    _dir: tempfile::TempDir,
}

impl CoreEnv {
    fn new(rt: &tokio::runtime::Runtime) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(&SledOptions::new(dir.path().join("store"))).expect("open store"));
        let engine = EmbeddedEngine::open(store.clone(), T0).expect("open the engine");
        let broker = Broker::new(Arc::new(engine), Arc::new(ManualClock::new(T0)), ReceiptKey::new([7; 32]));
        match rt.block_on(broker.create_queue("bench", "lease", QueueConfig::default(), None)).expect("create") {
            CreateOutcome::Created(_) => {}
            CreateOutcome::Exists(_) => unreachable!("a fresh store"),
        }
        let queue = rt.block_on(broker.queue("bench", "lease")).expect("the queue");
        CoreEnv { broker, store, queue, _dir: dir }
    }

    /// Publishes `n` messages, 1 000 per call, then waits until the store's write-behind
    /// applier has written them to sled: timing starts with the applier idle.
    async fn fill(&self, n: u64) {
        let body = body_text();
        let mut left = n;
        while left > 0 {
            let take = left.min(1_000);
            let msgs = (0..take).map(|_| NewMessage::text(body.clone())).collect();
            self.broker.publish(&self.queue, msgs).await.expect("publish");
            left -= take;
        }
        self.store.flush_blocking().expect("settle the store");
    }

    async fn ready(&self) -> u64 {
        self.broker.stats(&self.queue, 0).await.expect("stats").ready
    }
}

impl Drop for CoreEnv {
    fn drop(&mut self) {
        self.broker.shutdown();
        let _ = self.store.close();
    }
}

fn lease(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("lease");
    for depth in [10_000u64, 100_000] {
        let env = CoreEnv::new(&rt);
        rt.block_on(env.fill(depth));
        assert_eq!(rt.block_on(env.ready()), depth);
        // Top the queue up (untimed) once a quarter of it was consumed.
        let refill = depth / 4;
        for max in [1usize, 16] {
            g.throughput(Throughput::Elements(max as u64));
            let opts = ReceiveOptions { wait_ms: Some(0), ..ReceiveOptions::new(max) };
            g.bench_function(BenchmarkId::new(format!("receive{max}+ack"), depth), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut spent = Duration::ZERO;
                        let mut consumed = 0u64;
                        for _ in 0..iters {
                            if consumed >= refill {
                                env.fill(consumed).await;
                                consumed = 0;
                            }
                            let started = Instant::now();
                            let got = env.broker.receive(&env.queue, 0, opts.clone()).await.expect("receive");
                            for d in &got {
                                env.broker.ack(&env.queue, &d.handle).await.expect("ack");
                            }
                            spent += started.elapsed();
                            assert_eq!(got.len(), max, "the queue ran dry");
                            consumed += max as u64;
                        }
                        env.fill(consumed).await;
                        spent
                    })
                })
            });
            assert_eq!(rt.block_on(env.ready()), depth, "the depth stays put between benchmarks");
        }
    }
    g.finish();
}

// ----- append with group commit -----------------------------------------------------------------

/// A bare store with one queue record, and the next sequence to append.
struct StoreEnv {
    store: Arc<SledStore>,
    queue: Uuid,
    seq: AtomicU64,
    body: MessageBody,
    _dir: tempfile::TempDir,
}

impl StoreEnv {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(&SledOptions::new(dir.path().join("store"))).expect("open store"));
        let queue = Uuid::new_v4();
        store
            .put_queue(&QueueRecord {
                id: queue,
                namespace: "bench".into(),
                name: "commit".into(),
                config: QueueConfig::default(),
                created_at: T0,
                modified_at: T0,
            })
            .expect("put queue");
        let body = MessageBody { body: body_text().into_bytes(), attributes: Default::default() };
        StoreEnv { store, queue, seq: AtomicU64::new(0), body, _dir: dir }
    }

    /// `n` messages with the next sequences (ascending, as the store requires).
    fn batch(&self, n: u64) -> Vec<(MessageMeta, MessageBody)> {
        let first = self.seq.fetch_add(n, Ordering::Relaxed) + 1;
        (first..first + n)
            .map(|seq| {
                let meta = MessageMeta {
                    seq,
                    id: MessageId(seq as u128),
                    kind: BodyKind::Text,
                    priority: 8,
                    enqueued_at: T0,
                    not_before: T0,
                    size: BODY_BYTES as u32,
                    tags: Vec::new(),
                    origin: None,
                };
                (meta, self.body.clone())
            })
            .collect()
    }
}

impl Drop for StoreEnv {
    fn drop(&mut self) {
        let _ = self.store.close();
    }
}

fn commit(c: &mut Criterion) {
    let env = Arc::new(StoreEnv::new());
    let mut g = c.benchmark_group("commit");
    let rt = current_thread();
    for n in [1u64, 16] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("append{n}+sync"), |b| {
            b.iter(|| {
                // The sequences must ascend across appends, so the batch is built where it is
                // appended (a few hundred bytes copied: noise next to the fsync).
                env.store.append(env.queue, &env.batch(n)).expect("append");
                rt.block_on(env.store.sync()).expect("sync");
            })
        });
    }

    // N publishers, each appending one message and waiting for its sync, all at once: the
    // committer should fsync once for everyone waiting.
    let mt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (flushes, syncs) = (env.store.flush_count(), env.store.sync_count());
    g.throughput(Throughput::Elements(PUBLISHERS));
    g.bench_function(format!("{PUBLISHERS}_publishers_append1+sync"), |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            mt.block_on(async {
                let tasks: Vec<_> = (0..PUBLISHERS)
                    .map(|_| {
                        let env = env.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                env.store.append(env.queue, &env.batch(1)).expect("append");
                                env.store.sync().await.expect("sync");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("publisher");
                }
            });
            started.elapsed()
        })
    });
    g.finish();
    let (flushes, syncs) = (env.store.flush_count() - flushes, env.store.sync_count() - syncs);
    if syncs > 0 {
        println!(
            "commit/{PUBLISHERS}_publishers: {syncs} syncs answered by {flushes} fsyncs ({:.1} publishes per fsync)",
            syncs as f64 / flushes.max(1) as f64
        );
    }
    drop(mt);
}

// ----- signature verification ------------------------------------------------------------------

/// A request as the server receives it: its head and its body.
struct Req {
    parts: Parts,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &'static str, target: String, headers: &[(&str, String)], body: Vec<u8>) -> Self {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "127.0.0.1:8080")
            .header("user-agent", "qgate-bench")
            .header("content-length", body.len());
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        Req { parts: b.body(()).expect("request").into_parts().0, body }
    }
}

const SKEW_MS: u64 = 900_000;

/// MNS: the dialect's whole check (header, date, key, signature, Content-MD5 of the body).
fn verify_mns(auth: &Auth, now: u64, r: &Req) -> Option<Arc<Tenant>> {
    mns::sign::authenticate(&r.parts, &r.body, now, |id| auth.access_key(id)).ok()
}

/// CTYun: the signature check, then what the handler does next before any operation runs:
/// the route, parameter collection and the contentMD5 binding (strict, so a mismatch counts).
fn verify_ctyun(auth: &Auth, now: u64, r: &Req) -> Option<Arc<Tenant>> {
    let signed = ctyun::sign::authenticate(&r.parts, now, SKEW_MS, |ak| auth.access_key(ak)).ok()?;
    let route = ctyun::Route::parse(r.parts.uri.path().rsplit('/').next()?)?;
    let params = Params::collect(&r.parts.method, &r.parts.headers, r.parts.uri.query().unwrap_or(""), &r.body).ok()?;
    let texts = params.md5_texts(route.params());
    ctyun::sign::md5_matches(ctyun::sign::Md5Mode::Strict, signed.content_md5, &texts).then_some(signed.credential)
}

/// DMS: the dialect's whole check (signed headers, date, body hash, canonical request, signature).
fn verify_dms(auth: &Auth, now: u64, r: &Req) -> Option<Arc<Tenant>> {
    dms::sign::authenticate(&r.parts, &r.body, now, SKEW_MS, |ak| auth.access_key(ak)).ok()
}

/// infrai: `Bearer <key>`, then the key.
fn verify_infrai(auth: &Auth, r: &Req) -> Option<Arc<Tenant>> {
    infrai::extract::authenticate(&r.parts.headers, |key| auth.bearer(key)).ok()
}

/// Independent signers, copied from tests/common/{mns,ctyun,dms}.rs (they must not share code
/// with the server's verifiers).
mod signers {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{KeyInit, Mac};
    use md5::Digest as _;

    pub fn mns(
        sk: &str,
        method: &str,
        md5: &str,
        ctype: &str,
        date: &str,
        x_mns: &[(&str, &str)],
        res: &str,
    ) -> String {
        let mut hs: Vec<(String, String)> =
            x_mns.iter().map(|(k, v)| (k.to_lowercase(), v.trim().to_string())).collect();
        hs.sort();
        let mut sts = format!("{method}\n{md5}\n{ctype}\n{date}\n");
        for (k, v) in hs {
            sts.push_str(&format!("{k}:{v}\n"));
        }
        sts.push_str(res);
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
        m.update(sts.as_bytes());
        STANDARD.encode(m.finalize().into_bytes())
    }

    /// Content-MD5 as the Python MNS SDK sends it: base64 of the hex digest.
    pub fn mns_md5(body: &[u8]) -> String {
        STANDARD.encode(hex::encode(md5::Md5::digest(body)))
    }

    pub fn ctyun_md5(values: &[String]) -> String {
        STANDARD.encode(md5::Md5::digest(values.join("\n").as_bytes()))
    }

    pub fn ctyun_hmac(sk: &str, md5: &str, date: &str, path: &str) -> String {
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
        m.update(format!("{md5}\n{date}\n{path}").as_bytes());
        STANDARD.encode(m.finalize().into_bytes())
    }

    pub fn ctyun_date(ms: u64) -> String {
        let t = jiff::Timestamp::from_millisecond(ms as i64).unwrap();
        t.strftime("%a, %-d %b %Y %H:%M:%S GMT").to_string()
    }

    fn encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                out.push(*b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn hex_sha256(data: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(data))
    }

    pub fn dms_date(ms: u64) -> String {
        jiff::Timestamp::from_millisecond(ms as i64).unwrap().strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    /// The SDK-HMAC-SHA256 signature of a request with no query, over `headers` (sorted by
    /// name, lower-case), as the Huawei SDK computes it.
    pub fn dms(sk: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8], date: &str) -> String {
        let signed = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned();
        let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
        if !uri.ends_with('/') {
            uri.push('/');
        }
        let canon_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!("{method}\n{uri}\n\n{canon_headers}\n{signed}\n{}", hex_sha256(body));
        let sts = format!("SDK-HMAC-SHA256\n{date}\n{}", hex_sha256(canonical.as_bytes()));
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(sk.as_bytes()).unwrap();
        m.update(sts.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

const AK: &str = "bench-ak";
const SK: &str = "bench-sk";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn auth() -> Auth {
    let cfg = Config::from_toml(&format!(
        r#"
[[tenants]]
name = "bench"
bearer_keys = ["ifr_bench", "ifr_bench_2"]
project_id = "{PROJECT}"
[[tenants.access_keys]]
id = "{AK}"
secret = "{SK}"
[[tenants]]
name = "other"
bearer_keys = ["ifr_other"]
[[tenants.access_keys]]
id = "other-ak"
secret = "other-sk"
"#
    ))
    .expect("config");
    Auth::from_config(&cfg)
}

/// MNS SendMessage of one 256-byte body.
fn mns_request(sk: &str) -> Req {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MessageBody>{}</MessageBody></Message>",
        body_text()
    )
    .into_bytes();
    let target = "/queues/orders/messages".to_string();
    let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(T0));
    let (md5, ctype) = (signers::mns_md5(&body), "text/xml;charset=UTF-8");
    let sig = signers::mns(sk, "POST", &md5, ctype, &date, &[("x-mns-version", "2015-06-06")], &target);
    Req::new(
        "POST",
        target,
        &[
            ("date", date),
            ("x-mns-version", "2015-06-06".into()),
            ("content-md5", md5),
            ("content-type", ctype.into()),
            ("authorization", format!("MNS {AK}:{sig}")),
        ],
        body,
    )
}

/// CTYun sendSpecifyQueueMessage of one 256-byte body, parameters as a JSON body.
fn ctyun_request(sk: &str) -> Req {
    let params = [
        ("regionId", serde_json::json!("bench")),
        ("queueId", serde_json::json!(Uuid::from_u128(7).to_string())),
        ("messages", serde_json::json!([{"body": body_text()}])),
    ];
    let values: Vec<String> =
        params.iter().map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect();
    let body = format!("{{{}}}", params.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))
        .into_bytes();
    let path = "/apiproxy/v3/queue/sendSpecifyQueueMessage";
    let (md5, date) = (signers::ctyun_md5(&values), signers::ctyun_date(T0));
    let hmac = signers::ctyun_hmac(sk, &md5, &date, path);
    Req::new(
        "POST",
        path.to_string(),
        &[
            ("content-type", "application/json".into()),
            ("accessKey", AK.into()),
            ("contentMD5", md5),
            ("requestDate", date),
            ("Hmac", hmac),
            ("platform", "3".into()),
        ],
        body,
    )
}

/// DMS send-messages of one 256-byte body, signed like the Huawei SDK.
fn dms_request(sk: &str) -> Req {
    let path = format!("/v2/{PROJECT}/queues/{}/messages", Uuid::from_u128(7));
    let body = serde_json::json!({"messages": [{"body": body_text()}]}).to_string().into_bytes();
    let date = signers::dms_date(T0);
    let headers = [
        ("content-type", "application/json".to_string()),
        ("host", "127.0.0.1:8080".to_string()),
        ("user-agent", "qgate-bench".to_string()),
        ("x-project-id", PROJECT.to_string()),
        ("x-sdk-date", date.clone()),
    ];
    let sig = signers::dms(sk, "POST", &path, &headers, &body, &date);
    let signed = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    Req::new(
        "POST",
        path,
        &[
            ("content-type", "application/json".into()),
            ("x-project-id", PROJECT.into()),
            ("x-sdk-date", date),
            ("authorization", format!("SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed}, Signature={sig}")),
        ],
        body,
    )
}

fn infrai_request(key: &str) -> Req {
    let body = serde_json::json!({"queue": "orders", "payload": body_text()}).to_string().into_bytes();
    Req::new(
        "POST",
        "/v1/queue/publish".into(),
        &[("content-type", "application/json".into()), ("authorization", format!("Bearer {key}"))],
        body,
    )
}

fn verify(c: &mut Criterion) {
    let auth = auth();
    let (mns_ok, ctyun_ok, dms_ok, infrai_ok) =
        (mns_request(SK), ctyun_request(SK), dms_request(SK), infrai_request("ifr_bench_2"));
    // What is measured must be the accepting path: genuine requests pass, forged ones do not.
    let bench_tenant = |t: Option<Arc<Tenant>>| t.is_some_and(|t| t.name == "bench");
    assert!(bench_tenant(verify_mns(&auth, T0, &mns_ok)), "mns");
    assert!(bench_tenant(verify_ctyun(&auth, T0, &ctyun_ok)), "ctyun");
    assert!(bench_tenant(verify_dms(&auth, T0, &dms_ok)), "dms");
    assert!(bench_tenant(verify_infrai(&auth, &infrai_ok)), "infrai");
    assert!(verify_mns(&auth, T0, &mns_request("wrong")).is_none());
    assert!(verify_ctyun(&auth, T0, &ctyun_request("wrong")).is_none());
    assert!(verify_dms(&auth, T0, &dms_request("wrong")).is_none());
    assert!(verify_infrai(&auth, &infrai_request("ifr_wrong")).is_none());

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mns", |b| b.iter(|| verify_mns(&auth, T0, black_box(&mns_ok)).expect("valid")));
    g.bench_function("ctyun", |b| b.iter(|| verify_ctyun(&auth, T0, black_box(&ctyun_ok)).expect("valid")));
    g.bench_function("dms", |b| b.iter(|| verify_dms(&auth, T0, black_box(&dms_ok)).expect("valid")));
    g.bench_function("infrai", |b| b.iter(|| verify_infrai(&auth, black_box(&infrai_ok)).expect("valid")));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = lease, commit, verify
}
criterion_main!(hot_paths);
