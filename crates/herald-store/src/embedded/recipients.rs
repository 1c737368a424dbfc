//! Campaign recipient lists in the embedded engine, built for lists of millions:
//! `recipients` maps `campaign \0 user` to the user's position (membership, so each user is
//! listed once), `recipient_positions` maps `campaign \0 position` to the user (the list in
//! upload order, positions big-endian so one range scan reads a page), and `recipient_counts`
//! holds each list's length, which is also the next position. An upload is one writer op, so
//! positions never collide, and its duplicate checks see its own earlier writes via the overlay.
//!
//! A member's value may carry a ninth byte: the channels in which the campaign's shared entry is
//! not shown to them (their preferences, judged at staging; see [`Membership`]).

use std::sync::Arc;

use fjall::Keyspace;

use super::keys::{user_key, user_seq};
use super::overlay::{Overlay, backend};
use super::records::*;
use crate::feed_state::{Membership, Memberships};
use crate::{Exclusion, RecipientsAdded, Result};

/// Appends the users not yet listed, in order, at the next positions.
pub fn add(overlay: &mut Overlay<'_>, campaign: &str, users: &[String]) -> Result<RecipientsAdded> {
    let first = decode_count(
        overlay
            .get(RECIPIENT_COUNTS, campaign.as_bytes())?
            .as_deref(),
    )?;
    let mut next = first;
    let mut duplicates = 0;
    for user in users {
        let member = user_key(campaign, user.as_bytes());
        if overlay.get(RECIPIENTS, &member)?.is_some() {
            duplicates += 1;
            continue;
        }
        overlay.put(RECIPIENTS, member, next.to_be_bytes().to_vec());
        overlay.put(
            RECIPIENT_POSITIONS,
            user_seq(campaign, next),
            user.as_bytes().to_vec(),
        );
        next += 1;
    }
    if next != first {
        overlay.put(
            RECIPIENT_COUNTS,
            campaign.as_bytes().to_vec(),
            next.to_be_bytes().to_vec(),
        );
    }
    Ok(RecipientsAdded {
        added: next - first,
        duplicates,
    })
}

/// Marks listed users out of the channels their preferences turned off; unlisted ones are
/// skipped (the shared entry does not reach them anyway).
pub fn exclude(overlay: &mut Overlay<'_>, campaign: &str, exclusions: &[Exclusion]) -> Result<()> {
    for x in exclusions {
        let member = user_key(campaign, x.user.as_bytes());
        let Some(mut value) = overlay.get(RECIPIENTS, &member)? else {
            continue;
        };
        let bits = value.get(8).copied().unwrap_or(0) | x.bits();
        value.truncate(8);
        value.push(bits);
        overlay.put(RECIPIENTS, member, value);
    }
    Ok(())
}

/// A user's memberships in `campaigns`, read through `get` (a snapshot, or the writer's overlay).
pub fn memberships(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
    user: &str,
    campaigns: &[Arc<str>],
) -> Result<Memberships> {
    let mut out = Memberships::default();
    for campaign in campaigns {
        if let Some(value) = get(&user_key(campaign, user.as_bytes()))? {
            let bits = value.get(8).copied().unwrap_or(0);
            out.0
                .insert(campaign.clone(), Membership::from_exclusion_bits(bits));
        }
    }
    Ok(out)
}

/// Deletes a list's positions, its push stages and (unless `keep_members`: a shared entry still shows through
/// them) its members, not its count, in slices, so a list of millions never sits in one write
/// batch. Outside the writer thread: nothing writes an ended list.
pub fn drop_list(
    db: &fjall::Database,
    keyspaces: &[Keyspace],
    campaign: &str,
    keep_members: bool,
) -> Result<()> {
    let prefix = super::keys::user_prefix(campaign);
    let lists: &[usize] = if keep_members {
        &[RECIPIENT_POSITIONS, PUSH_STAGES]
    } else {
        &[RECIPIENTS, RECIPIENT_POSITIONS, PUSH_STAGES]
    };
    for &index in lists {
        drop_prefix(db, &keyspaces[index], &prefix)?;
    }
    Ok(())
}

/// Deletes every key under `prefix`, in slices, so millions never sit in one write batch.
pub fn drop_prefix(db: &fjall::Database, keyspace: &Keyspace, prefix: &[u8]) -> Result<()> {
    const SLICE: usize = 10_000;
    loop {
        let keys: Vec<_> = keyspace
            .prefix(prefix)
            .take(SLICE)
            .map(|g| g.key().map_err(backend))
            .collect::<Result<_>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = db.batch();
        for key in &keys {
            batch.remove(keyspace, key.to_vec());
        }
        batch.commit().map_err(backend)?;
    }
}

pub fn count(keyspace: &Keyspace, campaign: &str) -> Result<u64> {
    decode_count(
        keyspace
            .get(campaign.as_bytes())
            .map_err(backend)?
            .as_deref(),
    )
}

/// The users at positions `from .. from + limit`.
pub fn page(keyspace: &Keyspace, campaign: &str, from: u64, limit: usize) -> Result<Vec<String>> {
    // `campaign \x01` is just past every `campaign \0 …` key.
    let mut end = campaign.as_bytes().to_vec();
    end.push(1);
    let mut users = Vec::with_capacity(limit.min(16 * 1024));
    for guard in keyspace.range(user_seq(campaign, from)..end).take(limit) {
        let (_, value) = guard.into_inner().map_err(backend)?;
        users.push(String::from_utf8(value.to_vec()).map_err(backend)?);
    }
    Ok(users)
}

fn decode_count(raw: Option<&[u8]>) -> Result<u64> {
    match raw {
        None => Ok(0),
        Some(raw) => Ok(u64::from_be_bytes(raw.try_into().map_err(backend)?)),
    }
}
