//! Signature, timestamp and id headers as a sender controls them: parsing never panics, and
//! nothing verifies without the secret.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use vapi_webhooks::Verifier;
use vapi_webhooks::credential::Credential;

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
}

const NAMES: [&str; 9] = [
    "x-signature",
    "x-timestamp",
    "x-vapi-signature",
    "x-vapi-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "x-vapi-secret",
];

fuzz_target!(|input: Input| {
    let credentials = [
        Credential::vapi_hmac("fuzz-secret").unwrap(),
        Credential::vapi_signature("fuzz-secret").unwrap(),
        Credential::standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        Credential::bearer("fuzz-token-that-is-long").unwrap(),
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in input.headers.iter().take(16) {
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        headers.append(HeaderName::from_static(NAMES[*name as usize % NAMES.len()]), value);
    }
    let result = Verifier::new().verify(
        &credentials,
        &Method::POST,
        &Uri::from_static("/vapi"),
        &headers,
        &input.body,
    );
    match result {
        Ok(_) => panic!("verified without the secret"),
        Err(err) => assert_eq!(err.status(), StatusCode::UNAUTHORIZED),
    }
});
