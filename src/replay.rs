//! Replay protection: a validly signed request is accepted once.
//!
//! A captured, validly signed Vapi request could be sent again within the timestamp window.
//! Vapi sends no event id, so a delivery is recognised by its organisation and its message id
//! (Standard Webhooks' `webhook-id`, or the HMAC credential's message id header when the request
//! carries it), else by the signature that verified it (unique per timestamp and body), else,
//! for shared-secret and bearer credentials, by a hash of the body.
//!
//! [`ReplayGuard`] is a step of [`SignatureVerifyLayer`](crate::verify::SignatureVerifyLayer),
//! off by default and turned on with one line, `.replay_guard(ReplayGuard::in_memory())`. It
//! remembers each accepted delivery for the timestamp tolerance plus a margin (default 60 s);
//! after that, the stale timestamp is what rejects a replay. A replay is answered `200` with an
//! empty body without running the handler (the first delivery was processed), or `409` with
//! [`ReplayAnswer::Conflict`]. Concurrent identical deliveries run the handler exactly once. If
//! the handler answers 5xx, the delivery is forgotten so that a retry can succeed.
//!
//! Stores:
//! * [`InMemoryReplayStore`], one process: bounded in entries and age (moka). **When full it
//!   fails closed**: a new delivery is answered 503 with `Retry-After` (and a warning is
//!   logged) until entries expire — it never forgets a live entry to make room, which would
//!   silently let a replay through. Size it for your peak deliveries per window.
//! * `RedisReplayStore` (feature `redis`), shared by a fleet behind a load balancer: atomic
//!   `SET key NX PX ttl`. Redis unreachable → 503 with `Retry-After` (fail closed), or, with
//!   [`ReplayGuard::fail_open`], the request proceeds and a warning is logged.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vapi_webhooks::replay::{InMemoryReplayStore, ReplayAnswer, ReplayGuard};
//!
//! // Default: in-process, 100 000 entries, answered 200 without running the handler.
//! let guard = ReplayGuard::in_memory();
//! // Customised: a bigger store, a longer margin, 409 for replays.
//! let guard = ReplayGuard::new(InMemoryReplayStore::new(1_000_000))
//!     .margin(Duration::from_secs(120))
//!     .answer(ReplayAnswer::Conflict);
//! # let _ = guard;
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::org::OrgId;

#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::RedisReplayStore;

/// How a replayed delivery is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayAnswer {
    /// `200` with an empty body: the first delivery was already processed (default).
    #[default]
    Acknowledge,
    /// `409 Conflict`.
    Conflict,
}

/// Why the replay guard stopped a request.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This delivery was already accepted (200 or 409, per [`ReplayAnswer`]).
    #[error("replayed delivery")]
    Replayed(ReplayAnswer),
    /// The in-process store is full of live entries (503).
    #[error("replay store is full")]
    Full,
    /// The replay store failed (503).
    #[error("replay store unavailable")]
    Unavailable(#[source] Arc<dyn StdError + Send + Sync>),
}

impl ReplayError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Replayed(ReplayAnswer::Acknowledge) => StatusCode::OK,
            Self::Replayed(ReplayAnswer::Conflict) => StatusCode::CONFLICT,
            Self::Full | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A store failure, reported by a [`ReplayStore`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store holds as many live entries as it may.
    #[error("replay store is full")]
    Full,
    /// The backend failed.
    #[error("replay store backend failed")]
    Backend(#[source] Arc<dyn StdError + Send + Sync>),
}

impl ReplayStoreError {
    /// Wraps a backend error.
    pub fn backend(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backend(Arc::from(err.into()))
    }
}

/// Remembers delivery keys for a while. Async and object-safe.
#[async_trait::async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Atomically remembers `key` for `ttl` unless it is already remembered. `Ok(true)` means
    /// the key is new (the delivery may proceed); `Ok(false)` means it is a replay.
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, ReplayStoreError>;

    /// Forgets `key`, so a retry of a delivery whose handler failed is accepted.
    async fn remove(&self, key: &str) -> Result<(), ReplayStoreError>;
}

/// The in-process [`ReplayStore`]: bounded in entries and age, failing closed when full.
#[derive(Clone)]
pub struct InMemoryReplayStore {
    cache: moka::sync::Cache<Arc<str>, Duration>,
    limit: u64,
}

/// Each entry lives for the ttl it was inserted with.
struct PerEntryTtl;

impl moka::Expiry<Arc<str>, Duration> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        ttl: &Duration,
        _now: Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

impl InMemoryReplayStore {
    /// The default number of live entries: 100 000.
    pub const DEFAULT_LIMIT: u64 = 100_000;

    /// A store that holds at most `limit` live entries.
    pub fn new(limit: u64) -> Self {
        let limit = limit.max(1);
        Self {
            // moka evicts only past its own capacity; the headroom above `limit` keeps its
            // eventually consistent count from ever evicting a live entry before `limit` refuses.
            cache: moka::sync::Cache::builder()
                .max_capacity(limit.saturating_mul(2))
                .expire_after(PerEntryTtl)
                .build(),
            limit,
        }
    }

    /// The number of live entries (approximate until pending maintenance runs).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT)
    }
}

impl fmt::Debug for InMemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryReplayStore")
            .field("limit", &self.limit)
            .field("len", &self.cache.entry_count())
            .finish()
    }
}

#[async_trait::async_trait]
impl ReplayStore for InMemoryReplayStore {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, ReplayStoreError> {
        if self.cache.contains_key(key) {
            return Ok(false);
        }
        if self.cache.entry_count() >= self.limit {
            self.cache.run_pending_tasks();
            if self.cache.entry_count() >= self.limit {
                return Err(ReplayStoreError::Full);
            }
        }
        let entry = self.cache.entry(Arc::from(key)).or_insert_with(|| ttl);
        Ok(entry.is_fresh())
    }

    async fn remove(&self, key: &str) -> Result<(), ReplayStoreError> {
        self.cache.invalidate(key);
        Ok(())
    }
}

/// Replay protection, installed on a `SignatureVerifyLayer` with `.replay_guard(…)`.
#[derive(Clone)]
pub struct ReplayGuard {
    store: Arc<dyn ReplayStore>,
    margin: Duration,
    answer: ReplayAnswer,
    fail_open: bool,
}

/// What the verify layer matched, from which a delivery key is derived.
#[derive(Debug)]
pub(crate) enum Fingerprint<'a> {
    /// A message id header's value.
    MessageId(&'a [u8]),
    /// The decoded signature that verified the request.
    Signature(&'a [u8]),
    /// The raw body (credentials without a per-request signature).
    Body(&'a [u8]),
}

/// Whether the handler may run, and the key to forget if it fails.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A new delivery, remembered under this key.
    New(String),
    /// The store failed and the guard fails open.
    Unchecked,
}

impl ReplayGuard {
    /// The default margin added to the timestamp tolerance: 60 s.
    pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

    /// A guard over `store`.
    pub fn new(store: impl ReplayStore) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// A guard over a shared store.
    pub fn from_shared(store: Arc<dyn ReplayStore>) -> Self {
        Self {
            store,
            margin: Self::DEFAULT_MARGIN,
            answer: ReplayAnswer::default(),
            fail_open: false,
        }
    }

    /// A guard over a default [`InMemoryReplayStore`].
    pub fn in_memory() -> Self {
        Self::new(InMemoryReplayStore::default())
    }

    /// How long past the timestamp tolerance a delivery is remembered.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// How a replay is answered.
    pub fn answer(mut self, answer: ReplayAnswer) -> Self {
        self.answer = answer;
        self
    }

    /// Lets requests through (with a warning) when the store fails, instead of answering 503.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// The delivery key: org and a SHA-256 of what identifies the delivery.
    pub(crate) fn key(org: Option<&OrgId>, fingerprint: &Fingerprint<'_>) -> String {
        let (tag, material): (&[u8], &[u8]) = match fingerprint {
            Fingerprint::MessageId(id) => (b"id", id),
            Fingerprint::Signature(sig) => (b"sig", sig),
            Fingerprint::Body(body) => (b"body", body),
        };
        let mut hash = Sha256::new();
        hash.update(tag);
        hash.update([0]);
        hash.update(material);
        let org = org.map_or_else(|| "-".to_owned(), OrgId::to_string);
        format!("{org}:{}", hex::encode(hash.finalize()))
    }

    /// Admits a delivery, or says why not.
    pub(crate) async fn admit(
        &self,
        org: Option<&OrgId>,
        fingerprint: &Fingerprint<'_>,
        tolerance: Duration,
    ) -> Result<Admission, ReplayError> {
        let key = Self::key(org, fingerprint);
        let failed = |err: ReplayError| {
            if self.fail_open {
                match org {
                    Some(org) => {
                        tracing::warn!(org = %org, error = %err, "replay guard failing open")
                    }
                    None => tracing::warn!(error = %err, "replay guard failing open"),
                }
                Ok(Admission::Unchecked)
            } else {
                Err(err)
            }
        };
        match self
            .store
            .insert_if_absent(&key, tolerance + self.margin)
            .await
        {
            Ok(true) => Ok(Admission::New(key)),
            Ok(false) => Err(ReplayError::Replayed(self.answer)),
            Err(ReplayStoreError::Full) => failed(ReplayError::Full),
            Err(ReplayStoreError::Backend(err)) => failed(ReplayError::Unavailable(err)),
        }
    }

    /// Forgets a delivery whose handler failed.
    pub(crate) async fn release(&self, key: &str) {
        if let Err(err) = self.store.remove(key).await {
            tracing::warn!(error = %err, "replay guard could not forget a failed delivery");
        }
    }
}

impl fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("margin", &self.margin)
            .field("answer", &self.answer)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}
