//! Decision logs in the embedded engine: `decisions` maps `user \0 seq` to a record's JSON in the
//! order they were appended, and `decision_heads` keeps each user's `next floor` (the live range
//! of sequence numbers), so appending and trimming never scan the log. Decision counts go to
//! the notification's delivery report, next to its send counts.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use fjall::Keyspace;

use super::keys::{user_prefix, user_seq};
use super::overlay::{Overlay, backend};
use super::push_reports::ReportDeltas;
use super::records::*;
use crate::{DecisionCount, DecisionRecord, Result};

/// A user's log holds the records numbered `floor..next`.
#[derive(Default)]
struct Head {
    next: u64,
    floor: u64,
}

impl Head {
    fn load(overlay: &Overlay<'_>, user: &str) -> Result<Self> {
        let Some(raw) = overlay.get(DECISION_HEADS, user.as_bytes())? else {
            return Ok(Self::default());
        };
        let (next, floor) = raw
            .split_at_checked(8)
            .ok_or_else(|| backend("corrupt decision head"))?;
        Ok(Self {
            next: u64::from_be_bytes(next.try_into().map_err(backend)?),
            floor: u64::from_be_bytes(floor.try_into().map_err(backend)?),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.next.to_be_bytes().to_vec();
        v.extend_from_slice(&self.floor.to_be_bytes());
        v
    }
}

/// Adds the counts to the reports and appends the records, keeping each user's newest `per_user`.
pub fn record(
    overlay: &mut Overlay<'_>,
    counts: &[DecisionCount],
    records: &[DecisionRecord],
    per_user: usize,
) -> Result<()> {
    let mut reports = ReportDeltas::default();
    for count in counts {
        reports.decided(
            &count.notification,
            count.channel.as_str(),
            count.reason,
            count.n,
        );
    }
    reports.apply(overlay)?;
    let mut heads: HashMap<&str, Head> = HashMap::new();
    for record in records {
        let head = match heads.entry(record.user.as_str()) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => slot.insert(Head::load(overlay, &record.user)?),
        };
        overlay.put(
            DECISIONS,
            user_seq(&record.user, head.next),
            to_json(record),
        );
        head.next += 1;
    }
    for (user, mut head) in heads {
        // Sequence numbers are contiguous, so the records to drop are known by number.
        while head.next - head.floor > per_user as u64 {
            overlay.delete(DECISIONS, user_seq(user, head.floor));
            head.floor += 1;
        }
        overlay.put(DECISION_HEADS, user.as_bytes().to_vec(), head.encode());
    }
    Ok(())
}

/// The user's newest `limit` decisions, newest first.
pub fn newest(keyspace: &Keyspace, user: &str, limit: usize) -> Result<Vec<DecisionRecord>> {
    let mut records = Vec::with_capacity(limit.min(1024));
    for guard in keyspace.prefix(user_prefix(user)).rev().take(limit) {
        let (_, value) = guard.into_inner().map_err(backend)?;
        records.push(from_json(&value)?);
    }
    Ok(records)
}
