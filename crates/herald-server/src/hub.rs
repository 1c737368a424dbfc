//! The realtime hub: which live connections belong to which user, and handing each feed event
//! to them. Every connection has a bounded buffer; a connection whose buffer is full is cut off
//! (its client resumes from its last position), so a slow reader never grows the server's memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use herald_core::FeedEvent;
use tokio::sync::mpsc;

const SHARDS: usize = 64;

/// A feed event on its way to live connections, with a cache for its rendering: an event to
/// everyone is serialized once, not once per connection.
pub struct LiveEvent {
    pub event: FeedEvent,
    pub rendered: OnceLock<String>,
}

type Sender = mpsc::Sender<Arc<LiveEvent>>;
type Subscribers = HashMap<Arc<str>, Vec<(u64, Sender)>>;

pub struct Hub {
    shards: Vec<RwLock<Subscribers>>,
    hasher: RandomState,
    next_id: AtomicU64,
    buffer: usize,
}

/// A live connection's registration; dropping it unregisters the connection.
pub struct Subscription {
    hub: Arc<Hub>,
    user: Arc<str>,
    id: u64,
    pub events: mpsc::Receiver<Arc<LiveEvent>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.hub.remove(&self.user, self.id) {
            metrics::gauge!("herald_stream_connections").decrement(1.0);
        }
    }
}

impl Hub {
    pub fn new(buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            buffer,
        })
    }

    fn shard(&self, user: &str) -> &RwLock<Subscribers> {
        &self.shards[(self.hasher.hash_one(user) as usize) % SHARDS]
    }

    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user: Arc<str> = Arc::from(user);
        self.shard(&user)
            .write()
            .expect("hub lock")
            .entry(user.clone())
            .or_default()
            .push((id, tx));
        metrics::gauge!("herald_stream_connections").increment(1.0);
        Subscription {
            hub: self.clone(),
            user,
            id,
            events: rx,
        }
    }

    /// Removes one connection; says whether it was still registered.
    fn remove(&self, user: &str, id: u64) -> bool {
        let mut shard = self.shard(user).write().expect("hub lock");
        let Some(subs) = shard.get_mut(user) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|(sid, _)| *sid != id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            shard.remove(user);
        }
        removed
    }

    /// Closes every live connection; each client reconnects and replays from its last position.
    pub fn disconnect_all(&self) -> usize {
        let mut closed = 0;
        for shard in &self.shards {
            let mut shard = shard.write().expect("hub lock");
            closed += shard.values().map(Vec::len).sum::<usize>();
            shard.clear();
        }
        metrics::gauge!("herald_stream_connections").decrement(closed as f64);
        metrics::counter!("herald_stream_disconnects_total", "reason" => "resync")
            .increment(closed as u64);
        closed
    }

    /// Connected users' connection count (for tests and metrics).
    pub fn connections(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .expect("hub lock")
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Hands an event to its user's connections, or to every connection for the global feed.
    pub fn dispatch(&self, event: FeedEvent) {
        let user = event.user.clone();
        let event = Arc::new(LiveEvent {
            event,
            rendered: OnceLock::new(),
        });
        match user {
            Some(user) => self.send_in(self.shard(&user), Some(&user), &event),
            None => {
                for shard in &self.shards {
                    self.send_in(shard, None, &event);
                }
            }
        }
    }

    fn send_in(
        &self,
        shard: &RwLock<Subscribers>,
        user: Option<&Arc<str>>,
        event: &Arc<LiveEvent>,
    ) {
        let mut lagging: Vec<(Arc<str>, u64)> = Vec::new();
        {
            let shard = shard.read().expect("hub lock");
            let mut offer = |user: &Arc<str>, subs: &Vec<(u64, Sender)>| {
                for (id, tx) in subs {
                    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event.clone()) {
                        lagging.push((user.clone(), *id));
                    }
                }
            };
            match user {
                Some(user) => {
                    if let Some(subs) = shard.get(user) {
                        offer(user, subs);
                    }
                }
                None => shard.iter().for_each(|(user, subs)| offer(user, subs)),
            }
        }
        for (user, id) in lagging {
            // Dropping the sender ends the connection once it has written what it holds.
            if self.remove(&user, id) {
                metrics::gauge!("herald_stream_connections").decrement(1.0);
                metrics::counter!("herald_stream_disconnects_total", "reason" => "slow")
                    .increment(1);
                tracing::debug!(user = %user, "live connection fell behind its buffer; disconnected");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::EventBody;
    use herald_core::event::Feed;

    fn event(user: Option<&str>, seq: u64) -> FeedEvent {
        FeedEvent {
            user: user.map(Arc::from),
            feed: if user.is_some() {
                Feed::User
            } else {
                Feed::Global
            },
            seq,
            unread: None,
            body: EventBody::ReadAll,
            audience: None,
        }
    }

    #[tokio::test]
    async fn routes_by_user_and_broadcasts_global() {
        let hub = Hub::new(8);
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.dispatch(event(Some("a"), 1));
        hub.dispatch(event(None, 1));
        assert_eq!(a.events.recv().await.unwrap().event.seq, 1);
        assert_eq!(a.events.recv().await.unwrap().event.feed, Feed::Global);
        assert_eq!(b.events.recv().await.unwrap().event.feed, Feed::Global);
        assert!(b.events.try_recv().is_err(), "b never sees a's events");
        assert_eq!(hub.connections(), 2);
        drop(a);
        assert_eq!(hub.connections(), 1);
    }

    #[tokio::test]
    async fn a_full_buffer_disconnects_the_reader() {
        let hub = Hub::new(2);
        let mut slow = hub.subscribe("slow");
        for seq in 1..=5 {
            hub.dispatch(event(Some("slow"), seq));
        }
        assert_eq!(hub.connections(), 0, "cut off at its buffer");
        assert_eq!(slow.events.recv().await.unwrap().event.seq, 1);
        assert_eq!(slow.events.recv().await.unwrap().event.seq, 2);
        assert!(
            slow.events.recv().await.is_none(),
            "the stream ends after what it held"
        );
    }
}
