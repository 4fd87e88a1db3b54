//! Test support for the Postgres backend: the database from `DATABASE_URL`, an application
//! role that RLS applies to, per-test tables, and a TCP proxy that can cut the connection.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;
use vapi_webhooks::OrgId;
use vapi_webhooks::postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use vapi_webhooks::postgres::sqlx::{self, PgPool};
use vapi_webhooks::postgres::{self as pg, StoreAccess};

/// The application role the assertions run as: LOGIN NOSUPERUSER NOBYPASSRLS, owns nothing.
pub const APP_ROLE: &str = "vapi_app_test";

/// Any fixed number; serialises role creation and grants across test processes.
const SETUP_LOCK: i64 = 0x7661_7069_7465_7374;

/// The test database: a superuser pool for setup and connect options for the app role.
pub struct TestDb {
    pub admin: PgPool,
    admin_opts: PgConnectOptions,
    pub database: String,
}

/// `Some(db)` when `DATABASE_URL` is set; otherwise the test is skipped with a note on stderr,
/// except under `CI=true`, where a missing database fails the test.
pub async fn test_db(test: &str) -> Option<TestDb> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: DATABASE_URL is not set, and CI=true requires the Postgres tests to run"
            );
        }
        eprintln!(
            "{test}: skipped: DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
        return None;
    };
    let admin_opts = PgConnectOptions::from_str(&url).expect("DATABASE_URL is a postgres URL");
    let admin = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(admin_opts.clone())
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to DATABASE_URL: {e}"));
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&admin)
        .await
        .unwrap();
    let db = TestDb {
        admin,
        admin_opts,
        database,
    };
    db.prepare().await;
    Some(db)
}

impl TestDb {
    /// Migrates (concurrently with other tests: `migrate` must cope), creates the app role once
    /// and grants it the crate's tables.
    async fn prepare(&self) {
        pg::migrate(&self.admin).await.expect("migrate");
        let mut tx = self.admin.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *tx)
            .await
            .unwrap();
        // Roles are cluster-wide; another database's tests may create it at the same moment.
        sqlx::raw_sql(&format!(
            "DO $$ BEGIN
                 CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        pg::grant_store_access(&self.admin, APP_ROLE, StoreAccess::ReadWrite)
            .await
            .unwrap();
    }

    /// Connect options of the superuser.
    #[allow(dead_code)]
    pub fn admin_options(&self) -> PgConnectOptions {
        self.admin_opts.clone()
    }

    /// Connect options for the app role (trust auth: same URL, another user).
    pub fn app_options(&self) -> PgConnectOptions {
        self.admin_opts.clone().username(APP_ROLE).password("")
    }

    /// A pool of `max` connections as the app role.
    pub async fn app_pool(&self, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .connect_with(self.app_options())
            .await
            .expect("connect as the app role")
    }

    /// A pool as the app role that reaches Postgres through `proxy`.
    pub fn app_pool_via(&self, proxy: &Proxy) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(
                self.app_options()
                    .host(&proxy.addr.ip().to_string())
                    .port(proxy.addr.port()),
            )
    }

    /// A fresh org-data table `(id uuid, org_id uuid, body text)` with the crate's RLS policy,
    /// owned by the superuser and granted to the app role.
    pub async fn org_table(&self) -> String {
        let table = format!("rls_{}", Uuid::new_v4().simple());
        sqlx::raw_sql(&format!(
            "CREATE TABLE {table} (id uuid PRIMARY KEY, org_id uuid NOT NULL, body text NOT NULL);"
        ))
        .execute(&self.admin)
        .await
        .unwrap();
        pg::enable_org_rls(&mut self.admin.acquire().await.unwrap(), &table)
            .await
            .unwrap();
        self.grant(&table).await;
        table
    }

    /// Drops a table made by [`TestDb::org_table`] (tests clean up when they pass).
    pub async fn drop_table(&self, table: &str) {
        sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {table};"))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    /// Grants the app role DML on `table`, serialised with the other tests' grants.
    pub async fn grant(&self, table: &str) {
        let mut tx = self.admin.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE};"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// A fresh database of its own, migrated and granted, for tests that touch every row of the
    /// crate's tables (key rotation). Dropped by [`TestDb::drop_database`].
    pub async fn fresh_database(&self) -> TestDb {
        let name = format!("vapi_wh_{}", Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("CREATE DATABASE {name};"))
            .execute(&self.admin)
            .await
            .unwrap();
        let admin_opts = self.admin_opts.clone().database(&name);
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(admin_opts.clone())
            .await
            .unwrap();
        let db = TestDb {
            admin,
            admin_opts,
            database: name,
        };
        db.prepare().await;
        db
    }

    /// Drops a database made by [`TestDb::fresh_database`]; `parent` runs the statement.
    pub async fn drop_database(self, parent: &TestDb) {
        self.admin.close().await;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);",
            self.database
        ))
        .execute(&parent.admin)
        .await
        .unwrap();
    }
}

/// A fresh organisation id.
pub fn org() -> OrgId {
    OrgId::new(Uuid::new_v4())
}

/// A TCP proxy in front of Postgres whose connections can be cut and restored.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let accept_up = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client); // down: refuse by closing at once
                    continue;
                }
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {} // dropping both ends cuts the connection
                    }
                });
            }
        });
        Self { addr, up, cut_tx }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The address of the Postgres server behind `DATABASE_URL`.
pub async fn postgres_addr(db: &TestDb) -> SocketAddr {
    let host = db.admin_opts.get_host().to_owned();
    let port = db.admin_opts.get_port();
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .expect("DATABASE_URL host resolves")
}
