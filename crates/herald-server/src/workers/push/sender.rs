//! The push sender: takes due sends from the outbox, sends them through their provider within
//! its limits, and records each outcome (sent, retry later, pruned, failed → dead letter).
//!
//! A send is finished in the store only after the provider answered, so a crash repeats at most
//! the sends that were in flight (or answered but not yet recorded), at most `max_in_flight`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_core::{Device, Notification};
use herald_push::PushMessage;
use herald_push::config::PushConfig;
use herald_store::{PushOutcome, PushTask, SendStatus, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::answer::{self, Settled, result_label};
use super::providers::Providers;

/// A notification as the sender needs it, loaded once per batch.
struct Prepared {
    notification: Arc<Notification>,
    message: PushMessage,
}

/// Outcomes recorded per store call.
const FINISH_BATCH: usize = 4096;
/// A send's outcome, with the in-flight permit it holds until the outcome is recorded.
type Finished = (PushOutcome, OwnedSemaphorePermit);

/// Notifications remembered between batches.
const PREPARED_CACHE: usize = 4096;

pub async fn run(
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    config: PushConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    // An outcome carries its in-flight permit until it is recorded, so sends answered but not
    // yet recorded count as in flight too: a crash repeats at most `max_in_flight` sends.
    let (done_tx, done_rx) = mpsc::channel::<Finished>(config.max_in_flight);
    let finisher = tokio::spawn(record_outcomes(store.clone(), done_rx));
    let lease = Duration::from_millis(config.lease_ms);
    let mut prepared: HashMap<String, Option<Arc<Prepared>>> = HashMap::new();
    let mut backoff = Duration::from_millis(50);
    while !*shutdown.borrow() {
        let room = in_flight.available_permits().min(config.batch);
        if room == 0 {
            // Wait for a slot rather than polling the store for nothing.
            drop(in_flight.acquire().await);
            continue;
        }
        let now = herald_core::time::now_ms();
        let tasks = match store.next_push(room, now, lease).await {
            Ok(tasks) => tasks,
            Err(StoreError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not take sends; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if tasks.is_empty() {
            tokio::select! {
                _ = providers.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if prepared.len() > PREPARED_CACHE {
            prepared.clear();
        }
        // One in-flight slot per task, taken at once; there is room (see `room` above).
        let mut slots = in_flight
            .clone()
            .acquire_many_owned(tasks.len() as u32)
            .await
            .expect("never closed");
        let mut slot = move || slots.split(1).expect("one slot per task");
        let devices = match load(&*store, &tasks, &mut prepared).await {
            Ok(devices) => devices,
            Err(e) => {
                tracing::warn!(error = %e, "could not load what the sends need; retrying them");
                let due_ms = herald_core::time::now_ms() + 1000;
                for task in tasks {
                    let retry = PushOutcome::Retry { task, due_ms };
                    let _ = done_tx.send((retry, slot())).await;
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        for task in tasks {
            let permit = slot();
            let item = prepared.get(&task.notification).cloned().flatten();
            let device = task
                .device_id()
                .and_then(|id| devices.get(id))
                // A device that moved to another user must not get the old owner's pushes.
                .filter(|d| d.user == task.user)
                .cloned();
            let providers = providers.clone();
            let store = store.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let outcome = send(&*store, &providers, task, item, device).await;
                let _ = done.send((outcome, permit)).await;
            });
        }
    }
    // Let the sends in flight finish and be recorded before the store closes.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        in_flight.acquire_many(config.max_in_flight as u32),
    )
    .await;
    drop(done_tx);
    let _ = finisher.await;
}

/// The notifications the tasks need (each read once, then cached) and their devices (one call).
async fn load(
    store: &dyn Store,
    tasks: &[PushTask],
    prepared: &mut HashMap<String, Option<Arc<Prepared>>>,
) -> Result<HashMap<String, Device>, StoreError> {
    for task in tasks {
        if !prepared.contains_key(&task.notification) {
            let item = store.notification(&task.notification).await?.map(|n| {
                Arc::new(Prepared {
                    message: PushMessage::from_notification(&n),
                    notification: n,
                })
            });
            prepared.insert(task.notification.clone(), item);
        }
    }
    let users: Vec<String> = tasks
        .iter()
        .filter(|t| t.device_id().is_some())
        .map(|t| t.user.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let devices = if users.is_empty() {
        Vec::new()
    } else {
        store.devices_of(&users).await?
    };
    Ok(devices.into_iter().map(|d| (d.id.clone(), d)).collect())
}

async fn send(
    store: &dyn Store,
    providers: &Providers,
    task: PushTask,
    item: Option<Arc<Prepared>>,
    device: Option<Device>,
) -> PushOutcome {
    let done = |task: PushTask, status: SendStatus, reason: Option<String>| PushOutcome::Done {
        task,
        status,
        reason,
    };
    let Some(item) = item else {
        return done(
            task,
            SendStatus::Expired,
            Some("notification no longer stored".into()),
        );
    };
    if item.message.expired(herald_core::time::now_ms()) {
        return done(
            task,
            SendStatus::Expired,
            Some("TTL ran out before the send".into()),
        );
    }
    let dry_run = providers.dry_run || item.notification.dry_run;
    let (label, result) = if let Some(name) = task.webhook_name() {
        let Some(hook) = providers.webhook(name) else {
            let reason = format!("webhook {name} is no longer configured");
            return done(task, SendStatus::Failed, Some(reason));
        };
        let _slot = hook.ready(task.lane).await;
        (
            "webhook",
            hook.outlet.send(&item.notification, dry_run).await,
        )
    } else {
        let Some(device) = device else {
            return done(
                task,
                SendStatus::Pruned,
                Some("device removed before the send".into()),
            );
        };
        let result = answer::to_device(providers, &item.message, &device, task.lane, dry_run).await;
        (device.platform.as_str(), result)
    };
    metrics::counter!("herald_push_sends_total", "provider" => label, "result" => result_label(&result))
        .increment(1);
    super::stats::record(label, &result);
    match answer::settle(store, providers, task.device_id(), task.attempt, result).await {
        Settled::Done(status, reason) => done(task, status, reason),
        Settled::Retry { due_ms } => PushOutcome::Retry { task, due_ms },
    }
}

/// Records outcomes in batches: whatever arrived while the previous batch was being written.
async fn record_outcomes(store: Arc<dyn Store>, mut finished: mpsc::Receiver<Finished>) {
    let mut received = Vec::with_capacity(FINISH_BATCH);
    while finished.recv_many(&mut received, FINISH_BATCH).await > 0 {
        // The permits are released only once the batch is recorded.
        let (batch, permits): (Vec<PushOutcome>, Vec<_>) = received.drain(..).unzip();
        let mut backoff = Duration::from_millis(50);
        // An outcome is never dropped: dropping it would send again after a restart.
        while let Err(e) = store.finish_push(&batch).await {
            if matches!(e, StoreError::Closed) {
                tracing::warn!(
                    sends = batch.len(),
                    "store closed before send outcomes were recorded; they may repeat"
                );
                return;
            }
            tracing::warn!(error = %e, "could not record send outcomes; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        drop(permits);
    }
}
