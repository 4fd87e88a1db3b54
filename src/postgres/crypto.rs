//! Encrypting credential secrets at rest (AES-256-GCM).

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::org::OrgId;

/// Length of an AES-GCM nonce (96 bits), fresh and random for every secret.
pub(crate) const NONCE_LEN: usize = 12;

/// An AES-256 key that encrypts credential secrets in the database.
///
/// Supplied by the application (a secret manager, an environment variable), never stored in the
/// database. Each key has an [`id`](Self::id) derived from the key itself, stored next to every
/// ciphertext, so a [`PgStore`](crate::postgres::PgStore) can hold the current key and older ones
/// while [`rotate_encryption_key`](crate::postgres::rotate_encryption_key) runs.
///
/// Cheap to clone; the key bytes are zeroed on drop and never printed.
#[derive(Clone)]
pub struct EncryptionKey(Arc<Inner>);

struct Inner {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

/// Why an [`EncryptionKey`] could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not valid base64.
    #[error("the encryption key is not valid base64")]
    NotBase64,
    /// The key is not 32 bytes long.
    #[error("the encryption key must be 32 bytes, got {0}")]
    Length(usize),
}

impl EncryptionKey {
    /// A key from 32 bytes (generate them with a CSPRNG, e.g. `openssl rand -base64 32`).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        // The id is a MAC of a fixed label under the key: stable, and says nothing about the key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key[..]).expect("HMAC takes any key length");
        mac.update(b"vapi-webhooks/encryption-key-id/v1");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        Self(Arc::new(Inner { key, id }))
    }

    /// A key from base64 text (standard alphabet, padded) of 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|_| KeyError::NotBase64)?,
        );
        let bytes: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key (from the operating system's CSPRNG).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
        Self::from_bytes(*bytes)
    }

    /// The key's id: 16 hex digits derived from the key, stored with each ciphertext.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0.key[..]).expect("the key is 32 bytes")
    }

    /// Encrypts `secret` for credential `credential` of `org`: (nonce, ciphertext).
    pub(crate) fn encrypt(
        &self,
        org: &OrgId,
        credential: &Uuid,
        secret: &[u8],
    ) -> ([u8; NONCE_LEN], Vec<u8>) {
        self.encrypt_bound(CREDENTIAL_LABEL, org, credential, secret)
    }

    /// Encrypts `plaintext` bound to `(label, org, id)`: (nonce, ciphertext).
    pub(crate) fn encrypt_bound(
        &self,
        label: &[u8],
        org: &OrgId,
        id: &Uuid,
        plaintext: &[u8],
    ) -> ([u8; NONCE_LEN], Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(label, org, id);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption cannot fail below 64 GiB");
        (nonce, ciphertext)
    }

    /// Decrypts a secret; fails when the key, the nonce, the ciphertext or the (org, credential)
    /// binding does not match.
    pub(crate) fn decrypt(
        &self,
        org: &OrgId,
        credential: &Uuid,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.decrypt_bound(CREDENTIAL_LABEL, org, credential, nonce, ciphertext)
    }

    /// Decrypts what [`encrypt_bound`](Self::encrypt_bound) encrypted for `(label, org, id)`.
    pub(crate) fn decrypt_bound(
        &self,
        label: &[u8],
        org: &OrgId,
        id: &Uuid,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let aad = associated_data(label, org, id);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// The associated-data label of credential secrets.
const CREDENTIAL_LABEL: &[u8] = b"vapi-webhooks/credential/v1\0";

/// Binds a ciphertext to its row: copied to another org, row or table (`label`), it no longer
/// decrypts.
fn associated_data(label: &[u8], org: &OrgId, id: &Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 32);
    aad.extend_from_slice(label);
    aad.extend_from_slice(org.as_uuid().as_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (OrgId, Uuid) {
        (OrgId::new(Uuid::from_u128(0x1111)), Uuid::from_u128(0x2222))
    }

    #[test]
    fn round_trip_and_binding() {
        let key = EncryptionKey::from_bytes([7; 32]);
        let (org, cred) = ids();
        let (nonce, ct) = key.encrypt(&org, &cred, b"s3cret");
        assert_ne!(&ct[..6], b"s3cret");
        assert_eq!(
            &key.decrypt(&org, &cred, &nonce, &ct).unwrap()[..],
            b"s3cret"
        );
        // Another org, another credential, another key, a short nonce: all refused.
        let other = OrgId::new(Uuid::from_u128(0x3333));
        assert!(key.decrypt(&other, &cred, &nonce, &ct).is_none());
        assert!(
            key.decrypt(&org, &Uuid::from_u128(1), &nonce, &ct)
                .is_none()
        );
        assert!(
            EncryptionKey::from_bytes([8; 32])
                .decrypt(&org, &cred, &nonce, &ct)
                .is_none()
        );
        assert!(key.decrypt(&org, &cred, &nonce[..11], &ct).is_none());
    }

    #[test]
    fn fresh_nonce_per_secret() {
        let key = EncryptionKey::from_bytes([7; 32]);
        let (org, cred) = ids();
        let (n1, c1) = key.encrypt(&org, &cred, b"same");
        let (n2, c2) = key.encrypt(&org, &cred, b"same");
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
    }

    #[test]
    fn key_id_is_stable_and_distinct() {
        let a = EncryptionKey::from_bytes([1; 32]);
        assert_eq!(a.id(), EncryptionKey::from_bytes([1; 32]).id());
        assert_ne!(a.id(), EncryptionKey::from_bytes([2; 32]).id());
        assert_eq!(a.id().len(), 16);
        let b64 = BASE64.encode([1u8; 32]);
        assert_eq!(EncryptionKey::from_base64(&b64).unwrap().id(), a.id());
        assert_eq!(
            EncryptionKey::from_base64("AAAA").unwrap_err(),
            KeyError::Length(3)
        );
        assert_eq!(
            EncryptionKey::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
        assert!(!format!("{a:?}").contains("[1, 1"));
    }
}
