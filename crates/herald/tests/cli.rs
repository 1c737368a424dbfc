//! The `herald` command: first start, configuration sources, `token`, `send` and `campaign`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `herald serve` in `cwd` and collects its stdout until it says it is listening.
fn serve_in(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Running, Vec<String>) {
    let mut child = Command::new(herald_bin())
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_TOKEN_SECRET")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    (Running(child), lines)
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(herald_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "token", "send", "campaign", "bench"] {
        assert!(
            text.contains(command),
            "{command} missing from --help:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_a_key_and_shows_it_once() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (server, lines) = serve_in(cwd.path(), &["--listen", &listen], &[]);
    let key = std::fs::read_to_string(cwd.path().join("herald-data/api_key"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("hk_") && key.len() > 30);
    assert!(
        lines.iter().any(|l| l.contains(&key)),
        "the generated key is printed: {lines:?}"
    );
    wait_healthy(listen.parse().unwrap()).await;
    // `herald token` uses the same generated secret from the default data directory.
    let token = Command::new(herald_bin())
        .args(["token", "alice", "--ttl", "10m"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let http = common::http_client().build().unwrap();
    let r = http
        .get(format!("http://{listen}/v1/me/unread"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `herald send` finds the key in the data directory.
    let sent = Command::new(herald_bin())
        .args([
            "send",
            "--server",
            &format!("http://{listen}"),
            "--to",
            "alice,bob",
            "--title",
            "from the CLI",
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stdout).contains("\"id\""));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: serde_json::Value = http
            .get(format!("http://{listen}/v1/me/notifications"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["unread"] == 1 {
            assert_eq!(body["items"][0]["title"], "from the CLI");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let (_again, lines) = serve_in(
        cwd.path(),
        &["--listen", &format!("127.0.0.1:{}", free_port())],
        &[],
    );
    assert!(
        !lines.iter().any(|l| l.contains(&key)),
        "a later start does not print the key again: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("api_key")),
        "but says where it is: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_comes_from_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file_port = free_port();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\napi_key = \"{API_KEY}\"\n\n[limits]\nmax_body_bytes = 2048\n\n[store]\ninbox_max = 2\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (_server, _) = serve_in(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let addr = format!("127.0.0.1:{file_port}");
    wait_healthy(addr.parse().unwrap()).await;
    let http = common::http_client().build().unwrap();
    let big = json!({"to": {"users": ["a"]}, "title": "t", "body": "x".repeat(3000)});
    let r = http
        .post(format!("http://{addr}/v1/notifications"))
        .bearer_auth(API_KEY)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "limits.max_body_bytes from the file");

    // The environment overrides the file.
    let env_port = free_port();
    let env_listen = format!("127.0.0.1:{env_port}");
    let (_server2, _) = serve_in(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--data",
            dir.path().join("data2").to_str().unwrap(),
        ],
        &[
            ("HERALD_LISTEN", &env_listen),
            ("HERALD_LIMITS__MAX_BODY_BYTES", "100000"),
        ],
    );
    wait_healthy(env_listen.parse().unwrap()).await;
    let r = http
        .post(format!("http://{env_listen}/v1/notifications"))
        .bearer_auth(API_KEY)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\ninbox_maximum = 5\n").unwrap();
    let out = Command::new(herald_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("inbox_maximum"),
        "names the unknown key: {err}"
    );
    let out = Command::new(herald_bin())
        .args(["serve", "--config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = Command::new(herald_bin())
        .args(["serve"])
        .current_dir(dir.path())
        .env("HERALD_API_KEY", "short")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_key must be at least 16"));
}

/// Runs `herald` with `args` against `server`, as a script would.
fn herald_against(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(herald_bin())
        .args(args)
        .args(["--server", &format!("http://{}", server.addr)])
        .args(["--api-key", API_KEY])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_create_uploads_a_file_and_watch_follows_it_to_completion() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    // A header, three users, one of them twice, and a line (5) that holds no user id.
    std::fs::write(
        &users,
        "email,user_id\nann@x.org,ann\nbob@x.org,bob\nann@x.org,ann\nbad@x.org,not a user id\ncyd@x.org,cyd\n",
    )
    .unwrap();
    let out = herald_against(
        &server,
        &[
            "campaign",
            "create",
            "--title",
            "Spring sale",
            "--channels",
            "inbox",
            "--users",
            users.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 added, 1 duplicates, 1 malformed; 3 recipients")
            && stderr.contains("line 5: "),
        "the upload report: {stderr}"
    );
    // Stdout is the id alone, for `id=$(herald campaign create ...)`.
    let id = stdout.trim().to_owned();
    assert_eq!(id.len(), 26, "a ULID: {stdout:?}");

    let watch = herald_against(&server, &["campaign", "watch", &id, "--interval", "200ms"]);
    let progress = String::from_utf8_lossy(&watch.stdout);
    assert!(
        watch.status.success(),
        "{progress}{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(
        !progress.contains('\r'),
        "plain lines when not on a terminal"
    );
    let last = progress.lines().last().unwrap_or("");
    assert!(
        last.starts_with("completed") && last.contains("3/3") && last.contains("inbox 3 delivered"),
        "{progress}"
    );
    for user in ["ann", "bob", "cyd"] {
        server
            .inbox_until(user, "the campaign's notification", |inbox| {
                titles(inbox) == ["Spring sale"]
            })
            .await;
    }

    // Scheduled with --at, it waits; cancelled, `watch` fails.
    let out = herald_against(
        &server,
        &[
            "campaign",
            "create",
            "--title",
            "Later",
            "--topic",
            "news",
            "--at",
            "2099-01-01T00:00:00Z",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["state"], "scheduled");
    let later = view["id"].as_str().unwrap();
    let out = herald_against(&server, &["campaign", "cancel", later]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{later} cancelled")
    );
    let watch = herald_against(&server, &["campaign", "watch", later]);
    assert!(!watch.status.success());
    assert!(String::from_utf8_lossy(&watch.stderr).contains("cancelled"));
    let list = herald_against(&server, &["campaign", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&id) && list.contains(later), "{list}");

    // The server's problems come out as their detail and field errors.
    let out = herald_against(&server, &["campaign", "create", "--title", "", "--all"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message.title"), "{err}");
    let out = herald_against(&server, &["campaign", "start", "01NOSUCHCAMPAIGN"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no campaign with id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
