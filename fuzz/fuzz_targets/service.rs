//! The whole resolve → verify service on arbitrary requests: every refusal is one of the
//! documented answers, nothing unsigned reaches the handler, nothing panics.
#![no_main]

use std::convert::Infallible;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceBuilder, ServiceExt};
use vapi_webhooks::body::Buffered;
use vapi_webhooks::{
    Credential, InMemoryStore, OrgId, OrgResolveLayer, SignatureVerifyLayer, TenantLocator,
};

#[derive(Arbitrary, Debug)]
struct Input {
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let org: OrgId = "a0000000-0000-0000-0000-000000000001".parse().unwrap();
    let store = InMemoryStore::builder()
        .assistant("asst-1", org)
        .phone_number("pn-1", org)
        .vapi_org("vorg-1", org)
        .slug("org-a", org)
        .credential(org, Credential::vapi_hmac("fuzz-secret").unwrap())
        .credential(org, Credential::bearer("fuzz-token-that-is-long").unwrap())
        .build();
    let service = ServiceBuilder::new()
        .layer(
            OrgResolveLayer::new(store.clone())
                .locator(TenantLocator::path_after("/vapi/"))
                .locator(TenantLocator::payload())
                .body_limit(64 * 1024),
        )
        .layer(SignatureVerifyLayer::new(store))
        .service_fn(|_: Request<Buffered>| async {
            panic!("an unsigned request reached the handler");
            #[allow(unreachable_code)]
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
    let path = format!("/vapi/{}", input.path);
    let Ok(mut req) = Request::post(path.as_str()).body(Full::new(Bytes::from(input.body)))
    else {
        return;
    };
    for (name, value) in input.headers.iter().take(16) {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        req.headers_mut().append(name, value);
    }
    let res = futures_executor::block_on(service.oneshot(req)).unwrap();
    let status = res.status();
    let body = futures_executor::block_on(res.into_body().collect())
        .unwrap()
        .to_bytes();
    let expected: &[u8] = match status {
        StatusCode::BAD_REQUEST => br#"{"error":"bad request"}"#,
        StatusCode::UNAUTHORIZED => br#"{"error":"unauthorized"}"#,
        StatusCode::PAYLOAD_TOO_LARGE => br#"{"error":"payload too large"}"#,
        other => panic!("undocumented answer {other}"),
    };
    assert_eq!(&body[..], expected);
});
