//! Frequency caps in the embedded engine: `caps` maps `user \0 key` to the counter's entries,
//! the notifications it counted and when. Entries past the window are dropped whenever the
//! counter is charged, so it holds little more than its limit. Charges run on the writer
//! thread, one read-modify-write after another, so racing fan-outs never overshoot a cap.
//! A counter is indexed by when its last entry leaves the window, for purge to drop.

use serde::{Deserialize, Serialize};

use super::expiry::{self, Kind};
use super::keys::user_key;
use super::overlay::Overlay;
use super::records::*;
use crate::{CapRequest, Result};

/// `(notification, at)` per push counted.
type Entries = Vec<(String, i64)>;

#[derive(Serialize, Deserialize)]
struct Counter {
    window_ms: i64,
    entries: Entries,
}

impl Counter {
    fn decode(raw: &[u8]) -> Result<Self> {
        from_json(raw)
    }

    /// When its last entry leaves the window.
    fn expires_at(&self) -> i64 {
        self.entries
            .iter()
            .map(|(_, at)| at.saturating_add(self.window_ms))
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// When the stored counter `raw` has nothing left in its window.
pub fn expires_at(raw: &[u8]) -> Result<i64> {
    Ok(Counter::decode(raw)?.expires_at())
}

/// Whether each request is allowed, counting the allowed ones, in request order.
pub fn take(overlay: &mut Overlay<'_>, requests: &[CapRequest], now_ms: i64) -> Result<Vec<bool>> {
    requests
        .iter()
        .map(|request| take_one(overlay, request, now_ms))
        .collect()
}

fn take_one(overlay: &mut Overlay<'_>, request: &CapRequest, now_ms: i64) -> Result<bool> {
    // Per charge: its key, when its stored counter expires, and its entries still in the window.
    let mut counters: Vec<(Vec<u8>, Option<i64>, Entries)> =
        Vec::with_capacity(request.charges.len());
    for charge in &request.charges {
        let key = user_key(&request.user, charge.key.as_bytes());
        let stored = overlay
            .get(CAPS, &key)?
            .map(|raw| Counter::decode(&raw))
            .transpose()?;
        let expires_at = stored.as_ref().map(Counter::expires_at);
        let mut entries = stored.map_or_else(Entries::new, |counter| counter.entries);
        entries.retain(|(_, at)| now_ms.saturating_sub(*at) < charge.window_ms);
        counters.push((key, expires_at, entries));
    }
    let counted = |entries: &Entries| entries.iter().any(|(id, _)| *id == request.notification);
    let Some((_, _, first)) = counters.first() else {
        return Ok(true); // nothing to count against
    };
    if counted(first) {
        return Ok(true); // a retried fan-out: counted the first time
    }
    let full = request
        .charges
        .iter()
        .zip(&counters)
        .any(|(charge, (_, _, entries))| entries.len() >= charge.limit as usize);
    if full {
        return Ok(false);
    }
    for (charge, (key, old_expiry, mut entries)) in request.charges.iter().zip(counters) {
        // A key named twice in one request counts the push once.
        if !counted(&entries) {
            entries.push((request.notification.clone(), now_ms));
        }
        let counter = Counter {
            window_ms: charge.window_ms,
            entries,
        };
        expiry::reschedule(overlay, Kind::Cap, &key, old_expiry, counter.expires_at());
        overlay.put(CAPS, key, to_json(&counter));
    }
    Ok(true)
}
