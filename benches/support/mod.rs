//! Payloads and fixtures shared by the benches.
//!
//! Bodies are the real end-of-call report (`tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json`)
//! resized to an exact byte count: trimmed for 1 KiB, its conversation repeated and its
//! transcript padded for larger sizes. Every body stays a valid Vapi message that names the
//! tenant by `message.call.phoneNumberId`.
#![allow(dead_code)] // each bench uses a part of this module

use bytes::Bytes;
use serde_json::Value;

/// The tenant key in every payload: Org A's phone number in `examples/tenants.toml`.
pub const PHONE_NUMBER_ID: &str = "4a5a04dc-dcbe-45b1-8f64-fd32a253d136";

/// The HMAC secret used by the benches.
pub const SECRET: &str = "bench-secret-of-org-a";

/// A Standard Webhooks secret (`whsec_` + base64).
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The body sizes measured: 1 KiB, 10 KiB, 50 KiB, 1 MiB.
pub const SIZES: [(usize, &str); 4] = [
    (1024, "1KiB"),
    (10 * 1024, "10KiB"),
    (50 * 1024, "50KiB"),
    (1024 * 1024, "1MiB"),
];

/// Where the tenant (`message.call`, `message.phoneNumber`) sits in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tenant {
    /// `call` and `phoneNumber` are the first keys of `message`.
    First,
    /// `call` and `phoneNumber` are the last keys of `message`.
    Last,
}

impl Tenant {
    pub fn label(self) -> &'static str {
        match self {
            Self::First => "tenant_first",
            Self::Last => "tenant_last",
        }
    }
}

const FIXTURE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json"
));

/// An end-of-call report of exactly `size` bytes with the tenant placed as asked.
///
/// # Panics
///
/// If `size` is below what the trimmed report needs (about 700 bytes), or the result is not a
/// valid Vapi message naming [`PHONE_NUMBER_ID`].
pub fn end_of_call_report(size: usize, tenant: Tenant) -> Bytes {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    let message = fixture["message"]
        .as_object()
        .expect("message object")
        .clone();
    let field = |name: &str| message.get(name).cloned().unwrap_or(Value::Null);

    let full = size >= 8 * 1024;
    let mut call = field("call");
    if !full {
        // The squad definition alone is 1.4 KB.
        call.as_object_mut().expect("call object").remove("squad");
    }
    let conversation = field("messages").as_array().expect("messages").clone();

    // Key order of the real report; `call` and `phoneNumber` move to one end.
    let mut head: Vec<(&str, Value)> = vec![
        ("type", field("type")),
        ("endedReason", field("endedReason")),
    ];
    let mut tail: Vec<(&str, Value)> = vec![("customer", field("customer"))];
    if full {
        head.push(("summary", field("summary")));
        tail.push(("analysis", field("analysis")));
        tail.push(("recordingUrl", field("recordingUrl")));
        tail.push(("stereoRecordingUrl", field("stereoRecordingUrl")));
    }
    tail.push(("timestamp", field("timestamp")));
    let mut tenant_fields = vec![("call", call)];
    if full {
        tenant_fields.push(("phoneNumber", field("phoneNumber")));
    }

    let render = |messages: &[Value], transcript: &str| -> String {
        let mut fields = Vec::new();
        if tenant == Tenant::First {
            fields.extend(tenant_fields.iter().cloned());
        }
        fields.extend(head.iter().cloned());
        fields.push(("transcript", Value::String(transcript.to_owned())));
        if full {
            fields.push(("messages", Value::Array(messages.to_vec())));
            fields.push((
                "artifact",
                serde_json::json!({ "messages": messages.to_vec() }),
            ));
        }
        fields.extend(tail.iter().cloned());
        if tenant == Tenant::Last {
            fields.extend(tenant_fields.iter().cloned());
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
            .collect();
        format!("{{\"message\":{{{}}}}}", body.join(","))
    };

    // Repeat the conversation (in `messages` and `artifact.messages`) while it fits, leaving
    // room for the transcript, then pad the transcript to the exact size.
    // Each turn appears twice; every turn after the first adds a comma to each array.
    let mut messages = Vec::new();
    if full {
        let mut len = render(&[], "").len();
        loop {
            let turn = &conversation[messages.len() % conversation.len()];
            let grows = 2 * (turn.to_string().len() + usize::from(!messages.is_empty()));
            if len + grows + 512 > size {
                break;
            }
            len += grows;
            messages.push(turn.clone());
        }
    }
    let base = render(&messages, "").len();
    assert!(
        base < size,
        "{size} bytes is too small for a report ({base})"
    );
    const LINE: &str = "User: What's the weather in Danville, California? AI: It is windy. ";
    let transcript: String = LINE.chars().cycle().take(size - base).collect();
    let body = render(&messages, &transcript);
    assert_eq!(body.len(), size);

    let bytes = Bytes::from(body);
    check(&bytes);
    bytes
}

/// Panics unless `body` is a valid Vapi message whose tenant is [`PHONE_NUMBER_ID`].
pub fn check(body: &[u8]) {
    let message = vapi_webhooks::ServerMessage::from_slice(body).expect("a valid Vapi message");
    assert_eq!(message.type_name(), "end-of-call-report");
    let keys = vapi_webhooks::resolve::probe(body).expect("probe reads the payload");
    assert_eq!(
        keys.get("message.call.phoneNumberId"),
        Some(PHONE_NUMBER_ID)
    );
}

/// Unix seconds now, as the header text.
pub fn now_timestamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string()
}

/// Criterion settings that keep `cargo bench --bench X -- --quick` short on a small machine.
pub fn config() -> criterion::Criterion {
    criterion::Criterion::default()
        .without_plots()
        .sample_size(20)
        .nresamples(10_000)
        .warm_up_time(std::time::Duration::from_millis(200))
        .measurement_time(std::time::Duration::from_millis(500))
}
