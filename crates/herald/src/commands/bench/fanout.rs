//! `herald bench fanout`: inbox fan-out of one notification to N users on a Redis server (or
//! Cluster), next to `redis-benchmark -P 64 -t zadd` on the same server (`--cluster`: on the
//! same masters) in the same run, and the Redis memory each user and each inbox entry costs.
//!
//! Two audiences: the subscribers of a topic (an inbox entry written per user), or an uploaded
//! list (`--audience list`: a list campaign started by hand, whose inbox entry is one shared
//! entry for the whole list, shown through who is listed; the time runs from the start, so it
//! includes judging every listed user's preferences).
//!
//! Point it at a scratch Redis: it adds keys (users, a topic or campaigns, `myzset` from
//! redis-benchmark).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Out;
use super::api::Api;
use super::campaign::USER_PREFIX;
use super::publish::drain;
use super::server::Server;
use crate::commands::http::Connection;

#[derive(clap::Args)]
pub struct Args {
    /// Recipients (subscribers of one topic, or listed users).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Who hears the notification.
    #[arg(long, value_enum, default_value_t = Audience::Topic)]
    pub audience: Audience,
    /// The Redis to use, e.g. redis://127.0.0.1:6379 or redis+cluster://host:port,host:port.
    #[arg(long)]
    pub redis: String,
    /// Longest wait for the fan-out, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Audience {
    /// The subscribers of one topic: `POST /v1/notifications` to the topic.
    Topic,
    /// An uploaded list: a list campaign, started by hand.
    List,
}

/// The `host`/`port` pairs a URL names (one server, or the seed nodes of a cluster).
fn nodes(url: &str) -> Result<Vec<(String, String)>, String> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hosts = rest.split('/').next().unwrap_or("");
    hosts
        .split(',')
        .map(|hostport| {
            let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
            hostport
                .rsplit_once(':')
                .map(|(h, p)| (h.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("no host:port in {url}"))
        })
        .collect()
}

/// `redis-cli` against one node.
fn redis_cli((host, port): &(String, String), args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli: {e} (apt-get install redis-tools)"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bytes Redis uses, summed over the nodes the URL names.
fn used_memory(url: &str) -> Result<u64, String> {
    let mut total = 0;
    for node in nodes(url)? {
        let info = redis_cli(&node, &["INFO", "memory"])?;
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no used_memory from {}:{}", node.0, node.1))?;
    }
    Ok(total)
}

/// ZADDs per second from `redis-benchmark -P 64 -t zadd` on the (first) server, or with
/// `--cluster` over every master of a Cluster.
fn reference_zadd(url: &str, n: u64) -> Result<f64, String> {
    let node = nodes(url)?.remove(0);
    let (host, port) = (&node.0, &node.1);
    // On a Cluster, `--cluster` spreads the benchmark's keys over every master.
    let cluster = url.starts_with("redis+cluster");
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-P",
            "64",
            "-t",
            "zadd",
            "-n",
            &n.to_string(),
            "-q",
        ])
        .args(cluster.then_some("--cluster"))
        .output()
        .map_err(|e| format!("redis-benchmark: {e} (apt-get install redis-tools)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines end in \r; the summary is the last piece that names requests per second.
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))
        .ok_or_else(|| format!("redis-benchmark said: {text}"))?;
    let rps = line
        .split("ZADD:")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    redis_cli(&node, &["DEL", "myzset"])?;
    rps.ok_or_else(|| format!("cannot read {line:?}"))
}

async fn post(
    conn: &mut Connection,
    key: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<(), String> {
    let r = conn
        .request("POST", path, Some(key), Some(body.to_string().as_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    if r.status / 100 != 2 {
        return Err(format!(
            "{path} answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(())
}

/// The ZADD reference, measured first while nothing else runs, then a server on `redis`.
async fn reference_then_server(redis: &str, n: u64, out: &Out) -> Result<(f64, Server), String> {
    let reference = reference_zadd(redis, n.max(100_000))?;
    out.line(format!(
        "  reference: redis-benchmark -P 64 -t zadd: {reference:.0} ZADD/s"
    ));
    let server =
        Server::start_with_env(&[("HERALD_REDIS_URL", redis), ("HERALD_NODE_ID", "bench")]).await?;
    Ok((reference, server))
}

pub async fn run(args: Args, out: Out) -> Result<serde_json::Value, String> {
    if args.audience == Audience::List {
        return run_list(args, out).await;
    }
    out.line(format!(
        "fanout: one notification to {} topic subscribers on {}",
        args.users, args.redis
    ));
    let (reference, server) = reference_then_server(&args.redis, args.users, &out).await?;
    let mut conn = Connection::open(server.addr)
        .await
        .map_err(|e| e.to_string())?;
    let key = server.api_key.clone();
    let topic = format!("bench-fanout-{}", std::process::id());
    let started = Instant::now();
    let mut next = 0u64;
    while next < args.users {
        let end = (next + 10_000).min(args.users);
        let users: Vec<String> = (next..end).map(|i| format!("fu{i}")).collect();
        post(
            &mut conn,
            &key,
            &format!("/v1/topics/{topic}/subscribers"),
            json!({ "add": users }),
        )
        .await?;
        next = end;
    }
    out.line(format!(
        "  subscribed {} users in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    ));

    let mut memory = vec![used_memory(&args.redis)?];
    let mut rates = Vec::new();
    for round in 1..=2u64 {
        let body = json!({ "to": { "topic": topic }, "title": format!("fan-out {round}"), "channels": ["inbox"] });
        let since = Instant::now();
        post(&mut conn, &key, "/v1/notifications", body).await?;
        let d = drain(
            server.addr,
            round * args.users,
            since,
            Duration::from_secs(args.timeout),
        )
        .await;
        let Some(took) = d.delivered_after else {
            return Err(format!(
                "fan-out {round} incomplete: {} of {} after {} s ({:?})",
                d.delivered,
                round * args.users,
                args.timeout,
                d.error
            ));
        };
        let rate = args.users as f64 / took.as_secs_f64();
        out.line(format!("  fan-out {round}: {} entries in {:.2} s = {rate:.0} entries/s ({:.3}× the ZADD reference)", args.users, took.as_secs_f64(), rate / reference));
        rates.push(rate);
        memory.push(used_memory(&args.redis)?);
    }
    let per_user = (memory[1].saturating_sub(memory[0])) as f64 / args.users as f64;
    let per_entry = (memory[2].saturating_sub(memory[1])) as f64 / args.users as f64;
    out.line(format!(
        "  redis memory: first entry of a user (inbox + counters) {per_user:.0} B/user, each further entry {per_entry:.0} B"
    ));
    let stopped = server.stop(out).await;
    Ok(json!({
        "benchmark": "fanout",
        "users": args.users,
        "redis": args.redis,
        "reference_zadd_per_s": reference,
        "entries_per_s": rates,
        "ratio_to_reference": rates.iter().map(|r| r / reference).collect::<Vec<_>>(),
        "bytes_per_user_first_entry": per_user,
        "bytes_per_further_entry": per_entry,
        "server": stopped,
    }))
}

/// One list campaign's inbox entry to `args.users` listed users, twice (a second campaign to the
/// same list), each from its start until the last listed user's inbox shows it.
async fn run_list(args: Args, out: Out) -> Result<serde_json::Value, String> {
    let n = args.users;
    out.line(format!(
        "fanout: one list campaign's inbox entry to {n} listed users on {}",
        args.redis
    ));
    let (reference, server) = reference_then_server(&args.redis, n, &out).await?;
    let api = Api {
        addr: server.addr,
        key: server.api_key.clone(),
    };
    let mut conn = api.connect().await?;
    let timeout = Duration::from_secs(args.timeout);
    // used_memory before the round's upload; the first round's list and send, for the summary.
    let mut before = used_memory(&args.redis)?;
    let mut first_round: Option<(f64, i64)> = None;
    let mut rounds = Vec::new();
    for round in 1..=2u64 {
        let title = format!("list fan-out {round}");
        let request = json!({"name": title, "message": {"title": title, "channels": ["inbox"]}});
        let id = api.create_campaign(&mut conn, &request).await?;
        let started = Instant::now();
        let uploaded = api.upload(&id, n).await?;
        let upload_s = started.elapsed().as_secs_f64();
        if uploaded["recipients"].as_u64() != Some(n) {
            return Err(format!("the upload listed not {n}: {uploaded}"));
        }
        let listed = used_memory(&args.redis)?;

        let since = Instant::now();
        api.call(
            &mut conn,
            "POST",
            &format!("/v1/campaigns/{id}/start"),
            None,
            200,
        )
        .await?;
        let view = format!("/v1/campaigns/{id}");
        let last_inbox = format!("/v1/users/{USER_PREFIX}{}/notifications?limit=1", n - 1);
        let (took, delivered) = loop {
            let c = api.call(&mut conn, "GET", &view, None, 200).await?;
            let delivered = c["channels"]["inbox"]["delivered"].as_u64().unwrap_or(0);
            if c["state"] == "completed" && delivered >= n {
                let inbox = api.call(&mut conn, "GET", &last_inbox, None, 200).await?;
                if inbox["items"][0]["title"] == title.as_str() {
                    break (since.elapsed(), delivered);
                }
            }
            if since.elapsed() > timeout {
                return Err(format!(
                    "list fan-out {round} incomplete after {timeout:?}: {c}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let sent = used_memory(&args.redis)?;
        let per_listed = listed.saturating_sub(before) as f64 / n as f64;
        let at_send = sent as i64 - listed as i64;
        first_round.get_or_insert((per_listed, at_send));
        before = sent;
        let rate = n as f64 / took.as_secs_f64();
        out.line(format!(
            "  list fan-out {round}: upload {upload_s:.2} s ({:.0} ids/s = {:.3}× the reference); from the start, {delivered} entries in {:.3} s = {rate:.0} entries/s ({:.2}× the ZADD reference)",
            n as f64 / upload_s,
            n as f64 / upload_s / reference,
            took.as_secs_f64(),
            rate / reference
        ));
        rounds.push(json!({
            "upload_s": upload_s,
            "upload_ids_per_s": n as f64 / upload_s,
            "fanout_s": took.as_secs_f64(),
            "entries_per_s": rate,
            "ratio_to_reference": rate / reference,
            "bytes_per_listed_user": per_listed,
            "bytes_at_send": at_send,
        }));
    }
    let (per_listed, at_send) = first_round.expect("two rounds ran");
    out.line(format!(
        "  redis memory: the list {per_listed:.0} B per listed user (order and membership, until the list is dropped); used_memory moved by {at_send:+} B at the send (O(1): Redis's own client buffers move it by up to a few hundred KB either way)"
    ));
    let stopped = server.stop(out).await;
    Ok(json!({
        "benchmark": "fanout",
        "audience": "list",
        "users": n,
        "redis": args.redis,
        "reference_zadd_per_s": reference,
        "rounds": rounds,
        "server": stopped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_every_url_form() {
        let pair = |h: &str, p: &str| (h.to_owned(), p.to_owned());
        assert_eq!(
            nodes("redis://127.0.0.1:6379/0").unwrap(),
            [pair("127.0.0.1", "6379")]
        );
        assert_eq!(
            nodes("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001").unwrap(),
            [pair("10.0.0.1", "7000"), pair("10.0.0.2", "7001")]
        );
        assert!(nodes("redis://nohost").is_err());
    }
}
