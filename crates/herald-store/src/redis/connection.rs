//! One connection type for every deployment: a single server (`redis://…`), a Cluster
//! (`redis+cluster://host:port,host:port,…`, the seed nodes), or a primary watched by Sentinel
//! (`redis+sentinel://host:port,host:port/master-name`, the sentinels). Commands are multiplexed, so
//! concurrent calls are pipelined on the wire without explicit pipelines, which in a Cluster
//! could not span slots.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// How many times a command is tried while a failover settles; the pauses between grow by
/// 100 ms (0.1 s, 0.2 s, … 1.1 s), about 7 s in all.
const FAILOVER_ATTEMPTS: u64 = 12;

/// The current primary of a Sentinel-watched group. redis-rs resolves the primary once; this
/// asks the sentinels again when the primary stops answering or has become a replica.
#[derive(Clone)]
pub struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    sentinels: Vec<String>,
    master: String,
    timeout: Duration,
    current: tokio::sync::Mutex<Option<ConnectionManager>>,
}

/// Errors after which the primary may have moved.
fn primary_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl SentinelConn {
    async fn connect(
        sentinels: Vec<String>,
        master: String,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let conn = Self {
            shared: Arc::new(SentinelShared {
                sentinels,
                master,
                timeout,
                current: Default::default(),
            }),
        };
        conn.primary().await?;
        Ok(conn)
    }

    async fn primary_client(&self) -> RedisResult<::redis::Client> {
        let mut sentinel = ::redis::sentinel::Sentinel::build(self.shared.sentinels.clone())?;
        sentinel.async_master_for(&self.shared.master, None).await
    }

    async fn primary(&self) -> RedisResult<ConnectionManager> {
        let mut current = self.shared.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(self.shared.timeout));
        let conn = self
            .primary_client()
            .await?
            .get_connection_manager_with_config(config)
            .await?;
        *current = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_primary(&self) {
        *self.shared.current.lock().await = None;
    }

    /// Decides after one try: the answer, or `None` to try again on a freshly resolved primary.
    /// Herald's writes are idempotent scripts, so repeating one whose answer was lost is harmless.
    async fn settle<T>(
        &self,
        result: RedisResult<T>,
        resolved: bool,
        attempt: &mut u64,
    ) -> Option<RedisResult<T>> {
        match result {
            Ok(value) => Some(Ok(value)),
            Err(e)
                if (!resolved || primary_may_have_moved(&e))
                    && *attempt + 1 < FAILOVER_ATTEMPTS =>
            {
                *attempt += 1;
                tracing::warn!(error = %e, attempt = *attempt, "redis primary unavailable; asking the sentinels again");
                self.forget_primary().await;
                tokio::time::sleep(Duration::from_millis(100 * *attempt)).await;
                None
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl SentinelConn {
    /// Runs `call` on the current primary until it answers or the failover window is spent.
    async fn on_primary<'a, T>(
        &'a self,
        call: impl Fn(ConnectionManager) -> RedisFuture<'a, T> + Send + 'a,
    ) -> RedisResult<T> {
        let mut attempt = 0;
        loop {
            let (result, resolved) = match self.primary().await {
                Ok(conn) => (call(conn).await, true),
                Err(e) => (Err(e), false),
            };
            if let Some(done) = self.settle(result, resolved, &mut attempt).await {
                return done;
            }
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.on_primary(move |mut conn| {
            Box::pin(async move { conn.req_packed_command(cmd).await })
        }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.on_primary(move |mut conn| {
            Box::pin(async move { conn.req_packed_commands(cmd, offset, count).await })
        }))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Where Herald's Redis is.
pub enum Deployment {
    Single(String),
    /// Seed nodes as `redis://host:port` URLs.
    Cluster(Vec<String>),
    /// Sentinels as `redis://host:port` URLs, and the name of the group they watch.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl Deployment {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            let seeds: Vec<String> = hosts
                .trim_end_matches('/')
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{auth}{h}"))
                .collect();
            if seeds.is_empty() {
                return Err("redis+cluster:// needs at least one seed node, e.g. redis+cluster://10.0.0.1:6379,10.0.0.2:6379".into());
            }
            return Ok(Deployment::Cluster(seeds));
        }
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (hosts, master) = rest.split_once('/').unwrap_or((rest, ""));
            let sentinels: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect();
            if sentinels.is_empty() || master.is_empty() {
                return Err("redis+sentinel:// needs sentinels and the master name, e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/herald".into());
            }
            return Ok(Deployment::Sentinel {
                sentinels,
                master: master.to_owned(),
            });
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Deployment::Single(url.to_owned()));
        }
        Err("use redis://host:port for one server, redis+cluster://host:port,host:port for a Cluster, \
             or redis+sentinel://host:port,host:port/master-name for Sentinel"
            .into())
    }

    /// A connection; `response_timeout` must exceed any blocking read made on it.
    pub async fn connect(&self, response_timeout: Duration) -> ::redis::RedisResult<Conn> {
        match self {
            Deployment::Single(url) => {
                let config =
                    ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
                let client = ::redis::Client::open(url.as_str())?;
                Ok(Conn::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            Deployment::Cluster(seeds) => {
                let client = ::redis::cluster::ClusterClient::builder(seeds.clone())
                    .response_timeout(response_timeout)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            Deployment::Sentinel { sentinels, master } => Ok(Conn::Sentinel(
                SentinelConn::connect(sentinels.clone(), master.clone(), response_timeout).await?,
            )),
        }
    }

    /// A client for the classic live-event subscription, asked for again at every reconnect
    /// (`attempt` counts them; after a failover it reaches the new primary). A Cluster does not
    /// use it: its events travel on sharded pub/sub, subscribed per master (see `sharded`); for
    /// one it gives the next seed at each attempt.
    pub async fn pubsub_client(&self, attempt: usize) -> RedisResult<::redis::Client> {
        match self {
            Deployment::Single(url) => ::redis::Client::open(url.as_str()),
            Deployment::Cluster(seeds) => {
                ::redis::Client::open(seeds[attempt % seeds.len()].as_str())
            }
            Deployment::Sentinel { sentinels, master } => {
                let mut sentinel = ::redis::sentinel::Sentinel::build(sentinels.clone())?;
                sentinel.async_master_for(master, None).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deployments() {
        assert!(matches!(
            Deployment::parse("redis://127.0.0.1:6379/0").unwrap(),
            Deployment::Single(_)
        ));
        match Deployment::parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001").unwrap() {
            Deployment::Cluster(seeds) => {
                assert_eq!(
                    seeds,
                    ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
                )
            }
            _ => panic!("a cluster"),
        }
        match Deployment::parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/herald").unwrap() {
            Deployment::Sentinel { sentinels, master } => {
                assert_eq!((sentinels.len(), master.as_str()), (2, "herald"))
            }
            _ => panic!("sentinel"),
        }
        assert!(
            Deployment::parse("redis+sentinel://10.0.0.1:26379").is_err(),
            "needs the master name"
        );
        assert!(Deployment::parse("http://x").is_err());
        assert!(Deployment::parse("redis+cluster://").is_err());
    }
}
