//! One request through the whole stack against the handler a user would write by hand.
//!
//! * `stack`: an axum `Router` with `OrgResolveLayer` + `SignatureVerifyLayer` over an
//!   `InMemoryStore`, and a handler taking `Org` and `VapiEvent`;
//! * `inline`: an axum handler with no layers that reads the body to `Bytes`, checks the
//!   `x-vapi-timestamp` window, computes the HMAC, compares it with `subtle`, and parses with
//!   `ServerMessage::from_slice` — single-tenant, so it does less than the stack.
//!
//! Both in process with `oneshot`; building the request is outside the measurement.
//!
//! Quick run: `cargo bench --bench pipeline -- --quick`.

mod support;

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, StatusCode};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower::ServiceExt;
use uuid::Uuid;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    Credential, InMemoryStore, Org, OrgId, OrgResolveLayer, ServerMessage, SignatureVerifyLayer,
    VapiEvent,
};

use support::{PHONE_NUMBER_ID, SECRET, SIZES, Tenant, end_of_call_report};

async fn stack_handler(Org(org): Org, event: VapiEvent) -> StatusCode {
    black_box((&org, &event));
    StatusCode::OK
}

fn stack(credential: Credential) -> Router {
    let org = OrgId::new(Uuid::from_u128(0xA));
    let store = InMemoryStore::builder()
        .phone_number(PHONE_NUMBER_ID, org)
        .credential(org, credential)
        .build();
    Router::new()
        .route("/api/webhooks/vapi", post(stack_handler))
        .layer(SignatureVerifyLayer::new(store.clone()))
        .layer(OrgResolveLayer::new(store))
}

/// The hand-written handler: timestamp window, HMAC, constant-time compare, typed parse.
async fn inline_handler(
    State(key): State<Hmac<Sha256>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (Some(timestamp), Some(signature)) = (
        headers.get("x-vapi-timestamp"),
        headers.get("x-vapi-signature"),
    ) else {
        return StatusCode::UNAUTHORIZED;
    };
    let Some(sent) = timestamp.to_str().ok().and_then(|t| t.parse::<u64>().ok()) else {
        return StatusCode::UNAUTHORIZED;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(sent) > 300 {
        return StatusCode::UNAUTHORIZED;
    }
    let mut mac = key;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected = mac.finalize().into_bytes();
    let mut presented = [0u8; 32];
    if hex::decode_to_slice(signature.as_bytes(), &mut presented).is_err()
        || !bool::from(presented.ct_eq(&expected[..]))
    {
        return StatusCode::UNAUTHORIZED;
    }
    match ServerMessage::from_slice(&body) {
        Ok(message) => {
            black_box(&message);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn inline() -> Router {
    let key = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    Router::new()
        .route("/api/webhooks/vapi", post(inline_handler))
        .with_state(key)
}

fn request(body: &Bytes, headers: &HeaderMap) -> Request<Body> {
    let mut req = Request::post("/api/webhooks/vapi")
        .body(Body::from(body.clone()))
        .expect("valid request");
    *req.headers_mut() = headers.clone();
    req
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let credential = Credential::vapi_signature(SECRET).expect("credential");
    let routers = [("stack", stack(credential.clone())), ("inline", inline())];

    let mut group = c.benchmark_group("pipeline");
    for (size, label) in SIZES {
        let body = end_of_call_report(size, Tenant::Last);
        group.throughput(Throughput::Bytes(size as u64));
        let headers = Signer::new(&credential).headers(&body);
        for (name, router) in &routers {
            let res = rt.block_on(router.clone().oneshot(request(&body, &headers)));
            assert_eq!(res.unwrap().status(), StatusCode::OK, "{name} {label}");
            group.bench_function(BenchmarkId::new(*name, label), |b| {
                b.to_async(&rt).iter_batched(
                    || request(&body, &headers),
                    |req| {
                        let router = router.clone();
                        async move { black_box(router.oneshot(req).await) }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Plots take longer than the measurements; the figures are in the terminal output.
    config = support::config();
    targets = bench
}
criterion_main!(benches);
