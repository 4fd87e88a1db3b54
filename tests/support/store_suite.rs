//! The behaviour every tenant + credential store must show, whatever its backend.
//!
//! `store_behaviour(setup)` builds a [`Fixture`] of unique values (so parallel runs on a shared
//! database never meet), lets `setup` load it into a fresh store, and checks the store by value.
//!
//! Expiry: a store may leave expired credentials out (Postgres filters by the database's clock)
//! or return them (`InMemoryStore` keeps every credential, so a test's injected clock decides).
//! Either way `SignatureVerifyLayer` uses only the credentials active by its own clock, so the
//! suite compares the *active* credentials a store returns, checks that nothing else it returns
//! belongs to another org, and checks expiry as seen through the layers.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer as _, ServiceExt as _};
use uuid::Uuid;
use vapi_webhooks::credential::{
    Credential, CredentialConfig, CredentialKind, KindName, SecretString,
};
use vapi_webhooks::testing::Signer;
use vapi_webhooks::verify::{SecretError, SecretProvider};
use vapi_webhooks::{
    AssistantOrgStore, OrgContext, OrgId, OrgResolveLayer, SignatureVerifyLayer, TenantKey,
    TenantLocator, Verified,
};

/// An organisation with its tenant keys and credentials (active and expired).
#[derive(Clone)]
pub struct FixtureOrg {
    pub id: OrgId,
    pub keys: Vec<TenantKey>,
    pub credentials: Vec<CredentialConfig>,
}

/// Two orgs with keys of every kind and several credential kinds, and an org with a key but no
/// credential.
#[derive(Clone)]
pub struct Fixture {
    pub a: FixtureOrg,
    pub b: FixtureOrg,
    pub bare: FixtureOrg,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// Whole seconds from now (Postgres keeps microseconds; whole seconds compare exactly).
fn at(offset_secs: i64) -> time::OffsetDateTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(now + offset_secs).unwrap()
}

fn config(json: serde_json::Value) -> CredentialConfig {
    serde_json::from_value(json).expect("fixture credential")
}

impl Fixture {
    pub fn new() -> Self {
        let a = FixtureOrg {
            id: OrgId::new(Uuid::new_v4()),
            keys: vec![
                TenantKey::Assistant(unique("asst").into()),
                TenantKey::Squad(unique("squad").into()),
                TenantKey::PhoneNumber(unique("phone").into()),
                TenantKey::VapiOrg(unique("vorg").into()),
                TenantKey::Slug(unique("slug").into()),
            ],
            credentials: vec![
                // A customised HMAC: every parameter must survive storage.
                config(serde_json::json!({
                    "kind": "hmac", "secret": unique("hmac-secret"), "algorithm": "sha512",
                    "signature_header": "x-custom-sig", "timestamp_header": "x-custom-ts",
                    "payload_format": "{timestamp}:{body}", "encoding": "base64", "prefix": "v1=",
                })),
                config(serde_json::json!({
                    "kind": "secret-header", "secret": unique("header-secret"), "header": "x-vapi-secret",
                })),
                // Being rotated out: still active for an hour.
                config(serde_json::json!({
                    "kind": "bearer", "secret": unique("bearer-token"),
                    "not_after": at(3600).format(&time::format_description::well_known::Rfc3339).unwrap(),
                })),
                // Expired: never returned.
                config(serde_json::json!({
                    "kind": "bearer", "secret": unique("expired-token"),
                    "not_after": at(-3600).format(&time::format_description::well_known::Rfc3339).unwrap(),
                })),
            ],
        };
        let b = FixtureOrg {
            id: OrgId::new(Uuid::new_v4()),
            keys: vec![TenantKey::Assistant(unique("asst").into())],
            credentials: vec![CredentialConfig::new(
                KindName::StandardWebhooks,
                // whsec_ + base64 of 24 random bytes.
                SecretString::new(format!("whsec_{}", base64_of(Uuid::new_v4().as_bytes())))
                    .unwrap(),
            )],
        };
        let bare = FixtureOrg {
            id: OrgId::new(Uuid::new_v4()),
            keys: vec![TenantKey::Slug(unique("bare").into())],
            credentials: vec![],
        };
        Self { a, b, bare }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The secret bytes of a credential, for comparing by value.
pub fn secret_of(credential: &Credential) -> Vec<u8> {
    match credential.kind() {
        CredentialKind::Hmac(h) => h.secret().expose().to_vec(),
        CredentialKind::SecretHeader(h) | CredentialKind::Bearer(h) => h.secret().expose().to_vec(),
        other => panic!("unexpected credential kind {other:?}"),
    }
}

/// A credential by value: its full `Debug` (every parameter and the expiry, secret redacted)
/// and its secret bytes.
pub fn fingerprint(credential: &Credential) -> (String, Vec<u8>) {
    (format!("{credential:?}"), secret_of(credential))
}

fn expected(org: &FixtureOrg) -> Vec<(String, Vec<u8>)> {
    let now = SystemTime::now();
    let mut out: Vec<_> = org
        .credentials
        .iter()
        .map(|c| c.build().unwrap())
        .filter(|c| c.is_active(now))
        .map(|c| fingerprint(&c))
        .collect();
    out.sort();
    out
}

/// Every credential of `org`, expired ones included.
fn all_of(org: &FixtureOrg) -> Vec<(String, Vec<u8>)> {
    org.credentials
        .iter()
        .map(|c| fingerprint(&c.build().unwrap()))
        .collect()
}

/// The active credentials the store returns for `org`, after checking that everything it
/// returns (expired ones included) is one of `own`.
async fn actual<S: SecretProvider>(
    store: &S,
    org: &OrgId,
    own: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let returned = store
        .credentials(Some(org))
        .await
        .unwrap_or_else(|e| panic!("credentials of {org}: {e}"));
    for credential in returned.iter() {
        assert!(
            own.contains(&fingerprint(credential)),
            "{org} got a credential that is not its own: {credential:?}"
        );
    }
    let now = SystemTime::now();
    let mut out: Vec<_> = returned
        .iter()
        .filter(|c| c.is_active(now))
        .map(fingerprint)
        .collect();
    out.sort();
    out
}

/// What the handler behind the layers saw: the verified org and the org context.
type Seen = (StatusCode, Option<OrgId>);

/// Sends `body` to `uri`, signed by `credential`, through `OrgResolveLayer` (query parameter
/// `tenant`, then the payload) + `SignatureVerifyLayer` over `store`; counts handler runs.
async fn through_layers<S>(
    store: &Arc<S>,
    runs: &Arc<AtomicUsize>,
    uri: &str,
    body: String,
    credential: &Credential,
) -> Seen
where
    S: AssistantOrgStore + SecretProvider,
{
    let runs = runs.clone();
    let handler = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let verified = req.extensions().get::<Verified>().and_then(|v| v.org);
            let context = req.extensions().get::<OrgContext>().map(|c| c.org_id);
            assert_eq!(verified, context, "verified org is the resolved org");
            let mut res = Response::new(Full::new(Bytes::new()));
            res.extensions_mut().insert(verified);
            Ok::<_, Infallible>(res)
        }
    });
    let resolve = OrgResolveLayer::from_shared(store.clone())
        .locator(TenantLocator::query("tenant"))
        .locator(TenantLocator::payload());
    let service = resolve.layer(SignatureVerifyLayer::from_shared(store.clone()).layer(handler));
    let mut req = Request::post(uri)
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    req.headers_mut()
        .extend(Signer::new(credential).headers(body.as_bytes()));
    let res = service.oneshot(req).await.unwrap();
    let org = res.extensions().get::<Option<OrgId>>().copied().flatten();
    (res.status(), org)
}

fn assistant_body(assistant: &str) -> String {
    serde_json::json!({"message": {"type": "status-update", "call": {"assistantId": assistant}}})
        .to_string()
}

/// Runs the shared behaviour on the store `setup` builds from a fresh [`Fixture`].
pub async fn store_behaviour<S, F, Fut>(setup: F)
where
    S: AssistantOrgStore + SecretProvider,
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = S>,
{
    let fx = Fixture::new();
    let store = setup(fx.clone()).await;

    // Every key maps to its own org.
    for org in [&fx.a, &fx.b, &fx.bare] {
        for key in &org.keys {
            assert_eq!(store.org_for(key).await.unwrap(), Some(org.id), "{key}");
        }
    }
    // Unknown keys, and a known value under another kind (kinds are separate namespaces).
    assert_eq!(
        store
            .org_for(&TenantKey::Assistant(unique("nobody").into()))
            .await
            .unwrap(),
        None
    );
    let a_assistant = fx.a.keys[0].value();
    assert_eq!(
        store
            .org_for(&TenantKey::Squad(a_assistant.into()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .org_for(&TenantKey::Slug(a_assistant.into()))
            .await
            .unwrap(),
        None
    );

    // Credentials: exactly the org's active ones, every parameter and secret intact.
    let a = actual(&store, &fx.a.id, &all_of(&fx.a)).await;
    assert_eq!(a.len(), 3, "A has three active credentials of four");
    assert_eq!(a, expected(&fx.a));
    let b = actual(&store, &fx.b.id, &all_of(&fx.b)).await;
    assert_eq!(b, expected(&fx.b));
    assert_eq!(b.len(), 1);
    // No credential at all: an empty list (the verify layer answers 401), not an error.
    assert!(
        store
            .credentials(Some(&fx.bare.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .credentials(Some(&OrgId::new(Uuid::new_v4())))
            .await
            .unwrap()
            .is_empty()
    );
    // No org: a per-org provider cannot answer.
    assert!(matches!(
        store.credentials(None).await,
        Err(SecretError::OrgRequired)
    ));

    // Sanity for the fixture itself: the expired one is really expired.
    let expired = fx.a.credentials[3].build().unwrap();
    assert!(!expired.is_active(SystemTime::now()));
    assert!(expired.is_active(SystemTime::now() - Duration::from_secs(7200)));

    // Through the layers: A's body passes with each of A's active credentials and reaches the
    // handler as A; A's expired credential, B's credential, and the credential-less org's key
    // are all 401 with the handler not run.
    let store = Arc::new(store);
    let runs = Arc::new(AtomicUsize::new(0));
    let a_body = assistant_body(fx.a.keys[0].value());
    for config in &fx.a.credentials[..3] {
        let credential = config.build().unwrap();
        assert_eq!(
            through_layers(&store, &runs, "/hook", a_body.clone(), &credential).await,
            (StatusCode::OK, Some(fx.a.id)),
            "{credential:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let b_credential = fx.b.credentials[0].build().unwrap();
    let bare_uri = format!("/hook?tenant={}", fx.bare.keys[0].value());
    let no_call = r#"{"message":{"type":"status-update"}}"#.to_owned();
    for (uri, body, credential) in [
        ("/hook", a_body.clone(), &expired),
        ("/hook", a_body.clone(), &b_credential),
        (bare_uri.as_str(), no_call, &b_credential),
    ] {
        assert_eq!(
            through_layers(&store, &runs, uri, body, credential).await,
            (StatusCode::UNAUTHORIZED, None),
            "{credential:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "no rejected request ran");
    // B's body with B's credential passes as B.
    assert_eq!(
        through_layers(
            &store,
            &runs,
            "/hook",
            assistant_body(fx.b.keys[0].value()),
            &b_credential
        )
        .await,
        (StatusCode::OK, Some(fx.b.id))
    );
}
