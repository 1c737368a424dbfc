//! Fake FCM, APNs, Web Push and webhook receivers for one test, and a `herald.toml` that points
//! Herald at them over TLS with the fakes' own CA.

use herald_fakes::{FakeApns, FakeFcm, FakeHandle, FakeWebPush, FakeWebhook, TestCa};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{API_KEY, Server};

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// The four fakes and a configuration that points Herald at them.
pub struct Fakes {
    pub fcm: FakeFcm,
    pub apns: FakeApns,
    pub webpush: FakeWebPush,
    pub webhook: FakeWebhook,
    pub dir: tempfile::TempDir,
}

impl Fakes {
    pub async fn start() -> Self {
        let ca = TestCa::new();
        let fakes = Fakes {
            fcm: FakeFcm::start(&ca, Default::default()).await.unwrap(),
            apns: FakeApns::start(&ca, Default::default()).await.unwrap(),
            webpush: FakeWebPush::start(&ca).await.unwrap(),
            webhook: FakeWebhook::start(&ca, WEBHOOK_SECRET).await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        ca.write_ca_pem(fakes.path("ca.pem")).unwrap();
        std::fs::write(fakes.path("sa.json"), fakes.fcm.service_account_json()).unwrap();
        std::fs::write(fakes.path("apns.p8"), FakeApns::signing_key_pem()).unwrap();
        fakes
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// `herald.toml` for these fakes, with `extra` appended (fast retries for tests).
    pub fn config(&self, extra: &str) -> String {
        let (vapid_private, _public) = herald_push::webpush::vapid::generate();
        let text = format!(
            r#"
[push.retry]
max_attempts = 3
base_delay_ms = 20
max_delay_ms = 100

[push.fcm]
credentials = "{sa}"
endpoint = "{fcm}"

[push.apns]
key_file = "{p8}"
key_id = "HERALDKEY1"
team_id = "HERALDTEAM"
topic = "com.example.herald"
endpoint = "{apns}"

[push.webpush]
vapid_private_key = "{vapid_private}"
subject = "mailto:push-test@example.com"

[[webhooks]]
name = "crm"
url = "{hook}"
secret = "{WEBHOOK_SECRET}"

[tls]
extra_ca = "{ca}"
{extra}
"#,
            sa = self.path("sa.json"),
            fcm = self.fcm.url(),
            p8 = self.path("apns.p8"),
            apns = self.apns.url(),
            hook = self.webhook.endpoint_url(),
            ca = self.path("ca.pem"),
        );
        let path = self.path("herald.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub async fn herald(&self, env: &[(&str, &str)], extra_config: &str) -> Server {
        let config = self.config(extra_config);
        Server::start_with_args(env, &["--config", &config]).await
    }
}

pub async fn register(server: &Server, user: &str, device: Value) -> Value {
    let (status, body) = server
        .post_as("/v1/me/devices", &server.token(user), Some(device))
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

pub async fn register_token(server: &Server, user: &str, platform: &str, token: &str) -> Value {
    register(server, user, json!({"platform": platform, "token": token})).await
}

/// Polls the notification's delivery report until `check` holds (or fails after 15 s).
pub async fn report_until(
    server: &Server,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = server
            .get_as(&format!("/v1/notifications/{id}"), API_KEY)
            .await;
        assert_eq!(status, 200, "{body}");
        if check(&body["report"]) {
            return body["report"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; report: {}\nserver log:\n{}",
            body["report"],
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
