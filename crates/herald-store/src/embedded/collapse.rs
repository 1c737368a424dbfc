//! Collapse keys in the embedded engine: `collapse` maps `user \0 key` to the last claim of that
//! key and the answer it was given, so a retried claim gets the same answer. A record is indexed
//! by when it stops mattering, for purge to drop.

use serde::{Deserialize, Serialize};

use super::expiry::{self, Kind};
use super::keys::user_key;
use super::overlay::Overlay;
use super::records::*;
use crate::{CollapseClaim, Result};

#[derive(Serialize, Deserialize)]
struct Claimed {
    id: String,
    /// The notification this claim replaced, if any.
    prev: Option<String>,
    at: i64,
    window_ms: i64,
}

impl Claimed {
    /// Kept a window past its window, as on Redis, so a late retried claim still gets its answer.
    fn expires_at(&self) -> i64 {
        let keep = self.window_ms.saturating_mul(2).max(1000);
        self.at.saturating_add(keep)
    }
}

/// When the stored record `raw` stops mattering.
pub fn expires_at(raw: &[u8]) -> Result<i64> {
    Ok(from_json::<Claimed>(raw)?.expires_at())
}

/// The notification each claim replaces, in claim order; later claims see earlier ones.
pub fn claim(
    overlay: &mut Overlay<'_>,
    claims: &[CollapseClaim],
    now_ms: i64,
) -> Result<Vec<Option<String>>> {
    claims
        .iter()
        .map(|claim| claim_one(overlay, claim, now_ms))
        .collect()
}

fn claim_one(
    overlay: &mut Overlay<'_>,
    claim: &CollapseClaim,
    now_ms: i64,
) -> Result<Option<String>> {
    let key = user_key(&claim.user, claim.key.as_bytes());
    let stored: Option<Claimed> = overlay
        .get(COLLAPSE, &key)?
        .map(|raw| from_json(&raw))
        .transpose()?;
    let old_expiry = stored.as_ref().map(Claimed::expires_at);
    let prev = match stored {
        Some(last) if last.id == claim.notification => return Ok(last.prev),
        Some(last) if now_ms.saturating_sub(last.at) <= claim.window_ms => Some(last.id),
        _ => None,
    };
    let claimed = Claimed {
        id: claim.notification.clone(),
        prev: prev.clone(),
        at: now_ms,
        window_ms: claim.window_ms,
    };
    expiry::reschedule(
        overlay,
        Kind::Collapse,
        &key,
        old_expiry,
        claimed.expires_at(),
    );
    overlay.put(COLLAPSE, key, to_json(&claimed));
    Ok(prev)
}
