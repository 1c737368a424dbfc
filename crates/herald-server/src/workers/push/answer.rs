//! One send to a device and what the provider's answer means for it, shared by the outbox
//! sender and a campaign's staged sends.

use herald_core::{Device, Priority};
use herald_push::retry::{RetryDecision, after_failure};
use herald_push::{PushMessage, SendResult};
use herald_store::{SendStatus, Store};

use super::providers::Providers;

/// Sends `message` to `device` through its provider, once a slot of the provider's limit in
/// `lane` is free.
pub async fn to_device(
    providers: &Providers,
    message: &PushMessage,
    device: &Device,
    lane: Priority,
    dry_run: bool,
) -> SendResult {
    match providers.provider(device.platform) {
        Some(provider) => {
            let _slot = provider.ready(lane).await;
            provider.outlet.send(message, device, dry_run).await
        }
        None if dry_run => SendResult::DryRun,
        None => SendResult::Fail {
            reason: format!("{} is not configured", device.platform.as_str()),
        },
    }
}

/// What an answer means for the send.
pub enum Settled {
    /// Finished, and why (for anything but a plain success).
    Done(SendStatus, Option<String>),
    /// Transient: try again at `due_ms`.
    Retry { due_ms: i64 },
}

/// Settles the answer to attempt `attempt` (0 for the first) of a send; a dead device
/// (`device`, its id) is removed.
pub async fn settle(
    store: &dyn Store,
    providers: &Providers,
    device: Option<&str>,
    attempt: u32,
    result: SendResult,
) -> Settled {
    match result {
        SendResult::Sent => Settled::Done(SendStatus::Sent, None),
        SendResult::DryRun => Settled::Done(SendStatus::DryRun, None),
        SendResult::Fail { reason } => Settled::Done(SendStatus::Failed, Some(reason)),
        SendResult::Prune { reason } => {
            if let Some(id) = device
                && let Err(e) = store.prune_device(id).await
            {
                tracing::warn!(error = %e, "could not remove a dead device");
            }
            Settled::Done(SendStatus::Pruned, Some(reason))
        }
        SendResult::Retry { reason, after } => {
            let attempts = attempt + 1;
            match after_failure(&providers.retry, attempts, after) {
                RetryDecision::RetryAfter(delay) => {
                    tracing::debug!(%reason, ?delay, attempt = attempts, "send will be retried");
                    Settled::Retry {
                        due_ms: herald_core::time::now_ms() + delay.as_millis() as i64,
                    }
                }
                RetryDecision::GiveUp => Settled::Done(
                    SendStatus::Failed,
                    Some(format!("{reason} (gave up after {attempts} attempts)")),
                ),
            }
        }
    }
}

/// The `result` label of `herald_push_sends_total`.
pub fn result_label(result: &SendResult) -> &'static str {
    match result {
        SendResult::Sent => "sent",
        SendResult::DryRun => "dry_run",
        SendResult::Retry { .. } => "retry",
        SendResult::Prune { .. } => "pruned",
        SendResult::Fail { .. } => "failed",
    }
}
