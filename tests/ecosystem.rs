//! The layers in the stacks people build: any request body type (hyper's `Incoming`, axum's
//! `Body`, tower-http's `Limited` and decompression bodies), under every axum attachment point,
//! a plain `ServiceBuilder` and hyper-util's `TowerToHyperService`; one body limit that is never
//! silently ignored.

use std::convert::Infallible;
use std::io::Write as _;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use uuid::Uuid;
use vapi_webhooks::body::Buffered;
use vapi_webhooks::reject::Reason;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    Credential, InMemoryStore, Org, OrgId, OrgResolveLayer, RawBody, RawBodyLayer, Rejection,
    SignatureVerifyLayer, VapiEvent,
};

const ASSISTANT: &str = "asst-eco";

fn org() -> OrgId {
    OrgId::new(Uuid::from_u128(0xec0))
}

fn credential() -> Credential {
    Credential::vapi_hmac("ecosystem-secret").unwrap()
}

fn store() -> InMemoryStore {
    InMemoryStore::builder()
        .assistant(ASSISTANT, org())
        .credential(org(), credential())
        .build()
}

fn body() -> Bytes {
    Bytes::from(format!(
        r#"{{"message":{{"type":"status-update","status":"ended","call":{{"assistantId":"{ASSISTANT}"}}}}}}"#
    ))
}

fn signed_headers(body: &[u8]) -> HeaderMap {
    Signer::new(&credential()).headers(body)
}

fn request(body: Bytes, signed: bool) -> Request<Body> {
    let mut req = Request::post("/vapi")
        .body(Body::from(body.clone()))
        .unwrap();
    if signed {
        req.headers_mut().extend(signed_headers(&body));
    }
    req
}

/// The handler: the org and the typed event, both from the extractors.
async fn handler(Org(org): Org, event: VapiEvent) -> String {
    format!("{} {}", org.org_id, event.type_name())
}

async fn text(res: Response<Body>) -> (StatusCode, String) {
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn expected() -> String {
    format!("{} status-update", org())
}

async fn assert_stack(app: Router) {
    let (status, text_ok) = text(app.clone().oneshot(request(body(), true)).await.unwrap()).await;
    assert_eq!((status, text_ok), (StatusCode::OK, expected()));
    let (status, refused) = text(app.oneshot(request(body(), false)).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused, r#"{"error":"unauthorized"}"#);
}

#[tokio::test]
async fn under_every_axum_attachment_point() {
    // Router::layer: resolve runs first (the last layer added is the outermost).
    assert_stack(
        Router::new()
            .route("/vapi", post(handler))
            .layer(SignatureVerifyLayer::new(store()))
            .layer(OrgResolveLayer::new(store())),
    )
    .await;
    // Router::route_layer: other routes are untouched.
    let app = Router::new()
        .route("/vapi", post(handler))
        .route_layer(SignatureVerifyLayer::new(store()))
        .route_layer(OrgResolveLayer::new(store()))
        .route("/healthz", get(|| async { "ok" }));
    assert_stack(app.clone()).await;
    let health = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(health).await, (StatusCode::OK, "ok".to_owned()));
    let missing = app
        .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // MethodRouter::layer with a ServiceBuilder stack.
    let stack = ServiceBuilder::new()
        .layer(OrgResolveLayer::new(store()))
        .layer(SignatureVerifyLayer::new(store()));
    assert_stack(Router::new().route("/vapi", post(handler).layer(stack))).await;
}

#[tokio::test]
async fn a_plain_service_builder_over_any_body() {
    let service = ServiceBuilder::new()
        .layer(OrgResolveLayer::new(store()))
        .layer(SignatureVerifyLayer::new(store()))
        .service_fn(|req: Request<Buffered>| async move {
            let raw = req.extensions().get::<RawBody>().unwrap().0.clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            // The handler's body is the very buffer the layers kept: not copied.
            assert_eq!(raw.as_ptr(), body.as_ptr());
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        });
    let body = body();
    let mut req = Request::post("/vapi")
        .body(Full::new(body.clone()))
        .unwrap();
    req.headers_mut().extend(signed_headers(&body));
    let res = service.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), body);
}

#[tokio::test]
async fn behind_request_body_limit_layer_and_decompression() {
    let app = |limit: usize| {
        Router::new().route("/vapi", post(handler)).route_layer(
            ServiceBuilder::new()
                .layer(RequestDecompressionLayer::new())
                .layer(RequestBodyLimitLayer::new(limit))
                .layer(OrgResolveLayer::new(store()))
                .layer(SignatureVerifyLayer::new(store())),
        )
    };
    assert_stack(app(64 * 1024)).await;

    // A gzip body, signed over the JSON as the sender wrote it.
    let json = body();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).unwrap();
    let compressed = gz.finish().unwrap();
    let mut req = Request::post("/vapi")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(compressed))
        .unwrap();
    req.headers_mut().extend(signed_headers(&json));
    let (status, reply) = text(app(64 * 1024).oneshot(req).await.unwrap()).await;
    assert_eq!((status, reply), (StatusCode::OK, expected()));

    // tower-http's limit, smaller than ours, wins: 413 either way.
    let res = app(16).oneshot(request(body(), true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_limit_set_applies_behind_an_earlier_buffer() {
    // OrgResolveLayer buffers with its 1 MiB default; the verify layer's 50 bytes still apply.
    let app = Router::new()
        .route("/vapi", post(handler))
        .layer(SignatureVerifyLayer::new(store()).body_limit(50))
        .layer(OrgResolveLayer::new(store()));
    let res = app.oneshot(request(body(), true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let rejection = res.extensions().get::<Rejection>().unwrap().clone();
    assert_eq!(rejection.org(), Some(&org()), "the org was known by then");
    assert!(matches!(rejection.reason(), Reason::Body(_)));

    // A RawBodyLayer in front sets the one limit for all of them.
    let app = Router::new()
        .route("/vapi", post(handler))
        .layer(SignatureVerifyLayer::new(store()))
        .layer(OrgResolveLayer::new(store()))
        .layer(RawBodyLayer::new(body().len()));
    assert_stack(app.clone()).await;
    let mut longer = body().to_vec();
    longer.push(b' ');
    let res = app.oneshot(request(longer.into(), true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_hyper_server_passes_incoming_straight_in() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // No axum, no wrapper body: `Request<hyper::body::Incoming>` goes straight into the layers.
    let service = ServiceBuilder::new()
        .layer(OrgResolveLayer::new(store()))
        .layer(SignatureVerifyLayer::new(store()))
        .service_fn(|req: Request<Buffered>| async move {
            let org = req
                .extensions()
                .get::<vapi_webhooks::OrgContext>()
                .unwrap()
                .org_id;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(org.to_string()))))
        });
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                    .ok();
            });
        }
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{addr}/vapi");
    let body = body();
    let mut req = client.post(&url).body(body.clone());
    for (name, value) in &signed_headers(&body) {
        req = req.header(name, value);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), org().to_string());
    let res = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"unauthorized"}"#);
    server.abort();
}

#[test]
fn verify_without_tower() {
    use http::{Method, Uri};
    use vapi_webhooks::Verifier;
    use vapi_webhooks::verify::VerifyError;

    let credentials = [Credential::vapi_hmac("old").unwrap(), credential()];
    let body = body();
    let headers = signed_headers(&body);
    let uri = Uri::from_static("/vapi");
    let verifier = Verifier::new();
    let delivery = verifier
        .verify(&credentials, &Method::POST, &uri, &headers, &body)
        .unwrap();
    assert_eq!(delivery.credential(), 1);
    // A replay of the same bytes is the same delivery.
    let again = verifier
        .verify(&credentials, &Method::POST, &uri, &headers, &body)
        .unwrap();
    assert_eq!(again.key(), delivery.key());
    let tampered = body.slice(1..);
    assert!(matches!(
        verifier.verify(&credentials, &Method::POST, &uri, &headers, &tampered),
        Err(VerifyError::InvalidSignature)
    ));
    // Outside the window by the verifier's own clock.
    let later = Verifier::new().clock(|| std::time::SystemTime::now() + Duration::from_secs(301));
    assert!(matches!(
        later.verify(&credentials, &Method::POST, &uri, &headers, &body),
        Err(VerifyError::TimestampOutOfWindow)
    ));
}

#[test]
fn layers_are_layers_of_any_service() {
    // Compiles: the services expose the usual accessors.
    let svc =
        OrgResolveLayer::new(store()).layer(tower::service_fn(|_: Request<Buffered>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    let _ = svc.get_ref();
    let _inner = svc.into_inner();
}

#[tokio::test]
async fn a_closure_is_a_check_in_the_same_skeleton() {
    use vapi_webhooks::error::VerifyError;
    use vapi_webhooks::layer::CheckLayer;

    let json_only = CheckLayer::new(|req: Request<Buffered>, body: Bytes| async move {
        match body.first() {
            Some(b'{') => Ok(req),
            _ => Err(Rejection::new(VerifyError::InvalidSignature, None)),
        }
    });
    let service =
        ServiceBuilder::new()
            .layer(json_only)
            .service_fn(|req: Request<Buffered>| async move {
                // The body was buffered once by the skeleton and is still whole.
                let raw = req.extensions().get::<RawBody>().unwrap().0.clone();
                Ok::<_, Infallible>(Response::new(Full::new(raw)))
            });
    let res = service
        .clone()
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = service
        .oneshot(Request::new(Full::new(Bytes::from_static(b"nope"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.extensions().get::<Rejection>().is_some());
}
