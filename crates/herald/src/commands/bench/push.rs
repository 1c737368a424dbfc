//! `herald bench push`: sends per second from Herald's FCM client to the fake FCM over HTTP/2 on
//! loopback, next to `h2load` posting the same body to the same fake in the same run.
//!
//! The fake runs as its own process (`herald fake-provider fcm`), so the reference and Herald
//! meet the same server under the same conditions; rounds alternate and medians are reported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_core::{Device, Notification, Platform};
use herald_push::fcm::{Fcm, ServiceAccount};
use herald_push::http::HttpOptions;
use herald_push::{Provider, PushMessage, SendResult};
use serde_json::{Value, json};

use super::Out;
use super::h2load::{self, STATIC_TOKEN};
use super::stats::median;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Sends per round, for h2load and for Herald each.
    #[arg(long, default_value_t = 200_000)]
    sends: u64,
    /// HTTP/2 connections (h2load -c, Herald's `connections`).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent streams per connection (h2load -m); Herald keeps connections × this in flight.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Rounds; each runs h2load, then Herald. Medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct FakeProcess {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_fake() -> Result<FakeProcess, String> {
    let dir = std::env::temp_dir().join(format!("herald-bench-push-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args([
            "fake-provider",
            "fcm",
            "--no-record",
            "--static-token",
            STATIC_TOKEN,
            "--out",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the fake FCM: {e}"))?;
    let mut fake = FakeProcess {
        child,
        dir,
        url: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.url.is_empty() {
        if let Ok(url) = std::fs::read_to_string(fake.dir.join("url")) {
            fake.url = url;
        } else if Instant::now() > deadline {
            return Err("the fake FCM did not start within 10 s".into());
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(fake)
}

fn message() -> PushMessage {
    let n: Notification = serde_json::from_value(json!({
        "id": "01KBENCHMARKNOTIFICATION0", "to": {"all": true},
        "title": "Your weekly summary is ready",
        "body": "3 new followers, 12 likes and 2 comments since last week. Tap to see them.",
        "data": {"screen": "summary", "week": 47},
        "priority": "normal", "ttl_seconds": 3600, "created_at": herald_core::time::now_ms()
    }))
    .expect("a valid notification");
    PushMessage::from_notification(&n)
}

/// h2load posting `body` to the fake: requests per second.
fn h2load(args: &Args, url: &str, body: &Path) -> Result<f64, String> {
    let output = h2load::command(url, body, args.sends, args.connections, args.streams)
        .output()
        .map_err(h2load::not_installed)?;
    h2load::rate(&output.stdout, args.sends)
}

/// Herald's FCM client sending `sends` messages: sends per second.
async fn herald(args: &Args, fcm: Arc<Fcm>, message: Arc<PushMessage>) -> Result<f64, String> {
    let failed = Arc::new(AtomicU64::new(0));
    let workers = (args.connections * args.streams).max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..workers)
        .map(|w| {
            let (fcm, message, failed) = (fcm.clone(), message.clone(), failed.clone());
            // A fixed share each rather than a shared counter: no contended atomic per send.
            let share =
                args.sends / workers as u64 + u64::from((w as u64) < args.sends % workers as u64);
            tokio::spawn(async move {
                let device = Device {
                    id: format!("bench-{w}"),
                    user: "bench".into(),
                    platform: Platform::Fcm,
                    address: format!("bench-token-{w}"),
                    keys: None,
                    app: None,
                    locale: None,
                    timezone: None,
                    registered_at: 0,
                };
                for _ in 0..share {
                    if fcm.send(&message, &device, false).await != SendResult::Sent {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} of {} sends failed", args.sends));
    }
    Ok(args.sends as f64 / elapsed)
}

pub async fn run(args: Args, out: Out) -> Result<Value, String> {
    // Logging as `herald serve` sets it up (info, to stderr). Without any subscriber, the
    // `log` fallback of `tracing` runs for every (disabled) span inside h2 — about a tenth of
    // the client's instructions, a cost the server's sender does not have.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .try_init();
    let fake = start_fake()?;
    let message = Arc::new(message());
    let body = herald_push::fcm::message_body(
        &message,
        "bench-token-0",
        false,
        herald_core::time::now_ms(),
    )?;
    let body_path = fake.dir.join("body.json");
    std::fs::write(&body_path, &body).map_err(|e| e.to_string())?;
    let account: ServiceAccount = serde_json::from_slice(
        &std::fs::read(fake.dir.join("service-account.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let ca = std::fs::read(fake.dir.join("ca.pem")).map_err(|e| e.to_string())?;
    let fcm = Arc::new(Fcm::with_account(
        account,
        &fake.url,
        HttpOptions {
            connections: args.connections,
            timeout: Duration::from_secs(30),
            extra_ca_pem: Some(Arc::new(ca)),
            http2_only: false,
        },
    )?);
    out.line(format!(
        "push to the fake FCM at {}: {} sends a round, {} connections × {} streams, {}-byte body",
        fake.url,
        args.sends,
        args.connections,
        args.streams,
        body.len()
    ));
    // Warm up: the OAuth token, the connections, the fake's allocator.
    let warm = Args {
        sends: 5_000,
        ..args.clone()
    };
    herald(&warm, fcm.clone(), message.clone()).await?;
    let (mut reference, mut ours) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let h2 = h2load(&args, &fake.url, &body_path)?;
        let us = herald(&args, fcm.clone(), message.clone()).await?;
        out.line(format!(
            "round {round}: h2load {h2:.0} req/s, Herald {us:.0} sends/s ({:.2}×)",
            us / h2
        ));
        reference.push(h2);
        ours.push(us);
    }
    let (h2, us) = (median(&reference), median(&ours));
    out.line(format!(
        "median: h2load {h2:.0} req/s, Herald {us:.0} sends/s, ratio {:.2} (target ≥ 0.8)",
        us / h2
    ));
    Ok(json!({
        "bench": "push",
        "sends": args.sends,
        "connections": args.connections,
        "streams": args.streams,
        "body_bytes": body.len(),
        "h2load_per_second": reference,
        "herald_per_second": ours,
        "h2load_median": h2,
        "herald_median": us,
        "ratio": us / h2,
    }))
}
