//! Key names. A user's keys share the hash tag `{u:ID}`, so they live on one Cluster shard and a
//! script can change them atomically; the global feed shares `{g}`; the work queues, idempotency
//! records and retention indexes share `{q}`, so an accept is one atomic script. The push outbox,
//! its done markers, the delivery reports and the dead letters share `{q}` too, so one script
//! moves a batch of sends and counts them atomically, even on a Cluster (one slot, one shard).
//! A device lives under its own key `dev:ID` (found by id whoever owns it) and is indexed in its
//! owner's `{u:ID}:d`; those are two slots, so a device changing hands is not one atomic step.
//! Delivery policy keeps its per-user state (preferences, cap counters, collapse keys, decision
//! log) under `{u:ID}` too, so one script checks and takes a user's caps atomically.
//! A campaign's keys share `{c:ID}` (its record, recipient list and member set), so one script
//! changes a campaign atomically; the indexes across campaigns and device owners are keys of
//! their own, on other slots (see `campaigns` and `owners` for the order of those writes).

/// The classic pub/sub channel of live events (a single server, Sentinel); a Cluster has one
/// shard channel per slot instead (see `sharded`).
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
/// The global feed's shared campaign entries: sequence number → campaign id.
pub const GLOBAL_CAMPAIGNS: &str = "{g}:c";
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
/// A user's device ids, scored by registration time.
pub fn user_devices(user: &str) -> String {
    format!("{{u:{user}}}:d")
}
/// A device's JSON, by id.
pub fn device(id: &str) -> String {
    format!("dev:{id}")
}
/// Pending sends: `notification|target` → `lane:due_ms:task JSON`.
pub const PUSH_TASKS: &str = "{q}:push:task";
/// A lane's sends waiting to be handed out, scored by due time.
pub fn push_due(lane: usize) -> String {
    format!("{{q}}:push:due:{lane}")
}
/// A lane's sends handed out, scored by the end of their lease.
pub fn push_leased(lane: usize) -> String {
    format!("{{q}}:push:leased:{lane}")
}
/// The targets a notification's finished sends went to; expires with the notification.
pub fn push_done(notification: &str) -> String {
    format!("{{q}}:push:done:{notification}")
}
/// A notification's send counters, `channel:status` → count; expires with the notification.
pub fn push_report(notification: &str) -> String {
    format!("{{q}}:push:report:{notification}")
}
/// Dead letters as JSON, newest first, capped.
pub const PUSH_DEAD: &str = "{q}:push:dead";
/// Every category's JSON, by name.
pub const CATEGORIES: &str = "policy:categories";
/// A user's preferences as JSON.
pub fn user_preferences(user: &str) -> String {
    format!("{{u:{user}}}:p")
}
/// One of a user's frequency-cap counters: notification ids scored by when they were counted.
pub fn user_cap(user: &str, key: &str) -> String {
    format!("{{u:{user}}}:cap:{key}")
}
/// The notification a user last got with a collapse key: HASH `id`, `prev` (the one it
/// replaced) and `at` (ms).
pub fn user_collapse(user: &str, key: &str) -> String {
    format!("{{u:{user}}}:ck:{key}")
}
/// A user's delivery decisions as JSON, newest first, capped.
pub fn user_decisions(user: &str) -> String {
    format!("{{u:{user}}}:dl")
}
pub fn topic(topic: &str) -> String {
    format!("{{t:{topic}}}")
}
/// A user who owns at least one device, per member (score 0, so in id order): who a push to
/// everyone walks.
pub const DEVICE_OWNERS: &str = "devices:owners";
/// A campaign as a HASH: `v` its version (compared as a string by the update script) and `j`
/// its JSON.
pub fn campaign(id: &str) -> String {
    format!("{{c:{id}}}:r")
}
/// A campaign's recipients, in list order.
pub fn campaign_list(id: &str) -> String {
    format!("{{c:{id}}}:l")
}
/// Listed users kept out of some channels of the campaign's shared entry: user → bits (1: inbox,
/// 2: live).
pub fn campaign_exclusions(id: &str) -> String {
    format!("{{c:{id}}}:x")
}
/// A campaign's recipients as a SET, so each user is listed once.
pub fn campaign_members(id: &str) -> String {
    format!("{{c:{id}}}:s")
}
/// A campaign's push stages: first audience position → stage JSON.
pub fn campaign_push_stages(id: &str) -> String {
    format!("{{c:{id}}}:ps")
}
/// Which sends of a campaign's push stage are finished: a bitmap, on the outbox's slot.
pub fn push_stage_progress(campaign: &str, from: u64) -> String {
    format!("{{q}}:push:stage:{campaign}:{from}")
}
/// How many recipients a dropped list held.
pub fn campaign_dropped_count(id: &str) -> String {
    format!("{{c:{id}}}:n")
}
/// Every campaign id (score 0, so in id order: ULIDs sort by creation time).
pub const CAMPAIGNS: &str = "campaigns";
/// The ids of campaigns neither completed nor cancelled (score 0, in id order).
pub const ACTIVE_CAMPAIGNS: &str = "campaigns:active";
