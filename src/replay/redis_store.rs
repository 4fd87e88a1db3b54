//! The Redis replay store (feature `redis`).

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{DeliveryKey, ReplayStore, ReplayStoreError};
use crate::org::OrgId;

/// A [`ReplayStore`] shared by every server behind a load balancer: atomic `SET key NX PX ttl`.
///
/// Operations time out quickly (default 1 s) so that an unreachable Redis answers 503 instead
/// of holding requests; the connection is re-established in the background when Redis returns.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisReplayStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "vapi-webhooks:replay:";

    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) with a 1 s operation timeout.
    pub async fn connect(url: &str) -> Result<Self, ReplayStoreError> {
        Self::connect_with_timeout(url, Duration::from_secs(1)).await
    }

    /// Connects to `url`; each connection attempt and each operation times out after
    /// `timeout`.
    pub async fn connect_with_timeout(
        url: &str,
        timeout: Duration,
    ) -> Result<Self, ReplayStoreError> {
        let client = redis::Client::open(url).map_err(ReplayStoreError::backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(ReplayStoreError::backend)?;
        Ok(Self::from_connection(conn))
    }

    /// Uses an existing connection manager.
    pub fn from_connection(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The prefix put before every key (default `vapi-webhooks:replay:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// `prefix` + org + `:` + the key in hex: organisations never collide.
    fn key(&self, org: Option<&OrgId>, key: &DeliveryKey) -> String {
        match org {
            Some(org) => format!("{}{org}:{key}", self.prefix),
            None => format!("{}-:{key}", self.prefix),
        }
    }
}

#[async_trait::async_trait]
impl ReplayStore for RedisReplayStore {
    async fn insert_if_absent(
        &self,
        org: Option<&OrgId>,
        key: &DeliveryKey,
        ttl: Duration,
    ) -> Result<bool, ReplayStoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(org, key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(ReplayStoreError::backend)?;
        Ok(set.is_some())
    }

    async fn remove(&self, org: Option<&OrgId>, key: &DeliveryKey) -> Result<(), ReplayStoreError> {
        redis::cmd("DEL")
            .arg(self.key(org, key))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(ReplayStoreError::backend)
    }

    fn forget(&self, org: Option<&OrgId>, key: &DeliveryKey) {
        // Called from a drop: the removal runs on the runtime the connection lives on.
        let key = self.key(org, key);
        let mut conn = self.conn.clone();
        let org = org.copied();
        let forget = async move {
            if let Err(err) = redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut conn)
                .await
            {
                match org {
                    Some(org) => {
                        tracing::warn!(org = %org, error = %err, "replay guard could not forget a delivery")
                    }
                    None => {
                        tracing::warn!(error = %err, "replay guard could not forget a delivery")
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(forget);
            }
            Err(_) => tracing::warn!("replay guard could not forget a delivery: no Tokio runtime"),
        }
    }
}
