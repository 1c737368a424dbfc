//! Real `redis-server` processes for tests: standalone ([`RedisServer`]), cluster
//! ([`RedisCluster`]) and sentinel ([`RedisSentinel`]). No Docker: the binaries come from
//! the machine (`apt-get install redis-server redis-tools`, which `.ci/run` does).
//!
//! Everything listens on 127.0.0.1 only, lives in its own temporary directory and is
//! killed when its handle is dropped. Every wait is bounded and panics with the tail of
//! the relevant redis log, so a failing test says why.

mod process;
mod resp;
mod wait;

pub mod cluster;
pub mod sentinel;
pub mod server;

pub use cluster::RedisCluster;
pub use sentinel::RedisSentinel;
pub use server::{RedisServer, ServerOptions};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, drop).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("herald-testkit: cannot bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Where the redis binaries are.
#[derive(Debug, Clone)]
pub struct RedisBinaries {
    pub server: PathBuf,
    pub cli: PathBuf,
}

/// Finds `redis-server` and `redis-cli` on `PATH` (once per process); panics with the
/// install command when either is missing.
pub fn redis_binaries() -> &'static RedisBinaries {
    static BINARIES: OnceLock<RedisBinaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let server = find_on_path("redis-server");
        let cli = find_on_path("redis-cli");
        match (server, cli) {
            (Some(server), Some(cli)) => RedisBinaries { server, cli },
            (server, cli) => panic!(
                "herald-testkit: redis binaries missing (redis-server: {}, redis-cli: {}). \
                 Install them with `apt-get install redis-server redis-tools`, or run `.ci/run`, \
                 which installs them.",
                found(&server),
                found(&cli),
            ),
        }
    })
}

/// Runs `redis-cli args...` and returns its stdout, trimmed; `Err` (with stdout and
/// stderr) when it exits unsuccessfully.
pub(crate) fn redis_cli(args: &[&str]) -> Result<String, String> {
    let cli = &redis_binaries().cli;
    let output = std::process::Command::new(cli)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`redis-cli {}` failed ({}):\n{stdout}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn found(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map_or_else(|| "not found".to_owned(), |p| p.display().to_string())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("port handed out should be free");
    }

    #[test]
    fn binaries_are_found() {
        let bins = redis_binaries();
        assert!(bins.server.ends_with("redis-server"));
        assert!(bins.cli.ends_with("redis-cli"));
    }
}
