//! `herald bench campaign`: one campaign to N users, end to end through the real API.
//!
//! The campaign is created with `send_at` a few seconds ahead (`--lead`), its audience is
//! streamed in (`PUT /v1/campaigns/{id}/recipients`, one user id a line, generated on the fly),
//! and from `send_at` on the benchmark watches `GET /v1/campaigns/{id}` until every recipient is
//! handled. Two modes:
//!
//! - `--channel inbox`: the time from `send_at` until `done` and `channels.inbox.delivered`
//!   both reach N (also the server's own `finished_at`).
//! - `--channel push`: every user has one FCM device; the fake FCM runs in this process and
//!   notes, in its record filter, when the first and the last send arrived (one atomic per
//!   request). `h2load` posts a body of the same shape to the same fake before and after the
//!   campaign, as the reference rate.
//!
//! Devices are registered before the server starts, straight into its embedded store (the
//! same `register_device` the API calls), or with `--register api` through
//! `POST /v1/users/{user}/devices`. The server's memory (VmRSS, VmHWM) is sampled all along.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::{DeviceRegistration, Notification, Platform};
use herald_fakes::{FakeFcm, FakeHandle, FcmConfig, FcmMessage, TestCa};
use herald_push::PushMessage;
use herald_push::config::ProviderLimits;
use herald_store::{EmbeddedStore, Store, StoreOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Out;
use super::api::Api;
use super::h2load::{self, STATIC_TOKEN};
use super::server::{Server, cpu_of_process, mib, own_cpu};

#[derive(clap::Args)]
pub struct Args {
    /// Recipients (users in the uploaded list; in push mode each has one FCM device).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    users: u64,
    /// The campaign's one channel.
    #[arg(long, value_enum, default_value_t = Mode::Inbox)]
    channel: Mode,
    /// Seconds from creating the campaign to its `send_at`; the upload must fit in them.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lead: u64,
    /// How push devices are registered: straight into the embedded store before the server
    /// starts, or through the API once it runs.
    #[arg(long, value_enum, default_value_t = Register::Store)]
    register: Register,
    /// Requests per h2load reference round (push mode; one round before the campaign, one after).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    h2load_sends: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Inbox,
    Push,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Inbox => "inbox",
            Mode::Push => "push",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Register {
    Store,
    Api,
}

/// User ids are this and a number, `0..N`.
pub const USER_PREFIX: &str = "user";
/// FCM tokens are this and the user's number (the length of push.rs's tokens).
const TOKEN_PREFIX: &str = "bench-token-";
/// Concurrent `register_device` calls into the store.
const STORE_REGISTRARS: usize = 256;
/// Connections registering devices through the API.
const API_REGISTRARS: usize = 64;
/// Bytes of audience per chunk of the upload.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// How often the campaign is read while it is sent.
const POLL: Duration = Duration::from_millis(50);
/// How often the server's memory is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// Progress lines while sending.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// A campaign that makes no progress at all for this long is reported as stalled.
const STALL: Duration = Duration::from_secs(60);
/// Targets of the issue.
const INBOX_TARGET_S: f64 = 5.0;
const FIRST_SEND_TARGET_MS: f64 = 100.0;
const RATIO_TARGET: f64 = 0.8;
const RSS_TARGET: u64 = 1024 * 1024 * 1024;

const TITLE: &str = "Your weekly summary is ready";
const BODY: &str = "3 new followers, 12 likes and 2 comments since last week. Tap to see them.";

pub async fn run(args: Args, out: Out) -> Result<Value, String> {
    let n = args.users;
    let push = args.channel == Mode::Push;
    let load = loadavg();
    let fcm = ProviderLimits::default();
    let streams = fcm.concurrency.div_ceil(fcm.connections).max(1);
    out.line(format!(
        "campaign: {n} recipients, channel {}, send_at {} s after creation{}; load average {load}",
        args.channel.as_str(),
        args.lead,
        if push {
            format!(
                ", one FCM device each (registered via the {}), fake FCM in this process",
                match args.register {
                    Register::Store => "store before the server starts",
                    Register::Api => "API",
                }
            )
        } else {
            String::new()
        }
    ));

    let dir = BenchDir::create()?;
    let data = dir.path.join("data");
    let fake = if push {
        Some(Fake::start().await?)
    } else {
        None
    };
    let mut serve_args: Vec<String> = Vec::new();
    let mut h2_body = PathBuf::new();
    if let Some(fake) = &fake {
        serve_args = vec!["--config".into(), dir.write_config(fake)?];
        let body = herald_push::fcm::message_body(
            &reference_message(),
            &format!("{TOKEN_PREFIX}0"),
            false,
            herald_core::time::now_ms(),
        )?;
        h2_body = dir.path.join("body.json");
        std::fs::write(&h2_body, &body).map_err(|e| e.to_string())?;
        out.line(format!(
            "  FCM client: {} connections, concurrency {} (h2load -c {} -m {streams}); h2load body {} bytes",
            fcm.connections,
            fcm.concurrency,
            fcm.connections,
            body.len()
        ));
    }

    // The reference, first round: nothing else runs yet.
    let mut reference = Vec::new();
    if let Some(fake) = &fake {
        reference.push(
            reference_round(
                fake,
                &h2_body,
                &args,
                fcm.connections,
                streams,
                &out,
                "before",
            )
            .await?,
        );
    }

    // Devices.
    let mut registration = json!(null);
    if push && args.register == Register::Store {
        let started = Instant::now();
        register_in_store(&data, n).await?;
        let secs = started.elapsed().as_secs_f64();
        out.line(format!(
            "  registered {n} devices in the embedded store in {secs:.1} s ({:.0}/s, {STORE_REGISTRARS} concurrent calls)",
            n as f64 / secs
        ));
        registration =
            json!({"via": "store", "seconds": secs, "per_second": (n as f64 / secs).round()});
    }
    let serve_refs: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let server = Server::start_on_data(&[], &serve_refs, Some(&data)).await?;
    let api = Api {
        addr: server.addr,
        key: server.api_key.clone(),
    };
    if push && args.register == Register::Api {
        let started = Instant::now();
        api.register_numbered(n).await?;
        let secs = started.elapsed().as_secs_f64();
        out.line(format!(
            "  registered {n} devices through the API in {secs:.1} s ({:.0}/s over {API_REGISTRARS} connections)",
            n as f64 / secs
        ));
        registration =
            json!({"via": "api", "seconds": secs, "per_second": (n as f64 / secs).round()});
    }
    let rss = RssSampler::start(server.pid);
    let rss_after_setup = server.rss().unwrap_or(0);

    // The campaign.
    let mut conn = api.connect().await?;
    let created_ms = herald_core::time::now_ms();
    let created = Instant::now();
    let send_at_ms = created_ms + args.lead as i64 * 1000;
    let send_at = created + Duration::from_secs(args.lead);
    // CLOCK_MONOTONIC at send_at, to line up with `perf record -k CLOCK_MONOTONIC` timestamps.
    let send_at_monotonic = monotonic_s() + args.lead as f64 - created.elapsed().as_secs_f64();
    let request = json!({
        "name": format!("bench {n} {}", args.channel.as_str()),
        "message": {
            "title": TITLE, "body": BODY, "data": {"screen": "summary", "week": 47},
            "ttl_seconds": 3600, "channels": [args.channel.as_str()],
        },
        "send_at": herald_core::time::rfc3339_ms(send_at_ms),
    });
    let id = api.create_campaign(&mut conn, &request).await?;

    // The audience, streamed.
    let cpu0 = Cpu::now(server.pid);
    let started = Instant::now();
    let uploaded = api.upload(&id, n).await?;
    let upload_s = started.elapsed().as_secs_f64();
    let cpu1 = Cpu::now(server.pid);
    let upload_rss = server.rss().unwrap_or(0);
    out.line(format!(
        "  upload: {n} ids streamed in {upload_s:.2} s ({:.0} ids/s); the server answered added {}, duplicates {}, malformed {}, recipients {}",
        n as f64 / upload_s,
        uploaded["added"],
        uploaded["duplicates"],
        uploaded["malformed"],
        uploaded["recipients"]
    ));
    out.line(format!(
        "    cpu during the upload: {}",
        cpu1.since(&cpu0, upload_s)
    ));
    if uploaded["recipients"].as_u64() != Some(n) {
        return Err(format!(
            "the upload listed {} recipients, not {n}: {uploaded}",
            uploaded["recipients"]
        ));
    }
    if Instant::now() >= send_at {
        return Err(format!(
            "the upload took {upload_s:.1} s and ran past send_at ({} s after creation), so the \
             campaign started on a partial list; use a longer --lead",
            args.lead
        ));
    }
    out.line(format!(
        "  waiting {:.1} s for send_at (server RSS now {:.1} MiB)",
        send_at
            .saturating_duration_since(Instant::now())
            .as_secs_f64(),
        mib(upload_rss)
    ));
    if let Some(fake) = &fake {
        fake.arm();
    }
    // Staging (push resolved ahead of send_at): how far it got, and when it was through.
    let mut staged = (0u64, None::<f64>);
    while push && Instant::now() + Duration::from_millis(60) < send_at {
        let view = api
            .call(&mut conn, "GET", &format!("/v1/campaigns/{id}"), None, 200)
            .await?;
        staged.0 = view["push_staged"].as_u64().unwrap_or(0);
        if staged.0 >= n {
            staged.1 = Some(since(created, Instant::now()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if push {
        out.line(format!(
            "  push staged before send_at: {} of {n} recipients{}",
            staged.0,
            staged
                .1
                .map(|s| format!(", all by {s:.1} s after creation"))
                .unwrap_or_default()
        ));
    }
    tokio::time::sleep_until((send_at - Duration::from_millis(2)).into()).await;

    // Sending.
    let cpu2 = Cpu::now(server.pid);
    let wait_s = since(started, Instant::now()) - upload_s;
    out.line(format!(
        "    cpu while waiting for send_at ({wait_s:.1} s): {}",
        cpu2.since(&cpu1, wait_s)
    ));
    let path = format!("/v1/campaigns/{id}");
    let last_inbox = format!("/v1/users/{USER_PREFIX}{}/notifications?limit=1", n - 1);
    let mut watch = Watch::default();
    let mut last_progress = Instant::now();
    let mut last_change = (Instant::now(), (0u64, 0u64, 0u64));
    let final_view = loop {
        let view = api.call(&mut conn, "GET", &path, None, 200).await?;
        let t = since(send_at, Instant::now());
        let done = view["done"].as_u64().unwrap_or(0);
        let channel = &view["channels"][args.channel.as_str()];
        let count = |k: &str| channel[k].as_u64().unwrap_or(0);
        let fake_count = fake.as_ref().map_or(0, Fake::received);
        let state = view["state"].as_str().unwrap_or("?").to_owned();
        if watch.sending.is_none() && state != "scheduled" {
            watch.sending = Some(t);
        }
        if watch.first_done.is_none() && done > 0 {
            watch.first_done = Some(t);
        }
        if watch.all_done.is_none() && done >= n {
            watch.all_done = Some(t);
        }
        let finished = if push {
            count("queued") >= n && count("pending") == 0
        } else {
            count("delivered") >= n
        };
        if watch.all_delivered.is_none() && done >= n && finished {
            watch.all_delivered = Some(t);
        }
        if !push && watch.last_inbox.is_none() {
            let inbox = api.call(&mut conn, "GET", &last_inbox, None, 200).await?;
            if inbox["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
            {
                watch.last_inbox = Some(since(send_at, Instant::now()));
            }
        }
        let progress = (done, count("sent") + count("delivered"), fake_count);
        if progress != last_change.1 {
            last_change = (Instant::now(), progress);
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            out.line(format!(
                "    t={t:6.2} s  {state:<9} done {done:>9}  {}  server RSS {:.0} MiB",
                if push {
                    format!(
                        "push queued {:>9} sent {:>9} pending {:>8} failed {}  fake {fake_count:>9}",
                        count("queued"),
                        count("sent"),
                        count("pending"),
                        count("failed")
                    )
                } else {
                    format!("inbox delivered {:>9}", count("delivered"))
                },
                mib(rss.current())
            ));
        }
        if state == "cancelled" || state == "paused" {
            return Err(format!("the campaign is {state}: {view}"));
        }
        if state == "completed" && finished && (push || watch.last_inbox.is_some()) {
            break view;
        }
        if last_change.0.elapsed() > STALL {
            out.result(&json!({"bench": "campaign", "stalled": view}));
            return Err(format!(
                "the campaign made no progress for {} s at t={t:.1} s: state {state}, done {done} \
                 of {n}, {} {channel}, fake received {fake_count}; server RSS {:.0} MiB",
                STALL.as_secs(),
                args.channel.as_str(),
                mib(rss.current())
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let cpu3 = Cpu::now(server.pid);
    let send_window = since(send_at, Instant::now());
    let rss_report = rss.stop().await;
    let finished_at = final_view["finished_at"]
        .as_str()
        .and_then(|s| herald_core::campaign::parse_rfc3339_ms(s).ok())
        .map(|ms| (ms - send_at_ms) as f64 / 1e3);
    let channel = &final_view["channels"][args.channel.as_str()];
    let counts: BTreeMap<&str, u64> = [
        "queued",
        "sent",
        "failed",
        "pruned",
        "expired",
        "pending",
        "delivered",
        "muted",
        "capped",
    ]
    .into_iter()
    .map(|k| (k, channel[k].as_u64().unwrap_or(0)))
    .collect();
    out.line(format!(
        "  campaign {}: done {} of {}, {} {}",
        final_view["state"].as_str().unwrap_or("?"),
        final_view["done"],
        final_view["recipients"],
        args.channel.as_str(),
        counts
            .iter()
            .filter(|(k, v)| **v > 0 || ["sent", "failed", "pending"].contains(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let shown = |t: Option<f64>| t.map_or_else(|| "?".to_owned(), |t| format!("{t:.3} s"));
    out.line(format!(
        "  from send_at: state left scheduled (seen) {}, first recipient done (seen) {}, all {n} done (seen) {}, {} (seen) {}; server finished_at {}",
        shown(watch.sending),
        shown(watch.first_done),
        shown(watch.all_done),
        if push { "all sends finished" } else { "all inbox entries written" },
        shown(watch.all_delivered),
        shown(finished_at),
    ));
    let mut value = json!({
        "bench": "campaign",
        "channel": args.channel.as_str(),
        "users": n,
        "lead_s": args.lead,
        "push_staged_before_send_at": staged.0,
        "push_staged_all_by_s": staged.1,
        "send_at_monotonic_s": send_at_monotonic,
        "load_average": load,
        "registration": registration,
        "upload_s": upload_s,
        "upload_ids_per_second": (n as f64 / upload_s).round(),
        "upload_cpu": cpu1.json_since(&cpu0),
        "wait_cpu": cpu2.json_since(&cpu1),
        "seen_sending_s": watch.sending,
        "seen_first_done_s": watch.first_done,
        "seen_all_done_s": watch.all_done,
        "seen_all_finished_s": watch.all_delivered,
        "finished_at_s": finished_at,
        "report": counts,
        "send_cpu": cpu3.json_since(&cpu2),
        "rss_after_setup_mib": mib(rss_after_setup),
        "rss": rss_report.json(),
        "rss_target_met": rss_report.peak() <= RSS_TARGET,
    });
    out.line(format!(
        "    cpu from send_at to the end ({send_window:.2} s): {}",
        cpu3.since(&cpu2, send_window)
    ));

    if push {
        let fake = fake.as_ref().expect("push mode has a fake");
        let (first, last) = fake.first_last(send_at);
        let received = fake.received();
        let over_campaign = last.map(|l| received as f64 / l);
        let steady = match (first, last) {
            (Some(f), Some(l)) if l > f => Some(received as f64 / (l - f)),
            _ => None,
        };
        // The reference, second round: the campaign is over, the server idle.
        reference.push(
            reference_round(
                fake,
                &h2_body,
                &args,
                fcm.connections,
                streams,
                &out,
                "after",
            )
            .await?,
        );
        let h2 = reference.iter().sum::<f64>() / reference.len() as f64;
        let ratio = over_campaign.map(|r| r / h2);
        out.line(format!(
            "  fake FCM: {received} sends; first {} after send_at, last {}; campaign body ≈ {} bytes",
            shown_ms(first),
            shown(last),
            fake.first_body().map_or_else(|| "?".into(), |b| b.to_string()),
        ));
        out.line(format!(
            "  sends/s: {} from send_at to the last send, {} from the first to the last; \
             h2load {h2:.0} req/s (mean of {:.0} and {:.0}); ratio {} (target ≥ {RATIO_TARGET})",
            over_campaign.map_or_else(|| "?".into(), |r| format!("{r:.0}")),
            steady.map_or_else(|| "?".into(), |r| format!("{r:.0}")),
            reference[0],
            reference[reference.len() - 1],
            ratio.map_or_else(|| "?".into(), |r| format!("{r:.2}"))
        ));
        out.line(format!(
            "  targets: first send ≤ {FIRST_SEND_TARGET_MS} ms: {}; ratio ≥ {RATIO_TARGET}: {}; RSS ≤ 1 GiB: {}",
            met(first.map(|f| f * 1e3 <= FIRST_SEND_TARGET_MS)),
            met(ratio.map(|r| r >= RATIO_TARGET)),
            met(Some(rss_report.peak() <= RSS_TARGET))
        ));
        value["fake_received"] = json!(received);
        value["first_send_s"] = json!(first);
        value["last_send_s"] = json!(last);
        value["campaign_body_bytes"] = json!(fake.first_body());
        value["h2load_body_bytes"] = json!(std::fs::metadata(&h2_body).map(|m| m.len()).ok());
        value["sends_per_second"] = json!(over_campaign.map(f64::round));
        value["sends_per_second_first_to_last"] = json!(steady.map(f64::round));
        value["h2load_per_second"] = json!(reference);
        value["h2load_mean"] = json!(h2.round());
        value["ratio"] = json!(ratio);
        value["fcm_connections"] = json!(fcm.connections);
        value["fcm_concurrency"] = json!(fcm.concurrency);
    } else {
        let written = watch.all_delivered;
        out.line(format!(
            "  inbox: all {n} entries written {} after send_at ({} entries/s); server finished_at {}; target ≤ {INBOX_TARGET_S} s: {}",
            shown(written),
            written.map_or_else(|| "?".into(), |t| format!("{:.0}", n as f64 / t)),
            shown(finished_at),
            met(written.map(|t| t <= INBOX_TARGET_S))
        ));
        out.line(format!(
            "  inbox: the last listed user's inbox showed it {} after send_at (GET /v1/users/{USER_PREFIX}{}/notifications)",
            shown(watch.last_inbox),
            n - 1
        ));
        value["inbox_last_user_seen_s"] = json!(watch.last_inbox);
        value["inbox_written_s"] = json!(written);
        value["inbox_entries_per_second"] = json!(written.map(|t| (n as f64 / t).round()));
        value["inbox_target_met"] = json!(written.map(|t| t <= INBOX_TARGET_S));
    }
    out.line(format!(
        "  server memory: peak VmRSS sampled {:.1} MiB, VmHWM {:.1} MiB, at the end {:.1} MiB (target ≤ 1024 MiB)",
        mib(rss_report.max_rss),
        mib(rss_report.hwm),
        mib(rss_report.last)
    ));
    value["server"] = server.stop(out).await;
    Ok(value)
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

fn shown_ms(t: Option<f64>) -> String {
    t.map_or_else(|| "?".to_owned(), |t| format!("{:.1} ms", t * 1e3))
}

/// Seconds from `from` to `to`, negative if `to` is earlier.
fn since(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64(),
        None => -from.duration_since(to).as_secs_f64(),
    }
}

/// CLOCK_MONOTONIC now, in seconds.
fn monotonic_s() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we pass and has no other effect.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// `/proc/loadavg`'s three averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The notification push.rs's reference uses, with a campaign-like id: what h2load posts.
fn reference_message() -> PushMessage {
    let n: Notification = serde_json::from_value(json!({
        "id": "01KBENCHMARKCAMPAIGN000000", "to": {"all": true},
        "title": TITLE, "body": BODY, "data": {"screen": "summary", "week": 47},
        "priority": "normal", "ttl_seconds": 3600, "created_at": herald_core::time::now_ms()
    }))
    .expect("a valid notification");
    PushMessage::from_notification(&n)
}

/// One h2load reference round against the fake, printed with `label`: requests per second.
async fn reference_round(
    fake: &Fake,
    body: &Path,
    args: &Args,
    connections: usize,
    streams: usize,
    out: &Out,
    label: &str,
) -> Result<f64, String> {
    let sends = args.h2load_sends;
    let rate = h2load(&fake.fcm.url(), body, sends, connections, streams).await?;
    out.line(format!(
        "  h2load reference {label}: {rate:.0} req/s ({sends} requests)"
    ));
    Ok(rate)
}

/// h2load posting `body` to the fake: requests per second. Run without blocking this runtime,
/// which serves the fake.
async fn h2load(
    url: &str,
    body: &Path,
    sends: u64,
    connections: usize,
    streams: usize,
) -> Result<f64, String> {
    let output =
        tokio::process::Command::from(h2load::command(url, body, sends, connections, streams))
            .output()
            .await
            .map_err(h2load::not_installed)?;
    h2load::rate(&output.stdout, sends)
}

fn registration(i: u64) -> DeviceRegistration {
    DeviceRegistration {
        platform: Platform::Fcm,
        token: Some(format!("{TOKEN_PREFIX}{i}")),
        endpoint: None,
        keys: None,
        app: None,
        locale: None,
        timezone: None,
    }
}

/// Registers one FCM device for each of the `n` users in the embedded store under `data`, the
/// way `POST /v1/users/{user}/devices` does, and closes the store.
async fn register_in_store(data: &Path, n: u64) -> Result<(), String> {
    let dir = data.join("store");
    let store = Arc::new(
        EmbeddedStore::open(&dir, StoreOptions::default())
            .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let now = herald_core::time::now_ms();
    let workers: Vec<_> = (0..STORE_REGISTRARS)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), String>(());
                    }
                    let device = registration(i)
                        .into_device(&format!("{USER_PREFIX}{i}"), now)
                        .map_err(|e| e.to_string())?;
                    store
                        .register_device(device)
                        .await
                        .map_err(|e| format!("register_device: {e}"))?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    store.close().await.map_err(|e| e.to_string())?;
    drop(store);
    // fjall lets go of its directory lock once its background threads end.
    let lock = dir.join("lock");
    for _ in 0..1000 {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock)
            .map_err(|e| format!("cannot open {}: {e}", lock.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock.display()));
            }
        }
    }
    Err("the store did not let go of its directory within 20 s".into())
}

/// The in-process fake FCM, noting when the first and last send arrived.
struct Fake {
    fcm: FakeFcm,
    ca: TestCa,
    base: Instant,
    /// Nanoseconds since `base` plus one (zero: none yet).
    first: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    /// The size of the first send's `{"message": ...}`.
    first_body: Arc<Mutex<Option<usize>>>,
    /// Accepted before [`arm`](Self::arm).
    baseline: AtomicU64,
}

impl Fake {
    async fn start() -> Result<Self, String> {
        let ca = TestCa::new();
        let fcm = FakeFcm::start(
            &ca,
            FcmConfig {
                static_access_token: Some(STATIC_TOKEN.into()),
                ..FcmConfig::default()
            },
        )
        .await
        .map_err(|e| format!("cannot start the fake FCM: {e}"))?;
        let base = Instant::now();
        let first = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let first_body = Arc::new(Mutex::new(None));
        let (f, l, b) = (first.clone(), last.clone(), first_body.clone());
        // Keeps no copies: one clock read and one atomic per request (and a load), plus the
        // size of the very first message.
        fcm.set_record_filter(Some(Arc::new(move |message: &FcmMessage| {
            let now = base.elapsed().as_nanos() as u64 + 1;
            if f.load(Ordering::Relaxed) == 0
                && f.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let size = json!({"message": message.message}).to_string().len();
                *b.lock().unwrap_or_else(|e| e.into_inner()) = Some(size);
            }
            l.fetch_max(now, Ordering::Relaxed);
            false
        })));
        Ok(Self {
            fcm,
            ca,
            base,
            first,
            last,
            first_body,
            baseline: AtomicU64::new(0),
        })
    }

    /// Forgets the reference's requests: what arrives from now on is the campaign's.
    fn arm(&self) {
        self.baseline
            .store(self.fcm.stats().common.accepted, Ordering::Relaxed);
        self.first.store(0, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
        *self.first_body.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Sends accepted since [`arm`](Self::arm).
    fn received(&self) -> u64 {
        self.fcm.stats().common.accepted - self.baseline.load(Ordering::Relaxed)
    }

    /// The first and last arrival, in seconds after `send_at`.
    fn first_last(&self, send_at: Instant) -> (Option<f64>, Option<f64>) {
        let at =
            |ns: u64| (ns > 0).then(|| since(send_at, self.base + Duration::from_nanos(ns - 1)));
        (
            at(self.first.load(Ordering::Relaxed)),
            at(self.last.load(Ordering::Relaxed)),
        )
    }

    fn first_body(&self) -> Option<usize> {
        *self.first_body.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// This run's files: the server's data directory, its config, the fake's CA; removed at the end.
struct BenchDir {
    path: PathBuf,
}

impl BenchDir {
    fn create() -> Result<Self, String> {
        let path =
            std::env::temp_dir().join(format!("herald-bench-campaign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }

    /// A `herald.toml` pointing `[push.fcm]` at the fake; returns its path.
    fn write_config(&self, fake: &Fake) -> Result<String, String> {
        h2load::write_fcm_config(&self.path, &fake.fcm, &fake.ca)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What the benchmark saw, in seconds after `send_at`.
#[derive(Default)]
struct Watch {
    /// The campaign's state left `scheduled`.
    sending: Option<f64>,
    first_done: Option<f64>,
    all_done: Option<f64>,
    /// Inbox: `delivered` = N; push: every send queued and none pending.
    all_delivered: Option<f64>,
    /// Inbox: the last listed user's inbox lists the campaign (read through the API).
    last_inbox: Option<f64>,
}

/// The server's memory, sampled in the background.
struct RssSampler {
    stop: Arc<AtomicBool>,
    current: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<RssReport>,
}

struct RssReport {
    max_rss: u64,
    hwm: u64,
    last: u64,
    samples: u64,
    /// (seconds since sampling began, VmRSS) once a second.
    series: Vec<(f64, u64)>,
}

impl RssReport {
    fn peak(&self) -> u64 {
        self.max_rss.max(self.hwm)
    }

    fn json(&self) -> Value {
        json!({
            "peak_sampled_mib": mib(self.max_rss),
            "vm_hwm_mib": mib(self.hwm),
            "last_mib": mib(self.last),
            "samples": self.samples,
            "every_ms": RSS_EVERY.as_millis() as u64,
            "series_mib": self.series.iter().map(|(t, b)| json!([(t * 10.0).round() / 10.0, mib(*b)])).collect::<Vec<_>>(),
        })
    }
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(AtomicU64::new(0));
        let (stopped, now) = (stop.clone(), current.clone());
        let task = tokio::spawn(async move {
            let status = format!("/proc/{pid}/status");
            let started = Instant::now();
            let mut report = RssReport {
                max_rss: 0,
                hwm: 0,
                last: 0,
                samples: 0,
                series: Vec::new(),
            };
            let mut next_series = Duration::ZERO;
            let mut tick = tokio::time::interval(RSS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let Ok(text) = std::fs::read_to_string(&status) else {
                    break;
                };
                let (rss, hwm) = (kib(&text, "VmRSS:"), kib(&text, "VmHWM:"));
                report.max_rss = report.max_rss.max(rss);
                report.hwm = report.hwm.max(hwm);
                report.last = rss;
                report.samples += 1;
                now.store(rss, Ordering::Relaxed);
                if started.elapsed() >= next_series {
                    report.series.push((started.elapsed().as_secs_f64(), rss));
                    next_series += Duration::from_secs(1);
                }
            }
            report
        });
        Self {
            stop,
            current,
            task,
        }
    }

    fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    async fn stop(self) -> RssReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(RssReport {
            max_rss: 0,
            hwm: 0,
            last: 0,
            samples: 0,
            series: Vec::new(),
        })
    }
}

/// A `/proc/<pid>/status` field in kB, as bytes.
fn kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU used so far by the server and by this process (the fake FCM and the poller), and per
/// thread name of each.
struct Cpu {
    server: f64,
    client: f64,
    server_threads: BTreeMap<String, f64>,
    client_threads: BTreeMap<String, f64>,
}

impl Cpu {
    fn now(server: u32) -> Self {
        Self {
            server: cpu_of_process(server).unwrap_or(f64::NAN),
            client: own_cpu(),
            server_threads: threads_cpu(server),
            client_threads: threads_cpu(std::process::id()),
        }
    }

    /// Per thread name, CPU seconds since `before`, busiest first.
    fn top(now: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
        let mut diff: Vec<(String, f64)> = now
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v >= 0.01)
            .collect();
        diff.sort_by(|a, b| b.1.total_cmp(&a.1));
        diff
    }

    fn since(&self, before: &Cpu, secs: f64) -> String {
        let list = |v: Vec<(String, f64)>| {
            v.iter()
                .take(6)
                .map(|(k, s)| format!("{k} {s:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "server {:.2} s ({:.0}% of one core; {}), bench process {:.2} s ({})",
            self.server - before.server,
            (self.server - before.server) / secs.max(1e-9) * 100.0,
            list(Self::top(&self.server_threads, &before.server_threads)),
            self.client - before.client,
            list(Self::top(&self.client_threads, &before.client_threads)),
        )
    }

    fn json_since(&self, before: &Cpu) -> Value {
        let map = |v: Vec<(String, f64)>| {
            v.into_iter()
                .map(|(k, s)| (k, json!((s * 100.0).round() / 100.0)))
                .collect::<serde_json::Map<_, _>>()
        };
        json!({
            "server_s": ((self.server - before.server) * 100.0).round() / 100.0,
            "bench_s": ((self.client - before.client) * 100.0).round() / 100.0,
            "server_threads_s": map(Self::top(&self.server_threads, &before.server_threads)),
            "bench_threads_s": map(Self::top(&self.client_threads, &before.client_threads)),
        })
    }
}

/// CPU seconds (user + system) of a process's live threads, summed per thread name.
fn threads_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        *by_name
            .entry(stat[open + 1..close].to_owned())
            .or_insert(0.0) += (ticks(11) + ticks(12)) as f64 / hz;
    }
    by_name
}

/// What this benchmark does with the server's API besides plain calls.
impl Api {
    /// One FCM device for each of the `n` users, through `POST /v1/users/{user}/devices`.
    async fn register_numbered(&self, n: u64) -> Result<(), String> {
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..API_REGISTRARS)
            .map(|_| {
                let (api, next) = (self.clone(), next.clone());
                tokio::spawn(async move {
                    let mut conn = api.connect().await?;
                    let (mut body, mut path) = (Vec::new(), String::new());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<(), String>(());
                        }
                        body.clear();
                        let _ = write!(body, r#"{{"platform":"fcm","token":"{TOKEN_PREFIX}{i}"}}"#);
                        path.clear();
                        path.push_str(&format!("/v1/users/{USER_PREFIX}{i}/devices"));
                        api.call(&mut conn, "POST", &path, Some(&body), 201).await?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// Streams the ids `user0..user{n-1}`, one a line, as a chunked `text/plain` body made as
    /// it goes; returns the server's upload report.
    pub async fn upload(&self, id: &str, n: u64) -> Result<Value, String> {
        let fail = |e: std::io::Error| format!("PUT /v1/campaigns/{id}/recipients: {e}");
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        let head = format!(
            "PUT /v1/campaigns/{id}/recipients HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            self.addr, self.key
        );
        let mut written = stream.write_all(head.as_bytes()).await;
        let (mut lines, mut chunk) = (
            Vec::with_capacity(UPLOAD_CHUNK + 64),
            Vec::with_capacity(UPLOAD_CHUNK + 96),
        );
        let mut i = 0;
        while written.is_ok() && i < n {
            lines.clear();
            while i < n && lines.len() < UPLOAD_CHUNK {
                let _ = writeln!(lines, "{USER_PREFIX}{i}");
                i += 1;
            }
            chunk.clear();
            let _ = write!(chunk, "{:x}\r\n", lines.len());
            chunk.extend_from_slice(&lines);
            chunk.extend_from_slice(b"\r\n");
            written = stream.write_all(&chunk).await;
        }
        if written.is_ok() {
            written = stream.write_all(b"0\r\n\r\n").await;
        }
        // Read the answer even after a failed write: the server may have refused early.
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response).await;
        let (status, body) = parse_response(&response).ok_or_else(|| {
            format!(
                "PUT /v1/campaigns/{id}/recipients: no answer ({})",
                written
                    .as_ref()
                    .err()
                    .map_or_else(|| format!("{read:?}"), |e| e.to_string())
            )
        })?;
        if status != 200 {
            return Err(format!(
                "PUT /v1/campaigns/{id}/recipients answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        written.map_err(fail)?;
        serde_json::from_slice(&body).map_err(|e| format!("the upload answer: {e}"))
    }
}

/// A whole HTTP/1.1 response read until the connection closed: its status and body.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let mut rest = &raw[end + 4..];
    if !chunked {
        return Some((status, rest.to_vec()));
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((status, body));
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
