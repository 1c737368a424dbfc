//! `herald bench publish`: accepted notifications per second and their latency, measured next to
//! a `/healthz` reference with the same connections, then how long the fan-out takes to catch up.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Out;
use super::server::Server;
use super::stats::{Rng, Summary, ms};
use crate::commands::http::Connection;

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections, each sending requests back to back.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub connections: usize,
    /// Seconds of each timed phase (the /healthz reference, then publishing).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Each notification goes to one user drawn from u0..u{users-1}.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub users: usize,
    /// Most seconds to wait for the fan-out queue to drain after publishing.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub drain_timeout: u64,
}

/// How long a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: Args, out: Out) -> Result<serde_json::Value, String> {
    out.line(format!(
        "publish: {} connections, {} s per phase, one recipient each among {} users",
        args.connections, args.seconds, args.users
    ));
    let server = Server::start().await?;
    let duration = Duration::from_secs(args.seconds);
    let reference = phase(
        server.addr,
        args.connections,
        duration,
        Kind::Healthz,
        server.api_key.clone(),
    )
    .await;
    let mut ref_lat = reference.latencies;
    let ref_summary = Summary::of(&mut ref_lat);
    let healthz_rate = reference.ok as f64 / reference.elapsed.as_secs_f64();
    out.line(format!(
        "  healthz reference: {} answers in {:.2} s = {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), {} errors",
        reference.ok,
        reference.elapsed.as_secs_f64(),
        healthz_rate,
        ms(ref_summary.p50),
        ms(ref_summary.p99),
        reference.errors
    ));
    if let Some(e) = &reference.first_error {
        out.line(format!("    first error: {e}"));
    }

    let published = phase(
        server.addr,
        args.connections,
        duration,
        Kind::Publish { users: args.users },
        server.api_key.clone(),
    )
    .await;
    let phase_end = Instant::now();
    let mut lat = published.latencies;
    let summary = Summary::of(&mut lat);
    let accepted_rate = published.ok as f64 / published.elapsed.as_secs_f64();
    let ratio = if healthz_rate > 0.0 {
        accepted_rate / healthz_rate
    } else {
        0.0
    };
    out.line(format!(
        "  publish: {} accepted (202) in {:.2} s = {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        published.ok,
        published.elapsed.as_secs_f64(),
        accepted_rate,
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max),
        published.errors
    ));
    if let Some(e) = &published.first_error {
        out.line(format!("    first error: {e}"));
    }
    out.line(format!("  ratio accepted/s ÷ healthz/s: {ratio:.3}"));

    let drain = drain(
        server.addr,
        published.ok,
        phase_end,
        Duration::from_secs(args.drain_timeout),
    )
    .await;
    let describe = |t: Option<Duration>| {
        t.map_or_else(
            || "not within the timeout".to_owned(),
            |t| format!("{:.2} s", t.as_secs_f64()),
        )
    };
    out.line(format!(
        "  fan-out: queue depth {} when publishing stopped; all {} delivered after {}; queue gauge at zero after {} (the gauge refreshes every 1 s)",
        drain.depth_at_end.map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
        published.ok,
        describe(drain.delivered_after),
        describe(drain.queue_empty_after),
    ));
    if let Some(e) = &drain.error {
        out.line(format!("    metrics: {e}"));
    }
    let server_report = server.stop(out).await;
    let caught_up = drain.delivered_after.is_some() && drain.queue_empty_after.is_some();
    let value = json!({
        "bench": "publish",
        "connections": args.connections,
        "seconds": args.seconds,
        "users": args.users,
        "healthz": {
            "requests": reference.ok,
            "errors": reference.errors,
            "elapsed_s": reference.elapsed.as_secs_f64(),
            "per_sec": healthz_rate.round(),
            "latency": ref_summary.json(),
        },
        "publish": {
            "accepted": published.ok,
            "errors": published.errors,
            "first_error": published.first_error,
            "elapsed_s": published.elapsed.as_secs_f64(),
            "accepted_per_sec": accepted_rate.round(),
            "latency": summary.json(),
        },
        "ratio_to_healthz": (ratio * 1000.0).round() / 1000.0,
        "fanout": {
            "queue_depth_at_end": drain.depth_at_end,
            "delivered": drain.delivered,
            "all_delivered_after_ms": drain.delivered_after.map(|d| d.as_millis() as u64),
            "queue_empty_after_ms": drain.queue_empty_after.map(|d| d.as_millis() as u64),
            "caught_up": caught_up,
        },
        "server": server_report,
    });
    if !caught_up {
        out.result(&value);
        return Err(format!(
            "the fan-out did not catch up within {} s ({} of {} delivered)",
            args.drain_timeout, drain.delivered, published.ok
        ));
    }
    Ok(value)
}

#[derive(Clone, Copy)]
enum Kind {
    Healthz,
    Publish { users: usize },
}

#[derive(Default)]
struct PhaseResult {
    ok: u64,
    errors: u64,
    latencies: Vec<u64>,
    elapsed: Duration,
    first_error: Option<String>,
}

/// `connections` connections send requests back to back until `duration` has passed.
async fn phase(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    kind: Kind,
    api_key: Arc<str>,
) -> PhaseResult {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let api_key = api_key.clone();
            tokio::spawn(async move {
                let mut result = connection_loop(addr, kind, &api_key, deadline, i as u64).await;
                result.elapsed = start.elapsed();
                result
            })
        })
        .collect();
    let mut total = PhaseResult::default();
    for task in tasks {
        let Ok(r) = task.await else {
            total.errors += 1;
            continue;
        };
        total.ok += r.ok;
        total.errors += r.errors;
        total.latencies.extend_from_slice(&r.latencies);
        total.elapsed = total.elapsed.max(r.elapsed);
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    total
}

async fn connection_loop(
    addr: SocketAddr,
    kind: Kind,
    api_key: &str,
    deadline: tokio::time::Instant,
    seed: u64,
) -> PhaseResult {
    let mut result = PhaseResult {
        latencies: Vec::with_capacity(16 * 1024),
        ..Default::default()
    };
    let mut rng = Rng::seeded(seed);
    let mut conn: Option<Connection> = None;
    let mut request = Vec::with_capacity(256);
    let mut response = Vec::with_capacity(256);
    let (method, path, bearer, expect) = match kind {
        Kind::Healthz => ("GET", "/healthz", None, 200),
        Kind::Publish { .. } => ("POST", "/v1/notifications", Some(api_key), 202),
    };
    let note = |result: &mut PhaseResult, e: String| {
        result.errors += 1;
        result.first_error.get_or_insert(e);
    };
    while tokio::time::Instant::now() < deadline {
        let c = match &mut conn {
            Some(c) => c,
            None => match tokio::time::timeout_at(deadline, Connection::open(addr)).await {
                Ok(Ok(c)) => conn.insert(c),
                Ok(Err(e)) => {
                    note(&mut result, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => break,
            },
        };
        let body = match kind {
            Kind::Healthz => None,
            Kind::Publish { users } => {
                request.clear();
                let _ = write!(
                    request,
                    r#"{{"to":{{"users":["u{}"]}},"title":"bench","body":"A benchmark notification with a short body of ordinary length."}}"#,
                    rng.below(users)
                );
                Some(&request[..])
            }
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            c.request_into(method, path, bearer, body, &mut response),
        )
        .await;
        let took = sent.elapsed();
        match answer {
            Ok(Ok(status)) if status == expect => {
                result.ok += 1;
                result.latencies.push(took.as_nanos() as u64);
            }
            Ok(Ok(status)) => {
                let text =
                    String::from_utf8_lossy(&response[..response.len().min(300)]).into_owned();
                note(
                    &mut result,
                    format!("{method} {path} answered {status}: {text}"),
                );
            }
            Ok(Err(e)) => {
                note(&mut result, format!("{method} {path}: {e}"));
                conn = None;
            }
            Err(_) => {
                note(
                    &mut result,
                    format!(
                        "{method} {path}: no answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                );
                conn = None;
            }
        }
    }
    result
}

pub(super) struct Drain {
    pub depth_at_end: Option<u64>,
    pub delivered: u64,
    pub delivered_after: Option<Duration>,
    pub queue_empty_after: Option<Duration>,
    pub error: Option<String>,
}

/// Polls `/metrics` until `accepted` inbox deliveries are counted and the queue gauge reads zero.
pub(super) async fn drain(
    addr: SocketAddr,
    accepted: u64,
    since: Instant,
    timeout: Duration,
) -> Drain {
    let mut drain = Drain {
        depth_at_end: None,
        delivered: 0,
        delivered_after: None,
        queue_empty_after: None,
        error: None,
    };
    let mut conn: Option<Connection> = None;
    let mut body = Vec::new();
    while since.elapsed() < timeout {
        if conn.is_none() {
            conn = tokio::time::timeout(REQUEST_TIMEOUT, Connection::open(addr))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(c) = &mut conn {
            match tokio::time::timeout(
                REQUEST_TIMEOUT,
                c.request_into("GET", "/metrics", None, None, &mut body),
            )
            .await
            {
                Ok(Ok(200)) => {
                    let text = String::from_utf8_lossy(&body);
                    let (depth, delivered) = parse_metrics(&text);
                    if drain.depth_at_end.is_none() {
                        drain.depth_at_end = depth;
                    }
                    drain.delivered = delivered;
                    if drain.delivered_after.is_none() && delivered >= accepted {
                        drain.delivered_after = Some(since.elapsed());
                    }
                    if drain.queue_empty_after.is_none() && depth == Some(0) {
                        drain.queue_empty_after = Some(since.elapsed());
                    }
                    if drain.delivered_after.is_some() && drain.queue_empty_after.is_some() {
                        break;
                    }
                }
                Ok(Ok(status)) => drain.error = Some(format!("/metrics answered {status}")),
                Ok(Err(e)) => {
                    drain.error = Some(format!("/metrics: {e}"));
                    conn = None;
                }
                Err(_) => {
                    drain.error = Some("/metrics did not answer".into());
                    conn = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain
}

/// Sum of the `herald_queue_depth` lanes (if present), and inbox deliveries so far.
fn parse_metrics(text: &str) -> (Option<u64>, u64) {
    let mut depth = None;
    let mut delivered = 0;
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = value.parse::<f64>().unwrap_or(0.0) as u64;
        if name.starts_with("herald_queue_depth{") {
            *depth.get_or_insert(0) += value;
        } else if name.starts_with("herald_deliveries_total{")
            && name.contains(r#"channel="inbox""#)
        {
            delivered += value;
        }
    }
    (depth, delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read() {
        let text = "# TYPE herald_queue_depth gauge\nherald_queue_depth{lane=\"high\"} 0\nherald_queue_depth{lane=\"normal\"} 12\n\
                    herald_deliveries_total{channel=\"inbox\"} 345\nherald_deliveries_total{channel=\"realtime\"} 9\n";
        assert_eq!(parse_metrics(text), (Some(12), 345));
        assert_eq!(parse_metrics(""), (None, 0));
    }
}
