//! Options every storage engine honours.

use serde::{Deserialize, Serialize};

use crate::ChannelOptions;

/// Limits and retention of a store, whatever its engine (`[store]` in `herald.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Most entries kept per user inbox; the oldest are dropped past it.
    pub inbox_max: usize,
    /// Most notifications to everyone kept in the global feed.
    pub global_max: usize,
    /// Most read/archive actions kept per user for stream resume.
    pub changes_max: usize,
    /// How long an idempotency key is remembered, in milliseconds.
    pub idempotency_ttl_ms: i64,
    /// How long a notification's content is kept, in milliseconds.
    pub notification_retention_ms: i64,
    /// Block cache size in bytes (embedded engine only).
    pub cache_bytes: u64,
    /// Most devices per user; registering one more drops the least recently registered.
    pub devices_per_user: usize,
    /// Most dead letters kept; the oldest are dropped past it.
    pub dead_letters_max: usize,
    /// Most delivery decisions kept per user for `GET /v1/users/{user}/deliveries`.
    pub decisions_per_user: usize,
    /// Realtime channel history; set from `[channels]`, not `[store]`.
    #[serde(skip)]
    pub channels: ChannelOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            inbox_max: 1000,
            global_max: 1000,
            changes_max: 200,
            idempotency_ttl_ms: 24 * 3600 * 1000,
            notification_retention_ms: 90 * 24 * 3600 * 1000,
            cache_bytes: 64 * 1024 * 1024,
            devices_per_user: 20,
            dead_letters_max: 10_000,
            decisions_per_user: 50,
            channels: ChannelOptions::default(),
        }
    }
}
