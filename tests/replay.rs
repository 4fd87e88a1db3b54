//! Replay protection in `SignatureVerifyLayer`: each rule pinned by status, exact body, handler
//! runs and the typed rejection. Redis tests (feature `redis`) read `REDIS_URL`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vapi_webhooks::reject::Reason;
use vapi_webhooks::replay::{
    InMemoryReplayStore, ReplayAnswer, ReplayError, ReplayGuard, ReplayStore, ReplayStoreError,
};
use vapi_webhooks::testing::Signer;
use vapi_webhooks::verify::{Credentials, SecretError, SecretProvider, VerifyError};
use vapi_webhooks::{
    Credential, KeySource, OrgContext, OrgId, Rejection, SignatureVerifyLayer, SingleTenant,
    TenantKey,
};

const NOW_SECS: u64 = 1_700_000_000;
const BODY: &[u8] = br#"{"message":{"type":"status-update","status":"ended"}}"#;
const HANDLED: &[u8] = b"handled";
const UNAVAILABLE: &[u8] = br#"{"error":"service unavailable"}"#;
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn secs(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

fn now() -> SystemTime {
    secs(NOW_SECS)
}

/// A handler that counts its runs, answers 500 for its first `fail_first` runs, and can take a
/// while (so that concurrent deliveries overlap).
#[derive(Clone, Default)]
struct Handler {
    runs: Arc<AtomicUsize>,
    fail_first: usize,
    delay: Duration,
}

impl Handler {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn router<P: SecretProvider + ?Sized>(&self, layer: SignatureVerifyLayer<P>) -> Router {
        let this = self.clone();
        Router::new()
            .route(
                "/hook",
                post(move || {
                    let this = this.clone();
                    async move {
                        let run = this.runs.fetch_add(1, Ordering::SeqCst) + 1;
                        if !this.delay.is_zero() {
                            tokio::time::sleep(this.delay).await;
                        }
                        if run <= this.fail_first {
                            (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                        } else {
                            (StatusCode::OK, "handled")
                        }
                    }
                }),
            )
            .layer(layer)
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Option<Rejection>,
}

impl Reply {
    fn replay_error(&self) -> &ReplayError {
        match self.rejection.as_ref().map(Rejection::reason) {
            Some(Reason::Replay(err)) => err,
            other => panic!("expected a replay rejection, got {other:?}"),
        }
    }

    fn assert_handled(&self) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.body, HANDLED);
        assert!(self.rejection.is_none());
    }

    /// The default answer to a replay: 200, empty body, no content type.
    fn assert_acknowledged_replay(&self) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.body, Bytes::new());
        assert!(self.headers.get(header::CONTENT_TYPE).is_none());
        assert!(matches!(
            self.replay_error(),
            ReplayError::Replayed(ReplayAnswer::Acknowledge)
        ));
    }

    fn assert_unavailable(&self) {
        assert_eq!(self.status, StatusCode::SERVICE_UNAVAILABLE, "{self:?}");
        assert_eq!(self.body, UNAVAILABLE);
        assert_eq!(self.headers[header::RETRY_AFTER], "5");
    }
}

fn request(headers: &HeaderMap, body: impl Into<Bytes>) -> Request<Body> {
    let mut req = Request::post("/hook")
        .body(Body::from(body.into()))
        .unwrap();
    req.headers_mut().extend(headers.clone());
    req
}

async fn send(router: &Router, headers: &HeaderMap, body: impl Into<Bytes>) -> Reply {
    let res: Response<Body> = router
        .clone()
        .oneshot(request(headers, body))
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        rejection: parts.extensions.get::<Rejection>().cloned(),
    }
}

fn hmac() -> Credential {
    Credential::vapi_hmac("replay-test-secret").unwrap()
}

fn layer(credential: &Credential, guard: ReplayGuard) -> SignatureVerifyLayer<SingleTenant> {
    SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
        .clock(now)
        .replay_guard(guard)
}

#[tokio::test]
async fn the_guard_is_off_by_default() {
    let credential = hmac();
    let handler = Handler::default();
    let router =
        handler.router(SignatureVerifyLayer::new(SingleTenant::new(credential.clone())).clock(now));
    let signed = Signer::new(&credential).at(now()).headers(BODY);
    send(&router, &signed, BODY).await.assert_handled();
    send(&router, &signed, BODY).await.assert_handled();
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn a_replay_within_the_window_is_acknowledged_with_an_empty_200_and_not_handled() {
    let credential = hmac();
    let handler = Handler::default();
    let router = handler.router(layer(&credential, ReplayGuard::in_memory()));
    let signed = Signer::new(&credential).at(now()).headers(BODY);

    send(&router, &signed, BODY).await.assert_handled();
    let replay = send(&router, &signed, BODY).await;
    replay.assert_acknowledged_replay();
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn a_replay_can_be_answered_409() {
    let credential = hmac();
    let handler = Handler::default();
    let guard = ReplayGuard::in_memory().answer(ReplayAnswer::Conflict);
    let router = handler.router(layer(&credential, guard));
    let signed = Signer::new(&credential).at(now()).headers(BODY);

    send(&router, &signed, BODY).await.assert_handled();
    let replay = send(&router, &signed, BODY).await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    assert_eq!(replay.body, &br#"{"error":"duplicate delivery"}"#[..]);
    assert_eq!(replay.headers[header::CONTENT_TYPE], "application/json");
    assert!(matches!(
        replay.replay_error(),
        ReplayError::Replayed(ReplayAnswer::Conflict)
    ));
    assert_eq!(handler.runs(), 1);
}

/// A store whose entries expire by the test's clock, recording the ttl it was asked for.
struct ClockedStore {
    clock: Arc<AtomicU64>,
    entries: Mutex<HashMap<String, u64>>,
    ttls: Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl ReplayStore for ClockedStore {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, ReplayStoreError> {
        self.ttls.lock().unwrap().push(ttl);
        let now = self.clock.load(Ordering::SeqCst);
        let mut entries = self.entries.lock().unwrap();
        match entries.get(key) {
            Some(&expires) if expires > now => Ok(false),
            _ => {
                entries.insert(key.to_owned(), now + ttl.as_secs());
                Ok(true)
            }
        }
    }

    async fn remove(&self, key: &str) -> Result<(), ReplayStoreError> {
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }
}

impl ClockedStore {
    fn live(&self) -> usize {
        let now = self.clock.load(Ordering::SeqCst);
        let entries = self.entries.lock().unwrap();
        entries.values().filter(|&&expires| expires > now).count()
    }
}

#[tokio::test]
async fn after_the_entry_expires_the_stale_timestamp_is_what_rejects_a_replay() {
    const TOLERANCE: u64 = 10;
    const MARGIN: u64 = 5;
    let clock = Arc::new(AtomicU64::new(NOW_SECS));
    let store = Arc::new(ClockedStore {
        clock: clock.clone(),
        entries: Mutex::default(),
        ttls: Mutex::default(),
    });
    let credential = hmac();
    let handler = Handler::default();
    let ticking = clock.clone();
    let router = handler.router(
        SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
            .tolerance(Duration::from_secs(TOLERANCE))
            .clock(move || secs(ticking.load(Ordering::SeqCst)))
            .replay_guard(
                ReplayGuard::from_shared(store.clone()).margin(Duration::from_secs(MARGIN)),
            ),
    );

    // Signed `TOLERANCE` in the future: acceptable from now until now + 2 × TOLERANCE, which is
    // why an entry lives 2 × tolerance + margin.
    let signed = Signer::new(&credential)
        .at(secs(NOW_SECS + TOLERANCE))
        .headers(BODY);
    send(&router, &signed, BODY).await.assert_handled();
    assert_eq!(
        *store.ttls.lock().unwrap(),
        [Duration::from_secs(2 * TOLERANCE + MARGIN)]
    );

    // The last second the timestamp is valid: still remembered, still a replay.
    clock.store(NOW_SECS + 2 * TOLERANCE, Ordering::SeqCst);
    send(&router, &signed, BODY)
        .await
        .assert_acknowledged_replay();

    // Past the entry's expiry: the store has forgotten it, the timestamp window refuses it.
    clock.store(NOW_SECS + 2 * TOLERANCE + MARGIN + 1, Ordering::SeqCst);
    assert_eq!(store.live(), 0);
    let late = send(&router, &signed, BODY).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(late.body, &br#"{"error":"unauthorized"}"#[..]);
    assert!(matches!(
        late.rejection.as_ref().unwrap().reason(),
        Reason::Verify(VerifyError::TimestampOutOfWindow)
    ));
    // Verification runs first: the refused request did not reach the store.
    assert_eq!(store.ttls.lock().unwrap().len(), 2);
    assert_eq!(handler.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_identical_deliveries_run_the_handler_once() {
    let credential = hmac();
    let handler = Handler {
        delay: Duration::from_millis(20),
        ..Handler::default()
    };
    let router = handler.router(layer(&credential, ReplayGuard::in_memory()));
    let signed = Signer::new(&credential).at(now()).headers(BODY);
    let replies = concurrently(50, |_| (router.clone(), signed.clone())).await;
    assert_exactly_one_handled(&replies);
    assert_eq!(handler.runs(), 1);
}

/// Sends `n` identical deliveries at once, the i-th to the router `target(i)` picks.
async fn concurrently(n: usize, target: impl Fn(usize) -> (Router, HeaderMap)) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (router, headers) = target(i);
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            send(&router, &headers, BODY).await
        });
    }
    tasks.join_all().await
}

fn assert_exactly_one_handled(replies: &[Reply]) {
    let handled = replies.iter().filter(|r| r.body == HANDLED).count();
    assert_eq!(handled, 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.body != HANDLED) {
        reply.assert_acknowledged_replay();
    }
}

#[tokio::test]
async fn a_full_in_memory_store_answers_503_and_still_refuses_replays() {
    let credential = hmac();
    let handler = Handler::default();
    let store = Arc::new(InMemoryReplayStore::new(2));
    let router = handler.router(layer(&credential, ReplayGuard::from_shared(store.clone())));
    let bodies: Vec<Bytes> = (0..3)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"message":{{"type":"status-update","n":{i}}}}}"#
            ))
        })
        .collect();
    let signer = Signer::new(&credential).at(now());

    for body in &bodies[..2] {
        send(&router, &signer.headers(body), body.clone())
            .await
            .assert_handled();
    }
    assert_eq!(store.len(), 2);

    // A new delivery while full: refused, not accepted unprotected.
    let full = send(&router, &signer.headers(&bodies[2]), bodies[2].clone()).await;
    full.assert_unavailable();
    assert!(matches!(full.replay_error(), ReplayError::Full));
    assert_eq!(handler.runs(), 2);

    // A replay of a remembered delivery is still recognised.
    send(&router, &signer.headers(&bodies[0]), bodies[0].clone())
        .await
        .assert_acknowledged_replay();
    assert_eq!(handler.runs(), 2);
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn a_handler_5xx_forgets_the_delivery_so_the_retry_is_accepted() {
    let credential = hmac();
    let handler = Handler {
        fail_first: 1,
        ..Handler::default()
    };
    let router = handler.router(layer(&credential, ReplayGuard::in_memory()));
    let signed = Signer::new(&credential).at(now()).headers(BODY);

    let failed = send(&router, &signed, BODY).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.body, &b"boom"[..]);
    send(&router, &signed, BODY).await.assert_handled();
    // Once handled, it is remembered again.
    send(&router, &signed, BODY)
        .await
        .assert_acknowledged_replay();
    assert_eq!(handler.runs(), 2);
}

/// A store that always fails, like an unreachable backend.
struct Broken;

#[async_trait::async_trait]
impl ReplayStore for Broken {
    async fn insert_if_absent(&self, _: &str, _: Duration) -> Result<bool, ReplayStoreError> {
        Err(ReplayStoreError::backend("connection refused"))
    }

    async fn remove(&self, _: &str) -> Result<(), ReplayStoreError> {
        Err(ReplayStoreError::backend("connection refused"))
    }
}

#[tokio::test]
async fn a_failing_store_is_a_503_unless_the_guard_fails_open() {
    let credential = hmac();
    let signed = Signer::new(&credential).at(now()).headers(BODY);

    let handler = Handler::default();
    let router = handler.router(layer(&credential, ReplayGuard::new(Broken)));
    let reply = send(&router, &signed, BODY).await;
    reply.assert_unavailable();
    assert!(matches!(reply.replay_error(), ReplayError::Unavailable(_)));
    assert_eq!(handler.runs(), 0);

    let handler = Handler::default();
    let router = handler.router(layer(&credential, ReplayGuard::new(Broken).fail_open(true)));
    send(&router, &signed, BODY).await.assert_handled();
    send(&router, &signed, BODY).await.assert_handled();
    assert_eq!(handler.runs(), 2);
}

/// A per-organisation provider.
struct Tenants(HashMap<OrgId, Credential>);

#[async_trait::async_trait]
impl SecretProvider for Tenants {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        let org = org.ok_or(SecretError::OrgRequired)?;
        Ok(self.0.get(org).cloned().into_iter().collect())
    }
}

fn org(n: u128) -> OrgId {
    OrgId::new(uuid::Uuid::from_u128(n))
}

#[tokio::test]
async fn different_orgs_sending_the_same_message_id_are_not_replays_of_each_other() {
    let a = Credential::standard_webhooks(WHSEC).unwrap();
    let b = Credential::standard_webhooks("whsec_c2VjcmV0LW9mLW9yZy1i").unwrap();
    let provider: Arc<dyn SecretProvider> = Arc::new(Tenants(HashMap::from([
        (org(1), a.clone()),
        (org(2), b.clone()),
    ])));
    // One guard (one store) shared by both orgs' requests.
    let guard = ReplayGuard::in_memory();
    let handler = Handler::default();
    let router_for = |org: OrgId| {
        handler
            .router(
                SignatureVerifyLayer::from_shared(provider.clone())
                    .clock(now)
                    .replay_guard(guard.clone()),
            )
            .layer(Extension(OrgContext::new(
                org,
                TenantKey::Assistant("asst".into()),
                KeySource::Custom,
            )))
    };
    let (router_a, router_b) = (router_for(org(1)), router_for(org(2)));
    let signed_a = Signer::new(&a)
        .at(now())
        .message_id("msg_shared")
        .headers(BODY);
    let signed_b = Signer::new(&b)
        .at(now())
        .message_id("msg_shared")
        .headers(BODY);

    send(&router_a, &signed_a, BODY).await.assert_handled();
    send(&router_b, &signed_b, BODY).await.assert_handled();
    assert_eq!(handler.runs(), 2);
    let replay = send(&router_a, &signed_a, BODY).await;
    replay.assert_acknowledged_replay();
    assert_eq!(replay.rejection.unwrap().org(), Some(&org(1)));
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn standard_webhooks_deliveries_are_keyed_by_webhook_id() {
    let credential = Credential::standard_webhooks(WHSEC).unwrap();
    let handler = Handler::default();
    let router = handler.router(layer(&credential, ReplayGuard::in_memory()));

    let first = Signer::new(&credential).at(now()).message_id("msg_1");
    send(&router, &first.headers(BODY), BODY)
        .await
        .assert_handled();
    // Same id, re-signed with a new timestamp (and so a new signature): the same delivery.
    let resigned = first.clone().at(secs(NOW_SECS + 1)).headers(BODY);
    assert_ne!(
        resigned["webhook-signature"],
        first.headers(BODY)["webhook-signature"]
    );
    send(&router, &resigned, BODY)
        .await
        .assert_acknowledged_replay();
    // Another id with the same timestamp and body: another delivery.
    let other = Signer::new(&credential).at(now()).message_id("msg_2");
    send(&router, &other.headers(BODY), BODY)
        .await
        .assert_handled();
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn hmac_deliveries_are_keyed_by_what_the_signature_signs() {
    let credential = hmac();
    let handler = Handler::default();
    let router = handler.router(layer(&credential, ReplayGuard::in_memory()));

    let signed = Signer::new(&credential).at(now()).headers(BODY);
    send(&router, &signed, BODY).await.assert_handled();
    // Same body, a new timestamp: a new signature, a new delivery.
    let later = Signer::new(&credential)
        .at(secs(NOW_SECS + 1))
        .headers(BODY);
    send(&router, &later, BODY).await.assert_handled();
    // The same timestamp, another body: a new delivery.
    let body = br#"{"message":{"type":"status-update","status":"in-progress"}}"#;
    let other = Signer::new(&credential).at(now()).headers(body);
    send(&router, &other, &body[..]).await.assert_handled();
    assert_eq!(handler.runs(), 3);

    send(&router, &signed, BODY)
        .await
        .assert_acknowledged_replay();
    send(&router, &later, BODY)
        .await
        .assert_acknowledged_replay();
    assert_eq!(handler.runs(), 3);
}

#[tokio::test]
async fn a_delivery_signed_with_two_rotated_secrets_is_one_delivery_whichever_matches() {
    let old = hmac();
    let new = Credential::vapi_hmac("the-new-secret").unwrap();
    let handler = Handler::default();
    let router = handler.router(
        SignatureVerifyLayer::new(SingleTenant::many([old.clone(), new.clone()]))
            .clock(now)
            .replay_guard(ReplayGuard::in_memory()),
    );
    let sig_old = Signer::new(&old).at(now()).signature(BODY);
    let sig_new = Signer::new(&new).at(now()).signature(BODY);
    let mut both = Signer::new(&old).at(now()).headers(BODY);
    both.insert(
        "x-signature",
        HeaderValue::from_str(&format!("{sig_old} {sig_new}")).unwrap(),
    );
    send(&router, &both, BODY).await.assert_handled();

    // Replayed with only the signature of the second secret: still the same delivery.
    let mut only_new = both.clone();
    only_new.insert("x-signature", HeaderValue::from_str(&sig_new).unwrap());
    send(&router, &only_new, BODY)
        .await
        .assert_acknowledged_replay();
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn bearer_and_secret_header_deliveries_are_keyed_by_body() {
    for credential in [
        Credential::bearer("a-bearer-token").unwrap(),
        Credential::secret_header(
            http::HeaderName::from_static("x-vapi-secret"),
            "a-shared-secret",
        )
        .unwrap(),
    ] {
        let handler = Handler::default();
        let router = handler.router(layer(&credential, ReplayGuard::in_memory()));
        let headers = Signer::new(&credential).headers(BODY);
        send(&router, &headers, BODY).await.assert_handled();
        send(&router, &headers, BODY)
            .await
            .assert_acknowledged_replay();
        send(&router, &headers, &b"{}"[..]).await.assert_handled();
        assert_eq!(handler.runs(), 2);
    }
}

#[test]
fn the_guard_and_the_store_debug_without_secrets() {
    let store = InMemoryReplayStore::new(7);
    assert_eq!(
        format!("{store:?}"),
        "InMemoryReplayStore { limit: 7, len: 0 }"
    );
    let guard = ReplayGuard::new(store).answer(ReplayAnswer::Conflict);
    assert_eq!(
        format!("{guard:?}"),
        "ReplayGuard { margin: 60s, answer: Conflict, fail_open: false, .. }"
    );
}
