//! `herald campaign watch`: one progress line, redrawn in place on a terminal, until the
//! campaign completes or is cancelled.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use serde_json::Value;

use super::{Client, IdArgs, campaign_path, text};

/// Width of the progress bar, in characters.
const BAR: usize = 24;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    campaign: IdArgs,
    /// Time between polls: 500ms, 1s, 1m...
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
}

pub fn run(args: Args) -> Result<(), String> {
    let client = Client::new(&args.campaign.remote)?;
    let path = campaign_path(&args.campaign.id, "");
    // A redrawn line is for a person; a log or a pipe gets one line per poll.
    let terminal = std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    loop {
        let view = client.call("GET", &path)?;
        let line = progress(&view);
        if terminal {
            // `\x1b[K` clears what a longer previous line left behind.
            write!(stdout, "\r{line}\x1b[K")
        } else {
            writeln!(stdout, "{line}")
        }
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
        match view["state"].as_str() {
            Some("completed") => {
                if terminal {
                    writeln!(stdout).map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
            Some("cancelled") => {
                if terminal {
                    writeln!(stdout).map_err(|e| e.to_string())?;
                }
                return Err(format!("campaign {} was cancelled", text(&view["id"])));
            }
            _ => std::thread::sleep(args.interval),
        }
    }
}

/// `sending  [######------]  50%  500/1000  120 users/s  80 sent/s  ETA 4s  push 400 sent ...`
fn progress(view: &Value) -> String {
    let done = view["done"].as_u64().unwrap_or(0);
    let mut line = format!("{:<9}", text(&view["state"]));
    // Only a list's size is known ahead; a topic or everyone is counted as it is walked.
    if view["audience"] == "list" {
        let total = view["recipients"].as_u64().unwrap_or(0);
        let ratio = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).min(1.0)
        };
        let filled = (ratio * BAR as f64).round() as usize;
        line.push_str(&format!(
            "  [{}{}] {:>3.0}%  {done}/{total}",
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            ratio * 100.0
        ));
    } else {
        line.push_str(&format!("  {done} users"));
    }
    let users = view["recipients_per_second"].as_f64().unwrap_or(0.0);
    let sends = view["sends_per_second"].as_f64().unwrap_or(0.0);
    line.push_str(&format!("  {users:.0} users/s  {sends:.0} sent/s"));
    if let Some(eta) = view["eta_seconds"].as_f64() {
        line.push_str(&format!("  ETA {}", duration(eta)));
    }
    for (channel, c) in view["channels"].as_object().into_iter().flatten() {
        let n = |field: &str| c[field].as_u64().unwrap_or(0);
        match channel.as_str() {
            // Inbox and realtime deliver to users, without sends to fail or wait.
            "inbox" | "realtime" => {
                line.push_str(&format!("  {channel} {} delivered", n("delivered")));
            }
            _ => line.push_str(&format!(
                "  {channel} {} sent {} failed {} pending",
                n("sent"),
                n("failed"),
                n("pending")
            )),
        }
    }
    line
}

/// `42s`, `3m05s`, `2h07m`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `500ms`, or what [`super::super::parse_duration`] takes (`1s`, `2m`, `90`).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = match s.trim().strip_suffix("ms") {
        Some(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|_| format!("{s:?} is not a duration; try 500ms, 1s or 1m"))?,
        ),
        None => Duration::from_secs(super::super::parse_duration(s)?),
    };
    if interval.is_zero() {
        return Err("the interval must be more than zero".into());
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_line_shows_the_bar_rates_eta_and_channels() {
        let view = json!({"state": "sending", "audience": "list", "done": 500, "recipients": 1000,
            "recipients_per_second": 120.4, "sends_per_second": 80.0, "eta_seconds": 65.0,
            "channels": {"inbox": {"delivered": 500}, "push": {"sent": 400, "failed": 2, "pending": 98}}});
        assert_eq!(
            progress(&view),
            "sending    [############------------]  50%  500/1000  120 users/s  80 sent/s  \
             ETA 1m05s  inbox 500 delivered  push 400 sent 2 failed 98 pending"
        );
        let topic = json!({"state": "completed", "audience": {"topic": "news"}, "done": 7,
            "recipients": 7, "recipients_per_second": 0.0, "sends_per_second": 0.0,
            "eta_seconds": null, "channels": {}});
        assert_eq!(progress(&topic), "completed  7 users  0 users/s  0 sent/s");
    }

    #[test]
    fn intervals_and_durations() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
        assert_eq!(duration(7263.0), "2h01m");
    }
}
