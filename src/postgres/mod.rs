//! Postgres backend (feature `postgres`): tenants and encrypted credentials, org-scoped
//! transactions and row-level security.
//!
//! * [`migrate`] creates this crate's tables in their own schema, `vapi_webhooks` (with its own
//!   `vapi_webhooks.schema_migrations`, so it never collides with the application's migrations).
//! * [`PgStore`] is both an [`AssistantOrgStore`](crate::AssistantOrgStore) and a
//!   [`SecretProvider`](crate::SecretProvider); credential secrets are stored encrypted
//!   (AES-256-GCM) under an [`EncryptionKey`] the application supplies.
//! * [`begin_org_tx`] (and, with feature `axum`, the `OrgTransaction` extractor) opens a
//!   transaction scoped to one organisation, for row-level security on the application's own
//!   tables ([`enable_org_rls`]); [`check_role`] makes sure at startup that RLS applies to the
//!   role the application connects as.
//!
//! Queries are built at runtime (no `query!` macros), so building needs no database. sqlx is
//! re-exported as [`sqlx`]; TLS is the application's choice: enable e.g.
//! `sqlx = { version = "0.8", features = ["tls-rustls"] }` in its own `Cargo.toml`.
//!
//! # Example
//!
//! ```no_run
//! use vapi_webhooks::credential::{CredentialConfig, KindName, SecretString};
//! use vapi_webhooks::postgres::{self, EncryptionKey, PgStore, begin_org_tx, check_role};
//! use vapi_webhooks::postgres::sqlx::{self, PgPool};
//! use vapi_webhooks::{OrgId, TenantKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // At deploy time, as the owner role: this crate's tables, the app's table with RLS.
//! let owner = PgPool::connect("postgres://owner@db/app").await?;
//! postgres::migrate(&owner).await?;
//! postgres::grant_store_access(&owner, "app", postgres::StoreAccess::ReadOnly).await?;
//! sqlx::query("CREATE TABLE IF NOT EXISTS calls (id uuid PRIMARY KEY, org_id uuid NOT NULL, body text)")
//!     .execute(&owner)
//!     .await?;
//! postgres::enable_org_rls(&mut *owner.acquire().await?, "calls").await?;
//! sqlx::query("GRANT SELECT, INSERT, UPDATE, DELETE ON calls TO app").execute(&owner).await?;
//!
//! // At startup, as the application's role.
//! let pool = PgPool::connect("postgres://app@db/app").await?;
//! check_role(&pool, &["calls"]).await?; // refuses a superuser, BYPASSRLS or owner role
//! let key = EncryptionKey::from_base64(&std::env::var("VAPI_WEBHOOKS_KEY")?)?;
//! let store = PgStore::new(pool.clone(), key);
//!
//! // Admin: a tenant and its credential (the secret is encrypted before it is sent).
//! let org: OrgId = "6f1c1b52-4a47-4d52-9a38-7b1f2f1f0a01".parse()?;
//! store.add_tenant_key(org, &TenantKey::Assistant("asst_123".into())).await?;
//! let id = store
//!     .add_credential(org, &CredentialConfig::new(KindName::Hmac, SecretString::new("s3cret")?))
//!     .await?;
//!
//! // In a handler: everything in the transaction sees only this org's rows.
//! let mut tx = begin_org_tx(&pool, org).await?;
//! let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM calls").fetch_one(&mut *tx).await?;
//! tx.commit().await?;
//! # let _ = (id, calls);
//! # Ok(()) }
//! ```
//!
//! # Row-level security for your tables
//!
//! Give every org-data table an `org_id uuid NOT NULL` column and this policy (what
//! [`enable_org_rls`] runs), e.g. in the application's own migrations:
//!
//! ```sql
//! ALTER TABLE calls ENABLE ROW LEVEL SECURITY;
//! ALTER TABLE calls FORCE ROW LEVEL SECURITY;
//! CREATE POLICY org_isolation ON calls
//!     USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
//!     WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
//! ```
//!
//! Then query only inside [`begin_org_tx`] (or `OrgTransaction`): it runs
//! `SELECT set_config('app.org_id', $org, true)` in the transaction, so the setting ends with it
//! and never leaks to the next user of a pooled connection. Outside such a transaction the
//! setting is unset, and the policy shows no rows and refuses every write. `WITH CHECK` refuses
//! inserting or moving a row into another org.
//!
//! RLS does not apply to superusers, `BYPASSRLS` roles, or (unless forced) the table owner, who
//! can also turn it off: the application must connect as a plain role —
//! `CREATE ROLE app LOGIN NOSUPERUSER NOBYPASSRLS` — that owns nothing and is granted only
//! `SELECT, INSERT, UPDATE, DELETE` on its tables; [`check_role`] verifies that at startup.
//!
//! The `vapi_webhooks` tables themselves are read before the organisation is known (to find
//! it), so they are not org-scoped: protect them with privileges ([`grant_store_access`]).
//!
//! # Encryption key rotation
//!
//! Every secret is stored with the id of the key it is encrypted under. To rotate:
//! 1. deploy every process with `PgStore::new(pool, new).with_previous_key(old)`: new secrets
//!    go under the new key, both are read;
//! 2. run [`rotate_encryption_key`]`(&pool, &[old], &new)` once: it re-encrypts every secret in
//!    one transaction (all or nothing);
//! 3. remove the old key from the configuration.
//!
//! A secret that no configured key decrypts (a wrong key) is skipped with a warning naming the
//! org and credential id; requests for that org then fail verification (401), not the server.

mod crypto;
#[cfg(feature = "axum")]
mod extract;
mod migrate;
mod role;
mod store;
mod tx;
mod watch;

pub use sqlx;

pub use self::crypto::{EncryptionKey, KeyError};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::extract::{OrgTransaction, OrgTransactionRejection};
#[cfg(feature = "inbox")]
pub(crate) use self::migrate::run_grants;
pub use self::migrate::{MigrateError, SCHEMA, StoreAccess, grant_store_access, migrate};
pub use self::role::{RoleCheck, RoleError, RoleProblem, RoleReport, check_role};
pub use self::store::{AdminError, CredentialId, CredentialInfo, PgStore, rotate_encryption_key};
pub use self::tx::{ORG_ID_SETTING, ORG_POLICY_PREDICATE, OrgTx, begin_org_tx, enable_org_rls};
pub use self::watch::{CHANGES_CHANNEL, watch_changes};
