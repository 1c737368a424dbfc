//! The fan-out worker: turns accepted notifications into feed entries and push sends for their
//! recipients, as delivery policy allows ([`super::policy`]).
//!
//! Deliveries are idempotent in the store, so a job interrupted by a crash is simply run again;
//! topic fan-out checkpoints its progress so a restart does not start a large topic over.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{Notification, Recipients};
use herald_store::{EntryFlags, Job, JobId, Store, StoreError};
use tokio::sync::watch;

use super::policy::{PolicyContext, deliver_to};
use crate::config::WorkerOptions;
use crate::workers::push::{Providers, enqueue};

/// Users of a list handled per policy stage (preferences, devices and entries per store call).
const USER_CHUNK: usize = 4096;

/// Pages of one topic fanned out per turn: between turns the worker looks for work in higher
/// lanes, so a `high` notification does not wait for a large `low` topic to finish.
const TOPIC_PAGES_PER_TURN: usize = 2;

pub async fn run(
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    policy: Arc<PolicyContext>,
    options: WorkerOptions,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    // Topic jobs taken and not finished yet (their progress is checkpointed in the store, so at
    // shutdown they are simply handed out again after the restart).
    let mut unfinished: Vec<Job> = Vec::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = if unfinished.is_empty() {
            Duration::from_millis(250)
        } else {
            Duration::ZERO
        };
        let mut jobs = match store.next_jobs(options.fanout_batch, wait).await {
            Ok(jobs) => jobs,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not take jobs; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        // A job of ours can come back (Redis hands out jobs idle for long); it is in hand already.
        jobs.retain(|job| !unfinished.iter().any(|u| u.id == job.id));
        jobs.append(&mut unfinished);
        if jobs.is_empty() {
            continue;
        }
        // Highest lane first; a stable sort keeps the order within a lane.
        jobs.sort_by_key(|job| job.lane);
        // A batch's turn is completed before shutdown is honoured.
        loop {
            match process(&*store, &providers, &policy, &jobs, &options).await {
                Ok(rest) => {
                    unfinished = rest;
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "fan-out failed; retrying the batch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        backoff = Duration::from_millis(50);
    }
}

fn flags_for(n: &Notification, now_ms: i64) -> EntryFlags {
    let flags = EntryFlags::of(n);
    EntryFlags {
        // A notification past its TTL is still listed but no longer announced live.
        live: flags.live && !n.expired_at(now_ms),
        ..flags
    }
}

/// One turn over the jobs, in order: lists and `all` are done whole, topics a few pages each.
/// Returns the topic jobs that have pages left, with their cursor moved on.
async fn process(
    store: &dyn Store,
    providers: &Providers,
    policy: &PolicyContext,
    jobs: &[Job],
    options: &WorkerOptions,
) -> Result<Vec<Job>, StoreError> {
    let now = herald_core::time::now_ms();
    let mut finished: Vec<&Job> = Vec::with_capacity(jobs.len());
    let mut unfinished = Vec::new();
    for job in jobs {
        let n = &job.notification;
        match &n.to {
            Recipients::Users(users) => {
                for chunk in users.chunks(USER_CHUNK) {
                    deliver_to(store, providers, policy, n, chunk).await?;
                }
            }
            Recipients::All => {
                // Everyone shares one global feed entry, so per-user policy does not apply, and
                // push to everyone is not fanned out per device here (campaigns cover that).
                let flags = flags_for(n, now);
                if flags.inbox || flags.live {
                    store.deliver_global(n.clone(), flags).await?;
                    count(u64::from(flags.inbox), u64::from(flags.live));
                }
            }
            // The campaign worker delivers it to the audience in checkpointed batches.
            Recipients::Campaign(_) => {}
            Recipients::Topic(topic) => {
                if let Some(cursor) =
                    fan_out_topic(store, providers, policy, job, topic, options).await?
                {
                    unfinished.push(Job {
                        cursor: Some(cursor),
                        ..job.clone()
                    });
                    continue;
                }
            }
        }
        enqueue::for_webhooks(store, providers, n).await?;
        finished.push(job);
    }
    let ids: Vec<JobId> = finished.iter().map(|job| job.id.clone()).collect();
    store.finish_jobs(&ids).await?;
    let done = herald_core::time::now_ms();
    for job in finished {
        metrics::histogram!("herald_fanout_seconds")
            .record((done - job.notification.created_at).max(0) as f64 / 1000.0);
    }
    Ok(unfinished)
}

/// Adds to the delivery counters once per batch, not once per recipient.
pub(super) fn count(inbox: u64, live: u64) {
    if inbox > 0 {
        metrics::counter!("herald_deliveries_total", "channel" => "inbox").increment(inbox);
    }
    if live > 0 {
        metrics::counter!("herald_deliveries_total", "channel" => "realtime").increment(live);
    }
}

/// Fans out up to [`TOPIC_PAGES_PER_TURN`] pages of the topic's subscribers from the job's
/// checkpoint; returns where to go on, or `None` once the topic is done.
async fn fan_out_topic(
    store: &dyn Store,
    providers: &Providers,
    policy: &PolicyContext,
    job: &Job,
    topic: &str,
    options: &WorkerOptions,
) -> Result<Option<String>, StoreError> {
    let mut after = job.cursor.clone();
    for _ in 0..TOPIC_PAGES_PER_TURN {
        let page = store
            .subscribers(topic, after.as_deref(), options.topic_page)
            .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(None);
        };
        deliver_to(store, providers, policy, &job.notification, &page).await?;
        store.checkpoint_job(&job.id, &last).await?;
        if page.len() < options.topic_page {
            return Ok(None);
        }
        after = Some(last);
    }
    Ok(after)
}
