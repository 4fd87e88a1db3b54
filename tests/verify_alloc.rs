//! Fixed per-request work: how many heap allocations one verified 1 KiB request costs through
//! `SignatureVerifyLayer` and through both layers (with the replay guard). A regression fails
//! here; the figures are in the README.
//!
//! A dedicated test binary with a counting global allocator; counting is switched on for the
//! measuring thread alone, around the service call only (not building the request).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};
use vapi_webhooks::body::Buffered;
use vapi_webhooks::replay::ReplayGuard;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    Credential, InMemoryStore, OrgId, OrgResolveLayer, SignatureVerifyLayer, SingleTenant,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if MEASURING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn body() -> Bytes {
    let pad = "x".repeat(900);
    Bytes::from(format!(
        r#"{{"message":{{"type":"status-update","status":"ended","call":{{"assistantId":"asst-1"}},"pad":"{pad}"}}}}"#
    ))
}

/// Allocations of one call of `service` on a fresh signed request, after a warm-up call.
async fn allocations<S>(mut service: S, credential: &Credential) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    let mut measured = 0;
    for round in 0..2 {
        let body = body();
        let mut req = Request::post("/vapi")
            .body(Full::new(body.clone()))
            .unwrap();
        req.headers_mut().extend(
            Signer::new(credential)
                .message_id(format!("m{round}"))
                .headers(&body),
        );
        let service = service.ready().await.unwrap();
        ALLOCATIONS.store(0, Ordering::SeqCst);
        MEASURING.with(|m| m.set(true));
        let res = service.call(req).await.unwrap();
        MEASURING.with(|m| m.set(false));
        assert_eq!(res.status(), StatusCode::OK);
        measured = ALLOCATIONS.load(Ordering::SeqCst);
    }
    measured
}

fn handler() -> impl Service<
    Request<Buffered>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_: Request<Buffered>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

#[tokio::test(flavor = "current_thread")]
async fn fixed_work_per_request_stays_small() {
    let credential = Credential::vapi_hmac("alloc-secret").unwrap();
    let verify_only = ServiceBuilder::new()
        .layer(SignatureVerifyLayer::new(SingleTenant::new(
            credential.clone(),
        )))
        .service(handler());
    let verify = allocations(verify_only, &credential).await;

    let org = OrgId::new(uuid::Uuid::from_u128(1));
    let store = InMemoryStore::builder()
        .assistant("asst-1", org)
        .credential(org, credential.clone())
        .build();
    let both = ServiceBuilder::new()
        .layer(OrgResolveLayer::new(store.clone()))
        .layer(SignatureVerifyLayer::new(store).replay_guard(ReplayGuard::in_memory()))
        .service(handler());
    let pipeline = allocations(both, &credential).await;
    eprintln!("allocations per request: verify {verify}, resolve + verify + replay {pipeline}");
    // Measured at 10 and 17 (the boxed check futures, the provider and store calls, the
    // extensions map and its entries); one of room, no more.
    assert!(verify <= 11, "verify: {verify}");
    assert!(pipeline <= 18, "resolve + verify + replay: {pipeline}");
}
