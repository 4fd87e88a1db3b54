//! The shared store behaviour suite on `InMemoryStore` (and `CachedStore` over it).

#[path = "support/store_suite.rs"]
mod store_suite;

use store_suite::{Fixture, store_behaviour};
use vapi_webhooks::{CachedStore, InMemoryStore};

fn load(fx: Fixture) -> InMemoryStore {
    let mut builder = InMemoryStore::builder();
    for org in [fx.a, fx.b, fx.bare] {
        for key in org.keys {
            builder = builder.key(key, org.id);
        }
        for config in org.credentials {
            builder = builder.credential(org.id, config.build().unwrap());
        }
    }
    builder.build()
}

#[tokio::test]
async fn in_memory_store_behaviour() {
    store_behaviour(|fx| async move { load(fx) }).await;
}

#[tokio::test]
async fn cached_in_memory_store_behaviour() {
    store_behaviour(|fx| async move { CachedStore::new(load(fx)) }).await;
}
