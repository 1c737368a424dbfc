//! The other processes of the channels benchmark: a `redis-server` of its own and the Node.js
//! socket.io relay of `bench/socketio-relay`, each on a free loopback port, with logs in a
//! scratch directory that is removed afterwards.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::commands::bench::Out;
use crate::commands::http::Connection;

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn free_addr() -> Result<SocketAddr, String> {
    let probe =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    probe.local_addr().map_err(|e| e.to_string())
}

/// A child process, killed when dropped, with its log file.
pub struct Process {
    name: &'static str,
    child: Option<Child>,
    pub pid: u32,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Process {
    fn spawn(
        name: &'static str,
        mut command: Command,
        addr: SocketAddr,
        log: PathBuf,
    ) -> Result<Self, String> {
        let file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name,
            pid: child.id(),
            child: Some(child),
            addr,
            log,
        })
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops the process with SIGTERM (SIGKILL after 10 s) and shows its last log lines when it
    /// logged more than its start line.
    pub async fn stop(mut self, out: Out, quiet_lines: usize) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill only signals the process we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > quiet_lines {
            out.line(format!("  {} log ({} lines):", self.name, lines.len()));
            for line in lines.iter().rev().take(10).rev() {
                out.line(format!("    {line}"));
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("herald-bench-channels-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `redis-server` without persistence, with no output-buffer limit for pub/sub clients
/// (a 100 MB message would otherwise get the relay's subscriber disconnected), and waits for
/// `PING`.
pub async fn start_redis(dir: &Path) -> Result<Process, String> {
    let addr = free_addr()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--bind", "127.0.0.1", "--port"])
        .arg(addr.port().to_string())
        .args(["--save", "", "--appendonly", "no"])
        .args(["--client-output-buffer-limit", "pubsub 0 0 0"])
        .arg("--dir")
        .arg(dir);
    let mut redis = Process::spawn("redis-server", command, addr, dir.join("redis.log"))
        .map_err(|e| format!("{e} (apt-get install redis-server)"))?;
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < START_TIMEOUT {
        if let Some(status) = redis.exited() {
            return Err(format!(
                "redis-server exited at start ({status}):\n{}",
                redis.log_tail(10)
            ));
        }
        match ping(addr).await {
            Ok(()) => return Ok(redis),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("redis-server did not answer PING: {last}"))
}

async fn ping(addr: SocketAddr) -> Result<(), String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"PING\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 7];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!(
            "PING answered {:?}",
            String::from_utf8_lossy(&answer)
        ))
    }
}

/// Finds the relay's folder: `--relay-dir` if given, else `bench/socketio-relay` under the
/// current directory, or under the source tree this executable was built from.
pub fn relay_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return if dir.join("relay.js").is_file() {
            Ok(dir.to_path_buf())
        } else {
            Err(format!("no relay.js in {}", dir.display()))
        };
    }
    let candidates = [
        PathBuf::from("bench/socketio-relay"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/socketio-relay"),
    ];
    candidates
        .iter()
        .find(|d| d.join("relay.js").is_file())
        .cloned()
        .ok_or_else(|| {
            "cannot find bench/socketio-relay/relay.js; run from the repository root or pass \
             --relay-dir"
                .into()
        })
}

/// Installs the relay's npm packages from its lock file (`npm ci`) when `node_modules` is missing.
pub fn install_relay(dir: &Path, out: Out) -> Result<(), String> {
    if dir.join("node_modules/socket.io").is_dir() && dir.join("node_modules/ioredis").is_dir() {
        return Ok(());
    }
    out.line(format!("  npm ci in {}", dir.display()));
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run npm: {e} (apt-get install nodejs npm)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm ci in {} failed: {status}", dir.display()))
    }
}

/// Starts `node relay.js PORT REDIS_URL` and waits for its `/healthz`.
pub async fn start_relay(
    relay_dir: &Path,
    redis: SocketAddr,
    api_key: &str,
    scratch: &Path,
) -> Result<Process, String> {
    let addr = free_addr()?;
    let mut command = Command::new("node");
    command
        .arg("relay.js")
        .arg(addr.port().to_string())
        .arg(format!("redis://{redis}"))
        .current_dir(relay_dir)
        .env("RELAY_API_KEY", api_key)
        .env("NODE_ENV", "production");
    let mut relay = Process::spawn("relay", command, addr, scratch.join("relay.log"))
        .map_err(|e| format!("{e} (apt-get install nodejs)"))?;
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < START_TIMEOUT {
        if let Some(status) = relay.exited() {
            return Err(format!(
                "the relay exited at start ({status}):\n{}",
                relay.log_tail(10)
            ));
        }
        let probe = async {
            let mut conn = Connection::open(addr).await?;
            conn.request("GET", "/healthz", None, None).await
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(r)) if r.status == 200 => return Ok(relay),
            Ok(Ok(r)) => last = format!("/healthz answered {}", r.status),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "/healthz did not answer within 2 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the relay did not answer /healthz within {} s ({last}):\n{}",
        START_TIMEOUT.as_secs(),
        relay.log_tail(10)
    ))
}
