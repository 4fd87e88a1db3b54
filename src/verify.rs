//! Verifying each request with its organisation's credentials.
//!
//! (Skeleton: the shared types. The layer lands with the verify work.)

use std::error::Error as StdError;
use std::sync::Arc;

use http::StatusCode;

use crate::credential::Credential;
use crate::org::OrgId;

/// An organisation's credentials, cheap to clone.
pub type Credentials = Arc<[Credential]>;

/// Looks up the active credentials of an organisation.
///
/// Async and object-safe: use it as `Arc<dyn SecretProvider>` or as a concrete type.
#[async_trait::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    /// The credentials of `org`; `None` when no [`OrgContext`](crate::OrgContext) is present
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
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The organisation has no active credential.
    #[error("no active credential")]
    NoCredentials,
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
