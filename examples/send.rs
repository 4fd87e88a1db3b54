//! Signs a Vapi message with a credential from a tenants file and POSTs it: the way to try the
//! example server without Vapi.
//!
//! ```text
//! cargo run --example send -- toolRequest1                       # a bundled fixture, by name
//! cargo run --example send -- my-message.json --org "Org B"      # a file, another org
//! cargo run --example send -- statusUpdate2 --slug org-c         # tenant from the URL
//! ```
//!
//! Without `--org`, the org is the one whose assistant, squad, phone number or slug the request
//! names, else the first org in the file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vapi_webhooks::testing::Signer;

#[path = "server/tenants.rs"]
#[allow(dead_code)]
mod tenants;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vapi");

#[derive(Parser, Debug)]
#[command(about = "Sign a Vapi message for an org of a tenants file and POST it to the server")]
struct Args {
    /// A JSON file, or the name of a bundled fixture (e.g. `toolRequest1`, `endOfCallReportRequest`).
    message: String,
    /// The tenants file holding the credential.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.toml"))]
    tenants: PathBuf,
    /// The org (name or id) whose credential signs; default: the one the message names.
    #[arg(long)]
    org: Option<String>,
    /// Which of the org's credentials signs (0-based, in file order).
    #[arg(long, default_value_t = 0)]
    credential: usize,
    /// Send to `/api/webhooks/vapi/{slug}` (tenant from the URL).
    #[arg(long)]
    slug: Option<String>,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    server: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tenants = tenants::Tenants::load(&args.tenants)?;
    let path = message_path(&args.message)?;
    let body = std::fs::read(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let text = String::from_utf8_lossy(&body);

    let org = match &args.org {
        Some(wanted) => tenants
            .orgs
            .iter()
            .find(|org| org.name == *wanted || org.id.to_string() == *wanted)
            .ok_or_else(|| format!("no org named `{wanted}` in {}", args.tenants.display()))?,
        None => tenants
            .orgs
            .iter()
            .find(|org| {
                args.slug
                    .as_ref()
                    .is_some_and(|slug| org.slugs.contains(slug))
                    || org
                        .assistants
                        .iter()
                        .chain(&org.squads)
                        .chain(&org.phone_numbers)
                        .any(|key| text.contains(&format!("\"{key}\"")))
            })
            .unwrap_or(&tenants.orgs[0]),
    };
    let credential = org.credentials.get(args.credential).ok_or_else(|| {
        format!(
            "{} has {} credential(s); --credential {} does not exist",
            org.name,
            org.credentials.len(),
            args.credential
        )
    })?;

    let base = args.server.trim_end_matches('/');
    let url = match &args.slug {
        Some(slug) => format!("{base}/api/webhooks/vapi/{slug}"),
        None => format!("{base}/api/webhooks/vapi"),
    };
    let headers = Signer::new(credential).url(url.clone()).headers(&body);
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|err| format!("POST {url}: {err}"))?;
    println!("{} as {} ({}) -> {}", path.display(), org.name, org.id, url);
    println!("{}", response.status());
    println!("{}", response.text().await?);
    Ok(())
}

/// A path as given, or a bundled fixture whose file name contains `name`.
fn message_path(name: &str) -> Result<PathBuf, String> {
    let given = Path::new(name);
    if given.is_file() {
        return Ok(given.to_path_buf());
    }
    let mut matches: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .map_err(|err| format!("{FIXTURES}: {err}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|stem| stem == name || stem.ends_with(&format!("_{name}")))
        })
        .collect();
    matches.sort();
    matches
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{name}` is neither a file nor a bundled fixture in {FIXTURES}"))
}
