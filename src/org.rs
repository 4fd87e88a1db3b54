//! Organisations and the tenant keys that identify them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of an organisation (a tenant of the application).
///
/// A UUID, so it can be handed to Postgres row-level security policies as
/// `current_setting('app.org_id')::uuid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(Uuid);

impl OrgId {
    /// Wraps a UUID.
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for OrgId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<OrgId> for Uuid {
    fn from(id: OrgId) -> Self {
        id.0
    }
}

impl FromStr for OrgId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.0)
    }
}

/// A value that identifies the organisation a request belongs to.
///
/// The kind matters: an assistant id and a phone number id live in different namespaces, so a
/// store maps each kind separately.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TenantKey {
    /// A saved Vapi assistant's id.
    Assistant(Arc<str>),
    /// A Vapi squad's id.
    Squad(Arc<str>),
    /// A Vapi phone number's id.
    PhoneNumber(Arc<str>),
    /// Vapi's own organisation id, for tenants that bring their own Vapi account.
    VapiOrg(Arc<str>),
    /// A tenant slug the organisation put in its server URL (path, query or header).
    Slug(Arc<str>),
}

impl TenantKey {
    /// The key's kind as a short, stable name: `assistant`, `squad`, `phone-number`,
    /// `vapi-org` or `slug`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Assistant(_) => "assistant",
            Self::Squad(_) => "squad",
            Self::PhoneNumber(_) => "phone-number",
            Self::VapiOrg(_) => "vapi-org",
            Self::Slug(_) => "slug",
        }
    }

    /// The key's value.
    pub fn value(&self) -> &str {
        match self {
            Self::Assistant(v)
            | Self::Squad(v)
            | Self::PhoneNumber(v)
            | Self::VapiOrg(v)
            | Self::Slug(v) => v,
        }
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

/// Where in the request a [`TenantKey`] was found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// In the JSON body, at this dotted path (e.g. `message.call.assistantId`).
    Payload(&'static str),
    /// In a segment of the request path.
    Path,
    /// In the named query parameter.
    Query(Arc<str>),
    /// In the named header.
    Header(http::HeaderName),
    /// Found by an application-supplied locator.
    Custom,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Payload(path) => write!(f, "payload:{path}"),
            Self::Path => f.write_str("path"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Custom => f.write_str("custom"),
        }
    }
}

/// The organisation a request belongs to, inserted into the request extensions by
/// [`OrgResolveLayer`](crate::resolve::OrgResolveLayer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrgContext {
    /// The organisation.
    pub org_id: OrgId,
    /// The key that identified it.
    pub key: TenantKey,
    /// Where the key was found.
    pub source: KeySource,
}

impl OrgContext {
    /// Creates a context.
    pub fn new(org_id: OrgId, key: TenantKey, source: KeySource) -> Self {
        Self {
            org_id,
            key,
            source,
        }
    }
}
