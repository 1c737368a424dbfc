//! Reads of the embedded engine. They run on the caller's task against a consistent snapshot
//! and never wait for the writer.

use std::sync::Arc;

use fjall::{Database, Keyspace, Readable, Snapshot};
use herald_core::{Channel, Cursor, EventBody, Notification, Position};

use super::keys::{seq_suffix, user_key, user_prefix, user_seq};
use super::overlay::backend;
use super::recipients;
use super::records::*;
use crate::feed_state::{GlobalState, Memberships, UserMeta};
use crate::page::{Candidate, merge_page, replay_events};
use crate::{InboxPage, Replay, Result};

pub fn notification(keyspaces: &[Keyspace], id: &str) -> Result<Option<Arc<Notification>>> {
    match keyspaces[NOTIFICATIONS]
        .get(id.as_bytes())
        .map_err(backend)?
    {
        Some(raw) => Ok(Some(Arc::new(from_json(&raw)?))),
        None => Ok(None),
    }
}

fn notification_at(
    snap: &Snapshot,
    keyspaces: &[Keyspace],
    id: &str,
) -> Result<Option<Arc<Notification>>> {
    match snap
        .get(&keyspaces[NOTIFICATIONS], id.as_bytes())
        .map_err(backend)?
    {
        Some(raw) => Ok(Some(Arc::new(from_json(&raw)?))),
        None => Ok(None),
    }
}

pub fn user_meta(snap: &Snapshot, keyspaces: &[Keyspace], user: &str) -> Result<UserMeta> {
    match snap
        .get(&keyspaces[USERS], user.as_bytes())
        .map_err(backend)?
    {
        Some(raw) => from_json(&raw),
        None => Ok(UserMeta::default()),
    }
}

/// A user's memberships in these campaigns, as of the snapshot.
pub fn memberships(
    snap: &Snapshot,
    keyspaces: &[Keyspace],
    user: &str,
    campaigns: &[Arc<str>],
) -> Result<Memberships> {
    if campaigns.is_empty() {
        return Ok(Memberships::default());
    }
    recipients::memberships(
        |key| {
            Ok(snap
                .get(&keyspaces[RECIPIENTS], key)
                .map_err(backend)?
                .map(|v| v.to_vec()))
        },
        user,
        campaigns,
    )
}

pub fn inbox_page(
    db: &Database,
    keyspaces: &[Keyspace],
    global: &GlobalState,
    user: &str,
    before: Cursor,
    limit: usize,
) -> Result<InboxPage> {
    let snap = db.snapshot();
    let meta = user_meta(&snap, keyspaces, user)?;
    let memberships = memberships(&snap, keyspaces, user, &global.campaigns_after(0))?;
    let want = limit + 1; // one more than asked tells whether another page exists

    let mut own = Vec::with_capacity(want);
    let range = user_seq(user, 0)..user_seq(user, before.user);
    for guard in snap.range(&keyspaces[INBOX], range).rev() {
        let (key, value) = guard.into_inner().map_err(backend)?;
        let entry = Entry::decode(&value)?;
        if !entry.flags.inbox {
            continue;
        }
        let seq = seq_suffix(&key);
        own.push(Candidate {
            seq,
            notification: notification_at(&snap, keyspaces, &entry.id)?,
            read: meta.is_read(seq, entry.read),
        });
        if own.len() == want {
            break;
        }
    }

    let mut everyone = Vec::with_capacity(want);
    let top = before.global.min(global.head.saturating_add(1));
    for &(gseq, listed) in global.entries.iter().rev().skip_while(|(g, _)| *g >= top) {
        if !listed
            || meta.global_is_archived(gseq)
            || !global.shows(gseq, &memberships, Channel::Inbox)
        {
            continue;
        }
        let Some(raw) = snap
            .get(&keyspaces[GLOBAL], gseq.to_be_bytes())
            .map_err(backend)?
        else {
            continue;
        };
        let entry = Entry::decode(&raw)?;
        everyone.push(Candidate {
            seq: gseq,
            notification: notification_at(&snap, keyspaces, &entry.id)?,
            read: meta.global_is_read(gseq),
        });
        if everyone.len() == want {
            break;
        }
    }

    Ok(merge_page(
        own,
        everyone,
        before,
        limit,
        meta.unread + global.unread_for(&meta, &memberships),
    ))
}

pub fn replay(
    db: &Database,
    keyspaces: &[Keyspace],
    global: &GlobalState,
    user: &str,
    after: Position,
    max: usize,
) -> Result<Replay> {
    let snap = db.snapshot();
    let meta = user_meta(&snap, keyspaces, user)?;
    let head = Position::new(meta.seq, global.head);
    let ahead = after.user > meta.seq || after.global > global.head;
    let behind = after.user < meta.floor || after.global < global.floor;
    if ahead || behind {
        return Ok(Replay::Gap { head });
    }
    let mut own: Vec<(u64, EventBody)> = Vec::new();
    let from = user_seq(user, after.user + 1);
    let to = user_seq(user, u64::MAX);
    for guard in snap.range(&keyspaces[INBOX], from.clone()..=to.clone()) {
        let (key, value) = guard.into_inner().map_err(backend)?;
        let entry = Entry::decode(&value)?;
        if !entry.flags.live {
            continue;
        }
        let seq = seq_suffix(&key);
        if let Some(n) = notification_at(&snap, keyspaces, &entry.id)? {
            own.push((
                seq,
                EventBody::Notification {
                    notification: n,
                    read: meta.is_read(seq, entry.read),
                },
            ));
        }
        if own.len() > max {
            return Ok(Replay::Gap { head });
        }
    }
    for guard in snap.range(&keyspaces[CHANGES], from..=to) {
        let (key, value) = guard.into_inner().map_err(backend)?;
        own.push((seq_suffix(&key), from_json::<ChangeRecord>(&value)?.body()));
        if own.len() > max {
            return Ok(Replay::Gap { head });
        }
    }
    let memberships = memberships(
        &snap,
        keyspaces,
        user,
        &global.campaigns_after(after.global),
    )?;
    let mut everyone = Vec::new();
    for &(gseq, _) in global.entries.iter().filter(|(g, _)| *g > after.global) {
        if !global.shows(gseq, &memberships, Channel::Realtime) {
            continue;
        }
        let Some(raw) = snap
            .get(&keyspaces[GLOBAL], gseq.to_be_bytes())
            .map_err(backend)?
        else {
            continue;
        };
        let entry = Entry::decode(&raw)?;
        if !entry.flags.live || meta.global_is_archived(gseq) {
            continue;
        }
        if let Some(n) = notification_at(&snap, keyspaces, &entry.id)? {
            everyone.push((gseq, n, meta.global_is_read(gseq)));
        }
        if own.len() + everyone.len() > max {
            return Ok(Replay::Gap { head });
        }
    }
    let events = replay_events(user, own, everyone);
    Ok(Replay::Events { events, head })
}

pub fn subscribers(
    keyspaces: &[Keyspace],
    topic: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let prefix = user_prefix(topic);
    let start = match after {
        Some(after) => {
            let mut k = user_key(topic, after.as_bytes());
            k.push(0); // strictly after
            k
        }
        None => prefix.clone(),
    };
    let mut out = Vec::with_capacity(limit.min(4096));
    for guard in keyspaces[TOPICS].range(start..) {
        let key = guard.key().map_err(backend)?;
        if !key.starts_with(&prefix) || out.len() == limit {
            break;
        }
        out.push(String::from_utf8(key[prefix.len()..].to_vec()).map_err(backend)?);
    }
    Ok(out)
}
