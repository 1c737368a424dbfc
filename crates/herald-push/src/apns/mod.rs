//! Apple Push Notification service over HTTP/2: `POST /3/device/{token}` with an ES256 provider
//! token and the `apns-*` headers.

mod payload;
mod token;

use async_trait::async_trait;
use herald_core::{Device, Platform, Priority};
use serde::Deserialize;

pub use self::token::ProviderToken;
use crate::config::ApnsConfig;
use crate::http::{ClientPool, HttpOptions};
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_error};

pub struct Apns {
    endpoint: String,
    topic: String,
    token: ProviderToken,
    http: ClientPool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    reason: String,
}

impl Apns {
    pub fn new(config: &ApnsConfig, mut http: HttpOptions) -> Result<Self, String> {
        let pem = std::fs::read(&config.key_file)
            .map_err(|e| format!("APNs key_file {}: {e}", config.key_file.to_string_lossy()))?;
        // Apple speaks HTTP/2 only.
        http.http2_only = true;
        Ok(Self {
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            topic: config.topic.clone(),
            token: ProviderToken::new(&pem, &config.key_id, &config.team_id)?,
            http: ClientPool::new(&http).map_err(|e| e.to_string())?,
        })
    }
}

#[async_trait]
impl Provider for Apns {
    fn platform(&self) -> Platform {
        Platform::Apns
    }

    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult {
        // APNs has no validate-only mode: a dry run never calls it.
        if dry_run {
            return SendResult::DryRun;
        }
        let bearer = match self.token.bearer() {
            Ok(bearer) => bearer,
            Err(reason) => return SendResult::Fail { reason },
        };
        let mut request = self
            .http
            .client()
            .post(format!("{}/3/device/{}", self.endpoint, device.address))
            .header(http::header::AUTHORIZATION, &*bearer)
            .header("apns-topic", device.app.as_deref().unwrap_or(&self.topic))
            .header("apns-push-type", "alert")
            .header(
                "apns-priority",
                if message.priority == Priority::Low {
                    "5"
                } else {
                    "10"
                },
            )
            .body(payload::payload(message));
        if let Some(at) = message.expires_at_ms {
            request = request.header("apns-expiration", (at / 1000).to_string());
        }
        if let Some(key) = &message.collapse_key {
            request = request.header("apns-collapse-id", key.as_str());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return transport_error(&e),
        };
        let status = response.status();
        if status.is_success() {
            return SendResult::Sent;
        }
        let after = retry_after(response.headers());
        let reason = response
            .json::<ErrorBody>()
            .await
            .unwrap_or_default()
            .reason;
        let text = format!("APNs {}: {reason}", status.as_u16());
        match (status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken") => SendResult::Prune { reason: text },
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.token.renew_if_allowed(&bearer);
                SendResult::Retry {
                    reason: text,
                    after,
                }
            }
            (429 | 500..=599, _) | (403, "TooManyProviderTokenUpdates") => SendResult::Retry {
                reason: text,
                after,
            },
            _ => SendResult::Fail { reason: text },
        }
    }
}
