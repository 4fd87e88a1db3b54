//! Finding the organisation a request belongs to.
//!
//! (Skeleton: the shared types. The layer lands with the resolve work.)

use http::StatusCode;

use crate::store::StoreError;

/// Why the organisation of a request could not be found.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No tenant key anywhere (400).
    #[error("no tenant key in the request")]
    NoTenantKey,
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
            Self::NoTenantKey => StatusCode::BAD_REQUEST,
            Self::UnknownTenant => StatusCode::UNAUTHORIZED,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
