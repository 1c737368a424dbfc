//! Turning a notification's recipients into sends in the outbox. The outbox skips a
//! (notification, target) it has seen, so a fan-out that runs again after a crash adds nothing.

use herald_core::{Channel, Notification};
use herald_store::{PushTask, Store, StoreError};

use super::providers::Providers;

/// Users whose devices are looked up per store call.
const DEVICE_LOOKUP_CHUNK: usize = 1000;

/// Queues a send to every device of these users that a configured provider can reach.
pub async fn for_users(
    store: &dyn Store,
    providers: &Providers,
    notification: &Notification,
    users: &[String],
) -> Result<u64, StoreError> {
    if !notification.channels.contains(Channel::Push) {
        return Ok(0);
    }
    let mut queued = 0;
    for chunk in users.chunks(DEVICE_LOOKUP_CHUNK) {
        let tasks: Vec<PushTask> = store
            .devices_of(chunk)
            .await?
            .iter()
            .filter(|d| providers.takes(d.platform))
            .map(|d| PushTask::device(&notification.id, &d.id, &d.user, notification.priority))
            .collect();
        if !tasks.is_empty() {
            queued += store.enqueue_push(&tasks).await?;
        }
    }
    if queued > 0 {
        providers.wake.notify_one();
    }
    Ok(queued)
}

/// Queues one send of the notification to each webhook that wants its category.
pub async fn for_webhooks(
    store: &dyn Store,
    providers: &Providers,
    notification: &Notification,
) -> Result<u64, StoreError> {
    if !notification.channels.contains(Channel::Webhook) {
        return Ok(0);
    }
    let tasks: Vec<PushTask> = providers
        .webhooks_for(notification.category.as_deref())
        .map(|name| PushTask::webhook(&notification.id, name, notification.priority))
        .collect();
    if tasks.is_empty() {
        return Ok(0);
    }
    let queued = store.enqueue_push(&tasks).await?;
    providers.wake.notify_one();
    Ok(queued)
}
