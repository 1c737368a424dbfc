//! The h2load reference of the push benchmarks (h2load posting an FCM message to the same fake
//! in the same run, with the static bearer token the fake accepts without OAuth), and the
//! configuration that points a server at that fake.

use std::path::Path;
use std::process::Command;

use herald_fakes::{FakeFcm, FakeHandle, TestCa};
use serde_json::json;

/// Accepted by the fake as a bearer token without the OAuth flow.
pub const STATIC_TOKEN: &str = "bench-static-access-token";

/// `h2load` posting `body` to the fake's `messages:send` `sends` times.
pub fn command(url: &str, body: &Path, sends: u64, connections: usize, streams: usize) -> Command {
    let mut command = Command::new("h2load");
    command
        .args(["-t", "1", "-c"])
        .arg(connections.to_string())
        .arg("-m")
        .arg(streams.to_string())
        .arg("-n")
        .arg(sends.to_string())
        .arg("-d")
        .arg(body)
        .args(["-H", &format!("authorization: Bearer {STATIC_TOKEN}")])
        .args(["-H", "content-type: application/json"])
        .arg(format!("{url}/v1/projects/herald-test/messages:send"));
    command
}

/// Writes into `dir` a `herald.toml` pointing `[push.fcm]` at the fake (its service account,
/// and its CA as `[tls] extra_ca`); returns the file's path.
pub fn write_fcm_config(dir: &Path, fcm: &FakeFcm, ca: &TestCa) -> Result<String, String> {
    let write = |name: &str, text: &str| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // A JSON string is a valid TOML basic string.
        Ok(json!(path.to_string_lossy()).to_string())
    };
    let credentials = write("sa.json", &fcm.service_account_json())?;
    let ca = write("ca.pem", &ca.ca_pem())?;
    let config = format!(
        "[push.fcm]\ncredentials = {credentials}\nendpoint = {}\n\n[tls]\nextra_ca = {ca}\n",
        json!(fcm.url())
    );
    let path = dir.join("herald.toml");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

pub fn not_installed(e: std::io::Error) -> String {
    format!("cannot run h2load ({e}); install it with `apt-get install nghttp2-client`")
}

/// Requests per second from h2load's output, once every one of `sends` got a 2xx.
pub fn rate(stdout: &[u8], sends: u64) -> Result<f64, String> {
    let text = String::from_utf8_lossy(stdout);
    let ok = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .is_some_and(|l| l.contains(&format!("{sends} 2xx")));
    if !ok {
        return Err(format!("h2load did not get {sends} 2xx answers:\n{text}"));
    }
    // "finished in 1.23s, 162601.63 req/s, 12.34MB/s"
    text.lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|rate| rate.trim_end_matches(" req/s").parse().ok())
        .ok_or_else(|| format!("cannot read the rate from h2load:\n{text}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_rate_only_when_every_request_succeeded() {
        let out = b"finished in 1.23s, 162601.63 req/s, 12.34MB/s\nstatus codes: 200 2xx, 0 3xx\n";
        assert_eq!(super::rate(out, 200).unwrap(), 162601.63);
        assert!(super::rate(out, 300).is_err());
    }
}
