//! Campaign recipients on Redis: a LIST `{c:ID}:l` in upload order, read by position, and a SET
//! `{c:ID}:s` of the same users, so each is listed once however often uploaded. Both are on the
//! campaign's slot, so one script call per batch checks and appends atomically: concurrent
//! uploads never give two users one position, nor one user two. The HASH `{c:ID}:x` holds the
//! channels in which listed users do not see the campaign's shared entry (see [`Membership`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::{CONCURRENCY, RedisStore, backend, keys, scripts};
use crate::feed_state::{Membership, Memberships};
use crate::{Exclusion, RecipientsAdded, Result};

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

    /// Adds exclusion bits for listed users, one script call per slice of users with the same
    /// bits.
    pub(super) async fn exclude(&self, campaign: &str, exclusions: &[Exclusion]) -> Result<()> {
        let mut by_bits: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
        for x in exclusions.iter().filter(|x| x.bits() != 0) {
            by_bits.entry(x.bits()).or_default().push(&x.user);
        }
        let script = ::redis::Script::new(scripts::EXCLUDE_RECIPIENTS);
        let mut conn = self.conn();
        for (bits, users) in by_bits {
            for slice in users.chunks(USERS_PER_CALL) {
                script
                    .key(keys::campaign_members(campaign))
                    .key(keys::campaign_exclusions(campaign))
                    .arg(bits)
                    .arg(slice)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    /// A user's memberships in these campaigns (one small script per campaign, on its slot).
    pub(super) async fn memberships(
        &self,
        user: &str,
        campaigns: &[Arc<str>],
    ) -> Result<Memberships> {
        if campaigns.is_empty() {
            return Ok(Memberships::default());
        }
        let script = &self.scripts.membership;
        let answers: Vec<(Arc<str>, i64)> = stream::iter(campaigns.iter().cloned())
            .map(|campaign| {
                let mut conn = self.conn();
                async move {
                    let bits: i64 = script
                        .key(keys::campaign_members(&campaign))
                        .key(keys::campaign_exclusions(&campaign))
                        .arg(user)
                        .invoke_async(&mut conn)
                        .await?;
                    Ok::<_, ::redis::RedisError>((campaign, bits))
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
            .map_err(backend)?;
        Ok(Memberships(
            answers
                .into_iter()
                .filter(|(_, bits)| *bits >= 0)
                .map(|(c, bits)| (c, Membership::from_exclusion_bits(bits as u8)))
                .collect(),
        ))
    }

    /// Keeps the count, then unlinks the list, its push stages and (unless `keep_members`) its member set and
    /// exclusions (Redis frees them in the background). All on the campaign's slot, in one
    /// script.
    pub(super) async fn drop_recipient_list(
        &self,
        campaign: &str,
        keep_members: bool,
    ) -> Result<()> {
        ::redis::Script::new(
            r"
local n = redis.call('LLEN', KEYS[2])
if n > 0 then redis.call('SET', KEYS[3], n) end
redis.call('UNLINK', KEYS[2], KEYS[5])
if ARGV[1] == '0' then redis.call('UNLINK', KEYS[1], KEYS[4]) end
return n
",
        )
        .key(keys::campaign_members(campaign))
        .key(keys::campaign_list(campaign))
        .key(keys::campaign_dropped_count(campaign))
        .key(keys::campaign_exclusions(campaign))
        .key(keys::campaign_push_stages(campaign))
        .arg(u8::from(keep_members))
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
