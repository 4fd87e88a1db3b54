//! The behaviour every tenant + credential store must show, whatever its backend.
//!
//! `store_behaviour(setup)` builds a [`Fixture`] of unique values (so parallel runs on a shared
//! database never meet), lets `setup` load it into a fresh store, and checks the store by value.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use vapi_webhooks::credential::{
    Credential, CredentialConfig, CredentialKind, KindName, SecretString,
};
use vapi_webhooks::verify::{SecretError, SecretProvider};
use vapi_webhooks::{AssistantOrgStore, OrgId, TenantKey};

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

async fn actual<S: SecretProvider>(store: &S, org: &OrgId) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = store
        .credentials(Some(org))
        .await
        .unwrap_or_else(|e| panic!("credentials of {org}: {e}"))
        .iter()
        .map(fingerprint)
        .collect();
    out.sort();
    out
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
    let a = actual(&store, &fx.a.id).await;
    assert_eq!(a.len(), 3, "A has three active credentials of four");
    assert_eq!(a, expected(&fx.a));
    assert_eq!(actual(&store, &fx.b.id).await, expected(&fx.b));
    assert_eq!(actual(&store, &fx.b.id).await.len(), 1);
    // No credential at all: an empty list (the verify layer answers 401), not an error.
    assert!(actual(&store, &fx.bare.id).await.is_empty());
    assert!(actual(&store, &OrgId::new(Uuid::new_v4())).await.is_empty());
    // No org: a per-org provider cannot answer.
    assert!(matches!(
        store.credentials(None).await,
        Err(SecretError::OrgRequired)
    ));

    // Sanity for the fixture itself: the expired one is really expired.
    let expired = fx.a.credentials[3].build().unwrap();
    assert!(!expired.is_active(SystemTime::now()));
    assert!(expired.is_active(SystemTime::now() - Duration::from_secs(7200)));
}
