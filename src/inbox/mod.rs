//! The durable inbox (feature `inbox`, on `postgres`): messages that expect no reply are
//! persisted before the `200`, then processed by workers, exactly once per database effect.
//!
//! ```text
//! request ─► OrgResolveLayer ─► SignatureVerifyLayer ─► InboxLayer ─┬─► inline handler
//!                                                        queued type │   (tool-calls, assistant-request, …)
//!                                                                    ▼
//!                                  vapi_webhooks.inbox (encrypted body, idempotent on org + delivery key)
//!                                                                    ▼
//!                       Worker × N (any process) ─► InboxHandler(job, org-scoped tx) ─► done, in the same tx
//! ```
//!
//! * **Ingest** ([`InboxLayer`], or [`Inbox::ingest`]): a message whose type the
//!   [`QueuePolicy`] queues (by default end-of-call-report, status-update, transcript,
//!   conversation-update, hang, speech-update, user-interrupted and unknown types) is written
//!   in one statement and answered `200 {}`. The same delivery again (a retry, a replay) finds
//!   its entry by (org, [`Verified::delivery`](crate::Verified)) and writes nothing. Types that need a reply are never
//!   queued.
//! * **Workers** ([`Worker`]) claim entries with `FOR UPDATE SKIP LOCKED` and a lease, fairly
//!   between orgs, and run the application's [`InboxHandler`] with the typed message, the
//!   [`OrgContext`](crate::OrgContext) and an org-scoped transaction; the entry is marked done
//!   in that transaction, so the handler's writes commit exactly once even if the worker dies at
//!   any instant. Failures are retried with [`Backoff`], then the entry is dead.
//! * **Visible**: [`Inbox::deliveries`] is the org's log (id, type, status, attempts, last
//!   error, received, finished — never body content); [`Inbox::redrive`] re-queues a dead
//!   entry; [`Inbox::purge_finished`] applies a retention period.
//! * **Safe at rest**: bodies are AES-256-GCM encrypted under the store's
//!   [`EncryptionKey`](crate::postgres::EncryptionKey), bound to org and entry id. The log table
//!   has forced row-level security; the queue tables, which span orgs, are readable only by the
//!   worker role ([`grant_inbox_access`]); [`RoleCheck::inbox`](crate::postgres::RoleCheck::inbox)
//!   checks both at startup.
//!
//! # Operating it
//!
//! * **Delivery key**: the verified delivery's own [`DeliveryKey`](crate::replay::DeliveryKey),
//!   the key the replay guard uses too, decides what counts as the same delivery.
//! * **Vacuum**: every claim updates a queue row and every completion deletes one, so the
//!   queue's head is dead rows until vacuumed. Migration 4 gives the queue tables aggressive
//!   per-table autovacuum settings; with autovacuum off, claims slow down as dead rows pile up.
//! * **Retention**: [`Inbox::purge_finished`] forgets finished entries, and with them their
//!   delivery keys: keep the retention longer than any replay you want refused (signed
//!   timestamps outside the verifier's tolerance are refused anyway).
//! * **Key rotation**: each body records its key id; give the old key with
//!   [`Inbox::with_previous_key`] until every entry under it is finished and purged
//!   ([`rotate_encryption_key`](crate::postgres::rotate_encryption_key) re-encrypts credentials
//!   only).
//!
//! # Example
//!
//! ```no_run
//! use vapi_webhooks::inbox::{
//!     BoxError, Inbox, InboxAccess, InboxHandler, InboxLayer, Job, Worker, grant_inbox_access,
//! };
//! use vapi_webhooks::postgres::{self, EncryptionKey, OrgTx, RoleCheck, sqlx::PgPool};
//! use vapi_webhooks::ServerMessage;
//!
//! struct Reports;
//!
//! #[async_trait::async_trait]
//! impl InboxHandler for Reports {
//!     async fn handle(&self, job: &Job, tx: &mut OrgTx) -> Result<(), BoxError> {
//!         if let ServerMessage::EndOfCallReport(_report) = &job.message {
//!             // write through `&mut **tx`; the worker commits with the entry's completion
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Deploy time, as the owner: the tables, and what each role may do.
//! let owner = PgPool::connect("postgres://owner@db/app").await?;
//! postgres::migrate(&owner).await?;
//! grant_inbox_access(&owner, "app", InboxAccess::Ingest).await?;
//! grant_inbox_access(&owner, "app_worker", InboxAccess::Work).await?;
//!
//! // The web process: ingest behind the two layers.
//! let key = EncryptionKey::from_base64(&std::env::var("VAPI_WEBHOOKS_KEY")?)?;
//! let app = PgPool::connect("postgres://app@db/app").await?;
//! RoleCheck::new(&["calls"]).inbox(InboxAccess::Ingest).run(&app).await?;
//! let inbox = Inbox::new(app, key);
//! let layer = InboxLayer::new(inbox.clone());
//!
//! // Workers, here or in another process, on the worker role.
//! let workers = PgPool::connect("postgres://app_worker@db/app").await?;
//! RoleCheck::new(&["calls"]).inbox(InboxAccess::Work).run(&workers).await?;
//! Worker::new(inbox.with_pool(workers), Reports)
//!     .concurrency(2)
//!     .max_attempts(8)
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! # let _ = layer;
//! # Ok(()) }
//! ```
//!
//! # Why not a job engine
//!
//! We evaluated the Postgres job engines against three needs: the handler's transaction must
//! be the one that completes the job (database effects exactly once), ingest must dedupe on a
//! key, and claiming must be fair between orgs. `underway` passes the worker's transaction to
//! the task (the first need), but has no dedupe key and serves one FIFO per queue. apalis'
//! Postgres storage acknowledges a job apart from the handler's work (at-least-once effects),
//! with neither dedupe nor per-tenant fairness. pgmq is plain SQL, so a consumer can delete
//! the message in its own transaction, but it has no dedupe, fairness would mean a queue (a
//! table) per org, and it wants an extension installed. graphile_worker has `job_key` dedupe,
//! but its named queues serialise rather than share fairly, and the task does not get the
//! completion's transaction. None encrypts payloads or protects them with row-level security,
//! and each brings its own schema and migrations. So the inbox is built on Postgres itself:
//! three tables in this crate's schema, `FOR UPDATE SKIP LOCKED` with a lease, a
//! least-recently-served-org claim, and one transaction for handler and completion.

mod layer;
mod policy;
mod store;
mod worker;

use sqlx::PgPool;

pub use self::layer::{InboxLayer, InboxService};
pub use self::policy::{DEFAULT_QUEUED, QueuePolicy, REPLY_TYPES};
pub use self::store::{Delivery, EntryId, Inbox, InboxError, Ingested, Redrive, Status};
pub use self::worker::{Backoff, BoxError, InboxHandler, Job, Worker};

/// The log table (forced row-level security), for [`check_role`](crate::postgres::check_role).
pub const INBOX_TABLE: &str = "vapi_webhooks.inbox";

/// The tables that span orgs (ids, orgs and times, no bodies): workers only.
pub const CROSS_ORG_TABLES: &[&str] = &["vapi_webhooks.inbox_queue", "vapi_webhooks.inbox_orgs"];

// Declared here rather than in `postgres`, which knows nothing of the inbox.
impl crate::postgres::RoleCheck {
    /// Also checks the inbox tables for a role with `access`: the log table's forced RLS, and
    /// for [`InboxAccess::Ingest`](InboxAccess::Ingest) that the role cannot read
    /// the queue tables, which span orgs.
    #[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
    pub fn inbox(mut self, access: InboxAccess) -> Self {
        self.tables.push(INBOX_TABLE.to_owned());
        if access == InboxAccess::Ingest {
            self.unreadable
                .extend(CROSS_ORG_TABLES.iter().map(|t| (*t).to_owned()));
        }
        self
    }
}

/// What a role may do with the inbox (see [`grant_inbox_access`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboxAccess {
    /// The request role: ingest, the delivery log and re-drive of its org (under RLS), and
    /// only `INSERT` on the queue, so it never reads across orgs.
    Ingest,
    /// The worker role: also claims from the queue across orgs, and purges. Its reads of the
    /// log are still under RLS, one org per transaction.
    Work,
}

/// Grants `role` what `access` needs on the inbox tables (run it as their owner, after
/// [`migrate`](crate::postgres::migrate)). The role name is quoted by the server.
pub async fn grant_inbox_access(
    pool: &PgPool,
    role: &str,
    access: InboxAccess,
) -> Result<(), sqlx::Error> {
    let template = match access {
        InboxAccess::Ingest => {
            "GRANT USAGE ON SCHEMA vapi_webhooks TO %1$I; \
             GRANT SELECT ON vapi_webhooks.schema_migrations TO %1$I; \
             GRANT SELECT, INSERT, UPDATE ON vapi_webhooks.inbox TO %1$I; \
             GRANT INSERT ON vapi_webhooks.inbox_queue TO %1$I; \
             GRANT USAGE ON SEQUENCE vapi_webhooks.inbox_queue_seq_seq TO %1$I;"
        }
        InboxAccess::Work => {
            "GRANT USAGE ON SCHEMA vapi_webhooks TO %1$I; \
             GRANT SELECT ON vapi_webhooks.schema_migrations TO %1$I; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON vapi_webhooks.inbox TO %1$I; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON vapi_webhooks.inbox_queue, \
                 vapi_webhooks.inbox_orgs TO %1$I; \
             GRANT USAGE ON SEQUENCE vapi_webhooks.inbox_queue_seq_seq TO %1$I;"
        }
    };
    let sql: String = sqlx::query_scalar("SELECT format($1::text, $2::text)")
        .bind(template)
        .bind(role)
        .fetch_one(pool)
        .await?;
    crate::postgres::run_grants(pool, &sql).await
}
