//! The sled record codec: every kind of record the store keeps, decoded from arbitrary bytes;
//! what decodes must survive an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qgate::engine::embedded::store::fuzzing::record(data);
});
