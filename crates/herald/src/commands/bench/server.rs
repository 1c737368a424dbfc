//! The server under test: this executable run as `herald serve` on a free loopback port, with a
//! fresh data directory that is removed afterwards.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Out;
use super::stats::Rng;
use crate::commands::http::Connection;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// How long the server gets to answer `/healthz` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Server log lines shown at the end of a run.
const LOG_LINES_SHOWN: usize = 20;

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
    dir: PathBuf,
    pub api_key: Arc<str>,
    token_secret: String,
}

impl Server {
    /// Spawns the server and waits until `/healthz` answers 200.
    pub async fn start() -> Result<Self, String> {
        Self::start_with_env(&[]).await
    }

    /// Like [`start`](Self::start), with extra `HERALD_*` settings (e.g. the Redis URL).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Self, String> {
        Self::start_with_args(env, &[]).await
    }

    /// Like [`start_with_env`](Self::start_with_env), with extra `herald serve` arguments
    /// (e.g. `--config FILE`).
    pub async fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Result<Self, String> {
        Self::start_on_data(env, args, None).await
    }

    /// Like [`start_with_args`](Self::start_with_args), on a data directory the caller prepared
    /// (and removes): `None` is a fresh one of the server's own.
    pub async fn start_on_data(
        env: &[(&str, &str)],
        args: &[&str],
        data: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herald-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut rng = Rng::seeded(n as u64);
        let api_key = format!("hk_bench_{}", rng.hex(32));
        let token_secret = rng.hex(64);
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        // The port is free when we look; another process could take it before the server binds,
        // which shows up below as a failed start.
        let addr = {
            let probe = TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot find a free port: {e}"))?;
            probe.local_addr().map_err(|e| e.to_string())?
        };
        let child = Command::new(exe)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(data.map_or_else(|| dir.join("data"), std::path::Path::to_path_buf))
            .args(args)
            .env("HERALD_API_KEY", &api_key)
            .env("HERALD_TOKEN_SECRET", &token_secret)
            // HERALD_LOG_LEVEL rather than HERALD_LOG: older servers refuse the short name.
            .env_remove("HERALD_LOG")
            .env("HERALD_LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let pid = child.id();
        let mut server = Server {
            child: Some(child),
            addr,
            pid,
            dir,
            api_key: api_key.into(),
            token_secret,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut last_error = String::from("no answer yet");
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "the server exited at start ({status}); its log:\n{}",
                    self.log_tail(20)
                ));
            }
            let probe = async {
                let mut conn = Connection::open(self.addr).await?;
                conn.request("GET", "/healthz", None, None).await
            };
            match tokio::time::timeout(Duration::from_secs(2), probe).await {
                Ok(Ok(r)) if r.status == 200 => return Ok(()),
                Ok(Ok(r)) => last_error = format!("/healthz answered {}", r.status),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "/healthz did not answer within 2 s".into(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "the server did not become healthy within {} s ({last_error}); its log:\n{}",
            START_TIMEOUT.as_secs(),
            self.log_tail(20)
        ))
    }

    /// The secret user tokens are signed with (`herald_server::auth::issue_token`).
    pub fn token_secret(&self) -> Arc<str> {
        Arc::from(self.token_secret.as_str())
    }

    /// The server's resident memory in bytes (VmRSS).
    pub fn rss(&self) -> Result<u64, String> {
        rss_of(&format!("/proc/{}/status", self.pid))
    }

    /// Stops the server with SIGTERM (SIGKILL if it lingers), reports how it ended and any log
    /// lines (it logs at `warn`, so any line is worth a look), and removes its data directory.
    pub async fn stop(mut self, out: Out) -> Value {
        let Some(mut child) = self.child.take() else {
            return json!(null);
        };
        let server_cpu = cpu_of_process(self.pid);
        let client_cpu = own_cpu();
        out.line(format!(
            "  cpu: server {:.2} s, benchmark client {:.2} s (user + system, whole run)",
            server_cpu.unwrap_or(f64::NAN),
            client_cpu
        ));
        let started = Instant::now();
        // SAFETY: kill only sends a signal to the process we spawned and still own (not yet reaped).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let mut status = None;
        while started.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (exit, clean) = match status {
            Some(s) => (s.to_string(), s.success()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                (
                    format!(
                        "killed: still running {} s after SIGTERM",
                        STOP_TIMEOUT.as_secs()
                    ),
                    false,
                )
            }
        };
        let stop_ms = started.elapsed().as_millis() as u64;
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        // The one line the server prints on stdout at start is not news.
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Herald listening on"))
            .collect();
        if !clean {
            out.line(format!("  server: did not stop cleanly: {exit}"));
        }
        if !lines.is_empty() {
            out.line(format!(
                "  server log ({} lines at warn level or above):",
                lines.len()
            ));
            for line in lines.iter().take(LOG_LINES_SHOWN) {
                out.line(format!("    {line}"));
            }
            if lines.len() > LOG_LINES_SHOWN {
                out.line(format!("    ... {} more", lines.len() - LOG_LINES_SHOWN));
            }
        }
        let shown: Vec<&str> = lines.iter().take(LOG_LINES_SHOWN).copied().collect();
        json!({
            "exit": exit,
            "clean_exit": clean,
            "stop_ms": stop_ms,
            "cpu_s": server_cpu.map(|c| (c * 100.0).round() / 100.0),
            "client_cpu_s": (client_cpu * 100.0).round() / 100.0,
            "log_lines": lines.len(),
            "log": shown,
        })
    }

    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// VmRSS of a `/proc/<pid>/status` file, in bytes.
pub fn rss_of(status_file: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(status_file)
        .map_err(|e| format!("cannot read {status_file}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS line in {status_file}"))
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_of_process(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// CPU time (user + system) this process has used so far.
pub fn own_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and has no other effect.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Bytes as MiB, two decimals.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1024.0 / 1024.0 * 100.0).round() / 100.0
}
