//! Per-provider send outcomes since this process started, for the admin console.
//!
//! Prometheus has the same figures (`herald_push_sends_total`), but reading them back from the
//! exporter means parsing its text; a few atomics are cheaper and give the console plain JSON.
//! They are process-wide, like the `metrics` recorder they sit next to: one server per process.

use std::sync::atomic::{AtomicU64, Ordering};

use herald_push::SendResult;
use serde::Serialize;
use utoipa::ToSchema;

/// Every outlet the sender can count: the push platforms and webhooks.
pub const PROVIDERS: [&str; 4] = ["fcm", "apns", "webpush", "webhook"];

/// What one provider's sends came to.
#[derive(Serialize, ToSchema, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCounts {
    pub sent: u64,
    /// Permanent failures (also after the last retry).
    pub failed: u64,
    /// Dead device addresses; the devices were removed.
    pub pruned: u64,
    /// Transient failures that were scheduled again.
    pub retried: u64,
    pub dry_run: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    pruned: AtomicU64,
    retried: AtomicU64,
    dry_run: AtomicU64,
}

static COUNTERS: [Counters; PROVIDERS.len()] = [const {
    Counters {
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        pruned: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        dry_run: AtomicU64::new(0),
    }
}; PROVIDERS.len()];

/// Counts one answer from `provider` (a name from [`PROVIDERS`]; others are ignored).
pub fn record(provider: &str, result: &SendResult) {
    let Some(index) = PROVIDERS.iter().position(|p| *p == provider) else {
        return;
    };
    let c = &COUNTERS[index];
    let counter = match result {
        SendResult::Sent => &c.sent,
        SendResult::DryRun => &c.dry_run,
        SendResult::Retry { .. } => &c.retried,
        SendResult::Prune { .. } => &c.pruned,
        SendResult::Fail { .. } => &c.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The counts of every provider, in [`PROVIDERS`] order.
pub fn snapshot() -> Vec<(&'static str, ProviderCounts)> {
    PROVIDERS
        .iter()
        .zip(&COUNTERS)
        .map(|(name, c)| {
            let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let counts = ProviderCounts {
                sent: read(&c.sent),
                failed: read(&c.failed),
                pruned: read(&c.pruned),
                retried: read(&c.retried),
                dry_run: read(&c.dry_run),
            };
            (*name, counts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_result_under_its_provider() {
        let before = snapshot();
        record("webhook", &SendResult::Sent);
        record(
            "webhook",
            &SendResult::Retry {
                reason: "503".into(),
                after: None,
            },
        );
        record("carrier-pigeon", &SendResult::Sent);
        let after = snapshot();
        let webhook =
            |s: &[(&str, ProviderCounts)]| s.iter().find(|(n, _)| *n == "webhook").unwrap().1;
        assert_eq!(webhook(&after).sent, webhook(&before).sent + 1);
        assert_eq!(webhook(&after).retried, webhook(&before).retried + 1);
        assert_eq!(after.len(), PROVIDERS.len());
    }
}
