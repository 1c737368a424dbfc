//! The campaign worker: sends each campaign that is due, batch by batch, through the same
//! policy stage as every fan-out ([`super::policy::deliver_to`]).
//!
//! Exactly once per recipient and channel, across restarts and nodes: a node claims a campaign
//! with a lease before it sends, every batch is idempotent in the store (inbox entries per
//! user and notification, sends per notification and device, cap charges and collapse claims
//! per notification), and progress is checkpointed after each batch, in audience order, by
//! compare-and-set. A crash repeats at most the few batches in hand, which changes nothing the
//! second time; a pause or cancel (or another node taking over) makes the checkpoint fail and
//! the worker let go.
//!
//! A list campaign usually reaches inboxes and live streams through one shared entry
//! ([`super::shared_entry`]), judged before `send_at` and published at it; the walk is then for
//! push alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    Audience, Campaign, CampaignState, Channel, ChannelSet, Notification, Recipients,
};
use herald_store::{Accept, Accepted, EntryFlags, Idempotency, Store, StoreError};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::policy::{PolicyContext, deliver_to};
use super::push::Providers;
use super::shared_entry;
use super::staged_push;

/// Recipients handled per batch (and per checkpoint).
const BATCH: usize = 4096;
/// Batches delivered at once.
const PIPELINE: usize = 3;
/// Recipients in a campaign's first batch.
const FIRST_BATCH: usize = 256;
/// How long before `send_at` a scheduled campaign's notification is stored and its audience
/// judged for a shared entry.
const JUDGE_AHEAD: Duration = Duration::from_secs(60);
/// How long before `send_at` the push providers are warmed.
const STAGE_AHEAD: Duration = Duration::from_secs(5);

/// The notification with only the channels `keep` keeps: push alone once the global feed carries
/// its inbox and live part, everything but push once push goes out from stages.
fn keeping(n: &Notification, keep: impl Fn(Channel) -> bool) -> Arc<Notification> {
    Arc::new(Notification {
        channels: n
            .channels
            .iter()
            .filter(|ch| keep(*ch))
            .collect::<ChannelSet>(),
        ..n.clone()
    })
}

fn push_only(n: &Notification) -> Arc<Notification> {
    keeping(n, |ch| ch == Channel::Push)
}

/// What [`CampaignWorker::judge`] did.
#[derive(PartialEq)]
enum Judged {
    /// Nothing (left) to judge.
    None,
    /// A batch, checkpointed.
    Some,
    /// A batch, but another node or an action changed the campaign meanwhile.
    Lost,
}

/// What [`CampaignWorker::share`] did.
enum Share {
    /// The campaign does not get a shared entry.
    No,
    /// The shared entry is out; the walk delivers this (push only).
    Published(Arc<Notification>),
    /// Another node or an action changed the campaign meanwhile.
    Lost,
}

/// A batch being delivered: its task, its size and its last user (the walk cursor after it).
type InHand = (JoinHandle<Result<(), StoreError>>, usize, Option<String>);
/// How long one campaign is sent before the worker looks at the others again.
const SLICE: Duration = Duration::from_secs(1);
/// How often the worker looks for due campaigns when nothing woke it.
const TICK: Duration = Duration::from_millis(250);

pub struct CampaignWorker {
    pub store: Arc<dyn Store>,
    pub providers: Arc<Providers>,
    pub policy: Arc<PolicyContext>,
    /// This node's name, as the owner of the campaigns it sends.
    pub node: String,
    pub wake: Arc<Notify>,
    /// How long this node's claim on a campaign holds without a checkpoint; then another node
    /// may take over.
    pub lease: Duration,
    /// Campaigns whose providers this node warmed already.
    pub warmed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl CampaignWorker {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let wait = match self.turn().await {
                Ok(wait) => wait,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "campaign work failed; retrying");
                    Some(TICK)
                }
            };
            if let Some(wait) = wait {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Looks after every active campaign once; returns how long to wait before the next turn
    /// (`None`: go on at once, there is sending to do).
    async fn turn(&self) -> Result<Option<Duration>, StoreError> {
        let mut wait = TICK;
        let mut busy = false;
        for campaign in self.store.active_campaigns().await? {
            let now = herald_core::time::now_ms();
            match campaign.state {
                CampaignState::Scheduled => match campaign.send_at {
                    Some(at) if at <= now => busy |= self.begin(campaign).await?,
                    Some(at) => {
                        let ahead = at - now;
                        wait = wait.min(Duration::from_millis(ahead.max(0) as u64));
                        if ahead <= JUDGE_AHEAD.as_millis() as i64 {
                            let warm = ahead <= STAGE_AHEAD.as_millis() as i64;
                            busy |= self.stage(campaign, warm).await?;
                        }
                    }
                    None => {}
                },
                CampaignState::Sending if self.may_send(&campaign, now) => {
                    busy |= self.send(campaign).await?;
                }
                _ => {}
            }
        }
        Ok((!busy).then_some(wait))
    }

    fn may_send(&self, c: &Campaign, now: i64) -> bool {
        c.owner.as_deref().is_none_or(|o| o == self.node) || c.lease_until < now
    }

    /// A scheduled campaign whose time has come starts sending (its start time is `send_at`,
    /// so TTLs count from the chosen second, however late a node noticed).
    async fn begin(&self, mut c: Campaign) -> Result<bool, StoreError> {
        c.state = CampaignState::Sending;
        c.started_at = c.send_at;
        self.store.update_campaign(&c).await
    }

    /// Before `send_at`: stores the campaign's notification (dated `send_at`), judges a batch
    /// of the audience for a shared entry, and (`warm`) warms the push providers, so neither
    /// the durable write, nor the preferences, nor connection setup is what the first send
    /// waits for. True while there is judging left to do.
    async fn stage(&self, mut c: Campaign, warm: bool) -> Result<bool, StoreError> {
        let pushes = c
            .message
            .channels
            .as_ref()
            .is_none_or(|channels| channels.contains(&Channel::Push));
        if warm && pushes && !c.dry_run && self.warmed.lock().expect("warmed").insert(c.id.clone())
        {
            // TLS handshakes and OAuth tokens now, not in front of the first sends.
            self.providers.warm();
        }
        let id = match c.notification.clone() {
            Some(id) => id,
            None => {
                let id = self.store_notification(&c).await?;
                c.notification = Some(id.clone());
                // Lost to a concurrent change, the stored notification is found again by its key.
                if !self.checkpoint(&mut c).await? {
                    return Ok(true);
                }
                id
            }
        };
        let Some(n) = self.store.notification(&id).await? else {
            return Ok(false);
        };
        let mut busy = false;
        if self.shares(&c, &n).await? {
            match self.judge(&mut c, &n).await? {
                Judged::None => {}
                Judged::Some => busy = true,
                // Whoever changed it goes on; this node looks again next turn.
                Judged::Lost => return Ok(true),
            }
        }
        if self.stages_push(&c, &n).await? {
            match self.stage_push_next(&mut c, &n).await? {
                Judged::None => {}
                Judged::Some => busy = true,
                Judged::Lost => return Ok(true),
            }
        }
        Ok(busy)
    }

    /// Whether the campaign's push is sent from stages ([`staged_push`]).
    async fn stages_push(&self, c: &Campaign, n: &Notification) -> Result<bool, StoreError> {
        let category = self.policy.categories.get(n.category.as_deref()).await?;
        Ok(staged_push::eligible(
            c,
            n,
            category.as_deref(),
            &self.policy,
        ))
    }

    /// Resolves the next stage of the campaign's push before `send_at`.
    async fn stage_push_next(
        &self,
        c: &mut Campaign,
        n: &Notification,
    ) -> Result<Judged, StoreError> {
        let size = staged_push::stage_size(c);
        let from = c.push_staged;
        let staged = staged_push::stage_at(
            &*self.store,
            &self.providers,
            &self.policy,
            c,
            n,
            from,
            size,
        )
        .await?;
        let Some((stage, _)) = staged else {
            return Ok(Judged::None);
        };
        c.push_staged = stage.to;
        Ok(if self.checkpoint(c).await? {
            Judged::Some
        } else {
            Judged::Lost
        })
    }

    /// Whether a campaign reaches inboxes through a shared entry: once published, whatever
    /// changes later; before, if it is eligible.
    async fn shares(&self, c: &Campaign, n: &Notification) -> Result<bool, StoreError> {
        if c.shared {
            return Ok(true);
        }
        let category = self.policy.categories.get(n.category.as_deref()).await?;
        Ok(shared_entry::eligible(
            c,
            n,
            category.as_deref(),
            &self.policy,
        ))
    }

    /// Judges the next batch of the audience of a campaign that [shares](Self::shares).
    async fn judge(&self, c: &mut Campaign, n: &Notification) -> Result<Judged, StoreError> {
        let judged = shared_entry::judge_next(&*self.store, &self.policy, c, n, c.shared).await?;
        if judged == 0 {
            return Ok(Judged::None);
        }
        c.staged += judged as u64;
        // Lost to a concurrent change: whoever changed it goes on from its own count.
        Ok(if self.checkpoint(c).await? {
            Judged::Some
        } else {
            Judged::Lost
        })
    }

    /// Sends batches of one campaign for up to [`SLICE`]. False if it could not claim it.
    ///
    /// Up to [`PIPELINE`] batches are delivered at once (reads and writes of one overlap the
    /// others'); progress is checkpointed in audience order, so a crash repeats at most the
    /// batches in hand, each idempotent.
    async fn send(&self, mut c: Campaign) -> Result<bool, StoreError> {
        let now = herald_core::time::now_ms();
        c.owner = Some(self.node.clone());
        c.lease_until = now + self.lease.as_millis() as i64;
        if c.notification.is_none() {
            c.notification = Some(self.store_notification(&c).await?);
        }
        if !self.checkpoint(&mut c).await? {
            return Ok(false);
        }
        let id = c.notification.clone().expect("set above");
        let Some(n) = self.store.notification(&id).await? else {
            tracing::warn!(campaign = %c.id, "the campaign's notification is gone; cancelling it");
            c.state = CampaignState::Cancelled;
            c.finished_at = Some(now);
            self.store.update_campaign(&c).await?;
            return Ok(false);
        };
        let message = self
            .stages_push(&c, &n)
            .await?
            .then(|| Arc::new(herald_push::PushMessage::from_notification(&n)));
        let n = match self.share(&mut c, &n).await? {
            Share::Published(push_only) => push_only,
            Share::Lost => return Ok(false),
            Share::No => self.for_delivery(&c, n).await?,
        };
        // Staged push goes out from its stages; the walk delivers the rest per user.
        let walk = match &message {
            Some(_) => keeping(&n, |ch| ch != Channel::Push),
            None => n.clone(),
        };
        if message.is_none() && walk.channels.is_empty() {
            // Everything went out with the shared entry: no per-user walk.
            c.done = self.store.recipient_count(&c.id).await?;
        }
        // A rate limit paces one batch at a time; otherwise batches overlap.
        let (batch, pipeline) = match c.rate_per_second {
            Some(rate) => (BATCH.min(rate as usize), 1),
            None => (BATCH, PIPELINE),
        };
        let slice_end = Instant::now() + SLICE;
        let mut read = (c.done, c.walk_cursor.clone());
        // The first batch of a campaign is small, so the first sends leave at once.
        let mut next_size = if c.done == 0 {
            FIRST_BATCH.min(batch)
        } else {
            batch
        };
        let mut in_hand: VecDeque<InHand> = VecDeque::new();
        let mut exhausted = false;
        loop {
            while !exhausted && in_hand.len() < pipeline && Instant::now() < slice_end {
                let started = Instant::now();
                let handle = match &message {
                    Some(message) => {
                        let size = if c.done == 0 && read.0 == 0 {
                            next_size
                        } else {
                            staged_push::stage_size(&c)
                        };
                        self.deliver_staged(&c, &n, &walk, message, &mut read, size)
                            .await?
                    }
                    None => {
                        let users = self.read_batch(&c, &mut read, next_size).await?;
                        if users.is_empty() {
                            None
                        } else {
                            let (len, last) = (users.len(), users.last().cloned());
                            Some((self.deliver(&walk, users), len, last))
                        }
                    }
                };
                next_size = batch;
                let Some((handle, len, last)) = handle else {
                    exhausted = true;
                    break;
                };
                in_hand.push_back((handle, len, last));
                if let Some(rate) = c.rate_per_second {
                    let spent = Duration::from_secs_f64(len as f64 / f64::from(rate));
                    tokio::time::sleep(spent.saturating_sub(started.elapsed())).await;
                }
            }
            let Some((delivery, len, last)) = in_hand.pop_front() else {
                break;
            };
            delivery
                .await
                .map_err(|e| StoreError::Backend(format!("campaign batch: {e}")))??;
            c.done += len as u64;
            if c.audience != Audience::List {
                c.walk_cursor = last;
            }
            c.lease_until = herald_core::time::now_ms() + self.lease.as_millis() as i64;
            if !self.checkpoint(&mut c).await? {
                // Paused, cancelled or taken over meanwhile: what was delivered stays (it is
                // idempotent), and whoever sends next starts from the last checkpoint.
                return Ok(false);
            }
            metrics::counter!("herald_campaign_recipients_total").increment(len as u64);
        }
        if exhausted {
            c.state = CampaignState::Completed;
            c.finished_at = Some(herald_core::time::now_ms());
            c.owner = None;
            self.checkpoint(&mut c).await?;
            tracing::info!(campaign = %c.id, recipients = c.done, "campaign completed");
        }
        Ok(true)
    }

    /// Publishes a list campaign's shared entry, judging whoever is not judged yet first (users
    /// appended later are judged at each slice). On success, the notification the per-user walk
    /// still delivers (push only).
    async fn share(&self, c: &mut Campaign, n: &Arc<Notification>) -> Result<Share, StoreError> {
        if !self.shares(c, n).await? {
            return Ok(Share::No);
        }
        loop {
            if c.owner.as_deref() == Some(self.node.as_str()) {
                c.lease_until = herald_core::time::now_ms() + self.lease.as_millis() as i64;
            }
            match self.judge(c, n).await? {
                Judged::Some => {}
                Judged::None => break,
                Judged::Lost => return Ok(Share::Lost),
            }
        }
        if !c.shared {
            // Idempotent: the global feed holds a notification once.
            self.store
                .deliver_shared(n.clone(), EntryFlags::of(n), &c.id)
                .await?;
            c.shared = true;
            if !self.checkpoint(c).await? {
                return Ok(Share::Lost);
            }
            // Counted once: only the node whose checkpoint recorded the publication counts it.
            shared_entry::count_delivered(&*self.store, c, n).await?;
            tracing::info!(campaign = %c.id, recipients = c.staged, "campaign's shared entry published");
        }
        Ok(Share::Published(push_only(n)))
    }

    /// Sends the stage at `read` (resolving it now if it was not staged) on its own task, with
    /// the walk's delivery of the other channels to the same users; `None` once nobody is left.
    async fn deliver_staged(
        &self,
        c: &Campaign,
        n: &Arc<Notification>,
        walk: &Arc<Notification>,
        message: &Arc<herald_push::PushMessage>,
        read: &mut (u64, Option<String>),
        size: usize,
    ) -> Result<Option<InHand>, StoreError> {
        let staged = staged_push::stage_at(
            &*self.store,
            &self.providers,
            &self.policy,
            c,
            n,
            read.0,
            size,
        )
        .await?;
        let Some(staged) = staged else {
            return Ok(None);
        };
        let len = (staged.0.to - staged.0.from) as usize;
        let users = if walk.channels.is_empty() {
            Vec::new()
        } else {
            self.store.recipients(&c.id, read.0, len).await?
        };
        read.0 += len as u64;
        let (store, providers, policy) = (
            self.store.clone(),
            self.providers.clone(),
            self.policy.clone(),
        );
        let (n, walk, message, campaign) = (n.clone(), walk.clone(), message.clone(), c.id.clone());
        let handle = tokio::spawn(async move {
            let sending = staged_push::send_stage(
                store.clone(),
                providers.clone(),
                campaign,
                n,
                message,
                staged,
            );
            let walking = deliver_to(&*store, &providers, &policy, &walk, &users);
            let (sent, walked) = tokio::join!(sending, walking);
            sent.and(walked)
        });
        Ok(Some((handle, len, None)))
    }

    /// The next users of the audience after `read` (position, walk cursor), which it moves on.
    async fn read_batch(
        &self,
        c: &Campaign,
        read: &mut (u64, Option<String>),
        batch: usize,
    ) -> Result<Vec<String>, StoreError> {
        let users = match &c.audience {
            Audience::List => self.store.recipients(&c.id, read.0, batch).await?,
            Audience::Topic(topic) => {
                self.store
                    .subscribers(topic, read.1.as_deref(), batch)
                    .await?
            }
            Audience::All => self.store.device_owners(read.1.as_deref(), batch).await?,
        };
        read.0 += users.len() as u64;
        if let Some(last) = users.last() {
            read.1 = Some(last.clone());
        }
        Ok(users)
    }

    /// The notification as the batches deliver it. For everyone, the global feed reaches every
    /// inbox and live stream once, and device owners then get the push only.
    async fn for_delivery(
        &self,
        c: &Campaign,
        n: Arc<Notification>,
    ) -> Result<Arc<Notification>, StoreError> {
        if c.audience != Audience::All {
            return Ok(n);
        }
        if c.done == 0 && c.walk_cursor.is_none() {
            let flags = EntryFlags::of(&n);
            if flags.inbox || flags.live {
                // Idempotent: the global feed holds a notification once.
                self.store.deliver_global(n.clone(), flags).await?;
            }
        }
        Ok(push_only(&n))
    }

    /// Delivers one batch on its own task, so batches overlap.
    fn deliver(
        &self,
        n: &Arc<Notification>,
        users: Vec<String>,
    ) -> JoinHandle<Result<(), StoreError>> {
        let (store, providers, policy) = (
            self.store.clone(),
            self.providers.clone(),
            self.policy.clone(),
        );
        let n = n.clone();
        tokio::spawn(async move { deliver_to(&*store, &providers, &policy, &n, &users).await })
    }

    /// Stores the notification every recipient gets, once per campaign however many nodes
    /// race (an idempotency key derived from the campaign).
    async fn store_notification(&self, c: &Campaign) -> Result<String, StoreError> {
        let request = c
            .message
            .as_publish(Recipients::Campaign(c.id.clone()), c.dry_run);
        let category = self
            .policy
            .categories
            .get(request.category.as_deref())
            .await?;
        let created_at = c
            .started_at
            .or(c.send_at)
            .unwrap_or_else(herald_core::time::now_ms);
        let mut notification = request.into_notification(
            ulid::Ulid::new().to_string(),
            created_at,
            category.as_deref(),
        );
        let key = format!("campaign:{}", c.id);
        notification.idempotency_key = Some(key.clone());
        let accepted = self
            .store
            .accept(Accept {
                notification,
                idempotency: Some(Idempotency {
                    key,
                    fingerprint: c.id.clone(),
                }),
            })
            .await?;
        Ok(match accepted {
            Accepted::Created(n) => n.id.clone(),
            Accepted::Duplicate { id } => id,
        })
    }

    /// Stores the campaign if nobody changed it since it was read; keeps `c` in step.
    async fn checkpoint(&self, c: &mut Campaign) -> Result<bool, StoreError> {
        let stored = self.store.update_campaign(c).await?;
        if stored {
            c.version += 1;
        }
        Ok(stored)
    }
}
