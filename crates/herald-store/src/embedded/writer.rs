//! The single writer thread of the embedded engine.
//!
//! Every write goes through here. Operations that arrive together are applied to one overlay and
//! committed as one atomic fjall batch, with one `fdatasync` when the batch holds an accept (group
//! commit). Sequence numbers are assigned in commit order, and live events leave in that order,
//! so readers can resume by sequence number without gaps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use fjall::{Database, Keyspace, PersistMode};
use herald_core::event::Feed;
use herald_core::{Campaign, Category, Device, EventBody, FeedEvent, Notification, Preferences};
use tokio::sync::{mpsc, oneshot};

use super::StoreOptions;
use super::dead_letters::DeadLetters;
use super::keys::{self, seq_suffix, user_key, user_prefix, user_seq};
use super::lanes::Lanes;
use super::outbox::{self, Outbox, OutboxChanges};
use super::overlay::{Overlay, backend};
use super::push_reports::{self, ReportDeltas};
use super::records::*;
use super::{
    campaigns, caps, categories, collapse, decisions, devices, expiry, preferences, recipients,
    stages,
};
use crate::feed_state::{GlobalState, Memberships, UserMeta};
use crate::{
    Accept, Accepted, CapRequest, Change, ChangeOutcome, CollapseClaim, DecisionCount,
    DecisionRecord, Delivered, Delivery, EntryFlags, Exclusion, Job, JobId, Live, PurgeReport,
    PushOutcome, PushStage, PushTask, RecipientsAdded, Result, StagedOutcome, StoreError,
};

pub type Reply<T> = oneshot::Sender<Result<T>>;

/// Most operations folded into one batch; bounds a batch's memory and latency.
const MAX_OPS_PER_BATCH: usize = 2048;
/// Most users whose metadata the writer keeps in memory; past it the cache starts over.
const META_CACHE_MAX: usize = 200_000;
/// Most entries one purge pass removes, so a purge never stalls other writes for long.
const MAX_PURGE_PER_PASS: usize = 10_000;

pub enum Op {
    Accept(Box<Accept>, Reply<Accepted>),
    Deliver(Vec<Delivery>, Reply<Vec<Delivered>>),
    /// A notification for everyone, or (with a campaign id) for that campaign's list only.
    DeliverGlobal(Arc<Notification>, EntryFlags, Option<String>, Reply<u64>),
    MarkRead(String, String, Reply<ChangeOutcome>),
    MarkAllRead(String, Reply<Change>),
    Archive(String, String, Reply<ChangeOutcome>),
    Subscribe(String, Vec<String>, Reply<u64>),
    Unsubscribe(String, Vec<String>, Reply<u64>),
    Checkpoint(JobId, String, Reply<()>),
    FinishJobs(Vec<JobId>, Reply<()>),
    RegisterDevice(Box<Device>, Reply<()>),
    RemoveDevice(String, String, Reply<bool>),
    PruneDevice(String, Reply<bool>),
    EnqueuePush(Vec<PushTask>, Reply<u64>),
    /// Outcomes, and when they were reported (the time of any dead letter).
    FinishPush(Vec<PushOutcome>, i64, Reply<()>),
    Purge(i64, Reply<PurgeReport>),
    PutCategory(Box<Category>, Reply<()>),
    DeleteCategory(String, Reply<bool>),
    PutPreferences(String, Box<Preferences>, Reply<()>),
    /// Requests, and the time they are counted at.
    TakeCaps(Vec<CapRequest>, i64, Reply<Vec<bool>>),
    /// Claims, and the time they are made at.
    ClaimCollapse(Vec<CollapseClaim>, i64, Reply<Vec<Option<String>>>),
    ArchiveIfUnread(String, String, Reply<ChangeOutcome>),
    RecordDecisions(Vec<DecisionCount>, Vec<DecisionRecord>, Reply<()>),
    CreateCampaign(Box<Campaign>, Reply<()>),
    /// A compare-and-set on the campaign's version.
    UpdateCampaign(Box<Campaign>, Reply<bool>),
    /// A campaign, and users to append to its list.
    AddRecipients(String, Vec<String>, Reply<RecipientsAdded>),
    ExcludeRecipients(String, Vec<Exclusion>, Reply<()>),
    StagePush(String, Box<PushStage>, Reply<bool>),
    /// A campaign, a stage's first position, the notification, and how its sends ended.
    FinishStaged(String, u64, String, Vec<StagedOutcome>, Reply<()>),
    Sync(Reply<()>),
}

/// Sends an op's result once the batch it belongs to is committed (or failed).
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn completion<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> Completion {
    Box::new(move |failed| {
        let _ = reply.send(match failed {
            Some(e) => Err(e.clone()),
            None => result,
        });
    })
}

pub struct Writer {
    pub db: Database,
    pub keyspaces: Vec<Keyspace>,
    pub options: StoreOptions,
    /// The writer's own copy of the global feed state; readers see `shared_global`.
    pub global: GlobalState,
    pub shared_global: Arc<RwLock<GlobalState>>,
    pub lanes: Arc<Lanes>,
    pub live: mpsc::Sender<Live>,
    pub live_enabled: Arc<AtomicBool>,
    pub last_job_seq: u64,
    /// Committed user metadata. The writer is its only writer, so the cache is always current.
    pub meta_cache: HashMap<String, UserMeta>,
    pub outbox: Arc<Outbox>,
    pub dead_letters: DeadLetters,
}

/// What one batch builds up before it commits.
struct Batch<'a> {
    overlay: Overlay<'a>,
    /// The writer's committed-metadata cache, lent to the batch.
    cache: HashMap<String, UserMeta>,
    metas: HashMap<String, UserMeta>,
    global: Option<GlobalState>,
    events: Vec<FeedEvent>,
    jobs: Vec<Job>,
    outbox: OutboxChanges,
    /// The batch's copy of the dead letter state, taken on first use.
    dead_letters: Option<DeadLetters>,
    durable: bool,
}

impl<'a> Batch<'a> {
    fn meta(&mut self, user: &str) -> Result<&mut UserMeta> {
        if !self.metas.contains_key(user) {
            let meta = match self.cache.get(user) {
                Some(cached) => cached.clone(),
                None => match self.overlay.get(USERS, user.as_bytes())? {
                    Some(raw) => from_json(&raw)?,
                    None => UserMeta::default(),
                },
            };
            self.metas.insert(user.to_owned(), meta);
        }
        Ok(self.metas.get_mut(user).expect("just inserted"))
    }
}

impl Writer {
    pub fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        while let Some(first) = ops.blocking_recv() {
            let mut batch_ops = vec![first];
            while batch_ops.len() < MAX_OPS_PER_BATCH {
                match ops.try_recv() {
                    Ok(op) => batch_ops.push(op),
                    Err(_) => break,
                }
            }
            self.process(batch_ops);
        }
        let _ = self.db.persist(PersistMode::SyncData);
    }

    fn process(&mut self, ops: Vec<Op>) {
        let keyspaces = self.keyspaces.clone();
        let mut batch = Batch {
            overlay: Overlay::new(&keyspaces),
            cache: std::mem::take(&mut self.meta_cache),
            metas: HashMap::new(),
            global: None,
            events: Vec::new(),
            jobs: Vec::new(),
            outbox: OutboxChanges::default(),
            dead_letters: None,
            durable: false,
        };
        let mut done: Vec<Completion> = Vec::with_capacity(ops.len());
        let mut failure: Option<StoreError> = None;
        for op in ops {
            if failure.is_some() {
                done.push(self.fail_op(op));
                continue;
            }
            match self.apply(&mut batch, op) {
                Ok(c) => done.push(c),
                Err((e, c)) => {
                    failure = Some(e);
                    done.push(c);
                }
            }
        }
        let Batch {
            overlay,
            mut cache,
            metas,
            global,
            events,
            jobs,
            outbox,
            dead_letters,
            durable,
        } = batch;
        if failure.is_none() {
            failure = self.commit(overlay, &metas, durable).err();
        }
        if failure.is_none() {
            if cache.len() + metas.len() > META_CACHE_MAX {
                cache.clear();
            }
            cache.extend(metas);
            if let Some(global) = global {
                *self.shared_global.write().expect("global lock") = global.clone();
                self.global = global;
            }
            self.lanes.push(jobs);
            self.outbox.committed(outbox);
            if let Some(dead_letters) = dead_letters {
                self.dead_letters = dead_letters;
            }
            if self.live_enabled.load(Ordering::Acquire) {
                for event in events {
                    if self.live.blocking_send(Live::Event(event)).is_err() {
                        break;
                    }
                }
            }
        } else if let Some(e) = &failure {
            tracing::error!(error = %e, "storage batch failed; its operations were not applied");
        }
        // On failure the cache is untouched: the batch's changes lived in `metas` only.
        self.meta_cache = cache;
        for c in done {
            c(failure.as_ref());
        }
    }

    fn commit(
        &self,
        mut overlay: Overlay<'_>,
        metas: &HashMap<String, UserMeta>,
        durable: bool,
    ) -> Result<()> {
        for (user, meta) in metas {
            overlay.put(USERS, user.as_bytes().to_vec(), to_json(meta));
        }
        if overlay.is_empty() && !durable {
            return Ok(());
        }
        // Every batch reaches the OS before its callers hear back, so it survives the process
        // being killed; only accepts (and `close`) wait for the disk.
        let durability = if durable {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        overlay
            .into_batch(self.db.batch())
            .durability(Some(durability))
            .commit()
            .map_err(backend)
    }

    /// Applies one op. A storage failure aborts the whole batch: it is returned with the op's completion.
    fn apply(
        &mut self,
        b: &mut Batch<'_>,
        op: Op,
    ) -> std::result::Result<Completion, (StoreError, Completion)> {
        macro_rules! run {
            ($reply:expr, $result:expr) => {{
                match $result {
                    Err(StoreError::Backend(e)) => {
                        let e = StoreError::Backend(e);
                        Err((e.clone(), completion($reply, Err(e))))
                    }
                    other => Ok(completion($reply, other)),
                }
            }};
        }
        match op {
            Op::Accept(a, reply) => run!(reply, self.accept(b, *a)),
            Op::Deliver(d, reply) => run!(reply, self.deliver(b, d)),
            Op::DeliverGlobal(n, flags, campaign, reply) => {
                run!(reply, self.deliver_global(b, n, flags, campaign))
            }
            Op::MarkRead(user, id, reply) => run!(reply, self.mark_read(b, &user, &id)),
            Op::MarkAllRead(user, reply) => run!(reply, self.mark_all_read(b, &user)),
            Op::Archive(user, id, reply) => run!(reply, self.archive(b, &user, &id)),
            Op::Subscribe(topic, users, reply) => {
                run!(reply, self.subscribe(b, &topic, &users, true))
            }
            Op::Unsubscribe(topic, users, reply) => {
                run!(reply, self.subscribe(b, &topic, &users, false))
            }
            Op::Checkpoint(job, cursor, reply) => run!(reply, self.checkpoint(b, &job, cursor)),
            Op::FinishJobs(jobs, reply) => run!(reply, self.finish(b, &jobs)),
            Op::RegisterDevice(device, reply) => run!(
                reply,
                devices::register(&mut b.overlay, &device, self.options.devices_per_user)
            ),
            Op::RemoveDevice(user, id, reply) => {
                run!(reply, devices::remove(&mut b.overlay, &user, &id))
            }
            Op::PruneDevice(id, reply) => run!(reply, devices::prune(&mut b.overlay, &id)),
            Op::EnqueuePush(tasks, reply) => run!(reply, self.enqueue_push(b, &tasks)),
            Op::FinishPush(outcomes, at, reply) => {
                run!(reply, self.finish_push(b, &outcomes, at))
            }
            Op::Purge(now, reply) => run!(reply, self.purge(b, now)),
            Op::PutCategory(category, reply) => {
                categories::put(&mut b.overlay, &category);
                Ok(completion(reply, Ok(())))
            }
            Op::DeleteCategory(name, reply) => {
                run!(reply, categories::delete(&mut b.overlay, &name))
            }
            Op::PutPreferences(user, prefs, reply) => {
                preferences::put(&mut b.overlay, &user, &prefs);
                Ok(completion(reply, Ok(())))
            }
            Op::TakeCaps(requests, now, reply) => {
                run!(reply, caps::take(&mut b.overlay, &requests, now))
            }
            Op::ClaimCollapse(claims, now, reply) => {
                run!(reply, collapse::claim(&mut b.overlay, &claims, now))
            }
            Op::ArchiveIfUnread(user, id, reply) => {
                run!(reply, self.archive_if_unread(b, &user, &id))
            }
            Op::RecordDecisions(counts, records, reply) => run!(
                reply,
                decisions::record(
                    &mut b.overlay,
                    &counts,
                    &records,
                    self.options.decisions_per_user
                )
            ),
            Op::CreateCampaign(campaign, reply) => {
                run!(reply, campaigns::create(&mut b.overlay, &campaign))
            }
            Op::UpdateCampaign(campaign, reply) => {
                run!(reply, campaigns::update(&mut b.overlay, *campaign))
            }
            Op::AddRecipients(campaign, users, reply) => {
                run!(reply, recipients::add(&mut b.overlay, &campaign, &users))
            }
            Op::ExcludeRecipients(campaign, exclusions, reply) => run!(
                reply,
                recipients::exclude(&mut b.overlay, &campaign, &exclusions)
            ),
            Op::StagePush(campaign, stage, reply) => {
                run!(reply, stages::put(&mut b.overlay, &campaign, &stage))
            }
            Op::FinishStaged(campaign, from, notification, outcomes, reply) => run!(
                reply,
                self.finish_staged(b, &campaign, from, &notification, &outcomes)
            ),
            Op::Sync(reply) => {
                b.durable = true;
                Ok(completion(reply, Ok(())))
            }
        }
    }

    fn fail_op(&self, op: Op) -> Completion {
        fn fail<T: Send + 'static>(reply: Reply<T>) -> Completion {
            completion(
                reply,
                Err(StoreError::Backend(
                    "an earlier operation in the same batch failed".into(),
                )),
            )
        }
        match op {
            Op::Accept(_, r) => fail(r),
            Op::Deliver(_, r) => fail(r),
            Op::DeliverGlobal(_, _, _, r) => fail(r),
            Op::MarkRead(_, _, r) | Op::Archive(_, _, r) | Op::ArchiveIfUnread(_, _, r) => fail(r),
            Op::MarkAllRead(_, r) => fail(r),
            Op::Subscribe(_, _, r) | Op::Unsubscribe(_, _, r) => fail(r),
            Op::Checkpoint(_, _, r)
            | Op::FinishJobs(_, r)
            | Op::RegisterDevice(_, r)
            | Op::FinishPush(_, _, r)
            | Op::PutCategory(_, r)
            | Op::PutPreferences(_, _, r)
            | Op::RecordDecisions(_, _, r)
            | Op::CreateCampaign(_, r)
            | Op::Sync(r) => fail(r),
            Op::RemoveDevice(_, _, r) | Op::PruneDevice(_, r) => fail(r),
            Op::EnqueuePush(_, r) => fail(r),
            Op::Purge(_, r) => fail(r),
            Op::DeleteCategory(_, r) => fail(r),
            Op::TakeCaps(_, _, r) => fail(r),
            Op::ClaimCollapse(_, _, r) => fail(r),
            Op::UpdateCampaign(_, r) => fail(r),
            Op::AddRecipients(_, _, r) => fail(r),
            Op::ExcludeRecipients(_, _, r) => fail(r),
            Op::StagePush(_, _, r) => fail(r),
            Op::FinishStaged(_, _, _, _, r) => fail(r),
        }
    }

    fn accept(&mut self, b: &mut Batch<'_>, accept: Accept) -> Result<Accepted> {
        let n = accept.notification;
        if let Some(idem) = &accept.idempotency {
            if let Some(raw) = b.overlay.get(IDEMPOTENCY, idem.key.as_bytes())? {
                let rec: IdempotencyRecord = from_json(&raw)?;
                if n.created_at - rec.at <= self.options.idempotency_ttl_ms {
                    return if rec.fingerprint == idem.fingerprint {
                        Ok(Accepted::Duplicate { id: rec.id })
                    } else {
                        Err(StoreError::IdempotencyConflict { id: rec.id })
                    };
                }
                b.overlay
                    .delete(IDEMPOTENCY_BY_TIME, idempotency_time_key(rec.at, &idem.key));
            }
            let rec = IdempotencyRecord {
                fingerprint: idem.fingerprint.clone(),
                id: n.id.clone(),
                at: n.created_at,
            };
            b.overlay
                .put(IDEMPOTENCY, idem.key.as_bytes().to_vec(), to_json(&rec));
            b.overlay.put(
                IDEMPOTENCY_BY_TIME,
                idempotency_time_key(n.created_at, &idem.key),
                Vec::new(),
            );
        }
        b.overlay
            .put(NOTIFICATIONS, n.id.as_bytes().to_vec(), to_json(&n));
        self.last_job_seq += 1;
        let lane = n.priority.lane() as u8;
        let record = JobRecord {
            notification: n.id.clone(),
            cursor: None,
        };
        b.overlay.put(
            QUEUE,
            keys::job(lane, self.last_job_seq).to_vec(),
            to_json(&record),
        );
        let n = Arc::new(n);
        b.jobs.push(Job {
            id: job_id(lane, self.last_job_seq),
            lane: n.priority,
            notification: n.clone(),
            cursor: None,
        });
        b.durable = true;
        Ok(Accepted::Created(n))
    }

    fn global_mut<'b>(&self, b: &'b mut Batch<'_>) -> &'b mut GlobalState {
        b.global.get_or_insert_with(|| self.global.clone())
    }

    /// Own unread plus the global entries this user sees unread.
    fn unread_total(&self, b: &Batch<'_>, user: &str, meta: &UserMeta) -> Result<u64> {
        let global = b.global.as_ref().unwrap_or(&self.global);
        let memberships = self.memberships(b, user, &global.campaigns_after(meta.global_marker))?;
        Ok(meta.unread + global.unread_for(meta, &memberships))
    }

    /// The unread count when no campaign's shared entry above the user's marker makes it
    /// depend on lists; else `None` (a fan-out does not look up every user's lists: a live
    /// connection asks the store for the count).
    fn unread_without_lists(&self, b: &Batch<'_>, meta: &UserMeta) -> Option<u64> {
        let global = b.global.as_ref().unwrap_or(&self.global);
        if global
            .restricted
            .range(meta.global_marker + 1..)
            .next()
            .is_some()
        {
            return None;
        }
        Some(meta.unread + global.unread_for(meta, &Memberships::default()))
    }

    /// The user's memberships in these campaigns, as this batch sees them.
    fn memberships(
        &self,
        b: &Batch<'_>,
        user: &str,
        campaigns: &[Arc<str>],
    ) -> Result<Memberships> {
        if campaigns.is_empty() {
            return Ok(Memberships::default());
        }
        recipients::memberships(|key| b.overlay.get(RECIPIENTS, key), user, campaigns)
    }

    fn deliver(&mut self, b: &mut Batch<'_>, deliveries: Vec<Delivery>) -> Result<Vec<Delivered>> {
        let mut delivered = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let index_key = user_key(&d.user, d.notification.id.as_bytes());
            if b.overlay.get(INBOX_IDS, &index_key)?.is_some() {
                continue; // already delivered: deliveries are idempotent
            }
            let mut meta = b.meta(&d.user)?.clone();
            meta.seq += 1;
            let seq = meta.seq;
            let entry = Entry {
                flags: d.flags,
                read: false,
                id: d.notification.id.clone(),
            };
            b.overlay.put(INBOX, user_seq(&d.user, seq), entry.encode());
            b.overlay
                .put(INBOX_IDS, index_key, seq.to_be_bytes().to_vec());
            meta.len += 1;
            if d.flags.inbox {
                meta.unread += 1;
            }
            self.trim_inbox(b, &d.user, &mut meta)?;
            let unread = d
                .flags
                .live
                .then(|| self.unread_without_lists(b, &meta))
                .flatten();
            *b.meta(&d.user)? = meta;
            if d.flags.live {
                b.events.push(FeedEvent {
                    user: Some(Arc::from(d.user.as_str())),
                    feed: Feed::User,
                    seq,
                    unread,
                    body: EventBody::Notification {
                        notification: d.notification.clone(),
                        read: false,
                    },
                    audience: None,
                });
            }
            delivered.push(Delivered {
                user: d.user,
                seq,
                flags: d.flags,
            });
        }
        Ok(delivered)
    }

    /// Drops the oldest entries past the inbox limit; replay can no longer reach behind them.
    fn trim_inbox(&self, b: &mut Batch<'_>, user: &str, meta: &mut UserMeta) -> Result<()> {
        let excess = meta.len.saturating_sub(self.options.inbox_max as u64) as usize;
        if excess == 0 {
            return Ok(());
        }
        for (key, value) in b.overlay.scan_prefix(INBOX, &user_prefix(user), excess)? {
            let seq = seq_suffix(&key);
            let entry = Entry::decode(&value)?;
            if entry.flags.inbox && !meta.is_read(seq, entry.read) {
                meta.unread -= 1;
            }
            b.overlay.delete(INBOX, key);
            b.overlay
                .delete(INBOX_IDS, user_key(user, entry.id.as_bytes()));
            meta.len -= 1;
            meta.floor = meta.floor.max(seq);
        }
        Ok(())
    }

    fn deliver_global(
        &mut self,
        b: &mut Batch<'_>,
        n: Arc<Notification>,
        flags: EntryFlags,
        campaign: Option<String>,
    ) -> Result<u64> {
        if let Some(raw) = b.overlay.get(GLOBAL_IDS, n.id.as_bytes())? {
            return Ok(GlobalId::decode(&raw)?.gseq);
        }
        let global_max = self.options.global_max;
        let global = self.global_mut(b);
        let gseq = global.head + 1;
        let dropped = global.push(
            gseq,
            flags.inbox,
            campaign.as_deref().map(Arc::from),
            global_max,
        );
        for old in dropped {
            let key = old.to_be_bytes();
            if let Some(raw) = b.overlay.get(GLOBAL, &key)? {
                b.overlay
                    .delete(GLOBAL_IDS, Entry::decode(&raw)?.id.into_bytes());
            }
            b.overlay.delete(GLOBAL, key.to_vec());
        }
        let entry = Entry {
            flags,
            read: false,
            id: n.id.clone(),
        };
        b.overlay
            .put(GLOBAL, gseq.to_be_bytes().to_vec(), entry.encode());
        let audience = campaign.as_deref().map(Arc::from);
        b.overlay.put(
            GLOBAL_IDS,
            n.id.as_bytes().to_vec(),
            GlobalId { gseq, campaign }.encode(),
        );
        if flags.live {
            b.events.push(FeedEvent {
                user: None,
                feed: Feed::Global,
                seq: gseq,
                unread: None,
                body: EventBody::Notification {
                    notification: n,
                    read: false,
                },
                audience,
            });
        }
        Ok(gseq)
    }

    /// Where a notification sits in a user's feed: their own entry, or a retained global one.
    fn locate(&self, b: &mut Batch<'_>, user: &str, id: &str) -> Result<Option<Located>> {
        if let Some(raw) = b.overlay.get(INBOX_IDS, &user_key(user, id.as_bytes()))? {
            let seq = u64::from_be_bytes(raw.as_slice().try_into().map_err(backend)?);
            let key = user_seq(user, seq);
            if let Some(entry) = b.overlay.get(INBOX, &key)? {
                let entry = Entry::decode(&entry)?;
                if entry.flags.inbox {
                    return Ok(Some(Located::Own { seq, entry }));
                }
            }
            return Ok(None);
        }
        if let Some(raw) = b.overlay.get(GLOBAL_IDS, id.as_bytes())? {
            let gseq = GlobalId::decode(&raw)?.gseq;
            let global = b.global.as_ref().unwrap_or(&self.global);
            let listed = global.entries.iter().any(|(g, inbox)| *g == gseq && *inbox);
            let shown = match global.restricted.get(&gseq) {
                None => true,
                Some(campaign) => self
                    .memberships(b, user, std::slice::from_ref(campaign))?
                    .0
                    .get(campaign)
                    .is_some_and(|m| m.inbox),
            };
            if listed && shown && !b.meta(user)?.global_is_archived(gseq) {
                return Ok(Some(Located::Global(gseq)));
            }
        }
        Ok(None)
    }

    fn mark_read(&mut self, b: &mut Batch<'_>, user: &str, id: &str) -> Result<ChangeOutcome> {
        let Some(located) = self.locate(b, user, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        let mut meta = b.meta(user)?.clone();
        match located {
            Located::Own { seq, mut entry } => {
                if meta.is_read(seq, entry.read) {
                    return Ok(ChangeOutcome::Unchanged {
                        unread: self.unread_total(b, user, &meta)?,
                    });
                }
                entry.read = true;
                b.overlay.put(INBOX, user_seq(user, seq), entry.encode());
                meta.unread -= 1;
            }
            Located::Global(gseq) => {
                if meta.global_is_read(gseq) {
                    return Ok(ChangeOutcome::Unchanged {
                        unread: self.unread_total(b, user, &meta)?,
                    });
                }
                meta.global_read.push(gseq);
            }
        }
        self.record_change(b, user, meta, ChangeRecord::Read { id: id.to_owned() })
            .map(ChangeOutcome::Changed)
    }

    fn mark_all_read(&mut self, b: &mut Batch<'_>, user: &str) -> Result<Change> {
        let mut meta = b.meta(user)?.clone();
        meta.read_marker = meta.seq;
        meta.unread = 0;
        meta.global_marker = b.global.as_ref().unwrap_or(&self.global).head;
        meta.global_read.clear();
        self.record_change(b, user, meta, ChangeRecord::ReadAll)
    }

    fn archive(&mut self, b: &mut Batch<'_>, user: &str, id: &str) -> Result<ChangeOutcome> {
        let Some(located) = self.locate(b, user, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        self.archive_at(b, user, id, located)
    }

    /// Archives like [`Self::archive`], unless the user has read the entry (a collapsed
    /// notification replaces only what the user has not seen).
    fn archive_if_unread(
        &mut self,
        b: &mut Batch<'_>,
        user: &str,
        id: &str,
    ) -> Result<ChangeOutcome> {
        let Some(located) = self.locate(b, user, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        let meta = b.meta(user)?;
        let read = match &located {
            Located::Own { seq, entry } => meta.is_read(*seq, entry.read),
            Located::Global(gseq) => meta.global_is_read(*gseq),
        };
        if read {
            let meta = meta.clone();
            return Ok(ChangeOutcome::Unchanged {
                unread: self.unread_total(b, user, &meta)?,
            });
        }
        self.archive_at(b, user, id, located)
    }

    fn archive_at(
        &mut self,
        b: &mut Batch<'_>,
        user: &str,
        id: &str,
        located: Located,
    ) -> Result<ChangeOutcome> {
        let mut meta = b.meta(user)?.clone();
        match located {
            Located::Own { seq, entry } => {
                if !meta.is_read(seq, entry.read) {
                    meta.unread -= 1;
                }
                b.overlay.delete(INBOX, user_seq(user, seq));
                b.overlay.delete(INBOX_IDS, user_key(user, id.as_bytes()));
                meta.len -= 1;
            }
            Located::Global(gseq) => {
                meta.global_read.retain(|g| *g != gseq);
                meta.global_archived.push(gseq);
            }
        }
        self.record_change(b, user, meta, ChangeRecord::Archived { id: id.to_owned() })
            .map(ChangeOutcome::Changed)
    }

    /// Appends a user action to their change log (bounded), stores `meta`, and announces the change.
    fn record_change(
        &self,
        b: &mut Batch<'_>,
        user: &str,
        mut meta: UserMeta,
        change: ChangeRecord,
    ) -> Result<Change> {
        meta.seq += 1;
        let seq = meta.seq;
        b.overlay
            .put(CHANGES, user_seq(user, seq), to_json(&change));
        meta.changes += 1;
        let excess = meta.changes.saturating_sub(self.options.changes_max as u64) as usize;
        if excess > 0 {
            for (key, _) in b.overlay.scan_prefix(CHANGES, &user_prefix(user), excess)? {
                meta.floor = meta.floor.max(seq_suffix(&key));
                b.overlay.delete(CHANGES, key);
                meta.changes -= 1;
            }
        }
        meta.prune_global(b.global.as_ref().unwrap_or(&self.global).floor);
        let unread = self.unread_total(b, user, &meta)?;
        *b.meta(user)? = meta;
        b.events.push(FeedEvent {
            user: Some(Arc::from(user)),
            feed: Feed::User,
            seq,
            unread: Some(unread),
            body: change.body(),
            audience: None,
        });
        Ok(Change { seq, unread })
    }

    fn subscribe(
        &self,
        b: &mut Batch<'_>,
        topic: &str,
        users: &[String],
        add: bool,
    ) -> Result<u64> {
        let mut changed = 0;
        for user in users {
            let key = user_key(topic, user.as_bytes());
            let present = b.overlay.get(TOPICS, &key)?.is_some();
            if add && !present {
                b.overlay.put(TOPICS, key, Vec::new());
                changed += 1;
            } else if !add && present {
                b.overlay.delete(TOPICS, key);
                changed += 1;
            }
        }
        Ok(changed)
    }

    fn checkpoint(&self, b: &mut Batch<'_>, job: &JobId, cursor: String) -> Result<()> {
        let key = parse_job_id(job)?;
        if let Some(raw) = b.overlay.get(QUEUE, &key)? {
            let mut record: JobRecord = from_json(&raw)?;
            record.cursor = Some(cursor);
            b.overlay.put(QUEUE, key.to_vec(), to_json(&record));
        }
        Ok(())
    }

    fn finish(&self, b: &mut Batch<'_>, jobs: &[JobId]) -> Result<()> {
        for job in jobs {
            b.overlay.delete(QUEUE, parse_job_id(job)?.to_vec());
        }
        Ok(())
    }

    fn enqueue_push(&self, b: &mut Batch<'_>, tasks: &[PushTask]) -> Result<u64> {
        let mut reports = ReportDeltas::default();
        let added = outbox::enqueue(&mut b.overlay, &mut b.outbox, &mut reports, tasks)?;
        reports.apply(&mut b.overlay)?;
        Ok(added)
    }

    fn finish_push(&self, b: &mut Batch<'_>, outcomes: &[PushOutcome], at: i64) -> Result<()> {
        let mut reports = ReportDeltas::default();
        let dead = b
            .dead_letters
            .get_or_insert_with(|| self.dead_letters.clone());
        outbox::finish(
            &mut b.overlay,
            &mut b.outbox,
            &mut reports,
            dead,
            outcomes,
            at,
        )?;
        dead.trim(&mut b.overlay, self.options.dead_letters_max)?;
        reports.apply(&mut b.overlay)
    }

    fn finish_staged(
        &self,
        b: &mut Batch<'_>,
        campaign: &str,
        from: u64,
        notification: &str,
        outcomes: &[StagedOutcome],
    ) -> Result<()> {
        let mut reports = ReportDeltas::default();
        let dead = b
            .dead_letters
            .get_or_insert_with(|| self.dead_letters.clone());
        stages::finish(
            &mut b.overlay,
            &mut reports,
            dead,
            campaign,
            from,
            notification,
            outcomes,
        )?;
        dead.trim(&mut b.overlay, self.options.dead_letters_max)?;
        reports.apply(&mut b.overlay)
    }

    fn purge(&self, b: &mut Batch<'_>, now: i64) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let cutoff = ulid::Ulid::from_parts(
            (now - self.options.notification_retention_ms).max(0) as u64,
            0,
        );
        let cutoff = cutoff.to_string();
        for guard in self.keyspaces[NOTIFICATIONS]
            .range(..cutoff.as_bytes())
            .take(MAX_PURGE_PER_PASS)
        {
            let key = guard.key().map_err(backend)?;
            b.overlay.delete(NOTIFICATIONS, key.to_vec());
            report.notifications += 1;
        }
        // The outbox forgets finished sends of purged notifications, and their reports.
        outbox::purge_done(
            &mut b.overlay,
            &self.keyspaces[PUSH_TASKS],
            &cutoff,
            MAX_PURGE_PER_PASS,
        )?;
        push_reports::purge(
            &mut b.overlay,
            &self.keyspaces[PUSH_REPORTS],
            &cutoff,
            MAX_PURGE_PER_PASS,
        )?;
        let expire_before = (now - self.options.idempotency_ttl_ms).max(0) as u64;
        for guard in self.keyspaces[IDEMPOTENCY_BY_TIME]
            .iter()
            .take(MAX_PURGE_PER_PASS)
        {
            let key = guard.key().map_err(backend)?;
            let at = u64::from_be_bytes(key[..8].try_into().map_err(backend)?);
            if at >= expire_before {
                break;
            }
            b.overlay.delete(IDEMPOTENCY, key[8..].to_vec());
            b.overlay.delete(IDEMPOTENCY_BY_TIME, key.to_vec());
            report.idempotency_keys += 1;
        }
        expiry::purge(
            &mut b.overlay,
            &self.keyspaces[EXPIRY],
            now,
            MAX_PURGE_PER_PASS,
            &mut report,
        )?;
        Ok(report)
    }
}

enum Located {
    Own { seq: u64, entry: Entry },
    Global(u64),
}

pub fn job_id(lane: u8, seq: u64) -> JobId {
    JobId(format!("{lane}:{seq}"))
}

fn parse_job_id(job: &JobId) -> Result<[u8; 9]> {
    let bad = || StoreError::Backend(format!("malformed job id {:?}", job.0));
    let (lane, seq) = job.0.split_once(':').ok_or_else(bad)?;
    Ok(keys::job(
        lane.parse().map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
    ))
}
