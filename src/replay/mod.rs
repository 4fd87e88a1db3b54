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
//! Only a SHA-256 of these, the [`DeliveryKey`], goes to the store, per organisation, so
//! different organisations never collide and no body or id is stored. The same key is on the
//! request's [`Verified`](crate::Verified) marker, for an application's own idempotency.
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
//! * **A delivery counts as received only once the inner service answered 2xx.** Any other
//!   status, an error of the inner service, or the response future being dropped before it
//!   completes (a timeout layer around this one, a client gone) forgets it, so that the
//!   sender's retry runs the handler.
//! * A store failure is answered 503 with `Retry-After` (fail closed); with
//!   [`ReplayGuard::fail_open`] the request proceeds unchecked and a warning is logged.
//!
//! Stores:
//! * [`InMemoryReplayStore`], one process: 16-byte digests in per-organisation time buckets,
//!   bounded in entries (default 1,500,000, enough for 2,000 deliveries per second for the
//!   default 660 s) and age, and **fair between organisations**: an organisation over its share
//!   of a full store gets 503 with `Retry-After`, every other organisation's deliveries are
//!   still accepted. It never forgets a live entry to make room, which would silently let a
//!   replay through.
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
//! // Default: in-process, 1 500 000 entries, replays answered 200 without running the handler.
//! let layer = SignatureVerifyLayer::new(SingleTenant::new(credential.clone()))
//!     .replay_guard(ReplayGuard::in_memory());
//!
//! // Customised: a bigger store, a longer margin, 409 for replays.
//! let guard = ReplayGuard::new(InMemoryReplayStore::with_memory_limit(256 << 20))
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::credential::{HmacCredential, PayloadInputs};
use crate::org::OrgId;

pub use crate::error::{ReplayAnswer, ReplayError, ReplayStoreError};

#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::RedisReplayStore;

/// What identifies one verified delivery: a 128-bit XXH3 hash of the signed message id, the
/// signed payload, or (for credentials that sign nothing per request) the body.
///
/// The same for a replay of the delivery, whatever else the replay changes; never the body or
/// the id itself. `Display` is lowercase hex.
///
/// A fast non-cryptographic hash is enough: only *verified* bytes are hashed, which a sender
/// cannot choose without the organisation's secret, and keys are per organisation, so the
/// only collisions an organisation could aim for are among its own deliveries. It costs about
/// 2 µs on a 50 KB report where SHA-256 cost 25 µs. Keying on the MAC itself would cost
/// nothing, but a request signed with two rotated secrets could then be replayed with only
/// one of its signatures under a different key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey([u8; 16]);

impl DeliveryKey {
    /// A key from its 16 bytes (e.g. read back from a database).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The hash.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    fn short(&self) -> u128 {
        u128::from_le_bytes(self.0)
    }
}

impl fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryKey({self})")
    }
}

/// What identifies a verified delivery, from which its [`DeliveryKey`] is derived.
#[derive(Debug)]
pub(crate) enum Fingerprint<'a> {
    /// The signed message id (`{svix-id}`, Standard Webhooks' `webhook-id`).
    MessageId(&'a [u8]),
    /// The payload an HMAC credential signed, i.e. what its signature is unique for. Keyed by
    /// the payload rather than by the signature bytes so that a request signed with several
    /// secrets (rotation) is the same delivery whichever of its signatures matches.
    Signed(&'a HmacCredential, PayloadInputs<'a>),
    /// The raw body (shared-secret and bearer credentials sign nothing per request).
    Body(&'a [u8]),
}

impl Fingerprint<'_> {
    /// The delivery key.
    pub(crate) fn key(&self) -> DeliveryKey {
        let mut hash = Xxh3::new();
        match self {
            Self::MessageId(id) => {
                hash.update(b"id\0");
                hash.update(id);
            }
            Self::Signed(hmac, inputs) => {
                hash.update(b"signed\0");
                // The very bytes the MAC covered, walked as the MAC walks them: only signed
                // values, so a sender can change nothing in the key.
                hmac.signed_parts(inputs, |bytes| hash.update(bytes));
            }
            Self::Body(body) => {
                hash.update(b"body\0");
                hash.update(body);
            }
        }
        DeliveryKey(hash.digest128().to_le_bytes())
    }
}

/// Remembers delivery keys for a while, per organisation. Async and object-safe.
#[async_trait::async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Atomically remembers `key` of `org` for `ttl` unless it is already remembered.
    /// `Ok(true)` means the key is new (the delivery may proceed); `Ok(false)` means it is a
    /// replay.
    async fn insert_if_absent(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        ttl: Duration,
    ) -> Result<bool, ReplayStoreError>;

    /// Forgets `key` of `org`, so that the sender's retry of a delivery the handler did not
    /// acknowledge is accepted. Called when the handler answered something else than 2xx,
    /// before that answer is sent. By default [`forget`](Self::forget).
    async fn remove(&self, org: Option<&OrgId>, key: &DeliveryKey) -> Result<(), ReplayStoreError> {
        self.forget(org, key);
        Ok(())
    }

    /// Forgets `key` of `org` without waiting: called from a drop (the response future was
    /// dropped before the handler answered), so it must not block; a networked store sends the
    /// removal in the background.
    fn forget(&self, org: Option<&OrgId>, key: &DeliveryKey);
}

/// The in-process [`ReplayStore`]: compact, bounded, and fair between organisations.
///
/// Each delivery costs its 16-byte key in a hash set of its organisation's current time
/// bucket (one bucket per [`BUCKET`](Self::BUCKET) of arrival); a bucket is dropped whole once
/// its last entry's ttl has passed, so an entry lives at least its ttl and at most one bucket
/// longer. About 34 bytes per entry at the hash sets' usual load: the default capacity of
/// 1,500,000 entries (2,000 deliveries per second for the default 660 s) stays under 64 MiB.
///
/// **Fair**: while the store holds fewer than `capacity` entries, every delivery is taken.
/// Once it is full, an organisation may still add entries while it holds less than its share,
/// `capacity / organisations holding entries`; only an organisation at or over its share is
/// refused ([`ReplayStoreError::Full`], answered 503 with `Retry-After`). One organisation's
/// flood therefore never refuses another's deliveries, and the store never holds more than
/// `2 × capacity` entries. A live entry is never evicted to make room: that would silently let
/// a replay through. A replay of a remembered delivery is recognised whatever the fill.
#[derive(Clone)]
pub struct InMemoryReplayStore {
    inner: Arc<Mutex<Buckets>>,
    capacity: u64,
}

#[derive(Default)]
struct Buckets {
    orgs: HashMap<Option<OrgId>, OrgBuckets>,
    total: u64,
    /// When every org's expired buckets were last dropped.
    swept: Option<Instant>,
}

#[derive(Default)]
struct OrgBuckets {
    /// Oldest first.
    buckets: VecDeque<Bucket>,
    len: u64,
}

impl OrgBuckets {
    /// Drops the buckets whose entries have all expired; returns how many entries went.
    fn expire(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        while self.buckets.front().is_some_and(|b| b.expires <= now) {
            dropped += self.buckets.pop_front().map_or(0, |b| b.keys.len() as u64);
        }
        self.len -= dropped;
        dropped
    }
}

struct Bucket {
    opened: Instant,
    /// When the last entry of the bucket expires.
    expires: Instant,
    keys: HashSet<u128>,
}

impl InMemoryReplayStore {
    /// The default capacity: 1,500,000 entries.
    pub const DEFAULT_CAPACITY: u64 = 1_500_000;
    /// About how many bytes an entry costs, for [`with_memory_limit`](Self::with_memory_limit).
    pub const BYTES_PER_ENTRY: u64 = 40;
    /// The width of a time bucket.
    pub const BUCKET: Duration = Duration::from_secs(30);

    /// A store of `capacity` entries (at least 1) shared fairly by the organisations.
    pub fn new(capacity: u64) -> Self {
        Self {
            inner: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// A store sized to about `bytes` of memory ([`BYTES_PER_ENTRY`](Self::BYTES_PER_ENTRY)
    /// per entry; the fairness rule can take it up to twice that).
    pub fn with_memory_limit(bytes: u64) -> Self {
        Self::new(bytes / Self::BYTES_PER_ENTRY)
    }

    /// The capacity, in entries.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of entries held (expired ones count until their bucket is dropped).
    pub fn len(&self) -> u64 {
        self.lock().total
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of entries held for `org`.
    pub fn len_of(&self, org: Option<&OrgId>) -> u64 {
        self.lock().orgs.get(&org.copied()).map_or(0, |o| o.len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // A panic elsewhere cannot leave the sets half-updated in a way that matters here.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The insert, at `now` (tests drive time through it).
    pub(crate) fn insert_at(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        ttl: Duration,
        now: Instant,
    ) -> Result<bool, ReplayStoreError> {
        let short = key.short();
        let mut all = self.lock();
        let Buckets { orgs, total, swept } = &mut *all;
        // Expired buckets go first: this org's always, every org's once per bucket width, so
        // the counts below are of live entries (or, briefly, stricter).
        if swept.is_none_or(|at| now.duration_since(at) >= Self::BUCKET) {
            orgs.retain(|_, o| {
                *total -= o.expire(now);
                o.len > 0
            });
            *swept = Some(now);
        } else if let Some(o) = orgs.get_mut(&org.copied()) {
            *total -= o.expire(now);
        }
        if let Some(o) = orgs.get(&org.copied()) {
            if o.buckets.iter().any(|b| b.keys.contains(&short)) {
                return Ok(false);
            }
        }
        if *total >= self.capacity {
            let holding = orgs.values().filter(|o| o.len > 0).count() as u64
                + u64::from(orgs.get(&org.copied()).is_none_or(|o| o.len == 0));
            let share = self.capacity / holding.max(1);
            if orgs.get(&org.copied()).map_or(0, |o| o.len) >= share {
                return Err(ReplayStoreError::Full);
            }
        }
        let o = orgs.entry(org.copied()).or_default();
        let expires = now + ttl;
        match o.buckets.back_mut() {
            Some(b) if now.duration_since(b.opened) < Self::BUCKET => {
                b.expires = b.expires.max(expires);
                b.keys.insert(short);
            }
            _ => o.buckets.push_back(Bucket {
                opened: now,
                expires,
                keys: HashSet::from([short]),
            }),
        }
        o.len += 1;
        *total += 1;
        Ok(true)
    }
}

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for InMemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl ReplayStore for InMemoryReplayStore {
    async fn insert_if_absent(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        ttl: Duration,
    ) -> Result<bool, ReplayStoreError> {
        let inserted = self.insert_at(org, key, ttl, Instant::now());
        if let Err(ReplayStoreError::Full) = inserted {
            match org {
                Some(org) => tracing::warn!(
                    org = %org,
                    capacity = self.capacity,
                    "in-memory replay store: org over its share of a full store, refusing its new deliveries"
                ),
                None => tracing::warn!(
                    capacity = self.capacity,
                    "in-memory replay store is full: refusing new deliveries until entries expire"
                ),
            }
        }
        inserted
    }

    fn forget(&self, org: Option<&OrgId>, key: &DeliveryKey) {
        let short = key.short();
        let mut all = self.lock();
        let Buckets { orgs, total, .. } = &mut *all;
        if let Some(o) = orgs.get_mut(&org.copied()) {
            if o.buckets.iter_mut().any(|b| b.keys.remove(&short)) {
                o.len -= 1;
                *total -= 1;
            }
        }
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

/// A delivery the guard let through, held by the response future: forgotten when dropped,
/// unless the inner service answered 2xx first.
pub struct Admission {
    held: Option<(Arc<dyn ReplayStore>, Option<OrgId>, DeliveryKey)>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("held", &self.held.is_some())
            .finish()
    }
}

impl Admission {
    /// Keeps the delivery remembered: it was acknowledged.
    pub(crate) fn keep(mut self) {
        self.held = None;
    }

    /// Forgets the delivery, waiting for the store: it was not acknowledged.
    pub(crate) async fn release(mut self) {
        if let Some((store, org, key)) = self.held.take() {
            if let Err(err) = store.remove(org.as_ref(), &key).await {
                match org {
                    Some(org) => {
                        tracing::warn!(org = %org, error = %err, "replay guard could not forget a delivery")
                    }
                    None => {
                        tracing::warn!(error = %err, "replay guard could not forget a delivery")
                    }
                }
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((store, org, key)) = self.held.take() {
            store.forget(org.as_ref(), &key);
        }
    }
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
    /// the in-memory store refuses the org for fullness, instead of answering 503. Default
    /// `false`. A replay of a delivery the store still remembers is refused either way.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// How long a delivery is remembered: a timestamp is accepted while within ±`tolerance`
    /// of the clock, so up to `2 × tolerance` after it was first accepted, plus the margin.
    pub(crate) fn ttl(&self, tolerance: Duration) -> Duration {
        tolerance.saturating_mul(2).saturating_add(self.margin)
    }

    /// Admits a delivery, or says why not.
    pub(crate) async fn admit(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        tolerance: Duration,
    ) -> Result<Admission, ReplayError> {
        let failed = |err: ReplayError| {
            if self.fail_open {
                match org {
                    Some(org) => {
                        tracing::warn!(org = %org, error = %err, "replay guard failing open")
                    }
                    None => tracing::warn!(error = %err, "replay guard failing open"),
                }
                Ok(Admission { held: None })
            } else {
                Err(err)
            }
        };
        match self
            .store
            .insert_if_absent(org, key, self.ttl(tolerance))
            .await
        {
            Ok(true) => Ok(Admission {
                held: Some((Arc::clone(&self.store), org.copied(), *key)),
            }),
            Ok(false) => Err(ReplayError::Replayed(self.answer)),
            Err(ReplayStoreError::Full) => failed(ReplayError::Full),
            Err(ReplayStoreError::Backend(err)) => failed(ReplayError::Unavailable(err)),
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

    fn key(n: u8) -> DeliveryKey {
        Fingerprint::MessageId(&[n]).key()
    }

    fn org(n: u128) -> OrgId {
        OrgId::new(uuid::Uuid::from_u128(n))
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn counts_entries_and_recognises_replays() {
        let store = InMemoryReplayStore::new(10);
        let now = Instant::now();
        let a = Some(org(1));
        assert!(store.insert_at(a.as_ref(), &key(1), TTL, now).unwrap());
        assert!(!store.insert_at(a.as_ref(), &key(1), TTL, now).unwrap());
        // The same delivery key under another org is another delivery.
        assert!(store.insert_at(Some(&org(2)), &key(1), TTL, now).unwrap());
        assert_eq!(store.len(), 2);
        store.forget(a.as_ref(), &key(1));
        assert_eq!(store.len(), 1);
        assert!(store.insert_at(a.as_ref(), &key(1), TTL, now).unwrap());
    }

    #[test]
    fn full_store_refuses_only_the_org_over_its_share() {
        let store = InMemoryReplayStore::new(100);
        let now = Instant::now();
        let (flood, quiet) = (org(1), org(2));
        let mut refused = 0;
        for n in 0..=255u8 {
            if store.insert_at(Some(&flood), &key(n), TTL, now).is_err() {
                refused += 1;
            }
        }
        // Alone, the flooding org had the whole store: the rest of its deliveries were refused.
        assert_eq!(store.len_of(Some(&flood)), 100);
        assert_eq!(refused, 156);
        // Another org is under its share (100 / 2) and is still accepted, up to it.
        for n in 0..50u8 {
            assert!(
                store.insert_at(Some(&quiet), &key(n), TTL, now).unwrap(),
                "{n}"
            );
        }
        assert!(matches!(
            store.insert_at(Some(&quiet), &key(50), TTL, now),
            Err(ReplayStoreError::Full)
        ));
        // Replays are still recognised, full or not.
        assert!(!store.insert_at(Some(&flood), &key(3), TTL, now).unwrap());
        assert!(store.len() <= 2 * store.capacity());
    }

    #[test]
    fn buckets_expire_whole_after_their_last_ttl() {
        let store = InMemoryReplayStore::new(2);
        let t0 = Instant::now();
        let a = Some(org(1));
        assert!(store.insert_at(a.as_ref(), &key(1), TTL, t0).unwrap());
        assert!(
            store
                .insert_at(a.as_ref(), &key(2), TTL, t0 + Duration::from_secs(10))
                .unwrap()
        );
        assert!(store.insert_at(a.as_ref(), &key(3), TTL, t0).is_err());
        // Key 1's own ttl has passed, but its bucket lives until the last of its entries.
        let t1 = t0 + TTL + Duration::from_secs(1);
        assert!(!store.insert_at(a.as_ref(), &key(1), TTL, t1).unwrap());
        let t2 = t0 + TTL + Duration::from_secs(10);
        assert!(store.insert_at(a.as_ref(), &key(1), TTL, t2).unwrap());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn the_default_sizing_sustains_its_rate_for_fifteen_minutes() {
        // The default (1,500,000 entries for 2,000 per second over 660 s), scaled down 20 times
        // to keep the test quick: 75,000 entries, 100 per second, for 15 simulated minutes.
        const SCALE: u64 = 20;
        let store = InMemoryReplayStore::new(InMemoryReplayStore::DEFAULT_CAPACITY / SCALE);
        let rate = 2_000 / SCALE;
        let ttl = Duration::from_secs(660); // the guard's default: 2 × 300 s + 60 s
        let t0 = Instant::now();
        let orgs = [org(1), org(2), org(3)];
        let mut peak = 0;
        for i in 0u64..rate * 900 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / rate);
            let key = DeliveryKey(xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()).to_le_bytes());
            let org = &orgs[(i % 3) as usize];
            assert!(store.insert_at(Some(org), &key, ttl, now).unwrap(), "{i}");
            peak = peak.max(store.len());
        }
        // At most one bucket more than the window holds, and never full: zero 503.
        assert!(peak <= rate * (660 + 30), "{peak}");
        assert!(peak <= store.capacity());
    }

    #[test]
    fn keys_separate_fingerprint_kinds() {
        let id = Fingerprint::MessageId(b"x").key();
        let body = Fingerprint::Body(b"x").key();
        assert_ne!(id, body);
        assert_eq!(id.to_string().len(), 32);
    }
}
