//! Credentials: what an organisation's requests are checked against.
//!
//! Kinds mirror what Vapi can send: [`HmacCredential`] (Vapi's HMAC credential, with presets for
//! Vapi's default, the `x-vapi-signature` scheme and Standard Webhooks), a shared secret in a
//! header (legacy `X-Vapi-Secret`) and a bearer token. Each credential may expire
//! ([`Credential::not_after`]): several credentials per org is how rotation works.
//!
//! Secrets are held in [`Secret`], which never prints and is zeroed on drop. An empty secret is
//! refused when the credential is built.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderName;
//! use vapi_webhooks::credential::{Credential, HmacAlgorithm, HmacCredential, SignatureEncoding};
//!
//! // Vapi's default HMAC credential: x-signature / x-timestamp, "{timestamp}.{body}", hex sha256.
//! let current = Credential::vapi_hmac("new-secret").unwrap();
//! // The one being rotated out, valid for another day.
//! let old = Credential::vapi_hmac("old-secret")
//!     .unwrap()
//!     .not_after(SystemTime::now() + Duration::from_secs(86_400));
//! // A customised HMAC: GitHub-style body-only sha256 with a prefix.
//! let github = Credential::hmac(
//!     HmacCredential::new(HmacAlgorithm::Sha256, "It's a Secret to Everybody")
//!         .unwrap()
//!         .signature_header(HeaderName::from_static("x-hub-signature-256"))
//!         .timestamp_header(None)
//!         .payload_format("{body}")
//!         .unwrap()
//!         .encoding(SignatureEncoding::Hex)
//!         .prefix("sha256="),
//! )
//! .unwrap();
//! assert!(format!("{current:?} {old:?} {github:?}").find("secret").is_none());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderName;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zeroize::Zeroizing;

mod config;

pub use self::config::{CredentialConfig, KindName, SecretString};

/// Why a credential could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The secret is empty.
    #[error("the secret is empty")]
    EmptySecret,
    /// The secret was declared base64 (or `whsec_`) but is not valid base64.
    #[error("the secret is not valid base64")]
    SecretNotBase64,
    /// The payload format has an unknown `{placeholder}` or an unclosed brace.
    #[error("invalid payload format: {0}")]
    PayloadFormat(String),
    /// The payload format uses `{timestamp}` but the credential has no timestamp header.
    #[error("the payload format uses {{timestamp}} but no timestamp header is set")]
    TimestampWithoutHeader,
    /// The credential has a timestamp header but its payload format does not sign
    /// `{timestamp}`: the window would be checked on a value anyone can rewrite.
    #[error("a timestamp header is set but the payload format does not sign {{timestamp}}")]
    TimestampNotSigned,
    /// A header name is not a valid HTTP header name.
    #[error("invalid header name `{0}`")]
    HeaderName(String),
    /// A field that the kind needs is missing, or one that it does not use is set.
    #[error("{0}")]
    Field(String),
}

/// Secret bytes: never printed, zeroed on drop, never empty.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<Vec<u8>>>);

impl Secret {
    /// Wraps secret bytes; an empty secret is refused.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, CredentialError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Self(Arc::new(Zeroizing::new(bytes))))
    }

    /// Decodes a base64 secret.
    pub fn from_base64(encoded: &str) -> Result<Self, CredentialError> {
        if encoded.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| CredentialError::SecretNotBase64)?;
        Self::new(bytes)
    }

    /// The secret bytes. Handle with care.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The hash behind an HMAC credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (legacy senders only).
    Sha1,
    /// HMAC-SHA256, Vapi's default.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hex, Vapi's default.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// One piece of an HMAC payload template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PayloadPart {
    /// Text copied as it is.
    Literal(String),
    /// `{body}`: the raw body bytes as received.
    Body,
    /// `{timestamp}`: the timestamp header's value as received.
    Timestamp,
    /// `{method}`: the request method, e.g. `POST`.
    Method,
    /// `{url}`: the request URL as the sender addressed it.
    Url,
    /// `{svix-id}`: the message id header's value.
    MessageId,
}

/// A parsed payload template such as `{timestamp}.{body}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadFormat {
    parts: Vec<PayloadPart>,
}

impl PayloadFormat {
    /// Parses a template with the placeholders `{body}` `{timestamp}` `{method}` `{url}`
    /// `{svix-id}`; any other `{…}` is an error.
    pub fn parse(template: &str) -> Result<Self, CredentialError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                CredentialError::PayloadFormat(format!("unclosed `{{` in `{template}`"))
            })?;
            let part = match &after[..close] {
                "body" => PayloadPart::Body,
                "timestamp" => PayloadPart::Timestamp,
                "method" => PayloadPart::Method,
                "url" => PayloadPart::Url,
                "svix-id" => PayloadPart::MessageId,
                other => {
                    return Err(CredentialError::PayloadFormat(format!(
                        "unknown placeholder `{{{other}}}`"
                    )));
                }
            };
            if !literal.is_empty() {
                parts.push(PayloadPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(PayloadPart::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The parts, in order.
    pub(crate) fn parts(&self) -> &[PayloadPart] {
        &self.parts
    }

    /// Whether the template uses `part`.
    pub(crate) fn uses(&self, part: &PayloadPart) -> bool {
        self.parts.contains(part)
    }
}

/// Vapi's HMAC credential: a keyed hash over a payload built from the raw body and headers.
///
/// [`HmacCredential::new`] starts from Vapi's defaults: `x-signature`, `x-timestamp`,
/// `{timestamp}.{body}`, hex, no prefix, message id in `svix-id`.
#[derive(Clone)]
pub struct HmacCredential {
    pub(crate) algorithm: HmacAlgorithm,
    pub(crate) secret: Secret,
    pub(crate) signature_header: HeaderName,
    pub(crate) timestamp_header: Option<HeaderName>,
    pub(crate) message_id_header: HeaderName,
    pub(crate) payload_format: PayloadFormat,
    pub(crate) encoding: SignatureEncoding,
    pub(crate) prefix: String,
    /// The MAC keyed once at build time and cloned per request: a credential is built once and
    /// used for many requests, so the key schedule is not redone each time.
    keyed: Arc<KeyedMac>,
}

/// An HMAC already keyed with a credential's secret.
#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl KeyedMac {
    fn new(algorithm: HmacAlgorithm, key: &[u8]) -> Self {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        const ANY_LENGTH: &str = "HMAC accepts keys of any length";
        match algorithm {
            HmacAlgorithm::Sha1 => Self::Sha1(Mac::new_from_slice(key).expect(ANY_LENGTH)),
            HmacAlgorithm::Sha256 => Self::Sha256(Mac::new_from_slice(key).expect(ANY_LENGTH)),
            HmacAlgorithm::Sha512 => Self::Sha512(Mac::new_from_slice(key).expect(ANY_LENGTH)),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(mac) => mac.update(data),
            Self::Sha256(mac) => mac.update(data),
            Self::Sha512(mac) => mac.update(data),
        }
    }

    fn finalize(self) -> MacBytes {
        fn copy(bytes: &[u8]) -> MacBytes {
            let mut out = MacBytes {
                bytes: [0; 64],
                len: bytes.len(),
            };
            out.bytes[..bytes.len()].copy_from_slice(bytes);
            out
        }
        match self {
            Self::Sha1(mac) => copy(&mac.finalize().into_bytes()),
            Self::Sha256(mac) => copy(&mac.finalize().into_bytes()),
            Self::Sha512(mac) => copy(&mac.finalize().into_bytes()),
        }
    }
}

/// A MAC of up to 64 bytes (SHA-512), on the stack: no allocation per request.
#[derive(Clone, Copy)]
pub(crate) struct MacBytes {
    bytes: [u8; 64],
    len: usize,
}

impl std::ops::Deref for MacBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The request values an HMAC payload template may refer to, borrowed from the request.
///
/// A value is `None` when the request does not carry it; a template that needs it then yields
/// no MAC at all.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PayloadInputs<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) timestamp: Option<&'a [u8]>,
    pub(crate) method: &'a [u8],
    pub(crate) url: Option<&'a [u8]>,
    pub(crate) message_id: Option<&'a [u8]>,
}

impl HmacAlgorithm {
    /// The MAC length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl HmacCredential {
    /// A credential with Vapi's defaults and this raw secret.
    pub fn new(
        algorithm: HmacAlgorithm,
        secret: impl Into<Vec<u8>>,
    ) -> Result<Self, CredentialError> {
        Ok(Self::with_secret(algorithm, Secret::new(secret)?))
    }

    /// A credential with Vapi's defaults and an already wrapped secret (e.g. from
    /// [`Secret::from_base64`] for `secretIsBase64`).
    pub fn with_secret(algorithm: HmacAlgorithm, secret: Secret) -> Self {
        Self {
            algorithm,
            keyed: Arc::new(KeyedMac::new(algorithm, secret.expose())),
            secret,
            signature_header: HeaderName::from_static("x-signature"),
            timestamp_header: Some(HeaderName::from_static("x-timestamp")),
            message_id_header: HeaderName::from_static("svix-id"),
            payload_format: PayloadFormat {
                parts: vec![
                    PayloadPart::Timestamp,
                    PayloadPart::Literal(".".into()),
                    PayloadPart::Body,
                ],
            },
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
        }
    }

    /// The header carrying the signature (one or several, whitespace-separated).
    pub fn signature_header(mut self, name: HeaderName) -> Self {
        self.signature_header = name;
        self
    }

    /// The header carrying the timestamp, or `None` for a credential without one (then the
    /// payload format must not use `{timestamp}` and no window is checked).
    pub fn timestamp_header(mut self, name: Option<HeaderName>) -> Self {
        self.timestamp_header = name;
        self
    }

    /// The header whose value `{svix-id}` stands for (Vapi's `messageIdHeader`).
    pub fn message_id_header(mut self, name: HeaderName) -> Self {
        self.message_id_header = name;
        self
    }

    /// The payload template, e.g. `{timestamp}.{body}` (see [`PayloadFormat::parse`]).
    pub fn payload_format(mut self, template: &str) -> Result<Self, CredentialError> {
        self.payload_format = PayloadFormat::parse(template)?;
        Ok(self)
    }

    /// How the signature is encoded.
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A prefix before each signature, e.g. `sha256=` or Standard Webhooks' `v1,`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HmacAlgorithm {
        self.algorithm
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The signature header.
    pub fn signature_header_name(&self) -> &HeaderName {
        &self.signature_header
    }

    /// The timestamp header, if the credential uses one.
    pub fn timestamp_header_name(&self) -> Option<&HeaderName> {
        self.timestamp_header.as_ref()
    }

    /// The message id header.
    pub fn message_id_header_name(&self) -> &HeaderName {
        &self.message_id_header
    }

    /// The payload template.
    pub fn format(&self) -> &PayloadFormat {
        &self.payload_format
    }

    /// The signature encoding.
    pub fn signature_encoding(&self) -> SignatureEncoding {
        self.encoding
    }

    /// The signature prefix (may be empty).
    pub fn signature_prefix(&self) -> &str {
        &self.prefix
    }

    /// Feeds `sink` the payload the template builds from `inputs`, part by part (the body is
    /// never copied): the one walk behind both the MAC and the replay key. `None` when the
    /// template needs a value the request lacks (then nothing is fed).
    pub(crate) fn signed_parts<'a>(
        &'a self,
        inputs: &PayloadInputs<'a>,
        mut sink: impl FnMut(&[u8]),
    ) -> Option<()> {
        let parts = self.payload_format.parts();
        let bytes = |part: &'a PayloadPart| -> Option<&'a [u8]> {
            Some(match part {
                PayloadPart::Literal(text) => text.as_bytes(),
                PayloadPart::Body => inputs.body,
                PayloadPart::Timestamp => inputs.timestamp?,
                PayloadPart::Method => inputs.method,
                PayloadPart::Url => inputs.url?,
                PayloadPart::MessageId => inputs.message_id?,
            })
        };
        if parts.iter().any(|part| bytes(part).is_none()) {
            return None;
        }
        parts.iter().filter_map(bytes).for_each(&mut sink);
        Some(())
    }

    /// The raw MAC of the payload the template builds from `inputs`, or `None` when the
    /// template needs a value the request lacks.
    pub(crate) fn mac(&self, inputs: &PayloadInputs<'_>) -> Option<MacBytes> {
        let mut mac = KeyedMac::clone(&self.keyed);
        self.signed_parts(inputs, |bytes| mac.update(bytes))?;
        Some(mac.finalize())
    }

    pub(crate) fn check(self) -> Result<Self, CredentialError> {
        let signed = self.payload_format.uses(&PayloadPart::Timestamp);
        match (&self.timestamp_header, signed) {
            (None, true) => Err(CredentialError::TimestampWithoutHeader),
            (Some(_), false) => Err(CredentialError::TimestampNotSigned),
            _ => Ok(self),
        }
    }
}

impl fmt::Debug for HmacCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacCredential")
            .field("algorithm", &self.algorithm)
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("payload_format", &self.payload_format)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A shared secret sent as a header value, compared in constant time.
#[derive(Clone)]
pub struct HeaderSecret {
    pub(crate) header: HeaderName,
    pub(crate) secret: Secret,
    /// SHA-256 of the secret: requests are compared digest to digest, so the comparison takes
    /// the same time whatever the lengths.
    digest: [u8; 32],
}

impl HeaderSecret {
    fn new(header: HeaderName, secret: Secret) -> Self {
        let digest = sha2::Sha256::digest(secret.expose()).into();
        Self {
            header,
            secret,
            digest,
        }
    }

    /// Whether `presented` is the secret, in constant time.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = sha2::Sha256::digest(presented).into();
        subtle::ConstantTimeEq::ct_eq(&presented[..], &self.digest[..]).into()
    }

    /// The header.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl fmt::Debug for HeaderSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderSecret")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The kinds of credential.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A keyed hash over the raw body (and, per its template, timestamp, method, URL, id).
    Hmac(HmacCredential),
    /// The secret itself in a header, e.g. `X-Vapi-Secret`.
    SecretHeader(HeaderSecret),
    /// `Bearer <token>` in a header, `Authorization` by default.
    Bearer(HeaderSecret),
}

/// One credential of an organisation, optionally expiring.
#[derive(Clone, Debug)]
pub struct Credential {
    pub(crate) kind: CredentialKind,
    pub(crate) not_after: Option<SystemTime>,
}

impl Credential {
    /// An HMAC credential, checked: a timestamp header must be signed (`{timestamp}` in the
    /// payload format), and `{timestamp}` needs a timestamp header.
    pub fn hmac(hmac: HmacCredential) -> Result<Self, CredentialError> {
        Ok(Self {
            kind: CredentialKind::Hmac(hmac.check()?),
            not_after: None,
        })
    }

    /// Vapi's default HMAC credential: `x-signature` / `x-timestamp`, `{timestamp}.{body}`,
    /// hex HMAC-SHA256.
    pub fn vapi_hmac(secret: impl Into<Vec<u8>>) -> Result<Self, CredentialError> {
        Self::hmac(HmacCredential::new(HmacAlgorithm::Sha256, secret)?)
    }

    /// The widely documented `x-vapi-signature` / `x-vapi-timestamp` scheme:
    /// `{timestamp}.{body}`, hex HMAC-SHA256.
    pub fn vapi_signature(secret: impl Into<Vec<u8>>) -> Result<Self, CredentialError> {
        Self::hmac(
            HmacCredential::new(HmacAlgorithm::Sha256, secret)?
                .signature_header(HeaderName::from_static("x-vapi-signature"))
                .timestamp_header(Some(HeaderName::from_static("x-vapi-timestamp"))),
        )
    }

    /// Standard Webhooks: `webhook-id` / `webhook-timestamp` / `webhook-signature: v1,<base64> …`
    /// over `{id}.{timestamp}.{body}`, with a `whsec_`-prefixed base64 secret (the prefix is
    /// optional).
    pub fn standard_webhooks(secret: &str) -> Result<Self, CredentialError> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        Self::hmac(
            HmacCredential::with_secret(HmacAlgorithm::Sha256, Secret::from_base64(encoded)?)
                .signature_header(HeaderName::from_static("webhook-signature"))
                .timestamp_header(Some(HeaderName::from_static("webhook-timestamp")))
                .message_id_header(HeaderName::from_static("webhook-id"))
                .payload_format("{svix-id}.{timestamp}.{body}")?
                .encoding(SignatureEncoding::Base64)
                .prefix("v1,"),
        )
    }

    /// A shared secret in `header`, e.g. `x-vapi-secret`.
    pub fn secret_header(
        header: HeaderName,
        secret: impl Into<Vec<u8>>,
    ) -> Result<Self, CredentialError> {
        Ok(Self {
            kind: CredentialKind::SecretHeader(HeaderSecret::new(header, Secret::new(secret)?)),
            not_after: None,
        })
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: impl Into<Vec<u8>>) -> Result<Self, CredentialError> {
        Self::bearer_in(http::header::AUTHORIZATION, token)
    }

    /// `<header>: Bearer <token>`.
    pub fn bearer_in(
        header: HeaderName,
        token: impl Into<Vec<u8>>,
    ) -> Result<Self, CredentialError> {
        Ok(Self {
            kind: CredentialKind::Bearer(HeaderSecret::new(header, Secret::new(token)?)),
            not_after: None,
        })
    }

    /// Makes the credential stop verifying anything after `time` (rotation).
    pub fn not_after(mut self, time: SystemTime) -> Self {
        self.not_after = Some(time);
        self
    }

    /// The expiry, if any.
    pub fn expires(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// Whether the credential is still valid at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.not_after.is_none_or(|end| now <= end)
    }

    /// The kind and its parameters.
    pub fn kind(&self) -> &CredentialKind {
        &self.kind
    }
}
