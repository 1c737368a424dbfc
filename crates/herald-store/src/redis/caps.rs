//! Frequency caps on Redis: each counter of a user is a ZSET `{u:USER}:cap:KEY` of the
//! notification ids counted, scored by when (ms), expiring a window after the last one. One
//! script per user checks and takes all of that user's requests of a batch, so the counts are
//! exact however many nodes race (all of a user's counters share the user's slot).

use super::policy::{Call, by_user};
use super::{RedisStore, keys};
use crate::{CapRequest, Result};

impl RedisStore {
    pub(super) async fn take_user_caps(
        &self,
        requests: &[CapRequest],
        now_ms: i64,
    ) -> Result<Vec<bool>> {
        let groups = by_user(requests, |r| r.user.as_str());
        let calls = groups
            .iter()
            .map(|(user, positions)| {
                let mut call = Call::default();
                call.arg(now_ms);
                for request in positions.iter().map(|&i| &requests[i]) {
                    call.arg(&request.notification).arg(request.charges.len());
                    for charge in &request.charges {
                        // An entry counted at t counts while now - t < window.
                        call.key(keys::user_cap(user, &charge.key))
                            .arg(charge.limit)
                            .arg(now_ms.saturating_sub(charge.window_ms))
                            .arg(charge.window_ms.max(1));
                    }
                }
                call
            })
            .collect();
        let answers: Vec<Vec<i64>> = self
            .invoke_each(&self.policy_scripts.take_caps, calls)
            .await?;
        let mut allowed = vec![false; requests.len()];
        for ((_, positions), answer) in groups.iter().zip(answers) {
            for (&i, a) in positions.iter().zip(answer) {
                allowed[i] = a == 1;
            }
        }
        Ok(allowed)
    }
}
