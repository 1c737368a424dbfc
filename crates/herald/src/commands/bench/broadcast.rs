//! `herald bench broadcast`: how long a notification to everyone takes to reach the last of
//! many connected SSE clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;

use super::Out;
use super::clients::Fleet;
use super::server::Server;
use super::stats::{ms, number_after};
use crate::commands::http::{Connection, SseEvent};

#[derive(clap::Args)]
pub struct Args {
    /// Connected SSE clients.
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub clients: usize,
    /// Notifications to everyone, one after the other.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub rounds: usize,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub batch: usize,
    /// Most seconds a round may take.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub round_timeout: u64,
    /// Pause between rounds, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
}

/// Per round: how many clients have it, and the first and last receipt (ns since the origin).
struct Round {
    count: AtomicUsize,
    first: AtomicU64,
    last: AtomicU64,
}

pub async fn run(args: Args, out: Out) -> Result<serde_json::Value, String> {
    out.line(format!(
        "broadcast: {} clients, {} rounds of one notification to everyone",
        args.clients, args.rounds
    ));
    let server = Server::start().await?;
    let origin = Instant::now();
    let rounds: Arc<Vec<Round>> = Arc::new(
        (0..args.rounds)
            .map(|_| Round {
                count: AtomicUsize::new(0),
                first: AtomicU64::new(u64::MAX),
                last: AtomicU64::new(0),
            })
            .collect(),
    );
    let done = Arc::new(Notify::new());
    let strays = Arc::new(AtomicU64::new(0));
    let on_event = {
        let (rounds, done, strays, n) =
            (rounds.clone(), done.clone(), strays.clone(), args.clients);
        Arc::new(move |_client: usize, event: &SseEvent| {
            if event.event != b"notification" {
                return;
            }
            let now = origin.elapsed().as_nanos() as u64;
            let Some(round) = number_after(&event.data, br#""bench_round":"#)
                .and_then(|r| rounds.get(r as usize))
            else {
                strays.fetch_add(1, Ordering::Relaxed);
                return;
            };
            round.first.fetch_min(now, Ordering::Relaxed);
            round.last.fetch_max(now, Ordering::Relaxed);
            if round.count.fetch_add(1, Ordering::AcqRel) + 1 == n {
                done.notify_one();
            }
        })
    };
    let fleet = Fleet::connect_all(&server, args.clients, args.batch, on_event, out).await?;

    let mut conn = tokio::time::timeout(Duration::from_secs(10), Connection::open(server.addr))
        .await
        .map_err(|_| "publisher connect: timed out".to_owned())?
        .map_err(|e| format!("publisher connect: {e}"))?;
    let mut response = Vec::new();
    let mut times = Vec::with_capacity(args.rounds);
    let mut rows = Vec::with_capacity(args.rounds);
    let mut failure = None;
    for (r, round) in rounds.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        let body = format!(
            r#"{{"to":{{"all":true}},"title":"bench broadcast","data":{{"bench_round":{r}}}}}"#
        );
        let before = origin.elapsed().as_nanos() as u64;
        let status = tokio::time::timeout(
            Duration::from_secs(10),
            conn.request_into(
                "POST",
                "/v1/notifications",
                Some(&server.api_key),
                Some(body.as_bytes()),
                &mut response,
            ),
        )
        .await;
        let post_ns = (origin.elapsed().as_nanos() as u64).saturating_sub(before);
        match status {
            Ok(Ok(202)) => {}
            Ok(Ok(s)) => {
                failure = Some(format!(
                    "round {r}: publish answered {s}: {}",
                    String::from_utf8_lossy(&response)
                ));
                break;
            }
            Ok(Err(e)) => {
                failure = Some(format!("round {r}: publish: {e}"));
                break;
            }
            Err(_) => {
                failure = Some(format!("round {r}: publish did not answer within 10 s"));
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(args.round_timeout);
        loop {
            let closed = fleet.stats.closed.load(Ordering::Relaxed);
            if round.count.load(Ordering::Acquire) + closed >= args.clients
                || Instant::now() >= deadline
            {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), done.notified()).await;
        }
        let count = round.count.load(Ordering::Acquire);
        let last_ns = round.last.load(Ordering::Relaxed).saturating_sub(before);
        let first_ns = round.first.load(Ordering::Relaxed).saturating_sub(before);
        out.line(format!(
            "  round {r}: last client after {:.2} ms (first {:.2} ms, POST {:.2} ms), {count} of {} clients",
            ms(last_ns),
            ms(first_ns),
            ms(post_ns),
            args.clients
        ));
        rows.push(json!({ "round": r, "last_ms": ms(last_ns), "first_ms": ms(first_ns), "post_ms": ms(post_ns), "received": count }));
        if count < args.clients {
            failure = Some(format!(
                "round {r}: only {count} of {} clients received it within {} s ({} streams closed; {})",
                args.clients,
                args.round_timeout,
                fleet.stats.closed.load(Ordering::Relaxed),
                fleet
                    .stats
                    .first_error()
                    .unwrap_or_else(|| "no stream error".into())
            ));
            break;
        }
        times.push(last_ns);
    }
    let closed = fleet.stats.closed.load(Ordering::Relaxed);
    let connect_s = fleet.connect_time.as_secs_f64();
    let stream_error = fleet.stats.first_error();
    drop(fleet);
    let mut sorted = times.clone();
    sorted.sort_unstable();
    // Median: the middle value, or the mean of the two middle ones.
    let median = match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    };
    let max = sorted.last().copied().unwrap_or(0);
    out.line(format!(
        "  time to the last client: median {:.2} ms, max {:.2} ms over {} rounds",
        ms(median),
        ms(max),
        times.len()
    ));
    let stray = strays.load(Ordering::Relaxed);
    if closed > 0 || stray > 0 {
        out.line(format!(
            "  streams closed by the server {closed}, unexpected notifications {stray}"
        ));
    }
    let server_report = server.stop(out).await;
    let value = json!({
        "bench": "broadcast",
        "clients": args.clients,
        "rounds": args.rounds,
        "connect_s": connect_s,
        "round_ms": rows,
        "median_ms": ms(median),
        "max_ms": ms(max),
        "streams_closed": closed,
        "stream_error": stream_error,
        "unexpected_notifications": stray,
        "server": server_report,
    });
    match failure {
        Some(f) => {
            out.result(&value);
            Err(f)
        }
        None => Ok(value),
    }
}
