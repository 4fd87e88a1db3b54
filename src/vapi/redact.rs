//! Removing the secrets real payloads echo, before a message is logged or stored.
//!
//! Vapi echoes tool server secrets (`server.secret`), the assistant's `serverUrlSecret`, and
//! phone provider credentials (`twilioAuthToken`, …) in the messages it sends. [`redact`]
//! returns the JSON with the value of every **secret key** replaced by `"[REDACTED]"`, at any
//! depth, and everything else unchanged. A `null` stays `null` (there is nothing to hide).
//!
//! A key is secret (compared ASCII case-insensitively) when it
//!
//! * is one of [`SECRET_KEYS`]: `secret`, `serverUrlSecret`, `authToken`, `twilioAuthToken`,
//!   `apiKey`, `apiSecret`, `password`, `privateKey`, `clientSecret`, `credential`,
//!   `credentials`, `authorization`, `x-vapi-secret`, `accessToken`, `refreshToken`; or
//! * ends in `token`, `secret`, `password` or `apikey` (e.g. `vonageApiSecret`,
//!   `bearerToken`). `credentialId` and `maxTokens` are **not** secret.
//!
//! It parses into `serde_json::Value` (it is an opt-in helper for after verification, not the
//! request path) and writes compact JSON; object key order is kept as serde_json sorts it.
//!
//! # Example
//!
//! ```
//! let body = br#"{"message":{"type":"tool-calls","toolWithToolCallList":[
//!   {"server":{"url":"https://x.example","secret":"12345"}}],
//!   "phoneNumber":{"id":"p1","twilioAuthToken":"tok","twilioAccountSid":null}}}"#;
//! let clean = vapi_webhooks::vapi::redact(body).unwrap();
//! assert!(!clean.contains("12345") && !clean.contains("tok\""));
//! assert!(clean.contains(r#""secret":"[REDACTED]""#));
//! assert!(clean.contains(r#""id":"p1""#));
//! ```

use serde_json::Value;

/// The keys whose values [`redact`] always replaces (plus any key ending in `token`,
/// `secret`, `password` or `apikey`).
pub const SECRET_KEYS: &[&str] = &[
    "secret",
    "serverUrlSecret",
    "authToken",
    "twilioAuthToken",
    "apiKey",
    "apiSecret",
    "password",
    "privateKey",
    "clientSecret",
    "credential",
    "credentials",
    "authorization",
    "x-vapi-secret",
    "accessToken",
    "refreshToken",
];

const SUFFIXES: &[&str] = &["token", "secret", "password", "apikey"];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Whether `key` names a secret (see the [module docs](self)).
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Returns `json` with the values of secret keys replaced by `"[REDACTED]"`.
///
/// Fails only if `json` is not JSON.
pub fn redact(json: impl AsRef<[u8]>) -> Result<String, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(json.as_ref())?;
    redact_value(&mut value);
    serde_json::to_string(&value)
}

/// Replaces, in place, the values of secret keys anywhere in `value`.
pub(crate) fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}
