//! Bounded polling, and the log tails that failure messages carry.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(50);
const TAIL_LINES: usize = 30;

/// What one probe found.
pub(crate) enum Check<T> {
    /// The condition holds.
    Done(T),
    /// Not yet; the text says what was seen (it ends up in the timeout message).
    Pending(String),
    /// It never will (e.g. the process exited): stop waiting now.
    Fatal(String),
}

/// Probes every 50 ms until `probe` is done, fails, or `timeout` passes. The error says
/// what was awaited, what the last probe saw, and ends with the tails of `logs`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    logs: &[&Path],
    mut probe: impl FnMut() -> Check<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe() {
            Check::Done(value) => return Ok(value),
            Check::Fatal(why) => return Err(failure(what, &why, logs)),
            Check::Pending(seen) => seen,
        };
        if Instant::now() >= deadline {
            let why = format!("timed out after {timeout:?}; last seen: {seen}");
            return Err(failure(what, &why, logs));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_for`] that panics on failure.
pub(crate) fn wait_or_panic<T>(
    what: &str,
    timeout: Duration,
    logs: &[&Path],
    probe: impl FnMut() -> Check<T>,
) -> T {
    wait_for(what, timeout, logs, probe).unwrap_or_else(|message| panic!("{message}"))
}

/// `herald-testkit: <what>: <why>` followed by the tail of each log.
pub(crate) fn failure(what: &str, why: &str, logs: &[&Path]) -> String {
    let mut message = format!("herald-testkit: {what}: {why}");
    for log in logs {
        message.push_str(&format!(
            "\n--- last {TAIL_LINES} lines of {} ---\n{}",
            log.display(),
            log_tail(log)
        ));
    }
    message
}

/// The last lines of a log file, or a note saying why there are none.
pub(crate) fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => "(empty)".to_owned(),
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}
