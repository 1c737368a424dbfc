//! A list campaign's inbox and live delivery as one shared entry of the global feed, shown to
//! the listed users, instead of one entry per user: millions of inboxes get it at `send_at`
//! with a single write.
//!
//! Before `send_at` the audience is judged (staged): whoever's preferences turn the inbox or
//! live channel off for the category is excluded from it there, and the decision is recorded.
//! At `send_at` the entry is published; the per-user walk that follows is for push only.
//! Users appended after that are judged at the next slice, so for a moment they may see it
//! whatever their preferences.

use herald_core::policy::{OverCap, caps_for, over_cap, plan};
use herald_core::{Audience, Campaign, Category, Channel, Notification, Reason};
use herald_store::{DecisionCount, DecisionRecord, Exclusion, Store, StoreError};

use super::policy::PolicyContext;

/// Listed users whose preferences are read per store request.
pub const JUDGE_BATCH: usize = 8192;

/// Reads in flight at once: a turn judges this many batches, and the campaign is checkpointed
/// once for all of them.
pub const JUDGE_IN_FLIGHT: usize = 4;

/// Whether a campaign's inbox and live delivery can be one shared entry: an uploaded list, sent
/// as fast as possible, with nothing that depends on each user's history (a collapse key
/// replaces earlier entries per user; a frequency cap may drop the inbox entry per user).
pub fn eligible(
    c: &Campaign,
    n: &Notification,
    category: Option<&Category>,
    ctx: &PolicyContext,
) -> bool {
    let reaches_feed =
        n.channels.contains(Channel::Inbox) || n.channels.contains(Channel::Realtime);
    let caps_may_drop = n.channels.contains(Channel::Push)
        && over_cap(category, &ctx.defaults) == OverCap::Drop
        && !caps_for(category, &ctx.defaults).is_empty();
    c.audience == Audience::List
        && !c.dry_run
        && c.rate_per_second.is_none()
        && n.collapse_key.is_none()
        && reaches_feed
        && !caps_may_drop
}

/// Judges the next listed users (from `c.staged`): excludes those whose preferences keep the
/// entry out of a channel, and records why; once the entry is `published`, the others count
/// as delivered at once. Returns how many were judged (0: all are).
pub async fn judge_next(
    store: &dyn Store,
    ctx: &PolicyContext,
    c: &Campaign,
    n: &Notification,
    published: bool,
) -> Result<usize, StoreError> {
    let users = store
        .recipients(&c.id, c.staged, JUDGE_BATCH * JUDGE_IN_FLIGHT)
        .await?;
    if users.is_empty() {
        return Ok(0);
    }
    let category = ctx.categories.get(n.category.as_deref()).await?;
    // Read in flight at once: each read's round trip overlaps the others'.
    let prefs: Vec<_> = futures_util::future::try_join_all(
        users
            .chunks(JUDGE_BATCH)
            .map(|batch| store.preferences_of(batch)),
    )
    .await?
    .into_iter()
    .flatten()
    .collect();
    let now = herald_core::time::now_ms();
    let mut exclusions = Vec::new();
    let mut records = Vec::new();
    let (mut muted_inbox, mut muted_live) = (0, 0);
    for (user, p) in users.iter().zip(&prefs) {
        let Some(p) = p else {
            continue; // no preferences: everything is on
        };
        let plan = plan(n, category.as_deref(), Some(p), &ctx.defaults, now);
        let inbox_off = n.channels.contains(Channel::Inbox) && !plan.inbox.goes_out();
        let live_off = n.channels.contains(Channel::Realtime) && !plan.realtime.goes_out();
        if !inbox_off && !live_off {
            continue;
        }
        for (channel, verdict, off) in [
            (Channel::Inbox, &plan.inbox, inbox_off),
            (Channel::Realtime, &plan.realtime, live_off),
        ] {
            if off {
                records.extend(DecisionRecord::of(&n.id, user, channel, verdict, now));
            }
        }
        muted_inbox += u64::from(inbox_off);
        muted_live += u64::from(live_off);
        exclusions.push(Exclusion {
            user: user.clone(),
            inbox: inbox_off,
            live: live_off,
        });
    }
    store.exclude_recipients(&c.id, &exclusions).await?;
    let mut counts = counts(&n.id, Reason::Muted, muted_inbox, muted_live);
    if published {
        let judged = users.len() as u64;
        let (inbox, live) = reached(n, judged, muted_inbox, muted_live);
        super::fanout::count(inbox, live);
        counts.extend(self::counts(&n.id, Reason::Delivered, inbox, live));
    }
    if !counts.is_empty() || !records.is_empty() {
        store.record_decisions(&counts, &records).await?;
    }
    Ok(users.len())
}

/// Counts the shared entry as delivered to the listed users it reaches (called once, after
/// the campaign recorded that it published it).
pub async fn count_delivered(
    store: &dyn Store,
    c: &Campaign,
    n: &Notification,
) -> Result<(), StoreError> {
    let report = store.delivery_report(&n.id).await?;
    let muted = |channel: Channel| report.get(channel.as_str()).map_or(0, |r| r.muted);
    let (inbox, live) = reached(n, c.staged, muted(Channel::Inbox), muted(Channel::Realtime));
    super::fanout::count(inbox, live);
    let counts = counts(&n.id, Reason::Delivered, inbox, live);
    if !counts.is_empty() {
        store.record_decisions(&counts, &[]).await?;
    }
    Ok(())
}

/// Of `judged` users, how many the entry reaches in the inbox and live.
fn reached(n: &Notification, judged: u64, muted_inbox: u64, muted_live: u64) -> (u64, u64) {
    let of = |channel: Channel, muted: u64| {
        if n.channels.contains(channel) {
            judged.saturating_sub(muted)
        } else {
            0
        }
    };
    (
        of(Channel::Inbox, muted_inbox),
        of(Channel::Realtime, muted_live),
    )
}

fn counts(notification: &str, reason: Reason, inbox: u64, live: u64) -> Vec<DecisionCount> {
    [(Channel::Inbox, inbox), (Channel::Realtime, live)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(channel, n)| DecisionCount {
            notification: notification.to_owned(),
            channel,
            reason,
            n,
        })
        .collect()
}
