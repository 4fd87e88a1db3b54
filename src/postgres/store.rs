//! [`PgStore`]: tenant keys and encrypted credentials in Postgres.

use std::fmt;
use std::sync::Arc;

use rand::RngCore;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::crypto::EncryptionKey;
use crate::credential::{Credential, CredentialConfig, CredentialError, KindName, SecretString};
use crate::org::{KeyKind, OrgId, TenantKey};
use crate::store::{AssistantOrgStore, Credentials, SecretError, SecretProvider, StoreError};

/// The id of a stored credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(Uuid);

impl CredentialId {
    /// Wraps a UUID.
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A stored credential's metadata, without its secret (see [`PgStore::list_credentials`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CredentialInfo {
    /// The credential's id.
    pub id: CredentialId,
    /// Its kind.
    pub kind: KindName,
    /// When it stops verifying, if ever.
    pub not_after: Option<OffsetDateTime>,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// The id of the [`EncryptionKey`] its secret is encrypted under.
    pub key_id: String,
}

/// Why an admin operation of [`PgStore`] (or [`rotate_encryption_key`]) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The credential is invalid (checked with [`CredentialConfig::build`] before storing).
    #[error("invalid credential: {0}")]
    Credential(#[from] CredentialError),
    /// The tenant key already belongs to another organisation.
    #[error("tenant key {key} already belongs to org {owner}")]
    TenantKeyTaken {
        /// The key.
        key: TenantKey,
        /// The organisation that owns it.
        owner: OrgId,
    },
    /// A stored secret could not be decrypted with any of the keys given.
    #[error("cannot decrypt the secret of credential {credential} of org {org} (key id {key_id})")]
    Decrypt {
        /// The organisation.
        org: OrgId,
        /// The credential.
        credential: CredentialId,
        /// The key id stored with it.
        key_id: String,
    },
}

/// Tenant keys and credentials in Postgres: an [`AssistantOrgStore`] and a [`SecretProvider`].
///
/// Secrets are encrypted with AES-256-GCM under the current [`EncryptionKey`] (a fresh random
/// nonce each, associated data binding the ciphertext to its org and credential id); the
/// plaintext never reaches the database. Older keys added with
/// [`with_previous_key`](Self::with_previous_key) are used for reading only, while
/// [`rotate_encryption_key`] re-encrypts.
///
/// [`SecretProvider::credentials`] returns the org's active credentials (no `not_after`, or one in
/// the future). A credential that cannot be loaded (unknown key id, decryption failure, invalid
/// parameters) is skipped with a warning naming the org and the credential id — the request
/// then fails verification (401), not the server (500). Database failures are
/// [`StoreError`] / [`SecretError::Unavailable`] (503).
///
/// Cheap to clone. Each call is a query: wrap it in the caching store for production traffic.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The first is the current key (writes); all are tried by key id for reading.
    keys: Arc<[EncryptionKey]>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the pool: its connect options hold the database password.
        f.debug_struct("PgStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

const SELECT_CREDENTIALS: &str = "SELECT id, kind, params::text AS params, secret_ciphertext, \
     secret_nonce, key_id, not_after FROM vapi_webhooks.credentials";

impl PgStore {
    /// A store on `pool` that encrypts new secrets under `key`.
    ///
    /// Run [`migrate`](crate::postgres::migrate) first.
    pub fn new(pool: PgPool, key: EncryptionKey) -> Self {
        Self {
            pool,
            keys: Arc::from(vec![key]),
        }
    }

    /// Also reads secrets encrypted under `key` (an older key, during a rotation).
    pub fn with_previous_key(self, key: EncryptionKey) -> Self {
        let mut keys = self.keys.to_vec();
        keys.push(key);
        Self {
            pool: self.pool,
            keys: keys.into(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Maps `key` to `org`. Adding a key the org already has is a no-op; a key of another org
    /// is [`AdminError::TenantKeyTaken`].
    pub async fn add_tenant_key(&self, org: OrgId, key: &TenantKey) -> Result<(), AdminError> {
        // DO UPDATE (to the same value) so RETURNING yields the owner in both cases.
        let owner: Uuid = sqlx::query_scalar(
            "INSERT INTO vapi_webhooks.tenant_keys (kind, value, org_id) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, value) DO UPDATE SET org_id = vapi_webhooks.tenant_keys.org_id \
             RETURNING org_id",
        )
        .bind(key.kind().as_str())
        .bind(key.value())
        .bind(org.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        let owner = OrgId::new(owner);
        if owner != org {
            return Err(AdminError::TenantKeyTaken {
                key: key.clone(),
                owner,
            });
        }
        Ok(())
    }

    /// Removes `key` from `org`; `false` if the org did not have it.
    pub async fn remove_tenant_key(&self, org: OrgId, key: &TenantKey) -> Result<bool, AdminError> {
        let done = sqlx::query(
            "DELETE FROM vapi_webhooks.tenant_keys WHERE kind = $1 AND value = $2 AND org_id = $3",
        )
        .bind(key.kind().as_str())
        .bind(key.value())
        .bind(org.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tenant keys of `org`.
    pub async fn tenant_keys(&self, org: OrgId) -> Result<Vec<TenantKey>, AdminError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT kind, value FROM vapi_webhooks.tenant_keys WHERE org_id = $1 ORDER BY kind, value",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, value)| tenant_key(&kind, value))
            .collect())
    }

    /// Stores a credential for `org`, its secret encrypted under the current key.
    ///
    /// The config is checked with [`CredentialConfig::build`] first; every field, including
    /// `not_after`, round-trips.
    pub async fn add_credential(
        &self,
        org: OrgId,
        config: &CredentialConfig,
    ) -> Result<CredentialId, AdminError> {
        config.build()?;
        let id = CredentialId::random();
        let (kind, params) = split_config(config);
        let key = &self.keys[0];
        let (nonce, ciphertext) = key.encrypt(&org, &id.0, config.secret.expose().as_bytes());
        sqlx::query(
            "INSERT INTO vapi_webhooks.credentials \
             (id, org_id, kind, params, secret_ciphertext, secret_nonce, key_id, not_after) \
             VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)",
        )
        .bind(id.0)
        .bind(org.as_uuid())
        .bind(kind)
        .bind(params)
        .bind(ciphertext)
        .bind(&nonce[..])
        .bind(key.id())
        .bind(config.not_after)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Deletes credential `id` of `org`; `false` if the org has no such credential.
    pub async fn remove_credential(
        &self,
        org: OrgId,
        id: CredentialId,
    ) -> Result<bool, AdminError> {
        let done =
            sqlx::query("DELETE FROM vapi_webhooks.credentials WHERE id = $1 AND org_id = $2")
                .bind(id.0)
                .bind(org.as_uuid())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets (or with `None`, clears) the time after which credential `id` of `org` no longer
    /// verifies: how an old credential is rotated out. `false` if the org has no such credential.
    pub async fn expire_credential(
        &self,
        org: OrgId,
        id: CredentialId,
        not_after: Option<OffsetDateTime>,
    ) -> Result<bool, AdminError> {
        let done = sqlx::query(
            "UPDATE vapi_webhooks.credentials SET not_after = $3 WHERE id = $1 AND org_id = $2",
        )
        .bind(id.0)
        .bind(org.as_uuid())
        .bind(not_after)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every credential of `org`, active or not, without secrets.
    pub async fn list_credentials(&self, org: OrgId) -> Result<Vec<CredentialInfo>, AdminError> {
        let rows = sqlx::query(
            "SELECT id, kind, not_after, created_at, key_id FROM vapi_webhooks.credentials \
             WHERE org_id = $1 ORDER BY created_at, id",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(CredentialInfo {
                    id: CredentialId(row.try_get("id")?),
                    kind: kind_name(&kind).ok_or_else(|| {
                        sqlx::Error::Decode(format!("unknown credential kind {kind:?}").into())
                    })?,
                    not_after: row.try_get("not_after")?,
                    created_at: row.try_get("created_at")?,
                    key_id: row.try_get("key_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AdminError::from)
    }

    /// Loads one credential row, or says why it cannot be used.
    fn load(&self, org: &OrgId, row: &PgRow) -> Result<Credential, LoadError> {
        let id: Uuid = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        let params: String = row.try_get("params")?;
        let ciphertext: Vec<u8> = row.try_get("secret_ciphertext")?;
        let nonce: Vec<u8> = row.try_get("secret_nonce")?;
        let key_id: String = row.try_get("key_id")?;
        let not_after: Option<OffsetDateTime> = row.try_get("not_after")?;

        let key = self
            .keys
            .iter()
            .find(|k| k.id() == key_id)
            .ok_or(LoadError::UnknownKey(key_id))?;
        let secret = key
            .decrypt(org, &id, &nonce, &ciphertext)
            .ok_or(LoadError::Decrypt)?;
        let secret = std::str::from_utf8(&secret).map_err(|_| LoadError::Decrypt)?;
        let config = join_config(&kind, &params, SecretString::new(secret)?, not_after)?;
        Ok(config.build()?)
    }
}

/// Why a stored credential was skipped (logged, never containing the secret).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("column: {0}")]
    Column(#[from] sqlx::Error),
    #[error("encrypted under unknown key id {0}")]
    UnknownKey(String),
    #[error("decryption failed (wrong key, or ciphertext not of this org/credential)")]
    Decrypt,
    #[error("invalid parameters: {0}")]
    Params(#[from] serde_json::Error),
    #[error("invalid credential: {0}")]
    Credential(#[from] CredentialError),
}

/// The kind column and the params JSON (no secret, no kind, no `not_after`: those have columns).
fn split_config(config: &CredentialConfig) -> (&'static str, String) {
    let mut params = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("CredentialConfig serialises to an object"),
    };
    params.remove("kind");
    params.remove("not_after");
    debug_assert!(!params.contains_key("secret"));
    (
        kind_str(config.kind),
        serde_json::Value::Object(params).to_string(),
    )
}

/// Rebuilds the config. The secret is set on the struct, never put into a JSON value.
fn join_config(
    kind: &str,
    params: &str,
    secret: SecretString,
    not_after: Option<OffsetDateTime>,
) -> Result<CredentialConfig, LoadError> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(params)?;
    map.insert("kind".into(), kind.into());
    map.insert("secret".into(), "placeholder".into());
    let mut config: CredentialConfig = serde_json::from_value(map.into())?;
    config.secret = secret;
    config.not_after = not_after;
    Ok(config)
}

fn kind_str(kind: KindName) -> &'static str {
    match kind {
        KindName::Hmac => "hmac",
        KindName::SecretHeader => "secret-header",
        KindName::Bearer => "bearer",
        KindName::StandardWebhooks => "standard-webhooks",
    }
}

fn kind_name(kind: &str) -> Option<KindName> {
    serde_json::from_value(kind.into()).ok()
}

fn tenant_key(kind: &str, value: String) -> Option<TenantKey> {
    Some(TenantKey::new(kind.parse::<KeyKind>().ok()?, value))
}

#[async_trait::async_trait]
impl AssistantOrgStore for PgStore {
    async fn org_for(&self, key: &TenantKey) -> Result<Option<OrgId>, StoreError> {
        // Postgres text cannot hold NUL, so no tenant owns such a key: an unknown key (401,
        // cacheable), not a database error (503) that every such request would repeat.
        if key.value().contains('\0') {
            return Ok(None);
        }
        let org: Option<Uuid> = sqlx::query_scalar(
            "SELECT org_id FROM vapi_webhooks.tenant_keys WHERE kind = $1 AND value = $2",
        )
        .bind(key.kind().as_str())
        .bind(key.value())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::new)?;
        Ok(org.map(OrgId::new))
    }
}

#[async_trait::async_trait]
impl SecretProvider for PgStore {
    async fn credentials(&self, org: Option<&OrgId>) -> Result<Credentials, SecretError> {
        let org = org.ok_or(SecretError::OrgRequired)?;
        let rows = sqlx::query(&format!(
            "{SELECT_CREDENTIALS} WHERE org_id = $1 \
             AND (not_after IS NULL OR not_after > now()) ORDER BY created_at, id"
        ))
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| SecretError::Unavailable(Arc::new(e)))?;
        let mut credentials = Vec::with_capacity(rows.len());
        for row in &rows {
            match self.load(org, row) {
                Ok(credential) => credentials.push(credential),
                Err(reason) => {
                    let id = row
                        .try_get::<Uuid, _>("id")
                        .map_or_else(|_| "?".to_owned(), |id| id.to_string());
                    tracing::warn!(
                        org = %org,
                        credential = %id,
                        reason = %reason,
                        "skipping a stored credential that cannot be loaded"
                    );
                }
            }
        }
        Ok(credentials.into())
    }
}

/// Re-encrypts every stored secret under `new`, in one transaction.
///
/// Secrets are decrypted with whichever of `old` (or `new`) matches their key id; if any cannot
/// be decrypted, nothing changes and [`AdminError::Decrypt`] names the credential. Returns the
/// number of secrets re-encrypted (those already under `new` are left alone, so running it
/// again is harmless).
///
/// Key rotation, step by step:
/// 1. deploy every process with `PgStore::new(pool, new).with_previous_key(old)`: they write
///    under the new key and read both;
/// 2. run `rotate_encryption_key(&pool, &[old], &new)` once;
/// 3. drop the old key from the configuration.
pub async fn rotate_encryption_key(
    pool: &PgPool,
    old: &[EncryptionKey],
    new: &EncryptionKey,
) -> Result<u64, AdminError> {
    let mut tx = pool.begin().await?;
    // (id, org_id, ciphertext, nonce, key_id)
    type Row = (Uuid, Uuid, Vec<u8>, Vec<u8>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, org_id, secret_ciphertext, secret_nonce, key_id FROM vapi_webhooks.credentials \
         WHERE key_id <> $1 ORDER BY id FOR UPDATE",
    )
    .bind(new.id())
    .fetch_all(&mut *tx)
    .await?;
    let mut count = 0;
    for (id, org, ciphertext, nonce, key_id) in rows {
        let org = OrgId::new(org);
        let secret = old
            .iter()
            .find(|k| k.id() == key_id)
            .and_then(|k| k.decrypt(&org, &id, &nonce, &ciphertext))
            .ok_or_else(|| AdminError::Decrypt {
                org,
                credential: CredentialId(id),
                key_id: key_id.clone(),
            })?;
        let (nonce, ciphertext) = new.encrypt(&org, &id, &secret);
        sqlx::query(
            "UPDATE vapi_webhooks.credentials SET secret_ciphertext = $2, secret_nonce = $3, \
             key_id = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(ciphertext)
        .bind(&nonce[..])
        .bind(new.id())
        .execute(&mut *tx)
        .await?;
        count += 1;
    }
    tx.commit().await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_without_secret_in_params() {
        let toml_like = serde_json::json!({
            "kind": "hmac", "secret": "top-secret-value", "algorithm": "sha512",
            "signature_header": "x-sig", "timestamp_header": "x-ts", "payload_format": "{timestamp}:{body}",
            "encoding": "base64", "prefix": "v1=", "not_after": "2031-01-02T03:04:05Z"
        });
        let config: CredentialConfig = serde_json::from_value(toml_like).unwrap();
        let (kind, params) = split_config(&config);
        assert_eq!(kind, "hmac");
        assert!(!params.contains("top-secret-value"));
        assert!(!params.contains("not_after"));
        let back = join_config(
            kind,
            &params,
            SecretString::new("top-secret-value").unwrap(),
            config.not_after,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&config).unwrap()
        );
        assert_eq!(back.secret.expose(), "top-secret-value");
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            KindName::Hmac,
            KindName::SecretHeader,
            KindName::Bearer,
            KindName::StandardWebhooks,
        ] {
            assert_eq!(kind_name(kind_str(kind)), Some(kind));
        }
        for key in [
            TenantKey::Assistant("a".into()),
            TenantKey::Squad("s".into()),
            TenantKey::PhoneNumber("p".into()),
            TenantKey::Workflow("w".into()),
            TenantKey::VapiOrg("v".into()),
            TenantKey::Slug("x".into()),
        ] {
            assert_eq!(
                tenant_key(key.kind().as_str(), key.value().to_owned()),
                Some(key)
            );
        }
    }
}
