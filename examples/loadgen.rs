//! Writes distinct, signed Vapi requests for `scripts/load.sh` to replay with `wrk`.
//!
//! ```text
//! cargo run --release --example loadgen -- --count 30000 --out /tmp/requests.tsv
//! ```
//!
//! Each request is a tool-calls message or an end-of-call report (the bundled vapi4k fixtures;
//! `--kind` picks one or both, three tool calls to one report, `--reports-only` is `--kind
//! report`; `--report-bytes` grows the report to a size, as the benches do) with its own call id
//! and tool call ids, for each organisation of the tenants file in turn, signed with the
//! organisation's first active credential. An organisation is addressed by its first phone
//! number or assistant in the payload (`POST /api/webhooks/vapi`) and, every other time or when
//! it has neither, by its first slug (`POST /api/webhooks/vapi/{slug}`). The example server's replay guard accepts each delivery
//! once, so every line is unique; signatures are valid for ±300 s from when this runs.
//!
//! One request per line, tab-separated: the path, then `name: value` headers, then the body
//! (compact JSON, which holds no raw tab or newline).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use serde_json::{Value, json};
use vapi_webhooks::testing::Signer;

#[path = "server/tenants.rs"]
#[allow(dead_code)]
mod tenants;

#[path = "../benches/support/mod.rs"]
mod support;

const WEBHOOK_PATH: &str = "/api/webhooks/vapi";
const TOOL_CALLS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_toolRequest1.json"
));
const END_OF_CALL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json"
));

#[derive(Parser, Debug)]
#[command(about = "Write distinct signed Vapi requests for scripts/load.sh")]
struct Args {
    /// How many requests.
    #[arg(long, default_value_t = 30_000)]
    count: usize,
    /// The tenants file whose organisations and credentials are used.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.toml"))]
    tenants: PathBuf,
    /// Where to write the requests.
    #[arg(long)]
    out: PathBuf,
    /// Which messages: `mixed` (three tool calls to one end-of-call report), `tool-calls`,
    /// `small-tool-calls` (one call, about 300 bytes) or `report`.
    #[arg(long, default_value = "mixed")]
    kind: Kind,
    /// Only end-of-call reports (what the server's `--inbox` queues): `--kind report`.
    #[arg(long)]
    reports_only: bool,
    /// Grow the end-of-call report to this many bytes (e.g. 49152, a call of about a minute);
    /// 0 keeps the real 10 KB capture as it is.
    #[arg(long, default_value_t = 0)]
    report_bytes: usize,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Kind {
    Mixed,
    ToolCalls,
    SmallToolCalls,
    Report,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// How one organisation is addressed and signed for.
struct Target<'a> {
    org: &'a tenants::Org,
    credential: &'a vapi_webhooks::Credential,
    /// `("phoneNumberId" | "assistantId", id)` for the payload route.
    payload_key: Option<(&'static str, &'a str)>,
    slug: Option<&'a str>,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tenants = tenants::Tenants::load(&args.tenants)?;
    let now = SystemTime::now();
    let targets: Vec<Target<'_>> = tenants
        .orgs
        .iter()
        .filter_map(|org| {
            let credential = org.credentials.iter().find(|c| c.is_active(now))?;
            let payload_key = org
                .phone_numbers
                .first()
                .map(|id| ("phoneNumberId", id.as_str()))
                .or_else(|| {
                    org.assistants
                        .first()
                        .map(|id| ("assistantId", id.as_str()))
                });
            let slug = org.slugs.first().map(String::as_str);
            (payload_key.is_some() || slug.is_some()).then_some(Target {
                org,
                credential,
                payload_key,
                slug,
            })
        })
        .collect();
    if targets.is_empty() {
        return Err("no organisation has an active credential and a tenant key or slug".into());
    }

    let tool_calls: Value = serde_json::from_str(TOOL_CALLS)?;
    let end_of_call: Value = if args.report_bytes == 0 {
        serde_json::from_str(END_OF_CALL)?
    } else {
        serde_json::from_slice(&support::end_of_call_report(
            args.report_bytes,
            support::Tenant::First,
        ))?
    };
    let mut out = BufWriter::new(std::fs::File::create(&args.out)?);
    let mut per_org = vec![0usize; targets.len()];
    for i in 0..args.count {
        let t = i % targets.len();
        let target = &targets[t];
        let round = i / targets.len();
        per_org[t] += 1;

        let report = args.reports_only
            || match args.kind {
                Kind::Mixed => i % 4 == 3,
                Kind::ToolCalls | Kind::SmallToolCalls => false,
                Kind::Report => true,
            };
        let mut body = if report {
            end_of_call.clone()
        } else if matches!(args.kind, Kind::SmallToolCalls) {
            json!({"message": {"type": "tool-calls", "timestamp": 1727030665008u64,
                "call": {"id": ""},
                "toolCallList": [{"id": "", "type": "function",
                    "function": {"name": "getWeather", "arguments": {"city": "Oslo"}}}]}})
        } else {
            tool_calls.clone()
        };
        let message = &mut body["message"];
        // Whoever the fixture was sent for, this request names only the target.
        if let Some(call) = message["call"].as_object_mut() {
            call.remove("phoneNumberId");
            call.remove("assistantId");
            call.insert("id".into(), json!(format!("load-call-{i:08}")));
        }
        if let Some(message) = message.as_object_mut() {
            message.remove("phoneNumber");
        }
        for (list, nested) in [
            ("toolCalls", false),
            ("toolCallList", false),
            ("toolWithToolCallList", true),
        ] {
            if let Some(calls) = message[list].as_array_mut() {
                for (k, call) in calls.iter_mut().enumerate() {
                    let slot = if nested { &mut call["toolCall"] } else { call };
                    slot["id"] = json!(format!("call_load_{i}_{k}"));
                }
            }
        }
        let by_slug = match (target.payload_key, target.slug) {
            (Some(_), Some(_)) => round % 2 == 1,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let path = if by_slug {
            format!("{WEBHOOK_PATH}/{}", target.slug.unwrap_or_default())
        } else {
            let (field, id) = target.payload_key.expect("payload route has a key");
            message["call"][field] = json!(id);
            WEBHOOK_PATH.to_owned()
        };

        let body = serde_json::to_vec(&body)?;
        let headers = Signer::new(target.credential)
            .url(format!("http://127.0.0.1{path}"))
            .headers(&body);
        out.write_all(path.as_bytes())?;
        for (name, value) in &headers {
            out.write_all(b"\t")?;
            out.write_all(name.as_str().as_bytes())?;
            out.write_all(b": ")?;
            out.write_all(value.as_bytes())?;
        }
        out.write_all(b"\t")?;
        out.write_all(&body)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    for (target, n) in targets.iter().zip(per_org) {
        eprintln!("{n} requests for {} ({})", target.org.name, target.org.id);
    }
    Ok(())
}
