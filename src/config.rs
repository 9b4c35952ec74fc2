//! Configuration: a TOML file, environment overrides, and the embedded default.
//!
//! `qgate serve --config FILE` (or `QGATE_CONFIG`) reads the file; `QGATE_LISTEN` and
//! `QGATE_DATA_DIR` override its `listen` and `data_dir`. Without a file qgate runs on the
//! embedded default: 127.0.0.1:8080, data in `./qgate-data`, one `demo` tenant whose
//! credentials the server prints at start (they are public: local use only).

mod operations;

pub use operations::*;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// After SIGTERM: how long requests in progress may take to finish before the connections
    /// left (a stalled client, say) are closed and the store's final flush runs.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub push: PushConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub infrai: InfraiConfig,
    #[serde(default)]
    pub ctyun: CtyunConfig,
    #[serde(default)]
    pub dms: DmsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    /// TLS on the vendor listener (both paths, or neither).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `"text"` (for people) or `"json"` (one object per line for log shippers, with an access
    /// line per request: request id, dialect, operation, tenant, queue, status, latency).
    #[serde(default)]
    pub log_format: LogFormat,
    /// True for the embedded default (the server then prints the demo credentials).
    #[serde(skip)]
    pub embedded_default: bool,
    /// The file this configuration was read from (SIGHUP reads it again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// A tenant: a namespace of queues and the credentials that act in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// infrai bearer keys.
    #[serde(default)]
    pub bearer_keys: Vec<String>,
    /// DMS / CTYun project id (32 hex). Derived from the name when absent.
    pub project_id: Option<String>,
    /// Access key pairs for the signed dialects (MNS, CTYun, DMS).
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
    /// MNS account id (digits): answered as a topic's owner and accepted in queue endpoints
    /// (`acs:mns:{region}:{account}:queues/{name}`). Derived from the name when absent.
    pub mns_account_id: Option<String>,
    /// How MNS message bodies travel: `"raw"` (stored as sent) or `"base64"` (the Python SDK's
    /// default encoding: stored decoded, so other dialects read the text; encoded for MNS).
    #[serde(default)]
    pub mns_body_encoding: MnsBodyEncoding,
}

/// See [`TenantConfig::mns_body_encoding`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MnsBodyEncoding {
    #[default]
    Raw,
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub id: String,
    pub secret: String,
}

/// Push subscription delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Hosts, IP addresses or CIDRs exempt from the SSRF rules (and allowed over plain http).
    #[serde(default)]
    pub allow_targets: Vec<String>,
    /// First retry delay; doubles per attempt.
    #[serde(default = "default_backoff_base")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Per-delivery HTTP timeout.
    #[serde(default = "default_push_timeout")]
    pub timeout_ms: u64,
    /// Deliveries in flight per subscription.
    #[serde(default = "default_push_concurrency")]
    pub concurrency: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow_targets: Vec::new(),
            backoff_base_ms: default_backoff_base(),
            backoff_max_ms: default_backoff_max(),
            timeout_ms: default_push_timeout(),
            concurrency: default_push_concurrency(),
        }
    }
}

/// Which engine keeps the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// sled and a write-ahead log in the data directory: one process, nothing to set up.
    #[default]
    Embedded,
    /// A PostgreSQL database several qgate nodes share.
    Postgres,
}

/// Where queues are kept: the engine and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub engine: EngineKind,
    /// The PostgreSQL engine's database (`postgres://user:password@host:port/db`); also
    /// `QGATE_STORE_URL`.
    #[serde(default)]
    pub url: Option<String>,
    /// Connections each node keeps to the database (long polls hold none).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// sled page cache, MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// sled's own background flush period, ms. (Lazily durable operations — acks, leases —
    /// reach the disk through the write-ahead log within 200 ms whatever this is.)
    #[serde(default = "default_flush_every")]
    pub flush_every_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            engine: EngineKind::Embedded,
            url: None,
            pool_size: default_pool_size(),
            cache_mb: default_cache_mb(),
            flush_every_ms: default_flush_every(),
        }
    }
}

/// The HTTP listener's limits against stalled and hostile clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A request head must arrive within this, from its first byte (slowloris).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// A request body must arrive within this, from when its dialect starts reading it.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections served at once; lowered to fit the open-file limit. At the cap the
    /// longest-idle connections are closed to make room, and new ones wait in the backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    10_000
}

/// infrai limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfraiConfig {
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: u64,
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u64,
}

impl Default for InfraiConfig {
    fn default() -> Self {
        InfraiConfig { max_payload_bytes: default_max_payload(), max_request_bytes: default_max_request() }
    }
}

/// CTYun dialect options (`dialects/ctyun/README.md` explains each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtyunConfig {
    /// `"200"` (what public clients require) or `"mirror"` (800/900 in the status line too).
    #[serde(default)]
    pub http_status: HttpStatusMode,
    /// How contentMD5 is bound to the parameters.
    #[serde(default)]
    pub content_md5: Md5Mode,
    /// Allowed distance of requestDate from the server clock; 0 disables the check.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
    /// `"namespace"`: customInfo selects a sub-tenant; `"ignore"`: always the key's tenant.
    #[serde(default)]
    pub custom_info: CustomInfoMode,
    #[serde(default = "default_ctyun_queues")]
    pub max_queues: usize,
    #[serde(default = "default_groups")]
    pub max_groups: usize,
    /// Per send request and per consume reply.
    #[serde(default = "default_ctyun_bytes")]
    pub max_message_bytes: u64,
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
}

impl Default for CtyunConfig {
    fn default() -> Self {
        CtyunConfig {
            http_status: HttpStatusMode::default(),
            content_md5: Md5Mode::default(),
            max_clock_skew_secs: default_skew(),
            custom_info: CustomInfoMode::default(),
            max_queues: default_ctyun_queues(),
            max_groups: default_groups(),
            max_message_bytes: default_ctyun_bytes(),
            retention_hours: default_retention_hours(),
        }
    }
}

/// Huawei DMS dialect options (`dialects/dms/README.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsConfig {
    /// Queues per project.
    #[serde(default = "default_dms_queues")]
    pub max_queues: usize,
    #[serde(default = "default_groups")]
    pub max_groups: usize,
    /// Per send request and per consume reply.
    #[serde(default = "default_ctyun_bytes")]
    pub max_message_bytes: u64,
    /// Retention of NORMAL/FIFO queues.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// Allowed distance of X-Sdk-Date from the server clock.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
}

impl Default for DmsConfig {
    fn default() -> Self {
        DmsConfig {
            max_queues: default_dms_queues(),
            max_groups: default_groups(),
            max_message_bytes: default_ctyun_bytes(),
            retention_hours: default_retention_hours(),
            max_clock_skew_secs: default_skew(),
        }
    }
}

fn default_dms_queues() -> usize {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HttpStatusMode {
    #[default]
    #[serde(rename = "200")]
    Ok,
    #[serde(rename = "mirror")]
    Mirror,
}

/// How CTYun's contentMD5 is bound to the request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Md5Mode {
    /// Log a mismatch, accept the request: nothing binds the parameters (a captured request
    /// can be replayed with other parameters while its date is fresh).
    Warn,
    /// Accept any ordering/encoding variant of the parameters sent that a known client
    /// produces, and MD5("") whatever the parameters (two public clients send only that);
    /// refuse the rest. Requests that hashed their parameters are bound to them; those signed
    /// with MD5("") are not (the client gives nothing to bind).
    #[default]
    Permissive,
    /// As `permissive`, without MD5("") over parameters: every accepted request is bound.
    Bound,
    /// Accept only the canonical doc-order value.
    Strict,
}

impl Md5Mode {
    /// Whether some accepted requests can carry parameters their signature does not cover.
    pub fn unbound(self) -> bool {
        matches!(self, Md5Mode::Warn | Md5Mode::Permissive)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CustomInfoMode {
    #[default]
    Namespace,
    Ignore,
}

fn default_skew() -> u64 {
    900
}
fn default_ctyun_queues() -> usize {
    5
}
fn default_groups() -> usize {
    3
}
fn default_ctyun_bytes() -> u64 {
    512 * 1024
}
fn default_retention_hours() -> u64 {
    72
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./qgate-data")
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_backoff_base() -> u64 {
    1000
}
fn default_backoff_max() -> u64 {
    60_000
}
fn default_push_timeout() -> u64 {
    10_000
}
fn default_push_concurrency() -> usize {
    8
}
fn default_pool_size() -> usize {
    16
}

fn default_cache_mb() -> u64 {
    32
}
fn default_flush_every() -> u64 {
    500
}
fn default_max_payload() -> u64 {
    256 * 1024
}
fn default_max_request() -> u64 {
    1024 * 1024
}

/// The demo tenant of the embedded default.
pub const DEMO_TENANT: &str = "demo";
pub const DEMO_BEARER: &str = "ifr_demo";
pub const DEMO_ACCESS_KEY: &str = "demo-ak";
pub const DEMO_SECRET: &str = "demo-sk";

/// Project id of a tenant without one: the first 16 bytes of SHA-256(name), as hex.
pub fn derived_project_id(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// MNS account id of a tenant without one: 16 decimal digits from SHA-256("mns:" + name), the
/// shape of the service's account ids (the first digit is never 0).
pub fn derived_mns_account_id(name: &str) -> String {
    let d = Sha256::digest(format!("mns:{name}").as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % 9_000_000_000_000_000 + 1_000_000_000_000_000;
    n.to_string()
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            shutdown_grace_secs: default_shutdown_grace(),
            tenants: vec![TenantConfig {
                name: DEMO_TENANT.into(),
                bearer_keys: vec![DEMO_BEARER.into()],
                project_id: None,
                access_keys: vec![AccessKeyConfig { id: DEMO_ACCESS_KEY.into(), secret: DEMO_SECRET.into() }],
                mns_account_id: None,
                mns_body_encoding: MnsBodyEncoding::Raw,
            }],
            push: PushConfig::default(),
            store: StoreConfig::default(),
            infrai: InfraiConfig::default(),
            ctyun: CtyunConfig::default(),
            dms: DmsConfig::default(),
            http: HttpConfig::default(),
            admin: AdminConfig { tokens: vec![generated_admin_token()], ..AdminConfig::default() },
            log_format: LogFormat::Text,
            tls: None,
            source: None,
            embedded_default: true,
        }
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads the file if given, else the embedded default; then applies `QGATE_LISTEN` and
    /// `QGATE_DATA_DIR`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                let mut cfg = Config::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))?;
                cfg.source = Some(p.to_path_buf());
                cfg
            }
            None => Config::embedded(),
        };
        if let Some(l) = env("QGATE_LISTEN").filter(|s| !s.is_empty()) {
            cfg.listen = l;
        }
        if let Some(d) = env("QGATE_DATA_DIR").filter(|s| !s.is_empty()) {
            cfg.data_dir = PathBuf::from(d);
        }
        if let Some(u) = env("QGATE_STORE_URL").filter(|s| !s.is_empty()) {
            cfg.store.url = Some(u);
        }
        if cfg.store.engine == EngineKind::Postgres && cfg.store.url.is_none() {
            return Err("[store] engine = \"postgres\" needs `url` (or QGATE_STORE_URL)".into());
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.admin.tokens.iter().any(|t| t.trim().len() < 16) {
            return Err("[admin] tokens must be at least 16 characters".into());
        }
        let mut names = HashSet::new();
        let mut bearers = HashSet::new();
        let mut aks = HashSet::new();
        let mut projects = HashSet::new();
        for t in &self.tenants {
            if t.name.is_empty() {
                return Err("a tenant has an empty name".into());
            }
            // Control characters are reserved: internal namespaces are derived from tenant
            // names with one, so no tenant can name another's.
            if t.name.chars().any(char::is_control) {
                return Err(format!("tenant {:?}: a name may not contain control characters", t.name));
            }
            if let Some(a) = &t.mns_account_id
                && (a.is_empty() || a.len() > 20 || !a.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(format!("tenant '{}': mns_account_id must be 1 to 20 digits", t.name));
            }
            if !names.insert(&t.name) {
                return Err(format!("tenant '{}' is configured twice", t.name));
            }
            for b in &t.bearer_keys {
                if b.is_empty() || !bearers.insert(b) {
                    return Err(format!("tenant '{}': empty or duplicate bearer key", t.name));
                }
            }
            for k in &t.access_keys {
                if k.id.is_empty() || k.secret.is_empty() || !aks.insert(&k.id) {
                    return Err(format!("tenant '{}': empty or duplicate access key id '{}'", t.name, k.id));
                }
            }
            let p = t.project_id.clone().unwrap_or_else(|| derived_project_id(&t.name));
            if !projects.insert(p.to_ascii_lowercase()) {
                return Err(format!("tenant '{}': project id {p} is used twice", t.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses_with_defaults() {
        let cfg = Config::from_toml(
            r#"
listen = "127.0.0.1:8080"
data_dir = "./qgate-data"
[[tenants]]
name = "demo"
bearer_keys = ["ifr_demo"]
project_id = "0123456789abcdef0123456789abcdef"
[[tenants.access_keys]]
id = "demo-ak"
secret = "demo-sk"
[push]
allow_targets = ["127.0.0.1"]
"#,
        )
        .unwrap();
        assert_eq!(cfg.tenants[0].access_keys[0].secret, "demo-sk");
        assert_eq!(cfg.push.allow_targets, vec!["127.0.0.1"]);
        assert_eq!(cfg.store.cache_mb, 32);
        assert!(!cfg.embedded_default);
    }

    #[test]
    fn env_overrides_and_errors() {
        let cfg = Config::load(None, |k| match k {
            "QGATE_LISTEN" => Some("0.0.0.0:9".into()),
            "QGATE_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .unwrap();
        assert!(cfg.embedded_default);
        assert_eq!(cfg.listen, "0.0.0.0:9");
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        assert!(Config::from_toml("bogus = 1").is_err());
        assert!(
            Config::from_toml("[[tenants]]\nname='a'\nbearer_keys=['k']\n[[tenants]]\nname='b'\nbearer_keys=['k']")
                .is_err()
        );
        assert_eq!(derived_project_id("demo").len(), 32);
    }

    #[test]
    fn loopback_and_the_public_demo_credentials() {
        for l in ["127.0.0.1:8080", "localhost:1", "[::1]:8080", "127.1.2.3:9"] {
            assert!(is_loopback(l), "{l}");
        }
        for l in ["0.0.0.0:8080", "10.0.0.1:80", "[::]:8080", "example.com:80"] {
            assert!(!is_loopback(l), "{l}");
        }
        let mut cfg = Config::embedded();
        assert!(check_public_demo(&cfg).is_ok());
        cfg.listen = "0.0.0.0:8080".into();
        assert!(check_public_demo(&cfg).unwrap_err().contains("demo credentials"));
        cfg.tenants[0].bearer_keys = vec!["ifr_own".into()];
        cfg.tenants[0].access_keys[0].secret = "own-secret".into();
        assert!(check_public_demo(&cfg).is_ok());
    }
}
