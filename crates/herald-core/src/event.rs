//! What happens in a user's feed, as the store records it and live connections announce it.

use std::sync::Arc;

use crate::notification::Notification;

/// The two sequences a user's feed is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The user's own sequence: their targeted notifications and their actions.
    User,
    /// The global sequence: notifications to everyone.
    Global,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A new notification (or, on replay, one the reader missed).
    Notification {
        notification: Arc<Notification>,
        read: bool,
    },
    /// One notification was marked read.
    Read { id: String },
    /// Everything up to this point was marked read.
    ReadAll,
    /// A notification was archived (removed from the inbox).
    Archived { id: String },
}

impl EventBody {
    /// The event's name on the wire (SSE `event:` field, WebSocket `type`).
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Notification { .. } => "notification",
            EventBody::Read { .. } => "read",
            EventBody::ReadAll => "read_all",
            EventBody::Archived { .. } => "archived",
        }
    }
}

/// One step in a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Whose feed: `None` for the global feed, which every user reads.
    pub user: Option<Arc<str>>,
    pub feed: Feed,
    /// Sequence number in that feed.
    pub seq: u64,
    /// The user's unread count right after this event, when the store knows it cheaply.
    pub unread: Option<u64>,
    pub body: EventBody,
    /// A global event for one campaign's list only (its shared entry): each connection asks
    /// whether its user is listed.
    pub audience: Option<Arc<str>>,
}
