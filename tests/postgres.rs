//! The Postgres backend against a real Postgres (`DATABASE_URL`), asserting as a role that is
//! neither superuser, nor BYPASSRLS, nor owner of the tables.

#[path = "support/pg.rs"]
mod pg;
#[path = "support/store_suite.rs"]
mod store_suite;

use std::time::SystemTime;

use pg::{APP_ROLE, org, test_db};
use uuid::Uuid;
use vapi_webhooks::credential::{CredentialConfig, KindName, SecretString};
use vapi_webhooks::postgres::sqlx::{self, PgPool};
use vapi_webhooks::postgres::{
    AdminError, EncryptionKey, MigrateError, PgStore, RoleCheck, RoleError, RoleProblem,
    begin_org_tx, check_role, migrate, rotate_encryption_key,
};
use vapi_webhooks::verify::{SecretError, SecretProvider};
use vapi_webhooks::{AssistantOrgStore, OrgId, TenantKey};

macro_rules! db {
    ($name:literal) => {
        match test_db($name).await {
            Some(db) => db,
            None => return,
        }
    };
}

async fn insert(pool: &PgPool, table: &str, org: OrgId, body: &str) -> Uuid {
    let id = Uuid::new_v4();
    let mut tx = begin_org_tx(pool, org).await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (id, org_id, body) VALUES ($1, $2, $3)"
    ))
    .bind(id)
    .bind(org.as_uuid())
    .bind(body)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

fn hmac(secret: &str) -> CredentialConfig {
    CredentialConfig::new(KindName::Hmac, SecretString::new(secret).unwrap())
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn pg_store_behaviour() {
    let db = db!("pg_store_behaviour");
    let pool = db.app_pool(2).await;
    let store = PgStore::new(pool, EncryptionKey::generate());
    store_suite::store_behaviour(|fx| {
        let store = store.clone();
        async move {
            for org in [fx.a, fx.b, fx.bare] {
                for key in &org.keys {
                    store.add_tenant_key(org.id, key).await.unwrap();
                }
                for credential in &org.credentials {
                    store.add_credential(org.id, credential).await.unwrap();
                }
            }
            store
        }
    })
    .await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn migrate_is_idempotent_and_concurrent() {
    let db = db!("migrate_is_idempotent_and_concurrent");
    let (a, b, c) = tokio::join!(migrate(&db.admin), migrate(&db.admin), migrate(&db.admin));
    for result in [a, b, c] {
        result.unwrap();
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM vapi_webhooks.schema_migrations ORDER BY version")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    // The crate never creates sqlx's migration table in the application's schema.
    let sqlx_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('vapi_webhooks._sqlx_migrations')::text")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(sqlx_table, None);

    // A database migrated by a newer crate is refused, and the refusal changes nothing.
    let fresh = db.fresh_database().await;
    sqlx::query(
        "INSERT INTO vapi_webhooks.schema_migrations (version, name) VALUES (99, 'future')",
    )
    .execute(&fresh.admin)
    .await
    .unwrap();
    let err = migrate(&fresh.admin).await.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::NewerSchema {
                found: 99,
                known: 4
            }
        ),
        "{err:?}"
    );
    fresh.drop_database(&db).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn org_transactions_are_isolated_on_one_connection() {
    let db = db!("org_transactions_are_isolated_on_one_connection");
    let table = db.org_table().await;
    // One connection: B's transaction runs on the very connection A's just used.
    let pool = db.app_pool(1).await;
    let (a, b) = (org(), org());

    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    assert_eq!(tx.org_id(), a);
    for body in ["a1", "a2"] {
        sqlx::query(&format!(
            "INSERT INTO {table} (id, org_id, body) VALUES ($1, $2, $3)"
        ))
        .bind(Uuid::new_v4())
        .bind(a.as_uuid())
        .bind(body)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = begin_org_tx(&pool, b).await.unwrap();
    let seen: Vec<String> = sqlx::query_scalar(&format!("SELECT body FROM {table}"))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, Vec::<String>::new(), "B sees none of A's rows");
    tx.commit().await.unwrap();

    // Outside an org-scoped transaction: the setting is gone and nothing is visible.
    let setting: Option<String> = sqlx::query_scalar("SELECT current_setting('app.org_id', true)")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(setting.as_deref().unwrap_or("").is_empty(), "{setting:?}");
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    // A plain transaction (not org-scoped) sees nothing either.
    let mut plain = pool.begin().await.unwrap();
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut *plain)
        .await
        .unwrap();
    assert_eq!(count, 0);
    plain.rollback().await.unwrap();

    // A again: exactly its two rows.
    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    let mut seen: Vec<String> = sqlx::query_scalar(&format!("SELECT body FROM {table}"))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    seen.sort();
    assert_eq!(seen, ["a1", "a2"]);
    // A rolled-back org transaction leaves no setting behind either.
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    db.drop_table(&table).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn cross_tenant_writes_are_refused() {
    let db = db!("cross_tenant_writes_are_refused");
    let table = db.org_table().await;
    let pool = db.app_pool(1).await;
    let (a, b) = (org(), org());
    let a_row = insert(&pool, &table, a, "a").await;
    let b_row = insert(&pool, &table, b, "b").await;

    // INSERT of a row for B from A's transaction: refused by WITH CHECK (42501).
    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    let err = sqlx::query(&format!(
        "INSERT INTO {table} (id, org_id, body) VALUES ($1, $2, 'x')"
    ))
    .bind(Uuid::new_v4())
    .bind(b.as_uuid())
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.unwrap();

    // UPDATE moving A's own row to B: refused by WITH CHECK.
    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    let err = sqlx::query(&format!("UPDATE {table} SET org_id = $1 WHERE id = $2"))
        .bind(b.as_uuid())
        .bind(a_row)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.unwrap();

    // UPDATE / DELETE of B's row from A's transaction: the row is not there for A.
    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    let updated = sqlx::query(&format!(
        "UPDATE {table} SET body = 'hijacked' WHERE id = $1"
    ))
    .bind(b_row)
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let deleted = sqlx::query(&format!("DELETE FROM {table}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1, "only A's own row");
    tx.commit().await.unwrap();

    // Without an org: no write at all.
    let err = sqlx::query(&format!(
        "INSERT INTO {table} (id, org_id, body) VALUES ($1, $2, 'x')"
    ))
    .bind(Uuid::new_v4())
    .bind(b.as_uuid())
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");

    // B's row is intact.
    let mut tx = begin_org_tx(&pool, b).await.unwrap();
    let body: String = sqlx::query_scalar(&format!("SELECT body FROM {table} WHERE id = $1"))
        .bind(b_row)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(body, "b");
    tx.commit().await.unwrap();
    db.drop_table(&table).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn other_orgs_rows_are_unreachable_without_any_filter() {
    let db = db!("other_orgs_rows_are_unreachable_without_any_filter");
    let table = db.org_table().await;
    let pool = db.app_pool(2).await;
    let (a, b) = (org(), org());
    let a_row = insert(&pool, &table, a, "mine").await;
    let b_row = insert(&pool, &table, b, "theirs").await;

    let mut tx = begin_org_tx(&pool, a).await.unwrap();
    // No WHERE at all: only A's row.
    let rows: Vec<(Uuid, Uuid, String)> =
        sqlx::query_as(&format!("SELECT id, org_id, body FROM {table}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(rows, vec![(a_row, *a.as_uuid(), "mine".to_owned())]);
    // Even by B's primary key.
    let by_id: Option<String> =
        sqlx::query_scalar(&format!("SELECT body FROM {table} WHERE id = $1"))
            .bind(b_row)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
    assert_eq!(by_id, None);
    // The setting cannot be "widened" from inside: another org id just shows that org's rows,
    // which is why the application must never let request data reach set_config.
    tx.commit().await.unwrap();

    // The superuser (RLS bypassed) sees both: the rows really are there.
    let all: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(all, 2);
    db.drop_table(&table).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn secrets_are_encrypted_at_rest() {
    let db = db!("secrets_are_encrypted_at_rest");
    let store = PgStore::new(db.app_pool(2).await, EncryptionKey::generate());
    let org = org();
    let secrets = [
        format!("hmac-{}", Uuid::new_v4()),
        format!("hdr-{}", Uuid::new_v4()),
    ];
    let mut ids = vec![store.add_credential(org, &hmac(&secrets[0])).await.unwrap()];
    let header = CredentialConfig::new(
        KindName::SecretHeader,
        SecretString::new(secrets[1].clone()).unwrap(),
    );
    ids.push(store.add_credential(org, &header).await.unwrap());

    // Every column of the rows, as the superuser: the ciphertext and the whole row text.
    let rows: Vec<(Vec<u8>, Vec<u8>, String)> = sqlx::query_as(
        "SELECT secret_ciphertext, secret_nonce, row_to_json(c)::text FROM vapi_webhooks.credentials c \
         WHERE org_id = $1",
    )
    .bind(org.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (ciphertext, nonce, row) in &rows {
        assert_eq!(nonce.len(), 12);
        for secret in &secrets {
            let s = secret.as_bytes();
            assert!(
                !ciphertext.windows(s.len()).any(|w| w == s),
                "plaintext in ciphertext"
            );
            assert!(!row.contains(secret.as_str()), "plaintext in row: {row}");
            assert!(!row.contains(&hex::encode(s)), "hex plaintext in row");
        }
        // Ciphertext = plaintext + 16-byte tag: the length matches a secret, the bytes do not.
        assert!(secrets.iter().any(|s| s.len() + 16 == ciphertext.len()));
    }
    // And it decrypts back with the right key.
    let loaded = store.credentials(Some(&org)).await.unwrap();
    let mut got: Vec<Vec<u8>> = loaded.iter().map(store_suite::secret_of).collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(got, want);

    // The table refuses a `secret` in the parameters, whoever writes it.
    let err = sqlx::query("UPDATE vapi_webhooks.credentials SET params = params || '{\"secret\":\"x\"}' WHERE id = $1")
        .bind(ids[0].as_uuid())
        .execute(&db.admin)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23514"), "{err}");
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn wrong_encryption_key_verifies_nothing() {
    let db = db!("wrong_encryption_key_verifies_nothing");
    let pool = db.app_pool(2).await;
    let right = PgStore::new(pool.clone(), EncryptionKey::generate());
    let org = org();
    let id = right
        .add_credential(org, &hmac("right-key-secret"))
        .await
        .unwrap();
    assert_eq!(right.credentials(Some(&org)).await.unwrap().len(), 1);

    // Another key: the credential is skipped (no error, no 500), so nothing verifies; the
    // warning names the org and the credential, never the secret.
    let wrong = PgStore::new(pool.clone(), EncryptionKey::generate());
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    assert!(wrong.credentials(Some(&org)).await.unwrap().is_empty());
    drop(guard);
    let logs = logs.text();
    assert!(logs.contains("skipping a stored credential"), "{logs}");
    assert!(logs.contains(&org.to_string()), "{logs}");
    assert!(logs.contains(&id.to_string()), "{logs}");
    assert!(!logs.contains("right-key-secret"), "{logs}");
    // A key with the *same id column* cannot be faked: force the wrong key's id onto the row.
    let wrong_key = EncryptionKey::generate();
    sqlx::query("UPDATE vapi_webhooks.credentials SET key_id = $1 WHERE org_id = $2")
        .bind(wrong_key.id())
        .bind(org.as_uuid())
        .execute(&db.admin)
        .await
        .unwrap();
    let wrong = PgStore::new(pool, wrong_key);
    assert!(wrong.credentials(Some(&org)).await.unwrap().is_empty());
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn ciphertext_moved_to_another_org_fails() {
    let db = db!("ciphertext_moved_to_another_org_fails");
    let store = PgStore::new(db.app_pool(2).await, EncryptionKey::generate());
    let (a, b) = (org(), org());
    let a_id = store.add_credential(a, &hmac("secret-of-a")).await.unwrap();
    let b_id = store.add_credential(b, &hmac("secret-of-b")).await.unwrap();

    // Copy A's ciphertext and nonce over B's credential: B's row no longer decrypts.
    sqlx::query(
        "UPDATE vapi_webhooks.credentials t SET secret_ciphertext = s.secret_ciphertext, \
         secret_nonce = s.secret_nonce FROM vapi_webhooks.credentials s WHERE s.id = $1 AND t.id = $2",
    )
    .bind(a_id.as_uuid())
    .bind(b_id.as_uuid())
    .execute(&db.admin)
    .await
    .unwrap();
    assert!(store.credentials(Some(&b)).await.unwrap().is_empty());
    // A is untouched.
    let a_creds = store.credentials(Some(&a)).await.unwrap();
    assert_eq!(store_suite::secret_of(&a_creds[0]), b"secret-of-a");

    // Re-assign A's whole row to B: bound to A, it does not verify for B.
    sqlx::query("UPDATE vapi_webhooks.credentials SET org_id = $1 WHERE id = $2")
        .bind(b.as_uuid())
        .bind(a_id.as_uuid())
        .execute(&db.admin)
        .await
        .unwrap();
    assert!(store.credentials(Some(&b)).await.unwrap().is_empty());
    assert!(store.credentials(Some(&a)).await.unwrap().is_empty());
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn rotation_through_not_after() {
    let db = db!("rotation_through_not_after");
    let store = PgStore::new(db.app_pool(2).await, EncryptionKey::generate());
    let org = org();
    let old = store
        .add_credential(org, &hmac("old-secret"))
        .await
        .unwrap();
    let new = store
        .add_credential(org, &hmac("new-secret"))
        .await
        .unwrap();
    let secrets = |creds: &[vapi_webhooks::Credential]| {
        let mut s: Vec<Vec<u8>> = creds.iter().map(store_suite::secret_of).collect();
        s.sort();
        s
    };
    assert_eq!(
        secrets(&store.credentials(Some(&org)).await.unwrap()),
        [b"new-secret".to_vec(), b"old-secret".to_vec()]
    );

    // Rotating out: old valid for another hour — both verify, and the expiry travels along.
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let in_an_hour = in_an_hour.replace_nanosecond(0).unwrap();
    assert!(
        store
            .expire_credential(org, old, Some(in_an_hour))
            .await
            .unwrap()
    );
    let creds = store.credentials(Some(&org)).await.unwrap();
    assert_eq!(
        secrets(&creds),
        [b"new-secret".to_vec(), b"old-secret".to_vec()]
    );
    let old_cred = creds
        .iter()
        .find(|c| store_suite::secret_of(c) == b"old-secret")
        .unwrap();
    assert_eq!(old_cred.expires(), Some(SystemTime::from(in_an_hour)));

    // Expired: only the new one.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    assert!(store.expire_credential(org, old, Some(past)).await.unwrap());
    assert_eq!(
        secrets(&store.credentials(Some(&org)).await.unwrap()),
        [b"new-secret".to_vec()]
    );
    // Still listed for the admin, with its expiry.
    let listed = store.list_credentials(org).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|c| c.id == old && c.not_after.is_some()));

    // Another org cannot expire or remove it.
    assert!(
        !store
            .expire_credential(pg::org(), new, Some(past))
            .await
            .unwrap()
    );
    assert!(!store.remove_credential(pg::org(), new).await.unwrap());
    // Removing: gone.
    assert!(store.remove_credential(org, new).await.unwrap());
    assert!(store.credentials(Some(&org)).await.unwrap().is_empty());
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn tenant_keys_admin() {
    let db = db!("tenant_keys_admin");
    let store = PgStore::new(db.app_pool(2).await, EncryptionKey::generate());
    let (a, b) = (org(), org());
    let key = TenantKey::PhoneNumber(format!("phone_{}", Uuid::new_v4()).into());
    store.add_tenant_key(a, &key).await.unwrap();
    store.add_tenant_key(a, &key).await.unwrap(); // idempotent
    match store.add_tenant_key(b, &key).await {
        Err(AdminError::TenantKeyTaken { owner, .. }) => assert_eq!(owner, a),
        other => panic!("expected TenantKeyTaken, got {other:?}"),
    }
    assert_eq!(store.org_for(&key).await.unwrap(), Some(a));
    assert_eq!(store.tenant_keys(a).await.unwrap(), vec![key.clone()]);
    assert!(!store.remove_tenant_key(b, &key).await.unwrap());
    assert!(store.remove_tenant_key(a, &key).await.unwrap());
    assert_eq!(store.org_for(&key).await.unwrap(), None);
    // An invalid credential is refused before anything is stored.
    let mut bad = hmac("s");
    bad.header = Some("x-not-for-hmac".into());
    assert!(matches!(
        store.add_credential(a, &bad).await,
        Err(AdminError::Credential(_))
    ));
    assert!(store.list_credentials(a).await.unwrap().is_empty());
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn encryption_key_rotation() {
    let parent = db!("encryption_key_rotation");
    // Rotation touches every row: a database of its own, so parallel tests keep their keys.
    let db = parent.fresh_database().await;
    let pool = db.app_pool(2).await;
    let (old_key, new_key) = (EncryptionKey::generate(), EncryptionKey::generate());
    let old_store = PgStore::new(pool.clone(), old_key.clone());
    let (a, b) = (org(), org());
    old_store
        .add_credential(a, &hmac("a-secret"))
        .await
        .unwrap();
    old_store
        .add_credential(b, &hmac("b-secret"))
        .await
        .unwrap();

    // During the rotation: new key current, old key readable.
    let both = PgStore::new(pool.clone(), new_key.clone()).with_previous_key(old_key.clone());
    both.add_credential(a, &hmac("a-second")).await.unwrap();
    assert_eq!(both.credentials(Some(&a)).await.unwrap().len(), 2);
    assert_eq!(
        old_store.credentials(Some(&a)).await.unwrap().len(),
        1,
        "old key reads only its own"
    );

    // A wrong "old" key: refused, nothing changed.
    let err = rotate_encryption_key(&db.admin, &[EncryptionKey::generate()], &new_key)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Decrypt { .. }), "{err:?}");
    assert!(!err.to_string().contains("a-secret"));
    assert_eq!(old_store.credentials(Some(&b)).await.unwrap().len(), 1);

    assert_eq!(
        rotate_encryption_key(&db.admin, std::slice::from_ref(&old_key), &new_key)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        rotate_encryption_key(&db.admin, std::slice::from_ref(&old_key), &new_key)
            .await
            .unwrap(),
        0
    );

    let new_only = PgStore::new(pool.clone(), new_key.clone());
    let mut a_secrets: Vec<Vec<u8>> = new_only
        .credentials(Some(&a))
        .await
        .unwrap()
        .iter()
        .map(store_suite::secret_of)
        .collect();
    a_secrets.sort();
    assert_eq!(a_secrets, [b"a-second".to_vec(), b"a-secret".to_vec()]);
    assert_eq!(
        store_suite::secret_of(&new_only.credentials(Some(&b)).await.unwrap()[0]),
        b"b-secret"
    );
    assert!(old_store.credentials(Some(&a)).await.unwrap().is_empty());
    let key_ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT key_id FROM vapi_webhooks.credentials")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(key_ids, [new_key.id().to_owned()]);

    pool.close().await;
    db.drop_database(&parent).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn check_role_errors_for_unsafe_roles() {
    let db = db!("check_role_errors_for_unsafe_roles");
    let table = db.org_table().await;
    let app = db.app_pool(1).await;

    // The superuser: refused, by default.
    match check_role(&db.admin, &[&table]).await {
        Err(RoleError::Unsafe(report)) => {
            assert!(
                report.problems.contains(&RoleProblem::Superuser),
                "{report}"
            );
        }
        other => panic!("superuser must be refused: {other:?}"),
    }
    // ...or only reported.
    let report = RoleCheck::new(&[&table])
        .warn_only()
        .run(&db.admin)
        .await
        .unwrap();
    assert!(!report.is_safe());

    // The app role on a table with forced RLS: safe.
    let report = check_role(&app, &[&table]).await.unwrap();
    assert_eq!(report.role, APP_ROLE);
    assert_eq!(report.problems, vec![]);

    // A table without RLS, one with RLS not forced, a missing one.
    let plain = format!("plain_{}", Uuid::new_v4().simple());
    let unforced = format!("unforced_{}", Uuid::new_v4().simple());
    let missing = format!("missing_{}", Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE TABLE {plain} (org_id uuid); CREATE TABLE {unforced} (org_id uuid); \
         ALTER TABLE {unforced} ENABLE ROW LEVEL SECURITY;"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    match check_role(&app, &[&plain, &unforced, &missing]).await {
        Err(RoleError::Unsafe(report)) => assert_eq!(
            report.problems,
            vec![
                RoleProblem::RlsDisabled(plain.clone()),
                RoleProblem::RlsNotForced(unforced.clone()),
                RoleProblem::MissingTable(missing.clone()),
            ]
        ),
        other => panic!("expected Unsafe, got {other:?}"),
    }

    // A table the app role owns: it could disable RLS.
    let owned = db.org_table().await;
    sqlx::raw_sql(&format!("ALTER TABLE {owned} OWNER TO {APP_ROLE};"))
        .execute(&db.admin)
        .await
        .unwrap();
    match check_role(&app, &[&owned]).await {
        Err(RoleError::Unsafe(report)) => assert_eq!(
            report.problems,
            vec![RoleProblem::OwnsTable {
                table: owned.clone(),
                owner: APP_ROLE.to_owned()
            }]
        ),
        other => panic!("expected Unsafe, got {other:?}"),
    }
    for t in [&table, &owned, &plain, &unforced] {
        db.drop_table(t).await;
    }
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn store_reports_unavailable_while_database_is_down_and_recovers() {
    let db = db!("store_reports_unavailable_while_database_is_down_and_recovers");
    let proxy = pg::Proxy::start(pg::postgres_addr(&db).await).await;
    let store = PgStore::new(db.app_pool_via(&proxy), EncryptionKey::generate());
    let org = org();
    let key = TenantKey::Assistant(format!("asst_{}", Uuid::new_v4()).into());
    store.add_tenant_key(org, &key).await.unwrap();
    store
        .add_credential(org, &hmac("down-secret"))
        .await
        .unwrap();
    assert_eq!(store.org_for(&key).await.unwrap(), Some(org));

    proxy.cut();
    assert!(store.org_for(&key).await.is_err(), "StoreError while down");
    assert!(matches!(
        store.credentials(Some(&org)).await,
        Err(SecretError::Unavailable(_))
    ));
    // A missing org is still a configuration error, not an outage.
    assert!(matches!(
        store.credentials(None).await,
        Err(SecretError::OrgRequired)
    ));

    proxy.restore();
    assert_eq!(store.org_for(&key).await.unwrap(), Some(org));
    assert_eq!(store.credentials(Some(&org)).await.unwrap().len(), 1);
}

mod extractor {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::FromRef;
    use axum::routing::post;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    use vapi_webhooks::postgres::OrgTransaction;
    use vapi_webhooks::{KeySource, OrgContext};

    use super::*;

    /// An application state holding the pool among other things.
    #[derive(Clone)]
    struct AppState {
        pool: PgPool,
    }

    impl FromRef<AppState> for PgPool {
        fn from_ref(state: &AppState) -> PgPool {
            state.pool.clone()
        }
    }

    async fn handler(OrgTransaction(tx): OrgTransaction) -> &'static str {
        tx.commit().await.unwrap();
        "ran"
    }

    async fn call(app: Router, org: Option<OrgId>) -> (StatusCode, String) {
        let mut req = Request::post("/hook").body(Body::empty()).unwrap();
        if let Some(org) = org {
            req.extensions_mut().insert(OrgContext::new(
                org,
                TenantKey::Assistant("asst".into()),
                KeySource::Payload("message.call.assistantId"),
            ));
        }
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
    async fn org_transaction_refuses_without_the_layers() {
        let db = db!("org_transaction_refuses_without_the_layers");
        let app = Router::new()
            .route("/hook", post(handler))
            .with_state(AppState {
                pool: db.app_pool(1).await,
            });
        assert_eq!(
            call(app.clone(), None).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"OrgTransaction needs an OrgContext: add OrgResolveLayer before the handler"}"#.to_owned()
            )
        );
        // An OrgContext alone (an org named by an unverified body) is not enough.
        assert_eq!(
            call(app, Some(org())).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"OrgTransaction needs a verified request: add SignatureVerifyLayer after OrgResolveLayer"}"#.to_owned()
            )
        );
    }
}

/// `OrgResolveLayer` + `SignatureVerifyLayer` over `PgStore` (and over `CachedStore<PgStore>`),
/// with the `OrgTransaction` extractor in the handler.
mod layers {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::routing::post;
    use http::{Request, StatusCode, header};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    use vapi_webhooks::postgres::OrgTransaction;
    use vapi_webhooks::reject::Reason;
    use vapi_webhooks::resolve::ResolveError;
    use vapi_webhooks::testing::Signer;
    use vapi_webhooks::verify::VerifyError;
    use vapi_webhooks::{
        CachedStore, Credential, Org, OrgResolveLayer, Rejection, SignatureVerifyLayer,
    };

    use super::*;

    #[derive(Clone)]
    struct AppState {
        pool: PgPool,
        table: Arc<str>,
        runs: Arc<AtomicUsize>,
    }

    impl axum::extract::FromRef<AppState> for PgPool {
        fn from_ref(state: &AppState) -> PgPool {
            state.pool.clone()
        }
    }

    async fn handler(
        State(state): State<AppState>,
        OrgTransaction(mut tx): OrgTransaction,
    ) -> &'static str {
        state.runs.fetch_add(1, Ordering::SeqCst);
        // No org_id filter, no org_id chosen by the handler's SQL beyond the transaction's own.
        sqlx::query(&format!(
            "INSERT INTO {} (id, org_id, body) VALUES ($1, NULLIF(current_setting('app.org_id', true), '')::uuid, 'event')",
            state.table
        ))
        .bind(Uuid::new_v4())
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        "stored"
    }

    /// The real stack: the org from the payload's assistant id, then its credentials.
    fn app(store: PgStore, state: AppState) -> Router {
        Router::new()
            .route("/hook", post(handler))
            .layer(SignatureVerifyLayer::new(store.clone()))
            .layer(OrgResolveLayer::new(store))
            .with_state(state)
    }

    /// A status update naming `assistant`.
    fn status_update(assistant: &str) -> String {
        serde_json::json!({"message": {"type": "status-update", "call": {"assistantId": assistant}}})
            .to_string()
    }

    /// A fresh assistant key, mapped to `org` in `store`.
    async fn assistant_of(store: &PgStore, org: OrgId) -> TenantKey {
        let key = TenantKey::Assistant(format!("asst_{}", Uuid::new_v4().simple()).into());
        store.add_tenant_key(org, &key).await.unwrap();
        key
    }

    /// Status, `Retry-After`, body, and which layer rejected (if one did).
    type Answer = (StatusCode, Option<String>, String, Option<&'static str>);

    async fn send(app: &Router, body: &str, credential: &Credential) -> Answer {
        let mut req = Request::post("/hook")
            .body(Body::from(body.to_owned()))
            .unwrap();
        req.headers_mut()
            .extend(Signer::new(credential).headers(body.as_bytes()));
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let rejected_by = res
            .extensions()
            .get::<Rejection>()
            .map(|r| match r.reason() {
                Reason::Resolve(ResolveError::Store(_)) => "resolve: store",
                Reason::Resolve(_) => "resolve",
                Reason::Verify(VerifyError::Provider(_)) => "verify: provider",
                Reason::Verify(_) => "verify",
                _ => "other",
            });
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            retry,
            String::from_utf8(body.to_vec()).unwrap(),
            rejected_by,
        )
    }

    fn ok(text: &str) -> Answer {
        (StatusCode::OK, None, text.to_owned(), None)
    }

    fn unauthorized(by: &'static str) -> Answer {
        (
            StatusCode::UNAUTHORIZED,
            None,
            r#"{"error":"unauthorized"}"#.to_owned(),
            Some(by),
        )
    }

    fn unavailable(by: &'static str) -> Answer {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("5".to_owned()),
            r#"{"error":"service unavailable"}"#.to_owned(),
            Some(by),
        )
    }

    async fn rows(pool: &PgPool, table: &str, org: OrgId) -> i64 {
        let mut tx = begin_org_tx(pool, org).await.unwrap();
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
    async fn verified_request_reaches_org_transaction_and_wrong_key_is_401() {
        let db = db!("verified_request_reaches_org_transaction_and_wrong_key_is_401");
        let table = db.org_table().await;
        let pool = db.app_pool(2).await;
        let (org, other) = (org(), org());
        let secret = format!("hmac-{}", Uuid::new_v4());
        let store = PgStore::new(pool.clone(), EncryptionKey::generate());
        let key = assistant_of(&store, org).await;
        store.add_credential(org, &hmac(&secret)).await.unwrap();
        let other_secret = format!("hmac-{}", Uuid::new_v4());
        let other_key = assistant_of(&store, other).await;
        store
            .add_credential(other, &hmac(&other_secret))
            .await
            .unwrap();
        let state = AppState {
            pool: pool.clone(),
            table: table.as_str().into(),
            runs: Arc::default(),
        };
        let signed_by = hmac(&secret).build().unwrap();
        let body = status_update(key.value());

        let app_ok = app(store.clone(), state.clone());
        assert_eq!(send(&app_ok, &body, &signed_by).await, ok("stored"));
        assert_eq!(
            rows(&pool, &table, org).await,
            1,
            "written under the resolved, verified org"
        );

        // Another secret: 401, handler not run.
        let forged = hmac("not-the-secret").build().unwrap();
        assert_eq!(send(&app_ok, &body, &forged).await, unauthorized("verify"));
        // The other org's own secret on this org's body: 401 (credentials follow the body's org).
        let other_signed = hmac(&other_secret).build().unwrap();
        assert_eq!(
            send(&app_ok, &body, &other_signed).await,
            unauthorized("verify")
        );
        // An assistant no org owns: 401 from the resolve layer, the same bytes.
        assert_eq!(
            send(&app_ok, &status_update("asst_nobody"), &signed_by).await,
            unauthorized("resolve")
        );
        // The right signature, but the server holds the wrong encryption key: 401 too, not 500.
        let wrong_key = PgStore::new(pool.clone(), EncryptionKey::generate());
        let app_wrong = app(wrong_key, state.clone());
        assert_eq!(
            send(&app_wrong, &body, &signed_by).await,
            unauthorized("verify")
        );
        assert_eq!(state.runs.load(Ordering::SeqCst), 1);
        assert_eq!(rows(&pool, &table, org).await, 1);

        // The other org's request is written under the other org only.
        let other_body = status_update(other_key.value());
        assert_eq!(
            send(&app_ok, &other_body, &other_signed).await,
            ok("stored")
        );
        assert_eq!(rows(&pool, &table, other).await, 1);
        assert_eq!(rows(&pool, &table, org).await, 1);
        db.drop_table(&table).await;
    }

    #[tokio::test]
    #[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
    async fn database_down_is_503_with_retry_after_and_recovers() {
        let db = db!("database_down_is_503_with_retry_after_and_recovers");
        let table = db.org_table().await;
        let proxy = pg::Proxy::start(pg::postgres_addr(&db).await).await;
        let pool = db.app_pool_via(&proxy);
        let org = org();
        let secret = format!("hmac-{}", Uuid::new_v4());
        let store = PgStore::new(pool.clone(), EncryptionKey::generate());
        let key = assistant_of(&store, org).await;
        store.add_credential(org, &hmac(&secret)).await.unwrap();
        let state = AppState {
            pool: pool.clone(),
            table: table.as_str().into(),
            runs: Arc::default(),
        };
        let app = app(store, state.clone());
        let signed_by = hmac(&secret).build().unwrap();
        let body = status_update(key.value());
        assert_eq!(send(&app, &body, &signed_by).await, ok("stored"));

        // The resolve layer is the first to need the database: it answers 503.
        proxy.cut();
        assert_eq!(
            send(&app, &body, &signed_by).await,
            unavailable("resolve: store")
        );
        assert_eq!(
            state.runs.load(Ordering::SeqCst),
            1,
            "handler not run while down"
        );

        proxy.restore();
        assert_eq!(send(&app, &body, &signed_by).await, ok("stored"));
        assert_eq!(state.runs.load(Ordering::SeqCst), 2);
        assert_eq!(rows(&pool, &table, org).await, 2);
        db.drop_table(&table).await;
    }

    async fn whoami(Org(org): Org) -> String {
        org.org_id.to_string()
    }

    /// `CachedStore<PgStore>` as both stores of the layers: after the first request, repeats
    /// are answered from the cache without a query — the database can change, or be gone.
    #[tokio::test]
    #[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
    async fn cached_pg_store_answers_repeats_without_the_database() {
        let db = db!("cached_pg_store_answers_repeats_without_the_database");
        let proxy = pg::Proxy::start(pg::postgres_addr(&db).await).await;
        let store = PgStore::new(db.app_pool_via(&proxy), EncryptionKey::generate());
        let org = org();
        let key = assistant_of(&store, org).await;
        let secret = format!("hmac-{}", Uuid::new_v4());
        let credential_id = store.add_credential(org, &hmac(&secret)).await.unwrap();
        let cached = CachedStore::new(store.clone());
        let app = Router::new()
            .route("/hook", post(whoami))
            .layer(SignatureVerifyLayer::new(cached.clone()))
            .layer(OrgResolveLayer::new(cached.clone()));
        let signed_by = hmac(&secret).build().unwrap();
        let body = status_update(key.value());
        assert_eq!(send(&app, &body, &signed_by).await, ok(&org.to_string()));

        // The database forgets the key and expires the credential; the cache still answers.
        assert!(store.remove_tenant_key(org, &key).await.unwrap());
        let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        assert!(
            store
                .expire_credential(org, credential_id, Some(an_hour_ago))
                .await
                .unwrap()
        );
        assert_eq!(store.org_for(&key).await.unwrap(), None);
        assert!(store.credentials(Some(&org)).await.unwrap().is_empty());
        assert_eq!(cached.org_for(&key).await.unwrap(), Some(org));
        assert_eq!(cached.credentials(Some(&org)).await.unwrap().len(), 1);
        assert_eq!(send(&app, &body, &signed_by).await, ok(&org.to_string()));

        // No database at all: still answered, so no query was made.
        proxy.cut();
        assert_eq!(send(&app, &body, &signed_by).await, ok(&org.to_string()));

        // Forgotten answers are asked again: the outage shows (errors are not cached) ...
        cached.invalidate_all();
        assert_eq!(
            send(&app, &body, &signed_by).await,
            unavailable("resolve: store")
        );
        assert_eq!(
            send(&app, &body, &signed_by).await,
            unavailable("resolve: store")
        );
        // ... and once the database is back, its current answer: the key is gone.
        proxy.restore();
        assert_eq!(send(&app, &body, &signed_by).await, unauthorized("resolve"));

        // Entries expire after the TTL: a fresh key, cached, then removed.
        let short = CachedStore::new(store.clone()).ttl(Duration::from_millis(200));
        let key = assistant_of(&store, org).await;
        assert_eq!(short.org_for(&key).await.unwrap(), Some(org));
        assert!(store.remove_tenant_key(org, &key).await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(short.org_for(&key).await.unwrap(), None);
    }
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn check_role_sees_through_set_role_from_a_superuser() {
    use vapi_webhooks::postgres::sqlx::postgres::PgPoolOptions;
    let db = db!("check_role_sees_through_set_role_from_a_superuser");
    let table = db.org_table().await;
    // Logs in as the superuser, then SET ROLE to the safe app role: `current_user` looks safe,
    // but RESET ROLE on the pooled connection lifts RLS.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query(&format!("SET ROLE {APP_ROLE}"))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(db.admin_options())
        .await
        .unwrap();
    let current: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, APP_ROLE);
    match check_role(&pool, &[&table]).await {
        Err(RoleError::Unsafe(report)) => {
            assert_eq!(report.role, APP_ROLE);
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| matches!(p, RoleProblem::SessionRole(_))),
                "{report}"
            );
        }
        other => panic!("a SET ROLE pool must be refused: {other:?}"),
    }
    // Logging in as the app role itself is safe.
    assert!(check_role(&db.app_pool(1).await, &[&table]).await.is_ok());
    db.drop_table(&table).await;
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn keys_postgres_cannot_hold_are_unknown_not_an_outage() {
    use vapi_webhooks::store::CachedStore;
    let db = db!("keys_postgres_cannot_hold_are_unknown_not_an_outage");
    let store = CachedStore::new(PgStore::new(
        db.app_pool(1).await,
        EncryptionKey::generate(),
    ));
    for key in [
        TenantKey::Assistant("abc\0def".into()),
        TenantKey::Slug("org-a\0".into()),
    ] {
        // Before: a database error (503 + Retry-After) on every such request.
        assert_eq!(store.org_for(&key).await.unwrap(), None, "{key:?}");
        assert_eq!(store.org_for(&key).await.unwrap(), None, "cached as a miss");
    }
}

#[tokio::test]
#[cfg_attr(vapi_no_postgres, ignore = "needs DATABASE_URL (a Postgres server)")]
async fn a_revoked_credential_is_refused_by_every_process_within_a_second() {
    use std::time::{Duration, Instant};
    use vapi_webhooks::postgres::watch_changes;
    use vapi_webhooks::store::CachedStore;

    let db = db!("a_revoked_credential_is_refused_by_every_process_within_a_second");
    let key = EncryptionKey::generate();
    let org = org();
    // Two "processes": each its own pool, store and hour-long cache, on one database.
    let admin_store = PgStore::new(db.app_pool(2).await, key.clone());
    let pool_b = db.app_pool(2).await;
    let cache_b =
        CachedStore::new(PgStore::new(pool_b.clone(), key.clone())).ttl(Duration::from_secs(3600));
    let watch = watch_changes(&pool_b, cache_b.clone()).await.unwrap();

    let id = admin_store
        .add_credential(
            org,
            &CredentialConfig::new(KindName::Bearer, SecretString::new("leaked-token").unwrap()),
        )
        .await
        .unwrap();
    let asst = TenantKey::Assistant(format!("asst-revoke-{}", Uuid::new_v4()).into());
    // Cached in B: the credential, and a miss for a key not added yet.
    let added = Instant::now();
    loop {
        if cache_b.credentials(Some(&org)).await.unwrap().len() == 1 {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(1),
            "the add never reached B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache_b.org_for(&asst).await.unwrap(), None);

    admin_store.remove_credential(org, id).await.unwrap();
    admin_store.add_tenant_key(org, &asst).await.unwrap();
    let revoked = Instant::now();
    loop {
        let credentials = cache_b.credentials(Some(&org)).await.unwrap().len();
        let owner = cache_b.org_for(&asst).await.unwrap();
        if credentials == 0 && owner == Some(org) {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still had {credentials} credential(s) and owner {owner:?} after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "revocation reached the other process in {:?}",
        revoked.elapsed()
    );
    watch.abort();
}
