//! Live events from Redis pub/sub. Every node hears every event; the hub keeps those of users
//! connected to it. A feed script publishes inside the transaction that made the change, so a
//! user's events arrive in sequence order. On a Cluster the events travel on sharded pub/sub
//! (see `sharded`), elsewhere on classic pub/sub; the messages are the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use herald_core::event::Feed;
use herald_core::{EventBody, FeedEvent, Notification};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::channels::{CHANNELS_PUBSUB, notice_of};
use super::connection::Deployment;
use super::global::GlobalCache;
use super::keys;
use super::sharded::{self, CHANNELS_PREFIX, Subscriptions};
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

/// Where the messages heard go.
struct Sink {
    global: Arc<GlobalCache>,
    tx: mpsc::Sender<Live>,
    channel_tx: mpsc::Sender<ChannelNotice>,
    enabled: Arc<AtomicBool>,
    /// Whether a subscription was made before: the next one follows a loss.
    subscribed_before: bool,
    /// Told once the first subscription is in place.
    ready: Option<oneshot::Sender<()>>,
}

impl Sink {
    /// A subscription is in place. Whatever was published while unsubscribed is lost to this
    /// node, so after a loss connected clients resync. False when the store is gone.
    async fn subscribed(&mut self) -> bool {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        if self.subscribed_before
            && self.enabled.load(Ordering::Acquire)
            && self.tx.send(Live::Resync).await.is_err()
        {
            return false;
        }
        self.subscribed_before = true;
        true
    }

    /// Handles one message: a channel notice, a batch of feed events or one feed event. False
    /// when the store is gone.
    async fn dispatch(&self, notice: bool, payload: &[u8]) -> bool {
        if notice {
            // Lossy on purpose: a subscriber fills a hole from history.
            if let Some(notice) = notice_of(payload) {
                let _ = self.channel_tx.try_send(notice);
            }
            return true;
        }
        if payload.starts_with(BATCH_PREFIX) {
            let Some(events) = batch_events(payload, &self.global) else {
                tracing::warn!("unreadable live event batch skipped");
                return true;
            };
            if !self.enabled.load(Ordering::Acquire) {
                return true;
            }
            for event in events {
                if self.tx.send(Live::Event(event)).await.is_err() {
                    return false;
                }
            }
            return true;
        }
        let Ok(wire) = serde_json::from_slice::<Wire>(payload) else {
            tracing::warn!("unreadable live event skipped");
            return true;
        };
        let Some(event) = convert(wire, &self.global) else {
            return true;
        };
        !(self.enabled.load(Ordering::Acquire) && self.tx.send(Live::Event(event)).await.is_err())
    }
}

/// Listens until the receiver is gone, reconnecting after errors; `ready` is told once the
/// first subscription is in place. A Cluster uses sharded pub/sub (see `sharded`); a single
/// server or a Sentinel-watched primary classic pub/sub on two channels.
pub async fn listen(
    deployment: Arc<Deployment>,
    global: Arc<GlobalCache>,
    tx: mpsc::Sender<Live>,
    channel_tx: mpsc::Sender<ChannelNotice>,
    enabled: Arc<AtomicBool>,
    ready: oneshot::Sender<()>,
) {
    let mut sink = Sink {
        global,
        tx,
        channel_tx,
        enabled,
        subscribed_before: false,
        ready: Some(ready),
    };
    match &*deployment {
        Deployment::Cluster(seeds) => listen_sharded(seeds, &mut sink).await,
        _ => listen_classic(&deployment, &mut sink).await,
    }
}

async fn listen_classic(deployment: &Deployment, sink: &mut Sink) {
    let mut backoff = Duration::from_millis(100);
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
                    if !sink.subscribed().await {
                        return;
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            msg = messages.next() => match msg {
                                Some(msg) => msg,
                                None => break,
                            },
                            // The store is gone.
                            _ = sink.tx.closed() => return,
                        };
                        let notice = msg.get_channel_name() == CHANNELS_PUBSUB;
                        if !sink.dispatch(notice, msg.get_payload_bytes()).await {
                            return;
                        }
                    }
                    tracing::warn!("live event subscription lost; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach redis for live events; retrying"),
        }
        if sink.tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_sharded(seeds: &[String], sink: &mut Sink) {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        let opened = tokio::select! {
            opened = Subscriptions::open(seeds, attempt) => opened,
            _ = sink.tx.closed() => return,
        };
        attempt += 1;
        match opened {
            Ok(mut subscriptions) => {
                backoff = Duration::from_millis(100);
                if !sink.subscribed().await {
                    return;
                }
                let why = loop {
                    let event = tokio::select! {
                        event = subscriptions.next() => event,
                        // The store is gone.
                        _ = sink.tx.closed() => return,
                    };
                    match event {
                        sharded::Event::Message(msg) => {
                            let notice = msg.get_channel_name().starts_with(CHANNELS_PREFIX);
                            if !sink.dispatch(notice, msg.get_payload_bytes()).await {
                                return;
                            }
                        }
                        sharded::Event::Lost(why) => break why,
                    }
                };
                tracing::warn!(reason = %why, "sharded live event subscriptions lost; subscribing again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to sharded live events; retrying")
            }
        }
        if sink.tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
