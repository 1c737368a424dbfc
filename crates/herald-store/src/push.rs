//! The values of the push outbox: sends to devices and webhooks waiting for a provider, what became
//! of them, and each notification's delivery report.

use std::collections::BTreeMap;

use herald_core::{Priority, Reason};
use serde::{Deserialize, Serialize};

/// One send of one notification to one target. `(notification, target)` identifies it: the outbox
/// accepts it once, ever (until the notification's retention ends), so re-running a fan-out
/// never sends twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTask {
    /// The notification's id.
    pub notification: String,
    /// `d:{device id}` for a device, `w:{webhook name}` for a webhook.
    pub target: String,
    /// The recipient (empty for webhooks, which get the whole notification once).
    pub user: String,
    pub lane: Priority,
    /// Sends tried so far.
    pub attempt: u32,
    /// Unix milliseconds before which it must not be sent (a retry's backoff).
    pub due_ms: i64,
}

impl PushTask {
    pub fn device(notification: &str, device_id: &str, user: &str, lane: Priority) -> Self {
        Self {
            notification: notification.to_owned(),
            target: format!("d:{device_id}"),
            user: user.to_owned(),
            lane,
            attempt: 0,
            due_ms: 0,
        }
    }

    pub fn webhook(notification: &str, webhook: &str, lane: Priority) -> Self {
        Self {
            notification: notification.to_owned(),
            target: format!("w:{webhook}"),
            user: String::new(),
            lane,
            attempt: 0,
            due_ms: 0,
        }
    }

    /// The delivery channel the target belongs to: `push` or `webhook`.
    pub fn channel(&self) -> &'static str {
        channel_of(&self.target)
    }

    /// The device id, for a device target.
    pub fn device_id(&self) -> Option<&str> {
        self.target.strip_prefix("d:")
    }

    /// The webhook name, for a webhook target.
    pub fn webhook_name(&self) -> Option<&str> {
        self.target.strip_prefix("w:")
    }
}

pub fn channel_of(target: &str) -> &'static str {
    if target.starts_with("w:") {
        "webhook"
    } else {
        "push"
    }
}

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// The provider accepted it.
    Sent,
    /// Given up (a permanent error, or attempts exhausted): recorded as a dead letter.
    Failed,
    /// The provider said the device is gone; the device was removed.
    Pruned,
    /// Dry run: validated (FCM `validate_only`) or skipped, never delivered.
    DryRun,
    /// Its TTL ran out before it could be sent.
    Expired,
}

impl SendStatus {
    pub const ALL: [SendStatus; 5] = [
        SendStatus::Sent,
        SendStatus::Failed,
        SendStatus::Pruned,
        SendStatus::DryRun,
        SendStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Sent => "sent",
            SendStatus::Failed => "failed",
            SendStatus::Pruned => "pruned",
            SendStatus::DryRun => "dry_run",
            SendStatus::Expired => "expired",
        }
    }
}

/// What the sender reports back for a task it took from [`crate::Store::next_push`].
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// Finished: the task leaves the outbox, its report counter goes up, and a `Failed` one is
    /// kept as a dead letter with the reason.
    Done {
        task: PushTask,
        status: SendStatus,
        reason: Option<String>,
    },
    /// Try again at `due_ms`; the stored attempt count becomes `task.attempt + 1`.
    Retry { task: PushTask, due_ms: i64 },
}

impl PushOutcome {
    /// The task this outcome is about.
    pub fn task(&self) -> &PushTask {
        match self {
            PushOutcome::Done { task, .. } | PushOutcome::Retry { task, .. } => task,
        }
    }
}

/// Per channel counts of one notification's sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounts {
    /// Sends accepted into the outbox.
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub pruned: u64,
    pub dry_run: u64,
    pub expired: u64,
    /// Policy decisions, counted per user (send results above count per device):
    /// written to the inbox or announced live.
    pub delivered: u64,
    /// Turned off by the user's preferences.
    pub muted: u64,
    /// Over a frequency cap.
    pub capped: u64,
    /// Held until the user's quiet hours end (then sent or expired, as counted above).
    pub quiet_deferred: u64,
    /// Replaced by, or not pushed again because of, a notification with the same collapse key.
    pub collapsed: u64,
}

impl ChannelCounts {
    /// Queued and not finished yet.
    pub fn pending(&self) -> u64 {
        self.queued
            .saturating_sub(self.sent + self.failed + self.pruned + self.dry_run + self.expired)
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ChannelCounts) {
        self.queued += other.queued;
        self.sent += other.sent;
        self.failed += other.failed;
        self.pruned += other.pruned;
        self.dry_run += other.dry_run;
        self.expired += other.expired;
        self.delivered += other.delivered;
        self.muted += other.muted;
        self.capped += other.capped;
        self.quiet_deferred += other.quiet_deferred;
        self.collapsed += other.collapsed;
    }

    /// Adds `n` policy decisions for `reason`.
    pub fn add_reason(&mut self, reason: Reason, n: u64) {
        match reason {
            Reason::Delivered => self.delivered += n,
            Reason::Muted => self.muted += n,
            Reason::Capped => self.capped += n,
            Reason::QuietDeferred => self.quiet_deferred += n,
            Reason::Expired => self.expired += n,
            Reason::Collapsed => self.collapsed += n,
        }
    }

    /// Adds `n` to the counter of this name (`queued`, a [`SendStatus`] or a [`Reason`]);
    /// false for an unknown name. For engines that store counters by name.
    pub fn add_named(&mut self, name: &str, n: u64) -> bool {
        if name == "queued" {
            self.queued += n;
        } else if let Some(status) = SendStatus::ALL.iter().find(|s| s.as_str() == name) {
            self.add(*status, n);
        } else if let Some(reason) = Reason::parse(name) {
            self.add_reason(reason, n);
        } else {
            return false;
        }
        true
    }

    pub fn add(&mut self, status: SendStatus, n: u64) {
        match status {
            SendStatus::Sent => self.sent += n,
            SendStatus::Failed => self.failed += n,
            SendStatus::Pruned => self.pruned += n,
            SendStatus::DryRun => self.dry_run += n,
            SendStatus::Expired => self.expired += n,
        }
    }
}

/// A notification's delivery report: counts per channel (`push`, `webhook`).
pub type DeliveryReport = BTreeMap<String, ChannelCounts>;

/// A send that was given up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub notification: String,
    pub target: String,
    pub user: String,
    pub attempts: u32,
    pub reason: String,
    /// Unix milliseconds.
    pub at: i64,
}

impl DeadLetter {
    /// The dead letter of `task` given up at `at`; the send that failed counts as an attempt.
    pub fn of(task: &PushTask, reason: Option<&str>, at: i64) -> Self {
        Self {
            notification: task.notification.clone(),
            target: task.target.clone(),
            user: task.user.clone(),
            attempts: task.attempt + 1,
            reason: reason.unwrap_or_default().to_owned(),
            at,
        }
    }
}

impl PushTask {
    /// This task as it is stored for a retry at `due_ms`.
    pub(crate) fn retried(&self, due_ms: i64) -> Self {
        Self {
            attempt: self.attempt + 1,
            due_ms,
            ..self.clone()
        }
    }
}
