//! The values of delivery policy the store keeps: frequency-cap counters, collapse keys and each
//! user's decision log. Categories and preferences themselves are [`herald_core::policy`] types.

use herald_core::policy::Verdict;
use herald_core::{Channel, Reason};
use serde::{Deserialize, Serialize};

/// One push of `notification` to `user`, counted against every cap in `charges` or none:
/// allowed only if each counter is under its limit within its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapRequest {
    pub user: String,
    pub notification: String,
    pub charges: Vec<CapCharge>,
}

/// One counter of a user's: at most `limit` notifications within any `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapCharge {
    /// Which counter, e.g. `c:news:86400` (a category's) or `all:86400` (the user's overall).
    pub key: String,
    pub limit: u32,
    pub window_ms: i64,
}

/// `notification` reaches `user` with collapse key `key`; an earlier notification with that
/// key within `window_ms` is the one it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollapseClaim {
    pub user: String,
    pub key: String,
    pub notification: String,
    pub window_ms: i64,
}

/// How many users a decision was taken for, on one channel of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
    pub notification: String,
    pub channel: Channel,
    pub reason: Reason,
    pub n: u64,
}

/// One decision about one user, kept in the user's decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub notification: String,
    pub user: String,
    pub channel: Channel,
    pub reason: Reason,
    /// Why, in words.
    pub detail: String,
    /// Unix milliseconds.
    pub at: i64,
}

impl DecisionRecord {
    /// The record of a verdict worth explaining (not a plain delivery), else `None`.
    pub fn of(
        notification: &str,
        user: &str,
        channel: Channel,
        verdict: &Verdict,
        at: i64,
    ) -> Option<Self> {
        Some(Self {
            notification: notification.to_owned(),
            user: user.to_owned(),
            channel,
            reason: verdict.reason()?,
            detail: verdict.explain()?,
            at,
        })
    }
}
