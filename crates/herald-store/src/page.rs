//! Inbox pages merged from a user's own feed and the global feed. Shared by every engine.

use std::sync::Arc;

use herald_core::event::Feed;
use herald_core::{Cursor, EventBody, FeedEvent, Notification};

use crate::{InboxItem, InboxPage};

/// A candidate entry for a page, from one of the two feeds, newest first within its feed.
pub struct Candidate {
    pub seq: u64,
    /// `None` when the content is past its retention: the entry is skipped.
    pub notification: Option<Arc<Notification>>,
    pub read: bool,
}

/// Merges the two feeds newest first by creation time. Each feed pages on by its own sequence
/// number, so nothing is skipped or repeated between pages. Callers pass up to `limit + 1`
/// candidates per feed; a leftover candidate means another page exists.
pub fn merge_page(
    own: Vec<Candidate>,
    everyone: Vec<Candidate>,
    before: Cursor,
    limit: usize,
    unread: u64,
) -> InboxPage {
    let (mut i, mut j) = (0, 0);
    let mut next = before;
    let mut items = Vec::with_capacity(limit);
    while items.len() < limit && (i < own.len() || j < everyone.len()) {
        let take_own = match (own.get(i), everyone.get(j)) {
            (Some(a), Some(b)) => created(a) >= created(b),
            (Some(_), None) => true,
            _ => false,
        };
        let c = if take_own {
            i += 1;
            next.user = own[i - 1].seq;
            &own[i - 1]
        } else {
            j += 1;
            next.global = everyone[j - 1].seq;
            &everyone[j - 1]
        };
        if let Some(n) = &c.notification {
            items.push(InboxItem {
                notification: n.clone(),
                read: c.read,
            });
        }
    }
    let more = i < own.len() || j < everyone.len();
    InboxPage {
        items,
        unread,
        next: more.then_some(next),
    }
}

fn created(c: &Candidate) -> (i64, &str) {
    c.notification
        .as_ref()
        .map_or((i64::MIN, ""), |n| (n.created_at, n.id.as_str()))
}

/// A replay's events: the user's own in sequence order, then the global ones (already in order).
pub fn replay_events(
    user: &str,
    mut own: Vec<(u64, EventBody)>,
    global: Vec<(u64, Arc<Notification>, bool)>,
) -> Vec<FeedEvent> {
    own.sort_by_key(|(seq, _)| *seq);
    let user: Arc<str> = Arc::from(user);
    let mut events: Vec<FeedEvent> = own
        .into_iter()
        .map(|(seq, body)| FeedEvent {
            user: Some(user.clone()),
            feed: Feed::User,
            seq,
            unread: None,
            body,
            audience: None,
        })
        .collect();
    events.extend(
        global
            .into_iter()
            .map(|(seq, notification, read)| FeedEvent {
                user: None,
                feed: Feed::Global,
                seq,
                unread: None,
                body: EventBody::Notification { notification, read },
                audience: None,
            }),
    );
    events
}
