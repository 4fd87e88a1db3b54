//! How much memory the in-process replay store takes when full: the default capacity
//! (1,500,000 deliveries: 2,000 per second for the default 11 minutes) over three orgs.
//!
//! ```text
//! cargo run --release --example replay_memory
//! ```

use std::time::Duration;

use vapi_webhooks::OrgId;
use vapi_webhooks::replay::{DeliveryKey, InMemoryReplayStore, ReplayStore};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = InMemoryReplayStore::default();
    let orgs: Vec<OrgId> = (1..=3u128)
        .map(|n| OrgId::new(uuid::Uuid::from_u128(n)))
        .collect();
    let ttl = Duration::from_secs(660);
    let before = rss_kib();
    let n = 2_000u64 * 660;
    for i in 0..n {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        key[8..].copy_from_slice(&i.to_le_bytes());
        let org = &orgs[(i % 3) as usize];
        let fresh = store
            .insert_if_absent(Some(org), &DeliveryKey::from_bytes(key), ttl)
            .await
            .expect("accepted");
        assert!(fresh);
    }
    let after = rss_kib();
    println!(
        "{} deliveries held: {:.1} MiB resident ({:.1} bytes each)",
        store.len(),
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / n as f64
    );
}
