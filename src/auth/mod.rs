//! Tenants and credentials: who a request acts for.
//!
//! Every credential belongs to one tenant (a namespace of queues): infrai bearer keys, the
//! access-key pairs the signed dialects verify with, and the DMS/CTYun project id. Lookups that
//! compare secrets run in constant time ([`crypto::ct_eq`]). Signature schemes themselves live
//! with their dialect as pure functions; the primitives they share are in [`crypto`].

pub mod crypto;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, derived_mns_account_id, derived_project_id};

/// A tenant as the dialects see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The namespace of its queues.
    pub name: String,
    /// 32 lower-case hex digits.
    pub project_id: String,
    /// MNS account id (digits).
    pub mns_account: String,
    /// MNS message bodies are base64 on the wire (the Python SDK's default): stored decoded, so
    /// the other dialects see the text, and encoded again for MNS consumers.
    pub mns_base64_bodies: bool,
}

/// The credentials in force, replaced as a whole when the configuration is reloaded (SIGHUP):
/// a request reads one table ([`Credentials::load`]) and keeps it for its whole check, so a
/// reload never mixes an old secret with a new tenant.
#[derive(Debug)]
pub struct Credentials {
    current: parking_lot::RwLock<Arc<Auth>>,
}

impl Credentials {
    pub fn new(auth: Auth) -> Self {
        Credentials { current: parking_lot::RwLock::new(Arc::new(auth)) }
    }

    /// The table in force now.
    pub fn load(&self) -> Arc<Auth> {
        self.current.read().clone()
    }

    /// Puts a new table in force (requests already checked keep what they were checked with).
    pub fn replace(&self, auth: Auth) {
        *self.current.write() = Arc::new(auth);
    }
}

/// The credential registry built from the configuration.
#[derive(Debug, Default)]
pub struct Auth {
    bearer: Vec<(String, Arc<Tenant>)>,
    access: HashMap<String, (Arc<Tenant>, String)>,
    projects: HashMap<String, Arc<Tenant>>,
}

impl Auth {
    pub fn from_config(cfg: &Config) -> Self {
        let mut auth = Auth::default();
        for t in &cfg.tenants {
            let tenant = Arc::new(Tenant {
                name: t.name.clone(),
                project_id: t.project_id.clone().unwrap_or_else(|| derived_project_id(&t.name)).to_ascii_lowercase(),
                mns_account: t.mns_account_id.clone().unwrap_or_else(|| derived_mns_account_id(&t.name)),
                mns_base64_bodies: t.mns_body_encoding == crate::config::MnsBodyEncoding::Base64,
            });
            for b in &t.bearer_keys {
                auth.bearer.push((b.clone(), tenant.clone()));
            }
            for k in &t.access_keys {
                auth.access.insert(k.id.clone(), (tenant.clone(), k.secret.clone()));
            }
            auth.projects.insert(tenant.project_id.clone(), tenant.clone());
        }
        auth
    }

    /// The tenant of a bearer key. Every configured key is compared, in constant time each, so
    /// the time taken does not tell how much of a guess was right.
    pub fn bearer(&self, key: &str) -> Option<Arc<Tenant>> {
        let mut found = None;
        for (k, t) in &self.bearer {
            if crypto::ct_eq(k.as_bytes(), key.as_bytes()) {
                found = Some(t.clone());
            }
        }
        found
    }

    /// The tenant and secret of an access key id (ids are not secret).
    pub fn access_key(&self, id: &str) -> Option<(Arc<Tenant>, &str)> {
        self.access.get(id).map(|(t, s)| (t.clone(), s.as_str()))
    }

    /// The tenant owning a project id (case-insensitive).
    pub fn project(&self, project_id: &str) -> Option<Arc<Tenant>> {
        self.projects.get(&project_id.to_ascii_lowercase()).cloned()
    }
}
