//! Body buffering through SignatureVerifyLayer: limits, failing streams, RawBody reuse, and the
//! typed rejection in the response extensions.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use vapi_webhooks::body::{BodyError, Buffered};
use vapi_webhooks::reject::Reason;
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{Credential, RawBody, Rejection, SignatureVerifyLayer, SingleTenant, Verified};

const LIMIT: usize = 1024;
const BODY: &[u8] = br#"{"message":{"type":"status-update"}}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn credential() -> Credential {
    Credential::vapi_hmac("body-secret").unwrap()
}

fn layer() -> SignatureVerifyLayer<SingleTenant> {
    SignatureVerifyLayer::new(SingleTenant::new(credential()))
        .clock(now)
        .body_limit(LIMIT)
}

fn signed(body: &[u8]) -> HeaderMap {
    Signer::new(&credential()).at(now()).headers(body)
}

/// A request body that must never be polled: it panics if it is. Built from bytes it is an
/// ordinary body, so the layer can rebuild the request with it.
enum Untouchable {
    Panics { exact_size: Option<u64> },
    Bytes(Option<Bytes>),
}

impl From<Bytes> for Untouchable {
    fn from(bytes: Bytes) -> Self {
        Self::Bytes(Some(bytes))
    }
}

impl http_body::Body for Untouchable {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Panics { .. } => panic!("the body was polled"),
            Self::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Panics {
                exact_size: Some(n),
            } => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }
}

type Handled = (
    tower::util::BoxCloneService<Request<Untouchable>, Response<Full<Bytes>>, Infallible>,
    Arc<AtomicUsize>,
);

/// A plain tower service over [`Untouchable`] bodies that answers with the `RawBody` it sees.
fn untouchable_service() -> Handled {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let service = ServiceBuilder::new()
        .layer(layer())
        .service_fn(move |req: Request<Buffered>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                assert!(req.extensions().get::<Verified>().is_some());
                let raw = req.extensions().get::<RawBody>().unwrap().0.clone();
                Ok::<_, Infallible>(Response::new(Full::new(raw)))
            }
        });
    (tower::util::BoxCloneService::new(service), runs)
}

async fn parts(res: Response<Full<Bytes>>) -> (StatusCode, Bytes, Option<Rejection>) {
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        bytes,
        parts.extensions.get::<Rejection>().cloned(),
    )
}

#[tokio::test]
async fn content_length_over_the_limit_is_413_without_reading() {
    let (service, runs) = untouchable_service();
    let mut req = Request::post("/hook")
        .header(header::CONTENT_LENGTH, LIMIT + 1)
        .body(Untouchable::Panics { exact_size: None })
        .unwrap();
    req.headers_mut().extend(signed(BODY));
    let (status, body, rejection) = parts(service.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, &br#"{"error":"payload too large"}"#[..]);
    assert!(matches!(
        rejection.unwrap().reason(),
        Reason::Body(BodyError::TooLarge { limit: LIMIT })
    ));

    // The same through an exact size hint, without a Content-Length header.
    let req = Request::post("/hook")
        .body(Untouchable::Panics {
            exact_size: Some(LIMIT as u64 + 1),
        })
        .unwrap();
    let (status, _, _) = parts(service.oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_passes() {
    let (service, runs) = untouchable_service();
    let body = vec![b' '; LIMIT];
    let mut req = Request::post("/hook")
        .header(header::CONTENT_LENGTH, LIMIT)
        .body(Untouchable::from(Bytes::from(body.clone())))
        .unwrap();
    req.headers_mut().extend(signed(&body));
    let (status, echoed, _) = parts(service.oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed, body);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_already_buffered_request_is_not_read_again() {
    let (service, runs) = untouchable_service();
    // An earlier layer buffered the body: the request carries RawBody and a body that panics
    // if polled.
    let mut req = Request::post("/hook")
        .body(Untouchable::Panics { exact_size: None })
        .unwrap();
    req.extensions_mut()
        .insert(RawBody(Bytes::from_static(BODY)));
    req.headers_mut().extend(signed(BODY));
    let (status, echoed, rejection) = parts(service.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rejection:?}");
    assert_eq!(echoed, BODY);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The signature is checked against the RawBody bytes.
    let mut req = Request::post("/hook")
        .body(Untouchable::Panics { exact_size: None })
        .unwrap();
    req.extensions_mut()
        .insert(RawBody(Bytes::from_static(b"{}")));
    req.headers_mut().extend(signed(BODY));
    let (status, _, _) = parts(service.oneshot(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn axum_app() -> (Router, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let router = Router::new()
        .route(
            "/hook",
            post(move |body: Bytes| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    body
                }
            }),
        )
        .layer(layer());
    (router, runs)
}

#[tokio::test]
async fn a_chunked_stream_growing_past_the_limit_is_413() {
    let (router, runs) = axum_app();
    // Endless: only the limit stops the reader.
    let chunks = stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(&[b' '; 100])));
    let mut req = Request::post("/hook")
        .body(Body::from_stream(chunks))
        .unwrap();
    req.headers_mut().extend(signed(BODY));
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let rejection = res.extensions().get::<Rejection>().cloned().unwrap();
    assert!(matches!(
        rejection.reason(),
        Reason::Body(BodyError::TooLarge { limit: LIMIT })
    ));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        &br#"{"error":"payload too large"}"#[..]
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_failing_mid_stream_is_400_not_500() {
    let (router, runs) = axum_app();
    let chunks = stream::iter([
        Ok(Bytes::from_static(&BODY[..10])),
        Err(std::io::Error::other("connection reset")),
    ]);
    let mut req = Request::post("/hook")
        .body(Body::from_stream(chunks))
        .unwrap();
    req.headers_mut().extend(signed(BODY));
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let rejection = res.extensions().get::<Rejection>().cloned().unwrap();
    assert!(matches!(
        rejection.reason(),
        Reason::Body(BodyError::Read(_))
    ));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        &br#"{"error":"bad request"}"#[..]
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_streamed_body_within_the_limit_reaches_the_handler_whole() {
    let (router, runs) = axum_app();
    let chunks = stream::iter(
        BODY.chunks(7)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let mut req = Request::post("/hook")
        .body(Body::from_stream(chunks))
        .unwrap();
    req.headers_mut().extend(signed(BODY));
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<Rejection>().is_none());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), BODY);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
