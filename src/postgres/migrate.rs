//! The crate's own migrations, in the `vapi_webhooks` schema.

use sqlx::PgPool;

/// The schema that holds every table of this crate.
pub const SCHEMA: &str = "vapi_webhooks";

/// Arbitrary constant for `pg_advisory_xact_lock`: serialises concurrent `migrate` calls
/// (several processes starting at once, tests in parallel) on one database.
const MIGRATE_LOCK_KEY: i64 = 0x7661_7069_5f77_6831; // "vapi_wh1"

/// (version, name, SQL), in order. Never edit an entry once released: add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tenants and credentials",
        include_str!("migrations/0001_tenants_and_credentials.sql"),
    ),
    (
        2,
        "workflow tenant keys",
        include_str!("migrations/0002_workflow_keys.sql"),
    ),
    (
        3,
        "change notifications",
        include_str!("migrations/0003_change_notifications.sql"),
    ),
    // Applied with or without feature `inbox`, so the schema never depends on features.
    (4, "inbox", include_str!("migrations/0004_inbox.sql")),
];

/// Why [`migrate`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The database failed or refused a statement; nothing was applied.
    #[error("migrating the vapi_webhooks schema failed")]
    Database(#[from] sqlx::Error),
    /// The database was migrated by a newer version of this crate.
    #[error("the vapi_webhooks schema is at version {found}, newer than this crate's {known}")]
    NewerSchema {
        /// The version in the database.
        found: i64,
        /// The newest version this crate knows.
        known: i64,
    },
}

/// Creates or upgrades this crate's tables in the `vapi_webhooks` schema.
///
/// Idempotent, and safe to call from several processes at once: everything runs in one
/// transaction under an advisory lock, so a failed migration leaves nothing behind. Applied
/// versions are recorded in `vapi_webhooks.schema_migrations`, apart from the application's own
/// migration table (e.g. sqlx's `_sqlx_migrations`), so the two never collide.
///
/// Run it as the role that should own the tables (not the application's runtime role), then
/// grant the runtime role access with [`grant_store_access`](crate::postgres::grant_store_access).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS vapi_webhooks;
         CREATE TABLE IF NOT EXISTS vapi_webhooks.schema_migrations (
             version    bigint      PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM vapi_webhooks.schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let newest = applied.last().copied().unwrap_or(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if newest > known {
        return Err(MigrateError::NewerSchema {
            found: newest,
            known,
        });
    }
    // Every version not yet applied, not only those above the newest: branches that each
    // added a migration then merge without skipping one.
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO vapi_webhooks.schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, name, "applied vapi_webhooks migration");
    }
    tx.commit().await?;
    Ok(())
}

/// What [`grant_store_access`] grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreAccess {
    /// `SELECT`: enough for [`PgStore`](crate::postgres::PgStore) to resolve tenants and verify.
    ReadOnly,
    /// `SELECT, INSERT, UPDATE, DELETE`: also the admin functions (adding tenant keys and
    /// credentials, key rotation).
    ReadWrite,
}

/// Grants `role` access to this crate's tables (run it as their owner, after [`migrate`]).
///
/// The role name is quoted by the server (`format('%I')`), so any role name is safe to pass.
pub async fn grant_store_access(
    pool: &PgPool,
    role: &str,
    access: StoreAccess,
) -> Result<(), sqlx::Error> {
    let privileges = match access {
        StoreAccess::ReadOnly => "SELECT",
        StoreAccess::ReadWrite => "SELECT, INSERT, UPDATE, DELETE",
    };
    let sql: String = sqlx::query_scalar(
        "SELECT format('GRANT USAGE ON SCHEMA vapi_webhooks TO %1$I; \
                        GRANT SELECT ON vapi_webhooks.schema_migrations TO %1$I; \
                        GRANT %2$s ON vapi_webhooks.tenant_keys, vapi_webhooks.credentials TO %1$I;', \
                       $1::text, $2::text)",
    )
    .bind(role)
    .bind(privileges)
    .fetch_one(pool)
    .await?;
    run_grants(pool, &sql).await
}

/// Runs GRANT statements. Concurrent GRANTs on one object can fail with "tuple concurrently
/// updated": serialise them under the migration lock.
pub(crate) async fn run_grants(pool: &PgPool, sql: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    tx.commit().await
}
