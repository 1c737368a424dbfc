//! The values that cross the storage contract.

use std::sync::Arc;

use herald_core::{Channel, Cursor, Notification, Position, Priority};

/// What a store tells the realtime hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// A feed changed.
    Event(herald_core::FeedEvent),
    /// Events may have been lost (e.g. a dropped subscription): live connections must resync by
    /// reconnecting and replaying from their last position.
    Resync,
}

/// A notification to store, with its idempotency record if the publisher gave a key.
#[derive(Debug, Clone)]
pub struct Accept {
    pub notification: Notification,
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    pub key: String,
    /// Digest of the request content: a retry must match it.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    Created(Arc<Notification>),
    /// The idempotency key was seen before with the same content: this is that notification's id.
    Duplicate {
        id: String,
    },
}

/// Opaque id of a queued job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(pub String);

/// Fan-out work for one accepted notification.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub lane: Priority,
    pub notification: Arc<Notification>,
    /// Where a previous run of this job stopped (for topic fan-out: the last subscriber done).
    pub cursor: Option<String>,
}

/// How a feed entry is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFlags {
    /// Listed in the inbox and counted as unread.
    pub inbox: bool,
    /// Announced to live connections and replayed on resume.
    pub live: bool,
}

impl EntryFlags {
    pub const BOTH: EntryFlags = EntryFlags {
        inbox: true,
        live: true,
    };

    /// The feed channels a notification is sent on: inbox, realtime.
    pub fn of(n: &Notification) -> Self {
        Self {
            inbox: n.channels.contains(Channel::Inbox),
            live: n.channels.contains(Channel::Realtime),
        }
    }

    pub fn bits(self) -> u8 {
        u8::from(self.inbox) | (u8::from(self.live) << 1)
    }

    pub fn from_bits(bits: u8) -> Self {
        Self {
            inbox: bits & 1 != 0,
            live: bits & 2 != 0,
        }
    }
}

/// One notification into one user's feed.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub user: String,
    pub notification: Arc<Notification>,
    pub flags: EntryFlags,
}

/// A delivery that was new.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub user: String,
    pub seq: u64,
    pub flags: EntryFlags,
}

#[derive(Debug, Clone)]
pub struct InboxItem {
    pub notification: Arc<Notification>,
    pub read: bool,
}

#[derive(Debug, Clone)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    pub unread: u64,
    /// Where the next (older) page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A change a user made to their feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub unread: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeOutcome {
    /// The user has no such notification.
    NotFound,
    /// Nothing to change (e.g. already read).
    Unchanged {
        unread: u64,
    },
    Changed(Change),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// What the reader missed, oldest first; its last element's position is the new head.
    Events {
        events: Vec<herald_core::FeedEvent>,
        head: Position,
    },
    /// History no longer reaches back to the reader's position: it must refetch.
    Gap { head: Position },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PurgeReport {
    pub notifications: u64,
    pub idempotency_keys: u64,
    /// Frequency-cap counters with nothing left in their window (engines whose keys do not
    /// expire by themselves; Redis reports 0).
    pub caps: u64,
    /// Collapse-key records past their keep time (likewise; Redis reports 0).
    pub collapse_keys: u64,
    /// Realtime channel messages past their history time (Redis reports 0: keys expire).
    pub channel_messages: u64,
}

/// A listed user whose preferences keep a campaign's shared entry out of some channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub user: String,
    /// Not listed in their inbox.
    pub inbox: bool,
    /// Not announced on their live streams.
    pub live: bool,
}

impl Exclusion {
    /// As the engines store it: 1 for the inbox, 2 for live.
    pub fn bits(&self) -> u8 {
        u8::from(self.inbox) | (u8::from(self.live) << 1)
    }
}

/// What [`crate::Store::add_recipients`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipientsAdded {
    /// Users appended to the list.
    pub added: u64,
    /// Users that were listed already.
    pub duplicates: u64,
}
