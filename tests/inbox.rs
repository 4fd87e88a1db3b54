//! The durable inbox against a real Postgres (`DATABASE_URL`).
//!
//! Its own harness (`harness = false`): `inbox serve ARGS…` is the example server — this
//! binary, re-executed as a child process that tests SIGKILL and restart — and anything else
//! runs the tests in order (a non-flag argument filters them by name). Each test gets a fresh
//! database. Without `DATABASE_URL` every test prints that it skipped; under `CI=true` that is
//! a failure.

#[path = "support/pg.rs"]
mod testdb;

#[path = "../examples/server/main.rs"]
#[allow(dead_code)]
mod server;

// The example's modules refer to each other as `crate::…`.
use server::{app, inbox, pg, tenants};

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testdb::{APP_ROLE, TestDb};
use tokio::io::AsyncBufReadExt;
use uuid::Uuid;
use vapi_webhooks::inbox::{
    BoxError, EntryId, Inbox, InboxAccess, InboxHandler, Ingested, Job, Redrive, Status, Worker,
    grant_inbox_access,
};
use vapi_webhooks::postgres::sqlx::postgres::PgPoolOptions;
use vapi_webhooks::postgres::sqlx::{self, PgPool};
use vapi_webhooks::postgres::{EncryptionKey, OrgTx, RoleCheck, RoleProblem, begin_org_tx};
use vapi_webhooks::testing::Signer;
use vapi_webhooks::{KeySource, OrgContext, OrgId, ServerMessage, TenantKey};

const WORKER_ROLE: &str = "vapi_worker_test";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json"
);

/// A test: `false` when it skipped (no database).
type TestFn = fn() -> Pin<Box<dyn Future<Output = bool>>>;

const TESTS: &[(&str, TestFn)] = &[
    (
        "request_role_reads_only_its_org_and_bodies_are_encrypted",
        || Box::pin(request_role_reads_only_its_org_and_bodies_are_encrypted()),
    ),
    (
        "a_new_org_is_served_within_2s_behind_a_5000_entry_backlog",
        || Box::pin(a_new_org_is_served_within_2s_behind_a_5000_entry_backlog()),
    ),
    (
        "ingest_only_process_killed_then_workers_store_each_report_once",
        || Box::pin(ingest_only_process_killed_then_workers_store_each_report_once()),
    ),
    (
        "worker_killed_mid_batch_and_restarted_stores_each_report_once",
        || Box::pin(worker_killed_mid_batch_and_restarted_stores_each_report_once()),
    ),
    (
        "failing_handler_is_retried_until_every_report_is_stored",
        || Box::pin(failing_handler_is_retried_until_every_report_is_stored()),
    ),
    ("dead_entries_are_redriven_by_their_org_only", || {
        Box::pin(dead_entries_are_redriven_by_their_org_only())
    }),
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "serve") {
        let argv = std::iter::once(OsString::from("server")).chain(args[2..].iter().cloned());
        return server::run(argv);
    }
    let names: Vec<String> = args[1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filter = names.iter().find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut failed = Vec::new();
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
        .collect();
    let mut skipped = 0;
    println!("\nrunning {} tests", selected.len());
    for (name, test) in &selected {
        let started = Instant::now();
        // The panic message is printed by the panic hook; a failure does not stop the others.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test())));
        match outcome {
            Ok(true) => println!(
                "test {name} ... ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
            Ok(false) => {
                println!("test {name} ... skipped (DATABASE_URL is not set)");
                skipped += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; {skipped} skipped",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len() - skipped,
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A fresh database with both roles granted, or `None` (skipped; a failure under `CI=true`).
async fn fresh(test: &str) -> Option<(TestDb, TestDb)> {
    let parent = testdb::test_db(test).await?;
    let db = parent.fresh_database().await;
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN
             CREATE ROLE {WORKER_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    grant_inbox_access(&db.admin, APP_ROLE, InboxAccess::Ingest)
        .await
        .unwrap();
    grant_inbox_access(&db.admin, WORKER_ROLE, InboxAccess::Work)
        .await
        .unwrap();
    Some((parent, db))
}

async fn pool_as(db: &TestDb, role: &str, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .connect_with(db.app_options().username(role))
        .await
        .unwrap()
}

fn context(org: OrgId) -> OrgContext {
    OrgContext::new(org, TenantKey::Slug("t".into()), KeySource::Path)
}

fn report_body(call_id: &str, marker: &str) -> Vec<u8> {
    let mut message: Value = serde_json::from_slice(&std::fs::read(FIXTURE).unwrap()).unwrap();
    message["message"]["call"]["id"] = json!(call_id);
    // Body text the handler never stores, and a secret as Vapi echoes them.
    message["message"]["transcript"] = json!(format!("transcript {marker}"));
    message["message"]["assistant"] = json!({"serverUrlSecret": format!("secret-{marker}")});
    serde_json::to_vec(&message).unwrap()
}

async fn ingest(inbox: &Inbox, org: OrgId, body: &[u8]) -> Ingested {
    let message = ServerMessage::from_slice(body).unwrap();
    // Any bytes that identify the delivery; the layer derives them with `delivery_key`.
    let key = Sha256::digest(body);
    inbox
        .ingest(&context(org), &key, &message, body)
        .await
        .unwrap()
}

// (6) and (7), in process: what the request role can see, and what is stored.
async fn request_role_reads_only_its_org_and_bodies_are_encrypted() -> bool {
    let Some((parent, db)) =
        fresh("request_role_reads_only_its_org_and_bodies_are_encrypted").await
    else {
        return false;
    };
    let app = db.app_pool(4).await;
    let worker_pool = pool_as(&db, WORKER_ROLE, 4).await;
    let key = EncryptionKey::generate();
    let inbox = Inbox::new(app.clone(), key.clone());
    let (a, b) = (testdb::org(), testdb::org());
    let marker = format!("MARKER-{}", Uuid::new_v4().simple());

    let body_a = report_body("call-a", &marker);
    let Ingested::New(entry_a) = ingest(&inbox, a, &body_a).await else {
        panic!("new entry expected")
    };
    // The same delivery again: no second entry.
    assert_eq!(ingest(&inbox, a, &body_a).await, Ingested::Duplicate);
    let Ingested::New(entry_b) = ingest(&inbox, b, &report_body("call-b", &marker)).await else {
        panic!("new entry expected")
    };

    // The log: each org sees its own entry only.
    let log_a = inbox.deliveries(a, 100).await.unwrap();
    assert_eq!(log_a.len(), 1);
    assert_eq!(log_a[0].id, entry_a);
    assert_eq!(log_a[0].status, Status::Pending);
    assert_eq!(log_a[0].call_id.as_deref(), Some("call-a"));
    assert_eq!(inbox.deliveries(b, 100).await.unwrap()[0].id, entry_b);

    // Raw SQL as the request role: RLS hides B's rows inside A's scope and all rows outside.
    let mut tx = begin_org_tx(&app, a).await.unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM vapi_webhooks.inbox")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(ids, vec![*entry_a.as_uuid()]);
    let moved = sqlx::query("UPDATE vapi_webhooks.inbox SET attempts = 99 WHERE id = $1")
        .bind(entry_b.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 0, "A's scope cannot touch B's entry");
    tx.rollback().await.unwrap();
    let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM vapi_webhooks.inbox")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(unscoped, 0);
    // The cross-org tables are not readable by the request role at all.
    for table in ["vapi_webhooks.inbox_queue", "vapi_webhooks.inbox_orgs"] {
        let err = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&app)
            .await
            .unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{table}: {err}"
        );
    }
    // Re-drive across orgs is "not found", never a change.
    assert_eq!(inbox.redrive(a, entry_b).await.unwrap(), Redrive::NotFound);
    assert_eq!(
        inbox.redrive(a, entry_a).await.unwrap(),
        Redrive::NotDead(Status::Pending)
    );

    // The role check: the request role passes; a role that can read the queue does not.
    RoleCheck::new(&[] as &[&str])
        .inbox(InboxAccess::Ingest)
        .run(&app)
        .await
        .expect("request role is safe");
    let report = RoleCheck::new(&[] as &[&str])
        .inbox(InboxAccess::Ingest)
        .warn_only()
        .run(&worker_pool)
        .await
        .unwrap();
    assert!(
        report.problems.contains(&RoleProblem::ReadsAcrossOrgs(
            "vapi_webhooks.inbox_queue".into()
        )),
        "{report}"
    );
    RoleCheck::new(&[] as &[&str])
        .inbox(InboxAccess::Work)
        .run(&worker_pool)
        .await
        .expect("worker role is safe for its access");

    // At rest: the body is ciphertext, and a ciphertext moved to another org's entry does not
    // decrypt (the worker refuses it instead of handing B's body to A).
    let (ciphertext, nonce): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT body_ciphertext, body_nonce FROM vapi_webhooks.inbox WHERE id = $1")
            .bind(entry_a.as_uuid())
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert!(!contains(&ciphertext, marker.as_bytes()));
    sqlx::query(
        "UPDATE vapi_webhooks.inbox SET body_ciphertext = $2, body_nonce = $3 WHERE id = $1",
    )
    .bind(entry_b.as_uuid())
    .bind(&ciphertext)
    .bind(&nonce)
    .execute(&db.admin)
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = Worker::new(
        inbox.with_pool(worker_pool.clone()),
        Recorder {
            seen: seen.clone(),
            delay: Duration::ZERO,
        },
    )
    .max_attempts(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_until(Duration::from_secs(20), || async {
        let a_done = inbox.deliveries(a, 10).await.unwrap()[0].status == Status::Done;
        let b_dead = inbox.deliveries(b, 10).await.unwrap()[0].status == Status::Dead;
        a_done && b_dead
    })
    .await;
    let _ = stop.send(());
    run.await.unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[(a, entry_a)]);
    let b_log = inbox.deliveries(b, 10).await.unwrap();
    let error = b_log[0].last_error.as_deref().unwrap();
    assert!(error.contains("does not decrypt"), "{error}");
    assert!(!error.contains(&marker));

    // The request role may insert into the queue: a row naming B's (dead) entry under A runs
    // nothing, is dropped, and B's entry stays as it was.
    sqlx::query("INSERT INTO vapi_webhooks.inbox_queue (id, org_id) VALUES ($1, $2)")
        .bind(entry_b.as_uuid())
        .bind(a.as_uuid())
        .execute(&app)
        .await
        .unwrap();
    let worker = Worker::new(
        inbox.with_pool(worker_pool.clone()),
        Recorder {
            seen: seen.clone(),
            delay: Duration::ZERO,
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_until(Duration::from_secs(20), || async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM vapi_webhooks.inbox_queue")
            .fetch_one(&db.admin)
            .await
            .unwrap();
        queued == 0
    })
    .await;
    let _ = stop.send(());
    run.await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        inbox.deliveries(b, 10).await.unwrap()[0].status,
        Status::Dead
    );

    // Purging finished entries needs the worker role; both entries are finished.
    assert!(inbox.purge_finished(Duration::ZERO).await.is_err());
    assert_eq!(
        inbox
            .with_pool(worker_pool.clone())
            .purge_finished(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "nothing finished an hour ago"
    );
    assert_eq!(
        inbox
            .with_pool(worker_pool)
            .purge_finished(Duration::ZERO)
            .await
            .unwrap(),
        2
    );
    assert!(inbox.deliveries(a, 10).await.unwrap().is_empty());

    db.drop_database(&parent).await;
    true
}

/// Records what it handled, after an optional delay (the handler's work).
struct Recorder {
    seen: Arc<Mutex<Vec<(OrgId, EntryId)>>>,
    delay: Duration,
}

#[async_trait::async_trait]
impl InboxHandler for Recorder {
    async fn handle(&self, job: &Job, tx: &mut OrgTx) -> Result<(), BoxError> {
        // A write in the scoped transaction, so the handler really uses it.
        let visible: i64 =
            sqlx::query_scalar("SELECT count(*) FROM vapi_webhooks.inbox WHERE id = $1")
                .bind(job.id.as_uuid())
                .fetch_one(&mut **tx)
                .await?;
        assert_eq!(
            visible, 1,
            "the job's own entry is visible in its org's scope"
        );
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.seen.lock().unwrap().push((job.org.org_id, job.id));
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn wait_until<F, Fut>(limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// (5) Fairness: 2 workers, 5,000 entries of one org, then one entry of another.
async fn a_new_org_is_served_within_2s_behind_a_5000_entry_backlog() -> bool {
    let Some((parent, db)) =
        fresh("a_new_org_is_served_within_2s_behind_a_5000_entry_backlog").await
    else {
        return false;
    };
    let app = db.app_pool(8).await;
    let inbox = Inbox::new(app.clone(), EncryptionKey::generate());
    let (busy, other) = (testdb::org(), testdb::org());
    let bodies: Vec<Vec<u8>> = (0..5000)
        .map(|i| report_body(&format!("backlog-{i}"), "x"))
        .collect();
    futures_util::stream::iter(bodies.iter())
        .for_each_concurrent(8, |body| {
            let inbox = inbox.clone();
            async move {
                assert!(matches!(ingest(&inbox, busy, body).await, Ingested::New(_)));
            }
        })
        .await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker_pool = pool_as(&db, WORKER_ROLE, 4).await;
    // 2 ms of work per entry: the backlog takes several seconds to drain.
    let worker = Worker::new(
        inbox.with_pool(worker_pool),
        Recorder {
            seen: seen.clone(),
            delay: Duration::from_millis(2),
        },
    )
    .concurrency(2);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let done = |seen: &Arc<Mutex<Vec<(OrgId, EntryId)>>>| seen.lock().unwrap().len();
    wait_until(Duration::from_secs(30), || async { done(&seen) >= 200 }).await;

    let sent = Instant::now();
    let Ingested::New(new) = ingest(&inbox, other, &report_body("newcomer", "x")).await else {
        panic!("new entry expected")
    };
    let mut waited = Duration::ZERO;
    loop {
        if seen.lock().unwrap().iter().any(|(_, id)| *id == new) {
            waited = sent.elapsed();
            break;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backlog_done = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(o, _)| *o == busy)
        .count();
    println!(
        "fairness: the other org's entry was processed {:.0} ms after ingest, with {} of the \
         5000 backlog entries still waiting",
        waited.as_secs_f64() * 1000.0,
        5000 - backlog_done
    );
    assert!(
        !waited.is_zero(),
        "the other org's entry was not processed within 10 s"
    );
    assert!(waited < Duration::from_secs(2), "took {waited:?}");
    assert!(
        backlog_done < 5000,
        "the backlog drained first: not a fairness test"
    );

    // Graceful shutdown: entries in hand finish or are released, none stays claimed.
    let _ = stop.send(());
    run.await.unwrap();
    let processing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vapi_webhooks.inbox WHERE status = 'processing'")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(processing, 0);
    let leased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vapi_webhooks.inbox_queue WHERE token IS NOT NULL",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(leased, 0);
    db.drop_database(&parent).await;
    true
}

/// The database URL of a fresh database (same server and user as `DATABASE_URL`).
fn url_of(db: &TestDb) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let (without_query, query) = base.split_once('?').unwrap_or((&base, ""));
    let root = without_query.rsplit_once('/').unwrap().0;
    if query.is_empty() {
        format!("{root}/{}", db.database)
    } else {
        format!("{root}/{}?{query}", db.database)
    }
}

/// The example server in a child process (this binary, `serve …`).
struct Child {
    process: tokio::process::Child,
    base: String,
    log: std::path::PathBuf,
}

async fn spawn_server(db: &TestDb, extra: &[&str]) -> Child {
    let log = std::env::temp_dir().join(format!("vapi-inbox-{}.log", Uuid::new_v4().simple()));
    let mut process = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tenants",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.toml"),
            "--database-url",
            &url_of(db),
            "--inbox",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "the server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let base = line
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    Child { process, base, log }
}

impl Drop for Child {
    fn drop(&mut self) {
        // The log stays for a failing test to be read; `kill_on_drop` ends the process.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Child {
    fn kill9(&mut self) {
        self.process.start_kill().unwrap(); // SIGKILL
    }

    async fn terminate(mut self) {
        let pid = self.process.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.process.wait())
            .await
            .expect("graceful shutdown within 20 s")
            .unwrap();
        assert!(
            exit.success(),
            "{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

struct Sender {
    client: reqwest::Client,
    tenants: tenants::Tenants,
}

impl Sender {
    fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            tenants: tenants::Tenants::load(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/tenants.toml"
            )))
            .unwrap(),
        }
    }

    /// POSTs `n` end-of-call reports for Org A (through its phone number, HMAC) with call ids
    /// `{prefix}-{i}`; every answer must be 2xx.
    async fn reports(&self, base: &str, prefix: &str, n: usize, marker: &str) {
        let org = &self.tenants.orgs[0];
        let url = format!("{base}/api/webhooks/vapi");
        futures_util::stream::iter(0..n)
            .for_each_concurrent(16, |i| {
                let body = report_body(&format!("{prefix}-{i}"), marker);
                let headers = Signer::new(&org.credentials[0])
                    .url(url.clone())
                    .headers(&body);
                let request = self
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .headers(headers)
                    .body(body);
                async move {
                    let res = request.send().await.unwrap();
                    let status = res.status();
                    assert!(
                        status.is_success(),
                        "{status}: {}",
                        res.text().await.unwrap()
                    );
                }
            })
            .await;
    }

    async fn get(&self, base: &str, path: &str, api_key: &str) -> Value {
        let res = self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.json().await.unwrap()
    }

    async fn retry(&self, base: &str, id: &str, api_key: &str) -> reqwest::StatusCode {
        self.client
            .post(format!("{base}/api/deliveries/{id}/retry"))
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Org A's deliveries whose call id starts with `prefix`.
async fn deliveries(sender: &Sender, base: &str, prefix: &str) -> Vec<Value> {
    let all = sender.get(base, "/api/deliveries", "key-a").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|d| d["callId"].as_str().is_some_and(|c| c.starts_with(prefix)))
        .cloned()
        .collect()
}

/// (calls stored, committed handler runs, the largest number of runs of one entry).
async fn stored(db: &TestDb, prefix: &str) -> (i64, i64, i64) {
    let pattern = format!("{prefix}-%");
    let calls: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vapi_example.calls WHERE call_id LIKE $1")
            .bind(&pattern)
            .fetch_one(&db.admin)
            .await
            .unwrap();
    let (runs, most): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(n), 0)::bigint, COALESCE(max(n), 0) FROM \
         (SELECT count(*) AS n FROM vapi_example.report_runs WHERE call_id LIKE $1 \
          GROUP BY entry_id) per_entry",
    )
    .bind(&pattern)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    (calls, runs, most)
}

async fn wait_stored(db: &TestDb, prefix: &str, n: i64, limit: Duration) {
    wait_until(limit, || async { stored(db, prefix).await.0 >= n }).await;
}

// (1) and (7): accepted by an ingest-only process that is SIGKILLed, stored by another.
async fn ingest_only_process_killed_then_workers_store_each_report_once() -> bool {
    let Some((parent, db)) =
        fresh("ingest_only_process_killed_then_workers_store_each_report_once").await
    else {
        return false;
    };
    let sender = Sender::new();
    let marker = format!("MARKER-{}", Uuid::new_v4().simple());
    let mut ingest_only = spawn_server(&db, &["--workers", "0"]).await;
    let started = Instant::now();
    sender
        .reports(&ingest_only.base, "killed", 500, &marker)
        .await;
    println!(
        "ingest (debug build): 500 reports accepted in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    ingest_only.kill9();
    let _ = ingest_only.process.wait().await;
    assert_eq!(
        stored(&db, "killed").await.0,
        0,
        "--workers 0 processes nothing"
    );

    let workers = spawn_server(&db, &["--workers", "2"]).await;
    let started = Instant::now();
    wait_stored(&db, "killed", 500, Duration::from_secs(60)).await;
    println!(
        "workers (debug build): 500 reports stored in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let log = deliveries(&sender, &workers.base, "killed").await;
    assert_eq!(log.len(), 500);
    assert!(
        log.iter()
            .all(|d| d["status"] == "done" && d["attempts"] == 1),
        "{log:?}"
    );
    assert_eq!(stored(&db, "killed").await, (500, 500, 1));

    // (7) Nothing of the bodies, nor any credential secret, is readable in a dump.
    let dump = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(url_of(&db))
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("killed-499"),
        "the dump holds the stored calls"
    );
    assert!(!dump.contains(&marker), "body text in the dump");
    for org in &sender.tenants.orgs {
        for config in &org.credential_configs {
            assert!(
                !dump.contains(config.secret.expose()),
                "a secret of {} in the dump",
                org.name
            );
        }
    }
    workers.terminate().await;
    db.drop_database(&parent).await;
    true
}

// (2) The worker process is SIGKILLed mid-batch and restarted.
async fn worker_killed_mid_batch_and_restarted_stores_each_report_once() -> bool {
    let Some((parent, db)) =
        fresh("worker_killed_mid_batch_and_restarted_stores_each_report_once").await
    else {
        return false;
    };
    let sender = Sender::new();
    let mut ingest_only = spawn_server(&db, &["--workers", "0"]).await;
    sender.reports(&ingest_only.base, "midway", 500, "x").await;
    ingest_only.kill9();
    let _ = ingest_only.process.wait().await;

    let lease = ["--workers", "2", "--inbox-lease-ms", "1000"];
    let mut first = spawn_server(&db, &lease).await;
    wait_stored(&db, "midway", 100, Duration::from_secs(60)).await;
    first.kill9();
    let _ = first.process.wait().await;
    let (at_kill, _, _) = stored(&db, "midway").await;
    assert!(at_kill < 500, "killed after the batch, not during it");
    // Claims the dead process held: taken over after the lease, their attempt counted.
    let in_hand: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vapi_webhooks.inbox_queue WHERE token IS NOT NULL",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();

    let second = spawn_server(&db, &lease).await;
    wait_stored(&db, "midway", 500, Duration::from_secs(60)).await;
    let log = deliveries(&sender, &second.base, "midway").await;
    assert!(log.iter().all(|d| d["status"] == "done"), "{log:?}");
    let retaken = log
        .iter()
        .filter(|d| d["attempts"].as_u64() != Some(1))
        .count();
    println!(
        "worker SIGKILLed with {at_kill}/500 stored and {in_hand} entries in hand; \
         {retaken} entries needed a second attempt"
    );
    assert_eq!(retaken as i64, in_hand);
    assert_eq!(stored(&db, "midway").await, (500, 500, 1));
    second.terminate().await;
    db.drop_database(&parent).await;
    true
}

// (3) Half the runs fail after writing: every report is stored once, some after retries.
async fn failing_handler_is_retried_until_every_report_is_stored() -> bool {
    let Some((parent, db)) = fresh("failing_handler_is_retried_until_every_report_is_stored").await
    else {
        return false;
    };
    let sender = Sender::new();
    // 30 attempts: at a failure rate of 0.5, the chance that any of 100 entries dies is 1e-7.
    let server = spawn_server(
        &db,
        &[
            "--workers",
            "2",
            "--handler-failure-rate",
            "0.5",
            "--max-attempts",
            "30",
            "--retry-base-ms",
            "20",
        ],
    )
    .await;
    sender.reports(&server.base, "flaky", 100, "x").await;
    wait_until(Duration::from_secs(90), || async {
        deliveries(&sender, &server.base, "flaky")
            .await
            .iter()
            .filter(|d| d["status"] == "done")
            .count()
            == 100
    })
    .await;
    let log = deliveries(&sender, &server.base, "flaky").await;
    let retried: Vec<&Value> = log
        .iter()
        .filter(|d| d["attempts"].as_u64() > Some(1))
        .collect();
    let most = log.iter().filter_map(|d| d["attempts"].as_u64()).max();
    println!(
        "failure rate 0.5: {} of 100 needed retries, at most {most:?} attempts",
        retried.len()
    );
    assert!(!retried.is_empty());
    for d in &retried {
        assert_eq!(
            d["lastError"],
            "simulated handler failure (--handler-failure-rate)"
        );
    }
    // A failed run wrote before failing: its writes were rolled back with it.
    assert_eq!(stored(&db, "flaky").await, (100, 100, 1));
    // The inbox states are counted per org on `GET /metrics`.
    let metrics = sender
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for state in ["queued", "retry", "done"] {
        let line = format!(
            r#"vapi_webhooks_inbox_total{{org="a0000000-0000-0000-0000-000000000001",state="{state}"}}"#
        );
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    server.terminate().await;
    db.drop_database(&parent).await;
    true
}

// (4) Dead after one failing attempt; re-driven (by their org only) once the handler works.
async fn dead_entries_are_redriven_by_their_org_only() -> bool {
    let Some((parent, db)) = fresh("dead_entries_are_redriven_by_their_org_only").await else {
        return false;
    };
    let sender = Sender::new();
    let failing = spawn_server(
        &db,
        &[
            "--workers",
            "2",
            "--max-attempts",
            "1",
            "--handler-failure-rate",
            "1",
        ],
    )
    .await;
    sender.reports(&failing.base, "dead", 20, "x").await;
    wait_until(Duration::from_secs(60), || async {
        let log = deliveries(&sender, &failing.base, "dead").await;
        log.len() == 20 && log.iter().all(|d| d["status"] == "dead")
    })
    .await;
    let log = deliveries(&sender, &failing.base, "dead").await;
    assert!(log.iter().all(|d| d["attempts"] == 1), "{log:?}");
    assert_eq!(stored(&db, "dead").await, (0, 0, 0));
    failing.terminate().await;

    let healthy = spawn_server(&db, &["--workers", "2", "--max-attempts", "1"]).await;
    let ids: Vec<String> = log
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    // Another org's key, an unknown id, a malformed id: not found.
    assert_eq!(sender.retry(&healthy.base, &ids[0], "key-b").await, 404);
    assert_eq!(
        sender
            .retry(&healthy.base, &Uuid::new_v4().to_string(), "key-a")
            .await,
        404
    );
    assert_eq!(sender.retry(&healthy.base, "not-an-id", "key-a").await, 404);
    assert!(
        sender
            .get(&healthy.base, "/api/deliveries", "key-b")
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|d| !ids.iter().any(|id| d["id"] == id.as_str()))
    );
    for id in &ids {
        assert_eq!(sender.retry(&healthy.base, id, "key-a").await, 202);
    }
    wait_stored(&db, "dead", 20, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(20), || async {
        deliveries(&sender, &healthy.base, "dead")
            .await
            .iter()
            .all(|d| d["status"] == "done")
    })
    .await;
    // Re-driving what is not dead is refused.
    assert_eq!(sender.retry(&healthy.base, &ids[0], "key-a").await, 409);
    assert_eq!(stored(&db, "dead").await, (20, 20, 1));
    let per_call: HashMap<String, usize> = deliveries(&sender, &healthy.base, "dead")
        .await
        .iter()
        .fold(HashMap::new(), |mut m, d| {
            *m.entry(d["callId"].as_str().unwrap().to_owned())
                .or_default() += 1;
            m
        });
    assert_eq!(per_call.len(), 20);
    assert!(per_call.values().all(|n| *n == 1));
    healthy.terminate().await;
    db.drop_database(&parent).await;
    true
}
