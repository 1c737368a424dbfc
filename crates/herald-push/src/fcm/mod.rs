//! Firebase Cloud Messaging, HTTP v1 API: one HTTP/2 request per message (FCM has no batch
//! endpoint any more), authorised by an OAuth2 access token from a service account.

mod auth;
mod payload;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{Device, Platform};
use http::StatusCode;
use http_body_util::Full;

pub use self::auth::{AccessToken, FCM_SCOPE, ServiceAccount, TokenSource};
use self::payload::ErrorBody;
use crate::config::FcmConfig;
use crate::h2::{H2Client, H2Response};
use crate::http::{ClientPool, HttpOptions};
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_failure, truncate};

pub struct Fcm {
    send_uri: http::Uri,
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
        let send_uri = h2.uri(&format!(
            "/v1/projects/{}/messages:send",
            account.project_id
        ))?;
        // Token requests are rare: one ordinary client connection is plenty.
        let token_http = ClientPool::new(&HttpOptions {
            connections: 1,
            ..http
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            send_uri,
            tokens: TokenSource::new(account, token_http)?,
            h2,
        })
    }

    async fn post(&self, body: &Bytes) -> Result<(AccessToken, H2Response), SendResult> {
        let token = self
            .tokens
            .token()
            .await
            .map_err(|reason| SendResult::Retry {
                reason,
                after: None,
            })?;
        let request = http::Request::post(self.send_uri.clone())
            .header(http::header::AUTHORIZATION, token.header.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| SendResult::Fail {
                reason: format!("FCM request: {e}"),
            })?;
        let response = self.h2.send(request).await.map_err(transport_failure)?;
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
    serde_json::to_vec(&payload::request(message, token, validate_only, now_ms))
        .map_err(|e| format!("FCM message: {e}"))
}

#[async_trait]
impl Provider for Fcm {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult {
        let now = herald_core::time::now_ms();
        let body = match message_body(message, &device.address, dry_run, now) {
            Ok(body) => Bytes::from(body),
            Err(reason) => return SendResult::Fail { reason },
        };
        let (mut token, mut response) = match self.post(&body).await {
            Ok(sent) => sent,
            Err(result) => return result,
        };
        if response.status == StatusCode::UNAUTHORIZED {
            // The access token was revoked or expired early: fetch a new one, once.
            self.tokens.invalidate(&token.value);
            (token, response) = match self.post(&body).await {
                Ok(sent) => sent,
                Err(result) => return result,
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
    use super::*;

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
