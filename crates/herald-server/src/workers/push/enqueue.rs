//! Turning a notification into webhook sends in the outbox (device sends are queued by the
//! policy stage). The outbox skips a (notification, target) it has seen, so a fan-out that runs
//! again after a crash adds nothing.

use herald_core::{Channel, Notification};
use herald_store::{PushTask, Store, StoreError};

use super::providers::Providers;

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
