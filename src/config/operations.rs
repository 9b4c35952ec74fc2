//! What operators configure about running qgate rather than about its queues: the admin
//! listener, TLS, the log format, and the guard that keeps the public demo credentials off the
//! network.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, DEMO_ACCESS_KEY, DEMO_BEARER, DEMO_SECRET};

/// See [`Config::log_format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The admin listener: metrics, the admin API and the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens; `""` disables it.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer tokens of the admin API and console.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// `/metrics` without a token.
    #[serde(default)]
    pub metrics_public: bool,
    /// TLS on the admin listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// A certificate chain and its private key, PEM files (reloaded on SIGHUP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: default_admin_listen(), tokens: Vec::new(), metrics_public: false, tls: None }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9180".into()
}

/// A fresh admin token (`adm_` and 32 hex digits), for the embedded default.
pub fn generated_admin_token() -> String {
    format!("adm_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Whether an address (`host:port`) is reachable only from this machine.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses the public demo credentials (`demo-ak`/`demo-sk`, `ifr_demo`) on an address other
/// machines can reach: anyone who read the README could use them.
pub fn check_public_demo(cfg: &Config) -> Result<(), String> {
    if is_loopback(&cfg.listen) {
        return Ok(());
    }
    let public = cfg.tenants.iter().any(|t| {
        t.bearer_keys.iter().any(|b| b == DEMO_BEARER)
            || t.access_keys.iter().any(|k| k.id == DEMO_ACCESS_KEY && k.secret == DEMO_SECRET)
    });
    if public {
        return Err(format!(
            "refusing to serve the public demo credentials on {}: configure your own tenants \
             (qgate serve --config FILE), listen on 127.0.0.1, or pass --allow-demo-credentials",
            cfg.listen
        ));
    }
    Ok(())
}
