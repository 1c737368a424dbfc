//! Firebase Cloud Messaging, HTTP v1 API: one HTTP/2 request per message (FCM has no batch
//! endpoint any more), authorised by an OAuth2 access token from a service account.

mod auth;
mod payload;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{Device, Platform};
use http::{Method, StatusCode};

pub use self::auth::{AccessToken, FCM_SCOPE, ServiceAccount, TokenSource};
pub use self::payload::BodyTemplate;
use self::payload::ErrorBody;
use crate::config::FcmConfig;
use crate::h2::{H2Client, H2Response};
use crate::http::{ClientPool, HttpOptions};
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_failure, truncate};

pub struct Fcm {
    /// `/v1/projects/{project}/messages:send`, checked to be a valid path.
    send_path: String,
    tokens: TokenSource,
    h2: H2Client,
}

impl Fcm {
    /// Reads the service account named in `config` and prepares the clients; no request yet.
    pub fn new(config: &FcmConfig, http: HttpOptions) -> Result<Self, String> {
        let text = std::fs::read_to_string(&config.credentials).map_err(|e| {
            format!(
                "FCM credentials {}: {e}",
                config.credentials.to_string_lossy()
            )
        })?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| {
            format!(
                "FCM credentials {}: not a service-account JSON file: {e}",
                config.credentials.to_string_lossy()
            )
        })?;
        Self::with_account(account, &config.endpoint, http)
    }

    pub fn with_account(
        account: ServiceAccount,
        endpoint: &str,
        http: HttpOptions,
    ) -> Result<Self, String> {
        let h2 = H2Client::new(endpoint, &http).map_err(|e| e.to_string())?;
        let send_path = format!("/v1/projects/{}/messages:send", account.project_id);
        h2.uri(&send_path)?;
        // Token requests are rare: one ordinary client connection is plenty.
        let token_http = ClientPool::new(&HttpOptions {
            connections: 1,
            ..http
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            send_path,
            tokens: TokenSource::new(account, token_http)?,
            h2,
        })
    }

    async fn post(&self, body: Bytes) -> Result<(Arc<AccessToken>, H2Response), SendResult> {
        let token = self
            .tokens
            .token()
            .await
            .map_err(|reason| SendResult::Retry {
                reason,
                after: None,
            })?;
        // Borrowed, not built: no request, URI or header map per send.
        let headers = [
            (http::header::AUTHORIZATION, token.header.as_bytes()),
            (http::header::CONTENT_TYPE, &b"application/json"[..]),
        ];
        let response = self
            .h2
            .send_parts(&Method::POST, &self.send_path, &headers, body)
            .await
            .map_err(transport_failure)?;
        Ok((token, response))
    }
}

/// The `messages:send` body Herald sends for `message` to `token` (benchmarks replay it).
pub fn message_body(
    message: &PushMessage,
    token: &str,
    validate_only: bool,
    now_ms: i64,
) -> Result<Vec<u8>, String> {
    match message
        .fcm_body_cache
        .get_or_init(|| BodyTemplate::new(message).map_err(|e| format!("FCM message: {e}")))
    {
        Ok(template) => Ok(template.render(message, token, validate_only, now_ms)),
        Err(reason) => Err(reason.clone()),
    }
}

#[async_trait]
impl Provider for Fcm {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    async fn warm(&self) -> Result<(), String> {
        let (token, connections) = tokio::join!(self.tokens.token(), self.h2.warm());
        token?;
        connections
    }

    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult {
        // The clock matters only for the TTL left.
        let now = if message.expires_at_ms.is_some() {
            now_ms()
        } else {
            0
        };
        let body = || message_body(message, &device.address, dry_run, now).map(Bytes::from);
        // The body is moved into the request, not cloned for a retry that rarely comes: a
        // clone of a `Bytes` made from a `Vec` costs an allocation. The retry renders it again.
        let (mut token, mut response) = match body() {
            Ok(body) => match self.post(body).await {
                Ok(sent) => sent,
                Err(result) => return result,
            },
            Err(reason) => return SendResult::Fail { reason },
        };
        if response.status == StatusCode::UNAUTHORIZED {
            // The access token was revoked or expired early: fetch a new one, once.
            self.tokens.invalidate(&token.value);
            (token, response) = match body() {
                Ok(body) => match self.post(body).await {
                    Ok(sent) => sent,
                    Err(result) => return result,
                },
                Err(reason) => return SendResult::Fail { reason },
            };
            if response.status == StatusCode::UNAUTHORIZED {
                self.tokens.invalidate(&token.value);
            }
        }
        if response.status.is_success() {
            return if dry_run {
                SendResult::DryRun
            } else {
                SendResult::Sent
            };
        }
        let after = retry_after(&response.headers);
        classify(
            response.status,
            after,
            &String::from_utf8_lossy(&response.body),
        )
    }
}

/// Milliseconds since the Unix epoch, straight from the system clock (this runs every send).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What an FCM error answer means for the device and the send.
fn classify(status: StatusCode, after: Option<std::time::Duration>, text: &str) -> SendResult {
    let error = serde_json::from_str::<ErrorBody>(text)
        .unwrap_or_default()
        .error;
    let reason = format!(
        "FCM {}: {} {}",
        status.as_u16(),
        error.code(),
        truncate(&error.message, 200)
    )
    .trim_end()
    .to_owned();
    match (status.as_u16(), error.code()) {
        (404, _) | (_, "UNREGISTERED") | (403, "SENDER_ID_MISMATCH") => {
            SendResult::Prune { reason }
        }
        (400, _) if error.is_about_the_token() => SendResult::Prune { reason },
        (401 | 429 | 500..=599, _) => SendResult::Retry { reason, after },
        _ => SendResult::Fail { reason },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use herald_fakes::{FakeFcm, FakeHandle, FcmConfig, TestCa};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warming_opens_every_connection_and_fetches_the_token_before_a_send() {
        let ca = TestCa::new();
        let fake = FakeFcm::start(&ca, FcmConfig::default()).await.unwrap();
        let account: ServiceAccount = serde_json::from_str(&fake.service_account_json()).unwrap();
        let fcm = Fcm::with_account(
            account,
            &fake.url(),
            HttpOptions {
                connections: 3,
                timeout: Duration::from_secs(5),
                extra_ca_pem: Some(Arc::new(ca.ca_pem().into_bytes())),
                http2_only: false,
            },
        )
        .unwrap();
        assert_eq!(fcm.h2.open_connections(), 0, "nothing before it is asked");
        fcm.warm().await.unwrap();
        assert_eq!(fcm.h2.open_connections(), 3);
        assert_eq!(fake.stats().access_tokens_issued, 1);
        assert!(fake.received().is_empty(), "warming sends nothing");
        // Warm again: nothing new is opened or fetched.
        fcm.warm().await.unwrap();
        assert_eq!(fake.stats().access_tokens_issued, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_time_out_and_tokens_refresh_against_the_fake() {
        let ca = TestCa::new();
        let fake = FakeFcm::start(&ca, FcmConfig::default()).await.unwrap();
        let account: ServiceAccount = serde_json::from_str(&fake.service_account_json()).unwrap();
        let fcm = Arc::new(
            Fcm::with_account(
                account,
                &fake.url(),
                HttpOptions {
                    connections: 2,
                    timeout: Duration::from_millis(300),
                    extra_ca_pem: Some(Arc::new(ca.ca_pem().into_bytes())),
                    http2_only: false,
                },
            )
            .unwrap(),
        );
        let n: herald_core::Notification = serde_json::from_str(
            r#"{"id":"N1","to":{"all":true},"title":"Hi","body":"there","created_at":1000,"ttl_seconds":60}"#,
        )
        .unwrap();
        let message = Arc::new(PushMessage::from_notification(&n));
        let device = |i: usize| Device {
            id: format!("d{i}"),
            user: "u".into(),
            platform: Platform::Fcm,
            address: format!("tok-{i}"),
            keys: None,
            app: None,
            locale: None,
            timezone: None,
            registered_at: 0,
        };
        // Many at once over few connections, as the sender does.
        let sends: Vec<_> = (0..200)
            .map(|i| {
                let (fcm, message, device) = (fcm.clone(), message.clone(), device(i));
                tokio::spawn(async move { fcm.send(&message, &device, false).await })
            })
            .collect();
        for send in sends {
            assert_eq!(send.await.unwrap(), SendResult::Sent);
        }
        assert_eq!(fake.received().len(), 200);
        assert_eq!(fake.received()[0].message["android"]["ttl"], "0s");

        // A slow answer is a retryable timeout, and the connection stays usable.
        fake.behaviour().set_delay(Duration::from_secs(2));
        match fcm.send(&message, &device(0), false).await {
            SendResult::Retry { reason, .. } => assert!(reason.contains("no answer within")),
            other => panic!("{other:?}"),
        }
        fake.behaviour().set_delay(Duration::ZERO);
        assert_eq!(
            fcm.send(&message, &device(1), true).await,
            SendResult::DryRun
        );

        // A revoked access token: one 401, a new token, and the send goes through.
        let issued = fake.stats().access_tokens_issued;
        fake.revoke_access_tokens();
        assert_eq!(
            fcm.send(&message, &device(2), false).await,
            SendResult::Sent
        );
        assert_eq!(fake.stats().access_tokens_issued, issued + 1);
    }

    #[test]
    fn error_answers_map_to_actions() {
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}"#;
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None, unregistered),
            SendResult::Prune { .. }
        ));
        let bad_token = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, bad_token),
            SendResult::Prune { .. }
        ));
        let bad_message = r#"{"error":{"code":400,"message":"Invalid value at 'message.data[0].value'","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, bad_message),
            SendResult::Fail { .. }
        ));
        let after = Some(std::time::Duration::from_secs(3));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, after, "{}"),
            SendResult::Retry {
                reason: "FCM 429:".into(),
                after
            }
        );
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None, "not json"),
            SendResult::Retry { .. }
        ));
    }
}
