//! The small records the embedded engine keeps per user and for the global feed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use herald_core::Channel;
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

/// The global feed's retained entries: (sequence number, listed in the inbox). Most are for
/// everyone; a campaign's shared entry is for the users on its list only (`restricted`).
#[derive(Debug, Clone, Default)]
pub struct GlobalState {
    pub head: u64,
    /// Entries up to this sequence number were dropped.
    pub floor: u64,
    pub entries: VecDeque<(u64, bool)>,
    /// Entries shown only to a campaign's listed users: sequence number → campaign id.
    pub restricted: BTreeMap<u64, Arc<str>>,
}

/// Whether one user is on the lists of the campaigns whose shared entries they might see, and
/// in which channels (their preferences, judged when the campaign was staged, may keep one out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memberships(pub HashMap<Arc<str>, Membership>);

/// One user on one campaign's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub inbox: bool,
    pub live: bool,
}

impl Memberships {
    /// Whether a campaign's shared entry is shown in `channel` (not listed: never).
    pub fn shows(&self, campaign: &str, channel: Channel) -> bool {
        self.0.get(campaign).is_some_and(|m| m.shows(channel))
    }
}

impl Membership {
    /// From the exclusion bits the engines store (1: inbox off, 2: live off).
    pub fn from_exclusion_bits(bits: u8) -> Self {
        Self {
            inbox: bits & 1 == 0,
            live: bits & 2 == 0,
        }
    }

    pub fn shows(&self, channel: Channel) -> bool {
        match channel {
            Channel::Inbox => self.inbox,
            Channel::Realtime => self.live,
            _ => false,
        }
    }
}

impl GlobalState {
    /// Appends an entry (for everyone, or for one campaign's list); returns the sequence
    /// numbers that fell off the front past `max`.
    pub fn push(
        &mut self,
        gseq: u64,
        listed: bool,
        campaign: Option<Arc<str>>,
        max: usize,
    ) -> Vec<u64> {
        self.head = gseq;
        self.entries.push_back((gseq, listed));
        if let Some(campaign) = campaign {
            self.restricted.insert(gseq, campaign);
        }
        let mut dropped = Vec::new();
        while self.entries.len() > max {
            let (old, _) = self.entries.pop_front().expect("non-empty");
            self.floor = old;
            self.restricted.remove(&old);
            dropped.push(old);
        }
        dropped
    }

    /// Drops entries up to `floor` (another node trimmed them).
    pub fn trim_to(&mut self, floor: u64) {
        self.floor = floor;
        while self.entries.front().is_some_and(|(g, _)| *g <= floor) {
            let (old, _) = self.entries.pop_front().expect("non-empty");
            self.restricted.remove(&old);
        }
    }

    /// The campaigns with shared entries above `marker`: the memberships a user's view of
    /// those entries depends on.
    pub fn campaigns_after(&self, marker: u64) -> Vec<Arc<str>> {
        let mut campaigns: Vec<Arc<str>> = self
            .restricted
            .range(marker + 1..)
            .map(|(_, c)| c.clone())
            .collect();
        campaigns.sort();
        campaigns.dedup();
        campaigns
    }

    /// Whether a user with these memberships sees entry `gseq` in `channel`.
    pub fn shows(&self, gseq: u64, memberships: &Memberships, channel: Channel) -> bool {
        match self.restricted.get(&gseq) {
            None => true,
            Some(campaign) => memberships.shows(campaign, channel),
        }
    }

    /// Listed global entries above a read marker that the user sees.
    pub fn listed_after(&self, marker: u64, memberships: &Memberships) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > marker)
            .filter(|(g, inbox)| *inbox && self.shows(*g, memberships, Channel::Inbox))
            .count() as u64
    }

    /// Unread global inbox entries for a user.
    pub fn unread_for(&self, meta: &UserMeta, memberships: &Memberships) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > meta.global_marker)
            .filter(|(g, inbox)| {
                *inbox
                    && !meta.global_read.contains(g)
                    && !meta.global_archived.contains(g)
                    && self.shows(*g, memberships, Channel::Inbox)
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
            restricted: BTreeMap::new(),
        };
        let none = Memberships::default();
        let mut meta = UserMeta::default();
        assert_eq!(
            global.unread_for(&meta, &none),
            3,
            "2, 3 and 5; 4 is live-only"
        );
        meta.global_read.push(5);
        meta.global_archived.push(2);
        assert_eq!(global.unread_for(&meta, &none), 1);
        meta.global_marker = 3;
        assert_eq!(global.unread_for(&meta, &none), 0);
    }

    #[test]
    fn campaign_entries_count_only_for_listed_users_in_their_channels() {
        let mut global = GlobalState::default();
        let spring: Arc<str> = Arc::from("spring");
        assert!(global.push(1, true, None, 3).is_empty());
        global.push(2, true, Some(spring.clone()), 3);
        global.push(3, true, Some(Arc::from("autumn")), 3);
        assert_eq!(
            global.campaigns_after(0),
            [Arc::from("autumn"), spring.clone()]
        );
        assert_eq!(global.campaigns_after(2), [Arc::from("autumn")]);
        let meta = UserMeta::default();
        let outsider = Memberships::default();
        assert_eq!(
            global.unread_for(&meta, &outsider),
            1,
            "only the entry for everyone"
        );
        let mut listed = Memberships::default();
        listed
            .0
            .insert(spring.clone(), Membership::from_exclusion_bits(0));
        assert_eq!(global.unread_for(&meta, &listed), 2);
        assert!(global.shows(2, &listed, Channel::Realtime));
        listed
            .0
            .insert(spring.clone(), Membership::from_exclusion_bits(1));
        assert_eq!(
            global.unread_for(&meta, &listed),
            1,
            "their inbox is off for it"
        );
        assert!(global.shows(2, &listed, Channel::Realtime), "live stays on");
        assert!(
            !global.shows(3, &listed, Channel::Inbox),
            "not on that list"
        );

        assert_eq!(global.push(4, true, None, 3), [1]);
        assert_eq!(global.push(5, true, None, 3), [2]);
        assert!(!global.restricted.contains_key(&2), "gone with its entry");
        global.trim_to(4);
        assert_eq!(global.entries.len(), 1);
        assert!(global.restricted.is_empty());
    }
}
