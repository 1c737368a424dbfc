//! `herald bench sse-latency`: time from publishing a notification to its arrival on a user's
//! SSE stream, with many clients connected and a paced publisher.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Out;
use super::clients::Fleet;
use super::server::Server;
use super::stats::{Rng, Summary, ms, number_after};
use crate::commands::http::Connection;

#[derive(clap::Args)]
pub struct Args {
    /// Connected SSE clients, users u0..u{clients-1}.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub clients: usize,
    /// Notifications published, each to one random connected user.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub messages: usize,
    /// Notifications per second.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Publisher connections sharing the pace.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub publishers: usize,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub batch: usize,
    /// Seconds to wait for the last notifications after publishing ends.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub wait: u64,
}

/// Shared between the clients and the benchmark.
struct Receipts {
    /// Receipt time minus send time, nanoseconds.
    latencies: Mutex<Vec<u64>>,
    /// Which messages arrived, by sequence number.
    seen: Vec<AtomicBool>,
    received: AtomicU64,
    duplicates: AtomicU64,
    /// Notifications whose data could not be read.
    unreadable: AtomicU64,
}

pub async fn run(args: Args, out: Out) -> Result<serde_json::Value, String> {
    out.line(format!(
        "sse-latency: {} clients, {} notifications at {}/s from {} publisher connections",
        args.clients, args.messages, args.rate, args.publishers
    ));
    let server = Server::start().await?;
    let origin = Instant::now();
    let receipts = Arc::new(Receipts {
        latencies: Mutex::new(Vec::with_capacity(args.messages)),
        seen: (0..args.messages).map(|_| AtomicBool::new(false)).collect(),
        received: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        unreadable: AtomicU64::new(0),
    });
    let on_event = {
        let receipts = receipts.clone();
        Arc::new(
            move |_client: usize, event: &crate::commands::http::SseEvent| {
                if event.event != b"notification" {
                    return;
                }
                let now = origin.elapsed().as_nanos() as u64;
                let (Some(seq), Some(sent)) = (
                    number_after(&event.data, br#""seq":"#),
                    number_after(&event.data, br#""sent_ns":"#),
                ) else {
                    receipts.unreadable.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                match receipts.seen.get(seq as usize) {
                    Some(flag) if !flag.swap(true, Ordering::Relaxed) => {
                        receipts
                            .latencies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(now.saturating_sub(sent));
                        receipts.received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(_) => {
                        receipts.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        receipts.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
        )
    };
    let fleet = Fleet::connect_all(&server, args.clients, args.batch, on_event, out).await?;

    // Publishing, paced: message i leaves at start + i/rate, from connection i % publishers.
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let interval_ns = 1_000_000_000 / args.rate;
    let publish_budget =
        Duration::from_nanos(interval_ns * args.messages as u64) + Duration::from_secs(30);
    let plan = Arc::new(Plan {
        addr: server.addr,
        key: server.api_key.clone(),
        publishers: args.publishers,
        messages: args.messages,
        clients: args.clients,
        start,
        interval: Duration::from_nanos(interval_ns),
        deadline: start + publish_budget,
        origin,
    });
    let publishers: Vec<_> = (0..args.publishers)
        .map(|k| tokio::spawn(publisher(plan.clone(), k)))
        .collect();
    let mut posts = Vec::with_capacity(args.messages);
    let (mut accepted, mut errors, mut first_error) = (0u64, 0u64, None);
    for p in publishers {
        match p.await {
            Ok(r) => {
                accepted += r.accepted;
                errors += r.errors;
                posts.extend_from_slice(&r.latencies);
                if first_error.is_none() {
                    first_error = r.first_error;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let publish_time = start.elapsed();
    let achieved_rate = accepted as f64 / publish_time.as_secs_f64();
    let post = Summary::of(&mut posts);
    out.line(format!(
        "  published {accepted} of {} in {:.2} s ({achieved_rate:.0}/s); POST p50 {:.2} ms, p99 {:.2} ms; {errors} errors",
        args.messages,
        publish_time.as_secs_f64(),
        ms(post.p50),
        ms(post.p99)
    ));
    if let Some(e) = &first_error {
        out.line(format!("    first publish error: {e}"));
    }

    // Wait, bounded, for what is still on its way.
    let wait_until = Instant::now() + Duration::from_secs(args.wait);
    while receipts.received.load(Ordering::Relaxed) < accepted && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = receipts.received.load(Ordering::Relaxed);
    let duplicates = receipts.duplicates.load(Ordering::Relaxed);
    let unreadable = receipts.unreadable.load(Ordering::Relaxed);
    let closed = fleet.stats.closed.load(Ordering::Relaxed);
    let close_error = fleet.stats.first_error();
    let mut latencies =
        std::mem::take(&mut *receipts.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let summary = Summary::of(&mut latencies);
    let connect_s = fleet.connect_time.as_secs_f64();
    drop(fleet);
    out.line(format!(
        "  delivery latency publish→SSE: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; received {received} of {}",
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max),
        args.messages
    ));
    if duplicates + unreadable > 0 || closed > 0 {
        out.line(format!("  duplicates {duplicates}, unreadable {unreadable}, streams closed by the server {closed}"));
    }
    if let Some(e) = &close_error {
        out.line(format!("    first stream error: {e}"));
    }
    let server_report = server.stop(out).await;
    let missing = args.messages as u64 - received;
    let value = json!({
        "bench": "sse-latency",
        "clients": args.clients,
        "messages": args.messages,
        "rate": args.rate,
        "publishers": args.publishers,
        "connect_s": connect_s,
        "published": accepted,
        "publish_errors": errors,
        "publish_first_error": first_error,
        "publish_rate_achieved": achieved_rate.round(),
        "post_latency": post.json(),
        "received": received,
        "missing": missing,
        "duplicates": duplicates,
        "unreadable": unreadable,
        "streams_closed": closed,
        "stream_error": close_error,
        "latency": summary.json(),
        "server": server_report,
    });
    if missing > 0 {
        out.result(&value);
        return Err(format!(
            "{missing} of {} notifications never arrived on their stream within {} s after publishing ended \
             ({errors} publish errors, {closed} streams closed)",
            args.messages, args.wait
        ));
    }
    Ok(value)
}

#[derive(Default)]
struct PublisherResult {
    accepted: u64,
    errors: u64,
    latencies: Vec<u64>,
    first_error: Option<String>,
}

/// What the publisher connections share.
struct Plan {
    addr: SocketAddr,
    key: Arc<str>,
    publishers: usize,
    messages: usize,
    clients: usize,
    /// Message `seq` leaves at `start + seq * interval`.
    start: tokio::time::Instant,
    interval: Duration,
    deadline: tokio::time::Instant,
    /// The clock `sent_ns` counts from.
    origin: Instant,
}

/// Publisher `k` sends messages `k`, `k + publishers`, ... on one keep-alive connection.
async fn publisher(plan: Arc<Plan>, k: usize) -> PublisherResult {
    let Plan {
        addr,
        publishers,
        messages,
        clients,
        start,
        interval,
        deadline,
        origin,
        ..
    } = *plan;
    let key = &*plan.key;
    let mut result = PublisherResult {
        latencies: Vec::with_capacity(messages / publishers + 1),
        ..Default::default()
    };
    let mut rng = Rng::seeded(1000 + k as u64);
    let mut conn: Option<Connection> = None;
    let (mut request, mut response) = (Vec::with_capacity(256), Vec::with_capacity(256));
    for seq in (k..messages).step_by(publishers) {
        tokio::time::sleep_until(start + interval * seq as u32).await;
        if tokio::time::Instant::now() >= deadline {
            result.errors += 1;
            result
                .first_error
                .get_or_insert_with(|| "publishing ran past its time budget".into());
            continue;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match tokio::time::timeout_at(deadline, Connection::open(addr)).await {
                Ok(Ok(c)) => conn.insert(c),
                Ok(Err(e)) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(format!("connect: {e}"));
                    continue;
                }
                Err(_) => {
                    result.errors += 1;
                    result
                        .first_error
                        .get_or_insert_with(|| "connect: timed out".into());
                    continue;
                }
            },
        };
        let user = rng.below(clients);
        let sent = Instant::now();
        let sent_ns = sent.duration_since(origin).as_nanos() as u64;
        request.clear();
        let _ = write!(
            request,
            r#"{{"to":{{"users":["u{user}"]}},"title":"bench","data":{{"seq":{seq},"sent_ns":{sent_ns}}}}}"#
        );
        let answer = tokio::time::timeout_at(
            deadline,
            c.request_into(
                "POST",
                "/v1/notifications",
                Some(key),
                Some(&request),
                &mut response,
            ),
        )
        .await;
        match answer {
            Ok(Ok(202)) => {
                result.accepted += 1;
                result.latencies.push(sent.elapsed().as_nanos() as u64);
            }
            Ok(Ok(status)) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| {
                    format!(
                        "publish answered {status}: {}",
                        String::from_utf8_lossy(&response)
                    )
                });
            }
            Ok(Err(e)) => {
                result.errors += 1;
                result.first_error.get_or_insert(format!("publish: {e}"));
                conn = None;
            }
            Err(_) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| "publish: no answer before the deadline".into());
                conn = None;
            }
        }
    }
    result
}
