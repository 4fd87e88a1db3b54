//! Verifying each request with its organisation's credentials.
//!
//! [`SignatureVerifyLayer`] buffers the body once (see [`crate::body`]), asks a
//! [`SecretProvider`] for the credentials of the organisation that
//! [`OrgResolveLayer`](crate::resolve) put in the request ([`OrgContext`], optional), keeps the
//! ones still active, and lets the request through if **any one** of them verifies it. The
//! handler then finds a [`Verified`] marker in the request extensions and the body unchanged.
//!
//! * HMAC credentials are recomputed over the raw bytes as received, fed part by part from the
//!   credential's [`PayloadFormat`](crate::credential::PayloadFormat), and compared in constant
//!   time after decoding. A signature header may carry several whitespace-separated signatures
//!   (and several header lines); tokens without the credential's prefix are skipped and at most
//!   [`MAX_SIGNATURE_CANDIDATES`] are tried.
//! * The timestamp must be plain ASCII digits (no sign, no leading zero, fits in `i64`) within
//!   ±[`tolerance`](SignatureVerifyLayer::tolerance) of the [`Clock`], both ways; seconds or
//!   milliseconds ([`TimestampUnit`]).
//! * Shared-secret and bearer credentials are compared in constant time, digest to digest.
//! * **Fail closed**: no active credential, a missing header or a bad timestamp → 401 with the same
//!   body as a bad signature. There is no global fallback secret: single-tenant use installs one
//!   explicitly with [`SingleTenant`].
//!
//! Every refusal goes through the layer's [`OnReject`] ([`DefaultOnReject`] unless replaced) and
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

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{DEFAULT_BODY_LIMIT, buffer_request};
use crate::credential::{
    Credential, CredentialKind, HeaderSecret, HmacCredential, PayloadInputs, PayloadPart,
    SignatureEncoding,
};
use crate::org::{OrgContext, OrgId};
use crate::reject::{DefaultOnReject, OnReject, Reason, Rejection, respond};
use crate::replay::{Admission, Fingerprint, ReplayGuard};

/// An organisation's credentials, cheap to clone.
pub type Credentials = Arc<[Credential]>;

/// The default timestamp tolerance: ±300 seconds.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// How many signature tokens (those carrying the credential's prefix) are tried per credential;
/// the rest are ignored, so a header stuffed with signatures costs a bounded amount of work.
pub const MAX_SIGNATURE_CANDIDATES: usize = 32;

/// Auto-detected timestamps at or above this value are milliseconds (as seconds it would be
/// the year 5138; as milliseconds it is March 1973).
const AUTO_MILLIS_FROM: i64 = 100_000_000_000;

/// Looks up the active credentials of an organisation.
///
/// Async and object-safe: use it as `Arc<dyn SecretProvider>` or as a concrete type.
#[async_trait::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    /// The credentials of `org`; `None` when no [`OrgContext`] is present
    /// (single-tenant use). A provider that needs an org answers
    /// [`SecretError::OrgRequired`] to `None`.
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError>;
}

/// Why a [`SecretProvider`] could not answer.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The provider is per-organisation but the request carries no `OrgContext` (500).
    #[error("SignatureVerifyLayer needs an OrgContext: add OrgResolveLayer before it")]
    OrgRequired,
    /// The backend failed (503).
    #[error("secret backend unavailable")]
    Unavailable(#[source] Arc<dyn StdError + Send + Sync>),
}

/// Why a request failed verification.
///
/// Everything but [`VerifyError::Provider`] is answered with the same 401.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The organisation has no active credential.
    #[error("no active credential")]
    NoCredentials,
    /// The signature (or secret, or token) header is missing or empty.
    #[error("missing signature")]
    MissingSignature,
    /// No signature matched, or the secret or token is wrong.
    #[error("invalid signature")]
    InvalidSignature,
    /// The credential signs a timestamp but the timestamp header is missing.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// The timestamp is not a plain decimal number that fits in `i64`, or it is sent twice.
    #[error("malformed timestamp")]
    InvalidTimestamp,
    /// The timestamp is outside the tolerance window, in the past or the future.
    #[error("timestamp outside the tolerance window")]
    TimestampOutOfWindow,
    /// The credential signs a message id but the request carries none.
    #[error("missing message id")]
    MissingMessageId,
    /// The credential signs `{url}` but the request URL cannot be reconstructed (no absolute
    /// URI, no `public_url`, no `Host`).
    #[error("request URL unknown")]
    UnknownUrl,
    /// The secret provider failed.
    #[error(transparent)]
    Provider(#[from] SecretError),
}

impl VerifyError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Provider(SecretError::OrgRequired) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Provider(SecretError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
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
}

/// A [`SecretProvider`] with one fixed set of credentials, whatever the organisation.
///
/// For an application that receives webhooks for a single Vapi account, without
/// [`OrgResolveLayer`](crate::resolve). Installing it is the explicit choice of a fallback:
/// behind an `OrgResolveLayer` every organisation would share these credentials.
#[derive(Clone, Debug)]
pub struct SingleTenant {
    credentials: Credentials,
}

impl SingleTenant {
    /// One credential.
    pub fn new(credential: Credential) -> Self {
        Self::many([credential])
    }

    /// Several credentials (rotation); any one active credential verifies a request.
    pub fn many(credentials: impl IntoIterator<Item = Credential>) -> Self {
        Self {
            credentials: credentials.into_iter().collect(),
        }
    }

    /// The credentials.
    pub fn credentials(&self) -> &[Credential] {
        &self.credentials
    }
}

impl From<Credential> for SingleTenant {
    fn from(credential: Credential) -> Self {
        Self::new(credential)
    }
}

#[async_trait::async_trait]
impl SecretProvider for SingleTenant {
    async fn credentials(&self, _org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        Ok(self.credentials.clone())
    }
}

/// The time source for timestamp windows and credential expiry.
///
/// Implemented by [`SystemClock`] and by closures `Fn() -> SystemTime`.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock, the default [`Clock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// The unit of the timestamp header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampUnit {
    /// By magnitude: values from 10¹¹ up are milliseconds, smaller ones seconds.
    #[default]
    Auto,
    /// Seconds since the Unix epoch.
    Seconds,
    /// Milliseconds since the Unix epoch.
    Millis,
}

#[derive(Clone)]
struct Config {
    replay: Option<ReplayGuard>,
    tolerance: Duration,
    unit: TimestampUnit,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    public_url: Option<Arc<str>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("tolerance", &self.tolerance)
            .field("timestamp_unit", &self.unit)
            .field("body_limit", &self.body_limit)
            .field("public_url", &self.public_url)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

/// Verifies each request with its organisation's credentials; see the [module docs](self).
///
/// `P` is the [`SecretProvider`] (it may be `dyn SecretProvider`), `R` the [`OnReject`] that
/// answers refused requests.
pub struct SignatureVerifyLayer<P: ?Sized, R = DefaultOnReject> {
    provider: Arc<P>,
    config: Arc<Config>,
    on_reject: R,
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
            provider,
            config: Arc::new(Config {
                replay: None,
                tolerance: DEFAULT_TOLERANCE,
                unit: TimestampUnit::Auto,
                clock: Arc::new(SystemClock),
                body_limit: DEFAULT_BODY_LIMIT,
                public_url: None,
            }),
            on_reject: DefaultOnReject,
        }
    }
}

impl<P: ?Sized, R> SignatureVerifyLayer<P, R> {
    /// How far a timestamp may be from the clock, either way (inclusive). Default 300 s.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        Arc::make_mut(&mut self.config).tolerance = tolerance;
        self
    }

    /// The unit of timestamp headers. Default [`TimestampUnit::Auto`].
    pub fn timestamp_unit(mut self, unit: TimestampUnit) -> Self {
        Arc::make_mut(&mut self.config).unit = unit;
        self
    }

    /// The clock for timestamp windows and credential expiry. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }

    /// The body limit in bytes (413 above it). Default
    /// [`DEFAULT_BODY_LIMIT`]. Ignored when an earlier layer
    /// already buffered the body.
    pub fn body_limit(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = limit;
        self
    }

    /// The scheme and host the sender addressed, e.g. `https://hooks.example.com`, for
    /// credentials that sign `{url}` behind a proxy: `{url}` is then this base followed by the
    /// request's path and query. Without it, `{url}` is the request URI when it is absolute and
    /// `https://{Host}{path?query}` otherwise.
    pub fn public_url(mut self, base: impl Into<String>) -> Self {
        let base = base.into();
        Arc::make_mut(&mut self.config).public_url = Some(base.trim_end_matches('/').into());
        self
    }

    /// Accepts each delivery once: see [`crate::replay`]. Off by default.
    ///
    /// After a request verifies, its delivery key (org + signed message id, else the signed
    /// payload, else the body for shared-secret and bearer credentials) is remembered for
    /// 2 × [`tolerance`](Self::tolerance) + the guard's margin. A replay is answered by the
    /// guard's [`ReplayAnswer`](crate::replay::ReplayAnswer) (default `200`, empty body)
    /// without running the inner service; a store failure is a 503 with `Retry-After` unless
    /// the guard [fails open](ReplayGuard::fail_open). If the inner service answers 5xx (or
    /// fails), the delivery is forgotten so that the sender's retry is accepted.
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
        Arc::make_mut(&mut self.config).replay = Some(guard);
        self
    }

    /// Answers refused requests with `on_reject` instead.
    pub fn on_reject<R2>(self, on_reject: R2) -> SignatureVerifyLayer<P, R2> {
        SignatureVerifyLayer {
            provider: self.provider,
            config: self.config,
            on_reject,
        }
    }
}

impl<P: ?Sized, R: Clone> Clone for SignatureVerifyLayer<P, R> {
    fn clone(&self) -> Self {
        Self {
            provider: Arc::clone(&self.provider),
            config: Arc::clone(&self.config),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<P: ?Sized, R> fmt::Debug for SignatureVerifyLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifyLayer")
            .field("provider", &std::any::type_name::<P>())
            .field("config", &self.config)
            .field("on_reject", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, P: ?Sized, R: Clone> Layer<S> for SignatureVerifyLayer<P, R> {
    type Service = SignatureVerify<S, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SignatureVerify {
            inner,
            provider: Arc::clone(&self.provider),
            config: Arc::clone(&self.config),
            on_reject: self.on_reject.clone(),
        }
    }
}

/// The service built by [`SignatureVerifyLayer`].
pub struct SignatureVerify<S, P: ?Sized, R = DefaultOnReject> {
    inner: S,
    provider: Arc<P>,
    config: Arc<Config>,
    on_reject: R,
}

impl<S: Clone, P: ?Sized, R: Clone> Clone for SignatureVerify<S, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            provider: Arc::clone(&self.provider),
            config: Arc::clone(&self.config),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<S: fmt::Debug, P: ?Sized, R> fmt::Debug for SignatureVerify<S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerify")
            .field("inner", &self.inner)
            .field("provider", &std::any::type_name::<P>())
            .field("config", &self.config)
            .field("on_reject", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, P, R, ReqBody, ResBody> Service<Request<ReqBody>> for SignatureVerify<S, P, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    P: SecretProvider + ?Sized,
    R: OnReject<ResBody>,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn StdError + Send + Sync>>,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The inner service that was driven to readiness goes into the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let provider = Arc::clone(&self.provider);
        let config = Arc::clone(&self.config);
        let on_reject = self.on_reject.clone();
        let future = async move {
            let org = req.extensions().get::<OrgContext>().map(|ctx| ctx.org_id);
            let reject = |reason: Reason| respond(&on_reject, Rejection::new(reason, org));
            let (mut req, body) = match buffer_request(req, config.body_limit).await {
                Ok(buffered) => buffered,
                Err(err) => return Ok(reject(err.into())),
            };
            let credentials = match provider.credentials(org.as_ref()).await {
                Ok(credentials) => credentials,
                Err(err) => return Ok(reject(VerifyError::from(err).into())),
            };
            let fingerprint = match verify_request(&credentials, &req, &body, &config) {
                Ok(fingerprint) => fingerprint,
                Err(err) => return Ok(reject(err.into())),
            };
            let Some(guard) = &config.replay else {
                req.extensions_mut().insert(Verified { org });
                return inner.call(req).await;
            };
            let admission = match guard
                .admit(org.as_ref(), &fingerprint, config.tolerance)
                .await
            {
                Ok(admission) => admission,
                Err(err) => return Ok(reject(err.into())),
            };
            req.extensions_mut().insert(Verified { org });
            let result = inner.call(req).await;
            if let Admission::New(key) = admission {
                // A failed delivery is forgotten so that the sender's retry is accepted.
                let failed = result
                    .as_ref()
                    .map_or(true, |res| res.status().is_server_error());
                if failed {
                    guard.release(org.as_ref(), &key).await;
                }
            }
            result
        };
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

pin_project_lite::pin_project! {
    /// The response future of [`SignatureVerify`].
    ///
    /// Boxed: buffering the body and asking the provider happen before the inner call.
    pub struct ResponseFuture<T, E> {
        #[pin]
        inner: BoxFuture<T, E>,
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Passes if any credential active at the clock's `now` verifies the request, with what
/// identifies the delivery for the replay guard (cheap: nothing is hashed here); otherwise the
/// first credential's reason (all of them are the same 401).
fn verify_request<'a, B>(
    credentials: &'a [Credential],
    req: &'a Request<B>,
    body: &'a [u8],
    config: &Config,
) -> Result<Fingerprint<'a>, VerifyError> {
    let now = config.clock.now();
    let mut first_error = None;
    for credential in credentials.iter().filter(|c| c.is_active(now)) {
        let outcome = match credential.kind() {
            CredentialKind::Hmac(hmac) => verify_hmac(hmac, req, body, now, config),
            CredentialKind::SecretHeader(secret) => {
                verify_header_secret(secret, req.headers(), None).map(|()| Fingerprint::Body(body))
            }
            CredentialKind::Bearer(secret) => {
                verify_header_secret(secret, req.headers(), Some("bearer"))
                    .map(|()| Fingerprint::Body(body))
            }
        };
        match outcome {
            Ok(fingerprint) => return Ok(fingerprint),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    Err(first_error.unwrap_or(VerifyError::NoCredentials))
}

fn verify_hmac<'a, B>(
    hmac: &'a HmacCredential,
    req: &'a Request<B>,
    body: &'a [u8],
    now: SystemTime,
    config: &Config,
) -> Result<Fingerprint<'a>, VerifyError> {
    let headers = req.headers();
    let signatures = headers.get_all(hmac.signature_header_name());
    if signatures.iter().all(|value| value.is_empty()) {
        return Err(VerifyError::MissingSignature);
    }

    let timestamp = match hmac.timestamp_header_name() {
        Some(name) => {
            let raw = single_header(headers, name)
                .map_err(|()| VerifyError::InvalidTimestamp)?
                .ok_or(VerifyError::MissingTimestamp)?;
            let value = parse_timestamp(raw).ok_or(VerifyError::InvalidTimestamp)?;
            if !in_window(value, now, config.tolerance, config.unit) {
                return Err(VerifyError::TimestampOutOfWindow);
            }
            Some(raw)
        }
        // Without a timestamp header there is nothing to check the window against.
        None => None,
    };

    let format = hmac.format();
    let message_id = if format.uses(&PayloadPart::MessageId) {
        let id = single_header(headers, hmac.message_id_header_name())
            .ok()
            .flatten()
            .filter(|id| !id.is_empty())
            .ok_or(VerifyError::MissingMessageId)?;
        Some(id)
    } else {
        None
    };
    let url = if format.uses(&PayloadPart::Url) {
        Some(
            request_url(req.uri(), headers, config.public_url.as_deref())
                .ok_or(VerifyError::UnknownUrl)?,
        )
    } else {
        None
    };

    let inputs = PayloadInputs {
        body,
        timestamp,
        method: req.method().as_str().as_bytes(),
        url: url.as_deref().map(str::as_bytes),
        message_id,
    };
    let expected = hmac.mac(&inputs).ok_or(VerifyError::InvalidSignature)?;

    let prefix = hmac.signature_prefix().as_bytes();
    let candidates = signatures
        .iter()
        .flat_map(|value| value.as_bytes().split(u8::is_ascii_whitespace))
        .filter(|token| !token.is_empty())
        .filter_map(|token| token.strip_prefix(prefix))
        .take(MAX_SIGNATURE_CANDIDATES);
    let mut matched = false;
    for candidate in candidates {
        if let Some(decoded) =
            decode_signature(candidate, hmac.signature_encoding(), expected.len())
        {
            // Try every candidate: the work does not depend on which one matches.
            matched |= bool::from(decoded.ct_eq(&expected));
        }
    }
    if !matched {
        return Err(VerifyError::InvalidSignature);
    }
    Ok(match message_id {
        Some(id) => Fingerprint::MessageId(id),
        None => Fingerprint::Signed {
            format,
            body,
            timestamp,
            method: req.method().as_str().as_bytes(),
            url,
        },
    })
}

/// Decodes one signature token; `None` when it is not valid in `encoding` or cannot decode to
/// `len` bytes (a plain "no", never an error).
fn decode_signature(token: &[u8], encoding: SignatureEncoding, len: usize) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => {
            if token.len() != 2 * len {
                return None;
            }
            let mut out = vec![0; len];
            hex::decode_to_slice(token, &mut out).ok()?;
            Some(out)
        }
        SignatureEncoding::Base64 => {
            // Padded or not: the decoded bytes are what is compared.
            const LENIENT: GeneralPurpose = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            if token.len() > len.div_ceil(3) * 4 {
                return None;
            }
            LENIENT.decode(token).ok()
        }
    }
}

/// Shared secret or bearer token, compared digest to digest. `scheme` is the auth scheme the
/// value must start with (case-insensitive, then one space).
fn verify_header_secret(
    secret: &HeaderSecret,
    headers: &HeaderMap,
    scheme: Option<&str>,
) -> Result<(), VerifyError> {
    let value = single_header(headers, secret.header())
        .map_err(|()| VerifyError::InvalidSignature)?
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::MissingSignature)?;
    let presented = match scheme {
        None => value,
        Some(scheme) => {
            let (given, token) = value
                .split_at_checked(scheme.len())
                .ok_or(VerifyError::InvalidSignature)?;
            let token = token
                .strip_prefix(b" ")
                .ok_or(VerifyError::InvalidSignature)?;
            if !given.eq_ignore_ascii_case(scheme.as_bytes()) {
                return Err(VerifyError::InvalidSignature);
            }
            token
        }
    };
    if secret.matches(presented) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

/// The one value of `name`: `Ok(None)` when absent, `Err` when sent more than once (ambiguous,
/// so refused).
fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a [u8]>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first.map(|value| value.as_bytes()))
}

/// A timestamp spelled as plain decimal digits: no sign, no leading zero (except `0`), no
/// spaces, not empty, within `i64`.
fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    match raw {
        [] => None,
        [b'0', _, ..] => None,
        digits => digits.iter().try_fold(0i64, |acc, &byte| {
            if !byte.is_ascii_digit() {
                return None;
            }
            acc.checked_mul(10)?.checked_add(i64::from(byte - b'0'))
        }),
    }
}

/// Whether `timestamp` is within ±`tolerance` of `now` (inclusive), in the timestamp's unit.
fn in_window(timestamp: i64, now: SystemTime, tolerance: Duration, unit: TimestampUnit) -> bool {
    let millis = match unit {
        TimestampUnit::Auto => timestamp >= AUTO_MILLIS_FROM,
        TimestampUnit::Seconds => false,
        TimestampUnit::Millis => true,
    };
    let (now, tolerance) = if millis {
        (unix_millis(now), tolerance.as_millis())
    } else {
        (unix_seconds(now), u128::from(tolerance.as_secs()))
    };
    let Some(now) = now else { return false };
    let tolerance = i64::try_from(tolerance).unwrap_or(i64::MAX);
    now.checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|distance| distance <= tolerance)
}

fn unix_seconds(now: SystemTime) -> Option<i64> {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    }
}

fn unix_millis(now: SystemTime) -> Option<i64> {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).ok(),
        Err(before) => i64::try_from(before.duration().as_millis())
            .ok()
            .map(|ms| -ms),
    }
}

/// The URL the sender addressed: `public_url` + path and query when configured, else the
/// absolute request URI, else `https://{Host}` + path and query.
fn request_url(uri: &Uri, headers: &HeaderMap, public_url: Option<&str>) -> Option<String> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(base) = public_url {
        return Some(format!("{base}{path_and_query}"));
    }
    if uri.scheme().is_some() && uri.authority().is_some() {
        return Some(uri.to_string());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("https://{host}{path_and_query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_only_plain_digits() {
        assert_eq!(parse_timestamp(b"0"), Some(0));
        assert_eq!(parse_timestamp(b"1614265330"), Some(1_614_265_330));
        assert_eq!(parse_timestamp(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"+123",
            b"-5",
            b"0123",
            b"00",
            b"12a",
            b"1.5",
            b" 12",
            b"12 ",
            b"9223372036854775808",
            b"-9223372036854775808",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn window_is_inclusive_both_ways_and_overflow_safe() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tol = Duration::from_secs(300);
        for (ts, ok) in [
            (1_700_000_300, true),
            (1_699_999_700, true),
            (1_700_000_301, false),
            (1_699_999_699, false),
            (i64::MAX, false),
            (0, false),
        ] {
            assert_eq!(in_window(ts, now, tol, TimestampUnit::Auto), ok, "{ts}");
        }
        assert!(in_window(1_700_000_000_000, now, tol, TimestampUnit::Auto));
        assert!(!in_window(
            1_700_000_000_000,
            now,
            tol,
            TimestampUnit::Seconds
        ));
        assert!(!in_window(1_700_000_000, now, tol, TimestampUnit::Millis));
        // Checked arithmetic: a clock before the epoch minus i64::MAX overflows, and is a "no".
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1_000);
        assert!(!in_window(
            i64::MAX,
            before_epoch,
            Duration::MAX,
            TimestampUnit::Millis
        ));
    }
}
