//! [`RedisCluster`]: a Redis Cluster of real `redis-server` nodes on 127.0.0.1.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::resp::{info_field, query_text};
use crate::server::{RedisServer, ServerOptions};
use crate::wait::{Check, failure, wait_or_panic};
use crate::{free_port, redis_cli};

/// The usual cluster size (and the least `redis-cli --cluster create` accepts).
pub const DEFAULT_MASTERS: usize = 3;
/// How long the cluster may take to converge after `redis-cli --cluster create`.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// The cluster bus listens on the client port + 10000.
const BUS_PORT_OFFSET: u16 = 10000;

/// A running cluster: `masters` masters sharing the 16384 slots, each with
/// `replicas_per_master` replicas. Nodes run with `cluster-node-timeout 2000` and AOF
/// off. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` masters (at least 3), no replicas.
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0)
    }

    /// Starts `masters * (1 + replicas_per_master)` nodes, joins them with
    /// `redis-cli --cluster create`, and waits (bounded) until every node reports
    /// `cluster_state:ok`, knows every other node, and (replicas) has its master link up.
    pub fn start_with_replicas(masters: usize, replicas_per_master: usize) -> Self {
        assert!(
            masters >= DEFAULT_MASTERS,
            "herald-testkit: a Redis Cluster needs at least {DEFAULT_MASTERS} masters, got {masters}"
        );
        let total = masters * (1 + replicas_per_master);
        let nodes: Vec<RedisServer> = (0..total).map(|_| start_node()).collect();

        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let replicas = replicas_per_master.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        if let Err(why) = redis_cli(&args) {
            let logs: Vec<_> = nodes.iter().map(RedisServer::log_path).collect();
            let logs: Vec<_> = logs.iter().map(|p| p.as_path()).collect();
            panic!("{}", failure("creating the cluster", &why, &logs));
        }

        let cluster = Self { nodes };
        cluster.wait_until_converged(total);
        cluster
    }

    /// The nodes as `redis://127.0.0.1:PORT`, for a cluster client's seed list.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node, masters and replicas (which is which is redis-cli's choice; ask `ROLE`).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// SIGKILLs node `i`.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    fn wait_until_converged(&self, total: usize) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        for node in &self.nodes {
            let port = node.port();
            let log = node.log_path();
            wait_or_panic(
                &format!(
                    "cluster node 127.0.0.1:{port} to report cluster_state:ok with all {total} nodes known"
                ),
                deadline.saturating_duration_since(Instant::now()),
                &[&log],
                || match node_converged(port, total) {
                    Ok(()) => Check::Done(()),
                    Err(seen) => Check::Pending(seen),
                },
            );
        }
    }
}

fn node_converged(port: u16, total: usize) -> Result<(), String> {
    let info = query_text(port, &["CLUSTER", "INFO"])?;
    let state = info_field(&info, "cluster_state");
    let known = info_field(&info, "cluster_known_nodes");
    if state != Some("ok") || known != Some(total.to_string().as_str()) {
        return Err(format!(
            "cluster_state:{state:?} cluster_known_nodes:{known:?}"
        ));
    }
    let replication = query_text(port, &["INFO", "replication"])?;
    match info_field(&replication, "role") {
        Some("slave") => match info_field(&replication, "master_link_status") {
            Some("up") => Ok(()),
            link => Err(format!("replica with master_link_status:{link:?}")),
        },
        _ => Ok(()),
    }
}

fn start_node() -> RedisServer {
    let options = ServerOptions::default()
        .append_only(false)
        .config("cluster-enabled yes")
        .config("cluster-config-file nodes.conf")
        .config("cluster-node-timeout 2000");
    RedisServer::start_picking_port(options, cluster_port)
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(BUS_PORT_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}
