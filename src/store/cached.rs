use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::org::{OrgId, TenantKey};
use crate::store::{AssistantOrgStore, Credentials, SecretError, SecretProvider, StoreError};

/// A caching wrapper over any [`AssistantOrgStore`] (and [`SecretProvider`]).
///
/// * Answers are kept for [`ttl`](Self::ttl) (default 60 s) in a cache of at most
///   [`max_entries`](Self::max_entries) entries (default 10,000), built on
///   [moka](https://docs.rs/moka);
/// * misses ("no organisation owns this key") are cached too, so unknown keys do not reach
///   the backend on every request;
/// * errors are never cached: the next request asks the backend again;
/// * keys longer than [`MAX_CACHED_KEY_LEN`](Self::MAX_CACHED_KEY_LEN) bytes are not cached, so
///   attacker-chosen keys cannot make the cache hold more than about
///   `max_entries × MAX_CACHED_KEY_LEN` bytes of keys;
/// * when the wrapped store is a [`SecretProvider`], so is this one, caching each
///   organisation's credentials the same way in a second cache of the same size (a request
///   without an organisation is passed through uncached).
///
/// Cloning is cheap and clones share the caches.
pub struct CachedStore<S: ?Sized> {
    inner: Arc<S>,
    orgs: Cache<TenantKey, Option<OrgId>>,
    credentials: Cache<OrgId, Credentials>,
    max_entries: u64,
    ttl: Duration,
}

impl<S> CachedStore<S> {
    /// Wraps `inner` with the default bounds.
    pub fn new(inner: S) -> Self {
        Self::from_shared(Arc::new(inner))
    }
}

impl<S: ?Sized> CachedStore<S> {
    /// Default [`max_entries`](Self::max_entries).
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
    /// Default [`ttl`](Self::ttl).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
    /// Keys longer than this many bytes bypass the cache.
    pub const MAX_CACHED_KEY_LEN: usize = 256;

    /// Wraps a shared store, e.g. an `Arc<dyn AssistantOrgStore>`.
    pub fn from_shared(inner: Arc<S>) -> Self {
        Self::build(inner, Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_TTL)
    }

    /// At most `n` entries per cache (keys, and credentials). Starts with empty caches.
    pub fn max_entries(self, n: u64) -> Self {
        Self::build(self.inner, n, self.ttl)
    }

    /// Entries are forgotten `ttl` after they were stored. Starts with empty caches.
    pub fn ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, self.max_entries, ttl)
    }

    /// Forgets every cached answer, e.g. after tenants or credentials changed.
    pub fn invalidate_all(&self) {
        self.orgs.invalidate_all();
        self.credentials.invalidate_all();
    }

    /// Forgets what may have changed for `org`: its credentials, the keys it owns, and every
    /// cached miss (a key just added to it was one).
    ///
    /// With the `postgres` feature, `postgres::watch_changes` calls this in every process as
    /// soon as a change commits.
    pub fn invalidate_org(&self, org: &OrgId) {
        self.credentials.invalidate(org);
        let org = *org;
        // Registered predicates apply to every read from now on; the cache drops the entries
        // in the background.
        if self
            .orgs
            .invalidate_entries_if(move |_, owner| owner.is_none_or(|o| o == org))
            .is_err()
        {
            self.orgs.invalidate_all();
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    fn build(inner: Arc<S>, max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner,
            orgs: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            credentials: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            max_entries,
            ttl,
        }
    }
}

#[async_trait::async_trait]
impl<S: AssistantOrgStore + ?Sized> AssistantOrgStore for CachedStore<S> {
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        if key.value().len() > Self::MAX_CACHED_KEY_LEN {
            return self.inner.org_for(key).await;
        }
        if let Some(answer) = self.orgs.get(key) {
            return Ok(answer);
        }
        // Concurrent misses may both ask the backend; the answers are the same.
        let answer = self.inner.org_for(key).await?;
        self.orgs.insert(key.clone(), answer);
        Ok(answer)
    }
}

#[async_trait::async_trait]
impl<S: SecretProvider + ?Sized> SecretProvider for CachedStore<S> {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        let Some(org) = org else {
            return self.inner.credentials(None).await;
        };
        if let Some(credentials) = self.credentials.get(org) {
            return Ok(credentials);
        }
        let credentials = self.inner.credentials(Some(org)).await?;
        self.credentials.insert(*org, credentials.clone());
        Ok(credentials)
    }
}

impl<S: ?Sized> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            orgs: self.orgs.clone(),
            credentials: self.credentials.clone(),
            max_entries: self.max_entries,
            ttl: self.ttl,
        }
    }
}

impl<S: ?Sized> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &std::any::type_name::<S>())
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .finish()
    }
}
