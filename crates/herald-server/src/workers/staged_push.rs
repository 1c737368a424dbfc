//! A list campaign's push, staged: before `send_at` the audience is resolved slice by slice
//! into [`PushStage`]s (preferences and quiet hours judged, devices looked up), stored once; at
//! `send_at` each stage goes straight to the providers. There is no outbox entry per send:
//! outcomes are recorded per stage, a bit per send, so a stage resumed after a crash sends only
//! what was not recorded (at most the sends in flight repeat, as with the outbox).
//!
//! What staging fixes early may be stale by the send: a device registered or removed after its
//! user was staged is not seen (up to [`super::campaigns`]' judging lead before `send_at`, or
//! longer for a paused campaign). Retries of transient failures go to the outbox as usual.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_core::policy::{Verdict, caps_for, plan};
use herald_core::{Audience, Campaign, Category, Channel, Device, Notification, Reason};
use herald_push::{PushMessage, SendResult};
use herald_store::{
    DeadLetter, DecisionCount, DecisionRecord, PushStage, PushTask, SendStatus, StagedOutcome,
    StagedProgress, Store, StoreError, staged_device,
};
use tokio::sync::mpsc;

use super::policy::{PolicyContext, reachable_devices};
use super::push::Providers;
use super::push::answer::{self, Settled, result_label};
use super::push::stats;

/// Listed users per stage.
pub const STAGE: usize = 4096;
/// Sends of one stage in flight at once (each provider's own limit applies too). A campaign
/// has 3 stages in hand (`campaigns::PIPELINE`): together they about fill a provider's default
/// 512 slots, so sends rarely queue at its gate, where each wait costs a channel and a wake.
/// (512 a stage measured 2–18% more server CPU per send in paired runs.)
const WORKERS: usize = 176;
/// Outcomes recorded per store call at most.
const RECORD_BATCH: usize = 1024;
/// How long outcomes are gathered before they are recorded.
const RECORD_WAIT: Duration = Duration::from_millis(20);

/// Whether a campaign's push can be staged: an uploaded list, and nothing that depends on what
/// each user got just before the send (a collapse key, a frequency cap).
pub fn eligible(
    c: &Campaign,
    n: &Notification,
    category: Option<&Category>,
    ctx: &PolicyContext,
) -> bool {
    c.audience == Audience::List
        && n.channels.contains(Channel::Push)
        && n.collapse_key.is_none()
        && caps_for(category, &ctx.defaults).is_empty()
}

/// Listed users per stage of this campaign: a rate limit paces one stage at a time.
pub fn stage_size(c: &Campaign) -> usize {
    c.rate_per_second
        .map_or(STAGE, |rate| STAGE.min(rate.max(1) as usize))
}

/// The stage starting at audience position `from`: the stored one, or one resolved now from
/// up to `size` listed users. `None`: nobody is listed there (yet).
pub async fn stage_at(
    store: &dyn Store,
    providers: &Providers,
    ctx: &PolicyContext,
    c: &Campaign,
    n: &Notification,
    from: u64,
    size: usize,
) -> Result<Option<(PushStage, StagedProgress)>, StoreError> {
    if let Some(found) = store.push_stage(&c.id, from).await? {
        return Ok(Some(found));
    }
    let users = store.recipients(&c.id, from, size).await?;
    if users.is_empty() {
        return Ok(None);
    }
    // Quiet hours are judged at the second the campaign sends.
    let now = herald_core::time::now_ms();
    let at = c.send_at.map_or(now, |at| at.max(now));
    let category = ctx.categories.get(n.category.as_deref()).await?;
    let prefs = store.preferences_of(&users).await?;
    let mut plans: Vec<_> = prefs
        .iter()
        .map(|p| plan(n, category.as_deref(), p.as_ref(), &ctx.defaults, at))
        .collect();
    let devices = reachable_devices(store, providers, &users, &plans).await?;
    let mut stage = PushStage {
        from,
        to: from + users.len() as u64,
        sends: Vec::new(),
        deferred: Vec::new(),
    };
    let mut records = Vec::new();
    let mut counts: BTreeMap<Reason, u64> = BTreeMap::new();
    for (user, p) in users.iter().zip(&mut plans) {
        let Some(reached) = devices.get(user.as_str()) else {
            continue; // nobody to push to: not a decision
        };
        match p.push {
            Verdict::Deliver => stage.sends.extend(reached.iter().map(staged_device)),
            Verdict::Defer { until_ms } => {
                stage.deferred.extend(reached.iter().map(|d| PushTask {
                    due_ms: until_ms,
                    ..PushTask::device(&n.id, &d.id, user, n.priority)
                }))
            }
            _ => {}
        }
        if let Some(record) = DecisionRecord::of(&n.id, user, Channel::Push, &p.push, now) {
            *counts.entry(record.reason).or_default() += 1;
            records.push(record);
        }
    }
    if !store.stage_push(&c.id, &stage).await? {
        // Another node staged it first: theirs is the one sent (and its decisions counted).
        return store.push_stage(&c.id, from).await;
    }
    let counts: Vec<DecisionCount> = counts
        .into_iter()
        .map(|(reason, k)| DecisionCount {
            notification: n.id.clone(),
            channel: Channel::Push,
            reason,
            n: k,
        })
        .collect();
    if !records.is_empty() {
        store.record_decisions(&counts, &records).await?;
    }
    Ok(Some((stage, StagedProgress::default())))
}

/// What one stage's sends need, shared by its workers.
struct Sending {
    providers: Arc<Providers>,
    message: Arc<PushMessage>,
    sends: Vec<Device>,
    todo: Vec<u32>,
    next: AtomicUsize,
    dry_run: bool,
    lane: herald_core::Priority,
}

/// Sends a stage's unfinished sends and records how each ended; its deferred sends go to the
/// outbox. Returns once every send is recorded.
pub async fn send_stage(
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    campaign: String,
    n: Arc<Notification>,
    message: Arc<PushMessage>,
    (stage, progress): (PushStage, StagedProgress),
) -> Result<(), StoreError> {
    if !stage.deferred.is_empty() && store.enqueue_push(&stage.deferred).await? > 0 {
        providers.wake.notify_one();
    }
    let todo: Vec<u32> = (0..stage.sends.len() as u32)
        .filter(|&i| !progress.finished(i))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let from = stage.from;
    if message.expired(herald_core::time::now_ms()) {
        let outcomes: Vec<StagedOutcome> = todo
            .iter()
            .map(|&index| StagedOutcome {
                index,
                status: Some(SendStatus::Expired),
                letter: None,
            })
            .collect();
        return record(&*store, &campaign, from, &n.id, &outcomes).await;
    }
    let workers = todo.len().min(WORKERS);
    let sending = Arc::new(Sending {
        dry_run: providers.dry_run || n.dry_run,
        providers: providers.clone(),
        message,
        sends: stage.sends,
        todo,
        next: AtomicUsize::new(0),
        lane: n.priority,
    });
    let (tx, mut rx) = mpsc::channel::<(u32, SendResult)>(RECORD_BATCH * 4);
    for _ in 0..workers {
        let (sending, tx) = (sending.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                let at = sending.next.fetch_add(1, Ordering::Relaxed);
                let Some(&index) = sending.todo.get(at) else {
                    return;
                };
                let device = &sending.sends[index as usize];
                let result = answer::to_device(
                    &sending.providers,
                    &sending.message,
                    device,
                    sending.lane,
                    sending.dry_run,
                )
                .await;
                if tx.send((index, result)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut answered = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut answered, RECORD_BATCH).await > 0 {
        // Outcomes trickle in; gathering them a moment saves store writes (a crash repeats at
        // most what was not recorded yet).
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        while answered.len() < RECORD_BATCH {
            let room = RECORD_BATCH - answered.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut answered, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut outcomes = Vec::with_capacity(answered.len());
        let mut retries = Vec::new();
        let mut tally: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for (index, result) in answered.drain(..) {
            let device = &sending.sends[index as usize];
            let provider = device.platform.as_str();
            stats::record(provider, &result);
            *tally.entry((provider, result_label(&result))).or_default() += 1;
            // Built only for a dead letter or a retry (a retry goes on from the outbox as the
            // second attempt).
            let task = || PushTask::device(&n.id, &device.id, &device.user, n.priority);
            let settled = answer::settle(&*store, &providers, Some(&device.id), 0, result).await;
            let (status, letter) = match settled {
                Settled::Done(status, reason) => {
                    let letter = (status == SendStatus::Failed).then(|| {
                        DeadLetter::of(&task(), reason.as_deref(), herald_core::time::now_ms())
                    });
                    (Some(status), letter)
                }
                Settled::Retry { due_ms } => {
                    retries.push(PushTask {
                        attempt: 1,
                        due_ms,
                        ..task()
                    });
                    (None, None)
                }
            };
            outcomes.push(StagedOutcome {
                index,
                status,
                letter,
            });
        }
        // Retries are queued before their sends are marked finished: a crash in between sends
        // them again at worst, never loses them.
        if !retries.is_empty() {
            store.enqueue_push(&retries).await?;
            providers.wake.notify_one();
        }
        for ((provider, result), k) in tally {
            metrics::counter!("herald_push_sends_total", "provider" => provider, "result" => result)
                .increment(k);
        }
        record(&*store, &campaign, from, &n.id, &outcomes).await?;
    }
    Ok(())
}

/// Records outcomes, retrying until the store takes them: an outcome dropped would be sent
/// again after a restart.
async fn record(
    store: &dyn Store,
    campaign: &str,
    from: u64,
    notification: &str,
    outcomes: &[StagedOutcome],
) -> Result<(), StoreError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store
            .finish_staged(campaign, from, notification, outcomes)
            .await
        {
            Ok(()) => return Ok(()),
            Err(StoreError::Closed) => return Err(StoreError::Closed),
            Err(e) => {
                tracing::warn!(error = %e, "could not record staged send outcomes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
