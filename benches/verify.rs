//! `SignatureVerifyLayer` against the bare HMAC floor and the `standardwebhooks` crate.
//!
//! * `layer`: one valid request through `SignatureVerifyLayer` (single tenant,
//!   `x-vapi-signature` HMAC-SHA256) over a trivial inner service, in process with `oneshot`.
//!   Building the request is outside the measurement.
//! * `hmac_floor`: the same HMAC with `hmac` + `sha2` over the same `{timestamp}.{body}` bytes,
//!   keyed once, then the header's hex decoded and compared in constant time — the least any
//!   verifier must do.
//! * `standardwebhooks_crate` / `standardwebhooks_layer`: a Standard Webhooks request checked by
//!   `standardwebhooks::Webhook::verify` and by the layer with `Credential::standard_webhooks`.
//!
//! Quick run: `cargo bench --bench verify -- --quick`.

mod support;

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};

use support::{SECRET, SIZES, Tenant, WHSEC, end_of_call_report};

type Req = Request<Full<Bytes>>;

fn request(body: &Bytes, headers: &HeaderMap) -> Req {
    let mut req = Request::post("/api/webhooks/vapi")
        .body(Full::new(body.clone()))
        .expect("valid request");
    *req.headers_mut() = headers.clone();
    req
}

/// A service that answers 200 with an empty body.
fn ok_service() -> impl Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) })
}

/// The layer over [`ok_service`].
fn service(
    credential: Credential,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(SignatureVerifyLayer::new(SingleTenant::new(credential)))
        .service(ok_service())
}

/// What any verifier has to do: MAC `{timestamp}.{body}`, decode the hex header, compare.
fn hmac_floor(key: &Hmac<Sha256>, timestamp: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let mut mac = key.clone();
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let mut presented = [0u8; 32];
    if hex::decode_to_slice(signature, &mut presented).is_err() {
        return false;
    }
    presented.ct_eq(&expected[..]).into()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let vapi = Credential::vapi_signature(SECRET).expect("credential");
    let standard = Credential::standard_webhooks(WHSEC).expect("credential");
    let webhook = standardwebhooks::Webhook::new(WHSEC).expect("secret");
    let key = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    let vapi_service = service(vapi.clone());
    let standard_service = service(standard.clone());

    let mut group = c.benchmark_group("verify");
    for (size, label) in SIZES {
        let body = end_of_call_report(size, Tenant::Last);
        group.throughput(Throughput::Bytes(size as u64));

        // Signed right before measuring: the layer checks the ±300 s window.
        let vapi_headers = Signer::new(&vapi).headers(&body);
        let timestamp = vapi_headers["x-vapi-timestamp"].as_bytes().to_vec();
        let signature = vapi_headers["x-vapi-signature"].as_bytes().to_vec();
        assert!(hmac_floor(&key, &timestamp, &body, &signature));
        let res = rt.block_on(vapi_service.clone().oneshot(request(&body, &vapi_headers)));
        assert_eq!(res.unwrap().status(), StatusCode::OK);

        group.bench_function(BenchmarkId::new("layer", label), |b| {
            b.to_async(&rt).iter_batched(
                || request(&body, &vapi_headers),
                |req| {
                    let svc = vapi_service.clone();
                    async move { black_box(svc.oneshot(req).await) }
                },
                BatchSize::SmallInput,
            )
        });
        // The same request and response through the bare inner service: what the harness
        // itself costs (building, moving and dropping them), so `layer - harness` is the layer.
        group.bench_function(BenchmarkId::new("harness", label), |b| {
            b.to_async(&rt).iter_batched(
                || request(&body, &vapi_headers),
                |req| {
                    let svc = ok_service();
                    async move { black_box(svc.oneshot(req).await) }
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new("hmac_floor", label), |b| {
            b.iter(|| {
                hmac_floor(
                    black_box(&key),
                    black_box(&timestamp),
                    black_box(&body),
                    black_box(&signature),
                )
            })
        });

        let standard_headers = Signer::new(&standard).headers(&body);
        webhook
            .verify(&body, &standard_headers)
            .expect("crate accepts");
        let res = rt.block_on(
            standard_service
                .clone()
                .oneshot(request(&body, &standard_headers)),
        );
        assert_eq!(res.unwrap().status(), StatusCode::OK);

        group.bench_function(BenchmarkId::new("standardwebhooks_crate", label), |b| {
            b.iter(|| black_box(&webhook).verify(black_box(&body), black_box(&standard_headers)))
        });
        group.bench_function(BenchmarkId::new("standardwebhooks_layer", label), |b| {
            b.to_async(&rt).iter_batched(
                || request(&body, &standard_headers),
                |req| {
                    let svc = standard_service.clone();
                    async move { black_box(svc.oneshot(req).await) }
                },
                BatchSize::SmallInput,
            )
        });
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
