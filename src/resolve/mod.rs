//! Finding the organisation a request belongs to.
//!
//! [`OrgResolveLayer`] runs before signature verification:
//!
//! 1. it buffers the body once, within a limit (413 over it), through
//!    [`buffer_request`];
//! 2. it asks its [`TenantLocator`]s, in order, for a [`TenantKey`] — by default the JSON body,
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
//! * the one exception is a Vapi org id ([`TenantKey::VapiOrg`], from the payload or a custom
//!   locator): it counts only if the store maps it, so an unmapped one is passed over and the
//!   next locator is asked. (Vapi puts its org id in every call, also for tenants identified
//!   some other way.)
//!
//! No key anywhere → 400. A body the payload locator cannot read (not JSON, nested deeper than
//! [`MAX_DEPTH`], a tenant field repeated) → 400. A failing store → 503 with `Retry-After`.
//! Rejections go through the layer's [`OnReject`], [`DefaultOnReject`] unless
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

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{DEFAULT_BODY_LIMIT, buffer_request};
use crate::org::{OrgContext, TenantKey};
use crate::reject::{DefaultOnReject, OnReject, Rejection, respond};
use crate::store::{AssistantOrgStore, StoreError};

pub use self::locator::TenantLocator;
pub use self::probe::{MAX_DEPTH, ProbeError, TenantKeys, probe};

use self::locator::Locate;

/// Why the organisation of a request could not be found.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No tenant key anywhere (400).
    #[error("no tenant key in the request")]
    NoTenantKey,
    /// The payload could not be read: not JSON, too deep, or a tenant field repeated (400).
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// No organisation owns the key (401, the same answer as a bad signature).
    #[error("unknown tenant")]
    UnknownTenant,
    /// The store failed (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ResolveError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoTenantKey | Self::Probe(_) => StatusCode::BAD_REQUEST,
            Self::UnknownTenant => StatusCode::UNAUTHORIZED,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Finds the organisation of each request and inserts its [`OrgContext`]; see the
/// [module docs](self).
///
/// `S` is the [`AssistantOrgStore`], kept behind an `Arc` (so `Arc<dyn AssistantOrgStore>`
/// works through [`from_shared`](Self::from_shared)); `R` builds rejection responses.
pub struct OrgResolveLayer<S: ?Sized, R = DefaultOnReject> {
    store: Arc<S>,
    locators: Arc<[TenantLocator]>,
    explicit: bool,
    body_limit: usize,
    on_reject: R,
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
            store,
            locators: Arc::new([TenantLocator::payload()]),
            explicit: false,
            body_limit: DEFAULT_BODY_LIMIT,
            on_reject: DefaultOnReject,
        }
    }
}

impl<S: ?Sized, R> OrgResolveLayer<S, R> {
    /// Adds a locator after those added before. The first call replaces the default
    /// ([`TenantLocator::payload`]): add `payload()` yourself where it belongs in the order.
    pub fn locator(mut self, locator: TenantLocator) -> Self {
        let mut locators = if self.explicit {
            self.locators.to_vec()
        } else {
            Vec::new()
        };
        locators.push(locator);
        self.locators = locators.into();
        self.explicit = true;
        self
    }

    /// Replaces the locators with `locators`, tried in order.
    pub fn locators(mut self, locators: impl IntoIterator<Item = TenantLocator>) -> Self {
        self.locators = locators.into_iter().collect();
        self.explicit = true;
        self
    }

    /// The body limit in bytes (default [`DEFAULT_BODY_LIMIT`], 1 MiB); larger bodies get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Builds rejection responses with `on_reject` instead of [`DefaultOnReject`].
    pub fn on_reject<R2>(self, on_reject: R2) -> OrgResolveLayer<S, R2> {
        OrgResolveLayer {
            store: self.store,
            locators: self.locators,
            explicit: self.explicit,
            body_limit: self.body_limit,
            on_reject,
        }
    }
}

impl<S: ?Sized, R: Clone> Clone for OrgResolveLayer<S, R> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            locators: self.locators.clone(),
            explicit: self.explicit,
            body_limit: self.body_limit,
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: ?Sized, R: fmt::Debug> fmt::Debug for OrgResolveLayer<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgResolveLayer")
            .field("store", &std::any::type_name::<S>())
            .field("locators", &self.locators)
            .field("body_limit", &self.body_limit)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<I, S: ?Sized, R: Clone> Layer<I> for OrgResolveLayer<S, R> {
    type Service = OrgResolve<I, S, R>;

    fn layer(&self, inner: I) -> Self::Service {
        OrgResolve {
            inner,
            store: self.store.clone(),
            locators: self.locators.clone(),
            body_limit: self.body_limit,
            on_reject: self.on_reject.clone(),
        }
    }
}

/// The service built by [`OrgResolveLayer`].
pub struct OrgResolve<I, S: ?Sized, R = DefaultOnReject> {
    inner: I,
    store: Arc<S>,
    locators: Arc<[TenantLocator]>,
    body_limit: usize,
    on_reject: R,
}

impl<I: Clone, S: ?Sized, R: Clone> Clone for OrgResolve<I, S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: self.store.clone(),
            locators: self.locators.clone(),
            body_limit: self.body_limit,
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<I: fmt::Debug, S: ?Sized, R: fmt::Debug> fmt::Debug for OrgResolve<I, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgResolve")
            .field("inner", &self.inner)
            .field("store", &std::any::type_name::<S>())
            .field("locators", &self.locators)
            .field("body_limit", &self.body_limit)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<I, S, R, ReqBody, ResBody> Service<Request<ReqBody>> for OrgResolve<I, S, R>
where
    I: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    I::Future: Send + 'static,
    S: AssistantOrgStore + ?Sized,
    R: OnReject<ResBody>,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = I::Error;
    type Future = ResponseFuture<ResBody, I::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready inner service goes into the future; the clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        let locators = self.locators.clone();
        let limit = self.body_limit;
        let on_reject = self.on_reject.clone();
        let fut = async move {
            let (req, bytes) = match buffer_request(req, limit).await {
                Ok(buffered) => buffered,
                Err(err) => return Ok(respond(&on_reject, Rejection::new(err, None))),
            };
            let (mut parts, body) = req.into_parts();
            match resolve(&*store, &locators, &parts, &bytes).await {
                Ok(ctx) => {
                    record(&ctx);
                    parts.extensions.insert(ctx);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(err) => Ok(respond(&on_reject, Rejection::new(err, None))),
            }
        };
        ResponseFuture {
            inner: Box::pin(fut),
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
    for locator in locators {
        let (decisive, weak) = match &locator.0 {
            Locate::Payload => {
                let keys = probe(body)?;
                (keys.primary(), keys.vapi_org())
            }
            _ => match locator.locate_in_head(parts, body) {
                Some(found @ (TenantKey::VapiOrg(_), _)) => (None, Some(found)),
                found => (found, None),
            },
        };
        if let Some((key, source)) = decisive {
            return match store.org_for(&key).await? {
                Some(org) => Ok(OrgContext::new(org, key, source)),
                None => Err(ResolveError::UnknownTenant),
            };
        }
        if let Some((key, source)) = weak {
            if let Some(org) = store.org_for(&key).await? {
                return Ok(OrgContext::new(org, key, source));
            }
        }
    }
    Err(ResolveError::NoTenantKey)
}

fn record(ctx: &OrgContext) {
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(&ctx.org_id));
    span.record("tenant_key_kind", ctx.key.kind());
    span.record("tenant_key_source", tracing::field::display(&ctx.source));
    tracing::debug!(
        org_id = %ctx.org_id,
        tenant_key_kind = ctx.key.kind(),
        tenant_key_source = %ctx.source,
        "vapi webhook tenant resolved"
    );
}

/// Response future of [`OrgResolve`].
///
/// Boxed: the body is read and the store asked before the inner service is called.
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>,
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
