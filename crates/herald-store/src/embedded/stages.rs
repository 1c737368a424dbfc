//! Campaign push stages in the embedded engine: `push_stages` maps `campaign \0 from` (big
//! endian) to the stage's JSON and `campaign \0 from p` to its progress bitmap, so a campaign's
//! stages are one prefix, dropped once it ended.

use fjall::Keyspace;

use super::dead_letters::DeadLetters;
use super::keys::{user_prefix, user_seq};
use super::overlay::{Overlay, backend};
use super::push_reports::ReportDeltas;
use super::records::*;
use crate::{PushStage, Result, StagedOutcome, StagedProgress};

fn stage_key(campaign: &str, from: u64) -> Vec<u8> {
    user_seq(campaign, from)
}

fn progress_key(campaign: &str, from: u64) -> Vec<u8> {
    let mut key = user_seq(campaign, from);
    key.push(b'p');
    key
}

/// Stores the stage unless one starting there is stored; true if stored.
pub fn put(overlay: &mut Overlay<'_>, campaign: &str, stage: &PushStage) -> Result<bool> {
    let key = stage_key(campaign, stage.from);
    if overlay.get(PUSH_STAGES, &key)?.is_some() {
        return Ok(false);
    }
    overlay.put(PUSH_STAGES, key, to_json(stage));
    Ok(true)
}

pub fn get(
    keyspace: &Keyspace,
    campaign: &str,
    from: u64,
) -> Result<Option<(PushStage, StagedProgress)>> {
    let Some(raw) = keyspace.get(stage_key(campaign, from)).map_err(backend)? else {
        return Ok(None);
    };
    let progress = keyspace
        .get(progress_key(campaign, from))
        .map_err(backend)?
        .map(|bits| StagedProgress(bits.to_vec()))
        .unwrap_or_default();
    Ok(Some((from_json(&raw)?, progress)))
}

/// Deletes every stage of `campaign` and its progress. Outside the writer thread: nothing
/// writes the stages of an ended campaign.
pub fn drop_all(db: &fjall::Database, keyspace: &Keyspace, campaign: &str) -> Result<()> {
    super::recipients::drop_prefix(db, keyspace, &user_prefix(campaign))
}

/// Marks the outcomes' sends finished; counts and keeps dead letters for those not finished
/// before.
pub fn finish(
    overlay: &mut Overlay<'_>,
    reports: &mut ReportDeltas,
    dead: &mut DeadLetters,
    campaign: &str,
    from: u64,
    notification: &str,
    outcomes: &[StagedOutcome],
) -> Result<()> {
    let key = progress_key(campaign, from);
    let mut progress = StagedProgress(overlay.get(PUSH_STAGES, &key)?.unwrap_or_default());
    let mut changed = false;
    for outcome in outcomes {
        if !progress.finish(outcome.index) {
            continue;
        }
        changed = true;
        let Some(status) = outcome.status else {
            continue;
        };
        reports.queued(notification, "push");
        reports.finished(notification, "push", status);
        if let Some(letter) = &outcome.letter {
            dead.push(overlay, letter);
        }
    }
    if changed {
        overlay.put(PUSH_STAGES, key, progress.0);
    }
    Ok(())
}
