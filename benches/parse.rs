//! The typed parse against `serde_json::Value` and the tenant probe, on real end-of-call reports.
//!
//! * `typed`: `ServerMessage::parse` (what the extractors run, once per request);
//! * `value`: `serde_json::from_slice::<serde_json::Value>`, the generic alternative;
//! * `probe`: `vapi_webhooks::resolve::probe`, which reads only the tenant fields;
//! * `typed+conversation`: the typed parse and then typing the conversation (`messages()`),
//!   for handlers that read it.
//!
//! Bodies: the real capture as is (`tests/fixtures/vapi/vapi4k_endOfCallReportRequest.json`,
//! 10 KB) and the bench support's 49 KiB report built from it (the size of a one-minute call).
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
    let bodies = [
        ("real_10KB", Bytes::from_static(REAL)),
        ("49KiB", end_of_call_report(49 * 1024, Tenant::Last)),
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

criterion_group! {
    name = benches;
    // Plots take longer than the measurements; the figures are in the terminal output.
    config = support::config();
    targets = bench
}
criterion_main!(benches);
