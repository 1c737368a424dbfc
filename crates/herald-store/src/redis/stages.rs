//! Campaign push stages on Redis: a campaign's stages are one HASH on its slot
//! (`{c:ID}:ps`, first position → stage JSON, set once with `HSETNX`), dropped once it ended;
//! a stage's progress is a bitmap on the outbox slot (`{q}:push:stage:ID:FROM`), next to the
//! delivery report and the dead letters, so recording outcomes is one atomic script on a
//! Cluster too. The bitmaps are dropped with the stages, or expire with the notification's
//! retention.

use std::sync::LazyLock;

use ::redis::Script;

use super::outbox::expires_at;
use super::{RedisStore, backend, json_err, keys, scripts};
use crate::{PushStage, Result, SendStatus, StagedOutcome, StagedProgress};

static FINISH_STAGED: LazyLock<Script> = LazyLock::new(|| Script::new(&scripts::finish_staged()));

impl RedisStore {
    pub(super) async fn put_push_stage(&self, campaign: &str, stage: &PushStage) -> Result<bool> {
        let json = serde_json::to_string(stage).map_err(json_err)?;
        ::redis::cmd("HSETNX")
            .arg(keys::campaign_push_stages(campaign))
            .arg(stage.from)
            .arg(json)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    pub(super) async fn get_push_stage(
        &self,
        campaign: &str,
        from: u64,
    ) -> Result<Option<(PushStage, StagedProgress)>> {
        let json: Option<String> = ::redis::cmd("HGET")
            .arg(keys::campaign_push_stages(campaign))
            .arg(from)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(json) = json else {
            return Ok(None);
        };
        let stage: PushStage = serde_json::from_str(&json).map_err(json_err)?;
        // Another slot: a second call.
        let bits: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(keys::push_stage_progress(campaign, from))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(Some((stage, StagedProgress(bits.unwrap_or_default()))))
    }

    pub(super) async fn drop_stages(&self, campaign: &str) -> Result<()> {
        let stages = keys::campaign_push_stages(campaign);
        let froms: Vec<u64> = ::redis::cmd("HKEYS")
            .arg(&stages)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        // The bitmaps share the outbox slot: one call per slice, on a Cluster too.
        for slice in froms.chunks(512) {
            let bitmaps: Vec<String> = slice
                .iter()
                .map(|&from| keys::push_stage_progress(campaign, from))
                .collect();
            ::redis::cmd("UNLINK")
                .arg(bitmaps)
                .query_async::<u64>(&mut self.conn())
                .await
                .map_err(backend)?;
        }
        ::redis::cmd("UNLINK")
            .arg(stages)
            .query_async::<u64>(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn record_staged(
        &self,
        campaign: &str,
        from: u64,
        notification: &str,
        outcomes: &[StagedOutcome],
    ) -> Result<()> {
        let expiry = expires_at(
            notification,
            self.options.notification_retention_ms,
            herald_core::time::now_ms(),
        );
        // A few thousand per stage at most: one call.
        let mut call = FINISH_STAGED.prepare_invoke();
        call.key(keys::push_stage_progress(campaign, from))
            .key(keys::push_report(notification))
            .key(keys::PUSH_DEAD)
            .arg(self.options.dead_letters_max)
            .arg(expiry);
        for outcome in outcomes {
            let letter = match &outcome.letter {
                Some(letter) => serde_json::to_string(letter).map_err(json_err)?,
                None => String::new(),
            };
            call.arg(outcome.index)
                .arg(outcome.status.map_or("", SendStatus::as_str))
                .arg(letter);
        }
        call.invoke_async::<u64>(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
