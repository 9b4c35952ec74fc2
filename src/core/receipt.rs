//! Receipt handles: opaque, URL-safe, unforgeable names of one delivery.
//!
//! A handle carries the queue's salt, the group, the message sequence and the lease id, sealed
//! with a truncated HMAC-SHA256 under the server key (kept in the data dir, so handles survive a
//! restart). Decoding tells a handle this server never minted for this queue (malformed, forged,
//! foreign: [`CoreError::ReceiptMalformed`]) apart from one it did mint; whether the latter is
//! still live is decided against the queue's state (stale: [`CoreError::ReceiptStale`]).
//! The alphabet is base64url without padding, `[A-Za-z0-9_-]`, so handles travel unescaped in
//! query strings (MNS clients put them in URLs raw).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::error::CoreError;

const VERSION: u8 = 1;
const MAC_LEN: usize = 12;
const BODY_LEN: usize = 1 + 1 + 8 + 4 + 8 + 8;

/// What a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub queue_salt: u64,
    pub group: u32,
    pub seq: u64,
    pub lease: u64,
    /// A lease on a dead letter (DMS/CTYun dead-letter consume) rather than a message.
    pub dead: bool,
}

/// The server key handles are sealed with.
#[derive(Clone)]
pub struct ReceiptKey {
    key: [u8; 32],
}

impl std::fmt::Debug for ReceiptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptKey(..)")
    }
}

impl ReceiptKey {
    pub fn new(key: [u8; 32]) -> Self {
        ReceiptKey { key }
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        m.update(body);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Mints the handle for a delivery.
    pub fn mint(&self, r: &Receipt) -> String {
        let mut buf = [0u8; BODY_LEN + MAC_LEN];
        buf[0] = VERSION;
        buf[1] = r.dead as u8;
        buf[2..10].copy_from_slice(&r.queue_salt.to_be_bytes());
        buf[10..14].copy_from_slice(&r.group.to_be_bytes());
        buf[14..22].copy_from_slice(&r.seq.to_be_bytes());
        buf[22..30].copy_from_slice(&r.lease.to_be_bytes());
        let mac = self.mac(&buf[..BODY_LEN]);
        buf[BODY_LEN..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Opens a handle, checking its seal. Any defect is [`CoreError::ReceiptMalformed`].
    pub fn open(&self, handle: &str) -> Result<Receipt, CoreError> {
        let mut buf = [0u8; BODY_LEN + MAC_LEN + 3];
        let n = URL_SAFE_NO_PAD.decode_slice(handle.as_bytes(), &mut buf).map_err(|_| CoreError::ReceiptMalformed)?;
        if n != BODY_LEN + MAC_LEN || buf[0] != VERSION || buf[1] > 1 {
            return Err(CoreError::ReceiptMalformed);
        }
        let want = self.mac(&buf[..BODY_LEN]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &buf[BODY_LEN..BODY_LEN + MAC_LEN])) {
            return Err(CoreError::ReceiptMalformed);
        }
        let u64_at = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        Ok(Receipt {
            dead: buf[1] == 1,
            queue_salt: u64_at(2),
            group: u32::from_be_bytes(buf[10..14].try_into().expect("4 bytes")),
            seq: u64_at(14),
            lease: u64_at(22),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ReceiptKey {
        ReceiptKey::new([b; 32])
    }

    #[test]
    fn round_trip_is_url_safe() {
        let r = Receipt { queue_salt: u64::MAX - 3, group: 7, seq: 42, lease: 99, dead: true };
        let h = key(1).mint(&r);
        assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{h}");
        assert_eq!(key(1).open(&h).unwrap(), r);
    }

    #[test]
    fn other_key_tampering_and_garbage_are_malformed() {
        let r = Receipt { queue_salt: 1, group: 0, seq: 2, lease: 3, dead: false };
        let h = key(1).mint(&r);
        assert!(matches!(key(2).open(&h), Err(CoreError::ReceiptMalformed)));
        // Flip one character in the middle.
        let mut b = h.clone().into_bytes();
        b[10] = if b[10] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(b).unwrap();
        assert!(matches!(key(1).open(&tampered), Err(CoreError::ReceiptMalformed)));
        for junk in ["", "abc", "!!!!", &h[..h.len() - 1], &format!("{h}AA")] {
            assert!(matches!(key(1).open(junk), Err(CoreError::ReceiptMalformed)), "{junk}");
        }
    }
}
