//! `herald bench channels`: realtime channels (issue 7) against a Node.js socket.io + ioredis
//! relay, in the same run, on the same machine, with the same client code.
//!
//! Started for the run: a `redis-server` of its own, Herald (`herald serve` of this executable)
//! on the embedded engine and/or on that Redis, and `node bench/socketio-relay/relay.js` on that
//! Redis (publishers POST to the relay, which PUBLISHes to Redis; its subscriber emits to the
//! socket.io room of the channel). Each system runs alone, one after the other.
//!
//! Workloads, per system, in this order with a one-second pause before each:
//! - latency: single POSTs paced at `--rate` per second for `--latency-secs` to one channel with
//!   N subscribers, each carrying its send time; receive − send at every subscriber;
//! - throughput: `--messages` messages of `--message-bytes` published in batches of `--batch`
//!   (`--in-flight` requests at a time, never more than `--window` messages ahead of the slowest
//!   subscriber) to one channel with N subscribers; the time runs from the first request to the
//!   last message at the last subscriber;
//! - big: one POST of `--big-mb` MB of random bytes to a channel with 10 subscribers, each of which
//!   reassembles it and compares it byte for byte; wall time from the POST to the last subscriber
//!   done, and the peak resident memory growth of the server (and of Redis, for information)
//!   sampled every 20 ms.
//!
//! Before each workload a warm-up message is published until every subscriber has seen one, so
//! no system is measured while its subscriptions are still being set up. A run fails (non-zero
//! exit) when a message is missing, duplicated or corrupt, not when a target is missed.

mod procs;
mod socketio;
mod subscriber;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Out;
use super::server::{Server, cpu_of_process, mib, own_cpu, rss_of};
use super::stats::{Rng, Summary, ms};
use crate::commands::http::Connection;
use procs::Scratch;
use subscriber::{Endpoint, Subscriber, abbreviate};

#[derive(clap::Args)]
pub struct Args {
    /// Messages per throughput run; every subscriber receives each one.
    #[arg(long, default_value_t = 50_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub messages: usize,
    /// Subscriber counts of one channel for the throughput and latency runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 100])]
    pub subscribers: Vec<usize>,
    /// Size of the big message in MB (10^6 bytes); 0 skips it.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=128))]
    pub big_mb: usize,
    /// Subscribers of the big message.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub big_subscribers: usize,
    /// Messages per second in the latency runs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Seconds of paced publishing in the latency runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub latency_secs: u64,
    /// Size of each message of the throughput and latency runs, in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(48..=262_144))]
    pub message_bytes: usize,
    /// Messages per batch request in the throughput runs.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub batch: usize,
    /// Batch requests in flight (one connection each) in the throughput runs.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub in_flight: usize,
    /// Most messages the publisher may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub window: usize,
    /// Which Herald engines to measure.
    #[arg(long, value_enum, default_value_t = Engine::Both)]
    pub engine: Engine,
    /// Measure Herald only.
    #[arg(long)]
    pub skip_relay: bool,
    /// The relay's folder (default: bench/socketio-relay here or in the source tree).
    #[arg(long)]
    pub relay_dir: Option<PathBuf>,
    /// Longest time for one workload's messages to arrive, in seconds.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl Args {
    /// Open files this run needs at most (subscribers here; the server has its own limit).
    pub fn connections(&self) -> usize {
        self.subscribers
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.big_subscribers)
            + self.in_flight
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Embedded,
    Redis,
    Both,
}

/// Subscribers of one channel connecting at the same time.
const CONNECT_BATCH: usize = 50;
/// Payloads starting with this are warm-up messages, not measured.
const WARMUP: &[u8] = br#"{"warmup":"#;
/// Longest wait for every subscriber to see a warm-up message.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Publisher connections of the latency runs, sharing the pace.
const LATENCY_PUBLISHERS: usize = 8;
/// Pause between workloads.
const SETTLE: Duration = Duration::from_secs(1);
/// Resident memory sampling period.
const RSS_PERIOD: Duration = Duration::from_millis(20);

/// One system under test, as its publishers and subscribers see it.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    api_key: Arc<str>,
    /// `/v1/channels` (Herald) or `/channels` (relay).
    prefix: &'static str,
    endpoint: Endpoint,
    /// The process whose memory counts.
    pid: u32,
    /// The Redis it uses, if any.
    redis_pid: Option<u32>,
}

impl Target {
    fn path(&self, channel: &str) -> String {
        format!("{}/{channel}/messages", self.prefix)
    }

    fn batch_path(&self, channel: &str) -> String {
        format!("{}/{channel}/messages/batch", self.prefix)
    }
}

/// What one system measured.
#[derive(Default)]
struct Figures {
    /// (subscribers, deliveries per second over all subscribers, seconds)
    throughput: Vec<(usize, f64, f64)>,
    latency: Vec<Latency>,
    big: Option<Big>,
    cpu: Cpu,
    failures: Vec<String>,
    details: Vec<Value>,
}

/// CPU seconds (user + system) spent during one system's workloads.
#[derive(Default)]
struct Cpu {
    server: f64,
    redis: Option<f64>,
    client: f64,
}

struct Latency {
    subscribers: usize,
    summary: Summary,
    /// Publisher lag behind its schedule, p99, ns.
    lag_p99: u64,
    /// Messages per second the publisher managed (the target is `--rate`).
    achieved_rate: f64,
}

struct Big {
    wall: Duration,
    rss_before: u64,
    rss_growth: u64,
    redis_growth: Option<u64>,
}

pub async fn run(args: Args, out: Out) -> Result<Value, String> {
    if args.subscribers.is_empty() || args.subscribers.contains(&0) {
        return Err("--subscribers needs counts of at least 1".into());
    }
    out.line(format!(
        "channels: {} messages of {} B per throughput run to {:?} subscribers; latency at {}/s for \
         {} s; {} MB to {} subscribers",
        args.messages,
        args.message_bytes,
        args.subscribers,
        args.rate,
        args.latency_secs,
        args.big_mb,
        args.big_subscribers
    ));
    let scratch = Scratch::new()?;
    let redis = procs::start_redis(&scratch.0).await?;
    let redis_url = format!("redis://{}", redis.addr);
    out.line(format!(
        "  redis-server on {} (pid {})",
        redis.addr, redis.pid
    ));
    let big_data = (args.big_mb > 0).then(|| Arc::new(random_bytes(args.big_mb * 1_000_000)));

    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    let engines: &[bool] = match args.engine {
        Engine::Embedded => &[false],
        Engine::Redis => &[true],
        Engine::Both => &[false, true],
    };
    for &on_redis in engines {
        let name = if on_redis {
            "herald-redis"
        } else {
            "herald-embedded"
        };
        out.line(format!("{name}:"));
        let mut server_args: Vec<&str> = Vec::new();
        if on_redis {
            server_args.extend(["--redis", redis_url.as_str()]);
        }
        let server = Server::start_with_args(&[], &server_args).await?;
        let token = channel_token(&server.token_secret())?;
        let target = Arc::new(Target {
            name,
            addr: server.addr,
            api_key: server.api_key.clone(),
            prefix: "/v1/channels",
            endpoint: Endpoint::Herald {
                addr: server.addr,
                token,
            },
            pid: server.pid,
            redis_pid: on_redis.then_some(redis.pid),
        });
        let figures = measure(&target, &args, big_data.clone(), out).await;
        let stop = server.stop(out).await;
        let mut figures = figures;
        figures.details.push(json!({ "server": stop }));
        results.push((name, figures));
    }
    if !args.skip_relay {
        out.line("relay (node socket.io + ioredis):");
        let dir = procs::relay_dir(args.relay_dir.as_deref())?;
        procs::install_relay(&dir, out)?;
        let key = format!("rk_bench_{}", Rng::seeded(7).hex(32));
        let relay = procs::start_relay(&dir, redis.addr, &key, &scratch.0).await?;
        let target = Arc::new(Target {
            name: "relay",
            addr: relay.addr,
            api_key: key.into(),
            prefix: "/channels",
            endpoint: Endpoint::Relay { addr: relay.addr },
            pid: relay.pid,
            redis_pid: Some(redis.pid),
        });
        let figures = measure(&target, &args, big_data.clone(), out).await;
        relay.stop(out, 1).await;
        results.push(("relay", figures));
    }
    redis.stop(out, usize::MAX).await;
    drop(scratch);

    print_table(&results, &args, out);
    let value = json!({
        "bench": "channels",
        "messages": args.messages,
        "message_bytes": args.message_bytes,
        "subscribers": args.subscribers,
        "rate": args.rate,
        "latency_secs": args.latency_secs,
        "big_mb": args.big_mb,
        "big_subscribers": args.big_subscribers,
        "batch": args.batch,
        "in_flight": args.in_flight,
        "window": args.window,
        "systems": results.iter().map(|(name, f)| figures_json(name, f)).collect::<Vec<_>>(),
    });
    let failures: Vec<String> = results
        .iter()
        .flat_map(|(name, f)| f.failures.iter().map(move |e| format!("{name}: {e}")))
        .collect();
    if failures.is_empty() {
        Ok(value)
    } else {
        out.result(&value);
        Err(format!(
            "{} workload(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// A user token allowed to read every `bench*` channel.
fn channel_token(secret: &str) -> Result<String, String> {
    herald_server::auth::issue_channel_token(secret, "bench", 24 * 3600, &["bench*".to_owned()])
}

/// Runs every workload against one system; failures are recorded, not returned.
async fn measure(
    target: &Arc<Target>,
    args: &Args,
    big_data: Option<Arc<Vec<u8>>>,
    out: Out,
) -> Figures {
    let cpu = |pid: Option<u32>| pid.and_then(cpu_of_process).unwrap_or(f64::NAN);
    let before = (cpu(Some(target.pid)), cpu(target.redis_pid), own_cpu());
    let mut figures = workloads(target, args, big_data, out).await;
    figures.cpu = Cpu {
        server: cpu(Some(target.pid)) - before.0,
        redis: target.redis_pid.map(|p| cpu(Some(p)) - before.1),
        client: own_cpu() - before.2,
    };
    out.line(format!(
        "  cpu during the workloads: {} {:.2} s{}, benchmark client {:.2} s",
        if target.prefix == "/channels" {
            "relay"
        } else {
            "server"
        },
        figures.cpu.server,
        figures
            .cpu
            .redis
            .map(|r| format!(", redis-server {r:.2} s"))
            .unwrap_or_default(),
        figures.cpu.client
    ));
    figures
}

async fn workloads(
    target: &Arc<Target>,
    args: &Args,
    big_data: Option<Arc<Vec<u8>>>,
    out: Out,
) -> Figures {
    let mut figures = Figures::default();
    for &n in &args.subscribers {
        settle().await;
        match latency(target, n, args).await {
            Ok((l, detail)) => {
                out.line(format!(
                    "  latency at {}/s, {n} subscriber(s): p50 {:.3} ms, p99 {:.3} ms, max {:.3} \
                     ms ({} samples; published at {:.0}/s, publisher lag p99 {:.3} ms)",
                    args.rate,
                    ms(l.summary.p50),
                    ms(l.summary.p99),
                    ms(l.summary.max),
                    l.summary.count,
                    l.achieved_rate,
                    ms(l.lag_p99)
                ));
                figures.latency.push(l);
                figures.details.push(detail);
            }
            Err(e) => {
                out.line(format!("  latency, {n} subscriber(s): FAILED: {e}"));
                figures
                    .failures
                    .push(format!("latency with {n} subscribers: {e}"));
            }
        }
    }
    for &n in &args.subscribers {
        settle().await;
        match throughput(target, n, args).await {
            Ok((rate, secs, detail)) => {
                out.line(format!(
                    "  throughput, {n} subscriber(s): {:.0} deliveries/s ({:.0} messages/s per \
                     subscriber), {} messages in {secs:.2} s",
                    rate,
                    rate / n as f64,
                    args.messages
                ));
                figures.throughput.push((n, rate, secs));
                figures.details.push(detail);
            }
            Err(e) => {
                out.line(format!("  throughput, {n} subscriber(s): FAILED: {e}"));
                figures
                    .failures
                    .push(format!("throughput with {n} subscribers: {e}"));
            }
        }
    }
    settle().await;
    if let Some(data) = big_data {
        match big(target, data, args).await {
            Ok(result) => {
                out.line(format!(
                    "  big: {} MB to {} subscribers in {:.2} s; server RSS {:.1} MiB before, \
                     +{:.1} MiB at peak{}",
                    args.big_mb,
                    args.big_subscribers,
                    result.wall.as_secs_f64(),
                    mib(result.rss_before),
                    mib(result.rss_growth),
                    result
                        .redis_growth
                        .map(|g| format!("; redis-server +{:.1} MiB", mib(g)))
                        .unwrap_or_default()
                ));
                figures.big = Some(result);
            }
            Err(e) => {
                out.line(format!("  big: FAILED: {e}"));
                figures.failures.push(format!("big message: {e}"));
            }
        }
    }
    figures
}

/// A pause between workloads, for work a system defers (compaction, garbage collection) to
/// land between them rather than in the next one's figures.
async fn settle() {
    tokio::time::sleep(SETTLE).await;
}

/// A fresh channel name per workload, under the token's `bench*` pattern.
fn channel_name(kind: &str, subscribers: usize) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{kind}-{subscribers}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the subscribers of one workload share with it.
struct Shared {
    origin: Instant,
    /// Messages each subscriber must receive.
    expected: usize,
    message_bytes: usize,
    /// Messages received so far, per subscriber.
    progress: Vec<AtomicU64>,
    ready: Vec<AtomicBool>,
    ready_count: AtomicUsize,
    /// Keep receive − send times.
    latencies: bool,
    /// The one big message expected, compared byte for byte.
    big: Option<Arc<Vec<u8>>>,
    deadline: tokio::time::Instant,
}

impl Shared {
    fn new(origin: Instant, subscribers: usize, expected: usize, args: &Args) -> Self {
        Self {
            origin,
            expected,
            message_bytes: args.message_bytes,
            progress: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            ready: (0..subscribers).map(|_| AtomicBool::new(false)).collect(),
            ready_count: AtomicUsize::new(0),
            latencies: false,
            big: None,
            deadline: tokio::time::Instant::now()
                + WARMUP_TIMEOUT
                + Duration::from_secs(args.timeout),
        }
    }

    fn slowest(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

#[derive(Default)]
struct Report {
    received: usize,
    duplicates: usize,
    corrupt: usize,
    latencies: Vec<u64>,
    /// When the last expected message arrived (ns since the origin).
    done_ns: Option<u64>,
    error: Option<String>,
}

/// The payload of message `seq`: `[SEQ,SENT_NS,111...1]`, exactly `size` bytes (for sizes
/// above ~45). JSON text that needs no escaping inside a JSON string, so neither system nor the
/// client pays for escapes, and whose every byte can be checked on arrival.
fn payload(seq: usize, sent_ns: u64, size: usize) -> String {
    let mut text = format!("[{seq},{sent_ns},");
    let pad = size.saturating_sub(text.len() + 1).max(1);
    text.extend(std::iter::repeat_n('1', pad));
    text.push(']');
    text
}

/// The sequence number and send time of a payload, if it is intact.
fn check(bytes: &[u8], size: usize) -> Option<(usize, u64)> {
    let inner = bytes.strip_prefix(b"[")?.strip_suffix(b"]")?;
    if bytes.len() != size {
        return None;
    }
    let mut fields = inner.splitn(3, |&b| b == b',');
    let number = |field: Option<&[u8]>| -> Option<u64> {
        let digits = field?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let seq = number(fields.next())?;
    let sent = number(fields.next())?;
    let pad = fields.next()?;
    (!pad.is_empty() && pad.iter().all(|&b| b == b'1')).then_some((seq as usize, sent))
}

/// Connects `n` subscribers to `channel`, `CONNECT_BATCH` at a time.
async fn connect(target: &Target, channel: &str, n: usize) -> Result<Vec<Subscriber>, String> {
    let mut subs = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let group = (n - i).min(CONNECT_BATCH);
        let opens = (0..group).map(|_| {
            let endpoint = target.endpoint.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    Subscriber::connect(&endpoint, &channel),
                )
                .await
                .unwrap_or_else(|_| Err("not connected within 20 s".into()))
            })
        });
        let handles: Vec<_> = opens.collect();
        for h in handles {
            subs.push(h.await.map_err(|e| e.to_string())??);
        }
        i += group;
    }
    Ok(subs)
}

/// Receives until the workload's messages are all in, the deadline passes or the stream fails.
async fn listen(mut sub: Subscriber, index: usize, shared: Arc<Shared>) -> Report {
    let mut report = Report::default();
    let mut seen = vec![
        false;
        if shared.big.is_some() {
            0
        } else {
            shared.expected
        }
    ];
    while report.received < shared.expected {
        let delivery = match tokio::time::timeout_at(shared.deadline, sub.next()).await {
            Err(_) => {
                report.error = Some(format!(
                    "timed out with {} of {} messages",
                    report.received, shared.expected
                ));
                break;
            }
            Ok(Err(e)) => {
                eprintln!(
                    "  subscriber {index} failed: {e} (after {} messages)",
                    report.received
                );
                report.error = Some(format!(
                    "{e} (after {} of {} messages)",
                    report.received, shared.expected
                ));
                break;
            }
            Ok(Ok(d)) => d,
        };
        let now = shared.now_ns();
        let bytes = delivery.bytes();
        if bytes.starts_with(WARMUP) {
            if !shared.ready[index].swap(true, Ordering::Relaxed) {
                shared.ready_count.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if let Some(big) = &shared.big {
            if bytes == big.as_slice() {
                report.received += 1;
            } else {
                report.corrupt += 1;
                report.error = Some(format!(
                    "the big message arrived as {} bytes{}",
                    bytes.len(),
                    if bytes.len() == big.len() {
                        " of different content"
                    } else {
                        ""
                    }
                ));
                break;
            }
            continue;
        }
        match check(bytes, shared.message_bytes) {
            Some((seq, sent)) if seq < shared.expected => {
                if std::mem::replace(&mut seen[seq], true) {
                    report.duplicates += 1;
                } else {
                    report.received += 1;
                    shared.progress[index].fetch_add(1, Ordering::Relaxed);
                    if shared.latencies {
                        report.latencies.push(now.saturating_sub(sent));
                    }
                }
            }
            _ => {
                report.corrupt += 1;
                if report.error.is_none() && report.corrupt == 1 {
                    // Keep going: the count of corrupt messages says more than the first one.
                    eprintln!(
                        "  corrupt message at subscriber {index}: {:?}",
                        abbreviate(&String::from_utf8_lossy(bytes))
                    );
                }
            }
        }
    }
    if report.received == shared.expected {
        report.done_ns = Some(shared.now_ns());
    }
    report
}

/// Publishes warm-up messages until every subscriber has seen one.
async fn warm_up(target: &Target, channel: &str, shared: &Shared) -> Result<(), String> {
    let mut conn = Connection::open(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let path = target.path(channel);
    let started = Instant::now();
    let mut body = Vec::new();
    let n = shared.ready.len();
    loop {
        let status = conn
            .request_into(
                "POST",
                &path,
                Some(&target.api_key),
                Some(br#"{"warmup":true}"#),
                &mut body,
            )
            .await
            .map_err(|e| format!("warm-up publish: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "warm-up publish answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        for _ in 0..10 {
            if shared.ready_count.load(Ordering::Relaxed) >= n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if started.elapsed() > WARMUP_TIMEOUT {
            return Err(format!(
                "only {} of {n} subscribers saw a warm-up message within {} s",
                shared.ready_count.load(Ordering::Relaxed),
                WARMUP_TIMEOUT.as_secs()
            ));
        }
    }
}

/// Collects the subscribers' reports; the first failure among them is the workload's.
async fn collect(handles: Vec<tokio::task::JoinHandle<Report>>) -> Result<Vec<Report>, String> {
    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        reports.push(h.await.map_err(|e| format!("subscriber task: {e}"))?);
    }
    let failed = reports
        .iter()
        .filter(|r| r.error.is_some() || r.corrupt > 0 || r.duplicates > 0)
        .count();
    if failed > 0 {
        let corrupt: usize = reports.iter().map(|r| r.corrupt).sum();
        let duplicates: usize = reports.iter().map(|r| r.duplicates).sum();
        let first = reports
            .iter()
            .find_map(|r| r.error.clone())
            .unwrap_or_default();
        return Err(format!(
            "{failed} of {} subscribers failed ({corrupt} corrupt, {duplicates} duplicate \
             messages); first error: {first}",
            reports.len()
        ));
    }
    Ok(reports)
}

/// Starts the listeners of one workload and warms them up.
async fn subscribe(
    target: &Target,
    channel: &str,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<Report>>, String> {
    let subs = connect(target, channel, shared.ready.len()).await?;
    let handles: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, sub)| tokio::spawn(listen(sub, i, shared.clone())))
        .collect();
    if let Err(e) = warm_up(target, channel, shared).await {
        for h in &handles {
            h.abort();
        }
        return Err(e);
    }
    Ok(handles)
}

fn abort_all(handles: &[tokio::task::JoinHandle<Report>]) {
    for h in handles {
        h.abort();
    }
}

async fn throughput(
    target: &Arc<Target>,
    n: usize,
    args: &Args,
) -> Result<(f64, f64, Value), String> {
    let channel = channel_name("tp", n);
    let shared = Arc::new(Shared::new(Instant::now(), n, args.messages, args));
    let handles = subscribe(target, &channel, &shared).await?;
    let start_ns = shared.now_ns();
    let next = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..args.in_flight)
        .map(|_| {
            tokio::spawn(publish_batches(
                target.clone(),
                target.batch_path(&channel),
                shared.clone(),
                next.clone(),
                args.batch,
                args.window,
            ))
        })
        .collect();
    let mut first_error = None;
    for p in publishers {
        match p.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let publish_secs = (shared.now_ns() - start_ns) as f64 / 1e9;
    if let Some(e) = first_error {
        abort_all(&handles);
        return Err(e);
    }
    let reports = collect(handles).await?;
    let last = reports.iter().filter_map(|r| r.done_ns).max().unwrap_or(0);
    let secs = (last.saturating_sub(start_ns)) as f64 / 1e9;
    let deliveries = (n * args.messages) as f64;
    let rate = deliveries / secs.max(1e-9);
    let detail = json!({
        "workload": "throughput",
        "system": target.name,
        "subscribers": n,
        "messages": args.messages,
        "seconds": secs,
        "publish_seconds": publish_secs,
        "deliveries_per_s": rate,
        "messages_per_s_per_subscriber": rate / n as f64,
    });
    Ok((rate, secs, detail))
}

/// One publisher connection of a throughput run: takes the next batch until all are sent.
async fn publish_batches(
    target: Arc<Target>,
    path: String,
    shared: Arc<Shared>,
    next: Arc<AtomicUsize>,
    batch: usize,
    window: usize,
) -> Result<(), String> {
    let mut conn = Connection::open(target.addr)
        .await
        .map_err(|e| format!("publisher connect: {e}"))?;
    let mut body = Vec::new();
    let mut answer = Vec::new();
    loop {
        let first = next.fetch_add(1, Ordering::Relaxed) * batch;
        if first >= shared.expected {
            return Ok(());
        }
        let last = (first + batch).min(shared.expected);
        // Flow control: stay within `window` messages of the slowest subscriber.
        while last as u64 > shared.slowest() + window as u64 {
            if tokio::time::Instant::now() >= shared.deadline {
                return Err(format!(
                    "the slowest subscriber stalled at {} of {} messages",
                    shared.slowest(),
                    shared.expected
                ));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        body.clear();
        body.extend_from_slice(br#"{"messages":["#);
        for seq in first..last {
            if seq > first {
                body.push(b',');
            }
            body.extend_from_slice(br#"{"data":"#);
            let text = payload(seq, shared.now_ns(), shared.message_bytes);
            serde_json::to_writer(&mut body, &text).map_err(|e| e.to_string())?;
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        let status = conn
            .request_into(
                "POST",
                &path,
                Some(&target.api_key),
                Some(&body),
                &mut answer,
            )
            .await
            .map_err(|e| format!("batch publish: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "batch publish answered {status}: {}",
                abbreviate(&String::from_utf8_lossy(&answer))
            ));
        }
    }
}

async fn latency(target: &Arc<Target>, n: usize, args: &Args) -> Result<(Latency, Value), String> {
    let channel = channel_name("lat", n);
    let messages = (args.rate * args.latency_secs) as usize;
    let mut shared = Shared::new(Instant::now(), n, messages, args);
    shared.latencies = true;
    let shared = Arc::new(shared);
    let handles = subscribe(target, &channel, &shared).await?;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let first_ns = shared.now_ns() + 50_000_000;
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let publishers: Vec<_> = (0..LATENCY_PUBLISHERS)
        .map(|k| {
            let (target, shared, path) = (target.clone(), shared.clone(), target.path(&channel));
            tokio::spawn(async move {
                let mut conn = Connection::open(target.addr)
                    .await
                    .map_err(|e| format!("publisher connect: {e}"))?;
                let mut answer = Vec::new();
                let mut lags = Vec::new();
                let mut last_sent = 0;
                for seq in (k..messages).step_by(LATENCY_PUBLISHERS) {
                    let due = start + interval * seq as u32;
                    tokio::time::sleep_until(due).await;
                    last_sent = shared.now_ns();
                    lags.push(tokio::time::Instant::now().duration_since(due).as_nanos() as u64);
                    let text = payload(seq, shared.now_ns(), shared.message_bytes);
                    let status = conn
                        .request_into(
                            "POST",
                            &path,
                            Some(&target.api_key),
                            Some(text.as_bytes()),
                            &mut answer,
                        )
                        .await
                        .map_err(|e| format!("publish: {e}"))?;
                    if !(200..300).contains(&status) {
                        return Err(format!(
                            "publish answered {status}: {}",
                            abbreviate(&String::from_utf8_lossy(&answer))
                        ));
                    }
                }
                Ok::<_, String>((lags, last_sent))
            })
        })
        .collect();
    let mut lags = Vec::with_capacity(messages);
    let mut last_ns = 0;
    let mut first_error = None;
    for p in publishers {
        match p.await {
            Ok(Ok((l, last))) => {
                lags.extend(l);
                last_ns = last_ns.max(last);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        abort_all(&handles);
        return Err(e);
    }
    let reports = collect(handles).await?;
    let mut samples: Vec<u64> = reports.into_iter().flat_map(|r| r.latencies).collect();
    let summary = Summary::of(&mut samples);
    let lag = Summary::of(&mut lags);
    // The schedule spans `messages` intervals from the first due time.
    let achieved_rate = messages as f64
        / ((last_ns.saturating_sub(first_ns)) as f64 / 1e9 + 1.0 / args.rate as f64);
    let detail = json!({
        "workload": "latency",
        "system": target.name,
        "subscribers": n,
        "rate": args.rate,
        "messages": messages,
        "latency": summary.json(),
        "publisher_lag": lag.json(),
        "achieved_rate": achieved_rate.round(),
    });
    Ok((
        Latency {
            subscribers: n,
            summary,
            lag_p99: lag.p99,
            achieved_rate,
        },
        detail,
    ))
}

/// Peak VmRSS of some processes, sampled until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let files: Vec<String> = pids.iter().map(|p| format!("/proc/{p}/status")).collect();
            let mut peaks = vec![0u64; files.len()];
            let mut tick = tokio::time::interval(RSS_PERIOD);
            loop {
                for (peak, file) in peaks.iter_mut().zip(&files) {
                    if let Ok(rss) = rss_of(file) {
                        *peak = (*peak).max(rss);
                    }
                }
                if flag.load(Ordering::Relaxed) {
                    return peaks;
                }
                tick.tick().await;
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

async fn big(target: &Arc<Target>, data: Arc<Vec<u8>>, args: &Args) -> Result<Big, String> {
    let channel = channel_name("big", args.big_subscribers);
    let mut shared = Shared::new(Instant::now(), args.big_subscribers, 1, args);
    shared.big = Some(data.clone());
    let shared = Arc::new(shared);
    let handles = subscribe(target, &channel, &shared).await?;
    // Let the warm-up settle before taking the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_of(&format!("/proc/{}/status", target.pid))?;
    let redis_before = match target.redis_pid {
        Some(pid) => Some(rss_of(&format!("/proc/{pid}/status"))?),
        None => None,
    };
    let mut pids = vec![target.pid];
    pids.extend(target.redis_pid);
    let sampler = RssSampler::start(pids);
    let start_ns = shared.now_ns();
    let posted = async {
        let mut conn = Connection::open(target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let response = conn
            .request_streamed(
                "POST",
                &target.path(&channel),
                Some(&target.api_key),
                "application/octet-stream",
                data.as_slice(),
            )
            .await
            .map_err(|e| format!("POST of the big message: {e}"))?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(format!(
                "POST of the big message answered {}: {}",
                response.status,
                abbreviate(&String::from_utf8_lossy(&response.body))
            ))
        }
    }
    .await;
    if let Err(e) = posted {
        sampler.finish().await;
        abort_all(&handles);
        return Err(e);
    }
    let reports = collect(handles).await;
    // A little longer, for memory released late.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let peaks = sampler.finish().await;
    let reports = reports?;
    let last = reports.iter().filter_map(|r| r.done_ns).max().unwrap_or(0);
    Ok(Big {
        wall: Duration::from_nanos(last.saturating_sub(start_ns)),
        rss_before,
        rss_growth: peaks
            .first()
            .copied()
            .unwrap_or(0)
            .saturating_sub(rss_before),
        redis_growth: redis_before.map(|b| peaks.get(1).copied().unwrap_or(0).saturating_sub(b)),
    })
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut rng = Rng::seeded(42);
    let mut data = Vec::with_capacity(n + 8);
    while data.len() < n {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data.truncate(n);
    data
}

fn figures_json(name: &str, f: &Figures) -> Value {
    json!({
        "system": name,
        "throughput": f.throughput.iter().map(|(n, rate, secs)| json!({
            "subscribers": n, "deliveries_per_s": rate.round(), "seconds": secs,
        })).collect::<Vec<_>>(),
        "latency": f.latency.iter().map(|l| json!({
            "subscribers": l.subscribers,
            "latency": l.summary.json(),
            "publisher_lag_p99_ms": ms(l.lag_p99),
            "achieved_rate": l.achieved_rate.round(),
        })).collect::<Vec<_>>(),
        "big": f.big.as_ref().map(|b| json!({
            "wall_s": b.wall.as_secs_f64(),
            "rss_before_mib": mib(b.rss_before),
            "rss_growth_mib": mib(b.rss_growth),
            "redis_rss_growth_mib": b.redis_growth.map(mib),
        })),
        "cpu_s": {
            "server": f.cpu.server,
            "redis": f.cpu.redis,
            "client": f.cpu.client,
        },
        "failures": f.failures,
        "details": f.details,
    })
}

/// One row per figure, one column per system, then Herald ÷ relay for each Herald engine.
fn print_table(results: &[(&'static str, Figures)], args: &Args, out: Out) {
    let relay = results.iter().find(|(n, _)| *n == "relay").map(|(_, f)| f);
    let heralds: Vec<&(&str, Figures)> = results.iter().filter(|(n, _)| *n != "relay").collect();
    let mut header = format!("{:<40}", "");
    for (name, _) in results {
        header.push_str(&format!("{name:>17}"));
    }
    if relay.is_some() {
        for (name, _) in &heralds {
            header.push_str(&format!(
                "{:>17}",
                format!("{}÷relay", name.trim_start_matches("herald-"))
            ));
        }
    }
    out.line("");
    out.line(header);
    let row = |label: String, get: &dyn Fn(&Figures) -> Option<f64>, decimals: usize| {
        let mut line = format!("{label:<40}");
        for (_, f) in results {
            line.push_str(&match get(f) {
                Some(v) => format!("{v:>17.decimals$}"),
                None => format!("{:>17}", "-"),
            });
        }
        if let Some(relay) = relay {
            for (_, f) in &heralds {
                line.push_str(&match (get(f), get(relay)) {
                    (Some(h), Some(r)) if r > 0.0 => format!("{:>17.2}", h / r),
                    _ => format!("{:>17}", "-"),
                });
            }
        }
        out.line(line);
    };
    for &n in &args.subscribers {
        row(
            format!("throughput, {n} sub, deliveries/s"),
            &|f: &Figures| f.throughput.iter().find(|t| t.0 == n).map(|t| t.1),
            0,
        );
    }
    for &n in &args.subscribers {
        row(
            format!("latency p50 ms, {n} sub, {}/s", args.rate),
            &|f: &Figures| {
                f.latency
                    .iter()
                    .find(|l| l.subscribers == n)
                    .map(|l| ms(l.summary.p50))
            },
            3,
        );
        row(
            format!("latency p99 ms, {n} sub, {}/s", args.rate),
            &|f: &Figures| {
                f.latency
                    .iter()
                    .find(|l| l.subscribers == n)
                    .map(|l| ms(l.summary.p99))
            },
            3,
        );
        row(
            format!("  publish rate achieved, {n} sub, msg/s"),
            &|f: &Figures| {
                f.latency
                    .iter()
                    .find(|l| l.subscribers == n)
                    .map(|l| l.achieved_rate)
            },
            0,
        );
    }
    if args.big_mb > 0 {
        row(
            format!(
                "{} MB to {} subs, wall s",
                args.big_mb, args.big_subscribers
            ),
            &|f: &Figures| f.big.as_ref().map(|b| b.wall.as_secs_f64()),
            2,
        );
        row(
            "  server peak RSS growth, MiB".into(),
            &|f: &Figures| f.big.as_ref().map(|b| mib(b.rss_growth)),
            1,
        );
        row(
            "  redis-server peak RSS growth, MiB".into(),
            &|f: &Figures| f.big.as_ref().and_then(|b| b.redis_growth.map(mib)),
            1,
        );
    }
    row(
        "CPU s, server (all workloads)".into(),
        &|f: &Figures| Some(f.cpu.server),
        2,
    );
    row(
        "CPU s, redis-server (all workloads)".into(),
        &|f: &Figures| f.cpu.redis,
        2,
    );
    row(
        "CPU s, benchmark client (all workloads)".into(),
        &|f: &Figures| Some(f.cpu.client),
        2,
    );
    out.line(
        "(throughput: messages received per second, all subscribers together; ratios are \
         herald ÷ relay: above 1 is better for throughput, below 1 for latency, time and memory)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_their_size_and_read_back() {
        for size in [48, 100, 1024, 262_144] {
            let p = payload(123_456, 987_654_321_000, size);
            assert_eq!(p.len(), size);
            assert_eq!(check(p.as_bytes(), size), Some((123_456, 987_654_321_000)));
        }
        let p = payload(7, 9, 1024);
        let mut bad = p.clone().into_bytes();
        bad[500] = b'2';
        assert_eq!(check(&bad, 1024), None);
        assert_eq!(check(p.as_bytes(), 1023), None);
        assert_eq!(check(br#"{"warmup":true}"#, 15), None);
    }
}
