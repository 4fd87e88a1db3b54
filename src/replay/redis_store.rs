//! The Redis replay store (feature `redis`).

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ReplayStore, ReplayStoreError};

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

#[async_trait::async_trait]
impl ReplayStore for RedisReplayStore {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, ReplayStoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(ReplayStoreError::backend)?;
        Ok(set.is_some())
    }

    async fn remove(&self, key: &str) -> Result<(), ReplayStoreError> {
        redis::cmd("DEL")
            .arg(format!("{}{key}", self.prefix))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(ReplayStoreError::backend)
    }
}
