//! A campaign's push sends resolved before `send_at`: per slice of the audience, the devices to
//! send to (policy judged, devices looked up), stored once and never changed, and which of them
//! are finished. At `send_at` the campaign only sends; no outbox entry per send.

use herald_core::Device;
use serde::{Deserialize, Serialize};

use crate::{DeadLetter, PushTask, SendStatus};

/// The push sends of audience positions `from .. to`, resolved ahead of the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushStage {
    pub from: u64,
    pub to: u64,
    /// Sends due at once; a send's index here is its place in the [`StagedProgress`].
    pub sends: Vec<Device>,
    /// Sends held by quiet hours, queued in the outbox (with their due time) when the stage
    /// is sent.
    pub deferred: Vec<PushTask>,
}

/// Which sends of a [`PushStage`] are finished: bit `i` (most significant bit first in each
/// byte, as Redis `SETBIT` numbers them) for send `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedProgress(pub Vec<u8>);

impl StagedProgress {
    pub fn finished(&self, index: u32) -> bool {
        let byte = (index / 8) as usize;
        self.0
            .get(byte)
            .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
    }

    /// Marks send `index` finished; false if it was already.
    pub fn finish(&mut self, index: u32) -> bool {
        let byte = (index / 8) as usize;
        if self.0.len() <= byte {
            self.0.resize(byte + 1, 0);
        }
        let bit = 0x80 >> (index % 8);
        let fresh = self.0[byte] & bit == 0;
        self.0[byte] |= bit;
        fresh
    }

    /// How many sends are finished.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|b| u64::from(b.count_ones())).sum()
    }
}

/// How one staged send ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedOutcome {
    /// The send's index in its stage.
    pub index: u32,
    /// `None`: handed on to the outbox (a retry), which counts it from then on.
    pub status: Option<SendStatus>,
    /// For a `Failed` send: the dead letter kept for it.
    pub letter: Option<DeadLetter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bits_follow_redis_setbit_order() {
        let mut p = StagedProgress::default();
        assert!(p.finish(0));
        assert!(p.finish(9));
        assert!(!p.finish(9), "twice is once");
        assert_eq!(p.0, vec![0x80, 0x40]);
        assert!(p.finished(0) && p.finished(9));
        assert!(!p.finished(1) && !p.finished(100));
        assert_eq!(p.count(), 2);
    }
}
