//! `herald bench sse-memory`: the server's resident memory per idle SSE connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::Out;
use super::clients::{Fleet, OnEvent};
use super::server::{Server, mib, rss_of};

#[derive(clap::Args)]
pub struct Args {
    /// Idle SSE clients to connect.
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub clients: usize,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub batch: usize,
    /// Seconds to let the server settle before each reading.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle: u64,
}

pub async fn run(args: Args, out: Out) -> Result<serde_json::Value, String> {
    out.line(format!("sse-memory: {} idle SSE clients", args.clients));
    let server = Server::start().await?;
    let ignore: OnEvent = Arc::new(|_, _| {});
    let timeout = Duration::from_secs(30 + args.clients as u64 / 100);
    // One client first, so that the first connection's one-time costs are not counted.
    let warmup = Fleet::connect(&server, args.clients, 1, 1, timeout, ignore.clone()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss()?;
    let fleet = Fleet::connect(&server, 0, args.clients, args.batch, timeout, ignore).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = server.rss()?;
    let closed =
        fleet.stats.closed.load(Ordering::Relaxed) + warmup.stats.closed.load(Ordering::Relaxed);
    let own = rss_of("/proc/self/status").unwrap_or(0);
    let connect_s = fleet.connect_time.as_secs_f64();
    drop(fleet);
    drop(warmup);
    let per_connection = after.saturating_sub(before) as f64 / args.clients as f64;
    out.line(format!(
        "  {} clients ready in {connect_s:.2} s; server RSS {:.2} MiB before, {:.2} MiB after: {:.0} bytes ({:.1} KiB) per connection",
        args.clients,
        mib(before),
        mib(after),
        per_connection,
        per_connection / 1024.0
    ));
    out.line(format!(
        "  (the benchmark process itself: {:.2} MiB resident with all clients connected)",
        mib(own)
    ));
    if closed > 0 {
        out.line(format!(
            "  {closed} streams were closed by the server while idle"
        ));
    }
    let server_report = server.stop(out).await;
    Ok(json!({
        "bench": "sse-memory",
        "clients": args.clients,
        "connect_s": connect_s,
        "rss_before_mib": mib(before),
        "rss_after_mib": mib(after),
        "bytes_per_connection": per_connection.round(),
        "client_process_rss_mib": mib(own),
        "streams_closed": closed,
        "server": server_report,
    }))
}
