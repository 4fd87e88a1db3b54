//! Org-scoped transactions and the row-level security policy they pair with.

use std::fmt;
use std::ops::{Deref, DerefMut};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::org::OrgId;

/// The setting that carries the organisation of the current transaction.
pub const ORG_ID_SETTING: &str = "app.org_id";

/// The predicate of the row-level security policy for org data (a table with an `org_id uuid`
/// column): no rows at all when no org is set, because `NULLIF` turns the unset (`''`) value
/// into `NULL`.
pub const ORG_POLICY_PREDICATE: &str =
    "org_id = NULLIF(current_setting('app.org_id', true), '')::uuid";

/// A transaction in which `app.org_id` is set to one organisation.
///
/// Derefs to [`PgConnection`], so `&mut *tx` is an executor. Dropped without
/// [`commit`](Self::commit), it rolls back. The setting is transaction-local
/// (`set_config(…, true)`): it ends with the transaction, so a pooled connection never carries
/// one org's setting into another's work.
pub struct OrgTx {
    org: OrgId,
    tx: Transaction<'static, Postgres>,
}

/// Begins a transaction on `pool` and sets `app.org_id` to `org` inside it.
///
/// Every query in it sees only `org`'s rows of the tables protected by
/// [`enable_org_rls`] (or a policy on [`ORG_POLICY_PREDICATE`]), and cannot write another
/// org's rows, even when it forgets its `WHERE org_id = …`.
pub async fn begin_org_tx(pool: &PgPool, org: OrgId) -> Result<OrgTx, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(ORG_ID_SETTING)
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(OrgTx { org, tx })
}

impl OrgTx {
    /// The organisation this transaction is scoped to.
    pub fn org_id(&self) -> OrgId {
        self.org
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls back (dropping the transaction does too, without waiting).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// The sqlx transaction inside; the org setting lasts as long as it does.
    pub fn into_inner(self) -> Transaction<'static, Postgres> {
        self.tx
    }
}

impl Deref for OrgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for OrgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl fmt::Debug for OrgTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgTx")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// Protects an existing `table` (with an `org_id uuid` column) by row-level security: enables
/// and **forces** RLS (so the owner is subject to it too) and (re)creates the policy
/// `org_isolation` on [`ORG_POLICY_PREDICATE`] for reads (`USING`) and writes (`WITH CHECK`).
///
/// `table` is resolved by the server (`'calls'`, `'app.calls'`, `'"Calls"'`) and quoted by it,
/// so the name cannot inject SQL. Idempotent. Run it as the table's owner, e.g. from the
/// application's migrations; the same statements for a `.sql` migration are in the
/// [module docs](crate::postgres#row-level-security-for-your-tables).
pub async fn enable_org_rls(conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
    let table: String = sqlx::query_scalar("SELECT $1::regclass::text")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    // One simple-query message: the statements run as one implicit transaction.
    sqlx::raw_sql(&format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY; \
         DROP POLICY IF EXISTS org_isolation ON {table}; \
         CREATE POLICY org_isolation ON {table} \
             USING ({ORG_POLICY_PREDICATE}) WITH CHECK ({ORG_POLICY_PREDICATE});"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
