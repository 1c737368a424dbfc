//! `herald bench preemption`: how long one `high` push notification takes to reach the fake FCM
//! while a large backlog of `low` pushes is being sent to it.
//!
//! The fake FCM runs in this process (TLS with its own CA). It keeps no copies of the low sends,
//! only of the high ones, and notes when each high one arrived. The server under test is
//! `herald serve` with a `herald.toml` pointing it at the fake. Everything goes through the real
//! API: one FCM device per user, then `low` notifications to lists of those users with
//! `channels: ["push"]`, then the timed `high` ones, each to a user of its own.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_fakes::{FakeFcm, FakeHandle, FcmConfig, FcmMessage, TestCa};
use herald_push::config::{ProviderLimits, PushConfig};
use serde_json::{Value, json};

use super::Out;
use super::api::Api;
use super::h2load;
use super::server::Server;
use super::stats::{Summary, ms};
use crate::commands::http::Connection;

#[derive(clap::Args)]
pub struct Args {
    /// Low-priority sends queued before the tries (notifications × users).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    low: u64,
    /// High-priority notifications published one after the other, each timed.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    tries: usize,
    /// Users with one FCM device each, all recipients of every low notification (at most the
    /// server's `to.users` limit).
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    users: usize,
}

/// Device tokens of the timed notifications; the fake copies only these.
const HIGH_PREFIX: &str = "preempt-high-";
/// Pause after a high notification arrived before the next try.
const GAP: Duration = Duration::from_millis(250);
/// Longest wait for one high notification.
const TRY_TIMEOUT: Duration = Duration::from_secs(30);
/// While the backlog is being queued the fake answers each send this late, so the sender drains
/// little of it before the tries; otherwise sending races the fan-out and the backlog at the
/// first try is whatever the race left. Far below the send timeout, so nothing is retried.
const HOLD: Duration = Duration::from_secs(1);
/// After the hold ends: time for the sends held back to finish and the sender to run at full
/// speed, so every try meets a saturated pipeline.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the fan-out to queue the whole backlog.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(900);
/// Connections registering devices at once.
const REGISTRARS: usize = 8;

pub async fn run(args: Args, out: Out) -> Result<Value, String> {
    let notifications = args.low.div_ceil(args.users as u64);
    let push = PushConfig::default();
    let fcm = ProviderLimits::default();
    out.line(format!(
        "preemption: {} low push sends ({notifications} notifications × up to {} users, one FCM \
         device each), then {} high ones, {} ms apart",
        args.low,
        args.users,
        args.tries,
        GAP.as_millis()
    ));
    out.line(format!(
        "  push settings: defaults (max_in_flight {}, batch {}, FCM concurrency {}, {} connections){}",
        push.max_in_flight,
        push.batch,
        fcm.concurrency,
        fcm.connections,
        overrides()
    ));

    let fake = Fake::start().await?;
    let files = Files::write(&fake)?;
    let server = Server::start_with_args(&[], &["--config", &files.config]).await?;
    let api = Api {
        addr: server.addr,
        key: server.api_key.clone(),
    };

    // Devices: low users `low0..`, and one user per try so each high push has a token of its own.
    let started = Instant::now();
    let devices: Vec<(String, String)> = (0..args.users)
        .map(|u| (format!("low{u}"), format!("low-{u}")))
        .chain((0..args.tries).map(|i| (format!("high{i}"), format!("{HIGH_PREFIX}{i}"))))
        .collect();
    api.register_all(devices).await?;
    out.line(format!(
        "  registered {} devices in {:.1} s",
        args.users + args.tries,
        started.elapsed().as_secs_f64()
    ));

    // The backlog, through the real API, with the fake holding sends back meanwhile.
    fake.fcm.behaviour().set_delay(HOLD);
    let started = Instant::now();
    let mut conn = api.connect().await?;
    let mut low = Vec::with_capacity(notifications as usize);
    for k in 0..notifications {
        let recipients = (args.low - k * args.users as u64).min(args.users as u64) as usize;
        let users: Vec<String> = (0..recipients).map(|u| format!("low{u}")).collect();
        let body = json!({
            "to": {"users": users}, "title": "Your weekly digest",
            "body": "12 new posts from people you follow", "priority": "low", "channels": ["push"],
        });
        let id = api.publish(&mut conn, &body).await?;
        low.push((id, recipients as u64));
    }
    out.line(format!(
        "  published {notifications} low notifications in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let queued = api.wait_queued(&mut conn, &low, out).await?;
    let queue_s = started.elapsed().as_secs_f64();
    let sent_during_hold = fake.low_received();
    out.line(format!(
        "  fan-out queued {queued} low sends in {queue_s:.1} s ({sent_during_hold} sent meanwhile, held back)"
    ));
    fake.fcm.behaviour().set_delay(Duration::ZERO);
    tokio::time::sleep(SETTLE).await;

    // The tries.
    let depth_before = api.low_depth(&mut conn).await?;
    let window = Instant::now();
    let low_at_start = fake.low_received();
    let (mut latencies, mut left_at_arrival) = (Vec::new(), Vec::new());
    for i in 0..args.tries {
        let token = format!("{HIGH_PREFIX}{i}");
        let body = json!({
            "to": {"users": [format!("high{i}")]}, "title": "Your sign-in code",
            "body": "123 456", "priority": "high", "channels": ["push"],
        });
        let kept = fake.fcm.received().len();
        let sent = Instant::now();
        api.publish(&mut conn, &body).await?;
        let post = sent.elapsed();
        let arrived = fake.arrival(&token, kept).await.ok_or_else(|| {
            format!(
                "try {}: the high notification did not reach the fake within {} s",
                i + 1,
                TRY_TIMEOUT.as_secs()
            )
        })?;
        let latency = arrived.saturating_duration_since(sent);
        let left = queued.saturating_sub(fake.low_received());
        out.line(format!(
            "  try {:>2}: {:7.2} ms (POST answered in {:.2} ms); low sends not yet received: {left}",
            i + 1,
            latency.as_secs_f64() * 1e3,
            post.as_secs_f64() * 1e3
        ));
        latencies.push(latency.as_nanos() as u64);
        left_at_arrival.push(left);
        tokio::time::sleep(GAP).await;
    }
    let elapsed = window.elapsed().as_secs_f64();
    let low_rate = (fake.low_received() - low_at_start) as f64 / elapsed;
    let depth_after = api.low_depth(&mut conn).await?;
    let drained = left_at_arrival.iter().filter(|&&left| left == 0).count();

    let summary = Summary::of(&mut latencies.clone());
    let met = ms(summary.p99) <= 100.0;
    out.line(format!(
        "  high publish → fake FCM: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} tries{}",
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max),
        summary.count,
        if summary.count < 100 {
            " (under 100 tries p99 is the maximum)"
        } else {
            ""
        }
    ));
    out.line(format!(
        "  target p99 ≤ 100 ms: {}",
        if met { "met" } else { "missed" }
    ));
    out.line(format!(
        "  low backlog: {queued} queued; not yet received at the tries {}..{}; server outbox low \
         lane {} before, {} after; low sends during the tries {low_rate:.0}/s",
        left_at_arrival.iter().min().unwrap_or(&0),
        left_at_arrival.iter().max().unwrap_or(&0),
        show(depth_before),
        show(depth_after)
    ));
    let server_report = server.stop(out).await;
    let value = json!({
        "bench": "preemption",
        "low": args.low,
        "users": args.users,
        "tries": args.tries,
        "gap_ms": GAP.as_millis() as u64,
        "low_queued": queued,
        "queue_s": queue_s,
        "low_sent_during_hold": sent_during_hold,
        "latencies_ms": latencies.iter().map(|&ns| ms(ns)).collect::<Vec<_>>(),
        "latency": summary.json(),
        "target_p99_ms": 100,
        "target_met": met,
        "low_left_at_arrival": left_at_arrival,
        "low_depth_before": depth_before,
        "low_depth_after": depth_after,
        "low_sends_per_second": low_rate.round(),
        "server": server_report,
    });
    if drained > 0 {
        out.result(&value);
        return Err(format!(
            "the low backlog ran dry before {drained} of the tries, so they measured no \
             preemption; queue more with --low"
        ));
    }
    Ok(value)
}

/// `HERALD_PUSH__*` settings this run inherits (they override the defaults shown).
fn overrides() -> String {
    let set: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HERALD_PUSH__"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("; overridden: {}", set.join(" "))
    }
}

fn show(depth: Option<u64>) -> String {
    depth.map_or_else(|| "?".into(), |d| d.to_string())
}

/// The in-process fake FCM and when each high push reached it.
struct Fake {
    fcm: FakeFcm,
    ca: TestCa,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    /// Low sends accepted, counted in the filter too, so they never include a high one.
    lows: Arc<AtomicU64>,
}

impl Fake {
    async fn start() -> Result<Self, String> {
        let ca = TestCa::new();
        let fcm = FakeFcm::start(&ca, FcmConfig::default())
            .await
            .map_err(|e| format!("cannot start the fake FCM: {e}"))?;
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        // Copies of a million low sends would cost memory and time on the request path: keep
        // only the high ones, and note the time in the filter, which runs as the request is
        // accepted, rather than when a waiter gets scheduled on this busy runtime.
        let lows = Arc::new(AtomicU64::new(0));
        let (noted, counted) = (arrivals.clone(), lows.clone());
        fcm.set_record_filter(Some(Arc::new(move |message: &FcmMessage| {
            let now = Instant::now();
            let high = message.token.starts_with(HIGH_PREFIX);
            if high {
                let mut noted = noted.lock().unwrap_or_else(|e| e.into_inner());
                noted.entry(message.token.clone()).or_insert(now);
            } else {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            high
        })));
        Ok(Self {
            fcm,
            ca,
            arrivals,
            lows,
        })
    }

    /// Low sends the fake accepted so far.
    fn low_received(&self) -> u64 {
        self.lows.load(Ordering::Relaxed)
    }

    /// When `token`'s push arrived; `kept` is how many copies the fake held before it was sent.
    async fn arrival(&self, token: &str, kept: usize) -> Option<Instant> {
        // The filter notes the time before it lets the copy be kept, so once a copy past `kept`
        // is there, so is its time; a copy for another token (a repeat) just waits again.
        for more in kept + 1.. {
            if !self.fcm.wait_for_records(more, TRY_TIMEOUT).await {
                return None;
            }
            let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = arrivals.get(token) {
                return Some(*at);
            }
        }
        None
    }
}

/// The files `herald serve` needs to reach the fake, removed at the end.
struct Files {
    dir: PathBuf,
    config: String,
}

impl Files {
    fn write(fake: &Fake) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("herald-bench-preemption-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let files = Files {
            config: dir.join("herald.toml").to_string_lossy().into_owned(),
            dir,
        };
        h2load::write_fcm_config(&files.dir, &fake.fcm, &fake.ca)?;
        Ok(files)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What this benchmark does with the server's API besides plain calls.
impl Api {
    /// Publishes and returns the notification's id.
    async fn publish(&self, conn: &mut Connection, body: &Value) -> Result<String, String> {
        self.post_for_id(conn, "/v1/notifications", body, 202).await
    }

    /// Registers `(user, FCM token)` pairs over a few connections at once.
    async fn register_all(&self, devices: Vec<(String, String)>) -> Result<(), String> {
        let devices = Arc::new(devices);
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..REGISTRARS)
            .map(|_| {
                let (api, devices, next) = (self.clone(), devices.clone(), next.clone());
                tokio::spawn(async move {
                    let mut conn = api.connect().await?;
                    let mut body = Vec::new();
                    while let Some((user, token)) =
                        devices.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        body.clear();
                        let _ = write!(body, r#"{{"platform":"fcm","token":"{token}"}}"#);
                        let path = format!("/v1/users/{user}/devices");
                        api.call(&mut conn, "POST", &path, Some(&body), 201).await?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for worker in workers {
            worker.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// Waits until the delivery report of each notification counts all its sends as queued;
    /// returns the sends queued in all.
    async fn wait_queued(
        &self,
        conn: &mut Connection,
        notifications: &[(String, u64)],
        out: Out,
    ) -> Result<u64, String> {
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        let mut progress = Instant::now();
        let mut queued = 0;
        // The fan-out takes the notifications in order, so waiting on each in turn is enough.
        for (id, expected) in notifications {
            loop {
                let answer = self
                    .call(conn, "GET", &format!("/v1/notifications/{id}"), None, 200)
                    .await?;
                let report = &answer["report"]["push"];
                if report["queued"].as_u64().unwrap_or(0) >= *expected {
                    queued += report["queued"].as_u64().unwrap_or(0);
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the fan-out did not queue the backlog within {} s; notification {id} \
                         expects {expected} sends and reports {report}",
                        QUEUE_TIMEOUT.as_secs()
                    ));
                }
                if progress.elapsed() > Duration::from_secs(10) {
                    out.line(format!("    ... {queued} low sends queued so far"));
                    progress = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(queued)
    }

    /// The server's view of the low lane of the outbox (`herald_push_queue_depth`), sends
    /// queued and in flight; refreshed once a second by the server.
    async fn low_depth(&self, conn: &mut Connection) -> Result<Option<u64>, String> {
        let response = conn
            .request("GET", "/metrics", None, None)
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?;
        let text = String::from_utf8_lossy(&response.body);
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(r#"herald_push_queue_depth{lane="low"} "#))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64))
    }
}
