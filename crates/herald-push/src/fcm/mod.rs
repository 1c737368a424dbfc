//! Firebase Cloud Messaging, HTTP v1 API: one HTTP/2 request per message (FCM has no batch
//! endpoint any more), authorised by an OAuth2 access token from a service account.

mod auth;
mod payload;

use async_trait::async_trait;
use herald_core::{Device, Platform};
use reqwest::StatusCode;

pub use self::auth::{FCM_SCOPE, ServiceAccount, TokenSource};
use self::payload::ErrorBody;
use crate::config::FcmConfig;
use crate::http::{ClientPool, HttpOptions};
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_error};

pub struct Fcm {
    send_url: String,
    tokens: TokenSource,
    http: ClientPool,
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
        let http = ClientPool::new(&http).map_err(|e| e.to_string())?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            endpoint.trim_end_matches('/'),
            account.project_id
        );
        Ok(Self {
            send_url,
            tokens: TokenSource::new(account, http.clone())?,
            http,
        })
    }

    async fn post(&self, body: &[u8]) -> Result<(String, reqwest::Response), SendResult> {
        let token = self
            .tokens
            .token()
            .await
            .map_err(|reason| SendResult::Retry {
                reason,
                after: None,
            })?;
        let response = self
            .http
            .client()
            .post(&self.send_url)
            .bearer_auth(&*token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        Ok((token.to_string(), response))
    }
}

#[async_trait]
impl Provider for Fcm {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult {
        let now = herald_core::time::now_ms();
        let request = payload::request(message, &device.address, dry_run, now);
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => {
                return SendResult::Fail {
                    reason: format!("FCM message: {e}"),
                };
            }
        };
        let (mut token, mut response) = match self.post(&body).await {
            Ok(sent) => sent,
            Err(result) => return result,
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            // The access token was revoked or expired early: fetch a new one, once.
            self.tokens.invalidate(&token);
            (token, response) = match self.post(&body).await {
                Ok(sent) => sent,
                Err(result) => return result,
            };
            if response.status() == StatusCode::UNAUTHORIZED {
                self.tokens.invalidate(&token);
            }
        }
        let status = response.status();
        if status.is_success() {
            return if dry_run {
                SendResult::DryRun
            } else {
                SendResult::Sent
            };
        }
        let after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        classify(status, after, &text)
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
        auth::truncate(&error.message, 200)
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
