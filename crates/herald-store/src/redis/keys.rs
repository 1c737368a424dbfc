//! Key names. A user's keys share the hash tag `{u:ID}`, so they live on one Cluster shard and a
//! script can change them atomically; the global feed shares `{g}`; the work queues, idempotency
//! records and retention indexes share `{q}`, so an accept is one atomic script.

pub const EVENTS_CHANNEL: &str = "herald:events";
pub const GROUP: &str = "herald";

pub fn user_meta(user: &str) -> String {
    format!("{{u:{user}}}:m")
}
pub fn user_inbox(user: &str) -> String {
    format!("{{u:{user}}}:i")
}
pub fn user_changes(user: &str) -> String {
    format!("{{u:{user}}}:c")
}
/// Global entries the user read (`r`) or archived (`a`), by global sequence number.
pub fn user_global(user: &str) -> String {
    format!("{{u:{user}}}:g")
}
pub fn notification(id: &str) -> String {
    format!("n:{id}")
}
pub const GLOBAL_FEED: &str = "{g}:f";
pub const GLOBAL_META: &str = "{g}:m";
pub fn lane(lane: usize) -> String {
    format!("{{q}}:lane:{lane}")
}
pub fn idempotency(key: &str) -> String {
    format!("{{q}}:k:{key}")
}
/// Notification ids by accept time, for retention.
pub const NOTIFICATION_TIMES: &str = "{q}:nt";
/// Idempotency keys by first use, for expiry.
pub const IDEMPOTENCY_TIMES: &str = "{q}:kt";
pub const CHECKPOINTS: &str = "{q}:cp";
pub fn topic(topic: &str) -> String {
    format!("{{t:{topic}}}")
}
