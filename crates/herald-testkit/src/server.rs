//! [`RedisServer`]: one standalone `redis-server` on 127.0.0.1, in its own temp dir.

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::process::{Logs, RedisProcess};
use crate::wait::failure;
use crate::{free_port, redis_cli};

/// How to configure a [`RedisServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `appendonly yes` with `appendfsync always`, so every acknowledged write survives
    /// [`RedisServer::kill9`] + [`RedisServer::restart`]. Default: on.
    pub append_only: bool,
    /// Extra `redis.conf` lines, e.g. `"maxmemory 10mb"`. They come after the testkit's
    /// own lines, so they win for single-valued directives; leave `port`, `bind`, `dir`
    /// and `logfile` alone.
    pub extra_config: Vec<String>,
    /// A fixed port; default: a free one.
    pub port: Option<u16>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            append_only: true,
            extra_config: Vec::new(),
            port: None,
        }
    }
}

impl ServerOptions {
    pub fn append_only(mut self, on: bool) -> Self {
        self.append_only = on;
        self
    }

    /// Adds one `redis.conf` line.
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// A real `redis-server` process on 127.0.0.1, killed (SIGKILL) when dropped, its
/// directory removed after that.
#[derive(Debug)]
pub struct RedisServer {
    // Declared before `dir` so the process is dead before its directory goes.
    process: RedisProcess,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with [`ServerOptions::default`] (AOF on, `appendfsync always`).
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server and waits (bounded) until it answers `PING`. Panics on failure,
    /// with the tail of its log.
    pub fn start_with(options: ServerOptions) -> Self {
        Self::start_picking_port(options, free_port)
    }

    /// [`RedisServer::start_with`], with free ports (when `options.port` is `None`) chosen
    /// by `pick_port`.
    pub(crate) fn start_picking_port(options: ServerOptions, pick_port: impl Fn() -> u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("herald-redis-")
            .tempdir()
            .expect("herald-testkit: cannot create a temp dir");
        let logs = Logs::in_dir(dir.path(), "redis");
        let args_for_port = |port| {
            let conf = dir.path().join("redis.conf");
            fs::write(&conf, config_text(dir.path(), &logs.redis, port, &options))
                .unwrap_or_else(|e| panic!("herald-testkit: cannot write {}: {e}", conf.display()));
            vec![OsString::from(conf)]
        };
        let started = match options.port {
            Some(port) => RedisProcess::start(args_for_port(port), port, logs.clone()),
            None => RedisProcess::start_on_free_port(pick_port, logs.clone(), args_for_port),
        };
        match started {
            Ok(process) => Self { process, dir },
            Err(message) => panic!("{message}"),
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()))
    }

    /// The server's own directory (`--dir`): AOF, `redis.conf`, logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// redis's log file.
    pub fn log_path(&self) -> PathBuf {
        self.process.logs().redis.clone()
    }

    /// Crashes the server: SIGKILL, no chance to flush anything. Nothing if not running.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Graceful stop: `SHUTDOWN` (the AOF is flushed), waiting (bounded) for the exit.
    pub fn stop(&mut self) {
        self.process.shutdown();
    }

    /// Starts the server again on the same port and in the same directory, so with AOF on
    /// every acknowledged write is back. A running server is SIGKILLed first. Waits
    /// (bounded) until it answers `PING`, which redis does only once the data is loaded.
    pub fn restart(&mut self) {
        if let Err(message) = self.process.respawn() {
            panic!("{message}");
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT args...` and returns its stdout, trimmed
    /// (replies as redis-cli prints them when not on a terminal, e.g. `OK`, `42`, and
    /// `ERR ...` for error replies). `args` may start with redis-cli options such as `-c`.
    /// Panics when redis-cli fails, e.g. cannot connect.
    pub fn cmd(&self, args: &[&str]) -> String {
        let port = self.port().to_string();
        let mut full = vec!["-h", "127.0.0.1", "-p", &port];
        full.extend_from_slice(args);
        redis_cli(&full).unwrap_or_else(|why| {
            let logs = self.process.logs();
            panic!("{}", failure("redis-cli", &why, &[&logs.redis]))
        })
    }
}

fn config_text(dir: &Path, log: &Path, port: u16, options: &ServerOptions) -> String {
    let mut lines = base_config(dir, log, port);
    lines.extend([
        "save \"\"".to_owned(),
        // Replicas sync at once instead of after redis's default 5 s wait for more replicas.
        "repl-diskless-sync-delay 0".to_owned(),
    ]);
    if options.append_only {
        lines.push("appendonly yes".to_owned());
        lines.push("appendfsync always".to_owned());
    } else {
        lines.push("appendonly no".to_owned());
    }
    lines.extend(options.extra_config.iter().cloned());
    lines.join("\n") + "\n"
}

/// A path as a double-quoted `redis.conf` string.
/// The lines every process the kit starts (servers and sentinels) is configured with.
pub(crate) fn base_config(dir: &Path, log: &Path, port: u16) -> Vec<String> {
    vec![
        "# written by herald-testkit".to_owned(),
        "bind 127.0.0.1".to_owned(),
        format!("port {port}"),
        "daemonize no".to_owned(),
        format!("dir {}", quoted(dir)),
        format!("logfile {}", quoted(log)),
    ]
}

pub(crate) fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
