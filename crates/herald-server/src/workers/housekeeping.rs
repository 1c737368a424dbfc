//! Periodic chores: queue depth gauges, purge of expired content, deletion of ended campaigns'
//! recipient lists, and live event dispatch.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{Audience, Campaign};
use herald_store::{Live, Store, StoreError};
use tokio::sync::watch;

use crate::hub::Hub;

/// Moves the store's feed events to the hub until the store closes.
pub async fn dispatch_live(store: Arc<dyn Store>, hub: Arc<Hub>) {
    let Some(mut events) = store.live_events() else {
        tracing::error!("live events were already taken; realtime delivery is off");
        return;
    };
    while let Some(live) = events.recv().await {
        match live {
            Live::Event(event) => hub.dispatch(event),
            Live::Resync => {
                let closed = hub.disconnect_all();
                tracing::warn!(
                    connections = closed,
                    "live events may have been missed; clients resync from their positions"
                );
            }
        }
    }
}

pub async fn run(
    store: Arc<dyn Store>,
    keep_recipients: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut since_purge = Duration::ZERO;
    // Ended campaigns are looked at every minute (sooner when lists are kept less than that).
    let cleanup_every = keep_recipients.clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut since_cleanup = cleanup_every;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Ok(depths) = store.queue_depths().await {
            for (lane, depth) in herald_core::Priority::LANES.iter().zip(depths) {
                metrics::gauge!("herald_queue_depth", "lane" => lane.as_str()).set(depth as f64);
            }
        }
        if let Ok(depths) = store.push_depths().await {
            for (lane, depth) in herald_core::Priority::LANES.iter().zip(depths) {
                metrics::gauge!("herald_push_queue_depth", "lane" => lane.as_str())
                    .set(depth as f64);
            }
        }
        since_cleanup += Duration::from_secs(1);
        if since_cleanup >= cleanup_every {
            since_cleanup = Duration::ZERO;
            if let Err(e) = drop_ended_recipient_lists(&*store, keep_recipients).await {
                tracing::warn!(error = %e, "dropping ended campaigns' recipient lists failed; will retry");
            }
        }
        since_purge += Duration::from_secs(1);
        if since_purge >= Duration::from_secs(300) {
            since_purge = Duration::ZERO;
            match store.purge_expired(herald_core::time::now_ms()).await {
                Ok(report)
                    if report.notifications
                        + report.idempotency_keys
                        + report.caps
                        + report.collapse_keys
                        > 0 =>
                {
                    tracing::info!(
                        notifications = report.notifications,
                        keys = report.idempotency_keys,
                        caps = report.caps,
                        collapse_keys = report.collapse_keys,
                        "purged expired content"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
            }
        }
    }
}

/// Deletes the uploaded recipient lists of campaigns that ended more than `keep` ago (a list of
/// millions is worth its disk only while it may be sent), and marks them so. A campaign with a
/// shared entry keeps who is listed while that entry is in the global feed (it is shown through
/// the list), and loses it at the first round after the entry left.
async fn drop_ended_recipient_lists(store: &dyn Store, keep: Duration) -> Result<(), StoreError> {
    let now = herald_core::time::now_ms();
    let mut before: Option<String> = None;
    loop {
        let page = store.campaigns(before.as_deref(), 100).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        before = Some(last.id.clone());
        for campaign in page {
            let members_due = campaign.shared
                && !campaign.members_dropped
                && match &campaign.notification {
                    Some(id) => store.global_entry(id).await?.is_none(),
                    None => true,
                };
            if due_for_drop(&campaign, keep, now) || (campaign.recipients_dropped && members_due) {
                let keep_members = campaign.shared && !members_due;
                store.drop_recipients(&campaign.id, keep_members).await?;
                let marked = Campaign {
                    recipients_dropped: true,
                    members_dropped: !keep_members,
                    ..campaign
                };
                // Lost to a concurrent change: the next round drops (idempotently) and marks.
                store.update_campaign(&marked).await?;
                tracing::info!(campaign = %marked.id, "deleted the ended campaign's recipient list");
            }
        }
    }
}

fn due_for_drop(c: &Campaign, keep: Duration, now_ms: i64) -> bool {
    let ended = c.finished_at.unwrap_or(c.created_at);
    c.state.is_final()
        && c.audience == Audience::List
        && !c.recipients_dropped
        && now_ms - ended >= keep.as_millis() as i64
}
