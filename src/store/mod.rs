//! Mapping tenant keys to organisations (and organisations to their credentials).
//!
//! [`AssistantOrgStore`] answers "which organisation owns this assistant id / squad id / phone
//! number id / Vapi org id / URL slug?" for [`OrgResolveLayer`](crate::OrgResolveLayer). The
//! crate ships:
//!
//! * [`InMemoryStore`]: fixed maps built once with a builder; it is also a
//!   [`SecretProvider`](crate::SecretProvider) holding each organisation's credentials, so one
//!   value configures both layers;
//! * [`CachedStore`]: a caching wrapper over any store (bounded in entries and age, misses
//!   cached too, errors never), e.g. in front of a database; it caches credentials too when the
//!   store it wraps is a `SecretProvider`.
//!
//! A store that fails answers [`StoreError`]: the request gets 503 with `Retry-After`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use uuid::Uuid;
//! use vapi_webhooks::{AssistantOrgStore, CachedStore, Credential, InMemoryStore, OrgId, TenantKey};
//! use vapi_webhooks::verify::SecretProvider;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let org = OrgId::new(Uuid::new_v4());
//! let store = InMemoryStore::builder()
//!     .assistant("asst_123", org)
//!     .slug("acme", org)
//!     .credential(org, Credential::vapi_hmac("whsec-acme").unwrap())
//!     .build();
//! let store = CachedStore::new(store).max_entries(1_000).ttl(Duration::from_secs(30));
//!
//! assert_eq!(store.org_for(&TenantKey::Assistant("asst_123".into())).await.unwrap(), Some(org));
//! assert_eq!(store.org_for(&TenantKey::Assistant("asst_999".into())).await.unwrap(), None);
//! assert_eq!(store.credentials(Some(&org)).await.unwrap().len(), 1);
//! # }
//! ```

mod cached;
mod memory;

use std::error::Error as StdError;
use std::sync::Arc;

use crate::org::{OrgId, TenantKey};

pub use self::cached::CachedStore;
pub use self::memory::{InMemoryStore, InMemoryStoreBuilder};

/// Maps a [`TenantKey`] to the organisation that owns it.
///
/// Async and object-safe: use it as `Arc<dyn AssistantOrgStore>` or as a concrete type. Each
/// key kind is its own namespace: an assistant id and a slug with the same text are different
/// keys.
#[async_trait::async_trait]
pub trait AssistantOrgStore: Send + Sync + 'static {
    /// The organisation that owns `key`, or `None` if no organisation does.
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError>;
}

#[async_trait::async_trait]
impl<S: AssistantOrgStore + ?Sized> AssistantOrgStore for Arc<S> {
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        (**self).org_for(key).await
    }
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
