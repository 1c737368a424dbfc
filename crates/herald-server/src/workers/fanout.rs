//! The fan-out worker: turns accepted notifications into feed entries for their recipients.
//!
//! Deliveries are idempotent in the store, so a job interrupted by a crash is simply run again;
//! topic fan-out checkpoints its progress so a restart does not start a large topic over.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{Channel, Notification, Recipients};
use herald_store::{Delivery, EntryFlags, Job, JobId, Store, StoreError};
use tokio::sync::watch;

use crate::config::WorkerOptions;
use crate::workers::push::{Providers, enqueue};

/// Deliveries written per store call.
const DELIVERY_CHUNK: usize = 4096;

pub async fn run(
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    options: WorkerOptions,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let jobs = match store
            .next_jobs(options.fanout_batch, Duration::from_millis(250))
            .await
        {
            Ok(jobs) => jobs,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not take jobs; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        // A batch is finished before shutdown is honoured: what was taken is completed.
        while let Err(e) = process(&*store, &providers, &jobs, &options).await {
            if matches!(e, StoreError::Closed) {
                return;
            }
            tracing::warn!(error = %e, jobs = jobs.len(), "fan-out failed; retrying the batch");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        backoff = Duration::from_millis(50);
    }
}

fn flags_for(n: &Notification, now_ms: i64) -> EntryFlags {
    EntryFlags {
        inbox: n.channels.contains(Channel::Inbox),
        // A notification past its TTL is still listed but no longer announced live.
        live: n.channels.contains(Channel::Realtime) && !n.expired_at(now_ms),
    }
}

async fn process(
    store: &dyn Store,
    providers: &Providers,
    jobs: &[Job],
    options: &WorkerOptions,
) -> Result<(), StoreError> {
    let now = herald_core::time::now_ms();
    let mut deliveries: Vec<Delivery> = Vec::new();
    let mut finished: Vec<JobId> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let n = &job.notification;
        let flags = flags_for(n, now);
        let feed = flags.inbox || flags.live;
        match &n.to {
            Recipients::Users(users) => {
                if feed {
                    deliveries.extend(users.iter().map(|user| Delivery {
                        user: user.clone(),
                        notification: n.clone(),
                        flags,
                    }));
                }
                enqueue::for_users(store, providers, n, users).await?;
            }
            Recipients::All => {
                // Push to everyone is not fanned out per device here: the global feed reaches
                // every user's inbox and live connections (campaigns cover device broadcast).
                if feed {
                    store.deliver_global(n.clone(), flags).await?;
                    count(u64::from(flags.inbox), u64::from(flags.live));
                }
            }
            Recipients::Topic(topic) => {
                fan_out_topic(store, providers, job, topic, flags, options).await?
            }
        }
        enqueue::for_webhooks(store, providers, n).await?;
        finished.push(job.id.clone());
        if deliveries.len() >= DELIVERY_CHUNK {
            deliver(store, std::mem::take(&mut deliveries)).await?;
        }
    }
    deliver(store, deliveries).await?;
    store.finish_jobs(&finished).await?;
    let done = herald_core::time::now_ms();
    for job in jobs {
        metrics::histogram!("herald_fanout_seconds")
            .record((done - job.notification.created_at).max(0) as f64 / 1000.0);
    }
    Ok(())
}

async fn deliver(store: &dyn Store, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    // Only new deliveries count: a retried job's repeats are skipped by the store.
    let delivered = store.deliver(&deliveries).await?;
    let inbox = delivered.iter().filter(|d| d.flags.inbox).count() as u64;
    let live = delivered.iter().filter(|d| d.flags.live).count() as u64;
    count(inbox, live);
    Ok(())
}

/// Adds to the delivery counters once per batch, not once per recipient.
fn count(inbox: u64, live: u64) {
    if inbox > 0 {
        metrics::counter!("herald_deliveries_total", "channel" => "inbox").increment(inbox);
    }
    if live > 0 {
        metrics::counter!("herald_deliveries_total", "channel" => "realtime").increment(live);
    }
}

/// Walks the topic's subscribers page by page from the job's checkpoint.
async fn fan_out_topic(
    store: &dyn Store,
    providers: &Providers,
    job: &Job,
    topic: &str,
    flags: EntryFlags,
    options: &WorkerOptions,
) -> Result<(), StoreError> {
    let mut after = job.cursor.clone();
    loop {
        let page = store
            .subscribers(topic, after.as_deref(), options.topic_page)
            .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(());
        };
        enqueue::for_users(store, providers, &job.notification, &page).await?;
        if flags.inbox || flags.live {
            let deliveries: Vec<_> = page
                .into_iter()
                .map(|user| Delivery {
                    user,
                    notification: job.notification.clone(),
                    flags,
                })
                .collect();
            deliver(store, deliveries).await?;
        }
        store.checkpoint_job(&job.id, &last).await?;
        after = Some(last);
    }
}
