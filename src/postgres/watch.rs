//! Fleet-wide cache invalidation: every change to tenant keys or credentials is announced with
//! `NOTIFY` (a trigger, so changes made by hand count too), and each process drops what changed
//! from its [`CachedStore`] as soon as the change commits.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use crate::org::OrgId;
use crate::store::CachedStore;

/// The channel the change trigger announces on; the payload is the org id.
pub const CHANGES_CHANNEL: &str = "vapi_webhooks_changes";

/// Listens for tenant and credential changes on `pool`'s database and evicts them from
/// `cache` ([`CachedStore::invalidate_org`]), in a task on the current Tokio runtime.
///
/// A revoked credential then stops verifying in every process within the time a
/// notification takes (milliseconds), not the cache's TTL. When the listening connection is
/// lost, the whole cache is dropped (changes may have been missed while reconnecting) and
/// listening resumes. Abort the returned handle to stop.
///
/// ```no_run
/// # async fn run(pool: vapi_webhooks::postgres::sqlx::PgPool, key: vapi_webhooks::postgres::EncryptionKey) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use vapi_webhooks::CachedStore;
/// use vapi_webhooks::postgres::{PgStore, watch_changes};
///
/// let store = CachedStore::new(PgStore::new(pool.clone(), key)).ttl(Duration::from_secs(300));
/// let _watch = watch_changes(&pool, store.clone()).await?;
/// # Ok(()) }
/// ```
pub async fn watch_changes<S>(
    pool: &PgPool,
    cache: CachedStore<S>,
) -> Result<JoinHandle<()>, sqlx::Error>
where
    S: ?Sized + Send + Sync + 'static,
{
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => match note.payload().parse::<OrgId>() {
                    Ok(org) => cache.invalidate_org(&org),
                    Err(_) => cache.invalidate_all(),
                },
                // The connection was lost and is being re-established: anything may have
                // changed meanwhile.
                Ok(None) => {
                    tracing::warn!("change listener reconnecting: dropping the tenant cache");
                    cache.invalidate_all();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "change listener failed: dropping the tenant cache");
                    cache.invalidate_all();
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }))
}
