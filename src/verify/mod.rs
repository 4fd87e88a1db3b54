//! Verifying each request with its organisation's credentials.
//!
//! [`SignatureVerifyLayer`] buffers the body once (see [`crate::body`]), asks a
//! [`SecretProvider`] for the credentials of the organisation that
//! [`OrgResolveLayer`](crate::resolve) put in the request ([`OrgContext`], optional), keeps the
//! ones still active, and lets the request through if **any one** of them verifies it. The
//! handler then finds a [`Verified`] marker in the request extensions and the body unchanged.
//!
//! The check itself is a plain call, [`Verifier::verify`], usable without tower (another
//! framework, a queue consumer, a Lambda): the layer is built on it.
//!
//! * HMAC credentials are recomputed over the raw bytes as received, fed part by part from the
//!   credential's [`PayloadFormat`](crate::credential::PayloadFormat), and compared in constant
//!   time after decoding. A signature header may carry several whitespace-separated signatures
//!   (and several header lines); tokens without the credential's prefix are skipped and at most
//!   [`MAX_SIGNATURE_CANDIDATES`] are tried.
//! * The timestamp must be plain ASCII digits (no sign, no leading zero, fits in `i64`) within
//!   ±[`tolerance`](Verifier::tolerance) of the [`Clock`], both ways; seconds or
//!   milliseconds ([`TimestampUnit`]).
//! * Shared-secret and bearer credentials are compared in constant time, digest to digest.
//! * **Fail closed**: no active credential, a missing header or a bad timestamp → 401 with the same
//!   body as a bad signature. There is no global fallback secret: single-tenant use installs one
//!   explicitly with [`SingleTenant`].
//!
//! Every refusal goes through the layer's [`OnReject`](crate::OnReject) ([`DefaultOnReject`] unless replaced) and
//! carries the typed [`Rejection`] in the response extensions.
//!
//! # Example: one tenant, Vapi's default HMAC credential
//!
//! ```
//! use axum::{Router, routing::post};
//! use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};
//!
//! let credential = Credential::vapi_hmac("my-vapi-hmac-secret")?;
//! let app: Router = Router::new()
//!     .route("/webhooks/vapi", post(|body: String| async move { body.len().to_string() }))
//!     .layer(SignatureVerifyLayer::new(SingleTenant::new(credential)));
//! # Ok::<(), vapi_webhooks::CredentialError>(())
//! ```
//!
//! # Example: customised, under `tower::ServiceBuilder`
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::{Duration, SystemTime};
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use vapi_webhooks::verify::TimestampUnit;
//! use vapi_webhooks::{Credential, Rejection, SignatureVerifyLayer, SingleTenant};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Rotation: the old secret stays valid for another hour.
//! let current = Credential::vapi_signature("new-secret")?;
//! let old = Credential::vapi_signature("old-secret")?
//!     .not_after(SystemTime::now() + Duration::from_secs(3600));
//!
//! let layer = SignatureVerifyLayer::new(SingleTenant::many([current, old]))
//!     .tolerance(Duration::from_secs(60))
//!     .timestamp_unit(TimestampUnit::Seconds)
//!     .clock(SystemTime::now) // any `Fn() -> SystemTime`, handy in tests
//!     .body_limit(256 * 1024)
//!     .on_reject(|rejection: &Rejection| {
//!         let mut res = Response::new(Full::new(Bytes::new()));
//!         *res.status_mut() = rejection.status();
//!         res
//!     });
//!
//! let service = ServiceBuilder::new().layer(layer).service_fn(|req: Request<Full<Bytes>>| async move {
//!     Ok::<_, Infallible>(Response::new(req.into_body()))
//! });
//!
//! // Unsigned: refused with the closure's empty 401.
//! let res = service.oneshot(Request::new(Full::new(Bytes::from_static(b"{}")))).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert!(res.extensions().get::<Rejection>().is_some());
//! # Ok(()) }
//! ```

//!
//! # Example: without tower
//!
//! ```
//! use http::{HeaderMap, Method, Uri};
//! use vapi_webhooks::verify::Verifier;
//! use vapi_webhooks::{Credential, testing::Signer};
//!
//! let credentials = [Credential::vapi_hmac("my-vapi-hmac-secret")?];
//! let body = br#"{"message":{"type":"status-update","status":"ended"}}"#;
//! // What the sender put on the request (here: a test signer).
//! let headers: HeaderMap = Signer::new(&credentials[0]).headers(body);
//!
//! let verifier = Verifier::new(); // ±300 s, system clock
//! let delivery = verifier.verify(&credentials, &Method::POST, &Uri::from_static("/vapi"), &headers, body)?;
//! println!("verified delivery {}", delivery.key()); // what replay protection keys on
//!
//! let mut forged = headers.clone();
//! forged.insert("x-signature", "00".repeat(32).parse()?);
//! assert!(verifier.verify(&credentials, &Method::POST, &Uri::from_static("/vapi"), &forged, body).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
mod time;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use tower_layer::Layer;

use self::check::{Presented, verify_request};
use crate::body::{Buffered, DEFAULT_BODY_LIMIT};
use crate::credential::Credential;
use crate::layer::{BoxFuture, CheckService, RequestCheck};
use crate::org::{OrgContext, OrgId};
use crate::reject::{DefaultOnReject, Rejection};
use crate::replay::{Admission, DeliveryKey, ReplayGuard};
use crate::telemetry::{self, Started};

pub use self::check::MAX_SIGNATURE_CANDIDATES;
pub use self::time::{Clock, DEFAULT_TOLERANCE, SystemClock, TimestampUnit};
pub use crate::error::VerifyError;
#[doc(no_inline)]
pub use crate::store::{Credentials, SecretError, SecretProvider, SingleTenant};

/// How requests are verified: the timestamp window, the clock and the public URL. The plain,
/// framework-free verification call, [`verify`](Self::verify); [`SignatureVerifyLayer`] runs it
/// for every request.
#[derive(Clone)]
pub struct Verifier {
    tolerance: Duration,
    unit: TimestampUnit,
    clock: Arc<dyn Clock>,
    public_url: Option<Arc<str>>,
}

impl Verifier {
    /// The defaults: ±300 s, units by magnitude, the system clock, no public URL.
    pub fn new() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
            unit: TimestampUnit::Auto,
            clock: Arc::new(SystemClock),
            public_url: None,
        }
    }

    /// How far a timestamp may be from the clock, either way (inclusive). Default 300 s.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The unit of timestamp headers. Default [`TimestampUnit::Auto`].
    pub fn timestamp_unit(mut self, unit: TimestampUnit) -> Self {
        self.unit = unit;
        self
    }

    /// The clock for timestamp windows and credential expiry. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The scheme and host the sender addressed, e.g. `https://hooks.example.com`, for
    /// credentials that sign `{url}`: `{url}` is this base followed by the request's path and
    /// query. **Required by such credentials**: without it they verify nothing
    /// ([`VerifyError::UnknownUrl`]), since the `Host` header and an absolute request target
    /// are whatever the client says.
    pub fn public_url(mut self, base: impl Into<String>) -> Self {
        let base = base.into();
        self.public_url = Some(base.trim_end_matches('/').into());
        self
    }

    /// Verifies a request against an organisation's `credentials`: it passes if any one
    /// credential active at the clock's time verifies it.
    ///
    /// `body` is the raw body exactly as received. Returns the verified delivery, or why it
    /// failed (every reason is the same 401 to a client).
    pub fn verify(
        &self,
        credentials: &[Credential],
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedDelivery, VerifyError> {
        let presented = Presented {
            method,
            uri,
            headers,
            body,
        };
        verify_request(credentials, &presented, self)
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("tolerance", &self.tolerance)
            .field("timestamp_unit", &self.unit)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// A request that [`Verifier::verify`] accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedDelivery {
    key: DeliveryKey,
    credential: usize,
}

impl VerifiedDelivery {
    /// What identifies this delivery, the same for a replay of it: the key replay protection
    /// and idempotent processing use.
    pub fn key(&self) -> &DeliveryKey {
        &self.key
    }

    /// The index, in the credentials given, of the credential that verified the request.
    pub fn credential(&self) -> usize {
        self.credential
    }
}

/// Marker inserted into the request extensions once a request is verified.
///
/// Extractors refuse to run without it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The organisation whose credential verified the request (`None` for single-tenant use).
    pub org: Option<OrgId>,
    /// What identifies the delivery: the same for the sender's retry of it or a replay.
    pub delivery: DeliveryKey,
}

impl Verified {
    /// A marker for `org`'s verified delivery `delivery`.
    pub fn new(org: Option<OrgId>, delivery: DeliveryKey) -> Self {
        Self { org, delivery }
    }
}

#[derive(Clone, Debug)]
struct Config {
    verifier: Verifier,
    replay: Option<ReplayGuard>,
    body_limit: usize,
}

/// Verifies each request with its organisation's credentials; see the [module docs](self).
///
/// `P` is the [`SecretProvider`] (it may be `dyn SecretProvider`), `R` the
/// [`OnReject`](crate::OnReject) that answers refused requests.
pub struct SignatureVerifyLayer<P: ?Sized, R = DefaultOnReject> {
    check: Verify<P>,
    on_reject: R,
}

/// The check of [`SignatureVerifyLayer`]: its provider and configuration, behind one `Arc`
/// each.
pub struct Verify<P: ?Sized> {
    provider: Arc<P>,
    config: Arc<Config>,
}

impl<P: SecretProvider> SignatureVerifyLayer<P> {
    /// A layer asking `provider` for credentials, with the defaults: ±300 s, units by
    /// magnitude, the system clock, a 1 MiB body limit and [`DefaultOnReject`].
    pub fn new(provider: P) -> Self {
        Self::from_shared(Arc::new(provider))
    }
}

impl<P: SecretProvider + ?Sized> SignatureVerifyLayer<P> {
    /// Like [`new`](Self::new) with a provider that is already shared, e.g.
    /// `Arc<dyn SecretProvider>`.
    pub fn from_shared(provider: Arc<P>) -> Self {
        Self {
            check: Verify {
                provider,
                config: Arc::new(Config {
                    verifier: Verifier::new(),
                    replay: None,
                    body_limit: DEFAULT_BODY_LIMIT,
                }),
            },
            on_reject: DefaultOnReject,
        }
    }
}

impl<P: ?Sized, R> SignatureVerifyLayer<P, R> {
    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.check.config)
    }

    fn verifier(mut self, set: impl FnOnce(Verifier) -> Verifier) -> Self {
        let config = self.config();
        config.verifier = set(config.verifier.clone());
        self
    }

    /// How far a timestamp may be from the clock, either way (inclusive). Default 300 s.
    pub fn tolerance(self, tolerance: Duration) -> Self {
        self.verifier(|v| v.tolerance(tolerance))
    }

    /// The unit of timestamp headers. Default [`TimestampUnit::Auto`].
    pub fn timestamp_unit(self, unit: TimestampUnit) -> Self {
        self.verifier(|v| v.timestamp_unit(unit))
    }

    /// The clock for timestamp windows and credential expiry. Default [`SystemClock`].
    pub fn clock(self, clock: impl Clock) -> Self {
        self.verifier(|v| v.clock(clock))
    }

    /// The body limit in bytes (413 above it). Default [`DEFAULT_BODY_LIMIT`]. Checked against
    /// a body an earlier stage (e.g. `OrgResolveLayer`) buffered too: the smallest limit on the
    /// way wins.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.config().body_limit = limit;
        self
    }

    /// The scheme and host the sender addressed; see [`Verifier::public_url`].
    pub fn public_url(self, base: impl Into<String>) -> Self {
        self.verifier(|v| v.public_url(base))
    }

    /// Accepts each delivery once: see [`crate::replay`]. Off by default.
    ///
    /// After a request verifies, its [`DeliveryKey`] is remembered for 2 ×
    /// [`tolerance`](Self::tolerance) + the guard's margin. A replay is answered by the
    /// guard's [`ReplayAnswer`](crate::replay::ReplayAnswer) (default `200`, empty body)
    /// without running the inner service; a store failure is a 503 with `Retry-After` unless
    /// the guard [fails open](ReplayGuard::fail_open). Unless the inner service answers 2xx
    /// (another status, an error, or its response future dropped first), the delivery is
    /// forgotten so that the sender's retry is accepted.
    ///
    /// ```
    /// use vapi_webhooks::replay::ReplayGuard;
    /// use vapi_webhooks::{Credential, SignatureVerifyLayer, SingleTenant};
    ///
    /// let credential = Credential::vapi_hmac("my-vapi-hmac-secret")?;
    /// let layer = SignatureVerifyLayer::new(SingleTenant::new(credential))
    ///     .replay_guard(ReplayGuard::in_memory());
    /// # Ok::<(), vapi_webhooks::CredentialError>(())
    /// ```
    pub fn replay_guard(mut self, guard: ReplayGuard) -> Self {
        self.config().replay = Some(guard);
        self
    }

    /// Answers refused requests with `on_reject` instead.
    pub fn on_reject<R2>(self, on_reject: R2) -> SignatureVerifyLayer<P, R2> {
        SignatureVerifyLayer {
            check: self.check,
            on_reject,
        }
    }
}

impl<P: ?Sized> Clone for Verify<P> {
    fn clone(&self) -> Self {
        Self {
            provider: Arc::clone(&self.provider),
            config: Arc::clone(&self.config),
        }
    }
}

impl<P: ?Sized> fmt::Debug for Verify<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("provider", &std::any::type_name::<P>())
            .field("config", &self.config)
            .finish()
    }
}

impl<P: ?Sized, R: Clone> Clone for SignatureVerifyLayer<P, R> {
    fn clone(&self) -> Self {
        Self {
            check: self.check.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<P: ?Sized, R> fmt::Debug for SignatureVerifyLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifyLayer")
            .field("check", &self.check)
            .field("on_reject", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, P: ?Sized, R: Clone> Layer<S> for SignatureVerifyLayer<P, R> {
    type Service = SignatureVerify<S, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService::new(inner, self.check.clone(), self.on_reject.clone())
    }
}

/// The service built by [`SignatureVerifyLayer`].
pub type SignatureVerify<S, P, R = DefaultOnReject> = CheckService<S, Verify<P>, R>;

impl<P: SecretProvider + ?Sized> RequestCheck for Verify<P> {
    type Admission = Option<Admission>;

    fn body_limit(&self) -> usize {
        self.config.body_limit
    }

    fn check(
        &self,
        req: Request<Buffered>,
        body: Bytes,
    ) -> impl Future<Output = Result<(Request<Buffered>, Self::Admission), Rejection>> + Send + 'static
    {
        let this = self.clone();
        let started = Started::now();
        async move {
            let org = req.extensions().get::<OrgContext>().map(|ctx| ctx.org_id);
            let reject = |reason: crate::reject::Reason| {
                let rejection = Rejection::new(reason, org);
                telemetry::verify_refused(&rejection, started);
                rejection
            };
            let config = &this.config;
            let credentials = this
                .provider
                .credentials(org.as_ref())
                .await
                .map_err(|err| reject(VerifyError::from(err).into()))?;
            let delivery = config
                .verifier
                .verify(&credentials, req.method(), req.uri(), req.headers(), &body)
                .map_err(|err| reject(err.into()))?;
            let admission = match &config.replay {
                Some(guard) => Some(
                    guard
                        .admit(org.as_ref(), delivery.key(), config.verifier.tolerance)
                        .await
                        .map_err(|err| reject(err.into()))?,
                ),
                None => None,
            };
            let mut req = req;
            req.extensions_mut()
                .insert(Verified::new(org, delivery.key));
            telemetry::accepted(org.as_ref(), started);
            Ok((req, admission))
        }
    }

    fn on_response(&self, admission: Self::Admission, status: StatusCode) -> Option<BoxFuture> {
        // Only an acknowledged delivery stays remembered; the store has forgotten any other
        // before the sender hears back, so its retry is accepted.
        let admission = admission?;
        if status.is_success() {
            admission.keep();
            None
        } else {
            Some(Box::pin(admission.release()))
        }
    }
}
