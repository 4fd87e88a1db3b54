//! [`Worker`]: claims entries and runs the application's [`InboxHandler`] on them.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::store::{Claim, EntryId, Inbox, Load};
use crate::org::OrgContext;
use crate::postgres::{OrgTx, begin_org_tx};
use crate::vapi::ServerMessage;

/// A handler's error. Its `Display` becomes the entry's `last_error` (at most 500 characters)
/// and is logged: say what failed, never copy body values into it.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// One queued message, as a handler gets it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Job {
    /// The entry.
    pub id: EntryId,
    /// The organisation, as `OrgResolveLayer` found it.
    pub org: OrgContext,
    /// The message.
    pub message: ServerMessage,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the delivery was accepted.
    pub received_at: OffsetDateTime,
}

/// What a worker runs for each entry.
///
/// `tx` is scoped to the entry's org (`app.org_id` set, as
/// [`begin_org_tx`](crate::postgres::begin_org_tx) does). Write through it: the worker marks
/// the entry done in the same transaction and commits, so the writes happen exactly once. Do
/// not commit it yourself. An `Err` rolls everything back and schedules a retry.
///
/// # Example
///
/// ```
/// use vapi_webhooks::inbox::{BoxError, InboxHandler, Job};
/// use vapi_webhooks::postgres::{OrgTx, sqlx};
/// use vapi_webhooks::ServerMessage;
///
/// struct StoreReports;
///
/// #[async_trait::async_trait]
/// impl InboxHandler for StoreReports {
///     async fn handle(&self, job: &Job, tx: &mut OrgTx) -> Result<(), BoxError> {
///         if let ServerMessage::EndOfCallReport(report) = &job.message {
///             let call_id = report.call.as_ref().and_then(|c| c.id.as_deref());
///             sqlx::query("INSERT INTO calls (org_id, call_id) VALUES ($1, $2)")
///                 .bind(job.org.org_id.as_uuid())
///                 .bind(call_id)
///                 .execute(&mut **tx)
///                 .await?;
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait InboxHandler: Send + Sync + 'static {
    /// Handles one message.
    async fn handle(&self, job: &Job, tx: &mut OrgTx) -> Result<(), BoxError>;
}

/// Exponential backoff with jitter between attempts.
///
/// Before attempt `n + 1`, waits a random time in `[d/2, d]` where
/// `d = min(max, base × 2^(n-1))`: the jitter spreads out entries that failed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure (before jitter). Default 1 s.
    pub base: Duration,
    /// The longest delay. Default 5 min.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(factor).min(self.max);
        let half = full / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=full - half)
    }
}

/// Runs [`InboxHandler`]s on inbox entries: N concurrent loops in this process, any number of
/// processes.
///
/// * **Claiming** is safe across processes: `FOR UPDATE SKIP LOCKED` on the queue, and a
///   lease. While a handler runs, its worker holds the queue row locked, so nobody else takes
///   it however long it runs; a worker that dies releases the lock with its connection, and
///   its claim is taken over once the lease expires.
/// * **Fair between orgs**: each claim serves the org served least recently among those with a
///   ready entry, so one org's backlog never delays another org's new entry by more than one
///   [`batch`](Self::batch) per worker.
/// * **Retries**: a failed attempt is retried after [`Backoff`]; the attempt that reaches
///   [`max_attempts`](Self::max_attempts) marks the entry dead. A message that does not parse
///   is dead at once.
/// * **Shutdown**: when the future given to [`run`](Self::run) completes, no new entry is
///   claimed; entries in hand get [`shutdown_timeout`](Self::shutdown_timeout) to finish,
///   then are released (pending again, the attempt not counted).
///
/// See the [module docs](crate::inbox) for an example.
pub struct Worker<H> {
    inbox: Inbox,
    handler: Arc<H>,
    concurrency: usize,
    max_attempts: u32,
    lease: Duration,
    backoff: Backoff,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    async_commit: bool,
    batch: u32,
}

impl<H> fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("inbox", &self.inbox)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("lease", &self.lease)
            .field("backoff", &self.backoff)
            .field("poll_interval", &self.poll_interval)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("async_commit", &self.async_commit)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<H: InboxHandler> Worker<H> {
    /// Workers on `inbox` (a pool whose role has
    /// [`InboxAccess::Work`](crate::inbox::InboxAccess::Work)) running `handler`.
    pub fn new(inbox: Inbox, handler: H) -> Self {
        Self {
            inbox,
            handler: Arc::new(handler),
            concurrency: 2,
            max_attempts: 8,
            lease: Duration::from_secs(30),
            backoff: Backoff::default(),
            poll_interval: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(10),
            async_commit: false,
            batch: 4,
        }
    }

    /// Entries processed at once by this process (default 2). The pool needs one connection
    /// per worker, plus one.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Entries of one org a worker claims at once (default 4; at least 1). Each still runs in
    /// its own transaction; claiming several saves a round of claim queries per entry. Another
    /// org's new entry waits for at most this many entries per busy worker. A worker that dies
    /// also uses up the attempt of the entries it had claimed but not started: with
    /// `max_attempts(1)`, use `batch(1)`.
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Attempts before an entry is dead (default 8; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// How long a claim lasts before another worker may take it over, if its worker stopped
    /// before locking it (default 30 s). A live worker never loses an entry it is running; an
    /// entry still waiting in its [`batch`](Self::batch) may be taken over (safely: the claim
    /// token no longer matches), so keep the lease well above a batch's running time.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How often an idle worker looks for work that other processes ingested (default
    /// 250 ms; this process's own ingests wake it at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long entries in hand may take to finish after shutdown starts (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Commits each entry's transaction (the handler's writes and the completion) without
    /// waiting for its WAL flush (`synchronous_commit = off`), default `false`.
    ///
    /// Each commit otherwise waits for a disk sync, which bounds a worker to a few hundred
    /// entries per second on ordinary disks. Effects in the database stay exactly once: a
    /// database crash can lose the newest commits, but the handler's writes and the completion
    /// are lost together and the entry, still queued, runs again. Leave it off if the handler
    /// has effects outside this database that must not repeat after a database crash.
    pub fn async_commit(mut self, on: bool) -> Self {
        self.async_commit = on;
        self
    }

    /// Runs until `shutdown` completes, then finishes or releases the entries in hand.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..worker.concurrency {
            let worker = worker.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { worker.work(n, stop).await });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        tracing::info!("inbox workers stopped");
    }

    async fn work(&self, n: usize, mut stop: watch::Receiver<bool>) {
        tracing::debug!(worker = n, "inbox worker started");
        loop {
            if *stop.borrow() {
                return;
            }
            let claims = match self.inbox.claim(self.lease, self.batch).await {
                Ok(claims) if !claims.is_empty() => claims,
                Ok(_) => {
                    tokio::select! {
                        () = self.inbox.wake.notified() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "inbox: claiming failed");
                    tokio::select! {
                        () = tokio::time::sleep(self.poll_interval * 4) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            let mut claims = claims.into_iter();
            for claim in claims.by_ref() {
                if *stop.borrow() {
                    self.release(&claim).await;
                    continue;
                }
                let run = self.process(&claim);
                tokio::pin!(run);
                let finished = tokio::select! {
                    () = &mut run => true,
                    _ = stop.changed() => {
                        tokio::time::timeout(self.shutdown_timeout, &mut run).await.is_ok()
                    }
                };
                if !finished {
                    // Dropping the future rolled its transaction back.
                    self.release(&claim).await;
                }
            }
        }
    }

    /// Gives an entry back at shutdown.
    async fn release(&self, claim: &Claim) {
        match self.inbox.release(claim).await {
            Ok(()) => {
                tracing::info!(org = %claim.org, entry = %claim.id, "inbox: entry released at shutdown");
            }
            Err(err) => {
                tracing::warn!(org = %claim.org, entry = %claim.id, error = %err,
                    "inbox: could not release an entry at shutdown; it is retried after its lease");
            }
        }
    }

    /// One attempt: its own transaction for the handler and the completion.
    async fn process(&self, claim: &Claim) {
        let (org, id, attempt) = (claim.org, claim.id, claim.attempt);
        if attempt > self.max_attempts {
            // Its worker stopped during the last allowed attempt.
            self.record_failure(claim, "the worker stopped during the last attempt", false)
                .await;
            return;
        }
        match self.attempt(claim).await {
            Ok(Outcome::Done) => {
                tracing::debug!(org = %org, entry = %id, attempt, "inbox entry done");
            }
            Ok(Outcome::Lost) => {
                tracing::info!(org = %org, entry = %id, "inbox: claim lost to another worker");
            }
            Ok(Outcome::Stale) => {
                tracing::warn!(org = %org, entry = %id,
                    "inbox: dropped a queue row that names no runnable entry of its org");
            }
            Err(Failure { message, permanent }) => {
                self.record_failure(claim, &message, permanent).await;
            }
        }
    }

    async fn record_failure(&self, claim: &Claim, message: &str, permanent: bool) {
        let retry_in = (!permanent && claim.attempt < self.max_attempts)
            .then(|| self.backoff.delay(claim.attempt));
        tracing::warn!(
            org = %claim.org,
            entry = %claim.id,
            attempt = claim.attempt,
            retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
            error = message,
            "inbox entry failed"
        );
        match self.inbox.fail(claim, message, retry_in).await {
            Ok(()) => crate::telemetry::inbox(
                &claim.org,
                if retry_in.is_some() { "retry" } else { "dead" },
            ),
            Err(err) => tracing::warn!(org = %claim.org, entry = %claim.id, error = %err,
                "inbox: could not record a failure; the entry is retried after its lease"),
        }
    }

    async fn attempt(&self, claim: &Claim) -> Result<Outcome, Failure> {
        let db = |err: sqlx::Error| Failure::transient(format!("database error: {err}"));
        let mut tx = begin_org_tx(self.inbox.pool(), claim.org)
            .await
            .map_err(db)?;
        if self.async_commit {
            super::store::bookkeeping_commit(&mut tx)
                .await
                .map_err(db)?;
        }
        let loaded = match self.inbox.load(&mut tx, claim).await.map_err(db)? {
            Load::Entry(loaded) => loaded,
            Load::Lost => return Ok(Outcome::Lost),
            Load::Stale => {
                tx.commit().await.map_err(db)?;
                return Ok(Outcome::Stale);
            }
        };
        let body = loaded.body.map_err(Failure::transient)?;
        let message = ServerMessage::from_slice(&body).map_err(|err| Failure {
            // The path only: serde's message can quote body values.
            message: format!("invalid Vapi message at `{}`", err.path()),
            permanent: true,
        })?;
        drop(body);
        let job = Job {
            id: claim.id,
            org: loaded.context,
            message,
            attempt: claim.attempt,
            received_at: loaded.received_at,
        };
        self.handler
            .handle(&job, &mut tx)
            .await
            .map_err(|err| Failure::transient(err.to_string()))?;
        if !self.inbox.complete(&mut tx, claim).await.map_err(db)? {
            return Ok(Outcome::Lost);
        }
        tx.commit().await.map_err(db)?;
        crate::telemetry::inbox(&claim.org, "done");
        Ok(Outcome::Done)
    }
}

enum Outcome {
    Done,
    Lost,
    Stale,
}

struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = backoff.delay(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = backoff.delay(3);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            let late = backoff.delay(30);
            assert!((500..=1000).contains(&late.as_millis()), "{late:?}");
        }
    }
}
