//! The whole vapi-webhooks pipeline on real HTTP, for several organisations.
//!
//! ```text
//! cargo run --example server                                   # demo tenants, 127.0.0.1:3001
//! cargo run --example server -- --tenants my.toml --listen 0.0.0.0:8080
//! ```
//!
//! Routes: `POST /api/webhooks/vapi` (tenant from the payload), `POST /api/webhooks/vapi/{slug}`
//! (tenant from the URL), `GET /healthz`, `GET /api/calls` (`Authorization: Bearer <api_key>`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod app;
#[cfg(feature = "postgres")]
mod pg;
mod tenants;

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
}

/// Used when no encryption key is given: fine for a demo, never for production.
#[cfg(feature = "postgres")]
const DEMO_ENCRYPTION_KEY: &str = "dmFwaS13ZWJob29rcy1leGFtcGxlLWRlbW8ta2V5ISE=";

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr; stdout carries only the address line, for scripts to read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let args = Args::parse();
    let app = match build(&args).await {
        Ok(app) => app,
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
    if let Err(err) = app.serve(listener, shutdown_signal()).await {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn build(args: &Args) -> Result<app::App, String> {
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
        let backend =
            pg::connect(url, args.app_database_url.as_deref(), key, tenants.as_ref()).await?;
        let store = backend.store;
        return Ok(app::App::new(
            backend.orgs,
            store.clone(),
            store,
            app::Calls::Postgres(backend.calls),
            config,
        ));
    }
    let path = tenants_file.unwrap_or_else(|| PathBuf::from(DEFAULT_TENANTS));
    app::App::in_memory(load(&path)?, config)
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
