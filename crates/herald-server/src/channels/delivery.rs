//! One subscriber's delivery loop, shared by SSE and WebSocket: where the client stands in its
//! channel, and what it is sent next.
//!
//! The loop subscribes to the hub *before* it reads the channel's head, so nothing published in
//! between is missed. Live messages that continue the client's position are sent from the hub's
//! queue; anything else (a jump in positions because the hub's feed is lossy, a resume, catching
//! up after falling behind) is read from the store's history, at most `read_max` messages at a
//! time. Chunked messages are read from the store one chunk per call, so only as fast as the
//! socket takes them. When the client's position is older than the history, it gets a gap.
//! A subscriber that resumes from a position catches up from history first, while the hub only
//! notes the newest position for it, and follows the hub's queue once it has caught up: a burst
//! published while it catches up costs it nothing.
//!
//! [`Delivery::next`] is cancel-safe: it changes its state only after each await completes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_store::{ChannelBody, Store};
use tokio::sync::watch;

use super::Outgoing;
use super::hub::{ChannelSubscription, queued_cost};
use crate::problem::ApiResult;
use crate::state::AppState;

/// An idle subscriber reads its channel this often (plus up to a second, so subscribers spread
/// out), in case the hub's lossy feed dropped the notice of the last message.
const POLL: Duration = Duration::from_secs(4);
/// Most messages taken at once from the hub's recent messages (within the subscriber's buffer).
const RECENT_READ: usize = 128;

/// What to send the client next.
pub enum Out {
    /// A message whose payload is inline: all of it.
    Message { message: Arc<Outgoing>, data: Bytes },
    /// Chunk `index` (of `chunks`) of a chunked message.
    Chunk {
        message: Arc<Outgoing>,
        index: u32,
        chunks: u32,
        data: Bytes,
    },
    /// Positions `from..=to` are no longer in history. With `reset`, the channel was forgotten
    /// (idle) and started over: positions restart, the client's old ones mean nothing now.
    Gap { from: u64, to: u64, reset: bool },
    /// The subscriber fell behind its buffer; the last thing sent before the connection closes.
    Cutoff { resume_after: u64 },
}

pub struct Delivery {
    store: Arc<dyn Store>,
    channel: String,
    subscription: ChannelSubscription,
    /// The last position fully handed to the client.
    position: u64,
    /// The newest position known to exist.
    known_head: u64,
    /// Messages after `position` (and after `current`), in order, waiting to be sent.
    backlog: VecDeque<Arc<Outgoing>>,
    /// What the backlog holds, counted as the hub counts its queue; live messages join it
    /// only while it stays within the subscriber's buffer.
    backlog_bytes: usize,
    buffer_bytes: usize,
    history_ms: i64,
    /// The chunked message being sent, and its next chunk.
    current: Option<(Arc<Outgoing>, u32)>,
    /// Gaps to announce before anything else.
    pending: VecDeque<Out>,
    read_max: usize,
    need_read: bool,
    /// Whether the hub queues messages for us (else we are catching up from history).
    following: bool,
    cut_sent: bool,
    shutdown: watch::Receiver<bool>,
}

impl Delivery {
    /// Starts delivering `channel` after position `after`, or after its current head (only new
    /// messages) when `after` is `None`.
    pub async fn open(state: &AppState, channel: &str, after: Option<u64>) -> ApiResult<Self> {
        // A resuming subscriber catches up from history before it follows the hub's messages.
        let subscription = state.channel_hub.subscribe(channel, after.is_none());
        let (position, need_read) = match after {
            Some(after) => (after, true),
            None => {
                let now = herald_core::time::now_ms();
                (
                    state.store.channel_read(channel, 0, 0, now).await?.head,
                    false,
                )
            }
        };
        let channels = &state.config.channels;
        Ok(Self {
            store: state.store.clone(),
            channel: channel.to_owned(),
            subscription,
            position,
            known_head: position,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            buffer_bytes: channels.subscriber_buffer_bytes,
            history_ms: channels.history_seconds as i64 * 1000,
            current: None,
            pending: VecDeque::new(),
            read_max: (channels.subscriber_buffer_bytes / channels.chunk_bytes.max(1))
                .clamp(16, 256),
            need_read,
            following: after.is_none(),
            cut_sent: false,
            shutdown: state.shutdown.clone(),
        })
    }

    /// The last position fully handed to the client.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next thing to send; `None` when the connection should close (after a cutoff, on a
    /// storage error, or when the server shuts down).
    pub async fn next(&mut self) -> Option<Out> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            self.subscription.sent_up_to(self.position);
            if let Some(out) = self.pending.pop_front() {
                return Some(out);
            }
            if let Some((message, index)) = self.current.clone() {
                return self.chunk(message, index).await;
            }
            if self.cut_sent {
                return None;
            }
            if self.subscription.cut_off() {
                self.cut_sent = true;
                return Some(Out::Cutoff {
                    resume_after: self.position,
                });
            }
            while let Some(message) = self.subscription.try_next() {
                self.take_live(message);
            }
            if let Some(message) = self.pop_backlog() {
                if message.position <= self.position {
                    continue;
                }
                if message.position > self.position + 1 {
                    // Missing from what history gave us: expired, or trimmed by count.
                    let gap = Out::Gap {
                        from: self.position + 1,
                        to: message.position - 1,
                        reset: false,
                    };
                    self.position = message.position - 1;
                    self.backlog_bytes += queued_cost(&message);
                    self.backlog.push_front(message);
                    return Some(gap);
                }
                match &message.body {
                    ChannelBody::Inline(data) => {
                        self.position = message.position;
                        let data = data.clone();
                        return Some(Out::Message { message, data });
                    }
                    ChannelBody::Chunked { chunks: 0, .. } => {
                        self.position = message.position;
                        return Some(Out::Message {
                            message,
                            data: Bytes::new(),
                        });
                    }
                    ChannelBody::Chunked { .. } => {
                        self.current = Some((message, 0));
                        continue;
                    }
                }
            }
            if self.need_read || self.known_head > self.position {
                self.read().await?;
                continue;
            }
            if !self.following {
                // Caught up: from here the hub queues what is published; what it saw before
                // comes from history.
                self.following = true;
                let seen = self.subscription.follow();
                if seen > self.position {
                    self.known_head = self.known_head.max(seen);
                    continue;
                }
            }
            tokio::select! {
                message = self.subscription.next() => match message {
                    Some(message) => self.take_live(message),
                    // The hub dropped us: cut off (handled above), or it is gone.
                    None if self.subscription.cut_off() => {}
                    None => return None,
                },
                _ = tokio::time::sleep(POLL + Duration::from_millis(rand::random_range(0..1000))) => {
                    self.need_read = true;
                }
                _ = self.shutdown.changed() => return None,
            }
        }
    }

    /// A message from the hub: sent from the queue when it continues what the client will have,
    /// else only noted (history fills the hole).
    fn take_live(&mut self, message: Arc<Outgoing>) {
        let tail = match (self.backlog.back(), &self.current) {
            (Some(last), _) => last.position,
            (None, Some((current, _))) => current.position,
            (None, None) => self.position,
        };
        let cost = queued_cost(&message);
        if message.position == tail + 1 && self.backlog_bytes + cost <= self.buffer_bytes {
            self.backlog_bytes += cost;
            self.known_head = self.known_head.max(message.position);
            self.backlog.push_back(message);
        } else if message.position > tail {
            self.known_head = self.known_head.max(message.position);
        } else if message.position < tail {
            // An old position again: the channel may have been forgotten and started over.
            self.need_read = true;
        }
    }

    async fn chunk(&mut self, message: Arc<Outgoing>, index: u32) -> Option<Out> {
        let ChannelBody::Chunked { upload, chunks } = &message.body else {
            self.current = None;
            return None;
        };
        let chunks = *chunks;
        match self.store.channel_chunk(&self.channel, upload, index).await {
            Ok(Some(data)) => {
                if index + 1 >= chunks {
                    self.current = None;
                    self.position = message.position;
                } else {
                    self.current = Some((message.clone(), index + 1));
                }
                Some(Out::Chunk {
                    message,
                    index,
                    chunks,
                    data,
                })
            }
            Ok(None) => {
                // Swept while we sent it: the client drops the chunks it holds of this one.
                self.current = None;
                self.position = message.position;
                Some(Out::Gap {
                    from: message.position,
                    to: message.position,
                    reset: false,
                })
            }
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "cannot read a channel chunk; closing the subscriber");
                None
            }
        }
    }

    fn pop_backlog(&mut self) -> Option<Arc<Outgoing>> {
        let message = self.backlog.pop_front()?;
        self.backlog_bytes = self.backlog_bytes.saturating_sub(queued_cost(&message));
        Some(message)
    }

    /// Reads history after the client's position into the backlog.
    async fn read(&mut self) -> Option<()> {
        let after = self.position;
        let now = herald_core::time::now_ms();
        // What this node dispatched lately is here already, rendered once for every subscriber.
        let recent = self
            .subscription
            .recent(after + 1, RECENT_READ, now - self.history_ms);
        if !recent.is_empty() {
            self.need_read = false;
            for message in recent {
                let cost = queued_cost(&message);
                if !self.backlog.is_empty() && self.backlog_bytes + cost > self.buffer_bytes {
                    break;
                }
                self.known_head = self.known_head.max(message.position);
                self.backlog_bytes += cost;
                self.backlog.push_back(message);
            }
            return Some(());
        }
        let read = match self
            .store
            .channel_read(&self.channel, after, self.read_max, now)
            .await
        {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "cannot read channel history; closing the subscriber");
                return None;
            }
        };
        self.need_read = false;
        if read.head < after {
            // The channel was forgotten (idle) and has started over, or never reached `after`.
            self.pending.push_back(Out::Gap {
                from: 1,
                to: after,
                reset: true,
            });
            self.position = 0;
            self.known_head = read.head;
            self.backlog.clear();
            self.backlog_bytes = 0;
            return Some(());
        }
        self.known_head = read.head;
        let before = self.backlog.len();
        for message in read.messages.into_iter().filter(|m| m.position > after) {
            self.backlog_bytes += queued_cost(&message);
            self.backlog.push_back(Outgoing::new(Arc::new(message)));
        }
        if self.backlog.len() == before && read.head > after {
            // Everything after the client's position has expired.
            self.pending.push_back(Out::Gap {
                from: after + 1,
                to: read.head,
                reset: false,
            });
            self.position = read.head;
        }
        Some(())
    }
}
