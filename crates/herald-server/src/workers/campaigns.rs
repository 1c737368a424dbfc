//! The campaign worker: sends each campaign that is due, batch by batch, through the same
//! policy stage as every fan-out ([`super::policy::deliver_to`]).
//!
//! Exactly once per recipient and channel, across restarts and nodes: a node claims a campaign
//! with a lease before it sends, every batch is idempotent in the store (inbox entries per
//! user and notification, sends per notification and device, cap charges and collapse claims
//! per notification), and progress is checkpointed after each batch by compare-and-set. A crash
//! repeats at most the batch in hand, which changes nothing the second time; a pause or cancel
//! (or another node taking over) makes the checkpoint fail and the worker let go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    Audience, Campaign, CampaignState, Channel, ChannelSet, Notification, Recipients,
};
use herald_store::{Accept, Accepted, EntryFlags, Idempotency, Store, StoreError};
use tokio::sync::{Notify, watch};

use super::policy::{PolicyContext, deliver_to};
use super::push::Providers;

/// Recipients handled per batch (and per checkpoint).
const BATCH: usize = 4096;
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
                        wait = wait.min(Duration::from_millis((at - now).max(0) as u64));
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

    /// Sends batches of one campaign for up to [`SLICE`]. False if it could not claim it.
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
        let slice_end = Instant::now() + SLICE;
        loop {
            let started = Instant::now();
            let batch = c.rate_per_second.map_or(BATCH, |r| BATCH.min(r as usize));
            let handled = self.next_batch(&mut c, &n, batch).await?;
            if handled == 0 {
                c.state = CampaignState::Completed;
                c.finished_at = Some(herald_core::time::now_ms());
                c.owner = None;
                self.checkpoint(&mut c).await?;
                tracing::info!(campaign = %c.id, recipients = c.done, "campaign completed");
                return Ok(true);
            }
            c.lease_until = herald_core::time::now_ms() + self.lease.as_millis() as i64;
            if !self.checkpoint(&mut c).await? {
                // Paused, cancelled or taken over meanwhile: the batch stays done (it is
                // idempotent), and whoever sends next starts from the last checkpoint.
                return Ok(false);
            }
            metrics::counter!("herald_campaign_recipients_total").increment(handled as u64);
            if let Some(rate) = c.rate_per_second {
                let spent = Duration::from_secs_f64(handled as f64 / f64::from(rate));
                tokio::time::sleep(spent.saturating_sub(started.elapsed())).await;
            }
            if Instant::now() >= slice_end {
                return Ok(true);
            }
        }
    }

    /// Delivers the next batch of the audience; returns how many recipients it held.
    async fn next_batch(
        &self,
        c: &mut Campaign,
        n: &Arc<Notification>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let (store, providers, policy) = (&*self.store, &*self.providers, &*self.policy);
        let users = match &c.audience {
            Audience::List => store.recipients(&c.id, c.done, batch).await?,
            Audience::Topic(topic) => {
                store
                    .subscribers(topic, c.walk_cursor.as_deref(), batch)
                    .await?
            }
            Audience::All => {
                if c.done == 0 && c.walk_cursor.is_none() {
                    // Everyone's inbox and live streams: one entry in the global feed.
                    let flags = EntryFlags {
                        inbox: n.channels.contains(Channel::Inbox),
                        live: n.channels.contains(Channel::Realtime),
                    };
                    if flags.inbox || flags.live {
                        store.deliver_global(n.clone(), flags).await?;
                    }
                }
                store.device_owners(c.walk_cursor.as_deref(), batch).await?
            }
        };
        if users.is_empty() {
            return Ok(0);
        }
        if c.audience == Audience::All {
            // The global entry reached the inboxes; device owners get the push only.
            let push_only = Arc::new(Notification {
                channels: n
                    .channels
                    .iter()
                    .filter(|ch| *ch == Channel::Push)
                    .collect::<ChannelSet>(),
                ..(**n).clone()
            });
            deliver_to(store, providers, policy, &push_only, &users).await?;
        } else {
            deliver_to(store, providers, policy, n, &users).await?;
        }
        c.done += users.len() as u64;
        if c.audience != Audience::List {
            c.walk_cursor = users.last().cloned();
        }
        Ok(users.len())
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
        let created_at = c.started_at.unwrap_or_else(herald_core::time::now_ms);
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
