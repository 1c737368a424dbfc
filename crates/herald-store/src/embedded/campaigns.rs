//! Campaigns in the embedded engine: `campaigns` maps each id to the campaign's JSON (ids are
//! ULIDs, so key order is creation order), and `active_campaigns` holds the ids of those not
//! final, so the workers' list never walks finished campaigns. Writes run on the writer thread,
//! which makes an update's version check and its write one step.

use fjall::{Database, Keyspace, Readable};
use herald_core::Campaign;

use super::overlay::{Overlay, backend};
use super::records::*;
use crate::Result;

/// Stores the campaign as given, replacing any of its id.
pub fn create(overlay: &mut Overlay<'_>, campaign: &Campaign) -> Result<()> {
    let previous = stored(overlay, &campaign.id)?;
    write(overlay, campaign, previous.as_ref());
    Ok(())
}

/// Stores `campaign` with the next version if the stored copy still has its version.
pub fn update(overlay: &mut Overlay<'_>, mut campaign: Campaign) -> Result<bool> {
    let Some(previous) = stored(overlay, &campaign.id)? else {
        return Ok(false);
    };
    if previous.version != campaign.version {
        return Ok(false);
    }
    campaign.version += 1;
    write(overlay, &campaign, Some(&previous));
    Ok(true)
}

pub fn get(keyspace: &Keyspace, id: &str) -> Result<Option<Campaign>> {
    keyspace
        .get(id.as_bytes())
        .map_err(backend)?
        .map(|raw| from_json(&raw))
        .transpose()
}

/// Up to `limit` campaigns with ids below `before` (all if none), newest first.
pub fn newest(keyspace: &Keyspace, before: Option<&str>, limit: usize) -> Result<Vec<Campaign>> {
    let scan = match before {
        Some(before) => keyspace.range(..before.as_bytes()),
        None => keyspace.iter(),
    };
    let mut campaigns = Vec::with_capacity(limit.min(1024));
    for guard in scan.rev().take(limit) {
        let (_, value) = guard.into_inner().map_err(backend)?;
        campaigns.push(from_json(&value)?);
    }
    Ok(campaigns)
}

/// The campaigns not final, oldest first, read from one snapshot so index and records agree.
pub fn active(db: &Database, keyspaces: &[Keyspace]) -> Result<Vec<Campaign>> {
    let snap = db.snapshot();
    let mut campaigns = Vec::new();
    for guard in snap.iter(&keyspaces[ACTIVE_CAMPAIGNS]) {
        let id = guard.key().map_err(backend)?;
        if let Some(raw) = snap.get(&keyspaces[CAMPAIGNS], &id).map_err(backend)? {
            campaigns.push(from_json(&raw)?);
        }
    }
    Ok(campaigns)
}

fn stored(overlay: &Overlay<'_>, id: &str) -> Result<Option<Campaign>> {
    overlay
        .get(CAMPAIGNS, id.as_bytes())?
        .map(|raw| from_json(&raw))
        .transpose()
}

/// Writes the record, and its index entry when it became active or final.
fn write(overlay: &mut Overlay<'_>, campaign: &Campaign, previous: Option<&Campaign>) {
    let id = campaign.id.as_bytes();
    overlay.put(CAMPAIGNS, id.to_vec(), to_json(campaign));
    let was_active = previous.is_some_and(|p| !p.state.is_final());
    match (was_active, campaign.state.is_final()) {
        (false, false) => overlay.put(ACTIVE_CAMPAIGNS, id.to_vec(), Vec::new()),
        (true, true) => overlay.delete(ACTIVE_CAMPAIGNS, id.to_vec()),
        _ => {} // the index already says so
    }
}
