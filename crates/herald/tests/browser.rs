//! The browser face in a real browser: headless Chromium, driven by `playwright-core` from
//! `tests/browser/run.mjs`, goes through `/demo` (bell: live badge, mark read, reload, infinite
//! scroll, mark all read, keyboard) and `/admin` (CSV campaign to completion, overview, user
//! lookup) on the real server. Screenshots land in `<target>/browser-artifacts/`.
//!
//! Needs `node`/`npm` and Chromium; without them this test fails (it does not skip) and says
//! how to install them. `.ci/run` installs both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Longer than the script's own 90 s deadline: the script reports first when it can.
const TIMEOUT: Duration = Duration::from_secs(150);

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots go: next to the build, so CI can keep them as artefacts.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir holds tmp/")
        .join("browser-artifacts")
}

fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Chromium executable: `$CHROMIUM`, else the Debian package's.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium is needed for the browser test and {} does not exist: install it with \
         `apt-get install chromium` (Debian/Ubuntu), or point $CHROMIUM at a Chromium or Chrome binary",
        path.display()
    );
    path
}

/// Installs `playwright-core` from the committed lock file when `node_modules` is missing.
fn npm_ci(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    assert!(
        runs("npm", "--version"),
        "npm is needed to install playwright-core for the browser test: `apt-get install nodejs npm`"
    );
    let output = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("run npm ci");
    assert!(
        output.status.success(),
        "`npm ci` in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_and_admin_work_in_a_real_browser() {
    assert!(
        runs("node", "--version"),
        "node is needed for the browser test: `apt-get install nodejs npm` (Node 18 or newer)"
    );
    let chromium = chromium();
    let dir = script_dir();
    npm_ci(&dir);
    let artifacts = artifacts_dir();
    // Only this run's screenshots (no failure shots left from an earlier run).
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    // A dry run: campaign pushes to the test's phones are counted without a provider to call.
    let server = Server::start_with_args(&[], &["--dry-run"]).await;
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("HERALD_URL", server.url("/"))
        .env("HERALD_API_KEY", API_KEY)
        .env("HERALD_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for node"),
        Err(_) => panic!(
            "the browser test did not finish within {TIMEOUT:?}; server log:\n{}",
            server.logs()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
        output.status,
        artifacts.display(),
        server.logs()
    );
    for shot in ["demo-bell-open.png", "admin-campaign.png"] {
        assert!(artifacts.join(shot).exists(), "no screenshot {shot}");
    }
    println!(
        "browser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
}
