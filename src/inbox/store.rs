//! [`Inbox`]: ingest, the delivery log, admin calls, and the claim/complete steps workers use.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::policy::QueuePolicy;
use crate::org::{KeyKind, KeySource, OrgContext, OrgId, TenantKey};
use crate::postgres::{EncryptionKey, begin_org_tx};
use crate::resolve::payload_path;
use crate::vapi::ServerMessage;

/// Associated-data label of inbox bodies (credentials use another, so neither decrypts as the
/// other).
const BODY_LABEL: &[u8] = b"vapi-webhooks/inbox-body/v1\0";

/// The longest `last_error` kept, in characters.
const MAX_ERROR_CHARS: usize = 500;

/// The id of an inbox entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(Uuid);

impl EntryId {
    /// Wraps a UUID.
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    fn random() -> Self {
        Self(random_uuid())
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EntryId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// Where an entry is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Waiting for a worker (new, or waiting for its retry).
    Pending,
    /// Claimed by a worker.
    Processing,
    /// The handler committed.
    Done,
    /// Failed its last allowed attempt; re-drive it with [`Inbox::redrive`].
    Dead,
}

impl Status {
    /// `pending`, `processing`, `done` or `dead`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "done" => Self::Done,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an org's delivery log (no body content).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The entry.
    pub id: EntryId,
    /// The message type.
    pub message_type: String,
    /// The call the message is about, if it names one.
    pub call_id: Option<String>,
    /// Where it is.
    pub status: Status,
    /// Attempts made (a re-drive starts again from 0).
    pub attempts: u32,
    /// The last failure: the handler's error text, or what the worker saw.
    pub last_error: Option<String>,
    /// When it was accepted.
    pub received_at: OffsetDateTime,
    /// When it became done or dead.
    pub finished_at: Option<OffsetDateTime>,
}

/// What [`Inbox::ingest`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// A new entry.
    New(EntryId),
    /// The org already has an entry for this delivery (a retry or a replay): nothing written.
    Duplicate,
}

/// What [`Inbox::redrive`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redrive {
    /// The dead entry is pending again, with its attempts reset.
    Requeued,
    /// The entry exists but is not dead.
    NotDead(Status),
    /// The org has no such entry.
    NotFound,
}

/// Why an [`Inbox`] call failed. Names the org, never a body value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The database failed.
    #[error("inbox database error for org {org}: {source}")]
    Database {
        /// The organisation.
        org: OrgId,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// A database failure outside any one org (claiming, purging).
    #[error("inbox database error: {0}")]
    Backend(#[from] sqlx::Error),
}

impl InboxError {
    fn db(org: OrgId) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { org, source }
    }
}

/// The durable inbox on Postgres: see the [module docs](crate::inbox).
///
/// Cheap to clone. Connect its pool as the request role for ingest and the admin calls, and
/// give [`Worker`](crate::inbox::Worker)s an `Inbox` on a pool of a role with
/// [`InboxAccess::Work`](crate::inbox::InboxAccess::Work).
#[derive(Clone)]
pub struct Inbox {
    pool: PgPool,
    /// The first encrypts; all decrypt, chosen by key id.
    keys: Arc<[EncryptionKey]>,
    policy: Arc<QueuePolicy>,
    /// Wakes this process's idle workers when this process ingests.
    pub(crate) wake: Arc<Notify>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the pool: its connect options hold the database password.
        f.debug_struct("Inbox")
            .field("keys", &self.keys)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A claimed entry: who it is, and the claim's token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claim {
    pub(crate) id: EntryId,
    pub(crate) org: OrgId,
    pub(crate) token: Uuid,
    pub(crate) attempt: u32,
}

/// What [`Inbox::load`] found.
pub(crate) enum Load {
    /// The entry, to run.
    Entry(Loaded),
    /// The claim was lost: its lease expired and another worker took it.
    Lost,
    /// The queue named nothing runnable (finished, or not this org's): its row is deleted in
    /// the transaction, which the caller commits.
    Stale,
}

/// A claimed entry's content, read inside the processing transaction.
pub(crate) struct Loaded {
    pub(crate) context: OrgContext,
    pub(crate) body: Result<zeroize::Zeroizing<Vec<u8>>, &'static str>,
    pub(crate) received_at: OffsetDateTime,
}

impl Inbox {
    /// An inbox on `pool` that encrypts bodies under `key`, with the default [`QueuePolicy`].
    ///
    /// Run [`migrate`](crate::postgres::migrate) first.
    pub fn new(pool: PgPool, key: EncryptionKey) -> Self {
        Self {
            pool,
            keys: Arc::from(vec![key]),
            policy: Arc::new(QueuePolicy::default()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Also decrypts bodies encrypted under `key` (an older key, during a rotation).
    pub fn with_previous_key(mut self, key: EncryptionKey) -> Self {
        let mut keys = self.keys.to_vec();
        keys.push(key);
        self.keys = keys.into();
        self
    }

    /// Which message types are queued.
    pub fn queue_policy(mut self, policy: QueuePolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// The policy in use.
    pub fn policy(&self) -> &QueuePolicy {
        &self.policy
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The same inbox (keys, policy) on another pool, e.g. a worker role's.
    pub fn with_pool(&self, pool: PgPool) -> Self {
        Self {
            pool,
            ..self.clone()
        }
    }

    /// Persists a verified delivery of `org`, in one statement: idempotent on (org, delivery
    /// key). The body is encrypted, bound to the org and the new entry's id.
    ///
    /// Call it only for types the policy queues ([`QueuePolicy::is_queued`]); the
    /// [`InboxLayer`](crate::inbox::InboxLayer) does all of this for you.
    pub async fn ingest(
        &self,
        org: &OrgContext,
        delivery_key: &[u8],
        message: &ServerMessage,
        body: &[u8],
    ) -> Result<Ingested, InboxError> {
        let id = EntryId::random();
        let org_id = org.org_id;
        let key = &self.keys[0];
        let (nonce, ciphertext) = key.encrypt_bound(BODY_LABEL, &org_id, &id.0, body);
        let call_id = message.call().and_then(|call| call.id.as_deref());
        // set_config in the statement itself: the RLS check of the insert sees the org, and
        // the setting ends with the statement's implicit transaction.
        let done = sqlx::query(
            "WITH scope AS (SELECT set_config('app.org_id', $2::text, true)), \
             entry AS ( \
                 INSERT INTO vapi_webhooks.inbox (id, org_id, delivery_key, message_type, call_id, \
                     tenant_key_kind, tenant_key, key_source, body_ciphertext, body_nonce, key_id) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM scope \
                 ON CONFLICT (org_id, delivery_key) DO NOTHING \
                 RETURNING id, org_id) \
             INSERT INTO vapi_webhooks.inbox_queue (id, org_id) SELECT id, org_id FROM entry",
        )
        .bind(id.0)
        .bind(org_id.as_uuid())
        .bind(delivery_key)
        .bind(pg_text(message.type_name()))
        .bind(call_id.map(pg_text))
        .bind(org.key.kind().as_str())
        .bind(pg_text(org.key.value()))
        .bind(org.source.to_string())
        .bind(ciphertext)
        .bind(&nonce[..])
        .bind(key.id())
        .execute(&self.pool)
        .await
        .map_err(InboxError::db(org_id))?;
        if done.rows_affected() == 0 {
            return Ok(Ingested::Duplicate);
        }
        self.wake.notify_one();
        Ok(Ingested::New(id))
    }

    /// The org's delivery log, newest first, at most `limit` entries.
    pub async fn deliveries(&self, org: OrgId, limit: u32) -> Result<Vec<Delivery>, InboxError> {
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(InboxError::db(org))?;
        // No WHERE org_id: RLS supplies it.
        let rows = sqlx::query(
            "SELECT id, message_type, call_id, status, attempts, last_error, received_at, \
                    finished_at \
             FROM vapi_webhooks.inbox ORDER BY received_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(InboxError::db(org))?;
        tx.commit().await.map_err(InboxError::db(org))?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let attempts: i32 = row.try_get("attempts")?;
                Ok(Delivery {
                    id: EntryId(row.try_get("id")?),
                    message_type: row.try_get("message_type")?,
                    call_id: row.try_get("call_id")?,
                    status: Status::parse(&status).ok_or_else(|| {
                        sqlx::Error::Decode(format!("unknown inbox status {status:?}").into())
                    })?,
                    attempts: attempts.max(0) as u32,
                    last_error: row.try_get("last_error")?,
                    received_at: row.try_get("received_at")?,
                    finished_at: row.try_get("finished_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(InboxError::db(org))
    }

    /// Makes a dead entry of `org` pending again, its attempts reset; an entry of another org
    /// is [`Redrive::NotFound`].
    pub async fn redrive(&self, org: OrgId, id: EntryId) -> Result<Redrive, InboxError> {
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(InboxError::db(org))?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM vapi_webhooks.inbox WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(InboxError::db(org))?;
        let outcome = match status.as_deref().map(Status::parse) {
            None | Some(None) => Redrive::NotFound,
            Some(Some(Status::Dead)) => {
                sqlx::query(
                    "UPDATE vapi_webhooks.inbox SET status = 'pending', attempts = 0, \
                     finished_at = NULL WHERE id = $1",
                )
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(InboxError::db(org))?;
                sqlx::query(
                    "INSERT INTO vapi_webhooks.inbox_queue (id, org_id) \
                     VALUES ($1, NULLIF(current_setting('app.org_id', true), '')::uuid)",
                )
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(InboxError::db(org))?;
                Redrive::Requeued
            }
            Some(Some(other)) => Redrive::NotDead(other),
        };
        tx.commit().await.map_err(InboxError::db(org))?;
        if outcome == Redrive::Requeued {
            tracing::info!(org = %org, entry = %id, "inbox entry re-driven");
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// Deletes done and dead entries that finished more than `retention` ago, in every org that
    /// workers have served; returns how many. Needs [`InboxAccess::Work`](crate::inbox::InboxAccess::Work).
    ///
    /// A purged entry's delivery key is forgotten: the same delivery arriving again would be
    /// a new entry, so keep `retention` longer than any replay that could still verify.
    pub async fn purge_finished(&self, retention: Duration) -> Result<u64, InboxError> {
        let orgs: Vec<Uuid> =
            sqlx::query_scalar("SELECT org_id FROM vapi_webhooks.inbox_orgs ORDER BY org_id")
                .fetch_all(&self.pool)
                .await?;
        let mut purged = 0;
        for org in orgs.into_iter().map(OrgId::new) {
            // One transaction per org: RLS scopes each delete, and none holds locks for long.
            let mut tx = begin_org_tx(&self.pool, org)
                .await
                .map_err(InboxError::db(org))?;
            let done = sqlx::query(
                "DELETE FROM vapi_webhooks.inbox WHERE finished_at IS NOT NULL \
                 AND finished_at < now() - make_interval(secs => $1)",
            )
            .bind(retention.as_secs_f64())
            .execute(&mut *tx)
            .await
            .map_err(InboxError::db(org))?;
            tx.commit().await.map_err(InboxError::db(org))?;
            if done.rows_affected() > 0 {
                tracing::info!(org = %org, purged = done.rows_affected(), "purged finished inbox entries");
            }
            purged += done.rows_affected();
        }
        Ok(purged)
    }

    /// Claims up to `batch` ready entries of one org, fairly between orgs: the org served least
    /// recently that has a ready entry goes first, then its oldest ready entries. The attempts
    /// are counted here, in their own committed transaction, so a worker that dies mid-entry
    /// still used its attempt up. Empty: nothing is ready.
    pub(crate) async fn claim(
        &self,
        lease: Duration,
        batch: u32,
    ) -> Result<Vec<Claim>, InboxError> {
        let candidates: Vec<Uuid> = sqlx::query_scalar(
            "WITH RECURSIVE orgs(org_id) AS ( \
                 (SELECT org_id FROM vapi_webhooks.inbox_queue ORDER BY org_id LIMIT 1) \
                 UNION ALL \
                 SELECT (SELECT q.org_id FROM vapi_webhooks.inbox_queue q \
                         WHERE q.org_id > orgs.org_id ORDER BY q.org_id LIMIT 1) \
                 FROM orgs WHERE orgs.org_id IS NOT NULL) \
             SELECT o.org_id FROM orgs o \
             LEFT JOIN vapi_webhooks.inbox_orgs s ON s.org_id = o.org_id \
             WHERE o.org_id IS NOT NULL AND EXISTS ( \
                 SELECT 1 FROM vapi_webhooks.inbox_queue r WHERE r.org_id = o.org_id \
                 AND r.run_after <= now() AND (r.lease_until IS NULL OR r.lease_until < now())) \
             ORDER BY s.last_served_at NULLS FIRST, o.org_id LIMIT 8",
        )
        .fetch_all(&self.pool)
        .await?;
        for org in candidates.into_iter().map(OrgId::new) {
            let claims = self.claim_in(org, lease, batch).await?;
            if !claims.is_empty() {
                return Ok(claims);
            }
        }
        Ok(Vec::new())
    }

    async fn claim_in(
        &self,
        org: OrgId,
        lease: Duration,
        batch: u32,
    ) -> Result<Vec<Claim>, InboxError> {
        let token = random_uuid();
        let mut tx = self.pool.begin().await.map_err(InboxError::db(org))?;
        let rows: Vec<(Uuid, i32)> = sqlx::query_as(
            "WITH ready AS ( \
                 SELECT id FROM vapi_webhooks.inbox_queue \
                 WHERE org_id = $1 AND run_after <= now() \
                   AND (lease_until IS NULL OR lease_until < now()) \
                 ORDER BY run_after, seq LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE vapi_webhooks.inbox_queue q \
                 SET attempts = q.attempts + 1, token = $2, \
                     lease_until = now() + make_interval(secs => $3) \
                 FROM ready WHERE q.id = ready.id \
                 RETURNING q.id, q.attempts, q.run_after, q.seq), \
             served AS ( \
                 INSERT INTO vapi_webhooks.inbox_orgs (org_id, last_served_at) \
                 SELECT $1, clock_timestamp() WHERE EXISTS (SELECT 1 FROM claimed) \
                 ON CONFLICT (org_id) DO UPDATE SET last_served_at = EXCLUDED.last_served_at) \
             SELECT id, attempts FROM claimed ORDER BY run_after, seq",
        )
        .bind(org.as_uuid())
        .bind(token)
        .bind(lease.as_secs_f64())
        .bind(i64::from(batch.max(1)))
        .fetch_all(&mut *tx)
        .await
        .map_err(InboxError::db(org))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The org scope for the log's row, and the claim's commit without a disk sync (see
        // `bookkeeping_commit`), in one round trip.
        sqlx::query(
            "SELECT set_config('app.org_id', $1, true), \
                    set_config('synchronous_commit', 'off', true)",
        )
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .map_err(InboxError::db(org))?;
        let (ids, attempts): (Vec<Uuid>, Vec<i32>) = rows.iter().copied().unzip();
        sqlx::query(
            "UPDATE vapi_webhooks.inbox i SET status = 'processing', attempts = c.attempts \
             FROM unnest($1::uuid[], $2::int4[]) AS c(id, attempts) WHERE i.id = c.id",
        )
        .bind(&ids)
        .bind(&attempts)
        .execute(&mut *tx)
        .await
        .map_err(InboxError::db(org))?;
        tx.commit().await.map_err(InboxError::db(org))?;
        Ok(rows
            .into_iter()
            .map(|(id, attempts)| Claim {
                id: EntryId(id),
                org,
                token,
                attempt: attempts.max(0) as u32,
            })
            .collect())
    }

    /// Inside the processing transaction: locks the claim (so nobody else can take it while
    /// the handler runs) and reads the entry.
    pub(crate) async fn load(
        &self,
        conn: &mut PgConnection,
        claim: &Claim,
    ) -> Result<Load, sqlx::Error> {
        // LEFT JOIN: under RLS, a queue row that names an entry of another org (or a finished
        // one) finds nothing to run, and is dropped rather than claimed again forever.
        let row = sqlx::query(
            "SELECT i.status, i.tenant_key_kind, i.tenant_key, i.key_source, i.received_at, \
                    i.body_ciphertext, i.body_nonce, i.key_id \
             FROM vapi_webhooks.inbox_queue q LEFT JOIN vapi_webhooks.inbox i ON i.id = q.id \
             WHERE q.id = $1 AND q.token = $2 FOR UPDATE OF q",
        )
        .bind(claim.id.0)
        .bind(claim.token)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(Load::Lost);
        };
        let status: Option<String> = row.try_get("status")?;
        if !matches!(
            status.as_deref().and_then(Status::parse),
            Some(Status::Pending | Status::Processing)
        ) {
            sqlx::query("DELETE FROM vapi_webhooks.inbox_queue WHERE id = $1 AND token = $2")
                .bind(claim.id.0)
                .bind(claim.token)
                .execute(&mut *conn)
                .await?;
            return Ok(Load::Stale);
        }
        let kind: String = row.try_get("tenant_key_kind")?;
        let value: String = row.try_get("tenant_key")?;
        let source: String = row.try_get("key_source")?;
        let key_id: String = row.try_get("key_id")?;
        let nonce: Vec<u8> = row.try_get("body_nonce")?;
        let ciphertext: Vec<u8> = row.try_get("body_ciphertext")?;
        let body = match self.keys.iter().find(|k| k.id() == key_id) {
            None => Err("the body is encrypted under a key this process does not have"),
            Some(key) => key
                .decrypt_bound(BODY_LABEL, &claim.org, &claim.id.0, &nonce, &ciphertext)
                .ok_or("the body does not decrypt (wrong key, or not this org's entry)"),
        };
        Ok(Load::Entry(Loaded {
            context: OrgContext::new(claim.org, tenant_key(&kind, value), key_source(&source)),
            body,
            received_at: row.try_get("received_at")?,
        }))
    }

    /// In the processing transaction, after the handler: the entry is done. `false`: the claim
    /// was lost, and the caller must roll back.
    pub(crate) async fn complete(
        &self,
        conn: &mut PgConnection,
        claim: &Claim,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "WITH gone AS (DELETE FROM vapi_webhooks.inbox_queue WHERE id = $1 AND token = $2 \
                           RETURNING id) \
             UPDATE vapi_webhooks.inbox i SET status = 'done', finished_at = now() \
             FROM gone WHERE i.id = gone.id",
        )
        .bind(claim.id.0)
        .bind(claim.token)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// After a failed attempt (the processing transaction rolled back): schedules the retry
    /// after `retry_in`, or with `None` marks the entry dead.
    pub(crate) async fn fail(
        &self,
        claim: &Claim,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), InboxError> {
        let org = claim.org;
        let error = truncate(error);
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(InboxError::db(org))?;
        bookkeeping_commit(&mut tx)
            .await
            .map_err(InboxError::db(org))?;
        let owned = match retry_in {
            Some(delay) => sqlx::query(
                "UPDATE vapi_webhooks.inbox_queue SET token = NULL, lease_until = NULL, \
                 run_after = now() + make_interval(secs => $3) WHERE id = $1 AND token = $2",
            )
            .bind(claim.id.0)
            .bind(claim.token)
            .bind(delay.as_secs_f64()),
            None => {
                sqlx::query("DELETE FROM vapi_webhooks.inbox_queue WHERE id = $1 AND token = $2")
                    .bind(claim.id.0)
                    .bind(claim.token)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(InboxError::db(org))?
        .rows_affected()
            == 1;
        if owned {
            let (status, finished) = match retry_in {
                Some(_) => ("pending", false),
                None => ("dead", true),
            };
            sqlx::query(
                "UPDATE vapi_webhooks.inbox SET status = $2, last_error = $3, \
                 finished_at = CASE WHEN $4 THEN now() END WHERE id = $1",
            )
            .bind(claim.id.0)
            .bind(status)
            .bind(&error)
            .bind(finished)
            .execute(&mut *tx)
            .await
            .map_err(InboxError::db(org))?;
        }
        tx.commit().await.map_err(InboxError::db(org))
    }

    /// Gives a claim back unfinished (graceful shutdown): pending again, the attempt not
    /// counted.
    pub(crate) async fn release(&self, claim: &Claim) -> Result<(), InboxError> {
        let org = claim.org;
        let mut tx = begin_org_tx(&self.pool, org)
            .await
            .map_err(InboxError::db(org))?;
        bookkeeping_commit(&mut tx)
            .await
            .map_err(InboxError::db(org))?;
        let released = sqlx::query(
            "UPDATE vapi_webhooks.inbox_queue SET token = NULL, lease_until = NULL, \
             attempts = greatest(attempts - 1, 0) WHERE id = $1 AND token = $2",
        )
        .bind(claim.id.0)
        .bind(claim.token)
        .execute(&mut *tx)
        .await
        .map_err(InboxError::db(org))?;
        if released.rows_affected() == 1 {
            sqlx::query(
                "UPDATE vapi_webhooks.inbox SET status = 'pending', \
                 attempts = greatest(attempts - 1, 0) WHERE id = $1",
            )
            .bind(claim.id.0)
            .execute(&mut *tx)
            .await
            .map_err(InboxError::db(org))?;
        }
        tx.commit().await.map_err(InboxError::db(org))
    }
}

/// Commits the current transaction without waiting for the WAL flush (a disk sync each
/// otherwise, the main cost of a claim). Safe for the worker's bookkeeping: a database crash
/// can lose only the newest transactions, and WAL order means any later synchronous commit
/// (an entry's completion) makes this one durable first. A lost claim or failure record leaves
/// the entry claimable again: at worst an attempt goes uncounted.
pub(crate) async fn bookkeeping_commit(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(conn)
        .await
        .map(drop)
}

/// A random (v4) UUID from the operating system's CSPRNG.
fn random_uuid() -> Uuid {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Postgres `text` refuses NUL; an authentic message must never fail on its content.
fn pg_text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

fn truncate(error: &str) -> String {
    let mut text: String = pg_text(error).chars().take(MAX_ERROR_CHARS).collect();
    if text.len() < error.len() && error.chars().count() > MAX_ERROR_CHARS {
        text.push('…');
    }
    text
}

fn tenant_key(kind: &str, value: String) -> TenantKey {
    TenantKey::new(kind.parse().unwrap_or(KeyKind::Slug), value)
}

/// Reads back `KeySource`'s `Display`; what cannot be restored exactly is `Custom`.
fn key_source(text: &str) -> KeySource {
    if text == "path" {
        return KeySource::Path;
    }
    if let Some(path) = text.strip_prefix("payload:") {
        if let Some(known) = payload_path(path) {
            return KeySource::Payload(known);
        }
    }
    if let Some(name) = text.strip_prefix("query:") {
        return KeySource::Query(name.into());
    }
    if let Some(header) = text
        .strip_prefix("header:")
        .and_then(|name| http::HeaderName::from_bytes(name.as_bytes()).ok())
    {
        return KeySource::Header(header);
    }
    KeySource::Custom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources_round_trip() {
        for source in [
            KeySource::Path,
            KeySource::Payload("message.call.phoneNumberId"),
            KeySource::Query("tenant".into()),
            KeySource::Header(http::HeaderName::from_static("x-tenant")),
            KeySource::Custom,
        ] {
            assert_eq!(key_source(&source.to_string()), source);
        }
        assert_eq!(key_source("payload:somewhere.else"), KeySource::Custom);
    }

    #[test]
    fn errors_are_truncated_and_nul_free() {
        assert_eq!(truncate("a\0b"), "a\u{FFFD}b");
        let long = "x".repeat(MAX_ERROR_CHARS + 10);
        assert_eq!(truncate(&long).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }
}
