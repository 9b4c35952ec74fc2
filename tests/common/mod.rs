//! Helpers shared by the integration tests: a broker on each engine over a temporary
//! directory driven by a manual clock (the engine conformance suite), and a full server on a
//! free port.
#![allow(dead_code)]

pub mod cluster;
pub mod ctyun;
pub mod dms;
pub mod golden;
pub mod mns;
pub mod pg;
pub mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qgate::config::Config;
use qgate::core::model::{DeadLetterPolicy, DeadLetterTarget, QueueConfig, QueueKind, RetentionMode};
use qgate::core::{Broker, Clock, CreateOutcome, ManualClock, Queue, ReceiptKey};
use qgate::engine::embedded::EmbeddedEngine;
use qgate::engine::embedded::store::{SledOptions, SledStore};
use qgate::server::AppState;

/// 2024-01-01T00:00:00Z: a fixed start so tests do not depend on the wall clock.
pub const T0: u64 = 1_704_067_200_000;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The engines the conformance suite runs on. A new engine is one more variant here, one more
/// arm in [`open_broker`] and one more line in [`engine_tests!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Embedded,
    /// On the database `QGATE_TEST_PG` names (scripts/with-postgres starts one), each test in
    /// a schema of its own.
    Postgres,
}

/// A broker over `engine` keeping its state in `dir` (embedded) or the database schema `url`
/// names (postgres), on `clock`.
pub async fn open_broker(engine: Engine, dir: &Path, url: Option<&str>, clock: &ManualClock) -> Arc<Broker> {
    let engine: Arc<dyn qgate::core::Engine> = match engine {
        Engine::Embedded => {
            let store = Arc::new(SledStore::open(&SledOptions::new(dir.join("store"))).expect("open store"));
            Arc::new(EmbeddedEngine::open(store, clock.now()).expect("open the embedded engine"))
        }
        Engine::Postgres => Arc::new(
            qgate::engine::postgres::PgEngine::open(url.expect("a database URL"), 8)
                .await
                .expect("open the postgres engine"),
        ),
    };
    Broker::new(engine, Arc::new(clock.clone()), ReceiptKey::new([7; 32]))
}

/// Generates one `#[tokio::test]` per engine for each listed `async fn NAME(engine: Engine)`:
/// the engine conformance suite. Each engine's tests live in a module named after it.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        $crate::per_engine!(embedded, Embedded; $($name),*);
        $crate::per_engine!(postgres, Postgres; $($name),*);
    };
}

#[macro_export]
macro_rules! per_engine {
    ($module:ident, $engine:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Engine::$engine).await
                }
            )*
        }
    };
}

/// A fresh broker with its own temporary directory. Fields drop in order: the broker (and its
/// engine) before the directory its files are in.
pub struct Env {
    pub broker: Arc<Broker>,
    pub engine: Engine,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    /// The database schema of a postgres-engine test.
    pub url: Option<String>,
}

impl Env {
    pub async fn new(engine: Engine) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let url = match engine {
            Engine::Postgres => Some(pg::fresh_schema().await),
            Engine::Embedded => None,
        };
        let broker = open_broker(engine, dir.path(), url.as_deref(), &clock).await;
        Env { broker, engine, clock, dir, url }
    }

    /// Closes the broker's engine and opens it again from what it keeps (a clean restart).
    pub async fn restart(self) -> Self {
        let Env { broker, engine, clock, dir, url } = self;
        broker.shutdown();
        assert_eq!(Arc::strong_count(&broker), 1, "someone still holds the broker");
        broker.engine().close().expect("close the engine");
        drop(broker);
        let broker = open_broker(engine, dir.path(), url.as_deref(), &clock).await;
        Env { broker, engine, clock, dir, url }
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Creates a queue with `cfg` in namespace "t".
    pub async fn queue(&self, name: &str, cfg: QueueConfig) -> Arc<Queue> {
        match self.broker.create_queue("t", name, cfg, None).await.expect("create") {
            CreateOutcome::Created(_) => {}
            CreateOutcome::Exists(_) => panic!("queue {name} exists"),
        }
        self.broker.queue("t", name).await.unwrap()
    }
}

/// A work queue honouring priorities (MNS-like).
pub fn work() -> QueueConfig {
    QueueConfig::default()
}

/// A FIFO work queue.
pub fn fifo() -> QueueConfig {
    QueueConfig { kind: QueueKind::Fifo, ..QueueConfig::default() }
}

/// A log-mode queue (DMS/CTYun-like) with dead letters after `max` failures in the own store.
pub fn log_queue(max: Option<u32>) -> QueueConfig {
    QueueConfig {
        mode: RetentionMode::Log,
        priority: false,
        dead_letter: max.map(|m| DeadLetterPolicy { max_failures: m, target: DeadLetterTarget::Own }),
        ..QueueConfig::default()
    }
}

/// A configuration for a test server: a fresh data dir, tenant "t" with known credentials.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config::from_toml(
        r#"
listen = "127.0.0.1:0"
[[tenants]]
name = "t"
bearer_keys = ["ifr_test"]
project_id = "0123456789abcdef0123456789abcdef"
[[tenants.access_keys]]
id = "test-ak"
secret = "test-sk"
[[tenants]]
name = "other"
bearer_keys = ["ifr_other"]
[[tenants.access_keys]]
id = "other-ak"
secret = "other-sk"
[admin]
tokens = ["adm_test_token_0123456789"]
[push]
allow_targets = ["127.0.0.1"]
backoff_base_ms = 1000
backoff_max_ms = 8000
"#,
    )
    .expect("test config");
    cfg.data_dir = dir.to_path_buf();
    cfg
}

/// A server on a free port, driven by a manual clock.
pub struct TestServer {
    pub base: String,
    /// The admin listener (token `adm_test_token_0123456789`).
    pub admin: String,
    pub clock: ManualClock,
    pub state: AppState,
    dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Drop for TestServer {
    /// A test that ends without `stop()` still closes the store before its directory goes
    /// (sled cannot survive its files vanishing under it).
    fn drop(&mut self) {
        let _ = self.state.broker.engine().close();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, ManualClock::new(T0), edit).await
    }

    /// Starts on an existing data directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir, clock: ManualClock, edit: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = test_config(dir.path());
        if std::env::var("QGATE_TEST_ENGINE").is_ok_and(|e| e == "postgres") {
            // The HTTP suites on the postgres engine: a schema per server, kept in the data
            // directory so a restart finds the same one.
            let keep = dir.path().join("pg-url");
            let url = match std::fs::read_to_string(&keep) {
                Ok(u) => u,
                Err(_) => {
                    let u = pg::fresh_schema().await;
                    std::fs::write(&keep, &u).expect("remember the schema");
                    u
                }
            };
            cfg.store.engine = qgate::config::EngineKind::Postgres;
            cfg.store.url = Some(url);
        }
        edit(&mut cfg);
        let mut opened = qgate::server::open(cfg, Arc::new(clock.clone())).await.expect("open server");
        let state = opened.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = format!("http://{}", admin_listener.local_addr().unwrap());
        opened.admin = Some(admin_listener);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(qgate::server::run(opened, listener, async move {
            let _ = rx.await;
        }));
        TestServer { base, admin, clock, state, dir: Some(dir), stop: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown; returns what the server returned.
    pub async fn stop(self) -> Result<(), String> {
        self.stop_keep().await.0
    }

    /// Graceful shutdown keeping the data directory and clock (for a restart).
    pub async fn stop_keep(mut self) -> (Result<(), String>, tempfile::TempDir, ManualClock) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = self.task.take().unwrap().await.unwrap();
        (r, self.dir.take().unwrap(), self.clock.clone())
    }
}

/// An HTTP client for tests (plain http).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Runs `fut` while moving `clock` forward in 500 ms steps until it finishes: for calls that
/// long-poll on the server clock and are expected to come back empty.
pub async fn drive<T: Send + 'static>(
    clock: &ManualClock,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let mut task = tokio::spawn(fut);
    for _ in 0..400 {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), &mut task).await {
            return r.unwrap();
        }
        clock.advance(Duration::from_millis(500));
    }
    panic!("the call did not finish within 200 s of server time");
}
