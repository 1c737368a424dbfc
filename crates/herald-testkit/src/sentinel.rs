//! [`RedisSentinel`]: a primary, a replica and three Sentinels, all real processes on
//! 127.0.0.1, for failover tests.

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::free_port;
use crate::process::{Logs, RedisProcess};
use crate::resp::{Reply, info_field, query, query_text};
use crate::server::{RedisServer, ServerOptions, base_config};
use crate::wait::{Check, wait_for, wait_or_panic};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "herald";
const SENTINELS: usize = 3;
const QUORUM: usize = 2;
const DOWN_AFTER_MS: u32 = 1000;
const FAILOVER_TIMEOUT_MS: u32 = 5000;
/// How long setup may take: replica sync, then Sentinels finding the replica and each
/// other (they say hello every 2 s).
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A primary, one replica (`replicaof`) and three Sentinels (quorum 2,
/// `down-after-milliseconds 1000`, `failover-timeout 5000`) monitoring it as
/// [`MASTER_NAME`]. Data nodes run with AOF off. Dropping it kills every process.
#[derive(Debug)]
pub struct RedisSentinel {
    // Sentinels first, so they are gone before the data nodes die under them.
    sentinels: Vec<Sentinel>,
    /// `[initial primary, initial replica]`.
    servers: [RedisServer; 2],
    /// Index into `servers` of the primary, as far as this handle knows.
    primary: usize,
}

#[derive(Debug)]
struct Sentinel {
    process: RedisProcess,
    _dir: TempDir,
}

impl RedisSentinel {
    /// Starts everything and waits (bounded) until the replica is in sync and every
    /// Sentinel knows the primary, the replica and the two other Sentinels, so that a
    /// failover can happen right away.
    pub fn start() -> Self {
        let data_node = || ServerOptions::default().append_only(false);
        let primary = RedisServer::start_with(data_node());
        let replica = RedisServer::start_with(
            data_node().config(format!("replicaof 127.0.0.1 {}", primary.port())),
        );
        wait_for_replica(&primary, &replica);

        let sentinels: Vec<Sentinel> = (0..SENTINELS)
            .map(|_| Sentinel::start(primary.port()))
            .collect();
        for sentinel in &sentinels {
            sentinel.wait_until_ready(primary.port());
        }
        Self {
            sentinels,
            servers: [primary, replica],
            primary: 0,
        }
    }

    /// `"herald"`
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The Sentinels' addresses (`127.0.0.1:PORT`).
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels
            .iter()
            .map(|s| SocketAddr::from((Ipv4Addr::LOCALHOST, s.process.port())))
            .collect()
    }

    /// The primary's port: the initial one until [`RedisSentinel::wait_for_failover`]
    /// reports a new one.
    pub fn primary_port(&self) -> u16 {
        self.primary().port()
    }

    /// The server that is primary as far as this handle knows.
    pub fn primary(&self) -> &RedisServer {
        &self.servers[self.primary]
    }

    /// The other server: the replica, or after a failover the old primary.
    pub fn replica(&self) -> &RedisServer {
        &self.servers[1 - self.primary]
    }

    /// SIGKILLs the current primary.
    pub fn kill9_primary(&mut self) {
        self.servers[self.primary].kill9();
    }

    /// Waits (bounded) until every Sentinel reports the same primary, on a port other than
    /// [`RedisSentinel::primary_port`], and that server answers `ROLE` as a master.
    /// Returns the new primary's port, which `primary_port` reports from then on. Panics
    /// on timeout with the tails of the Sentinels' logs.
    pub fn wait_for_failover(&mut self, timeout: Duration) -> u16 {
        let watch = self.failover_watch();
        let port = watch.wait(timeout).unwrap_or_else(|m| panic!("{m}"));
        self.adopt_primary(port)
    }

    /// [`RedisSentinel::wait_for_failover`] that keeps the async runtime free while it
    /// polls (it polls on a blocking thread).
    pub async fn wait_for_failover_async(&mut self, timeout: Duration) -> u16 {
        let watch = self.failover_watch();
        let port = tokio::task::spawn_blocking(move || watch.wait(timeout))
            .await
            .expect("herald-testkit: failover wait task failed")
            .unwrap_or_else(|m| panic!("{m}"));
        self.adopt_primary(port)
    }

    fn failover_watch(&self) -> FailoverWatch {
        FailoverWatch {
            old_port: self.primary_port(),
            sentinel_ports: self.sentinels.iter().map(|s| s.process.port()).collect(),
            logs: self
                .sentinels
                .iter()
                .map(|s| s.process.logs().redis.clone())
                .collect(),
        }
    }

    fn adopt_primary(&mut self, port: u16) -> u16 {
        self.primary = self
            .servers
            .iter()
            .position(|s| s.port() == port)
            .unwrap_or_else(|| {
                panic!("herald-testkit: Sentinels promoted unknown 127.0.0.1:{port}")
            });
        port
    }
}

fn wait_for_replica(primary: &RedisServer, replica: &RedisServer) {
    let (primary_log, replica_log) = (primary.log_path(), replica.log_path());
    wait_or_panic(
        "the replica to be in sync with the primary",
        SETUP_TIMEOUT,
        &[&replica_log, &primary_log],
        || {
            let probe = || -> Result<(), String> {
                let on_primary = query_text(primary.port(), &["INFO", "replication"])?;
                let on_replica = query_text(replica.port(), &["INFO", "replication"])?;
                let slaves = info_field(&on_primary, "connected_slaves");
                let link = info_field(&on_replica, "master_link_status");
                if slaves == Some("1") && link == Some("up") {
                    Ok(())
                } else {
                    Err(format!(
                        "connected_slaves:{slaves:?} master_link_status:{link:?}"
                    ))
                }
            };
            probe().map_or_else(Check::Pending, Check::Done)
        },
    );
}

impl Sentinel {
    fn start(primary_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("herald-sentinel-")
            .tempdir()
            .expect("herald-testkit: cannot create a temp dir");
        let logs = Logs::in_dir(dir.path(), "sentinel");
        let conf = dir.path().join("sentinel.conf");
        let process = RedisProcess::start_on_free_port(free_port, logs.clone(), |port| {
            let text = sentinel_config(dir.path(), &logs.redis, port, primary_port);
            fs::write(&conf, text)
                .unwrap_or_else(|e| panic!("herald-testkit: cannot write {}: {e}", conf.display()));
            vec![OsString::from(&conf), OsString::from("--sentinel")]
        })
        .unwrap_or_else(|m| panic!("{m}"));
        Self { process, _dir: dir }
    }

    /// Until this Sentinel reports the primary and knows the replica and the other Sentinels.
    fn wait_until_ready(&self, primary_port: u16) {
        let port = self.process.port();
        wait_or_panic(
            &format!(
                "Sentinel 127.0.0.1:{port} to know the primary, the replica and the other Sentinels"
            ),
            SETUP_TIMEOUT,
            &[&self.process.logs().redis],
            || {
                let probe = || -> Result<(), String> {
                    let master = reported_primary(port)?;
                    let state = query(port, &["SENTINEL", "MASTER", MASTER_NAME])?;
                    let replicas = map_field(&state, "num-slaves");
                    let others = map_field(&state, "num-other-sentinels");
                    let want_others = (SENTINELS - 1).to_string();
                    if master == primary_port
                        && replicas == Some("1")
                        && others == Some(want_others.as_str())
                    {
                        Ok(())
                    } else {
                        Err(format!(
                            "primary port {master}, num-slaves {replicas:?}, num-other-sentinels {others:?}"
                        ))
                    }
                };
                probe().map_or_else(Check::Pending, Check::Done)
            },
        );
    }
}

fn sentinel_config(dir: &Path, log: &Path, port: u16, primary_port: u16) -> String {
    let mut lines = base_config(dir, log, port);
    lines.extend([
        "sentinel resolve-hostnames no".to_owned(),
        "sentinel announce-hostnames no".to_owned(),
        format!("sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {QUORUM}"),
        format!("sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}"),
        format!("sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}"),
        format!("sentinel parallel-syncs {MASTER_NAME} 1"),
    ]);
    lines.join("\n") + "\n"
}

/// The primary port a Sentinel reports (`SENTINEL get-master-addr-by-name`).
fn reported_primary(sentinel_port: u16) -> Result<u16, String> {
    match query(
        sentinel_port,
        &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
    )? {
        Reply::Array(parts) => match parts.as_slice() {
            [host, port] => {
                let port = port.text().and_then(|p| p.parse().ok());
                port.ok_or_else(|| format!("unexpected address {host:?}:{port:?}"))
            }
            other => Err(format!("unexpected address reply {other:?}")),
        },
        other => Err(format!("get-master-addr-by-name answered {other:?}")),
    }
}

/// The value under `key` in a flat `[key, value, ...]` array reply.
fn map_field<'a>(reply: &'a Reply, key: &str) -> Option<&'a str> {
    let Reply::Array(items) = reply else {
        return None;
    };
    items
        .chunks(2)
        .find(|pair| pair[0].text() == Some(key))
        .and_then(|pair| pair.get(1)?.text())
}

/// What [`RedisSentinel::wait_for_failover`] needs, owned so it can go to another thread.
struct FailoverWatch {
    old_port: u16,
    sentinel_ports: Vec<u16>,
    logs: Vec<PathBuf>,
}

impl FailoverWatch {
    fn wait(&self, timeout: Duration) -> Result<u16, String> {
        let logs: Vec<&Path> = self.logs.iter().map(PathBuf::as_path).collect();
        wait_for(
            &format!("Sentinels to fail over from 127.0.0.1:{}", self.old_port),
            timeout,
            &logs,
            || self.probe().map_or_else(Check::Pending, Check::Done),
        )
    }

    fn probe(&self) -> Result<u16, String> {
        let reported = self
            .sentinel_ports
            .iter()
            .map(|&port| reported_primary(port))
            .collect::<Result<Vec<u16>, String>>()?;
        let new = reported[0];
        if new == self.old_port || reported.iter().any(|&p| p != new) {
            return Err(format!("Sentinels report primary ports {reported:?}"));
        }
        match query(new, &["ROLE"])? {
            Reply::Array(role) if role.first().and_then(Reply::text) == Some("master") => Ok(new),
            other => Err(format!(
                "Sentinels agree on {new}, which answers ROLE with {other:?}"
            )),
        }
    }
}
