//! Inbox mode (`--inbox`, feature `inbox`): end-of-call reports and the other reply-less
//! messages are persisted before the `200` and stored by workers, in this process
//! (`--workers N`) or another one.
//!
//! Requests run as `vapi_example_app` (ingest, the delivery log, re-drive: its org only);
//! workers as `vapi_example_worker`, the only role that may read the queue across orgs. The
//! report handler writes the call and one row of `vapi_example.report_runs` (one per committed
//! run: how the tests see that each report was processed exactly once) in the entry's
//! transaction.

use std::str::FromStr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vapi_webhooks::inbox::{
    Backoff, BoxError, Inbox, InboxAccess, InboxHandler, Job, Redrive, Worker, grant_inbox_access,
};
use vapi_webhooks::postgres::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use vapi_webhooks::postgres::{OrgTx, RoleCheck, sqlx};
use vapi_webhooks::{OrgId, ServerMessage};

use crate::app::CallRecord;

/// The role workers run as.
pub const WORKER_ROLE: &str = "vapi_example_worker";

const SETUP_LOCK: i64 = 0x7661_7069_6578_6d70; // same as pg.rs: one setup at a time

const SETUP_SQL: &str = "
CREATE TABLE IF NOT EXISTS vapi_example.report_runs (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL,
    entry_id uuid NOT NULL,
    call_id text,
    ran_at timestamptz NOT NULL DEFAULT now()
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vapi_example_worker') THEN
        CREATE ROLE vapi_example_worker LOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END $$;
ALTER ROLE vapi_example_worker LOGIN;
GRANT USAGE ON SCHEMA vapi_example TO vapi_example_worker;
GRANT SELECT, INSERT ON vapi_example.calls, vapi_example.report_runs TO vapi_example_worker;
GRANT USAGE ON SEQUENCE vapi_example.calls_id_seq, vapi_example.report_runs_id_seq
    TO vapi_example_worker;
";

/// The inbox flags.
#[derive(Clone, Debug)]
pub struct Options {
    pub workers: usize,
    pub max_attempts: u32,
    pub handler_failure_rate: f64,
    pub lease: Duration,
    pub retry_base: Duration,
    pub async_commit: bool,
}

/// The request side's inbox, and the workers to run (none with `--workers 0`).
pub struct Backend {
    pub inbox: Inbox,
    pub worker: Option<Worker<ReportHandler>>,
}

/// Sets up the tables and roles, checks both roles, and builds the inbox and the workers.
pub async fn connect(
    url: &str,
    key: vapi_webhooks::postgres::EncryptionKey,
    request_pool: PgPool,
    options: &Options,
) -> Result<Backend, String> {
    let admin = crate::pg::admin_pool(url, 1).await?;
    setup(&admin)
        .await
        .map_err(|err| format!("setting up the inbox failed: {err}"))?;
    admin.close().await;

    RoleCheck::new(&["vapi_example.calls"])
        .inbox(InboxAccess::Ingest)
        .run(&request_pool)
        .await
        .map_err(|err| format!("the request role is unsafe for the inbox: {err}"))?;
    let inbox = Inbox::new(request_pool, key);
    if options.workers == 0 {
        tracing::info!("inbox: ingest only (--workers 0); another process runs the workers");
        return Ok(Backend {
            inbox,
            worker: None,
        });
    }
    // Logs in as the worker role itself: a `SET ROLE` from the owner could be undone with
    // `RESET ROLE`, and `check_role` refuses such a pool.
    let worker_options = PgConnectOptions::from_str(url)
        .map_err(|err| format!("bad database URL: {err}"))?
        .username(WORKER_ROLE);
    let workers = PgPoolOptions::new()
        .max_connections(options.workers as u32 + 2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(worker_options);
    RoleCheck::new(&["vapi_example.calls", "vapi_example.report_runs"])
        .inbox(InboxAccess::Work)
        .run(&workers)
        .await
        .map_err(|err| format!("the worker role is unsafe for the inbox: {err}"))?;
    let worker = Worker::new(
        inbox.with_pool(workers),
        ReportHandler {
            failure_rate: options.handler_failure_rate,
        },
    )
    .concurrency(options.workers)
    .max_attempts(options.max_attempts)
    .lease(options.lease)
    .async_commit(options.async_commit)
    .backoff(Backoff {
        base: options.retry_base,
        max: options.retry_base.saturating_mul(64),
    });
    tracing::info!(
        workers = options.workers,
        max_attempts = options.max_attempts,
        "inbox workers configured"
    );
    Ok(Backend {
        inbox,
        worker: Some(worker),
    })
}

async fn setup(admin: &PgPool) -> Result<(), sqlx::Error> {
    crate::pg::setup_schema(admin, SETUP_LOCK, SETUP_SQL, "vapi_example.report_runs").await?;
    grant_inbox_access(admin, crate::pg::APP_ROLE, InboxAccess::Ingest).await?;
    grant_inbox_access(admin, WORKER_ROLE, InboxAccess::Work).await
}

/// The end-of-call report handler of the inline mode, run by the workers.
#[derive(Clone, Debug)]
pub struct ReportHandler {
    /// Probability that a run fails after writing, before the commit (`--handler-failure-rate`).
    pub failure_rate: f64,
}

#[async_trait::async_trait]
impl InboxHandler for ReportHandler {
    async fn handle(&self, job: &Job, tx: &mut OrgTx) -> Result<(), BoxError> {
        let ServerMessage::EndOfCallReport(report) = &job.message else {
            tracing::debug!(org = %job.org.org_id, message_type = job.message.type_name(), "inbox message");
            return Ok(());
        };
        let record = CallRecord {
            call_id: report.call.as_ref().and_then(|call| call.id.clone()),
            ended_reason: report.ended_reason.as_ref().map(|r| r.as_str().to_owned()),
            received_at: String::new(),
            summary: report.summary().map(str::to_owned),
        };
        crate::pg::PgCalls::store_in(tx, &record, job.received_at).await?;
        sqlx::query(
            "INSERT INTO vapi_example.report_runs (org_id, entry_id, call_id) \
             VALUES (NULLIF(current_setting('app.org_id', true), '')::uuid, $1, $2)",
        )
        .bind(job.id.as_uuid())
        .bind(crate::pg::pg_text(record.call_id.as_deref()))
        .execute(&mut **tx)
        .await?;
        if self.failure_rate > 0.0 && random_fraction() < self.failure_rate {
            return Err("simulated handler failure (--handler-failure-rate)".into());
        }
        tracing::info!(org = %job.org.org_id, entry = %job.id, attempt = job.attempt, "end-of-call report stored");
        Ok(())
    }
}

/// A uniform number in [0, 1), from a v4 UUID's last 48 bits (all random; the version and
/// variant bits are elsewhere).
fn random_fraction() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() & ((1 << 48) - 1);
    bits as f64 / (1u64 << 48) as f64
}

/// One line of `GET /api/deliveries`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    id: String,
    #[serde(rename = "type")]
    message_type: String,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    received_at: String,
    call_id: Option<String>,
}

/// `GET /api/deliveries`: the org's delivery log, newest first.
pub async fn deliveries(inbox: &Inbox, org: OrgId) -> Response {
    match inbox.deliveries(org, 10_000).await {
        Ok(list) => axum::Json(
            list.into_iter()
                .map(|d| DeliveryView {
                    id: d.id.to_string(),
                    message_type: d.message_type,
                    status: d.status.as_str(),
                    attempts: d.attempts,
                    last_error: d.last_error,
                    received_at: d
                        .received_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    call_id: d.call_id,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(err) => {
            tracing::warn!(org = %org, error = %err, "could not list deliveries");
            crate::app::unavailable()
        }
    }
}

/// `POST /api/deliveries/{id}/retry`: re-drives a dead entry of the org.
pub async fn retry(inbox: &Inbox, org: OrgId, id: &str) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such delivery" })),
        )
            .into_response()
    };
    let Ok(id) = id.parse() else {
        return not_found();
    };
    match inbox.redrive(org, id).await {
        Ok(Redrive::Requeued) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "id": id.to_string(), "status": "pending" })),
        )
            .into_response(),
        Ok(Redrive::NotDead(status)) => (
            StatusCode::CONFLICT,
            axum::Json(
                serde_json::json!({ "error": format!("the delivery is {status}, not dead") }),
            ),
        )
            .into_response(),
        Ok(Redrive::NotFound) => not_found(),
        Err(err) => {
            tracing::warn!(org = %org, error = %err, "could not re-drive a delivery");
            crate::app::unavailable()
        }
    }
}
