//! The one interface every push provider implements.

use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Device, Platform};

use crate::message::PushMessage;

/// How one send went, in the terms the sender acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The provider accepted the message.
    Sent,
    /// Dry run: validated by the provider (FCM `validate_only`) or not sent at all.
    DryRun,
    /// A transient failure (429, 5xx, network): try again, not before `after` if the provider said.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The device's address is dead (unregistered, bad token): remove the device.
    Prune { reason: String },
    /// A permanent failure that is not the device's fault (bad payload, bad credentials).
    Fail { reason: String },
}

/// A push service that delivers to devices of one [`Platform`].
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn platform(&self) -> Platform;

    /// Sends `message` to `device`. With `dry_run`, validates without delivering where the
    /// provider supports it, and otherwise returns [`SendResult::DryRun`] without calling it.
    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult;

    /// Opens connections and fetches credentials ahead of a known burst (a campaign about to
    /// start), so its first sends do not wait for TLS handshakes or an OAuth round trip.
    /// Failures are left for the sends to meet and report.
    async fn warm(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Reads a `Retry-After` header given in seconds (the form FCM and APNs use).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Network and timeout errors are worth retrying; the request may or may not have arrived.
pub fn transport_failure(reason: impl std::fmt::Display) -> SendResult {
    SendResult::Retry {
        reason: format!("transport: {reason}"),
        after: None,
    }
}

/// [`transport_failure`] for a reqwest error, with its whole chain of causes.
pub fn transport_error(e: &reqwest::Error) -> SendResult {
    transport_failure(error_chain(e))
}

/// At most the first `max` characters of `text` (provider error details in reasons).
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
