//! Webhooks: every notification (of the chosen categories) POSTed as JSON to a configured URL,
//! signed like Stripe's: `Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
//! Receivers check the signature and reject old timestamps, which stops forgery and replay;
//! `Herald-Delivery` carries the notification id so a receiver can drop a repeated delivery.

use herald_core::Notification;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookConfig;
use crate::http::{ClientPool, HttpOptions};
use crate::provider::{SendResult, retry_after, transport_error};

pub const SIGNATURE_HEADER: &str = "Herald-Signature";
pub const DELIVERY_HEADER: &str = "Herald-Delivery";

pub struct Webhook {
    name: String,
    url: String,
    secret: Vec<u8>,
    categories: Vec<String>,
    http: ClientPool,
}

impl std::fmt::Debug for Webhook {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// `index` names an unnamed webhook (`webhook-0`, ...).
    pub fn new(config: &WebhookConfig, index: usize, http: HttpOptions) -> Result<Self, String> {
        if !(config.url.starts_with("https://") || config.url.starts_with("http://")) {
            return Err(format!(
                "webhook url {:?} is not an http(s) URL",
                config.url
            ));
        }
        if config.secret.len() < 16 {
            return Err("a webhook secret must be at least 16 characters".into());
        }
        Ok(Self {
            name: config.name_at(index),
            url: config.url.clone(),
            secret: config.secret.as_bytes().to_vec(),
            categories: config.categories.clone(),
            http: ClientPool::new(&http).map_err(|e| e.to_string())?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a notification of this category goes to this webhook.
    pub fn wants(&self, category: Option<&str>) -> bool {
        self.categories.is_empty()
            || category.is_some_and(|c| self.categories.iter().any(|w| w == c))
    }

    pub async fn send(&self, notification: &Notification, dry_run: bool) -> SendResult {
        if dry_run {
            return SendResult::DryRun;
        }
        let body = match serde_json::to_vec(notification) {
            Ok(body) => body,
            Err(e) => {
                return SendResult::Fail {
                    reason: format!("webhook body: {e}"),
                };
            }
        };
        let now = herald_core::time::now_secs();
        let response = self
            .http
            .client()
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, now, &body))
            .header(DELIVERY_HEADER, &notification.id)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return transport_error(&e),
        };
        let status = response.status();
        if status.is_success() {
            return SendResult::Sent;
        }
        let reason = format!("webhook {} answered {}", self.name, status.as_u16());
        match status.as_u16() {
            408 | 425 | 429 | 500..=599 => SendResult::Retry {
                reason,
                after: retry_after(response.headers()),
            },
            _ => SendResult::Fail { reason },
        }
    }
}

/// The `Herald-Signature` header value for `body` sent at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_value() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
        assert_eq!(
            sign(b"whsec_0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2"
        );
    }

    #[test]
    fn categories_filter() {
        let config = WebhookConfig {
            name: None,
            url: "https://example.com/hook".into(),
            secret: "0123456789abcdef".into(),
            categories: vec!["billing".into()],
            limits: Default::default(),
        };
        let hook = Webhook::new(&config, 2, HttpOptions::default()).unwrap();
        assert_eq!(hook.name(), "webhook-2");
        assert!(hook.wants(Some("billing")));
        assert!(!hook.wants(Some("news")));
        assert!(!hook.wants(None));
    }
}
