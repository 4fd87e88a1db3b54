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

/// The kinds of [`TenantKey`], each its own namespace.
///
/// The one mapping between kinds and their names: stores, configuration and logs all use
/// [`as_str`](Self::as_str) and [`FromStr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A saved Vapi assistant's id: `assistant`.
    Assistant,
    /// A Vapi squad's id: `squad`.
    Squad,
    /// A Vapi phone number's id: `phone-number`.
    PhoneNumber,
    /// A Vapi workflow's id: `workflow`.
    Workflow,
    /// Vapi's own organisation id: `vapi-org`.
    VapiOrg,
    /// A tenant slug from the server URL: `slug`.
    Slug,
}

impl KeyKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Assistant,
        Self::Squad,
        Self::PhoneNumber,
        Self::Workflow,
        Self::VapiOrg,
        Self::Slug,
    ];

    /// The kind's short, stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Assistant => "assistant",
            Self::Squad => "squad",
            Self::PhoneNumber => "phone-number",
            Self::Workflow => "workflow",
            Self::VapiOrg => "vapi-org",
            Self::Slug => "slug",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`KeyKind::as_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant key kind")]
pub struct UnknownKeyKind;

impl FromStr for KeyKind {
    type Err = UnknownKeyKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(UnknownKeyKind)
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
    /// A Vapi workflow's id.
    Workflow(Arc<str>),
    /// Vapi's own organisation id, for tenants that bring their own Vapi account.
    VapiOrg(Arc<str>),
    /// A tenant slug the organisation put in its server URL (path, query or header).
    Slug(Arc<str>),
}

impl TenantKey {
    /// A key of `kind` with `value`.
    pub fn new(kind: KeyKind, value: impl Into<Arc<str>>) -> Self {
        let value = value.into();
        match kind {
            KeyKind::Assistant => Self::Assistant(value),
            KeyKind::Squad => Self::Squad(value),
            KeyKind::PhoneNumber => Self::PhoneNumber(value),
            KeyKind::Workflow => Self::Workflow(value),
            KeyKind::VapiOrg => Self::VapiOrg(value),
            KeyKind::Slug => Self::Slug(value),
        }
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Assistant(_) => KeyKind::Assistant,
            Self::Squad(_) => KeyKind::Squad,
            Self::PhoneNumber(_) => KeyKind::PhoneNumber,
            Self::Workflow(_) => KeyKind::Workflow,
            Self::VapiOrg(_) => KeyKind::VapiOrg,
            Self::Slug(_) => KeyKind::Slug,
        }
    }

    /// The key's value.
    pub fn value(&self) -> &str {
        match self {
            Self::Assistant(v)
            | Self::Squad(v)
            | Self::PhoneNumber(v)
            | Self::Workflow(v)
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
