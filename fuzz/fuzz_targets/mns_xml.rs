//! The MNS XML parser (`dialects::mns::xml::parse`): every request body of the MNS dialect
//! goes through it before anything else reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = qgate::dialects::mns::xml::parse(data) {
        // Walk what was parsed, as the handlers do.
        for name in ["MessageBody", "DelaySeconds", "Priority", "ReceiptHandle", "VisibilityTimeout", "Message"] {
            let _ = root.child(name);
            let _ = root.children_named(name).count();
        }
    }
});
