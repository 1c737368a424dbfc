//! `herald bench`: benchmarks, each against a server of its own started for the run.
//!
//! Every benchmark spawns `herald serve` (this very executable) on a free loopback port with a
//! fresh data directory, drives it with the raw HTTP client of `commands::http`, prints
//! human-readable lines, and with `--json` one JSON object on stdout (the lines then go to stderr).

mod api;
mod broadcast;
mod campaign;
mod channels;
mod clients;
mod fanout;
mod h2load;
mod preemption;
mod publish;
mod push;
mod server;
mod sse_latency;
mod sse_memory;
mod stats;

use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object per benchmark on stdout; the human-readable lines go to stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Publish throughput and latency (POST /v1/notifications), next to a GET /healthz reference.
    Publish(publish::Args),
    /// Publish-to-SSE delivery latency across many connected clients.
    SseLatency(sse_latency::Args),
    /// Time for a notification to everyone to reach every connected SSE client.
    Broadcast(broadcast::Args),
    /// Server memory per idle SSE connection.
    SseMemory(sse_memory::Args),
    /// Inbox fan-out to N users on Redis, next to redis-benchmark ZADD, and Redis memory per entry.
    Fanout(fanout::Args),
    /// Sends per second to the fake FCM over HTTP/2, next to h2load against the same fake.
    Push(push::Args),
    /// Time for one `high` push to reach the fake FCM behind a backlog of `low` pushes.
    Preemption(preemption::Args),
    /// One campaign to N users end to end: upload, time from `send_at` to the last inbox entry
    /// or push send (next to h2load), and the server's memory.
    Campaign(campaign::Args),
    /// Realtime channels: throughput, latency and one big message over WebSocket, next to a
    /// Node.js socket.io + ioredis relay started in the same run.
    Channels(channels::Args),
}

/// Where the human-readable lines go: stdout, or stderr when stdout carries JSON.
#[derive(Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    pub fn line(&self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// The JSON object, on stdout with `--json`; also used for a run that failed after measuring.
    pub fn result(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }
}

pub fn run(args: Args) -> Result<(), String> {
    let out = Out { json: args.json };
    let limit = raise_nofile_limit()?;
    let needed = match &args.bench {
        Bench::Publish(a) => a.connections,
        Bench::SseLatency(a) => a.clients + a.publishers,
        Bench::Broadcast(a) => a.clients,
        Bench::SseMemory(a) => a.clients + 1,
        Bench::Channels(a) => a.connections(),
        Bench::Fanout(_) | Bench::Push(_) | Bench::Preemption(_) | Bench::Campaign(_) => 0,
    } as libc::rlim_t
        + 64;
    if needed > limit {
        return Err(format!(
            "this run needs about {needed} open files and the limit is {limit} (hard limit included); \
             raise it (ulimit -Hn, or LimitNOFILE for a service) or use fewer clients"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async move {
        match args.bench {
            Bench::Publish(a) => publish::run(a, out).await,
            Bench::SseLatency(a) => sse_latency::run(a, out).await,
            Bench::Broadcast(a) => broadcast::run(a, out).await,
            Bench::SseMemory(a) => sse_memory::run(a, out).await,
            Bench::Fanout(a) => fanout::run(a, out).await,
            Bench::Push(a) => push::run(a, out).await,
            Bench::Preemption(a) => preemption::run(a, out).await,
            Bench::Campaign(a) => campaign::run(a, out).await,
            Bench::Channels(a) => channels::run(a, out).await,
        }
    });
    // Client tasks still parked on their sockets are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let value = result?;
    out.result(&value);
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (the server child inherits it) and
/// returns the new limit. Each SSE client costs one descriptor here and one in the server.
fn raise_nofile_limit() -> Result<libc::rlim_t, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}
