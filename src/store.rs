//! Mapping tenant keys to organisations.
//!
//! (Skeleton: the shared types. The stores land with the resolve work.)

use std::error::Error as StdError;
use std::sync::Arc;

use crate::org::{OrgId, TenantKey};

/// Maps a [`TenantKey`] to the organisation that owns it.
///
/// Async and object-safe: use it as `Arc<dyn AssistantOrgStore>` or as a concrete type.
#[async_trait::async_trait]
pub trait AssistantOrgStore: Send + Sync + 'static {
    /// The organisation that owns `key`, or `None` if no organisation does.
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError>;
}

/// A store backend failed (answered with 503 and `Retry-After`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("tenant store unavailable")]
pub struct StoreError(#[source] Arc<dyn StdError + Send + Sync>);

impl StoreError {
    /// Wraps the backend's error.
    pub fn new(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(Arc::from(err.into()))
    }
}
