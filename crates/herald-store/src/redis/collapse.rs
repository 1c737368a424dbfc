//! Collapse keys on Redis: the notification a user last got with a key is a HASH
//! `{u:USER}:ck:KEY` of `id`, `prev` (the one it replaced) and `at` (ms), kept twice the window
//! so the next claim still sees it. One script per user claims all of that user's keys of a
//! batch, atomically and in batch order.

use super::policy::{Call, by_user};
use super::{RedisStore, keys};
use crate::{CollapseClaim, Result};

impl RedisStore {
    pub(super) async fn claim_user_collapses(
        &self,
        claims: &[CollapseClaim],
        now_ms: i64,
    ) -> Result<Vec<Option<String>>> {
        let groups = by_user(claims, |c| c.user.as_str());
        let calls = groups
            .iter()
            .map(|(user, positions)| {
                let mut call = Call::default();
                call.arg(now_ms);
                for claim in positions.iter().map(|&i| &claims[i]) {
                    // Kept past the window so a retried claim still finds what it replaced.
                    let keep = claim.window_ms.saturating_mul(2).max(1000);
                    call.key(keys::user_collapse(user, &claim.key))
                        .arg(&claim.notification)
                        .arg(claim.window_ms)
                        .arg(keep);
                }
                call
            })
            .collect();
        let answers: Vec<Vec<Option<String>>> = self
            .invoke_each(&self.policy_scripts.claim_collapse, calls)
            .await?;
        let mut replaced = vec![None; claims.len()];
        for ((_, positions), answer) in groups.iter().zip(answers) {
            for (&i, prev) in positions.iter().zip(answer) {
                replaced[i] = prev;
            }
        }
        Ok(replaced)
    }
}
