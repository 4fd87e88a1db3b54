//! Mapping tenant keys to organisations, and organisations to their credentials.
//!
//! The two traits the layers ask, side by side with their errors and implementations:
//!
//! * [`AssistantOrgStore`] answers "which organisation owns this assistant id / squad id / phone
//!   number id / workflow id / Vapi org id / URL slug?" for
//!   [`OrgResolveLayer`](crate::OrgResolveLayer); a failing backend is a [`StoreError`];
//! * [`SecretProvider`] answers "what are this organisation's active [`Credentials`]?" for
//!   [`SignatureVerifyLayer`](crate::SignatureVerifyLayer); a failing backend is a
//!   [`SecretError`]. [`SingleTenant`] is the explicit single-account provider.
//!
//! The crate ships:
//!
//! * [`InMemoryStore`]: fixed maps built once with a builder; it is also a
//!   [`SecretProvider`] holding each organisation's credentials, so one
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
//! use vapi_webhooks::store::SecretProvider;
//! use vapi_webhooks::{AssistantOrgStore, CachedStore, Credential, InMemoryStore, OrgId, TenantKey};
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

use std::sync::Arc;

use crate::credential::Credential;
use crate::org::{OrgId, TenantKey};

pub use self::cached::CachedStore;
pub use self::memory::{InMemoryStore, InMemoryStoreBuilder};
pub use crate::error::{SecretError, StoreError};

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

/// An organisation's credentials, cheap to clone.
pub type Credentials = Arc<[Credential]>;

/// Looks up the active credentials of an organisation.
///
/// Async and object-safe: use it as `Arc<dyn SecretProvider>` or as a concrete type.
#[async_trait::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    /// The credentials of `org`; `None` when the request carries no
    /// [`OrgContext`](crate::OrgContext) (single-tenant use). A provider that needs an org
    /// answers [`SecretError::OrgRequired`] to `None`.
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError>;
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
