//! Herald's storage contract and its engines.
//!
//! Every engine implements [`Store`]; the suite in [`contract`] (feature `contract-tests`) is
//! written once and run against each of them, so they behave the same.

pub mod channels;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod embedded;
pub mod feed_state;
mod options;
mod page;
mod policy;
mod push;
pub mod redis;
mod staged;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{
    Campaign, Category, Channel, Cursor, Device, Notification, Position, Preferences,
};
use tokio::sync::mpsc;

pub use channels::*;
pub use embedded::EmbeddedStore;
pub use herald_core::{EventBody, FeedEvent};
pub use options::StoreOptions;
pub use policy::*;
pub use push::*;
pub use redis::{RedisOptions, RedisStore};
pub use staged::*;
pub use types::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was used before with a different request body.
    #[error("idempotency key already used for notification {id} with a different request")]
    IdempotencyConflict { id: String },
    #[error("storage is shutting down")]
    Closed,
    #[error("storage failure: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What every storage engine provides. Writes are atomic per call; `accept` is durable on return.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new notification and queues its fan-out, atomically and durably: when this
    /// returns `Ok`, the notification survives a crash. A known idempotency key with the same
    /// fingerprint returns the first notification instead; with another fingerprint, an error.
    async fn accept(&self, accept: Accept) -> Result<Accepted>;

    /// A stored notification by id.
    async fn notification(&self, id: &str) -> Result<Option<Arc<Notification>>>;

    /// Up to `max` queued jobs, highest priority lane first, waiting up to `wait` for one.
    /// A job stays queued until [`finish_jobs`](Store::finish_jobs); after a restart it is handed out again.
    async fn next_jobs(&self, max: usize, wait: Duration) -> Result<Vec<Job>>;

    /// Records how far a long job got, so a restart resumes there.
    async fn checkpoint_job(&self, job: &JobId, cursor: &str) -> Result<()>;

    /// Removes finished jobs from the queue.
    async fn finish_jobs(&self, jobs: &[JobId]) -> Result<()>;

    /// Queued jobs per lane, in [`herald_core::Priority::LANES`] order.
    async fn queue_depths(&self) -> Result<[u64; 3]>;

    /// Writes notifications into users' feeds. Idempotent: a user who already has the
    /// notification is skipped. Returns the deliveries that were new.
    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Delivered>>;

    /// Appends a notification to the global feed (everyone's), once; returns its global sequence.
    async fn deliver_global(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
    ) -> Result<u64>;

    /// Appends a campaign's notification to the global feed once, shown only to the users on
    /// the campaign's list (in the channels no [`Exclusion`] took away): millions of inboxes
    /// get it with one write. Idempotent like [`deliver_global`](Self::deliver_global).
    async fn deliver_shared(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
        campaign: &str,
    ) -> Result<u64>;

    /// Where a notification sits in the global feed, if it is still there.
    async fn global_entry(&self, notification: &str) -> Result<Option<u64>>;

    /// Keeps a campaign's shared entry out of the given channels for these listed users.
    async fn exclude_recipients(&self, campaign: &str, exclusions: &[Exclusion]) -> Result<()>;

    /// Whether a campaign's shared entry is shown to `user` in `channel` (inbox or realtime).
    async fn campaign_shows(&self, campaign: &str, user: &str, channel: Channel) -> Result<bool>;

    /// A page of a user's inbox, newest first, with the unread count.
    async fn inbox_page(&self, user: &str, before: Cursor, limit: usize) -> Result<InboxPage>;

    async fn unread(&self, user: &str) -> Result<u64>;

    async fn mark_read(&self, user: &str, id: &str) -> Result<ChangeOutcome>;

    async fn mark_all_read(&self, user: &str) -> Result<Change>;

    /// Removes a notification from the user's inbox.
    async fn archive(&self, user: &str, id: &str) -> Result<ChangeOutcome>;

    /// The newest position of a user's feed.
    async fn head(&self, user: &str) -> Result<Position>;

    /// The user's feed events after `after`, oldest first, or a gap when history no longer
    /// reaches back that far (or more than `max` events were missed).
    async fn replay(&self, user: &str, after: Position, max: usize) -> Result<Replay>;

    /// Adds users to a topic; returns how many were new.
    async fn subscribe(&self, topic: &str, users: &[String]) -> Result<u64>;

    /// Removes users from a topic; returns how many were there.
    async fn unsubscribe(&self, topic: &str, users: &[String]) -> Result<u64>;

    /// A topic's subscribers in id order, after `after`.
    async fn subscribers(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>>;

    /// Registers a device for `user`. Its id comes from its address, so registering an address
    /// that belongs to another user moves the device to `user` (a phone changed hands).
    /// Each user keeps at most [`StoreOptions::devices_per_user`] devices: registering one more
    /// drops that user's least recently registered device.
    async fn register_device(&self, device: Device) -> Result<()>;

    /// A user's devices, most recently registered first.
    async fn devices(&self, user: &str) -> Result<Vec<Device>>;

    /// Removes one of the user's devices; false if the user has no device with this id.
    async fn remove_device(&self, user: &str, id: &str) -> Result<bool>;

    /// The devices of these users, for the sender (one round trip per batch).
    async fn devices_of(&self, users: &[String]) -> Result<Vec<Device>>;

    /// Removes a device whose provider said its address is dead, whoever owns it now.
    async fn prune_device(&self, id: &str) -> Result<bool>;

    /// Puts sends into the outbox. A `(notification, target)` the outbox has seen before, pending
    /// or finished, is skipped, so re-running a fan-out never sends twice. Counts the new ones
    /// as `queued` in the notification's report and returns how many were new.
    async fn enqueue_push(&self, tasks: &[PushTask]) -> Result<u64>;

    /// Up to `max` sends that are due at `now_ms`, highest lane first, oldest due first. A task
    /// handed out is not handed out again until it is finished or retried, or after a restart
    /// (embedded) or once its lease of `lease` has run out (Redis: a dead node's sends are taken
    /// over by the living).
    async fn next_push(&self, max: usize, now_ms: i64, lease: Duration) -> Result<Vec<PushTask>>;

    /// Records how sends ended. Idempotent per task: finishing a task that is no longer in the
    /// outbox changes nothing.
    async fn finish_push(&self, outcomes: &[PushOutcome]) -> Result<()>;

    /// Sends in the outbox (pending and leased), per lane in [`herald_core::Priority::LANES`] order.
    async fn push_depths(&self) -> Result<[u64; 3]>;

    /// Per-channel send counts of a notification (empty when it had no sends).
    async fn delivery_report(&self, notification: &str) -> Result<DeliveryReport>;

    /// The newest dead letters first, at most `limit`. Kept up to
    /// [`StoreOptions::dead_letters_max`]; older ones are dropped.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Creates or replaces a category.
    async fn put_category(&self, category: &Category) -> Result<()>;

    /// Removes a category; false if there was none by that name.
    async fn delete_category(&self, name: &str) -> Result<bool>;

    /// Every category, by name.
    async fn categories(&self) -> Result<Vec<Category>>;

    /// Replaces a user's preferences.
    async fn put_preferences(&self, user: &str, preferences: &Preferences) -> Result<()>;

    /// The preferences of these users, in the same order; `None` for a user who set none.
    async fn preferences_of(&self, users: &[String]) -> Result<Vec<Option<Preferences>>>;

    /// Takes one unit of every charge of each request, all or none per request, atomically per
    /// user: `true` where each counter was under its limit within its window at `now_ms`.
    /// Idempotent: a notification already counted against a request's first charge is allowed
    /// again without counting twice (a fan-out retried after a crash).
    async fn take_caps(&self, requests: &[CapRequest], now_ms: i64) -> Result<Vec<bool>>;

    /// Records that each claim's notification reached its user with its collapse key, and
    /// returns the notification it replaces: the one claimed last with that key if that was
    /// within the claim's window. Idempotent: claiming the same notification again returns
    /// the same answer.
    async fn claim_collapse(
        &self,
        claims: &[CollapseClaim],
        now_ms: i64,
    ) -> Result<Vec<Option<String>>>;

    /// Archives a notification only if the user has not read it (`Unchanged` if they have).
    async fn archive_if_unread(&self, user: &str, id: &str) -> Result<ChangeOutcome>;

    /// Adds decision counts to notifications' delivery reports and appends records to their
    /// users' decision logs (each kept to [`StoreOptions::decisions_per_user`], newest kept).
    async fn record_decisions(
        &self,
        counts: &[DecisionCount],
        records: &[DecisionRecord],
    ) -> Result<()>;

    /// A user's newest decisions first, at most `limit`.
    async fn decisions(&self, user: &str, limit: usize) -> Result<Vec<DecisionRecord>>;

    /// Stores a new campaign as given (its `version` is normally 0).
    async fn create_campaign(&self, campaign: &Campaign) -> Result<()>;

    async fn campaign(&self, id: &str) -> Result<Option<Campaign>>;

    /// Campaigns newest first (ids are ULIDs), only those with an id below `before` if given.
    async fn campaigns(&self, before: Option<&str>, limit: usize) -> Result<Vec<Campaign>>;

    /// Campaigns not completed or cancelled, oldest first: what the campaign workers look after.
    async fn active_campaigns(&self) -> Result<Vec<Campaign>>;

    /// Replaces a campaign if the stored copy still has `campaign.version`, storing it with
    /// `version + 1`. False, with nothing changed, if another writer changed it first (or it
    /// does not exist): two nodes or a double-pressed button never both apply a change.
    async fn update_campaign(&self, campaign: &Campaign) -> Result<bool>;

    /// Appends users to a campaign's list, each user once ever: a user already listed (before,
    /// or earlier in this call) is a duplicate. New users take the next positions in order.
    async fn add_recipients(&self, campaign: &str, users: &[String]) -> Result<RecipientsAdded>;

    /// How many users a campaign's list holds.
    async fn recipient_count(&self, campaign: &str) -> Result<u64>;

    /// The listed users at positions `from .. from + limit`.
    async fn recipients(&self, campaign: &str, from: u64, limit: usize) -> Result<Vec<String>>;

    /// Deletes a campaign's uploaded recipient list; [`recipient_count`](Self::recipient_count)
    /// still answers its length. With `keep_members`, who is listed (and their exclusions) is
    /// kept, for a shared entry still in the global feed. For ended campaigns only: an upload
    /// racing it may leave a remainder.
    async fn drop_recipients(&self, campaign: &str, keep_members: bool) -> Result<()>;

    /// Stores a slice of a campaign's push sends, resolved ahead of its send, unless one
    /// starting at `stage.from` is stored already (a stage never changes once stored, so the
    /// progress of its sends keeps meaning the same sends). True if this call stored it.
    /// [`drop_recipients`](Self::drop_recipients) and
    /// [`drop_push_stages`](Self::drop_push_stages) delete a campaign's stages.
    async fn stage_push(&self, campaign: &str, stage: &PushStage) -> Result<bool>;

    /// The stage starting at audience position `from`, and which of its sends are finished.
    async fn push_stage(
        &self,
        campaign: &str,
        from: u64,
    ) -> Result<Option<(PushStage, StagedProgress)>>;

    /// Records how staged sends of `notification` ended, atomically: marks them finished and,
    /// for each not finished before, counts it in the notification's report (`queued` and its
    /// status, channel `push`) and keeps its dead letter. Recording a send twice counts it once.
    async fn finish_staged(
        &self,
        campaign: &str,
        from: u64,
        notification: &str,
        outcomes: &[StagedOutcome],
    ) -> Result<()>;

    /// Deletes a campaign's push stages and their progress. For ended campaigns only: a stage
    /// staged again after this would send its users again.
    async fn drop_push_stages(&self, campaign: &str) -> Result<()>;

    /// Users with at least one device, in id order, after `after`: a push to everyone.
    async fn device_owners(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// The feed events of every write, in commit order per user, for the realtime hub.
    /// Called once; events are pushed with back-pressure, so the receiver must keep reading.
    /// Stores chunk `index` of an upload to `channel`. Chunks are invisible until the upload is
    /// published with [`channel_publish`](Self::channel_publish); every chunk but the last holds
    /// exactly `ChannelOptions::chunk_bytes`. Unpublished uploads are swept after
    /// `upload_grace_ms`.
    async fn channel_put_chunk(
        &self,
        channel: &str,
        upload: &str,
        index: u32,
        data: Bytes,
    ) -> Result<()>;

    /// Drops an upload that will never be published (its body was cut short).
    async fn channel_discard(&self, channel: &str, upload: &str, chunks: u32) -> Result<()>;

    /// Appends messages to `channel` in order, each at the next position, trims the history to
    /// its limits and announces each message on [`channel_events`](Self::channel_events) of
    /// every node. Returns the positions given. Readers never see a position before the ones
    /// below it.
    async fn channel_publish(
        &self,
        channel: &str,
        messages: Vec<NewChannelMessage>,
        now_ms: i64,
    ) -> Result<Vec<u64>>;

    /// Up to `max` messages of `channel` after position `after` that are still in history
    /// (younger than `history_ms` at `now_ms`), with the channel's head.
    async fn channel_read(
        &self,
        channel: &str,
        after: u64,
        max: usize,
        now_ms: i64,
    ) -> Result<ChannelRead>;

    /// Chunk `index` of a published (or uploading) message, or None once swept.
    async fn channel_chunk(&self, channel: &str, upload: &str, index: u32)
    -> Result<Option<Bytes>>;

    /// Published channel messages, from this node and (on Redis) every other. Lossy by design:
    /// a reader that sees a position jump reads the missing ones with `channel_read`. Only the
    /// first call gets the receiver.
    fn channel_events(&self) -> Option<mpsc::Receiver<ChannelNotice>>;

    fn live_events(&self) -> Option<mpsc::Receiver<Live>>;

    /// Drops what has outlived its retention (notification bodies, idempotency keys).
    async fn purge_expired(&self, now_ms: i64) -> Result<PurgeReport>;

    /// Cheap liveness check of the engine.
    async fn health(&self) -> Result<()>;

    /// Makes everything written so far durable and stops background work.
    async fn close(&self) -> Result<()>;
}
