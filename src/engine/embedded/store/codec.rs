//! Versioned record encoding.
//!
//! Every stored value is one version byte followed by the record in postcard (a compact,
//! self-describing-free serde format). Version 1 is the only one so far; when a record's shape
//! changes, the old shape stays here as `…V1`, decoding dispatches on the byte, and old data keeps
//! loading. A byte this build does not know is an error, never a misread.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The version byte written by this build.
pub const CURRENT: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(CURRENT);
    // postcard cannot fail on in-memory types that serialize (no maps with non-string keys etc.
    // restrictions apply to it), so a failure here is a programming error worth surfacing loudly.
    postcard::to_io(value, &mut out).expect("record serialises");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&CURRENT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::new(format!("corrupt {what} record: {e}")))
        }
        Some((v, _)) => {
            Err(StoreError::new(format!("{what} record has version {v}, this build reads up to {CURRENT}")))
        }
        None => Err(StoreError::new(format!("empty {what} record"))),
    }
}

/// Decodes a record's leading fields (`T` is a prefix of the stored shape), ignoring the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&CURRENT, rest)) => postcard::take_from_bytes(rest)
            .map(|(v, _)| v)
            .map_err(|e| StoreError::new(format!("corrupt {what} record: {e}"))),
        Some((v, _)) => {
            Err(StoreError::new(format!("{what} record has version {v}, this build reads up to {CURRENT}")))
        }
        None => Err(StoreError::new(format!("empty {what} record"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{DeliveryRecord, DeliveryState};

    #[test]
    fn round_trip_and_version_guard() {
        let r = DeliveryRecord {
            deliveries: 3,
            failures: 1,
            first_delivered_at: 17,
            state: DeliveryState::Leased { until: 99, lease: 5 },
        };
        let bytes = encode(&r);
        assert_eq!(bytes[0], CURRENT);
        assert_eq!(decode::<DeliveryRecord>(&bytes, "delivery").unwrap(), r);
        let mut newer = bytes.clone();
        newer[0] = CURRENT + 1;
        assert!(decode::<DeliveryRecord>(&newer, "delivery").is_err());
        assert!(decode::<DeliveryRecord>(&[], "delivery").is_err());
        assert!(decode::<DeliveryRecord>(&bytes[..bytes.len() - 1], "delivery").is_err());
    }
}
