//! The RSA key that signs pushed requests, and the certificate subscribers check them with.
//!
//! MNS signs each request it pushes to an HTTP endpoint with RSA-SHA1 and names, in a header,
//! the URL of an X.509 certificate holding the public key; receivers download it and verify.
//! The key is stored through the engine (the labels of one record in an internal namespace), so
//! every node of a shared engine signs with the same key and any node's certificate verifies
//! any node's request; the first node to need it creates it, and a concurrent creator adopts the
//! winner's. The certificate is self-signed and made at load: only its public key matters.

use std::collections::BTreeMap;

use base64::Engine as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{Generate, PrivateKey};
use sha1::Sha1;

use crate::core::model::QueueConfig;
use crate::core::{Broker, CoreError, CreateOutcome};

/// Where the key is kept (a control character: never a tenant's namespace).
const NS: &str = "\u{0}push-signing";
const RECORD: &str = "rsa-key";
const LABEL: &str = "pkcs8";

fn internal(e: String) -> CoreError {
    CoreError::Storage(crate::core::StoreError::new(e))
}

/// A loaded signing key and its certificate.
pub struct RsaSigner {
    key: SigningKey<Sha1>,
    cert_pem: String,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner")
    }
}

impl RsaSigner {
    /// Builds a signer from a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<RsaSigner, String> {
        let key = PrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("the signing key does not parse: {e}"))?;
        let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| format!("the signing key is not usable for a certificate: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec!["qgate-push-signing".to_string()])
            .map_err(|e| format!("certificate parameters: {e}"))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "qgate push signing");
        let cert = params.self_signed(&kp).map_err(|e| format!("cannot make the certificate: {e}"))?;
        Ok(RsaSigner { key: SigningKey::<Sha1>::new(key), cert_pem: cert.pem() })
    }

    /// A new 3072-bit key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, String> {
        let key = PrivateKey::try_generate().map_err(|e| format!("cannot generate an RSA key: {e}"))?;
        key.to_pkcs8_pem(LineEnding::LF).map(|p| p.to_string()).map_err(|e| format!("cannot encode the key: {e}"))
    }

    /// Loads the shared key, creating it when no node has yet.
    pub async fn load_or_create(broker: &Broker) -> Result<RsaSigner, CoreError> {
        let stored = match broker.queue(NS, RECORD).await {
            Ok(q) => q.config().labels.get(LABEL).cloned(),
            Err(CoreError::QueueNotFound) => None,
            Err(e) => return Err(e),
        };
        let pem = match stored {
            Some(p) => p,
            None => {
                let fresh = tokio::task::spawn_blocking(Self::generate_pem)
                    .await
                    .map_err(|e| internal(e.to_string()))?
                    .map_err(internal)?;
                let mut labels = BTreeMap::new();
                labels.insert(LABEL.to_string(), fresh);
                let cfg = QueueConfig { labels, ..QueueConfig::default() };
                match broker.create_queue(NS, RECORD, cfg, None).await? {
                    CreateOutcome::Created(r) | CreateOutcome::Exists(r) => {
                        r.config.labels.get(LABEL).cloned().ok_or(CoreError::QueueNotFound)?
                    }
                }
            }
        };
        tokio::task::spawn_blocking(move || Self::from_pem(&pem))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(internal)
    }

    /// Base64 of the RSA-SHA1 (PKCS#1 v1.5) signature of `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(data).to_bytes())
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}
