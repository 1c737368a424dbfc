//! One connection type for both deployments: a single server (`redis://…`) or a Cluster
//! (`redis+cluster://host:port,host:port,…`, the seed nodes). Commands are multiplexed, so
//! concurrent calls are pipelined on the wire without explicit pipelines, which in a Cluster
//! could not span slots.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where Herald's Redis is.
pub enum Deployment {
    Single(String),
    /// Seed nodes as `redis://host:port` URLs.
    Cluster(Vec<String>),
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
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Deployment::Single(url.to_owned()));
        }
        Err("use redis://host:port for one server or redis+cluster://host:port,host:port for a Cluster".into())
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
        }
    }

    /// A client for the live-event subscription. Classic PUBLISH reaches every node of a
    /// Cluster, so subscribing on one seed node hears all events.
    pub fn pubsub_client(&self) -> ::redis::RedisResult<::redis::Client> {
        match self {
            Deployment::Single(url) => ::redis::Client::open(url.as_str()),
            Deployment::Cluster(seeds) => ::redis::Client::open(seeds[0].as_str()),
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
        assert!(Deployment::parse("http://x").is_err());
        assert!(Deployment::parse("redis+cluster://").is_err());
    }
}
