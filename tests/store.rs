//! InMemoryStore and CachedStore.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use uuid::Uuid;
use vapi_webhooks::store::StoreError;
use vapi_webhooks::verify::{Credentials, SecretError, SecretProvider};
use vapi_webhooks::{AssistantOrgStore, CachedStore, Credential, InMemoryStore, OrgId, TenantKey};

fn org() -> OrgId {
    OrgId::new(Uuid::new_v4())
}

fn assistant(id: &str) -> TenantKey {
    TenantKey::Assistant(id.into())
}

/// Counts backend calls; can be switched to failing.
#[derive(Default)]
struct Counting {
    inner: InMemoryStore,
    org_calls: AtomicUsize,
    credential_calls: AtomicUsize,
    down: AtomicBool,
}

impl Counting {
    fn new(inner: InMemoryStore) -> Arc<Self> {
        Arc::new(Self {
            inner,
            ..Self::default()
        })
    }
    fn org_calls(&self) -> usize {
        self.org_calls.load(Ordering::SeqCst)
    }
    fn credential_calls(&self) -> usize {
        self.credential_calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl AssistantOrgStore for Counting {
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        self.org_calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("connection refused"));
        }
        self.inner.org_for(key).await
    }
}

#[async_trait::async_trait]
impl SecretProvider for Counting {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        self.credential_calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(SecretError::Unavailable(Arc::new(std::io::Error::other(
                "down",
            ))));
        }
        self.inner.credentials(org).await
    }
}

#[tokio::test]
async fn in_memory_store_maps_each_key_kind_separately() {
    let (a, b, c, d, e) = (org(), org(), org(), org(), org());
    let store = InMemoryStore::builder()
        .assistant("x", a)
        .squad("x", b)
        .phone_number("x", c)
        .vapi_org("x", d)
        .slug("x", e)
        .build();
    let lookups = [
        (TenantKey::Assistant("x".into()), a),
        (TenantKey::Squad("x".into()), b),
        (TenantKey::PhoneNumber("x".into()), c),
        (TenantKey::VapiOrg("x".into()), d),
        (TenantKey::Slug("x".into()), e),
    ];
    for (key, want) in lookups {
        assert_eq!(store.org_for(&key).await.unwrap(), Some(want), "{key}");
    }
    assert_eq!(store.org_for(&assistant("y")).await.unwrap(), None);
}

#[tokio::test]
async fn in_memory_store_works_as_a_shared_trait_object() {
    let a = org();
    let store: Arc<dyn AssistantOrgStore> =
        Arc::new(InMemoryStore::builder().assistant("x", a).build());
    assert_eq!(store.org_for(&assistant("x")).await.unwrap(), Some(a));
}

#[tokio::test]
async fn in_memory_store_provides_per_org_credentials() {
    let (with, without) = (org(), org());
    let store = InMemoryStore::builder()
        .assistant("x", with)
        .assistant("y", without)
        .credential(with, Credential::vapi_hmac("one").unwrap())
        .credential(with, Credential::vapi_hmac("two").unwrap())
        .build();
    assert_eq!(store.credentials(Some(&with)).await.unwrap().len(), 2);
    assert!(store.credentials(Some(&without)).await.unwrap().is_empty());
    assert!(matches!(
        store.credentials(None).await,
        Err(SecretError::OrgRequired)
    ));
}

#[test]
fn in_memory_store_debug_shows_counts_not_keys_or_secrets() {
    let a = org();
    let store = InMemoryStore::builder()
        .assistant("asst-visible?", a)
        .credential(a, Credential::vapi_hmac("super-secret-value").unwrap())
        .build();
    let debug = format!("{store:?}");
    assert_eq!(debug, "InMemoryStore { keys: 1, orgs_with_credentials: 1 }");
}

#[tokio::test]
async fn cache_serves_repeats_without_touching_the_store() {
    let a = org();
    let backend = Counting::new(InMemoryStore::builder().assistant("x", a).build());
    let cached = CachedStore::from_shared(backend.clone());
    for _ in 0..5 {
        assert_eq!(cached.org_for(&assistant("x")).await.unwrap(), Some(a));
    }
    assert_eq!(backend.org_calls(), 1);
}

#[tokio::test]
async fn cache_caches_misses_too() {
    let backend = Counting::new(InMemoryStore::default());
    let cached = CachedStore::from_shared(backend.clone());
    for _ in 0..5 {
        assert_eq!(cached.org_for(&assistant("nobody")).await.unwrap(), None);
    }
    assert_eq!(backend.org_calls(), 1);
}

#[tokio::test]
async fn cache_keeps_key_kinds_apart() {
    let a = org();
    let backend = Counting::new(InMemoryStore::builder().assistant("x", a).build());
    let cached = CachedStore::from_shared(backend.clone());
    assert_eq!(cached.org_for(&assistant("x")).await.unwrap(), Some(a));
    assert_eq!(
        cached.org_for(&TenantKey::Slug("x".into())).await.unwrap(),
        None
    );
    assert_eq!(backend.org_calls(), 2);
}

#[tokio::test]
async fn cache_forgets_after_its_ttl() {
    let a = org();
    let backend = Counting::new(InMemoryStore::builder().assistant("x", a).build());
    let cached = CachedStore::from_shared(backend.clone()).ttl(Duration::from_millis(50));
    cached.org_for(&assistant("x")).await.unwrap();
    cached.org_for(&assistant("nobody")).await.unwrap();
    assert_eq!(backend.org_calls(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cached.org_for(&assistant("x")).await.unwrap(), Some(a));
    assert_eq!(cached.org_for(&assistant("nobody")).await.unwrap(), None);
    assert_eq!(
        backend.org_calls(),
        4,
        "both entries expired and were asked again"
    );
}

#[tokio::test]
async fn cache_does_not_cache_errors() {
    let a = org();
    let backend = Counting::new(InMemoryStore::builder().assistant("x", a).build());
    let cached = CachedStore::from_shared(backend.clone());
    backend.down.store(true, Ordering::SeqCst);
    assert!(cached.org_for(&assistant("x")).await.is_err());
    assert!(cached.org_for(&assistant("x")).await.is_err());
    assert_eq!(backend.org_calls(), 2);
    backend.down.store(false, Ordering::SeqCst);
    assert_eq!(cached.org_for(&assistant("x")).await.unwrap(), Some(a));
    assert_eq!(cached.org_for(&assistant("x")).await.unwrap(), Some(a));
    assert_eq!(backend.org_calls(), 3);
}

#[tokio::test]
async fn cache_is_bounded_in_entries() {
    let backend = Counting::new(InMemoryStore::default());
    let cached = CachedStore::from_shared(backend.clone()).max_entries(10);
    for i in 0..200 {
        cached.org_for(&assistant(&format!("k{i}"))).await.unwrap();
    }
    assert_eq!(backend.org_calls(), 200);
    // After the burst the cache holds about 10 of the 200 keys (moka evicts in batches, so allow
    // slack): asking all again reaches the backend for most of them. Unbounded, it would be 0.
    for i in 0..200 {
        cached.org_for(&assistant(&format!("k{i}"))).await.unwrap();
    }
    assert!(
        backend.org_calls() >= 200 + 150,
        "calls: {}",
        backend.org_calls()
    );
}

#[tokio::test]
async fn cache_does_not_keep_overlong_keys() {
    let backend = Counting::new(InMemoryStore::default());
    let cached = CachedStore::from_shared(backend.clone());
    let long = "a".repeat(CachedStore::<Counting>::MAX_CACHED_KEY_LEN + 1);
    cached.org_for(&assistant(&long)).await.unwrap();
    cached.org_for(&assistant(&long)).await.unwrap();
    assert_eq!(backend.org_calls(), 2);
}

#[tokio::test]
async fn cache_caches_credentials_per_org_and_passes_none_through() {
    let (a, b) = (org(), org());
    let backend = Counting::new(
        InMemoryStore::builder()
            .credential(a, Credential::vapi_hmac("secret-a").unwrap())
            .build(),
    );
    let cached = CachedStore::from_shared(backend.clone());
    for _ in 0..3 {
        assert_eq!(cached.credentials(Some(&a)).await.unwrap().len(), 1);
        assert!(cached.credentials(Some(&b)).await.unwrap().is_empty());
    }
    assert_eq!(backend.credential_calls(), 2);
    for _ in 0..2 {
        assert!(matches!(
            cached.credentials(None).await,
            Err(SecretError::OrgRequired)
        ));
    }
    assert_eq!(backend.credential_calls(), 4, "None is never cached");
}

#[tokio::test]
async fn cache_does_not_cache_credential_errors() {
    let a = org();
    let backend = Counting::new(
        InMemoryStore::builder()
            .credential(a, Credential::vapi_hmac("secret-a").unwrap())
            .build(),
    );
    let cached = CachedStore::from_shared(backend.clone());
    backend.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        cached.credentials(Some(&a)).await,
        Err(SecretError::Unavailable(_))
    ));
    backend.down.store(false, Ordering::SeqCst);
    assert_eq!(cached.credentials(Some(&a)).await.unwrap().len(), 1);
    assert_eq!(backend.credential_calls(), 2);
}

#[tokio::test]
async fn invalidate_all_forgets_everything() {
    let a = org();
    let backend = Counting::new(InMemoryStore::builder().assistant("x", a).build());
    let cached = CachedStore::from_shared(backend.clone());
    cached.org_for(&assistant("x")).await.unwrap();
    cached.invalidate_all();
    cached.org_for(&assistant("x")).await.unwrap();
    assert_eq!(backend.org_calls(), 2);
}
