//! `[push.*]` and `[[webhooks]]` in `herald.toml`. Every endpoint is configurable so tests,
//! benchmarks and staging can point Herald at fakes that speak the same protocol.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[push]`: which providers are on, and how the sender treats them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
    pub webpush: Option<WebPushConfig>,
    pub retry: RetryConfig,
    /// Run the whole pipeline but deliver nothing: FCM validates only, the rest are not called.
    pub dry_run: bool,
    /// Sends the sender takes from the outbox at once.
    pub batch: usize,
    /// Most sends in flight on this node, all providers together.
    pub max_in_flight: usize,
    /// Redis: a send another node took and did not finish within this many ms is taken over.
    pub lease_ms: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            fcm: None,
            apns: None,
            webpush: None,
            retry: RetryConfig::default(),
            dry_run: false,
            batch: 1024,
            max_in_flight: 4096,
            lease_ms: 300_000,
        }
    }
}

/// `[push.fcm]`: Firebase Cloud Messaging HTTP v1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service-account JSON file (`client_email`, `private_key`, `token_uri`, `project_id`).
    pub credentials: PathBuf,
    /// Base URL of the FCM API.
    #[serde(default = "FcmConfig::default_endpoint")]
    pub endpoint: String,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl FcmConfig {
    pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";
    fn default_endpoint() -> String {
        Self::DEFAULT_ENDPOINT.into()
    }
}

/// `[push.apns]`: Apple Push Notification service over HTTP/2 with an ES256 provider token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` signing key from the Apple developer account (PKCS#8 PEM, P-256).
    pub key_file: PathBuf,
    /// The key's 10-character id (`kid`).
    pub key_id: String,
    /// The developer team id (`iss`).
    pub team_id: String,
    /// The app's bundle id, sent as `apns-topic` (a device's `app` overrides it).
    pub topic: String,
    /// Base URL; Apple's production host by default (`https://api.sandbox.push.apple.com` for
    /// development builds).
    #[serde(default = "ApnsConfig::default_endpoint")]
    pub endpoint: String,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ApnsConfig {
    pub const DEFAULT_ENDPOINT: &str = "https://api.push.apple.com";
    fn default_endpoint() -> String {
        Self::DEFAULT_ENDPOINT.into()
    }
}

/// `[push.webpush]`: Web Push with VAPID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    /// The VAPID private key: the 32-byte P-256 scalar, base64url (`herald vapid-keys` makes one).
    pub vapid_private_key: String,
    /// A `mailto:` or `https:` contact for push services (the VAPID `sub` claim).
    pub subject: String,
    #[serde(default)]
    pub limits: ProviderLimits,
}

/// `[[webhooks]]`: a URL that receives every notification (of the listed categories) as signed JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook in reports and dead letters; defaults to its position, `webhook-0`, ...
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    /// The HMAC-SHA256 key of the `Herald-Signature` header.
    pub secret: String,
    /// Only notifications of these categories; empty means all.
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl WebhookConfig {
    /// Its name: the configured one, else `webhook-{index}` by its position in the list.
    pub fn name_at(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("webhook-{index}"))
    }
}

/// How hard the sender may push one provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderLimits {
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Most sends started per second; 0 means no limit.
    pub rate_per_second: u32,
    /// HTTP/2 connections to the provider.
    pub connections: usize,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            concurrency: 512,
            rate_per_second: 0,
            connections: 4,
            timeout_ms: 30_000,
        }
    }
}

/// `[push.retry]`: exponential backoff with jitter, then a dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included, before a send is given up as failed.
    pub max_attempts: u32,
    /// Backoff before the second attempt, in milliseconds; doubles each time.
    pub base_delay_ms: u64,
    /// Longest backoff, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 60_000,
        }
    }
}
