//! Replay protection: a validly signed request is accepted once.
//!
//! A captured, validly signed Vapi request could be sent again within the timestamp window.
//! Vapi sends no event id, so once a request has **verified**, its delivery is identified by its
//! organisation and:
//! * the signed message id, when the credential that matched signs `{svix-id}` (Standard
//!   Webhooks' `webhook-id`): re-signing the same id with a new timestamp is still a replay;
//! * else the payload the HMAC signature covers (e.g. `{timestamp}.{body}`), which is what the
//!   signature is unique for; a request signed with several rotated secrets is one delivery
//!   whichever signature matches;
//! * else, for shared-secret and bearer credentials (nothing signed per request), the body.
//!
//! Only a SHA-256 of these goes to the store, under `org:hash`, so different organisations never
//! collide and no body or id is stored.
//!
//! [`ReplayGuard`] is a step of [`SignatureVerifyLayer`](crate::verify::SignatureVerifyLayer),
//! off by default and turned on with one line, `.replay_guard(ReplayGuard::in_memory())`. It
//! runs after verification (unauthenticated requests never reach the store) and remembers each
//! delivery for **2 × tolerance + margin** (margin 60 s by default): a timestamp is accepted
//! while within ±tolerance of the clock, so for up to 2 × tolerance after its first acceptance;
//! afterwards the stale timestamp is what rejects a replay. Credentials without a signed
//! timestamp (shared secret, bearer, HMAC without a timestamp) are protected only while the
//! delivery is remembered.
//!
//! * A replay is answered `200` with an empty body without running the handler (the first
//!   delivery was processed), or `409` with [`ReplayAnswer::Conflict`].
//! * Concurrent identical deliveries run the handler exactly once: the store's insert is atomic,
//!   the others are answered as replays at once.
//! * If the handler answers 5xx (or the inner service fails), the delivery is forgotten so that
//!   the sender's retry is accepted. A request abandoned mid-handler (client gone) stays
//!   remembered.
//! * A store failure is answered 503 with `Retry-After` (fail closed); with
//!   [`ReplayGuard::fail_open`] the request proceeds unchecked and a warning is logged.
//!
//! Stores:
//! * [`InMemoryReplayStore`], one process: bounded in entries and age (moka). **When full it
//!   fails closed**: a new delivery is answered 503 with `Retry-After` (and a warning is
//!   logged) until entries expire; it never forgets a live entry to make room, which would
//!   silently let a replay through.
//! * `RedisReplayStore` (feature `redis`), shared by a fleet: atomic `SET key NX PX ttl`, 1 s
//!   operation timeout, configurable key prefix, reconnecting in the background.
//!
//! # Example: on, in-process
//!
//! ```
//! use std::time::Duration;
//! use vapi_webhooks::replay::{InMemoryReplayStore, ReplayAnswer, ReplayGuard};
//! use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};
//!
//! let credential = Credential::vapi_hmac("my-vapi-hmac-secret")?;
//!
//! // Default: in-process, 100 000 entries, replays answered 200 without running the handler.
//! let layer = SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
//!     .replay_guard(ReplayGuard::in_memory());
//!
//! // Customised: a bigger store, a longer margin, 409 for replays.
//! let guard = ReplayGuard::new(InMemoryReplayStore::new(1_000_000))
//!     .margin(Duration::from_secs(120))
//!     .answer(ReplayAnswer::Conflict);
//! let layer = SignatureVerifyLayer::new(SingleTenant::new(credential)).replay_guard(guard);
//! # Ok::<(), vapi_webhooks::CredentialError>(())
//! ```
//!
//! # Several instances behind a load balancer
//!
//! An in-process store only knows what its own process saw: a replay sent to another instance
//! would be accepted. A fleet shares one Redis (feature `redis`):
//!
//! * every instance connects its own `RedisReplayStore` to the **same** Redis
//!   with the **same** key prefix (the default `vapi-webhooks:replay:` is fine; give another
//!   prefix to each independent deployment sharing that Redis);
//! * every instance uses the **same** [`tolerance`](crate::verify::SignatureVerifyLayer::tolerance)
//!   and margin, so that an entry outlives the timestamp window on all of them, and keeps its
//!   clock in sync (NTP);
//! * decide once whether Redis being unreachable means 503 (default; Vapi only retries with a
//!   `backoffPlan`) or [`fail_open`](ReplayGuard::fail_open).
//!
//! Redis persistence is not needed: entries live minutes, and losing them on a Redis restart
//! only reopens the window for requests still within it.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vapi_webhooks::replay::{RedisReplayStore, ReplayGuard};
//! use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};
//!
//! let store = RedisReplayStore::connect("redis://redis.internal:6379")
//!     .await?
//!     .prefix("acme-prod:vapi-replay:");
//! let layer = SignatureVerifyLayer::new(SingleTenant::new(Credential::vapi_hmac("secret")?))
//!     .tolerance(Duration::from_secs(300)) // the same on every instance
//!     .replay_guard(ReplayGuard::new(store).margin(Duration::from_secs(60)));
//! # let _ = layer;
//! # Ok(()) }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::credential::{PayloadFormat, PayloadPart};
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
///
/// Entries live for the ttl they were inserted with (moka's per-entry expiry). The store counts
/// its entries exactly (an expired entry frees its slot when moka drops it, within about a
/// second of expiring) and, **when `limit` entries are live, refuses new deliveries with
/// [`ReplayStoreError::Full`]** (the guard answers 503 with `Retry-After`) until some expire.
/// It never evicts a live entry to make room: that would silently let a replay of it through.
/// A replay of a remembered delivery is still recognised while the store is full.
///
/// Size it for the deliveries of one window: `limit` ≥ peak deliveries per second ×
/// (2 × tolerance + margin). Each entry costs about 150 bytes.
#[derive(Clone)]
pub struct InMemoryReplayStore {
    cache: moka::sync::Cache<Arc<str>, Duration>,
    live: Arc<AtomicU64>,
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

    /// A store that holds at most `limit` live entries (at least 1).
    pub fn new(limit: u64) -> Self {
        let limit = limit.max(1);
        let live = Arc::new(AtomicU64::new(0));
        let released = Arc::clone(&live);
        Self {
            cache: moka::sync::Cache::builder()
                // A backstop only: `live` refuses inserts long before moka would evict.
                .max_capacity(limit.saturating_mul(2))
                .expire_after(PerEntryTtl)
                .eviction_listener(move |_key, _ttl, cause| {
                    // `Replaced` never happens (entries are only created), and an expired
                    // entry overwritten by a new one is reported as `Expired`.
                    if cause != moka::notification::RemovalCause::Replaced {
                        release_slot(&released);
                    }
                })
                .build(),
            live,
            limit,
        }
    }

    /// The maximum number of live entries.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The number of entries held (expired ones count until moka's housekeeping drops them).
    pub fn len(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reserves room for one entry, dropping expired ones first if the store looks full.
    fn reserve(&self) -> bool {
        let try_reserve = || {
            self.live
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                    (live < self.limit).then_some(live + 1)
                })
                .is_ok()
        };
        try_reserve() || {
            self.cache.run_pending_tasks();
            try_reserve()
        }
    }
}

/// Gives a reserved slot back; saturating, so a miscount can only make the store stricter.
fn release_slot(live: &AtomicU64) {
    let _ = live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
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
            .field("len", &self.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl ReplayStore for InMemoryReplayStore {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, ReplayStoreError> {
        if self.cache.contains_key(key) {
            return Ok(false);
        }
        if !self.reserve() {
            tracing::warn!(
                limit = self.limit,
                "in-memory replay store is full: refusing new deliveries until entries expire"
            );
            return Err(ReplayStoreError::Full);
        }
        // Atomic: of concurrent identical deliveries exactly one creates the entry.
        let entry = self.cache.entry(Arc::from(key)).or_insert_with(|| ttl);
        if !entry.is_fresh() {
            release_slot(&self.live);
        }
        Ok(entry.is_fresh())
    }

    async fn remove(&self, key: &str) -> Result<(), ReplayStoreError> {
        self.cache.invalidate(key);
        Ok(())
    }
}

/// Replay protection, installed with
/// [`SignatureVerifyLayer::replay_guard`](crate::verify::SignatureVerifyLayer::replay_guard);
/// see the [module docs](self).
///
/// Cheap to clone: clones share the store, so one guard may serve several layers.
#[derive(Clone)]
pub struct ReplayGuard {
    store: Arc<dyn ReplayStore>,
    margin: Duration,
    answer: ReplayAnswer,
    fail_open: bool,
}

/// What identifies a verified delivery, from which its key is derived.
#[derive(Debug)]
pub(crate) enum Fingerprint<'a> {
    /// The signed message id (`{svix-id}`, Standard Webhooks' `webhook-id`).
    MessageId(&'a [u8]),
    /// The payload an HMAC credential signed, i.e. what its signature is unique for. Keyed by
    /// the payload rather than by the signature bytes so that a request signed with several
    /// secrets (rotation) is the same delivery whichever of its signatures matches.
    Signed {
        /// The template of the credential that matched (it does not use `{svix-id}`).
        format: &'a PayloadFormat,
        /// The raw body.
        body: &'a [u8],
        /// The timestamp header's value, when the credential has one.
        timestamp: Option<&'a [u8]>,
        /// The request method.
        method: &'a [u8],
        /// The URL, when the template signs it.
        url: Option<String>,
    },
    /// The raw body (shared-secret and bearer credentials sign nothing per request).
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

    /// Lets requests through unchecked (with a warning naming the org) when the store fails or
    /// the in-memory store is full, instead of answering 503. Default `false`. A replay of a
    /// delivery the store still remembers is refused either way.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// How long a delivery is remembered: a timestamp is accepted while within ±`tolerance`
    /// of the clock, so up to `2 × tolerance` after it was first accepted, plus the margin.
    pub(crate) fn ttl(&self, tolerance: Duration) -> Duration {
        tolerance.saturating_mul(2).saturating_add(self.margin)
    }

    /// The delivery key: org and a SHA-256 of what identifies the delivery (bodies and ids are
    /// never stored or sent to the store as such).
    pub(crate) fn key(org: Option<&OrgId>, fingerprint: &Fingerprint<'_>) -> String {
        let mut hash = Sha256::new();
        match fingerprint {
            Fingerprint::MessageId(id) => {
                hash.update(b"id\0");
                hash.update(id);
            }
            Fingerprint::Signed {
                format,
                body,
                timestamp,
                method,
                url,
            } => {
                hash.update(b"signed\0");
                // The bytes the MAC was computed over, part by part as `HmacCredential::mac`
                // feeds them: only signed values, so an attacker can change nothing in the key.
                for part in format.parts() {
                    let bytes = match part {
                        PayloadPart::Literal(text) => text.as_bytes(),
                        PayloadPart::Body => body,
                        PayloadPart::Timestamp => timestamp.unwrap_or_default(),
                        PayloadPart::Method => method,
                        PayloadPart::Url => url.as_deref().map_or(&[][..], str::as_bytes),
                        // Keyed as `MessageId` instead.
                        PayloadPart::MessageId => &[],
                    };
                    hash.update(bytes);
                }
            }
            Fingerprint::Body(body) => {
                hash.update(b"body\0");
                hash.update(body);
            }
        }
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
        match self.store.insert_if_absent(&key, self.ttl(tolerance)).await {
            Ok(true) => Ok(Admission::New(key)),
            Ok(false) => Err(ReplayError::Replayed(self.answer)),
            Err(ReplayStoreError::Full) => failed(ReplayError::Full),
            Err(ReplayStoreError::Backend(err)) => failed(ReplayError::Unavailable(err)),
        }
    }

    /// Forgets a delivery whose handler failed.
    pub(crate) async fn release(&self, org: Option<&OrgId>, key: &str) {
        if let Err(err) = self.store.remove(key).await {
            match org {
                Some(org) => {
                    tracing::warn!(org = %org, error = %err, "replay guard could not forget a failed delivery")
                }
                None => {
                    tracing::warn!(error = %err, "replay guard could not forget a failed delivery")
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_store_counts_live_entries_exactly() {
        let store = InMemoryReplayStore::new(2);
        let ttl = Duration::from_secs(60);
        assert!(store.insert_if_absent("a", ttl).await.unwrap());
        assert!(!store.insert_if_absent("a", ttl).await.unwrap());
        assert!(store.insert_if_absent("b", ttl).await.unwrap());
        assert!(matches!(
            store.insert_if_absent("c", ttl).await,
            Err(ReplayStoreError::Full)
        ));
        assert_eq!(store.len(), 2);

        // Removing frees a slot; a replay of what remains is still recognised.
        store.remove("a").await.unwrap();
        store.cache.run_pending_tasks();
        assert_eq!(store.len(), 1);
        assert!(store.insert_if_absent("c", ttl).await.unwrap());
        assert!(!store.insert_if_absent("b", ttl).await.unwrap());
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn expired_entries_make_room_again() {
        let store = InMemoryReplayStore::new(1);
        let ttl = Duration::from_secs(60);
        assert!(
            store
                .insert_if_absent("a", Duration::from_millis(1))
                .await
                .unwrap()
        );
        // moka drops expired entries on its timer wheel's coarse ticks (about a second): until
        // then the slot stays taken and the full store keeps refusing. Poll, bounded.
        let mut attempts = 0;
        while let Err(ReplayStoreError::Full) = store.insert_if_absent("a", ttl).await {
            attempts += 1;
            assert!(attempts < 100, "the expired entry never freed its slot");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.len(), 1);
        // "a" is remembered again, and the store is full again.
        assert!(!store.insert_if_absent("a", ttl).await.unwrap());
        assert!(matches!(
            store.insert_if_absent("b", ttl).await,
            Err(ReplayStoreError::Full)
        ));
    }

    #[test]
    fn keys_separate_orgs_and_fingerprint_kinds() {
        let org = OrgId::new(uuid::Uuid::from_u128(1));
        let id = ReplayGuard::key(Some(&org), &Fingerprint::MessageId(b"x"));
        let body = ReplayGuard::key(Some(&org), &Fingerprint::Body(b"x"));
        let none = ReplayGuard::key(None, &Fingerprint::MessageId(b"x"));
        assert_ne!(id, body);
        assert_ne!(id, none);
        assert!(id.starts_with(&format!("{org}:")));
        assert!(none.starts_with("-:"));
        assert_eq!(id.len(), org.to_string().len() + 1 + 64);
    }
}
