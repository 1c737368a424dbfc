//! Test harness: runs the real `herald` binary on a free loopback port with its own data
//! directory, and talks to it over real HTTP, SSE and WebSocket connections.
#![allow(dead_code)]

#[macro_use]
pub mod engines;
pub mod push_fakes;
pub mod sse;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const API_KEY: &str = "hk_test_publisher_key_0123456789";
pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef0123";

pub fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// A reqwest client builder. The workspace builds reqwest on rustls without a default crypto
/// provider (Herald picks ring itself), so a plain client needs the provider installed first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    args: Vec<String>,
    pub http: reqwest::Client,
}

impl Server {
    /// A server with the test API key and token secret and otherwise default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra `HERALD_*` environment settings.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_with_args(env, &[]).await
    }

    /// A server with extra `HERALD_*` settings and extra `herald serve` arguments.
    pub async fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![
            ("HERALD_API_KEY".to_owned(), API_KEY.to_owned()),
            ("HERALD_TOKEN_SECRET".to_owned(), TOKEN_SECRET.to_owned()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            env: all,
            args: args.iter().map(|a| a.to_string()).collect(),
            http: http_client()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        server.launch().await;
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the binary (again) on a fresh port with the same data directory.
    pub async fn launch(&mut self) {
        let port = free_port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{port}.log"))).unwrap();
        let child = Command::new(herald_bin())
            .args(["serve", "--listen", &self.addr.to_string(), "--data"])
            .arg(self.data_dir())
            .args(&self.args)
            .env(
                "HERALD_LOG",
                std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start herald");
        self.child = Some(child);
        if !healthy_within(self.addr, Duration::from_secs(20)).await {
            panic!(
                "herald did not become healthy on {}; its log:\n{}",
                self.addr,
                self.logs()
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn token(&self, user: &str) -> String {
        herald_server::auth::issue_token(TOKEN_SECRET, user, 3600).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .collect();
        files.sort_by_key(|e| e.file_name());
        for entry in files {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    pub async fn publish(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/notifications"))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Publishes and returns the id, asserting 202.
    pub async fn publish_ok(&self, body: Value) -> String {
        let response = self.publish(body).await;
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{json}");
        json["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_as(&self, path: &str, bearer: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    pub async fn post_as(&self, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        status_json(request.send().await.unwrap()).await
    }

    pub async fn put_as(&self, path: &str, bearer: &str, body: Value) -> (u16, Value) {
        let request = self
            .http
            .put(self.url(path))
            .bearer_auth(bearer)
            .json(&body);
        status_json(request.send().await.unwrap()).await
    }

    pub async fn delete_as(&self, path: &str, bearer: &str) -> (u16, Value) {
        status_json(
            self.http
                .delete(self.url(path))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The user's inbox, first page.
    pub async fn inbox(&self, user: &str) -> Value {
        let (status, body) = self
            .get_as("/v1/me/notifications?limit=100", &self.token(user))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls the user's inbox until `check` holds (fan-out is asynchronous), or fails after 10 s.
    pub async fn inbox_until(
        &self,
        user: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let inbox = self.inbox(user).await;
            if check(&inbox) {
                return inbox;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; inbox of {user}: {inbox}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus metrics text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit status, failing after `within`.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("herald did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text }))
    };
    (status, json)
}

pub async fn wait_healthy(addr: SocketAddr) {
    assert!(
        healthy_within(addr, Duration::from_secs(20)).await,
        "herald did not become healthy on {addr}"
    );
}

pub async fn healthy_within(addr: SocketAddr, within: Duration) -> bool {
    let client = http_client().build().unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Titles of an inbox page, in order.
pub fn titles(inbox: &Value) -> Vec<String> {
    inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Ids of an inbox page, sorted (for comparing sets of deliveries).
pub fn sorted_ids(inbox: &Value) -> Vec<String> {
    let mut ids: Vec<String> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Asserts a problem+json answer with the given status.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 10),
        "a problem must explain itself: {body}"
    );
    body
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `HH:MM:SS` in UTC, `offset` from now.
pub fn utc_time_of_day(offset: std::time::Duration, before: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let at = if before { now - offset } else { now + offset };
    let secs = at.as_secs() % 86400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
