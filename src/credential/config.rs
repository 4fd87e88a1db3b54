//! The file form of a credential: what a tenants file or the Postgres store holds.

use std::fmt;

use http::HeaderName;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    Credential, CredentialError, HmacAlgorithm, HmacCredential, Secret, SignatureEncoding,
};

/// The name of a credential kind in configuration files: `hmac`, `secret-header`, `bearer`,
/// `standard-webhooks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindName {
    /// [`CredentialKind::Hmac`](super::CredentialKind::Hmac).
    Hmac,
    /// [`CredentialKind::SecretHeader`](super::CredentialKind::SecretHeader).
    SecretHeader,
    /// [`CredentialKind::Bearer`](super::CredentialKind::Bearer).
    Bearer,
    /// [`Credential::standard_webhooks`](super::Credential::standard_webhooks).
    StandardWebhooks,
}

/// A secret string from configuration: refused when empty, never printed or serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a non-empty string.
    pub fn new(secret: impl Into<String>) -> Result<Self, CredentialError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Self(Zeroizing::new(secret)))
    }

    /// The secret text. Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

/// Accepts a string only, and never quotes what it got instead: a secret written as a number
/// must not be printed in the error that refuses it.
struct SecretVisitor;

macro_rules! refuse_without_value {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Err(E::custom("invalid type: expected a string secret"))
        })*
    };
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = SecretString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string secret")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        SecretString::new(v).map_err(E::custom)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        SecretString::new(v).map_err(E::custom)
    }

    refuse_without_value!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_char(char),
        visit_bytes(&[u8]),
    );

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom("invalid type: expected a string secret"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(serde::de::Error::custom(
            "invalid type: expected a string secret",
        ))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(serde::de::Error::custom(
            "invalid type: expected a string secret",
        ))
    }
}

/// A credential as written in a configuration file (the example server's tenants file) or
/// stored by the Postgres backend. [`CredentialConfig::build`] turns it into a [`Credential`].
///
/// Serialising it leaves the secret out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// `hmac`, `secret-header`, `bearer` or `standard-webhooks`.
    pub kind: KindName,
    /// The secret (the `whsec_…` string for Standard Webhooks).
    #[serde(skip_serializing)]
    pub secret: SecretString,
    /// hmac: `sha1`, `sha256` (default) or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// hmac: the signature header (default `x-signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// hmac: the timestamp header; absent for a credential without a timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// hmac: the message id header for `{svix-id}` (default `svix-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_header: Option<String>,
    /// hmac: the payload template (default `{timestamp}.{body}` with a timestamp header,
    /// `{body}` without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
    /// hmac: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
    /// hmac: a prefix before each signature, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// hmac: the secret is base64 and is decoded before use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_is_base64: Option<bool>,
    /// secret-header and bearer: the header name (`x-vapi-secret` and `authorization` by
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Optional expiry, RFC 3339.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<time::OffsetDateTime>,
}

impl CredentialConfig {
    /// A config of `kind` with `secret` and every optional field unset.
    pub fn new(kind: KindName, secret: SecretString) -> Self {
        Self {
            kind,
            secret,
            algorithm: None,
            signature_header: None,
            timestamp_header: None,
            message_id_header: None,
            payload_format: None,
            encoding: None,
            prefix: None,
            secret_is_base64: None,
            header: None,
            not_after: None,
        }
    }

    /// Builds the credential, checking that every field fits the kind.
    pub fn build(&self) -> Result<Credential, CredentialError> {
        let hmac_only = [
            ("algorithm", self.algorithm.is_some()),
            ("signature_header", self.signature_header.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
            ("message_id_header", self.message_id_header.is_some()),
            ("payload_format", self.payload_format.is_some()),
            ("encoding", self.encoding.is_some()),
            ("prefix", self.prefix.is_some()),
            ("secret_is_base64", self.secret_is_base64.is_some()),
        ];
        let secret = self.secret.expose();
        let credential = match self.kind {
            KindName::Hmac => {
                if self.header.is_some() {
                    return Err(CredentialError::Field(
                        "`header` is for secret-header and bearer credentials".into(),
                    ));
                }
                let key = if self.secret_is_base64.unwrap_or(false) {
                    Secret::from_base64(secret)?
                } else {
                    Secret::new(secret.as_bytes())?
                };
                let mut hmac = HmacCredential::with_secret(
                    self.algorithm.unwrap_or(HmacAlgorithm::Sha256),
                    key,
                )
                .timestamp_header(
                    self.timestamp_header
                        .as_deref()
                        .map(header_name)
                        .transpose()?,
                );
                if let Some(name) = &self.signature_header {
                    hmac = hmac.signature_header(header_name(name)?);
                }
                if let Some(name) = &self.message_id_header {
                    hmac = hmac.message_id_header(header_name(name)?);
                }
                let default_format = if hmac.timestamp_header.is_some() {
                    "{timestamp}.{body}"
                } else {
                    "{body}"
                };
                hmac =
                    hmac.payload_format(self.payload_format.as_deref().unwrap_or(default_format))?;
                if let Some(encoding) = self.encoding {
                    hmac = hmac.encoding(encoding);
                }
                if let Some(prefix) = &self.prefix {
                    hmac = hmac.prefix(prefix.clone());
                }
                Credential::hmac(hmac)?
            }
            KindName::StandardWebhooks | KindName::SecretHeader | KindName::Bearer => {
                if let Some((field, _)) = hmac_only.iter().find(|(_, set)| *set) {
                    return Err(CredentialError::Field(format!(
                        "`{field}` is only for hmac credentials"
                    )));
                }
                match self.kind {
                    KindName::StandardWebhooks => {
                        if self.header.is_some() {
                            return Err(CredentialError::Field(
                                "`header` is for secret-header and bearer credentials".into(),
                            ));
                        }
                        Credential::standard_webhooks(secret)?
                    }
                    KindName::SecretHeader => Credential::secret_header(
                        header_name(self.header.as_deref().unwrap_or("x-vapi-secret"))?,
                        secret.as_bytes(),
                    )?,
                    _ => Credential::bearer_in(
                        header_name(self.header.as_deref().unwrap_or("authorization"))?,
                        secret.as_bytes(),
                    )?,
                }
            }
        };
        Ok(match self.not_after {
            Some(end) => credential.not_after(end.into()),
            None => credential,
        })
    }
}

fn header_name(name: &str) -> Result<HeaderName, CredentialError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CredentialError::HeaderName(name.to_owned()))
}
