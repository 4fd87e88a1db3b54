//! The startup check of the connecting role.

use std::fmt;

use sqlx::PgPool;

/// Something that lets the connecting role bypass row-level security.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoleProblem {
    /// The role is a superuser: RLS does not apply to it.
    Superuser,
    /// The role has `BYPASSRLS`.
    BypassRls,
    /// The role owns the table (or is a member of its owner) and could disable RLS on it.
    OwnsTable {
        /// The table.
        table: String,
        /// Its owner.
        owner: String,
    },
    /// The table has row-level security disabled.
    RlsDisabled(String),
    /// The table does not force row-level security (its owner is not subject to it).
    RlsNotForced(String),
    /// The table does not exist (or the role cannot see it).
    MissingTable(String),
    /// The role the connection logged in as (`session_user`, which `RESET ROLE` or
    /// `DISCARD ALL` returns to) is not the checked one and is a superuser or has `BYPASSRLS`:
    /// the `SET ROLE` that makes RLS apply can be undone on the connection.
    SessionRole(String),
    /// The role can read a table that spans orgs (the inbox queue), which only workers may.
    ReadsAcrossOrgs(String),
}

impl fmt::Display for RoleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Superuser => f.write_str("the role is a superuser"),
            Self::BypassRls => f.write_str("the role has BYPASSRLS"),
            Self::OwnsTable { table, owner } => {
                write!(f, "the role can act as {owner}, the owner of {table}")
            }
            Self::RlsDisabled(t) => write!(f, "{t} does not have row level security enabled"),
            Self::RlsNotForced(t) => write!(f, "{t} does not force row level security"),
            Self::MissingTable(t) => write!(f, "table {t} not found"),
            Self::SessionRole(r) => write!(
                f,
                "the connection logged in as {r}, which bypasses row level security after RESET ROLE"
            ),
            Self::ReadsAcrossOrgs(t) => {
                write!(f, "the role can read {t}, which spans orgs (workers only)")
            }
        }
    }
}

/// What [`check_role`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoleReport {
    /// The connecting role (`current_user`).
    pub role: String,
    /// Everything wrong; empty when the role is safe.
    pub problems: Vec<RoleProblem>,
}

impl RoleReport {
    /// No problem found.
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for RoleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role {}: ", self.role)?;
        if self.problems.is_empty() {
            return f.write_str("row level security applies");
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(problem, f)?;
        }
        Ok(())
    }
}

/// Why [`check_role`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The check's queries failed.
    #[error("checking the database role failed")]
    Database(#[from] sqlx::Error),
    /// Row-level security would not protect org data from this role.
    #[error("unsafe database role for org data: {0}")]
    Unsafe(RoleReport),
}

/// The startup check, configurable; [`check_role`] is `RoleCheck::new(tables).run(pool)`.
#[derive(Clone, Debug)]
pub struct RoleCheck {
    pub(crate) tables: Vec<String>,
    /// Tables the role must not be able to read.
    pub(crate) unreadable: Vec<String>,
    warn_only: bool,
}

impl RoleCheck {
    /// Checks the connecting role against the org-data `tables` (names as in SQL, optionally
    /// schema-qualified).
    pub fn new<T: AsRef<str>>(tables: &[T]) -> Self {
        Self {
            tables: tables.iter().map(|t| t.as_ref().to_owned()).collect(),
            unreadable: Vec::new(),
            warn_only: false,
        }
    }

    /// Logs problems as warnings and returns the report instead of failing (for development
    /// databases where the application connects as the owner).
    pub fn warn_only(mut self) -> Self {
        self.warn_only = true;
        self
    }

    /// Runs the check on a connection of `pool`.
    pub async fn run(&self, pool: &PgPool) -> Result<RoleReport, RoleError> {
        // Both roles: the current one, and the one the connection logged in as, which a
        // `RESET ROLE` or `DISCARD ALL` on a pooled connection returns to.
        let (role, superuser, bypass, session, session_unsafe): (String, bool, bool, String, bool) =
            sqlx::query_as(
                "SELECT c.rolname::text, c.rolsuper, c.rolbypassrls, \
                        s.rolname::text, s.rolsuper OR s.rolbypassrls \
                 FROM pg_roles c, pg_roles s \
                 WHERE c.rolname = current_user AND s.rolname = session_user",
            )
            .fetch_one(pool)
            .await?;
        let mut problems = Vec::new();
        if superuser {
            problems.push(RoleProblem::Superuser);
        }
        if bypass {
            problems.push(RoleProblem::BypassRls);
        }
        if session != role && session_unsafe {
            problems.push(RoleProblem::SessionRole(session));
        }
        for table in &self.tables {
            let row: Option<(String, String, bool, bool, bool)> = sqlx::query_as(
                "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner)::text, \
                        pg_has_role(current_user, c.relowner, 'MEMBER') \
                          OR pg_has_role(session_user, c.relowner, 'MEMBER'), \
                        c.relrowsecurity, c.relforcerowsecurity \
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
            )
            .bind(table)
            .fetch_optional(pool)
            .await?;
            let Some((name, owner, owns, enabled, forced)) = row else {
                problems.push(RoleProblem::MissingTable(table.clone()));
                continue;
            };
            if owns {
                problems.push(RoleProblem::OwnsTable {
                    table: name.clone(),
                    owner,
                });
            }
            if !enabled {
                problems.push(RoleProblem::RlsDisabled(name));
            } else if !forced {
                problems.push(RoleProblem::RlsNotForced(name));
            }
        }
        for table in &self.unreadable {
            let readable: Option<bool> = sqlx::query_scalar(
                "SELECT has_table_privilege(current_user, c.oid, 'SELECT') \
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
            )
            .bind(table)
            .fetch_optional(pool)
            .await?;
            match readable {
                None => problems.push(RoleProblem::MissingTable(table.clone())),
                Some(true) => problems.push(RoleProblem::ReadsAcrossOrgs(table.clone())),
                Some(false) => {}
            }
        }
        let report = RoleReport { role, problems };
        if report.is_safe() {
            tracing::info!(role = %report.role, "database role is subject to row level security");
            Ok(report)
        } else if self.warn_only {
            tracing::warn!(report = %report, "unsafe database role for org data");
            Ok(report)
        } else {
            Err(RoleError::Unsafe(report))
        }
    }
}

/// Checks that row-level security protects the org-data `tables` from the role the pool
/// connects as: errors when the role is a superuser, has `BYPASSRLS`, owns (or is a member of
/// the owner of) a table, or a table lacks enabled and forced RLS. The role the connection
/// logged in as (`session_user`) is checked too: a pool that logs in as a superuser and
/// `SET ROLE`s to an application role is refused, since `RESET ROLE` lifts RLS. Call it at startup; use
/// [`RoleCheck::warn_only`] to log instead.
pub async fn check_role<T: AsRef<str>>(
    pool: &PgPool,
    tables: &[T],
) -> Result<RoleReport, RoleError> {
    RoleCheck::new(tables).run(pool).await
}
