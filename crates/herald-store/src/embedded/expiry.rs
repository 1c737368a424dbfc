//! When cap counters and collapse records stop mattering: `expiry` maps
//! `expires_at kind record_key` (see [`keys::expiry`]) to nothing. Each write of a record moves
//! its entry in the same batch, so purge finds what expired with one range scan instead of
//! reading `caps` and `collapse` whole (Redis gets the same from PEXPIRE).

use fjall::Keyspace;

use super::overlay::{Overlay, backend};
use super::records::*;
use super::{caps, collapse, keys};
use crate::{PurgeReport, Result};

#[derive(Clone, Copy)]
pub enum Kind {
    Cap,
    Collapse,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Cap => b'c',
            Kind::Collapse => b'k',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        [Kind::Cap, Kind::Collapse]
            .into_iter()
            .find(|kind| kind.tag() == tag)
    }

    fn keyspace(self) -> usize {
        match self {
            Kind::Cap => CAPS,
            Kind::Collapse => COLLAPSE,
        }
    }

    /// When the stored record `raw` stops mattering.
    fn expires_at(self, raw: &[u8]) -> Result<i64> {
        match self {
            Kind::Cap => caps::expires_at(raw),
            Kind::Collapse => collapse::expires_at(raw),
        }
    }
}

/// Moves `record`'s index entry from `old` (its expiry as last written, if it existed) to `new`.
pub fn reschedule(
    overlay: &mut Overlay<'_>,
    kind: Kind,
    record: &[u8],
    old: Option<i64>,
    new: i64,
) {
    if let Some(old) = old {
        overlay.delete(EXPIRY, keys::expiry(old, kind.tag(), record));
    }
    overlay.put(EXPIRY, keys::expiry(new, kind.tag(), record), Vec::new());
}

/// Drops the records whose index entries are due by `now`, reading at most `max` entries.
/// Each record is read again first: one whose expiry moved keeps living and only the stale
/// entry goes.
pub fn purge(
    overlay: &mut Overlay<'_>,
    index: &Keyspace,
    now: i64,
    max: usize,
    report: &mut PurgeReport,
) -> Result<()> {
    let due = keys::ordered_i64(now.saturating_add(1));
    for guard in index.range(..due.as_slice()).take(max) {
        let key = guard.key().map_err(backend)?;
        let kind = key
            .get(8)
            .and_then(|&tag| Kind::from_tag(tag))
            .ok_or_else(|| backend("corrupt expiry index entry"))?;
        let record = &key[9..];
        overlay.delete(EXPIRY, key.to_vec());
        let Some(raw) = overlay.get(kind.keyspace(), record)? else {
            continue;
        };
        if kind.expires_at(&raw)? > now {
            continue; // charged or claimed again since: its current entry is later
        }
        overlay.delete(kind.keyspace(), record.to_vec());
        match kind {
            Kind::Cap => report.caps += 1,
            Kind::Collapse => report.collapse_keys += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::{CapCharge, CapRequest, CollapseClaim, Store, StoreOptions};

    fn claim(key: &str, notification: &str) -> Vec<CollapseClaim> {
        vec![CollapseClaim {
            user: "u".into(),
            key: key.into(),
            notification: notification.into(),
            window_ms: 1000,
        }]
    }

    fn charge(notification: &str) -> Vec<CapRequest> {
        vec![CapRequest {
            user: "u".into(),
            notification: notification.into(),
            charges: vec![CapCharge {
                key: "all:1".into(),
                limit: 1,
                window_ms: 1000,
            }],
        }]
    }

    #[tokio::test]
    async fn purge_drops_expired_records_with_their_index_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), StoreOptions::default()).unwrap();
        let empty = |ks: usize| store.keyspaces[ks].is_empty().unwrap();
        let now = 1_800_000_000_000;
        store
            .claim_collapse(&claim("order-1", "a"), now)
            .await
            .unwrap();
        store
            .claim_collapse(&claim("score", "b"), now)
            .await
            .unwrap();
        store.take_caps(&charge("a"), now).await.unwrap();
        // Claimed again later: its expiry moves, and its first index entry goes.
        store
            .claim_collapse(&claim("score", "c"), now + 1500)
            .await
            .unwrap();
        assert_eq!(store.keyspaces[EXPIRY].len().unwrap(), 3);

        let report = store.purge_expired(now + 2000).await.unwrap();
        assert_eq!((report.caps, report.collapse_keys), (1, 1));
        assert!(empty(CAPS));
        assert_eq!(
            store.keyspaces[COLLAPSE].len().unwrap(),
            1,
            "score lives on"
        );
        assert_eq!(store.keyspaces[EXPIRY].len().unwrap(), 1);

        let report = store.purge_expired(now + 3500).await.unwrap();
        assert_eq!((report.caps, report.collapse_keys), (0, 1));
        assert!(empty(CAPS) && empty(COLLAPSE) && empty(EXPIRY));
    }
}
