//! Every error of the request path, in one leaf module.
//!
//! The layers ([`body`](crate::body), [`resolve`](crate::resolve), [`verify`](crate::verify),
//! [`replay`](crate::replay)) and the stores raise these; [`reject`](crate::reject) turns a
//! [`Rejection`] into a response. This module imports none of them, the way axum-core keeps
//! its rejections below the extractors that use them, so no module cycle can form through the
//! errors. Each type is also re-exported from the module whose concern it is.
//!
//! Every `Display` names a reason (and, for a [`Rejection`], the org), never a secret, a body
//! value or a piece of the request that the sender controls.
//!
//! | error | status |
//! |---|---|
//! | [`BodyError::TooLarge`] | 413 |
//! | [`BodyError::Read`], [`ResolveError::NoTenantKey`], [`ResolveError::Probe`] | 400 |
//! | [`ResolveError::UnknownTenant`], [`ResolveError::TenantMismatch`], every [`VerifyError`] but `Provider` | 401 |
//! | [`StoreError`], [`SecretError::Unavailable`], [`ReplayError::Full`], [`ReplayError::Unavailable`] | 503 + `Retry-After` |
//! | [`SecretError::OrgRequired`] | 500 |
//! | [`ReplayError::Replayed`] | 200 or 409 |

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::org::OrgId;

/// The most characters of request-derived text (a path, a message type) that [`bounded`]
/// keeps for a log line.
pub const LOG_FIELD_MAX_CHARS: usize = 128;

/// `text` cut to [`LOG_FIELD_MAX_CHARS`] characters, with `…` when it was longer: for log
/// fields whose content a sender controls, so one request cannot make a huge log line.
///
/// ```
/// use vapi_webhooks::error::bounded;
/// assert_eq!(bounded("status-update"), "status-update");
/// assert_eq!(bounded(&"x".repeat(60_000)).chars().count(), 129);
/// ```
pub fn bounded(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(LOG_FIELD_MAX_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

/// A boxed error, as bodies and backends report them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The deepest nesting of arrays and objects the tenant probe accepts (the same as serde_json's
/// default recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Why a body could not be buffered.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the limit (413).
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body failed while it was read (400).
    #[error("request body could not be read")]
    Read(#[source] Arc<dyn StdError + Send + Sync>),
}

impl BodyError {
    /// The status this error is answered with: 413 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Why the tenant probe refused a body. Every variant is answered with 400.
///
/// The messages name a position or a field path, never the body's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The body is not a JSON object, is malformed at its top level or on a tenant path (values
    /// off the tenant paths are not validated before authentication), or a tenant field has the
    /// wrong type.
    #[error("request body is not a valid webhook payload (line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the error (0 at end of input).
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The body nests arrays and objects deeper than [`MAX_DEPTH`].
    #[error("request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A key on a tenant path appears twice in the same object.
    #[error("duplicate tenant field `{0}`")]
    DuplicateField(&'static str),
}

/// A tenant store backend failed (answered with 503 and `Retry-After`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("tenant store unavailable")]
pub struct StoreError(#[source] Arc<dyn StdError + Send + Sync>);

impl StoreError {
    /// Wraps the backend's error.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self(Arc::from(err.into()))
    }
}

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
    /// Strict mode: the payload names a tenant key of another organisation than the one that
    /// was decided (401, the same answer).
    #[error("the payload names a tenant key of another organisation")]
    TenantMismatch,
    /// The store failed (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ResolveError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoTenantKey | Self::Probe(_) => StatusCode::BAD_REQUEST,
            Self::UnknownTenant | Self::TenantMismatch => StatusCode::UNAUTHORIZED,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a secret provider could not answer.
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

impl SecretError {
    /// Wraps a backend failure.
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(Arc::from(err.into()))
    }
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
    /// The credential signs `{url}` but the verifier has no `public_url` to rebuild it from.
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
    /// The in-process store holds as many live entries of this org as it may (503).
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

/// A failure reported by a replay store.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store holds as many live entries (of this org) as it may.
    #[error("replay store is full")]
    Full,
    /// The backend failed.
    #[error("replay store backend failed")]
    Backend(#[source] Arc<dyn StdError + Send + Sync>),
}

impl ReplayStoreError {
    /// Wraps a backend error.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        Self::Backend(Arc::from(err.into()))
    }
}

/// Why a layer refused a request, with the organisation when it was known.
///
/// Inserted into the response extensions of every rejection. Its `Display` names the reason
/// and the org, never a secret or a body, so it is safe to log.
#[derive(Clone, Debug)]
pub struct Rejection {
    org: Option<OrgId>,
    reason: Reason,
}

/// The reason inside a [`Rejection`], one variant per concern.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Buffering the body failed.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Finding the organisation failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Verifying the request failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The replay guard refused the request: a replay, or its store failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl Reason {
    /// A short, stable name for the reason, e.g. `invalid_signature`: the `outcome` label of
    /// the crate's metrics, and a log field of bounded cardinality.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Body(BodyError::TooLarge { .. }) => "too_large",
            Self::Body(BodyError::Read(_)) => "body_unreadable",
            Self::Resolve(ResolveError::NoTenantKey) => "no_tenant_key",
            Self::Resolve(ResolveError::Probe(_)) => "bad_payload",
            Self::Resolve(ResolveError::UnknownTenant) => "unknown_tenant",
            Self::Resolve(ResolveError::TenantMismatch) => "tenant_mismatch",
            Self::Resolve(ResolveError::Store(_)) => "store_unavailable",
            Self::Verify(VerifyError::NoCredentials) => "no_credentials",
            Self::Verify(VerifyError::MissingSignature) => "missing_signature",
            Self::Verify(VerifyError::InvalidSignature) => "invalid_signature",
            Self::Verify(VerifyError::MissingTimestamp) => "missing_timestamp",
            Self::Verify(VerifyError::InvalidTimestamp) => "invalid_timestamp",
            Self::Verify(VerifyError::TimestampOutOfWindow) => "stale_timestamp",
            Self::Verify(VerifyError::MissingMessageId) => "missing_message_id",
            Self::Verify(VerifyError::UnknownUrl) => "unknown_url",
            Self::Verify(VerifyError::Provider(SecretError::OrgRequired)) => "misconfigured",
            Self::Verify(VerifyError::Provider(SecretError::Unavailable(_))) => {
                "secret_store_unavailable"
            }
            Self::Replay(ReplayError::Replayed(_)) => "replayed",
            Self::Replay(ReplayError::Full) => "replay_store_full",
            Self::Replay(ReplayError::Unavailable(_)) => "replay_store_unavailable",
        }
    }
}

impl Rejection {
    /// Creates a rejection.
    pub fn new(reason: impl Into<Reason>, org: Option<OrgId>) -> Self {
        Self {
            org,
            reason: reason.into(),
        }
    }

    /// The organisation the request was resolved to, if it got that far.
    pub fn org(&self) -> Option<&OrgId> {
        self.org.as_ref()
    }

    /// The reason.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The HTTP status of the class this rejection belongs to.
    pub fn status(&self) -> StatusCode {
        match &self.reason {
            Reason::Body(e) => e.status(),
            Reason::Resolve(e) => e.status(),
            Reason::Verify(e) => e.status(),
            Reason::Replay(e) => e.status(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.org {
            Some(org) => write!(f, "org {org}: {}", self.reason),
            None => fmt::Display::fmt(&self.reason, f),
        }
    }
}

impl StdError for Rejection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.reason)
    }
}
