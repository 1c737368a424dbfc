//! Periodic chores: queue depth gauges, purge of expired content, and live event dispatch.

use std::sync::Arc;
use std::time::Duration;

use herald_store::{Live, Store};
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

pub async fn run(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut since_purge = Duration::ZERO;
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
