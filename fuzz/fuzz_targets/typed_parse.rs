//! The typed parse on arbitrary bytes: never panics, delivers every JSON object, and its
//! errors never quote the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vapi_webhooks::ServerMessage;

fuzz_target!(|data: &[u8]| {
    let parsed = ServerMessage::from_slice(data);
    let is_object = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data).is_ok();
    match parsed {
        Ok(message) => {
            let _ = (message.type_name(), message.timestamp(), message.call());
        }
        Err(err) => {
            // Only a body that is not a JSON object may be refused.
            assert!(!is_object, "a JSON object was refused: {err}");
            let text = err.to_string();
            assert!(text.len() < 512, "unbounded error text");
        }
    }
});
