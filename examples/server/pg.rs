//! Postgres mode (`--database-url`, feature `postgres`): tenants and credentials in
//! `vapi_webhooks.*`, org names in `vapi_example.orgs`, and end-of-call reports in
//! `vapi_example.calls`, a table with row-level security enabled and forced.
//!
//! The URL's role runs the migrations and owns the tables; requests run on connections that log
//! in as the role `vapi_example_app` (the same URL with that user, or `--app-database-url`):
//! not superuser, no `BYPASSRLS`, owner of nothing, so the RLS policy binds every query the
//! handlers make. It logs in as that role rather than `SET ROLE` from the owner, which a
//! `RESET ROLE` on a pooled connection would undo; `check_role` refuses such a pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::str::FromStr;

use vapi_webhooks::postgres::sqlx::postgres::{
    PgConnectOptions, PgConnection, PgPool, PgPoolOptions,
};
use vapi_webhooks::postgres::sqlx::{self, Row};
use vapi_webhooks::postgres::{
    EncryptionKey, PgStore, RoleCheck, StoreAccess, begin_org_tx, enable_org_rls,
    grant_store_access, migrate,
};
use vapi_webhooks::store::CachedStore;
use vapi_webhooks::{OrgId, TenantKey};

use crate::app::{CallRecord, OrgInfo};
use crate::tenants::Tenants;

/// The role requests run as.
pub const APP_ROLE: &str = "vapi_example_app";

const SETUP_LOCK: i64 = 0x7661_7069_6578_6d70; // "vapiexmp"

const SETUP_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS vapi_example;
CREATE TABLE IF NOT EXISTS vapi_example.orgs (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    api_key_digest bytea NOT NULL,
    first_assistant text
);
CREATE TABLE IF NOT EXISTS vapi_example.calls (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL,
    call_id text,
    ended_reason text,
    summary text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS calls_org_call ON vapi_example.calls (org_id, call_id);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vapi_example_app') THEN
        CREATE ROLE vapi_example_app LOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END $$;
ALTER ROLE vapi_example_app LOGIN;
GRANT USAGE ON SCHEMA vapi_example TO vapi_example_app;
GRANT SELECT ON vapi_example.orgs TO vapi_example_app;
GRANT SELECT, INSERT ON vapi_example.calls TO vapi_example_app;
GRANT USAGE ON SEQUENCE vapi_example.calls_id_seq TO vapi_example_app;
";

/// Everything the app needs from Postgres.
pub struct Backend {
    pub store: Arc<CachedStore<PgStore>>,
    pub calls: PgCalls,
    pub orgs: HashMap<OrgId, OrgInfo>,
}

/// Connects, migrates, optionally imports `tenants`, and checks the request role.
pub async fn connect(
    url: &str,
    app_url: Option<&str>,
    key: EncryptionKey,
    tenants: Option<&Tenants>,
) -> Result<Backend, String> {
    let admin = admin_pool(url, 2).await?;
    migrate(&admin)
        .await
        .map_err(|err| format!("migration failed: {err}"))?;
    setup(&admin)
        .await
        .map_err(|err| format!("setting up the example tables failed: {err}"))?;
    if let Some(tenants) = tenants {
        import(&admin, key.clone(), tenants).await?;
    }
    admin.close().await;

    let app_options = match app_url {
        Some(app_url) => PgConnectOptions::from_str(app_url),
        None => PgConnectOptions::from_str(url).map(|o| o.username(APP_ROLE)),
    }
    .map_err(|err| format!("bad database URL: {err}"))?;
    let app = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(app_options);
    RoleCheck::new(&["vapi_example.calls"])
        .run(&app)
        .await
        .map_err(|err| format!("the request role is unsafe for row-level security: {err}"))?;
    let orgs = load_orgs(&app).await?;
    let store =
        Arc::new(CachedStore::new(PgStore::new(app.clone(), key)).ttl(Duration::from_secs(30)));
    Ok(Backend {
        store,
        calls: PgCalls::new(app),
        orgs,
    })
}

/// A pool of `max` connections as the URL's own (owner) role, for setup.
pub async fn admin_pool(url: &str, max: u32) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|err| format!("cannot connect to the database: {err}"))
}

/// Runs `sql` and enables row-level security on `rls_table` in one transaction, one process at
/// a time (`lock`, an advisory lock key): several servers may start against one database.
pub async fn setup_schema(
    admin: &PgPool,
    lock: i64,
    sql: &str,
    rls_table: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = admin.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    enable_org_rls(&mut tx, rls_table).await?;
    tx.commit().await
}

async fn setup(admin: &PgPool) -> Result<(), sqlx::Error> {
    setup_schema(admin, SETUP_LOCK, SETUP_SQL, "vapi_example.calls").await?;
    grant_store_access(admin, APP_ROLE, StoreAccess::ReadOnly).await
}

/// Writes the tenants file into the database: each org's keys are added and its credentials
/// replaced by the file's.
async fn import(admin: &PgPool, key: EncryptionKey, tenants: &Tenants) -> Result<(), String> {
    let store = PgStore::new(admin.clone(), key);
    let infos = crate::app::org_infos(tenants);
    for org in &tenants.orgs {
        let info = &infos[&org.id];
        sqlx::query(
            "INSERT INTO vapi_example.orgs (id, name, api_key_digest, first_assistant) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
             SET name = $2, api_key_digest = $3, first_assistant = $4",
        )
        .bind(org.id.as_uuid())
        .bind(&info.name)
        .bind(&info.api_key_digest[..])
        .bind(&info.first_assistant)
        .execute(admin)
        .await
        .map_err(|err| format!("importing {}: {err}", org.name))?;
        let keys = (org
            .assistants
            .iter()
            .map(|v| TenantKey::Assistant(v.as_str().into())))
        .chain(
            org.squads
                .iter()
                .map(|v| TenantKey::Squad(v.as_str().into())),
        )
        .chain(
            org.workflows
                .iter()
                .map(|v| TenantKey::Workflow(v.as_str().into())),
        )
        .chain(
            org.phone_numbers
                .iter()
                .map(|v| TenantKey::PhoneNumber(v.as_str().into())),
        )
        .chain(org.slugs.iter().map(|v| TenantKey::Slug(v.as_str().into())));
        for tenant_key in keys {
            store
                .add_tenant_key(org.id, &tenant_key)
                .await
                .map_err(|err| format!("importing {}: {err}", org.name))?;
        }
        let old = store
            .list_credentials(org.id)
            .await
            .map_err(|err| format!("importing {}: {err}", org.name))?;
        for config in &org.credential_configs {
            store
                .add_credential(org.id, config)
                .await
                .map_err(|err| format!("importing {}: {err}", org.name))?;
        }
        for credential in old {
            store
                .remove_credential(org.id, credential.id)
                .await
                .map_err(|err| format!("importing {}: {err}", org.name))?;
        }
        tracing::info!(org = %org.id, "imported tenant");
    }
    Ok(())
}

async fn load_orgs(pool: &PgPool) -> Result<HashMap<OrgId, OrgInfo>, String> {
    let rows =
        sqlx::query("SELECT id, name, api_key_digest, first_assistant FROM vapi_example.orgs")
            .fetch_all(pool)
            .await
            .map_err(|err| format!("reading vapi_example.orgs: {err}"))?;
    rows.into_iter()
        .map(|row| {
            let digest: Vec<u8> = row.get("api_key_digest");
            let id: uuid::Uuid = row.get("id");
            Ok((
                OrgId::from(id),
                OrgInfo {
                    name: row.get("name"),
                    first_assistant: row.get("first_assistant"),
                    api_key_digest: digest
                        .try_into()
                        .map_err(|_| format!("org {id}: bad api_key_digest"))?,
                },
            ))
        })
        .collect()
}

/// End-of-call reports in `vapi_example.calls`, always read and written inside an org-scoped
/// transaction: the queries below carry no `WHERE org_id`, RLS supplies it.
#[derive(Clone)]
pub struct PgCalls {
    pool: PgPool,
}

impl PgCalls {
    /// Calls kept through `pool` (a pool of the request role).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

// Not derived: the pool's options hold the database password.
impl std::fmt::Debug for PgCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCalls").finish_non_exhaustive()
    }
}

/// Postgres `text` refuses NUL; an authentic message must never fail on its content.
pub fn pg_text(value: Option<&str>) -> Option<String> {
    value.map(|v| v.replace('\0', "\u{FFFD}"))
}

impl PgCalls {
    /// The pool (as the request role).
    #[cfg(feature = "inbox")]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn store(&self, org: OrgId, record: &CallRecord) -> Result<bool, String> {
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(|e| e.to_string())?;
        let stored = Self::store_in(&mut tx, record, time::OffsetDateTime::now_utc())
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(stored)
    }

    /// Stores `record` in an org-scoped transaction (the request's, or an inbox worker's).
    pub async fn store_in(
        tx: &mut PgConnection,
        record: &CallRecord,
        received_at: time::OffsetDateTime,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO vapi_example.calls (org_id, call_id, ended_reason, summary, received_at) \
             VALUES (NULLIF(current_setting('app.org_id', true), '')::uuid, $1, $2, $3, $4) \
             ON CONFLICT (org_id, call_id) DO NOTHING",
        )
        .bind(pg_text(record.call_id.as_deref()))
        .bind(pg_text(record.ended_reason.as_deref()))
        .bind(pg_text(record.summary.as_deref()))
        .bind(received_at)
        .execute(tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list(&self, org: OrgId) -> Result<Vec<CallRecord>, String> {
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(|e| e.to_string())?;
        let rows = sqlx::query(
            "SELECT call_id, ended_reason, summary, \
                    to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS received_at \
             FROM vapi_example.calls ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|row| CallRecord {
                call_id: row.get("call_id"),
                ended_reason: row.get("ended_reason"),
                received_at: row.get("received_at"),
                summary: row.get("summary"),
            })
            .collect())
    }
}
