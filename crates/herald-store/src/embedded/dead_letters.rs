//! Dead letters in the embedded engine: `dead_letters` maps `at seq` to the letter's JSON, so
//! the newest are at the end. The writer keeps the count and trims the oldest past the limit.

use fjall::Keyspace;

use super::keys;
use super::overlay::{Overlay, backend};
use super::records::*;
use crate::{DeadLetter, Result};

/// The writer's view of the dead letters. A batch works on a copy that replaces the writer's
/// once the batch is committed.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    next_seq: u64,
    count: usize,
    /// Every key below it has been trimmed, so trimming starts here rather than wading through
    /// the tombstones of earlier trims.
    floor: Vec<u8>,
}

impl DeadLetters {
    pub fn open(keyspace: &Keyspace) -> Result<Self> {
        let count = keyspace.len().map_err(backend)?;
        let next_seq = match keyspace.last_key_value() {
            Some(guard) => {
                let key = guard.key().map_err(backend)?;
                let seq: [u8; 8] = key[8..16].try_into().map_err(backend)?;
                u64::from_be_bytes(seq) + 1
            }
            None => 0,
        };
        Ok(Self {
            next_seq,
            count,
            floor: Vec::new(),
        })
    }

    pub fn push(&mut self, overlay: &mut Overlay<'_>, letter: &DeadLetter) {
        let key = keys::dead_letter(letter.at, self.next_seq);
        self.next_seq += 1;
        if key < self.floor {
            self.floor = key.clone(); // the clock went back
        }
        overlay.put(DEAD_LETTERS, key, to_json(letter));
        self.count += 1;
    }

    /// Drops the oldest letters beyond `max`.
    pub fn trim(&mut self, overlay: &mut Overlay<'_>, max: usize) -> Result<()> {
        let excess = self.count.saturating_sub(max);
        if excess == 0 {
            return Ok(());
        }
        for (key, _) in overlay.scan_from(DEAD_LETTERS, &self.floor, &[], excess)? {
            overlay.delete(DEAD_LETTERS, key.clone());
            self.count -= 1;
            self.floor = key;
        }
        Ok(())
    }
}

/// The newest `limit` dead letters, newest first.
pub fn newest(keyspace: &Keyspace, limit: usize) -> Result<Vec<DeadLetter>> {
    let mut letters = Vec::with_capacity(limit.min(1024));
    for guard in keyspace.iter().rev().take(limit) {
        let (_, value) = guard.into_inner().map_err(backend)?;
        letters.push(from_json(&value)?);
    }
    Ok(letters)
}
