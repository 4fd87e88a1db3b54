//! The pre-authentication tenant probe against parsing the whole body.
//!
//! * `probe`: `vapi_webhooks::resolve::probe`, which reads only the tenant fields;
//! * `value`: `serde_json::from_slice::<serde_json::Value>`, the generic alternative;
//! * `typed`: `vapi_webhooks::ServerMessage::from_slice`, the full typed parse handlers get.
//!
//! Each on an end-of-call report with the tenant (`message.call`) first and last in `message`.
//!
//! Quick run: `cargo bench --bench resolve -- --quick`.

mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vapi_webhooks::ServerMessage;
use vapi_webhooks::resolve::probe;

use support::{PHONE_NUMBER_ID, SIZES, Tenant, end_of_call_report};

fn bench(c: &mut Criterion) {
    for tenant in [Tenant::First, Tenant::Last] {
        let mut group = c.benchmark_group(format!("resolve/{}", tenant.label()));
        for (size, label) in SIZES {
            let body = end_of_call_report(size, tenant);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new("probe", label), |b| {
                b.iter(|| {
                    let keys = probe(black_box(&body)).expect("probe");
                    assert_eq!(
                        keys.get("message.call.phoneNumberId"),
                        Some(PHONE_NUMBER_ID)
                    );
                })
            });
            group.bench_function(BenchmarkId::new("value", label), |b| {
                b.iter(|| {
                    black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                        &body,
                    )))
                    .expect("JSON")
                })
            });
            group.bench_function(BenchmarkId::new("typed", label), |b| {
                b.iter(|| black_box(ServerMessage::from_slice(black_box(&body))).expect("typed"))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Plots take longer than the measurements; the figures are in the terminal output.
    config = support::config();
    targets = bench
}
criterion_main!(benches);
