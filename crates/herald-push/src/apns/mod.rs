//! Apple Push Notification service over HTTP/2: `POST /3/device/{token}` with an ES256 provider
//! token and the `apns-*` headers.

mod payload;
mod token;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{Device, Platform, Priority};
use serde::Deserialize;

pub use self::token::ProviderToken;
use crate::config::ApnsConfig;
use crate::h2::H2Client;
use crate::http::HttpOptions;
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_failure};

pub struct Apns {
    topic: String,
    token: ProviderToken,
    h2: H2Client,
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
            topic: config.topic.clone(),
            token: ProviderToken::new(&pem, &config.key_id, &config.team_id)?,
            h2: H2Client::new(&config.endpoint, &http).map_err(|e| e.to_string())?,
        })
    }
}

#[async_trait]
impl Provider for Apns {
    fn platform(&self) -> Platform {
        Platform::Apns
    }

    async fn warm(&self) -> Result<(), String> {
        self.h2.warm().await
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
        let uri = match self.h2.uri(&format!("/3/device/{}", device.address)) {
            Ok(uri) => uri,
            Err(reason) => {
                return SendResult::Prune {
                    reason: format!("bad device token: {reason}"),
                };
            }
        };
        let mut request = http::Request::post(uri)
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
            );
        if let Some(at) = message.expires_at_ms {
            request = request.header("apns-expiration", (at / 1000).to_string());
        }
        if let Some(key) = &message.collapse_key {
            request = request.header("apns-collapse-id", key.as_str());
        }
        let request = match request.body(()) {
            Ok(request) => request,
            Err(e) => {
                return SendResult::Fail {
                    reason: format!("APNs request: {e}"),
                };
            }
        };
        let body = Bytes::from(payload::payload(message));
        let response = match self.h2.send(request, body).await {
            Ok(response) => response,
            Err(e) => return transport_failure(e),
        };
        let status = response.status;
        if status.is_success() {
            return SendResult::Sent;
        }
        let after = retry_after(&response.headers);
        let reason = serde_json::from_slice::<ErrorBody>(&response.body)
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
