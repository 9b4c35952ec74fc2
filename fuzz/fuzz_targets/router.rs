//! The whole HTTP surface in process: one router with every dialect (what `qgate serve`
//! serves) over a fresh data directory and a manual clock, fed requests read from the fuzz
//! bytes. It covers routing, the request middleware, each dialect's decoding of paths, queries,
//! headers and bodies, the handlers and the engine behind them. The answer must be a complete
//! HTTP response (never a panic: the middleware would turn one into a 500, which this target
//! treats as a crash).
//!
//! To get past authentication, the first byte may ask the harness to sign the request: `M`
//! signs it as MNS (Date set to the clock), `C` as CTYun (accessKey, requestDate, contentMD5 of
//! nothing, Hmac); infrai needs only the bearer key, which seeds carry. The state is thrown away
//! every few thousand inputs so memory stays bounded.
#![no_main]

#[path = "common.rs"]
mod common;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use qgate::core::ManualClock;
use qgate::dialects::{ctyun, mns};
use tower_service::Service;

/// 2024-01-01T00:00:00Z.
const T0: u64 = 1_704_067_200_000;
const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[[tenants]]
name = "t"
bearer_keys = ["ifr_k"]
project_id = "0123456789abcdef0123456789abcdef"
[[tenants.access_keys]]
id = "ak"
secret = "sk"
"#;
const FRESH_EVERY: u32 = 5_000;

struct World {
    rt: tokio::runtime::Runtime,
    clock: ManualClock,
    app: Router,
    state: qgate::server::AppState,
    runs: u32,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // In memory when the machine has /dev/shm: a publish fsyncs, and on a disk that, not
        // the code under test, would set the pace.
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
        let mut cfg = qgate::config::Config::from_toml(CONFIG).unwrap();
        cfg.data_dir = dir.path().to_path_buf();
        let clock = ManualClock::new(T0);
        let opened = rt.block_on(qgate::server::open(cfg, Arc::new(clock.clone()))).unwrap();
        let state = opened.state.clone();
        let app = qgate::server::app(opened.state);
        World { rt, clock, app, state, runs: 0, _dir: dir }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.state.broker.engine().close();
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fn sign_mns(parts: &mut http::request::Parts) -> Option<()> {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(T0));
    parts.headers.insert("date", date.parse().ok()?);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let text = |n: &str| headers.iter().find(|(k, _)| k == n).map_or("", |(_, v)| v.as_str());
    let resource = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let method = parts.method.as_str().to_string();
    let signed = mns::sign::Signed {
        method: &method,
        content_md5: text("content-md5"),
        content_type: text("content-type"),
        date: text("date"),
        headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        resource: &resource,
    };
    let authz = format!("MNS ak:{}", mns::sign::signature("sk", &signed));
    parts.headers.insert("authorization", authz.parse().ok()?);
    Some(())
}

fn sign_ctyun(parts: &mut http::request::Parts) -> Option<()> {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(T0));
    let md5 = ctyun::sign::content_md5("");
    let hmac = ctyun::sign::hmac("sk", &md5, &date, parts.uri.path());
    parts.headers.insert("accesskey", "ak".parse().ok()?);
    parts.headers.insert("requestdate", date.parse().ok()?);
    parts.headers.insert("contentmd5", md5.parse().ok()?);
    parts.headers.insert("hmac", hmac.parse().ok()?);
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let (signer, data) = match data.split_first() {
        Some((b'M', rest)) => (Some(sign_mns as fn(&mut http::request::Parts) -> Option<()>), rest),
        Some((b'C', rest)) => (Some(sign_ctyun as fn(&mut http::request::Parts) -> Option<()>), rest),
        _ => (None, data),
    };
    let Some((mut parts, body)) = common::request(data) else { return };
    if let Some(sign) = signer
        && sign(&mut parts).is_none()
    {
        return;
    }
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        if w.as_ref().is_none_or(|w| w.runs >= FRESH_EVERY) {
            *w = None;
            *w = Some(World::new());
        }
        let w = w.as_mut().unwrap();
        w.runs += 1;
        let req = http::Request::from_parts(parts, Body::from(body));
        let mut app = w.app.clone();
        // A long poll waits on the manual clock: when a request is still pending after a
        // moment, the clock moves on a minute (which ends any wait), a few times at most.
        let clock = w.clock.clone();
        let answered = w.rt.block_on(async move {
            let mut call = Box::pin(async move {
                let resp = app.call(req).await.unwrap();
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                status
            });
            for _ in 0..5 {
                match tokio::time::timeout(Duration::from_millis(1), &mut call).await {
                    Ok(status) => return Ok(status),
                    Err(_) => clock.advance(Duration::from_secs(61)),
                }
            }
            Err(())
        });
        if let Ok(status) = answered {
            assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "an internal error (a handler panicked?)");
        }
    });
});
