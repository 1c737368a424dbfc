//! A live connection's session, shared by SSE and WebSocket: where the client stands, what it
//! still has to be sent, and how each feed event is rendered on the wire.
//!
//! A session subscribes to the hub *before* it reads history, then drops any live event whose
//! sequence number it has already passed: nothing falls between replay and live, nothing repeats.

use std::collections::VecDeque;
use std::sync::Arc;

use herald_core::event::Feed;
use herald_core::{Channel, EventBody, FeedEvent, Position};
use herald_store::{Replay, Store, StoreError};
use serde_json::json;
use tokio::sync::watch;

use crate::hub::{LiveEvent, Subscription};
use crate::problem::ApiResult;
use crate::state::AppState;

/// One message for the client: SSE `id`/`event`/`data`, or a WebSocket JSON object.
pub struct Outgoing {
    pub name: &'static str,
    pub position: Position,
    /// A JSON object.
    pub data: String,
}

impl Outgoing {
    /// The WebSocket form: the data object with `type` and `position` added.
    pub fn ws_json(&self) -> String {
        let rest = self.data.strip_prefix('{').unwrap_or("}");
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!(
            r#"{{"type":"{}","position":"{}"{sep}{rest}"#,
            self.name, self.position
        )
    }
}

pub struct LiveSession {
    store: Arc<dyn Store>,
    user: String,
    subscription: Subscription,
    position: Position,
    unread: u64,
    pending: VecDeque<Outgoing>,
}

impl LiveSession {
    /// Starts a session at the feed's head, or resumes it after `last` (replaying what was
    /// missed, or telling the client to refetch when history does not reach back that far).
    pub async fn open(state: &AppState, user: &str, last: Option<Position>) -> ApiResult<Self> {
        // Subscribe first, then read the position, then the count: an event committed in between
        // is either covered by the position (skipped as seen, and in the count) or arrives live
        // with its own count.
        let subscription = state.hub.subscribe(user);
        let mut session = LiveSession {
            store: state.store.clone(),
            user: user.to_owned(),
            subscription,
            position: Position::default(),
            unread: 0,
            pending: VecDeque::new(),
        };
        let mut replayed = Vec::new();
        let mut after_replay = None;
        let status = match last {
            None => {
                session.position = state.store.head(user).await?;
                ("ready", None)
            }
            Some(last) => match state
                .store
                .replay(user, last, state.config.stream.replay_max)
                .await?
            {
                Replay::Events { events, head } => {
                    session.position = last;
                    replayed = events;
                    after_replay = Some(head);
                    ("ready", None)
                }
                Replay::Gap { head } => {
                    session.position = head;
                    (
                        "refetch",
                        Some(
                            "events since your last position are no longer kept; reload the inbox",
                        ),
                    )
                }
            },
        };
        session.unread = state.store.unread(user).await?;
        for event in &replayed {
            if let Some(out) = session.apply(event, None, true, None) {
                session.pending.push_back(out);
            }
        }
        if let Some(head) = after_replay {
            session.position = head;
        }
        session.push_status(status.0, status.1);
        Ok(session)
    }

    fn push_status(&mut self, name: &'static str, reason: Option<&str>) {
        let mut data = json!({ "position": self.position.to_string(), "unread": self.unread });
        if let Some(reason) = reason {
            data["reason"] = json!(reason);
        }
        self.pending.push_back(Outgoing {
            name,
            position: self.position,
            data: data.to_string(),
        });
    }

    /// The next message for the client; `None` when the connection should close (cut off as a
    /// slow reader, or the server is shutting down).
    pub async fn next(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Outgoing> {
        if let Some(out) = self.pending.pop_front() {
            return Some(out);
        }
        loop {
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                live = self.subscription.events.recv() => {
                    let live = live?;
                    let event = &live.event;
                    if event.seq <= self.seen(event.feed) {
                        continue;
                    }
                    let (shown, unread) = match self.view(event).await {
                        Ok(view) => view,
                        Err(e) => {
                            // The client resumes from its last position and misses nothing.
                            tracing::warn!(error = %e, "cannot judge a live event; closing the stream");
                            return None;
                        }
                    };
                    if !shown {
                        *self.seen_mut(event.feed) = event.seq;
                        continue;
                    }
                    if let Some(out) = self.apply(event, Some(&live), false, unread) {
                        return Some(out);
                    }
                }
                _ = shutdown.changed() => return None,
            }
        }
    }

    fn seen(&self, feed: Feed) -> u64 {
        match feed {
            Feed::User => self.position.user,
            Feed::Global => self.position.global,
        }
    }

    fn seen_mut(&mut self, feed: Feed) -> &mut u64 {
        match feed {
            Feed::User => &mut self.position.user,
            Feed::Global => &mut self.position.global,
        }
    }

    /// Whether this user is shown a live event (a campaign's shared entry only if they are on
    /// its list and live is on for them), and their unread count when the event does not carry
    /// one that the store can give exactly.
    async fn view(&self, event: &FeedEvent) -> Result<(bool, Option<u64>), StoreError> {
        if let Some(campaign) = &event.audience {
            if !self
                .store
                .campaign_shows(campaign, &self.user, Channel::Realtime)
                .await?
            {
                return Ok((false, None));
            }
            return Ok((true, Some(self.store.unread(&self.user).await?)));
        }
        if event.feed == Feed::User && event.unread.is_none() {
            return Ok((true, Some(self.store.unread(&self.user).await?)));
        }
        Ok((true, None))
    }

    /// Advances the position past `event` and renders it; `None` for an event already passed.
    /// `unread` overrides the count the event carries.
    fn apply(
        &mut self,
        event: &FeedEvent,
        live: Option<&Arc<LiveEvent>>,
        replayed: bool,
        unread: Option<u64>,
    ) -> Option<Outgoing> {
        let seen = self.seen_mut(event.feed);
        if event.seq <= *seen {
            return None;
        }
        *seen = event.seq;
        match unread.or(event.unread) {
            Some(unread) => self.unread = unread,
            // A new notification to everyone is unread for every user; replayed ones are already counted.
            None if !replayed && matches!(event.body, EventBody::Notification { .. }) => {
                self.unread += 1
            }
            None => {}
        }
        let data = match &event.body {
            EventBody::Notification { notification, read } => {
                let view = match live {
                    Some(live) => live
                        .rendered
                        .get_or_init(|| {
                            serde_json::to_string(&notification.view(*read))
                                .expect("view serializes")
                        })
                        .clone(),
                    None => {
                        serde_json::to_string(&notification.view(*read)).expect("view serializes")
                    }
                };
                format!(r#"{{"notification":{view},"unread":{}}}"#, self.unread)
            }
            EventBody::Read { id } | EventBody::Archived { id } => {
                json!({ "id": id, "unread": self.unread }).to_string()
            }
            EventBody::ReadAll => json!({ "unread": self.unread }).to_string(),
        };
        Some(Outgoing {
            name: event.body.name(),
            position: self.position,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_form_adds_type_and_position() {
        let out = Outgoing {
            name: "read_all",
            position: Position::new(3, 1),
            data: r#"{"unread":0}"#.into(),
        };
        assert_eq!(
            out.ws_json(),
            r#"{"type":"read_all","position":"3-1","unread":0}"#
        );
        let empty = Outgoing {
            name: "x",
            position: Position::new(0, 0),
            data: "{}".into(),
        };
        assert_eq!(empty.ws_json(), r#"{"type":"x","position":"0-0"}"#);
    }
}
