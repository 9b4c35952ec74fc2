//! The write-ahead log's frame decoder and the operations in it: what a restart reads back
//! from disk, torn or garbled by a crash or a failing device.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qgate::engine::embedded::store::fuzzing::log_segment(data);
});
