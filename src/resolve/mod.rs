//! Finding the organisation a request belongs to.
//!
//! [`OrgResolveLayer`] runs before signature verification:
//!
//! 1. it buffers the body once, within a limit (413 over it), through
//!    [`buffer_request`](crate::body::buffer_request) — or uses the [`RawBody`](crate::RawBody)
//!    an earlier stage left;
//! 2. it asks its [`TenantLocator`]s, in order, for a [`TenantKey`](crate::TenantKey) — by default the JSON body,
//!    read by a cheap borrowing [`probe`];
//! 3. it asks the [`AssistantOrgStore`] which organisation owns the key and inserts an
//!    [`OrgContext`] (org, key, [`KeySource`](crate::KeySource)) into the request extensions, where
//!    `SignatureVerifyLayer` picks the organisation's credentials from.
//!
//! # Which key decides
//!
//! The first locator that yields a key decides, and within [`TenantLocator::payload`] the first
//! location in its documented order does:
//!
//! * the store knows the key → the request goes on with that organisation;
//! * the store does not know it → **401**, the same answer as a bad signature. Other locators and
//!   later payload locations are *not* tried: one request names one tenant, and which one never
//!   depends on what the store happens to contain;
//! * the one exception is a Vapi org id ([`TenantKey::VapiOrg`](crate::TenantKey::VapiOrg), from the payload or a custom
//!   locator): it counts only if the store maps it, so an unmapped one is passed over and the
//!   next locator is asked. (Vapi puts its org id in every call, also for tenants identified
//!   some other way.)
//!
//! An unmapped Vapi org id with no other key → 401, like an unknown key. No key anywhere →
//! 400. With [`strict`](OrgResolveLayer::strict), a payload that also names a key of another
//! organisation → 401. A body the payload locator cannot read (not JSON, nested deeper than
//! [`MAX_DEPTH`], a tenant field repeated) → 400. A failing store → 503 with `Retry-After`.
//! Rejections go through the layer's [`OnReject`](crate::OnReject), [`DefaultOnReject`] unless
//! [`on_reject`](OrgResolveLayer::on_reject) sets another.
//!
//! # Tracing
//!
//! On success the layer records `org_id`, `tenant_key_kind` (e.g. `assistant`) and
//! `tenant_key_source` (e.g. `payload:message.call.assistantId`) on the current span — declare
//! them as `tracing::field::Empty` on your request span to get them — and emits a `debug` event
//! with the same fields. Bodies and key values are never logged.
//!
//! # Examples
//!
//! The default: the tenant comes from the payload.
//!
//! ```
//! use axum::{routing::post, Router};
//! use uuid::Uuid;
//! use vapi_webhooks::{InMemoryStore, OrgId, OrgResolveLayer};
//!
//! let org = OrgId::new(Uuid::new_v4());
//! let store = InMemoryStore::builder()
//!     .assistant("asst_123", org)
//!     .phone_number("pn_456", org)
//!     .build();
//!
//! let app: Router = Router::new()
//!     .route("/vapi", post(|| async { "ok" }))
//!     .layer(OrgResolveLayer::new(store));
//! ```
//!
//! Transient assistants carry no id, so the organisation puts its slug in its server URL; look
//! there first, then in a header, then in the payload, with a cached store and a custom body
//! limit:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::post, Router};
//! use http::HeaderName;
//! use uuid::Uuid;
//! use vapi_webhooks::{
//!     AssistantOrgStore, CachedStore, InMemoryStore, OrgId, OrgResolveLayer, TenantLocator,
//! };
//!
//! let org = OrgId::new(Uuid::new_v4());
//! let backend: Arc<dyn AssistantOrgStore> =
//!     Arc::new(InMemoryStore::builder().slug("acme", org).assistant("asst_123", org).build());
//! let store = CachedStore::from_shared(backend)
//!     .max_entries(50_000)
//!     .ttl(Duration::from_secs(30));
//!
//! let resolve = OrgResolveLayer::new(store)
//!     .locator(TenantLocator::path_after("/webhooks/vapi/"))
//!     .locator(TenantLocator::header(HeaderName::from_static("x-tenant")))
//!     .locator(TenantLocator::payload())
//!     .body_limit(4 * 1024 * 1024);
//!
//! let app: Router = Router::new()
//!     .route("/webhooks/vapi/{tenant}", post(|| async { "ok" }))
//!     .layer(resolve);
//! ```

mod locator;
mod probe;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use tower_layer::Layer;

use crate::body::{Buffered, DEFAULT_BODY_LIMIT};
use crate::layer::{CheckService, RequestCheck};
use crate::org::OrgContext;
use crate::reject::{DefaultOnReject, Rejection};
use crate::store::AssistantOrgStore;

pub use self::locator::TenantLocator;
#[cfg(feature = "inbox")]
pub(crate) use self::probe::payload_path;
pub use self::probe::{TenantKeys, probe};
pub use crate::error::{MAX_DEPTH, ProbeError, ResolveError};

/// Finds the organisation of each request and inserts its [`OrgContext`]; see the
/// [module docs](self).
///
/// `S` is the [`AssistantOrgStore`], kept behind an `Arc` (so `Arc<dyn AssistantOrgStore>`
/// works through [`from_shared`](Self::from_shared)); `R` builds rejection responses.
pub struct OrgResolveLayer<S: ?Sized, R = DefaultOnReject> {
    check: Resolve<S>,
    on_reject: R,
}

/// The check of [`OrgResolveLayer`]: its store and configuration, behind one `Arc` each.
pub struct Resolve<S: ?Sized> {
    store: Arc<S>,
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    locators: Arc<[TenantLocator]>,
    explicit: bool,
    body_limit: usize,
    strict: bool,
}

impl<S: AssistantOrgStore> OrgResolveLayer<S> {
    /// A layer asking `store`, looking in the payload, with a 1 MiB body limit.
    pub fn new(store: S) -> Self {
        Self::from_shared(Arc::new(store))
    }
}

impl<S: AssistantOrgStore + ?Sized> OrgResolveLayer<S> {
    /// A layer asking a shared store, e.g. an `Arc<dyn AssistantOrgStore>`.
    pub fn from_shared(store: Arc<S>) -> Self {
        Self {
            check: Resolve {
                store,
                config: Arc::new(Config {
                    locators: Arc::new([TenantLocator::payload()]),
                    explicit: false,
                    body_limit: DEFAULT_BODY_LIMIT,
                    strict: false,
                }),
            },
            on_reject: DefaultOnReject,
        }
    }
}

impl<S: ?Sized, R> OrgResolveLayer<S, R> {
    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.check.config)
    }

    /// Adds a locator after those added before. The first call replaces the default
    /// ([`TenantLocator::payload`]): add `payload()` yourself where it belongs in the order.
    pub fn locator(mut self, locator: TenantLocator) -> Self {
        let config = self.config();
        let mut locators = if config.explicit {
            config.locators.to_vec()
        } else {
            Vec::new()
        };
        locators.push(locator);
        config.locators = locators.into();
        config.explicit = true;
        self
    }

    /// Replaces the locators with `locators`, tried in order.
    pub fn locators(mut self, locators: impl IntoIterator<Item = TenantLocator>) -> Self {
        let config = self.config();
        config.locators = locators.into_iter().collect();
        config.explicit = true;
        self
    }

    /// The body limit in bytes (default [`DEFAULT_BODY_LIMIT`], 1 MiB); larger bodies get 413.
    /// Checked against a body an earlier stage buffered too.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config().body_limit = bytes;
        self
    }

    /// Strict mode (off by default): once a locator decided the organisation, every tenant
    /// key the payload names is looked up too, and a payload naming a key the store maps to
    /// **another** organisation is refused ([`ResolveError::TenantMismatch`], the same 401).
    ///
    /// For routes where the URL decides the tenant (a slug per organisation) but handlers also
    /// read ids from the payload: org C's credential can then never carry org A's assistant
    /// id into org C's handler. Keys no organisation owns are fine. Costs a store lookup per
    /// payload key (cached by [`CachedStore`](crate::CachedStore)).
    pub fn strict(mut self, strict: bool) -> Self {
        self.config().strict = strict;
        self
    }

    /// Builds rejection responses with `on_reject` instead of [`DefaultOnReject`].
    pub fn on_reject<R2>(self, on_reject: R2) -> OrgResolveLayer<S, R2> {
        OrgResolveLayer {
            check: self.check,
            on_reject,
        }
    }
}

impl<S: ?Sized> Clone for Resolve<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: ?Sized> fmt::Debug for Resolve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolve")
            .field("store", &std::any::type_name::<S>())
            .field("locators", &self.config.locators)
            .field("body_limit", &self.config.body_limit)
            .finish()
    }
}

impl<S: ?Sized, R: Clone> Clone for OrgResolveLayer<S, R> {
    fn clone(&self) -> Self {
        Self {
            check: self.check.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: ?Sized, R: fmt::Debug> fmt::Debug for OrgResolveLayer<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgResolveLayer")
            .field("check", &self.check)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<I, S: ?Sized, R: Clone> Layer<I> for OrgResolveLayer<S, R> {
    type Service = OrgResolve<I, S, R>;

    fn layer(&self, inner: I) -> Self::Service {
        CheckService::new(inner, self.check.clone(), self.on_reject.clone())
    }
}

/// The service built by [`OrgResolveLayer`].
pub type OrgResolve<I, S, R = DefaultOnReject> = CheckService<I, Resolve<S>, R>;

impl<S: AssistantOrgStore + ?Sized> RequestCheck for Resolve<S> {
    type Admission = ();

    fn body_limit(&self) -> usize {
        self.config.body_limit
    }

    fn check(
        &self,
        req: Request<Buffered>,
        body: Bytes,
    ) -> impl Future<Output = Result<(Request<Buffered>, ()), Rejection>> + Send + 'static {
        let this = self.clone();
        async move {
            let (mut parts, buffered) = req.into_parts();
            let ctx = resolve(&*this.store, &this.config.locators, &parts, &body)
                .await
                .map_err(|err| Rejection::new(err, None))?;
            if this.config.strict {
                agree(&*this.store, &ctx, &body)
                    .await
                    .map_err(|err| Rejection::new(err, None))?;
            }
            record(&ctx);
            parts.extensions.insert(ctx);
            Ok((Request::from_parts(parts, buffered), ()))
        }
    }
}

/// Finds the [`OrgContext`] of a request from its head and buffered body, as
/// [`OrgResolveLayer`] does (see the [module docs](self) for the rules).
///
/// Useful outside tower, e.g. in a handler of another framework.
pub async fn resolve<S: AssistantOrgStore + ?Sized>(
    store: &S,
    locators: &[TenantLocator],
    parts: &Parts,
    body: &[u8],
) -> Result<OrgContext, ResolveError> {
    // An unmapped Vapi org id ends as 401, like any unknown key: a 400 would tell a client
    // without credentials which Vapi org ids are tenants.
    let mut unknown = false;
    for locator in locators {
        let found = locator.locate(parts, body)?;
        if let Some((key, source)) = found.decisive {
            return match store.org_for(&key).await? {
                Some(org) => Ok(OrgContext::new(org, key, source)),
                None => Err(ResolveError::UnknownTenant),
            };
        }
        if let Some((key, source)) = found.weak {
            match store.org_for(&key).await? {
                Some(org) => return Ok(OrgContext::new(org, key, source)),
                None => unknown = true,
            }
        }
    }
    Err(if unknown {
        ResolveError::UnknownTenant
    } else {
        ResolveError::NoTenantKey
    })
}

/// Strict mode: no tenant key of the payload belongs to another organisation than `ctx`'s.
async fn agree<S: AssistantOrgStore + ?Sized>(
    store: &S,
    ctx: &OrgContext,
    body: &[u8],
) -> Result<(), ResolveError> {
    for (_, key) in probe(body)?.iter() {
        if key == ctx.key {
            continue;
        }
        if let Some(owner) = store.org_for(&key).await? {
            if owner != ctx.org_id {
                return Err(ResolveError::TenantMismatch);
            }
        }
    }
    Ok(())
}

fn record(ctx: &OrgContext) {
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(&ctx.org_id));
    span.record("tenant_key_kind", ctx.key.kind().as_str());
    span.record("tenant_key_source", tracing::field::display(&ctx.source));
    tracing::debug!(
        org_id = %ctx.org_id,
        tenant_key_kind = ctx.key.kind().as_str(),
        tenant_key_source = %ctx.source,
        "vapi webhook tenant resolved"
    );
}
