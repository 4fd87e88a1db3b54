use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::credential::Credential;
use crate::org::{OrgId, TenantKey};
use crate::store::{AssistantOrgStore, Credentials, SecretError, SecretProvider, StoreError};

/// Fixed tenant keys and credentials held in memory, built once with
/// [`InMemoryStore::builder`].
///
/// It is both the [`AssistantOrgStore`] and the [`SecretProvider`] of the organisations it
/// holds: an organisation without credentials gets an empty list (which the verify layer
/// answers with 401), and a request without an organisation gets
/// [`SecretError::OrgRequired`]. Credentials are returned as added, expired ones included:
/// `SignatureVerifyLayer` uses only those active by its own (injectable) clock. Cloning is cheap
/// (one `Arc`).
#[derive(Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<TenantKey, OrgId>,
    credentials: HashMap<OrgId, Credentials>,
}

impl InMemoryStore {
    /// An empty builder.
    pub fn builder() -> InMemoryStoreBuilder {
        InMemoryStoreBuilder::default()
    }
}

#[async_trait::async_trait]
impl AssistantOrgStore for InMemoryStore {
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        Ok(self.inner.keys.get(key).copied())
    }
}

#[async_trait::async_trait]
impl SecretProvider for InMemoryStore {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        let org = org.ok_or(SecretError::OrgRequired)?;
        Ok(self
            .inner
            .credentials
            .get(org)
            .cloned()
            .unwrap_or_else(|| Arc::from([])))
    }
}

// Counts only: keys name tenants and credentials hold secrets.
impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("keys", &self.inner.keys.len())
            .field("orgs_with_credentials", &self.inner.credentials.len())
            .finish()
    }
}

/// Builds an [`InMemoryStore`]. A key added twice belongs to the organisation added last.
#[derive(Default)]
pub struct InMemoryStoreBuilder {
    keys: HashMap<TenantKey, OrgId>,
    credentials: HashMap<OrgId, Vec<Credential>>,
}

impl InMemoryStoreBuilder {
    /// Maps any [`TenantKey`] to `org`.
    pub fn key(mut self, key: TenantKey, org: OrgId) -> Self {
        self.keys.insert(key, org);
        self
    }

    /// Maps an assistant id to `org`.
    pub fn assistant(self, id: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::Assistant(id.into()), org)
    }

    /// Maps a squad id to `org`.
    pub fn squad(self, id: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::Squad(id.into()), org)
    }

    /// Maps a workflow id to `org`.
    pub fn workflow(self, id: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::Workflow(id.into()), org)
    }

    /// Maps a phone number id to `org`.
    pub fn phone_number(self, id: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::PhoneNumber(id.into()), org)
    }

    /// Maps a Vapi org id (a tenant's own Vapi account) to `org`.
    pub fn vapi_org(self, id: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::VapiOrg(id.into()), org)
    }

    /// Maps a URL tenant slug (path, query or header) to `org`.
    pub fn slug(self, slug: impl Into<Arc<str>>, org: OrgId) -> Self {
        self.key(TenantKey::Slug(slug.into()), org)
    }

    /// Adds a credential of `org` (several make a rotation: any one verifies).
    pub fn credential(mut self, org: OrgId, credential: Credential) -> Self {
        self.credentials.entry(org).or_default().push(credential);
        self
    }

    /// Builds the store.
    pub fn build(self) -> InMemoryStore {
        InMemoryStore {
            inner: Arc::new(Inner {
                keys: self.keys,
                credentials: self
                    .credentials
                    .into_iter()
                    .map(|(org, creds)| (org, Credentials::from(creds)))
                    .collect(),
            }),
        }
    }
}

impl fmt::Debug for InMemoryStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryStoreBuilder")
            .field("keys", &self.keys.len())
            .field("orgs_with_credentials", &self.credentials.len())
            .finish()
    }
}
