//! Signs a Vapi message with a credential from a tenants file and POSTs it: the way to try the
//! example server without Vapi.
//!
//! ```text
//! cargo run --example send -- toolRequest1                       # a bundled fixture, by name
//! cargo run --example send -- my-message.json --org "Org B"      # a file, another org
//! cargo run --example send -- statusUpdate2 --slug org-c         # tenant from the URL
//! ```
//!
//! `--org` takes a slug, a name or an id. Without it, the org is the one `--slug` names, else
//! the one whose assistant, squad, workflow or phone number the message names, else the first
//! org in the file. A 401 is explained when the org that signed is not the one the server
//! will find.

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
    /// The org (slug, name or id) whose credential signs; default: the `--slug`'s org, else the
    /// one the message names.
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

    let by_slug = |slug: &str| {
        tenants
            .orgs
            .iter()
            .find(|org| org.slugs.iter().any(|s| s == slug))
    };
    let named_in_payload = tenants.orgs.iter().find(|org| {
        org.assistants
            .iter()
            .chain(&org.squads)
            .chain(&org.workflows)
            .chain(&org.phone_numbers)
            .any(|key| text.contains(&format!("\"{key}\"")))
    });
    // The org the server will find: the URL's when a slug is given, else the payload's.
    let addressed = match &args.slug {
        Some(slug) => by_slug(slug),
        None => named_in_payload,
    };
    let org = match &args.org {
        Some(wanted) => tenants
            .orgs
            .iter()
            .find(|org| {
                org.name == *wanted || org.id.to_string() == *wanted || org.slugs.contains(wanted)
            })
            .ok_or_else(|| {
                format!(
                    "no org with the slug, name or id `{wanted}` in {}",
                    args.tenants.display()
                )
            })?,
        None => addressed.unwrap_or(&tenants.orgs[0]),
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
    let status = response.status();
    println!("{} as {} ({}) -> {}", path.display(), org.name, org.id, url);
    println!("{status}");
    println!("{}", response.text().await?);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let why = match (addressed, &args.slug) {
            (Some(target), Some(slug)) if target.id != org.id => format!(
                "signed for {}; the URL names {slug}, which is {}",
                org.name, target.name
            ),
            (Some(target), None) if target.id != org.id => format!(
                "signed for {}; the message names a key of {}",
                org.name, target.name
            ),
            (None, Some(slug)) => format!("no org in the tenants file has the slug {slug}"),
            (None, None) => "the message names no tenant key of the tenants file".to_owned(),
            _ => format!(
                "{}'s credential {} was refused (expired? not the server's tenants file?)",
                org.name, args.credential
            ),
        };
        eprintln!("401: {why}");
    }
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
