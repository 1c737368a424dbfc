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
            if let Err(e) = drop_ended_campaign_data(&*store, keep_recipients).await {
                tracing::warn!(error = %e, "dropping ended campaigns' stages and lists failed; will retry");
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

/// Deletes the push stages of ended campaigns, and the uploaded recipient lists of those that
/// ended more than `keep` ago (a list of millions is worth its disk only while it may be sent),
/// and marks them so. A campaign with a shared entry keeps who is listed while that entry is in
/// the global feed (it is shown through the list), and loses it at the first round after the
/// entry left.
async fn drop_ended_campaign_data(store: &dyn Store, keep: Duration) -> Result<(), StoreError> {
    let now = herald_core::time::now_ms();
    let mut before: Option<String> = None;
    loop {
        let page = store.campaigns(before.as_deref(), 100).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        before = Some(last.id.clone());
        for campaign in page {
            let in_feed = campaign.shared
                && !campaign.members_dropped
                && match &campaign.notification {
                    Some(id) => store.global_entry(id).await?.is_some(),
                    None => false,
                };
            let list = list_to_drop(&campaign, keep, now, in_feed);
            let stages = stages_to_drop(&campaign);
            if list.is_none() && !stages {
                continue;
            }
            let mut marked = campaign;
            if stages {
                store.drop_push_stages(&marked.id).await?;
                marked.stages_dropped = true;
                tracing::debug!(campaign = %marked.id, "deleted the ended campaign's push stages");
            }
            if let Some(keep_members) = list {
                store.drop_recipients(&marked.id, keep_members).await?;
                marked.recipients_dropped = true;
                marked.members_dropped = !keep_members;
                tracing::info!(campaign = %marked.id, keep_members, "deleted the ended campaign's recipient list");
            }
            // Lost to a concurrent change: the next round drops (idempotently) and marks.
            store.update_campaign(&marked).await?;
        }
    }
}

/// What of a campaign's list to delete now: `None` nothing, else whether to keep its members
/// (its shared entry is still `in_feed`, shown through them).
fn list_to_drop(c: &Campaign, keep: Duration, now_ms: i64, in_feed: bool) -> Option<bool> {
    let keep_members = c.shared && in_feed;
    if due_for_drop(c, keep, now_ms) {
        return Some(keep_members);
    }
    let members_left = c.recipients_dropped && c.shared && !c.members_dropped;
    (members_left && !in_feed).then_some(false)
}

/// Whether to delete a campaign's push stages now: they are worth their space (a device each
/// send) only until it ended. Any list campaign may have some: `push_staged` counts only those
/// made before `send_at`, not those made as it sent (started by hand, or staged late).
fn stages_to_drop(c: &Campaign) -> bool {
    c.state.is_final() && c.audience == Audience::List && !c.stages_dropped
}

fn due_for_drop(c: &Campaign, keep: Duration, now_ms: i64) -> bool {
    let ended = c.finished_at.unwrap_or(c.created_at);
    c.state.is_final()
        && c.audience == Audience::List
        && !c.recipients_dropped
        && now_ms - ended >= keep.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::CampaignState;
    use herald_core::campaign::CampaignRequest;

    fn ended(shared: bool) -> Campaign {
        let request: CampaignRequest = serde_json::from_value(serde_json::json!({
            "name": "c", "message": {"title": "t"}
        }))
        .unwrap();
        Campaign {
            state: CampaignState::Completed,
            finished_at: Some(1_000),
            shared,
            ..request.into_campaign("c1".into(), 0)
        }
    }

    #[test]
    fn lists_go_after_the_keep_time_and_members_once_the_shared_entry_left() {
        let keep = Duration::from_secs(10);
        let plain = ended(false);
        assert_eq!(
            list_to_drop(&plain, keep, 5_000, false),
            None,
            "kept a while"
        );
        assert_eq!(list_to_drop(&plain, keep, 11_000, false), Some(false));

        let shared = ended(true);
        assert_eq!(
            list_to_drop(&shared, keep, 11_000, true),
            Some(true),
            "the order goes, the members stay while the entry shows through them"
        );
        let positions_gone = Campaign {
            recipients_dropped: true,
            ..shared.clone()
        };
        assert_eq!(list_to_drop(&positions_gone, keep, 12_000, true), None);
        assert_eq!(
            list_to_drop(&positions_gone, keep, 12_000, false),
            Some(false),
            "the entry left the global feed"
        );
        assert_eq!(
            list_to_drop(&shared, keep, 11_000, false),
            Some(false),
            "both at once"
        );
        let all_gone = Campaign {
            members_dropped: true,
            ..positions_gone
        };
        assert_eq!(list_to_drop(&all_gone, keep, 12_000, false), None);
        let sending = Campaign {
            state: CampaignState::Sending,
            ..ended(true)
        };
        assert_eq!(list_to_drop(&sending, keep, 99_000, false), None);
    }

    #[test]
    fn stages_go_as_soon_as_the_campaign_ended_and_only_once() {
        let staged = Campaign {
            push_staged: 4096,
            ..ended(false)
        };
        assert!(stages_to_drop(&staged));
        assert!(
            stages_to_drop(&ended(false)),
            "staged as it was sent, not before"
        );
        let topic = Campaign {
            audience: Audience::Topic("news".into()),
            ..ended(false)
        };
        assert!(!stages_to_drop(&topic), "only lists are staged");
        let sending = Campaign {
            state: CampaignState::Sending,
            ..staged.clone()
        };
        assert!(!stages_to_drop(&sending), "still sending from them");
        let dropped = Campaign {
            stages_dropped: true,
            ..staged
        };
        assert!(!stages_to_drop(&dropped));
    }
}
