//! The typed parse against `serde_json::Value` and the tenant probe, on real end-of-call reports.
//!
//! * `typed`: `ServerMessage::parse` (what the extractors run, once per request);
//! * `value`: `serde_json::from_slice::<serde_json::Value>`, the generic alternative;
//! * `probe`: `vapi_webhooks::resolve::probe`, which reads only the tenant fields;
//! * `typed+conversation`: the typed parse and then typing the conversation (`messages()`),
//!   for handlers that read it.
//!
//! Bodies: the real capture as is (`tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json`,
//! 10 KB), the bench support's 49 KiB report built from it (the size of a one-minute call),
//! and the same with `type` as the message's last key instead of its first.
//!
//! Quick run: `cargo bench --bench parse -- --quick`.

mod support;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vapi_webhooks::ServerMessage;
use vapi_webhooks::resolve::probe;

use support::{Tenant, end_of_call_report};

const REAL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json"
));

fn bench(c: &mut Criterion) {
    let report = end_of_call_report(49 * 1024, Tenant::Last);
    let bodies = [
        ("real_10KB", Bytes::from_static(REAL)),
        ("49KiB", report.clone()),
        // `type` last in the message: the lexical walk crosses the whole message first.
        ("49KiB_type_last", type_last(&report)),
    ];
    let mut group = c.benchmark_group("parse");
    for (label, body) in &bodies {
        let parsed = ServerMessage::parse(body).expect("typed");
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.message.type_name(), "end-of-call-report");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::new("typed", label), |b| {
            b.iter(|| black_box(ServerMessage::parse(black_box(body))).expect("typed"))
        });
        group.bench_function(BenchmarkId::new("value", label), |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)))
                    .expect("JSON")
            })
        });
        group.bench_function(BenchmarkId::new("probe", label), |b| {
            b.iter(|| black_box(probe(black_box(body))).expect("probe"))
        });
        group.bench_function(BenchmarkId::new("typed+conversation", label), |b| {
            b.iter(|| {
                let parsed = ServerMessage::parse(black_box(body)).expect("typed");
                let ServerMessage::EndOfCallReport(report) = &parsed.message else {
                    unreachable!("an end-of-call report")
                };
                black_box(report.messages().len());
                parsed
            })
        });
    }
    group.finish();
}

/// `report` (which starts `{"message":{"type":"end-of-call-report",`) with `type` moved to
/// the end of the message.
fn type_last(report: &[u8]) -> Bytes {
    const HEAD: &str = r#"{"message":{"type":"end-of-call-report","#;
    let text = std::str::from_utf8(report).expect("UTF-8");
    let rest = text.strip_prefix(HEAD).expect("type first");
    let inner = rest.strip_suffix("}}").expect("ends the envelope");
    let body = format!(r#"{{"message":{{{inner},"type":"end-of-call-report"}}}}"#);
    support::check(body.as_bytes());
    Bytes::from(body)
}

criterion_group! {
    name = benches;
    // Plots take longer than the measurements; the figures are in the terminal output.
    config = support::config();
    targets = bench
}
criterion_main!(benches);
