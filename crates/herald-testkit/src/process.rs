//! One `redis-server` child process: spawn it, wait until it answers `PING`, kill it.
//! Servers, cluster nodes and sentinels are all this, with different arguments.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::resp;
use crate::wait::{Check, wait_for};

/// How long a process may take to answer `PING` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful `SHUTDOWN` may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports to try when another process grabs ours first.
const PORT_ATTEMPTS: usize = 5;

/// Where a process writes: redis's own log file and the process's stdout/stderr (where
/// redis reports config errors, before it opens its log file).
#[derive(Debug, Clone)]
pub(crate) struct Logs {
    pub(crate) redis: PathBuf,
    pub(crate) stdio: PathBuf,
}

impl Logs {
    /// `<dir>/<name>.log` and `<dir>/<name>.stdio.log`.
    pub(crate) fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            redis: dir.join(format!("{name}.log")),
            stdio: dir.join(format!("{name}.stdio.log")),
        }
    }

    pub(crate) fn paths(&self) -> [&Path; 2] {
        [&self.redis, &self.stdio]
    }

    fn clear(&self) {
        for path in self.paths() {
            let _ = fs::remove_file(path);
        }
    }
}

#[derive(Debug)]
pub(crate) struct RedisProcess {
    child: Option<Child>,
    port: u16,
    args: Vec<OsString>,
    logs: Logs,
}

impl RedisProcess {
    /// Spawns `redis-server args...`, expected to listen on `port`, and waits for `PING`.
    pub(crate) fn start(args: Vec<OsString>, port: u16, logs: Logs) -> Result<Self, String> {
        let mut process = Self {
            child: None,
            port,
            args,
            logs,
        };
        process.respawn()?;
        Ok(process)
    }

    /// Like [`RedisProcess::start`] on a port from `pick_port`, with arguments made for
    /// that port; tries another port when the chosen one was taken in the meantime.
    pub(crate) fn start_on_free_port(
        pick_port: impl Fn() -> u16,
        logs: Logs,
        mut args_for_port: impl FnMut(u16) -> Vec<OsString>,
    ) -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            logs.clear();
            let port = pick_port();
            match Self::start(args_for_port(port), port, logs.clone()) {
                Ok(process) => return Ok(process),
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "no free port after {PORT_ATTEMPTS} attempts; last error: {last_error}"
        ))
    }

    /// Kills the process if it runs, then starts it again with the same arguments (so the
    /// same port and directory) and waits for `PING`.
    pub(crate) fn respawn(&mut self) -> Result<(), String> {
        self.kill9();
        let server = &crate::redis_binaries().server;
        let stdio = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.logs.stdio)
            .map_err(|e| format!("cannot open {}: {e}", self.logs.stdio.display()))?;
        let stderr = stdio.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(server)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", server.display()))?;
        let child = self.child.insert(child);
        let port = self.port;
        let ready = wait_for(
            &format!("redis-server on 127.0.0.1:{port} to answer PING"),
            START_TIMEOUT,
            &self.logs.paths(),
            || match child.try_wait() {
                Ok(Some(status)) => Check::Fatal(format!("redis-server exited ({status})")),
                Err(e) => Check::Fatal(format!("cannot check on redis-server: {e}")),
                Ok(None) => match resp::ping(port) {
                    Ok(()) => Check::Done(()),
                    Err(e) => Check::Pending(e),
                },
            },
        );
        if ready.is_err() {
            self.kill9();
        }
        ready
    }

    /// SIGKILL, then reap. Does nothing when not running.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SHUTDOWN` (redis flushes its AOF and exits), waits for the exit, and kills the
    /// process if it has not exited in time.
    pub(crate) fn shutdown(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        // On success redis closes the connection without a reply, so the result says nothing.
        let _ = resp::query(self.port, &["SHUTDOWN"]);
        let port = self.port;
        let exited = wait_for(
            &format!("redis-server on 127.0.0.1:{port} to exit after SHUTDOWN"),
            SHUTDOWN_TIMEOUT,
            &self.logs.paths(),
            || match child.try_wait() {
                Ok(Some(_)) | Err(_) => Check::Done(()),
                Ok(None) => Check::Pending("still running".to_owned()),
            },
        );
        self.kill9();
        if let Err(message) = exited {
            panic!("{message}");
        }
    }

    /// Whether the process is alive (it may have exited on its own).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn logs(&self) -> &Logs {
        &self.logs
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
