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
    DeliveryKey, InMemoryReplayStore, ReplayAnswer, ReplayError, ReplayGuard, ReplayStore,
    ReplayStoreError,
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
    entries: Mutex<HashMap<(Option<OrgId>, DeliveryKey), u64>>,
    ttls: Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl ReplayStore for ClockedStore {
    async fn insert_if_absent(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        ttl: Duration,
    ) -> Result<bool, ReplayStoreError> {
        self.ttls.lock().unwrap().push(ttl);
        let now = self.clock.load(Ordering::SeqCst);
        let mut entries = self.entries.lock().unwrap();
        match entries.get(&(org.copied(), *key)) {
            Some(&expires) if expires > now => Ok(false),
            _ => {
                entries.insert((org.copied(), *key), now + ttl.as_secs());
                Ok(true)
            }
        }
    }

    fn forget(&self, org: Option<&OrgId>, key: &DeliveryKey) {
        self.entries.lock().unwrap().remove(&(org.copied(), *key));
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
    async fn insert_if_absent(
        &self,
        _: Option<&OrgId>,
        _: &DeliveryKey,
        _: Duration,
    ) -> Result<bool, ReplayStoreError> {
        Err(ReplayStoreError::backend("connection refused"))
    }

    fn forget(&self, _: Option<&OrgId>, _: &DeliveryKey) {}
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
        "InMemoryReplayStore { capacity: 7, len: 0 }"
    );
    let guard = ReplayGuard::new(store).answer(ReplayAnswer::Conflict);
    assert_eq!(
        format!("{guard:?}"),
        "ReplayGuard { margin: 60s, answer: Conflict, fail_open: false, .. }"
    );
}

#[cfg(feature = "redis")]
mod redis {
    //! Against a real Redis at `REDIS_URL`; under `CI=true` its absence fails the test.

    use std::net::SocketAddr;
    use std::sync::atomic::AtomicBool;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::AbortHandle;
    use vapi_webhooks::replay::RedisReplayStore;

    use super::*;

    fn redis_url(test: &str) -> Option<String> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("{test}: REDIS_URL is not set and CI=true: Redis tests must run in CI")
            }
            _ => {
                eprintln!(
                    "skipping {test}: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)"
                );
                None
            }
        }
    }

    /// A key prefix no other test (or run) shares.
    fn prefix(test: &str) -> String {
        format!("vapi-webhooks-test:{test}:{}:", uuid::Uuid::new_v4())
    }

    async fn store(url: &str, prefix: &str) -> RedisReplayStore {
        RedisReplayStore::connect(url)
            .await
            .expect("connect to REDIS_URL")
            .prefix(prefix)
    }

    /// A server instance: its own connection to Redis, the shared prefix, real clock.
    fn server(handler: &Handler, credential: &Credential, store: RedisReplayStore) -> Router {
        handler.router(
            SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
                .tolerance(Duration::from_secs(30))
                .replay_guard(ReplayGuard::new(store).margin(Duration::from_secs(5))),
        )
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_redis, ignore = "needs REDIS_URL (a Redis server)")]
    async fn two_servers_sharing_redis_refuse_each_others_replays() {
        let Some(url) = redis_url("two_servers_sharing_redis_refuse_each_others_replays") else {
            return;
        };
        let prefix = prefix("two-servers");
        let credential = hmac();
        let (first, second) = (Handler::default(), Handler::default());
        let server_1 = server(&first, &credential, store(&url, &prefix).await);
        let server_2 = server(&second, &credential, store(&url, &prefix).await);

        let signed = Signer::new(&credential).headers(BODY);
        send(&server_1, &signed, BODY).await.assert_handled();
        send(&server_2, &signed, BODY)
            .await
            .assert_acknowledged_replay();
        assert_eq!((first.runs(), second.runs()), (1, 0));

        // A handler 5xx on one server releases the key for a retry on the other.
        let failing = Handler {
            fail_first: 1,
            ..Handler::default()
        };
        let server_3 = server(&failing, &credential, store(&url, &prefix).await);
        let body = br#"{"message":{"type":"end-of-call-report"}}"#;
        let other = Signer::new(&credential).headers(body);
        let failed = send(&server_3, &other, &body[..]).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        send(&server_1, &other, &body[..]).await.assert_handled();
        send(&server_2, &other, &body[..])
            .await
            .assert_acknowledged_replay();
        assert_eq!((first.runs(), second.runs(), failing.runs()), (2, 0, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(vapi_no_redis, ignore = "needs REDIS_URL (a Redis server)")]
    async fn fifty_concurrent_identical_deliveries_across_two_servers_run_once() {
        let Some(url) =
            redis_url("fifty_concurrent_identical_deliveries_across_two_servers_run_once")
        else {
            return;
        };
        let prefix = prefix("concurrent");
        let credential = hmac();
        let handler = Handler {
            delay: Duration::from_millis(20),
            ..Handler::default()
        };
        let servers = [
            server(&handler, &credential, store(&url, &prefix).await),
            server(&handler, &credential, store(&url, &prefix).await),
        ];
        let signed = Signer::new(&credential).headers(BODY);
        let replies = concurrently(50, |i| (servers[i % 2].clone(), signed.clone())).await;
        assert_exactly_one_handled(&replies);
        assert_eq!(handler.runs(), 1);
    }

    /// A TCP proxy in front of Redis that the test can cut (dropping every connection and
    /// refusing new ones) and restore, so that the shared Redis itself is never stopped.
    struct Proxy {
        addr: SocketAddr,
        up: Arc<AtomicBool>,
        conns: Arc<Mutex<Vec<AbortHandle>>>,
        accept: AbortHandle,
    }

    impl Proxy {
        async fn start(url: &str) -> Self {
            let upstream = redis_addr(url);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let up = Arc::new(AtomicBool::new(true));
            let conns = Arc::new(Mutex::new(Vec::new()));
            let (is_up, tracked) = (up.clone(), conns.clone());
            let accept = tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !is_up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    tracked.lock().unwrap().push(relay.abort_handle());
                }
            })
            .abort_handle();
            Self {
                addr,
                up,
                conns,
                accept,
            }
        }

        /// `REDIS_URL` with the host and port replaced by the proxy's.
        fn url(&self, url: &str) -> String {
            let upstream = redis_addr(url);
            url.replacen(&upstream, &self.addr.to_string(), 1)
        }

        fn cut(&self) {
            self.up.store(false, Ordering::SeqCst);
            for conn in self.conns.lock().unwrap().drain(..) {
                conn.abort();
            }
        }

        fn restore(&self) {
            self.up.store(true, Ordering::SeqCst);
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.cut();
            self.accept.abort();
        }
    }

    /// `host:port` of a `redis://[user:pass@]host[:port][/db]` URL.
    fn redis_addr(url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
        let host_port = rest.split('/').next().unwrap();
        if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:6379")
        }
    }

    /// A fresh delivery (its own body), so that attempts never replay each other.
    fn delivery(credential: &Credential, n: usize) -> (HeaderMap, Bytes) {
        let body = Bytes::from(format!(
            r#"{{"message":{{"type":"status-update","n":{n}}}}}"#
        ));
        (Signer::new(credential).headers(&body), body)
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_redis, ignore = "needs REDIS_URL (a Redis server)")]
    async fn redis_down_is_a_503_with_retry_after_and_recovers_when_it_returns() {
        let Some(url) =
            redis_url("redis_down_is_a_503_with_retry_after_and_recovers_when_it_returns")
        else {
            return;
        };
        let proxy = Proxy::start(&url).await;
        let credential = hmac();
        let handler = Handler::default();
        let router = server(
            &handler,
            &credential,
            store(&proxy.url(&url), &prefix("down")).await,
        );
        let (headers, body) = delivery(&credential, 0);
        send(&router, &headers, body).await.assert_handled();

        proxy.cut();
        let (headers, body) = delivery(&credential, 1);
        let down = send(&router, &headers, body.clone()).await;
        down.assert_unavailable();
        assert!(matches!(down.replay_error(), ReplayError::Unavailable(_)));
        assert_eq!(handler.runs(), 1);

        proxy.restore();
        // The connection is re-established in the background: poll (bounded) until it is.
        let mut attempt = 2;
        let recovered = loop {
            let (headers, body) = delivery(&credential, attempt);
            let reply = send(&router, &headers, body.clone()).await;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                break (reply, headers, body);
            }
            assert!(attempt < 100, "Redis did not come back through the proxy");
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (reply, headers, body) = recovered;
        reply.assert_handled();
        send(&router, &headers, body)
            .await
            .assert_acknowledged_replay();
        assert_eq!(handler.runs(), 2);
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_redis, ignore = "needs REDIS_URL (a Redis server)")]
    async fn fail_open_lets_requests_through_while_redis_is_cut() {
        let Some(url) = redis_url("fail_open_lets_requests_through_while_redis_is_cut") else {
            return;
        };
        let proxy = Proxy::start(&url).await;
        let credential = hmac();
        let handler = Handler::default();
        let store = store(&proxy.url(&url), &prefix("fail-open")).await;
        let router = handler.router(
            SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
                .replay_guard(ReplayGuard::new(store).fail_open(true)),
        );
        proxy.cut();
        let (headers, body) = delivery(&credential, 0);
        send(&router, &headers, body).await.assert_handled();
        assert_eq!(handler.runs(), 1);
    }
}
