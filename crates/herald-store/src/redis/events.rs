//! Live events from Redis pub/sub. Every node hears every event; the hub keeps those of users
//! connected to it. A feed script publishes inside the transaction that made the change, so a
//! user's events arrive in sequence order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use herald_core::event::Feed;
use herald_core::{EventBody, FeedEvent, Notification};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::channels::{CHANNELS_PUBSUB, notice_of};
use super::connection::Deployment;
use super::global::GlobalCache;
use super::keys;
use crate::feed_state::{GlobalState, Memberships};
use crate::{ChannelNotice, Live, Result, StoreError};

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    u: Option<String>,
    f: String,
    s: u64,
    #[serde(default)]
    pu: u64,
    #[serde(default)]
    gm: u64,
    #[serde(default)]
    gx: u64,
    #[serde(default)]
    fl: u64,
    #[serde(default)]
    fg: u8,
    k: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    read: bool,
    #[serde(default)]
    n: Option<Notification>,
    /// A global entry for one campaign's list only.
    #[serde(default)]
    a: Option<String>,
}

/// A change-log record (`{"k":"read","id":..}`) as an event body.
pub fn change_body(json: &str) -> Result<EventBody> {
    #[derive(Deserialize)]
    struct Change {
        k: String,
        #[serde(default)]
        id: Option<String>,
    }
    let c: Change = serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("corrupt change: {e}")))?;
    body(&c.k, c.id, None, false)
        .ok_or_else(|| StoreError::Backend(format!("unknown change {:?}", c.k)))
}

fn body(kind: &str, id: Option<String>, n: Option<Notification>, read: bool) -> Option<EventBody> {
    Some(match kind {
        "notification" => EventBody::Notification {
            notification: Arc::new(n?),
            read,
        },
        "read" => EventBody::Read { id: id? },
        "archived" => EventBody::Archived { id: id? },
        "read_all" => EventBody::ReadAll,
        _ => return None,
    })
}

fn convert(wire: Wire, global: &GlobalCache) -> Option<FeedEvent> {
    if wire.f == "g" {
        let audience: Option<Arc<str>> = wire.a.as_deref().map(Arc::from);
        global.apply(wire.s, wire.fl, wire.fg & 1 != 0, audience.clone());
        return Some(FeedEvent {
            user: None,
            feed: Feed::Global,
            seq: wire.s,
            unread: None,
            body: body(&wire.k, None, wire.n, false)?,
            audience,
        });
    }
    let unread = unread(&global.snapshot(), wire.pu, wire.gm, wire.gx);
    Some(FeedEvent {
        user: Some(Arc::from(wire.u?.as_str())),
        feed: Feed::User,
        seq: wire.s,
        unread,
        body: body(&wire.k, wire.id, wire.n, wire.read)?,
        audience: None,
    })
}

/// A user's unread count after an event, from what the script reported: `None` when a
/// campaign's shared entry above their marker makes it depend on lists (the connection then
/// asks the store).
fn unread(state: &GlobalState, personal: u64, marker: u64, read_above: u64) -> Option<u64> {
    if state.restricted.range(marker + 1..).next().is_some() {
        return None;
    }
    Some(
        (personal + state.listed_after(marker, &Memberships::default())).saturating_sub(read_above),
    )
}

/// How a delivery script's batch of events starts (see `scripts::deliver_many`).
const BATCH_PREFIX: &[u8] = br#"{"f":"b""#;

/// One notification delivered to many users: the content once, then per user
/// `[user, seq, personal unread, global marker, global read above it]`.
#[derive(Deserialize)]
struct BatchWire {
    n: Notification,
    b: Vec<(String, u64, u64, u64, u64)>,
}

fn batch_events(payload: &[u8], global: &GlobalCache) -> Option<Vec<FeedEvent>> {
    let wire: BatchWire = serde_json::from_slice(payload).ok()?;
    let notification = Arc::new(wire.n);
    let state = global.snapshot();
    Some(
        wire.b
            .into_iter()
            .map(|(user, seq, pu, gm, gx)| FeedEvent {
                user: Some(Arc::from(user.as_str())),
                feed: Feed::User,
                seq,
                unread: unread(&state, pu, gm, gx),
                body: EventBody::Notification {
                    notification: notification.clone(),
                    read: false,
                },
                audience: None,
            })
            .collect(),
    )
}

/// Listens until the receiver is gone, reconnecting after errors.
pub async fn listen(
    deployment: Arc<Deployment>,
    global: Arc<GlobalCache>,
    tx: mpsc::Sender<Live>,
    channel_tx: mpsc::Sender<ChannelNotice>,
    enabled: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut subscribed_before = false;
    let mut attempt = 0;
    loop {
        let client = deployment.pubsub_client(attempt).await;
        attempt += 1;
        match async { client?.get_async_pubsub().await }.await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub
                    .subscribe(&[keys::EVENTS_CHANNEL, CHANNELS_PUBSUB])
                    .await
                {
                    tracing::warn!(error = %e, "cannot subscribe to live events; retrying");
                } else {
                    backoff = Duration::from_millis(100);
                    // Whatever was published while unsubscribed is lost to this node.
                    if subscribed_before
                        && enabled.load(Ordering::Acquire)
                        && tx.send(Live::Resync).await.is_err()
                    {
                        return;
                    }
                    subscribed_before = true;
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            msg = messages.next() => match msg {
                                Some(msg) => msg,
                                None => break,
                            },
                            // The store is gone.
                            _ = tx.closed() => return,
                        };
                        if msg.get_channel_name() == CHANNELS_PUBSUB {
                            // Lossy on purpose: a subscriber fills a hole from history.
                            if let Some(notice) = notice_of(msg.get_payload_bytes()) {
                                let _ = channel_tx.try_send(notice);
                            }
                            continue;
                        }
                        let payload = msg.get_payload_bytes();
                        if payload.starts_with(BATCH_PREFIX) {
                            let Some(events) = batch_events(payload, &global) else {
                                tracing::warn!("unreadable live event batch skipped");
                                continue;
                            };
                            if !enabled.load(Ordering::Acquire) {
                                continue;
                            }
                            for event in events {
                                if tx.send(Live::Event(event)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        let Ok(wire) = serde_json::from_slice::<Wire>(payload) else {
                            tracing::warn!("unreadable live event skipped");
                            continue;
                        };
                        let Some(event) = convert(wire, &global) else {
                            continue;
                        };
                        if enabled.load(Ordering::Acquire)
                            && tx.send(Live::Event(event)).await.is_err()
                        {
                            return;
                        }
                    }
                    tracing::warn!("live event subscription lost; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach redis for live events; retrying"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
