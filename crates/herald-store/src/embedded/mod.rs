//! The embedded engine: one data directory, no server. Built on fjall (an LSM tree with an
//! atomic, journaled write batch), with all writes funnelled through one writer thread.

mod campaigns;
mod caps;
mod categories;
mod channels;
mod collapse;
mod dead_letters;
mod decisions;
mod devices;
mod expiry;
mod keys;
mod lanes;
mod outbox;
mod overlay;
mod preferences;
mod push_reports;
mod reads;
mod recipients;
mod records;
mod stages;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use herald_core::{
    Campaign, Category, Channel, Cursor, Device, Notification, Position, Preferences,
};
use tokio::sync::{mpsc, oneshot};

use self::channels::ChannelLog;
use self::dead_letters::DeadLetters;
use self::lanes::Lanes;
use self::outbox::Outbox;
use self::overlay::backend;
use self::records::*;
use self::writer::{Op, Writer, job_id};
use crate::feed_state::GlobalState;
use crate::*;

/// Capacity of the queue of pending writes; callers wait when it is full.
const OPS_QUEUE: usize = 16 * 1024;
/// Capacity of the live event channel to the realtime hub.
const LIVE_QUEUE: usize = 64 * 1024;

pub struct EmbeddedStore {
    db: Database,
    keyspaces: Vec<fjall::Keyspace>,
    options: StoreOptions,
    ops: mpsc::Sender<Op>,
    global: Arc<RwLock<GlobalState>>,
    lanes: Arc<Lanes>,
    outbox: Arc<Outbox>,
    live_rx: Mutex<Option<mpsc::Receiver<Live>>>,
    live_enabled: Arc<AtomicBool>,
    channels: ChannelLog,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, recovering queued jobs and the global feed.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref()).map_err(backend)?;
        let db = Database::builder(dir.as_ref())
            .cache_size(options.cache_bytes)
            .worker_threads(2)
            .open()
            .map_err(backend)?;
        let keyspaces = KEYSPACES
            .iter()
            .map(|name| db.keyspace(name, KeyspaceCreateOptions::default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let channels = ChannelLog::open(&db, dir.as_ref(), options.channels)?;
        let global = load_global(&keyspaces)?;
        let (jobs, last_job_seq) = load_jobs(&keyspaces)?;
        let lanes = Arc::new(Lanes::default());
        lanes.push(jobs);
        let outbox = Arc::new(Outbox::open(&keyspaces[PUSH_DUE])?);
        let dead_letters = DeadLetters::open(&keyspaces[DEAD_LETTERS])?;
        let global_shared = Arc::new(RwLock::new(global.clone()));
        let (ops_tx, ops_rx) = mpsc::channel(OPS_QUEUE);
        let (live_tx, live_rx) = mpsc::channel(LIVE_QUEUE);
        let live_enabled = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            db: db.clone(),
            keyspaces: keyspaces.clone(),
            options: options.clone(),
            global,
            shared_global: global_shared.clone(),
            lanes: lanes.clone(),
            live: live_tx,
            live_enabled: live_enabled.clone(),
            last_job_seq,
            meta_cache: Default::default(),
            outbox: outbox.clone(),
            dead_letters,
        };
        std::thread::Builder::new()
            .name("herald-store-writer".into())
            .spawn(move || writer.run(ops_rx))
            .map_err(backend)?;
        Ok(Self {
            db,
            keyspaces,
            options,
            ops: ops_tx,
            global: global_shared,
            lanes,
            outbox,
            live_rx: Mutex::new(Some(live_rx)),
            live_enabled,
            channels,
        })
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(op(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn global(&self) -> GlobalState {
        self.global.read().expect("global lock").clone()
    }
}

fn load_global(keyspaces: &[fjall::Keyspace]) -> Result<GlobalState> {
    let mut global = GlobalState::default();
    for guard in keyspaces[GLOBAL].iter() {
        let (key, value) = guard.into_inner().map_err(backend)?;
        let gseq = u64::from_be_bytes(key.as_ref().try_into().map_err(backend)?);
        let entry = Entry::decode(&value)?;
        global.entries.push_back((gseq, entry.flags.inbox));
        // A campaign's shared entry names its campaign next to its sequence number.
        if let Some(raw) = keyspaces[GLOBAL_IDS]
            .get(entry.id.as_bytes())
            .map_err(backend)?
            && let Some(campaign) = GlobalId::decode(&raw)?.campaign
        {
            global.restricted.insert(gseq, Arc::from(campaign));
        }
    }
    global.head = global.entries.back().map_or(0, |(g, _)| *g);
    global.floor = global.entries.front().map_or(global.head, |(g, _)| g - 1);
    Ok(global)
}

fn load_jobs(keyspaces: &[fjall::Keyspace]) -> Result<(Vec<Job>, u64)> {
    let mut jobs = Vec::new();
    let mut last_seq = 0;
    for guard in keyspaces[QUEUE].iter() {
        let (key, value) = guard.into_inner().map_err(backend)?;
        let lane = key[0];
        let seq = u64::from_be_bytes(key[1..].try_into().map_err(backend)?);
        last_seq = last_seq.max(seq);
        let record: JobRecord = from_json(&value)?;
        let Some(raw) = keyspaces[NOTIFICATIONS]
            .get(record.notification.as_bytes())
            .map_err(backend)?
        else {
            tracing::warn!(notification = %record.notification, "queued job without its notification; skipped");
            continue;
        };
        let notification: Notification = from_json(&raw)?;
        jobs.push(Job {
            id: job_id(lane, seq),
            lane: notification.priority,
            notification: Arc::new(notification),
            cursor: record.cursor,
        });
    }
    if !jobs.is_empty() {
        tracing::info!(jobs = jobs.len(), "resuming queued work from the last run");
    }
    Ok((jobs, last_seq))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn accept(&self, accept: Accept) -> Result<Accepted> {
        self.call(|r| Op::Accept(Box::new(accept), r)).await
    }

    async fn notification(&self, id: &str) -> Result<Option<Arc<Notification>>> {
        reads::notification(&self.keyspaces, id)
    }

    async fn next_jobs(&self, max: usize, wait: Duration) -> Result<Vec<Job>> {
        Ok(self.lanes.take(max, wait).await)
    }

    async fn checkpoint_job(&self, job: &JobId, cursor: &str) -> Result<()> {
        self.call(|r| Op::Checkpoint(job.clone(), cursor.to_owned(), r))
            .await
    }

    async fn finish_jobs(&self, jobs: &[JobId]) -> Result<()> {
        self.call(|r| Op::FinishJobs(jobs.to_vec(), r)).await
    }

    async fn queue_depths(&self) -> Result<[u64; 3]> {
        Ok(self.lanes.depths())
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Delivered>> {
        self.call(|r| Op::Deliver(deliveries.to_vec(), r)).await
    }

    async fn deliver_global(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
    ) -> Result<u64> {
        self.call(|r| Op::DeliverGlobal(notification, flags, None, r))
            .await
    }

    async fn deliver_shared(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
        campaign: &str,
    ) -> Result<u64> {
        self.call(|r| Op::DeliverGlobal(notification, flags, Some(campaign.to_owned()), r))
            .await
    }

    async fn global_entry(&self, notification: &str) -> Result<Option<u64>> {
        match self.keyspaces[GLOBAL_IDS]
            .get(notification.as_bytes())
            .map_err(backend)?
        {
            Some(raw) => Ok(Some(GlobalId::decode(&raw)?.gseq)),
            None => Ok(None),
        }
    }

    async fn exclude_recipients(&self, campaign: &str, exclusions: &[Exclusion]) -> Result<()> {
        if exclusions.is_empty() {
            return Ok(());
        }
        self.call(|r| Op::ExcludeRecipients(campaign.to_owned(), exclusions.to_vec(), r))
            .await
    }

    async fn campaign_shows(&self, campaign: &str, user: &str, channel: Channel) -> Result<bool> {
        let campaign: Arc<str> = Arc::from(campaign);
        let keyspace = &self.keyspaces[RECIPIENTS];
        let memberships = recipients::memberships(
            |key| Ok(keyspace.get(key).map_err(backend)?.map(|v| v.to_vec())),
            user,
            std::slice::from_ref(&campaign),
        )?;
        Ok(memberships.shows(&campaign, channel))
    }

    async fn inbox_page(&self, user: &str, before: Cursor, limit: usize) -> Result<InboxPage> {
        reads::inbox_page(
            &self.db,
            &self.keyspaces,
            &self.global(),
            user,
            before,
            limit,
        )
    }

    async fn unread(&self, user: &str) -> Result<u64> {
        let snap = self.db.snapshot();
        let meta = reads::user_meta(&snap, &self.keyspaces, user)?;
        let global = self.global();
        let memberships = reads::memberships(
            &snap,
            &self.keyspaces,
            user,
            &global.campaigns_after(meta.global_marker),
        )?;
        Ok(meta.unread + global.unread_for(&meta, &memberships))
    }

    async fn mark_read(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.call(|r| Op::MarkRead(user.to_owned(), id.to_owned(), r))
            .await
    }

    async fn mark_all_read(&self, user: &str) -> Result<Change> {
        self.call(|r| Op::MarkAllRead(user.to_owned(), r)).await
    }

    async fn archive(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.call(|r| Op::Archive(user.to_owned(), id.to_owned(), r))
            .await
    }

    async fn head(&self, user: &str) -> Result<Position> {
        let meta = reads::user_meta(&self.db.snapshot(), &self.keyspaces, user)?;
        Ok(Position::new(meta.seq, self.global().head))
    }

    async fn replay(&self, user: &str, after: Position, max: usize) -> Result<Replay> {
        reads::replay(&self.db, &self.keyspaces, &self.global(), user, after, max)
    }

    async fn subscribe(&self, topic: &str, users: &[String]) -> Result<u64> {
        self.call(|r| Op::Subscribe(topic.to_owned(), users.to_vec(), r))
            .await
    }

    async fn unsubscribe(&self, topic: &str, users: &[String]) -> Result<u64> {
        self.call(|r| Op::Unsubscribe(topic.to_owned(), users.to_vec(), r))
            .await
    }

    async fn subscribers(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        reads::subscribers(&self.keyspaces, topic, after, limit)
    }

    async fn register_device(&self, device: Device) -> Result<()> {
        self.call(|r| Op::RegisterDevice(Box::new(device), r)).await
    }

    async fn devices(&self, user: &str) -> Result<Vec<Device>> {
        devices::of_users(&self.db, &self.keyspaces, &[user.to_owned()])
    }

    async fn remove_device(&self, user: &str, id: &str) -> Result<bool> {
        self.call(|r| Op::RemoveDevice(user.to_owned(), id.to_owned(), r))
            .await
    }

    async fn devices_of(&self, users: &[String]) -> Result<Vec<Device>> {
        devices::of_users(&self.db, &self.keyspaces, users)
    }

    async fn prune_device(&self, id: &str) -> Result<bool> {
        self.call(|r| Op::PruneDevice(id.to_owned(), r)).await
    }

    async fn enqueue_push(&self, tasks: &[PushTask]) -> Result<u64> {
        if tasks.is_empty() {
            return Ok(0);
        }
        self.call(|r| Op::EnqueuePush(tasks.to_vec(), r)).await
    }

    async fn next_push(&self, max: usize, now_ms: i64, _lease: Duration) -> Result<Vec<PushTask>> {
        // Leases live until the task is finished or the process restarts: one process sends.
        self.outbox.next(&self.keyspaces[PUSH_DUE], max, now_ms)
    }

    async fn finish_push(&self, outcomes: &[PushOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let at = herald_core::time::now_ms();
        self.call(|r| Op::FinishPush(outcomes.to_vec(), at, r))
            .await
    }

    async fn push_depths(&self) -> Result<[u64; 3]> {
        Ok(self.outbox.depths())
    }

    async fn delivery_report(&self, notification: &str) -> Result<DeliveryReport> {
        push_reports::read(&self.keyspaces[PUSH_REPORTS], notification)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        dead_letters::newest(&self.keyspaces[DEAD_LETTERS], limit)
    }

    async fn put_category(&self, category: &Category) -> Result<()> {
        self.call(|r| Op::PutCategory(Box::new(category.clone()), r))
            .await
    }

    async fn delete_category(&self, name: &str) -> Result<bool> {
        self.call(|r| Op::DeleteCategory(name.to_owned(), r)).await
    }

    async fn categories(&self) -> Result<Vec<Category>> {
        categories::all(&self.keyspaces[CATEGORIES])
    }

    async fn put_preferences(&self, user: &str, preferences: &Preferences) -> Result<()> {
        self.call(|r| Op::PutPreferences(user.to_owned(), Box::new(preferences.clone()), r))
            .await
    }

    async fn preferences_of(&self, users: &[String]) -> Result<Vec<Option<Preferences>>> {
        preferences::of_users(&self.db, &self.keyspaces, users)
    }

    async fn take_caps(&self, requests: &[CapRequest], now_ms: i64) -> Result<Vec<bool>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // Counted on the writer thread, so racing requests see each other's counts.
        self.call(|r| Op::TakeCaps(requests.to_vec(), now_ms, r))
            .await
    }

    async fn claim_collapse(
        &self,
        claims: &[CollapseClaim],
        now_ms: i64,
    ) -> Result<Vec<Option<String>>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Op::ClaimCollapse(claims.to_vec(), now_ms, r))
            .await
    }

    async fn archive_if_unread(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.call(|r| Op::ArchiveIfUnread(user.to_owned(), id.to_owned(), r))
            .await
    }

    async fn record_decisions(
        &self,
        counts: &[DecisionCount],
        records: &[DecisionRecord],
    ) -> Result<()> {
        if counts.is_empty() && records.is_empty() {
            return Ok(());
        }
        self.call(|r| Op::RecordDecisions(counts.to_vec(), records.to_vec(), r))
            .await
    }

    async fn decisions(&self, user: &str, limit: usize) -> Result<Vec<DecisionRecord>> {
        decisions::newest(&self.keyspaces[DECISIONS], user, limit)
    }

    async fn create_campaign(&self, campaign: &Campaign) -> Result<()> {
        self.call(|r| Op::CreateCampaign(Box::new(campaign.clone()), r))
            .await
    }

    async fn campaign(&self, id: &str) -> Result<Option<Campaign>> {
        campaigns::get(&self.keyspaces[CAMPAIGNS], id)
    }

    async fn campaigns(&self, before: Option<&str>, limit: usize) -> Result<Vec<Campaign>> {
        campaigns::newest(&self.keyspaces[CAMPAIGNS], before, limit)
    }

    async fn active_campaigns(&self) -> Result<Vec<Campaign>> {
        campaigns::active(&self.db, &self.keyspaces)
    }

    async fn update_campaign(&self, campaign: &Campaign) -> Result<bool> {
        // Compared and written on the writer thread, so racing updates see each other.
        self.call(|r| Op::UpdateCampaign(Box::new(campaign.clone()), r))
            .await
    }

    async fn add_recipients(&self, campaign: &str, users: &[String]) -> Result<RecipientsAdded> {
        if users.is_empty() {
            return Ok(RecipientsAdded::default());
        }
        self.call(|r| Op::AddRecipients(campaign.to_owned(), users.to_vec(), r))
            .await
    }

    async fn recipient_count(&self, campaign: &str) -> Result<u64> {
        recipients::count(&self.keyspaces[RECIPIENT_COUNTS], campaign)
    }

    async fn recipients(&self, campaign: &str, from: u64, limit: usize) -> Result<Vec<String>> {
        recipients::page(&self.keyspaces[RECIPIENT_POSITIONS], campaign, from, limit)
    }

    async fn drop_recipients(&self, campaign: &str, keep_members: bool) -> Result<()> {
        let (db, keyspaces, campaign) =
            (self.db.clone(), self.keyspaces.clone(), campaign.to_owned());
        tokio::task::spawn_blocking(move || {
            recipients::drop_list(&db, &keyspaces, &campaign, keep_members)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("recipient drop task: {e}")))?
    }

    async fn stage_push(&self, campaign: &str, stage: &PushStage) -> Result<bool> {
        self.call(|r| Op::StagePush(campaign.to_owned(), Box::new(stage.clone()), r))
            .await
    }

    async fn push_stage(
        &self,
        campaign: &str,
        from: u64,
    ) -> Result<Option<(PushStage, StagedProgress)>> {
        stages::get(&self.keyspaces[PUSH_STAGES], campaign, from)
    }

    async fn drop_push_stages(&self, campaign: &str) -> Result<()> {
        let (db, keyspaces, campaign) =
            (self.db.clone(), self.keyspaces.clone(), campaign.to_owned());
        tokio::task::spawn_blocking(move || {
            stages::drop_all(&db, &keyspaces[PUSH_STAGES], &campaign)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("stage drop task: {e}")))?
    }

    async fn finish_staged(
        &self,
        campaign: &str,
        from: u64,
        notification: &str,
        outcomes: &[StagedOutcome],
    ) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (campaign, notification) = (campaign.to_owned(), notification.to_owned());
        self.call(|r| Op::FinishStaged(campaign, from, notification, outcomes.to_vec(), r))
            .await
    }

    async fn device_owners(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        devices::owners(&self.keyspaces[USER_DEVICES], after, limit)
    }

    fn live_events(&self) -> Option<mpsc::Receiver<Live>> {
        let rx = self.live_rx.lock().expect("live lock").take();
        if rx.is_some() {
            self.live_enabled.store(true, Ordering::Release);
        }
        rx
    }

    async fn channel_put_chunk(
        &self,
        _channel: &str,
        upload: &str,
        index: u32,
        data: Bytes,
    ) -> Result<()> {
        self.channels.put_chunk(upload, index, data).await
    }

    async fn channel_discard(&self, _channel: &str, upload: &str, _chunks: u32) -> Result<()> {
        self.channels.discard(upload).await
    }

    async fn channel_publish(
        &self,
        channel: &str,
        messages: Vec<NewChannelMessage>,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        self.channels.publish(channel, messages, now_ms)
    }

    async fn channel_read(
        &self,
        channel: &str,
        after: u64,
        max: usize,
        now_ms: i64,
    ) -> Result<ChannelRead> {
        self.channels.read(channel, after, max, now_ms)
    }

    async fn channel_chunk(
        &self,
        _channel: &str,
        upload: &str,
        index: u32,
    ) -> Result<Option<Bytes>> {
        self.channels.chunk(upload, index).await
    }

    fn channel_events(&self) -> Option<mpsc::Receiver<ChannelNotice>> {
        self.channels.events()
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<PurgeReport> {
        let mut report = self.call(|r| Op::Purge(now_ms, r)).await?;
        report.channel_messages = self.channels.purge(now_ms)?;
        Ok(report)
    }

    async fn health(&self) -> Result<()> {
        if self.ops.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.call(Op::Sync).await?;
        self.db.persist(PersistMode::SyncData).map_err(backend)
    }
}

impl EmbeddedStore {
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }
}
