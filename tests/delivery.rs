//! DESIGN §8 at the edge: a delivery counts as received only once the handler answered 2xx;
//! the in-process replay store is fair between organisations; chat, session and workflow
//! messages find their tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;
use uuid::Uuid;
use vapi_webhooks::reject::Reason;
use vapi_webhooks::replay::{
    DeliveryKey, InMemoryReplayStore, ReplayError, ReplayGuard, ReplayStore,
};
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{
    Credential, InMemoryStore, KeySource, Org, OrgId, OrgResolveLayer, Rejection,
    SignatureVerifyLayer, TenantKey,
};

fn org(n: u128) -> OrgId {
    OrgId::new(Uuid::from_u128(n))
}

fn credential(n: u128) -> Credential {
    Credential::bearer(format!("token-of-org-{n}")).unwrap()
}

/// Orgs 1 and 2, each owning `asst-<n>`, `squad-<n>` and `wf-<n>`.
fn store() -> InMemoryStore {
    let mut builder = InMemoryStore::builder();
    for n in [1, 2] {
        builder = builder
            .assistant(format!("asst-{n}"), org(n))
            .squad(format!("squad-{n}"), org(n))
            .workflow(format!("wf-{n}"), org(n))
            .credential(org(n), credential(n));
    }
    builder.build()
}

/// A handler that answers `statuses[run]` (then 200), taking `delay` on its first run.
#[derive(Clone)]
struct Handler {
    runs: Arc<AtomicUsize>,
    statuses: Arc<[StatusCode]>,
    first_delay: Duration,
}

impl Handler {
    fn new(statuses: &[StatusCode]) -> Self {
        Self {
            runs: Arc::default(),
            statuses: statuses.into(),
            first_delay: Duration::ZERO,
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn app(&self, guard: ReplayGuard) -> Router {
        let this = self.clone();
        Router::new()
            .route(
                "/vapi",
                post(move |Org(_): Org| {
                    let this = this.clone();
                    async move {
                        let run = this.runs.fetch_add(1, Ordering::SeqCst);
                        if run == 0 && !this.first_delay.is_zero() {
                            tokio::time::sleep(this.first_delay).await;
                        }
                        this.statuses.get(run).copied().unwrap_or(StatusCode::OK)
                    }
                }),
            )
            .layer(SignatureVerifyLayer::new(store()).replay_guard(guard))
            .layer(OrgResolveLayer::new(store()))
    }
}

fn delivery(n: u128, body: &str) -> Request<Body> {
    let mut req = Request::post("/vapi")
        .body(Body::from(body.to_owned()))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(&credential(n)).headers(body.as_bytes()));
    req
}

fn status_update(assistant: &str, marker: usize) -> String {
    format!(
        r#"{{"message":{{"type":"status-update","status":"ended","call":{{"id":"c{marker}","assistantId":"{assistant}"}}}}}}"#
    )
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Option<Rejection>) {
    let res = app.clone().oneshot(req).await.unwrap();
    (res.status(), res.extensions().get::<Rejection>().cloned())
}

#[tokio::test]
async fn any_answer_but_2xx_releases_the_delivery_for_the_retry() {
    for first in [
        StatusCode::BAD_REQUEST,
        StatusCode::REQUEST_TIMEOUT,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let handler = Handler::new(&[first]);
        let app = handler.app(ReplayGuard::in_memory());
        let body = status_update("asst-1", 0);
        assert_eq!(send(&app, delivery(1, &body)).await.0, first);
        // The sender's retry of the same signed request runs the handler again.
        assert_eq!(send(&app, delivery(1, &body)).await.0, StatusCode::OK);
        assert_eq!(handler.runs(), 2, "{first}");
        // Now it was acknowledged: a replay is not handled.
        let (status, rejection) = send(&app, delivery(1, &body)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(matches!(
            rejection.unwrap().reason(),
            Reason::Replay(ReplayError::Replayed(_))
        ));
        assert_eq!(handler.runs(), 2, "{first}");
    }
}

#[tokio::test]
async fn a_timeout_outside_the_layers_forgets_the_delivery() {
    let mut handler = Handler::new(&[]);
    handler.first_delay = Duration::from_millis(300);
    let app = handler
        .app(ReplayGuard::in_memory())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(50),
        ));
    let body = status_update("asst-1", 1);
    // The timeout answers 408 and drops the layers' response future mid-handler.
    assert_eq!(
        send(&app, delivery(1, &body)).await.0,
        StatusCode::REQUEST_TIMEOUT
    );
    // The retry is processed, not acknowledged as a replay of a delivery never stored.
    let (status, rejection) = send(&app, delivery(1, &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rejection.is_none());
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn a_dropped_response_future_forgets_the_delivery() {
    let store = Arc::new(InMemoryReplayStore::new(100));
    let mut handler = Handler::new(&[]);
    handler.first_delay = Duration::from_secs(3600);
    let app = handler.app(ReplayGuard::from_shared(store.clone()));
    let body = status_update("asst-1", 2);
    let pending = tokio::spawn(app.clone().oneshot(delivery(1, &body)));
    while handler.runs() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.len(), 1, "admitted while the handler runs");
    pending.abort();
    let _ = pending.await;
    assert_eq!(store.len(), 0, "forgotten when the future was dropped");
    assert_eq!(send(&app, delivery(1, &body)).await.0, StatusCode::OK);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn one_orgs_flood_never_refuses_another_org() {
    let capacity = 40;
    let store = Arc::new(InMemoryReplayStore::new(capacity));
    let handler = Handler::new(&[]);
    let app = handler.app(ReplayGuard::from_shared(store.clone()));
    let mut refused = 0;
    for i in 0..100 {
        let (status, rejection) = send(&app, delivery(1, &status_update("asst-1", i))).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(matches!(
                rejection.unwrap().reason(),
                Reason::Replay(ReplayError::Full)
            ));
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        100 - capacity as usize,
        "only org 1 is over its share"
    );
    // Org 2's fresh deliveries go through while org 1 floods, up to its own share.
    for i in 0..(capacity / 2) as usize {
        assert_eq!(
            send(&app, delivery(2, &status_update("asst-2", i))).await.0,
            StatusCode::OK,
            "{i}"
        );
        assert_eq!(
            send(&app, delivery(1, &status_update("asst-1", 1000 + i)))
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

#[tokio::test]
async fn the_default_store_holds_a_hundred_thousand_deliveries_and_stays_fair() {
    // 100,050 distinct deliveries of one org (store-level: the layers are covered above).
    let store = InMemoryReplayStore::default();
    let ttl = ReplayGuard::DEFAULT_MARGIN + Duration::from_secs(600);
    let flood = org(1);
    for i in 0u64..100_050 {
        let key = DeliveryKey::from_bytes(digest(i));
        assert!(
            store
                .insert_if_absent(Some(&flood), &key, ttl)
                .await
                .unwrap()
        );
    }
    let fresh = DeliveryKey::from_bytes(digest(u64::MAX));
    assert!(
        store
            .insert_if_absent(Some(&org(2)), &fresh, ttl)
            .await
            .unwrap()
    );
    assert_eq!(store.len(), 100_051);
}

fn digest(i: u64) -> [u8; 16] {
    use sha2::Digest as _;
    let full: [u8; 32] = sha2::Sha256::digest(i.to_le_bytes()).into();
    full[..16].try_into().unwrap()
}

#[tokio::test]
async fn chat_session_and_workflow_messages_find_their_tenant() {
    let cases = [
        (
            r#"{"message":{"type":"chat.created","chat":{"id":"chat-1","assistantId":"asst-2"}}}"#,
            TenantKey::Assistant("asst-2".into()),
            "message.chat.assistantId",
        ),
        (
            r#"{"message":{"type":"chat.deleted","chat":{"squadId":"squad-2"}}}"#,
            TenantKey::Squad("squad-2".into()),
            "message.chat.squadId",
        ),
        (
            r#"{"message":{"type":"session.created","session":{"assistantId":"asst-2"}}}"#,
            TenantKey::Assistant("asst-2".into()),
            "message.session.assistantId",
        ),
        (
            r#"{"message":{"type":"session.deleted","session":{"squadId":"squad-2"}}}"#,
            TenantKey::Squad("squad-2".into()),
            "message.session.squadId",
        ),
        (
            r#"{"message":{"type":"status-update","call":{"workflowId":"wf-2"}}}"#,
            TenantKey::Workflow("wf-2".into()),
            "message.call.workflowId",
        ),
    ];
    for (body, key, path) in cases {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let app = {
            let seen = seen.clone();
            Router::new()
                .route(
                    "/vapi",
                    post(move |Org(ctx): Org| async move {
                        *seen.lock().unwrap() = Some(ctx);
                    }),
                )
                .layer(SignatureVerifyLayer::new(store()))
                .layer(OrgResolveLayer::new(store()))
        };
        assert_eq!(
            send(&app, delivery(2, body)).await.0,
            StatusCode::OK,
            "{body}"
        );
        let ctx = seen.lock().unwrap().take().unwrap();
        assert_eq!(
            (ctx.org_id, ctx.key, ctx.source),
            (org(2), key, KeySource::Payload(path))
        );
        // Signed by the other org: the same uniform 401.
        let res = app.clone().oneshot(delivery(1, body)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let text = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, Bytes::from_static(br#"{"error":"unauthorized"}"#));
    }
}
