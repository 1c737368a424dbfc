//! Which connections read which realtime channel, and handing each published message to them.
//!
//! Every subscriber has a byte budget for messages queued to it and not taken yet. A message
//! that would take a subscriber past its budget cuts the subscriber off instead: it is removed
//! from the hub, finishes what it is sending, tells its client where to resume, and closes. So a
//! slow reader never grows the server's memory. Chunked messages only queue their header (their
//! chunks are read from the store as the socket drains), so they cost next to nothing here.
//!
//! A subscriber that is catching up from history (it resumed from a position) is not
//! *following* yet: the hub only notes the newest position for it, since history has those
//! messages anyway, and starts queueing once the subscriber has caught up.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use herald_store::{ChannelBody, ChannelMessage, ChannelNotice};

use super::Outgoing;
use tokio::sync::mpsc;

const SHARDS: usize = 64;

/// What a queued message counts against its subscriber's budget: its inline payload plus a
/// fixed share for the header and the queue entry.
pub fn queued_cost(message: &ChannelMessage) -> usize {
    let payload = match &message.body {
        ChannelBody::Inline(data) => data.len(),
        ChannelBody::Chunked { .. } => 0,
    };
    payload + message.content_type.len() + 128
}

/// The part of a subscriber the hub and the connection share.
struct Shared {
    /// Bytes queued and not yet taken by the connection.
    queued: AtomicUsize,
    /// Set when the hub cut the subscriber off for going over its budget.
    cut: AtomicBool,
    /// Whether messages are queued (else only `seen_head` is raised).
    following: AtomicBool,
    /// The newest position the hub has seen for the channel since the subscription began.
    seen_head: AtomicU64,
    /// The position the subscriber has sent up to: older messages are not queued for it (it
    /// may run ahead of the hub, reading recent messages or history).
    sent: AtomicU64,
}

struct Entry {
    id: u64,
    tx: mpsc::UnboundedSender<Arc<Outgoing>>,
    shared: Arc<Shared>,
}

type Subscribers = HashMap<Arc<str>, Vec<Entry>>;

/// Most recent messages kept per channel with subscribers on this node, and their bytes: a
/// subscriber a little behind reads them from here, rendered once for all, not from the store.
const RECENT_MESSAGES: usize = 4096;
const RECENT_BYTES: usize = 8 * 1024 * 1024;

/// A channel's most recent messages on this node, in position order.
#[derive(Default)]
struct Recent {
    messages: std::collections::VecDeque<Arc<Outgoing>>,
    bytes: usize,
}

pub struct ChannelHub {
    shards: Vec<RwLock<Subscribers>>,
    recent: Vec<std::sync::Mutex<HashMap<Arc<str>, Recent>>>,
    hasher: RandomState,
    next_id: AtomicU64,
    budget: usize,
}

/// A connection's registration on one channel; dropping it unregisters the connection.
pub struct ChannelSubscription {
    hub: Arc<ChannelHub>,
    channel: Arc<str>,
    id: u64,
    shared: Arc<Shared>,
    messages: mpsc::UnboundedReceiver<Arc<Outgoing>>,
}

impl ChannelSubscription {
    /// The next queued message without waiting, its cost released.
    pub fn try_next(&mut self) -> Option<Arc<Outgoing>> {
        let message = self.messages.try_recv().ok()?;
        self.release(&message);
        Some(message)
    }

    /// The next queued message; `None` once the hub dropped this subscriber (cut off, or the
    /// hub is gone). Cancel-safe.
    pub async fn next(&mut self) -> Option<Arc<Outgoing>> {
        let message = self.messages.recv().await?;
        self.release(&message);
        Some(message)
    }

    fn release(&self, message: &ChannelMessage) {
        self.shared
            .queued
            .fetch_sub(queued_cost(message), Ordering::Relaxed);
    }

    /// Tells the hub this subscriber has sent everything up to `position`.
    pub fn sent_up_to(&self, position: u64) {
        self.shared.sent.store(position, Ordering::Relaxed);
    }

    /// Recent messages of this subscriber's channel (see [`ChannelHub::recent`]).
    pub fn recent(&self, from: u64, max: usize, fresh_from_ms: i64) -> Vec<Arc<Outgoing>> {
        self.hub.recent(&self.channel, from, max, fresh_from_ms)
    }

    /// Whether the hub cut this subscriber off for falling behind its budget.
    pub fn cut_off(&self) -> bool {
        self.shared.cut.load(Ordering::Relaxed)
    }

    /// Starts queueing messages for this subscriber; returns the newest position the hub saw
    /// before (every later one is queued).
    pub fn follow(&self) -> u64 {
        self.shared.following.store(true, Ordering::SeqCst);
        self.shared.seen_head.load(Ordering::SeqCst)
    }
}

impl Drop for ChannelSubscription {
    fn drop(&mut self) {
        self.hub.remove(&self.channel, self.id);
        metrics::gauge!("herald_channel_subscribers").decrement(1.0);
    }
}

impl ChannelHub {
    /// A hub whose subscribers may each have `budget` bytes queued.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            recent: (0..SHARDS)
                .map(|_| std::sync::Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            budget,
        })
    }

    fn shard(&self, channel: &str) -> &RwLock<Subscribers> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    fn recent_shard(&self, channel: &str) -> &std::sync::Mutex<HashMap<Arc<str>, Recent>> {
        &self.recent[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Up to `max` recent messages of `channel` from position `from` on, without holes, all
    /// published at or after `fresh_from_ms`; empty when `from` is not among them.
    pub fn recent(
        &self,
        channel: &str,
        from: u64,
        max: usize,
        fresh_from_ms: i64,
    ) -> Vec<Arc<Outgoing>> {
        let shard = self.recent_shard(channel).lock().expect("recent lock");
        let Some(recent) = shard.get(channel) else {
            return Vec::new();
        };
        let Some(first) = recent.messages.front().map(|m| m.position) else {
            return Vec::new();
        };
        let Some(start) = from
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for (expected, message) in (from..).zip(recent.messages.iter().skip(start).take(max)) {
            if message.position != expected || message.published_ms < fresh_from_ms {
                break;
            }
            found.push(message.clone());
        }
        found
    }

    fn remember(&self, channel: &Arc<str>, message: &Arc<Outgoing>) {
        let mut shard = self.recent_shard(channel).lock().expect("recent lock");
        let recent = shard.entry(channel.clone()).or_default();
        if recent
            .messages
            .back()
            .is_some_and(|last| last.position + 1 != message.position)
        {
            // A hole (a lost notice) or positions started over: keep only what follows.
            recent.messages.clear();
            recent.bytes = 0;
        }
        recent.bytes += queued_cost(message);
        recent.messages.push_back(message.clone());
        while recent.messages.len() > RECENT_MESSAGES || recent.bytes > RECENT_BYTES {
            let Some(old) = recent.messages.pop_front() else {
                break;
            };
            recent.bytes -= queued_cost(&old);
        }
    }

    /// Registers a subscriber; `following` says whether to queue messages for it from now, or
    /// only once it calls [`ChannelSubscription::follow`].
    pub fn subscribe(self: &Arc<Self>, channel: &str, following: bool) -> ChannelSubscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let channel: Arc<str> = Arc::from(channel);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            cut: AtomicBool::new(false),
            following: AtomicBool::new(following),
            seen_head: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        self.shard(&channel)
            .write()
            .expect("channel hub lock")
            .entry(channel.clone())
            .or_default()
            .push(Entry {
                id,
                tx,
                shared: shared.clone(),
            });
        metrics::gauge!("herald_channel_subscribers").increment(1.0);
        ChannelSubscription {
            hub: self.clone(),
            channel,
            id,
            shared,
            messages: rx,
        }
    }

    fn remove(&self, channel: &str, id: u64) {
        let mut shard = self.shard(channel).write().expect("channel hub lock");
        if let Some(subs) = shard.get_mut(channel) {
            subs.retain(|e| e.id != id);
            if subs.is_empty() {
                shard.remove(channel);
                self.recent_shard(channel)
                    .lock()
                    .expect("recent lock")
                    .remove(channel);
            }
        }
    }

    /// Subscribers on this node (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .expect("channel hub lock")
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Queues a published message for the channel's subscribers, cutting off those it would
    /// take past their budget.
    pub fn dispatch(&self, notice: ChannelNotice) {
        let cost = queued_cost(&notice.message);
        let outgoing = Outgoing::new(notice.message.clone());
        let mut lagging = Vec::new();
        {
            let shard = self
                .shard(&notice.channel)
                .read()
                .expect("channel hub lock");
            let Some(subs) = shard.get(&notice.channel) else {
                return;
            };
            self.remember(&notice.channel, &outgoing);
            for entry in subs {
                // Raised before `following` is read, and `follow` does the opposite: a message
                // is either queued or seen by the subscriber's `follow`.
                entry
                    .shared
                    .seen_head
                    .fetch_max(notice.message.position, Ordering::SeqCst);
                if !entry.shared.following.load(Ordering::SeqCst)
                    || notice.message.position <= entry.shared.sent.load(Ordering::Relaxed)
                {
                    continue;
                }
                let queued = entry.shared.queued.fetch_add(cost, Ordering::Relaxed) + cost;
                if queued > self.budget {
                    entry.shared.queued.fetch_sub(cost, Ordering::Relaxed);
                    entry.shared.cut.store(true, Ordering::Relaxed);
                    lagging.push(entry.id);
                } else if entry.tx.send(outgoing.clone()).is_err() {
                    entry.shared.queued.fetch_sub(cost, Ordering::Relaxed);
                }
            }
        }
        for id in lagging {
            // Dropping the sender ends the subscriber's queue; it sends its client a cutoff.
            self.remove(&notice.channel, id);
            metrics::counter!("herald_channel_cutoffs_total").increment(1);
            tracing::debug!(channel = %notice.channel, "channel subscriber fell behind its buffer; cut off");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn notice(channel: &str, position: u64, bytes: usize) -> ChannelNotice {
        ChannelNotice {
            channel: channel.into(),
            message: Arc::new(ChannelMessage {
                position,
                published_ms: 0,
                content_type: "text/plain".into(),
                bytes: bytes as u64,
                body: ChannelBody::Inline(Bytes::from(vec![b'x'; bytes])),
            }),
        }
    }

    #[tokio::test]
    async fn routes_by_channel() {
        let hub = ChannelHub::new(1 << 20);
        let mut a = hub.subscribe("a", true);
        let mut b = hub.subscribe("b", true);
        hub.dispatch(notice("a", 1, 3));
        assert_eq!(a.next().await.unwrap().position, 1);
        assert!(b.try_next().is_none());
        assert_eq!(hub.subscribers(), 2);
        drop(a);
        assert_eq!(hub.subscribers(), 1);
    }

    #[tokio::test]
    async fn a_subscriber_over_its_budget_is_cut_off() {
        let hub = ChannelHub::new(1000);
        let mut slow = hub.subscribe("c", true);
        for position in 1..=5 {
            hub.dispatch(notice("c", position, 300));
        }
        assert!(slow.cut_off());
        assert_eq!(hub.subscribers(), 0);
        assert_eq!(slow.next().await.unwrap().position, 1);
        assert_eq!(slow.next().await.unwrap().position, 2);
        assert!(
            slow.next().await.is_none(),
            "the queue ends after what it held"
        );
    }

    #[tokio::test]
    async fn recent_messages_are_kept_in_order_without_holes() {
        let hub = ChannelHub::new(1 << 20);
        let _sub = hub.subscribe("r", true);
        for position in 1..=5 {
            hub.dispatch(notice("r", position, 10));
        }
        let positions =
            |found: Vec<Arc<Outgoing>>| -> Vec<u64> { found.iter().map(|m| m.position).collect() };
        assert_eq!(positions(hub.recent("r", 2, 10, 0)), vec![2, 3, 4, 5]);
        assert_eq!(positions(hub.recent("r", 4, 1, 0)), vec![4]);
        assert!(hub.recent("r", 6, 10, 0).is_empty(), "not yet published");
        assert!(
            hub.recent("r", 1, 10, 1).is_empty(),
            "older than the history"
        );
        assert!(hub.recent("other", 1, 10, 0).is_empty());
        // A lost notice leaves a hole: only what follows it is kept.
        hub.dispatch(notice("r", 8, 10));
        assert!(hub.recent("r", 2, 10, 0).is_empty());
        assert_eq!(positions(hub.recent("r", 8, 10, 0)), vec![8]);
        // Shared: every subscriber gets the same rendering.
        let a = hub.recent("r", 8, 1, 0);
        let b = hub.recent("r", 8, 1, 0);
        assert!(Arc::ptr_eq(&a[0], &b[0]));
        // Without subscribers, the channel's recent messages go.
        drop(_sub);
        assert!(hub.recent("r", 8, 10, 0).is_empty());
    }
}
