//! Encodings of the embedded engine's stored values.

use serde::{Deserialize, Serialize};

use super::overlay::backend;
use crate::{EntryFlags, Result};
use herald_core::EventBody;

pub const NOTIFICATIONS: usize = 0;
pub const IDEMPOTENCY: usize = 1;
pub const IDEMPOTENCY_BY_TIME: usize = 2;
pub const QUEUE: usize = 3;
pub const USERS: usize = 4;
pub const INBOX: usize = 5;
pub const INBOX_IDS: usize = 6;
pub const CHANGES: usize = 7;
pub const GLOBAL: usize = 8;
pub const GLOBAL_IDS: usize = 9;
pub const TOPICS: usize = 10;
pub const DEVICES: usize = 11;
pub const USER_DEVICES: usize = 12;
pub const PUSH_TASKS: usize = 13;
pub const PUSH_DUE: usize = 14;
pub const PUSH_REPORTS: usize = 15;
pub const DEAD_LETTERS: usize = 16;
pub const CATEGORIES: usize = 17;
pub const PREFERENCES: usize = 18;
pub const CAPS: usize = 19;
pub const COLLAPSE: usize = 20;
pub const DECISIONS: usize = 21;
pub const DECISION_HEADS: usize = 22;
pub const EXPIRY: usize = 23;
pub const CAMPAIGNS: usize = 24;
pub const ACTIVE_CAMPAIGNS: usize = 25;
pub const RECIPIENTS: usize = 26;
pub const RECIPIENT_POSITIONS: usize = 27;
pub const RECIPIENT_COUNTS: usize = 28;
pub const PUSH_STAGES: usize = 29;

/// Keyspace names, indexed by the constants above.
pub const KEYSPACES: [&str; 30] = [
    "notifications",
    "idempotency",
    "idempotency_by_time",
    "queue",
    "users",
    "inbox",
    "inbox_ids",
    "changes",
    "global",
    "global_ids",
    "topics",
    "devices",
    "user_devices",
    "push_tasks",
    "push_due",
    "push_reports",
    "dead_letters",
    "categories",
    "preferences",
    "caps",
    "collapse",
    "decisions",
    "decision_heads",
    "expiry",
    "campaigns",
    "active_campaigns",
    "recipients",
    "recipient_positions",
    "recipient_counts",
    "push_stages",
];

/// A feed entry: `[flags, read] + notification id`.
pub struct Entry {
    pub flags: EntryFlags,
    pub read: bool,
    pub id: String,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + self.id.len());
        v.push(self.flags.bits());
        v.push(u8::from(self.read));
        v.extend_from_slice(self.id.as_bytes());
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 2 {
            return Err(backend("corrupt feed entry"));
        }
        Ok(Self {
            flags: EntryFlags::from_bits(bytes[0]),
            read: bytes[1] != 0,
            id: String::from_utf8(bytes[2..].to_vec()).map_err(backend)?,
        })
    }
}

/// A `GLOBAL_IDS` value: the entry's sequence number, then the campaign whose list it is shown
/// to, if it is a campaign's shared entry.
#[derive(Debug, PartialEq)]
pub struct GlobalId {
    pub gseq: u64,
    pub campaign: Option<String>,
}

impl GlobalId {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.gseq.to_be_bytes().to_vec();
        if let Some(c) = &self.campaign {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (seq, campaign) = bytes
            .split_at_checked(8)
            .ok_or_else(|| backend("corrupt global id"))?;
        Ok(Self {
            gseq: u64::from_be_bytes(seq.try_into().map_err(backend)?),
            campaign: (!campaign.is_empty())
                .then(|| String::from_utf8(campaign.to_vec()).map_err(backend))
                .transpose()?,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub id: String,
    pub at: i64,
}

#[derive(Serialize, Deserialize)]
pub struct JobRecord {
    pub notification: String,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// What the outbox knows of one `(notification, target)`: pending at a place in the due index,
/// or done (a small marker, so the pair is never queued again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Pending { lane: u8, due_ms: i64 },
    Done,
}

impl TaskState {
    pub fn encode(self) -> Vec<u8> {
        match self {
            TaskState::Pending { lane, due_ms } => {
                let mut v = Vec::with_capacity(10);
                v.push(b'p');
                v.push(lane);
                v.extend_from_slice(&super::keys::ordered_i64(due_ms));
                v
            }
            TaskState::Done => vec![b'd'],
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [b'd'] => Ok(TaskState::Done),
            [b'p', lane, due @ ..] if due.len() == 8 => Ok(TaskState::Pending {
                lane: *lane,
                due_ms: super::keys::ordered_i64_from(due).expect("8 bytes"),
            }),
            _ => Err(backend("corrupt outbox task state")),
        }
    }
}

/// A user's action as kept in their change log.
#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum ChangeRecord {
    Read { id: String },
    ReadAll,
    Archived { id: String },
}

impl ChangeRecord {
    pub fn body(self) -> EventBody {
        match self {
            ChangeRecord::Read { id } => EventBody::Read { id },
            ChangeRecord::ReadAll => EventBody::ReadAll,
            ChangeRecord::Archived { id } => EventBody::Archived { id },
        }
    }
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

pub fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(backend)
}

/// `at (big-endian) + key`: idempotency keys in the order they expire.
pub fn idempotency_time_key(at: i64, key: &str) -> Vec<u8> {
    let mut k = (at as u64).to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_states_round_trip() {
        for state in [
            TaskState::Done,
            TaskState::Pending {
                lane: 2,
                due_ms: -7,
            },
            TaskState::Pending {
                lane: 0,
                due_ms: 1_700_000_000_123,
            },
        ] {
            assert_eq!(TaskState::decode(&state.encode()).unwrap(), state);
        }
        assert!(TaskState::decode(b"p\x01").is_err());
    }
}
