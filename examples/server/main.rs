//! The whole vapi-webhooks pipeline on real HTTP, for several organisations.
//!
//! ```text
//! cargo run --example server                                   # demo tenants, 127.0.0.1:3001
//! cargo run --example server -- --tenants my.toml --listen 0.0.0.0:8080
//! ```
//!
//! Routes: `POST /api/webhooks/vapi` (tenant from the payload), `POST /api/webhooks/vapi/{slug}`
//! (tenant from the URL), `GET /healthz`, `GET /api/calls` (`Authorization: Bearer <api_key>`).
//!
//! With `--inbox --database-url …` (feature `inbox`), end-of-call reports and the other
//! reply-less messages go through the durable inbox, processed by `--workers N` workers (0: in
//! another process); `GET /api/deliveries` lists the org's deliveries and
//! `POST /api/deliveries/{id}/retry` re-drives a dead one.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

// `pub(crate)`: tests/inbox.rs includes this file and runs the server from it.
pub(crate) mod app;
#[cfg(feature = "inbox")]
pub(crate) mod inbox;
#[cfg(feature = "postgres")]
pub(crate) mod pg;
pub(crate) mod tenants;

const DEFAULT_TENANTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.toml");

#[derive(Parser, Debug)]
#[command(about = "Receive Vapi webhooks for several organisations (vapi-webhooks example)")]
struct Args {
    /// The tenants file (TOML; see README "Tenants file"). Default: the built-in demo tenants.
    /// With `--database-url`, the file is imported into the database.
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free port (the printed line shows it).
    #[arg(long, default_value = "127.0.0.1:3001")]
    listen: SocketAddr,
    /// Seconds a request may take before it is answered 408.
    #[arg(long, default_value_t = 15)]
    request_timeout: u64,
    /// The scheme and host Vapi sends to, e.g. `https://hooks.example.com`: needed by
    /// credentials that sign `{url}` (the Host header is not trusted for it).
    #[arg(long)]
    public_url: Option<String>,
    /// Keep tenants, credentials and calls in Postgres (needs `--features postgres`).
    #[cfg(feature = "postgres")]
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The URL requests connect with (the role row-level security applies to). Default: the
    /// `--database-url` with the user `vapi_example_app`.
    #[cfg(feature = "postgres")]
    #[arg(long, env = "APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Option<String>,
    /// Base64 of the 32-byte key that encrypts credential secrets in Postgres.
    #[cfg(feature = "postgres")]
    #[arg(long, env = "VAPI_WEBHOOKS_ENCRYPTION_KEY", hide_env_values = true)]
    encryption_key: Option<String>,
    /// Share replay protection with other instances through Redis (needs `--features redis`).
    #[cfg(feature = "redis")]
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Queue end-of-call reports and other reply-less messages in a durable Postgres inbox
    /// (needs `--database-url` and `--features inbox`).
    #[cfg(feature = "inbox")]
    #[arg(long, requires = "database_url")]
    inbox: bool,
    /// Inbox workers in this process; 0 only ingests (another process runs workers).
    #[cfg(feature = "inbox")]
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Attempts before an inbox entry is dead.
    #[cfg(feature = "inbox")]
    #[arg(long, default_value_t = 8)]
    max_attempts: u32,
    /// Probability that the report handler fails before committing (to try retries).
    #[cfg(feature = "inbox")]
    #[arg(long, default_value_t = 0.0)]
    handler_failure_rate: f64,
    /// Milliseconds before a stopped worker's claim is taken over.
    #[cfg(feature = "inbox")]
    #[arg(long, default_value_t = 30_000)]
    inbox_lease_ms: u64,
    /// Milliseconds before the first retry (doubling, with jitter, up to 64 times this).
    #[cfg(feature = "inbox")]
    #[arg(long, default_value_t = 1_000)]
    retry_base_ms: u64,
    /// Commit each processed entry without waiting for the disk (see `Worker::async_commit`:
    /// database effects stay exactly once).
    #[cfg(feature = "inbox")]
    #[arg(long)]
    async_commit: bool,
}

/// Used when no encryption key is given: fine for a demo, never for production.
#[cfg(feature = "postgres")]
const DEMO_ENCRYPTION_KEY: &str = "dmFwaS13ZWJob29rcy1leGFtcGxlLWRlbW8ta2V5ISE=";

fn main() -> ExitCode {
    run(std::env::args_os())
}

/// The whole server from command-line arguments (`tests/inbox.rs` runs it in child processes).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::parse_from(args);
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(serve(args)),
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> ExitCode {
    // Logs go to stderr; stdout carries only the address line, for scripts to read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let (app, workers) = match build(&args).await {
        Ok(built) => built,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("vapi-webhooks example server listening on http://{addr}");
    // One signal stops both: the server drains its requests, the workers finish or release
    // the entries in hand.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    };
    let workers = workers.map(|run| tokio::spawn(run(Box::pin(stopped()))));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = app.serve(listener, stopped()).await;
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    if let Err(err) = served {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs the inbox workers until the future completes.
type RunWorkers = Box<
    dyn FnOnce(
            std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send,
>;

async fn build(args: &Args) -> Result<(app::App, Option<RunWorkers>), String> {
    let tenants_file = args.tenants.clone();
    let load = |path: &PathBuf| tenants::Tenants::load(path).map_err(|err| err.to_string());
    #[allow(unused_mut)]
    let mut config = app::Config {
        request_timeout: Duration::from_secs(args.request_timeout),
        public_url: args.public_url.clone(),
        ..app::Config::default()
    };
    #[cfg(feature = "redis")]
    if let Some(url) = &args.redis_url {
        let store = vapi_webhooks::replay::RedisReplayStore::connect(url)
            .await
            .map_err(|err| format!("cannot connect to Redis: {err}"))?;
        config.replay_guard = vapi_webhooks::replay::ReplayGuard::new(store);
        tracing::info!("replay protection shared through Redis");
    }
    #[cfg(feature = "postgres")]
    if let Some(url) = &args.database_url {
        let key = match &args.encryption_key {
            Some(key) => key.as_str(),
            None => {
                tracing::warn!(
                    "no --encryption-key / VAPI_WEBHOOKS_ENCRYPTION_KEY: using the built-in demo key; never do this in production"
                );
                DEMO_ENCRYPTION_KEY
            }
        };
        let key = vapi_webhooks::postgres::EncryptionKey::from_base64(key)
            .map_err(|err| format!("bad encryption key: {err}"))?;
        let tenants = tenants_file.as_ref().map(load).transpose()?;
        let backend = pg::connect(
            url,
            args.app_database_url.as_deref(),
            key.clone(),
            tenants.as_ref(),
        )
        .await?;
        #[allow(unused_mut)]
        let mut workers: Option<RunWorkers> = None;
        #[cfg(feature = "inbox")]
        if args.inbox {
            let options = inbox::Options {
                workers: args.workers,
                max_attempts: args.max_attempts,
                handler_failure_rate: args.handler_failure_rate,
                lease: Duration::from_millis(args.inbox_lease_ms),
                retry_base: Duration::from_millis(args.retry_base_ms),
                async_commit: args.async_commit,
            };
            let inbox = inbox::connect(url, key, backend.calls.pool().clone(), &options).await?;
            config.inbox = Some(inbox.inbox);
            workers = inbox
                .worker
                .map(|worker| -> RunWorkers { Box::new(move |stop| Box::pin(worker.run(stop))) });
        }
        let store = backend.store;
        let app = app::App::new(
            backend.orgs,
            store.clone(),
            store,
            app::Calls::Postgres(backend.calls),
            config,
        );
        return Ok((app, workers));
    }
    let path = tenants_file.unwrap_or_else(|| PathBuf::from(DEFAULT_TENANTS));
    Ok((app::App::in_memory(load(&path)?, config)?, None))
}

/// Ctrl-C, or SIGTERM (what process managers send): stop accepting, finish in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
