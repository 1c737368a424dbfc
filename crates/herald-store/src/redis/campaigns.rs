//! Campaigns on Redis: each is a HASH `{c:ID}:r` holding its version (`v`) beside its JSON
//! (`j`), replaced only by a compare-and-set script on `v`. Listing goes through two indexes
//! across campaigns: the ZSET `campaigns` of every id and `campaigns:active` of those not yet
//! completed or cancelled, both scored 0 so members sort by id (ULIDs: by creation time).
//!
//! The indexes are on other slots than the records, so on a Cluster a write cannot change both
//! in one step. The record is written first, then the indexes, each step idempotent, and reads
//! trust the record. That order is safe because an id enters an index only once its record
//! exists (and records are never deleted), and leaves `campaigns:active` only once its record
//! is final, which no later change undoes. A crash between the steps thus leaves at worst an
//! unlisted new record (a retried create lists it) or a finished campaign still indexed as
//! active, which `active_campaigns` skips by its record and drops then.

use ::redis::{AsyncCommands, Script};
use herald_core::Campaign;

use super::{RedisStore, backend, json_err, keys, scripts};
use crate::Result;

pub struct CampaignScripts {
    update: Script,
    pub add_recipients: Script,
}

impl CampaignScripts {
    pub fn new() -> Self {
        Self {
            update: Script::new(scripts::UPDATE_CAMPAIGN),
            add_recipients: Script::new(scripts::ADD_RECIPIENTS),
        }
    }
}

fn parse(json: &str) -> Result<Campaign> {
    serde_json::from_str(json).map_err(json_err)
}

fn hget_json(id: &str) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("HGET");
    cmd.arg(keys::campaign(id)).arg("j");
    cmd
}

impl RedisStore {
    pub(super) async fn create_campaign_record(&self, campaign: &Campaign) -> Result<()> {
        let json = serde_json::to_string(campaign).map_err(json_err)?;
        let mut conn = self.conn();
        let _: () = ::redis::cmd("HSET")
            .arg(keys::campaign(&campaign.id))
            .arg("v")
            .arg(campaign.version)
            .arg("j")
            .arg(json)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let _: () = conn
            .zadd(keys::CAMPAIGNS, &campaign.id, 0)
            .await
            .map_err(backend)?;
        if !campaign.state.is_final() {
            let _: () = conn
                .zadd(keys::ACTIVE_CAMPAIGNS, &campaign.id, 0)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    pub(super) async fn load_campaign(&self, id: &str) -> Result<Option<Campaign>> {
        let json: Option<String> = hget_json(id)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        json.map(|j| parse(&j)).transpose()
    }

    /// The records of these ids, in order; `None` for a missing one.
    async fn load_campaigns(&self, ids: &[String]) -> Result<Vec<Option<Campaign>>> {
        let stored: Vec<Option<String>> = self
            .query_each(ids.iter().map(|id| hget_json(id)).collect())
            .await?;
        stored
            .into_iter()
            .map(|json| json.map(|j| parse(&j)).transpose())
            .collect()
    }

    pub(super) async fn newest_campaigns(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Campaign>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let max = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        let ids: Vec<String> = self
            .conn()
            .zrevrangebylex_limit(keys::CAMPAIGNS, max, "-", 0, count(limit))
            .await
            .map_err(backend)?;
        Ok(self
            .load_campaigns(&ids)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    pub(super) async fn unfinished_campaigns(&self) -> Result<Vec<Campaign>> {
        let ids: Vec<String> = self
            .conn()
            .zrange(keys::ACTIVE_CAMPAIGNS, 0, -1)
            .await
            .map_err(backend)?;
        let mut active = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for (id, campaign) in ids.iter().zip(self.load_campaigns(&ids).await?) {
            match campaign {
                Some(c) if !c.state.is_final() => active.push(c),
                // Final is for good, and a listed id's record was written before it was
                // listed and is never deleted: dropping these hides nothing active.
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            let _: () = self
                .conn()
                .zrem(keys::ACTIVE_CAMPAIGNS, stale)
                .await
                .map_err(backend)?;
        }
        Ok(active)
    }

    pub(super) async fn replace_campaign(&self, campaign: &Campaign) -> Result<bool> {
        let next = Campaign {
            version: campaign.version + 1,
            ..campaign.clone()
        };
        let json = serde_json::to_string(&next).map_err(json_err)?;
        let replaced: i64 = self
            .campaign_scripts
            .update
            .key(keys::campaign(&campaign.id))
            .arg(campaign.version)
            .arg(next.version)
            .arg(json)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if replaced != 1 {
            return Ok(false);
        }
        if next.state.is_final() {
            let _: () = self
                .conn()
                .zrem(keys::ACTIVE_CAMPAIGNS, &campaign.id)
                .await
                .map_err(backend)?;
        }
        Ok(true)
    }
}

/// A page size as Redis's LIMIT count, where a negative one would mean "all".
pub(super) fn count(limit: usize) -> isize {
    isize::try_from(limit).unwrap_or(isize::MAX)
}
