//! Where a request names its tenant.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;

use super::probe::probe;
use crate::error::ProbeError;
use crate::org::{KeySource, TenantKey};

type CustomFn = dyn Fn(&Parts, &[u8]) -> Option<TenantKey> + Send + Sync;

/// One place to look for a request's [`TenantKey`].
///
/// [`OrgResolveLayer`](super::OrgResolveLayer) tries its locators in order; the first one that
/// yields a key decides (see the [module docs](super) for what "decides" means for unknown
/// keys). Empty values count as absent everywhere.
///
/// | locator | key | [`KeySource`] |
/// |---|---|---|
/// | [`payload`](Self::payload) | assistant / squad / phone number id, then Vapi org id | [`KeySource::Payload`] with the dotted path |
/// | [`path_after`](Self::path_after), [`path_segment`](Self::path_segment) | [`TenantKey::Slug`] | [`KeySource::Path`] |
/// | [`query`](Self::query) | [`TenantKey::Slug`] | [`KeySource::Query`] with the parameter name |
/// | [`header`](Self::header) | [`TenantKey::Slug`] | [`KeySource::Header`] with the header name |
/// | [`custom`](Self::custom) | whatever the closure returns | [`KeySource::Custom`] |
#[derive(Clone)]
pub struct TenantLocator(Locate);

#[derive(Clone)]
enum Locate {
    Payload,
    PathAfter(Arc<str>),
    PathSegment(usize),
    Query(Arc<str>),
    Header(HeaderName),
    Custom(Arc<CustomFn>),
}

impl TenantLocator {
    /// The JSON body, in this order (the default locator):
    ///
    /// 1. `message.call.assistantId`, `message.assistant.id` → [`TenantKey::Assistant`]
    /// 2. `message.call.squadId` → [`TenantKey::Squad`]
    /// 3. `message.call.phoneNumberId`, `message.phoneNumber.id` → [`TenantKey::PhoneNumber`]
    /// 4. text chats and sessions (no call): `message.chat.assistantId`,
    ///    `message.chat.squadId`, `message.session.assistantId`, `message.session.squadId` →
    ///    [`TenantKey::Assistant`] / [`TenantKey::Squad`]
    /// 5. `message.call.workflowId` → [`TenantKey::Workflow`]
    /// 6. top-level `assistantId`, `call.assistantId`, `call.metadata.assistantId` (flat payloads
    ///    from proxies and custom senders) → [`TenantKey::Assistant`]
    /// 7. `message.call.orgId`, `message.assistant.orgId`, `message.phoneNumber.orgId` →
    ///    [`TenantKey::VapiOrg`], which counts only if the store maps it.
    ///
    /// Every `ServerMessage*` schema of Vapi's OpenAPI carries `call`, `assistant`,
    /// `phoneNumber` and `chat` (the `session.*` messages also `session`), so the order is: the
    /// most specific saved entity first (the assistant answering), then the squad and the
    /// number it runs on, then the chat/session ids of messages without a call, then the
    /// workflow.
    ///
    /// `null` and `""` count as absent. The body is read by [`probe`](super::probe): a body that
    /// is not JSON, nests too deeply or repeats a tenant field is refused (400) as soon as this
    /// locator is reached.
    pub fn payload() -> Self {
        Self(Locate::Payload)
    }

    /// The path segment right after `prefix`: `path_after("/webhooks/vapi/")` reads `acme` from
    /// `/webhooks/vapi/acme` and from `/webhooks/vapi/acme/end-of-call`.
    ///
    /// The segment is percent-decoded; one that is not UTF-8 counts as absent. The path is the
    /// one the layer sees: under axum's `Router::nest` that is the path with the nest prefix
    /// removed.
    pub fn path_after(prefix: impl Into<Arc<str>>) -> Self {
        Self(Locate::PathAfter(prefix.into()))
    }

    /// The path segment at `index`, counting from 0 and skipping empty segments:
    /// `path_segment(2)` reads `acme` from `/webhooks/vapi/acme`. Percent-decoded like
    /// [`path_after`](Self::path_after).
    pub fn path_segment(index: usize) -> Self {
        Self(Locate::PathSegment(index))
    }

    /// The query parameter `name` (form-decoded; the first one if repeated).
    pub fn query(name: impl Into<Arc<str>>) -> Self {
        Self(Locate::Query(name.into()))
    }

    /// The header `name` (the first one if repeated; a value that is not visible ASCII counts as
    /// absent).
    pub fn header(name: HeaderName) -> Self {
        Self(Locate::Header(name))
    }

    /// An application-supplied locator: gets the request head and the buffered body.
    ///
    /// A [`TenantKey::VapiOrg`] it returns counts only if the store maps it, as for
    /// [`payload`](Self::payload).
    pub fn custom<F>(locate: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> Option<TenantKey> + Send + Sync + 'static,
    {
        Self(Locate::Custom(Arc::new(locate)))
    }

    /// What this locator finds in a request: a key that decides, and a Vapi org id that counts
    /// only if the store maps it.
    pub(super) fn locate(&self, parts: &Parts, body: &[u8]) -> Result<Located, ProbeError> {
        if let Locate::Payload = self.0 {
            let keys = probe(body)?;
            return Ok(Located {
                decisive: keys.primary(),
                weak: keys.vapi_org(),
            });
        }
        Ok(match self.locate_in_head(parts, body) {
            Some(found @ (TenantKey::VapiOrg(_), _)) => Located {
                decisive: None,
                weak: Some(found),
            },
            found => Located {
                decisive: found,
                weak: None,
            },
        })
    }

    /// Looks in the request head (every locator but [`payload`](Self::payload)).
    fn locate_in_head(&self, parts: &Parts, body: &[u8]) -> Option<(TenantKey, KeySource)> {
        let (key, source) = match &self.0 {
            Locate::Payload => return None,
            Locate::PathAfter(prefix) => {
                let rest = parts.uri.path().strip_prefix(&**prefix)?;
                let segment = rest.split('/').next()?;
                (slug(decode_segment(segment)?), KeySource::Path)
            }
            Locate::PathSegment(index) => {
                let segment = parts
                    .uri
                    .path()
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .nth(*index)?;
                (slug(decode_segment(segment)?), KeySource::Path)
            }
            Locate::Query(name) => {
                let query = parts.uri.query()?;
                let value = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == &**name)
                    .map(|(_, v)| v)?;
                (slug(value), KeySource::Query(name.clone()))
            }
            Locate::Header(name) => {
                let value = parts.headers.get(name)?.to_str().ok()?;
                (slug(Cow::Borrowed(value)), KeySource::Header(name.clone()))
            }
            Locate::Custom(locate) => (locate(parts, body)?, KeySource::Custom),
        };
        (!key.value().is_empty()).then_some((key, source))
    }
}

/// What one locator found.
pub(super) struct Located {
    /// A key that decides: the store's answer, known or not, is final.
    pub(super) decisive: Option<(TenantKey, KeySource)>,
    /// A Vapi org id: it decides only if the store maps it.
    pub(super) weak: Option<(TenantKey, KeySource)>,
}

fn decode_segment(segment: &str) -> Option<Cow<'_, str>> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
}

fn slug(value: Cow<'_, str>) -> TenantKey {
    TenantKey::Slug(Arc::from(value.as_ref()))
}

impl Default for TenantLocator {
    /// [`TenantLocator::payload`].
    fn default() -> Self {
        Self::payload()
    }
}

impl fmt::Debug for TenantLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Locate::Payload => f.write_str("TenantLocator::payload()"),
            Locate::PathAfter(prefix) => write!(f, "TenantLocator::path_after({prefix:?})"),
            Locate::PathSegment(index) => write!(f, "TenantLocator::path_segment({index})"),
            Locate::Query(name) => write!(f, "TenantLocator::query({name:?})"),
            Locate::Header(name) => write!(f, "TenantLocator::header({name:?})"),
            Locate::Custom(_) => f.write_str("TenantLocator::custom(..)"),
        }
    }
}
