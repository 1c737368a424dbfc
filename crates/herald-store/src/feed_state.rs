//! The small records the embedded engine keeps per user and for the global feed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Per-user counters and read markers. Read and written only by the writer thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UserMeta {
    /// Last sequence number used in the user's own feed.
    #[serde(rename = "s")]
    pub seq: u64,
    /// Entries in the user's inbox keyspace.
    #[serde(rename = "l")]
    pub len: u64,
    /// Unread entries of the user's own feed.
    #[serde(rename = "u")]
    pub unread: u64,
    /// Own entries with a sequence number up to this one are read ("mark all read").
    #[serde(rename = "rm", default)]
    pub read_marker: u64,
    /// Replay of the own feed is complete only after this sequence number (older history was dropped).
    #[serde(rename = "f", default)]
    pub floor: u64,
    /// Entries in the user's change log.
    #[serde(rename = "c", default)]
    pub changes: u64,
    /// Global entries up to this sequence number are read.
    #[serde(rename = "gm", default)]
    pub global_marker: u64,
    /// Global entries above the marker that were read one by one.
    #[serde(rename = "gr", default, skip_serializing_if = "Vec::is_empty")]
    pub global_read: Vec<u64>,
    /// Global entries this user archived.
    #[serde(rename = "ga", default, skip_serializing_if = "Vec::is_empty")]
    pub global_archived: Vec<u64>,
}

impl UserMeta {
    pub fn is_read(&self, seq: u64, read_flag: bool) -> bool {
        read_flag || seq <= self.read_marker
    }

    pub fn global_is_read(&self, gseq: u64) -> bool {
        gseq <= self.global_marker || self.global_read.contains(&gseq)
    }

    pub fn global_is_archived(&self, gseq: u64) -> bool {
        self.global_archived.contains(&gseq)
    }

    /// Forgets per-entry global state that the global feed no longer holds.
    pub fn prune_global(&mut self, floor: u64) {
        self.global_read
            .retain(|g| *g > floor.max(self.global_marker));
        self.global_archived.retain(|g| *g > floor);
    }
}

/// The global feed's retained entries: (sequence number, listed in the inbox).
#[derive(Debug, Clone, Default)]
pub struct GlobalState {
    pub head: u64,
    /// Entries up to this sequence number were dropped.
    pub floor: u64,
    pub entries: VecDeque<(u64, bool)>,
}

impl GlobalState {
    /// Listed global entries above a read marker.
    pub fn listed_after(&self, marker: u64) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > marker)
            .filter(|(_, inbox)| *inbox)
            .count() as u64
    }

    /// Unread global inbox entries for a user.
    pub fn unread_for(&self, meta: &UserMeta) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > meta.global_marker)
            .filter(|(g, inbox)| {
                *inbox && !meta.global_read.contains(g) && !meta.global_archived.contains(g)
            })
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_unread_respects_marker_reads_and_archives() {
        let global = GlobalState {
            head: 5,
            floor: 1,
            entries: (2..=5).map(|g| (g, g != 4)).collect(),
        };
        let mut meta = UserMeta::default();
        assert_eq!(global.unread_for(&meta), 3, "2, 3 and 5; 4 is live-only");
        meta.global_read.push(5);
        meta.global_archived.push(2);
        assert_eq!(global.unread_for(&meta), 1);
        meta.global_marker = 3;
        assert_eq!(global.unread_for(&meta), 0);
    }
}
