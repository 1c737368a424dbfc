//! Campaign recipients on Redis: a LIST `{c:ID}:l` in upload order, read by position, and a SET
//! `{c:ID}:s` of the same users, so each is listed once however often uploaded. Both are on the
//! campaign's slot, so one script call per batch checks and appends atomically: concurrent
//! uploads never give two users one position, nor one user two.

use super::{RedisStore, backend, keys};
use crate::{RecipientsAdded, Result};

/// Most users per script call: the script holds up Redis while it runs, so a huge upload goes
/// in slices (each atomic; their order is kept, as they run one after the other).
const USERS_PER_CALL: usize = 10_000;

impl RedisStore {
    pub(super) async fn append_recipients(
        &self,
        campaign: &str,
        users: &[String],
    ) -> Result<RecipientsAdded> {
        let (members, list) = (
            keys::campaign_members(campaign),
            keys::campaign_list(campaign),
        );
        let mut conn = self.conn();
        let mut added = 0;
        for slice in users.chunks(USERS_PER_CALL) {
            let n: u64 = self
                .campaign_scripts
                .add_recipients
                .key(&members)
                .key(&list)
                .arg(slice)
                .invoke_async(&mut conn)
                .await
                .map_err(backend)?;
            added += n;
        }
        Ok(RecipientsAdded {
            added,
            duplicates: users.len() as u64 - added,
        })
    }

    /// The list's length, or the length it had when it was dropped.
    pub(super) async fn count_recipients(&self, campaign: &str) -> Result<u64> {
        let (len, dropped): (u64, Option<u64>) = ::redis::pipe()
            .llen(keys::campaign_list(campaign))
            .get(keys::campaign_dropped_count(campaign))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(len.max(dropped.unwrap_or(0)))
    }

    /// Keeps the count, then unlinks the list and its member set (Redis frees them in the
    /// background). All on the campaign's slot, in one script.
    pub(super) async fn drop_recipient_list(&self, campaign: &str) -> Result<()> {
        ::redis::Script::new(
            r"
local n = redis.call('LLEN', KEYS[2])
if n > 0 then redis.call('SET', KEYS[3], n) end
redis.call('UNLINK', KEYS[1], KEYS[2])
return n
",
        )
        .key(keys::campaign_members(campaign))
        .key(keys::campaign_list(campaign))
        .key(keys::campaign_dropped_count(campaign))
        .invoke_async::<u64>(&mut self.conn())
        .await
        .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn recipients_from(
        &self,
        campaign: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Redis positions are i64; none past that can hold anyone.
        let last = i64::try_from(from.saturating_add(limit as u64 - 1)).unwrap_or(i64::MAX);
        if from > last as u64 {
            return Ok(Vec::new());
        }
        ::redis::cmd("LRANGE")
            .arg(keys::campaign_list(campaign))
            .arg(from)
            .arg(last)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }
}
