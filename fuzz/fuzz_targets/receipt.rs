//! Receipt handles (`core::ReceiptKey::open`): clients send them back as opaque text, and a
//! forged or garbled one must be refused, never misread or panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qgate::core::ReceiptKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let key = ReceiptKey::new([7; 32]);
    if let Ok(r) = key.open(text) {
        // What opens re-seals to a handle that opens to the same receipt.
        let again = key.open(&key.mint(&r)).expect("a minted handle opens");
        assert_eq!(format!("{again:?}"), format!("{r:?}"));
    }
});
