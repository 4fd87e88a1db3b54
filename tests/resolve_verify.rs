//! OrgResolveLayer + SignatureVerifyLayer together: cross-tenant requests, uniform 401s, the
//! whole stack under axum.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use uuid::Uuid;
use vapi_webhooks::body::Buffered;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    CachedStore, Credential, InMemoryStore, OrgContext, OrgId, OrgResolveLayer,
    SignatureVerifyLayer, TenantLocator, Verified,
};

struct Tenants {
    a: OrgId,
    b: OrgId,
    cred_a: Credential,
    cred_b: Credential,
    store: InMemoryStore,
}

/// Org A owns `asst-a`, org B owns `asst-b`, org C owns `asst-c` but has no credential.
fn tenants() -> Tenants {
    let (a, b, c) = (
        OrgId::new(Uuid::new_v4()),
        OrgId::new(Uuid::new_v4()),
        OrgId::new(Uuid::new_v4()),
    );
    let cred_a = Credential::vapi_hmac("secret-of-org-a").unwrap();
    let cred_b = Credential::vapi_hmac("secret-of-org-b").unwrap();
    let store = InMemoryStore::builder()
        .assistant("asst-a", a)
        .assistant("asst-b", b)
        .assistant("asst-c", c)
        .credential(a, cred_a.clone())
        .credential(b, cred_b.clone())
        .build();
    Tenants {
        a,
        b,
        cred_a,
        cred_b,
        store,
    }
}

fn payload(assistant: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"message":{{"type":"status-update","status":"ended","call":{{"assistantId":"{assistant}"}}}}}}"#
    ))
}

fn signed(body: &Bytes, credential: Option<&Credential>) -> Request<Body> {
    let mut req = Request::post("/vapi")
        .body(Body::from(body.clone()))
        .unwrap();
    if let Some(credential) = credential {
        req.headers_mut()
            .extend(Signer::new(credential).headers(body));
    }
    req
}

/// Resolve then verify, in front of a handler that counts its runs.
async fn send(store: InMemoryStore, req: Request<Body>) -> (Response<Body>, usize) {
    let runs = Arc::new(AtomicUsize::new(0));
    let service =
        ServiceBuilder::new()
            .layer(OrgResolveLayer::new(store.clone()))
            .layer(SignatureVerifyLayer::new(store))
            .service(service_fn({
                let runs = runs.clone();
                move |req: Request<Buffered>| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let org = req
                        .extensions()
                        .get::<OrgContext>()
                        .map(|ctx| ctx.org_id.to_string());
                    async move {
                        Ok::<_, Infallible>(Response::new(Body::from(org.unwrap_or_default())))
                    }
                }
            }));
    let res = service.oneshot(req).await.unwrap();
    let runs = runs.load(Ordering::SeqCst);
    (res, runs)
}

/// Status, headers and body of a response, for byte-for-byte comparison.
async fn parts(res: Response<Body>) -> (StatusCode, Vec<(String, Vec<u8>)>, Bytes) {
    let status = res.status();
    let mut headers: Vec<_> = headers_of(res.headers());
    headers.sort();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn headers_of(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

#[tokio::test]
async fn each_org_verifies_with_its_own_secret() {
    let t = tenants();
    for (assistant, cred, org) in [("asst-a", &t.cred_a, t.a), ("asst-b", &t.cred_b, t.b)] {
        let body = payload(assistant);
        let (res, runs) = send(t.store.clone(), signed(&body, Some(cred))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(runs, 1);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, org.to_string().as_bytes());
    }
}

#[tokio::test]
async fn cross_tenant_request_is_401_and_the_handler_never_runs() {
    let t = tenants();
    // Org B's assistant, signed with org A's valid secret.
    let body = payload("asst-b");
    let (res, runs) = send(t.store.clone(), signed(&body, Some(&t.cred_a))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(runs, 0);
    let rejection = res.extensions().get::<vapi_webhooks::Rejection>().unwrap();
    assert_eq!(
        rejection.org(),
        Some(&t.b),
        "verified against org B's credentials"
    );
}

#[tokio::test]
async fn unknown_tenant_no_credentials_and_bad_signatures_answer_byte_identically() {
    let t = tenants();
    let bad_signature = {
        let body = payload("asst-a");
        let wrong = Credential::vapi_hmac("not-the-secret").unwrap();
        send(t.store.clone(), signed(&body, Some(&wrong))).await
    };
    let unsigned = send(t.store.clone(), signed(&payload("asst-a"), None)).await;
    let unknown_assistant = send(
        t.store.clone(),
        signed(&payload("asst-stranger"), Some(&t.cred_a)),
    )
    .await;
    let org_without_credentials =
        send(t.store.clone(), signed(&payload("asst-c"), Some(&t.cred_a))).await;
    let cross_tenant = send(t.store.clone(), signed(&payload("asst-b"), Some(&t.cred_a))).await;

    let (reference, runs) = bad_signature;
    assert_eq!(runs, 0);
    let reference = parts(reference).await;
    assert_eq!(reference.0, StatusCode::UNAUTHORIZED);
    for (name, (res, runs)) in [
        ("unsigned", unsigned),
        ("unknown assistant", unknown_assistant),
        ("org without credentials", org_without_credentials),
        ("cross-tenant", cross_tenant),
    ] {
        assert_eq!(runs, 0, "{name}");
        assert_eq!(parts(res).await, reference, "{name}");
    }
}

#[tokio::test]
async fn whole_stack_under_axum_router_layer() {
    use axum::extract::Extension;
    use axum::routing::post;

    let t = tenants();
    let slug_org = OrgId::new(Uuid::new_v4());
    let slug_cred = Credential::vapi_signature("secret-of-the-slug-org").unwrap();
    let backend = InMemoryStore::builder()
        .assistant("asst-a", t.a)
        .slug("acme", slug_org)
        .credential(t.a, t.cred_a.clone())
        .credential(slug_org, slug_cred.clone())
        .build();
    // One cached store serves both layers.
    let store = CachedStore::new(backend);
    let app = axum::Router::new()
        .route(
            "/webhooks/vapi/{tenant}",
            post(
                |Extension(ctx): Extension<OrgContext>,
                 Extension(verified): Extension<Verified>,
                 body: String| async move {
                    assert_eq!(verified.org, Some(ctx.org_id));
                    format!("{} {} {}", ctx.org_id, ctx.source, body.len())
                },
            ),
        )
        // The last layer runs first: resolve, then verify.
        .layer(SignatureVerifyLayer::new(store.clone()))
        .layer(
            OrgResolveLayer::new(store)
                .locator(TenantLocator::payload())
                .locator(TenantLocator::path_after("/webhooks/vapi/")),
        );

    // Payload names org A's assistant.
    let body = payload("asst-a");
    let mut req = Request::post("/webhooks/vapi/acme")
        .body(Body::from(body.clone()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(&t.cred_a).headers(&body));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        text,
        format!("{} payload:message.call.assistantId {}", t.a, body.len()).as_bytes()
    );

    // A transient assistant (no id): the path decides.
    let body =
        Bytes::from_static(br#"{"message":{"type":"status-update","call":{"assistantId":null}}}"#);
    let mut req = Request::post("/webhooks/vapi/acme")
        .body(Body::from(body.clone()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(&slug_cred).headers(&body));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("{slug_org} path {}", body.len()).as_bytes());

    // The slug org's secret does not open org A's assistant.
    let body = payload("asst-a");
    let mut req = Request::post("/webhooks/vapi/acme")
        .body(Body::from(body.clone()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(&slug_cred).headers(&body));
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
