//! OrgResolveLayer: fixtures, locators, rejections, extensions, tracing.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use uuid::Uuid;
use vapi_webhooks::body::Buffered;
use vapi_webhooks::reject::Reason;
use vapi_webhooks::resolve::{ProbeError, ResolveError};
use vapi_webhooks::store::StoreError;
use vapi_webhooks::{
    AssistantOrgStore, InMemoryStore, KeySource, OrgContext, OrgId, OrgResolveLayer, RawBody,
    Rejection, TenantKey, TenantLocator,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vapi/");
/// The phone number id in the three vapi4k captures.
const VAPI4K_PHONE: &str = "4a5a04dc-dcbe-45b1-8f64-fd32a253d136";
/// The Vapi org id in the two mbvapi4k web-call captures.
const MBVAPI4K_ORG: &str = "679a13ec-f40d-4055-8959-797c4ee1694b";

fn fixture(name: &str) -> Bytes {
    Bytes::from(std::fs::read(format!("{FIXTURES}{name}")).unwrap())
}

fn org() -> OrgId {
    OrgId::new(Uuid::new_v4())
}

/// What the handler saw, and how often it ran.
#[derive(Clone, Default)]
struct Seen {
    runs: Arc<AtomicUsize>,
    ctx: Arc<Mutex<Option<OrgContext>>>,
    body: Arc<Mutex<Option<Bytes>>>,
}

impl Seen {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    fn ctx(&self) -> OrgContext {
        self.ctx
            .lock()
            .unwrap()
            .clone()
            .expect("handler saw an OrgContext")
    }
    fn body(&self) -> Bytes {
        self.body.lock().unwrap().clone().unwrap()
    }
}

async fn send<S, R>(layer: OrgResolveLayer<S, R>, req: Request<Body>) -> (Response<Body>, Seen)
where
    S: AssistantOrgStore + ?Sized,
    R: vapi_webhooks::OnReject<Body>,
{
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        service_fn(move |req: Request<Buffered>| {
            let seen = seen.clone();
            async move {
                seen.runs.fetch_add(1, Ordering::SeqCst);
                *seen.ctx.lock().unwrap() = req.extensions().get::<OrgContext>().cloned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                *seen.body.lock().unwrap() = Some(body);
                Ok::<_, Infallible>(Response::new(Body::from("handled")))
            }
        })
    };
    let res = layer.layer(handler).oneshot(req).await.unwrap();
    (res, seen)
}

fn post(uri: &str, body: impl Into<Bytes>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

async fn body_of(res: Response<Body>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

fn resolve_error(res: &Response<Body>) -> ResolveError {
    match res
        .extensions()
        .get::<Rejection>()
        .expect("a Rejection")
        .reason()
    {
        Reason::Resolve(err) => err.clone(),
        other => panic!("not a resolve rejection: {other:?}"),
    }
}

async fn assert_rejected(res: Response<Body>, seen: &Seen, status: StatusCode, body: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(seen.runs(), 0, "the handler must not run");
    assert_eq!(body_of(res).await, body.as_bytes());
}

#[tokio::test]
async fn vapi4k_fixtures_resolve_through_their_phone_number() {
    let a = org();
    let store = InMemoryStore::builder()
        .phone_number(VAPI4K_PHONE, a)
        // Mapped too, to show the phone number comes first.
        .vapi_org("379a13ec-f40d-4055-8959-797c4ee1694s", org())
        .build();
    for name in [
        "vapi4k_assistantRequest.json",
        "vapi4k_toolRequest1.json",
        "vapi4k_endOfCallReportRequest.json",
    ] {
        let bytes = fixture(name);
        let (res, seen) = send(
            OrgResolveLayer::new(store.clone()),
            post("/vapi", bytes.clone()),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        assert_eq!(
            seen.ctx(),
            OrgContext::new(
                a,
                TenantKey::PhoneNumber(VAPI4K_PHONE.into()),
                KeySource::Payload("message.call.phoneNumberId")
            ),
            "{name}"
        );
        assert_eq!(
            seen.body(),
            bytes,
            "{name}: the handler reads the body as received"
        );
    }
}

#[tokio::test]
async fn mbvapi4k_web_calls_have_no_key_for_the_payload_locator_alone() {
    // They carry only Vapi's org id, which counts only when the store maps it. Unmapped, it is
    // an unknown key: the same 401 as a mapped one with a bad signature, so a client learns
    // nothing about which Vapi org ids are tenants.
    let store = InMemoryStore::builder().slug("acme", org()).build();
    for name in ["mbvapi4k_statusUpdate2.json", "mbvapi4k_functionCall.json"] {
        let (res, seen) = send(
            OrgResolveLayer::new(store.clone()),
            post("/vapi", fixture(name)),
        )
        .await;
        assert!(
            matches!(resolve_error(&res), ResolveError::UnknownTenant),
            "{name}"
        );
        assert_rejected(
            res,
            &seen,
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized"}"#,
        )
        .await;
    }
}

#[tokio::test]
async fn mbvapi4k_web_calls_resolve_through_a_slug_locator() {
    let a = org();
    let store = InMemoryStore::builder().slug("acme", a).build();
    let orders = [
        vec![
            TenantLocator::path_after("/webhooks/vapi/"),
            TenantLocator::payload(),
        ],
        // Payload first: the unmapped Vapi org id is passed over, the path decides.
        vec![
            TenantLocator::payload(),
            TenantLocator::path_after("/webhooks/vapi/"),
        ],
    ];
    for locators in orders {
        for name in ["mbvapi4k_statusUpdate2.json", "mbvapi4k_functionCall.json"] {
            let layer = OrgResolveLayer::new(store.clone()).locators(locators.clone());
            let (res, seen) = send(layer, post("/webhooks/vapi/acme", fixture(name))).await;
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            assert_eq!(
                seen.ctx(),
                OrgContext::new(a, TenantKey::Slug("acme".into()), KeySource::Path)
            );
        }
    }
}

#[tokio::test]
async fn mbvapi4k_web_calls_resolve_through_a_mapped_vapi_org() {
    let a = org();
    let store = InMemoryStore::builder().vapi_org(MBVAPI4K_ORG, a).build();
    for name in ["mbvapi4k_statusUpdate2.json", "mbvapi4k_functionCall.json"] {
        let (res, seen) = send(
            OrgResolveLayer::new(store.clone()),
            post("/vapi", fixture(name)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        assert_eq!(
            seen.ctx(),
            OrgContext::new(
                a,
                TenantKey::VapiOrg(MBVAPI4K_ORG.into()),
                KeySource::Payload("message.call.orgId")
            )
        );
    }
}

#[tokio::test]
async fn reply_fixtures_name_no_tenant() {
    // `{"assistant":{…}}` and `{"results":[…]}` are replies, not server messages: a top-level
    // `assistant` object is no tenant location, so posting one gets 400.
    let store = InMemoryStore::builder().slug("acme", org()).build();
    for name in [
        "mbvapi4k_assistantRequestResponse.json",
        "mbvapi4k_toolCallResponse.json",
    ] {
        let (res, seen) = send(
            OrgResolveLayer::new(store.clone()),
            post("/vapi", fixture(name)),
        )
        .await;
        assert!(
            matches!(resolve_error(&res), ResolveError::NoTenantKey),
            "{name}"
        );
        assert_rejected(
            res,
            &seen,
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad request"}"#,
        )
        .await;
    }
}

#[tokio::test]
async fn an_unknown_key_is_401_and_later_keys_are_not_tried() {
    let a = org();
    let store = InMemoryStore::builder()
        .phone_number("pn", a)
        .slug("acme", a)
        .build();
    // Unknown assistant id before a known phone number id.
    let body = r#"{"message":{"call":{"assistantId":"stranger","phoneNumberId":"pn"}}}"#;
    let (res, seen) = send(OrgResolveLayer::new(store.clone()), post("/vapi", body)).await;
    assert!(matches!(resolve_error(&res), ResolveError::UnknownTenant));
    assert_eq!(res.extensions().get::<Rejection>().unwrap().org(), None);
    assert_rejected(
        res,
        &seen,
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthorized"}"#,
    )
    .await;

    // Unknown header slug before a known path slug.
    let layer = OrgResolveLayer::new(store)
        .locator(TenantLocator::header(HeaderName::from_static("x-tenant")))
        .locator(TenantLocator::path_after("/webhooks/vapi/"));
    let req = Request::post("/webhooks/vapi/acme")
        .header("x-tenant", "stranger")
        .body(Body::from("{}"))
        .unwrap();
    let (res, seen) = send(layer, req).await;
    assert_rejected(
        res,
        &seen,
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthorized"}"#,
    )
    .await;
}

#[tokio::test]
async fn a_known_vapi_org_is_not_reached_when_an_earlier_key_is_unknown() {
    let store = InMemoryStore::builder().vapi_org("vorg", org()).build();
    let body = r#"{"message":{"call":{"assistantId":"stranger","orgId":"vorg"}}}"#;
    let (res, seen) = send(OrgResolveLayer::new(store), post("/vapi", body)).await;
    assert_rejected(
        res,
        &seen,
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthorized"}"#,
    )
    .await;
}

#[tokio::test]
async fn an_unmapped_vapi_org_from_a_custom_locator_falls_through() {
    let a = org();
    let store = InMemoryStore::builder().assistant("asst", a).build();
    let layer = OrgResolveLayer::new(store).locators([
        TenantLocator::custom(|_, _| Some(TenantKey::VapiOrg("unmapped".into()))),
        TenantLocator::payload(),
    ]);
    let (res, seen) = send(layer, post("/vapi", r#"{"assistantId":"asst"}"#)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.ctx().key, TenantKey::Assistant("asst".into()));
}

#[tokio::test]
async fn each_payload_location_resolves_with_its_source() {
    let cases = [
        (
            r#"{"message":{"call":{"assistantId":"k"}}}"#,
            TenantKey::Assistant("k".into()),
            "message.call.assistantId",
        ),
        (
            r#"{"message":{"assistant":{"id":"k"}}}"#,
            TenantKey::Assistant("k".into()),
            "message.assistant.id",
        ),
        (
            r#"{"message":{"call":{"squadId":"k"}}}"#,
            TenantKey::Squad("k".into()),
            "message.call.squadId",
        ),
        (
            r#"{"message":{"call":{"phoneNumberId":"k"}}}"#,
            TenantKey::PhoneNumber("k".into()),
            "message.call.phoneNumberId",
        ),
        (
            r#"{"message":{"phoneNumber":{"id":"k"}}}"#,
            TenantKey::PhoneNumber("k".into()),
            "message.phoneNumber.id",
        ),
        (
            r#"{"assistantId":"k"}"#,
            TenantKey::Assistant("k".into()),
            "assistantId",
        ),
        (
            r#"{"call":{"assistantId":"k"}}"#,
            TenantKey::Assistant("k".into()),
            "call.assistantId",
        ),
        (
            r#"{"call":{"metadata":{"assistantId":"k"}}}"#,
            TenantKey::Assistant("k".into()),
            "call.metadata.assistantId",
        ),
        (
            r#"{"message":{"call":{"orgId":"k"}}}"#,
            TenantKey::VapiOrg("k".into()),
            "message.call.orgId",
        ),
        (
            r#"{"message":{"assistant":{"orgId":"k"}}}"#,
            TenantKey::VapiOrg("k".into()),
            "message.assistant.orgId",
        ),
        (
            r#"{"message":{"phoneNumber":{"orgId":"k"}}}"#,
            TenantKey::VapiOrg("k".into()),
            "message.phoneNumber.orgId",
        ),
    ];
    for (body, key, path) in cases {
        let a = org();
        let store = InMemoryStore::builder().key(key.clone(), a).build();
        let (res, seen) = send(OrgResolveLayer::new(store), post("/vapi", body)).await;
        assert_eq!(res.status(), StatusCode::OK, "{body}");
        assert_eq!(
            seen.ctx(),
            OrgContext::new(a, key, KeySource::Payload(path))
        );
    }
}

#[tokio::test]
async fn path_after_reads_the_segment_after_the_prefix() {
    let a = org();
    let store = InMemoryStore::builder().slug("acme corp", a).build();
    let layer = || {
        OrgResolveLayer::new(store.clone()).locator(TenantLocator::path_after("/webhooks/vapi/"))
    };
    for uri in [
        "/webhooks/vapi/acme%20corp",
        "/webhooks/vapi/acme%20corp/end-of-call?x=1",
    ] {
        let (res, seen) = send(layer(), post(uri, "{}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            seen.ctx(),
            OrgContext::new(a, TenantKey::Slug("acme corp".into()), KeySource::Path)
        );
    }
    for uri in [
        "/webhooks/vapi/",
        "/webhooks/vapi//x",
        "/other/acme%20corp",
        "/webhooks/vapiacme",
    ] {
        let (res, seen) = send(layer(), post(uri, "{}")).await;
        assert_rejected(
            res,
            &seen,
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad request"}"#,
        )
        .await;
    }
}

#[tokio::test]
async fn path_segment_counts_non_empty_segments_from_zero() {
    let a = org();
    let store = InMemoryStore::builder().slug("acme", a).build();
    let layer = OrgResolveLayer::new(store).locator(TenantLocator::path_segment(2));
    let (res, seen) = send(layer.clone(), post("/webhooks/vapi/acme", "{}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        seen.ctx(),
        OrgContext::new(a, TenantKey::Slug("acme".into()), KeySource::Path)
    );
    let (res, seen) = send(layer, post("/webhooks/vapi", "{}")).await;
    assert_rejected(
        res,
        &seen,
        StatusCode::BAD_REQUEST,
        r#"{"error":"bad request"}"#,
    )
    .await;
}

#[tokio::test]
async fn query_reads_the_form_decoded_parameter() {
    let a = org();
    let store = InMemoryStore::builder().slug("acme corp", a).build();
    let layer = OrgResolveLayer::new(store).locator(TenantLocator::query("tenant"));
    let (res, seen) = send(
        layer.clone(),
        post("/vapi?x=1&tenant=acme+corp&tenant=other", "{}"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        seen.ctx(),
        OrgContext::new(
            a,
            TenantKey::Slug("acme corp".into()),
            KeySource::Query("tenant".into())
        )
    );
    for uri in ["/vapi", "/vapi?tenant=", "/vapi?tenants=acme+corp"] {
        let (res, seen) = send(layer.clone(), post(uri, "{}")).await;
        assert_rejected(
            res,
            &seen,
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad request"}"#,
        )
        .await;
    }
}

#[tokio::test]
async fn header_reads_the_named_header_and_empty_counts_as_absent() {
    let (a, b) = (org(), org());
    let store = InMemoryStore::builder()
        .slug("acme", a)
        .assistant("asst", b)
        .build();
    let name = HeaderName::from_static("x-tenant");
    let layer = OrgResolveLayer::new(store)
        .locator(TenantLocator::header(name.clone()))
        .locator(TenantLocator::payload());
    let req = Request::post("/vapi")
        .header(&name, "acme")
        .body(Body::from("{}"))
        .unwrap();
    let (res, seen) = send(layer.clone(), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        seen.ctx(),
        OrgContext::new(
            a,
            TenantKey::Slug("acme".into()),
            KeySource::Header(name.clone())
        )
    );
    // An empty header is absent: the payload decides.
    let req = Request::post("/vapi")
        .header(&name, "")
        .body(Body::from(r#"{"assistantId":"asst"}"#))
        .unwrap();
    let (res, seen) = send(layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.ctx().org_id, b);
}

#[tokio::test]
async fn custom_locator_gets_the_head_and_the_body() {
    let a = org();
    let store = InMemoryStore::builder().squad("from-custom", a).build();
    let layer = OrgResolveLayer::new(store).locator(TenantLocator::custom(|parts, body| {
        (parts.method == http::Method::POST && body == b"squad please")
            .then(|| TenantKey::Squad("from-custom".into()))
    }));
    let (res, seen) = send(layer.clone(), post("/vapi", "squad please")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        seen.ctx(),
        OrgContext::new(a, TenantKey::Squad("from-custom".into()), KeySource::Custom)
    );
    let (res, seen) = send(layer, post("/vapi", "something else")).await;
    assert_rejected(
        res,
        &seen,
        StatusCode::BAD_REQUEST,
        r#"{"error":"bad request"}"#,
    )
    .await;
}

#[tokio::test]
async fn unreadable_payloads_are_400() {
    let store = InMemoryStore::builder().assistant("A", org()).build();
    let deep = format!(
        r#"{{"message":{{"x":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: [(String, ProbeError); 3] = [
        (
            r#"{"message":{"call":{"assistantId":"A","assistantId":"B"}}}"#.to_owned(),
            ProbeError::DuplicateField("message.call.assistantId"),
        ),
        (deep, ProbeError::TooDeep),
        (
            "{not json".to_owned(),
            ProbeError::InvalidJson { line: 1, column: 2 },
        ),
    ];
    for (body, want) in cases {
        let (res, seen) = send(OrgResolveLayer::new(store.clone()), post("/vapi", body)).await;
        match resolve_error(&res) {
            ResolveError::Probe(err) => assert_eq!(err, want),
            other => panic!("{other:?}"),
        }
        assert_rejected(
            res,
            &seen,
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad request"}"#,
        )
        .await;
    }
}

#[tokio::test]
async fn a_url_locator_first_never_reads_the_body() {
    // The path decides, so a body the probe would refuse still reaches the handler.
    let a = org();
    let store = InMemoryStore::builder().slug("acme", a).build();
    let layer = OrgResolveLayer::new(store)
        .locator(TenantLocator::path_after("/v/"))
        .locator(TenantLocator::payload());
    let (res, seen) = send(layer, post("/v/acme", "{not json")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.body(), "{not json");
}

/// A store that always fails.
struct Down(AtomicUsize);

#[async_trait::async_trait]
impl AssistantOrgStore for Down {
    async fn org_for(&self, _: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::new("connection refused"))
    }
}

#[tokio::test]
async fn store_down_is_503_with_retry_after() {
    let store: Arc<dyn AssistantOrgStore> = Arc::new(Down(AtomicUsize::new(0)));
    let (res, seen) = send(
        OrgResolveLayer::from_shared(store),
        post("/vapi", r#"{"assistantId":"A"}"#),
    )
    .await;
    assert!(matches!(resolve_error(&res), ResolveError::Store(_)));
    assert_eq!(res.headers()[header::RETRY_AFTER], "5");
    assert_rejected(
        res,
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"service unavailable"}"#,
    )
    .await;
}

#[tokio::test]
async fn store_down_for_a_vapi_org_is_503_too() {
    let store = Arc::new(Down(AtomicUsize::new(0)));
    let body = r#"{"message":{"call":{"orgId":"vorg"}}}"#;
    let (res, seen) = send(
        OrgResolveLayer::from_shared(store.clone()),
        post("/vapi", body),
    )
    .await;
    assert_eq!(store.0.load(Ordering::SeqCst), 1);
    assert_rejected(
        res,
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"service unavailable"}"#,
    )
    .await;
}

#[tokio::test]
async fn no_key_does_not_ask_the_store() {
    let store = Arc::new(Down(AtomicUsize::new(0)));
    let (res, seen) = send(
        OrgResolveLayer::from_shared(store.clone()),
        post("/vapi", r#"{"message":{}}"#),
    )
    .await;
    assert_eq!(store.0.load(Ordering::SeqCst), 0);
    assert_rejected(
        res,
        &seen,
        StatusCode::BAD_REQUEST,
        r#"{"error":"bad request"}"#,
    )
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let store = InMemoryStore::builder().assistant("A", org()).build();
    let body = r#"{"assistantId":"A","pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let (res, seen) = send(
        OrgResolveLayer::new(store.clone()).body_limit(16),
        post("/vapi", body),
    )
    .await;
    assert_rejected(
        res,
        &seen,
        StatusCode::PAYLOAD_TOO_LARGE,
        r#"{"error":"payload too large"}"#,
    )
    .await;
    let (res, _) = send(
        OrgResolveLayer::new(store).body_limit(body.len()),
        post("/vapi", body),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_already_buffered_is_not_read_again() {
    let a = org();
    let store = InMemoryStore::builder().assistant("A", a).build();
    let mut req = post("/vapi", "this body is never read");
    req.extensions_mut()
        .insert(RawBody(Bytes::from_static(br#"{"assistantId":"A"}"#)));
    let (res, seen) = send(OrgResolveLayer::new(store), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.ctx().org_id, a);
}

#[tokio::test]
async fn the_handler_gets_the_raw_body_extension() {
    let store = InMemoryStore::builder().assistant("A", org()).build();
    let raw = Arc::new(Mutex::new(None));
    let handler = {
        let raw = raw.clone();
        service_fn(move |req: Request<Buffered>| {
            *raw.lock().unwrap() = req.extensions().get::<RawBody>().cloned();
            async { Ok::<_, Infallible>(Response::new(Body::empty())) }
        })
    };
    let body = r#"{"assistantId":"A"}"#;
    OrgResolveLayer::new(store)
        .layer(handler)
        .oneshot(post("/vapi", body))
        .await
        .unwrap();
    assert_eq!(
        raw.lock().unwrap().clone(),
        Some(RawBody(Bytes::from(body)))
    );
}

#[tokio::test]
async fn a_custom_on_reject_builds_the_response() {
    let store = InMemoryStore::default();
    let layer = OrgResolveLayer::new(store).on_reject(|rejection: &Rejection| {
        Response::builder()
            .status(rejection.status())
            .body(Body::from(format!("nope {}", rejection.status().as_u16())))
            .unwrap()
    });
    let (res, seen) = send(layer, post("/vapi", r#"{"assistantId":"A"}"#)).await;
    assert!(res.extensions().get::<Rejection>().is_some());
    assert_rejected(res, &seen, StatusCode::UNAUTHORIZED, "nope 401").await;
}

#[tokio::test]
async fn works_under_axum_router_layer() {
    use axum::extract::{Extension, Path};
    use axum::routing::post as axum_post;

    let a = org();
    let store = InMemoryStore::builder().slug("acme", a).build();
    let app = axum::Router::new()
        .route(
            "/webhooks/vapi/{tenant}",
            axum_post(
                |Path(tenant): Path<String>,
                 Extension(ctx): Extension<OrgContext>,
                 body: String| async move {
                    format!("{tenant} {} {} {body}", ctx.org_id, ctx.source)
                },
            ),
        )
        .layer(OrgResolveLayer::new(store).locator(TenantLocator::path_after("/webhooks/vapi/")));
    let res = app
        .oneshot(post("/webhooks/vapi/acme", "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_of(res).await, format!("acme {a} path {{}}").as_bytes());
}

#[tokio::test]
async fn strict_mode_refuses_a_payload_naming_another_orgs_key() {
    let (a, c) = (org(), OrgId::new(Uuid::from_u128(0xc)));
    let store = InMemoryStore::builder()
        .assistant("asst-a", a)
        .slug("org-c", c)
        .build();
    let layer = || {
        OrgResolveLayer::new(store.clone())
            .locator(TenantLocator::path_after("/vapi/"))
            .locator(TenantLocator::payload())
    };
    let naming_a = r#"{"message":{"type":"status-update","call":{"assistantId":"asst-a"}}}"#;
    // Lenient (the default): the URL decides, the payload's id is not checked.
    let (res, seen) = send(layer(), post("/vapi/org-c", naming_a)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.ctx().org_id, c);
    // Strict: org A's assistant in org C's URL is refused with the uniform 401.
    let (res, seen) = send(layer().strict(true), post("/vapi/org-c", naming_a)).await;
    assert!(matches!(resolve_error(&res), ResolveError::TenantMismatch));
    assert_rejected(
        res,
        &seen,
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthorized"}"#,
    )
    .await;
    // Strict, with ids no org owns, or the org's own: accepted.
    for body in [
        r#"{"message":{"type":"status-update","call":{"assistantId":"asst-unknown"}}}"#,
        r#"{"message":{"type":"status-update"}}"#,
    ] {
        let (res, seen) = send(layer().strict(true), post("/vapi/org-c", body)).await;
        assert_eq!(res.status(), StatusCode::OK, "{body}");
        assert_eq!(seen.ctx().org_id, c);
    }
    let (res, seen) = send(layer().strict(true), post("/vapi/nope", naming_a)).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "unknown slug decides"
    );
    assert_eq!(seen.runs(), 0);
    let (res, _) = send(layer().strict(true), post("/vapi", naming_a)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the payload's own key agrees with itself"
    );
}
